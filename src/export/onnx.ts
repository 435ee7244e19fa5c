// ONNX export of a module (fp32): the graph is traced from the module's forward pass (nn's traceOnnx: the aten ops it
// calls, mapped to ONNX by symbolic functions), batch normalisations that directly follow a convolution are folded
// into its weights, and the graph is serialised with the ONNX protobuf messages of the `onnx-proto` package. The whole
// model is built and serialised in memory before the file is written (atomically), so a model that cannot be exported
// fails with the op, the module path and class, and leaves no file.
import { onnx } from 'onnx-proto';
import { version, writeFileAtomic } from '../torch';
import { Module, ONNX_TYPE_CODES, OnnxGraph, OnnxInitializer, OnnxNode, OnnxValue, traceOnnx } from '../nn';

export interface OnnxExportOptions {
  /** The shape of one example without the batch dimension, e.g. [1, 28, 28] for MNIST, [3, 32, 32] for CIFAR-10. */
  inputShape: number[];
  /** 'float32' (images, features; default) or 'int64' (token ids for an Embedding). */
  inputDtype?: 'float32' | 'int64';
  /** Default 'input'. */
  inputName?: string;
  /** Default 'logits'. */
  outputName?: string;
  /** Operator set, 13 to 21; default 17 (LayerNormalization needs 17). */
  opset?: number;
  /** A fixed batch size; default a dynamic batch dimension named 'batch'. */
  batchSize?: number;
  /** Fold BatchNorm into the convolution it directly follows (default true). */
  foldBatchNorm?: boolean;
  /** Stored in the model's metadata_props (model name, options, source checkpoint, ...). */
  metadata?: Record<string, string>;
  docString?: string;
}

export interface OnnxExportInfo {
  /** Size of the serialised model in bytes. */
  bytes: number;
  /** Number of nodes per op type. */
  ops: Record<string, number>;
  /** BatchNorm layers folded into the preceding convolution. */
  foldedBatchNorms: number;
  /** Parameters stored (after folding). */
  parameters: number;
  opset: number;
}

