// The distillation loss zoo: response, feature, relation and attention losses as functions of tensors. Each returns a
// scalar tensor (mean over the batch unless stated) and checks its inputs' shapes, naming the loss and the argument.
// Formulas follow the papers as the common PyTorch benchmark code computes them; test/fixtures/make_kd_losses_fixture.py
// holds the independent PyTorch versions the tests compare against.
import { Tensor, ops, tidy } from '../torch';
import { F } from '../nn';
import { softTargetLoss } from './response';

const fmt = (t: Tensor) => `[${t.shape.join(', ')}]`;

function requireRank(loss: string, name: string, t: Tensor, ranks: number[]): void {
  if (!ranks.includes(t.ndim)) throw new Error(`${loss}: ${name} must have rank ${ranks.join(' or ')}, got ${fmt(t)}`);
}
function requireSameShape(loss: string, a: Tensor, b: Tensor, what = 'student and teacher'): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i]))
    throw new Error(`${loss}: ${what} shapes differ: ${fmt(a)} vs ${fmt(b)} (insert a projection, or match layers of equal shape)`);
}
function requireSameBatch(loss: string, s: Tensor, t: Tensor): void {
  if (s.ndim === 0 || t.ndim === 0 || s.shape[0] !== t.shape[0])
    throw new Error(`${loss}: student ${fmt(s)} and teacher ${fmt(t)} must share the batch dimension`);
}
function positive(loss: string, name: string, v: number): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new Error(`${loss}: ${name} must be a positive number, got ${v}`);
  return v;
}

// ------------------------------------------------------------------------------------------------------- response

export interface DKDOptions {
  /** Weight of the target-class term (TCKD); default 1. */
  alpha?: number;
  /** Weight of the non-target-class term (NCKD); default 8. */
  beta?: number;
  /** Default 4. */
  temperature?: number;
}

/**
 * Decoupled KD (Zhao et al. 2022): the KL divergence split into the binary target / non-target distribution (TCKD)
 * and the distribution over the non-target classes (NCKD), weighted alpha·TCKD + beta·NCKD, both scaled by T².
 */
export function dkdLoss(student: Tensor, teacher: Tensor, labels: Tensor, opts: DKDOptions = {}): Tensor {
  const alpha = opts.alpha ?? 1, beta = opts.beta ?? 8;
  const T = positive('dkd', 'temperature', opts.temperature ?? 4);
  requireRank('dkd', 'student logits', student, [2]);
  requireSameShape('dkd', student, teacher);
  if (labels.ndim !== 1 || labels.shape[0] !== student.shape[0])
    throw new Error(`dkd: labels must be [${student.shape[0]}] class indices for logits ${fmt(student)}, got ${fmt(labels)}`);
  return tidy(() => {
    const n = student.shape[0];
    const gt = F.oneHot(labels, student.shape[1]).to({ dtype: student.dtype });
    const other = gt.neg().add(1);
    const ps = student.div(T).softmax(1), pt = teacher.div(T).softmax(1);
    const binary = (p: Tensor) => ops.stack([p.mul(gt).sum(1), p.mul(other).sum(1)], 1);
    const bs = binary(ps), bt = binary(pt);
    const tckd = F.klDiv(bs.log(), bt, { reduction: 'sum' }).mul((T * T) / n);
    const mask = gt.mul(1000);
    const nckd = F.klDiv(student.div(T).sub(mask).logSoftmax(1), teacher.div(T).sub(mask).softmax(1), { reduction: 'sum' }).mul((T * T) / n);
    return tckd.mul(alpha).add(nckd.mul(beta));
  });
}

// ------------------------------------------------------------------------------------------------------- feature

/** FitNets hint (Romero et al. 2015): MSE between the (projected) student feature and the teacher's. */
export function hintLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameShape('hint', student, teacher);
  return F.mseLoss(student, teacher);
}

/** Hidden-state MSE (TinyBERT): the same as the hint loss, for token states [B, L, D]. */
export function hiddenMseLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameShape('hidden_mse', student, teacher);
  return F.mseLoss(student, teacher);
}

/** The spatial attention map of Zagoruyko & Komodakis: mean over channels of |f|^p, flattened, L2-normalised. */
export function attentionMap(f: Tensor, p = 2): Tensor {
  requireRank('at', 'feature map', f, [4]);
  return tidy(() => F.normalize(f.pow(p).mean([1]).view([f.shape[0], -1])));
}

