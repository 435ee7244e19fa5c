// Datasets held as resident tensors: images as one compact uint8 tensor, labels as int64.
import { Tensor, keep } from '../torch';

export interface Dataset<T = unknown> {
  readonly length: number;
  get(i: number): T;
}

/** Rows of aligned tensors (first dimension = sample). Batches gather rows with index_select. */
export class TensorDataset implements Dataset<Tensor[]> {
  readonly tensors: Tensor[];
  constructor(...tensors: Tensor[]) {
    if (tensors.length === 0) throw new Error('TensorDataset: needs at least one tensor');
    const n = tensors[0].shape[0];
    tensors.forEach((t, i) => {
      if (t.shape[0] !== n) throw new Error(`TensorDataset: tensor ${i} has ${t.shape[0]} rows, tensor 0 has ${n}`);
    });
    this.tensors = tensors.map((t) => keep(t));
  }
  get length(): number {
    return this.tensors[0].shape[0];
  }
  /** Row i of every tensor (new handles: dispose them). */
  get(i: number): Tensor[] {
    if (!(i >= 0 && i < this.length)) throw new Error(`TensorDataset: index ${i} out of range [0, ${this.length})`);
    return this.tensors.map((t) => t.select(0, i));
  }
  dispose(): void {
    for (const t of this.tensors) t.dispose();
  }
}

/** An image classification set: uint8 images [N, C, H, W], int64 labels [N]. */
export class ImageDataset extends TensorDataset {
  constructor(readonly name: string, images: Tensor, labels: Tensor, readonly classes: string[]) {
    super(images, labels);
    if (images.dtype !== 'uint8' || images.ndim !== 4) throw new Error(`${name}: images must be uint8 [N, C, H, W], got ${images.dtype} [${images.shape}]`);
    if (labels.dtype !== 'int64') throw new Error(`${name}: labels must be int64, got ${labels.dtype}`);
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
}
