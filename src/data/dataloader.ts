// Batches from a data set.
//
// Fast path (TensorDataset / ImageDataset): the epoch's sample order is a permutation drawn from the loader's own
// seeded Rng (seed mixed with the epoch number), rows are gathered from the resident tensors with one index_select
// per tensor, uint8 inputs become float32 in [0, 1] (divided by 255), then the batch transforms run on the whole
// batch. Generic path (any `Dataset` whose get(i) returns a `Sample`): samples are fetched one by one and stacked.
//
// Resident float mode (TensorDataset only): when every batch transform is deterministic and per-sample
// (`perSample: true`, as `normalize`; see transforms.ts), the loader converts the whole input tensor once, exactly as it
// would convert each batch (to the loader's device, uint8 → float32, ÷ 255 unless `scale: false`, the transforms in
// order), and each batch is then one index_select of float rows. The conversion runs on the first batch, in chunks of
// about 16 MiB, and the copy is stored on the data set (TensorDataset.derived), so loaders with the same device, scaling
// and transform names share it and `dataset.dispose()` releases it. Rule: the copy is made when it would hold at most
// `residentFloatMB` MiB together with the copies the data set already holds (default 512 MiB, or the environment
// variable TSDISTILL_RESIDENT_FLOAT_MB; 0 turns the mode off). Fashion-MNIST or MNIST training images (60000 × 784
// float32 = 179 MiB) fit; CIFAR-10's (50000 × 3072 × 4 = 586 MiB) do not and keep the per-batch conversion. Loaders
// with a random transform, a transform without `perSample`, or nothing to convert (float inputs and no transforms)
// keep the per-batch path too. The batches are bit-identical to the per-batch path: the same elementwise ops on the
// same values, only applied before the gather instead of after it (test/data.test.ts checks every batch of an epoch).
//
// Ownership: every batch belongs to the caller. Dispose it after use with `batch.dispose()` (or `dispose([b.x, b.y])`),
// or produce and consume it inside a `tidy`. The loader keeps no reference to batches it has handed out.
//
// Prefetching: batches are made on demand, synchronously. libtorch calls run on the JavaScript thread, so building
// batch b+1 early cannot overlap with training on batch b; it would only hold one more batch in memory. For resident
// data a batch costs a gather and a few elementwise ops (well under a millisecond for MNIST-sized batches). The async
// iterator yields to the event loop between batches, so timers, progress output and finalizers run during an epoch.
import { DeviceLike, Tensor, nextTick, noGrad, ops, tensor, tidy } from '../torch';
import { Dataset, Sample, TensorDataset, tensorBytes } from './dataset';
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
  /**
   * Budget of the resident float mode (see the file header): the most MiB of converted copies the data set may hold.
   * Default 512, or $TSDISTILL_RESIDENT_FLOAT_MB; 0 converts every batch instead.
   */
  residentFloatMB?: number;
  /**
   * Data-parallel training: this process is rank `rank` of `world` and takes its share of every batch (see
   * DataLoader.setShard). Default: the whole batch.
   */
  shard?: { rank: number; world: number };
}

/** The resident float budget when a loader sets none: $TSDISTILL_RESIDENT_FLOAT_MB, else 512 MiB. */
export function defaultResidentFloatMB(): number {
  const env = process.env.TSDISTILL_RESIDENT_FLOAT_MB;
  if (env === undefined || env === '') return 512;
  const v = Number(env);
  if (!(v >= 0)) throw new Error(`TSDISTILL_RESIDENT_FLOAT_MB must be a non-negative number of MiB, got '${env}'`);
  return v;
}

/**
 * Row numbers as an index tensor for index_select on `device`: int32 on the CPU, which index_select takes as is (an
 * int64 index would cost a conversion op per gather), int64 elsewhere.
 */
export function rowIndex(indices: Int32Array, device: string): Tensor {
  return device === 'cpu' ? tensor(indices) : tensor(indices, { dtype: 'int64', device });
}

