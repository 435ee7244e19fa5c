// torch.nn.functional in camelCase: activations, layers as functions and losses, over the fused aten kernels.
// Keyword arguments become an options object with PyTorch's names in camelCase and PyTorch's defaults.
// Inputs are checked here where a TypeScript message can name the shapes or dtypes at fault; everything else is
// left to the aten kernels, whose errors already name the operator.
import { Tensor, ops, isFloatingDType, isGradEnabled, isRecordingOps } from '../torch';
import type { DType } from '../torch';

// ---------------------------------------------------------------- helpers

/** How a loss reduces its per-element values: PyTorch's `reduction` argument. */
export type Reduction = 'mean' | 'sum' | 'none';
/** `klDiv` also takes 'batchmean': the sum divided by the batch size (the size of dimension 0). */
export type KLDivReduction = Reduction | 'batchmean';

// aten's at::Reduction enum
const REDUCTION_ENUM: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

function reductionEnum(op: string, r: string | undefined): number {
  const v = r ?? 'mean';
  if (!Object.prototype.hasOwnProperty.call(REDUCTION_ENUM, v))
    throw new Error(`${op}: reduction must be one of 'mean', 'sum', 'none', got ${JSON.stringify(v)}`);
  return REDUCTION_ENUM[v as Reduction];
}

const fmt = (t: Tensor | number[]): string => `[${(Array.isArray(t) ? t : t.shape).join(', ')}]`;

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function requireSameShape(op: string, aName: string, a: Tensor, bName: string, b: Tensor): void {
  if (!sameShape(a.shape, b.shape)) throw new Error(`${op}: ${aName} ${fmt(a)} and ${bName} ${fmt(b)} must have the same shape`);
}

function requireFloat(op: string, name: string, t: Tensor): void {
  if (!isFloatingDType(t.dtype)) throw new Error(`${op}: ${name} must be a floating-point tensor, got ${t.dtype}`);
}

function requireInteger(op: string, name: string, v: number): void {
  if (!Number.isInteger(v)) throw new Error(`${op}: ${name} must be an integer, got ${v}`);
}

function requireTemperature(op: string, t: number): void {
  if (typeof t !== 'number' || !(t > 0) || !Number.isFinite(t))
    throw new Error(`${op}: temperature must be a positive finite number, got ${t}`);
}

// ---------------------------------------------------------------- activations

export const relu = (x: Tensor): Tensor => ops.relu(x);

export type GeluApproximate = 'none' | 'tanh';
/** GELU; `approximate: 'tanh'` is the tanh approximation. Also accepts the mode itself as second argument. */
export function gelu(x: Tensor, opts: { approximate?: GeluApproximate } | GeluApproximate = {}): Tensor {
  const approximate = typeof opts === 'string' ? opts : (opts.approximate ?? 'none');
  if (approximate !== 'none' && approximate !== 'tanh')
    throw new Error(`gelu: approximate must be 'none' or 'tanh', got ${JSON.stringify(approximate)}`);
  return ops.gelu(x, { approximate });
}

export const silu = (x: Tensor): Tensor => ops.silu(x);
export const mish = (x: Tensor): Tensor => ops.mish(x);
export const hardswish = (x: Tensor): Tensor => ops.hardswish(x);
export const logSigmoid = (x: Tensor): Tensor => ops.log_sigmoid(x);

/** max(0, x) + negativeSlope * min(0, x). PyTorch's default slope: 0.01. */
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  if (typeof negativeSlope !== 'number' || !Number.isFinite(negativeSlope))
    throw new Error(`leakyRelu: negativeSlope must be a finite number, got ${negativeSlope}`);
  return ops.leaky_relu(x, negativeSlope);
}

/** x where x > 0, alpha * (exp(x) - 1) elsewhere. PyTorch's default alpha: 1. */
export function elu(x: Tensor, alpha = 1): Tensor {
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new Error(`elu: alpha must be a finite number, got ${alpha}`);
  return ops.elu(x, alpha);
}

