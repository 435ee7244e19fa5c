// torch.nn.functional in camelCase: activations, layer functions and losses over the fused aten kernels.
import { Tensor, ops } from '../torch';

export type Reduction = 'mean' | 'sum' | 'none';
const RED: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };
function red(r: string | undefined, op: string, allowed: string[] = ['mean', 'sum', 'none']): number {
  const v = r ?? 'mean';
  if (!allowed.includes(v)) throw new Error(`${op}: reduction must be one of ${allowed.join(', ')}, got '${v}'`);
  return RED[v as Reduction];
}
const shp = (t: Tensor) => `[${t.shape.join(', ')}]`;

// ---------------------------------------------------------------- activations

export const relu = (x: Tensor): Tensor => ops.relu(x);
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor => ops.gelu(x, { approximate });
export const silu = (x: Tensor): Tensor => ops.silu(x);
export const tanh = (x: Tensor): Tensor => ops.tanh(x);
export const sigmoid = (x: Tensor): Tensor => ops.sigmoid(x);
/** softmax(x / temperature) along dim. */
export function softmax(x: Tensor, dim: number, opts: { temperature?: number } = {}): Tensor {
  const t = opts.temperature ?? 1;
  return ops.softmax_int(t === 1 ? x : x.div(t), dim);
}
/** log_softmax(x / temperature) along dim. */
export function logSoftmax(x: Tensor, dim: number, opts: { temperature?: number } = {}): Tensor {
  const t = opts.temperature ?? 1;
  return ops.log_softmax_int(t === 1 ? x : x.div(t), dim);
}
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return training && p > 0 ? ops.dropout(x, p, true) : ops.alias(x);
}

// ---------------------------------------------------------------- layers as functions

export const linear = (x: Tensor, w: Tensor, b?: Tensor | null): Tensor => ops.linear(x, w, b ?? null);
export function conv1d(x: Tensor, w: Tensor, b?: Tensor | null, o: { stride?: number; padding?: number; dilation?: number; groups?: number } = {}): Tensor {
  return ops.conv1d(x, w, b ?? null, o.stride ?? 1, o.padding ?? 0, o.dilation ?? 1, o.groups ?? 1);
}
export function conv2d(x: Tensor, w: Tensor, b?: Tensor | null, o: { stride?: number | number[]; padding?: number | number[]; dilation?: number | number[]; groups?: number } = {}): Tensor {
  return ops.conv2d(x, w, b ?? null, o.stride ?? 1, o.padding ?? 0, o.dilation ?? 1, o.groups ?? 1);
}
export function maxPool2d(x: Tensor, kernel: number | number[], o: { stride?: number | number[]; padding?: number | number[] } = {}): Tensor {
  return ops.max_pool2d(x, kernel, o.stride ?? kernel, o.padding ?? 0);
}
export function avgPool2d(x: Tensor, kernel: number | number[], o: { stride?: number | number[]; padding?: number | number[] } = {}): Tensor {
  return ops.avg_pool2d(x, kernel, o.stride ?? kernel, o.padding ?? 0);
}
export const adaptiveAvgPool2d = (x: Tensor, size: number | number[]): Tensor => ops.adaptive_avg_pool2d(x, size);
export function layerNorm(x: Tensor, normalizedShape: number[], w?: Tensor | null, b?: Tensor | null, eps = 1e-5): Tensor {
  return ops.layer_norm(x, normalizedShape, w ?? null, b ?? null, eps);
}
export function batchNorm(
  x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  o: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {},
): Tensor {
  return ops.batch_norm(x, o.weight ?? null, o.bias ?? null, runningMean, runningVar, o.training ?? false, o.momentum ?? 0.1, o.eps ?? 1e-5, false);
}
export const embedding = (indices: Tensor, weight: Tensor, paddingIdx = -1): Tensor => ops.embedding(weight, indices, paddingIdx);
export const oneHot = (indices: Tensor, numClasses = -1): Tensor => ops.one_hot(indices, numClasses);
/** x / max(||x||_p, eps) along dim, like F.normalize. */
export function normalize(x: Tensor, o: { p?: number; dim?: number; eps?: number } = {}): Tensor {
  const n = x.norm(o.p ?? 2, o.dim ?? 1, true).clamp(o.eps ?? 1e-12);
  return x.div(n);
}
export const cosineSimilarity = (x1: Tensor, x2: Tensor, dim = 1, eps = 1e-8): Tensor => ops.cosine_similarity(x1, x2, dim, eps);

// ---------------------------------------------------------------- losses

export interface CrossEntropyOptions {
  weight?: Tensor | null;
  ignoreIndex?: number;
  reduction?: Reduction;
  labelSmoothing?: number;
}