/**
 * Attention transfer (Zagoruyko & Komodakis 2017): mean squared difference of the normalised attention maps. Channel
 * counts may differ; spatial sizes must match. The papers weight it by β = 1000 (the match's `weight`).
 */
export function atLoss(student: Tensor, teacher: Tensor, opts: { p?: number } = {}): Tensor {
  const p = positive('at', 'p', opts.p ?? 2);
  requireRank('at', 'student feature map', student, [4]);
  requireRank('at', 'teacher feature map', teacher, [4]);
  requireSameBatch('at', student, teacher);
  if (student.shape[2] !== teacher.shape[2] || student.shape[3] !== teacher.shape[3])
    throw new Error(`at: spatial sizes differ: student ${fmt(student)} vs teacher ${fmt(teacher)} (resize one, or match other layers)`);
  return tidy(() => attentionMap(student, p).sub(attentionMap(teacher, p)).pow(2).mean());
}

/** Cosine embedding loss (DistilBERT): mean over vectors of 1 − cos(student, teacher), vectors along the last dim. */
export function cosineLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameShape('cosine', student, teacher);
  return tidy(() => {
    const d = student.shape[student.ndim - 1];
    const s = student.reshape([-1, d]), t = teacher.reshape([-1, d]);
    return F.cosineEmbeddingLoss(s, t, ops.ones([s.shape[0]], { dtype: student.dtype, device: student.device }));
  });
}

/**
 * Neuron selectivity transfer (Huang & Wang 2017): squared MMD between the channels' spatial activation patterns
 * (each channel L2-normalised over H×W) with the polynomial kernel k(a, b) = (a·b)². Channel counts may differ.
 */
export function nstLoss(student: Tensor, teacher: Tensor): Tensor {
  requireRank('nst', 'student feature map', student, [3, 4]);
  requireRank('nst', 'teacher feature map', teacher, [3, 4]);
  requireSameBatch('nst', student, teacher);
  const hw = (t: Tensor) => t.shape.slice(2).reduce((a, b) => a * b, 1);
  if (hw(student) !== hw(teacher)) throw new Error(`nst: spatial sizes differ: student ${fmt(student)} vs teacher ${fmt(teacher)}`);
  return tidy(() => {
    const s = F.normalize(student.flatten(2), { dim: 2 }), t = F.normalize(teacher.flatten(2), { dim: 2 });
    const k = (a: Tensor, b: Tensor) => a.bmm(b.transpose(1, 2)).pow(2).mean();
    return k(t, t).add(k(s, s)).sub(k(s, t).mul(2));
  });
}

/** Rows flattened to vectors: [B, ...] → [B, D]. */
const rows = (t: Tensor) => (t.ndim === 2 ? t : t.flatten(1));

/**
 * Probabilistic knowledge transfer (Passalis & Tefas 2018): the cosine-similarity distributions between samples,
 * (cos + 1) / 2 normalised per row, compared with KL (teacher ‖ student). Widths may differ.
 */
export function pktLoss(student: Tensor, teacher: Tensor, opts: { eps?: number } = {}): Tensor {
  const eps = opts.eps ?? 1e-7;
  requireSameBatch('pkt', student, teacher);
  return tidy(() => {
    const sim = (x: Tensor) => {
      const v = rows(x);
      const u = v.div(v.norm(2, 1, true).add(eps));
      const m = u.matmul(u.t()).add(1).div(2);
      return m.div(m.sum(1, true));
    };
    const ms = sim(student), mt = sim(teacher);
    return mt.mul(mt.add(eps).div(ms.add(eps)).log()).mean();
  });
}

// ------------------------------------------------------------------------------------------------------- relation

/** Euclidean distances between the rows of e [N, D], zero on the diagonal. */
export function pairwiseDistances(e: Tensor, eps = 1e-12): Tensor {
  return tidy(() => {
    const sq = e.pow(2).sum(1);
    const d = sq.unsqueeze(1).add(sq.unsqueeze(0)).sub(e.matmul(e.t()).mul(2)).clamp(eps).sqrt();
    const eye = ops.eye(e.shape[0], { dtype: 'bool', device: e.device });
    return d.maskedFill(eye, 0);
  });
}

