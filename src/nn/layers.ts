// Layers with PyTorch's names, options, parameter names and default initialisations. Required arguments are
// positional, optional ones an options object (`new Conv2d(3, 16, 3, { stride: 2, padding: 1, bias: false })`).
// Under the same `manualSeed`, a layer's default initialisation is bit for bit PyTorch 1.13's (CPU, float32): the
// same initialisers, called in the same order.
//
// Errors from the underlying ops are rethrown with the layer and the input shapes named (see `layerError`); the
// `try` costs nothing on the success path.
import { Tensor, chain, empty, ones, ops, zeros, noGrad, tidy, type ProcessGroup } from '../torch';
import { Module } from './module';
import type { LayerQuant } from './quant';
import * as init from './init';
import { maxPool2d } from './functional';

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

/** `Linear(in_features=4, ...)`: the class and its constructor arguments, for error messages. */
export function moduleLabel(m: Module): string {
  return `${m.constructor.name}(${m.extraRepr()})`;
}

/** Rethrows an error from a layer's op with the layer and the input dtypes and shapes named. */
export function layerError(m: Module, inputs: (Tensor | null | undefined)[], e: unknown): never {
  const shapes = inputs.map((t) => (t instanceof Tensor ? (t.isDisposed ? 'a disposed tensor' : `${t.dtype}${shapeStr(t.shape)}`) : String(t)));
  const msg = e instanceof Error ? e.message : String(e);
  throw new Error(`${moduleLabel(m)} failed on input ${shapes.join(', ')}: ${msg}`, { cause: e });
}

type IntOrList = number | number[];

/** `x` repeated to `n` entries (a list must already have `n`). */
function ntuple(x: IntOrList, n: number, what: string, owner: string): number[] {
  if (Array.isArray(x)) {
    if (x.length !== n) throw new Error(`${owner}: ${what} must have ${n} entries, got [${x.join(', ')}]`);
    return x.slice();
  }
  if (!Number.isInteger(x)) throw new Error(`${owner}: ${what} must be an integer or a list of ${n} integers, got ${x}`);
  return Array(n).fill(x);
}

