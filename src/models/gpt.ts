// A GPT-style decoder: token + learned position embeddings, pre-LN blocks (causal self-attention, GELU MLP), a final
// LayerNorm and an output head tied to the token embedding. Module names follow GPT-2 / nanoGPT:
//
//   wte.weight [V, C]   wpe.weight [T, C]   h.{i}.ln_1   h.{i}.attn.c_attn [3C, C]   h.{i}.attn.c_proj [C, C]
//   h.{i}.ln_2   h.{i}.mlp.c_fc [4C, C]   h.{i}.mlp.c_proj [C, 4C]   ln_f
//
// With `positional: 'rope'` there is no `wpe`: queries and keys are rotated by their absolute position (rotary
// embeddings, GPT-NeoX's half-split layout, base `ropeBase`), so attention scores depend on relative positions only.
//
// Linear weights are [out, in] (torch.nn.Linear, as in nanoGPT); Hugging Face's GPT-2 stores these four as Conv1D
// [in, out], so its checkpoints need those weights transposed. The head has no parameter of its own: logits are
// `x · wteᵀ`, so the state_dict has no `lm_head.weight`.
//
// The nn pieces come from src/nn: the attention math is `scaledDotProductAttention`, the caches `KVCache` (one
// sequence) and `BatchKVCache` (batched decoding, rows at their own lengths), the rotary tables `ropeTables`. The
// model has the forward and the decoding steps (`nextLogprobs`, `nextLogprobsBatch`); sampling and the generation
// loop live with the serving code (src/llm/decode.ts: `generateTokens(model, prompt, options)`).
import { Tensor, arange, noGrad, ops, tensor, tidy } from '../torch';
import {
  BatchKVCache, Dropout, Embedding, KVCache, LayerNorm, Linear, Module, ModuleList, applyRotary, init, ropeTables, scaledDotProductAttention,
  type BatchStep, type RopeTables,
} from '../nn';
import { readLogprobs } from './logprobs';

// moved to src/nn, importable from here as before
export { KVCache, BatchKVCache, applyRope, type BatchStep } from '../nn';

export interface DecoderOptions {
  vocabSize: number;
  /** The longest sequence (prompt + generated tokens) the position embedding covers. */
  contextLength: number;
  /** Width of the residual stream (C). */
  dModel: number;
  nLayer: number;
  nHead: number;
  /** MLP hidden width = mlpRatio · dModel (default 4). */
  mlpRatio?: number;
  /** Dropout on embeddings, attention probabilities and residual branches in training (default 0). */
  dropout?: number;
  /** LayerNorm epsilon (default 1e-5). */
  layerNormEps?: number;
  /** 'learned' (a position embedding `wpe`, default) or 'rope' (rotary embeddings of queries and keys). */
  positional?: 'learned' | 'rope';
  /** Rotary base (default 10000). */
  ropeBase?: number;
}

const DECODER_KEYS = ['vocabSize', 'contextLength', 'dModel', 'nLayer', 'nHead', 'mlpRatio', 'dropout', 'layerNormEps', 'positional', 'ropeBase'];

/** Checks decoder options, naming the key at fault; returns them with defaults filled in. */
export function checkDecoderOptions(o: DecoderOptions, where = 'createDecoder'): Required<DecoderOptions> {
  if (o === null || typeof o !== 'object') throw new Error(`${where}: options must be an object`);
  for (const k of Object.keys(o))
    if (!DECODER_KEYS.includes(k)) throw new Error(`${where}: unknown option '${k}' (known: ${DECODER_KEYS.join(', ')})`);
  const full: Required<DecoderOptions> = { mlpRatio: 4, dropout: 0, layerNormEps: 1e-5, positional: 'learned', ropeBase: 10000, ...o };
  for (const k of ['vocabSize', 'contextLength', 'dModel', 'nLayer', 'nHead'] as const)
    if (!Number.isInteger(full[k]) || full[k] <= 0) throw new Error(`${where}: ${k} must be a positive integer, got ${full[k]}`);
  if (full.dModel % full.nHead !== 0) throw new Error(`${where}: dModel (${full.dModel}) must be divisible by nHead (${full.nHead})`);
  if (!(full.mlpRatio > 0) || !Number.isInteger(full.mlpRatio * full.dModel)) throw new Error(`${where}: mlpRatio · dModel must be a positive integer, got ${full.mlpRatio} · ${full.dModel}`);
  if (!(full.dropout >= 0 && full.dropout < 1)) throw new Error(`${where}: dropout must be in [0, 1), got ${full.dropout}`);
  if (full.positional !== 'learned' && full.positional !== 'rope') throw new Error(`${where}: positional must be 'learned' or 'rope', got ${JSON.stringify(full.positional)}`);
  if (full.positional === 'rope' && (full.dModel / full.nHead) % 2 !== 0) throw new Error(`${where}: rope needs an even head size, got dModel / nHead = ${full.dModel / full.nHead}`);
  if (!(full.ropeBase > 1)) throw new Error(`${where}: ropeBase must be > 1, got ${full.ropeBase}`);
  if (!(full.layerNormEps > 0)) throw new Error(`${where}: layerNormEps must be positive, got ${full.layerNormEps}`);
  return full;
}

