// A whole run as a library call: `distill()` trains a student against a frozen teacher and returns the run summary.
// (Configuration-driven runs, the `tsdistill` command's, are the run layer's: src/run.)
import * as path from 'node:path';
import { Tensor, checkDevice as checkTorchDevice, isWriterProcess, manualSeed, noGrad, tidy, writeFileAtomic } from '../torch';
import { Module, loadWeights } from '../nn';
import {
  BatchTransform, DataLoader, DataSplits, type DatasetInfo, ImageDataset, type OwnDataSpec, TextDataset, getDataset, imageStats, loadDataset, normalize, ownDataset,
  registerBuiltinDatasets,
} from '../data';
import { createModel, registerBuiltinModels } from '../models';
import { TrainOptions, TrainSummary, deviceOf, trainModel } from './trainer';
import { FeatureMatcher, type MatchSpec } from './features';
import { type DynamicTemperature, type ScheduleSpec } from './schedules';
import type { SoftLoss } from './response';
import { type Teacher, isTeacher } from '../teachers';

/** A model given by name (the zoo's `createModel`) with options and optional starting weights. */
export interface ModelSpec {
  model: string;
  options?: Record<string, unknown>;
  checkpoint?: string;
}

/**
 * A Module as given, or a zoo model (owned: disposed after the run) with the data's options (as many classes as the
 * data; for text, the vocabulary, padding id and row length) unless its own options say; an explicit numClasses other
 * than the data's is an error.
 */
function resolveModel(m: Module | ModelSpec, seed: number, dataOptions: { numClasses: number } & Record<string, unknown>, what: string): { module: Module; owned: boolean } {
  if (m instanceof Module) return { module: m, owned: false };
  if (!m || typeof m.model !== 'string') throw new Error(`distill: ${what} must be a Module or { model: name, options?, checkpoint? }`);
  const nc = m.options?.numClasses;
  if (nc !== undefined && nc !== dataOptions.numClasses)
    throw new Error(`distill: ${what}.options.numClasses is ${nc}, but the data has ${dataOptions.numClasses} classes; remove it (it follows the data) or fix it`);
  registerBuiltinModels();
  manualSeed(seed);
  const module = createModel(m.model, { ...dataOptions, ...m.options });
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
  /**
   * Train/test splits (ImageDatasets or TextDatasets), the name of a registered data set (see registerDataset; the
   * built-ins are registered here), or one's own data: { train, test } or { path, split } paths (see ownDataset).
   */
  data: DataSplits | string | OwnDataSpec;
  /** Where checkpoints, metrics.jsonl and summary.json go. */
  outDir: string;
  epochs?: number;
  batchSize?: number;
  /**
   * Training transforms of images after the uint8 → [0, 1] scaling (default: normalize with the data set's statistics,
   * registered or computed from the training split as the command does; pass [] for none). Text takes none.
   */
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
  /** Keep `epoch-N.safetensors` every N epochs besides last and best (default 0: never). */
  checkpointEvery?: number;
  resume?: boolean;
  force?: boolean;
  progress?: boolean;
  signal?: AbortSignal;
  /** Data-parallel runs (a default process group is set): BatchNorm of the student over the whole global batch. */
  syncBatchNorm?: boolean;
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
  const { data, info } = resolveData(o.data);
  try {
    return await distillOn(o, data, info, seed);
  } finally {
    if (info) {
      data.train.dispose();
      data.test.dispose();
    }
  }
}

/** The splits `distill()` trains on; `info` is set when they were loaded here (and are disposed after the run). */
function resolveData(d: DistillOptions['data']): { data: DataSplits; info: DatasetInfo | null } {
  const given = d as Partial<DataSplits> | undefined;
  const isSet = (x: unknown) => x instanceof ImageDataset || x instanceof TextDataset;
  if (given && typeof given === 'object' && (isSet(given.train) || isSet(given.test))) {
    const { train, test } = given;
    if (!isSet(train) || !isSet(test) || (train instanceof TextDataset) !== (test instanceof TextDataset))
      throw new Error('distill: data { train, test } must be two ImageDatasets or two TextDatasets');
    const a = train!.classes, b = test!.classes;
    if (a.length !== b.length || a.some((c, i) => c !== b[i]))
      throw new Error(`distill: the classes of data.train (${a.join(', ')}) and data.test (${b.join(', ')}) differ`);
    return { data: given as DataSplits, info: null };
  }
  registerBuiltinDatasets();
  let info: DatasetInfo;
  if (typeof d === 'string') info = getDataset(d);
  else if (d && typeof d === 'object') {
    try {
      info = ownDataset(d as OwnDataSpec);
    } catch (e) {
      throw new Error(`distill: ${(e as Error).message}`, { cause: e });
    }
  } else throw new Error('distill: data must be { train, test } data sets, the name of a registered data set, or one\'s own data ({ train, test } or { path, split } paths)');
  if (info.kind === 'tokens' || (info.kind === 'text' && !info.encoder))
    throw new Error(`distill: data: '${info.name}' is a ${info.kind} data set without a tokenizer; distill() trains classifiers of images or text`);
  return { data: loadDataset(info.name), info };
}