/** log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold. Defaults beta = 1, threshold = 20. */
export function softplus(x: Tensor, opts: { beta?: number; threshold?: number } = {}): Tensor {
  const beta = opts.beta ?? 1, threshold = opts.threshold ?? 20;
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta === 0) throw new Error(`softplus: beta must be a finite non-zero number, got ${beta}`);
  return ops.softplus(x, beta, threshold);
}
export const tanh = (x: Tensor): Tensor => ops.tanh(x);
export const sigmoid = (x: Tensor): Tensor => ops.sigmoid(x);

export interface SoftmaxOptions {
  /** Divides the logits before the softmax (knowledge distillation's T). Default 1. */
  temperature?: number;
  /** Casts the input to this dtype first, like PyTorch's `dtype` argument. */
  dtype?: DType;
}

function scaled(op: string, x: Tensor, temperature: number | undefined): Tensor {
  if (temperature === undefined || temperature === 1) return x;
  requireTemperature(op, temperature);
  return x.div(temperature);
}

/** softmax(x / temperature) along `dim`. */
export function softmax(x: Tensor, dim: number, opts: SoftmaxOptions = {}): Tensor {
  requireInteger('softmax', 'dim', dim);
  const s = scaled('softmax', x, opts.temperature);
  try {
    return ops.softmax_int(s, dim, opts.dtype ?? null);
  } finally {
    if (s !== x) s.dispose();
  }
}

/** log_softmax(x / temperature) along `dim`. */
export function logSoftmax(x: Tensor, dim: number, opts: SoftmaxOptions = {}): Tensor {
  requireInteger('logSoftmax', 'dim', dim);
  const s = scaled('logSoftmax', x, opts.temperature);
  try {
    return ops.log_softmax_int(s, dim, opts.dtype ?? null);
  } finally {
    if (s !== x) s.dispose();
  }
}

/**
 * Zeroes each element with probability `p` and scales the rest by 1 / (1 - p) when `training`; otherwise returns a
 * new handle to the same values. PyTorch's defaults: p = 0.5, training = true.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return ops.dropout(x, p, training);
}

// ---------------------------------------------------------------- layers as functions

/** x @ weight^T + bias, with weight [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.ndim === 2 && x.ndim >= 1 && x.shape[x.ndim - 1] !== weight.shape[1])
    throw new Error(`linear: input ${fmt(x)} has ${x.shape[x.ndim - 1]} features in its last dimension, but weight ${fmt(weight)} expects ${weight.shape[1]}`);
  return ops.linear(x, weight, bias ?? null);
}

export type ConvPadding = number | number[] | 'same' | 'valid';
export interface ConvOptions {
  stride?: number | number[];
  /** Zero padding per side, or 'same' (output as large as the input; stride 1 only) or 'valid' (none). Default 0. */
  padding?: ConvPadding;
  dilation?: number | number[];
  groups?: number;
}

function conv(op: 'conv1d' | 'conv2d', x: Tensor, weight: Tensor, biasOrOpts: Tensor | ConvOptions | null | undefined, opts: ConvOptions | undefined): Tensor {
  let bias: Tensor | null = null;
  let o: ConvOptions = opts ?? {};
  if (biasOrOpts instanceof Tensor) bias = biasOrOpts;
  else if (biasOrOpts !== null && biasOrOpts !== undefined) {
    if (opts !== undefined) throw new Error(`${op}: the third argument must be the bias (a Tensor or null) when options follow it`);
    o = biasOrOpts;
  }
  const stride = o.stride ?? 1, dilation = o.dilation ?? 1, groups = o.groups ?? 1;
  const padding = o.padding ?? 0;
  if (typeof padding === 'string') {
    if (padding !== 'same' && padding !== 'valid') throw new Error(`${op}: padding must be a number, an array, 'same' or 'valid', got ${JSON.stringify(padding)}`);
    const f = op === 'conv1d' ? ops.conv1d_padding : ops.conv2d_padding;
    return f(x, weight, bias, stride, padding, dilation, groups);
  }
  const f = op === 'conv1d' ? ops.conv1d : ops.conv2d;
  return f(x, weight, bias, stride, padding, dilation, groups);
}

/**
 * 1-D convolution of x [N, C, L] (or [C, L]) with weight [out, C / groups, k]: `conv1d(x, w, bias, opts)`, or
 * `conv1d(x, w, opts)` without a bias.
 */