/** Multi-head causal self-attention with fused q/k/v projection (`c_attn`) and output projection (`c_proj`). */
export class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  /** Its `p` is the dropout on the attention probabilities, applied by `scaledDotProductAttention` in training. */
  readonly attn_dropout: Dropout;
  readonly resid_dropout: Dropout;
  readonly headDim: number;
  constructor(readonly dModel: number, readonly nHead: number, dropout = 0, readonly rope: { base: number } | null = null) {
    super();
    this.headDim = dModel / nHead;
    this.c_attn = this.registerModule('c_attn', new Linear(dModel, 3 * dModel));
    this.c_proj = this.registerModule('c_proj', new Linear(dModel, dModel));
    this.attn_dropout = this.registerModule('attn_dropout', new Dropout(dropout));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(dropout));
  }
  /**
   * x [B, T, C]; with a cache, x holds the T positions after the `cache.length` cached ones, and their keys and
   * values join the cache as layer `layer`. With a batched step, x is [B, 1, C]: each row's next token, at its own
   * position. `rope`: the rotary tables of x's positions (built here when not given, with rotary embeddings).
   */
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0, rope: RopeTables | null = null): Tensor {
    const [B, T, C] = x.shape;
    const kv = cache instanceof KVCache ? cache : null;
    const step = cache !== null && kv === null ? (cache as BatchStep) : null;
    if (step !== null) {
      if (x.ndim !== 3 || T !== 1 || C !== this.dModel || B !== step.positions.length)
        throw new Error(`CausalSelfAttention: a batched step expects [${step.positions.length}, 1, ${this.dModel}], got [${x.shape.join(', ')}]`);
    } else if (x.ndim !== 3 || C !== this.dModel) throw new Error(`CausalSelfAttention: expected input [B, T, ${this.dModel}], got [${x.shape.join(', ')}]`);
    const H = this.nHead;
    const d = this.headDim;
    const [q0, k0, v0] = this.c_attn.call(x).chunk(3, -1);
    const heads = (t: Tensor) => t.view(B, T, H, d).transpose(1, 2); // [B, H, T, d]
    let q = heads(q0);
    let k = heads(k0);
    let v = heads(v0);
    if (this.rope !== null) {
      const start = step !== null ? step.positions : kv === null ? 0 : kv.length;
      const tables = rope ?? ropeTables(d, start, T, { base: this.rope.base, dtype: x.dtype, device: x.device });
      q = applyRotary(q, tables);
      k = applyRotary(k, tables);
    }
    // a batched step attends to each row's keys up to its own position (step.mask); otherwise causal, the T new
    // positions being the last of the keys
    if (step !== null) [k, v] = step.cache.appendStep(step, layer, k, v);
    else if (kv !== null) [k, v] = kv.append(layer, k, v);
    const [y] = scaledDotProductAttention(q, k, v, {
      causal: step === null,
      mask: step?.mask,
      dropout: this.training ? this.attn_dropout.p : 0,
    });
    return this.resid_dropout.call(this.c_proj.call(y.transpose(1, 2).reshape(B, T, C)));
  }
  override extraRepr(): string {
    return `d_model=${this.dModel}, n_head=${this.nHead}`;
  }
}

export class DecoderMLP extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  readonly dropout: Dropout;
  constructor(dModel: number, hidden: number, dropout = 0) {
    super();
    this.c_fc = this.registerModule('c_fc', new Linear(dModel, hidden));
    this.c_proj = this.registerModule('c_proj', new Linear(hidden, dModel));
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
  }
  forward(x: Tensor): Tensor {
    return this.dropout.call(this.c_proj.call(this.c_fc.call(x).gelu('tanh')));
  }
}

