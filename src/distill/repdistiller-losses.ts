// The graph-based loss (IRG) and the losses of RepDistiller and mdistiller that the rest of the zoo lacks:
//   irg, irg_transform   instance relationship graph (Liu et al. 2019): vertex + edge terms of one layer, the
//                        transformation term between two layers
//   cc_repdistiller      RepDistiller's `Correlation` (not the CCKD paper's Gaussian form, which is `cc`)
//   ab                   activation boundaries (Heo et al. 2019), through the usual projection (conv 1×1 + BN)
//   vid                  variational information distillation (Ahn et al. 2019): a regressor and a learnable variance
//   ft, ft_factor        factor transfer (Kim et al. 2018): a translator on the student, a paraphraser trained on
//                        the teacher's feature beforehand (ft_paraphraser, see ftParaphraserStage)
//   ofd                  overhaul of feature distillation (Heo et al. 2019): connector, teacher-BN margins
//   reviewkd             knowledge review (Chen et al. 2021): the ABF chain over all stages and the HCL loss
//   crd                  contrastive representation distillation (Tian et al. 2020): two embeddings, a memory bank of
//                        the whole training set with its momentum update, negatives drawn from it
// The arithmetic follows the authors' code (test/fixtures/make_repdistiller_losses_fixture.py restates it; the tests
// compare value and gradient). The learnable parts are modules owned by the loss (LossDef.module): built from the
// shapes of the first batch, trained with the role whose taps feed the student side, saved with its checkpoints
// (memory banks included, so a resumed run continues exactly).
import { Tensor, empty, noGrad, ops, tensor, tidy } from '../torch';
import { BatchNorm2d, Conv2d, F, LeakyReLU, Linear, Module, ModuleList, ReLU, Sequential, Sigmoid, init } from '../nn';
import { Rng, mixSeed } from '../data';

const fmt = (t: Tensor | number[]) => `[${(t instanceof Tensor ? t.shape : t).join(', ')}]`;
const rows = (t: Tensor) => (t.ndim === 2 ? t : t.reshape([t.shape[0], -1]));
const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function requireBatch(loss: string, s: Tensor, t: Tensor): void {
  if (s.ndim === 0 || t.ndim === 0 || s.shape[0] !== t.shape[0]) throw new Error(`${loss}: student ${fmt(s)} and teacher ${fmt(t)} must share the batch dimension`);
}
function requireMap(loss: string, what: string, t: Tensor | number[]): void {
  const shape = t instanceof Tensor ? t.shape : t;
  if (shape.length !== 4) throw new Error(`${loss}: the ${what} must be a feature map [B, C, H, W], got ${fmt(shape)}`);
}
function positive(loss: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new Error(`${loss}: option ${name} must be a positive number, got ${String(v)}`);
  return v;
}
/** RepDistiller's pooling for unequal sizes: the larger map average-pooled to the other's H (square maps). */
function poolToSmaller(s: Tensor, t: Tensor): [Tensor, Tensor] {
  const sH = s.shape[2], tH = t.shape[2];
  if (sH > tH) return [ops.adaptive_avg_pool2d(s, [tH, tH]), t];
  if (sH < tH) return [s, ops.adaptive_avg_pool2d(t, [sH, sH])];
  return [s, t];
}

// ------------------------------------------------------------------------------------------------------- IRG

/** Squared Euclidean distances between the rows of e [N, D], zero on the diagonal, divided by their maximum (+eps). */
export function irgDistances(e: Tensor, eps = 1e-12): Tensor {
  return tidy(() => {
    const sq = e.pow(2).sum(1);
    const d = sq.unsqueeze(1).add(sq.unsqueeze(0)).sub(e.matmul(e.t()).mul(2)).clamp(eps);
    const off = d.maskedFill(ops.eye(e.shape[0], { dtype: 'bool', device: e.device }), 0);
    return off.div(off.max().add(eps));
  });
}

