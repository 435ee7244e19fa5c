// Batches from a data set.
//
// Fast path (TensorDataset / ImageDataset): the epoch's sample order is a permutation drawn from the loader's own
// seeded Rng (seed mixed with the epoch number), rows are gathered from the resident tensors with one index_select
// per tensor, uint8 inputs become float32 in [0, 1] (divided by 255), then the batch transforms run on the whole
// batch. Generic path (any `Dataset` whose get(i) returns a `Sample`): samples are fetched one by one and stacked.
//
// Ownership: every batch belongs to the caller. Dispose it after use with `batch.dispose()` (or `dispose([b.x, b.y])`),
// or produce and consume it inside a `tidy`. The loader keeps no reference to batches it has handed out.
//
// Prefetching: batches are made on demand, synchronously. libtorch calls run on the JavaScript thread, so building
// batch b+1 early cannot overlap with training on batch b; it would only hold one more batch in memory. For resident
// data a batch costs a gather and a few elementwise ops (well under a millisecond for MNIST-sized batches). The async
// iterator yields to the event loop between batches, so timers, progress output and finalizers run during an epoch.
import { DeviceLike, Tensor, nextTick, noGrad, ops, tensor, tidy } from '../torch';
import { Dataset, Sample, TensorDataset } from './dataset';
import { Rng, mixSeed } from './rng';
import type { BatchTransform } from './transforms';

export interface DataLoaderOptions {
  batchSize: number;
  /** Reshuffle every epoch with the loader's seeded Rng (default false: data set order). */
  shuffle?: boolean;
  /** Seed for the order and the random transforms (default 0). */
  seed?: number;
  /** Drop the last batch when it is smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Applied in order to each float batch [B, C, H, W]; random ones draw from the loader's Rng (see transforms.ts). */
  transforms?: BatchTransform[];
  /** Divide uint8 inputs by 255 (default true). */
  scale?: boolean;
  /** Move each batch here (uint8 inputs move before the float conversion). Default: where the data set lives. */
  device?: DeviceLike;
}

/** One batch. The caller owns `x` and `y`: call `dispose()` (or dispose both) once done. */
export interface Batch {
  x: Tensor;
  y: Tensor;
  /** Data set row of each sample, in batch order. */
  indices: Int32Array;
  /** Releases `x` and `y`. */
  dispose(): void;
}

