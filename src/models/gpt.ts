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
// Generation runs one forward over the prompt, then one token at a time against a key/value cache (`KVCache`), and
// samples on the JavaScript side with a seeded generator (temperature, top-k, top-p), so a seed fixes the output
// whatever libtorch's own generator has drawn.
import { Tensor, arange, cat, keep, noGrad, ops, tensor, tidy, ones } from '../torch';
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, init } from '../nn';
import { Rng } from '../data/rng';

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

/**
 * Keys and values of the positions seen so far, per layer ([B, heads, length, headDim]). It owns its tensors (they
 * are exempt from scopes): call `dispose()` when done.
 */
export class KVCache {
  readonly keys: (Tensor | null)[];
  readonly values: (Tensor | null)[];
  /** Positions cached so far. */
  length = 0;
  constructor(readonly nLayer: number) {
    this.keys = Array(nLayer).fill(null);
    this.values = Array(nLayer).fill(null);
  }
  /** Appends layer `i`'s new keys and values and returns the whole ones (owned by the cache). */
  append(i: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const pk = this.keys[i];
    const pv = this.values[i];
    const nk = keep(pk === null ? ops.contiguous(k) : cat([pk, k], 2));
    const nv = keep(pv === null ? ops.contiguous(v) : cat([pv, v], 2));
    pk?.dispose();
    pv?.dispose();
    this.keys[i] = nk;
    this.values[i] = nv;
    return [nk, nv];
  }
  dispose(): void {
    for (let i = 0; i < this.nLayer; i++) {
      this.keys[i]?.dispose();
      this.values[i]?.dispose();
      this.keys[i] = null;
      this.values[i] = null;
    }
    this.length = 0;
  }
}

/**
 * Rotary position embedding of x [B, H, T, d] whose positions start at `start` (one start for the whole batch, or
 * one per row): the two halves of each head (x1, x2) become (x1·cos − x2·sin, x2·cos + x1·sin) with angles
 * position · base^(−2i/d).
 */
export function applyRope(x: Tensor, start: number | number[], base = 10000): Tensor {
  const d = x.shape[x.ndim - 1];
  const T = x.shape[x.ndim - 2];
  if (d % 2 !== 0) throw new Error(`applyRope: the last dimension must be even, got shape [${x.shape.join(', ')}]`);
  const starts = typeof start === 'number' ? [start] : start;
  if (typeof start !== 'number' && (x.ndim !== 4 || starts.length !== x.shape[0]))
    throw new Error(`applyRope: ${starts.length} row starts for shape [${x.shape.join(', ')}] (one per row of a [B, H, T, d] input)`);
  const half = d / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => Math.pow(base, (-2 * i) / d));
  const ang = new Float64Array(starts.length * T * half);
  let o = 0;
  for (const s0 of starts) for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) ang[o++] = (s0 + t) * inv[i];
  const shape = typeof start === 'number' ? [T, half] : [starts.length, 1, T, half];
  const a = tensor(ang, { shape, dtype: 'float64' }).to({ dtype: x.dtype, device: x.device });
  const cos = ops.cos(a);
  const sin = ops.sin(a);
  const x1 = x.narrow(-1, 0, half);
  const x2 = x.narrow(-1, half, half);
  return cat([x1.mul(cos).sub(x2.mul(sin)), x2.mul(cos).add(x1.mul(sin))], -1);
}

/**
 * Keys and values of several sequences decoded together (batched decoding), per layer [capacity, heads, context,
 * headDim]. Rows 0..size-1 are in use, each with its own length; a row leaves by swapping the last row into its
 * place, so the rows in use stay contiguous and a step runs on views, without copying the cache. Capacity doubles
 * when a row joins a full cache. Owns its tensors: call `dispose()` when done.
 */
