// The Llama family with transformers' parameter names and math (modeling_llama.py, modeling_qwen2.py):
//
//   model.embed_tokens [V, C]   model.norm (RMSNorm)   lm_head [V, C] (absent when tie_word_embeddings)
//   model.layers.{i}.input_layernorm, .post_attention_layernorm (RMSNorm, rms_norm_eps)
//   model.layers.{i}.self_attn.{q_proj [H·d, C], k_proj [KV·d, C], v_proj [KV·d, C], o_proj [C, H·d]}
//   model.layers.{i}.mlp.{gate_proj, up_proj, down_proj}      down(silu(gate(x)) · up(x))  (SwiGLU)
//
// Grouped-query attention: num_key_value_heads (KV) key/value heads, each shared by H / KV query heads; the cache
// holds the KV heads. Rotary embeddings in the half-split layout (rotate_half) with base `rope_theta`, head size
// `head_dim` (default hidden_size / num_attention_heads) and the scaling of `rope_scaling` / `rope_parameters`
// (default, linear, dynamic, llama3, yarn; rope-config.ts). Llama's projections have biases when `attention_bias`
// (and the MLP's when `mlp_bias`); Qwen2's q/k/v always have biases and o_proj none.
//
// Qwen2's sliding window (`use_sliding_window`): the layers of `layer_types` "sliding_attention" (by default those
// from `max_window_layers` on) attend to the `sliding_window` last positions only, the query's own included (key
// index j > i − sliding_window, as transformers' masks).
//
// A padding mask (`attentionMask`, left padding) gives every row its own positions (cumsum − 1) and hides the
// padded keys; with dynamic scaling, the frequencies follow the longest position seen as transformers'
// `dynamic_rope_update` does: they grow with it, and return to the default ones when a forward stays within
// max_position_embeddings.
import { Tensor, arange, ops } from '../../torch';
import {
  Dropout, Embedding, KVCache, Linear, Module, ModuleList, applyRotary, ropeFrequencies, ropeTables, scaledDotProductAttention, type BatchStep,
  type RopeTables,
} from '../../nn';
import type { HfConfig } from './config';
import { HfCausalLM, RMSNorm, cacheKinds, checkIds, decoderPadding, type DecoderCallOptions } from './common';
import { hfRope, ropeContextLength, type HfRope } from './rope-config';
import { dropoutOf } from './bert';

export interface LlamaSettings {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  /** The longest sequence taken: max_position_embeddings (factor × it with dynamic rotary scaling). */
  contextLength: number;
  eps: number;
  ropeTheta: number;
  rope: HfRope;
  /** Qwen2's sliding_window when use_sliding_window, else null. */
  slidingWindow: number | null;
  /** Per layer: true where attention is limited to the sliding window. */
  slidingLayers: boolean[];
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  attentionDropout: number;
}

