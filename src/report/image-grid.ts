// An image grid as a PNG: a batch of images [N, C, H, W] (C = 1 or 3) tiled in rows, each image scaled to 0–255 by
// its own minimum and maximum, with a gap between tiles. Data-free runs write their generated samples this way.
import { PNG } from 'pngjs';
import { type Tensor, noGrad, tidy, writeFileAtomic } from '../torch';

export interface ImageGridOptions {
  /** Tiles per row (default: ⌈√N⌉). */
  columns?: number;
  /** Pixels between tiles (default 2), filled with mid grey. */
  gap?: number;
  /** Each tile enlarged by this integer factor (default 1). */
  scale?: number;
}

/** Encodes `images` [N, C, H, W] (C = 1 or 3, any float range) as a PNG grid. */
export function imageGridPng(images: Tensor, o: ImageGridOptions = {}): Buffer {
  if (images.ndim !== 4 || (images.shape[1] !== 1 && images.shape[1] !== 3))
    throw new Error(`imageGrid: expects images [N, 1 or 3, H, W], got [${images.shape.join(', ')}]`);
  const [N, C, H, W] = images.shape;
  const cols = o.columns ?? Math.ceil(Math.sqrt(N)), gap = o.gap ?? 2, s = o.scale ?? 1;
  if (!Number.isInteger(cols) || cols < 1 || !Number.isInteger(gap) || gap < 0 || !Number.isInteger(s) || s < 1)
    throw new Error(`imageGrid: columns and scale must be positive integers and gap a non-negative one, got ${cols}, ${s}, ${gap}`);
  const rows = Math.ceil(N / cols);
  const tw = W * s, th = H * s;
  const png = new PNG({ width: cols * tw + (cols + 1) * gap, height: rows * th + (rows + 1) * gap });
  png.data.fill(128);
  for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255;
  const d = tidy(() => noGrad(() => images.detach().float().data())) as Float32Array;
  const n = C * H * W;
  for (let k = 0; k < N; k++) {
    let lo = Infinity, hi = -Infinity;
    for (let j = k * n; j < (k + 1) * n; j++) if (Number.isFinite(d[j])) { lo = Math.min(lo, d[j]); hi = Math.max(hi, d[j]); }
    const span = hi > lo ? hi - lo : 1;
    const ox = gap + (k % cols) * (tw + gap), oy = gap + Math.floor(k / cols) * (th + gap);
    for (let y = 0; y < th; y++)
      for (let x = 0; x < tw; x++) {
        const at = ((oy + y) * png.width + ox + x) * 4;
        for (let c = 0; c < 3; c++) {
          const v = d[k * n + (C === 1 ? 0 : c) * H * W + Math.floor(y / s) * W + Math.floor(x / s)];
          png.data[at + c] = Number.isFinite(v) ? Math.round((255 * (v - (lo === Infinity ? 0 : lo))) / span) : 0;
        }
      }
  }
  return PNG.sync.write(png);
}

/** Writes `images` as a PNG grid to `file` (atomically); returns the file. */
export function writeImageGrid(file: string, images: Tensor, o: ImageGridOptions = {}): string {
  writeFileAtomic(file, imageGridPng(images, o));
  return file;
}