/**
 * Cross-entropy between logits [N, C, ...] and either class indices [N, ...] (int64) or class probabilities shaped
 * like the logits (float), as torch.nn.functional.cross_entropy in PyTorch 1.13.
 */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  const td = target.dtype;
  const floatTarget = td === 'float32' || td === 'float64' || td === 'float16' || td === 'bfloat16';
  if (floatTarget) {
    const a = logits.shape, b = target.shape;
    if (a.length !== b.length || a.some((x, i) => x !== b[i]))
      throw new Error(`crossEntropy: probability targets must have the logits' shape: logits ${shp(logits)}, target ${shp(target)}`);
  } else if (td !== 'int64') {
    throw new Error(`crossEntropy: class-index targets must be int64, got ${td} (use target.long())`);
  } else if (target.ndim !== logits.ndim - 1) {
    throw new Error(`crossEntropy: class-index targets need ${logits.ndim - 1} dimensions for logits ${shp(logits)}, got target ${shp(target)}`);
  }
  const ls = o.labelSmoothing ?? 0;
  if (ls < 0 || ls > 1) throw new Error(`crossEntropy: labelSmoothing must be in [0, 1], got ${ls}`);
  return ops.cross_entropy_loss(logits, target, o.weight ?? null, red(o.reduction, 'crossEntropy'), o.ignoreIndex ?? -100, ls);
}

export function nllLoss(logProbs: Tensor, target: Tensor, o: { weight?: Tensor | null; ignoreIndex?: number; reduction?: Reduction } = {}): Tensor {
  if (target.dtype !== 'int64') throw new Error(`nllLoss: targets must be int64, got ${target.dtype}`);
  return ops.nll_loss_nd(logProbs, target, o.weight ?? null, red(o.reduction, 'nllLoss'), o.ignoreIndex ?? -100);
}

/**
 * KL divergence with PyTorch's argument order: `input` holds log-probabilities of the model, `target` the reference
 * distribution (probabilities, or log-probabilities with `logTarget`). PyTorch's default reduction 'mean' averages
 * over every element; 'batchmean' (sum / batch size) is the mathematically correct KL and what distillation uses.
 */
export function klDiv(input: Tensor, target: Tensor, o: { reduction?: Reduction | 'batchmean'; logTarget?: boolean } = {}): Tensor {
  const r = o.reduction ?? 'mean';
  const a = input.shape, b = target.shape;
  if (a.length !== b.length || a.some((x, i) => x !== b[i]))
    throw new Error(`klDiv: input ${shp(input)} and target ${shp(target)} must have the same shape`);
  if (r === 'batchmean') {
    const s = ops.kl_div(input, target, RED.sum, { log_target: o.logTarget ?? false });
    return input.ndim === 0 ? s : s.div(a[0]);
  }
  return ops.kl_div(input, target, red(r, 'klDiv', ['mean', 'sum', 'none', 'batchmean']), { log_target: o.logTarget ?? false });
}

function sameShape(op: string, a: Tensor, b: Tensor): void {
  const x = a.shape, y = b.shape;
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${op}: input ${shp(a)} and target ${shp(b)} must have the same shape`);
}
export function mseLoss(input: Tensor, target: Tensor, o: { reduction?: Reduction } = {}): Tensor {
  sameShape('mseLoss', input, target);
  return ops.mse_loss(input, target, red(o.reduction, 'mseLoss'));
}
export function l1Loss(input: Tensor, target: Tensor, o: { reduction?: Reduction } = {}): Tensor {
  sameShape('l1Loss', input, target);
  return ops.l1_loss(input, target, red(o.reduction, 'l1Loss'));
}
export function smoothL1Loss(input: Tensor, target: Tensor, o: { reduction?: Reduction; beta?: number } = {}): Tensor {
  sameShape('smoothL1Loss', input, target);
  return ops.smooth_l1_loss(input, target, red(o.reduction, 'smoothL1Loss'), o.beta ?? 1);
}
/** 1 - cos(x1, x2) where y = 1; max(0, cos(x1, x2) - margin) where y = -1. */
export function cosineEmbeddingLoss(x1: Tensor, x2: Tensor, y: Tensor, o: { margin?: number; reduction?: Reduction } = {}): Tensor {
  sameShape('cosineEmbeddingLoss', x1, x2);
  if (y.shape[0] !== x1.shape[0]) throw new Error(`cosineEmbeddingLoss: y ${shp(y)} needs one entry per row of x1 ${shp(x1)}`);
  return ops.cosine_embedding_loss(x1, x2, y, o.margin ?? 0, red(o.reduction, 'cosineEmbeddingLoss'));
}
export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, o: { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction } = {}): Tensor {
  sameShape('binaryCrossEntropyWithLogits', logits, target);
  return ops.binary_cross_entropy_with_logits(logits, target, o.weight ?? null, o.posWeight ?? null, red(o.reduction, 'binaryCrossEntropyWithLogits'));
}
/** Cross-entropy of student logits against teacher probabilities: -sum(p_teacher * log_softmax(student)) / N. */
export function softTargetCrossEntropy(studentLogits: Tensor, teacherProbs: Tensor, o: { reduction?: Reduction } = {}): Tensor {
  return crossEntropy(studentLogits, teacherProbs, { reduction: o.reduction });
}
