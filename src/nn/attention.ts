// Multi-head attention and the Transformer encoder layer, with PyTorch's parameter names and initialisation.
import { Tensor, empty, ops } from '../torch';
import { Module } from './module';
import { Dropout, LayerNorm, Linear } from './layers';
import * as init from './init';

export interface MultiheadAttentionOptions {
  dropout?: number;
  bias?: boolean;
  batchFirst?: boolean;
}

export interface AttentionCallOptions {
  /** [B, S] bool (true = ignore that key) or float (added to the scores). */
  keyPaddingMask?: Tensor | null;
  /** [L, S] or [B*heads, L, S]; bool (true = not allowed) or float (added). */
  attnMask?: Tensor | null;
  /** Also return the attention probabilities. */
  needWeights?: boolean;
  /** Average the probabilities over heads ([B, L, S]); otherwise [B, heads, L, S]. */
  averageAttnWeights?: boolean;
}

/**
 * `call(query, key, value, opts)` returns `[output, weights | null]` like PyTorch's forward. Attention probabilities
 * are computed after softmax and before dropout.
 */
export class MultiheadAttention extends Module {
  readonly in_proj_weight: Tensor;
  readonly in_proj_bias: Tensor | null;
  readonly out_proj: Linear;
  readonly headDim: number;
  readonly batchFirst: boolean;
  readonly dropoutP: number;
  constructor(readonly embedDim: number, readonly numHeads: number, opts: MultiheadAttentionOptions = {}) {
    super();
    if (embedDim % numHeads !== 0) throw new Error(`MultiheadAttention: embed_dim (${embedDim}) must be divisible by num_heads (${numHeads})`);
    this.headDim = embedDim / numHeads;
    this.batchFirst = opts.batchFirst ?? false;
    this.dropoutP = opts.dropout ?? 0;
    this.in_proj_weight = this.registerParameter('in_proj_weight', empty([3 * embedDim, embedDim]));
    init.xavierUniform_(this.in_proj_weight);
    this.in_proj_bias = opts.bias === false ? null : this.registerParameter('in_proj_bias', empty([3 * embedDim]));
    if (this.in_proj_bias) init.zeros_(this.in_proj_bias);
    this.out_proj = this.registerModule('out_proj', new Linear(embedDim, embedDim, { bias: opts.bias !== false }));
    if (this.out_proj.bias) init.zeros_(this.out_proj.bias);
  }

  forward(query: Tensor, key: Tensor, value: Tensor, opts: AttentionCallOptions = {}): [Tensor, Tensor | null] {
    const needWeights = opts.needWeights ?? true;
    const E = this.embedDim;
    const H = this.numHeads;
    const d = this.headDim;
    // work in [B, L, E]
    const q0 = this.batchFirst ? query : query.transpose(0, 1);
    const k0 = this.batchFirst ? key : key.transpose(0, 1);
    const v0 = this.batchFirst ? value : value.transpose(0, 1);
    const [B, L] = q0.shape;
    const S = k0.shape[1];
    const w = this.in_proj_weight.chunk(3, 0);
    const b = this.in_proj_bias ? this.in_proj_bias.chunk(3, 0) : [null, null, null];
    const proj = (x: Tensor, i: number, len: number) => ops.linear(x, w[i], b[i]).view(B, len, H, d).transpose(1, 2); // [B,H,len,d]
    const q = proj(q0, 0, L);
    const k = proj(k0, 1, S);
    const v = proj(v0, 2, S);
    let scores = q.mul(1 / Math.sqrt(d)).matmul(k.transpose(-2, -1)); // [B,H,L,S]
    if (opts.attnMask) {
      const m = opts.attnMask;
      const mm = m.ndim === 3 ? m.view(B, H, L, S) : m;
      scores = m.dtype === 'bool' ? scores.maskedFill(mm, -Infinity) : scores.add(mm);
    }
    if (opts.keyPaddingMask) {
      const m = opts.keyPaddingMask.view(B, 1, 1, S);
      scores = opts.keyPaddingMask.dtype === 'bool' ? scores.maskedFill(m, -Infinity) : scores.add(m);
    }
    const probs = scores.softmax(-1);
    const dropped = this.training && this.dropoutP > 0 ? ops.dropout(probs, this.dropoutP, true) : probs;
    let out = dropped.matmul(v).transpose(1, 2).reshape(B, L, E);
    out = this.out_proj.call(out);
    if (!this.batchFirst) out = out.transpose(0, 1);
    let weights: Tensor | null = null;
    if (needWeights) weights = opts.averageAttnWeights ?? true ? probs.mean(1) : probs;
    return [out, weights];
  }
}