/**
 * IRG vertex and edge terms (Liu et al. 2019, the author's code): MSE between the max-normalised squared distance
 * matrices of the batch (edges), plus the MSE between the instances themselves (vertices) when student and teacher
 * shapes are equal. Features are flattened per sample.
 */
export function irgLoss(student: Tensor, teacher: Tensor): Tensor {
  requireBatch('irg', student, teacher);
  return tidy(() => {
    const td = noGrad(() => irgDistances(rows(teacher)));
    let loss = F.mseLoss(irgDistances(rows(student)), td);
    if (sameShape(student.shape, teacher.shape)) loss = loss.add(F.mseLoss(student, teacher));
    return loss;
  });
}

/**
 * IRG transformation term between two layers (l1 → l2) of each side: the change of the edge matrices,
 * (mse(D_s1, D_s2) − mse(D_t1, D_t2))², plus the change of the vertices, (mse(s1, s2) − mse(t1, t2))², when each side's
 * two layers have equal shapes.
 */
export function irgTransformLoss(student: [Tensor, Tensor], teacher: [Tensor, Tensor]): Tensor {
  const [s1, s2] = student, [t1, t2] = teacher;
  for (const x of [s2, t1, t2]) requireBatch('irg_transform', s1, x);
  return tidy(() => {
    const sq = (a: Tensor, b: Tensor) => a.sub(b).pow(2);
    const te = noGrad(() => F.mseLoss(irgDistances(rows(t1)), irgDistances(rows(t2))));
    let loss = sq(F.mseLoss(irgDistances(rows(s1)), irgDistances(rows(s2))), te);
    if (sameShape(s1.shape, s2.shape) && sameShape(t1.shape, t2.shape)) loss = loss.add(sq(F.mseLoss(s1, s2), noGrad(() => F.mseLoss(t1, t2))));
    return loss;
  });
}

// ------------------------------------------------------------------------------------------------------- Correlation

/**
 * RepDistiller's `Correlation` (distiller_zoo/CC.py, "code emailed by the original author"): with δ = |s − t|, the mean
 * over consecutive samples i of Σ_d δ_i,d · δ_i+1,d. Not the CCKD paper's kernel form (that is `cc`, ccLoss). Needs
 * equal widths (a projection is inserted where they differ).
 */
export function correlationRepDistiller(student: Tensor, teacher: Tensor): Tensor {
  const s = student.ndim === 2 ? student : null;
  if (!s || !sameShape(student.shape, teacher.shape) || student.shape[0] < 2)
    throw new Error(`cc_repdistiller: expects equal embeddings [B ≥ 2, D] on both sides, got student ${fmt(student)} and teacher ${fmt(teacher)}`);
  return tidy(() => {
    const d = student.sub(teacher).abs();
    const n = d.shape[0];
    return d.narrow(0, 0, n - 1).mul(d.narrow(0, 1, n - 1)).sum(1).mean();
  });
}

// ------------------------------------------------------------------------------------------------------- AB

/**
 * Activation-boundary loss (Heo et al. 2019, RepDistiller's criterion_alternative_l2): the student's (projected)
 * pre-activation is pushed beyond ±margin where the teacher's neuron is off (≤ 0) or on (> 0); the sum over elements,
 * divided by the batch, × 3/1000 as the reference. The layer weights 2^(i−n+1) are the terms' weights.
 */
export function abLoss(student: Tensor, teacher: Tensor, opts: { margin?: number } = {}): Tensor {
  const m = positive('ab', 'margin', opts.margin ?? 1);
  if (!sameShape(student.shape, teacher.shape)) throw new Error(`ab: student ${fmt(student)} and teacher ${fmt(teacher)} must have equal shapes (insert a projection)`);
  return tidy(() => {
    const dt = student.dtype;
    const off = ops.logical_and(student.gt(-m), teacher.le(0)).to({ dtype: dt });
    const on = ops.logical_and(student.le(m), teacher.gt(0)).to({ dtype: dt });
    const l = student.add(m).pow(2).mul(off).add(student.sub(m).pow(2).mul(on));
    return l.abs().sum().div(student.shape[0]).div(1000).mul(3);
  });
}