export class BatchKVCache {
  keys: (Tensor | null)[];
  values: (Tensor | null)[];
  /** Cached positions of each row in use. */
  lengths: number[] = [];
  capacity = 0;
  constructor(readonly nLayer: number, readonly contextLength: number, readonly initialCapacity = 4) {
    this.keys = Array(nLayer).fill(null);
    this.values = Array(nLayer).fill(null);
  }
  get size(): number {
    return this.lengths.length;
  }
  /** Appends a sequence whose keys and values are in a single-sequence cache (which is left as it is). */
  addRow(c: KVCache): void {
    if (c.nLayer !== this.nLayer || c.keys[0] === null) throw new Error(`BatchKVCache.addRow: the cache must hold ${this.nLayer} filled layers`);
    const n = this.size;
    if (n === this.capacity) this.grow(Math.max(this.initialCapacity, 2 * this.capacity), c.keys[0]!);
    noGrad(() =>
      tidy(() => {
        for (let i = 0; i < this.nLayer; i++) {
          this.keys[i]!.narrow(0, n, 1).narrow(2, 0, c.length).copy_(c.keys[i]!);
          this.values[i]!.narrow(0, n, 1).narrow(2, 0, c.length).copy_(c.values[i]!);
        }
      }),
    );
    this.lengths.push(c.length);
  }
  /** Removes row `r`: the last row moves into its place (callers keep their own row order in step). */
  removeRow(r: number): void {
    const last = this.size - 1;
    if (r < 0 || r > last) throw new Error(`BatchKVCache.removeRow: row ${r} is not in use (size ${this.size})`);
    if (r !== last)
      noGrad(() =>
        tidy(() => {
          const L = this.lengths[last];
          for (const t of [...this.keys, ...this.values]) t!.narrow(0, r, 1).narrow(2, 0, L).copy_(t!.narrow(0, last, 1).narrow(2, 0, L));
        }),
      );
    this.lengths[r] = this.lengths[last];
    this.lengths.pop();
  }
  private grow(capacity: number, like: Tensor): void {
    const [, H, , d] = like.shape;
    const n = this.size;
    for (const arr of [this.keys, this.values])
      for (let i = 0; i < this.nLayer; i++) {
        const t = keep(ops.zeros([capacity, H, this.contextLength, d], { dtype: like.dtype, device: like.device }));
        const old = arr[i];
        if (old !== null) {
          if (n > 0) noGrad(() => tidy(() => void t.narrow(0, 0, n).copy_(old.narrow(0, 0, n))));
          old.dispose();
        }
        arr[i] = t;
      }
    this.capacity = capacity;
  }
  dispose(): void {
    for (const arr of [this.keys, this.values])
      for (let i = 0; i < this.nLayer; i++) {
        arr[i]?.dispose();
        arr[i] = null;
      }
    this.lengths = [];
    this.capacity = 0;
  }
}

/** What the attention layers need for one batched decoding step (built by `GPT.forwardBatchStep`). */
export interface BatchStep {
  cache: BatchKVCache;
  /** Position of each row's new token (= its cached length), as numbers and as an int64 tensor [B]. */
  positions: number[];
  pos: Tensor;
  /** arange(B), int64. */
  rows: Tensor;
  /** Keys attended to: max(positions) + 1. */
  span: number;
  /** [B, 1, 1, span], true where a key lies after the row's new token. */
  mask: Tensor;
}

