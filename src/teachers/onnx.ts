// ONNX teachers through onnxruntime-node (CPU execution provider by default; CUDA when asked for and present).
//
// The model file is decoded with onnx-proto once: that gives the graph's inputs and outputs with their types, and the
// names of every value the graph computes. Any of those values can be asked for by name (feature matches on an ONNX
// teacher): the model is rewritten with the names added as graph outputs — typed from value_info when the file has it,
// untyped otherwise (onnxruntime infers the type) — and a session is made for the rewritten model. Batches are checked
// against the input's declared dtype and shape; a model with a fixed batch size is run in chunks of that size (the last
// one zero-padded). The batch runs on onnxruntime's own threads, so the event loop stays free meanwhile.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type * as ort from 'onnxruntime-node';
import type { onnx } from 'onnx-proto';
import { DType, Tensor, dispose, getNumThreads, ops, tensor, tidy } from '../torch';
import { closest } from '../nn';
import type { Teacher } from './teacher';
import { fileInModelFolder, joinChunks, shapeText, unknownName } from './teacher';

// onnxruntime-node and the ONNX protobuf classes load on first use: the rest of the toolkit (training, LLM commands)
// starts without them.
const runtime = (): typeof ort => require('onnxruntime-node');
const proto = (): typeof onnx => require('onnx-proto').onnx;

export interface OnnxTeacherOptions {
  /** The graph input fed with the batch (default: the only input). */
  input?: string;
  /** The output distilled as logits (default: the first output). */
  output?: string;
  /** Inputs per onnxruntime call (default: the whole batch, or the model's fixed batch size). */
  batchSize?: number;
  /** onnxruntime execution providers in order of preference (default ['cpu']; e.g. ['cuda', 'cpu']). */
  executionProviders?: string[];
  /** onnxruntime intra-op threads (default: libtorch's thread count). */
  threads?: number;
}

const ELEM: Record<number, { dtype: DType; ort: ort.Tensor.Type } | undefined> = {
  1: { dtype: 'float32', ort: 'float32' },
  2: { dtype: 'uint8', ort: 'uint8' },
  3: { dtype: 'int8', ort: 'int8' },
  6: { dtype: 'int32', ort: 'int32' },
  7: { dtype: 'int64', ort: 'int64' },
  9: { dtype: 'bool', ort: 'bool' },
  11: { dtype: 'float64', ort: 'float64' },
};
const ELEM_NAME: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool', 10: 'float16', 11: 'float64', 16: 'bfloat16' };

interface IoInfo {
  name: string;
  elemType: number;
  /** Sizes, or names for symbolic dimensions ('?' when unnamed). */
  shape: (number | string)[] | null;
}

function ioInfo(v: onnx.IValueInfoProto): IoInfo {
  const tt = v.type?.tensorType;
  const dims = tt?.shape?.dim;
  return {
    name: v.name ?? '',
    elemType: tt?.elemType ?? 0,
    shape: dims ? dims.map((d) => (d.dimValue !== null && d.dimValue !== undefined && String(d.dimValue) !== '0' ? Number(d.dimValue) : d.dimParam || '?')) : null,
  };
}

interface Graph {
  node: onnx.INodeProto[];
  input: onnx.IValueInfoProto[];
  output: onnx.IValueInfoProto[];
  initializer: onnx.ITensorProto[];
  valueInfo: onnx.IValueInfoProto[];
}
function graphOf(m: onnx.ModelProto): Graph | null {
  const g = m.graph;
  if (!g) return null;
  return { node: g.node ?? [], input: g.input ?? [], output: g.output ?? [], initializer: g.initializer ?? [], valueInfo: g.valueInfo ?? [] };
}
const nodeOutputs = (g: Graph): string[] => g.node.flatMap((n) => (n.output ?? []).filter((o): o is string => !!o));

export class OnnxTeacher implements Teacher {
  readonly kind = 'onnx';
  readonly logits: string;
  readonly input: IoInfo;
  private readonly outputs: IoInfo[];
  private readonly values: string[];
  private readonly hash: string;
  private session: ort.InferenceSession | null;
  private sessionOutputs: Set<string>;
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;