// ------------------------------------------------------------------------------------------------------- VID

/**
 * VID's learnable parts (RepDistiller's VIDLoss, from the author's code): a regressor of three 1×1 convolutions
 * (student channels → mid → mid → teacher channels) predicting the teacher's feature, and a per-channel variance
 * softplus(log_scale) + eps, initialised to `initPredVar`.
 */
export class VidModule extends Module {
  readonly regressor: Sequential;
  readonly log_scale: Tensor;
  constructor(readonly inChannels: number, readonly midChannels: number, readonly outChannels: number, initPredVar = 5, readonly eps = 1e-5) {
    super();
    const c1 = (i: number, o: number) => new Conv2d(i, o, 1, { bias: false });
    this.regressor = this.registerModule('regressor', new Sequential(c1(inChannels, midChannels), new ReLU(), c1(midChannels, midChannels), new ReLU(), c1(midChannels, outChannels)));
    this.log_scale = this.registerParameter('log_scale', ops.full([outChannels], Math.log(Math.exp(initPredVar - eps) - 1), { dtype: 'float32' }));
  }
  /** The negative log-likelihood of the teacher's feature under N(regressor(student), variance), mean over elements. */
  loss(student: Tensor, teacher: Tensor): Tensor {
    requireMap('vid', 'student side', student);
    requireMap('vid', 'teacher side', teacher);
    requireBatch('vid', student, teacher);
    if (student.shape[1] !== this.inChannels || teacher.shape[1] !== this.outChannels)
      throw new Error(`vid: built for ${this.inChannels} → ${this.outChannels} channels, got student ${fmt(student)} and teacher ${fmt(teacher)}`);
    return tidy(() => {
      const [s, t] = poolToSmaller(student, teacher);
      const mean = this.regressor.call(s) as Tensor;
      const variance = this.log_scale.exp().add(1).log().add(this.eps).view([1, -1, 1, 1]);
      return mean.sub(t).pow(2).div(variance).add(variance.log()).mul(0.5).mean();
    });
  }
  forward(student: Tensor, teacher: Tensor): Tensor {
    return this.loss(student, teacher);
  }
}

// ------------------------------------------------------------------------------------------------------- FT

/** FT's factor of a feature map: mean over channels of f^p1, flattened, L2-normalised (RepDistiller's FactorTransfer). */
function ftFactor(f: Tensor, p1: number): Tensor {
  return F.normalize(f.pow(p1).mean([1]).reshape([f.shape[0], -1]));
}

/**
 * Factor transfer's loss between two factors (RepDistiller's FactorTransfer, p1 = 2, p2 = 1): the larger map pooled
 * to the smaller, then mean |φ(s) − φ(t)|^p2 of the normalised p1-maps.
 */
export function factorLoss(student: Tensor, teacher: Tensor, opts: { p1?: number; p2?: number } = {}): Tensor {
  const p1 = positive('ft', 'p1', opts.p1 ?? 2), p2 = positive('ft', 'p2', opts.p2 ?? 1);
  requireMap('ft', 'student factor', student);
  requireMap('ft', 'teacher factor', teacher);
  requireBatch('ft', student, teacher);
  return tidy(() => {
    const [s, t] = poolToSmaller(student, teacher);
    const d = ftFactor(s, p1).sub(ftFactor(t, p1));
    return (p2 === 1 ? d.abs() : d.pow(p2)).mean();
  });
}

const conv3 = (i: number, o: number) => new Conv2d(i, o, 3, { padding: 1 });

/**
 * FT's paraphraser (RepDistiller models/util.py, use_bn false): an encoder of three 3×3 convolutions with leaky ReLU
 * (C → C → k·C → k·C) whose output is the teacher's factor, and a decoder back to C channels. The reference's decoder
 * uses stride-1 transposed 3×3 convolutions, which compute the same family of maps as the 3×3 convolutions used here.
 */
