// Augmentation views given by their parameters. A view of an image is a crop window (top, left, in the coordinates of
// the padded image) and a horizontal flip; `randomCrop` and `randomHorizontalFlip` (transforms.ts) draw these
// parameters from a loader's Rng and apply them with `cropAt` / `flipAt`, and a view cache (distill/view-cache.ts)
// draws them once per (seed, sample, view), stores them next to the teacher's outputs, and applies exactly the same
// parameters to the student's input later. Both paths run the same gather, so a stored view reproduces its pixels bit
// for bit.
import { Tensor, arange, ops, tensor, tidy } from '../torch';
import { Rng, mixSeed } from './rng';
import type { BatchTransform, PaddingMode } from './transforms';

/** What a view may change: a crop window of `size` out of the image padded by `padding`, and a flip with probability p. */
export interface ViewSpec {
  crop: { size: [number, number]; padding: number; mode: PaddingMode } | null;
  flip: { p: number } | null;
}

/** One view's parameters per sample, in batch order: the crop window's corner (padded coordinates) and the flip. */
export interface ViewParams {
  top: Int32Array;
  left: Int32Array;
  /** 1: flipped left-right (after the crop). */
  flip: Uint8Array;
}

/** The view a random transform describes (set by randomCrop and randomHorizontalFlip). */
export type ViewPart = { kind: 'crop'; size: [number, number]; padding: number; mode: PaddingMode } | { kind: 'flip'; p: number };

/** A text that identifies a view spec (cache keys). */
export const viewSpecName = (s: ViewSpec): string =>
  `crop=${s.crop ? `${s.crop.size.join('x')},pad=${s.crop.padding},${s.crop.mode}` : 'none'};flip=${s.flip ? s.flip.p : 'none'}`;

/**
 * Splits a loader's transforms into the view they draw (their random crop and flip, which must come first) and the
 * deterministic transforms applied after it (normalisation). A random transform that is not a crop or a flip, or a
 * deterministic one before a random one, is an error naming it.
 */
export function splitViewTransforms(transforms: BatchTransform[]): { spec: ViewSpec; rest: BatchTransform[] } {
  const spec: ViewSpec = { crop: null, flip: null };
  const rest: BatchTransform[] = [];
  for (const t of transforms) {
    if (!t.random) {
      rest.push(t);
      continue;
    }
    const v = t.view;
    if (!v) throw new Error(`views: the random transform ${t.name} has no view parameters (only randomCrop and randomHorizontalFlip can be stored as views)`);
    if (rest.length) throw new Error(`views: ${t.name} comes after ${rest[rest.length - 1].name}; random crops and flips must come before the deterministic transforms`);
    if (v.kind === 'crop') {
      if (spec.crop || spec.flip) throw new Error(`views: ${t.name} must be the first transform (one crop, then at most one flip)`);
      spec.crop = { size: v.size, padding: v.padding, mode: v.mode };
    } else {
      if (spec.flip) throw new Error(`views: two flips (${t.name})`);
      spec.flip = { p: v.p };
    }
  }
  return { spec, rest };
}

/**
 * Draws one view of an image of size h×w: the crop corner (top, then left, uniform over the padded image's windows)
 * and the flip (one uniform number < p), from `rng`, in the same order randomCrop and randomHorizontalFlip draw them.
 */
export function drawView(spec: ViewSpec, h: number, w: number, rng: Rng): [number, number, number] {
  let top = 0, left = 0, flip = 0;
  if (spec.crop) {
    const { size: [ch, cw], padding } = spec.crop;
    top = rng.int(h + 2 * padding - ch + 1);
    left = rng.int(w + 2 * padding - cw + 1);
  }
  if (spec.flip) flip = rng.random() < spec.flip.p ? 1 : 0;
  return [top, left, flip];
}

/** The seed of view `view` of data set row `row` (independent of batches, epochs and the order views are made in). */
export const viewSeed = (seed: number, row: number, view: number): number => mixSeed(mixSeed(seed ^ 0x3c6ef372, row), view);

