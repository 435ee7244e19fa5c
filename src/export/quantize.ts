// int8 ONNX export: the fp32 graph (BatchNorm folded) rewritten as a QDQ model, and the preparation of a model for
// quantization-aware training so that what it trains is what the QDQ model computes.
//
// Scheme (U8S8): activations uint8 per tensor with a zero point, weights int8 per output channel, symmetric, in
// [-127, 127]; biases int32 with scale = input scale × weight scale. ONNX Runtime's x86 int8 GEMM and convolution
// kernels multiply unsigned activations by signed weights (VPMADDUBSW / VPDPBUSD); int8 activations would be shifted to
// uint8 at run time. (On AVX2 machines without VNNI, VPMADDUBSW can saturate its 16-bit pair sums for large weights and
// activations; AVX-512/AVX-VNNI machines accumulate in 32 bits.)
//
// Where quantization goes (the plan): every Conv, Gemm (Linear on 2-D input) and MatMul (Linear on higher ranks) whose
// weight is an initializer is quantized. Its output is quantized unless it is a graph output (the logits stay float);
// when its only consumer is a Relu, the Relu is dropped and the output is quantized with the Relu's range [0, max] and
// zero point 0 (the QuantizeLinear clamp is the ReLU). Its input is traced back through data-movement ops (MaxPool,
// Flatten, Reshape, Identity, Transpose, Squeeze, Unsqueeze) to its source; a source that is not already a quantized
// output (the graph input, an Add, an average pool, ...) is quantized where it is made. Quantization is monotone, so it
// commutes with those data-movement ops: each of them gets a QuantizeLinear/DequantizeLinear pair on its output with
// its input's parameters, which changes no value and lets ONNX Runtime run the chain on uint8 tensors.
//
// Ranges come from calibration (post-training: the fp32 graph runs in onnxruntime on N batches with the quantized
// values added as outputs, observed by min/max, moving-average min/max or percentiles), or from the quantizers a
// quantization-aware run trained with (`prepareQuantAware` attaches them to the layers, at the same places).
import { onnx } from 'onnx-proto';
import type * as Ort from 'onnxruntime-node';
import { Tensor, tensor, writeFileAtomic } from '../torch';
import {
  ActivationFakeQuant, Conv1d, Conv2d, LayerQuant, Linear, Module, ObserverOptions, OnnxGraph, OnnxInitializer, OnnxNode, RangeObserver, WEIGHT_QMAX,
  activationQParams, checkObserverOptions, perChannelScales, quantizeValue,
} from '../nn';
import { OnnxExportInfo, OnnxExportOptions, buildOnnxGraph, serializeOnnx } from './onnx';

const DATA_MOVEMENT = new Set(['MaxPool', 'Flatten', 'Reshape', 'Identity', 'Transpose', 'Squeeze', 'Unsqueeze']);

/** One quantized Conv / Gemm / MatMul node and the values around it. */
export interface QuantizedLayer {
  node: OnnxNode;
  /** The module that wrote the node (its path; '' for the root). */
  modulePath: string;
  /** The weight initializer and its output-channel axis (0 for Conv and Gemm, 1 for MatMul's [in, out] weight). */
  weight: string;
  weightAxis: number;
  /** The activation input and where it comes from through data-movement ops. */
  input: string;
  inputSource: string;
  /** The quantized output value: the node's own output, or the Relu's output when the Relu is fused. */
  output: string;
  relu: OnnxNode | null;
  /** False when the output is a graph output (kept in float). */
  quantizeOutput: boolean;
}

export interface QuantizationPlan {
  layers: QuantizedLayer[];
  /** The values whose range is needed (quantized outputs and the sources of quantized inputs). */
  points: string[];
}

function modulePathOf(node: OnnxNode): string {
  const i = node.name.lastIndexOf('/');
  return i < 0 ? '' : node.name.slice(0, i);
}

