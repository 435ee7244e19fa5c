// Building an ONNX graph from a module tree: the eval-mode computation of a module, written op by op as plain data
// (nodes, initializers, value shapes). Serialising the graph to a file is tsdistill/export's job; this file only knows
// the module tree and the ONNX operator set.
//
// Each layer that can be exported implements `exportOnnx(g, ...inputs)`: it receives one `OnnxValue` per forward
// input and returns the output value(s), emitting nodes through the builder `g`. A model whose forward is custom code
// (residual blocks, an activation on the logits, pooling written with ops) writes the same computation with the
// builder's op helpers and `g.call(child, x)` for its submodules, so the graph follows the forward pass line by line.
// The builder tracks static shapes (the batch dimension stays symbolic), so layers can check what they receive and
// pick ops by rank, and every error names the module path, its class, the op and the shapes at fault.
//
// The graph is the eval-mode computation whatever the module's `training` flag: BatchNorm uses its running
// statistics, Dropout is the identity.
import { Tensor, noGrad, tidy } from '../torch';
import type { Module } from './module';

/** A dimension: a size, or a name for a size known only at run time (the batch). */
export type Dim = number | string;
/** Graph inputs are float32 or int64; quantized models add int8 / uint8 / int32 initializers. */
export type OnnxDType = 'float32' | 'int64' | 'int8' | 'uint8' | 'int32';

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

export interface OnnxInitializer {
  name: string;
  dtype: OnnxDType;
  shape: number[];
  data: Float32Array | BigInt64Array | Int8Array | Uint8Array | Int32Array;
}

/** The graph as plain data, ready to be serialised (tsdistill/export). */
export interface OnnxGraph {
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  nodes: OnnxNode[];
  initializers: Map<string, OnnxInitializer>;
  opset: number;
}

const shapeStr = (s: Dim[]) => `[${s.join(', ')}]`;
const prod = (a: number[]) => a.reduce((x, y) => x * y, 1);

/** A dimension computed from unknown ones: unknown too. */
const UNKNOWN = '?';

/** Where ONNX export failed: the message already names the module path and class. */
export class OnnxExportError extends Error {
  constructor(message: string, readonly modulePath: string, readonly moduleClass: string) {
    super(message);
    this.name = 'OnnxExportError';
  }
}

export interface ConvSpec {
  stride: number[];
  /** Per spatial dimension (symmetric), or PyTorch's 'same' / 'valid'. */
  padding: number[] | 'same' | 'valid';
  dilation: number[];
  groups: number;
}

export interface PoolSpec {
  kernel: number[];
  stride: number[];
  padding: number[];
  dilation?: number[];
  ceilMode?: boolean;
  /** AveragePool: count padded zeros in the divisor (PyTorch's default). */
  countIncludePad?: boolean;
}

/**
 * Accumulates nodes and initializers while modules export themselves. Created by the exporter with the root module;
 * layers use `call` for children, `param` for their tensors and the op helpers for computation.
 */
