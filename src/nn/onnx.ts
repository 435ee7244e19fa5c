// ONNX graphs from the forward pass, as PyTorch's tracer and symbolic functions make them: the module's own `forward`
// runs on an example input while every aten op it calls is recorded (torch/trace.ts: the op's schema, its tensor
// inputs by identity, its other arguments, its outputs, and the module that called it), then each recorded op is
// mapped to ONNX operators by its symbolic function (nn/onnx-symbolic.ts). Layers and models write no export code; a
// user's module made of layers, `F.` functions and tensor methods exports as it is.
//
// - The graph is the eval-mode computation: the forward is traced in eval mode (the modules' modes are restored
//   afterwards), without autograd, and with the fake quantizers of quantization-aware training switched off (the int8
//   exporter quantizes the float graph itself).
// - Parameters and buffers read by the forward become initializers named by their state_dict keys (`layer1.0.conv1
//   .weight`, `bn1.running_mean`). An op whose tensor inputs are all constants (parameters, tensors made from JS data,
//   results of such ops) is constant-folded: libtorch computed its result during the trace, and the result becomes an
//   initializer named after its source (`self_attn.in_proj_weight_chunk_0`, `pos.weight_embedding`).
// - The batch dimension is dynamic: the forward is traced at batch 2 and at batch 3, and every size that differs
//   between the two (a `view(B, L, H, d)`, a `[B, 1, 1, S]` mask) is written as a function of the input's batch size;
//   values are declared with a `batch` dimension. A forward whose ops depend on the batch size in another way (other
//   ops, data made in JavaScript) is refused; export it with a fixed `batchSize`, which traces once.
// - Only ops that contribute to the output are exported (what hooks or unused branches compute is dropped), and ops
//   that only pass a value on (alias, contiguous, dropout in eval, a cast to the same type) emit no node.
// - Nodes are named `<module path>/<ONNX op>` after the module whose forward called the aten op (`layer1.0.conv1/Conv`;
//   ops of the root's own forward have no prefix), and their outputs likewise; the int8 exporter reads module paths
//   from these names. An unsupported op fails with the aten op, the module class and path that called it, and the
//   list of supported ops; `registerOnnxSymbolic` adds a symbolic function for another op.
import { DType, Handle, OpCall, OpSchema, Tensor, handleBytes, handleInfo, handleOf, noGrad, recordOps, tensor, tidy } from '../torch';
import { Module, runningModule } from './module';
import { Conv1d, Conv2d, Linear } from './layers';
import { BUILTIN_SYMBOLICS, OnnxSymbolic } from './onnx-symbolic';

export type { OnnxSymbolic };

/** A dimension: a size, or a name for a size known only at run time (`batch`; `?` for another dynamic size). */
export type Dim = number | string;
export type OnnxDType = 'float32' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

/** A value in the graph: the output of a node, a graph input or an initializer. */
export interface OnnxValue {
  readonly name: string;
  readonly shape: Dim[];
  readonly dtype: OnnxDType;
}

/**
 * A node attribute: an integer number is an INT, a number array INTS, a string STRING; floats are written
 * `{ float: x }` / `{ floats: [...] }` (JavaScript numbers cannot tell 1 from 1.0).
 */
export type OnnxAttr = number | number[] | string | { float: number } | { floats: number[] };