export function conv1d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts?: ConvOptions): Tensor;
export function conv1d(x: Tensor, weight: Tensor, opts?: ConvOptions): Tensor;
export function conv1d(x: Tensor, weight: Tensor, biasOrOpts?: Tensor | ConvOptions | null, opts?: ConvOptions): Tensor {
  return conv('conv1d', x, weight, biasOrOpts, opts);
}

/**
 * 2-D convolution of x [N, C, H, W] (or [C, H, W]) with weight [out, C / groups, kH, kW]: `conv2d(x, w, bias, opts)`,
 * or `conv2d(x, w, opts)` without a bias.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts?: ConvOptions): Tensor;
export function conv2d(x: Tensor, weight: Tensor, opts?: ConvOptions): Tensor;
export function conv2d(x: Tensor, weight: Tensor, biasOrOpts?: Tensor | ConvOptions | null, opts?: ConvOptions): Tensor {
  return conv('conv2d', x, weight, biasOrOpts, opts);
}

export interface MaxPool2dOptions {
  /** Default: the kernel size. */
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  ceilMode?: boolean;
}
export function maxPool2d(x: Tensor, kernelSize: number | number[], opts: MaxPool2dOptions = {}): Tensor {
  const k = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
  const stride = opts.stride ?? kernelSize;
  const s = typeof stride === 'number' ? [stride, stride] : stride.length ? stride : k;
  const padding = opts.padding ?? 0;
  const dilation = opts.dilation ?? 1;
  if (fastMaxPool && k.length === 2 && s.length === 2 && k[0] === s[0] && k[1] === s[1] && k[0] >= 2 && k[1] >= 2 && k[0] * k[1] <= 16 && isZero(padding) && isOne(dilation) &&
    !(opts.ceilMode ?? false))
    return maxPoolTiles(x, k[0], k[1]) ?? ops.max_pool2d(x, kernelSize, stride, padding, dilation, false);
  return ops.max_pool2d(x, kernelSize, stride, padding, dilation, opts.ceilMode ?? false);
}

const isZero = (v: number | number[]) => (typeof v === 'number' ? v === 0 : v.every((e) => e === 0));
const isOne = (v: number | number[]) => (typeof v === 'number' ? v === 1 : v.every((e) => e === 1));

let fastMaxPool = true;
/**
 * Turns the tiled max-pool of `maxPool2d` on or off (default on) and returns the previous setting: for benchmarks
 * that compare against libtorch's own kernel op for op.
 */
export function setFastMaxPool(on: boolean): boolean {
  const prev = fastMaxPool;
  fastMaxPool = on;
  return prev;
}

/**
 * Max-pooling over non-overlapping kh×kw tiles (kernel = stride, no padding, dilation 1, floor mode) as elementwise
 * maxima of strided slices, when no gradient is recorded through it: libtorch's CPU `max_pool2d` (1.13) always computes
 * the argmax indices too, and takes about 18× longer on a LeNet teacher's first activation (64×6×28×28: 1.09 ms
 * against 0.06 ms, one thread). The values are the same (the maximum of the same numbers; NaN propagates as the
 * kernel propagates it). Returns null where the kernel must run: a gradient is recorded, the input is not a 3-/4-D
 * floating-point CPU tensor, or ops are being recorded for export (which maps max_pool2d to ONNX MaxPool).
 */
function maxPoolTiles(x: Tensor, kh: number, kw: number): Tensor | null {
  const shape = x.shape;
  const nd = shape.length;
  if ((nd !== 3 && nd !== 4) || isRecordingOps() || x.device !== 'cpu' || !isFloatingDType(x.dtype)) return null;
  if (isGradEnabled() && x.requiresGrad) return null;
  const H = shape[nd - 2], W = shape[nd - 1];
  const oh = Math.floor(H / kh), ow = Math.floor(W / kw);
  if (oh < 1 || ow < 1) return null;
  // rows: the maximum over the kh rows of each tile ([.., oh, W]), then columns ([.., oh, ow]); intermediates freed here
  const rows = maxOfSlices(x, nd - 2, kh, oh);
  const out = maxOfSlices(rows, nd - 1, kw, ow);
  rows.dispose();
  return out;
}

