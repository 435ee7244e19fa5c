// One Teacher interface for every kind of teacher: a module trained here, an ONNX file, a TorchScript file, a TF.js
// model, a black-box function or HTTP endpoint.
//
// Design. A teacher trained here is an `nn.Module`: the training step calls it synchronously inside the step's scope
// and taps its layers with forward hooks (response KD, FeatureMatcher). That path stays as it is — the trainer, the
// teacher cache and FeatureMatcher take a Module directly, and nothing is added to the step when the teacher is one.
// Every other teacher is *external*: its outputs come from another runtime (onnxruntime, a TorchScript module, a
// remote service) and may arrive asynchronously. An external teacher implements `Teacher`:
//
//   id()           identity for the teacher cache (a hash of the model file, or of the endpoint and its version)
//   logits         the name of the output that response KD distills (logits, or log-probabilities)
//   outputNames()  the model's own outputs; valueNames() every name `run` accepts (outputs + intermediate tensors)
//   run(x, names)  the named tensors for the batch x, computed without gradients (the caller owns them)
//   takesRaw       true for a teacher that works on raw samples (a text, an image file): `run` then also receives
//                  the batch's raw samples, taken from the data set by row index (TextDataset.texts, ImageDataset
//                  pixels and files); x still gives the batch size and device. Default false: x only.
//
// The trainer awaits `run` for a batch BEFORE the synchronous student step and hands the results to the step (and to
// FeatureMatcher in place of its teacher hooks); the teacher cache fills from the same call, so a deterministic data
// pipeline queries an external teacher once per sample. `moduleTeacher` adapts a Module to the interface for code that
// wants one shape for all teachers (tests, tools); the training loop does not route Modules through it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, dispose, keep, noGrad, ops, tidy } from '../torch';
import { Module, closest } from '../nn';

/** What a teacher works on: the student's input tensor, or the raw samples of the batch's rows. */
export type TeacherInput = 'tensor' | 'raw';

export interface Teacher {
  /** 'onnx', 'torchscript', 'tfjs', 'blackbox', 'module', ... (for messages and cache headers). */
  readonly kind: string;
  /** True: `run` receives the batch's raw samples (texts, images) as its third argument. Default false. */
  readonly takesRaw?: boolean;
  /** The name of the output used as logits by response KD (and by the `logits` alias in feature matches). */
  readonly logits: string;
  /** Identity for the teacher cache: changes whenever the teacher's outputs could change. */
  id(): string;
  /** The teacher's own outputs. */
  outputNames(): string[];
  /** Every name `run` accepts: outputs and intermediate values (ONNX value names). Empty when known only after a run. */
  valueNames(): string[];
  /**
   * The named tensors for input batch x (eval mode, no gradients), on x's device. The caller owns (and disposes) the
   * returned tensors; an unknown name is an error listing the closest known ones. `raw` (teachers that take raw samples):
   * the raw sample of each row of x, in order.
   */
  run(x: Tensor, names: string[], raw?: readonly unknown[]): Promise<Record<string, Tensor>>;
  dispose(): void;
}

/** True for an external teacher (anything implementing `Teacher` that is not an nn.Module). */
export function isTeacher(t: unknown): t is Teacher {
  return !!t && !(t instanceof Module) && typeof (t as Teacher).run === 'function' && typeof (t as Teacher).id === 'function';
}

/** Resolves the `logits` alias used in match specs to the teacher's logits output. */
export function teacherName(t: Teacher, name: string): string {
  return name === 'logits' && !t.valueNames().includes('logits') ? t.logits : name;
}

/** Error for a name a teacher does not have, listing the closest of `known`. */
export function unknownName(where: string, name: string, known: string[]): Error {
  const near = closest(name, known, 5);
  return new Error(
    `${where}: no value named '${name}'.${near.length ? ` Closest: ${near.join(', ')}.` : ''} ${known.length} names are available (teacher.valueNames())`,
  );
}

/** Where a batch's rows come from: the data set and the rows' indices in it (what raw-sample teachers are given). */
export interface BatchRows {
  dataset?: unknown;
  indices?: ArrayLike<number>;
}

/** A data set that keeps its raw samples (TextDataset: the texts; ImageDataset: pixels and files). */
interface RawSource {
  rawSamples(indices: ArrayLike<number>): unknown[];
}
const keepsRaw = (d: unknown): d is RawSource => !!d && typeof (d as RawSource).rawSamples === 'function';

