// Key/value caches for incremental decoding (candle-nn's kv_cache.rs): the keys and values an attention layer has
// computed for the positions seen so far, so that a decoding step computes those of its new positions only. Tensors
// are [batch, heads, length, headDim] per layer; the caches know nothing of the model that fills them.
//
// - `KVCache`: one sequence (or a batch of sequences of equal length), grown by concatenation.
// - `BatchKVCache`: several sequences at different lengths decoded together (batched decoding), preallocated rows
//   with a length each, capacity growth, row replacement; a step writes each row's new position in place.
//
// Both own their tensors (exempt from scopes): call `dispose()` when done.
import { Tensor, arange, cat, keep, noGrad, ops, tensor, tidy, zeros } from '../torch';

/** Keys and values of the positions seen so far, per layer ([B, heads, length, headDim]). */
export class KVCache {
  readonly keys: (Tensor | null)[];
  readonly values: (Tensor | null)[];
  /** Positions cached so far; the caller advances it once every layer has appended its keys and values. */
  length = 0;
  constructor(readonly nLayer: number) {
    if (!Number.isInteger(nLayer) || nLayer <= 0) throw new Error(`KVCache: nLayer must be a positive integer, got ${nLayer}`);
    this.keys = Array(nLayer).fill(null);
    this.values = Array(nLayer).fill(null);
  }
  /** Appends layer `i`'s new keys and values (along the length) and returns the whole ones (owned by the cache). */
  append(i: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const pk = this.keys[i];
    const pv = this.values[i];
    const nk = keep(pk === null ? k.contiguous() : cat([pk, k], 2));
    const nv = keep(pv === null ? v.contiguous() : cat([pv, v], 2));
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

/** One batched decoding step, in which row b takes one new position at `cache.lengths[b]` (`BatchKVCache.beginStep`). */
export interface BatchStep {
  cache: BatchKVCache;
  /** Position of each row's new token (= its cached length), as numbers and as an int64 tensor [B]. */
  positions: number[];
  pos: Tensor;
  /** arange(B), int64. */
  rows: Tensor;
  /** Keys attended to: max(positions) + 1. */
  span: number;
  /** [B, 1, 1, span] bool, true where a key lies after the row's new position (not attended to). */
  mask: Tensor;
}

/**
 * Keys and values of several sequences decoded together, per layer [capacity, heads, maxLength, headDim]. Rows
 * 0..size-1 are in use, each with its own length; a row leaves by swapping the last row into its place, so the rows
 * in use stay contiguous and a step runs on views, without copying the cache. Capacity doubles when a row joins a
 * full cache.
 */
export class BatchKVCache {
  keys: (Tensor | null)[];
  values: (Tensor | null)[];
  /** Cached positions of each row in use. */
  lengths: number[] = [];
  capacity = 0;
  constructor(readonly nLayer: number, readonly maxLength: number, readonly initialCapacity = 4) {
    if (!Number.isInteger(nLayer) || nLayer <= 0) throw new Error(`BatchKVCache: nLayer must be a positive integer, got ${nLayer}`);
    if (!Number.isInteger(maxLength) || maxLength <= 0) throw new Error(`BatchKVCache: maxLength must be a positive integer, got ${maxLength}`);
    if (!Number.isInteger(initialCapacity) || initialCapacity <= 0)
      throw new Error(`BatchKVCache: initialCapacity must be a positive integer, got ${initialCapacity}`);
    this.keys = Array(nLayer).fill(null);
    this.values = Array(nLayer).fill(null);
  }
  get size(): number {
    return this.lengths.length;
  }
  /** Appends a sequence whose keys and values are in a single-sequence cache (which is left as it is). */
  addRow(c: KVCache): void {
    if (c.nLayer !== this.nLayer || c.keys[0] === null) throw new Error(`BatchKVCache.addRow: the cache must hold ${this.nLayer} filled layers`);
    if (c.length > this.maxLength) throw new Error(`BatchKVCache.addRow: the cache holds ${c.length} positions, more than maxLength ${this.maxLength}`);
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
    if (!Number.isInteger(r) || r < 0 || r > last) throw new Error(`BatchKVCache.removeRow: row ${r} is not in use (size ${this.size})`);
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
  /**
   * The next step's positions, index tensors and key mask, on `device` (tensors in the current scope). Every row
   * must have room for one more position.
   */
  beginStep(device = 'cpu'): BatchStep {
    const B = this.size;
    if (B === 0) throw new Error('BatchKVCache.beginStep: no row in use');
    this.lengths.forEach((L, b) => {
      if (L >= this.maxLength) throw new Error(`BatchKVCache.beginStep: row ${b} already holds ${L} positions, maxLength is ${this.maxLength}`);
    });
    const positions = this.lengths.slice();
    const span = Math.max(...positions) + 1;
    const p = tensor(positions, { dtype: 'int64' });
    const pos = device === 'cpu' ? p : p.to({ device });
    const rows = arange(0, B, 1, { dtype: 'int64', device });
    const mask = arange(0, span, 1, { dtype: 'int64', device }).view(1, span).gt(pos.view(B, 1)).view(B, 1, 1, span);
    return { cache: this, positions, pos, rows, span, mask };
  }
  /**
   * Writes layer `i`'s keys and values of the step's new positions (k, v: [B, heads, 1, headDim]) at each row's
   * position and returns the keys and values the step attends to: [B, heads, span, headDim] views of the cache
   * (positions past a row's own are masked by `step.mask`).
   */
  appendStep(step: BatchStep, i: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const K = this.keys[i]!;
    const V = this.values[i]!;
    const B = step.positions.length;
    ops.index_put_(K, [step.rows, null, step.pos], k.squeeze(2));
    ops.index_put_(V, [step.rows, null, step.pos], v.squeeze(2));
    return [K.narrow(0, 0, B).narrow(2, 0, step.span), V.narrow(0, 0, B).narrow(2, 0, step.span)];
  }
  /** Counts the step's new position in every row (after every layer has called `appendStep`). */
  endStep(): void {
    for (let b = 0; b < this.lengths.length; b++) this.lengths[b]++;
  }
  private grow(capacity: number, like: Tensor): void {
    const [, H, , d] = like.shape;
    const n = this.size;
    for (const arr of [this.keys, this.values])
      for (let i = 0; i < this.nLayer; i++) {
        const t = keep(zeros([capacity, H, this.maxLength, d], { dtype: like.dtype, device: like.device }));
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