export class Paraphraser extends Module {
  readonly encoder: Sequential;
  readonly decoder: Sequential;
  constructor(readonly channels: number, readonly k = 0.5) {
    super();
    const f = Math.floor(channels * k);
    if (f < 1) throw new Error(`ft: factor rate k = ${k} leaves no channels of ${channels}`);
    this.encoder = this.registerModule('encoder', new Sequential(conv3(channels, channels), new LeakyReLU(0.1), conv3(channels, f), new LeakyReLU(0.1), conv3(f, f), new LeakyReLU(0.1)));
    this.decoder = this.registerModule('decoder', new Sequential(conv3(f, f), new LeakyReLU(0.1), conv3(f, channels), new LeakyReLU(0.1), conv3(channels, channels)));
  }
  /** The reconstruction loss of the paraphraser stage: MSE between decoder(encoder(t)) and t (RepDistiller's init). */
  reconstructionLoss(teacher: Tensor): Tensor {
    requireMap('ft_paraphraser', 'teacher feature', teacher);
    if (teacher.shape[1] !== this.channels) throw new Error(`ft_paraphraser: built for ${this.channels} channels, got ${fmt(teacher)}`);
    return tidy(() => F.mseLoss(this.decoder.call(this.encoder.call(teacher) as Tensor) as Tensor, teacher));
  }
  /** [the factor (encoder output), the reconstruction]. */
  forward(x: Tensor): [Tensor, Tensor] {
    const z = this.encoder.call(x) as Tensor;
    return [z, this.decoder.call(z) as Tensor];
  }
}

/** FT's translator (RepDistiller): three 3×3 convolutions with leaky ReLU, student C_s → C_s → k·C_t → k·C_t. */
export class Translator extends Module {
  readonly encoder: Sequential;
  constructor(readonly inChannels: number, readonly teacherChannels: number, readonly k = 0.5) {
    super();
    const f = Math.floor(teacherChannels * k);
    this.encoder = this.registerModule('encoder', new Sequential(conv3(inChannels, inChannels), new LeakyReLU(0.1), conv3(inChannels, f), new LeakyReLU(0.1), conv3(f, f), new LeakyReLU(0.1)));
  }
  forward(x: Tensor): Tensor {
    return this.encoder.call(x) as Tensor;
  }
}

/** The `ft` term's parts: the student's translator (trained) and the teacher's paraphraser (trained beforehand, frozen). */
export class FtModule extends Module {
  readonly translator: Translator;
  readonly paraphraser: Paraphraser;
  constructor(studentChannels: number, teacherChannels: number, k = 0.5) {
    super();
    this.translator = this.registerModule('translator', new Translator(studentChannels, teacherChannels, k));
    this.paraphraser = this.registerModule('paraphraser', new Paraphraser(teacherChannels, k));
    this.paraphraser.requiresGrad_(false);
  }
  override train(on = true): this {
    super.train(on);
    this.paraphraser.train(false); // frozen: its batch statistics (none without BN) and weights stay as trained
    return this;
  }
  loss(student: Tensor, teacher: Tensor, opts: { p1?: number; p2?: number } = {}): Tensor {
    return tidy(() => factorLoss(this.translator.call(student) as Tensor, noGrad(() => this.paraphraser.encoder.call(teacher) as Tensor), opts));
  }
  forward(student: Tensor, teacher: Tensor): Tensor {
    return this.loss(student, teacher);
  }
}

// ------------------------------------------------------------------------------------------------------- OFD

/**
 * OFD's margins from the teacher's batch norm before the ReLU (mdistiller init_ofd_modules): per channel with
 * s = |γ|, m = β, the expectation of the negative part of N(m, s²), −s·φ(m/s)/Φ(−m/s) + m, or −3s where Φ(−m/s) ≤
 * 0.001. Returns [1, C, 1, 1].
 */
