// Cached views: augmented distillation at the speed of a cached teacher (FKD, Shen & Xing 2022), with the student and
// the teacher seeing the same crop and flip (consistent views, Beyer et al. 2022).
//
// Before training, every image of the training set gets K views: K sets of augmentation parameters (crop corner, flip;
// see data/views.ts), drawn from a generator seeded by (seed, row, view), so a view does not depend on batches or on
// the order views are made in. The frozen teacher runs once on each view, and its output is stored top-k compressed:
// the k largest logits (sorted), their class indices, and the teacher's probability mass outside them at the
// distillation temperature T (the tail, r = 1 − Σ_top-k softmax(z / T)). The parameters are stored next to the outputs.
//
// Training then draws, for each sample and epoch, one of its K views (a generator seeded by (seed, epoch, row), so a
// resumed run draws the same), builds the student's input from exactly those parameters (the same gather as the
// random transforms), and hands the stored teacher outputs to the loss as batch tensors: `batch.teacher_topk_logits`
// [B, k], `batch.teacher_topk_indices` [B, k] (int64) and `batch.teacher_topk_tail` [B]. The loss `soft_topk` rebuilds
// the teacher's distribution at T as FKD does: the top-k classes get softmax(top-k logits / T) · (1 − r), and the
// missing mass r is spread evenly over the other C − k classes (FKD's uniform tail); then KL(target ‖ softmax(s / T))·T²,
// as the `kl` loss. With k = C nothing is missing (r = 0) and `soft_topk` is `kl` on the stored view.
//
// The cache file (one per teacher, data set, transforms, K, k, T and seed) is written atomically (temp + rename); its
// header carries the SHA-256 of the body, and a file that does not check out is reported and rebuilt, never trained on.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, dispose, keep, nextTick, noGrad, ops, tensor, tidy, writeFileAtomic } from '../torch';
import { Module } from '../nn';
import {
  type BatchTransform, type ViewParams, type ViewSpec, DataLoader, Rng, TensorDataset, applyViews, drawView, mixSeed, rowIndex, splitViewTransforms, viewSeed, viewSpecName,
} from '../data';
import { type Teacher, isTeacher, runTeacher } from '../teachers';
import { hashDataset, hashModule } from './teacher-cache';
import type { LossResult } from './terms';
import type { BatchSource, EngineBatch } from './engine';

export interface ViewCacheOptions {
  /** Views per image (K). */
  views: number;
  /** Logits kept per view (k; at most the number of classes, which keeps everything). */
  topk: number;
  /** The distillation temperature at which the tail mass is stored (used only when k < classes). */
  temperature: number;
  /** Seed of the views' parameters. */
  seed: number;
  cacheDir: string;
  /** Where a damaged or mismatched cache file is reported (default stderr). */
  warn?: (line: string) => void;
}

/** K views per image with the teacher's top-k outputs, resident on the training device. */
export interface ViewCache {
  file: string;
  fromCache: boolean;
  /** Images, views per image, logits kept, classes. */
  n: number;
  views: number;
  k: number;
  classes: number;
  temperature: number;
  /** [n·K·3]: top, left, flip of view v of row i at (i·K + v)·3. */
  params: Int32Array;
  /** [n·K, k] float32, largest first; row i·K + v. */
  logits: Tensor;
  /** [n·K, k] int64 class indices. */
  indices: Tensor;
  /** [n·K] float32 teacher probability mass outside the top k at the temperature. */
  tail: Tensor;
  dispose(): void;
}

const MAGIC = 'TSDVIEW1';

/** The cache file of (teacher, data set, the loader's transforms and scaling, K, k, T, seed) in `cacheDir`. */
export function viewCacheFile(teacher: Module | Teacher, loader: DataLoader, o: Pick<ViewCacheOptions, 'views' | 'topk' | 'temperature' | 'seed' | 'cacheDir'>): string {
  if (!(loader.dataset instanceof TensorDataset)) throw new Error('view cache: the data set must be resident (a TensorDataset) to be identified');
  const { spec, rest } = splitViewTransforms(loader.transforms);
  const key = crypto
    .createHash('sha256')
    .update(
      [isTeacher(teacher) ? teacher.id() : hashModule(teacher), hashDataset(loader.dataset), viewSpecName(spec), rest.map((t) => t.name).join('|'), loader.scale, o.views, o.topk, o.temperature, o.seed].join('\0'),
    )
    .digest('hex')
    .slice(0, 32);
  return path.join(o.cacheDir, `teacher-views-${key}.bin`);
}