export interface OnnxNode {
  op: string;
  /** Unique node name: the module path and the op (`layer1.0.conv1/Conv`). */
  name: string;
  /** Value names; '' for an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, OnnxAttr>;
}

export type OnnxTensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;

export interface OnnxInitializer {
  name: string;
  dtype: OnnxDType;
  shape: number[];
  data: OnnxTensorData;
}

/** The graph as plain data, ready to be serialised (tsdistill/export). */
export interface OnnxGraph {
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  nodes: OnnxNode[];
  initializers: Map<string, OnnxInitializer>;
  opset: number;
}

/** Where ONNX export failed: the message names the aten op (when one is at fault) and the module path and class. */
export class OnnxExportError extends Error {
  constructor(message: string, readonly modulePath: string, readonly moduleClass: string, readonly op: string | null = null, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxExportError';
  }
}

const shapeStr = (s: readonly Dim[]) => `[${s.join(', ')}]`;

const ONNX_DTYPES: Partial<Record<DType, OnnxDType>> = {
  float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32', int8: 'int8', uint8: 'uint8', bool: 'bool',
};

function typedData(bytes: ArrayBuffer, dtype: OnnxDType): OnnxTensorData {
  switch (dtype) {
    case 'float32': return new Float32Array(bytes);
    case 'float64': return new Float64Array(bytes);
    case 'int64': return new BigInt64Array(bytes);
    case 'int32': return new Int32Array(bytes);
    case 'int8': return new Int8Array(bytes);
    case 'uint8': case 'bool': return new Uint8Array(bytes);
  }
}

// ---------------------------------------------------------------------------------------------------- recording

/** A tensor argument of a recorded op: the traced value it refers to. */
class ValueRef {
  constructor(readonly id: number) {}
}

interface TracedValue {
  kind: 'input' | 'param' | 'const' | 'op';
  shape: number[];
  dtype: DType;
  /** param: the state_dict key and the tensor */
  param?: { name: string; tensor: Tensor };
  /** const, and op outputs computed from constants only: the elements */
  bytes?: ArrayBuffer;
  /** op: index of the producing op and the position among its outputs */
  producer?: number;
  index?: number;
}

interface TracedOp {
  name: string;
  overload: string;
  schema: OpSchema;
  /** Arguments by schema name; tensors as ValueRef (wrapped numbers stay numbers), tensor lists as (ValueRef | null)[]. */
  args: Record<string, unknown>;
  inputs: number[];
  outputs: number[];
  path: string;
  moduleClass: string;
}

interface Trace {
  batch: number;
  values: TracedValue[];
  ops: TracedOp[];
  output: number;
}

// results of these are not functions of their inputs
const RANDOM = /^aten::(rand|randn|randint|randperm|normal|uniform|bernoulli|multinomial|exponential|geometric|cauchy|log_normal|random|poisson)(_|$|_like)|^aten::(.*dropout.*|rrelu.*)$/;

function traceOnce(model: Module, input: Tensor, params: Map<Handle, { name: string; tensor: Tensor }>): Trace {
  const values: TracedValue[] = [];
  const byHandle = new Map<Handle, number>();
  const ops: TracedOp[] = [];
  const add = (v: TracedValue): number => values.push(v) - 1;
  byHandle.set(handleOf(input), add({ kind: 'input', ...handleInfo(handleOf(input)) }));
  const ref = (h: Handle): number => {
    let id = byHandle.get(h);
    if (id === undefined) {
      const p = params.get(h);
      id = add(p ? { kind: 'param', ...handleInfo(h), param: p } : { kind: 'const', ...handleInfo(h), bytes: handleBytes(h) });
      byHandle.set(h, id);
    }
    return id;
  };
  const isConstant = (id: number) => values[id].bytes !== undefined || values[id].kind === 'param';
  const onCall = (c: OpCall) => {
    if (c.outputs.length === 0) return; // item(), size(): plain numbers, which the trace keeps as they were
    const where = runningModule(model) ?? { module: model, path: '' };
    const inputs: number[] = [];
    const args: Record<string, unknown> = {};
    for (const a of c.schema.args) {
      const v = c.args[a.name];
      if (a.kind === 'Tensor' && v !== null && typeof v === 'object') {
        const id = ref(v as Handle);
        inputs.push(id);
        args[a.name] = new ValueRef(id);
      } else if ((a.kind === 'Tensor[]' || a.kind === 'Tensor?[]') && Array.isArray(v)) {
        args[a.name] = v.map((h) => {
          if (h === null) return null;
          const id = ref(h as Handle);
          inputs.push(id);
          return new ValueRef(id);
        });
      } else args[a.name] = v;
    }
    // computed from constants only: libtorch's result is kept (constant folding)
    const folded = inputs.every(isConstant) && !RANDOM.test(c.name);
    const outputs = c.outputs.map((h, index) => {
      const id = add({ kind: 'op', ...handleInfo(h), producer: ops.length, index, bytes: folded ? handleBytes(h) : undefined });
      byHandle.set(h, id);
      return id;
    });
    ops.push({ name: c.name, overload: c.overload, schema: c.schema, args, inputs, outputs, path: where.path, moduleClass: where.module.constructor.name });
  };
  let out: Handle;
  try {
    // the forward's tensors are freed as the trace goes (their handles stay valid as identities); the output's
    // handle is all that is kept
    out = tidy(() => recordOps(() => outputHandle(model, model.forward(input)), onCall));
  } catch (e) {
    if (e instanceof OnnxExportError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new OnnxExportError(
      `ONNX export: the forward pass of ${model.constructor.name} failed on the example input ${input.dtype}${shapeStr(input.shape)}: ${msg}`,
      '', model.constructor.name, null, { cause: e },
    );
  }
  return { batch: input.shape[0], values, ops, output: ref(out) };
}

function outputHandle(model: Module, out: unknown): Handle {
  if (Array.isArray(out)) {
    if (out.length !== 1) throw new OnnxExportError(`ONNX export: ${model.constructor.name} returned ${out.length} values; export models with one output (the logits)`, '', model.constructor.name);
    out = out[0];
  }
  if (!(out instanceof Tensor)) throw new OnnxExportError(`ONNX export: ${model.constructor.name}.forward returned ${out === null ? 'null' : typeof out}, not a Tensor`, '', model.constructor.name);
  return handleOf(out);
}

/** Deterministic example values (the global RNG stays untouched): a smooth pattern in [-1, 1], or token id 1. */
function exampleInput(shape: number[], dtype: 'float32' | 'int64'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (dtype === 'int64') return tensor(new BigInt64Array(n).fill(1n), { shape });
  return tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(0.7 * i + 0.3)), { shape });
}