/** Where the QDQ model quantizes: see the comment at the top of this file. */
export function planQuantization(graph: OnnxGraph): QuantizationPlan {
  const producer = new Map<string, OnnxNode>();
  const consumers = new Map<string, OnnxNode[]>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const floatInit = (name: string | undefined, rank?: number): OnnxInitializer | undefined => {
    const t = name ? graph.initializers.get(name) : undefined;
    return t && t.dtype === 'float32' && (rank === undefined || t.shape.length === rank) ? t : undefined;
  };
  const layers: QuantizedLayer[] = [];
  for (const n of graph.nodes) {
    let axis: number;
    if (n.op === 'Conv' && floatInit(n.inputs[1]) && graph.initializers.get(n.inputs[1])!.shape.length >= 3) axis = 0;
    else if (n.op === 'Gemm' && floatInit(n.inputs[1], 2) && n.attrs.transB === 1 && !n.attrs.transA && !('alpha' in n.attrs) && !('beta' in n.attrs)) axis = 0;
    else if (n.op === 'MatMul' && floatInit(n.inputs[1], 2)) axis = 1;
    else continue;
    if (n.inputs[2] && !floatInit(n.inputs[2], 1)) continue;
    let source = n.inputs[0];
    for (let p = producer.get(source); p && DATA_MOVEMENT.has(p.op); p = producer.get(source)) source = p.inputs[0];
    const y = n.outputs[0];
    const uses = consumers.get(y) ?? [];
    const relu = uses.length === 1 && uses[0].op === 'Relu' && !outputs.has(y) && !outputs.has(uses[0].outputs[0]) ? uses[0] : null;
    const output = relu ? relu.outputs[0] : y;
    layers.push({
      node: n, modulePath: modulePathOf(n), weight: n.inputs[1], weightAxis: axis, input: n.inputs[0], inputSource: source, output, relu,
      quantizeOutput: !outputs.has(output),
    });
  }
  const points: string[] = [];
  const add = (v: string) => {
    if (!points.includes(v)) points.push(v);
  };
  for (const l of layers) {
    add(l.inputSource);
    if (l.quantizeOutput) add(l.output);
  }
  return { layers, points };
}

export interface QParams {
  scale: number;
  zeroPoint: number;
}

/**
 * Rewrites `graph` (in place) as a QDQ model with the uint8 parameters `qparams` of every value of `plan.points`;
 * returns how many layers were quantized.
 */