function checkOptions(o: Pick<ViewCacheOptions, 'views' | 'topk' | 'temperature' | 'seed'>): void {
  if (!Number.isInteger(o.views) || o.views < 1) throw new Error(`view cache: views must be a positive integer, got ${o.views}`);
  if (!Number.isInteger(o.topk) || o.topk < 1) throw new Error(`view cache: topk must be a positive integer, got ${o.topk}`);
  if (!(o.temperature > 0)) throw new Error(`view cache: the temperature must be a positive number, got ${o.temperature}`);
  if (!Number.isInteger(o.seed)) throw new Error(`view cache: seed must be an integer, got ${o.seed}`);
}

/** The parameters of every view of every row: [n·K·3] (top, left, flip). */
export function drawAllViews(spec: ViewSpec, n: number, views: number, h: number, w: number, seed: number): Int32Array {
  const params = new Int32Array(n * views * 3);
  for (let i = 0; i < n; i++)
    for (let v = 0; v < views; v++) params.set(drawView(spec, h, w, new Rng(viewSeed(seed, i, v))), (i * views + v) * 3);
  return params;
}

/** The views `rows · K + view[j]` of a batch as ViewParams. */
function paramsOf(params: Int32Array, slots: ArrayLike<number>): ViewParams {
  const n = slots.length;
  const p: ViewParams = { top: new Int32Array(n), left: new Int32Array(n), flip: new Uint8Array(n) };
  for (let j = 0; j < n; j++) {
    const o = slots[j] * 3;
    p.top[j] = params[o];
    p.left[j] = params[o + 1];
    p.flip[j] = params[o + 2];
  }
  return p;
}

/** A model's input for stored views: the crop and flip of `p` on float images [B, C, H, W], then `rest` in order. */
export function viewInput(x: Tensor, spec: ViewSpec, p: ViewParams, rest: BatchTransform[]): Tensor {
  return tidy(() => {
    let out = applyViews(x, spec, p);
    // deterministic transforms draw nothing; they get a generator only because apply takes one
    for (const t of rest) out = t.apply(out, new Rng(0));
    return out;
  });
}

/** A loader over the same data, order and scaling with no transforms: float images in [0, 1] (the views' source). */
function sourceLoader(loader: DataLoader, shuffle: boolean): DataLoader {
  return new DataLoader(loader.dataset, {
    batchSize: loader.batchSize, shuffle, seed: loader.seed, dropLast: shuffle ? loader.dropLast : false, scale: loader.scale,
    ...(loader.device !== undefined ? { device: loader.device } : {}), residentFloatMB: loader.residentFloatMB, transforms: [],
  });
}

interface Body {
  params: Int32Array;
  logits: Float32Array;
  indices: Int32Array;
  tail: Float32Array;
}

/**
 * Runs the teacher (eval mode, no-grad) on every view of every image (`loader`'s data, crop and flip from its
 * transforms, then its deterministic transforms) and keeps the top-k logits, their indices and the tail mass at T.
 */
