// Configuration-driven runs, what the `tsdistill` command does with a validated configuration: the models of its
// sections, their transforms, the output directory, and training the teacher, the plain student or the distilled
// student. The data set named by `data.dataset` decides the number of classes, the image shape and the normalisation.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualSeed, ones, setNumThreads, tidy, writeFileAtomic, zeros } from '../torch';
import { Module, loadWeights } from '../nn';
import { BatchTransform, DataLoader, DataSplits, type DatasetInfo, ImageDataset, loadDataset, normalize, randomCrop, randomHorizontalFlip } from '../data';
import { createModel, registerBuiltinModels, type ModelOptions } from '../models';
import { prepareQuantAware } from '../export';
import { type Teacher, isExternalTeacherSpec, loadExternalTeacher } from '../teachers';
import { Ensemble, FeatureMatcher, TrainSummary, evaluate, initialValue, prepareQat, readRunJson, readRunState, trainModel, type MatchSpec } from '../distill';
import { checkDevice } from '../distill/pipeline';
import { type RunConfig, configDataset, loadConfig } from './config';

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

/** The data set of a configuration: the registered `data.dataset`, or one's own data (see configDataset). */
export function datasetOf(cfg: Pick<RunConfig, 'data'>): DatasetInfo {
  return configDataset(cfg);
}

/** Train and test splits of a configuration's data (`data.limit` training samples when set); the caller disposes them. */
export function loadConfigData(cfg: Pick<RunConfig, 'data'>): DataSplits {
  return loadDataset(datasetOf(cfg).name, cfg.data.limit);
}

/**
 * One input of the configuration's models: images [C, H, W] float32, or a row of token ids [L] int64 (text).
 */
export function inputOf(cfg: Pick<RunConfig, 'data'>): { shape: number[]; dtype: 'float32' | 'int64' } {
  const info = datasetOf(cfg);
  if (info.kind === 'image') return { shape: [...info.inputShape], dtype: 'float32' };
  if (info.kind === 'text' && info.encoder) return { shape: [info.encoder.rowLength], dtype: 'int64' };
  throw new Error(`data set '${info.name}' is a ${info.kind} data set without a tokenizer`);
}

/**
 * The options a zoo model of the configuration is created with: as many classes as the data set has, unless set; for
 * text, the encoder's vocabulary size, padding id and row length.
 */
export function modelOptions(cfg: Pick<RunConfig, 'data'>, spec: { options?: Record<string, unknown> }): ModelOptions {
  const info = datasetOf(cfg);
  const text = info.kind === 'text' && info.encoder ? { vocabSize: info.encoder.vocabSize, padId: info.encoder.padId, maxLen: info.encoder.rowLength } : {};
  return { numClasses: info.classes.length, ...text, ...spec.options };
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
        const model = createModel(m.model, modelOptions(cfg, m));
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
  const model = createModel(spec.model, modelOptions(cfg, spec));
  if (weights)
    try {
      loadWeights(model, teacherWeights(cfg));
    } catch (e) {
      model.dispose();
      throw new Error(`${(e as Error).message}\nTrain the teacher first (tsdistill train ${file} --role teacher) or set teacher.checkpoint.`);
    }
  return model;
}

/** The zoo model of a run (its section of the configuration), initialised from the configuration's seed. */
export function buildModel(cfg: RunConfig, kind: RunKind): Module {
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`the configuration has no '${kind === 'teacher' ? 'teacher' : 'student'}' section`);
  registerBuiltinModels();
  manualSeed(cfg.seed);
  return createModel(spec.model, modelOptions(cfg, spec));
}
/** Normalisation (train and test) and the augmentation of one run (its section's `augment`, else data.augment). */
export function transformsFor(cfg: Pick<RunConfig, 'data'> & Partial<Pick<RunConfig, 'teacher' | 'student'>>, kind: RunKind = 'student'): { norm: BatchTransform[]; aug: BatchTransform[] } {
  const info = datasetOf(cfg);
  // token ids are not transformed
  if (info.kind !== 'image') return { norm: [], aug: [] };
  const norm = cfg.data.normalize ? [normalize(info.mean, info.std)] : [];
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  const augment = spec?.augment ?? cfg.data.augment;
  const [, h, w] = info.inputShape;
  const aug = [...(augment?.crop ? [randomCrop(h === w ? h : [h, w], augment.crop)] : []), ...(augment?.flip ? [randomHorizontalFlip()] : [])];
  return { norm, aug };
}

/**
 * A student of a quantization-aware configuration gets its fake quantizers (without calibration) before weights are
 * loaded: its checkpoints hold the trained ranges, and it is then evaluated as the int8 model computes. Teachers and
 * other configurations are left as they are.
 */
