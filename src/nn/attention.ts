// Multi-head attention and the Transformer encoder, with PyTorch 1.13's parameter names, state_dict keys,
// initialisation order (bit for bit the same weights under the same manualSeed) and numerics.
//
// The attention computation itself is `scaledDotProductAttention` (functional.ts), which the GPT decoder calls as
// well; ONNX export traces it like any forward.
//
// Capturing attention probabilities (for attention distillation): MultiheadAttention returns [output, weights], and
// `captureFeatures` stores an array output's elements as `path`, `path#1`, ... A TransformerEncoderLayer asks its
// `self_attn` for per-head weights only when a hook is registered on it, so
//
//     const { result, features } = model.captureFeatures(['encoder.layers.0.self_attn'], () => model.call(x));
//     features.get('encoder.layers.0.self_attn#1')   // [B, heads, L, S] attention probabilities, rows sum to 1
//
// costs nothing when nobody observes the attention. `attentionKey(layerPath)` builds that key. The probabilities
// are taken after softmax and before attention dropout (PyTorch 1.13 returns them after dropout; in eval mode, or
// with dropout 0, both are the same), so they are always proper distributions.
import { Tensor, empty, ops } from '../torch';
import { Module } from './module';
import { Dropout, LayerNorm, Linear, ModuleList, layerError, moduleLabel } from './layers';
import { scaledDotProductAttention } from './functional';
import * as init from './init';

export interface MultiheadAttentionOptions {
  /** Dropout on the attention probabilities in training (default 0). */
  dropout?: number;
  /** Biases of the input and output projections (default true). */
  bias?: boolean;
  /** Inputs and output are [B, L, E] instead of [L, B, E] (default false, like PyTorch). */
  batchFirst?: boolean;
  /** Feature size of keys (default embedDim); when kdim or vdim differ, separate q/k/v projection weights are used. */
  kdim?: number;
  /** Feature size of values (default embedDim). */
  vdim?: number;
}

export interface AttentionCallOptions {
  /** [B, S] (or [S] for unbatched input): bool (true = ignore that key) or float (added to the scores). */
  keyPaddingMask?: Tensor | null;
  /** [L, S] or [B*heads, L, S]: bool (true = not allowed) or float (added to the scores). */
  attnMask?: Tensor | null;
  /** Also return the attention probabilities (default true, like PyTorch). */
  needWeights?: boolean;
  /** Average the probabilities over heads, [B, L, S] (default); false gives [B, heads, L, S]. */
  averageAttnWeights?: boolean;
}

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

/**
 * `call(query, key, value, opts)` returns `[output, weights | null]` like PyTorch's forward. Input shapes: [L, B, E]
 * (or [B, L, E] with batchFirst) for the query, [S, B, kdim] / [S, B, vdim] for key / value; unbatched 2-D inputs
 * ([L, E]) are accepted too. Weights are the attention probabilities after softmax, before dropout.
 */