const MIN_OPSET = 13;
const MAX_OPSET = 21;
/** The IR version that introduced each opset (onnx releases 1.8 … 1.16). */
function irVersionFor(opset: number): number {
  return opset <= 14 ? 7 : opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

function checkOptions(o: OnnxExportOptions): Required<Pick<OnnxExportOptions, 'opset' | 'inputName' | 'outputName' | 'inputDtype'>> {
  if (!o || typeof o !== 'object') throw new Error('ONNX export: expected an options object with inputShape');
  const known = ['inputShape', 'inputDtype', 'inputName', 'outputName', 'opset', 'batchSize', 'foldBatchNorm', 'metadata', 'docString'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new Error(`ONNX export: unknown option '${k}' (options: ${known.join(', ')})`);
  if (!Array.isArray(o.inputShape) || o.inputShape.some((d) => !Number.isInteger(d) || d < 1))
    throw new Error(`ONNX export: inputShape must list the positive sizes of one example without the batch dimension (e.g. [1, 28, 28]), got ${JSON.stringify(o.inputShape)}`);
  const opset = o.opset ?? 17;
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) throw new Error(`ONNX export: opset must be an integer from ${MIN_OPSET} to ${MAX_OPSET}, got ${opset}`);
  if (o.batchSize !== undefined && (!Number.isInteger(o.batchSize) || o.batchSize < 1)) throw new Error(`ONNX export: batchSize must be a positive integer, got ${o.batchSize}`);
  const inputDtype = o.inputDtype ?? 'float32';
  if (inputDtype !== 'float32' && inputDtype !== 'int64') throw new Error(`ONNX export: inputDtype must be 'float32' or 'int64', got '${inputDtype}'`);
  const inputName = o.inputName ?? 'input';
  const outputName = o.outputName ?? 'logits';
  if (!inputName || !outputName || inputName === outputName) throw new Error(`ONNX export: input and output names must be different non-empty strings, got '${inputName}' and '${outputName}'`);
  return { opset, inputName, outputName, inputDtype };
}

/** Builds the graph of `model` (its eval-mode forward, traced) without serialising it. */
export function buildOnnxGraph(model: Module, opts: OnnxExportOptions): { graph: OnnxGraph; foldedBatchNorms: number } {
  if (!(model instanceof Module)) throw new Error('ONNX export: expected a Module');
  const o = checkOptions(opts);
  const graph = traceOnnx(model, { ...o, inputShape: opts.inputShape, batchSize: opts.batchSize });
  const folded = opts.foldBatchNorm === false ? 0 : foldBatchNorms(graph);
  pruneInitializers(graph);
  return { graph, foldedBatchNorms: folded };
}

// ---------------------------------------------------------------------------------------------------- BN folding

/**
 * Folds each BatchNormalization whose input is the output of a Conv used by nothing else (and whose parameters are
 * initializers used by nothing else) into that Conv: W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β,
 * computed in float64. The Conv takes over the BatchNormalization's output name. Returns how many were folded.
 */
export function foldBatchNorms(graph: OnnxGraph): number {
  const uses = new Map<string, number>();
  const countUses = () => {
    uses.clear();
    for (const n of graph.nodes) for (const i of n.inputs) if (i) uses.set(i, (uses.get(i) ?? 0) + 1);
    for (const o of graph.outputs) uses.set(o.name, (uses.get(o.name) ?? 0) + 1);
  };
  countUses();
  const producer = new Map<string, OnnxNode>();
  for (const n of graph.nodes) for (const o of n.outputs) producer.set(o, n);
  const init = (name: string | undefined): OnnxInitializer | undefined => (name ? graph.initializers.get(name) : undefined);
  const removed = new Set<OnnxNode>();
  let folded = 0;
  for (const bn of graph.nodes) {
    if (bn.op !== 'BatchNormalization') continue;
    const conv = producer.get(bn.inputs[0]);
    if (!conv || conv.op !== 'Conv' || removed.has(conv) || uses.get(conv.outputs[0]) !== 1) continue;
    const w = init(conv.inputs[1]);
    const b = init(conv.inputs[2]);
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => init(bn.inputs[i]));
    if (!w || !gamma || !beta || !mean || !variance || w.dtype !== 'float32') continue;
    if (uses.get(w.name) !== 1 || (b && uses.get(b.name) !== 1)) continue;
    const eps = (bn.attrs.epsilon as { float: number } | undefined)?.float ?? 1e-5;
    const outC = w.shape[0];
    const per = w.data.length / outC;
    const wd = w.data as Float32Array;
    const newW = new Float32Array(wd.length);
    const newB = new Float32Array(outC);
    for (let c = 0; c < outC; c++) {
      const s = (gamma.data[c] as number) / Math.sqrt((variance.data[c] as number) + eps);
      for (let j = 0; j < per; j++) newW[c * per + j] = wd[c * per + j] * s;
      newB[c] = ((b ? (b.data[c] as number) : 0) - (mean.data[c] as number)) * s + (beta.data[c] as number);
    }
    w.data = newW;
    let biasName = b?.name;
    if (b) b.data = newB;
    else {
      biasName = uniqueInitName(graph, w.name.endsWith('.weight') ? `${w.name.slice(0, -'.weight'.length)}.bias` : `${w.name}_bias`);
      graph.initializers.set(biasName, { name: biasName, dtype: 'float32', shape: [outC], data: newB });
    }
    conv.inputs = [conv.inputs[0], conv.inputs[1], biasName!];
    conv.outputs = [bn.outputs[0]];
    producer.set(bn.outputs[0], conv);
    removed.add(bn);
    folded++;
  }
  if (folded) {
    graph.nodes.splice(0, graph.nodes.length, ...graph.nodes.filter((n) => !removed.has(n)));
  }
  return folded;
}