/** The elementwise maximum of the k slices `start = 0..k-1, step k, n entries` of `x` along `dim` (k ≥ 2: a new tensor). */
function maxOfSlices(x: Tensor, dim: number, k: number, n: number): Tensor {
  let acc = x.slice(dim, 0, (n - 1) * k + 1, k);
  for (let i = 1; i < k; i++) {
    const sl = x.slice(dim, i, i + (n - 1) * k + 1, k);
    const m = ops.maximum(acc, sl);
    acc.dispose();
    sl.dispose();
    acc = m;
  }
  return acc;
}

export interface AvgPool2dOptions {
  /** Default: the kernel size. */
  stride?: number | number[];
  padding?: number | number[];
  ceilMode?: boolean;
  /** Count the zero padding in the average. Default true. */
  countIncludePad?: boolean;
  /** Divide by this instead of the window size. */
  divisorOverride?: number | null;
}
export function avgPool2d(x: Tensor, kernelSize: number | number[], opts: AvgPool2dOptions = {}): Tensor {
  return ops.avg_pool2d(x, kernelSize, opts.stride ?? kernelSize, opts.padding ?? 0, opts.ceilMode ?? false,
    opts.countIncludePad ?? true, opts.divisorOverride ?? null);
}

export const adaptiveAvgPool2d = (x: Tensor, outputSize: number | number[]): Tensor => ops.adaptive_avg_pool2d(x, outputSize);

export interface LayerNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  eps?: number;
}
/**
 * Layer normalization over the trailing dimensions `normalizedShape`. Takes PyTorch's positional form
 * `layerNorm(x, shape, weight, bias, eps)` or an options object `layerNorm(x, shape, { weight, bias, eps })`.
 */
export function layerNorm(x: Tensor, normalizedShape: number[], opts?: LayerNormOptions): Tensor;
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps?: number): Tensor;
export function layerNorm(x: Tensor, normalizedShape: number[], a?: Tensor | LayerNormOptions | null, bias?: Tensor | null, eps?: number): Tensor {
  const o: LayerNormOptions = a instanceof Tensor || a === null || a === undefined ? { weight: a ?? null, bias, eps } : a;
  return ops.layer_norm(x, normalizedShape, o.weight ?? null, o.bias ?? null, o.eps ?? 1e-5);
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  /** Normalize with the batch's statistics and update the running ones in place. Default false. */
  training?: boolean;
  momentum?: number;
  eps?: number;
}
/**
 * Batch normalization over dimension 1. In training mode the batch statistics are used and `runningMean` /
 * `runningVar` (when given) are updated in place with `momentum`; otherwise the running statistics are used.
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, opts: BatchNormOptions = {}): Tensor {
  const training = opts.training ?? false;
  if (!training && (runningMean === null || runningVar === null))
    throw new Error('batchNorm: evaluation mode (training: false) needs runningMean and runningVar');
  if (training && x.ndim >= 2 && x.numel() / x.shape[1] <= 1)
    throw new Error(`batchNorm: training needs more than one value per channel, got input ${fmt(x)}`);
  return ops.batch_norm(x, opts.weight ?? null, opts.bias ?? null, runningMean, runningVar, training, opts.momentum ?? 0.1, opts.eps ?? 1e-5, false);
}

/**
 * Rows of `weight` [numEmbeddings, dim] picked by integer `indices`. The row at `paddingIdx` (negative counts from
 * the end) receives no gradient.
 */