export async function computeViewOutputs(teacher: Module | Teacher, loader: DataLoader, o: Pick<ViewCacheOptions, 'views' | 'topk' | 'temperature' | 'seed'>): Promise<Body & { n: number; k: number; classes: number }> {
  checkOptions(o);
  const { spec, rest } = splitViewTransforms(loader.transforms);
  const src = sourceLoader(loader, false);
  const module = teacher instanceof Module ? teacher : null;
  const wasTraining = module?.training ?? false;
  module?.eval();
  const n = loader.dataset.length, K = o.views;
  let params: Int32Array | null = null;
  let out: { logits: Float32Array; indices: Int32Array; tail: Float32Array; k: number; classes: number } | null = null;
  try {
    for (let b = 0; b < src.length; b++) {
      const batch = src.batchAt(b);
      try {
        if (!params) params = drawAllViews(spec, n, K, batch.x.shape[2], batch.x.shape[3], o.seed);
        for (let v = 0; v < K; v++) {
          const slots = Int32Array.from(batch.indices, (i) => i * K + v);
          const x = viewInput(batch.x, spec, paramsOf(params, slots), rest);
          let ext: Map<string, Tensor> | null = null;
          try {
            ext = isTeacher(teacher) ? await runTeacher(teacher, x, ['logits']) : null;
            tidy(() =>
              noGrad(() => {
                const z = (ext ? ext.get('logits')! : (module!.call(x) as Tensor)).float().cpu();
                const C = z.shape[1];
                const k = Math.min(o.topk, C);
                if (!out) out = { logits: new Float32Array(n * K * k), indices: new Int32Array(n * K * k), tail: new Float32Array(n * K), k, classes: C };
                const [vals, idx] = z.topk(k, 1);
                // the tail mass at T, in float64 (1 − Σ head probabilities; exactly 0 when nothing is left out)
                const tail = k === C ? null : (z.double().div(o.temperature).softmax(1).gather(1, idx).sum(1).neg().add(1).clamp(0, 1).float().data() as Float32Array);
                const vd = vals.data() as Float32Array, id = idx.int().data() as Int32Array;
                for (let j = 0; j < slots.length; j++) {
                  out.logits.set(vd.subarray(j * k, (j + 1) * k), slots[j] * k);
                  out.indices.set(id.subarray(j * k, (j + 1) * k), slots[j] * k);
                  out.tail[slots[j]] = tail ? tail[j] : 0;
                }
              }),
            );
          } finally {
            x.dispose();
            if (ext) dispose([...ext.values()]);
          }
          await nextTick();
        }
      } finally {
        batch.dispose();
      }
    }
  } finally {
    module?.train(wasTraining);
  }
  if (!out || !params) throw new Error('view cache: the data set is empty');
  const r = out as { logits: Float32Array; indices: Int32Array; tail: Float32Array; k: number; classes: number };
  return { n, k: r.k, classes: r.classes, params, logits: r.logits, indices: r.indices, tail: r.tail };
}

const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Writes a view cache atomically: magic, a JSON header (sizes, options, the SHA-256 of the body), then the body. */
export function writeViewCache(file: string, meta: { n: number; views: number; k: number; classes: number; temperature: number; seed: number; teacher: string }, body: Body): void {
  const parts = [body.params, body.logits, body.indices, body.tail].map(bytesOf);
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  const head = Buffer.from(JSON.stringify({ ...meta, sha256: h.digest('hex') }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.length, 0);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, Buffer.concat([Buffer.from(MAGIC, 'latin1'), len, head, ...parts]));
}

/**
 * Reads a view cache written by `writeViewCache`; null when it does not exist. A file that cannot be trusted (another
 * magic, an unreadable header, a size that does not fit it, other sizes than expected, a body whose SHA-256 differs
 * from the header's) is reported to `warn` and null is returned, so that the caller rebuilds and overwrites it.
 */
