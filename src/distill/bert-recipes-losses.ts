// The losses of the BERT-compression recipes with padding excluded. Each reads the batch tensor `attention_mask`
// ([B, S], 1 token, 0 padding; MlmBatches and TextBatches of tsdistill/data provide it) and averages over real tokens
// only, so what the models compute at padded positions never reaches the loss:
//   mlm_ce                 masked-LM cross-entropy over [B, S, V] logits against labels [B, S] (-100: no prediction)
//   mlm_kd                 DistilBERT's soft targets: KL(softmax(t/T) ‖ softmax(s/T))·T² over the masked positions
//                          (labels ≠ -100), as DistilBERT's code selects them
//   masked_cosine          DistilBERT: mean over tokens of 1 − cos(student, teacher) of hidden states [B, S, D]
//   masked_hidden_mse      TinyBERT: MSE of hidden states / embeddings [B, S, D] over real tokens
//   tinybert_attention_mse TinyBERT: MSE of the attention scores q·kᵀ/√d_h per head [B, H, S, S], from the query and
//                          key projections (two taps per side: query, key); pairs with a padded query or key excluded
//   masked_attention_kl    MiniLM: KL(teacher ‖ student) of attention probabilities [B, H, S, S] over real query rows
//   masked_relation_kl     MiniLM's value relation and MiniLMv2's Q-Q / K-K / V-V relations: softmax(x_h x_hᵀ/√d_r)
//                          over `heads` relation heads with padded keys masked, KL over real query rows
// TinyBERT's authors zero the scores of padded keys and average over every (query, key) pair; here both padded keys and
// padded queries are left out of the mean (a padded query's scores are computed from a [PAD] token).
import { Tensor, ops, tidy } from '../torch';
import { F } from '../nn';
import { type LossContext, registerLoss } from './features';

const fmt = (t: Tensor) => `[${t.shape.join(', ')}]`;

function maskOf(ctx: LossContext | undefined, loss: string, B: number, S: number): Tensor {
  const m = ctx?.batch?.attention_mask;
  if (!m) throw new Error(`${loss}: the batch has no 'attention_mask' tensor (batch tensors: ${Object.keys(ctx?.batch ?? {}).join(', ') || 'none'}); use MlmBatches or TextBatches, which provide it`);
  if (m.ndim !== 2 || m.shape[0] !== B || m.shape[1] !== S) throw new Error(`${loss}: attention_mask ${fmt(m)} does not fit the features' [${B}, ${S}, ...]`);
  return m;
}
function sameShape(loss: string, s: Tensor, t: Tensor): void {
  if (s.shape.join() !== t.shape.join()) throw new Error(`${loss}: student ${fmt(s)} and teacher ${fmt(t)} differ in shape`);
}
function rank(loss: string, what: string, x: Tensor, r: number): void {
  if (x.ndim !== r) throw new Error(`${loss}: ${what} must have ${r} dimensions, got ${fmt(x)}`);
}

/**
 * Masked-LM cross-entropy: logits [B, S, V], labels [B, S] with -100 where nothing is predicted; or packed logits
 * [N, V] of the N predicted positions only (row-major order, as PackedMaskedLM gives them).
 */
export function mlmCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  if (logits.ndim === 2) {
    return tidy(() => {
      const flat = labels.reshape([-1]);
      const y = flat.indexSelect(0, ops.nonzero(flat.ne(-100)).reshape([-1]));
      if (y.shape[0] !== logits.shape[0]) throw new Error(`mlm_ce: ${logits.shape[0]} packed logit rows but ${y.shape[0]} labelled positions in labels ${fmt(labels)}`);
      // a batch where no token was chosen (short rows) contributes 0, not 0/0
      return y.shape[0] === 0 ? logits.sum().mul(0) : F.crossEntropy(logits, y);
    });
  }
  rank('mlm_ce', 'logits', logits, 3);
  if (labels.ndim !== 2 || labels.shape[0] !== logits.shape[0] || labels.shape[1] !== logits.shape[1])
    throw new Error(`mlm_ce: labels ${fmt(labels)} do not fit logits ${fmt(logits)} (expected [${logits.shape[0]}, ${logits.shape[1]}])`);
  if ((tidy(() => labels.ne(-100).sum().item()) as number) === 0) return logits.sum().mul(0);
  return F.crossEntropy(logits.reshape([-1, logits.shape[2]]), labels.reshape([-1]), { ignoreIndex: -100 });
}

/** KL(softmax(t/T) ‖ softmax(s/T))·T² of [B, S, V] logits at the positions whose label is not -100 (or of packed [N, V]
 * logits, all rows), averaged over them. */
