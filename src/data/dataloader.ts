// Batches from a resident dataset: indices are shuffled by the loader's own seeded Rng (seed mixed with the epoch),
// rows are gathered with index_select, uint8 images become float32 in [0, 1], then the transforms run.
// The consumer owns each batch: dispose `x` and `y` (or create the batch inside tidy via `batchAt`).
import { Tensor, noGrad, tensor, tidy } from '../torch';
import { TensorDataset } from './dataset';
import { Rng, mixSeed } from './rng';
import type { BatchTransform } from './transforms';

export interface DataLoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  seed?: number;
  dropLast?: boolean;
  transforms?: BatchTransform[];
  /** Divide uint8 inputs by 255 (default true). */
  scale?: boolean;
}

export interface Batch {
  x: Tensor;
  y: Tensor;
  /** Dataset row of each sample. */
  indices: Int32Array;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly transforms: BatchTransform[];
  private epoch = 0;
  private order: Int32Array | null = null;

  constructor(readonly dataset: TensorDataset, opts: DataLoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    if (dataset.tensors.length < 2) throw new Error('DataLoader: the dataset needs inputs and targets (two tensors)');
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    this.transforms = opts.transforms ?? [];
    this.scale = opts.scale ?? true;
  }
  readonly scale: boolean;

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }
  /** Selects the epoch whose order (and augmentation draws) the next iteration replays. */
  setEpoch(epoch: number): void {
    this.epoch = epoch;
    this.order = null;
  }
  /** The sample order of the current epoch. */
  epochOrder(): Int32Array {
    if (!this.order) {
      const n = this.dataset.length;
      if (this.shuffle) this.order = new Rng(mixSeed(this.seed, this.epoch)).permutation(n);
      else this.order = Int32Array.from({ length: n }, (_, i) => i);
    }
    return this.order;
  }
  /**
   * Batch `b` of the current epoch. Random transforms draw from a generator seeded by (seed, epoch, b), so batches can
   * be produced in any order (e.g. after a resume) with the same result.
   */
  batchAt(b: number): Batch {
    const order = this.epochOrder();
    const start = b * this.batchSize;
    const end = Math.min(start + this.batchSize, order.length);
    if (start >= order.length || b < 0) throw new Error(`DataLoader: batch ${b} out of range (${this.length} batches)`);
    const indices = order.subarray(start, end);
    const { x, y } = tidy(() =>
      noGrad(() => {
        const idx = tensor(indices).long();
        const [xs, ys] = this.dataset.tensors;
        let x = xs.indexSelect(0, idx);
        if (x.dtype === 'uint8') x = this.scale ? x.float().div_(255) : x.float();
        if (this.transforms.length) {
          const rng = new Rng(mixSeed(mixSeed(this.seed ^ 0x5bd1e995, this.epoch), b));
          for (const t of this.transforms) x = t.apply(x, rng);
        }
        return { x, y: ys.indexSelect(0, idx) };
      }),
    );
    return { x, y, indices: Int32Array.from(indices) };
  }
  *[Symbol.iterator](): Generator<Batch> {
    const n = this.length;
    for (let b = 0; b < n; b++) yield this.batchAt(b);
    this.setEpoch(this.epoch + 1);
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    const n = this.length;
    for (let b = 0; b < n; b++) {
      yield this.batchAt(b);
      await new Promise<void>((r) => setImmediate(r));
    }
    this.setEpoch(this.epoch + 1);
  }
  get currentEpoch(): number {
    return this.epoch;
  }
}
