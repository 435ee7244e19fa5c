// Data-free distillation as engine runs: the roles (a generator on noise, the frozen teacher and the student on its
// images), the terms and the updates of each method, trained by the one engine on NoiseBatches — no training image is
// read; a test set, when given, only measures the student.
//
//   dafl           one update (DAFL's joint step): the generator minimises one-hot + entropy + activation on the
//                  teacher's outputs, the student minimises KL(teacher ‖ student) at T = 1 on the same images (its
//                  input detached from the generator)
//   deepinversion  two updates: the generator minimises cross-entropy of the teacher to the batch's random classes,
//                  BatchNorm statistics (teachers with BatchNorms after convolutions), total variation, L2 and the
//                  adaptive 1 − JS(teacher, student) term; then the student minimises KL at temperature T
//   dfad           two updates: the generator maximises mean |student − teacher| over logits, the student minimises it
//   noise          the floor: the student learns KL(teacher ‖ student) on Gaussian noise images, no generator
import { Module } from '../nn';
import { BatchNorm2d, Conv2d } from '../nn';
import type { DataLoader, TensorDataset } from '../data';
import { type EngineOptions, type OptimizerSpec, type RoleSpec, type TermSpec, type TrainSummary, type UpdateSpec, runEngine } from './engine';
import { NoiseBatches } from './datafree';
import { writeImageGrid } from '../report';
import { noGrad, tidy } from '../torch';
import * as path from 'node:path';
import type { Progress } from './schedules';

export const DATA_FREE_METHODS = ['dafl', 'deepinversion', 'dfad', 'noise'] as const;
export type DataFreeMethod = (typeof DATA_FREE_METHODS)[number];

/** The methods' term weights; each method reads its own. */
export interface DataFreeWeights {
  /** DAFL: one-hot (1), information entropy (5), activation (0.1), as the authors' MNIST run. */
  onehot?: number;
  entropy?: number;
  activation?: number;
  /** DeepInversion: cross-entropy to the random classes (1), BatchNorm statistics (0.01), TV-L2 (1e-4), L2 (1e-5), adaptive (1). */
  ce?: number;
  bn?: number;
  tv?: number;
  l2?: number;
  adaptive?: number;
}

export interface DataFreeOptions {
  method: DataFreeMethod;
  /** The trained teacher (frozen here). */
  teacher: Module;
  student: Module;
  /** Noise → images [B, C, H, W] with a `latentDim` (e.g. DaflGenerator); every method but `noise` needs one. */
  generator?: Module & { latentDim?: number };
  /** [C, H, W] of the images (the noise method's noise images). */
  imageShape: [number, number, number];
  classes: number;
  /** DAFL's activation loss: the teacher module whose output is the feature (default: the input of its last Linear is not known, so give it). */
  feature?: string;
  /** DAFL: apply a ReLU to the feature first (a feature tapped before its activation). Default true. */
  featureRelu?: boolean;
  batchSize: number;
  /** Optimizer steps per epoch (DAFL: 120). */
  batchesPerEpoch: number;
  epochs: number;
  seed: number;
  outDir: string;
  /** Default Adam 2e-3 (DAFL's); dfad: SGD 0.1, momentum 0.9, weight decay 5e-4. */
  studentOptimizer?: OptimizerSpec;
  /** Default Adam 0.2 (DAFL's); deepinversion and dfad: Adam 1e-3. */
  generatorOptimizer?: OptimizerSpec;
  studentSchedule?: EngineOptions['roles'][number]['schedule'];
  generatorSchedule?: EngineOptions['roles'][number]['schedule'];
  /**
   * Student steps per generator step (default 1). DAFL with 1 is the authors' joint step; with k > 1 the generator is
   * stepped on every k-th step and the student on every step, on fresh images of the current generator (its forward
   * only, the costly part of a DAFL step being the generator's backward through the teacher): DFAD's 5 student
   * iterations per generator iteration, offered to every generator method.
   */
  studentSteps?: number;
  weights?: DataFreeWeights;
  /** The student's KD temperature (dafl and noise: 1; deepinversion: 3). */
  temperature?: number;
  /** Only to measure the student after every epoch (e.g. the test split); never trained on. */
  test?: TensorDataset;
  testTransforms?: DataLoader['transforms'];
  resume?: boolean;
  force?: boolean;
  checkpointEverySteps?: number;
  /** Keep `epoch-N` weights every N epochs (default 0: only `last` and `best`, as trainModel). */
  checkpointEvery?: number;
  logEverySteps?: number;
  report?: (p: Progress) => Record<string, number>;
  log?: (line: string) => void;
  progress?: boolean;
  signal?: AbortSignal;
}