export function embedding(indices: Tensor, weight: Tensor, paddingIdx: number | null = null): Tensor {
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32')
    throw new Error(`embedding: indices must be int64 or int32, got ${indices.dtype}`);
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be 2-D [numEmbeddings, dim], got ${fmt(weight)}`);
  let pad = -1;
  if (paddingIdx !== null && paddingIdx !== undefined) {
    const n = weight.shape[0];
    requireInteger('embedding', 'paddingIdx', paddingIdx);
    if (paddingIdx >= n || paddingIdx < -n) throw new Error(`embedding: paddingIdx ${paddingIdx} is outside [${-n}, ${n}) for weight ${fmt(weight)}`);
    pad = paddingIdx < 0 ? n + paddingIdx : paddingIdx;
  }
  return ops.embedding(weight, indices, pad);
}

/** int64 one-hot encoding with a trailing dimension of `numClasses` (-1: the largest index + 1). */
export function oneHot(indices: Tensor, numClasses = -1): Tensor {
  if (indices.dtype !== 'int64') throw new Error(`oneHot: indices must be int64, got ${indices.dtype}`);
  requireInteger('oneHot', 'numClasses', numClasses);
  return ops.one_hot(indices, numClasses);
}

/** x / max(||x||_p, eps) along `dim`, like F.normalize (defaults p = 2, dim = 1, eps = 1e-12). */
export function normalize(x: Tensor, opts: { p?: number; dim?: number; eps?: number } = {}): Tensor {
  const p = opts.p ?? 2, dim = opts.dim ?? 1, eps = opts.eps ?? 1e-12;
  const norm = ops.norm_ScalarOpt_dim(x, p, dim, true);
  const denom = ops.clamp_min(norm, eps);
  norm.dispose();
  try {
    return x.div(denom);
  } finally {
    denom.dispose();
  }
}

export type PadMode = 'constant' | 'reflect' | 'replicate' | 'circular';
/**
 * Pads the last dimensions: `pad` lists (before, after) pairs starting from the last dimension, as in F.pad.
 * `value` (default 0) fills in 'constant' mode.
 */
export function pad(x: Tensor, padding: number[], opts: { mode?: PadMode; value?: number } = {}): Tensor {
  const mode = opts.mode ?? 'constant';
  if (!['constant', 'reflect', 'replicate', 'circular'].includes(mode))
    throw new Error(`pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got ${JSON.stringify(mode)}`);
  if (padding.length % 2 !== 0 || padding.length / 2 > x.ndim)
    throw new Error(`pad: padding needs (before, after) pairs for at most ${x.ndim} dimensions of input ${fmt(x)}, got ${padding.length} values`);
  if (mode !== 'constant' && opts.value !== undefined && opts.value !== 0)
    throw new Error(`pad: value applies to mode 'constant' only, got mode '${mode}'`);
  return ops.pad(x, padding, mode, mode === 'constant' ? (opts.value ?? null) : null);
}

/** Cosine of the angle between x1 and x2 along `dim` (broadcasting), each norm clamped to at least `eps`. */
export const cosineSimilarity = (x1: Tensor, x2: Tensor, dim = 1, eps = 1e-8): Tensor => ops.cosine_similarity(x1, x2, dim, eps);

// ---------------------------------------------------------------- attention

export interface ScaledDotProductAttentionOptions {
  /**
   * Masks over the scores, broadcast against [..., L, S] and applied in order: bool (true = that key is not attended
   * to) or float (added to the scores).
   */
  mask?: Tensor | null | readonly (Tensor | null | undefined)[];
  /**
   * Causal attention: the queries are the last L of the S key positions (as when the keys come from a cache), and
   * query i attends to keys j ≤ S − L + i. Applied before `mask`.
   */
  causal?: boolean;
  /** Dropout on the attention probabilities (default 0; pass 0 outside training). */
  dropout?: number;
  /** Also return the attention probabilities (after softmax, before dropout; default false). */
  needWeights?: boolean;
}

/**
 * softmax(q·kᵀ / √d + masks) · v for q [..., L, d], k [..., S, d], v [..., S, dv]: returns `[output [..., L, dv],
 * probabilities [..., L, S] or null]`. The one attention computation of the library (MultiheadAttention, the
 * encoder layers and the GPT decoder, for training, cached and batched decoding alike). Written with matmul and
 * softmax, whose numerics are PyTorch 1.13's MultiheadAttention's (q is divided by √d before the product), and which
 * can return the probabilities that attention distillation reads; libtorch 1.13 has no public fused kernel.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: ScaledDotProductAttentionOptions = {}): [Tensor, Tensor | null] {
  const op = 'scaledDotProductAttention';
  const qs = q.shape;
  const ks = k.shape;
  const vs = v.shape;
  if (qs.length < 2 || ks.length !== qs.length || vs.length !== qs.length)
    throw new Error(`${op}: q, k and v must have the same number of dimensions (at least 2), got q ${fmt(qs)}, k ${fmt(ks)}, v ${fmt(vs)}`);
  const n = qs.length;
  const d = qs[n - 1];
  const L = qs[n - 2];
  const S = ks[n - 2];
  if (ks[n - 1] !== d || vs[n - 2] !== S)
    throw new Error(`${op}: q [..., L, d], k [..., S, d] and v [..., S, dv] do not fit: q ${fmt(qs)}, k ${fmt(ks)}, v ${fmt(vs)}`);
  const p = opts.dropout ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new Error(`${op}: dropout must be in [0, 1], got ${p}`);
  let scores = q.div(Math.sqrt(d)).matmul(k.transpose(-2, -1)); // [..., L, S]
  if (opts.causal && L > 1) {
    if (L > S) throw new Error(`${op}: causal attention needs at least as many keys as queries, got q ${fmt(qs)} and k ${fmt(ks)}`);
    scores = scores.maskedFill(ops.triu(ops.ones([L, S], { dtype: 'bool', device: q.device }), S - L + 1), -Infinity);
  }
  const masks = opts.mask == null ? [] : Array.isArray(opts.mask) ? opts.mask : [opts.mask as Tensor];
  for (const m of masks) if (m) scores = m.dtype === 'bool' ? scores.maskedFill(m, -Infinity) : scores.add(m);
  const probs = scores.softmax(-1);
  const out = (p > 0 ? ops.dropout(probs, p, true) : probs).matmul(v);
  return [out, opts.needWeights ? probs : null];
}

// ---------------------------------------------------------------- losses

export interface CrossEntropyOptions {
  /** Per-class weights [C]. */
  weight?: Tensor | null;
  /** Class index whose targets contribute nothing (class-index targets only). Default -100. */
  ignoreIndex?: number;
  reduction?: Reduction;
  /** Mixes the target with the uniform distribution: (1 - s) * target + s / C. Default 0. */
  labelSmoothing?: number;
}

/** Checks logits/log-probabilities [N, C, ...] or [C] against a target and an optional class weight. */
function checkClassification(op: string, inputName: string, input: Tensor, target: Tensor, weight: Tensor | null | undefined, allowProbs: boolean): void {
  const shape = input.shape;
  if (shape.length === 0) throw new Error(`${op}: ${inputName} needs a class dimension, got a scalar`);
  requireFloat(op, inputName, input);
  const C = shape.length === 1 ? shape[0] : shape[1];
  const td = target.dtype;
  const tshape = target.shape;
  const indexShape = shape.length === 1 ? [] : [shape[0], ...shape.slice(2)];
  if (allowProbs && isFloatingDType(td)) {
    if (!sameShape(shape, tshape)) {
      if (sameShape(indexShape, tshape))
        throw new Error(`${op}: target ${td} ${fmt(tshape)} has the shape of class indices for ${inputName} ${fmt(shape)}, ` +
          `but class indices must be int64 (convert with target.long()); probability targets must have the ${inputName}' shape`);
      throw new Error(`${op}: probability targets must have the ${inputName}' shape: ${inputName} ${fmt(shape)}, target ${fmt(tshape)}`);
    }
  } else {
    if (td !== 'int64') {
      const what = allowProbs ? 'class-index targets must be int64 (or floating-point probabilities)' : 'targets must be int64 class indices';
      throw new Error(`${op}: ${what}, got ${td}${isFloatingDType(td) ? '' : ' (convert with target.long())'}`);
    }
    if (!sameShape(indexShape, tshape))
      throw new Error(`${op}: class-index target must have shape ${fmt(indexShape)} (${inputName} ${fmt(shape)} without the class dimension), got ${fmt(tshape)}`);
  }
  if (weight) {
    if (!(weight instanceof Tensor)) throw new Error(`${op}: weight must be a Tensor or null`);
    if (weight.ndim !== 1 || weight.shape[0] !== C)
      throw new Error(`${op}: weight must be 1-D with one entry per class (${C}), got ${fmt(weight)}`);
    requireFloat(op, 'weight', weight);
    if (weight.dtype !== input.dtype)
      throw new Error(`${op}: weight is ${weight.dtype} but ${inputName} is ${input.dtype}; they must have the same dtype`);
  }
}

