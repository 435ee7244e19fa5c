// Rotary position embeddings (RoPE; candle-nn's rotary_emb.rs), GPT-NeoX's half-split layout: the two halves
// (x1, x2) of each head's features become (x1·cos θ − x2·sin θ, x2·cos θ + x1·sin θ) with θ = position · base^(−2i/d),
// i < d/2, so that the dot product of a rotated query and key depends on their relative position only.
//
// `ropeTables` builds cos θ and sin θ for a run of positions (one start for the whole batch, one per row for batched
// decoding, where every row is at its own position, or any positions per row and token, as a padding mask gives);
// `applyRotary` rotates queries or keys [B, H, T, d] by them. Build the tables once per forward and apply them to the
// queries and keys of every layer; `applyRope` does both in one call.
//
// Rotary scaling (`ropeFrequencies`): the inverse frequencies base^(−2i/d) are changed to stretch a model's context,
// by the rope types of transformers (modeling_rope_utils.py), computed here in float64 from the published formulas:
//   linear   every frequency divided by `factor` (position interpolation);
//   dynamic  NTK-aware: base · (factor · L / maxPositions − (factor − 1))^(d / (d − 2)) once the length L exceeds
//            maxPositions, the default frequencies below it;
//   llama3   wavelengths 2π / f shorter than originalMaxPositions / highFreqFactor kept, longer than
//            originalMaxPositions / lowFreqFactor divided by `factor`, a linear blend in s = (originalMaxPositions /
//            wavelength − lowFreqFactor) / (highFreqFactor − lowFreqFactor) between the two;
//   yarn     frequencies divided by `factor` below the dimension where a wavelength fits betaSlow rotations into
//            originalMaxPositions, kept above the one of betaFast rotations, a linear ramp between (the bounds floored
//            and ceiled unless `truncate` is false); cos and sin are multiplied by the attention factor
//            (`attentionFactor`, else 0.1 · mscale · ln(factor) + 1 over the same with mscaleAllDim, else
//            0.1 · ln(factor) + 1), which scales every attention score by its square.
import { Tensor, cat, ops, tensor } from '../torch';
import type { DType, DeviceLike } from '../torch';

/** cos θ and sin θ: [T, d/2] (one start) or [B, 1, T, d/2] (one start per row, or positions per row and token). */
export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
}

