// Datasets held as resident tensors: images as one compact uint8 tensor, labels as int64.
import { Tensor, keep, noGrad, tensor, tidy } from '../torch';

/** Anything indexable: `length` samples, `get(i)` for 0 <= i < length. */
export interface Dataset<T = unknown> {
  readonly length: number;
  get(i: number): T;
}

/**
 * What a generic (non-tensor) dataset's `get(i)` returns for the DataLoader: an input tensor and a target (a tensor
 * or a class index), as `{ x, y }` or `[x, y]`. The loader disposes the tensors it receives.
 */
export type Sample = { x: Tensor; y: Tensor | number } | [Tensor, Tensor | number];

function checkIndices(indices: ArrayLike<number>, n: number, who: string): Int32Array {
  const out = new Int32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`${who}: index ${i} (position ${k}) out of range [0, ${n})`);
    out[k] = i;
  }
  return out;
}

/**
 * Rows of aligned tensors (dimension 0 = sample). The data set owns its tensors: the constructor exempts them from
 * `tidy` scopes, and `dispose()` releases them. The DataLoader gathers batches with index_select.
 *
 * Derived copies: a DataLoader may store a whole-data-set copy of the inputs with its scaling and transforms applied
 * (the resident float mode, see dataloader.ts) on the data set, under a key naming the conversion. Loaders with the
 * same conversion share it; the data set owns it and `dispose()` releases it with the tensors. Derived copies are not
 * among `tensors`, so they change neither the data set's rows nor its identity (teacher-cache keys hash `tensors`).
 */
export class TensorDataset implements Dataset<Tensor[]> {
  readonly tensors: Tensor[];
  private readonly derivedCopies = new Map<string, Tensor>();
  constructor(...tensors: Tensor[]) {
    if (tensors.length === 0) throw new Error('TensorDataset: needs at least one tensor');
    tensors.forEach((t, i) => {
      if (t.ndim === 0) throw new Error(`TensorDataset: tensor ${i} is 0-dimensional; dimension 0 must index the samples`);
    });
    const n = tensors[0].shape[0];
    tensors.forEach((t, i) => {
      if (t.shape[0] !== n) throw new Error(`TensorDataset: tensor ${i} has ${t.shape[0]} rows [${t.shape}], tensor 0 has ${n} [${tensors[0].shape}]`);
    });
    this.tensors = tensors.map((t) => keep(t));
  }
  get length(): number {
    return this.tensors[0].shape[0];
  }
  /** Row i of every tensor (new handles: dispose them). */
  get(i: number): Tensor[] {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new Error(`TensorDataset: index ${i} out of range [0, ${this.length})`);
    return this.tensors.map((t) => t.select(0, i));
  }
  /** The rows at `indices` (copied), as a new data set that owns its tensors. */
  subset(indices: ArrayLike<number>): TensorDataset {
    const rows = this.gatherRows(indices, 'TensorDataset.subset');
    return new TensorDataset(...rows);
  }
  /** @internal */
  protected gatherRows(indices: ArrayLike<number>, who: string): Tensor[] {
    const idx = checkIndices(indices, this.length, who);
    return tidy(() => noGrad(() => {
      const i = tensor(idx, { dtype: 'int64', device: this.tensors[0].device });
      return this.tensors.map((t) => t.indexSelect(0, i));
    }));
  }
  /** @internal The derived copy stored under `key`, if any (see the class comment). */
  derived(key: string): Tensor | undefined {
    return this.derivedCopies.get(key);
  }
  /** @internal Stores a derived copy (kept; the data set owns it from now on). */
  setDerived(key: string, t: Tensor): void {
    this.derivedCopies.get(key)?.dispose();
    this.derivedCopies.set(key, keep(t));
  }
  /** @internal Bytes held in derived copies. */
  derivedBytes(): number {
    let n = 0;
    for (const t of this.derivedCopies.values()) n += tensorBytes(t);
    return n;
  }
  /** Releases the tensors and any derived copies. */
  dispose(): void {
    for (const t of this.tensors) t.dispose();
    for (const t of this.derivedCopies.values()) t.dispose();
    this.derivedCopies.clear();
  }
}

const ELEMENT_BYTES: Record<string, number> = { complex128: 16, complex64: 8, float64: 8, int64: 8, float32: 4, int32: 4, float16: 2, bfloat16: 2, int16: 2, int8: 1, uint8: 1, bool: 1 };

/** @internal Bytes of a tensor's elements (numel × element size). */
export function tensorBytes(t: Tensor): number {
  return t.numel() * ELEMENT_BYTES[t.dtype];
}

/** An image as a teacher that takes raw samples receives it: its file when known, and its pixels as decoded here. */
export interface RawImage {
  /** The image file the sample was decoded from (image folders and lists), else null (IDX, archives, tensors). */
  file: string | null;
  /** [C, H, W] */
  shape: number[];
  /** uint8, planar (channel, row, column), before any transform. */
  pixels: Uint8Array;
}

/** An image classification set: uint8 images [N, C, H, W], int64 labels [N], class names. */
export class ImageDataset extends TensorDataset {
  /** What identifies the source's contents when it was read from files (the decoded-image cache key), else undefined. */
  sourceKey?: string;
  /** The image file of each row, when the set was read from files on disk (image folders and lists). */
  files?: readonly string[];
  constructor(readonly name: string, images: Tensor, labels: Tensor, readonly classes: string[]) {
    if (images.dtype !== 'uint8' || images.ndim !== 4) throw new Error(`${name}: images must be uint8 [N, C, H, W], got ${images.dtype} [${images.shape}]`);
    if (labels.dtype !== 'int64' || labels.ndim !== 1) throw new Error(`${name}: labels must be int64 [N], got ${labels.dtype} [${labels.shape}]`);
    super(images, labels);
  }
  get images(): Tensor {
    return this.tensors[0];
  }
  get labels(): Tensor {
    return this.tensors[1];
  }
  /** [C, H, W] */
  get imageShape(): number[] {
    return this.images.shape.slice(1);
  }
  override subset(indices: ArrayLike<number>, name = `${this.name}-subset`): ImageDataset {
    const [images, labels] = this.gatherRows(indices, `${this.name}.subset`);
    const ds = new ImageDataset(name, images, labels, this.classes);
    if (this.files) ds.files = Array.from(indices, (i) => this.files![i]);
    return ds;
  }
  /** The rows at `indices` as raw samples (file and untransformed pixels), for teachers that take raw samples. */
  rawSamples(indices: ArrayLike<number>): RawImage[] {
    const idx = checkIndices(indices, this.length, `${this.name}.rawSamples`);
    const shape = this.imageShape;
    const per = shape[0] * shape[1] * shape[2];
    const rows = tidy(() => this.images.indexSelect(0, tensor(idx, { dtype: 'int64', device: this.images.device })).cpu().contiguous());
    try {
      const all = rows.data() as Uint8Array;
      return Array.from(idx, (i, k) => ({ file: this.files?.[i] ?? null, shape: [...shape], pixels: all.slice(k * per, (k + 1) * per) }));
    } finally {
      rows.dispose();
    }
  }
}
