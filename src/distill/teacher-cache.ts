// Teacher-output cache: a frozen teacher's logits over a whole data set are computed once and stored on disk, keyed by
// (teacher weights hash, data set identity, transform identity). Later epochs and later runs gather rows by sample
// index instead of running the teacher. Random augmentation changes the teacher's input every epoch, so a loader with
// random transforms cannot use the cache: `teacherLogits` refuses it rather than serve stale outputs.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, cat, keep, noGrad, tensor, tidy, writeFileAtomic } from '../torch';
import { native } from '../torch/handle';
import type { Module } from '../nn';
import { DataLoader, TensorDataset } from '../data';

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

/**
 * The teacher's logits for every sample of `loader.dataset`, in data set order, from `cacheDir` when a file for the
 * same (teacher, data, transforms) exists, otherwise computed in eval mode under no-grad and written atomically.
 */
export async function teacherLogits(teacher: Module, loader: DataLoader, cacheDir: string): Promise<TeacherLogitsResult> {
  const random = loader.transforms.filter((t) => t.random);
  if (random.length)
    throw new Error(
      `teacher cache: the loader applies random transforms (${random.map((t) => t.name).join(', ')}); the teacher's outputs ` +
        'change every epoch, so they cannot be cached. Run the teacher on each batch instead.',
    );
  const key = crypto
    .createHash('sha256')
    .update(`${hashModule(teacher)}\0${hashDataset(loader.dataset as TensorDataset)}\0${loader.transforms.map((t) => t.name).join('|')}\0${loader.scale}`)
    .digest('hex')
    .slice(0, 32);
  const file = path.join(cacheDir, `teacher-logits-${key}.bin`);
  const n = loader.dataset.length;
  if (fs.existsSync(file)) {
    const buf = fs.readFileSync(file);
    const hl = buf.readUInt32LE(0);
    const meta = JSON.parse(buf.subarray(4, 4 + hl).toString('utf8'));
    const bytes = buf.length - 4 - hl;
    if (meta.n !== n || bytes !== meta.n * meta.c * 4)
      throw new Error(`${file}: cache file is corrupt or truncated (${bytes} logit bytes for ${meta.n}×${meta.c}); delete it to recompute`);
    const data = new Float32Array(meta.n * meta.c);
    new Uint8Array(data.buffer).set(buf.subarray(4 + hl));
    return { logits: keep(tensor(data, { shape: [meta.n, meta.c] })), fromCache: true, file };
  }
  const wasTraining = teacher.training;
  teacher.eval();
  const parts: Tensor[] = [];
  let c = 0;
  try {
    // batches in data set order: an unshuffled view of the same data and transforms
    const ordered = new DataLoader(loader.dataset as TensorDataset, { batchSize: 512, transforms: loader.transforms, seed: loader.seed, scale: loader.scale });
    for (let b = 0; b < ordered.length; b++) {
      const batch = ordered.batchAt(b);
      const out = tidy(() => noGrad(() => (teacher.call(batch.x) as Tensor).float()));
      batch.x.dispose();
      batch.y.dispose();
      c = out.shape[1];
      parts.push(out);
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    teacher.train(wasTraining);
  }
  const logits = keep(noGrad(() => cat(parts, 0)));
  for (const p of parts) p.dispose();
  const meta = Buffer.from(JSON.stringify({ n, c, teacher: teacher.constructor.name }), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32LE(meta.length, 0);
  writeFileAtomic(file, Buffer.concat([head, meta, Buffer.from(native.toBuffer(logits._h))]));
  return { logits, fromCache: false, file };
}