/** RKD distance term (Park et al. 2019): Huber loss between the sample-distance matrices, each divided by its mean. */
export function rkdDistanceLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameBatch('rkd_distance', student, teacher);
  return tidy(() => {
    const norm = (x: Tensor) => {
      const d = pairwiseDistances(rows(x));
      const n = x.shape[0];
      // mean over the positive (off-diagonal) distances
      const mean = d.sum().div(Math.max(1, n * n - n));
      return d.div(mean);
    };
    return F.smoothL1Loss(norm(student), norm(teacher));
  });
}

/** RKD angle term: Huber loss between the cosines of the angles formed by every triplet of samples. */
export function rkdAngleLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameBatch('rkd_angle', student, teacher);
  return tidy(() => {
    const angles = (x: Tensor) => {
      const v = rows(x);
      const diff = F.normalize(v.unsqueeze(0).sub(v.unsqueeze(1)), { dim: 2 });
      return diff.bmm(diff.transpose(1, 2)).reshape([-1]);
    };
    return F.smoothL1Loss(angles(student), angles(teacher));
  });
}

/** RKD with the paper's weights: 25 · distance + 50 · angle. */
export function rkdLoss(student: Tensor, teacher: Tensor, opts: { distanceWeight?: number; angleWeight?: number } = {}): Tensor {
  const wd = opts.distanceWeight ?? 25, wa = opts.angleWeight ?? 50;
  return tidy(() => rkdDistanceLoss(student, teacher).mul(wd).add(rkdAngleLoss(student, teacher).mul(wa)));
}

/**
 * Similarity-preserving KD (Tung & Mori 2019): the row-normalised Gram matrices of the batch's flattened features,
 * squared Frobenius distance / B².
 */
export function spLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameBatch('sp', student, teacher);
  return tidy(() => {
    const b = student.shape[0];
    const gram = (x: Tensor) => {
      const v = rows(x);
      return F.normalize(v.matmul(v.t()));
    };
    return gram(teacher).sub(gram(student)).pow(2).sum().div(b * b);
  });
}

/** The FSP ("flow of solution procedure") matrix of two feature maps of equal spatial size: a·bᵀ / (H·W). */
export function fspMatrix(a: Tensor, b: Tensor): Tensor {
  requireRank('fsp', 'feature map', a, [4]);
  requireRank('fsp', 'feature map', b, [4]);
  if (a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[2] || a.shape[3] !== b.shape[3])
    throw new Error(`fsp: the two maps of a pair must share batch and spatial size: ${fmt(a)} vs ${fmt(b)}`);
  return tidy(() => a.flatten(2).bmm(b.flatten(2).transpose(1, 2)).div(a.shape[2] * a.shape[3]));
}

/**
 * FSP (Yim et al. 2017): mean squared difference between the student's and the teacher's FSP matrices, each built
 * from a pair of layers (first, second).
 */
export function fspLoss(student: [Tensor, Tensor], teacher: [Tensor, Tensor]): Tensor {
  return tidy(() => {
    const s = fspMatrix(student[0], student[1]), t = fspMatrix(teacher[0], teacher[1]);
    requireSameShape('fsp', s, t, 'student and teacher FSP matrix');
    return s.sub(t).pow(2).mean();
  });
}

/**
 * Correlation congruence (Peng et al. 2019): the samples' correlation matrices under a Gaussian RBF kernel
 * exp(−γ‖x − y‖²) on L2-normalised embeddings, expanded to Taylor order P, squared Frobenius distance / B².
 */
export function ccLoss(student: Tensor, teacher: Tensor, opts: { gamma?: number; order?: number } = {}): Tensor {
  const gamma = positive('cc', 'gamma', opts.gamma ?? 0.4);
  const order = opts.order ?? 2;
  if (!Number.isInteger(order) || order < 0) throw new Error(`cc: order must be a non-negative integer, got ${order}`);
  requireSameBatch('cc', student, teacher);
  return tidy(() => {
    const corr = (x: Tensor) => {
      const v = F.normalize(rows(x));
      const sim = v.matmul(v.t());
      let k = ops.zeros_like(sim);
      let coef = Math.exp(-2 * gamma), fact = 1;
      for (let p = 0; p <= order; p++) {
        if (p > 0) fact *= p;
        k = k.add(sim.pow(p).mul((coef * (2 * gamma) ** p) / fact));
      }
      return k;
    };
    const b = student.shape[0];
    return corr(student).sub(corr(teacher)).pow(2).sum().div(b * b);
  });
}

