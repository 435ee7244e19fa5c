// A Transformer encoder for sequence classification (BERT-style, small): token + learned position embeddings, a
// stack of TransformerEncoderLayers (batch-first, pre-norm by default), a final LayerNorm, mean pooling over the
// non-padding tokens (module `pool`, the [B, d] sentence embedding relation losses use) and a linear head `fc`.
// Input: int64 token ids [B, L] with `padId` (default 0) marking padding; every row needs at least one real token.
//
// Distillation taps (TinyBERT / MiniLM style): `encoder.layers.<i>` is layer i's hidden states [B, L, d],
// `encoder.layers.<i>.self_attn#1` its attention probabilities [B, heads, L, L] (see attentionKey), `embed` the
// token embeddings, `pool` the pooled embedding, `logits` the output.
import { z } from 'zod';
import { Tensor, arange } from '../torch';
import { Dropout, Embedding, LayerNorm, Linear, Module, TransformerEncoder, TransformerEncoderLayer } from '../nn';
import { type ModelOptionShape, numClasses, probability } from './options';

export interface TransformerClassifierOptions {
  vocabSize: number;
  numClasses?: number;
  /** Longest input accepted (positions); default 64. */
  maxLen?: number;
  /** Hidden size; default 128. */
  dModel?: number;
  /** Attention heads; default 4 (dModel must be divisible by it). */
  heads?: number;
  /** Encoder layers; default 2. */
  layers?: number;
  /** Feed-forward size; default 4 × dModel. */
  dimFeedforward?: number;
  /** Dropout in the encoder and before the head; default 0.1. */
  dropout?: number;
  /** Token id of padding; default 0. */
  padId?: number;
  /** Pre-norm layers (default true); false gives PyTorch's default post-norm. */
  normFirst?: boolean;
  activation?: 'relu' | 'gelu';
}

/** Options of `transformer` (see TransformerClassifierOptions; `vocabSize` is required). */
export const TRANSFORMER_OPTIONS: ModelOptionShape = {
  vocabSize: z.number().int().positive(), numClasses, maxLen: z.number().int().positive(), dModel: z.number().int().positive(), heads: z.number().int().positive(),
  layers: z.number().int().positive(), dimFeedforward: z.number().int().positive(), dropout: probability, padId: z.number().int().min(0), normFirst: z.boolean(),
  activation: z.enum(['relu', 'gelu']),
};

/** Mean over the sequence of the positions that are not padding: ([B, L, d], padding mask [B, L] bool) -> [B, d]. */
export class MaskedMeanPool extends Module {
  forward(h: Tensor, padding: Tensor): Tensor {
    const keep = padding.logicalNot().to(h.dtype).unsqueeze(-1); // [B, L, 1]
    return h.mul(keep).sum([1]).div(keep.sum([1]));
  }
}

export class TransformerClassifier extends Module {
  readonly embed: Embedding;
  readonly pos: Embedding;
  readonly encoder: TransformerEncoder;
  readonly pool: MaskedMeanPool;
  readonly drop: Dropout;
  readonly fc: Linear;
  readonly maxLen: number;
  readonly padId: number;
  readonly dModel: number;
  constructor(readonly opts: TransformerClassifierOptions) {
    super();
    const v = opts.vocabSize;
    if (!Number.isInteger(v) || v < 2) throw new Error(`transformer: vocabSize must be an integer >= 2, got ${v}`);
    const d = (this.dModel = opts.dModel ?? 128);
    const heads = opts.heads ?? 4;
    if (!Number.isInteger(d) || d < 1 || !Number.isInteger(heads) || heads < 1 || d % heads !== 0)
      throw new Error(`transformer: dModel (${d}) must be a positive multiple of heads (${heads})`);
    const layers = opts.layers ?? 2;
    this.maxLen = opts.maxLen ?? 64;
    this.padId = opts.padId ?? 0;
    if (!Number.isInteger(this.padId) || this.padId < 0 || this.padId >= v) throw new Error(`transformer: padId must be in [0, ${v}), got ${this.padId}`);
    const p = opts.dropout ?? 0.1;
    this.embed = this.registerModule('embed', new Embedding(v, d, { paddingIdx: this.padId }));
    this.pos = this.registerModule('pos', new Embedding(this.maxLen, d));
    const layerOpts = { dimFeedforward: opts.dimFeedforward ?? 4 * d, dropout: p, batchFirst: true, normFirst: opts.normFirst ?? true, activation: opts.activation ?? 'gelu' };
    this.encoder = this.registerModule(
      'encoder',
      new TransformerEncoder(() => new TransformerEncoderLayer(d, heads, layerOpts), layers, { norm: new LayerNorm(d) }),
    );
    this.pool = this.registerModule('pool', new MaskedMeanPool());
    this.drop = this.registerModule('drop', new Dropout(p));
    this.fc = this.registerModule('fc', new Linear(d, opts.numClasses ?? 2));
  }
  forward(ids: Tensor): Tensor {
    const s = ids.shape;
    if (ids.dtype !== 'int64' || s.length !== 2) throw new Error(`TransformerClassifier: expected int64 token ids [B, L], got ${ids.dtype} [${s.join(', ')}]`);
    if (s[1] > this.maxLen) throw new Error(`TransformerClassifier: sequence length ${s[1]} exceeds maxLen ${this.maxLen} (shape [${s.join(', ')}])`);
    const padding = ids.eq(this.padId);
    let h = this.embed.call(ids).add(this.pos.call(arange(s[1], undefined, 1, { dtype: 'int64', device: ids.device })));
    h = this.encoder.call(h, { srcKeyPaddingMask: padding });
    return this.fc.call(this.drop.call(this.pool.call(h, padding)));
  }
}