export function quantizeGraph(graph: OnnxGraph, plan: QuantizationPlan, qparams: Map<string, QParams>): number {
  const params = new Map<string, QParams>();
  for (const p of plan.points) {
    const q = qparams.get(p);
    if (!q) throw new Error(`int8 export: no quantization parameters for value '${p}'`);
    params.set(p, q);
  }
  const inits = graph.initializers;
  const addInit = (t: OnnxInitializer) => {
    if (inits.has(t.name)) throw new Error(`int8 export: initializer name '${t.name}' is already used`);
    inits.set(t.name, t);
    return t.name;
  };
  const out: OnnxNode[] = [];
  const rename = new Map<string, string>();
  /** DequantizeLinear outputs → their parameters and the initializers holding them. */
  const dq = new Map<string, QParams & { s: string; z: string }>();
  const qdq = (value: string, base: string, p: QParams & { s?: string; z?: string }): string => {
    const s = p.s ?? addInit({ name: `${base}_scale`, dtype: 'float32', shape: [], data: Float32Array.of(p.scale) });
    const z = p.z ?? addInit({ name: `${base}_zero_point`, dtype: 'uint8', shape: [], data: Uint8Array.of(p.zeroPoint) });
    const q = `${base}_quantized`;
    const d = `${base}_dequantized`;
    out.push({ op: 'QuantizeLinear', name: `${base}/QuantizeLinear`, inputs: [value, s, z], outputs: [q], attrs: {} });
    out.push({ op: 'DequantizeLinear', name: `${base}/DequantizeLinear`, inputs: [q, s, z], outputs: [d], attrs: {} });
    dq.set(d, { scale: p.scale, zeroPoint: p.zeroPoint, s, z });
    return d;
  };
  const points = new Set(plan.points);
  const layerOf = new Map(plan.layers.map((l) => [l.node, l]));
  const fused = new Set(plan.layers.map((l) => l.relu).filter((r): r is OnnxNode => r !== null));
  const outputs = new Set(graph.outputs.map((o) => o.name));
  for (const i of graph.inputs) if (points.has(i.name)) rename.set(i.name, qdq(i.name, i.name, params.get(i.name)!));
  for (const n of graph.nodes) {
    if (fused.has(n)) continue;
    n.inputs = n.inputs.map((i) => rename.get(i) ?? i);
    const l = layerOf.get(n);
    if (l) {
      const xp = dq.get(n.inputs[0]);
      if (!xp) throw new Error(`int8 export: ${n.op} '${n.name}': its input '${l.input}' is not quantized`);
      n.inputs[1] = quantizeWeight(inits, l, addInit, out);
      if (n.inputs[2]) n.inputs[2] = quantizeBias(inits, n.inputs[2], xp.scale, inits.get(`${l.weight}_scale`)!.data as Float32Array, addInit, out);
      out.push(n);
      if (l.quantizeOutput) rename.set(l.output, qdq(n.outputs[0], l.output, params.get(l.output)!));
      continue;
    }
    out.push(n);
    const o = n.outputs[0];
    if (outputs.has(o)) continue;
    const src = dq.get(n.inputs[0]);
    if (DATA_MOVEMENT.has(n.op) && src) rename.set(o, qdq(o, o, src));
    else if (points.has(o)) rename.set(o, qdq(o, o, params.get(o)!));
  }
  graph.nodes.splice(0, graph.nodes.length, ...out);
  const used = new Set(graph.nodes.flatMap((n) => n.inputs));
  for (const k of [...inits.keys()]) if (!used.has(k)) inits.delete(k);
  return plan.layers.length;
}

/** Replaces a float weight by int8 values, per-channel scales and zero points, and a DequantizeLinear; returns its output. */
function quantizeWeight(inits: Map<string, OnnxInitializer>, l: QuantizedLayer, addInit: (t: OnnxInitializer) => string, out: OnnxNode[]): string {
  const w = inits.get(l.weight)!;
  const data = w.data as Float32Array;
  const scales = perChannelScales(data, w.shape, l.weightAxis);
  const channels = w.shape[l.weightAxis];
  const inner = w.shape.slice(l.weightAxis + 1).reduce((a, b) => a * b, 1);
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) q[i] = quantizeValue(data[i], scales[Math.floor(i / inner) % channels], 0, -WEIGHT_QMAX, WEIGHT_QMAX);
  const qn = addInit({ name: `${l.weight}_quantized`, dtype: 'int8', shape: w.shape.slice(), data: q });
  const s = addInit({ name: `${l.weight}_scale`, dtype: 'float32', shape: [channels], data: scales });
  const z = addInit({ name: `${l.weight}_zero_point`, dtype: 'int8', shape: [channels], data: new Int8Array(channels) });
  const d = `${l.weight}_dequantized`;
  out.push({ op: 'DequantizeLinear', name: `${l.weight}/DequantizeLinear`, inputs: [qn, s, z], outputs: [d], attrs: { axis: l.weightAxis } });
  return d;
}

/** A float bias as int32 with scale input scale × weight scale (per channel), zero point 0. */
function quantizeBias(inits: Map<string, OnnxInitializer>, name: string, inputScale: number, weightScales: Float32Array, addInit: (t: OnnxInitializer) => string, out: OnnxNode[]): string {
  const b = inits.get(name)!.data as Float32Array;
  if (b.length !== weightScales.length) throw new Error(`int8 export: bias '${name}' has ${b.length} values for ${weightScales.length} output channels`);
  const scales = Float32Array.from(weightScales, (ws) => Math.fround(inputScale * ws));
  const q = Int32Array.from(b, (v, c) => Math.max(-2147483647, Math.min(2147483647, Math.round(v / scales[c]))));
  const qn = addInit({ name: `${name}_quantized`, dtype: 'int32', shape: [b.length], data: q });
  const s = addInit({ name: `${name}_scale`, dtype: 'float32', shape: [b.length], data: scales });
  const z = addInit({ name: `${name}_zero_point`, dtype: 'int32', shape: [b.length], data: new Int32Array(b.length) });
  const d = `${name}_dequantized`;
  out.push({ op: 'DequantizeLinear', name: `${name}/DequantizeLinear`, inputs: [qn, s, z], outputs: [d], attrs: { axis: 0 } });
  return d;
}

