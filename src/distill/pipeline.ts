// A whole run as a library call: `distill()` trains a student against a frozen teacher and returns the run summary.
// (Configuration-driven runs, the `tsdistill` command's, are the run layer's: src/run.)
import * as path from 'node:path';
import { checkDevice as checkTorchDevice, manualSeed, writeFileAtomic } from '../torch';
import { Module, loadWeights } from '../nn';
import { BatchTransform, DataLoader, DataSplits, ImageDataset, ImageDatasetInfo, getImageDataset, loadDataset, normalize, registerBuiltinDatasets } from '../data';
import { createModel, registerBuiltinModels } from '../models';
import { TrainOptions, TrainSummary, trainModel } from './trainer';
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

/** A Module as given, or a zoo model (owned: disposed after the run) with as many classes as the data unless its options say. */
function resolveModel(m: Module | ModelSpec, seed: number, numClasses: number, what: string): { module: Module; owned: boolean } {
  if (m instanceof Module) return { module: m, owned: false };
  if (!m || typeof m.model !== 'string') throw new Error(`distill: ${what} must be a Module or { model: name, options?, checkpoint? }`);
  registerBuiltinModels();
  manualSeed(seed);
  const module = createModel(m.model, { numClasses, ...m.options });
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
  /** Train/test splits, or the name of a registered image data set (see registerDataset; the built-ins are registered here). */
  data: DataSplits | string;
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
  let info: ImageDatasetInfo | null = null;
  if (typeof o.data === 'string') {
    registerBuiltinDatasets();
    info = getImageDataset(o.data, 'distill: data');
  }
  const data = info ? loadDataset(info.name) : (o.data as DataSplits);
  if (!data || !(data.train instanceof ImageDataset) || !(data.test instanceof ImageDataset))
    throw new Error('distill: data must be the name of a registered image data set (see registerDataset) or { train: ImageDataset, test: ImageDataset }');
  const transforms = o.transforms ?? (info ? [normalize(info.mean, info.std)] : []);
  const testTransforms = o.testTransforms ?? transforms.filter((t) => !t.random);
  const numClasses = data.train.classes.length;
  let teacher: { module: Module | Teacher; owned: boolean } | null = null;
  let student: { module: Module; owned: boolean } | null = null;
  let features: FeatureMatcher | undefined;
  try {
    teacher = isTeacher(o.teacher) ? { module: o.teacher, owned: false } : resolveModel(o.teacher, seed, numClasses, 'teacher');
    student = resolveModel(o.student, seed, numClasses, 'student');
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
    if (teacher?.owned) teacher.module.dispose();
    if (student?.owned) student.module.dispose();
    if (info) {
      data.train.dispose();
      data.test.dispose();
    }
  }
}

/** 'cpu', or 'cuda[:N]' when usable; the error names the config key `training.device`. */
export function checkDevice(device: string): string {
  return checkTorchDevice(device, 'training.device');
}