export class MultiheadAttention extends Module {
  readonly in_proj_weight: Tensor | null = null;
  readonly q_proj_weight: Tensor | null = null;
  readonly k_proj_weight: Tensor | null = null;
  readonly v_proj_weight: Tensor | null = null;
  readonly in_proj_bias: Tensor | null;
  readonly out_proj: Linear;
  readonly headDim: number;
  readonly batchFirst: boolean;
  readonly dropoutP: number;
  readonly kdim: number;
  readonly vdim: number;
  private readonly sameEmbedDim: boolean;
  constructor(readonly embedDim: number, readonly numHeads: number, opts: MultiheadAttentionOptions = {}) {
    super();
    if (!Number.isInteger(embedDim) || embedDim <= 0 || !Number.isInteger(numHeads) || numHeads <= 0)
      throw new Error(`MultiheadAttention: embedDim and numHeads must be positive integers, got ${embedDim} and ${numHeads}`);
    if (embedDim % numHeads !== 0) throw new Error(`MultiheadAttention: embedDim (${embedDim}) must be divisible by numHeads (${numHeads})`);
    this.headDim = embedDim / numHeads;
    this.batchFirst = opts.batchFirst ?? false;
    this.dropoutP = opts.dropout ?? 0;
    if (!(this.dropoutP >= 0 && this.dropoutP <= 1)) throw new Error(`MultiheadAttention: dropout must be in [0, 1], got ${this.dropoutP}`);
    this.kdim = opts.kdim ?? embedDim;
    this.vdim = opts.vdim ?? embedDim;
    this.sameEmbedDim = this.kdim === embedDim && this.vdim === embedDim;
    const bias = opts.bias ?? true;
    // registration order and RNG order as in PyTorch 1.13: parameters, then out_proj (which initialises itself),
    // then xavier on the input projections
    if (this.sameEmbedDim) {
      this.in_proj_weight = this.registerParameter('in_proj_weight', empty([3 * embedDim, embedDim]));
    } else {
      this.q_proj_weight = this.registerParameter('q_proj_weight', empty([embedDim, embedDim]));
      this.k_proj_weight = this.registerParameter('k_proj_weight', empty([embedDim, this.kdim]));
      this.v_proj_weight = this.registerParameter('v_proj_weight', empty([embedDim, this.vdim]));
    }
    this.in_proj_bias = bias ? this.registerParameter('in_proj_bias', empty([3 * embedDim])) : null;
    this.out_proj = this.registerModule('out_proj', new Linear(embedDim, embedDim, { bias }));
    if (this.in_proj_weight) init.xavierUniform_(this.in_proj_weight);
    else for (const w of [this.q_proj_weight!, this.k_proj_weight!, this.v_proj_weight!]) init.xavierUniform_(w);
    if (this.in_proj_bias) {
      init.zeros_(this.in_proj_bias);
      init.zeros_(this.out_proj.bias!);
    }
  }