/**
 * Cross-entropy between logits [N, C, d1, ...] (or unbatched [C]) and either class indices [N, d1, ...] (int64) or
 * class probabilities shaped like the logits (floating point), as torch.nn.functional.cross_entropy in PyTorch 1.13.
 * With probability targets, 'mean' divides by the number of samples (times the extra dimensions d1, ...), class weights
 * scale each class's term, and `ignoreIndex` must stay negative (PyTorch rejects it for probability targets).
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  checkClassification('crossEntropy', 'logits', logits, target, opts.weight, true);
  const red = reductionEnum('crossEntropy', opts.reduction);
  const ls = opts.labelSmoothing ?? 0;
  if (typeof ls !== 'number' || !(ls >= 0 && ls <= 1)) throw new Error(`crossEntropy: labelSmoothing must be in [0, 1], got ${ls}`);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  requireInteger('crossEntropy', 'ignoreIndex', ignoreIndex);
  if (ignoreIndex >= 0 && isFloatingDType(target.dtype))
    throw new Error(`crossEntropy: ignoreIndex (${ignoreIndex}) applies to class-index targets only; with probability targets leave it unset`);
  return ops.cross_entropy_loss(logits, target, opts.weight ?? null, red, ignoreIndex, ls);
}

/** Negative log-likelihood of log-probabilities [N, C, d1, ...] (or [C]) at int64 class indices [N, d1, ...]. */
export function nllLoss(logProbs: Tensor, target: Tensor, opts: { weight?: Tensor | null; ignoreIndex?: number; reduction?: Reduction } = {}): Tensor {
  checkClassification('nllLoss', 'input', logProbs, target, opts.weight, false);
  const red = reductionEnum('nllLoss', opts.reduction);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  requireInteger('nllLoss', 'ignoreIndex', ignoreIndex);
  return ops.nll_loss_nd(logProbs, target, opts.weight ?? null, red, ignoreIndex);
}

