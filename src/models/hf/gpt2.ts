// GPT-2 with transformers' parameter names and math (modeling_gpt2.py):
//
//   transformer.wte [V, C]   transformer.wpe [n_positions, C]   transformer.ln_f
//   transformer.h.{i}.ln_1   .attn.c_attn (Conv1D [C, 3C])   .attn.c_proj (Conv1D [C, C])
//   transformer.h.{i}.ln_2   .mlp.c_fc (Conv1D [C, n_inner])   .mlp.c_proj (Conv1D [n_inner, C])
//   lm_head: tied to wte (not stored)
//
// Conv1D weights are [in, out], the transpose of nn.Linear's; they are kept as stored (y = x · W + b), so the state
// dict moves to and from transformers unchanged. The activation is `activation_function` (gelu_new by default, the
// tanh approximation). Old checkpoints' `attn.bias` / `attn.masked_bias` (causal-mask buffers) are ignored.
// This is a different model from the project's own `GPT` (src/models/gpt.ts, nn.Linear layout). A padding mask
// (`attentionMask`, left padding) gives every row its own positions (cumsum − 1) and hides the padded keys.
import { Tensor, arange, ops, tensor } from '../../torch';
import { Dropout, Embedding, KVCache, LayerNorm, Module, ModuleList, scaledDotProductAttention, type BatchStep } from '../../nn';
import type { HfConfig } from './config';
import { Conv1D, HfCausalLM, cacheKinds, checkIds, decoderPadding, type DecoderCallOptions } from './common';
import { activation, dropoutOf } from './bert';

export interface Gpt2Settings {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nInner: number;
  eps: number;
  act: 'gelu' | 'gelu_new' | 'relu';
  residDrop: number;
  embdDrop: number;
  attnDrop: number;
}

export function gpt2Settings(c: HfConfig): Gpt2Settings {
  c.refuse('scale_attn_weights', [true], 'unscaled attention is not implemented');
  c.refuse('scale_attn_by_inverse_layer_idx', [false], 'not implemented');
  c.refuse('reorder_and_upcast_attn', [false], 'not implemented');
  c.refuse('add_cross_attention', [false], 'cross-attention is not implemented');
  const nEmbd = c.int('n_embd', 768);
  const act = c.str('activation_function', 'gelu_new', ['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu']);
  const s: Gpt2Settings = {
    vocabSize: c.int('vocab_size', 50257),
    nPositions: c.int('n_positions', 1024),
    nEmbd,
    nLayer: c.int('n_layer', 12),
    nHead: c.int('n_head', 12),
    nInner: c.has('n_inner') ? c.int('n_inner') : 4 * nEmbd,
    eps: c.num('layer_norm_epsilon', 1e-5),
    act: act === 'gelu_pytorch_tanh' ? 'gelu_new' : (act as Gpt2Settings['act']),
    residDrop: dropoutOf(c, 'resid_pdrop', 0.1),
    embdDrop: dropoutOf(c, 'embd_pdrop', 0.1),
    attnDrop: dropoutOf(c, 'attn_pdrop', 0.1),
  };
  if (s.nEmbd % s.nHead !== 0) throw new Error(`${c.source}: n_embd ${s.nEmbd} is not a multiple of n_head ${s.nHead}`);
  return s;
}

export class GPT2Attention extends Module {
  readonly c_attn: Conv1D;
  readonly c_proj: Conv1D;
  readonly attn_dropout: Dropout;
  readonly resid_dropout: Dropout;
  constructor(readonly s: Gpt2Settings) {
    super();
    this.c_attn = this.registerModule('c_attn', new Conv1D(s.nEmbd, 3 * s.nEmbd));
    this.c_proj = this.registerModule('c_proj', new Conv1D(s.nEmbd, s.nEmbd));
    this.attn_dropout = this.registerModule('attn_dropout', new Dropout(s.attnDrop));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(s.residDrop));
  }
  /**
   * x [B, T, C]; with a cache, x holds the positions after the cached ones, whose keys and values join it as layer
   * `layer`; with a batched step, x is [B, 1, C], each row at its own position.
   */
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0, keyMask: Tensor | null = null): [Tensor, Tensor | null] {
    const [B, T, C] = x.shape;
    const H = this.s.nHead;
    const heads = (t: Tensor) => t.view(B, T, H, C / H).transpose(1, 2);
    const [q0, k0, v0] = this.c_attn.call(x).split(C, 2);
    let k = heads(k0);
    let v = heads(v0);
    const { kv, step } = cacheKinds(cache);
    if (step !== null) [k, v] = step.cache.appendStep(step, layer, k, v);
    else if (kv !== null) [k, v] = kv.append(layer, k, v);
    const [y, probs] = scaledDotProductAttention(heads(q0), k, v, {
      causal: step === null,
      mask: [step?.mask ?? null, keyMask],
      dropout: this.training ? this.attn_dropout.p : 0,
      needWeights: this.hasForwardHooks(),
    });
    return [this.resid_dropout.call(this.c_proj.call(y.transpose(1, 2).reshape(B, T, C))), probs];
  }
}

