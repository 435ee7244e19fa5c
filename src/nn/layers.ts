// Layers with PyTorch's names, options, parameter names and default initialisations.
import { Tensor, empty, ones, ops, zeros, noGrad, tidy } from '../torch';
import { Module } from './module';
import * as init from './init';

type Pair = number | [number, number];
const pair = (x: Pair): [number, number] => (Array.isArray(x) ? x : [x, x]);

function initLinearLike(weight: Tensor, bias: Tensor | null): void {
  // PyTorch: kaiming_uniform_(a=sqrt(5)) on the weight, bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  init.kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const [fanIn] = init.calculateFanInAndFanOut(weight);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    init.uniform_(bias, -bound, bound);
  }
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', empty([outFeatures]));
    initLinearLike(this.weight, this.bias);
  }
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias);
  }
  override extraRepr(): string {
    return `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

export interface ConvOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
  bias?: boolean;
}

abstract class ConvNd extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: number[];
  readonly padding: number[];
  readonly dilation: number[];
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number[], opts: ConvOptions) {
    super();
    const n = kernelSize.length;
    const rep = (v: number | number[] | undefined, d: number) => (v === undefined ? Array(n).fill(d) : Array.isArray(v) ? v : Array(n).fill(v));
    this.stride = rep(opts.stride, 1);
    this.padding = rep(opts.padding, 0);
    this.dilation = rep(opts.dilation, 1);
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups)
      throw new Error(`${this.constructor.name}: in_channels (${inChannels}) and out_channels (${outChannels}) must be divisible by groups (${this.groups})`);
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / this.groups, ...kernelSize]));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', empty([outChannels]));
    initLinearLike(this.weight, this.bias);
  }
  override extraRepr(): string {
    return `${this.inChannels}, ${this.outChannels}, kernel_size=(${this.kernelSize}), stride=(${this.stride}), padding=(${this.padding})`;
  }
}

export class Conv1d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: number, opts: ConvOptions = {}) {
    super(inChannels, outChannels, [kernelSize], opts);
  }
  forward(x: Tensor): Tensor {
    return ops.conv1d(x, this.weight, this.bias, this.stride, this.padding, this.dilation, this.groups);
  }
}

export class Conv2d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: Pair, opts: ConvOptions = {}) {
    super(inChannels, outChannels, pair(kernelSize), opts);
  }
  forward(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, this.bias, this.stride, this.padding, this.dilation, this.groups);
  }
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
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
  readonly momentum: number;
  constructor(readonly numFeatures: number, opts: BatchNormOptions, private readonly expectDims: number[]) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum ?? 0.1;
    const affine = opts.affine ?? true;
    const track = opts.trackRunningStats ?? true;
    this.weight = affine ? this.registerParameter('weight', ones([numFeatures])) : null;
    this.bias = affine ? this.registerParameter('bias', zeros([numFeatures])) : null;
    this.runningMean = track ? this.registerBuffer('running_mean', zeros([numFeatures])) : null;
    this.runningVar = track ? this.registerBuffer('running_var', ones([numFeatures])) : null;
    this.numBatchesTracked = track ? this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' })) : null;
  }
  forward(x: Tensor): Tensor {
    const nd = x.ndim;
    if (!this.expectDims.includes(nd))
      throw new Error(`${this.constructor.name}: expected ${this.expectDims.join(' or ')}-D input, got shape [${x.shape.join(', ')}]`);
    const useBatchStats = this.training || this.runningMean === null;
    if (this.training && this.numBatchesTracked !== null) noGrad(() => this.numBatchesTracked!.add_(1));
    return ops.batch_norm(x, this.weight, this.bias, this.runningMean, this.runningVar, useBatchStats, this.momentum, this.eps, false);
  }
  override extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}, momentum=${this.momentum}`;
  }
}

export class BatchNorm1d extends BatchNormNd {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts, [2, 3]);
  }
}
export class BatchNorm2d extends BatchNormNd {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts, [4]);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly opts: { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = Array.isArray(normalizedShape) ? normalizedShape : [normalizedShape];
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones(this.normalizedShape)) : null;
    this.bias = affine ? this.registerParameter('bias', zeros(this.normalizedShape)) : null;
  }
  forward(x: Tensor): Tensor {
    return ops.layer_norm(x, this.normalizedShape, this.weight, this.bias, this.opts.eps ?? 1e-5);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  readonly paddingIdx: number | null;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: { paddingIdx?: number } = {}) {
    super();
    const p = opts.paddingIdx;
    if (p !== undefined && (!Number.isInteger(p) || p >= numEmbeddings || p < -numEmbeddings))
      throw new Error(`Embedding: paddingIdx ${p} out of range for ${numEmbeddings} embeddings`);
    // a negative index counts from the end, as in PyTorch
    this.paddingIdx = p === undefined ? null : p < 0 ? numEmbeddings + p : p;
    this.weight = this.registerParameter('weight', empty([numEmbeddings, embeddingDim]));
    init.normal_(this.weight);
    if (this.paddingIdx !== null) tidy(() => noGrad(() => { this.weight.select(0, this.paddingIdx!).zero_(); }));
  }
  forward(indices: Tensor): Tensor {
    return ops.embedding(this.weight, indices, this.paddingIdx ?? -1);
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new Error(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? ops.dropout(x, this.p, true) : ops.alias(x);
  }
}

export class MaxPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly opts: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {}) {
    super();
  }
  forward(x: Tensor): Tensor {
    const o = this.opts;
    return ops.max_pool2d(x, pair(this.kernelSize), o.stride === undefined ? pair(this.kernelSize) : pair(o.stride), pair(o.padding ?? 0), pair(o.dilation ?? 1), o.ceilMode ?? false);
  }
}

export class AvgPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly opts: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {}) {
    super();
  }
  forward(x: Tensor): Tensor {
    const o = this.opts;
    return ops.avg_pool2d(x, pair(this.kernelSize), o.stride === undefined ? pair(this.kernelSize) : pair(o.stride), pair(o.padding ?? 0), o.ceilMode ?? false, o.countIncludePad ?? true);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return ops.adaptive_avg_pool2d(x, pair(this.outputSize));
  }
}

export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim);
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return ops.alias(x);
  }
}
export class ReLU extends Module {
  forward(x: Tensor): Tensor { return ops.relu(x); }
}
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') { super(); }
  forward(x: Tensor): Tensor { return ops.gelu(x, { approximate: this.approximate }); }
}
export class Tanh extends Module {
  forward(x: Tensor): Tensor { return ops.tanh(x); }
}
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor { return ops.sigmoid(x); }
}
export class SiLU extends Module {
  forward(x: Tensor): Tensor { return ops.silu(x); }
}

/** Children named "0", "1", ... called in order. */
export class Sequential extends Module {
  private readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }
  forward(x: any): any {
    for (let i = 0; i < this.layers.length; i++) x = this.layers[i].call(x);
    return x;
  }
  get length(): number {
    return this.layers.length;
  }
  at(i: number): Module {
    return this.layers[i < 0 ? i + this.layers.length : i];
  }
}

/** Holds modules under "0", "1", ...; has no forward of its own. */
export class ModuleList extends Module {
  private readonly items: Module[] = [];
  constructor(modules: Module[] = []) {
    super();
    for (const m of modules) this.append(m);
  }
  append(m: Module): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): Module {
    return this.items[i < 0 ? i + this.items.length : i];
  }
  [Symbol.iterator](): Iterator<Module> {
    return this.items[Symbol.iterator]();
  }
  forward(): never {
    throw new Error('ModuleList has no forward(); call its members');
  }
}