/**
 * Kullback-Leibler divergence KL(target || model) with PyTorch's argument order and semantics: `input` holds the
 * model's log-probabilities, `target` the reference distribution as probabilities (or as log-probabilities with
 * `logTarget: true`); the pointwise term is target * (log target - input).
 *
 * The default reduction is 'mean', as in PyTorch, which averages over every element (batch and classes). The KL
 * divergence itself is the per-sample sum: 'batchmean' (the sum divided by the batch size, dimension 0) is the
 * mathematically correct value and what distillation losses use.
 */
export function klDiv(input: Tensor, target: Tensor, opts: { reduction?: KLDivReduction; logTarget?: boolean } = {}): Tensor {
  requireSameShape('klDiv', 'input', input, 'target', target);
  const logTarget = opts.logTarget ?? false;
  const r = opts.reduction ?? 'mean';
  if (r === 'batchmean') {
    const s = ops.kl_div(input, target, REDUCTION_ENUM.sum, { log_target: logTarget });
    if (input.ndim === 0) return s;
    try {
      return s.div(input.shape[0]);
    } finally {
      s.dispose();
    }
  }
  if (!Object.prototype.hasOwnProperty.call(REDUCTION_ENUM, r))
    throw new Error(`klDiv: reduction must be one of 'mean', 'sum', 'none', 'batchmean', got ${JSON.stringify(r)}`);
  return ops.kl_div(input, target, REDUCTION_ENUM[r as Reduction], { log_target: logTarget });
}

// Unlike PyTorch, which broadcasts mismatched shapes with a warning, the pointwise losses below require equal shapes.

/** Mean squared error. */
export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  requireSameShape('mseLoss', 'input', input, 'target', target);
  return ops.mse_loss(input, target, reductionEnum('mseLoss', opts.reduction));
}

/** Mean absolute error. */
export function l1Loss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  requireSameShape('l1Loss', 'input', input, 'target', target);
  return ops.l1_loss(input, target, reductionEnum('l1Loss', opts.reduction));
}

/** 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (beta = 0: L1). Default beta 1. */
export function smoothL1Loss(input: Tensor, target: Tensor, opts: { reduction?: Reduction; beta?: number } = {}): Tensor {
  requireSameShape('smoothL1Loss', 'input', input, 'target', target);
  const beta = opts.beta ?? 1;
  if (typeof beta !== 'number' || !(beta >= 0)) throw new Error(`smoothL1Loss: beta must be non-negative, got ${beta}`);
  return ops.smooth_l1_loss(input, target, reductionEnum('smoothL1Loss', opts.reduction), beta);
}

