// `trainModel`: a classification run — a plain model, or a student against a frozen teacher with response KD and
// feature matches — as a configuration of the one engine (engine.ts): roles `student` (trainable) and `teacher`
// (frozen), terms `ce` (hard labels, weight α), the soft loss (weight 1 − α) and each feature match. Async, yielding
// every step; per-epoch evaluation; metrics appended durably to metrics.jsonl; checkpoints written atomically at each
// epoch end with state.json written last as the commit point, so `resume` continues from the last finished step and
// ends with the same weights as an uninterrupted run (data order, augmentation and libtorch's RNG are all derived from
// (seed, epoch, step)).
import { Module } from '../nn';
import { defaultProcessGroup } from '../torch';
import { DataLoader, TensorDataset } from '../data';
import { DynamicTemperature, ScheduleSpec, checkSchedule, scheduleValue, isConstant, type Progress } from './schedules';
import type { FeatureMatcher } from './features';
import { type Teacher } from '../teachers';
import { type BatchSource, type RoleSpec, type TermSpec, type TrainSummary, deviceOf, runEngine } from './engine';
import { type ViewCache, ViewCacheBatches, teacherViews } from './view-cache';
import * as path from 'node:path';

export { evaluate, deviceOf, TrainingInterrupted, type EpochMetrics, type TrainSummary } from './engine';

export interface TrainOptions {
  model: Module;
  train: DataLoader;
  test: TensorDataset;
  testTransforms: DataLoader['transforms'];
  epochs: number;
  seed: number;
  optimizer: { kind: 'sgd' | 'adam' | 'adamw'; lr: number; momentum: number; weightDecay: number };
  schedule: 'constant' | 'cosine' | 'step' | 'multistep';
  /** For schedule 'multistep': epochs (counted after warm-up) at which the learning rate is multiplied by 0.1. */
  milestones?: number[];
  /** Linear warm-up over this many epochs before the schedule (0 = none). */
  warmupEpochs?: number;
  outDir: string;
  resume?: boolean;
  force?: boolean;
  /** Keep `epoch-N.safetensors` every N epochs besides last and best (default 0: never). */
  checkpointEvery?: number;
  /**
   * Distillation: a frozen teacher and the response-KD settings. A Module runs inside the step; an external Teacher
   * (ONNX, TorchScript, black-box) is awaited before the step and its outputs fed to it (and to the teacher cache).
   */
  teacher?: Module | Teacher;
  kd?: {
    /** A number or a schedule over training (linear, cosine, warmup). */
    temperature: number | ScheduleSpec;
    /** Weight of the hard-label cross-entropy: a number or a schedule. */
    alpha: number | ScheduleSpec;
    softLoss: 'kl' | 'soft_ce' | 'logit_mse';
    /**
     * true: the teacher's logits per image are cached when the loader's transforms are deterministic. 'views': with
     * a random crop / flip, the teacher's top-k outputs for `views` views per image are cached (view-cache.ts) and
     * each step trains on one of them, the student seeing the same view (without random transforms: as true).
     */
    cache: boolean | 'views';
    /** cache 'views': views per image (default 10), logits kept per view (default 10), the views' seed (default `seed`). */
    views?: number;
    topk?: number;
    viewSeed?: number;
    /** Per-sample temperatures around the scheduled one (TextBrewer's flsw / cwsm); KL soft loss only. */
    dynamicTemperature?: DynamicTemperature;
  };
  /**
   * Feature / relation matches between teacher and student (needs `teacher`): each match's weighted loss is added to
   * the response-KD loss (or to the cross-entropy without `kd`). The teacher then runs on every batch (no cache).
   */
  features?: FeatureMatcher;
  log?: (line: string) => void;
  name?: string;
  /** Progress display: a bar per epoch on a TTY, otherwise a line every quarter epoch. Default: on. */
  progress?: boolean;
  /** Stops the run after the current step, saving a resumable state (e.g. on Ctrl-C); trainModel then throws TrainingInterrupted. */
  signal?: AbortSignal;
  /** Data-parallel runs: synchronise the model's BatchNorm over the processes (see EngineOptions.syncBatchNorm). */
  syncBatchNorm?: boolean;
  /** Where teacher logits are cached (default: `.teacher-cache` next to outDir). */
  cacheDir?: string;
}

/**
 * Trains `model` (alone, or against `teacher` with `kd` and `features`) as the engine's roles and terms, and returns
 * the run summary.
 */
