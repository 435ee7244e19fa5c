// Teacher-output cache: a frozen teacher's logits over a whole data set are computed once and stored on disk, keyed by
// (teacher weights hash, data set identity, transform identity). Later epochs and later runs gather rows by sample
// index instead of running the teacher. Random augmentation changes the teacher's input every epoch, so a loader with
// random transforms cannot use the cache: `teacherLogits` refuses it rather than serve stale outputs. External teachers
// (ONNX, TorchScript, black-box) are identified by their `id()` (a hash of the model file, or the endpoint), so a remote
// teacher is queried once per sample; for a teacher that takes raw samples (takesRaw) the key also covers the raw
// samples (the texts, the image files), since different texts can tokenise to the same ids. Each file's header carries the SHA-256 of its rows; a file that does not check
// out is reported and recomputed, never trained on.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, keep, nextTick, noGrad, ops, tensor, tidy, writeFileAtomic } from '../torch';
import { native } from '../torch/handle';
import { Module } from '../nn';
import { DataLoader, ImageDataset, TensorDataset, TextDataset } from '../data';
import { type Teacher, isTeacher, runTeacher } from '../teachers';

/** SHA-256 over a module's state_dict (names, dtypes, shapes and bytes), hex. */
export function hashModule(m: Module): string {
  const h = crypto.createHash('sha256');
  const sd = m.stateDict();
  for (const k of Object.keys(sd).sort()) {
    const t = sd[k];
    h.update(`${k}\0${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(new Uint8Array(native.toBuffer(t._h)));
  }
  return h.digest('hex');
}

/**
 * What a teacher that takes raw samples sees beyond the data set's tensors: a TextDataset's texts, an ImageDataset's
 * files (its pixels are among the tensors). Empty for other sets.
 */
function rawIdentity(ds: TensorDataset): string {
  const h = crypto.createHash('sha256');
  if (ds instanceof TextDataset) for (const t of ds.texts) h.update(`${t}\0`);
  else if (ds instanceof ImageDataset && ds.files) for (const f of ds.files) h.update(`${f}\0`);
  else return '';
  return h.digest('hex');
}

/** Identity of a resident data set: its name, size and a hash of its tensors' bytes. */
export function hashDataset(ds: TensorDataset & { name?: string }): string {
  const h = crypto.createHash('sha256');
  h.update(`${ds.name ?? 'dataset'}\0${ds.length}\0`);
  for (const t of ds.tensors) {
    h.update(`${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(new Uint8Array(native.toBuffer(t._h)));
  }
  return h.digest('hex');
}

export interface TeacherLogitsResult {
  /** [N, C] float32 logits in data set order (kept: dispose when done). */
  logits: Tensor;
  fromCache: boolean;
  file: string;
}

function refuseRandom(loader: DataLoader): void {
  const random = loader.transforms.filter((t) => t.random);
  if (random.length)
    throw new Error(
      `teacher cache: the loader applies random transforms (${random.map((t) => t.name).join(', ')}); the teacher's outputs ` +
        'change every epoch, so they cannot be cached. Run the teacher on each batch instead.',
    );
}

/**
 * The cache file for (teacher weights, `loader.dataset`, the loader's transforms) in `cacheDir`. Throws when the loader
 * applies random transforms.
 */
export function teacherCacheFile(teacher: Module | Teacher, loader: DataLoader, cacheDir: string): string {
  refuseRandom(loader);
  if (!(loader.dataset instanceof TensorDataset)) throw new Error('teacher cache: the data set must be resident (a TensorDataset) to be identified');
  const key = crypto
    .createHash('sha256')
    .update(`${isTeacher(teacher) ? teacher.id() : hashModule(teacher)}\0${hashDataset(loader.dataset)}\0${loader.transforms.map((t) => t.name).join('|')}\0${loader.scale}`)
    .update(isTeacher(teacher) && teacher.takesRaw ? `\0raw\0${rawIdentity(loader.dataset)}` : '')
    .digest('hex')
    .slice(0, 32);
  return path.join(cacheDir, `teacher-logits-${key}.bin`);
}

/** Where warnings about unusable cache files go unless a caller says otherwise. */
const warnLine = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Reads a cache file written by `writeTeacherCache`; null when it does not exist. A file that cannot be trusted — an
 * unreadable header, a size that does not fit it, another row count, logit bytes whose SHA-256 differs from the one
 * stored in the header (or no checksum at all) — is not used: `warn` gets one line naming the file and why, and null
 * is returned so that the caller recomputes the rows and overwrites it.
 */
export function readTeacherCache(file: string, n: number, warn: (line: string) => void = warnLine): Tensor | null {
  if (!fs.existsSync(file)) return null;
  const buf = fs.readFileSync(file);
  const bad = (why: string) => {
    warn(`teacher cache: ${file}: ${why}; recomputing the teacher's outputs`);
    return null;
  };
  let meta: { n: number; c: number; sha256?: string };
  let hl = 0;
  try {
    hl = buf.readUInt32LE(0);
    meta = JSON.parse(buf.subarray(4, 4 + hl).toString('utf8'));
  } catch {
    return bad('corrupt or truncated (unreadable header)');
  }
  const bytes = buf.length - 4 - hl;
  if (!meta || !Number.isInteger(meta.n) || !Number.isInteger(meta.c) || bytes !== meta.n * meta.c * 4)
    return bad(`corrupt or truncated (${bytes} logit bytes for ${meta?.n}×${meta?.c})`);
  if (meta.n !== n) return bad(`holds ${meta.n} rows, the data set has ${n}`);
  const body = buf.subarray(4 + hl);
  if (typeof meta.sha256 !== 'string') return bad('no checksum in its header (written by an older version)');
  const sum = crypto.createHash('sha256').update(body).digest('hex');
  if (sum !== meta.sha256) return bad(`corrupt: the logits' SHA-256 is ${sum.slice(0, 16)}…, the header says ${meta.sha256.slice(0, 16)}…`);
  const data = new Float32Array(meta.n * meta.c);
  new Uint8Array(data.buffer).set(body);
  return keep(tensor(data, { shape: [meta.n, meta.c] }));
}

/** Writes [N, C] logits atomically: a small JSON header (shape, teacher, the SHA-256 of the rows), then float32 rows. */
export function writeTeacherCache(file: string, logits: Tensor, teacherName = 'teacher'): void {
  const [n, c] = logits.shape;
  const data = tidy(() => logits.float().cpu().contiguous());
  try {
    const body = Buffer.from(native.toBuffer(data._h));
    const meta = Buffer.from(JSON.stringify({ n, c, teacher: teacherName, sha256: crypto.createHash('sha256').update(body).digest('hex') }), 'utf8');
    const head = Buffer.alloc(4);
    head.writeUInt32LE(meta.length, 0);
    writeFileAtomic(file, Buffer.concat([head, meta, body]));
  } finally {
    if (data !== logits) data.dispose();
  }
}

/**
 * Runs the frozen teacher (eval mode, no-grad) over the loader's batches of epoch 0 (the same batches, hence the same
 * bits, as a first training epoch that fills the cache as it goes) and returns the logits in data set order.
 */
export async function computeTeacherLogits(teacher: Module | Teacher, loader: DataLoader): Promise<Tensor> {
  refuseRandom(loader);
  const module = teacher instanceof Module ? teacher : null;
  const wasTraining = module?.training ?? false;
  const epoch = loader.currentEpoch;
  module?.eval();
  let out: Tensor | null = null;
  try {
    loader.setEpoch(0);
    let covered = 0;
    for (let b = 0; b < loader.length; b++) {
      const batch = loader.batchAt(b);
      const ext = isTeacher(teacher) ? await runTeacher(teacher, batch.x, ['logits'], { dataset: loader.dataset, indices: batch.indices }) : null;
      try {
        tidy(() => {
          const t = noGrad(() => (ext ? ext.get('logits')! : (module!.call(batch.x) as Tensor)).float());
          if (!out) out = keep(ops.zeros([loader.dataset.length, t.shape[1]], { dtype: 'float32', device: t.device }));
          noGrad(() => ops.index_copy_(out!, 0, tensor(batch.indices, { dtype: 'int64', device: t.device }), t));
        });
      } finally {
        batch.dispose();
        if (ext) for (const v of ext.values()) v.dispose();
      }
      covered += batch.indices.length;
      await nextTick();
    }
    if (covered !== loader.dataset.length)
      throw new Error(`teacher cache: the loader's batches cover ${covered} of ${loader.dataset.length} samples (dropLast?); every sample needs a row`);
  } catch (e) {
    (out as Tensor | null)?.dispose();
    throw e;
  } finally {
    loader.setEpoch(epoch);
    module?.train(wasTraining);
  }
  return out!;
}

/**
 * The teacher's logits for every sample of `loader.dataset`, in data set order, from `cacheDir` when a file for the
 * same (teacher, data, transforms) exists and checks out, otherwise computed in eval mode under no-grad and written
 * atomically (a damaged file is reported to `warn`, default stderr, and overwritten).
 */
export async function teacherLogits(teacher: Module | Teacher, loader: DataLoader, cacheDir: string, warn?: (line: string) => void): Promise<TeacherLogitsResult> {
  const file = teacherCacheFile(teacher, loader, cacheDir);
  const found = readTeacherCache(file, loader.dataset.length, warn);
  if (found) return { logits: found, fromCache: true, file };
  const logits = await computeTeacherLogits(teacher, loader);
  try {
    writeTeacherCache(file, logits, teacher.constructor.name);
  } catch (e) {
    logits.dispose();
    throw e;
  }
  return { logits, fromCache: false, file };
}