  private constructor(readonly file: string, private readonly model: onnx.ModelProto, bytes: Uint8Array, session: ort.InferenceSession, o: OnnxTeacherOptions, input: IoInfo, output: string, sessionOptions: ort.InferenceSession.SessionOptions) {
    this.session = session;
    this.sessionOptions = sessionOptions;
    this.input = input;
    this.logits = output;
    const g = graphOf(model)!;
    this.outputs = g.output.map(ioInfo);
    this.sessionOutputs = new Set(this.outputs.map((x) => x.name));
    const inits = new Set(g.initializer.map((t) => t.name));
    const names = new Set<string>();
    for (const i of g.input) if (i.name && !inits.has(i.name)) names.add(i.name);
    for (const out of nodeOutputs(g)) names.add(out);
    for (const v of g.valueInfo) if (v.name) names.add(v.name);
    this.values = [...names];
    this.hash = crypto.createHash('sha256').update(bytes).digest('hex');
    this.batchSize = o.batchSize ?? (typeof input.shape?.[0] === 'number' ? input.shape[0] : undefined);
  }
  private readonly batchSize: number | undefined;

  /** Loads an ONNX file and makes a session for it; errors name the file and what failed. */
  static async load(file: string, o: OnnxTeacherOptions = {}): Promise<OnnxTeacher> {
    const known = ['input', 'output', 'batchSize', 'executionProviders', 'threads'];
    for (const k of Object.keys(o)) if (!known.includes(k)) throw new Error(`onnx teacher: unknown option '${k}'${closest(k, known, 1).length ? ` (did you mean '${closest(k, known, 1)[0]}'?)` : ''}`);
    let bytes: Uint8Array;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      throw new Error(`${file}: cannot read the ONNX teacher: ${(e as Error).message}`);
    }
    let model: onnx.ModelProto;
    try {
      model = proto().ModelProto.decode(bytes);
    } catch (e) {
      throw new Error(`${file}: not a valid ONNX model (${bytes.length} bytes; corrupt or truncated?): protobuf decoding failed: ${(e as Error).message}`);
    }
    if (inlineExternalData(model, file)) bytes = proto().ModelProto.encode(model).finish();
    const graph = graphOf(model);
    if (!graph || graph.node.length === 0 || graph.output.length === 0)
      throw new Error(`${file}: not a valid ONNX model (${bytes.length} bytes): ${!graph ? 'no graph' : graph.node.length === 0 ? 'the graph has no nodes' : 'the graph has no outputs'}`);
    if (o.batchSize !== undefined && (!Number.isInteger(o.batchSize) || o.batchSize < 1)) throw new Error(`${file}: batchSize must be a positive integer, got ${o.batchSize}`);
    const inits = new Set(graph.initializer.map((t) => t.name));
    const inputs = graph.input.filter((i) => !inits.has(i.name)).map(ioInfo);
    let input: IoInfo | undefined;
    if (o.input !== undefined) {
      input = inputs.find((i) => i.name === o.input);
      if (!input) throw new Error(`${file}: the model has no input '${o.input}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    } else if (inputs.length === 1) input = inputs[0];
    else throw new Error(`${file}: the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); name the one fed with the data (input: ...)`);
    const others = inputs.filter((i) => i !== input);
    if (others.length) throw new Error(`${file}: the model has further inputs (${others.map((i) => i.name).join(', ')}); only single-input teachers are supported`);
    const outs = graph.output.map((x) => x.name ?? '');
    const output = o.output ?? outs[0];
    if (!outs.includes(output)) {
      const all = nodeOutputs(graph);
      throw new Error(`${file}: output '${output}' is not an output of the model (outputs: ${outs.join(', ')})${all.includes(output) ? '' : `; closest value names: ${closest(output, all, 5).join(', ')}`}`);
    }
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: o.executionProviders ?? ['cpu'],
      intraOpNumThreads: o.threads ?? getNumThreads().torch,
      interOpNumThreads: 1,
    };
    const session = await createSession(file, bytes, sessionOptions);
    return new OnnxTeacher(file, model, bytes, session, o, input, output, sessionOptions);
  }

  id(): string {
    return `onnx:${this.hash}:${this.input.name}:${this.logits}`;
  }
  outputNames(): string[] {
    return this.outputs.map((x) => x.name);
  }
  valueNames(): string[] {
    return this.values.slice();
  }

  /** The model bytes with `extra` value names added as graph outputs. */
  private withOutputs(extra: string[]): Uint8Array {
    const m = proto().ModelProto.decode(proto().ModelProto.encode(this.model).finish());
    const g = graphOf(m)!;
    const typed = new Map(g.valueInfo.map((v) => [v.name, v]));
    m.graph!.output = [...g.output, ...extra.map((name) => typed.get(name) ?? proto().ValueInfoProto.create({ name }))];
    return proto().ModelProto.encode(m).finish();
  }

  private async ensureOutputs(names: string[]): Promise<ort.InferenceSession> {
    const missing = names.filter((n) => !this.sessionOutputs.has(n));
    if (!missing.length) return this.session!;
    for (const n of missing) if (!this.values.includes(n)) throw unknownName(`${this.file}`, n, this.values);
    const extra = [...new Set([...this.sessionOutputs].filter((n) => !this.outputs.some((x) => x.name === n)).concat(missing))];
    const session = await createSession(`${this.file} (with outputs ${extra.join(', ')})`, this.withOutputs(extra), this.sessionOptions);
    await this.session?.release();
    this.session = session;
    this.sessionOutputs = new Set([...this.outputs.map((x) => x.name), ...extra]);
    return session;
  }

  /** Checks a batch against the declared input; the message names both shapes (and dtypes). */
  checkInput(x: Tensor): void {
    const want = this.input;
    const wantType = ELEM_NAME[want.elemType] ?? `type ${want.elemType}`;
    const decl = want.shape ? shapeText(want.shape) : '(any shape)';
    const bad = (why: string) => new Error(`${this.file}: input '${want.name}' expects ${wantType} ${decl}, got ${x.dtype} ${shapeText(x.shape)}: ${why}`);
    if (!ELEM[want.elemType]) throw bad(`input type ${wantType} is not supported`);
    if (ELEM[want.elemType]!.dtype !== x.dtype) throw bad('the dtypes differ');
    if (!want.shape) return;
    if (want.shape.length !== x.ndim) throw bad(`rank ${x.ndim} instead of ${want.shape.length}`);
    want.shape.forEach((d, i) => {
      if (i > 0 && typeof d === 'number' && d !== x.shape[i]) throw bad(`dimension ${i} is ${x.shape[i]}, not ${d}`);
    });
  }

  async run(x: Tensor, names: string[]): Promise<Record<string, Tensor>> {
    this.checkInput(x);
    const wanted = [...new Set(names)];
    const session = await this.ensureOutputs(wanted);
    const n = x.shape[0];
    const step = this.batchSize ?? n;
    const fixed = typeof this.input.shape?.[0] === 'number' ? (this.input.shape[0] as number) : null;
    if (fixed !== null && step !== fixed) throw new Error(`${this.file}: the model's batch size is fixed at ${fixed}; batchSize ${step} cannot be used`);
    const host = tidy(() => x.cpu().contiguous());
    const parts: Record<string, Tensor[]> = Object.fromEntries(wanted.map((k) => [k, []]));
    try {
      for (let i = 0; i < n; i += step) {
        const len = Math.min(step, n - i);
        const chunk = tidy(() => {
          const c = host.narrow(0, i, len);
          return fixed !== null && len < fixed ? ops.cat([c, ops.zeros([fixed - len, ...x.shape.slice(1)], { dtype: x.dtype })], 0) : ops.contiguous(c);
        });
        let feed: ort.Tensor;
        try {
          feed = new (runtime().Tensor)(ELEM[this.input.elemType]!.ort, chunk.data() as any, chunk.shape);
        } finally {
          chunk.dispose();
        }
        let out: ort.InferenceSession.OnnxValueMapType;
        try {
          out = await session.run({ [this.input.name]: feed }, wanted);
        } catch (e) {
          throw new Error(`${this.file}: onnxruntime failed on input '${this.input.name}' ${x.dtype} ${shapeText([len, ...x.shape.slice(1)])}: ${(e as Error).message}`);
        }
        for (const k of wanted) parts[k].push(fromOrt(out[k] as ort.Tensor, k, this.file, len));
      }
    } catch (e) {
      for (const p of Object.values(parts)) dispose(p);
      throw e;
    } finally {
      if (host !== x) host.dispose();
    }
    return joinChunks(parts, wanted, x.device);
  }