function checkPositiveInt(v: number, what: string, owner: string): void {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${owner}: ${what} must be a positive integer, got ${v}`);
}

/** PyTorch's reset_parameters of Linear and ConvNd: kaiming_uniform_(a=sqrt(5)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
function initLinearLike(weight: Tensor, bias: Tensor | null): void {
  init.kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const [fanIn] = init.calculateFanInAndFanOut(weight);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    init.uniform_(bias, -bound, bound);
  }
}

// ---------------------------------------------------------------------------------------------------------- Linear

/** y = x Wᵀ + b over the last dimension. `weight` [outFeatures, inFeatures], `bias` [outFeatures]. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  /** Fake quantization for quantization-aware training (set by prepareQuantAware); null: float. */
  quant: LayerQuant | null = null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    checkPositiveInt(inFeatures, 'inFeatures', 'Linear');
    checkPositiveInt(outFeatures, 'outFeatures', 'Linear');
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', empty([outFeatures]));
    initLinearLike(this.weight, this.bias);
  }
  forward(x: Tensor): Tensor {
    try {
      if (this.quant) return this.quant.forward(x, this.weight, this.training, (xq, w) => ops.linear(xq, w, this.bias));
      return ops.linear(x, this.weight, this.bias);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

// ---------------------------------------------------------------------------------------------------------- Conv

export interface ConvOptions {
  stride?: IntOrList;
  /** Zero padding per side, or 'same' (stride 1 only) / 'valid'. */
  padding?: IntOrList | 'same' | 'valid';
  dilation?: IntOrList;
  groups?: number;
  bias?: boolean;
}

abstract class ConvNd extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: number[];
  readonly stride: number[];
  readonly padding: number[] | 'same' | 'valid';
  readonly dilation: number[];
  readonly groups: number;
  /** Fake quantization for quantization-aware training (set by prepareQuantAware); null: float. */
  quant: LayerQuant | null = null;
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: IntOrList, n: number, opts: ConvOptions) {
    super();
    const name = `Conv${n}d`;
    checkPositiveInt(inChannels, 'inChannels', name);
    checkPositiveInt(outChannels, 'outChannels', name);
    this.kernelSize = ntuple(kernelSize, n, 'kernelSize', name);
    this.stride = ntuple(opts.stride ?? 1, n, 'stride', name);
    this.dilation = ntuple(opts.dilation ?? 1, n, 'dilation', name);
    const p = opts.padding ?? 0;
    if (typeof p === 'string') {
      if (p !== 'same' && p !== 'valid') throw new Error(`${name}: padding must be a number, a list, 'same' or 'valid', got '${p}'`);
      if (p === 'same' && this.stride.some((s) => s !== 1)) throw new Error(`${name}: padding 'same' is not supported for strided convolutions (stride [${this.stride}])`);
      this.padding = p;
    } else this.padding = ntuple(p, n, 'padding', name);
    this.groups = opts.groups ?? 1;
    checkPositiveInt(this.groups, 'groups', name);
    if (inChannels % this.groups || outChannels % this.groups)
      throw new Error(`${name}: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups (${this.groups})`);
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / this.groups, ...this.kernelSize]));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', empty([outChannels]));
    initLinearLike(this.weight, this.bias);
  }
  override extraRepr(): string {
    const n = this.kernelSize.length;
    const tup = (v: number[]) => `(${v.join(', ')}${n === 1 ? ',' : ''})`;
    let s = `${this.inChannels}, ${this.outChannels}, kernel_size=${tup(this.kernelSize)}, stride=${tup(this.stride)}`;
    if (typeof this.padding === 'string' || this.padding.some((x) => x !== 0)) s += `, padding=${typeof this.padding === 'string' ? `'${this.padding}'` : tup(this.padding)}`;
    if (this.dilation.some((x) => x !== 1)) s += `, dilation=${tup(this.dilation)}`;
    if (this.groups !== 1) s += `, groups=${this.groups}`;
    if (this.bias === null) s += ', bias=False';
    return s;
  }
}

/** Input [N, C, L] (or [C, L]); weight [outC, inC/groups, k]. */
export class Conv1d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: IntOrList, opts: ConvOptions = {}) {
    super(inChannels, outChannels, kernelSize, 1, opts);
  }
  forward(x: Tensor): Tensor {
    try {
      if (this.quant) return this.quant.forward(x, this.weight, this.training, (xq, w) => this.conv(xq, w));
      return this.conv(x, this.weight);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  private conv(x: Tensor, w: Tensor): Tensor {
    return typeof this.padding === 'string'
      ? ops.conv1d_padding(x, w, this.bias, this.stride, this.padding, this.dilation, this.groups)
      : ops.conv1d(x, w, this.bias, this.stride, this.padding, this.dilation, this.groups);
  }
}

/** Input [N, C, H, W] (or [C, H, W]); weight [outC, inC/groups, kH, kW]. */
export class Conv2d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: IntOrList, opts: ConvOptions = {}) {
    super(inChannels, outChannels, kernelSize, 2, opts);
  }
  forward(x: Tensor): Tensor {
    try {
      if (this.quant) return this.quant.forward(x, this.weight, this.training, (xq, w) => this.conv(xq, w));
      return this.conv(x, this.weight);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  private conv(x: Tensor, w: Tensor): Tensor {
    return typeof this.padding === 'string'
      ? ops.conv2d_padding(x, w, this.bias, this.stride, this.padding, this.dilation, this.groups)
      : ops.conv2d(x, w, this.bias, this.stride, this.padding, this.dilation, this.groups);
  }
}

// ---------------------------------------------------------------------------------------------------------- norms

export interface BatchNormOptions {
  eps?: number;
  /** Weight of the new batch statistic in the running average; null: cumulative average (1 / num_batches_tracked). */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

abstract class BatchNormNd extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  /**
   * Synchronised over a process group (PyTorch's SyncBatchNorm): in training, the statistics of the whole global
   * batch, gathered from every rank. Null (default): this process's batch alone. See syncBatchNorm().
   */
  syncGroup: ProcessGroup | null = null;
  constructor(readonly numFeatures: number, opts: BatchNormOptions, private readonly expectDims: number[]) {
    super();
    checkPositiveInt(numFeatures, 'numFeatures', this.constructor.name);
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    this.affine = opts.affine ?? true;
    this.trackRunningStats = opts.trackRunningStats ?? true;
    this.weight = this.affine ? this.registerParameter('weight', ones([numFeatures])) : null;
    this.bias = this.affine ? this.registerParameter('bias', zeros([numFeatures])) : null;
    this.runningMean = this.trackRunningStats ? this.registerBuffer('running_mean', zeros([numFeatures])) : null;
    this.runningVar = this.trackRunningStats ? this.registerBuffer('running_var', ones([numFeatures])) : null;
    this.numBatchesTracked = this.trackRunningStats ? this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' })) : null;
  }
  /** Running statistics back to mean 0, variance 1, no batches seen. */
  resetRunningStats(): void {
    noGrad(() => {
      this.runningMean?.zero_();
      this.runningVar?.fill_(1);
      this.numBatchesTracked?.zero_();
    });
  }
  forward(x: Tensor): Tensor {
    const s = x.shape;
    const name = this.constructor.name;
    if (!this.expectDims.includes(s.length))
      throw new Error(`${name}(${this.numFeatures}): expected ${this.expectDims.join('-D or ')}-D input, got shape [${s.join(', ')}]`);
    if (s[1] !== this.numFeatures)
      throw new Error(`${name}(${this.numFeatures}): input has ${s[1]} channels (dimension 1 of shape [${s.join(', ')}]), expected ${this.numFeatures}`);
    let factor = this.momentum ?? 0;
    if (this.training) {
      let perChannel = s[0];
      for (let i = 2; i < s.length; i++) perChannel *= s[i];
      if (perChannel === 1)
        throw new Error(`${name}(${this.numFeatures}): expected more than 1 value per channel when training, got input shape [${s.join(', ')}]`);
      if (this.numBatchesTracked !== null) {
        const nbt = this.numBatchesTracked;
        noGrad(() => nbt.add_(1));
        if (this.momentum === null) factor = 1 / ops.item(nbt);
      }
    }
    const useBatchStats = this.training || this.runningMean === null;
    try {
      if (useBatchStats && this.syncGroup && this.syncGroup.worldSize > 1)
        return this.syncGroup.syncBatchNorm(x, this.weight, this.bias, this.training ? this.runningMean : null, this.training ? this.runningVar : null, factor, this.eps);
      return ops.batch_norm(x, this.weight, this.bias, this.runningMean, this.runningVar, useBatchStats, factor, this.eps, true);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}, momentum=${this.momentum}, affine=${this.affine}, track_running_stats=${this.trackRunningStats}`;
  }
}

