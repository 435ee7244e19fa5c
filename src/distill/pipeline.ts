// Whole runs as a library: `distill()` trains a student against a frozen teacher and returns the run summary;
// `runFromConfig()` and `compareFromConfig()` are what the `tsdistill` command does with a validated configuration
// (train a teacher or a plain student, distill, or compare all three and measure them).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, checkDevice as checkTorchDevice, dispose, manualSeed, nextTick, noGrad, tidy, writeFileAtomic, zeros } from '../torch';
import { Module, loadWeights } from '../nn';
import { BatchTransform, DataLoader, ImageDataset, Rng, loadCifar10, loadFashionMnist, loadMnist, normalize, randomCrop, randomHorizontalFlip } from '../data';
import { createModel, registerBuiltinModels } from '../models';
import type { RunConfig } from '../cli/config';
import { TrainOptions, TrainSummary, deviceOf, trainModel } from './trainer';
import { FeatureMatcher, type MatchSpec } from './features';
import { initialValue, type DynamicTemperature, type ScheduleSpec } from './schedules';
import { Ensemble } from './ensemble';
import type { SoftLoss } from './response';
import { prepareQat, prepareQatCheckpoint } from './qat';
import { type Teacher, isExternalTeacherSpec, isTeacher, loadExternalTeacher } from '../teachers';

/** Mean and standard deviation of the training images, per data set (one channel). */
export const DATASET_STATS: Record<string, [number, number]> = { mnist: [0.1307, 0.3081], 'fashion-mnist': [0.286, 0.353] };

/** The built-in data sets: per-channel statistics of the training images, image size and channels. */
export const DATASETS: Record<DatasetName, { mean: number[]; std: number[]; size: number; channels: number }> = {
  mnist: { mean: [0.1307], std: [0.3081], size: 28, channels: 1 },
  'fashion-mnist': { mean: [0.286], std: [0.353], size: 28, channels: 1 },
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], size: 32, channels: 3 },
};

export type DatasetName = 'mnist' | 'fashion-mnist' | 'cifar10';
export interface DataSplits {
  train: ImageDataset;
  test: ImageDataset;
}

/** Loads a named data set's train (first `limit` images when given) and test splits. */
export function loadDataset(name: DatasetName, limit?: number): DataSplits {
  if (name === 'cifar10') {
    // the archive is sorted by class: a limit takes a fixed random subset (the same every time), not the first N
    const full = loadCifar10('train');
    let train = full;
    if (limit !== undefined && limit < full.length) {
      const pick = new Rng(20240601).permutation(full.length).slice(0, limit).sort();
      train = full.subset(pick, `${full.name}-${limit}`);
      full.dispose();
    }
    return { train, test: loadCifar10('test') };
  }
  const load = name === 'mnist' ? loadMnist : loadFashionMnist;
  return { train: load({ split: 'train', limit }), test: load({ split: 'test' }) };
}

/** A model given by name (the zoo's `createModel`) with options and optional starting weights. */
export interface ModelSpec {
  model: string;
  options?: Record<string, unknown>;
  checkpoint?: string;
}

function resolveModel(m: Module | ModelSpec, seed: number, what: string): { module: Module; owned: boolean } {
  if (m instanceof Module) return { module: m, owned: false };
  if (!m || typeof m.model !== 'string') throw new Error(`distill: ${what} must be a Module or { model: name, options?, checkpoint? }`);
  registerBuiltinModels();
  manualSeed(seed);
  const module = createModel(m.model, { numClasses: 10, ...m.options });
  try {
    if (m.checkpoint) loadWeights(module, m.checkpoint);
  } catch (e) {
    module.dispose();
    throw e;
  }
  return { module, owned: true };
}