/** Runs `fn` with `model` in eval mode, without autograd and without fake quantization; restores all three. */
function inExportMode<T>(model: Module, fn: () => T): T {
  const modes = model.modules().map((m) => [m, m.training] as const);
  const quantized = model.modules().filter((m): m is Linear | Conv1d | Conv2d => (m instanceof Linear || m instanceof Conv1d || m instanceof Conv2d) && m.quant !== null);
  const quants = quantized.map((m) => m.quant);
  const rootMode = model.training;
  model.eval();
  quantized.forEach((m) => (m.quant = null));
  try {
    return noGrad(fn);
  } finally {
    quantized.forEach((m, i) => (m.quant = quants[i]));
    model.train(rootMode);
    for (const [m, t] of modes) m.training = t;
  }
}

// ---------------------------------------------------------------------------------------------------- building

export interface TraceOnnxOptions {
  /** One example's shape without the batch dimension. */
  inputShape: number[];
  inputDtype: 'float32' | 'int64';
  inputName: string;
  outputName: string;
  opset: number;
  /** A fixed batch size (one trace); default a dynamic batch dimension named 'batch'. */
  batchSize?: number;
}

const BATCH = 'batch';

/** Symbolic functions added with `registerOnnxSymbolic`, by `aten::name` or `aten::name.overload`. */
const userSymbolics = new Map<string, OnnxSymbolic>();

/**
 * Adds (or replaces) the symbolic function of an aten op for ONNX export: `name` is `aten::op` (the default
 * overload), `aten::op.overload`, or `aten::op.*` (every overload without its own entry). It receives the context of
 * one recorded call (arguments, shapes, node emission) and returns the op's output value(s).
 */
export function registerOnnxSymbolic(name: string, fn: OnnxSymbolic['fn'], opts: { dynamicArgs?: string[] } = {}): void {
  if (!/^[a-z_][a-z0-9_]*::[A-Za-z0-9_]+(\.([A-Za-z0-9_]+|\*))?$/.test(name)) throw new Error(`registerOnnxSymbolic: expected 'aten::op', 'aten::op.overload' or 'aten::op.*', got '${name}'`);
  if (typeof fn !== 'function') throw new TypeError(`registerOnnxSymbolic('${name}'): the symbolic function must be a function`);
  userSymbolics.set(name, { fn, dynamicArgs: opts.dynamicArgs });
}

/** The aten ops the exporter maps to ONNX (built-in and registered), sorted. */
export function onnxSupportedOps(): string[] {
  return [...new Set([...BUILTIN_SYMBOLICS.keys(), ...userSymbolics.keys()])].sort();
}

function findSymbolic(name: string, overload: string): OnnxSymbolic | undefined {
  const names = [name];
  // an in-place op maps like its out-of-place form (relu_ as relu); its result is the new value of the argument
  if (name.endsWith('_') && !name.endsWith('__')) names.push(name.slice(0, -1));
  for (const n of names) {
    const key = overload ? `${n}.${overload}` : n;
    const s = userSymbolics.get(key) ?? BUILTIN_SYMBOLICS.get(key) ?? userSymbolics.get(`${n}.*`);
    if (s) return s;
  }
  return undefined;
}

function sameArg(a: unknown, b: unknown): boolean {
  if (a instanceof ValueRef && b instanceof ValueRef) return a.id === b.id;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameArg(x, b[i]));
  return Object.is(a, b);
}