/** x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
export class DecoderBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: DecoderMLP;
  constructor(o: Required<DecoderOptions>) {
    super();
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(o.dModel, { eps: o.layerNormEps }));
    this.attn = this.registerModule('attn', new CausalSelfAttention(o.dModel, o.nHead, o.dropout, o.positional === 'rope' ? { base: o.ropeBase } : null));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(o.dModel, { eps: o.layerNormEps }));
    this.mlp = this.registerModule('mlp', new DecoderMLP(o.dModel, o.mlpRatio * o.dModel, o.dropout));
  }
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0, rope: RopeTables | null = null): Tensor {
    const a = x.add(this.attn.call(this.ln_1.call(x), cache, layer, rope));
    return a.add(this.mlp.call(this.ln_2.call(a)));
  }
}

/** The GPT-style decoder. `call(ids [B, T] int64)` returns logits [B, T, vocabSize]. */
export class GPT extends Module {
  readonly options: Required<DecoderOptions>;
  readonly wte: Embedding;
  /** The learned position embedding; null with rotary embeddings. */
  readonly wpe: Embedding | null;
  readonly drop: Dropout;
  readonly h: ModuleList;
  readonly ln_f: LayerNorm;
  constructor(opts: DecoderOptions) {
    super();
    const o = checkDecoderOptions(opts, 'GPT');
    this.options = o;
    this.wte = this.registerModule('wte', new Embedding(o.vocabSize, o.dModel));
    this.wpe = o.positional === 'learned' ? this.registerModule('wpe', new Embedding(o.contextLength, o.dModel)) : null;
    this.drop = this.registerModule('drop', new Dropout(o.dropout));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: o.nLayer }, () => new DecoderBlock(o))));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(o.dModel, { eps: o.layerNormEps }));
    // GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2·nLayer)
    for (const [name, p] of this.namedParameters()) {
      if (name.endsWith('.bias')) init.zeros_(p);
      else if (p.ndim === 2) init.normal_(p, 0, name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * o.nLayer) : 0.02);
    }
  }
  get vocabSize(): number {
    return this.options.vocabSize;
  }
  get contextLength(): number {
    return this.options.contextLength;
  }
  /** A fresh, empty key/value cache for this model. */
  newCache(): KVCache {
    return new KVCache(this.options.nLayer);
  }
  /** An empty cache for batched decoding (`nextLogprobsBatch`). */
  newBatchCache(initialCapacity = 4): BatchKVCache {
    return new BatchKVCache(this.options.nLayer, this.options.contextLength, initialCapacity);
  }
  /**
   * ids [B, T] (int64) -> logits [B, T, V]. With a cache, `ids` are the positions after the cached ones and the
   * cache is extended by them.
   */
  forward(ids: Tensor, cache: KVCache | null = null): Tensor {
    if (ids.ndim !== 2) throw new Error(`GPT: expected token ids [batch, time], got shape [${ids.shape.join(', ')}]`);
    const T = ids.shape[1];
    const past = cache === null ? 0 : cache.length;
    if (past + T > this.options.contextLength)
      throw new Error(`GPT: ${past} cached + ${T} new positions exceed the context length ${this.options.contextLength}`);
    let x = this.wte.call(ids);
    if (this.wpe !== null) x = x.add(this.wpe.call(arange(past, past + T, 1, { dtype: 'int64', device: ids.device })));
    const logits = this.decode(x, cache, past);
    if (cache !== null) cache.length = past + T;
    return logits;
  }
  /**
   * Embedded tokens x [B, T, C] at positions `start` (one for all rows, or one per row) through the blocks, the
   * final LayerNorm and the tied head: logits [B, T, V]. The rotary tables are built once for all layers.
   */
  private decode(x: Tensor, cache: KVCache | BatchStep | null, start: number | number[]): Tensor {
    const o = this.options;
    const rope = o.positional === 'rope' ? ropeTables(o.dModel / o.nHead, start, x.shape[1], { base: o.ropeBase, dtype: x.dtype, device: x.device }) : null;
    x = this.drop.call(x);
    const blocks = this.h.children() as DecoderBlock[];
    blocks.forEach((b, i) => {
      x = b.call(x, cache, i, rope);
    });
    return ops.linear(this.ln_f.call(x), this.wte.weight, null);
  }

  /**
   * One batched decoding step: row b of `cache` takes token `ids[b]` at its own position (`cache.lengths[b]`), and
   * the cache grows by it. Returns the next-token log-probabilities of every row, [B · V] row-major float64, in eval
   * mode without gradients. Rows may be at different lengths; each attends to its own keys only.
   */
  nextLogprobsBatch(ids: number[], cache: BatchKVCache): Float64Array {
    const B = ids.length;
    if (B === 0 || B !== cache.size) throw new Error(`GPT.nextLogprobsBatch: ${B} ids for a cache of ${cache.size} rows`);
    const ctx = this.options.contextLength;
    cache.lengths.forEach((L, b) => {
      if (L >= ctx) throw new Error(`GPT.nextLogprobsBatch: row ${b} already holds ${L} positions, the context length is ${ctx}`);
    });
    const lp = readLogprobs(this, () => {
      const device = this.wte.weight.device;
      const step = cache.beginStep(device);
      const t = tensor(ids, { dtype: 'int64' });
      let x = this.wte.call((device === 'cpu' ? t : t.to({ device })).view(B, 1));
      if (this.wpe !== null) x = x.add(this.wpe.call(step.pos.view(B, 1)));
      return this.decode(x, step, step.positions).select(1, 0);
    });
    cache.endStep();
    return lp;
  }

  /** Log-probabilities of the next token after `ids` (extending `cache` when given), in eval mode, as float64. */
  nextLogprobs(ids: number[], cache: KVCache | null = null): Float64Array {
    return readLogprobs(this, () => {
      const dev = this.wte.weight.device;
      const x = tensor([ids], { dtype: 'int64' });
      return this.forward(dev === 'cpu' ? x : x.to({ device: dev }), cache).select(1, -1).select(0, 0);
    });
  }


  override extraRepr(): string {
    const o = this.options;
    return `vocab=${o.vocabSize}, context=${o.contextLength}, d_model=${o.dModel}, n_layer=${o.nLayer}, n_head=${o.nHead}${o.positional === 'rope' ? ', rope' : ''}`;
  }
}

/** A decoder from options (the factory used by checkpoints and the `serve` / `sft` commands). */
export function createDecoder(opts: DecoderOptions): GPT {
  return new GPT(opts);
}