/** Multi-head causal self-attention with fused q/k/v projection (`c_attn`) and output projection (`c_proj`). */
export class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
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
   * x [B, T, C]; with a cache, x holds the T positions after the `cache.length` cached ones. With a batched step,
   * x is [B, 1, C]: each row's next token, at its own position.
   */
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0): Tensor {
    const [B, T, C] = x.shape;
    if (cache !== null && !(cache instanceof KVCache)) return this.batchStep(x, cache, layer);
    if (x.ndim !== 3 || C !== this.dModel) throw new Error(`CausalSelfAttention: expected input [B, T, ${this.dModel}], got [${x.shape.join(', ')}]`);
    const H = this.nHead;
    const d = this.headDim;
    const [q0, k0, v0] = this.c_attn.call(x).chunk(3, -1);
    const heads = (t: Tensor) => t.view(B, T, H, d).transpose(1, 2); // [B, H, T, d]
    let q = heads(q0);
    let k = heads(k0);
    let v = heads(v0);
    const past = cache === null ? 0 : cache.length;
    if (this.rope !== null) {
      q = applyRope(q, past, this.rope.base);
      k = applyRope(k, past, this.rope.base);
    }
    if (cache !== null) [k, v] = cache.append(layer, k, v);
    const S = past + T;
    let scores = ops.div_Tensor(q, Math.sqrt(d)).matmul(k.transpose(-2, -1)); // [B, H, T, S]
    if (T > 1) {
      // query i (absolute position past + i) sees keys j <= past + i
      const mask = ops.triu(ones([T, S], { dtype: 'bool', device: x.device }), past + 1);
      scores = scores.maskedFill(mask, -Infinity);
    }
    const p = this.attn_dropout.call(scores.softmax(-1));
    const y = p.matmul(v).transpose(1, 2).reshape(B, T, C);
    return this.resid_dropout.call(this.c_proj.call(y));
  }
  private batchStep(x: Tensor, st: BatchStep, layer: number): Tensor {
    const [B, T, C] = x.shape;
    if (x.ndim !== 3 || T !== 1 || C !== this.dModel || B !== st.positions.length)
      throw new Error(`CausalSelfAttention: a batched step expects [${st.positions.length}, 1, ${this.dModel}], got [${x.shape.join(', ')}]`);
    const H = this.nHead;
    const d = this.headDim;
    const [q0, k0, v0] = this.c_attn.call(x).chunk(3, -1);
    const heads = (t: Tensor) => t.view(B, 1, H, d).transpose(1, 2); // [B, H, 1, d]
    let q = heads(q0);
    let k = heads(k0);
    if (this.rope !== null) {
      q = applyRope(q, st.positions, this.rope.base);
      k = applyRope(k, st.positions, this.rope.base);
    }
    const K = st.cache.keys[layer]!;
    const V = st.cache.values[layer]!;
    ops.index_put_(K, [st.rows, null, st.pos], k.squeeze(2));
    ops.index_put_(V, [st.rows, null, st.pos], heads(v0).squeeze(2));
    const Kn = K.narrow(0, 0, B).narrow(2, 0, st.span);
    const Vn = V.narrow(0, 0, B).narrow(2, 0, st.span);
    const scores = ops.div_Tensor(q, Math.sqrt(d)).matmul(Kn.transpose(-2, -1)).maskedFill(st.mask, -Infinity); // [B, H, 1, span]
    const y = scores.softmax(-1).matmul(Vn).transpose(1, 2).reshape(B, 1, C);
    return this.c_proj.call(y);
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
  forward(x: Tensor, cache: KVCache | BatchStep | null = null, layer = 0): Tensor {
    const a = x.add(this.attn.call(this.ln_1.call(x), cache, layer));
    return a.add(this.mlp.call(this.ln_2.call(a)));
  }
}

export interface SampleOptions {
  /** Softmax temperature; 0 picks the most likely token (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens (default: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling; default 1). */
  topP?: number;
}

export interface GenerateOptions extends SampleOptions {
  maxNewTokens: number;
  /** Seeds the sampler (default 0). */
  seed?: number;
  /** Token ids that end generation (the stop token is not returned). */
  stopTokens?: number[];
  /** Use the key/value cache (default true); false recomputes the whole sequence every step. */
  useCache?: boolean;
  /** Also report the top-n log-probabilities at each step (default 0). */
  topLogprobs?: number;
}

export interface GeneratedToken {
  id: number;
  /** log p(id) under the model's distribution (temperature 1, before top-k/top-p filtering). */
  logprob: number;
  top: { id: number; logprob: number }[];
}

export interface GenerateResult {
  tokens: number[];
  steps: GeneratedToken[];
  /** 'stop' when a stop token came, 'length' when maxNewTokens or the context length was reached. */
  finishReason: 'stop' | 'length';
}

