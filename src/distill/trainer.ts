// `trainModel`: a classification run — a plain model, or a student against a frozen teacher with response KD and
// feature matches — as a configuration of the one engine (engine.ts): roles `student` (trainable) and `teacher`
// (frozen), terms `ce` (hard labels, weight α), the soft loss (weight 1 − α) and each feature match. Async, yielding
// every step; per-epoch evaluation; metrics appended durably to metrics.jsonl; checkpoints written atomically at each
// epoch end with state.json written last as the commit point, so `resume` continues from the last finished step and
// ends with the same weights as an uninterrupted run (data order, augmentation and libtorch's RNG are all derived from
// (seed, epoch, step)).
import { Module } from '../nn';
import { DataLoader, TensorDataset } from '../data';
import { DynamicTemperature, ScheduleSpec, checkSchedule, scheduleValue, isConstant, type Progress } from './schedules';
import type { FeatureMatcher } from './features';
import { type Teacher } from '../teachers';
import { type RoleSpec, type TermSpec, type TrainSummary, runEngine } from './engine';

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
    cache: boolean;
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
        loss: kdo.softLoss, name: 'soft', student: 'student.logits', teacher: 'teacher.logits', weight: alpha !== null ? 1 - alpha : (p) => 1 - alphaAt(p), metric: 'soft',
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
  if (o.teacher) roles.push({ name: 'teacher', model: o.teacher, cache: !!kdo?.cache });
  return runEngine({
    name, roles, terms, report, train: o.train, test: o.test, testTransforms: o.testTransforms, epochs: o.epochs, seed: o.seed,
    outDir: o.outDir, resume: o.resume, force: o.force, checkpointEvery: o.checkpointEvery ?? 0, log: o.log, progress: o.progress,
    signal: o.signal, cacheDir: o.cacheDir,
  });
}
