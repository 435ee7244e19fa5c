// The Llama family with transformers' parameter names and math (modeling_llama.py, modeling_qwen2.py):
//
//   model.embed_tokens [V, C]   model.norm (RMSNorm)   lm_head [V, C] (absent when tie_word_embeddings)
//   model.layers.{i}.input_layernorm, .post_attention_layernorm (RMSNorm, rms_norm_eps)
//   model.layers.{i}.self_attn.{q_proj [H·d, C], k_proj [KV·d, C], v_proj [KV·d, C], o_proj [C, H·d]}
//   model.layers.{i}.mlp.{gate_proj, up_proj, down_proj}      down(silu(gate(x)) · up(x))  (SwiGLU)
//
// Grouped-query attention: num_key_value_heads (KV) key/value heads, each shared by H / KV query heads; the cache
// holds the KV heads. Rotary embeddings in the half-split layout (rotate_half) with base `rope_theta` (or
// `rope_parameters.rope_theta`), head size `head_dim` (default hidden_size / num_attention_heads); only the default
// rope type is implemented (a `rope_scaling` is refused by name). Llama's projections have biases when
// `attention_bias` (and the MLP's when `mlp_bias`); Qwen2's q/k/v always have biases and o_proj none.
import { Tensor, ops } from '../../torch';
import { Dropout, Embedding, KVCache, Linear, Module, ModuleList, applyRotary, ropeTables, scaledDotProductAttention, type BatchStep, type RopeTables } from '../../nn';
import type { HfConfig } from './config';
import { HfCausalLM, RMSNorm, cacheKinds, checkIds } from './common';
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
  eps: number;
  ropeTheta: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  attentionDropout: number;
}

function ropeTheta(c: HfConfig, fallback: number): number {
  const p = c.raw.rope_parameters as Record<string, unknown> | undefined | null;
  if (p != null) {
    if (typeof p !== 'object') throw new Error(`${c.source}: 'rope_parameters' must be an object`);
    const type = p.rope_type ?? 'default';
    if (type !== 'default') throw new Error(`${c.source}: 'rope_parameters.rope_type' = ${JSON.stringify(type)} is not supported (only the default rotary embedding)`);
    if (p.rope_theta !== undefined) {
      if (typeof p.rope_theta !== 'number' || !(p.rope_theta > 1)) throw new Error(`${c.source}: 'rope_parameters.rope_theta' must be a number > 1`);
      return p.rope_theta;
    }
  }
  return c.num('rope_theta', fallback);
}

export function llamaSettings(c: HfConfig, family: 'llama' | 'qwen2'): LlamaSettings {
  c.refuse('rope_scaling', [null], 'only the default rotary embedding is implemented');
  c.refuse('hidden_act', ['silu'], 'the MLP is SwiGLU with silu');
  c.refuse('pretraining_tp', [1], 'tensor-parallel slicing is not implemented; 1 gives the same model');
  if (family === 'qwen2') c.refuse('use_sliding_window', [false], 'sliding-window attention is not implemented');
  const hiddenSize = c.int('hidden_size', 4096);
  const numHeads = c.int('num_attention_heads', 32);
  const s: LlamaSettings = {
    vocabSize: c.int('vocab_size', 32000),
    hiddenSize,
    intermediateSize: c.int('intermediate_size', 11008),
    numLayers: c.int('num_hidden_layers', 32),
    numHeads,
    numKvHeads: c.int('num_key_value_heads', numHeads),
    headDim: c.has('head_dim') ? c.int('head_dim') : hiddenSize / numHeads,
    maxPositions: c.int('max_position_embeddings', 2048),
    eps: c.num('rms_norm_eps', 1e-6),
    ropeTheta: ropeTheta(c, family === 'qwen2' ? 1e6 : 10000),
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
  forward(x: Tensor, rope: RopeTables, cache: KVCache | BatchStep | null = null, layer = 0): [Tensor, Tensor | null] {
    const [B, T] = x.shape;
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
      mask: step?.mask,
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
  forward(x: Tensor, rope: RopeTables, cache: KVCache | BatchStep | null = null, layer = 0): Tensor {
    const a = x.add(this.self_attn.call(this.input_layernorm.call(x), rope, cache, layer)[0]);
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
  }
  /**
   * ids [B, T] at positions past..past+T-1 (a batched step: [B, 1], each row at its own) -> the last hidden state
   * [B, T, C]; the rotary tables are built once for all layers.
   */
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null): Tensor {
    const { kv, step } = cacheKinds(cache);
    const past = kv === null ? 0 : kv.length;
    let x = this.embed_tokens.call(ids);
    const start = step !== null ? step.positions : past;
    const rope = ropeTables(this.s.headDim, start, ids.shape[1], { base: this.s.ropeTheta, dtype: x.dtype, device: x.device });
    (this.layers.children() as LlamaDecoderLayer[]).forEach((l, i) => {
      x = l.call(x, rope, cache, i);
    });
    if (kv !== null) kv.length = past + ids.shape[1];
    return this.norm.call(x);
  }
}

/** `call(ids [B, T], cache?)` gives logits [B, T, V]. */
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
    return this.settings.maxPositions;
  }
  get numLayers(): number {
    return this.settings.numLayers;
  }
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null): Tensor {
    checkIds(ids, this.settings.maxPositions - (cache instanceof KVCache ? cache.length : 0), this.architecture);
    const h = this.model.call(ids, cache);
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
