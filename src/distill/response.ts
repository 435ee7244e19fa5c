// Response-based knowledge distillation (Hinton et al. 2015):
//   loss = α·CE(student, labels) + (1 − α)·T²·soft(student/T, teacher/T)
// with soft = KL(softmax(teacher/T) ‖ softmax(student/T)) (batch mean), soft cross-entropy, or logit MSE.
import { Tensor, noGrad, ops, tidy } from '../torch';
import { F } from '../nn';
import { type LossResult, lossValue, weightedSum } from './terms';
import { kdLossPerSample } from './losses';

export type SoftLoss = 'kl' | 'soft_ce' | 'logit_mse';

export interface ResponseKDOptions {
  /** Softmax temperature T (> 0). Default 4. */
  temperature?: number;
  /** Weight of the hard-label cross-entropy; the soft term gets 1 − alpha. Default 0.1. */
  alpha?: number;
  /** Default 'kl'. 'logit_mse' compares raw logits and is not scaled by T². */
  softLoss?: SoftLoss;
}

export interface KDLossTerms {
  loss: Tensor;
  hard: Tensor;
  soft: Tensor;
}

/** The soft term alone, as a scalar tensor (KL and soft CE are multiplied by T², logit MSE is not). */
export function softTargetLoss(student: Tensor, teacher: Tensor, temperature: number, kind: SoftLoss = 'kl'): Tensor {
  if (!(temperature > 0)) throw new Error(`responseKD: temperature must be positive, got ${temperature}`);
  const a = student.shape, b = teacher.shape;
  if (a.length !== b.length || a.some((x, i) => x !== b[i]))
    throw new Error(`responseKD: student logits [${a.join(', ')}] and teacher logits [${b.join(', ')}] differ in shape`);
  const t2 = temperature * temperature;
  return tidy(() => {
    switch (kind) {
      case 'kl':
        return F.klDiv(F.logSoftmax(student, -1, { temperature }), F.logSoftmax(teacher, -1, { temperature }), { reduction: 'batchmean', logTarget: true }).mul(t2);
      case 'soft_ce':
        return F.crossEntropy(student.div(temperature), F.softmax(teacher, -1, { temperature })).mul(t2);
      case 'logit_mse':
        return F.mseLoss(student, teacher);
      default:
        throw new Error(`responseKD: unknown soft loss '${kind as string}' (expected kl, soft_ce or logit_mse)`);
    }
  });
}

/**
 * The soft term as the registered losses `kl` / `soft_ce` / `logit_mse` compute it. KL at a constant temperature on
 * [batch, classes] logits is returned as the summed KL with T²/B as its scale (the batch mean and T² fold into the one
 * multiply-add that adds it to the other terms); a per-sample temperature (`tau`, from `dynamicTemperature`) gives
 * τᵢ²-weighted KL; otherwise `softTargetLoss`.
 */
export function softTerm(student: Tensor, teacher: Tensor, temperature: number, kind: SoftLoss, opts: { scheduled?: boolean; tau?: Tensor } = {}): LossResult {
  if (opts.tau) return kdLossPerSample(student, teacher, opts.tau);
  const a = student.shape;
  if (kind !== 'kl' || opts.scheduled || a.length !== 2) return softTargetLoss(student, teacher, temperature, kind);
  const b = teacher.shape;
  if (a.length !== b.length || a.some((x, i) => x !== b[i]))
    throw new Error(`responseKD: student logits [${a.join(', ')}] and teacher logits [${b.join(', ')}] differ in shape`);
  if (!(temperature > 0)) throw new Error(`responseKD: temperature must be positive, got ${temperature}`);
  const invT = 1 / temperature;
  const lt = noGrad(() => ops.log_softmax_int(teacher.mul(invT), 1, null));
  const klSum = ops.kl_div(ops.log_softmax_int(student.mul(invT), 1, null), lt, 2, { log_target: true });
  return { value: klSum, scale: (temperature * temperature) / a[0] };
}

/**
 * Builds the response-KD loss function α·CE + (1−α)·soft: the terms `ce` and `kl` / `soft_ce` / `logit_mse`, summed
 * as the training engine sums them. Teacher logits must come from a frozen teacher (no grad).
 */
export function responseKD(opts: ResponseKDOptions = {}): (student: Tensor, teacher: Tensor, labels: Tensor) => KDLossTerms {
  const T = opts.temperature ?? 4;
  const alpha = opts.alpha ?? 0.1;
  const kind = opts.softLoss ?? 'kl';
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`responseKD: alpha must be in [0, 1], got ${alpha}`);
  if (!(T > 0)) throw new Error(`responseKD: temperature must be positive, got ${T}`);
  if (!['kl', 'soft_ce', 'logit_mse'].includes(kind)) throw new Error(`responseKD: unknown soft loss '${kind as string}' (expected kl, soft_ce or logit_mse)`);
  return (student, teacher, labels) =>
    tidy(() => {
      const hard = F.crossEntropy(student, labels);
      const soft = softTerm(student, teacher, T, kind);
      const loss = weightedSum([{ loss: hard, weight: alpha }, { loss: soft, weight: 1 - alpha }]);
      return { loss, hard, soft: lossValue(soft) };
    });
}

/** Hinton et al.'s recipe as a preset. */
export const hintonKD = (o: ResponseKDOptions = {}) => responseKD({ temperature: 4, alpha: 0.1, softLoss: 'kl', ...o });