export interface DistillOptions {
  /**
   * The trained teacher (kept frozen: eval mode, no gradients), a zoo spec with its checkpoint, or a teacher from
   * elsewhere (OnnxTeacher, TorchScriptTeacher, TfjsTeacher, blackBoxTeacher, httpTeacher: run before each step).
   */
  teacher: Module | ModelSpec | Teacher;
  /** The student to train (a Module is trained in place) or a zoo spec. */
  student: Module | ModelSpec;
  /** Train/test splits, or a data set name. */
  data: DataSplits | DatasetName;
  /** Where checkpoints, metrics.jsonl and summary.json go. */
  outDir: string;
  epochs?: number;
  batchSize?: number;
  /** Training transforms after the uint8 → [0, 1] scaling (default: normalize with the data set's statistics). */
  transforms?: BatchTransform[];
  /** Test transforms (default: the non-random training transforms). */
  testTransforms?: BatchTransform[];
  /** A number or a schedule ({ kind: 'linear', from: 8, to: 2 }, ...). */
  temperature?: number | ScheduleSpec;
  alpha?: number | ScheduleSpec;
  softLoss?: SoftLoss;
  dynamicTemperature?: DynamicTemperature;
  /** Reuse the teacher's logits from disk when the training transforms are deterministic (default true). */
  cache?: boolean;
  /** Feature / relation matches added to the response-KD loss (see FeatureMatcher); the teacher then runs live. */
  matches?: MatchSpec[];
  optimizer?: Partial<TrainOptions['optimizer']>;
  schedule?: TrainOptions['schedule'];
  milestones?: number[];
  warmupEpochs?: number;
  seed?: number;
  /** 'cpu' (default) or 'cuda[:N]': the teacher and student are moved there, batches are made there. */
  device?: string;
  resume?: boolean;
  force?: boolean;
  progress?: boolean;
  signal?: AbortSignal;
  log?: (line: string) => void;
  name?: string;
}

/**
 * Distills `teacher` into `student` with the response-KD loss α·CE + (1−α)·T²·KL and returns the run summary (best and
 * final test accuracy, epoch times, teacher-cache use). Writes checkpoints and metrics under `outDir`, resumable.
 */