/**
 * DeepInversion's BatchNorm taps: every BatchNorm2d whose input is the output of a sibling convolution named alike
 * (`bn1` after `conv1`, `shortcut.1` after `shortcut.0`), with its running statistics.
 */
export function batchNormTaps(teacher: Module): { tap: string; bn: string; mean: number[]; var: number[] }[] {
  const mods = new Map(teacher.namedModules());
  const out: { tap: string; bn: string; mean: number[]; var: number[] }[] = [];
  for (const [p, m] of mods) {
    if (!(m instanceof BatchNorm2d) || !m.runningMean || !m.runningVar) continue;
    const i = p.lastIndexOf('.');
    const dir = i < 0 ? '' : p.slice(0, i + 1), leaf = p.slice(i + 1);
    const cands = [leaf.replace(/^bn/, 'conv'), /^\d+$/.test(leaf) ? String(Number(leaf) - 1) : ''].filter((x) => x && x !== leaf).map((x) => dir + x);
    const conv = cands.find((c) => mods.get(c) instanceof Conv2d && (mods.get(c) as Conv2d).weight.shape[0] === m.runningMean!.shape[0]);
    if (!conv) continue;
    out.push({ tap: conv, bn: p, mean: [...(m.runningMean.data() as Float32Array)], var: [...(m.runningVar.data() as Float32Array)] });
  }
  return out;
}

/** The roles, terms and updates of a data-free run (what `dataFree` hands the engine with its noise). */
export function dataFreeSpec(o: DataFreeOptions): Pick<EngineOptions, 'roles' | 'terms' | 'updates' | 'primary'> & { noiseShape: number[] } {
  const w = o.weights ?? {};
  const m = o.method;
  if (!(DATA_FREE_METHODS as readonly string[]).includes(m)) throw new Error(`dataFree: method must be one of ${DATA_FREE_METHODS.join(', ')}, got ${JSON.stringify(m)}`);
  const teacher: RoleSpec = { name: 'teacher', model: o.teacher };
  if (m === 'noise') {
    return {
      roles: [teacher, { name: 'student', model: o.student, optimizer: o.studentOptimizer ?? { kind: 'adam', lr: 2e-3 }, schedule: o.studentSchedule }],
      terms: [{ loss: 'kl', student: 'student.logits', teacher: 'teacher.logits', options: { temperature: o.temperature ?? 1 }, name: 'kd', metric: 'soft' }],
      primary: 'student',
      noiseShape: [...o.imageShape],
    };
  }
  const g = o.generator;
  if (!g) throw new Error(`dataFree: method '${m}' needs a generator (e.g. createModel('dafl-generator', { imageShape: [${o.imageShape.join(', ')}] }))`);
  const latent = g.latentDim;
  if (!Number.isInteger(latent) || latent! < 1) throw new Error(`dataFree: the generator (${g.constructor.name}) has no latentDim (the length of its noise vectors)`);
  const gen: RoleSpec = { name: 'generator', model: g, classify: false, optimizer: o.generatorOptimizer ?? { kind: 'adam', lr: m === 'dafl' ? 0.2 : 1e-3 }, schedule: o.generatorSchedule };
  const k = o.studentSteps ?? 1;
  if (!Number.isInteger(k) || k < 1) throw new Error(`dataFree: studentSteps must be a positive integer (student steps per generator step), got ${o.studentSteps}`);
  teacher.input = 'generator.logits';
  const student: RoleSpec = {
    name: 'student', model: o.student, input: 'generator.logits', detachInput: m === 'dafl', schedule: o.studentSchedule,
    optimizer: o.studentOptimizer ?? (m === 'dfad' ? { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 5e-4 } : { kind: 'adam', lr: 2e-3 }),
  };
  const roles = [gen, teacher, student];
  const kd = (T: number): TermSpec => ({ loss: 'kl', student: 'student.logits', teacher: 'teacher.logits', options: { temperature: T }, name: 'kd', metric: 'soft' });
  if (m === 'dafl') {
    if (!o.feature) throw new Error("dataFree: DAFL's activation loss needs the teacher's feature module (feature: e.g. 'fc1' of lenet5, the layer before the classifier)");
    const terms: TermSpec[] = [
      { loss: 'dafl_onehot', student: 'teacher.logits', teacher: 'teacher.logits', weight: w.onehot ?? 1, name: 'onehot' },
      { loss: 'dafl_activation', student: `teacher.${o.feature}`, teacher: `teacher.${o.feature}`, weight: w.activation ?? 0.1, options: { relu: o.featureRelu ?? true }, name: 'activation' },
      { loss: 'dafl_entropy', student: 'teacher.logits', teacher: 'teacher.logits', weight: w.entropy ?? 5, name: 'entropy' },
      kd(o.temperature ?? 1),
    ];
    // one joint step (the authors' loop), or the generator every k-th step and the student on every step
    const updates: UpdateSpec[] | undefined = k === 1 ? undefined : [
      { roles: ['generator'], terms: ['onehot', 'activation', 'entropy'], every: k },
      { roles: ['student'], terms: ['kd'] },
    ];
    return { roles, terms, updates, primary: 'student', noiseShape: [latent!] };
  }
  const genTerms: TermSpec[] = [];
  if (m === 'deepinversion') {
    genTerms.push({ loss: 'ce', student: 'teacher.logits', teacher: 'labels', weight: w.ce ?? 1, name: 'ce' });
    for (const b of batchNormTaps(o.teacher))
      genTerms.push({ loss: 'bn_stats', student: `teacher.${b.tap}`, teacher: `teacher.${b.tap}`, weight: w.bn ?? 0.01, options: { mean: b.mean, var: b.var }, name: `bn:${b.bn}`, metric: false });
    genTerms.push({ loss: 'tv_prior', student: 'generator.logits', teacher: 'generator.logits', weight: w.tv ?? 1e-4, name: 'tv' });
    genTerms.push({ loss: 'l2_prior', student: 'generator.logits', teacher: 'generator.logits', weight: w.l2 ?? 1e-5, name: 'l2' });
    genTerms.push({ loss: 'adaptive_js', student: 'student.logits', teacher: 'teacher.logits', weight: w.adaptive ?? 1, options: { temperature: 3 }, name: 'adaptive' });
  } else genTerms.push({ loss: 'dfad_adv', student: 'student.logits', teacher: 'teacher.logits', name: 'adversarial' });
  const studentTerm: TermSpec = m === 'dfad' ? { loss: 'logit_l1', student: 'student.logits', teacher: 'teacher.logits', name: 'l1', metric: 'soft' } : kd(o.temperature ?? 3);
  const updates: UpdateSpec[] = [
    { roles: ['generator'], terms: genTerms.map((t) => t.name!), every: k },
    { roles: ['student'], terms: [studentTerm.name!] },
  ];
  return { roles, terms: [...genTerms, studentTerm], updates, primary: 'student', noiseShape: [latent!] };
}