function sameBytes(a: ArrayBuffer | undefined, b: ArrayBuffer | undefined): boolean {
  if (!a || !b || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Accumulates the graph: named values, nodes, initializers. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers = new Map<string, OnnxInitializer>();
  readonly inputs: OnnxValue[] = [];
  readonly outputs: OnnxValue[] = [];
  private readonly names = new Set<string>();
  private readonly nodeNames = new Set<string>();
  private readonly scalars = new Map<string, OnnxValue>();
  batchSize: OnnxValue | null = null;

  constructor(readonly opset: number) {}

  unique(base: string, used: Set<string> = this.names): string {
    let n = base;
    for (let i = 1; used.has(n); i++) n = `${base}_${i}`;
    used.add(n);
    return n;
  }
  input(name: string, dtype: OnnxDType, shape: Dim[]): OnnxValue {
    this.names.add(name);
    const v = { name, dtype, shape };
    this.inputs.push(v);
    return v;
  }
  initializer(name: string, dtype: OnnxDType, shape: number[], data: OnnxTensorData, exact = false): OnnxValue {
    const n = exact && !this.names.has(name) ? (this.names.add(name), name) : this.unique(name);
    this.initializers.set(n, { name: n, dtype, shape: shape.slice(), data });
    return { name: n, dtype, shape: shape.slice() };
  }
  /** A constant, shared by everything that asks for the same values under the same hint. */
  constant(hint: string, values: ArrayLike<number | bigint>, shape: number[], dtype: OnnxDType): OnnxValue {
    const key = `${hint}|${dtype}|${shape.join(',')}|${Array.from(values as ArrayLike<unknown>, String).join(',')}`;
    const seen = this.scalars.get(key);
    if (seen) return seen;
    let data: OnnxTensorData;
    if (dtype === 'int64') data = BigInt64Array.from(Array.from(values as ArrayLike<number | bigint>, (x) => BigInt(x)));
    else if (dtype === 'bool') data = Uint8Array.from(Array.from(values as ArrayLike<number>, (x) => (x ? 1 : 0)));
    else if (dtype === 'float64') data = Float64Array.from(values as ArrayLike<number>);
    else if (dtype === 'int32') data = Int32Array.from(values as ArrayLike<number>);
    else if (dtype === 'int8') data = Int8Array.from(values as ArrayLike<number>);
    else if (dtype === 'uint8') data = Uint8Array.from(values as ArrayLike<number>);
    else data = Float32Array.from(values as ArrayLike<number>);
    const v = this.initializer(hint, dtype, shape, data);
    this.scalars.set(key, v);
    return v;
  }
  node(path: string, op: string, inputs: (OnnxValue | null)[], outputs: { shape: Dim[]; dtype: OnnxDType }[], attrs: Record<string, OnnxAttr>): OnnxValue[] {
    const prefix = path ? `${path}/${op}` : op;
    const outs = outputs.map((o) => ({ name: this.unique(prefix), shape: o.shape.slice(), dtype: o.dtype }));
    const ins = inputs.map((v) => (v === null ? '' : v.name));
    while (ins.length && ins[ins.length - 1] === '') ins.pop();
    this.nodes.push({ op, name: this.unique(prefix, this.nodeNames), inputs: ins, outputs: outs.map((o) => o.name), attrs });
    return outs;
  }
  /** Declares `v` a graph output under `name` (renaming its producer's output, or through an Identity node). */
  output(v: OnnxValue, name: string): void {
    const producer = this.nodes.find((n) => n.outputs.includes(v.name));
    if (producer && !this.names.has(name)) {
      this.names.delete(v.name);
      this.names.add(name);
      for (const n of this.nodes) {
        n.inputs = n.inputs.map((x) => (x === v.name ? name : x));
        n.outputs = n.outputs.map((x) => (x === v.name ? name : x));
      }
    } else {
      if (this.names.has(name)) throw new Error(`ONNX export: output name '${name}' is already used by another value`);
      this.names.add(name);
      this.nodes.push({ op: 'Identity', name: this.unique(`${name}/Identity`, this.nodeNames), inputs: [v.name], outputs: [name], attrs: {} });
    }
    this.outputs.push({ name, dtype: v.dtype, shape: v.shape });
  }
  /** Drops nodes whose outputs nothing uses, and initializers no node reads. */
  prune(): void {
    const used = new Set(this.outputs.map((o) => o.name));
    const kept: OnnxNode[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      if (!n.outputs.some((o) => used.has(o))) continue;
      kept.push(n);
      for (const x of n.inputs) used.add(x);
    }
    this.nodes.splice(0, this.nodes.length, ...kept.reverse());
    for (const k of [...this.initializers.keys()]) if (!used.has(k)) this.initializers.delete(k);
  }
  graph(): OnnxGraph {
    return { inputs: this.inputs, outputs: this.outputs, nodes: this.nodes, initializers: this.initializers, opset: this.opset };
  }
}

/** Builds the graph from one trace (or two, for a dynamic batch) of the same forward. */
class TraceConverter {
  readonly g: GraphBuilder;
  private readonly emitted = new Map<number, OnnxValue>();
  readonly live = new Set<number>();

  constructor(readonly t1: Trace, readonly t2: Trace, opset: number) {
    this.g = new GraphBuilder(opset);
  }

  /** The dims of value `id` over the two traces: a size, `batch`, or `?`. */
  dims(id: number): Dim[] {
    return this.dimsOf(this.t1.values[id].shape, this.t2.values[id].shape);
  }
  dimsOf(s1: number[], s2: number[]): Dim[] {
    return s1.map((d, i) => (d === s2[i] ? d : d === this.t1.batch && s2[i] === this.t2.batch ? BATCH : '?'));
  }
  dtype(id: number, op: TracedOp | null): OnnxDType {
    const dt = this.t1.values[id].dtype;
    const o = ONNX_DTYPES[dt];
    if (!o) this.fail(op, `a ${dt} tensor has no ONNX type the exporter writes (float32, float64, int64, int32, int8, uint8, bool)`);
    return o;
  }
  isConstant(id: number): boolean {
    const a = this.t1.values[id], b = this.t2.values[id];
    if (a.kind === 'param') return true;
    return a.bytes !== undefined && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]) && sameBytes(a.bytes, b.bytes);
  }

  fail(op: TracedOp | null, msg: string, cause?: unknown): never {
    if (!op) throw new OnnxExportError(`ONNX export: ${msg}`, '', '', null, { cause });
    const where = `${op.moduleClass} at ${op.path === '' ? 'the root' : `'${op.path}'`}`;
    const name = `${op.name}${op.overload ? '.' + op.overload : ''}`;
    throw new OnnxExportError(`ONNX export: ${name} in ${where}: ${msg}`, op.path, op.moduleClass, name, { cause });
  }

  /** The graph value of traced value `id`; constants become initializers on first use. */
  value(id: number, user: TracedOp | null): OnnxValue {
    const seen = this.emitted.get(id);
    if (seen) return seen;
    const v = this.t1.values[id];
    if (!this.isConstant(id)) {
      if (v.kind === 'const')
        this.fail(user, `a tensor made outside the recorded ops (from JavaScript data, or kept from before the forward; ${v.dtype}${shapeStr(v.shape)} at batch ${this.t1.batch}) ` +
          `differs between batch ${this.t1.batch} and batch ${this.t2.batch}; compute it with tensor ops from the input, or export with a fixed batchSize`);
      this.fail(user, `internal: value ${id} was used before it was computed`);
    }
    const dtype = this.dtype(id, user);
    let out: OnnxValue;
    if (v.kind === 'param') {
      const data = typedData(handleBytes(handleOf(v.param!.tensor)), dtype);
      out = this.g.initializer(v.param!.name, dtype, v.shape, data, true);
    } else out = this.g.initializer(this.constantName(id, user), dtype, v.shape, typedData(v.bytes!, dtype));
    this.emitted.set(id, out);
    return out;
  }
  /** `pos.weight_embedding`: a folded result is named after its first constant input that has a name, and its op. */
  constantName(id: number, user: TracedOp | null): string {
    const v = this.t1.values[id];
    if (v.kind !== 'op') return user && user.path ? `${user.path}.constant` : 'constant';
    const op = this.t1.ops[v.producer!];
    const base = op.name.slice(op.name.indexOf('::') + 2);
    const suffix = op.outputs.length > 1 ? `_${v.index}` : '';
    const src = op.inputs.find((i) => this.t1.values[i].kind === 'param' || this.t1.values[i].kind === 'op');
    const srcName = src === undefined ? null : this.t1.values[src].kind === 'param' ? this.t1.values[src].param!.name : this.constantName(src, op);
    if (srcName) return `${srcName}_${base}${suffix}`;
    return `${op.path ? op.path + '.' : ''}${base}${suffix}`;
  }

  /** Checks that both traces ran the same ops on the same values. */
  checkSameOps(): void {
    const [a, b] = [this.t1, this.t2];
    const same = (x: TracedOp | undefined, y: TracedOp | undefined) =>
      !!x && !!y && x.name === y.name && x.overload === y.overload && x.inputs.length === y.inputs.length &&
      x.inputs.every((v, k) => v === y.inputs[k] && a.values[v].kind === b.values[v].kind);
    const n = Math.max(a.ops.length, b.ops.length);
    for (let i = 0; i < n; i++) {
      const x = a.ops[i], y = b.ops[i];
      if (same(x, y)) continue;
      const what = (o: TracedOp | undefined) => (o ? `${o.name}${o.overload ? '.' + o.overload : ''} in ${o.moduleClass} at '${o.path}'` : 'nothing');
      throw new OnnxExportError(
        `ONNX export: the forward pass runs different ops at batch ${a.batch} and batch ${b.batch} (op ${i}: ${what(x)} vs ${what(y)}), ` +
          'so its graph cannot have a dynamic batch dimension; export with a fixed batchSize',
        (x ?? y)!.path, (x ?? y)!.moduleClass, (x ?? y)!.name,
      );
    }
  }

  /** Marks the ops whose results reach the output. */
  markLive(): void {
    const need = new Set([this.t1.output]);
    for (let i = this.t1.ops.length - 1; i >= 0; i--) {
      const op = this.t1.ops[i];
      if (!op.outputs.some((o) => need.has(o))) continue;
      if (op.outputs.every((o) => this.isConstant(o))) continue;
      this.live.add(i);
      for (const v of op.inputs) need.add(v);
    }
  }

  convert(inputName: string, inputDtype: OnnxDType, outputName: string): OnnxGraph {
    this.checkSameOps();
    this.emitted.set(0, this.g.input(inputName, inputDtype, this.dims(0)));
    this.markLive();
    this.t1.ops.forEach((op, i) => {
      if (!this.live.has(i)) return;
      const sym = findSymbolic(op.name, op.overload);
      if (!sym) {
        this.fail(op, `no ONNX symbolic function for this op. Supported (and their in-place forms): ${onnxSupportedOps().join(', ')}. ` +
          `Write the computation with supported ops, or add one with registerOnnxSymbolic('${op.name}', fn)`);
      }
      const ctx = new SymbolicContext(this, op, this.t2.ops[i], new Set(sym.dynamicArgs ?? []));
      let result: OnnxValue | (OnnxValue | null)[];
      try {
        result = sym.fn(ctx);
      } catch (e) {
        if (e instanceof OnnxExportError) throw e;
        this.fail(op, e instanceof Error ? e.message : String(e), e);
      }
      const outs = Array.isArray(result) ? result : [result];
      op.outputs.forEach((id, k) => {
        const v = outs[k];
        if (v) this.emitted.set(id, v);
      });
    });
    const y = this.value(this.t1.output, null);
    this.g.output({ ...y, shape: this.dims(this.t1.output) }, outputName);
    this.g.prune();
    return this.g.graph();
  }

  /** `[2, 3]` / `[3, 3]` at batch 2 / 3 -> a 1-D int64 shape value: constants, -1 for one inferred dim, or computed. */
  shapeValue(path: string, s1: number[], s2: number[], allowInfer: boolean): OnnxValue {
    const dyn = s1.map((d, i) => i).filter((i) => s1[i] !== s2[i]);
    const hint = path ? `${path}.shape` : 'shape';
    if (dyn.length === 0) return this.g.constant(hint, s1, [s1.length], 'int64');
    if (allowInfer && dyn.length === 1) return this.g.constant(hint, s1.map((d, i) => (i === dyn[0] ? -1 : d)), [s1.length], 'int64');
    // each dynamic dim is a·batch + c
    const db = this.t2.batch - this.t1.batch;
    this.g.batchSize ??= this.g.node('', 'Gather', [
      this.g.node('', 'Shape', [this.g.inputs[0]], [{ shape: [this.g.inputs[0].shape.length], dtype: 'int64' }], {})[0],
      this.g.constant('batch_axis', [0], [1], 'int64'),
    ], [{ shape: [1], dtype: 'int64' }], { axis: 0 })[0];
    const pieces: OnnxValue[] = [];
    let statics: number[] = [];
    const flush = () => {
      if (statics.length) pieces.push(this.g.constant(hint, statics, [statics.length], 'int64'));
      statics = [];
    };
    s1.forEach((d, i) => {
      if (d === s2[i]) {
        statics.push(d);
        return;
      }
      flush();
      const a = (s2[i] - d) / db, c = d - a * this.t1.batch;
      if (!Number.isInteger(a)) throw new Error(`a size (${d} at batch ${this.t1.batch}, ${s2[i]} at batch ${this.t2.batch}) is not an integer multiple of the batch size`);
      let v = this.g.batchSize!;
      const one = [{ shape: [1], dtype: 'int64' as const }];
      if (a !== 1) v = this.g.node(path, 'Mul', [v, this.g.constant(hint, [a], [1], 'int64')], one, {})[0];
      if (c !== 0) v = this.g.node(path, 'Add', [v, this.g.constant(hint, [c], [1], 'int64')], one, {})[0];
      pieces.push(v);
    });
    flush();
    if (pieces.length === 1) return pieces[0];
    return this.g.node(path, 'Concat', pieces, [{ shape: [s1.length], dtype: 'int64' }], { axis: 0 })[0];
  }
}