export function ofdMargins(bnWeight: Tensor, bnBias: Tensor): Tensor {
  return noGrad(() => tidy(() => {
    const s = bnWeight.double().abs(), m = bnBias.double();
    const cdf = ops.erfc(m.div(s).div(Math.SQRT2)).mul(0.5); // Φ(−m/s) = ½·erfc((m/s)/√2)
    const gauss = m.div(s).pow(2).neg().div(2).exp().div(Math.sqrt(2 * Math.PI));
    const margin = s.neg().mul(gauss).div(cdf).add(m);
    return margin.where(cdf.gt(0.001), s.mul(-3)).view([1, -1, 1, 1]);
  }));
}

/** OFD's distance (mdistiller feat_loss): partial L2 that ignores the student where the teacher is below its margin. */
export function ofdLoss(student: Tensor, teacher: Tensor, margin: Tensor): Tensor {
  requireMap('ofd', 'student side', student);
  if (!sameShape(student.shape, teacher.shape)) throw new Error(`ofd: connector output ${fmt(student)} and teacher ${fmt(teacher)} differ`);
  return tidy(() => {
    const dt = student.dtype;
    const mg = margin.to({ dtype: dt });
    const f = (b: Tensor) => b.to({ dtype: dt });
    const below = f(ops.logical_and(student.gt(mg), teacher.le(mg)));
    const between = f(ops.logical_and(ops.logical_and(student.gt(teacher), teacher.gt(mg)), teacher.le(0)));
    const pos = f(teacher.gt(0));
    const d2 = student.sub(teacher).pow(2);
    const l = student.sub(mg).pow(2).mul(below).add(d2.mul(between)).add(d2.mul(pos));
    return l.abs().mean([0]).sum();
  });
}

/** OFD's connector (conv k×k without bias + BN, mdistiller's init) and the teacher's margins (a buffer). */
export class OfdModule extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  readonly margin: Tensor;
  constructor(studentChannels: number, teacherChannels: number, margin: Tensor, kernelSize = 1) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(studentChannels, teacherChannels, kernelSize, { padding: (kernelSize - 1) >> 1, bias: false }));
    this.bn = this.registerModule('bn', new BatchNorm2d(teacherChannels));
    noGrad(() => init.normal_(this.conv.weight, 0, Math.sqrt(2 / (kernelSize * kernelSize * teacherChannels))));
    if (margin.shape[1] !== teacherChannels) throw new Error(`ofd: ${margin.shape[1]} margins for ${teacherChannels} teacher channels`);
    this.margin = this.registerBuffer('margin', margin.float());
  }
  loss(student: Tensor, teacher: Tensor): Tensor {
    requireMap('ofd', 'student side', student);
    requireMap('ofd', 'teacher side', teacher);
    return tidy(() => {
      const s = this.bn.call(this.conv.call(student)) as Tensor;
      const t = noGrad(() => ops.adaptive_avg_pool2d(teacher, [s.shape[2], s.shape[3]]));
      return ofdLoss(s, t, this.margin);
    });
  }
  forward(student: Tensor, teacher: Tensor): Tensor {
    return this.loss(student, teacher);
  }
}

// ------------------------------------------------------------------------------------------------------- ReviewKD

/** ReviewKD's hierarchical context loss (mdistiller hcl_loss): MSE plus pooled 4/2/1 levels at halving weights. */
export function hclLoss(student: Tensor[], teacher: Tensor[]): Tensor {
  if (student.length !== teacher.length) throw new Error(`reviewkd: ${student.length} student levels for ${teacher.length} teacher levels`);
  return tidy(() => {
    let all: Tensor | null = null;
    student.forEach((fs, i) => {
      const ft = teacher[i];
      if (!sameShape(fs.shape, ft.shape)) throw new Error(`reviewkd: level ${i}: fused student ${fmt(fs)} and teacher ${fmt(ft)} differ`);
      const h = fs.shape[2];
      let loss = F.mseLoss(fs, ft);
      let cnt = 1, tot = 1;
      for (const l of [4, 2, 1]) {
        if (l >= h) continue;
        cnt /= 2;
        loss = loss.add(F.mseLoss(ops.adaptive_avg_pool2d(fs, [l, l]), ops.adaptive_avg_pool2d(ft, [l, l])).mul(cnt));
        tot += cnt;
      }
      loss = loss.div(tot);
      all = all ? all.add(loss) : loss;
    });
    return all!;
  });
}