/**
 * Checks that a model gives one output per class: a forward of two training samples in eval mode (every module's
 * mode is restored after).
 */
function checkOutputs(m: Module, x: Tensor, numClasses: number, what: string): void {
  const modes = m.modules().map((x2) => [x2, x2.training] as const);
  m.eval();
  try {
    const out = tidy(() => noGrad(() => (m.call(x.to({ device: deviceOf(m) })) as Tensor).shape));
    if (out.length !== 2 || out[1] !== numClasses)
      throw new Error(`distill: the ${what} gives outputs [${out.join(', ')}] for ${x.shape[0]} samples; the data has ${numClasses} classes (expected [${x.shape[0]}, ${numClasses}])`);
  } finally {
    for (const [mod, t] of modes) mod.training = t;
  }
}

async function distillOn(o: DistillOptions, data: DataSplits, info: DatasetInfo | null, seed: number): Promise<TrainSummary> {
  let transforms: BatchTransform[];
  if (data.train instanceof TextDataset) {
    if (o.transforms?.length || o.testTransforms?.length) throw new Error('distill: transforms apply to images; the data is text (token ids)');
    transforms = [];
  } else transforms = o.transforms ?? [info?.kind === 'image' ? normalize(info.mean, info.std) : defaultNormalize(data.train)];
  const testTransforms = o.testTransforms ?? transforms.filter((t) => !t.random);
  const numClasses = data.train.classes.length;
  const enc = data.train instanceof TextDataset ? data.train.encoder : null;
  const dataOptions = { numClasses, ...(enc ? { vocabSize: enc.vocabSize, padId: enc.padId, maxLen: enc.rowLength } : {}) };
  let teacher: { module: Module | Teacher; owned: boolean } | null = null;
  let student: { module: Module; owned: boolean } | null = null;
  let features: FeatureMatcher | undefined;
  try {
    teacher = isTeacher(o.teacher) ? { module: o.teacher, owned: false } : resolveModel(o.teacher, seed, dataOptions, 'teacher');
    student = resolveModel(o.student, seed, dataOptions, 'student');
    {
      const probe = new DataLoader(data.train, { batchSize: 2, transforms: testTransforms, residentFloatMB: 0 });
      const b = probe.batchAt(0);
      try {
        if (teacher.module instanceof Module) checkOutputs(teacher.module, b.x, numClasses, 'teacher');
        checkOutputs(student.module, b.x, numClasses, 'student');
      } finally {
        b.dispose();
      }
    }
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
      schedule: o.schedule ?? 'constant', milestones: o.milestones, warmupEpochs: o.warmupEpochs, outDir: o.outDir, resume: o.resume, force: o.force, checkpointEvery: o.checkpointEvery,
      kd: { temperature: o.temperature ?? 4, alpha: o.alpha ?? 0.1, softLoss: o.softLoss ?? 'kl', cache: o.cache ?? true, dynamicTemperature: o.dynamicTemperature }, features,
      progress: o.progress, signal: o.signal, log: o.log, syncBatchNorm: o.syncBatchNorm,
    });
    if (isWriterProcess()) writeFileAtomic(path.join(o.outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    return summary;
  } finally {
    features?.dispose();
    if (teacher?.owned) teacher.module.dispose();
    if (student?.owned) student.module.dispose();
  }
}

/** normalize() with the per-channel statistics of the training images, as the command normalises its data. */
function defaultNormalize(train: ImageDataset): BatchTransform {
  const { mean, std } = imageStats(train);
  return normalize(mean, std);
}

/** 'cpu', or 'cuda[:N]' when usable; the error names the config key `training.device`. */
export function checkDevice(device: string): string {
  return checkTorchDevice(device, 'training.device');
}
