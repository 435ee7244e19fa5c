// Batch transforms on float image batches [B, C, H, W]; each returns a new tensor and leaves its input alone. Random transforms draw from the loader's seeded Rng, so a
// (seed, epoch) pair reproduces the same augmentation.
import { Tensor, ops, tensor, tidy } from '../torch';
import type { Rng } from './rng';

export interface BatchTransform {
  readonly name: string;
  readonly random: boolean;
  apply(x: Tensor, rng: Rng): Tensor;
}

/** (x - mean[c]) / std[c] per channel. */
export function normalize(mean: number[], std: number[]): BatchTransform {
  if (mean.length !== std.length) throw new Error(`normalize: ${mean.length} means but ${std.length} stds`);
  if (std.some((s) => !(s > 0))) throw new Error(`normalize: std must be positive, got [${std}]`);
  return {
    name: `normalize(mean=[${mean}], std=[${std}])`,
    random: false,
    apply(x) {
      const c = x.shape[1];
      if (c !== mean.length) throw new Error(`normalize: ${mean.length} channel statistics for a batch with ${c} channels [${x.shape}]`);
      return tidy(() => x.sub(tensor(Float32Array.from(mean), { shape: [1, c, 1, 1] })).div(tensor(Float32Array.from(std), { shape: [1, c, 1, 1] })));
    },
  };
}

/** Flips each sample left-right with probability p. */
export function randomHorizontalFlip(p = 0.5): BatchTransform {
  return {
    name: `randomHorizontalFlip(${p})`,
    random: true,
    apply(x, rng) {
      const b = x.shape[0];
      const pick: number[] = [];
      for (let i = 0; i < b; i++) if (rng.random() < p) pick.push(i);
      return tidy(() => {
        const out = x.clone();
        if (pick.length === 0) return out;
        const idx = tensor(pick, { dtype: 'int64' });
        return ops.index_copy_(out, 0, idx, ops.flip(x.indexSelect(0, idx), [3]));
      });
    },
  };
}

/** Pads each side by `padding` (zeros) and crops a random size×size window per sample. */
export function randomCrop(size: number, padding = 0): BatchTransform {
  return {
    name: `randomCrop(${size}, padding=${padding})`,
    random: true,
    apply(x, rng) {
      return tidy(() => {
        const padded = padding > 0 ? ops.constant_pad_nd(x, [padding, padding, padding, padding], 0) : x;
        const [b, , h, w] = padded.shape;
        if (size > h || size > w) throw new Error(`randomCrop: crop ${size} larger than padded image ${h}x${w}`);
        const parts: Tensor[] = [];
        for (let i = 0; i < b; i++) {
          const top = rng.int(h - size + 1);
          const left = rng.int(w - size + 1);
          parts.push(padded.narrow(0, i, 1).narrow(2, top, size).narrow(3, left, size));
        }
        return ops.cat(parts, 0);
      });
    },
  };
}