/** A constant tensor argument: its initializer name and elements. */
export interface OnnxConstant {
  value: OnnxValue;
  shape: number[];
  dtype: OnnxDType;
  data: OnnxTensorData;
}

/**
 * What a symbolic function sees of one recorded aten call: its arguments by schema name (tensors as graph values,
 * others as the JavaScript values the forward passed, defaults filled in), the recorded shapes and types, and node
 * emission. Nodes are named after the module that called the op.
 */
export class SymbolicContext {
  /** 'aten::conv2d' */
  readonly op: string;
  readonly overload: string;
  /** The path of the module that called the op ('' at the root) and its class. */
  readonly path: string;
  readonly moduleClass: string;

  constructor(private readonly c: TraceConverter, private readonly call: TracedOp, private readonly call2: TracedOp, private readonly dynamicArgs: Set<string>) {
    this.op = call.name;
    this.overload = call.overload;
    this.path = call.path;
    this.moduleClass = call.moduleClass;
  }

  get opset(): number {
    return this.c.g.opset;
  }

  /** Fails the export with the op, the module and `msg`. */
  fail(msg: string): never {
    this.c.fail(this.call, msg);
  }

  // ------------------------------------------------------------------ arguments

  private ref(name: string): ValueRef | number | boolean | null {
    if (!(name in this.call.args)) this.fail(`internal: the schema has no argument '${name}'`);
    return this.call.args[name] as ValueRef | number | boolean | null;
  }
  /** True when the tensor argument `name` is given (not None). */
  has(name: string): boolean {
    const r = this.ref(name);
    return r !== null && r !== undefined;
  }
  /** True when tensor argument `name` is a JavaScript number (a wrapped scalar). */
  isScalar(name: string): boolean {
    return typeof this.ref(name) === 'number' || typeof this.ref(name) === 'boolean';
  }
  /**
   * The graph value of tensor argument `name`. A wrapped number becomes a scalar constant of `scalarDtype` (default:
   * the dtype of the op's first output).
   */
  input(name: string, scalarDtype?: OnnxDType): OnnxValue {
    const r = this.ref(name);
    if (r instanceof ValueRef) return this.c.value(r.id, this.call);
    if (typeof r === 'number' || typeof r === 'boolean') return this.scalar(Number(r), scalarDtype ?? this.out().dtype, name);
    this.fail(`argument '${name}' is None`);
  }
  /** The graph values of tensor-list argument `name` (null entries stay null). */
  inputs(name: string): (OnnxValue | null)[] {
    const r = this.call.args[name];
    if (!Array.isArray(r)) this.fail(`internal: argument '${name}' is not a tensor list`);
    return r.map((x) => (x instanceof ValueRef ? this.c.value(x.id, this.call) : null));
  }
  private id(name: string): number {
    const r = this.ref(name);
    if (!(r instanceof ValueRef)) this.fail(`internal: argument '${name}' is not a tensor`);
    return r.id;
  }
  /** The dims of tensor argument `name` ([] for a wrapped number). */
  shape(name: string): Dim[] {
    return this.isScalar(name) ? [] : this.c.dims(this.id(name));
  }
  /** The element type of tensor argument `name`; a wrapped number says 'int64' or 'float32' by its value. */
  dtype(name: string): OnnxDType {
    const r = this.ref(name);
    if (typeof r === 'boolean') return 'bool';
    if (typeof r === 'number') return Number.isInteger(r) ? 'int64' : 'float32';
    return this.c.dtype(this.id(name), this.call);
  }
  /** True when tensor argument `name` is known at export time (a parameter, or computed from constants). */
  isConstant(name: string): boolean {
    const r = this.ref(name);
    return !(r instanceof ValueRef) || this.c.isConstant(r.id);
  }
  /** The elements of constant tensor argument `name`, with the initializer that holds them. */
  constant(name: string): OnnxConstant {
    if (!this.isConstant(name) || this.isScalar(name)) this.fail(`argument '${name}' must be a constant tensor here`);
    const value = this.input(name);
    const init = this.c.g.initializers.get(value.name)!;
    return { value, shape: init.shape, dtype: init.dtype, data: init.data };
  }
  /**
   * A non-tensor argument (int, float, bool, list, string), as the forward passed it. It must be the same in the
   * traces at both batch sizes, unless the symbolic function declared it dynamic.
   */
  arg<T = any>(name: string): T {
    const v = this.call.args[name];
    if (!(name in this.call.args)) this.fail(`internal: the schema has no argument '${name}'`);
    if (!this.dynamicArgs.has(name) && this.call2 && !sameArg(v, this.call2.args[name]))
      this.fail(`argument '${name}' depends on the batch size (${JSON.stringify(v)} at batch ${this.c.t1.batch}, ${JSON.stringify(this.call2.args[name])} at batch ${this.c.t2.batch}); export with a fixed batchSize`);
    return v as T;
  }
  /** True when the op's schema has an argument `name`. */
  schemaHas(name: string): boolean {
    return this.call.schema.args.some((a) => a.name === name);
  }
  /** The recorded shapes of tensor argument `name` at both batch sizes (equal for a fixed batch). */
  shapesAtBothBatches(name: string): [number[], number[]] {
    const id = this.id(name);
    return [this.c.t1.values[id].shape, this.c.t2.values[id].shape];
  }
  /** The argument at both batch sizes (for a symbolic function that declared it dynamic). */
  argAtBothBatches<T = any>(name: string): [T, T] {
    return [this.call.args[name] as T, (this.call2 ?? this.call).args[name] as T];
  }