export function llamaSettings(c: HfConfig, family: 'llama' | 'qwen2'): LlamaSettings {
  c.refuse('hidden_act', ['silu'], 'the MLP is SwiGLU with silu');
  c.refuse('pretraining_tp', [1], 'tensor-parallel slicing is not implemented; 1 gives the same model');
  const hiddenSize = c.int('hidden_size', 4096);
  const numHeads = c.int('num_attention_heads', 32);
  const numLayers = c.int('num_hidden_layers', 32);
  const maxPositions = c.int('max_position_embeddings', 2048);
  const rope = hfRope(c, family === 'qwen2' ? 1e6 : 10000, maxPositions);
  // as transformers' Qwen2Config: no window unless use_sliding_window, and none when sliding_window is null
  const sliding = family === 'qwen2' && c.bool('use_sliding_window', false) && c.raw.sliding_window !== null;
  const slidingWindow = sliding ? c.int('sliding_window', 4096) : null;
  const slidingLayers = layerTypes(c, numLayers, sliding);
  const s: LlamaSettings = {
    vocabSize: c.int('vocab_size', 32000),
    hiddenSize,
    intermediateSize: c.int('intermediate_size', 11008),
    numLayers,
    numHeads,
    numKvHeads: c.int('num_key_value_heads', numHeads),
    headDim: c.has('head_dim') ? c.int('head_dim') : hiddenSize / numHeads,
    maxPositions,
    contextLength: ropeContextLength(rope, maxPositions),
    eps: c.num('rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    rope,
    slidingWindow,
    slidingLayers,
    qkvBias: family === 'qwen2' ? true : c.bool('attention_bias', false),
    oBias: family === 'qwen2' ? false : c.bool('attention_bias', false),
    mlpBias: family === 'qwen2' ? false : c.bool('mlp_bias', false),
    tieWordEmbeddings: c.bool('tie_word_embeddings', family === 'qwen2'),
    attentionDropout: dropoutOf(c, 'attention_dropout', 0),
  };
  if (!Number.isInteger(s.headDim) || s.headDim % 2 !== 0)
    throw new Error(`${c.source}: the head size (head_dim, or hidden_size / num_attention_heads) must be an even integer, got ${s.headDim}`);
  if (s.numHeads % s.numKvHeads !== 0)
    throw new Error(`${c.source}: num_attention_heads ${s.numHeads} is not a multiple of num_key_value_heads ${s.numKvHeads}`);
  return s;
}

/** Which layers use the sliding window: `layer_types` when given, else the layers from `max_window_layers` on. */
function layerTypes(c: HfConfig, numLayers: number, sliding: boolean): boolean[] {
  const given = c.raw.layer_types;
  if (given != null) {
    if (!Array.isArray(given) || given.length !== numLayers || !given.every((t) => t === 'full_attention' || t === 'sliding_attention'))
      throw new Error(`${c.source}: 'layer_types' must list "full_attention" or "sliding_attention" for each of the ${numLayers} layers, got ${JSON.stringify(given)}`);
    if (!sliding && given.includes('sliding_attention'))
      throw new Error(`${c.source}: 'layer_types' has sliding_attention layers, but use_sliding_window is not true`);
    return given.map((t) => t === 'sliding_attention');
  }
  if (!sliding) return Array(numLayers).fill(false);
  const from = c.int('max_window_layers', 28, 0);
  return Array.from({ length: numLayers }, (_, i) => i >= from);
}

/** What every layer of one forward shares: the rotary tables and the masks of full and sliding-window attention. */
export interface LlamaContext {
  rope: RopeTables;
  /** Added to (float) or masking (bool) the scores of every layer: a batched step's mask, the padding mask. */
  masks: Tensor[];
  /** The sliding window's mask (true = outside the window), for the layers that use it. */
  window: Tensor | null;
}

export class LlamaAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly attention_dropout: Dropout;
  constructor(readonly s: LlamaSettings) {
    super();
    const { hiddenSize: C, numHeads: H, numKvHeads: KV, headDim: d } = s;
    this.q_proj = this.registerModule('q_proj', new Linear(C, H * d, { bias: s.qkvBias }));
    this.k_proj = this.registerModule('k_proj', new Linear(C, KV * d, { bias: s.qkvBias }));
    this.v_proj = this.registerModule('v_proj', new Linear(C, KV * d, { bias: s.qkvBias }));
    this.o_proj = this.registerModule('o_proj', new Linear(H * d, C, { bias: s.oBias }));
    this.attention_dropout = this.registerModule('attention_dropout', new Dropout(s.attentionDropout));
  }
  /**
   * x [B, T, C] at the positions the rotary tables describe; with a cache, x holds the positions after the cached
   * ones, and its keys and values (KV heads, rotated) join the cache as layer `layer`; with a batched step, x is
   * [B, 1, C], each row at its own position.
   */
  forward(x: Tensor, ctx: LlamaContext, cache: KVCache | BatchStep | null = null, layer = 0): [Tensor, Tensor | null] {
    const [B, T] = x.shape;
    const rope = ctx.rope;
    const { numHeads: H, numKvHeads: KV, headDim: d } = this.s;
    const q = applyRotary(this.q_proj.call(x).view(B, T, H, d).transpose(1, 2), rope);
    let k = applyRotary(this.k_proj.call(x).view(B, T, KV, d).transpose(1, 2), rope);
    let v = this.v_proj.call(x).view(B, T, KV, d).transpose(1, 2);
    const { kv, step } = cacheKinds(cache);
    if (step !== null) [k, v] = step.cache.appendStep(step, layer, k, v);
    else if (kv !== null) [k, v] = kv.append(layer, k, v);
    const rep = H / KV;
    if (rep > 1) {
      const S = k.shape[2];
      const expand = (t: Tensor) => t.unsqueeze(2).expand(B, KV, rep, S, d).reshape(B, H, S, d); // repeat_kv
      k = expand(k);
      v = expand(v);
    }
    const [y, probs] = scaledDotProductAttention(q, k, v, {
      causal: step === null,
      mask: this.s.slidingLayers[layer] && ctx.window !== null ? [...ctx.masks, ctx.window] : ctx.masks,
      dropout: this.training ? this.attention_dropout.p : 0,
      needWeights: this.hasForwardHooks(),
    });
    return [this.o_proj.call(y.transpose(1, 2).reshape(B, T, H * d)), probs];
  }
}