/** Samples one id from logits (a JS array) with temperature, top-k and top-p, using `rng`. */
export function sampleFromLogits(logits: ArrayLike<number>, o: SampleOptions, rng: Rng): number {
  const V = logits.length;
  const temperature = o.temperature ?? 1;
  if (!(temperature >= 0)) throw new Error(`sample: temperature must be >= 0, got ${temperature}`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new Error(`sample: topP must be in (0, 1], got ${topP}`);
  const topK = o.topK ?? V;
  if (!Number.isInteger(topK) || topK < 1) throw new Error(`sample: topK must be a positive integer, got ${topK}`);
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0 || topK === 1) return best;
  const kept = topK < V ? topIndices(logits, topK) : Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const mx = logits[best] / temperature;
  let probs = kept.map((i) => Math.exp(logits[i] / temperature - mx));
  let z = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / z);
  if (topP < 1) {
    let acc = 0;
    let n = 0;
    while (n < probs.length && acc < topP) acc += probs[n++];
    probs = probs.slice(0, Math.max(1, n));
    z = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / z);
  }
  let u = rng.random();
  for (let j = 0; j < probs.length; j++) {
    u -= probs[j];
    if (u < 0) return kept[j];
  }
  return kept[probs.length - 1];
}

/**
 * Picks the next token from log-probabilities `lp` (sampling with `o` and `rng`; log-softmax differs from the logits
 * by a constant only). Null when the pick is one of `stops`. With `nTop`, also reports the top-n log-probabilities.
 */