export async function distill(o: DistillOptions): Promise<TrainSummary> {
  if (!o || typeof o !== 'object') throw new Error('distill: expected an options object');
  if (typeof o.outDir !== 'string' || !o.outDir) throw new Error('distill: outDir is required (where checkpoints and metrics go)');
  const seed = o.seed ?? 0;
  const data = typeof o.data === 'string' ? loadDataset(o.data) : o.data;
  if (!data || !(data.train instanceof ImageDataset) || !(data.test instanceof ImageDataset))
    throw new Error(`distill: data must be 'mnist', 'fashion-mnist' or { train: ImageDataset, test: ImageDataset }`);
  const stats = typeof o.data === 'string' ? DATASETS[o.data] : null;
  const transforms = o.transforms ?? (stats ? [normalize(stats.mean, stats.std)] : []);
  const testTransforms = o.testTransforms ?? transforms.filter((t) => !t.random);
  const teacher: { module: Module | Teacher; owned: boolean } = isTeacher(o.teacher) ? { module: o.teacher, owned: false } : resolveModel(o.teacher, seed, 'teacher');
  let student: { module: Module; owned: boolean } | null = null;
  let features: FeatureMatcher | undefined;
  try {
    student = resolveModel(o.student, seed, 'student');
    const device = checkDevice(o.device ?? 'cpu');
    if (device !== 'cpu') {
      if (teacher.module instanceof Module) teacher.module.to(device);
      student.module.to(device);
    }
    const loader = new DataLoader(data.train, { batchSize: o.batchSize ?? 64, shuffle: true, seed, transforms, device });
    features = o.matches?.length ? new FeatureMatcher(student.module, teacher.module, o.matches) : undefined;
    const summary = await trainModel({
      name: o.name ?? 'distilled', model: student.module, teacher: teacher.module, train: loader, test: data.test, testTransforms,
      epochs: o.epochs ?? 10, seed,
      optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0, ...o.optimizer },
      schedule: o.schedule ?? 'constant', milestones: o.milestones, warmupEpochs: o.warmupEpochs, outDir: o.outDir, resume: o.resume, force: o.force,
      kd: { temperature: o.temperature ?? 4, alpha: o.alpha ?? 0.1, softLoss: o.softLoss ?? 'kl', cache: o.cache ?? true, dynamicTemperature: o.dynamicTemperature }, features,
      progress: o.progress, signal: o.signal, log: o.log,
    });
    writeFileAtomic(path.join(o.outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    return summary;
  } finally {
    features?.dispose();
    if (teacher.owned) teacher.module.dispose();
    if (student?.owned) student.module.dispose();
    if (typeof o.data === 'string') {
      data.train.dispose();
      data.test.dispose();
    }
  }
}

// ---- configuration-driven runs (the `tsdistill` command) ----

export type RunKind = 'teacher' | 'student' | 'distilled';
export interface RunFlags {
  resume?: boolean;
  force?: boolean;
  /** The configuration file, for messages. */
  file: string;
  signal?: AbortSignal;
  progress?: boolean;
  log?: (line: string) => void;
}

export function runDir(cfg: RunConfig, kind: RunKind): string {
  return path.join(cfg.output.dir, kind);
}
export function teacherWeights(cfg: RunConfig): string {
  return cfg.teacher?.checkpoint ?? path.join(runDir(cfg, 'teacher'), 'best.safetensors');
}
/**
 * The teacher of a configuration: a zoo model with its trained weights (teacher.checkpoint or the teacher run's best),
 * or, for model 'ensemble', the members with their checkpoints. `weights: false` gives freshly initialised models
 * (for shape checks).
 */
export function loadTeacher(cfg: RunConfig, file: string, weights = true): Module {
  const spec = cfg.teacher;
  if (!spec) throw new Error(`${file}: no 'teacher' section`);
  registerBuiltinModels();
  if (spec.members) {
    const members: Module[] = [];
    try {
      spec.members.forEach((m, i) => {
        const model = createModel(m.model, { numClasses: 10, ...m.options });
        members.push(model);
        if (weights)
          try {
            loadWeights(model, m.checkpoint);
          } catch (e) {
            throw new Error(`${file}: teacher.members[${i}] (${m.model}): ${(e as Error).message}`);
          }
      });
      const T = initialValue(cfg.distill.temperature);
      return new Ensemble(members, { weights: spec.members.map((m) => m.weight), mode: spec.mode ?? 'logits', temperature: T });
    } catch (e) {
      members.forEach((m) => m.dispose());
      throw e;
    }
  }
  const model = createModel(spec.model, { numClasses: 10, ...spec.options });
  if (weights)
    try {
      loadWeights(model, teacherWeights(cfg));
    } catch (e) {
      model.dispose();
      throw new Error(`${(e as Error).message}\nTrain the teacher first (tsdistill train ${file} --role teacher) or set teacher.checkpoint.`);
    }
  return model;
}

/** Bytes of the teacher's weights on disk (all members' for an ensemble). */
function teacherBytes(cfg: RunConfig): number {
  return cfg.teacher?.members ? cfg.teacher.members.reduce((a, m) => a + fs.statSync(m.checkpoint).size, 0) : fs.statSync(teacherWeights(cfg)).size;
}

/** The zoo model of a config section, initialised from the run's seed. */
export function buildModel(spec: NonNullable<RunConfig['teacher']>, seed: number): Module {
  registerBuiltinModels();
  manualSeed(seed);
  return createModel(spec.model, { numClasses: 10, ...spec.options });
}
/** Normalisation (train and test) and the augmentation of one run (its section's `augment`, else data.augment). */
export function transformsFor(cfg: RunConfig, kind: RunKind = 'student'): { norm: BatchTransform[]; aug: BatchTransform[] } {
  const info = DATASETS[cfg.data.dataset];
  const norm = cfg.data.normalize ? [normalize(info.mean, info.std)] : [];
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  const augment = spec?.augment ?? cfg.data.augment;
  const aug = [...(augment?.crop ? [randomCrop(info.size, augment.crop)] : []), ...(augment?.flip ? [randomHorizontalFlip()] : [])];
  return { norm, aug };
}

/** The parts of a configuration that decide a run's results (not where it is written or how many threads it uses). */
function identity(cfg: RunConfig): Record<string, unknown> {
  const { output: _o, training, ...rest } = cfg;
  const { threads: _t, ...train } = training;
  return { ...rest, training: train };
}
function flatten(v: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  else out[prefix] = JSON.stringify(v);
  return out;
}

/**
 * Records the configuration in the output directory (config.json) and refuses to mix runs: a directory holding a run
 * of another configuration is an error naming the differing keys, unless `force` (which starts over).
 */
export function claimOutputDir(cfg: RunConfig, flags: RunFlags): void {
  const file = path.join(cfg.output.dir, 'config.json');
  const mine = identity(cfg);
  if (fs.existsSync(file) && !flags.force) {
    let theirs: Record<string, unknown>;
    try {
      theirs = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: unreadable (${(e as Error).message}); pass --force to start over`);
    }
    const a = flatten(theirs), b = flatten(mine);
    const diff = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k] && !k.startsWith('training.epochs'));
    if (diff.length)
      throw new Error(
        `${cfg.output.dir} holds a run of another configuration (${diff.map((k) => `${k}: ${a[k] ?? '(unset)'} there, ${b[k] ?? '(unset)'} here`).join('; ')}); ` +
          'choose another --out, or pass --force to overwrite it',
      );
  }
  fs.mkdirSync(cfg.output.dir, { recursive: true });
  writeFileAtomic(file, JSON.stringify(mine, null, 2));
}

/** 'cpu', or 'cuda[:N]' when usable; the error names the config key `training.device`. */
export function checkDevice(device: string): string {
  return checkTorchDevice(device, 'training.device');
}

/** Trains the teacher, the plain student or the distilled student as the configuration says. */
export async function runFromConfig(cfg: RunConfig, kind: RunKind, data: DataSplits, flags: RunFlags): Promise<TrainSummary> {
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`${flags.file}: no '${kind === 'teacher' ? 'teacher' : 'student'}' section`);
  if (kind === 'teacher' && spec.members) throw new Error(`${flags.file}: the teacher is an ensemble of trained members; there is nothing to train`);
  if (kind === 'teacher' && isExternalTeacherSpec(spec)) throw new Error(`${flags.file}: the teacher is a ${spec.model} model from elsewhere; there is nothing to train`);
  const model = buildModel(spec, cfg.seed);
  let teacher: Module | Teacher | undefined;
  let features: FeatureMatcher | undefined;
  try {
    const qat = kind !== 'teacher' && cfg.quantization?.qat ? cfg.quantization : null;
    // quantization-aware distillation usually fine-tunes a trained fp32 student: start from student.checkpoint
    if (spec.checkpoint && (kind !== 'distilled' || qat)) loadWeights(model, spec.checkpoint);
    if (kind === 'distilled') {
      if (!cfg.teacher) throw new Error(`${flags.file}: distill needs a 'teacher' section`);
      teacher = isExternalTeacherSpec(cfg.teacher) ? await loadExternalTeacher(cfg.teacher, `${flags.file}: teacher`) : loadTeacher(cfg, flags.file);
    }
    if (qat) {
      const info = DATASETS[cfg.data.dataset];
      await prepareQat(model, qat, data.train, [info.channels, info.size, info.size], transformsFor(cfg, kind).norm, cfg.data.batchSize, flags.log);
    }
    const device = checkDevice(cfg.training.device);
    if (device !== 'cpu') {
      model.to(device);
      if (teacher instanceof Module) teacher.to(device);
    }
    const { norm, aug } = transformsFor(cfg, kind);
    const loader = new DataLoader(data.train, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm], device });
    const out = runDir(cfg, kind);
    features = kind === 'distilled' && cfg.distill.matches.length ? new FeatureMatcher(model, teacher!, cfg.distill.matches as MatchSpec[]) : undefined;
    const summary = await trainModel({
      name: `${cfg.name}/${kind}`, model, train: loader, test: data.test, testTransforms: norm, epochs: cfg.training.epochs, seed: cfg.seed,
      optimizer: { kind: cfg.training.optimizer, lr: cfg.training.lr, momentum: cfg.training.momentum, weightDecay: cfg.training.weightDecay },
      schedule: cfg.training.schedule, milestones: cfg.training.milestones, warmupEpochs: cfg.training.warmupEpochs, outDir: out, resume: flags.resume, force: flags.force,
      checkpointEvery: cfg.output.checkpointEvery, teacher, kd: kind === 'distilled' ? cfg.distill : undefined, features,
      cacheDir: path.join(cfg.output.dir, '.teacher-cache'), signal: flags.signal, progress: flags.progress, log: flags.log,
    });
    writeFileAtomic(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2));
    return summary;
  } finally {
    features?.dispose();
    model.dispose();
    teacher?.dispose();
  }
}

/**
 * Checks `distill.matches` before anything trains: loss names, module paths, layer counts, and (by a dry run of fresh
 * models on a blank batch of the data's image size) shapes that no projection can reconcile.
 */
export function checkMatches(cfg: RunConfig, file: string): void {
  if (!cfg.distill.matches.length) return;
  if (!cfg.teacher) throw new Error(`${file}: distill.matches needs a 'teacher' section`);
  // a teacher from elsewhere: its value names are checked when it is loaded, before training
  if (isExternalTeacherSpec(cfg.teacher)) return;
  const teacher = loadTeacher(cfg, file, false);
  const student = createModel(cfg.student.model, { numClasses: 10, ...cfg.student.options });
  try {
    const fm = new FeatureMatcher(student, teacher, cfg.distill.matches as MatchSpec[]);
    try {
      const info = DATASETS[cfg.data.dataset];
      tidy(() => fm.probe(zeros([2, info.channels, info.size, info.size])));
    } finally {
      fm.dispose();
    }
  } catch (e) {
    throw new Error(`${file}: distill.matches: ${(e as Error).message}`);
  } finally {
    teacher.dispose();
    student.dispose();
  }
}

export interface ModelReport {
  model: string;
  /** Test accuracy (%) of the best epoch's weights. */
  acc: number;
  errors: number;
  params: number;
  checkpoint_bytes: number;
  latency_b1_ms: number;
  throughput_b256: number;
  /** Top-1 agreement with the teacher (%), null for the teacher itself. */
  agreement: number | null;
  /** Expected calibration error (%), 15 equal-width confidence bins. */
  ece: number;
  epoch_s: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Accuracy, errors, agreement with reference predictions, ECE, CPU latency (batch 1) and throughput (batch 256). */
export async function measureModel(model: Module, test: ImageDataset, norm: BatchTransform[], reference: Int32Array | null) {
  model.eval();
  const device = deviceOf(model);
  const loader = new DataLoader(test, { batchSize: 1000, transforms: norm, device });
  const preds = new Int32Array(test.length);
  const bins = Array.from({ length: 15 }, () => ({ n: 0, conf: 0, correct: 0 }));
  let correct = 0, agree = 0, k = 0;
  for (const b of loader) {
    const [conf, pred, y] = tidy(() => noGrad(() => {
      const p = (model.call(b.x) as Tensor).softmax(1);
      const [c, i] = p.max(1);
      return [c.toArray(), i.toArray(), b.y.toArray()];
    }));
    b.dispose();
    for (let j = 0; j < pred.length; j++, k++) {
      preds[k] = pred[j];
      const ok = pred[j] === y[j] ? 1 : 0;
      correct += ok;
      if (reference && reference[k] === pred[j]) agree++;
      const bin = bins[Math.min(14, Math.floor(conf[j] * 15))];
      bin.n++; bin.conf += conf[j]; bin.correct += ok;
    }
    await nextTick();
  }
  const n = test.length;
  const ece = bins.reduce((a, bn) => a + (bn.n ? (bn.n / n) * Math.abs(bn.correct / bn.n - bn.conf / bn.n) : 0), 0);
  const prep = (count: number) => tidy(() => {
    let x = test.images.narrow(0, 0, Math.min(count, n)).to({ device }).float().div(255);
    for (const t of norm) x = t.apply(x, new Rng(0));
    return x;
  });
  const one = prep(1);
  const many = prep(256);
  const lat: number[] = [];
  for (let i = 0; i < 220; i++) {
    const t0 = process.hrtime.bigint();
    tidy(() => noGrad(() => { (model.call(one) as Tensor).cpu(); }));
    if (i >= 20) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10; i++) tidy(() => noGrad(() => { (model.call(many) as Tensor).cpu(); }));
  const throughput = (10 * many.shape[0]) / (Number(process.hrtime.bigint() - t0) / 1e9);
  dispose([one, many]);
  return { acc: (100 * correct) / n, errors: n - correct, preds, agreement: reference ? (100 * agree) / n : null, ece: 100 * ece, latency: median(lat), throughput };
}

export interface CompareResult {
  teacher_acc: number;
  plain_acc: number;
  kd_acc: number;
  /** (KD − plain) / (teacher − plain); null when the teacher is not more accurate than the student alone (no gap). */
  gap_closed: number | null;
  teacher_epoch_s: number | null;
  plain_epoch_s: number;
  /** Mean KD epoch with the teacher run on every batch (null when every epoch read cached logits). */
  kd_epoch_s: number | null;
  /** Mean KD epoch with cached teacher logits (null when the cache was off). */
  kd_cached_epoch_s: number | null;
  kd_teacher_cache: string;
}

/** Teacher vs plain student vs distilled student: trains what is missing, then measures all three. */
export async function compareFromConfig(
  cfg: RunConfig,
  data: DataSplits,
  flags: RunFlags,
): Promise<{ result: CompareResult; reports: Record<RunKind, ModelReport>; table: string[][] }> {
  const kinds: RunKind[] = ['teacher', 'student', 'distilled'];
  const summaries: Partial<Record<RunKind, TrainSummary>> = {};
  if (!cfg.teacher) throw new Error(`${flags.file}: compare needs a 'teacher' section`);
  if (isExternalTeacherSpec(cfg.teacher)) throw new Error(`${flags.file}: compare measures a teacher trained here or a zoo model; for a ${cfg.teacher.model} teacher use distill`);
  for (const kind of kinds) {
    const done = path.join(runDir(cfg, kind), 'summary.json');
    if (kind === 'teacher' && (cfg.teacher.checkpoint || cfg.teacher.members)) continue;
    if (fs.existsSync(done) && !flags.force) {
      const s = JSON.parse(fs.readFileSync(done, 'utf8')) as TrainSummary;
      if (s.epochs === cfg.training.epochs) {
        summaries[kind] = s;
        continue;
      }
    }
    summaries[kind] = await runFromConfig(cfg, kind, data, { ...flags, resume: !flags.force });
  }
  const reports = {} as Record<RunKind, ModelReport>;
  let teacherPreds: Int32Array | null = null;
  for (const kind of kinds) {
    const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
    const weights = kind === 'teacher' ? teacherWeights(cfg) : path.join(runDir(cfg, kind), 'best.safetensors');
    const model = kind === 'teacher' ? loadTeacher(cfg, flags.file) : buildModel(spec, cfg.seed);
    try {
      prepareQatCheckpoint(model, cfg, kind);
      if (kind !== 'teacher') loadWeights(model, weights);
      const device = checkDevice(cfg.training.device);
      if (device !== 'cpu') model.to(device);
      const m = await measureModel(model, data.test, transformsFor(cfg, kind).norm, teacherPreds);
      if (kind === 'teacher') teacherPreds = m.preds;
      reports[kind] = {
        model: spec.model, acc: m.acc, errors: m.errors, params: model.numParameters(), checkpoint_bytes: kind === 'teacher' ? teacherBytes(cfg) : fs.statSync(weights).size,
        latency_b1_ms: m.latency, throughput_b256: m.throughput, agreement: m.agreement, ece: m.ece, epoch_s: summaries[kind]?.mean_epoch_s ?? NaN,
      };
    } finally {
      model.dispose();
    }
  }
  const t = reports.teacher, p = reports.student, k = reports.distilled;
  const kdRun = summaries.distilled!;
  const result: CompareResult = {
    teacher_acc: t.acc, plain_acc: p.acc, kd_acc: k.acc, gap_closed: t.acc > p.acc ? (k.acc - p.acc) / (t.acc - p.acc) : null,
    teacher_epoch_s: Number.isFinite(t.epoch_s) ? t.epoch_s : null, plain_epoch_s: p.epoch_s,
    kd_epoch_s: kdRun.live_teacher_epoch_s ?? null, kd_cached_epoch_s: kdRun.cached_teacher_epoch_s ?? null,
    kd_teacher_cache: kdRun.teacher_cache ?? 'off',
  };
  const s = (x: number | null | undefined, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  const table = [
    ['', 'teacher', 'student alone', 'student + KD'],
    ['model', t.model, p.model, k.model],
    ['test accuracy (%)', ...[t, p, k].map((r) => r.acc.toFixed(2))],
    ['test errors', ...[t, p, k].map((r) => String(r.errors))],
    ['parameters', ...[t, p, k].map((r) => r.params.toLocaleString('en-US'))],
    ['checkpoint (bytes)', ...[t, p, k].map((r) => r.checkpoint_bytes.toLocaleString('en-US'))],
    ['CPU latency, batch 1 (ms)', ...[t, p, k].map((r) => r.latency_b1_ms.toFixed(3))],
    ['throughput, batch 256 (img/s)', ...[t, p, k].map((r) => r.throughput_b256.toFixed(0))],
    ['top-1 agreement with teacher (%)', '-', ...[p, k].map((r) => r.agreement!.toFixed(2))],
    ['expected calibration error (%)', ...[t, p, k].map((r) => r.ece.toFixed(2))],
    ['mean epoch time (s)', ...[t, p, k].map((r) => s(r.epoch_s))],
    ['KD epoch, live / cached teacher (s)', '-', '-', `${s(result.kd_epoch_s)} / ${s(result.kd_cached_epoch_s)}`],
  ];
  writeFileAtomic(path.join(cfg.output.dir, 'summary.json'), JSON.stringify({ name: cfg.name, ...result, reports }, null, 2));
  return { result, reports, table };
}

/** The verdict table as aligned text lines. */
export function formatTable(rows: string[][]): string[] {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines: string[] = [];
  rows.forEach((r, i) => {
    lines.push(r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
    if (i === 0) lines.push(w.map((x) => '-'.repeat(x)).join('  '));
  });
  return lines;
}

export interface SeedsResult {
  seeds: number[];
  /** Per-seed results, in seed order. */
  runs: CompareResult[];
  /** Mean and sample standard deviation over seeds of every numeric field. */
  mean: Record<string, number>;
  std: Record<string, number>;
}

/**
 * `compareFromConfig` once per seed (each in `<output.dir>/seed-<n>`), then mean ± standard deviation: distillation
 * results of small students depend on the initialisation, so one seed is an anecdote.
 */
export async function compareSeeds(cfg: RunConfig, seeds: number[], data: DataSplits, flags: RunFlags): Promise<{ result: SeedsResult; table: string[][] }> {
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds: expected non-negative integers, got ${seeds.join(',')}`);
  const runs: CompareResult[] = [];
  for (const seed of seeds) {
    const c = { ...cfg, seed, output: { ...cfg.output, dir: path.join(cfg.output.dir, `seed-${seed}`) } };
    claimOutputDir(c, flags);
    runs.push((await compareFromConfig(c, data, flags)).result);
  }
  const keys = Object.keys(runs[0]).filter((k) => runs.every((r) => typeof (r as any)[k] === 'number'));
  const mean: Record<string, number> = {}, std: Record<string, number> = {};
  for (const k of keys) {
    const xs = runs.map((r) => (r as any)[k] as number);
    mean[k] = xs.reduce((a, b) => a + b, 0) / xs.length;
    std[k] = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean[k]) ** 2, 0) / (xs.length - 1)) : 0;
  }
  const pm = (k: string, scale = 1, d = 2) => (k in mean ? `${(mean[k] * scale).toFixed(d)} ± ${(std[k] * scale).toFixed(d)}` : 'n/a');
  const table = [
    ['seed', 'teacher acc (%)', 'student alone (%)', 'student + KD (%)', 'gap closed (%)'],
    ...runs.map((r, i) => [String(seeds[i]), r.teacher_acc.toFixed(2), r.plain_acc.toFixed(2), r.kd_acc.toFixed(2), r.gap_closed === null ? 'n/a' : (100 * r.gap_closed).toFixed(1)]),
    ['mean ± std', pm('teacher_acc'), pm('plain_acc'), pm('kd_acc'), pm('gap_closed', 100, 1)],
  ];
  const result = { seeds, runs, mean, std };
  writeFileAtomic(path.join(cfg.output.dir, 'seeds.json'), JSON.stringify({ name: cfg.name, ...result }, null, 2));
  return { result, table };
}