  dispose(): void {
    const s = this.session;
    this.session = null;
    void s?.release();
  }
}

/**
 * Reads the external data of a model's tensors (initializers, constant attributes, subgraphs) into the model, so that
 * the model is one self-contained message (sessions are created from bytes, and the teacher's hash covers the weights).
 * A location outside the model's folder is refused. Returns whether anything was read.
 */
function inlineExternalData(model: onnx.ModelProto, file: string): boolean {
  const tensors: onnx.ITensorProto[] = [];
  const walk = (g: onnx.IGraphProto | null | undefined) => {
    if (!g) return;
    tensors.push(...(g.initializer ?? []));
    for (const s of g.sparseInitializer ?? []) tensors.push(...[s.values, s.indices].filter((t): t is onnx.ITensorProto => !!t));
    for (const n of g.node ?? [])
      for (const a of n.attribute ?? []) {
        if (a.t) tensors.push(a.t);
        tensors.push(...(a.tensors ?? []));
        walk(a.g);
        for (const sg of a.graphs ?? []) walk(sg);
      }
  };
  walk(model.graph);
  let read = false;
  for (const t of tensors) {
    if (t.dataLocation !== proto().TensorProto.DataLocation.EXTERNAL) continue;
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = entries.get('location');
    if (!location) throw new Error(`${file}: tensor '${t.name}' keeps its data externally but names no location`);
    const data = fileInModelFolder(file, location, `external data of tensor '${t.name}'`);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(data);
    } catch (e) {
      throw new Error(`${file}: cannot read the external data of tensor '${t.name}' (${data}): ${(e as Error).message}`);
    }
    const offset = Number(entries.get('offset') ?? 0);
    const length = entries.has('length') ? Number(entries.get('length')) : buf.length - offset;
    if (!(offset >= 0 && length >= 0 && offset + length <= buf.length))
      throw new Error(`${file}: the external data of tensor '${t.name}' (offset ${offset}, length ${length}) lies past the end of ${data} (${buf.length} bytes)`);
    t.rawData = buf.subarray(offset, offset + length);
    t.dataLocation = proto().TensorProto.DataLocation.DEFAULT;
    t.externalData = [];
    read = true;
  }
  return read;
}