export function chooseToken(lp: Float64Array, o: SampleOptions, rng: Rng, nTop: number, stops: Set<number>): GeneratedToken | null {
  const id = sampleFromLogits(lp, o, rng);
  if (stops.has(id)) return null;
  const top: { id: number; logprob: number }[] = [];
  if (nTop > 0) for (const i of topIndices(lp, nTop)) top.push({ id: i, logprob: lp[i] });
  return { id, logprob: lp[id], top };
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
    x = this.drop.call(x);
    const blocks = this.h.children() as DecoderBlock[];
    blocks.forEach((b, i) => {
      x = b.call(x, cache, i);
    });
    if (cache !== null) cache.length = past + T;
    return ops.linear(this.ln_f.call(x), this.wte.weight, null);
  }

  /**
   * Continues `prompt` (token ids) by up to `maxNewTokens` tokens, one sequence at a time, and returns the tokens
   * with their log-probabilities. Runs in eval mode without gradients; restores the training flag.
   */
  generate(prompt: number[], o: GenerateOptions): GenerateResult {
    const it = this.generateSteps(prompt, o);
    for (;;) {
      const r = it.next();
      if (r.done) return r.value;
    }
  }

  /**
   * `generate` one token at a time: yields each token as it is chosen and returns the result. Callers that serve
   * several requests await between steps (the `serve` command does); returning early (`break`) frees the cache.
   */
  *generateSteps(prompt: number[], o: GenerateOptions): Generator<GeneratedToken, GenerateResult, void> {
    if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new Error(`GPT.generate: maxNewTokens must be a non-negative integer, got ${o.maxNewTokens}`);
    if (prompt.length === 0) throw new Error('GPT.generate: the prompt is empty (give at least one token, e.g. the end-of-text id)');
    const V = this.options.vocabSize;
    for (const t of prompt) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`GPT.generate: prompt token ${t} is outside the vocabulary [0, ${V})`);
    if (prompt.length > this.options.contextLength)
      throw new Error(`GPT.generate: the prompt has ${prompt.length} tokens, more than the context length ${this.options.contextLength}`);
    const rng = new Rng(o.seed ?? 0);
    const useCache = o.useCache ?? true;
    const nTop = o.topLogprobs ?? 0;
    const stops = new Set(o.stopTokens ?? []);
    const cache = useCache ? this.newCache() : null;
    const seq = prompt.slice();
    const steps: GeneratedToken[] = [];
    let finishReason: 'stop' | 'length' = 'length';
    try {
      let feed = seq.slice();
      for (let step = 0; step < o.maxNewTokens && seq.length <= this.options.contextLength; step++) {
        const lp = this.nextLogprobs(useCache ? feed : seq, cache);
        const t = chooseToken(lp, o, rng, nTop, stops);
        if (t === null) {
          finishReason = 'stop';
          break;
        }
        steps.push(t);
        seq.push(t.id);
        feed = [t.id];
        yield t;
      }
    } finally {
      cache?.dispose();
    }
    return { tokens: steps.map((s) => s.id), steps, finishReason };
  }

  /** An empty cache for batched decoding (`nextLogprobsBatch`). */
  newBatchCache(initialCapacity = 4): BatchKVCache {
    return new BatchKVCache(this.options.nLayer, this.options.contextLength, initialCapacity);
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
    const wasTraining = this.training;
    if (wasTraining) this.eval();
    try {
      const out = tidy(() =>
        noGrad(() => {
          const device = this.wte.weight.device;
          const on = (t: Tensor) => (device === 'cpu' ? t : t.to({ device }));
          const positions = cache.lengths.slice();
          const span = Math.max(...positions) + 1;
          const pos = on(tensor(positions, { dtype: 'int64' }));
          const rows = arange(0, B, 1, { dtype: 'int64', device });
          const mask = ops.gt_Tensor(arange(0, span, 1, { dtype: 'int64', device }).view(1, span), pos.view(B, 1)).view(B, 1, 1, span);
          const step: BatchStep = { cache, positions, pos, rows, span, mask };
          let x = this.wte.call(on(tensor(ids, { dtype: 'int64' })).view(B, 1));
          if (this.wpe !== null) x = x.add(this.wpe.call(pos.view(B, 1)));
          const blocks = this.h.children() as DecoderBlock[];
          blocks.forEach((b, i) => {
            x = b.call(x, step, i);
          });
          const logits = ops.linear(this.ln_f.call(x), this.wte.weight, null).select(1, 0);
          return ops.log_softmax_int(logits, -1, 'float64');
        }),
      );
      const data = out.data() as Float64Array;
      out.dispose();
      for (let b = 0; b < B; b++) cache.lengths[b]++;
      return data;
    } finally {
      if (wasTraining) this.train(true);
    }
  }

  /** Log-probabilities of the next token after `ids` (extending `cache` when given), in eval mode, as float64. */
  nextLogprobs(ids: number[], cache: KVCache | null = null): Float64Array {
    const wasTraining = this.training;
    if (wasTraining) this.eval();
    try {
      const row = tidy(() =>
        noGrad(() => {
          const dev = this.wte.weight.device;
          const x = tensor([ids], { dtype: 'int64' });
          const logits = this.forward(dev === 'cpu' ? x : x.to({ device: dev }), cache);
          return ops.log_softmax_int(logits.select(1, -1).select(0, 0), -1, 'float64');
        }),
      );
      const out = row.data() as Float64Array;
      row.dispose();
      return out;
    } finally {
      if (wasTraining) this.train(true);
    }
  }
  override extraRepr(): string {
    const o = this.options;
    return `vocab=${o.vocabSize}, context=${o.contextLength}, d_model=${o.dModel}, n_layer=${o.nLayer}, n_head=${o.nHead}${o.positional === 'rope' ? ', rope' : ''}`;
  }
}

/** Indices of the n largest values, largest first (ties: lower index first). */
export function topIndices(v: ArrayLike<number>, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (out.length === n && v[i] <= v[out[n - 1]]) continue;
    let j = out.length < n ? out.length : n - 1;
    if (out.length < n) out.push(i);
    while (j > 0 && v[out[j - 1]] < v[i]) {
      out[j] = out[j - 1];
      j--;
    }
    out[j] = i;
  }
  return out;
}

/** A decoder from options (the factory used by checkpoints and the `serve` / `sft` commands). */
export function createDecoder(opts: DecoderOptions): GPT {
  return new GPT(opts);
}