/** ReviewKD's attention-based fusion (mdistiller ABF): 1×1 conv + BN, fused with the deeper level by attention, 3×3 conv + BN. */
export class Abf extends Module {
  readonly conv1: Sequential;
  readonly conv2: Sequential;
  readonly att_conv: Sequential | null;
  constructor(inChannels: number, midChannels: number, outChannels: number, fuse: boolean) {
    super();
    this.conv1 = this.registerModule('conv1', new Sequential(new Conv2d(inChannels, midChannels, 1, { bias: false }), new BatchNorm2d(midChannels)));
    this.conv2 = this.registerModule('conv2', new Sequential(new Conv2d(midChannels, outChannels, 3, { padding: 1, bias: false }), new BatchNorm2d(outChannels)));
    this.att_conv = fuse ? this.registerModule('att_conv', new Sequential(new Conv2d(midChannels * 2, 2, 1), new Sigmoid())) : null;
    noGrad(() => {
      for (const c of [this.conv1.at(0) as Conv2d, this.conv2.at(0) as Conv2d]) init.kaimingUniform_(c.weight, { a: 1 });
    });
  }
  /** [output at outShape, the fused mid-channel map passed to the next (shallower) level]. */
  fuse(x: Tensor, y: Tensor | null, outShape: number): [Tensor, Tensor] {
    const [n, , h, w] = x.shape;
    let m = this.conv1.call(x) as Tensor;
    if (this.att_conv) {
      const yy = ops.upsample_nearest2d(y!, [h, w]);
      const z = this.att_conv.call(ops.cat([m, yy], 1)) as Tensor;
      m = m.mul(z.select(1, 0).view([n, 1, h, w])).add(yy.mul(z.select(1, 1).view([n, 1, h, w])));
    }
    if (m.shape[3] !== outShape) m = ops.upsample_nearest2d(m, [outShape, outShape]);
    return [this.conv2.call(m) as Tensor, m];
  }
  forward(x: Tensor, y: Tensor | null, outShape: number): [Tensor, Tensor] {
    return this.fuse(x, y, outShape);
  }
}

/**
 * ReviewKD's ABF chain for student levels of channels `inChannels` (shallow → deep; a [B, C] embedding counts as a
 * 1×1 map) mapped to the teacher's `outChannels`, as mdistiller builds it: mid channels min(512, last), `abfs.0` the
 * deepest level.
 */
export class ReviewKdModule extends Module {
  readonly abfs: ModuleList<Abf>;
  constructor(readonly inChannels: number[], readonly outChannels: number[]) {
    super();
    const mid = Math.min(512, inChannels[inChannels.length - 1]);
    const built = inChannels.map((c, i) => new Abf(c, mid, outChannels[i], i < inChannels.length - 1));
    this.abfs = this.registerModule('abfs', new ModuleList(built.reverse()));
  }
  loss(student: Tensor[], teacher: Tensor[]): Tensor {
    const n = this.inChannels.length;
    if (student.length !== n || teacher.length !== n) throw new Error(`reviewkd: built for ${n} levels per side, got ${student.length} student and ${teacher.length} teacher taps`);
    return tidy(() => {
      const map = (t: Tensor) => (t.ndim === 2 ? t.view([t.shape[0], t.shape[1], 1, 1]) : t);
      const xs = student.map(map).reverse(), ts = teacher.map(map);
      const outShapes = [...ts].reverse().map((t) => t.shape[3]);
      const results: Tensor[] = [];
      let [out, res] = this.abfs.at(0).fuse(xs[0], null, outShapes[0]);
      results.push(out);
      for (let i = 1; i < n; i++) {
        [out, res] = this.abfs.at(i).fuse(xs[i], res, outShapes[i]);
        results.unshift(out);
      }
      return hclLoss(results, ts);
    });
  }
  forward(student: Tensor[], teacher: Tensor[]): Tensor {
    return this.loss(student, teacher);
  }
}