/** Rows converted at a time when building a resident copy: about 16 MiB of float32 per chunk. */
const CHUNK_ELEMENTS = 4 << 20;

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
  readonly residentFloatMB: number;
  private epoch = 0;
  private order: Int32Array | null = null;
  private shardOf: { rank: number; world: number } | null = null;
  /** The data set's key of this loader's resident copy; null: per-batch conversion; undefined: not decided yet. */
  private residentKey: string | null | undefined = undefined;

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
    if (opts.residentFloatMB !== undefined && !(opts.residentFloatMB >= 0))
      throw new Error(`DataLoader: residentFloatMB must be a non-negative number, got ${opts.residentFloatMB}`);
    this.residentFloatMB = opts.residentFloatMB ?? defaultResidentFloatMB();
    this.transforms.forEach((t, i) => {
      if (!t || typeof t.apply !== 'function') throw new Error(`DataLoader: transforms[${i}] is not a BatchTransform (an object with name, random and apply)`);
    });
    if (opts.shard) this.setShard(opts.shard.rank, opts.shard.world);
  }

  /**
   * Data-parallel training: from now on `batchAt(b)` returns rank `rank`'s share of batch b — the rows
   * [⌊rank·m/world⌋, ⌊(rank+1)·m/world⌋) of the m samples the whole batch holds. The batches (their number, order and
   * samples) stay those of one process, so `world` processes together take the same steps over the same samples as one
   * process with the same batchSize, whatever `world` is (batchSize is the global batch). `world` 1 undoes it.
   */
  setShard(rank: number, world: number): void {
    if (!Number.isInteger(world) || world < 1) throw new Error(`DataLoader: shard world must be a positive integer, got ${world}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= world) throw new Error(`DataLoader: shard rank must be an integer in [0, ${world}), got ${rank}`);
    if (world > this.batchSize) throw new Error(`DataLoader: ${world} processes cannot share batches of ${this.batchSize} samples (batchSize is the global batch; raise it to at least ${world})`);
    this.shardOf = world === 1 ? null : { rank, world };
  }

  /** The share this loader takes ({rank, world}), or null for whole batches. */
  get shard(): { rank: number; world: number } | null {
    return this.shardOf;
  }

  /** Samples in batch `b` of the current epoch over all processes (the whole batch). */
  globalRows(b: number): number {
    return Math.min(this.batchSize, this.dataset.length - b * this.batchSize);
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
    let start = b * this.batchSize;
    let end = Math.min(start + this.batchSize, order.length);
    if (this.shardOf) {
      const m = end - start, { rank, world } = this.shardOf;
      [start, end] = [start + Math.floor((rank * m) / world), start + Math.floor(((rank + 1) * m) / world)];
    }
    const indices = order.slice(start, end);
    const { x, y } = tidy(() =>
      noGrad(() => {
        const ds = this.dataset;
        const resident = ds instanceof TensorDataset ? this.residentInputs(ds) : null;
        if (resident) {
          // the inputs were converted once (see the file header): one gather; the targets as on the per-batch path
          const ys = (ds as TensorDataset).tensors[1];
          const idx = rowIndex(indices, resident.device);
          const x = ops.index_select(resident, 0, idx);
          let y = ops.index_select(ys, 0, ys.device === resident.device ? idx : rowIndex(indices, ys.device));
          if (this.device !== undefined) y = y.to({ device: this.device });
          return { x, y };
        }
        let { x, y } = ds instanceof TensorDataset ? this.gather(ds, indices) : this.collate(ds, indices);
        if (this.device !== undefined) y = y.to({ device: this.device });
        x = this.convert(x, () => new Rng(mixSeed(mixSeed(this.seed ^ 0x5bd1e995, this.epoch), b)));
        return { x, y };
      }),
    );
    return makeBatch(x, y, indices);
  }

  /**
   * Inputs as the model sees them: moved to the loader's device, uint8 to float32 (÷ 255 when scaling), then the
   * transforms in order. The per-batch path and the resident copy both go through here, so they run the same ops.
   */
  private convert(x: Tensor, rng: () => Rng): Tensor {
    if (this.device !== undefined) x = x.to({ device: this.device });
    if (x.dtype === 'uint8') x = this.scale ? x.float().div_(255) : x.float();
    if (this.transforms.length) {
      const r = rng();
      for (const t of this.transforms) x = t.apply(x, r);
    }
    return x;
  }

  /**
   * Whether batches come from a resident converted copy (see the file header). The first batch decides; asking first
   * decides (and builds the copy) now.
   */
  usesResidentFloat(): boolean {
    const ds = this.dataset;
    return ds instanceof TensorDataset && tidy(() => noGrad(() => this.residentInputs(ds))) !== null;
  }

  /** The data set's resident converted inputs, built on first use; null when the mode does not apply or does not fit. */
  private residentInputs(ds: TensorDataset): Tensor | null {
    if (this.residentKey === null) return null;
    if (this.residentKey === undefined) {
      const xs = ds.tensors[0];
      const eligible =
        this.residentFloatMB > 0 && this.transforms.every((t) => !t.random && t.perSample === true) && (xs.dtype === 'uint8' || this.transforms.length > 0);
      this.residentKey = eligible
        ? `resident-float\0${this.device ?? xs.device}\0${xs.dtype === 'uint8' && this.scale ? 'scale' : 'noscale'}\0${this.transforms.map((t) => t.name).join('|')}`
        : null;
      if (this.residentKey === null) return null;
    }
    const found = ds.derived(this.residentKey);
    if (found && !found.isDisposed) return found;
    const built = tidy(() => this.buildResident(ds));
    if (!built) {
      this.residentKey = null;
      return null;
    }
    ds.setDerived(this.residentKey, built);
    return built;
  }

  /** Converts the whole input tensor chunk by chunk into one preallocated tensor; null when it exceeds the budget. */
  private buildResident(ds: TensorDataset): Tensor | null {
    const xs = ds.tensors[0];
    const n = xs.shape[0];
    if (n === 0) return null;
    const rowElements = Math.max(1, xs.numel() / Math.max(1, n));
    const chunk = Math.max(1, Math.min(n, Math.floor(CHUNK_ELEMENTS / rowElements)));
    // deterministic transforms draw nothing; they get a generator only because apply takes one
    const rng = () => new Rng(0);
    const first = this.convert(xs.narrow(0, 0, chunk), rng);
    if (first.ndim === 0 || first.shape[0] !== chunk)
      throw new Error(`DataLoader: the transforms turned ${chunk} rows into [${first.shape}]; per-sample transforms must keep dimension 0`);
    const bytes = (tensorBytes(first) / chunk) * n;
    if (bytes + ds.derivedBytes() > this.residentFloatMB * 2 ** 20) return null;
    if (chunk === n) return first;
    const out = ops.empty_memory_format([n, ...first.shape.slice(1)], { dtype: first.dtype, device: first.device });
    out.narrow(0, 0, chunk).copy_(first);
    for (let start = chunk; start < n; start += chunk) {
      const len = Math.min(chunk, n - start);
      tidy(() => {
        out.narrow(0, start, len).copy_(this.convert(xs.narrow(0, start, len), rng));
      });
    }
    return out;
  }

  private gather(ds: TensorDataset, indices: Int32Array): { x: Tensor; y: Tensor } {
    const [xs, ys] = ds.tensors;
    const idx = rowIndex(indices, xs.device);
    const idxY = ys.device === xs.device ? idx : rowIndex(indices, ys.device);
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