/**
 * Synchronises every BatchNorm layer of `m` over `group` (PyTorch's SyncBatchNorm.convert_sync_batchnorm, in place:
 * the layers, parameters and buffers stay the same); null unsynchronises them. Returns how many layers it set.
 */
export function syncBatchNorm(m: Module, group: ProcessGroup | null): number {
  let n = 0;
  for (const [, mod] of m.namedModules()) {
    if (mod instanceof BatchNormNd) {
      mod.syncGroup = group;
      n++;
    }
  }
  return n;
}

/** Batch normalisation over [N, C] or [N, C, L] input. */
export class BatchNorm1d extends BatchNormNd {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts, [2, 3]);
  }
}
/** Batch normalisation over [N, C, H, W] input. */
export class BatchNorm2d extends BatchNormNd {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts, [4]);
  }
}

/** Normalises over the trailing `normalizedShape` dimensions. */
export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  constructor(normalizedShape: IntOrList, opts: { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = Array.isArray(normalizedShape) ? normalizedShape.slice() : [normalizedShape];
    this.normalizedShape.forEach((d) => checkPositiveInt(d, 'normalizedShape entries', 'LayerNorm'));
    this.eps = opts.eps ?? 1e-5;
    this.elementwiseAffine = opts.elementwiseAffine ?? true;
    this.weight = this.elementwiseAffine ? this.registerParameter('weight', ones(this.normalizedShape)) : null;
    this.bias = this.elementwiseAffine ? this.registerParameter('bias', zeros(this.normalizedShape)) : null;
  }
  forward(x: Tensor): Tensor {
    try {
      return ops.layer_norm(x, this.normalizedShape, this.weight, this.bias, this.eps, true);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `(${this.normalizedShape.join(', ')}${this.normalizedShape.length === 1 ? ',' : ''}), eps=${this.eps}, elementwise_affine=${this.elementwiseAffine}`;
  }
}

// ---------------------------------------------------------------------------------------------------------- Embedding

export interface EmbeddingOptions {
  /** This row is initialised to zero and gets no gradient; negative counts from the end. */
  paddingIdx?: number;
  scaleGradByFreq?: boolean;
}

/** A lookup table: int64/int32 indices of any shape -> [..., embeddingDim]. Weight ~ N(0, 1). */
export class Embedding extends Module {
  readonly weight: Tensor;
  readonly paddingIdx: number | null;
  readonly scaleGradByFreq: boolean;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: EmbeddingOptions & { _weight?: Tensor } = {}) {
    super();
    checkPositiveInt(numEmbeddings, 'numEmbeddings', 'Embedding');
    checkPositiveInt(embeddingDim, 'embeddingDim', 'Embedding');
    const p = opts.paddingIdx;
    if (p !== undefined && (!Number.isInteger(p) || p >= numEmbeddings || p < -numEmbeddings))
      throw new Error(`Embedding: paddingIdx ${p} out of range for ${numEmbeddings} embeddings`);
    this.paddingIdx = p === undefined ? null : p < 0 ? numEmbeddings + p : p;
    this.scaleGradByFreq = opts.scaleGradByFreq ?? false;
    if (opts._weight) {
      const w = opts._weight;
      if (w.ndim !== 2 || w.shape[0] !== numEmbeddings || w.shape[1] !== embeddingDim)
        throw new Error(`Embedding: weight must have shape [${numEmbeddings}, ${embeddingDim}], got [${w.shape.join(', ')}]`);
      this.weight = this.registerParameter('weight', noGrad(() => ops.clone(w)));
    } else {
      this.weight = this.registerParameter('weight', empty([numEmbeddings, embeddingDim]));
      init.normal_(this.weight);
      if (this.paddingIdx !== null) tidy(() => noGrad(() => { this.weight.select(0, this.paddingIdx!).zero_(); }));
    }
  }
  /** An Embedding holding a copy of `weight` [num, dim]; frozen unless `freeze: false`. */
  static fromPretrained(weight: Tensor, opts: EmbeddingOptions & { freeze?: boolean } = {}): Embedding {
    if (weight.ndim !== 2) throw new Error(`Embedding.fromPretrained: weight must be 2-D, got shape [${weight.shape.join(', ')}]`);
    const [n, d] = weight.shape;
    const e = new Embedding(n, d, { ...opts, _weight: weight });
    e.weight.requiresGrad_(!(opts.freeze ?? true));
    return e;
  }
  forward(indices: Tensor): Tensor {
    try {
      return ops.embedding(this.weight, indices, this.paddingIdx ?? -1, this.scaleGradByFreq, false);
    } catch (e) {
      layerError(this, [indices], e);
    }
  }
  override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim}${this.paddingIdx !== null ? `, padding_idx=${this.paddingIdx}` : ''}`;
  }
}

// ---------------------------------------------------------------------------------------------------------- Dropout

/** Zeroes elements with probability `p` in training and scales the rest by 1/(1-p); the identity in eval mode. */
export class Dropout extends Module {
  readonly p: number;
  constructor(p: number | { p?: number } = 0.5) {
    super();
    this.p = typeof p === 'number' ? p : (p.p ?? 0.5);
    if (!(this.p >= 0 && this.p <= 1)) throw new Error(`Dropout: p must be in [0, 1], got ${this.p}`);
  }
  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? ops.dropout(x, this.p, true) : ops.alias(x);
  }
  override extraRepr(): string {
    return `p=${this.p}`;
  }
}

// ---------------------------------------------------------------------------------------------------------- pooling

export interface MaxPool2dOptions {
  /** Default: the kernel size. */
  stride?: IntOrList;
  padding?: IntOrList;
  dilation?: IntOrList;
  ceilMode?: boolean;
}

export class MaxPool2d extends Module {
  readonly kernelSize: number[];
  readonly stride: number[];
  readonly padding: number[];
  readonly dilation: number[];
  readonly ceilMode: boolean;
  constructor(kernelSize: IntOrList, opts: MaxPool2dOptions = {}) {
    super();
    this.kernelSize = ntuple(kernelSize, 2, 'kernelSize', 'MaxPool2d');
    this.stride = opts.stride === undefined ? this.kernelSize.slice() : ntuple(opts.stride, 2, 'stride', 'MaxPool2d');
    this.padding = ntuple(opts.padding ?? 0, 2, 'padding', 'MaxPool2d');
    this.dilation = ntuple(opts.dilation ?? 1, 2, 'dilation', 'MaxPool2d');
    this.ceilMode = opts.ceilMode ?? false;
  }
  forward(x: Tensor): Tensor {
    try {
      return maxPool2d(x, this.kernelSize, { stride: this.stride, padding: this.padding, dilation: this.dilation, ceilMode: this.ceilMode });
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `kernel_size=(${this.kernelSize}), stride=(${this.stride}), padding=(${this.padding})`;
  }
}

export interface AvgPool2dOptions {
  /** Default: the kernel size. */
  stride?: IntOrList;
  padding?: IntOrList;
  ceilMode?: boolean;
  countIncludePad?: boolean;
  divisorOverride?: number | null;
}

export class AvgPool2d extends Module {
  readonly kernelSize: number[];
  readonly stride: number[];
  readonly padding: number[];
  readonly ceilMode: boolean;
  readonly countIncludePad: boolean;
  readonly divisorOverride: number | null;
  constructor(kernelSize: IntOrList, opts: AvgPool2dOptions = {}) {
    super();
    this.kernelSize = ntuple(kernelSize, 2, 'kernelSize', 'AvgPool2d');
    this.stride = opts.stride === undefined ? this.kernelSize.slice() : ntuple(opts.stride, 2, 'stride', 'AvgPool2d');
    this.padding = ntuple(opts.padding ?? 0, 2, 'padding', 'AvgPool2d');
    this.ceilMode = opts.ceilMode ?? false;
    this.countIncludePad = opts.countIncludePad ?? true;
    this.divisorOverride = opts.divisorOverride ?? null;
  }
  forward(x: Tensor): Tensor {
    try {
      return ops.avg_pool2d(x, this.kernelSize, this.stride, this.padding, this.ceilMode, this.countIncludePad, this.divisorOverride);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `kernel_size=(${this.kernelSize}), stride=(${this.stride}), padding=(${this.padding})`;
  }
}

/** Average pooling to a fixed output size; a null entry keeps that input dimension. */
export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number | null, number | null];
  constructor(outputSize: number | [number | null, number | null]) {
    super();
    this.outputSize = Array.isArray(outputSize) ? [outputSize[0], outputSize[1]] : [outputSize, outputSize];
  }
  forward(x: Tensor): Tensor {
    let [h, w] = this.outputSize;
    if (h === null || w === null) {
      const s = x.shape;
      h ??= s[s.length - 2];
      w ??= s[s.length - 1];
    }
    try {
      return ops.adaptive_avg_pool2d(x, [h, w]);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `output_size=(${this.outputSize.map((v) => v ?? 'None').join(', ')})`;
  }
}

// ---------------------------------------------------------------------------------------------------------- shape

/** Flattens dimensions startDim..endDim (default 1..-1). */
export class Flatten extends Module {
  readonly startDim: number;
  readonly endDim: number;
  constructor(startDim: number | { startDim?: number; endDim?: number } = 1, endDim = -1) {
    super();
    if (typeof startDim === 'object') {
      this.startDim = startDim.startDim ?? 1;
      this.endDim = startDim.endDim ?? -1;
    } else {
      this.startDim = startDim;
      this.endDim = endDim;
    }
  }
  forward(x: Tensor): Tensor {
    try {
      return ops.flatten_using_ints(x, this.startDim, this.endDim);
    } catch (e) {
      layerError(this, [x], e);
    }
  }
  override extraRepr(): string {
    return `start_dim=${this.startDim}, end_dim=${this.endDim}`;
  }
}

/** Returns its input (as a new handle, so scopes treat it like any result). */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return ops.alias(x);
  }
}

// ---------------------------------------------------------------------------------------------------------- activations

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return ops.relu(x);
  }
}
/** min(max(x, 0), 6) (MobileNets). */
export class ReLU6 extends Module {
  forward(x: Tensor): Tensor {
    return ops.hardtanh(x, 0, 6);
  }
}
export class GELU extends Module {
  readonly approximate: 'none' | 'tanh';
  constructor(approximate: 'none' | 'tanh' | { approximate?: 'none' | 'tanh' } = 'none') {
    super();
    this.approximate = typeof approximate === 'string' ? approximate : (approximate.approximate ?? 'none');
    if (this.approximate !== 'none' && this.approximate !== 'tanh') throw new Error(`GELU: approximate must be 'none' or 'tanh', got '${this.approximate}'`);
  }
  forward(x: Tensor): Tensor {
    return ops.gelu(x, { approximate: this.approximate });
  }
  override extraRepr(): string {
    return `approximate='${this.approximate}'`;
  }
}
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return ops.tanh(x);
  }
}
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return ops.sigmoid(x);
  }
}
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return ops.silu(x);
  }
}
export class LeakyReLU extends Module {
  readonly negativeSlope: number;
  constructor(negativeSlope: number | { negativeSlope?: number } = 0.01) {
    super();
    this.negativeSlope = typeof negativeSlope === 'number' ? negativeSlope : (negativeSlope.negativeSlope ?? 0.01);
  }
  forward(x: Tensor): Tensor {
    return ops.leaky_relu(x, this.negativeSlope);
  }
  override extraRepr(): string {
    return `negative_slope=${this.negativeSlope}`;
  }
}
/** Softmax over `dim` (required, unlike PyTorch's deprecated implicit choice). */
export class Softmax extends Module {
  readonly dim: number;
  constructor(dim: number | { dim: number }) {
    super();
    this.dim = typeof dim === 'number' ? dim : dim.dim;
  }
  forward(x: Tensor): Tensor {
    return ops.softmax_int(x, this.dim);
  }
  override extraRepr(): string {
    return `dim=${this.dim}`;
  }
}
export class LogSoftmax extends Module {
  readonly dim: number;
  constructor(dim: number | { dim: number }) {
    super();
    this.dim = typeof dim === 'number' ? dim : dim.dim;
  }
  forward(x: Tensor): Tensor {
    return ops.log_softmax_int(x, this.dim);
  }
  override extraRepr(): string {
    return `dim=${this.dim}`;
  }
}

// ---------------------------------------------------------------------------------------------------------- containers

/** Children named "0", "1", ... called in order, each through `call` (so hooks on `seq.1` see its output). */
export class Sequential extends Module {
  private readonly layers: Module[] = [];
  private readonly calls: ((x: any) => any)[] = [];
  constructor(...layers: Module[]) {
    super();
    for (const m of layers) this.append(m);
  }
  append(m: Module): this {
    this.registerModule(String(this.layers.length), m);
    this.layers.push(m);
    this.calls.push((x) => m.call(x));
    return this;
  }
  /** Replaces the i-th layer (its state_dict keys stay `<i>.*`); returns the layer it replaced. */
  set(i: number, m: Module): Module {
    const old = this.at(i);
    const k = this.layers.indexOf(old);
    this.registerModule(String(k), m);
    this.layers[k] = m;
    this.calls[k] = (x) => m.call(x);
    return old;
  }
  /** Each layer on the output of the one before; an intermediate output is released once the next exists (see chain). */
  forward(x: any): any {
    return chain(x, this.calls);
  }
  get length(): number {
    return this.layers.length;
  }
  /** The i-th layer; negative counts from the end. */
  at(i: number): Module {
    const m = this.layers[i < 0 ? i + this.layers.length : i];
    if (!m) throw new Error(`Sequential.at(${i}): index out of range for ${this.layers.length} layers`);
    return m;
  }
  [Symbol.iterator](): Iterator<Module> {
    return this.layers[Symbol.iterator]();
  }
}

/** Holds modules under "0", "1", ...; has no forward of its own. */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[] = [];
  constructor(modules: M[] = []) {
    super();
    for (const m of modules) this.append(m);
  }
  append(m: M): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
  extend(ms: Iterable<M>): this {
    for (const m of ms) this.append(m);
    return this;
  }
  /** Replaces the i-th module (its state_dict keys stay `<i>.*`); returns the module it replaced. */
  set(i: number, m: M): M {
    const old = this.at(i);
    const k = this.items.indexOf(old);
    this.registerModule(String(k), m);
    this.items[k] = m;
    return old;
  }
  get length(): number {
    return this.items.length;
  }
  /** The i-th module; negative counts from the end. */
  at(i: number): M {
    const m = this.items[i < 0 ? i + this.items.length : i];
    if (!m) throw new Error(`ModuleList.at(${i}): index out of range for ${this.items.length} modules`);
    return m;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
  forward(): never {
    throw new Error('ModuleList has no forward(); iterate over it and call its members');
  }
}
