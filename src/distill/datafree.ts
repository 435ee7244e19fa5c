// Data-free distillation: a generator role turns noise into images that a frozen teacher judges and a student learns
// from, so that no training image is ever read. The pieces here are what the engine needs beyond roles and terms:
//   NoiseBatches   a BatchSource of noise z [B, ...shape] (and random class labels), seeded from (seed, epoch, batch)
//                  so that a resumed run draws the same noise
//   losses         the generator's terms (registered by registerBuiltinLosses):
//     dafl_onehot      DAFL: cross-entropy of the teacher's logits against their own argmax (confident outputs)
//     dafl_activation  DAFL: −mean |f| of a teacher feature (strongly activated features)
//     dafl_entropy     DAFL: Σ_c p̄_c log10 p̄_c, p̄ the batch's mean teacher softmax (balanced classes when minimised)
//     bn_stats         DeepInversion: ‖μ_batch − μ_running‖₂ + ‖σ²_batch − σ²_running‖₂ of a BatchNorm's input
//     tv_prior         DeepInversion: total variation of the images (l2: Σ of the four shifts' L2 norms; l1: mean |·|)
//     l2_prior         DeepInversion: mean over the batch of each image's L2 norm
//     adaptive_js      DeepInversion's competition term: 1 − JS(softmax(t/T), softmax(s/T)), through both sides
//     dfad_adv         DFAD: −mean |s − t| over logits, through both sides (the generator maximises disagreement)
//     logit_l1         mean |s − t| over logits (DFAD's student loss)
// Configurations reach them through a `datafree:` section (src/run/datafree.ts).
import { Tensor, noGrad, ops, tensor, tidy } from '../torch';
import { F } from '../nn';
import { Rng, mixSeed } from '../data';
import type { BatchSource, EngineBatch } from './engine';

const logits2d = (loss: string, what: string, t: Tensor) => {
  if (t.ndim !== 2) throw new Error(`${loss}: ${what} must be logits [batch, classes], got [${t.shape.join(', ')}]`);
};
const sameShape = (loss: string, s: Tensor, t: Tensor) => {
  if (s.shape.length !== t.shape.length || s.shape.some((d, i) => d !== t.shape[i]))
    throw new Error(`${loss}: the two sides' shapes differ: [${s.shape.join(', ')}] vs [${t.shape.join(', ')}]`);
};

/** DAFL's one-hot loss: cross-entropy of `logits` against their own argmax (the pseudo-labels carry no gradient). */
export function daflOneHot(logits: Tensor): Tensor {
  logits2d('dafl_onehot', 'the teacher side', logits);
  return tidy(() => F.crossEntropy(logits, noGrad(() => logits.argmax(1))));
}

/** DAFL's activation loss: −mean |f| over every element of the feature (after a ReLU when `relu`). */
export function daflActivation(feature: Tensor, relu = false): Tensor {
  return tidy(() => (relu ? feature.relu() : feature.abs()).mean().neg());
}

/**
 * DAFL's information-entropy loss: Σ_c p̄_c · log10 p̄_c with p̄ the batch mean of softmax(logits) — minus the entropy
 * of the batch's class distribution in decimal digits; minimising it balances the classes. log10 as the authors' code.
 */
export function daflEntropy(logits: Tensor): Tensor {
  logits2d('dafl_entropy', 'the teacher side', logits);
  return tidy(() => {
    const p = F.softmax(logits, 1).mean([0]);
    return p.mul(p.log().div(Math.LN10)).sum();
  });
}

/**
 * DeepInversion's feature-statistics loss for one BatchNorm: ‖mean − μ‖₂ + ‖var − σ²‖₂, with the per-channel mean and
 * (biased) variance of `x` [B, C, ...] over every dimension but C, and μ, σ² the BatchNorm's running statistics.
 */
export function bnStats(x: Tensor, mean: number[], variance: number[]): Tensor {
  if (x.ndim < 2) throw new Error(`bn_stats: the tap must be a BatchNorm's input [batch, channels, ...], got [${x.shape.join(', ')}]`);
  const C = x.shape[1];
  if (!Array.isArray(mean) || !Array.isArray(variance) || mean.length !== C || variance.length !== C)
    throw new Error(`bn_stats: options mean and var need ${C} numbers each (the tap has ${C} channels), got ${Array.isArray(mean) ? mean.length : typeof mean} and ${Array.isArray(variance) ? variance.length : typeof variance}`);
  return tidy(() => {
    const flat = x.transpose(0, 1).reshape([C, -1]);
    const m = flat.mean([1]);
    const v = flat.sub(m.unsqueeze(1)).pow(2).mean([1]);
    const mu = tensor(Float32Array.from(mean), { device: x.device }).to({ dtype: x.dtype });
    const s2 = tensor(Float32Array.from(variance), { device: x.device }).to({ dtype: x.dtype });
    return v.sub(s2).pow(2).sum().sqrt().add(m.sub(mu).pow(2).sum().sqrt());
  });
}

/**
 * Total variation of images [B, C, H, W] over the four shifts DeepInversion uses (→, ↓, ↘, ↗): `l2` sums the shifts'
 * L2 norms (over the whole batch), `l1` sums their mean absolute values.
 */