function makeBatch(x: Tensor, y: Tensor, indices: Int32Array): Batch {
  return {
    x,
    y,
    indices,
    dispose() {
      x.dispose();
      y.dispose();
    },
  };
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly transforms: BatchTransform[];
  readonly scale: boolean;
  readonly device: DeviceLike | undefined;
  private epoch = 0;
  private order: Int32Array | null = null;

  constructor(readonly dataset: TensorDataset | Dataset<Sample>, opts: DataLoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new Error(`DataLoader: seed must be an integer, got ${opts.seed}`);
    if (dataset instanceof TensorDataset) {
      if (dataset.tensors.length < 2) throw new Error(`DataLoader: the data set needs inputs and targets (two tensors), it has ${dataset.tensors.length}`);
    } else if (!dataset || typeof (dataset as Dataset).get !== 'function' || !Number.isInteger((dataset as Dataset).length))
      throw new Error('DataLoader: the data set must be a TensorDataset or have an integer `length` and a `get(i)` method');
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    this.transforms = opts.transforms ?? [];
    this.scale = opts.scale ?? true;
    this.device = opts.device;
    this.transforms.forEach((t, i) => {
      if (!t || typeof t.apply !== 'function') throw new Error(`DataLoader: transforms[${i}] is not a BatchTransform (an object with name, random and apply)`);
    });
  }

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }
  /** The epoch whose order and augmentation the next batches use. A complete pass of an iterator advances it by one. */
  get currentEpoch(): number {
    return this.epoch;
  }
  /** Selects the epoch whose order (and augmentation draws) the next iteration replays. */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`DataLoader: epoch must be a non-negative integer, got ${epoch}`);
    if (epoch !== this.epoch) this.order = null;
    this.epoch = epoch;
  }
  /** The sample order of the current epoch (a permutation of 0..n-1 when shuffling). Do not modify it. */
  epochOrder(): Int32Array {
    const n = this.dataset.length;
    if (!this.order || this.order.length !== n) {
      if (this.shuffle) this.order = new Rng(mixSeed(this.seed, this.epoch)).permutation(n);
      else this.order = Int32Array.from({ length: n }, (_, i) => i);
    }
    return this.order;
  }

  /**
   * Batch `b` of the current epoch. Random transforms draw from a generator seeded by (seed, epoch, b), so batches can
   * be produced in any order (e.g. after a resume) with the same result. The caller owns the returned batch.
   */
  batchAt(b: number): Batch {
    const count = this.length;
    if (!Number.isInteger(b) || b < 0 || b >= count) throw new Error(`DataLoader: batch ${b} out of range (${count} batches of ${this.batchSize} from ${this.dataset.length} samples)`);
    const order = this.epochOrder();
    const start = b * this.batchSize;
    const indices = order.slice(start, Math.min(start + this.batchSize, order.length));
    const { x, y } = tidy(() =>
      noGrad(() => {
        let { x, y } = this.dataset instanceof TensorDataset ? this.gather(this.dataset, indices) : this.collate(this.dataset, indices);
        if (this.device !== undefined) {
          x = x.to({ device: this.device });
          y = y.to({ device: this.device });
        }
        if (x.dtype === 'uint8') x = this.scale ? x.float().div_(255) : x.float();
        if (this.transforms.length) {
          const rng = new Rng(mixSeed(mixSeed(this.seed ^ 0x5bd1e995, this.epoch), b));
          for (const t of this.transforms) x = t.apply(x, rng);
        }
        return { x, y };
      }),
    );
    return makeBatch(x, y, indices);
  }

  private gather(ds: TensorDataset, indices: Int32Array): { x: Tensor; y: Tensor } {
    const [xs, ys] = ds.tensors;
    const idx = tensor(indices, { dtype: 'int64', device: xs.device });
    const idxY = ys.device === xs.device ? idx : tensor(indices, { dtype: 'int64', device: ys.device });
    return { x: ops.index_select(xs, 0, idx), y: ops.index_select(ys, 0, idxY) };
  }

  private collate(ds: Dataset<Sample>, indices: Int32Array): { x: Tensor; y: Tensor } {
    const xs: Tensor[] = [];
    const ys: (Tensor | number)[] = [];
    for (const i of indices) {
      const s = ds.get(i);
      const [x, y] = Array.isArray(s) ? s : s && typeof s === 'object' ? [s.x, s.y] : [undefined, undefined];
      if (!(x instanceof Tensor) || !(y instanceof Tensor || typeof y === 'number'))
        throw new Error(`DataLoader: dataset.get(${i}) must return { x: Tensor, y: Tensor | number } or [x, y], got ${describe(s)}`);
      xs.push(x);
      ys.push(y);
    }
    let y: Tensor;
    if (ys.every((v) => typeof v === 'number')) {
      if (!ys.every((v) => Number.isInteger(v))) throw new Error('DataLoader: numeric targets from dataset.get must be integer class indices');
      y = tensor(Float64Array.from(ys as number[]), { dtype: 'int64' });
    } else if (ys.every((v) => v instanceof Tensor)) y = ops.stack(ys as Tensor[], 0);
    else throw new Error('DataLoader: dataset.get returned a mix of tensor and number targets within one batch');
    const shape0 = xs[0].shape.join(', ');
    xs.forEach((x, k) => {
      if (x.shape.join(', ') !== shape0) throw new Error(`DataLoader: sample ${indices[k]} has input shape [${x.shape}], sample ${indices[0]} has [${shape0}]`);
    });
    return { x: ops.stack(xs, 0), y };
  }

  /** The batches of the current epoch; a complete pass then advances the epoch. */
  *[Symbol.iterator](): Generator<Batch> {
    const n = this.length;
    for (let b = 0; b < n; b++) yield this.batchAt(b);
    this.setEpoch(this.epoch + 1);
  }
  /** As the sync iterator, yielding to the event loop between batches. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    const n = this.length;
    for (let b = 0; b < n; b++) {
      yield this.batchAt(b);
      await nextTick();
    }
    this.setEpoch(this.epoch + 1);
  }
}

function describe(v: unknown): string {
  if (v instanceof Tensor) return `a Tensor [${v.shape}]`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v && typeof v === 'object') return `an object with keys ${Object.keys(v).join(', ') || '(none)'}`;
  return String(v);
}