export class OnnxGraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers = new Map<string, OnnxInitializer>();
  readonly inputs: OnnxValue[] = [];
  readonly outputs: OnnxValue[] = [];
  private readonly paths = new Map<Module, string>();
  private readonly stack: { module: Module; path: string }[] = [];
  private readonly names = new Set<string>();
  private readonly params = new Map<Tensor, OnnxValue>();
  private readonly nodeNames = new Set<string>();

  constructor(readonly root: Module, readonly opset: number) {
    for (const [p, m] of root.namedModules()) this.paths.set(m, p);
  }

  /** The path of the module being exported ('' at the root). */
  get path(): string {
    return this.stack.length ? this.stack[this.stack.length - 1].path : '';
  }
  /** The module being exported. */
  get module(): Module {
    return this.stack.length ? this.stack[this.stack.length - 1].module : this.root;
  }

  /** `Conv2d at 'layer1.0.conv1'`, for messages. */
  where(): string {
    const p = this.path;
    return `${this.module.constructor.name} at ${p === '' ? 'the root' : `'${p}'`}`;
  }
  /** An error naming the module being exported, its class and `what`. */
  fail(what: string): never {
    throw new OnnxExportError(`ONNX export: ${this.where()}: ${what}`, this.path, this.module.constructor.name);
  }

  private unique(base: string, used: Set<string>): string {
    let n = base;
    for (let i = 1; used.has(n); i++) n = `${base}_${i}`;
    used.add(n);
    return n;
  }
  private valueName(hint: string): string {
    return this.unique(this.path ? `${this.path}/${hint}` : hint, this.names);
  }

  // ------------------------------------------------------------------ graph inputs, outputs, children

  /** Declares a graph input. */
  input(name: string, dtype: OnnxDType, shape: Dim[]): OnnxValue {
    if (this.names.has(name)) this.fail(`input name '${name}' is already used`);
    this.names.add(name);
    const v = { name, dtype, shape: shape.slice() };
    this.inputs.push(v);
    return v;
  }

  /** Declares `v` a graph output under `name` (an Identity node renames it when it already has another name). */
  output(v: OnnxValue, name: string): OnnxValue {
    let out: OnnxValue;
    const producer = this.nodes.find((n) => n.outputs.includes(v.name));
    const isInputOrInit = this.inputs.some((i) => i.name === v.name) || this.initializers.has(v.name);
    if (producer && !isInputOrInit && !this.names.has(name) && !this.outputs.some((o) => o.name === v.name)) {
      // rename the producer's output and every later use of it
      this.names.delete(v.name);
      this.names.add(name);
      for (const n of this.nodes) {
        n.inputs = n.inputs.map((x) => (x === v.name ? name : x));
        n.outputs = n.outputs.map((x) => (x === v.name ? name : x));
      }
      out = { name, dtype: v.dtype, shape: v.shape };
    } else {
      if (this.names.has(name)) this.fail(`output name '${name}' is already used by another value`);
      this.names.add(name);
      this.nodes.push({ op: 'Identity', name: this.unique(`${name}/Identity`, this.nodeNames), inputs: [v.name], outputs: [name], attrs: {} });
      out = { name, dtype: v.dtype, shape: v.shape };
    }
    this.outputs.push(out);
    return out;
  }

  /**
   * Exports the child module `m` (a submodule of the root) on `inputs` through its `exportOnnx`; errors name its path
   * and class. A module without `exportOnnx` is an error naming it.
   */
  call(m: Module, ...inputs: OnnxValue[]): any {
    const parent = this.path;
    const path = this.paths.get(m) ?? `${parent ? parent + '.' : ''}<unregistered ${m.constructor.name}>`;
    this.stack.push({ module: m, path });
    try {
      if (typeof m.exportOnnx !== 'function')
        this.fail(`${m.constructor.name} has no ONNX export (no exportOnnx method); implement exportOnnx(g, ...inputs) for it, or replace the module`);
      return m.exportOnnx(this, ...inputs);
    } catch (e) {
      if (e instanceof OnnxExportError || !(e instanceof Error)) throw e;
      throw new OnnxExportError(`ONNX export: ${this.where()}: ${e.message}`, path, m.constructor.name);
    } finally {
      this.stack.pop();
    }
  }

  // ------------------------------------------------------------------ tensors

  /** An initializer holding the module tensor `t`, named `<module path>.<name>` (the state_dict key). Shared tensors map to one initializer. */
  param(t: Tensor, name: string): OnnxValue {
    const seen = this.params.get(t);
    if (seen) return seen;
    const key = this.unique(this.path ? `${this.path}.${name}` : name, this.names);
    const data = noGrad(() => t.data());
    let arr: Float32Array | BigInt64Array;
    let dtype: OnnxDType;
    if (data instanceof BigInt64Array) {
      arr = data;
      dtype = 'int64';
    } else if (data instanceof Float32Array) {
      arr = data;
      dtype = 'float32';
    } else if (data instanceof Float64Array || data instanceof Int32Array || data instanceof Int16Array || data instanceof Int8Array || data instanceof Uint8Array) {
      arr = Float32Array.from(data as ArrayLike<number>);
      dtype = 'float32';
    } else this.fail(`tensor '${name}' has dtype ${t.dtype}, which the exporter cannot store`);
    const v: OnnxValue = { name: key, dtype, shape: t.shape };
    this.initializers.set(key, { name: key, dtype, shape: t.shape, data: arr });
    this.params.set(t, v);
    return v;
  }

  /** A new initializer from values (`hint` is prefixed with the module path). */
  constant(hint: string, values: ArrayLike<number>, shape: number[], dtype: OnnxDType = 'float32'): OnnxValue {
    if (prod(shape) !== values.length) this.fail(`constant '${hint}': ${values.length} values for shape ${shapeStr(shape)}`);
    const name = this.unique(this.path ? `${this.path}.${hint}` : hint, this.names);
    const data = dtype === 'int64' ? BigInt64Array.from(Array.from(values, (x) => BigInt(x))) : Float32Array.from(values);
    this.initializers.set(name, { name, dtype, shape: shape.slice(), data });
    return { name, dtype, shape: shape.slice() };
  }

  /** Emits one node with one output of shape `shape`; `null` inputs are omitted optional inputs. */
  node(op: string, inputs: (OnnxValue | null)[], shape: Dim[], attrs: Record<string, OnnxAttr> = {}, dtype?: OnnxDType): OnnxValue {
    const name = this.valueName(op);
    const nodeName = this.unique(this.path ? `${this.path}/${op}` : op, this.nodeNames);
    // trailing omitted inputs are dropped, inner ones become ''
    const ins = inputs.map((v) => (v === null ? '' : v.name));
    while (ins.length && ins[ins.length - 1] === '') ins.pop();
    this.nodes.push({ op, name: nodeName, inputs: ins, outputs: [name], attrs });
    return { name, shape: shape.slice(), dtype: dtype ?? inputs.find((v) => v !== null)?.dtype ?? 'float32' };
  }

  // ------------------------------------------------------------------ checks

  /** Fails unless `x` has one of the ranks in `ranks`. */
  expectRank(x: OnnxValue, ranks: number[], what: string): void {
    if (!ranks.includes(x.shape.length)) this.fail(`${what} expects a ${ranks.join('-D or ')}-D input, got shape ${shapeStr(x.shape)}`);
  }
  private staticDim(d: Dim, what: string, x: OnnxValue): number {
    if (typeof d !== 'number') this.fail(`${what} needs a static size there, got shape ${shapeStr(x.shape)}`);
    return d;
  }

  // ------------------------------------------------------------------ ops

  /** y = x Wᵀ + b: Gemm for 2-D input, MatMul (+ Add) otherwise. */
  linear(x: OnnxValue, weight: Tensor, bias: Tensor | null): OnnxValue {
    const [outF, inF] = weight.shape;
    if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inF)
      this.fail(`Linear expects the last dimension to be ${inF}, got shape ${shapeStr(x.shape)}`);
    const outShape = [...x.shape.slice(0, -1), outF];
    if (x.shape.length === 2) {
      const w = this.param(weight, 'weight');
      const b = bias ? this.param(bias, 'bias') : null;
      return this.node('Gemm', [x, w, b], outShape, { transB: 1 });
    }
    const wt = tidy(() => noGrad(() => weight.t().contiguous()));
    let y: OnnxValue;
    try {
      y = this.node('MatMul', [x, this.param(wt, 'weight_t')], outShape);
    } finally {
      wt.dispose();
    }
    return bias ? this.node('Add', [y, this.param(bias, 'bias')], outShape) : y;
  }

  /** N-d convolution, x [N, C, ...spatial]; weight [outC, C/groups, ...kernel]. */
  conv(x: OnnxValue, weight: Tensor, bias: Tensor | null, spec: ConvSpec): OnnxValue {
    const k = weight.shape.slice(2);
    const n = k.length;
    this.expectRank(x, [n + 2], `Conv${n}d`);
    const inC = weight.shape[1] * spec.groups;
    if (x.shape[1] !== inC) this.fail(`Conv${n}d expects ${inC} input channels, got shape ${shapeStr(x.shape)}`);
    let pads: number[];
    if (spec.padding === 'valid') pads = Array(2 * n).fill(0);
    else if (spec.padding === 'same') {
      // PyTorch puts the odd element of the padding at the end
      const total = k.map((kk, i) => spec.dilation[i] * (kk - 1));
      pads = [...total.map((t) => Math.floor(t / 2)), ...total.map((t) => t - Math.floor(t / 2))];
    } else pads = [...spec.padding, ...spec.padding];
    const spatial = x.shape.slice(2).map((d, i) =>
      typeof d === 'number' ? Math.floor((d + pads[i] + pads[i + n] - spec.dilation[i] * (k[i] - 1) - 1) / spec.stride[i]) + 1 : UNKNOWN,
    );
    if (spatial.some((d) => typeof d === 'number' && d < 1))
      this.fail(`Conv${n}d: input ${shapeStr(x.shape)} is smaller than the kernel ${shapeStr(k)} (with padding ${shapeStr(pads)})`);
    const w = this.param(weight, 'weight');
    const b = bias ? this.param(bias, 'bias') : null;
    return this.node('Conv', [x, w, b], [x.shape[0], weight.shape[0], ...spatial], {
      kernel_shape: k, strides: spec.stride, pads, dilations: spec.dilation, group: spec.groups,
    });
  }

  /** Inference-mode batch normalisation over dimension 1 with running statistics; missing weight/bias mean 1/0. */
  batchNorm(x: OnnxValue, p: { weight: Tensor | null; bias: Tensor | null; mean: Tensor; var: Tensor; eps: number }): OnnxValue {
    const c = p.mean.shape[0];
    if (x.shape[1] !== c) this.fail(`BatchNorm expects ${c} channels in dimension 1, got shape ${shapeStr(x.shape)}`);
    const scale = p.weight ? this.param(p.weight, 'weight') : this.constant('weight', new Float32Array(c).fill(1), [c]);
    const shift = p.bias ? this.param(p.bias, 'bias') : this.constant('bias', new Float32Array(c), [c]);
    return this.node('BatchNormalization', [x, scale, shift, this.param(p.mean, 'running_mean'), this.param(p.var, 'running_var')], x.shape, {
      epsilon: { float: p.eps },
    });
  }

  /** Layer normalisation over the trailing `normalizedShape` dimensions (LayerNormalization, opset 17). */
  layerNorm(x: OnnxValue, normalizedShape: number[], weight: Tensor | null, bias: Tensor | null, eps: number): OnnxValue {
    if (this.opset < 17) this.fail(`LayerNormalization needs opset 17 or later (exporting at opset ${this.opset})`);
    const tail = x.shape.slice(-normalizedShape.length);
    if (tail.length !== normalizedShape.length || tail.some((d, i) => d !== normalizedShape[i]))
      this.fail(`LayerNorm over ${shapeStr(normalizedShape)} does not match the input's trailing dimensions, shape ${shapeStr(x.shape)}`);
    const n = prod(normalizedShape);
    const scale = weight ? this.param(weight, 'weight') : this.constant('weight', new Float32Array(n).fill(1), normalizedShape);
    const shift = bias ? this.param(bias, 'bias') : this.constant('bias', new Float32Array(n), normalizedShape);
    return this.node('LayerNormalization', [x, scale, shift], x.shape, { axis: -normalizedShape.length, epsilon: { float: eps } });
  }

  /** Rows of `weight` picked by the int64 indices `indices` (Embedding). */
  gather(weight: Tensor, indices: OnnxValue): OnnxValue {
    if (indices.dtype !== 'int64') this.fail(`Embedding expects int64 indices, got ${indices.dtype} of shape ${shapeStr(indices.shape)}`);
    return this.node('Gather', [this.param(weight, 'weight'), indices], [...indices.shape, weight.shape[1]], { axis: 0 }, 'float32');
  }

  relu(x: OnnxValue): OnnxValue {
    return this.node('Relu', [x], x.shape);
  }
  sigmoid(x: OnnxValue): OnnxValue {
    return this.node('Sigmoid', [x], x.shape);
  }
  tanh(x: OnnxValue): OnnxValue {
    return this.node('Tanh', [x], x.shape);
  }
  leakyRelu(x: OnnxValue, slope: number): OnnxValue {
    return this.node('LeakyRelu', [x], x.shape, { alpha: { float: slope } });
  }
  /** min(max(x, lo), hi) (ReLU6: 0, 6). */
  clip(x: OnnxValue, lo: number, hi: number): OnnxValue {
    return this.node('Clip', [x, this.constant('clip_min', [lo], []), this.constant('clip_max', [hi], [])], x.shape);
  }
  /** x · sigmoid(x). */
  silu(x: OnnxValue): OnnxValue {
    return this.mul(x, this.sigmoid(x));
  }
  /** GELU, exact (x/2 · (1 + erf(x/√2))) or with the tanh approximation, written with opset-13 ops. */
  gelu(x: OnnxValue, approximate: 'none' | 'tanh'): OnnxValue {
    let inner: OnnxValue;
    if (approximate === 'none') {
      inner = this.node('Erf', [this.node('Mul', [x, this.constant('inv_sqrt2', [Math.SQRT1_2], [])], x.shape)], x.shape);
    } else {
      const cube = this.node('Mul', [this.node('Mul', [x, x], x.shape), x], x.shape);
      const s = this.node('Add', [x, this.node('Mul', [cube, this.constant('gelu_c', [0.044715], [])], x.shape)], x.shape);
      inner = this.tanh(this.node('Mul', [s, this.constant('sqrt_2_over_pi', [Math.sqrt(2 / Math.PI)], [])], x.shape));
    }
    const onePlus = this.node('Add', [inner, this.constant('one', [1], [])], x.shape);
    return this.node('Mul', [this.node('Mul', [x, onePlus], x.shape), this.constant('half', [0.5], [])], x.shape);
  }

  private broadcast(a: OnnxValue, b: OnnxValue, op: string): Dim[] {
    const n = Math.max(a.shape.length, b.shape.length);
    const out: Dim[] = [];
    for (let i = 0; i < n; i++) {
      const da = a.shape[a.shape.length - n + i] ?? 1;
      const db = b.shape[b.shape.length - n + i] ?? 1;
      if (da === db || db === 1) out.push(da);
      else if (da === 1) out.push(db);
      else this.fail(`${op}: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not broadcast`);
    }
    return out;
  }
  /** Element-wise sum with broadcasting (residual connections). */
  add(a: OnnxValue, b: OnnxValue): OnnxValue {
    return this.node('Add', [a, b], this.broadcast(a, b, 'Add'));
  }
  mul(a: OnnxValue, b: OnnxValue): OnnxValue {
    return this.node('Mul', [a, b], this.broadcast(a, b, 'Mul'));
  }
  /** Batched matrix product of the last two dimensions. */
  matmul(a: OnnxValue, b: OnnxValue): OnnxValue {
    const [m, k1] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (a.shape.length < 2 || b.shape.length < 2 || k1 !== k2) this.fail(`MatMul: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not multiply`);
    const batch = this.broadcast({ ...a, shape: a.shape.slice(0, -2) }, { ...b, shape: b.shape.slice(0, -2) }, 'MatMul');
    return this.node('MatMul', [a, b], [...batch, m, n]);
  }
  transpose(x: OnnxValue, perm: number[]): OnnxValue {
    return this.node('Transpose', [x], perm.map((p) => x.shape[p]), { perm });
  }
  /** Reshape to `shape`; 0 copies the input's dimension at that index, -1 is inferred (ONNX semantics). */
  reshape(x: OnnxValue, shape: number[], outShape: Dim[]): OnnxValue {
    return this.node('Reshape', [x, this.constant('shape', shape, [shape.length], 'int64')], outShape);
  }
  softmax(x: OnnxValue, dim: number): OnnxValue {
    return this.node('Softmax', [x], x.shape, { axis: dim });
  }
  logSoftmax(x: OnnxValue, dim: number): OnnxValue {
    return this.node('LogSoftmax', [x], x.shape, { axis: dim });
  }

  /** PyTorch's flatten(startDim, endDim): Flatten when it ends at the last dimension and starts at 1, else Reshape. */
  flatten(x: OnnxValue, startDim: number, endDim: number): OnnxValue {
    const r = x.shape.length;
    const s = startDim < 0 ? startDim + r : startDim;
    const e = endDim < 0 ? endDim + r : endDim;
    if (r === 0) return this.reshape(x, [1], [1]);
    if (s < 0 || e >= r || s > e) this.fail(`flatten(${startDim}, ${endDim}) is out of range for shape ${shapeStr(x.shape)}`);
    const merged = x.shape.slice(s, e + 1);
    const mergedDim: Dim = merged.every((d) => typeof d === 'number') ? prod(merged as number[]) : UNKNOWN;
    const outShape = [...x.shape.slice(0, s), mergedDim, ...x.shape.slice(e + 1)];
    if (s === e) return this.node('Identity', [x], x.shape);
    if (e === r - 1 && s === 1) return this.node('Flatten', [x], outShape, { axis: 1 });
    // Reshape: leading dimensions copied (0), the merged one inferred (-1), trailing ones static
    const target = [...x.shape.slice(0, s).map(() => 0), -1, ...x.shape.slice(e + 1).map((d) => this.staticDim(d, 'flatten', x))];
    if (merged.some((d) => typeof d !== 'number') && x.shape.slice(0, s).some((d) => typeof d !== 'number'))
      this.fail(`flatten(${startDim}, ${endDim}) of shape ${shapeStr(x.shape)}: two dynamic dimensions cannot both be kept and merged`);
    return this.reshape(x, target, outShape);
  }

  private poolShape(x: OnnxValue, p: PoolSpec, what: string): Dim[] {
    this.expectRank(x, [p.kernel.length + 2], what);
    const n = p.kernel.length;
    const dil = p.dilation ?? Array(n).fill(1);
    return [
      ...x.shape.slice(0, 2),
      ...x.shape.slice(2).map((d, i) => {
        if (typeof d !== 'number') return UNKNOWN;
        const span = d + 2 * p.padding[i] - dil[i] * (p.kernel[i] - 1) - 1;
        let o = (p.ceilMode ? Math.ceil(span / p.stride[i]) : Math.floor(span / p.stride[i])) + 1;
        // PyTorch: the last window must start inside the input or the left padding
        if (p.ceilMode && (o - 1) * p.stride[i] >= d + p.padding[i]) o--;
        if (o < 1) this.fail(`${what}: input ${shapeStr(x.shape)} is smaller than the window ${shapeStr(p.kernel)}`);
        return o;
      }),
    ];
  }
  maxPool(x: OnnxValue, p: PoolSpec): OnnxValue {
    const n = p.kernel.length;
    return this.node('MaxPool', [x], this.poolShape(x, p, 'MaxPool'), {
      kernel_shape: p.kernel, strides: p.stride, pads: [...p.padding, ...p.padding], dilations: p.dilation ?? Array(n).fill(1), ceil_mode: p.ceilMode ? 1 : 0,
    });
  }
  avgPool(x: OnnxValue, p: PoolSpec): OnnxValue {
    if (p.ceilMode) this.fail('AveragePool with ceilMode is not supported by the exporter (PyTorch and ONNX Runtime differ on partial windows)');
    return this.node('AveragePool', [x], this.poolShape(x, p, 'AveragePool'), {
      kernel_shape: p.kernel, strides: p.stride, pads: [...p.padding, ...p.padding], count_include_pad: p.countIncludePad === false ? 0 : 1,
    });
  }
  /**
   * Adaptive average pooling of [N, C, H, W] to `size`: 1×1 is GlobalAveragePool; sizes that divide the input evenly
   * are an AveragePool with kernel = stride = input / output; others have no fixed-window equivalent and are refused.
   */
  adaptiveAvgPool(x: OnnxValue, size: [number | null, number | null]): OnnxValue {
    this.expectRank(x, [4], 'AdaptiveAvgPool2d');
    const [h, w] = [this.staticDim(x.shape[2], 'AdaptiveAvgPool2d', x), this.staticDim(x.shape[3], 'AdaptiveAvgPool2d', x)];
    const oh = size[0] ?? h;
    const ow = size[1] ?? w;
    if (oh === 1 && ow === 1) return this.node('GlobalAveragePool', [x], [x.shape[0], x.shape[1], 1, 1]);
    if (oh === h && ow === w) return this.node('Identity', [x], x.shape);
    if (h % oh !== 0 || w % ow !== 0)
      this.fail(`adaptive average pooling of ${h}×${w} to ${oh}×${ow} has uneven windows and no ONNX equivalent (input shape ${shapeStr(x.shape)}); the output size must divide the input size`);
    const k = [h / oh, w / ow];
    return this.node('AveragePool', [x], [x.shape[0], x.shape[1], oh, ow], { kernel_shape: k, strides: k });
  }

  /** The finished graph (nodes and initializers are the builder's own arrays). */
  graph(): OnnxGraph {
    return { inputs: this.inputs, outputs: this.outputs, nodes: this.nodes, initializers: this.initializers, opset: this.opset };
  }
}