export function mlmKdLoss(student: Tensor, teacher: Tensor, labels: Tensor, temperature: number): Tensor {
  sameShape('mlm_kd', student, teacher);
  if (!(temperature > 0)) throw new Error(`mlm_kd: temperature must be positive, got ${temperature}`);
  if (student.ndim === 2)
    // packed logits [N, V]: every row is a predicted position
    return tidy(() => {
      const s = student.div(temperature).logSoftmax(-1), t = teacher.div(temperature).logSoftmax(-1);
      return t.exp().mul(t.sub(s)).sum(-1).mean().mul(temperature * temperature);
    });
  rank('mlm_kd', 'logits', student, 3);
  if (labels.ndim !== 2 || labels.shape[0] !== student.shape[0] || labels.shape[1] !== student.shape[1])
    throw new Error(`mlm_kd: labels ${fmt(labels)} do not fit logits ${fmt(student)}`);
  return tidy(() => {
    const V = student.shape[2];
    const rows = ops.nonzero(labels.reshape([-1]).ne(-100)).reshape([-1]);
    if (rows.shape[0] === 0) return student.sum().mul(0);
    const s = student.reshape([-1, V]).indexSelect(0, rows).div(temperature).logSoftmax(-1);
    const t = teacher.reshape([-1, V]).indexSelect(0, rows).div(temperature).logSoftmax(-1);
    return t.exp().mul(t.sub(s)).sum(-1).mean().mul(temperature * temperature);
  });
}

/** 1 − cos over the last dimension of [B, S, D], averaged over the real tokens (mask [B, S]). */
export function maskedCosineLoss(student: Tensor, teacher: Tensor, mask: Tensor): Tensor {
  sameShape('masked_cosine', student, teacher);
  rank('masked_cosine', 'hidden states', student, 3);
  return tidy(() => {
    const m = mask.to('float32');
    const cos = F.normalize(student, { dim: -1 }).mul(F.normalize(teacher, { dim: -1 })).sum(-1); // [B, S]
    return m.sub(cos.mul(m)).sum().div(m.sum().clamp(1));
  });
}

/** Squared differences of [B, S, D] averaged over the real tokens and D. */
export function maskedHiddenMseLoss(student: Tensor, teacher: Tensor, mask: Tensor): Tensor {
  sameShape('masked_hidden_mse', student, teacher);
  rank('masked_hidden_mse', 'hidden states', student, 3);
  return tidy(() => {
    const m = mask.to('float32');
    const d = student.sub(teacher).pow(2).sum(-1); // [B, S]
    return d.mul(m).sum().div(m.sum().clamp(1).mul(student.shape[2]));
  });
}

/** Attention scores q·kᵀ/√d_h [B, H, S, S] from query and key projections [B, S, D] split into `heads` heads. */
export function attentionScores(q: Tensor, k: Tensor, heads: number): Tensor {
  rank('tinybert_attention_mse', 'queries', q, 3);
  sameShape('tinybert_attention_mse (query vs key)', q, k);
  const [B, S, D] = q.shape;
  if (!Number.isInteger(heads) || heads < 1 || D % heads) throw new Error(`tinybert_attention_mse: heads (${heads}) must divide the width ${D} of ${fmt(q)}`);
  return tidy(() => {
    const h = (x: Tensor) => x.view([B, S, heads, D / heads]).transpose(1, 2);
    return h(q).matmul(h(k).transpose(-1, -2)).div(Math.sqrt(D / heads));
  });
}

/** [B, S] mask → [B, 1, S, S] float: 1 where both the query and the key are real tokens. */
function pairMask(mask: Tensor): Tensor {
  const m = mask.to('float32');
  return m.unsqueeze(2).mul(m.unsqueeze(1)).unsqueeze(1);
}

/** TinyBERT's attention loss on scores (see the file header): MSE over real (query, key) pairs, heads and batch. */
export function tinybertAttentionMse(sq: Tensor, sk: Tensor, tq: Tensor, tk: Tensor, heads: number, mask: Tensor, teacherHeads = heads): Tensor {
  return tidy(() => {
    const s = attentionScores(sq, sk, heads), t = attentionScores(tq, tk, teacherHeads);
    sameShape('tinybert_attention_mse (scores)', s, t);
    const pm = pairMask(mask);
    return s.sub(t).pow(2).mul(pm).sum().div(pm.sum().mul(heads).clamp(1));
  });
}

/** KL(t ‖ s) over the last dimension of probabilities [B, H, S, S], averaged over heads and real query rows. */
export function maskedAttentionKl(student: Tensor, teacher: Tensor, mask: Tensor, eps = 1e-30): Tensor {
  sameShape('masked_attention_kl', student, teacher);
  rank('masked_attention_kl', 'attention probabilities', student, 4);
  return tidy(() => {
    const kl = teacher.mul(teacher.clamp(eps).log().sub(student.clamp(eps).log())).sum(-1); // [B, H, S]
    const q = mask.to('float32').unsqueeze(1); // [B, 1, S]
    return kl.mul(q).sum().div(q.sum().mul(student.shape[1]).clamp(1));
  });
}

