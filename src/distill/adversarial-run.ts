// Adversarial distillation as engine runs: the roles, terms and updates of each method, trained by the one engine.
//
//   alone          the student on the labels only (the floor)
//   kd             the usual KD terms: α · CE(labels) + (1 − α) · KL(teacher ‖ student)·T² at temperature T
//   discriminator  kd + weight · adv_student; a `discriminator` role (an MLP on the teacher's and the student's logits,
//                  or softmax, or a pooled feature; optionally conditioned on the label) learns to tell the teacher's
//                  outputs (real) from the student's (fake) with adv_disc. Updates: the discriminator's step (k times,
//                  on every n-th step), then the student's (Wang et al. 2018; Xu et al. 2018)
//   bss            kd on each batch's base rows + bss_kl on its boundary supporting samples (Heo et al. 2019), made
//                  before the step by BssBatches; the BSS weight decays linearly to 0 over the first 3/4 of training
import type { Module } from '../nn';
import type { DataLoader, TensorDataset } from '../data';
import { type BatchSource, type EngineOptions, type OptimizerSpec, type RoleSpec, type TermSpec, type TrainSummary, type UpdateSpec, runEngine } from './engine';
import { type AdversarialForm, type BssAttackOptions, BssBatches } from './adversarial';
import { Discriminator } from '../models/discriminator';
import type { WeightSpec } from './terms';
import type { Progress } from './schedules';

export const ADVERSARIAL_METHODS = ['alone', 'kd', 'discriminator', 'bss'] as const;
export type AdversarialMethod = (typeof ADVERSARIAL_METHODS)[number];

export interface DiscriminatorSettings {
  /** The discriminator (default: the zoo's `discriminator` with the options below). */
  model?: Module;
  /** What it reads of each side: `logits` (default) or a module path of teacher and student alike (a feature). */
  tap?: string;
  /** Features per row of the tap (default: the classes; required for a feature tap). */
  inputDim?: number;
  /** Hidden widths (default [64, 64]). */
  hidden?: number[];
  /** `logits` (default) or `softmax` (at `temperature`, default 1). */
  input?: 'logits' | 'softmax';
  temperature?: number;
  /** Condition on the label (Xu et al.): the one-hot label is appended to both sides. Default false. */
  conditional?: boolean;
  /** bce (default) or lsgan (least squares). */
  form?: AdversarialForm;
  /** The student's adversarial term's weight (default 0.1). */
  weight?: WeightSpec;
  /** Default Adam 1e-3, betas (0.5, 0.999). */
  optimizer?: OptimizerSpec;
  /** k: discriminator steps (on the same batch) before each student step (default 1). */
  steps?: number;
  /** n: the discriminator steps only on every n-th step of the run (default 1: every step). */
  every?: number;
}

export interface BssSettings extends BssAttackOptions {
  /** Base samples attacked per batch at most (the reference: 64 of 256; default a quarter of the batch). */
  attackSize?: number;
  /**
   * The BSS term's weight at the start (default 0.5 · (1 − α): the reference's ratio of the BSS term to the clean KD
   * term at the start, 2 : 4), decaying linearly to 0 at `until` of the run.
   */
  weight?: number;
  /** The fraction of the run over which the weight decays to 0 (default 0.75, the reference's). */
  until?: number;
}

export interface AdversarialOptions {
  method: AdversarialMethod;
  /** The trained teacher (frozen here). */
  teacher: Module;
  student: Module;
  train: DataLoader | BatchSource;
  classes: number;
  /** The weight of the cross-entropy on the labels (default 0.1; 1 − α weighs the KD term). */
  alpha?: number;
  /** KD temperature (default 4). */
  temperature?: number;
  /** Default SGD 0.01, momentum 0.9. */
  studentOptimizer?: OptimizerSpec;
  studentSchedule?: RoleSpec['schedule'];
  discriminator?: DiscriminatorSettings;
  bss?: BssSettings;
  epochs: number;
  seed: number;
  outDir: string;
  test?: TensorDataset;
  testTransforms?: DataLoader['transforms'];
  resume?: boolean;
  force?: boolean;
  checkpointEverySteps?: number;
  logEverySteps?: number;
  report?: (p: Progress) => Record<string, number>;
  log?: (line: string) => void;
  progress?: boolean;
  signal?: AbortSignal;
}