/**
 * Per row: 1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1. x1 and x2 are [N, D] with y [N],
 * or [D] with a scalar y. Default margin 0.
 */
export function cosineEmbeddingLoss(x1: Tensor, x2: Tensor, y: Tensor, opts: { margin?: number; reduction?: Reduction } = {}): Tensor {
  requireSameShape('cosineEmbeddingLoss', 'x1', x1, 'x2', x2);
  if (x1.ndim !== 1 && x1.ndim !== 2) throw new Error(`cosineEmbeddingLoss: x1 and x2 must be [N, D] or [D], got ${fmt(x1)}`);
  const expected = x1.ndim === 2 ? [x1.shape[0]] : [];
  if (!sameShape(y.shape, expected))
    throw new Error(`cosineEmbeddingLoss: y must have shape ${fmt(expected)} (one entry of +1 or -1 per row of x1 ${fmt(x1)}), got ${fmt(y)}`);
  return ops.cosine_embedding_loss(x1, x2, y, opts.margin ?? 0, reductionEnum('cosineEmbeddingLoss', opts.reduction));
}

/**
 * Binary cross-entropy on probabilities in [0, 1] (after a sigmoid); `weight` rescales each element (broadcast).
 * `binaryCrossEntropyWithLogits` is the numerically stable form and the one to train with.
 */
export function binaryCrossEntropy(probs: Tensor, target: Tensor, opts: { weight?: Tensor | null; reduction?: Reduction } = {}): Tensor {
  requireSameShape('binaryCrossEntropy', 'input', probs, 'target', target);
  requireFloat('binaryCrossEntropy', 'input', probs);
  requireFloat('binaryCrossEntropy', 'target', target);
  return ops.binary_cross_entropy(probs, target, opts.weight ?? null, reductionEnum('binaryCrossEntropy', opts.reduction));
}

/** 0.5 d^2 where |d| < delta, delta * (|d| - 0.5 delta) elsewhere. Default delta 1 (then equal to smoothL1Loss). */
export function huberLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction; delta?: number } = {}): Tensor {
  requireSameShape('huberLoss', 'input', input, 'target', target);
  const delta = opts.delta ?? 1;
  if (typeof delta !== 'number' || !(delta > 0)) throw new Error(`huberLoss: delta must be positive, got ${delta}`);
  return ops.huber_loss(input, target, reductionEnum('huberLoss', opts.reduction), delta);
}

/**
 * Binary cross-entropy on logits (numerically stable sigmoid + BCE). `weight` rescales each element (broadcast),
 * `posWeight` the positive term per class (broadcast along the last dimension).
 */
export function binaryCrossEntropyWithLogits(
  logits: Tensor, target: Tensor,
  opts: { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction } = {},
): Tensor {
  requireSameShape('binaryCrossEntropyWithLogits', 'logits', logits, 'target', target);
  requireFloat('binaryCrossEntropyWithLogits', 'target', target);
  return ops.binary_cross_entropy_with_logits(logits, target, opts.weight ?? null, opts.posWeight ?? null,
    reductionEnum('binaryCrossEntropyWithLogits', opts.reduction));
}

/**
 * Cross-entropy of student logits [N, C, ...] against teacher probabilities of the same shape:
 * -sum_c p_teacher * log_softmax(student) per sample, averaged over samples by default (timm's SoftTargetCrossEntropy).
 * The same fused kernel as `crossEntropy` with probability targets.
 */
export function softTargetCrossEntropy(studentLogits: Tensor, teacherProbs: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  requireFloat('softTargetCrossEntropy', 'student logits', studentLogits);
  requireFloat('softTargetCrossEntropy', 'teacher probabilities', teacherProbs);
  requireSameShape('softTargetCrossEntropy', 'student logits', studentLogits, 'teacher probabilities', teacherProbs);
  return ops.cross_entropy_loss(studentLogits, teacherProbs, null, reductionEnum('softTargetCrossEntropy', opts.reduction), -100, 0);
}