/** log softmax(x_h x_hᵀ/√d_r) per relation head for states [B, S, D], padded keys excluded. */
export function maskedSelfRelation(x: Tensor, heads: number, mask: Tensor): Tensor {
  rank('masked_relation_kl', 'states', x, 3);
  const [B, S, D] = x.shape;
  if (!Number.isInteger(heads) || heads < 1 || D % heads) throw new Error(`masked_relation_kl: heads (${heads}) must divide the width ${D} of ${fmt(x)}`);
  return tidy(() => {
    const h = x.view([B, S, heads, D / heads]).transpose(1, 2);
    const keyPad = mask.eq(0).view([B, 1, 1, S]);
    return h.matmul(h.transpose(-1, -2)).div(Math.sqrt(D / heads)).maskedFill(keyPad, -1e9).logSoftmax(-1);
  });
}

/** KL(teacher ‖ student) of the self-relations (see maskedSelfRelation), averaged over heads and real query rows. */
export function maskedRelationKl(student: Tensor, teacher: Tensor, heads: number, mask: Tensor): Tensor {
  if (student.shape[0] !== teacher.shape[0] || student.shape[1] !== teacher.shape[1])
    throw new Error(`masked_relation_kl: student ${fmt(student)} and teacher ${fmt(teacher)} differ in batch or length`);
  return tidy(() => {
    const rs = maskedSelfRelation(student, heads, mask), rt = maskedSelfRelation(teacher, heads, mask);
    const kl = rt.exp().mul(rt.sub(rs)).sum(-1); // [B, H, S]
    const q = mask.to('float32').unsqueeze(1);
    return kl.mul(q).sum().div(q.sum().mul(heads).clamp(1));
  });
}

let registered = false;
/** Registers the losses above by name (call once before a run names them; nothing registers on import). */
export function registerBertRecipeLosses(): void {
  if (registered) return;
  registered = true;
  const int = (o: Record<string, unknown>, k: string, loss: string, dflt?: number) => {
    const v = o[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${loss}: option '${k}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  registerLoss('mlm_ce', { needs: 'batch', doc: 'masked-LM cross-entropy over [B, S, V] logits (teacher side: labels, -100 where nothing is predicted)', fn: (s, t) => mlmCrossEntropy(s[0], t[0]) });
  registerLoss('mlm_kd', {
    needs: 'same', doc: "DistilBERT soft-target KL ·T² over the masked positions (the labels' non -100 positions; option temperature, default 2)",
    fn: (s, t, c, o) => {
      if (!c.labels) throw new Error('mlm_kd: needs the batch labels (masked-LM labels, -100 where nothing is predicted)');
      return mlmKdLoss(s[0], t[0], c.labels, (o.temperature as number | undefined) ?? 2);
    },
  });
  registerLoss('masked_cosine', { needs: 'same', doc: 'DistilBERT cosine loss of hidden states over real tokens (batch.attention_mask)', fn: (s, t, c) => maskedCosineLoss(s[0], t[0], maskOf(c, 'masked_cosine', s[0].shape[0], s[0].shape[1])) });
  registerLoss('masked_hidden_mse', { needs: 'same', doc: 'TinyBERT hidden-state / embedding MSE over real tokens (batch.attention_mask)', fn: (s, t, c) => maskedHiddenMseLoss(s[0], t[0], maskOf(c, 'masked_hidden_mse', s[0].shape[0], s[0].shape[1])) });
  registerLoss('tinybert_attention_mse', {
    needs: 'batch', arity: 2, doc: 'TinyBERT attention-score MSE from [query, key] taps per side over real (query, key) pairs (options heads, teacherHeads)',
    fn: (s, t, c, o) => {
      const heads = int(o, 'heads', 'tinybert_attention_mse');
      return tinybertAttentionMse(s[0], s[1], t[0], t[1], heads, maskOf(c, 'tinybert_attention_mse', s[0].shape[0], s[0].shape[1]), int(o, 'teacherHeads', 'tinybert_attention_mse', heads));
    },
  });
  registerLoss('masked_attention_kl', { needs: 'same', doc: 'MiniLM attention-distribution KL over real query rows (batch.attention_mask)', fn: (s, t, c) => maskedAttentionKl(s[0], t[0], maskOf(c, 'masked_attention_kl', s[0].shape[0], s[0].shape[2])) });
  registerLoss('masked_relation_kl', {
    needs: 'batch', doc: 'MiniLM value relation / MiniLMv2 Q-Q, K-K, V-V relation KL, padded keys and queries excluded (option heads)',
    fn: (s, t, c, o) => maskedRelationKl(s[0], t[0], int(o, 'heads', 'masked_relation_kl', 1), maskOf(c, 'masked_relation_kl', s[0].shape[0], s[0].shape[1])),
  });
}
