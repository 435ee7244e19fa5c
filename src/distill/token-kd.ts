// Token-level distillation losses for decoders. Every loss takes per-position rows ([N, V] logits, N = batch × time
// flattened) and a weight per position ([N], 1 on the tokens that count, usually the answer tokens), and returns
// the weighted mean over positions: Σ w_n · ℓ_n / Σ w_n.
//
//   forward KL   ℓ = KL(p_T ‖ p_S) = Σ_v p_T(v) (log p_T(v) − log p_S(v))        (mode-covering; classic KD)
//   reverse KL   ℓ = KL(p_S ‖ p_T)                                                (mode-seeking; MiniLLM)
//   JSD(β)       ℓ = β KL(p_T ‖ m) + (1 − β) KL(p_S ‖ m),  m = β p_T + (1 − β) p_S  (generalized JSD, GKD)
//
// JSD(β) follows GKD (Agarwal et al. 2024) as TRL's GKDTrainer computes it: β = 0 is forward KL and β = 1 reverse KL
// (the limits of the interpolation as TRL defines its ends), anything between the mixture above. TRL applies no τ²;
// with τ = 1 the two agree exactly (test/fixtures/gkd_jsd.json).
//
// With a temperature τ both distributions are softmax(logits / τ) and ℓ is multiplied by τ² (Hinton's scaling, as
// the response losses of ./losses.ts do).
//
// A remote teacher gives only its top-k log-probabilities per token. `topkForwardKl` then compares the teacher's
// distribution over k + 1 outcomes — its top-k tokens and "any other token", whose mass is the tail
// r = 1 − Σ_i p_T(i) — with the student's probabilities of the same outcomes:
//
//   ℓ = Σ_i p_T(i) (log p_T(i) − log p_S(i)) + r (log r − log (1 − Σ_i p_S(i)))
//
// which is the KL divergence between the two distributions coarsened to those k + 1 outcomes (0 when they agree on
// the top-k tokens, whatever the student does inside the tail).
import { Tensor, ops } from '../torch';

export type TokenKdLoss = 'forward_kl' | 'reverse_kl' | 'jsd';
export const TOKEN_KD_LOSSES: TokenKdLoss[] = ['forward_kl', 'reverse_kl', 'jsd'];

export interface TokenKdOptions {
  temperature?: number;
  /** JSD's β in [0, 1] (default 0.5): 0 is forward KL, 1 reverse KL, as in GKD. */
  beta?: number;
}

const shape = (t: Tensor) => `[${t.shape.join(', ')}]`;

function checkRows(where: string, s: Tensor, t: Tensor | null, w: Tensor): void {
  if (s.ndim !== 2) throw new Error(`${where}: student logits must be [positions, vocab], got ${shape(s)}`);
  if (t !== null && (t.ndim !== 2 || t.shape[0] !== s.shape[0] || t.shape[1] !== s.shape[1]))
    throw new Error(`${where}: teacher logits ${shape(t)} must match the student's ${shape(s)} (a different vocabulary size means different tokenizers)`);
  if (w.ndim !== 1 || w.shape[0] !== s.shape[0]) throw new Error(`${where}: weights must be [${s.shape[0]}] (one per position), got ${shape(w)}`);
}

/** Σ w ℓ / max(Σ w, tiny). */
function weightedMean(perPos: Tensor, w: Tensor): Tensor {
  const wf = w.to(perPos.dtype);
  return perPos.mul(wf).sum().div(wf.sum().clamp(1e-12));
}

/** KL(p ‖ q) per row from log-probabilities, 0·log 0 taken as 0. */
function klRows(logP: Tensor, logQ: Tensor): Tensor {
  const p = logP.exp();
  return ops.where_self(p.gt(0), p.mul(logP.sub(logQ)), ops.zeros_like(p)).sum(-1);
}