export interface RopeTableOptions {
  /** Default 10000. */
  base?: number;
  /** The inverse frequencies [d/2] (`ropeFrequencies(...).invFreq`); default base^(−2i/d). */
  invFreq?: Float64Array;
  /** cos and sin are multiplied by it (yarn's attention factor; default 1). */
  scale?: number;
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

/** A rotary scaling: transformers' rope types (see the top of this file). */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'dynamic'; factor: number; maxPositions: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | {
      type: 'yarn';
      factor: number;
      originalMaxPositions: number;
      /** Default 32. */
      betaFast?: number;
      /** Default 1. */
      betaSlow?: number;
      /** Given, it replaces the factor derived from `factor` and mscale. */
      attentionFactor?: number;
      mscale?: number;
      mscaleAllDim?: number;
      /** Floor and ceil the bounds of the ramp (default true). */
      truncate?: boolean;
    };

export interface RopeFrequencies {
  /** [d/2] */
  invFreq: Float64Array;
  /** cos and sin are multiplied by it (1 but for yarn). */
  attentionScaling: number;
}

const positive = (what: string, v: number) => {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new Error(`rope: ${what} must be a positive number, got ${v}`);
};

/**
 * The inverse frequencies and attention scaling of a rotary scaling for head size `headDim` and base `base`.
 * `seqLen` (dynamic only) is the length the frequencies serve; at most `maxPositions` it gives the default ones.
 */
export function ropeFrequencies(headDim: number, base: number, scaling: RopeScaling = { type: 'default' }, seqLen?: number): RopeFrequencies {
  const inv = ropeInverseFrequencies(headDim, base);
  const d = headDim;
  switch (scaling.type) {
    case 'default':
      return { invFreq: inv, attentionScaling: 1 };
    case 'linear':
      positive('linear factor', scaling.factor);
      return { invFreq: inv.map((f) => f / scaling.factor), attentionScaling: 1 };
    case 'dynamic': {
      const { factor, maxPositions } = scaling;
      positive('dynamic factor', factor);
      positive('dynamic maxPositions', maxPositions);
      if (d <= 2) throw new Error(`rope: dynamic scaling needs a head size above 2, got ${d}`);
      const L = Math.max(seqLen ?? maxPositions, maxPositions);
      const scaled = base * Math.pow((factor * L) / maxPositions - (factor - 1), d / (d - 2));
      return { invFreq: ropeInverseFrequencies(d, scaled), attentionScaling: 1 };
    }
    case 'llama3': {
      const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: old } = scaling;
      for (const [k, v] of [['llama3 factor', factor], ['low_freq_factor', lo], ['high_freq_factor', hi], ['original_max_position_embeddings', old]] as const) positive(k, v);
      if (!(hi > lo)) throw new Error(`rope: llama3 high_freq_factor (${hi}) must exceed low_freq_factor (${lo})`);
      const longest = old / lo;
      const shortest = old / hi;
      const out = inv.map((f) => {
        const wavelength = (2 * Math.PI) / f;
        if (wavelength < shortest) return f;
        if (wavelength > longest) return f / factor;
        const s = (old / wavelength - lo) / (hi - lo);
        return ((1 - s) * f) / factor + s * f;
      });
      return { invFreq: out, attentionScaling: 1 };
    }
    case 'yarn': {
      const { factor, originalMaxPositions: old } = scaling;
      positive('yarn factor', factor);
      positive('original_max_position_embeddings', old);
      // `||` as transformers' `or`: 0 takes the default too
      const betaFast = scaling.betaFast || 32;
      const betaSlow = scaling.betaSlow || 1;
      const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const attentionScaling =
        scaling.attentionFactor ?? (scaling.mscale && scaling.mscaleAllDim ? mscale(factor, scaling.mscale) / mscale(factor, scaling.mscaleAllDim) : mscale(factor));
      // the dimension whose wavelength fits `rotations` turns into the original context
      const dimOf = (rotations: number) => (d * Math.log(old / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
      let low = dimOf(betaFast);
      let high = dimOf(betaSlow);
      if (scaling.truncate ?? true) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, d - 1);
      if (low === high) high += 0.001;
      const out = inv.map((f, i) => {
        const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
        return (f / factor) * ramp + f * (1 - ramp);
      });
      return { invFreq: out, attentionScaling };
    }
    default:
      throw new Error(`rope: unknown scaling type ${JSON.stringify((scaling as { type: unknown }).type)}`);
  }
}

/**
 * cos θ and sin θ of positions for a head size `headDim`. `start` is one number (positions start .. start + length
 * − 1, tables [length, d/2], shared by the batch), one per row (tables [rows, 1, length, d/2]), or each row's
 * `length` positions (tables [rows, 1, length, d/2]).
 */
export function ropeTables(headDim: number, start: number | number[] | number[][], length: number, o: RopeTableOptions = {}): RopeTables {
  const inv = o.invFreq ?? ropeInverseFrequencies(headDim, o.base);
  const half = inv.length;
  if (half * 2 !== headDim) throw new Error(`ropeTables: ${half} inverse frequencies for a head size ${headDim} (one per feature pair)`);
  if (!Number.isInteger(length) || length < 0) throw new Error(`ropeTables: length must be a non-negative integer, got ${length}`);
  for (const s of typeof start === 'number' ? [start] : start)
    if (typeof s === 'number' && (!Number.isInteger(s) || s < 0)) throw new Error(`ropeTables: positions must be non-negative integers, got start ${s}`);
  const rows: number[][] =
    typeof start === 'number'
      ? [Array.from({ length }, (_, t) => start + t)]
      : start.map((r) => (typeof r === 'number' ? Array.from({ length }, (_, t) => r + t) : r));
  for (const r of rows) {
    if (r.length !== length) throw new Error(`ropeTables: a row of ${r.length} positions for length ${length}`);
    for (const p of r) if (!Number.isInteger(p) || p < 0) throw new Error(`ropeTables: positions must be non-negative integers, got ${p}`);
  }
  const ang = new Float64Array(rows.length * length * half);
  let k = 0;
  for (const r of rows) for (const p of r) for (let i = 0; i < half; i++) ang[k++] = p * inv[i];
  const shape = typeof start === 'number' ? [length, half] : [rows.length, 1, length, half];
  const a = tensor(ang, { shape, dtype: 'float64' }).to({ dtype: o.dtype ?? 'float32', device: o.device ?? 'cpu' });
  const scale = o.scale ?? 1;
  if (scale === 1) return { cos: ops.cos(a), sin: ops.sin(a) };
  return { cos: ops.cos(a).mul(scale), sin: ops.sin(a).mul(scale) };
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