function uniqueInitName(graph: OnnxGraph, base: string): string {
  let n = base;
  for (let i = 1; graph.initializers.has(n); i++) n = `${base}_${i}`;
  return n;
}

/** Drops initializers that no node reads (the parameters of folded BatchNorms). */
function pruneInitializers(graph: OnnxGraph): void {
  const used = new Set<string>();
  for (const n of graph.nodes) for (const i of n.inputs) used.add(i);
  for (const o of graph.outputs) used.add(o.name);
  for (const k of [...graph.initializers.keys()]) if (!used.has(k)) graph.initializers.delete(k);
}

// ---------------------------------------------------------------------------------------------------- serialisation

/** TensorProto element types (onnx.TensorProto.DataType), shared with the Cast nodes the tracer writes. */
const DTYPE_CODE = ONNX_TYPE_CODES;

function valueInfo(v: OnnxValue): onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DTYPE_CODE[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : d === '?' ? {} : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, a: OnnxNode['attrs'][string]): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof a === 'number') {
    if (!Number.isInteger(a)) throw new Error(`ONNX export: attribute '${name}' = ${a} is not an integer; write floats as { float: x }`);
    return { name, type: T.INT, i: a };
  }
  if (typeof a === 'string') return { name, type: T.STRING, s: Buffer.from(a, 'utf8') };
  if (Array.isArray(a)) {
    if (a.some((x) => !Number.isInteger(x))) throw new Error(`ONNX export: attribute '${name}' = [${a}] has non-integers; write floats as { floats: [...] }`);
    return { name, type: T.INTS, ints: a };
  }
  if ('float' in a) return { name, type: T.FLOAT, f: a.float };
  return { name, type: T.FLOATS, floats: a.floats };
}

function tensorProto(t: OnnxInitializer): onnx.ITensorProto {
  // raw_data is little-endian; typed arrays on this (little-endian) host already are
  return { name: t.name, dataType: DTYPE_CODE[t.dtype], dims: t.shape, rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

/** The bytes of an ONNX model file for `graph`. */
export function serializeOnnx(graph: OnnxGraph, info: { name?: string; metadata?: Record<string, string>; docString?: string } = {}): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: irVersionFor(graph.opset),
    producerName: 'tsdistill',
    producerVersion: version().tsdistill,
    docString: info.docString ?? '',
    opsetImport: [{ domain: '', version: graph.opset }],
    metadataProps: Object.entries(info.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: info.name ?? 'model',
      node: graph.nodes.map((n) => ({
        name: n.name, opType: n.op, domain: '', input: n.inputs, output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
      })),
      initializer: [...graph.initializers.values()].map(tensorProto),
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
    },
  };
  const err = onnx.ModelProto.verify(model);
  if (err) throw new Error(`ONNX export: the model message is invalid: ${err}`);
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/** The ONNX model of `model` as bytes, with what went into it. */
export function toOnnx(model: Module, opts: OnnxExportOptions): { bytes: Uint8Array; info: OnnxExportInfo } {
  const { graph, foldedBatchNorms } = buildOnnxGraph(model, opts);
  const bytes = serializeOnnx(graph, { name: model.constructor.name, metadata: opts.metadata, docString: opts.docString });
  const ops: Record<string, number> = {};
  for (const n of graph.nodes) ops[n.op] = (ops[n.op] ?? 0) + 1;
  let parameters = 0;
  for (const t of graph.initializers.values()) parameters += t.data.length;
  return { bytes, info: { bytes: bytes.byteLength, ops, foldedBatchNorms, parameters, opset: graph.opset } };
}

/**
 * Writes `model` to the ONNX file `file` (atomically: a complete file or none). Everything is built in memory first,
 * so an unsupported module fails before the file is touched.
 */
export function saveOnnx(model: Module, file: string, opts: OnnxExportOptions): OnnxExportInfo {
  const { bytes, info } = toOnnx(model, opts);
  writeFileAtomic(file, bytes);
  return info;
}