export function tvPrior(x: Tensor, norm: 'l1' | 'l2' = 'l2'): Tensor {
  if (x.ndim !== 4) throw new Error(`tv_prior: expects images [batch, channels, H, W], got [${x.shape.join(', ')}]`);
  if (norm !== 'l1' && norm !== 'l2') throw new Error(`tv_prior: option norm must be 'l1' or 'l2', got ${JSON.stringify(norm)}`);
  return tidy(() => {
    const [, , H, W] = x.shape;
    const n = (a: Tensor) => (norm === 'l2' ? a.pow(2).sum().sqrt() : a.abs().mean());
    const d1 = x.narrow(3, 0, W - 1).sub(x.narrow(3, 1, W - 1));
    const d2 = x.narrow(2, 0, H - 1).sub(x.narrow(2, 1, H - 1));
    const d3 = x.narrow(3, 0, W - 1).narrow(2, 0, H - 1).sub(x.narrow(3, 1, W - 1).narrow(2, 1, H - 1));
    const d4 = x.narrow(3, 1, W - 1).narrow(2, 0, H - 1).sub(x.narrow(3, 0, W - 1).narrow(2, 1, H - 1));
    return n(d1).add(n(d2)).add(n(d3)).add(n(d4));
  });
}

/** Mean over the batch of each sample's L2 norm. */
export function l2Prior(x: Tensor): Tensor {
  return tidy(() => x.reshape([x.shape[0], -1]).pow(2).sum([1]).sqrt().mean());
}

/**
 * DeepInversion's adaptive (competition) term: 1 − JS(P, Q) clamped to [0, 1], P = softmax(s/T), Q = softmax(t/T),
 * JS = ½ KL(P‖M) + ½ KL(Q‖M) with M = ½(P + Q), each KL a batch mean (natural log). Minimised by the generator, it
 * seeks images on which teacher and student disagree. Gradients flow through both sides.
 */
export function adaptiveJs(s: Tensor, t: Tensor, temperature = 3): Tensor {
  logits2d('adaptive_js', 'the student side', s);
  sameShape('adaptive_js', s, t);
  if (!(temperature > 0)) throw new Error(`adaptive_js: temperature must be positive, got ${temperature}`);
  return tidy(() => {
    const P = F.softmax(s, 1, { temperature }), Q = F.softmax(t, 1, { temperature });
    const M = P.add(Q).mul(0.5).clamp(1e-7, 1).log();
    const js = F.klDiv(M, P, { reduction: 'batchmean' }).add(F.klDiv(M, Q, { reduction: 'batchmean' })).mul(0.5);
    return js.clamp(0, 1).neg().add(1);
  });
}

/** DFAD's generator loss: −mean |s − t| (the generator maximises the teacher–student disagreement). */
export function dfadAdversarial(s: Tensor, t: Tensor): Tensor {
  logits2d('dfad_adv', 'the student side', s);
  sameShape('dfad_adv', s, t);
  return tidy(() => F.l1Loss(s, t).neg());
}

/** mean |s − t| over logits (DFAD's student loss). */
export function logitL1(s: Tensor, t: Tensor): Tensor {
  sameShape('logit_l1', s, t);
  return F.l1Loss(s, t);
}

// ----------------------------------------------------------------------------------------------------- the noise

export interface NoiseOptions {
  /** Batches per epoch. */
  batches: number;
  batchSize: number;
  /** The shape of one sample: [latentDim] for a generator's noise, [C, H, W] for noise images. */
  shape: number[];
  /** Labels are drawn uniformly from this many classes (DeepInversion's targets); other losses ignore them. */
  classes: number;
  seed: number;
}

/**
 * Noise as a BatchSource: batch i of epoch e is z ~ N(0, 1) [batchSize, ...shape] and labels uniform in [0, classes),
 * drawn from a generator seeded by (seed, e, i) alone, so that any batch can be drawn again (exact resume) and no
 * data set is read.
 */
export class NoiseBatches implements BatchSource {
  readonly length: number;
  private epoch = 0;
  constructor(readonly o: NoiseOptions) {
    for (const k of ['batches', 'batchSize', 'classes'] as const)
      if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`NoiseBatches: ${k} must be a positive integer, got ${o[k]}`);
    if (!Array.isArray(o.shape) || !o.shape.length || !o.shape.every((d) => Number.isInteger(d) && d > 0))
      throw new Error(`NoiseBatches: shape must be a list of positive integers (one sample's shape), got ${JSON.stringify(o.shape)}`);
    if (!Number.isFinite(o.seed)) throw new Error(`NoiseBatches: seed must be a finite number, got ${o.seed}`);
    this.length = o.batches;
  }
  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }
  batchAt(i: number): EngineBatch {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new Error(`NoiseBatches: batch ${i} out of range [0, ${this.length})`);
    const { batchSize: B, shape, classes } = this.o;
    const D = shape.reduce((a, b) => a * b, 1);
    const rng = new Rng(mixSeed(mixSeed(mixSeed(this.o.seed, 0x6e6f6973), this.epoch), i));
    const z = new Float32Array(B * D);
    // Box–Muller, two normals per pair of uniforms
    for (let k = 0; k < z.length; k += 2) {
      const u1 = 1 - rng.random(), u2 = rng.random();
      const r = Math.sqrt(-2 * Math.log(u1));
      z[k] = r * Math.cos(2 * Math.PI * u2);
      if (k + 1 < z.length) z[k + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    const y = new BigInt64Array(B);
    for (let k = 0; k < B; k++) y[k] = BigInt(rng.int(classes));
    const x = tensor(z, { shape: [B, ...shape] }), yt = tensor(y);
    return { x, y: yt, dispose: () => { x.dispose(); yt.dispose(); } };
  }
}