/**
 * Distils `teacher` into `student` without data: the method's generator (or plain noise) makes every batch, seeded
 * from (seed, epoch, step) so that a run resumes exactly. The run directory is the engine's (the generator's weights
 * and optimizer beside the student's).
 */
export async function dataFree(o: DataFreeOptions): Promise<TrainSummary & { samples: string }> {
  const { noiseShape, ...spec } = dataFreeSpec(o);
  const train = new NoiseBatches({ batches: o.batchesPerEpoch, batchSize: o.batchSize, shape: noiseShape, classes: o.classes, seed: o.seed });
  const summary = await runEngine({
    name: `datafree-${o.method}`, ...spec, train, epochs: o.epochs, seed: o.seed, outDir: o.outDir, resume: o.resume, force: o.force,
    test: o.test, testTransforms: o.testTransforms, checkpointEverySteps: o.checkpointEverySteps, checkpointEvery: o.checkpointEvery ?? 0, logEverySteps: o.logEverySteps,
    report: o.report, log: o.log, progress: o.progress, signal: o.signal,
  });
  return { ...summary, samples: writeSamples(o, noiseShape) };
}

/**
 * The generator's images (eval mode) on 64 noise vectors of their own seed, or the noise images themselves, as
 * `samples.png` in the run directory.
 */
export function writeSamples(o: Pick<DataFreeOptions, 'generator' | 'method' | 'outDir' | 'seed'>, noiseShape: number[], count = 64): string {
  const file = path.join(o.outDir, 'samples.png');
  const noise = new NoiseBatches({ batches: 1, batchSize: count, shape: noiseShape, classes: 1, seed: o.seed ^ 0x5a5a });
  const b = noise.batchAt(0);
  try {
    tidy(() =>
      noGrad(() => {
        const g = o.method === 'noise' ? null : o.generator!;
        const was = g?.training;
        g?.eval();
        try {
          writeImageGrid(file, g ? (g.call(b.x.to({ device: g.parameters()[0]?.device ?? 'cpu' })) as import('../torch').Tensor) : b.x, { columns: 8, scale: 2 });
        } finally {
          if (g) g.train(was!);
        }
      }),
    );
  } finally {
    b.dispose();
  }
  return file;
}