export async function trainModel(o: TrainOptions): Promise<TrainSummary> {
  const name = o.name ?? 'run';
  const fm = o.features ?? null;
  if (fm) {
    if (!o.teacher) throw new Error(`${name}: feature matches need a teacher`);
    if (fm.student !== o.model || fm.teacher !== o.teacher) throw new Error(`${name}: the FeatureMatcher was built for other models than this run's student and teacher`);
  }
  const kdo = o.kd;
  const terms: TermSpec[] = [];
  const log = o.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const useViews = !!(kdo && o.teacher && kdo.cache === 'views' && o.train.transforms.some((t) => t.random));
  if (useViews) {
    if (!isConstant(kdo!.temperature) || kdo!.dynamicTemperature) throw new Error(`${name}: cached views store the teacher's tail mass at one temperature; give a constant distill.temperature`);
    if (kdo!.softLoss !== 'kl') throw new Error(`${name}: cached views distil with the kl soft loss, got '${kdo!.softLoss}'`);
    if (fm) throw new Error(`${name}: feature matches need the teacher on every batch; cached views hold its logits only`);
  }
  let report: ((p: Progress) => Record<string, number>) | undefined;
  if (kdo && o.teacher) {
    checkSchedule(kdo.temperature, 'distill.temperature');
    checkSchedule(kdo.alpha, 'distill.alpha');
    if (kdo.dynamicTemperature && kdo.softLoss !== 'kl') throw new Error(`${name}: a dynamic temperature needs softLoss 'kl', got '${kdo.softLoss}'`);
    const alphaAt = (p: Progress) => {
      const a = scheduleValue(kdo.alpha, p);
      if (!(a >= 0 && a <= 1)) throw new Error(`${name}: the alpha schedule reached ${a} at epoch ${p.epoch + 1}, step ${p.step + 1}; it must stay in [0, 1]`);
      return a;
    };
    const temperatureAt = (p: Progress) => {
      const T = scheduleValue(kdo.temperature, p);
      if (!(T > 0)) throw new Error(`${name}: the temperature schedule reached ${T} at epoch ${p.epoch + 1}, step ${p.step + 1}; it must stay positive`);
      return T;
    };
    const alpha = isConstant(kdo.alpha) ? alphaAt({ epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 }) : null;
    terms.push(
      { loss: 'ce', name: 'hard', student: 'student.logits', teacher: 'labels', weight: alpha ?? alphaAt, metric: 'hard' },
      {
        loss: useViews ? 'soft_topk' : kdo.softLoss, name: 'soft', student: 'student.logits', teacher: useViews ? 'batch.teacher_topk_logits' : 'teacher.logits', weight: alpha !== null ? 1 - alpha : (p) => 1 - alphaAt(p), metric: 'soft',
        options: { temperature: isConstant(kdo.temperature) ? temperatureAt({ epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 }) : temperatureAt, ...(kdo.dynamicTemperature ? { dynamicTemperature: kdo.dynamicTemperature } : {}) },
      },
    );
    if (!isConstant(kdo.temperature) || !isConstant(kdo.alpha) || kdo.dynamicTemperature) report = (p) => ({ temperature: temperatureAt(p), alpha: alphaAt(p) });
  } else terms.push({ loss: 'ce', name: 'ce', student: 'student.logits', teacher: 'labels', metric: false });
  if (fm)
    for (const m of fm.matches)
      terms.push({
        loss: m.spec.loss, name: m.name, weight: m.weight, options: m.spec.options, proj: m.spec.proj,
        student: m.s.map((p) => `student.${p}`), teacher: m.t.map((p) => `teacher.${p}`),
      });
  const roles: RoleSpec[] = [{
    name: 'student', model: o.model,
    optimizer: o.optimizer, schedule: { kind: o.schedule, milestones: o.milestones, warmupEpochs: o.warmupEpochs },
  }];
  // with cached views the teacher role is tapped by no term (its outputs come with the batches)
  if (o.teacher) roles.push({ name: 'teacher', model: o.teacher, cache: !!kdo?.cache });
  let train: BatchSource = o.train;
  let views: ViewCache | null = null;
  if (useViews) {
    const T = scheduleValue(kdo!.temperature, { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 });
    const cacheDir = o.cacheDir ?? path.join(o.outDir, '..', '.teacher-cache');
    const t0 = Date.now();
    const viewOpts = { views: kdo!.views ?? 10, topk: kdo!.topk ?? 10, temperature: T, seed: kdo!.viewSeed ?? o.seed, cacheDir, warn: log, device: deviceOf(o.model) };
    // data-parallel: rank 0 builds (or reads) the cache; the others read the file it wrote
    const group = defaultProcessGroup();
    const dist = group && group.worldSize > 1 ? group : null;
    if (dist && dist.rank !== 0) {
      dist.barrier();
      views = await teacherViews(o.teacher!, o.train, viewOpts);
    } else {
      views = await teacherViews(o.teacher!, o.train, viewOpts);
      dist?.barrier();
    }
    log(`${name}: teacher outputs for ${views.views} views × ${views.n} images (top-${views.k} of ${views.classes}) ${views.fromCache ? 'read from' : `computed in ${((Date.now() - t0) / 1000).toFixed(1)} s and stored in`} ${views.file}`);
    train = new ViewCacheBatches(o.train, views);
  }
  try {
    const summary = await runEngine({
      name, roles, terms, report, train, test: o.test, testTransforms: o.testTransforms, epochs: o.epochs, seed: o.seed,
      outDir: o.outDir, resume: o.resume, force: o.force, checkpointEvery: o.checkpointEvery ?? 0, log: o.log, progress: o.progress,
      signal: o.signal, cacheDir: o.cacheDir, syncBatchNorm: o.syncBatchNorm,
    });
    return views ? { ...summary, teacher_cache: views.fromCache ? 'loaded' : 'built' } : summary;
  } finally {
    views?.dispose();
  }
}