// ---------------------------------------------------------------------------------------------------- calibration

/**
 * Runs the fp32 `graph` in onnxruntime on each batch of `batches` ([N, ...inputShape] float32 tensors) and observes
 * the values `names`; returns each value's range.
 */
export async function calibrateGraph(
  graph: OnnxGraph, names: string[], batches: Iterable<Tensor> | AsyncIterable<Tensor>, observer: ObserverOptions = {},
): Promise<{ ranges: Map<string, { min: number; max: number }>; batches: number }> {
  const opts = checkObserverOptions(observer, 'calibration');
  const input = graph.inputs[0];
  if (graph.inputs.length !== 1 || input.dtype !== 'float32') throw new Error('int8 export: calibration needs a model with one float32 input');
  const model = onnx.ModelProto.decode(serializeOnnx(graph));
  const have = new Set(model.graph!.output!.map((o) => o.name));
  const fetched = names.filter((n) => n !== input.name);
  for (const n of fetched) if (!have.has(n)) model.graph!.output!.push({ name: n, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
  const ort: typeof Ort = require('onnxruntime-node'); // loaded on first use, as by the ONNX teacher
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const observers = new Map(names.map((n) => [n, new RangeObserver(opts)]));
  let count = 0;
  try {
    for await (const x of batches) {
      if (!(x instanceof Tensor) || x.dtype !== 'float32') throw new Error(`int8 export: calibration batches must be float32 tensors, got ${x instanceof Tensor ? x.dtype : typeof x}`);
      const shape = input.shape;
      if (x.shape.length !== shape.length || shape.some((d, i) => typeof d === 'number' && i > 0 && d !== x.shape[i]))
        throw new Error(`int8 export: calibration batch of shape [${x.shape.join(', ')}] does not fit the model input [${shape.join(', ')}]`);
      const data = x.contiguous().data() as Float32Array;
      const res = await session.run({ [input.name]: new ort.Tensor('float32', data, x.shape) }, fetched);
      for (const n of names) observers.get(n)!.observeValues(n === input.name ? data : (res[n].data as Float32Array));
      count++;
    }
  } finally {
    await session.release();
  }
  if (!count) throw new Error('int8 export: the calibration data gave no batches');
  const ranges = new Map<string, { min: number; max: number }>();
  for (const [n, o] of observers) ranges.set(n, o.range()!);
  return { ranges, batches: count };
}

// ---------------------------------------------------------------------------------------------------- export

export interface Int8ExportOptions extends OnnxExportOptions {
  /**
   * Post-training quantization: batches ([N, ...inputShape] float32, preprocessed like training data) to calibrate
   * the activation ranges on. Leave out for a model prepared with `prepareQuantAware` (its trained ranges are used).
   */
  calibration?: Iterable<Tensor> | AsyncIterable<Tensor>;
  /** How calibration observes ranges (default min/max). */
  observer?: ObserverOptions;
}

export interface Int8ExportInfo extends OnnxExportInfo {
  scheme: 'u8s8-qdq';
  quantizedLayers: number;
  /** 'calibrated' (post-training) or 'quantization-aware' (ranges trained with the model). */
  ranges: 'calibrated' | 'quantization-aware';
  calibrationBatches?: number;
}

/** The quantizers of a model prepared for quantization-aware training, by module path. */
function quantOf(model: Module, path: string): LayerQuant | null {
  const m = path === '' ? model : model.getSubmodule(path);
  return m instanceof Linear || m instanceof Conv1d || m instanceof Conv2d ? m.quant : null;
}
function isPrepared(model: Module): boolean {
  return model.modules().some((m) => (m instanceof Linear || m instanceof Conv1d || m instanceof Conv2d) && m.quant !== null);
}

/** The parameters a quantization-aware model trained, mapped onto the plan's values. */
function trainedParams(model: Module, plan: QuantizationPlan): Map<string, QParams> {
  const ranges = new Map<string, QParams>();
  const set = (value: string, fq: ActivationFakeQuant | null, what: string) => {
    if (!fq) throw new Error(`int8 export: ${what} has no quantizer; the model was prepared for a different graph (call prepareQuantAware with the same options)`);
    const q = fq.qparams();
    if (!q) throw new Error(`int8 export: ${what} has observed no data; run the model (training or calibration) before exporting`);
    ranges.set(value, q);
  };
  const outputs = new Set(plan.layers.filter((l) => l.quantizeOutput).map((l) => l.output));
  for (const l of plan.layers) {
    const lq = quantOf(model, l.modulePath);
    const where = `${l.node.op} of '${l.modulePath}'`;
    if (!lq) throw new Error(`int8 export: ${where} is not prepared for quantization-aware training`);
    if (l.quantizeOutput) set(l.output, lq.output, `the output of ${where}`);
    if (!outputs.has(l.inputSource) && !ranges.has(l.inputSource)) set(l.inputSource, lq.input, `the input of ${where}`);
  }
  return ranges;
}

/** The int8 QDQ ONNX model of `model`: calibrated (`calibration`) or with the ranges of quantization-aware training. */
export async function toOnnxInt8(model: Module, opts: Int8ExportOptions): Promise<{ bytes: Uint8Array; info: Int8ExportInfo }> {
  const { calibration, observer, ...onnxOpts } = opts ?? ({} as Int8ExportOptions);
  const prepared = isPrepared(model);
  if (prepared && calibration) throw new Error('int8 export: the model carries quantization-aware ranges; calibration data would be ignored (leave it out)');
  if (!prepared && !calibration) throw new Error('int8 export: give calibration batches (post-training quantization) or a model prepared with prepareQuantAware and trained');
  if (onnxOpts.foldBatchNorm === false) throw new Error('int8 export: BatchNorm layers must be folded into their convolutions (foldBatchNorm cannot be false)');
  const { graph, foldedBatchNorms } = buildOnnxGraph(model, onnxOpts);
  const plan = planQuantization(graph);
  if (!plan.layers.length) throw new Error(`int8 export: ${model.constructor.name} has no Conv, Gemm or MatMul with constant weights to quantize`);
  let params: Map<string, QParams>;
  let batches: number | undefined;
  if (prepared) params = trainedParams(model, plan);
  else {
    const cal = await calibrateGraph(graph, plan.points, calibration!, observer);
    params = new Map([...cal.ranges].map(([k, r]) => [k, activationQParams(r.min, r.max)]));
    batches = cal.batches;
  }
  const parameters = [...graph.initializers.values()].reduce((a, t) => a + t.data.length, 0);
  const quantizedLayers = quantizeGraph(graph, plan, params);
  const bytes = serializeOnnx(graph, { name: model.constructor.name, metadata: { ...onnxOpts.metadata, quantization: 'u8s8-qdq' }, docString: onnxOpts.docString });
  const ops: Record<string, number> = {};
  for (const n of graph.nodes) ops[n.op] = (ops[n.op] ?? 0) + 1;
  return {
    bytes,
    info: {
      bytes: bytes.byteLength, ops, foldedBatchNorms, parameters, opset: graph.opset, scheme: 'u8s8-qdq', quantizedLayers,
      ranges: prepared ? 'quantization-aware' : 'calibrated', ...(batches !== undefined ? { calibrationBatches: batches } : {}),
    },
  };
}

/** Writes the int8 QDQ model of `model` to `file` (atomically). */
export async function saveOnnxInt8(model: Module, file: string, opts: Int8ExportOptions): Promise<Int8ExportInfo> {
  const { bytes, info } = await toOnnxInt8(model, opts);
  writeFileAtomic(file, bytes);
  return info;
}

// ---------------------------------------------------------------------------------------------------- QAT

export interface QuantAwareOptions {
  /** One example's shape without the batch dimension (as for ONNX export). */
  inputShape: number[];
  /** How the activation ranges are tracked while training (default: moving-average min/max, momentum 0.01). */
  observer?: ObserverOptions;
}

/**
 * Attaches fake quantizers to the Linear and Conv layers of `model` at the places the QDQ export quantizes (found by
 * building the model's ONNX graph): per-channel int8 weights, uint8 inputs where a layer's input is not already a
 * quantized output, uint8 outputs (with the following ReLU folded in) except for the logits. The ranges are buffers
 * (`<layer>.input_range`, `<layer>.output_range`), so checkpoints carry them. Observers update in training mode; see
 * `setQuantObserving` to calibrate in eval mode or freeze them. A convolution followed by a BatchNorm is refused:
 * the export folds the BatchNorm into it, which training with a separate BatchNorm does not simulate.
 */
export function prepareQuantAware(model: Module, opts: QuantAwareOptions): { layers: number; quantizers: number } {
  if (isPrepared(model)) throw new Error(`prepareQuantAware: ${model.constructor.name} is already prepared`);
  const observer: ObserverOptions = { method: 'ema', ...opts.observer };
  checkObserverOptions(observer, 'prepareQuantAware');
  const { graph } = buildOnnxGraph(model, { inputShape: opts.inputShape });
  const plan = planQuantization(graph);
  if (!plan.layers.length) throw new Error(`prepareQuantAware: ${model.constructor.name} has no Linear or Conv layer to quantize`);
  const outputs = new Set(plan.layers.filter((l) => l.quantizeOutput).map((l) => l.output));
  const inputOwners = new Map<string, ActivationFakeQuant>();
  const attached: [Linear | Conv1d | Conv2d, LayerQuant][] = [];
  let quantizers = 0;
  for (const l of plan.layers) {
    const m = l.modulePath === '' ? model : model.getSubmodule(l.modulePath);
    const where = `${m.constructor.name} at '${l.modulePath}'`;
    if (!(m instanceof Linear || m instanceof Conv1d || m instanceof Conv2d)) throw new Error(`prepareQuantAware: ${where} writes a ${l.node.op} but is not a Linear or Conv layer`);
    if (l.node.outputs[0].endsWith('/BatchNormalization'))
      throw new Error(`prepareQuantAware: ${where} is followed by a BatchNorm ('${l.node.outputs[0].split('/')[0]}') that the export folds into it; quantization-aware training of folded BatchNorms is not supported (use post-training quantization for this model)`);
    if (attached.some(([a]) => a === m)) throw new Error(`prepareQuantAware: ${where} is used more than once in the forward pass`);
    const buffer = (name: string) => m.registerBuffer(name, tensor([Infinity, -Infinity, 0], { dtype: 'float64' }));
    let input: ActivationFakeQuant | null = null;
    if (!outputs.has(l.inputSource)) {
      input = inputOwners.get(l.inputSource) ?? null;
      if (!input) {
        input = new ActivationFakeQuant(buffer('input_range'), false, observer);
        inputOwners.set(l.inputSource, input);
        quantizers++;
      }
    }
    const output = l.quantizeOutput ? new ActivationFakeQuant(buffer('output_range'), l.relu !== null, observer) : null;
    if (output) quantizers++;
    attached.push([m, new LayerQuant(input, output)]);
  }
  for (const [m, q] of attached) m.quant = q;
  return { layers: attached.length, quantizers };
}

/** Sets when the quantizers of a prepared model observe: 'train' (default), 'always' (calibration), 'never' (frozen). */
export function setQuantObserving(model: Module, mode: 'train' | 'always' | 'never'): void {
  for (const m of model.modules())
    if ((m instanceof Linear || m instanceof Conv1d || m instanceof Conv2d) && m.quant) for (const q of m.quant.quantizers()) q.observe = mode;
}