  forward(query: Tensor, key: Tensor, value: Tensor, opts: AttentionCallOptions = {}): [Tensor, Tensor | null] {
    const needWeights = opts.needWeights ?? true;
    const average = opts.averageAttnWeights ?? true;
    const E = this.embedDim;
    const H = this.numHeads;
    const d = this.headDim;
    const qs = query.shape;
    const ks = key.shape;
    const vs = value.shape;
    const label = () => moduleLabel(this);
    if (qs.length !== 2 && qs.length !== 3) throw new Error(`${label()}: query must be 2-D (unbatched) or 3-D, got ${shapeStr(qs)}`);
    if (ks.length !== qs.length || vs.length !== qs.length)
      throw new Error(`${label()}: query, key and value must have the same number of dimensions, got ${shapeStr(qs)}, ${shapeStr(ks)}, ${shapeStr(vs)}`);
    const unbatched = qs.length === 2;
    // [B, len, features] views of the inputs
    const toBLE = (x: Tensor) => (unbatched ? x.unsqueeze(0) : this.batchFirst ? x : x.transpose(0, 1));
    const bdim = this.batchFirst ? 0 : 1;
    const B = unbatched ? 1 : qs[bdim];
    const L = unbatched ? qs[0] : qs[1 - bdim];
    const S = unbatched ? ks[0] : ks[1 - bdim];
    if (qs[qs.length - 1] !== E) throw new Error(`${label()}: query feature size must be ${E}, got shape ${shapeStr(qs)}`);
    if (ks[ks.length - 1] !== this.kdim) throw new Error(`${label()}: key feature size must be ${this.kdim}, got shape ${shapeStr(ks)}`);
    if (vs[vs.length - 1] !== this.vdim) throw new Error(`${label()}: value feature size must be ${this.vdim}, got shape ${shapeStr(vs)}`);
    if (!unbatched && (ks[bdim] !== B || vs[bdim] !== B || vs[1 - bdim] !== S))
      throw new Error(`${label()}: key and value must have the query's batch size ${B} and the same length, got ${shapeStr(ks)} and ${shapeStr(vs)}`);
    if (unbatched && vs[0] !== S) throw new Error(`${label()}: key and value must have the same length, got ${shapeStr(ks)} and ${shapeStr(vs)}`);

    // input projections -> [B, H, len, d]
    const heads = (x: Tensor, len: number) => x.view(B, len, H, d).transpose(1, 2);
    let q!: Tensor, k!: Tensor, v!: Tensor;
    try {
      const bias = this.in_proj_bias;
      if (this.in_proj_weight !== null && query === key && key === value) {
        const [pq, pk, pv] = ops.linear(toBLE(query), this.in_proj_weight, bias).chunk(3, -1);
        q = heads(pq, L);
        k = heads(pk, S);
        v = heads(pv, S);
      } else {
        const w = this.in_proj_weight !== null ? this.in_proj_weight.chunk(3, 0) : [this.q_proj_weight!, this.k_proj_weight!, this.v_proj_weight!];
        const b = bias !== null ? bias.chunk(3, 0) : [null, null, null];
        q = heads(ops.linear(toBLE(query), w[0], b[0]), L);
        k = heads(ops.linear(toBLE(key), w[1], b[1]), S);
        v = heads(ops.linear(toBLE(value), w[2], b[2]), S);
      }
    } catch (e) {
      layerError(this, [query, key, value], e);
    }

    // masks as [L, S] or [B, H, L, S] (attnMask) and [B, 1, 1, S] (keyPaddingMask) over the scores [B, H, L, S]
    let attnMask: Tensor | null = null;
    const am = opts.attnMask;
    if (am) {
      const s = am.shape;
      if (s.length === 2 && s[0] === L && s[1] === S) attnMask = am;
      else if (s.length === 3 && s[0] === B * H && s[1] === L && s[2] === S) attnMask = am.view(B, H, L, S);
      else throw new Error(`${label()}: attnMask must be [${L}, ${S}] or [${B * H}, ${L}, ${S}] (batch*heads, L, S), got ${shapeStr(s)}`);
    }
    let paddingMask: Tensor | null = null;
    const kpm = opts.keyPaddingMask;
    if (kpm) {
      const s = kpm.shape;
      const ok = unbatched ? s.length === 1 && s[0] === S : s.length === 2 && s[0] === B && s[1] === S;
      if (!ok) throw new Error(`${label()}: keyPaddingMask must be ${unbatched ? `[${S}]` : `[${B}, ${S}]`} (batch, key length), got ${shapeStr(s)}`);
      paddingMask = kpm.view(B, 1, 1, S);
    }
    const [attended, probs] = scaledDotProductAttention(q, k, v, {
      mask: [attnMask, paddingMask],
      dropout: this.training ? this.dropoutP : 0,
      needWeights,
    });
    let out = this.out_proj.call(attended.transpose(1, 2).reshape(B, L, E));
    if (unbatched) out = out.squeeze(0);
    else if (!this.batchFirst) out = out.transpose(0, 1);
    let weights: Tensor | null = null;
    if (probs !== null) {
      weights = average ? probs.mean(1) : probs;
      if (unbatched) weights = weights.squeeze(0);
    }
    return [out, weights];
  }
  override extraRepr(): string {
    return `embed_dim=${this.embedDim}, num_heads=${this.numHeads}, batch_first=${this.batchFirst}`;
  }
}

export interface TransformerEncoderLayerOptions {
  /** Hidden size of the feed-forward block (default 2048, like PyTorch). */
  dimFeedforward?: number;
  /** Dropout after attention, inside and after the feed-forward block, and on the attention probabilities (default 0.1). */
  dropout?: number;
  activation?: 'relu' | 'gelu';
  layerNormEps?: number;
  batchFirst?: boolean;
  /** Pre-norm (LayerNorm before attention and feed-forward) instead of the default post-norm. */
  normFirst?: boolean;
}