/** Token-level KD between student and teacher logits ([N, V] each), weighted per position ([N]). */
export function tokenKdLoss(kind: TokenKdLoss, studentLogits: Tensor, teacherLogits: Tensor, weights: Tensor, o: TokenKdOptions = {}): Tensor {
  const where = `token KD (${kind})`;
  checkRows(where, studentLogits, teacherLogits, weights);
  const tau = o.temperature ?? 1;
  if (!(tau > 0)) throw new Error(`${where}: temperature must be positive, got ${tau}`);
  const ls = (tau === 1 ? studentLogits : studentLogits.div(tau)).logSoftmax(-1);
  const lt = (tau === 1 ? teacherLogits : teacherLogits.div(tau)).logSoftmax(-1);
  let per: Tensor;
  if (kind === 'forward_kl') per = klRows(lt, ls);
  else if (kind === 'reverse_kl') per = klRows(ls, lt);
  else if (kind === 'jsd') {
    const beta = o.beta ?? 0.5;
    if (!(beta >= 0 && beta <= 1)) throw new Error(`${where}: beta must be in [0, 1] (0: forward KL, 1: reverse KL), got ${beta}`);
    if (beta === 0) per = klRows(lt, ls);
    else if (beta === 1) per = klRows(ls, lt);
    else {
      // log m = logsumexp(log β + log p_T, log(1 − β) + log p_S)
      const lm = ops.logaddexp(lt.add(Math.log(beta)), ls.add(Math.log(1 - beta)));
      per = klRows(lt, lm).mul(beta).add(klRows(ls, lm).mul(1 - beta));
    }
  } else throw new Error(`token KD: unknown loss '${kind}' (${TOKEN_KD_LOSSES.join(', ')})`);
  const loss = weightedMean(per, weights);
  return tau === 1 ? loss : loss.mul(tau * tau);
}

/**
 * Forward KL to a teacher known by its top-k log-probabilities: `ids` [N, K] (int64) and `logprobs` [N, K] per
 * position, `valid` [N, K] (1 where an entry is given; rows may hold fewer than K), `weights` [N]. See the header.
 */
export function topkForwardKl(studentLogits: Tensor, ids: Tensor, logprobs: Tensor, valid: Tensor, weights: Tensor): Tensor {
  const where = 'token KD (top-k logprobs)';
  checkRows(where, studentLogits, null, weights);
  const N = studentLogits.shape[0];
  if (ids.ndim !== 2 || ids.shape[0] !== N) throw new Error(`${where}: ids must be [${N}, K], got ${shape(ids)}`);
  for (const [name, t] of [['logprobs', logprobs], ['valid', valid]] as const)
    if (t.ndim !== 2 || t.shape[0] !== N || t.shape[1] !== ids.shape[1]) throw new Error(`${where}: ${name} must be ${shape(ids)} like ids, got ${shape(t)}`);
  const dt = studentLogits.dtype;
  const v = valid.to(dt);
  const ls = studentLogits.logSoftmax(-1).gather(1, ids); // [N, K]
  const pt = logprobs.to(dt).exp().mul(v);
  const head = ops.where_self(pt.gt(0), pt.mul(logprobs.to(dt).sub(ls)), ops.zeros_like(pt)).sum(-1);
  const tail = pt.sum(-1).neg().add(1).clamp(0, 1); // r
  const qTail = ls.exp().mul(v).sum(-1).neg().add(1).clamp(1e-12, 1);
  const tailTerm = ops.where_self(tail.gt(1e-9), tail.mul(tail.clamp(1e-12).log().sub(qTail.log())), ops.zeros_like(tail));
  return weightedMean(head.add(tailTerm), weights);
}

/**
 * Cross-entropy per position against the next tokens ([N, V] logits, [N] ids), averaged over the positions that count:
 * Σ w_n · CE_n / max(Σ w_n, 1) (with the answer mask as `w`, the loss of SFT on answers).
 */
export function tokenCrossEntropy(logits: Tensor, targets: Tensor, weights: Tensor): Tensor {
  checkRows('token cross-entropy', logits, null, weights);
  return ops.cross_entropy_loss(logits, targets, null, 0).mul(weights).sum().div(weights.sum().clamp(1));
}

/** [..., V] logits as [N, V] rows, one per position. */
export const positionRows = (logits: Tensor): Tensor => logits.reshape(-1, logits.shape[logits.ndim - 1]);