// ------------------------------------------------------------------------------------------------------- CRD

/** CRD's embedding head (RepDistiller Embed): linear to `dim`, then x / ‖x‖₂. */
export class Embed extends Module {
  readonly linear: Linear;
  constructor(inFeatures: number, dim: number) {
    super();
    this.linear = this.registerModule('linear', new Linear(inFeatures, dim));
  }
  forward(x: Tensor): Tensor {
    const y = this.linear.call(rows(x)) as Tensor;
    return y.div(y.pow(2).sum(1, true).pow(0.5));
  }
}

/** CRD's NCE loss on the [B, K+1] scores of a batch (RepDistiller ContrastLoss): positive in column 0. */
export function contrastLoss(x: Tensor, nData: number, eps = 1e-7): Tensor {
  return tidy(() => {
    const [b, k1] = x.shape, m = k1 - 1, mPn = m / nData;
    const pos = x.select(1, 0);
    const logD1 = pos.div(pos.add(mPn + eps)).log();
    const neg = x.narrow(1, 1, m);
    const logD0 = ops.full_like(neg, mPn).div(neg.add(mPn + eps)).log();
    return logD1.sum().add(logD0.sum()).neg().div(b);
  });
}

/**
 * CRD's two embeddings and its memory bank (RepDistiller CRDLoss + ContrastMemory): banks memory_v1 (student
 * embeddings) and memory_v2 (teacher embeddings) with a row per training sample; each step reads the batch's rows and
 * K negatives drawn uniformly from the bank, scores exp(v·m/T)/Z (Z fixed from the first batch as
 * mean·N), and moves the batch's rows toward the new embeddings (momentum, renormalised). `params` holds
 * [K, T, Z_v1, Z_v2, momentum] as the reference; `draws` counts the steps, so that the negatives of a resumed run
 * are those of an uninterrupted one.
 */
export class CrdModule extends Module {
  readonly embed_s: Embed;
  readonly embed_t: Embed;
  readonly contrast: ContrastMemory;
  constructor(studentDim: number, teacherDim: number, readonly nData: number, opts: { featDim?: number; negatives?: number; temperature?: number; momentum?: number; seed?: number } = {}) {
    super();
    const dim = opts.featDim ?? 128;
    this.embed_s = this.registerModule('embed_s', new Embed(studentDim, dim));
    this.embed_t = this.registerModule('embed_t', new Embed(teacherDim, dim));
    this.contrast = this.registerModule('contrast', new ContrastMemory(dim, nData, opts.negatives ?? 4096, opts.temperature ?? 0.07, opts.momentum ?? 0.5, opts.seed ?? 0));
  }
  /** The loss for a batch of student and teacher features and their rows `idx` in the training set. */
  loss(student: Tensor, teacher: Tensor, idx: Tensor, contrastIdx?: Tensor): Tensor {
    requireBatch('crd', student, teacher);
    if (idx.ndim !== 1 || idx.shape[0] !== student.shape[0]) throw new Error(`crd: sample indices ${fmt(idx)} do not match the batch ${fmt(student)}`);
    return tidy(() => {
      const fs = this.embed_s.call(student) as Tensor, ft = this.embed_t.call(teacher) as Tensor;
      const [outS, outT] = this.contrast.scores(fs, ft, idx, contrastIdx);
      return contrastLoss(outS, this.nData).add(contrastLoss(outT, this.nData));
    });
  }
  forward(student: Tensor, teacher: Tensor, idx: Tensor, contrastIdx?: Tensor): Tensor {
    return this.loss(student, teacher, idx, contrastIdx);
  }
}