export interface TransformerEncoderLayerOptions {
  dimFeedforward?: number;
  dropout?: number;
  activation?: 'relu' | 'gelu';
  layerNormEps?: number;
  batchFirst?: boolean;
  normFirst?: boolean;
}

/**
 * PyTorch's TransformerEncoderLayer (post-norm by default, `normFirst` for pre-norm). Attention probabilities are
 * computed only when someone observes them: register a forward hook on `self_attn` (or capture path
 * `<layer>.self_attn` with `captureFeatures`, which yields `<path>#1` = per-head probabilities [B, heads, L, S]).
 */
export class TransformerEncoderLayer extends Module {
  readonly self_attn: MultiheadAttention;
  readonly linear1: Linear;
  readonly dropout: Dropout;
  readonly linear2: Linear;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;
  readonly dropout1: Dropout;
  readonly dropout2: Dropout;
  readonly normFirst: boolean;
  readonly activation: 'relu' | 'gelu';
  constructor(readonly dModel: number, readonly nhead: number, opts: TransformerEncoderLayerOptions = {}) {
    super();
    const ff = opts.dimFeedforward ?? 2048;
    const p = opts.dropout ?? 0.1;
    const eps = opts.layerNormEps ?? 1e-5;
    this.normFirst = opts.normFirst ?? false;
    this.activation = opts.activation ?? 'relu';
    this.self_attn = this.registerModule('self_attn', new MultiheadAttention(dModel, nhead, { dropout: p, batchFirst: opts.batchFirst ?? false }));
    this.linear1 = this.registerModule('linear1', new Linear(dModel, ff));
    this.dropout = this.registerModule('dropout', new Dropout(p));
    this.linear2 = this.registerModule('linear2', new Linear(ff, dModel));
    this.norm1 = this.registerModule('norm1', new LayerNorm(dModel, { eps }));
    this.norm2 = this.registerModule('norm2', new LayerNorm(dModel, { eps }));
    this.dropout1 = this.registerModule('dropout1', new Dropout(p));
    this.dropout2 = this.registerModule('dropout2', new Dropout(p));
  }
  private sa(x: Tensor, srcMask?: Tensor | null, keyPaddingMask?: Tensor | null): Tensor {
    const observed = this.self_attn.hasForwardHooks();
    const [out] = this.self_attn.call(x, x, x, { attnMask: srcMask, keyPaddingMask, needWeights: observed, averageAttnWeights: false });
    return this.dropout1.call(out);
  }
  private ffn(x: Tensor): Tensor {
    const h = this.linear1.call(x);
    const a = this.activation === 'gelu' ? ops.gelu(h) : ops.relu(h);
    return this.dropout2.call(this.linear2.call(this.dropout.call(a)));
  }
  forward(src: Tensor, opts: { srcMask?: Tensor | null; srcKeyPaddingMask?: Tensor | null } = {}): Tensor {
    let x = src;
    if (this.normFirst) {
      x = x.add(this.sa(this.norm1.call(x), opts.srcMask, opts.srcKeyPaddingMask));
      x = x.add(this.ffn(this.norm2.call(x)));
    } else {
      x = this.norm1.call(x.add(this.sa(x, opts.srcMask, opts.srcKeyPaddingMask)));
      x = this.norm2.call(x.add(this.ffn(x)));
    }
    return x;
  }
}

