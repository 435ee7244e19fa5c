// The discriminator of adversarial distillation (Wang et al. 2018; Xu et al. 2018): a small MLP that tells the
// teacher's outputs (real) from the student's (fake). One forward judges both: forward(real, fake[, labels]) returns
// one logit per row of [real; fake] — the first rows are the teacher's — so that a role with
// `input: ['teacher.logits', 'student.logits']` runs it once per update.
//
//   input     what it reads: 'logits' as they are, or 'softmax' (of the logits at `temperature`); features of any
//             shape are flattened, 4-D feature maps average-pooled over H×W first (a pooled feature)
//   classes   > 0: conditioned on the label (Xu et al.): the one-hot label is appended to every row
//   hidden    the hidden widths (default [64, 64]), each Linear → LeakyReLU(0.2); then Linear to one logit
import { z } from 'zod';
import { Tensor, ops } from '../torch';
import { F, Linear, Module } from '../nn';
import type { ModelOptionShape } from './options';

/** Options of `discriminator`. */
export const DISCRIMINATOR_OPTIONS: ModelOptionShape = {
  /** Features per row of what it judges (a feature's channels when pooled; default numClasses: logits). */
  inputDim: z.number().int().positive(),
  /** Hidden widths (default [64, 64]). */
  hidden: z.array(z.number().int().positive()),
  /** 'logits' (default) or 'softmax'. */
  input: z.enum(['logits', 'softmax']),
  /** The softmax's temperature (input 'softmax'; default 1). */
  temperature: z.number().positive(),
  /** Condition on the label: the number of classes (default 0, unconditional). */
  classes: z.number().int().min(0),
  /** LeakyReLU's negative slope (default 0.2). */
  negativeSlope: z.number().min(0).lt(1),
  /** numClasses is passed to every zoo model; the discriminator ignores it (see classes). */
  numClasses: z.number().int().positive(),
};

export interface DiscriminatorOptions {
  inputDim: number;
  hidden?: number[];
  input?: 'logits' | 'softmax';
  temperature?: number;
  classes?: number;
  negativeSlope?: number;
}

export class Discriminator extends Module {
  readonly inputDim: number;
  readonly hidden: number[];
  readonly input: 'logits' | 'softmax';
  readonly temperature: number;
  readonly classes: number;
  readonly negativeSlope: number;
  readonly layers: Linear[] = [];
  constructor(o: DiscriminatorOptions) {
    super();
    if (!Number.isInteger(o?.inputDim) || o.inputDim < 1) throw new Error(`discriminator: inputDim must be a positive integer (the classes for logits, the channels of a pooled feature), got ${o?.inputDim}`);
    this.inputDim = o.inputDim;
    this.hidden = o.hidden ?? [64, 64];
    if (!Array.isArray(this.hidden) || !this.hidden.every((h) => Number.isInteger(h) && h > 0)) throw new Error(`discriminator: hidden must be a list of positive integers, got ${JSON.stringify(o.hidden)}`);
    this.input = o.input ?? 'logits';
    if (this.input !== 'logits' && this.input !== 'softmax') throw new Error(`discriminator: input must be 'logits' or 'softmax', got ${JSON.stringify(o.input)}`);
    this.temperature = o.temperature ?? 1;
    if (!(this.temperature > 0)) throw new Error(`discriminator: temperature must be positive, got ${o.temperature}`);
    this.classes = o.classes ?? 0;
    if (!Number.isInteger(this.classes) || this.classes < 0) throw new Error(`discriminator: classes must be 0 (unconditional) or the number of classes, got ${o.classes}`);
    this.negativeSlope = o.negativeSlope ?? 0.2;
    const widths = [this.inputDim + this.classes, ...this.hidden, 1];
    for (let i = 0; i + 1 < widths.length; i++) this.layers.push(this.registerModule(`fc${i + 1}`, new Linear(widths[i], widths[i + 1])));
  }
  /** [N, inputDim] rows of one side: pooled, flattened, softmaxed as the options say. */
  private rows(x: Tensor, side: string): Tensor {
    let h = x.ndim === 4 ? x.mean([2, 3]) : x;
    if (h.ndim !== 2) h = h.reshape([h.shape[0], -1]);
    if (h.shape[1] !== this.inputDim)
      throw new Error(`discriminator: the ${side} side has ${h.shape[1]} features per row (from [${x.shape.join(', ')}]), the discriminator takes inputDim ${this.inputDim}`);
    return this.input === 'softmax' ? F.softmax(h, 1, { temperature: this.temperature }) : h;
  }
  /** One logit per row of [real; fake] ([N_real + N_fake, 1]); `labels` [N] condition both sides when `classes` > 0. */
  forward(real: Tensor, fake: Tensor, labels?: Tensor): Tensor {
    if (!(real instanceof Tensor) || !(fake instanceof Tensor)) throw new Error('discriminator: forward(real, fake[, labels]) takes the two sides\' tensors (a role with input: [teacher tap, student tap])');
    let h = ops.cat([this.rows(real, 'real (teacher)'), this.rows(fake, 'fake (student)')], 0);
    if (this.classes > 0) {
      if (!(labels instanceof Tensor) || labels.ndim !== 1 || labels.shape[0] !== real.shape[0] || real.shape[0] !== fake.shape[0])
        throw new Error(`discriminator: conditioned on ${this.classes} classes, it needs labels [N] for N real and N fake rows (input: [teacher tap, student tap, labels]), got ${labels instanceof Tensor ? `[${labels.shape.join(', ')}]` : 'none'} for ${real.shape[0]} and ${fake.shape[0]} rows`);
      const y = F.oneHot(labels, this.classes).to({ dtype: h.dtype });
      h = ops.cat([h, ops.cat([y, y], 0)], 1);
    }
    for (const [i, l] of this.layers.entries()) {
      h = l.call(h);
      if (i + 1 < this.layers.length) h = F.leakyRelu(h, this.negativeSlope);
    }
    return h;
  }
}
