// A fastText-style text classifier (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification"): the
// embeddings of a text's tokens and hashed n-grams are averaged and a linear layer maps the average to the classes.
// The n-grams are hashed by the data step (TextIdEncoder with `ngrams` > 1), so the model sees one padded row of ids
// per text: int64 [B, L], `padId` (default 0) marking padding. Its forward is an embedding, a padding mask, a sum and
// a division (EmbeddingBag's mean written out), which the ONNX exporter maps op by op.
//
// Taps: `embed` (the ids' embeddings [B, L, d]), `pool` (the mean [B, d]), `logits`.
import { z } from 'zod';
import { Tensor } from '../torch';
import { Embedding, Linear, Module } from '../nn';
import { type ModelOptionShape, numClasses } from './options';

/** Options of `fasttext`. */
export const FASTTEXT_OPTIONS: ModelOptionShape = {
  vocabSize: z.number().int().positive(), numClasses, dim: z.number().int().positive(), padId: z.number().int().min(0), maxLen: z.number().int().positive(),
};

export interface FastTextOptions {
  /** Ids in the rows: padding, tokens and n-gram buckets (TextIdEncoder.vocabSize). */
  vocabSize: number;
  numClasses?: number;
  /** Embedding size; default 64. */
  dim?: number;
  /** The padding id; default 0. */
  padId?: number;
  /** Longest row accepted; default: any. */
  maxLen?: number;
}

/** Mean of the embeddings of the ids that are not padding: ([B, L, d], ids [B, L]) -> [B, d]; an all-padding row gives 0. */
export class BagMean extends Module {
  constructor(readonly padId: number) {
    super();
  }
  forward(h: Tensor, ids: Tensor): Tensor {
    const keep = ids.ne(this.padId).to(h.dtype).unsqueeze(-1); // [B, L, 1]
    return h.mul(keep).sum([1]).div(keep.sum([1]).clamp(1));
  }
}

export class FastText extends Module {
  readonly embed: Embedding;
  readonly pool: BagMean;
  readonly fc: Linear;
  readonly padId: number;
  readonly maxLen: number | null;
  constructor(readonly opts: FastTextOptions) {
    super();
    const v = opts.vocabSize;
    if (!Number.isInteger(v) || v < 2) throw new Error(`fasttext: vocabSize must be an integer >= 2, got ${v}`);
    const d = opts.dim ?? 64;
    if (!Number.isInteger(d) || d < 1) throw new Error(`fasttext: dim must be a positive integer, got ${d}`);
    this.padId = opts.padId ?? 0;
    if (!Number.isInteger(this.padId) || this.padId < 0 || this.padId >= v) throw new Error(`fasttext: padId must be in [0, ${v}), got ${this.padId}`);
    this.maxLen = opts.maxLen ?? null;
    const nc = opts.numClasses ?? 2;
    if (!Number.isInteger(nc) || nc < 1) throw new Error(`fasttext: numClasses must be a positive integer, got ${nc}`);
    this.embed = this.registerModule('embed', new Embedding(v, d, { paddingIdx: this.padId }));
    this.pool = this.registerModule('pool', new BagMean(this.padId));
    this.fc = this.registerModule('fc', new Linear(d, nc));
  }
  forward(ids: Tensor): Tensor {
    const s = ids.shape;
    if (ids.dtype !== 'int64' || s.length !== 2) throw new Error(`FastText: expected int64 ids [B, L], got ${ids.dtype} [${s.join(', ')}]`);
    if (this.maxLen !== null && s[1] > this.maxLen) throw new Error(`FastText: rows of ${s[1]} ids exceed maxLen ${this.maxLen} (shape [${s.join(', ')}])`);
    return this.fc.call(this.pool.call(this.embed.call(ids), ids));
  }
}