// ------------------------------------------------------------------------------------------------------- attention

/** TinyBERT's attention loss: MSE between attention maps [B, heads, L, L] (probabilities or scores). */
export function attentionMseLoss(student: Tensor, teacher: Tensor): Tensor {
  requireSameShape('attention_mse', student, teacher, 'student and teacher attention');
  return F.mseLoss(student, teacher);
}

/**
 * MiniLM's self-attention distribution transfer: KL(teacher ‖ student) over the last dimension of attention
 * probabilities [B, heads, L, L], averaged over batch, heads and query positions. Probabilities are clamped at `eps`
 * (default 1e-30) before the logarithm, so masked keys (probability 0 on both sides, e.g. padding) add 0 to the loss
 * and to the gradient instead of 0·∞.
 */
export function attentionKlLoss(student: Tensor, teacher: Tensor, opts: { eps?: number } = {}): Tensor {
  requireSameShape('attention_kl', student, teacher, 'student and teacher attention');
  const eps = opts.eps ?? 1e-30;
  return tidy(() => {
    const ls = student.clamp(eps).log();
    const lt = teacher.clamp(eps).log();
    return teacher.mul(lt.sub(ls)).sum(-1).mean();
  });
}

/** log softmax(x_h x_hᵀ / √d_h) per head for states [B, L, D] split into `heads` heads. */
export function selfRelation(x: Tensor, heads: number): Tensor {
  requireRank('relation_kl', 'states', x, [3]);
  const [b, l, d] = x.shape;
  if (!Number.isInteger(heads) || heads < 1 || d % heads)
    throw new Error(`relation_kl: heads (${heads}) must divide the state width ${d} of ${fmt(x)}`);
  return tidy(() => {
    const h = x.view([b, l, heads, d / heads]).transpose(1, 2);
    return h.matmul(h.transpose(-1, -2)).div(Math.sqrt(d / heads)).logSoftmax(-1);
  });
}

/**
 * MiniLMv2's self-attention relation transfer: for states [B, L, D] (queries, keys or values of one layer), the
 * relations softmax(x_h x_hᵀ / √d_h) over `heads` relation heads, KL(teacher ‖ student) averaged over batch, heads and
 * positions. Student and teacher widths may differ; both are split into the same number of relation heads.
 */
export function relationKlLoss(student: Tensor, teacher: Tensor, opts: { heads?: number } = {}): Tensor {
  const heads = opts.heads ?? 1;
  requireSameBatch('relation_kl', student, teacher);
  if (student.shape[1] !== teacher.shape[1]) throw new Error(`relation_kl: sequence lengths differ: student ${fmt(student)} vs teacher ${fmt(teacher)}`);
  return tidy(() => {
    const rs = selfRelation(student, heads), rt = selfRelation(teacher, heads);
    return rt.exp().mul(rt.sub(rs)).sum(-1).mean();
  });
}

/** Response KD on logits: KL(softmax(t/T) ‖ softmax(s/T))·T² (or soft cross-entropy ·T²), batch mean. Default T = 4. */
export function kdLoss(student: Tensor, teacher: Tensor, opts: { temperature?: number; kind?: 'kl' | 'soft_ce' } = {}): Tensor {
  return softTargetLoss(student, teacher, positive('kd', 'temperature', opts.temperature ?? 4), opts.kind ?? 'kl');
}

/**
 * Response KD with a temperature per sample (τ [B], e.g. from `dynamicTemperature`): mean over the batch of
 * τ_i² · KL(softmax(t_i/τ_i) ‖ softmax(s_i/τ_i)).
 */
export function kdLossPerSample(student: Tensor, teacher: Tensor, tau: Tensor): Tensor {
  requireRank('kd', 'student logits', student, [2]);
  requireSameShape('kd', student, teacher);
  if (tau.ndim !== 1 || tau.shape[0] !== student.shape[0]) throw new Error(`kd: per-sample temperatures must be [${student.shape[0]}], got ${fmt(tau)}`);
  return tidy(() => {
    const t = tau.unsqueeze(-1);
    const ls = student.div(t).logSoftmax(-1), lt = teacher.div(t).logSoftmax(-1);
    return lt.exp().mul(lt.sub(ls)).sum(-1).mul(tau.pow(2)).mean();
  });
}