  // ------------------------------------------------------------------ outputs

  /** Dims and element type of output `i`. */
  out(i = 0): { shape: Dim[]; dtype: OnnxDType } {
    const id = this.call.outputs[i];
    return { shape: this.c.dims(id), dtype: this.c.dtype(id, this.call) };
  }
  /** Number of tensor outputs. */
  get outputs(): number {
    return this.call.outputs.length;
  }
  /** True when output `i` is used on the way to the graph output. */
  outputUsed(i: number): boolean {
    const id = this.call.outputs[i];
    return this.c.t1.ops.some((o, k) => this.c.live.has(k) && o.inputs.includes(id)) || this.c.t1.output === id;
  }

  // ------------------------------------------------------------------ emission

  /** Emits one node with one output (dims and type of the op's output `shape`/`dtype` unless given). */
  node(op: string, inputs: (OnnxValue | null)[], attrs: Record<string, OnnxAttr> = {}, out: { shape?: Dim[]; dtype?: OnnxDType } = {}): OnnxValue {
    const o = this.out();
    return this.c.g.node(this.path, op, inputs, [{ shape: out.shape ?? o.shape, dtype: out.dtype ?? o.dtype }], attrs)[0];
  }
  /** Emits one node with `n` outputs, described by the op's outputs 0..n-1 unless given. */
  nodeN(op: string, inputs: (OnnxValue | null)[], n: number, attrs: Record<string, OnnxAttr> = {}, outs?: { shape: Dim[]; dtype: OnnxDType }[]): OnnxValue[] {
    return this.c.g.node(this.path, op, inputs, outs ?? Array.from({ length: n }, (_, i) => this.out(i)), attrs);
  }
  /** A constant tensor (an initializer named `<module path>.<hint>`). */
  const(values: ArrayLike<number | bigint>, shape: number[], dtype: OnnxDType, hint = 'const'): OnnxValue {
    return this.c.g.constant(this.path ? `${this.path}.${hint}` : hint, values, shape, dtype);
  }
  /** A constant derived from another, named exactly `name` (made unique): `fc.weight_t`. */
  constNamed(name: string, data: OnnxTensorData, shape: number[], dtype: OnnxDType): OnnxValue {
    return this.c.g.initializer(name, dtype, shape, data);
  }
  scalar(value: number, dtype: OnnxDType, hint = 'const'): OnnxValue {
    return this.const([dtype === 'int64' ? BigInt(Math.trunc(value)) : value], [], dtype, hint);
  }
  /** A 1-D int64 constant (axes, sizes, pads). */
  ints(values: number[], hint = 'const'): OnnxValue {
    return this.const(values, [values.length], 'int64', hint);
  }
  /** `v` as `dtype` (no node when it already is). */
  cast(v: OnnxValue, dtype: OnnxDType): OnnxValue {
    if (v.dtype === dtype) return v;
    return this.node('Cast', [v], { to: ONNX_TYPE_CODES[dtype] }, { shape: v.shape, dtype });
  }
  /** The shape of output `i` as a Reshape target: constants, with -1 or a computation for batch-dependent sizes. */
  reshapeTarget(i = 0): OnnxValue {
    const id = this.call.outputs[i];
    return this.c.shapeValue(this.path, this.c.t1.values[id].shape, this.c.t2.values[id].shape, true);
  }
  /** The shape of output `i` written out in full (for Expand and ConstantOfShape-like uses). */
  explicitShape(i = 0): OnnxValue {
    const id = this.call.outputs[i];
    return this.c.shapeValue(this.path, this.c.t1.values[id].shape, this.c.t2.values[id].shape, false);
  }
}

/** TensorProto element type codes. */
export const ONNX_TYPE_CODES: Record<OnnxDType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float64: 11 };

/**
 * Traces `model`'s forward on an example input and builds its ONNX graph (see the top of this file). Initializers
 * hold copies of the parameters; the model is left as it was (modes, quantizers, RNG state).
 */
export function traceOnnx(model: Module, opts: TraceOnnxOptions): OnnxGraph {
  const params = new Map<Handle, { name: string; tensor: Tensor }>();
  for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) if (!params.has(handleOf(t))) params.set(handleOf(t), { name, tensor: t });
  const batches = opts.batchSize !== undefined ? [opts.batchSize] : [2, 3];
  const traces = batches.map((b) => {
    const x = exampleInput([b, ...opts.inputShape], opts.inputDtype);
    try {
      return inExportMode(model, () => traceOnce(model, x, params));
    } finally {
      x.dispose();
    }
  });
  const conv = new TraceConverter(traces[0], traces[traces.length - 1], opts.opset);
  return conv.convert(opts.inputName, opts.inputDtype, opts.outputName);
}