export function readViewCache(file: string, expect: { n: number; views: number; topk: number }, warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): (Body & { k: number; classes: number; temperature: number }) | null {
  if (!fs.existsSync(file)) return null;
  const buf = fs.readFileSync(file);
  const bad = (why: string) => {
    warn(`view cache: ${file}: ${why}; recomputing the teacher's outputs for every view`);
    return null;
  };
  let meta: { n: number; views: number; k: number; classes: number; temperature: number; sha256?: string };
  let off = 0;
  try {
    if (buf.toString('latin1', 0, 8) !== MAGIC) return bad('not a view cache (wrong magic)');
    const hl = buf.readUInt32LE(8);
    meta = JSON.parse(buf.subarray(12, 12 + hl).toString('utf8'));
    off = 12 + hl;
  } catch {
    return bad('corrupt or truncated (unreadable header)');
  }
  const { n, views: K, k } = meta ?? ({} as typeof meta);
  if (![n, K, k, meta?.classes].every((v) => Number.isInteger(v) && v > 0)) return bad('corrupt header (sizes)');
  const sizes = [n * K * 3 * 4, n * K * k * 4, n * K * k * 4, n * K * 4];
  const total = sizes.reduce((a, b) => a + b, 0);
  if (buf.length - off !== total) return bad(`corrupt or truncated (${buf.length - off} body bytes for ${n} images × ${K} views × top-${k})`);
  if (n !== expect.n || K !== expect.views || k !== Math.min(expect.topk, meta.classes)) return bad(`holds ${n} images × ${K} views × top-${k}, expected ${expect.n} × ${expect.views} × top-${Math.min(expect.topk, meta.classes)}`);
  const body = buf.subarray(off);
  const sum = crypto.createHash('sha256').update(body).digest('hex');
  if (typeof meta.sha256 !== 'string' || sum !== meta.sha256) return bad(`corrupt: the body's SHA-256 is ${sum.slice(0, 16)}…, the header says ${String(meta.sha256).slice(0, 16)}…`);
  // copies (aligned, independent of the file buffer)
  const take = <T>(i: number, make: (b: ArrayBuffer) => T): T => {
    const start = sizes.slice(0, i).reduce((a, b) => a + b, 0);
    return make(body.buffer.slice(body.byteOffset + start, body.byteOffset + start + sizes[i]) as ArrayBuffer);
  };
  return {
    k, classes: meta.classes, temperature: meta.temperature,
    params: take(0, (b) => new Int32Array(b)), logits: take(1, (b) => new Float32Array(b)), indices: take(2, (b) => new Int32Array(b)), tail: take(3, (b) => new Float32Array(b)),
  };
}

/**
 * The teacher's top-k outputs for K views of every image of `loader.dataset` (views drawn from the loader's random
 * crop and flip), from `cacheDir` when a file for the same (teacher, data, transforms, K, k, T, seed) exists and checks
 * out, otherwise computed and written atomically. The tensors live on `device` (default the loader's).
 */
export async function teacherViews(teacher: Module | Teacher, loader: DataLoader, o: ViewCacheOptions & { device?: string }): Promise<ViewCache> {
  checkOptions(o);
  const file = viewCacheFile(teacher, loader, o);
  const n = loader.dataset.length;
  let found = readViewCache(file, { n, views: o.views, topk: o.topk }, o.warn);
  const fromCache = !!found;
  if (!found) {
    const made = await computeViewOutputs(teacher, loader, o);
    writeViewCache(file, { n, views: o.views, k: made.k, classes: made.classes, temperature: o.temperature, seed: o.seed, teacher: teacher.constructor.name }, made);
    found = { ...made, temperature: o.temperature };
  }
  const f = found;
  const device = o.device ?? (loader.device !== undefined ? String(loader.device) : 'cpu');
  const rows = n * o.views;
  const on = (t: Tensor) => {
    if (device === 'cpu') return t;
    const moved = t.to({ device });
    t.dispose();
    return moved;
  };
  const logits = keep(on(tensor(f.logits, { shape: [rows, f.k] })));
  const indices = keep(on(tidy(() => tensor(f.indices, { shape: [rows, f.k] }).long())));
  const tail = keep(on(tensor(f.tail, { shape: [rows] })));
  return {
    file, fromCache, n, views: o.views, k: f.k, classes: f.classes, temperature: f.temperature, params: f.params, logits, indices, tail,
    dispose() {
      dispose([logits, indices, tail]);
    },
  };
}

/** The view (0 … K − 1) each sample of a batch uses in an epoch: drawn from (seed, epoch, row). */
export function viewsOf(seed: number, epoch: number, rows: Int32Array, views: number): Int32Array {
  return Int32Array.from(rows, (i) => new Rng(mixSeed(mixSeed(seed ^ 0x78dde6e4, epoch), i)).int(views));
}

/**
 * Training batches over cached views (a BatchSource for runEngine): the loader's order and batches, each sample's
 * input the crop and flip of the view drawn for it this epoch (then the loader's deterministic transforms), and the
 * teacher's stored outputs for that view as `batch.teacher_topk_logits`, `teacher_topk_indices`, `teacher_topk_tail`.
 */