async function createSession(what: string, bytes: Uint8Array, opts: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await runtime().InferenceSession.create(bytes, opts);
  } catch (e) {
    const eps = (opts.executionProviders ?? []).map(String);
    const hint = eps.some((p) => p !== 'cpu') ? ` (execution providers ${eps.join(', ')}: is the CUDA provider installed? onnxruntime-node skips it when installed with onnxruntime-node-install=skip; use ['cpu'])` : '';
    throw new Error(`${what}: onnxruntime could not load the model${hint}: ${(e as Error).message}`);
  }
}

function fromOrt(t: ort.Tensor, name: string, file: string, rows: number): Tensor {
  if (!t) throw new Error(`${file}: onnxruntime returned no value '${name}'`);
  const dims = t.dims.map(Number);
  const data = t.data as ArrayBufferView;
  if (t.type === 'float16' || t.type === 'string') throw new Error(`${file}: value '${name}' has type ${t.type}, which teachers cannot use`);
  if (dims.length === 0) return tensor(data as Float32Array, { shape: [] });
  const full = tensor(data as Float32Array, { shape: dims });
  if (dims[0] === rows) return full;
  // a padded chunk: keep the real rows
  try {
    return tidy(() => ops.contiguous(full.narrow(0, 0, rows)));
  } finally {
    full.dispose();
  }
}
