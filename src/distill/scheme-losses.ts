// The losses of the distillation schemes that the response and feature losses do not already cover:
//   peerMeanKl         KL to the peers' averaged soft targets (KDCL's ensemble of the other students)
//   classWiseKl        CS-KD: the first half of the batch learns the predictions of the second half, sample i of
//                      one half and sample i of the other being of the same class (see PairedBatches)
//   virtualTeacherKl   Tf-KD's virtual teacher: a hand-designed distribution (a on the label, the rest spread evenly)
//   fspPooled          FSP as RepDistiller computes it: the larger map of a pair pooled to the smaller one first
// Each is registered by registerBuiltinLosses (kl_peers, cs_kd, tf_virtual, fsp_pool).
import { Tensor, noGrad, ops, tidy } from '../torch';
import { F } from '../nn';
import { fspMatrix } from './losses';

const checkT = (loss: string, T: number) => {
  if (typeof T !== 'number' || !(T > 0)) throw new Error(`${loss}: temperature must be positive, got ${T}`);
};
const logits2d = (loss: string, what: string, t: Tensor) => {
  if (t.ndim !== 2) throw new Error(`${loss}: ${what} must be logits [batch, classes], got [${t.shape.join(', ')}]`);
};

/**
 * KL(p̄ ‖ softmax(s/T))·T², batch mean, where p̄ = mean_j softmax(t_j/T) over the peers' logits t_j (KDCL, Guo et al.
 * 2020: each student learns from the ensemble of soft targets). The targets carry no gradient.
 */
export function peerMeanKl(student: Tensor, peers: Tensor[], temperature = 1): Tensor {
  checkT('kl_peers', temperature);
  if (!peers.length) throw new Error('kl_peers: needs at least one peer');
  logits2d('kl_peers', 'the student side', student);
  for (const [j, p] of peers.entries())
    if (p.shape.length !== 2 || p.shape[0] !== student.shape[0] || p.shape[1] !== student.shape[1])
      throw new Error(`kl_peers: peer ${j} logits [${p.shape.join(', ')}] differ from the student's [${student.shape.join(', ')}]`);
  return tidy(() => {
    const target = noGrad(() => peers.map((p) => F.softmax(p, 1, { temperature })).reduce((a, b) => a.add(b)).div(peers.length));
    return F.klDiv(F.logSoftmax(student, 1, { temperature }), target, { reduction: 'batchmean' }).mul(temperature * temperature);
  });
}

/**
 * CS-KD (Yun et al. 2020): the batch is [anchors; partners], partner i of the same class as anchor i. The anchors'
 * predictions learn the partners' (no gradient): KL(softmax(t[h:]/T) ‖ softmax(s[:h]/T))·T², mean over the h anchors,
 * as the reference code's KDLoss. `student` and `teacher` are usually the same role's logits (the target side is
 * detached by the engine).
 */
export function classWiseKl(student: Tensor, teacher: Tensor, temperature = 4): Tensor {
  checkT('cs_kd', temperature);
  logits2d('cs_kd', 'the student side', student);
  const n = student.shape[0];
  if (n % 2 !== 0 || teacher.shape[0] !== n)
    throw new Error(`cs_kd: expects a batch of anchors and their same-class partners (an even batch, both sides [${n}, C]); got student [${student.shape.join(', ')}], teacher [${teacher.shape.join(', ')}] (train from PairedBatches)`);
  const h = n / 2;
  return tidy(() => {
    const target = noGrad(() => F.softmax(teacher.narrow(0, h, h), 1, { temperature }));
    return F.klDiv(F.logSoftmax(student.narrow(0, 0, h), 1, { temperature }), target, { reduction: 'batchmean' }).mul(temperature * temperature);
  });
}

/**
 * Tf-KD's virtual teacher (Yuan et al. 2020, "teacher-free KD", the reference code's loss_kd_regularization): the
 * teacher's distribution puts `correctProb` on the label and (1 − correctProb)/(K − 1) on every other class; the target
 * is softmax of that distribution divided by T, compared with the student's log-softmax (at temperature 1) by
 * PyTorch's KLDivLoss default (mean over batch × classes), times `multiplier`.
 */
export function virtualTeacherKl(student: Tensor, labels: Tensor, opts: { correctProb?: number; temperature?: number; multiplier?: number } = {}): Tensor {
  const a = opts.correctProb ?? 0.9, T = opts.temperature ?? 20, mult = opts.multiplier ?? 1;
  if (!(a > 0 && a < 1)) throw new Error(`tf_virtual: correctProb must be in (0, 1), got ${a}`);
  checkT('tf_virtual', T);
  logits2d('tf_virtual', 'the student side', student);
  const [B, K] = student.shape;
  if (labels.ndim !== 1 || labels.shape[0] !== B) throw new Error(`tf_virtual: labels [${labels.shape.join(', ')}] do not match logits [${B}, ${K}] (teacher side: labels)`);
  return tidy(() => {
    const target = noGrad(() => {
      const u = ops.full([B, K], (1 - a) / (K - 1), { dtype: student.dtype, device: student.device });
      const onLabel = ops.full([B, 1], a, { dtype: student.dtype, device: student.device });
      return F.softmax(ops.scatter_src(u, 1, labels.to({ dtype: 'int64' }).unsqueeze(1), onLabel).div(T), 1);
    });
    return F.klDiv(F.logSoftmax(student, 1), target, { reduction: 'mean' }).mul(mult);
  });
}

/** Average-pools the larger of two feature maps to the other's H×W (RepDistiller's FSP). */
function poolPair(a: Tensor, b: Tensor): [Tensor, Tensor] {
  const [ha, hb] = [a.shape[2], b.shape[2]];
  if (ha > hb) return [ops.adaptive_avg_pool2d(a, [b.shape[2], b.shape[3]]), b];
  if (hb > ha) return [a, ops.adaptive_avg_pool2d(b, [a.shape[2], a.shape[3]])];
  return [a, b];
}

/** FSP as RepDistiller computes it: each side's pair pooled to a common H×W, then mean((G_s − G_t)²). */
export function fspPooled(student: [Tensor, Tensor], teacher: [Tensor, Tensor]): Tensor {
  return tidy(() => {
    const s = fspMatrix(...poolPair(student[0], student[1]));
    const t = noGrad(() => fspMatrix(...poolPair(teacher[0], teacher[1])));
    if (s.shape.some((d, i) => d !== t.shape[i]))
      throw new Error(`fsp_pool: student FSP matrix [${s.shape.join(', ')}] and teacher's [${t.shape.join(', ')}] differ (the channel counts of the paired layers must match)`);
    return s.sub(t).pow(2).mean();
  });
}