export class GPT2MLP extends Module {
  readonly c_fc: Conv1D;
  readonly c_proj: Conv1D;
  readonly dropout: Dropout;
  constructor(readonly s: Gpt2Settings) {
    super();
    this.c_fc = this.registerModule('c_fc', new Conv1D(s.nEmbd, s.nInner));
    this.c_proj = this.registerModule('c_proj', new Conv1D(s.nInner, s.nEmbd));
    this.dropout = this.registerModule('dropout', new Dropout(s.residDrop));
  }
  forward(x: Tensor): Tensor {
    return this.dropout.call(this.c_proj.call(activation(this.c_fc.call(x), this.s.act)));
  }
}

export class GPT2Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: GPT2Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: GPT2MLP;
  constructor(s: Gpt2Settings) {
    super();
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(s.nEmbd, { eps: s.eps }));
    this.attn = this.registerModule('attn', new GPT2Attention(s));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(s.nEmbd, { eps: s.eps }));
    this.mlp = this.registerModule('mlp', new GPT2MLP(s));
  }
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0, keyMask: Tensor | null = null): Tensor {
    const a = x.add(this.attn.call(this.ln_1.call(x), cache, layer, keyMask)[0]);
    return a.add(this.mlp.call(this.ln_2.call(a)));
  }
}

export class GPT2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<GPT2Block>;
  readonly ln_f: LayerNorm;
  constructor(readonly s: Gpt2Settings) {
    super();
    this.wte = this.registerModule('wte', new Embedding(s.vocabSize, s.nEmbd));
    this.wpe = this.registerModule('wpe', new Embedding(s.nPositions, s.nEmbd));
    this.drop = this.registerModule('drop', new Dropout(s.embdDrop));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: s.nLayer }, () => new GPT2Block(s))));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(s.nEmbd, { eps: s.eps }));
  }
  /**
   * ids [B, T] at positions past..past+T-1 (a batched step: [B, 1], each row at its own; with `attentionMask`, each
   * row's own, see DecoderCallOptions) -> the last hidden state [B, T, C].
   */
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null, o: DecoderCallOptions = {}): Tensor {
    const { kv, step } = cacheKinds(cache);
    const past = kv === null ? 0 : kv.length;
    const [B, T] = ids.shape;
    let pos: Tensor;
    let keyMask: Tensor | null = null;
    if (o.attentionMask != null) {
      if (step !== null) throw new Error('GPT2Model: attentionMask is not taken with a batched step (its rows are at their own positions already)');
      const pad = decoderPadding(o.attentionMask, B, past, T, 'GPT2Model', ids.device);
      pos = tensor(pad.positions, { dtype: 'int64' }).to({ device: ids.device });
      keyMask = pad.keyMask;
    } else pos = step !== null ? step.pos.view(B, 1) : arange(past, past + T, 1, { dtype: 'int64', device: ids.device }).view(1, T);
    let x = this.wte.call(ids).add(this.wpe.call(pos));
    x = this.drop.call(x);
    (this.h.children() as GPT2Block[]).forEach((b, i) => {
      x = b.call(x, cache, i, keyMask);
    });
    if (kv !== null) kv.length = past + T;
    return this.ln_f.call(x);
  }
}

/** `call(ids [B, T], cache?, { attentionMask }?)` gives logits [B, T, V]; the head is the token embedding (tied). */
export class GPT2LMHeadModel extends HfCausalLM {
  readonly architecture = 'GPT2LMHeadModel';
  readonly basePrefix = 'transformer';
  readonly modelType = 'gpt2';
  readonly settings: Gpt2Settings;
  readonly transformer: GPT2Model;
  constructor(config: HfConfig) {
    super(config);
    this.settings = gpt2Settings(config);
    this.transformer = this.registerModule('transformer', new GPT2Model(this.settings));
    this.ignoredKeys.push(/^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/, /^lm_head\.weight$/);
  }
  get vocabSize(): number {
    return this.settings.vocabSize;
  }
  get contextLength(): number {
    return this.settings.nPositions;
  }
  get numLayers(): number {
    return this.settings.nLayer;
  }
  forward(ids: Tensor, cache: KVCache | BatchStep | null = null, o: DecoderCallOptions = {}): Tensor {
    checkIds(ids, this.settings.nPositions - (cache instanceof KVCache ? cache.length : 0), 'GPT2LMHeadModel');
    return ops.linear(this.transformer.call(ids, cache, o), this.transformer.wte.weight, null);
  }
}