export class LlamaMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(s: LlamaSettings) {
    super();
    this.gate_proj = this.registerModule('gate_proj', new Linear(s.hiddenSize, s.intermediateSize, { bias: s.mlpBias }));
    this.up_proj = this.registerModule('up_proj', new Linear(s.hiddenSize, s.intermediateSize, { bias: s.mlpBias }));
    this.down_proj = this.registerModule('down_proj', new Linear(s.intermediateSize, s.hiddenSize, { bias: s.mlpBias }));
  }
  forward(x: Tensor): Tensor {
    return this.down_proj.call(this.gate_proj.call(x).silu().mul(this.up_proj.call(x)));
  }
}

export class LlamaDecoderLayer extends Module {
  readonly self_attn: LlamaAttention;
  readonly mlp: LlamaMLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;
  constructor(s: LlamaSettings) {
    super();
    this.self_attn = this.registerModule('self_attn', new LlamaAttention(s));
    this.mlp = this.registerModule('mlp', new LlamaMLP(s));
    this.input_layernorm = this.registerModule('input_layernorm', new RMSNorm(s.hiddenSize, s.eps));
    this.post_attention_layernorm = this.registerModule('post_attention_layernorm', new RMSNorm(s.hiddenSize, s.eps));
  }
  forward(x: Tensor, ctx: LlamaContext, cache: KVCache | BatchStep | null = null, layer = 0): Tensor {
    const a = x.add(this.self_attn.call(this.input_layernorm.call(x), ctx, cache, layer)[0]);
    return a.add(this.mlp.call(this.post_attention_layernorm.call(a)));
  }
}

export class LlamaModel extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  constructor(readonly s: LlamaSettings) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(s.vocabSize, s.hiddenSize));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: s.numLayers }, () => new LlamaDecoderLayer(s))));
    this.norm = this.registerModule('norm', new RMSNorm(s.hiddenSize, s.eps));
    this.dynamicLength = s.maxPositions;
  }
  /** Dynamic scaling: the length the frequencies serve (transformers' `max_seq_len_cached`). */
  private dynamicLength: number;
  /**
   * ids [B, T] at positions past..past+T-1 (a batched step: [B, 1], each row at its own; with `attentionMask`, each
   * row's own, see DecoderCallOptions) -> the last hidden state [B, T, C]; the rotary tables and masks are built once
   * for all layers.
   */
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null, o: DecoderCallOptions = {}): Tensor {
    const { kv, step } = cacheKinds(cache);
    const past = kv === null ? 0 : kv.length;
    const [B, T] = ids.shape;
    let x = this.embed_tokens.call(ids);
    const masks: Tensor[] = [];
    let positions: number | number[] | number[][] = past;
    let seqLen = past + T;
    if (o.attentionMask != null) {
      if (step !== null) throw new Error('LlamaModel: attentionMask is not taken with a batched step (its rows are at their own positions already)');
      const pad = decoderPadding(o.attentionMask, B, past, T, 'LlamaModel', x.device);
      positions = pad.positions;
      seqLen = pad.seqLen;
      masks.push(pad.keyMask);
    } else if (step !== null) {
      positions = step.positions;
      seqLen = step.span;
      masks.push(step.mask);
    }
    const f = this.frequencies(seqLen);
    const ctx: LlamaContext = {
      rope: ropeTables(this.s.headDim, positions, T, { invFreq: f.invFreq, scale: f.attentionScaling, dtype: x.dtype, device: x.device }),
      masks,
      window: this.s.slidingWindow === null ? null : windowMask(this.s.slidingWindow, step, past, T, x.device),
    };
    (this.layers.children() as LlamaDecoderLayer[]).forEach((l, i) => {
      x = l.call(x, ctx, cache, i);
    });
    if (kv !== null) kv.length = past + T;
    return this.norm.call(x);
  }
  /** The rotary frequencies of a forward whose positions reach `seqLen` − 1. */
  private frequencies(seqLen: number) {
    const { rope, headDim, maxPositions } = this.s;
    if (rope.scaling.type !== 'dynamic') return ropeFrequencies(headDim, rope.theta, rope.scaling);
    // transformers' dynamic_rope_update: grow with the longest length, back to the default within max_position_embeddings
    if (seqLen > this.dynamicLength) this.dynamicLength = seqLen;
    if (seqLen < maxPositions && this.dynamicLength > maxPositions) this.dynamicLength = maxPositions;
    return ropeFrequencies(headDim, rope.theta, rope.scaling, this.dynamicLength);
  }
}