export class ViewCacheBatches implements BatchSource {
  private readonly src: DataLoader;
  private readonly spec: ViewSpec;
  private readonly rest: BatchTransform[];
  private epoch = 0;
  constructor(readonly loader: DataLoader, readonly cache: ViewCache) {
    if (loader.dataset.length !== cache.n) throw new Error(`ViewCacheBatches: the cache holds ${cache.n} images, the data set ${loader.dataset.length}`);
    ({ spec: this.spec, rest: this.rest } = splitViewTransforms(loader.transforms));
    this.src = sourceLoader(loader, loader.shuffle);
  }
  get length(): number {
    return this.src.length;
  }
  setEpoch(epoch: number): void {
    this.epoch = epoch;
    this.src.setEpoch(epoch);
  }
  /** Data-parallel: each batch becomes this process's contiguous share of the global batch (see DataLoader.setShard). */
  setShard(rank: number, world: number): void {
    this.src.setShard(rank, world);
  }
  /** The whole batch's size, whatever the shard. */
  globalRows(b: number): number {
    return this.src.globalRows(b);
  }
  /** The cache slots (row · K + view) of a batch's samples in the current epoch. */
  slotsOf(indices: Int32Array): Int32Array {
    const K = this.cache.views;
    const v = viewsOf(this.loader.seed, this.epoch, indices, K);
    return Int32Array.from(indices, (i, j) => i * K + v[j]);
  }
  batchAt(i: number): EngineBatch & { indices: Int32Array; taps: Record<string, Tensor> } {
    const b = this.src.batchAt(i);
    let x: Tensor, taps: Record<string, Tensor>;
    try {
      const slots = this.slotsOf(b.indices);
      x = noGrad(() => viewInput(b.x, this.spec, paramsOf(this.cache.params, slots), this.rest));
      const c = this.cache;
      taps = tidy(() => {
        const idx = rowIndex(slots, c.logits.device);
        return { teacher_topk_logits: c.logits.indexSelect(0, idx), teacher_topk_indices: c.indices.indexSelect(0, idx), teacher_topk_tail: c.tail.indexSelect(0, idx) };
      });
    } catch (e) {
      b.y.dispose();
      throw e;
    } finally {
      b.x.dispose();
    }
    const y = b.y;
    return {
      x, y, indices: b.indices, taps,
      dispose() {
        dispose([x, y, ...Object.values(taps)]);
      },
    };
  }
}

/**
 * The `soft_topk` loss: KL(target ‖ softmax(student / T)) · T², the target being the teacher's distribution rebuilt
 * from its stored top-k logits [B, k], their class indices [B, k] and the tail mass r [B] as FKD does (see the header).
 * Returned as `kl` returns it: the summed divergence and the scale T² / B.
 */
export function softTopkLoss(student: Tensor, topLogits: Tensor, topIndices: Tensor, tail: Tensor, temperature: number): LossResult {
  const [B, C] = student.shape;
  if (student.ndim !== 2) throw new Error(`soft_topk: student logits must be [batch, classes], got [${student.shape}]`);
  if (topLogits.ndim !== 2 || topLogits.shape[0] !== B || topIndices.shape.join() !== topLogits.shape.join() || tail.shape.join() !== `${B}`)
    throw new Error(`soft_topk: teacher top-k logits [${topLogits.shape}], indices [${topIndices.shape}] and tail [${tail.shape}] do not fit student logits [${student.shape}]`);
  const k = topLogits.shape[1];
  if (k > C) throw new Error(`soft_topk: ${k} stored logits for ${C} classes`);
  if (!(temperature > 0)) throw new Error(`soft_topk: temperature must be positive, got ${temperature}`);
  const invT = 1 / temperature;
  const target = noGrad(() =>
    tidy(() => {
      const head = ops.log_softmax_int(topLogits.float().mul(invT), 1, null);
      const idx = topIndices.long();
      if (k === C) return ops.zeros([B, C], { dtype: 'float32', device: student.device }).scatter(1, idx, head);
      // the missing mass r spread evenly over the C − k other classes; the head scaled to 1 − r (r floored at 1e-12)
      const r = tail.float().clamp(1e-12, 1).view(B, 1);
      const lp = head.add(r.neg().log1p());
      return r.log().sub(Math.log(C - k)).expand(B, C).contiguous().scatter(1, idx, lp);
    }),
  );
  const klSum = ops.kl_div(ops.log_softmax_int(student.mul(invT), 1, null), target, 2, { log_target: true });
  return { value: klSum, scale: (temperature * temperature) / B };
}
