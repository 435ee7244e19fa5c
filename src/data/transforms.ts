// Batch transforms on float image batches [B, C, H, W]. Each returns a new tensor and leaves its input alone, and
// works on the whole batch with a few tensor ops (no per-sample tensor calls).
//
// Randomness: random transforms draw only from the `Rng` they are given. The DataLoader passes a generator seeded by
// (loader seed, epoch, batch number), so augmentation is reproducible, independent of libtorch's generator and of
// `manualSeed`, and the same whichever order batches are produced in (e.g. after a resume). The draws per batch are,
// in sample order: randomCrop one (top, left) pair per sample; randomHorizontalFlip one uniform number per sample.
//
// Deterministic transforms that work sample by sample (`perSample: true`, as `normalize`) let the DataLoader convert the
// whole resident data set once instead of every batch (see dataloader.ts); they must then give each sample the same
// bits whatever batch it is in, which elementwise ops do.
import { Tensor, tensor, tidy } from '../torch';
import type { Rng } from './rng';
import { type ViewPart, cropAt, flipAt } from './views';

export interface BatchTransform {
  /** A description that identifies the transform and its parameters (used in cache keys). */
  readonly name: string;
  /** Whether the output depends on the random draws. */
  readonly random: boolean;
  /**
   * Set on deterministic transforms whose output for a sample depends only on that sample, never on the rest of the
   * batch (e.g. `normalize`). The DataLoader may then apply them once to the whole data set (its resident float mode,
   * see dataloader.ts) instead of to every batch. Unset counts as false.
   */
  readonly perSample?: boolean;
  /** Random crops and flips: the view they draw (see views.ts), so that a view cache can store and replay it. */
  readonly view?: ViewPart;
  apply(x: Tensor, rng: Rng): Tensor;
}

function check4d(x: Tensor, who: string): number[] {
  const s = x.shape;
  if (s.length !== 4) throw new Error(`${who}: expected an image batch [B, C, H, W], got [${s}]`);
  return s;
}

/** (x - mean[c]) / std[c] per channel, as torchvision's Normalize. */
export function normalize(mean: number[], std: number[]): BatchTransform {
  if (mean.length !== std.length || mean.length === 0) throw new Error(`normalize: ${mean.length} means but ${std.length} stds`);
  if (std.some((s) => !(s > 0) || !Number.isFinite(s))) throw new Error(`normalize: std must be positive, got [${std}]`);
  if (mean.some((m) => !Number.isFinite(m))) throw new Error(`normalize: mean must be finite, got [${mean}]`);
  const m32 = Float32Array.from(mean);
  const s32 = Float32Array.from(std);
  return {
    name: `normalize(mean=[${mean}], std=[${std}])`,
    random: false,
    perSample: true,
    apply(x) {
      const c = x.shape[1];
      if (x.ndim < 2 || c !== mean.length)
        throw new Error(`normalize: ${mean.length} channel statistics for a batch with ${x.ndim < 2 ? 'no channel dimension' : `${c} channels`} [${x.shape}]`);
      const view = [1, c, ...new Array(x.ndim - 2).fill(1)];
      return tidy(() =>
        x.sub(tensor(m32, { shape: view, device: x.device })).div_(tensor(s32, { shape: view, device: x.device })),
      );
    },
  };
}

/** Flips each sample left-right (last dimension) with probability p. */
export function randomHorizontalFlip(p = 0.5): BatchTransform {
  if (!(p >= 0 && p <= 1)) throw new Error(`randomHorizontalFlip: p must be in [0, 1], got ${p}`);
  return {
    name: `randomHorizontalFlip(${p})`,
    random: true,
    view: { kind: 'flip', p },
    apply(x, rng) {
      check4d(x, 'randomHorizontalFlip');
      const b = x.shape[0];
      const pick: number[] = [];
      for (let i = 0; i < b; i++) if (rng.random() < p) pick.push(i);
      return flipAt(x, pick);
    },
  };
}

/** How randomCrop fills the border: zeros, mirror without repeating the edge (reflect), or repeat the edge (replicate). */
export type PaddingMode = 'zeros' | 'reflect' | 'replicate';

/**
 * Pads every side by `padding` and crops a random size×size (or [h, w]) window per sample, as torchvision's
 * RandomCrop(size, padding, padding_mode). Put it before `normalize`, so zero padding means black.
 */
export function randomCrop(size: number | [number, number], padding = 0, paddingMode: PaddingMode = 'zeros'): BatchTransform {
  const [ch, cw] = typeof size === 'number' ? [size, size] : size;
  if (![ch, cw].every((v) => Number.isInteger(v) && v > 0)) throw new Error(`randomCrop: size must be positive integers, got ${JSON.stringify(size)}`);
  if (!Number.isInteger(padding) || padding < 0) throw new Error(`randomCrop: padding must be a non-negative integer, got ${padding}`);
  if (!['zeros', 'reflect', 'replicate'].includes(paddingMode))
    throw new Error(`randomCrop: paddingMode must be 'zeros', 'reflect' or 'replicate', got '${paddingMode}'`);
  const sizeText = typeof size === 'number' ? `${size}` : `[${ch}, ${cw}]`;
  return {
    name: `randomCrop(${sizeText}, padding=${padding}${paddingMode === 'zeros' ? '' : `, mode=${paddingMode}`})`,
    random: true,
    view: { kind: 'crop', size: [ch, cw], padding, mode: paddingMode },
    apply(x, rng) {
      const [b, , h, w] = check4d(x, 'randomCrop');
      const hp = h + 2 * padding, wp = w + 2 * padding;
      if (ch > hp || cw > wp) throw new Error(`randomCrop: crop ${ch}x${cw} larger than the padded image ${hp}x${wp} (batch [${x.shape}], padding ${padding})`);
      // Window corners in padded coordinates, drawn in sample order (top, then left).
      const top = new Float64Array(b);
      const left = new Float64Array(b);
      for (let i = 0; i < b; i++) {
        top[i] = rng.int(hp - ch + 1);
        left[i] = rng.int(wp - cw + 1);
      }
      return cropAt(x, top, left, [ch, cw], padding, paddingMode);
    },
  };
}
