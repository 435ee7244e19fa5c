// Rotary position embeddings (RoPE; candle-nn's rotary_emb.rs), GPT-NeoX's half-split layout: the two halves
// (x1, x2) of each head's features become (x1·cos θ − x2·sin θ, x2·cos θ + x1·sin θ) with θ = position · base^(−2i/d),
// i < d/2, so that the dot product of a rotated query and key depends on their relative position only.
//
// `ropeTables` builds cos θ and sin θ for a run of positions (one start for the whole batch, or one per row for
// batched decoding, where every row is at its own position); `applyRotary` rotates queries or keys [B, H, T, d] by
// them. Build the tables once per forward and apply them to the queries and keys of every layer; `applyRope` does
// both in one call.
import { Tensor, cat, ops, tensor } from '../torch';
import type { DType, DeviceLike } from '../torch';

/** cos θ and sin θ: [T, d/2] (one start) or [B, 1, T, d/2] (one start per row). */
export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
}

export interface RopeTableOptions {
  /** Default 10000. */
  base?: number;
  /** Of the tensors rotated (default float32): the angles are computed in float64, then converted. */
  dtype?: DType;
  device?: DeviceLike;
}

/** base^(−2i/d) for i < d/2: the angle per position of each feature pair. */
export function ropeInverseFrequencies(headDim: number, base = 10000): Float64Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) throw new Error(`rope: the head size must be a positive even integer, got ${headDim}`);
  if (!(base > 1)) throw new Error(`rope: base must be > 1, got ${base}`);
  return Float64Array.from({ length: headDim / 2 }, (_, i) => Math.pow(base, (-2 * i) / headDim));
}

/**
 * cos θ and sin θ of positions start .. start + length − 1, for a head size `headDim`. `start` is one number (tables
 * [length, d/2], shared by the batch) or one per row (tables [rows, 1, length, d/2]).
 */
export function ropeTables(headDim: number, start: number | number[], length: number, o: RopeTableOptions = {}): RopeTables {
  const inv = ropeInverseFrequencies(headDim, o.base);
  const half = inv.length;
  const starts = typeof start === 'number' ? [start] : start;
  if (!Number.isInteger(length) || length < 0) throw new Error(`ropeTables: length must be a non-negative integer, got ${length}`);
  for (const s of starts) if (!Number.isInteger(s) || s < 0) throw new Error(`ropeTables: positions must be non-negative integers, got start ${s}`);
  const ang = new Float64Array(starts.length * length * half);
  let k = 0;
  for (const s0 of starts) for (let t = 0; t < length; t++) for (let i = 0; i < half; i++) ang[k++] = (s0 + t) * inv[i];
  const shape = typeof start === 'number' ? [length, half] : [starts.length, 1, length, half];
  const a = tensor(ang, { shape, dtype: 'float64' }).to({ dtype: o.dtype ?? 'float32', device: o.device ?? 'cpu' });
  return { cos: ops.cos(a), sin: ops.sin(a) };
}

/** Rotates x [..., T, d] (per-row tables: x [B, H, T, d]) by the angles of `tables`. */
export function applyRotary(x: Tensor, tables: RopeTables): Tensor {
  const d = x.shape[x.ndim - 1];
  const half = d / 2;
  const ts = tables.cos.shape;
  if (d % 2 !== 0 || ts[ts.length - 1] !== half || ts[ts.length - 2] !== x.shape[x.ndim - 2] || (ts.length === 4 && (x.ndim !== 4 || ts[0] !== x.shape[0])))
    throw new Error(`applyRotary: tables [${ts.join(', ')}] do not fit x [${x.shape.join(', ')}] (tables [T, d/2] or [B, 1, T, d/2] for x [B, H, T, d])`);
  const x1 = x.narrow(-1, 0, half);
  const x2 = x.narrow(-1, half, half);
  return cat([x1.mul(tables.cos).sub(x2.mul(tables.sin)), x2.mul(tables.cos).add(x1.mul(tables.sin))], -1);
}

/**
 * Rotary position embedding of x [B, H, T, d] whose positions start at `start` (one start for the whole batch, or
 * one per row): `applyRotary(x, ropeTables(d, start, T, ...))` with x's dtype and device.
 */
export function applyRope(x: Tensor, start: number | number[], base = 10000): Tensor {
  const d = x.shape[x.ndim - 1];
  const T = x.shape[x.ndim - 2];
  if (d % 2 !== 0) throw new Error(`applyRope: the last dimension must be even, got shape [${x.shape.join(', ')}]`);
  if (typeof start !== 'number' && (x.ndim !== 4 || start.length !== x.shape[0]))
    throw new Error(`applyRope: ${start.length} row starts for shape [${x.shape.join(', ')}] (one per row of a [B, H, T, d] input)`);
  return applyRotary(x, ropeTables(d, start, T, { base, dtype: x.dtype, device: x.device }));
}