/** Applies stored views to a float batch [B, C, H, W]: crop (when the spec crops), then flip. */
export function applyViews(x: Tensor, spec: ViewSpec, p: ViewParams): Tensor {
  const b = x.shape[0];
  if (p.top.length !== b || p.left.length !== b || p.flip.length !== b)
    throw new Error(`applyViews: ${p.top.length} views for a batch of ${b} [${x.shape}]`);
  return tidy(() => {
    let out = spec.crop ? cropAt(x, p.top, p.left, spec.crop.size, spec.crop.padding, spec.crop.mode) : x;
    if (spec.flip) {
      const pick: number[] = [];
      for (let i = 0; i < b; i++) if (p.flip[i]) pick.push(i);
      out = flipAt(out, pick);
    }
    return out === x ? x.clone() : out;
  });
}

function check4d(x: Tensor, who: string): number[] {
  const s = x.shape;
  if (s.length !== 4) throw new Error(`${who}: expected an image batch [B, C, H, W], got [${s}]`);
  return s;
}

/** Flips the samples `pick` (batch positions) left-right; a new tensor. */
export function flipAt(x: Tensor, pick: number[]): Tensor {
  check4d(x, 'flip');
  const b = x.shape[0];
  return tidy(() => {
    if (pick.length === b) return ops.flip(x, [3]);
    const out = x.clone();
    if (pick.length === 0) return out;
    const idx = tensor(Int32Array.from(pick), { dtype: 'int64', device: x.device });
    return ops.index_copy_(out, 0, idx, ops.flip(x.indexSelect(0, idx), [3]));
  });
}

/**
 * Crops an [ch, cw] window per sample at (top[i], left[i]) of the image padded by `padding` on every side (zeros, or
 * reflect / replicate the border), as torchvision's RandomCrop with those corners; one gather.
 */
export function cropAt(x: Tensor, top: ArrayLike<number>, left: ArrayLike<number>, size: [number, number], padding: number, paddingMode: PaddingMode): Tensor {
  const [b, c, h, w] = check4d(x, 'crop');
  const [ch, cw] = size;
  if (paddingMode === 'reflect' && (padding >= h || padding >= w))
    throw new Error(`randomCrop: reflect padding ${padding} needs images larger than the padding, got ${h}x${w} [${x.shape}]`);
  const hp = h + 2 * padding, wp = w + 2 * padding;
  if (ch > hp || cw > wp) throw new Error(`randomCrop: crop ${ch}x${cw} larger than the padded image ${hp}x${wp} (batch [${x.shape}], padding ${padding})`);
  const top64 = Float64Array.from(top), left64 = Float64Array.from(left);
  return tidy(() => {
    const opts = { dtype: 'int64' as const, device: x.device };
    const src = x.contiguous();
    if (paddingMode === 'zeros') {
      // Pad, then one gather: index[i, k, r, q] = i*C*hp*wp + k*hp*wp + (top[i] + r)*wp + left[i] + q.
      const padded = padding > 0 ? ops.constant_pad_nd(src, [padding, padding, padding, padding], 0) : src;
      if (ch === hp && cw === wp) return padding > 0 ? padded : src.clone();
      const plane = hp * wp;
      const start = tensor(top64, opts).mul_(wp).add_(tensor(left64, opts)).add_(arange(0, b * c * plane, c * plane, opts));
      const index = start.view(b, 1, 1, 1)
        .add(arange(0, c * plane, plane, opts).view(1, c, 1, 1))
        .add(arange(0, ch * wp, wp, opts).view(1, 1, ch, 1))
        .add(arange(0, cw, 1, opts).view(1, 1, 1, cw));
      return ops.take(padded, index);
    }
    // reflect / replicate: map each output row and column back into the unpadded image and gather from it
    // directly (no padded copy). reflect(r) = (n-1) - |(n-1) - |r||, valid for padding < n; replicate clamps.
    const fold = (t: Tensor, n: number) =>
      paddingMode === 'reflect' ? t.abs().mul_(-1).add_(n - 1).abs().mul_(-1).add_(n - 1) : t.clamp(0, n - 1);
    const rows = fold(tensor(top64, { ...opts, shape: [b, 1] }).add(arange(-padding, ch - padding, 1, opts).view(1, ch)), h);
    const cols = fold(tensor(left64, { ...opts, shape: [b, 1] }).add(arange(-padding, cw - padding, 1, opts).view(1, cw)), w);
    const index = arange(0, b * c * h * w, c * h * w, opts).view(b, 1, 1, 1)
      .add(arange(0, c * h * w, h * w, opts).view(1, c, 1, 1))
      .add(rows.mul_(w).view(b, 1, ch, 1))
      .add(cols.view(b, 1, 1, cw));
    return ops.take(src, index);
  });
}