/** The roles, terms, updates and batches of an adversarial run (what `adversarial` hands the engine). */
export function adversarialSpec(o: AdversarialOptions): Pick<EngineOptions, 'roles' | 'terms' | 'updates' | 'primary' | 'train'> {
  const m = o.method;
  if (!(ADVERSARIAL_METHODS as readonly string[]).includes(m)) throw new Error(`adversarial: method must be one of ${ADVERSARIAL_METHODS.join(', ')}, got ${JSON.stringify(m)}`);
  const alpha = o.alpha ?? 0.1, T = o.temperature ?? 4;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`adversarial: alpha must be in [0, 1], got ${o.alpha}`);
  if (!(T > 0)) throw new Error(`adversarial: temperature must be positive, got ${o.temperature}`);
  if (!Number.isInteger(o.classes) || o.classes < 2) throw new Error(`adversarial: classes must be an integer ≥ 2, got ${o.classes}`);
  const student: RoleSpec = { name: 'student', model: o.student, optimizer: o.studentOptimizer ?? { kind: 'sgd', lr: 0.01, momentum: 0.9 }, schedule: o.studentSchedule };
  const teacher: RoleSpec = { name: 'teacher', model: o.teacher };
  const hard: TermSpec = { loss: 'ce', student: 'student.logits', teacher: 'labels', weight: m === 'alone' ? 1 : alpha, name: 'hard', metric: 'hard' };
  const soft: TermSpec = { loss: 'kl', student: 'student.logits', teacher: 'teacher.logits', weight: 1 - alpha, options: { temperature: T }, name: 'soft', metric: 'soft' };
  if (m === 'alone') return { roles: [student], terms: [hard], primary: 'student', train: o.train };
  if (m === 'kd') return { roles: [teacher, student], terms: [hard, soft], primary: 'student', train: o.train };
  if (m === 'bss') {
    const b = o.bss ?? {};
    const until = b.until ?? 0.75;
    if (!(until > 0 && until <= 1)) throw new Error(`adversarial: bss.until must be in (0, 1] (the fraction of the run over which the BSS weight decays to 0), got ${b.until}`);
    const w0 = b.weight ?? 0.5 * (1 - alpha);
    if (!(w0 >= 0)) throw new Error(`adversarial: bss.weight must be non-negative, got ${b.weight}`);
    const train = new BssBatches(o.train, {
      teacher: o.teacher, student: o.student, attackSize: b.attackSize, seed: o.seed, attack: { steps: b.steps, stepSize: b.stepSize, range: b.range },
    });
    return {
      roles: [teacher, student], primary: 'student', train,
      terms: [
        hard,
        { ...soft, loss: 'bss_kl', options: { temperature: T, rows: 'base' } },
        { loss: 'bss_kl', student: 'student.logits', teacher: 'teacher.logits', weight: { kind: 'linear', from: w0, to: 0, epochs: until * o.epochs }, options: { temperature: T, rows: 'boundary' }, name: 'bss' },
      ],
    };
  }
  const d = o.discriminator ?? {};
  const tap = d.tap ?? 'logits';
  if (tap !== 'logits' && d.inputDim === undefined && !d.model) throw new Error(`adversarial: discriminator.inputDim is required for the feature tap '${tap}' (its features per row; 4-D maps are pooled over H×W, so their channels)`);
  const k = d.steps ?? 1, every = d.every ?? 1;
  if (!Number.isInteger(k) || k < 1) throw new Error(`adversarial: discriminator.steps must be a positive integer (discriminator steps per student step), got ${d.steps}`);
  if (!Number.isInteger(every) || every < 1) throw new Error(`adversarial: discriminator.every must be a positive integer (the discriminator steps on every n-th step), got ${d.every}`);
  const model = d.model ?? new Discriminator({ inputDim: d.inputDim ?? o.classes, hidden: d.hidden, input: d.input, temperature: d.temperature, classes: d.conditional ? o.classes : 0 });
  const disc: RoleSpec = {
    name: 'discriminator', model, classify: false, optimizer: d.optimizer ?? { kind: 'adam', lr: 1e-3, betas: [0.5, 0.999] },
    input: [`teacher.${tap}`, `student.${tap}`, ...(d.conditional ? ['labels'] : [])],
  };
  const form = d.form ?? 'bce';
  const dTerm: TermSpec = { loss: 'adv_disc', student: 'discriminator.logits', teacher: 'discriminator.logits', options: { form }, name: 'disc', metric: 'disc' };
  const aTerm: TermSpec = { loss: 'adv_student', student: 'discriminator.logits', teacher: 'discriminator.logits', weight: d.weight ?? 0.1, options: { form }, name: 'adv' };
  const updates: UpdateSpec[] = [
    ...Array.from({ length: k }, () => ({ roles: ['discriminator'], terms: ['disc'], every })),
    { roles: ['student'], terms: ['hard', 'soft', 'adv'] },
  ];
  return { roles: [teacher, student, disc], terms: [hard, soft, dTerm, aTerm], updates, primary: 'student', train: o.train };
}

/**
 * Distils `teacher` into `student` with the method's roles and terms (one engine run: the discriminator's weights and
 * optimizer beside the student's in the run directory; BSS samples drawn again identically on resume).
 */
export async function adversarial(o: AdversarialOptions): Promise<TrainSummary> {
  const spec = adversarialSpec(o);
  // a discriminator made here is freed here
  const made = o.method === 'discriminator' && !o.discriminator?.model ? (spec.roles.find((r) => r.name === 'discriminator')!.model as Module) : null;
  try {
    return await runEngine({
      name: `adversarial-${o.method}`, ...spec, epochs: o.epochs, seed: o.seed, outDir: o.outDir, resume: o.resume, force: o.force,
      test: o.test, testTransforms: o.testTransforms, checkpointEverySteps: o.checkpointEverySteps, logEverySteps: o.logEverySteps,
      report: o.report, log: o.log, progress: o.progress, signal: o.signal,
    });
  } finally {
    made?.dispose();
  }
}