/** The raw samples of a batch of n rows for teacher t; an error says what is missing when they cannot be had. */
export function rawSamplesFor(t: Teacher, rows: BatchRows | undefined, n: number): unknown[] {
  const who = `the ${t.kind} teacher ${t.id().slice(0, 40)} takes raw samples`;
  const ds = rows?.dataset;
  if (!keepsRaw(ds))
    throw new Error(`${who}, but ${ds ? `the data set (${(ds as { constructor: { name: string } }).constructor.name}) keeps none` : 'the batches come from no data set'}; a TextDataset keeps its texts, an ImageDataset its images (and files)`);
  if (!rows!.indices) throw new Error(`${who}, but the batches do not carry their data-set rows (indices)`);
  if (rows!.indices.length !== n) throw new Error(`${who}: the batch has ${n} inputs and ${rows!.indices.length} row indices`);
  return ds.rawSamples(rows!.indices);
}

/**
 * Runs `t` on x and returns the named tensors, resolving the `logits` alias; the result maps the names as asked.
 * A teacher that takes raw samples also receives the raw samples of the batch's rows (`rows`: the data set and the indices).
 * Throws (after disposing what it got) when the teacher returns fewer names than asked.
 */
export async function runTeacher(t: Teacher, x: Tensor, names: string[], rows?: BatchRows): Promise<Map<string, Tensor>> {
  const wanted = [...new Set(names.map((n) => teacherName(t, n)))];
  const got = t.takesRaw ? await t.run(x, wanted, rawSamplesFor(t, rows, x.shape[0])) : await t.run(x, wanted);
  const out = new Map<string, Tensor>();
  const missing = wanted.filter((n) => !(n in got));
  if (missing.length) {
    for (const v of Object.values(got)) v.dispose();
    throw unknownName(`${t.kind} teacher ${t.id().slice(0, 40)}`, missing[0], Object.keys(got));
  }
  for (const n of names) out.set(n, got[teacherName(t, n)]);
  // a name asked twice (e.g. 'logits' and the logits output itself) shares one tensor: hand out aliases
  const seen = new Set<Tensor>();
  for (const [k, v] of out) {
    if (seen.has(v)) out.set(k, keep(ops.alias(v)));
    seen.add(v);
  }
  return out;
}

/** A Module as a `Teacher` (outputs: 'logits'; values: its module paths, captured by forward hooks). */
export function moduleTeacher(m: Module, identity: () => string): Teacher {
  const paths = () => m.namedModules().map(([p]) => p).filter((p) => p !== '');
  return {
    kind: 'module',
    logits: 'logits',
    id: identity,
    outputNames: () => ['logits'],
    valueNames: () => ['logits', ...paths()],
    async run(x, names) {
      const inner = names.filter((n) => n !== 'logits');
      const known = paths();
      for (const n of inner) if (!known.includes(n)) throw unknownName(`module teacher ${m.constructor.name}`, n, ['logits', ...known]);
      const was = m.training;
      m.eval();
      try {
        return tidy(() =>
          noGrad(() => {
            const { result, features } = m.captureFeatures(inner, () => m.call(x) as Tensor);
            const out: Record<string, Tensor> = {};
            if (names.includes('logits')) out.logits = keep(result);
            for (const [k, v] of features) out[k] = keep(v);
            return out;
          }),
        );
      } finally {
        m.train(was);
      }
    },
    dispose: () => m.dispose(),
  };
}

/** `[2, 3, 4]` */
export const shapeText = (s: readonly (number | string)[]): string => `[${s.join(', ')}]`;

/**
 * Joins each output's per-chunk results (rows, in order) into one tensor on `device`; the chunks are released. For
 * teachers that run a batch in pieces (fixed-batch models, request size limits).
 */
export function joinChunks(parts: Record<string, Tensor[]>, names: string[], device: string): Record<string, Tensor> {
  const result: Record<string, Tensor> = {};
  for (const k of names) {
    const p = parts[k];
    const joined = p.length === 1 ? p[0] : ops.cat(p, 0);
    if (p.length > 1) dispose(p);
    const moved = joined.device === device ? joined : joined.to({ device });
    if (moved !== joined) joined.dispose();
    result[k] = moved;
  }
  return result;
}

/**
 * A file a model file refers to (a TF.js weight shard, ONNX external data), resolved against the model's folder and
 * refused when it lies outside it: an absolute path, `..` segments or a symbolic link leading elsewhere. `what` names
 * the reference in the message.
 */
export function fileInModelFolder(modelFile: string, ref: string, what: string): string {
  const dir = path.dirname(path.resolve(modelFile));
  const target = path.resolve(dir, ref);
  const inside = (base: string, p: string) => {
    const rel = path.relative(base, p);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  let real = target;
  try {
    real = fs.realpathSync(target);
  } catch {
    // a missing file: reading it fails later with its own message
  }
  if (path.isAbsolute(ref) || !inside(dir, target) || !inside(fs.realpathSync(dir), real))
    throw new Error(`${modelFile}: ${what} '${ref}' lies outside the model's folder ${dir}; refused (model files may only refer to files beside or below them)`);
  return target;
}