export interface EncoderCallOptions {
  /** Attention mask, [L, L] or [B*heads, L, L] (see MultiheadAttention). */
  srcMask?: Tensor | null;
  /** [B, L]: true marks padding positions that no query attends to. */
  srcKeyPaddingMask?: Tensor | null;
}

/** The key under which `captureFeatures` stores the attention probabilities of the encoder layer at `layerPath`. */
export function attentionKey(layerPath: string): string {
  return `${layerPath ? layerPath + '.' : ''}self_attn#1`;
}

/**
 * PyTorch's TransformerEncoderLayer (post-norm by default, `normFirst` for pre-norm), with its state_dict keys
 * (self_attn.in_proj_weight, self_attn.out_proj.weight, linear1, linear2, norm1, norm2). Attention probabilities
 * are computed only when observed: capture path `<layer>.self_attn` and read `<layer>.self_attn#1` (per-head,
 * [B, heads, L, S]); see the top of this file.
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
    if (this.activation !== 'relu' && this.activation !== 'gelu')
      throw new Error(`TransformerEncoderLayer: activation must be 'relu' or 'gelu', got '${this.activation}'`);
    // construction order = PyTorch's (same RNG draws)
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
  private ff(x: Tensor): Tensor {
    const h = this.linear1.call(x);
    const a = this.activation === 'gelu' ? ops.gelu(h) : ops.relu(h);
    return this.dropout2.call(this.linear2.call(this.dropout.call(a)));
  }
  forward(src: Tensor, opts: EncoderCallOptions = {}): Tensor {
    let x = src;
    if (this.normFirst) {
      x = x.add(this.sa(this.norm1.call(x), opts.srcMask, opts.srcKeyPaddingMask));
      x = x.add(this.ff(this.norm2.call(x)));
    } else {
      x = this.norm1.call(x.add(this.sa(x, opts.srcMask, opts.srcKeyPaddingMask)));
      x = this.norm2.call(x.add(this.ff(x)));
    }
    return x;
  }
  override extraRepr(): string {
    return `d_model=${this.dModel}, nhead=${this.nhead}, norm_first=${this.normFirst}, activation=${this.activation}`;
  }
}

/**
 * A stack of encoder layers (`layers.0`, `layers.1`, ... and an optional final `norm`), PyTorch's
 * TransformerEncoder. PyTorch deep-copies one layer (all layers start equal); here `makeLayer` builds each layer, so
 * each gets its own initialisation. Padded positions are computed like any other (PyTorch's eval-mode nested-tensor
 * path returns zeros there): mask them out downstream.
 */
export class TransformerEncoder extends Module {
  readonly layers: ModuleList<TransformerEncoderLayer>;
  readonly norm: LayerNorm | null;
  constructor(makeLayer: (index: number) => TransformerEncoderLayer, readonly numLayers: number, opts: { norm?: LayerNorm } = {}) {
    super();
    if (!Number.isInteger(numLayers) || numLayers <= 0) throw new Error(`TransformerEncoder: numLayers must be a positive integer, got ${numLayers}`);
    const layers: TransformerEncoderLayer[] = [];
    for (let i = 0; i < numLayers; i++) layers.push(makeLayer(i));
    if (new Set(layers).size !== layers.length) throw new Error('TransformerEncoder: makeLayer must return a new layer on each call');
    this.layers = this.registerModule('layers', new ModuleList(layers));
    this.norm = opts.norm ? this.registerModule('norm', opts.norm) : null;
  }
  forward(src: Tensor, opts: { mask?: Tensor | null; srcKeyPaddingMask?: Tensor | null } = {}): Tensor {
    let x = src;
    for (const layer of this.layers) x = layer.call(x, { srcMask: opts.mask, srcKeyPaddingMask: opts.srcKeyPaddingMask });
    return this.norm ? this.norm.call(x) : x;
  }
}