/**
 * The sliding window's mask, true where a key lies `window` or more positions before its query (key index j <= i −
 * window): [T, past + T] for T queries after `past` cached positions, [B, 1, 1, span] for a batched step.
 */
function windowMask(window: number, step: BatchStep | null, past: number, T: number, device: string): Tensor {
  if (step !== null) return arange(0, step.span, 1, { dtype: 'int64', device }).view(1, step.span).le(step.pos.view(-1, 1).sub(window)).view(-1, 1, 1, step.span);
  const S = past + T;
  return arange(0, S, 1, { dtype: 'int64', device }).view(1, S).le(arange(past - window, S - window, 1, { dtype: 'int64', device }).view(T, 1));
}

/** `call(ids [B, T], cache?, { attentionMask }?)` gives logits [B, T, V]. */
export class LlamaForCausalLM extends HfCausalLM {
  readonly architecture: string = 'LlamaForCausalLM';
  readonly basePrefix = 'model';
  readonly modelType: string = 'llama';
  readonly settings: LlamaSettings;
  readonly model: LlamaModel;
  readonly lm_head: Linear | null;
  constructor(config: HfConfig, family: 'llama' | 'qwen2' = 'llama') {
    super(config);
    const s = (this.settings = llamaSettings(config, family));
    this.model = this.registerModule('model', new LlamaModel(s));
    this.lm_head = s.tieWordEmbeddings ? null : this.registerModule('lm_head', new Linear(s.hiddenSize, s.vocabSize, { bias: false }));
    this.ignoredKeys.push(/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/, /^model\.rotary_emb\.inv_freq$/);
    if (s.tieWordEmbeddings) this.ignoredKeys.push(/^lm_head\.weight$/);
  }
  get vocabSize(): number {
    return this.settings.vocabSize;
  }
  get contextLength(): number {
    return this.settings.contextLength;
  }
  get numLayers(): number {
    return this.settings.numLayers;
  }
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null, o: DecoderCallOptions = {}): Tensor {
    checkIds(ids, this.settings.contextLength - (cache instanceof KVCache ? cache.length : 0), this.architecture);
    const h = this.model.call(ids, cache, o);
    return ops.linear(h, (this.lm_head ?? this.model.embed_tokens).weight, null);
  }
}

/** Qwen2: Llama with biases on the q/k/v projections (none on o_proj), rope_theta 1e6 and tied embeddings by default. */
export class Qwen2ForCausalLM extends LlamaForCausalLM {
  override readonly architecture = 'Qwen2ForCausalLM';
  override readonly modelType = 'qwen2';
  constructor(config: HfConfig) {
    super(config, 'qwen2');
  }
}