export function prepareQatCheckpoint(model: Module, cfg: RunConfig, kind: RunKind): void {
  if (kind === 'teacher' || !cfg.quantization?.qat) return;
  const { observer, momentum } = cfg.quantization;
  prepareQuantAware(model, { inputShape: imageShapeOf(cfg, 'quantization.qat'), observer: { method: observer, momentum } });
}

/** [C, H, W] of the configuration's images; `what` names the feature that needs images when the data is text. */
function imageShapeOf(cfg: Pick<RunConfig, 'data'>, what: string): number[] {
  const info = datasetOf(cfg);
  if (info.kind !== 'image') throw new Error(`${what} needs image data; ${info.name} is a ${info.kind} data set`);
  return [...info.inputShape];
}

/** The parts of a configuration that decide a run's results (not where it is written or how many threads it uses). */
/** Any configuration with output and training sections (classic or staged). */
type OutputConfig = Pick<RunConfig, 'output' | 'training'> & Record<string, unknown>;

function identity(cfg: OutputConfig): Record<string, unknown> {
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
export function claimOutputDir(cfg: OutputConfig, flags: RunFlags): void {
  const file = path.join(cfg.output.dir, 'config.json');
  const mine = identity(cfg);
  // a configuration whose runs all failed before training left nothing to protect: the new one takes the directory
  if (fs.existsSync(file) && !flags.force && holdsRun(cfg.output.dir)) {
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

/**
 * Whether an output directory holds anything trained: a committed run (state.json) in it or in a folder up to three
 * levels below (a run of a compare, a stage, a seed's run).
 */
export function holdsRun(dir: string, depth = 3): boolean {
  if (fs.existsSync(path.join(dir, 'state.json'))) return true;
  if (depth === 0 || !fs.existsSync(dir)) return false;
  return fs.readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory() && !e.name.startsWith('.') && holdsRun(path.join(dir, e.name), depth - 1));
}

/**
 * The summary of a run directory's finished run when `resume` asks to continue it and there is nothing left to train:
 * its summary.json as written when it finished (resuming must not replace its epoch times). A finished run of more
 * epochs than asked for is an error (its best epoch may lie past the last one asked for). Null when there is
 * something to train (or to evaluate: a finished run without a summary).
 */
export function finishedRunSummary(out: string, epochs: number, flags: Pick<RunFlags, 'resume' | 'force'>): TrainSummary | null {
  if (!flags.resume || flags.force) return null;
  const st = readRunState(path.join(out, 'state.json'));
  if (!st || st.partial) return null;
  const ran = st.epoch + 1;
  if (ran > epochs)
    throw new Error(
      `${path.join(out, 'state.json')}: ${out} holds a finished run of ${ran} epochs, more than the ${epochs} asked for; ` +
        `pass --epochs ${ran} to use it, or --force to train ${epochs} epochs from the start`,
    );
  if (ran < epochs) return null;
  const file = path.join(out, 'summary.json');
  if (!fs.existsSync(file)) return null;
  const s = readRunJson<TrainSummary>(file);
  // a summary that an earlier version rewrote on resume (epoch times of no epochs) gets the times of all its epochs
  return s.epochs === epochs ? withRunTimes(s, out) : null;
}

/**
 * Epoch times of a resumed run over all its epochs, from metrics.jsonl (one line per finished epoch, whichever
 * process trained it), in place of the times of the epochs this process trained.
 */
export function withRunTimes(summary: TrainSummary, out: string): TrainSummary {
  if (summary.resumed_from_epoch === undefined) return summary;
  const file = path.join(out, 'metrics.jsonl');
  if (!fs.existsSync(file)) return summary;
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
  const epochs = lines.filter((m) => typeof m.epoch_s === 'number' && m.step === undefined);
  const mean = (xs: Record<string, unknown>[]) => xs.reduce((a, m) => a + (m.epoch_s as number), 0) / xs.length;
  if (!epochs.length) return summary;
  const live = epochs.filter((m) => m.teacher === 'live'), cached = epochs.filter((m) => m.teacher === 'cached');
  const { live_teacher_epoch_s: _l, cached_teacher_epoch_s: _c, ...rest } = summary;
  return {
    ...rest, mean_epoch_s: mean(epochs),
    ...(live.length ? { live_teacher_epoch_s: mean(live) } : {}), ...(cached.length ? { cached_teacher_epoch_s: mean(cached) } : {}),
  };
}

/**
 * A configuration ready for a command: loaded with `sets` overrides, its device checked, its thread count applied, and
 * its feature matches checked against the models (see checkMatches), all before anything trains.
 */
export function prepareConfig(file: string, sets: string[] = []): RunConfig {
  const cfg = loadConfig(file, sets);
  checkDevice(cfg.training.device);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  checkMatches(cfg, file);
  return cfg;
}

/** Trains the teacher, the plain student or the distilled student as the configuration says. */
export async function runFromConfig(cfg: RunConfig, kind: RunKind, data: DataSplits, flags: RunFlags): Promise<TrainSummary> {
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`${flags.file}: no '${kind === 'teacher' ? 'teacher' : 'student'}' section`);
  if (kind === 'teacher' && spec.members) throw new Error(`${flags.file}: the teacher is an ensemble of trained members; there is nothing to train`);
  if (kind === 'teacher' && isExternalTeacherSpec(spec)) throw new Error(`${flags.file}: the teacher is a ${spec.model} model from elsewhere; there is nothing to train`);
  const done = finishedRunSummary(runDir(cfg, kind), cfg.training.epochs, flags);
  if (done) {
    (flags.log ?? console.log)(`${cfg.name}/${kind}: finished already (${done.epochs} epochs, best test accuracy ${done.best_test_acc.toFixed(2)} % at epoch ${done.best_epoch}); nothing to resume`);
    return done;
  }
  const model = buildModel(cfg, kind);
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
      if (!(data.train instanceof ImageDataset)) throw new Error(`${flags.file}: quantization.qat needs image data; ${datasetOf(cfg).name} is text`);
      await prepareQat(model, qat, data.train, imageShapeOf(cfg, 'quantization.qat'), transformsFor(cfg, kind).norm, cfg.data.batchSize, flags.log);
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
    const summary = withRunTimes(await trainModel({
      name: `${cfg.name}/${kind}`, model, train: loader, test: data.test, testTransforms: norm, epochs: cfg.training.epochs, seed: cfg.seed,
      optimizer: { kind: cfg.training.optimizer, lr: cfg.training.lr, momentum: cfg.training.momentum, weightDecay: cfg.training.weightDecay },
      schedule: cfg.training.schedule, milestones: cfg.training.milestones, warmupEpochs: cfg.training.warmupEpochs, outDir: out, resume: flags.resume, force: flags.force,
      checkpointEvery: cfg.output.checkpointEvery, teacher, kd: kind === 'distilled' ? cfg.distill : undefined, features,
      cacheDir: path.join(cfg.output.dir, '.teacher-cache'), signal: flags.signal, progress: flags.progress, log: flags.log, syncBatchNorm: cfg.training.syncBatchNorm,
    }), out);
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
 * models on a blank batch of the data set's input shape) shapes that no projection can reconcile.
 */
export function checkMatches(cfg: RunConfig, file: string): void {
  if (!cfg.distill.matches.length) return;
  if (!cfg.teacher) throw new Error(`${file}: distill.matches needs a 'teacher' section`);
  // a teacher from elsewhere: its value names are checked when it is loaded, before training
  if (isExternalTeacherSpec(cfg.teacher)) return;
  const teacher = loadTeacher(cfg, file, false);
  const student = createModel(cfg.student.model, modelOptions(cfg, cfg.student));
  try {
    const fm = new FeatureMatcher(student, teacher, cfg.distill.matches as MatchSpec[]);
    try {
      const input = inputOf(cfg);
      // a text probe is a row of real tokens (id 1), not padding
      tidy(() => fm.probe((input.dtype === 'int64' ? ones : zeros)([2, ...input.shape], { dtype: input.dtype })));
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

export interface EvalResult {
  model: string;
  weights: string;
  /** Test accuracy (%). */
  test_acc: number;
  /** Test images evaluated. */
  images: number;
}

/**
 * Test accuracy of a role's weights (`weights`, default the role's run's best; an ensemble teacher: its members'),
 * on the configured device.
 */
export async function evaluateFromConfig(cfg: RunConfig, role: 'teacher' | 'student', data: DataSplits, o: { file: string; weights?: string }): Promise<EvalResult> {
  const spec = role === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`${o.file}: no '${role}' section`);
  const weights = o.weights ?? path.join(runDir(cfg, role), 'best.safetensors');
  const ensemble = role === 'teacher' && !!spec.members;
  const model = ensemble ? loadTeacher(cfg, o.file) : buildModel(cfg, role);
  try {
    if (!ensemble) {
      prepareQatCheckpoint(model, cfg, role);
      loadWeights(model, weights);
    }
    if (cfg.training.device !== 'cpu') model.to(cfg.training.device);
    const acc = await evaluate(model, data.test, transformsFor(cfg).norm);
    return { model: spec.model, weights, test_acc: acc, images: data.test.length };
  } finally {
    model.dispose();
  }
}