export class ContrastMemory extends Module {
  readonly params: Tensor;
  readonly memory_v1: Tensor;
  readonly memory_v2: Tensor;
  readonly draws: Tensor;
  constructor(readonly dim: number, readonly nData: number, readonly K: number, T: number, momentum: number, readonly seed: number) {
    super();
    if (!Number.isInteger(K) || K < 1) throw new Error(`crd: negatives must be a positive integer, got ${K}`);
    if (!Number.isInteger(nData) || nData < 2) throw new Error(`crd: the memory bank needs the training set's size (≥ 2 rows), got ${nData}`);
    this.params = this.registerBuffer('params', tensor([K, T, -1, -1, momentum], { dtype: 'float32' }));
    const stdv = 1 / Math.sqrt(dim / 3);
    this.memory_v1 = this.registerBuffer('memory_v1', noGrad(() => init.uniform_(empty([nData, dim]), -stdv, stdv)));
    this.memory_v2 = this.registerBuffer('memory_v2', noGrad(() => init.uniform_(empty([nData, dim]), -stdv, stdv)));
    this.draws = this.registerBuffer('draws', tensor([0], { dtype: 'int64' }));
  }
  /** [B, K+1] rows: the batch's own rows first, then K drawn uniformly over the bank (RepDistiller's AliasMethod on uniform weights). */
  drawIndices(idx: Tensor): Tensor {
    const b = idx.shape[0], k = this.K;
    const n = Number(this.draws.item());
    const rng = new Rng(mixSeed(this.seed, n));
    const own = idx.toArray();
    const out = new Int32Array(b * (k + 1));
    for (let i = 0; i < b; i++) {
      out[i * (k + 1)] = own[i];
      for (let j = 1; j <= k; j++) out[i * (k + 1) + j] = Math.floor(rng.random() * this.nData);
    }
    noGrad(() => this.draws.fill_(n + 1));
    return tensor(out, { dtype: 'int64' }).view([b, k + 1]);
  }
  scores(v1: Tensor, v2: Tensor, y: Tensor, contrastIdx?: Tensor): [Tensor, Tensor] {
    const [b, d] = v1.shape;
    if (d !== this.dim || !sameShape(v1.shape, v2.shape)) throw new Error(`crd: embeddings ${fmt(v1)} and ${fmt(v2)} do not match the bank's width ${this.dim}`);
    const p = this.params.toArray();
    const K = p[0], T = p[1], momentum = p[4];
    const yi = y.to({ dtype: 'int64', device: this.memory_v1.device });
    const idx = (contrastIdx ?? this.drawIndices(yi)).to({ dtype: 'int64', device: this.memory_v1.device });
    if (!sameShape(idx.shape, [b, K + 1])) throw new Error(`crd: contrast indices ${fmt(idx)}, expected [${b}, ${K + 1}]`);
    const dt = v1.dtype;
    const bank = (m: Tensor) => noGrad(() => m.indexSelect(0, idx.reshape([-1])).to({ dtype: dt }).view([b, K + 1, d]));
    const outV2 = bank(this.memory_v1).bmm(v2.view([b, d, 1])).div(T).exp();
    const outV1 = bank(this.memory_v2).bmm(v1.view([b, d, 1])).div(T).exp();
    noGrad(() => {
      // the normalisation constants, fixed from the first batch (as the reference: mean score × bank size)
      if (p[2] < 0) this.params.narrow(0, 2, 1).fill_(outV1.mean().item() * this.nData);
      if (p[3] < 0) this.params.narrow(0, 3, 1).fill_(outV2.mean().item() * this.nData);
    });
    const z = this.params.toArray();
    const s = outV1.div(z[2]), t = outV2.div(z[3]);
    noGrad(() => {
      const update = (mem: Tensor, v: Tensor) => {
        const pos = mem.indexSelect(0, yi).mul(momentum).add(v.to({ dtype: mem.dtype }).mul(1 - momentum));
        ops.index_copy_(mem, 0, yi, pos.div(pos.pow(2).sum(1, true).pow(0.5)));
      };
      update(this.memory_v1, v1);
      update(this.memory_v2, v2);
    });
    return [s.reshape([b, K + 1]), t.reshape([b, K + 1])];
  }
  forward(v1: Tensor, v2: Tensor, y: Tensor, contrastIdx?: Tensor): [Tensor, Tensor] {
    return this.scores(v1, v2, y, contrastIdx);
  }
}
