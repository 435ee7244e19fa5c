// Adversarial distillation as a configuration: an `adversarial:` section names the method, the teacher (its weights,
// or trained first into <output.dir>/teacher), the student and the method's settings. `tsdistill distill` runs the
// method; `tsdistill compare` runs the student alone, with KD and with the method, and prints a table and a JSON line.
//
//   data: { dataset: fashion-mnist, batchSize: 64, limit: 10000 }
//   adversarial:
//     method: discriminator                    # alone | kd | discriminator | bss
//     teacher: { model: lenet5, checkpoint: teacher.safetensors }   # or { model: lenet5, epochs: 5 }: trained first
//     student: { model: lenet5-half }
//     alpha: 0.1                               # the cross-entropy's weight (1 − α weighs the KD term)
//     temperature: 4
//     discriminator: { hidden: [64, 64], form: bce, weight: 0.1, steps: 1, every: 1 }
//     bss: { steps: 10, stepSize: 0.3, attackSize: 16, until: 0.75 }
//   training: { epochs: 5, optimizer: sgd, lr: 0.01, momentum: 0.9, threads: 1 }
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { manualSeed, setNumThreads, writeFileAtomic } from '../torch';
import { type Module, loadWeights } from '../nn';
import { DataLoader, type ImageDatasetInfo, registerBuiltinDatasets } from '../data';
import { checkModelOptions, createModel, registerBuiltinModels } from '../models';
import { ADVERSARIAL_METHODS, type AdversarialMethod, type LrScheduleSpec, type OptimizerSpec, type TrainSummary, adversarial, evaluate, runEngine } from '../distill';
import { applyOverrides, configSchema, configDataset, describe, readConfigMapping } from './config';
import { loadConfigData, transformsFor } from './runs';

const modelRef = z.object({ model: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}), checkpoint: z.string().min(1).optional() }).strict();
const optimizer = z
  .object({ kind: z.enum(['sgd', 'adam', 'adamw']), lr: z.number().positive(), momentum: z.number().min(0).max(1).optional(), weightDecay: z.number().min(0).optional(), betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).optional() })
  .strict();
const schedule = z.union([
  z.number().min(0),
  z.object({ kind: z.literal('constant'), value: z.number().min(0) }).strict(),
  z.object({ kind: z.enum(['linear', 'cosine']), from: z.number().min(0), to: z.number().min(0), epochs: z.number().positive().optional() }).strict(),
  z.object({ kind: z.literal('warmup'), value: z.number().min(0), epochs: z.number().positive() }).strict(),
]);

export const adversarialConfigSchema = configSchema
  .pick({ name: true, seed: true, data: true, output: true, training: true })
  .extend({
    adversarial: z
      .object({
        method: z.enum(ADVERSARIAL_METHODS),
        /** The teacher: a zoo model and its weights, or without `checkpoint` trained first for `epochs` (default 5). */
        teacher: modelRef.extend({ epochs: z.number().int().positive().optional() }),
        student: modelRef,
        alpha: z.number().min(0).max(1).default(0.1),
        temperature: z.number().positive().default(4),
        discriminator: z
          .object({
            tap: z.string().min(1).optional(),
            inputDim: z.number().int().positive().optional(),
            hidden: z.array(z.number().int().positive()).optional(),
            input: z.enum(['logits', 'softmax']).optional(),
            temperature: z.number().positive().optional(),
            conditional: z.boolean().optional(),
            form: z.enum(['bce', 'lsgan']).optional(),
            weight: schedule.optional(),
            optimizer: optimizer.optional(),
            steps: z.number().int().positive().optional(),
            every: z.number().int().positive().optional(),
          })
          .strict()
          .default({}),
        bss: z
          .object({
            steps: z.number().int().positive().optional(),
            stepSize: z.number().positive().optional(),
            attackSize: z.number().int().positive().optional(),
            weight: z.number().min(0).optional(),
            until: z.number().positive().max(1).optional(),
          })
          .strict()
          .default({}),
        /** Commit a resumable state every N steps inside an epoch (default: at epoch ends). */
        checkpointEverySteps: z.number().int().positive().optional(),
      })
      .strict(),
  })
  .strict();
export type AdversarialConfig = z.infer<typeof adversarialConfigSchema>;

/** True for a configuration with an `adversarial` section. */
export function isAdversarialConfig(raw: Record<string, unknown>): boolean {
  return 'adversarial' in raw;
}

/** Validates an adversarial configuration (errors name the key and the file); paths become absolute. */
export function validateAdversarialConfig(raw: unknown, source = 'config'): AdversarialConfig {
  registerBuiltinDatasets();
  registerBuiltinModels();
  const r = adversarialConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source, adversarialConfigSchema));
  const cfg = r.data;
  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  const info = configDataset(cfg, source);
  const a = cfg.adversarial;
  if (a.method === 'bss' && info.kind !== 'image') throw new Error(`${source}: adversarial.method bss moves images toward the teacher's boundary; '${info.name}' is a ${info.kind} data set`);
  if (cfg.training.device !== 'cpu') throw new Error(`${source}: training.device: adversarial runs train on the CPU here (got '${cfg.training.device}')`);
  for (const k of ['teacher', 'student'] as const) {
    const m = a[k];
    if (m.checkpoint) {
      const file = path.resolve(baseDir, m.checkpoint);
      if (!fs.existsSync(file)) throw new Error(`${source}: adversarial.${k}.checkpoint: file not found: ${file}`);
      m.checkpoint = file;
    }
    checkModelOptions(m.model, m.options, `${source}: adversarial.${k}.options`);
  }
  if (a.teacher.checkpoint && a.teacher.epochs !== undefined) throw new Error(`${source}: adversarial.teacher: give checkpoint (trained weights) or epochs (train it first), not both`);
  const d = a.discriminator;
  if (d.tap && d.tap !== 'logits' && d.inputDim === undefined) throw new Error(`${source}: adversarial.discriminator.inputDim is required with tap '${d.tap}' (the feature's size per row; 4-D maps are pooled, so their channels)`);
  return cfg;
}

export function loadAdversarialConfig(file: string, sets: string[] = []): AdversarialConfig {
  const cfg = validateAdversarialConfig(applyOverrides(readConfigMapping(file), sets), file);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  return cfg;
}

/** The student's optimizer and schedule from `training`. */
function studentOptim(cfg: AdversarialConfig): { optimizer: OptimizerSpec; schedule: LrScheduleSpec } {
  const t = cfg.training;
  return {
    optimizer: { kind: t.optimizer, lr: t.lr, momentum: t.momentum, weightDecay: t.weightDecay },
    schedule: { kind: t.schedule, milestones: t.milestones, warmupEpochs: t.warmupEpochs },
  };
}

export interface AdversarialRunFlags {
  resume?: boolean;
  force?: boolean;
  signal?: AbortSignal;
  log?: (l: string) => void;
}

/**
 * The teacher's weights: its checkpoint, or trained first on the training split into <output.dir>/teacher (cross-
 * entropy, the configuration's optimizer; a finished teacher run is reused, an interrupted one resumed).
 */
async function teacherWeights(cfg: AdversarialConfig, data: ReturnType<typeof loadConfigData>, o: AdversarialRunFlags): Promise<string> {
  const a = cfg.adversarial;
  if (a.teacher.checkpoint) return a.teacher.checkpoint;
  const dir = path.join(cfg.output.dir, 'teacher');
  const best = path.join(dir, 'best.safetensors');
  if (fs.existsSync(path.join(dir, 'done.json')) && fs.existsSync(best)) return best;
  const { norm, aug } = transformsFor(cfg);
  const classes = (configDataset(cfg) as ImageDatasetInfo).classes.length;
  manualSeed(cfg.seed);
  const teacher = createModel(a.teacher.model, { numClasses: classes, ...a.teacher.options });
  const { optimizer, schedule } = studentOptim(cfg);
  try {
    await runEngine({
      name: 'teacher', outDir: dir, resume: fs.existsSync(path.join(dir, 'state.json')) && !o.force, force: o.force, epochs: a.teacher.epochs ?? 5, seed: cfg.seed,
      test: data.test as never, testTransforms: norm, signal: o.signal, log: o.log,
      train: new DataLoader(data.train as never, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm] }),
      roles: [{ name: 'teacher', model: teacher, optimizer, schedule }],
      terms: [{ loss: 'ce', student: 'teacher.logits', teacher: 'labels' }],
    });
  } finally {
    teacher.dispose();
  }
  writeFileAtomic(path.join(dir, 'done.json'), '{}\n');
  return best;
}

/** Runs one method of the configuration in `outDir` (default <output.dir>). */
async function runMethod(cfg: AdversarialConfig, method: AdversarialMethod, teacherFile: string, data: ReturnType<typeof loadConfigData>, outDir: string, o: AdversarialRunFlags): Promise<TrainSummary> {
  const a = cfg.adversarial;
  const info = configDataset(cfg) as ImageDatasetInfo;
  const classes = info.classes.length;
  const { norm, aug } = transformsFor(cfg);
  manualSeed(cfg.seed);
  const teacher = createModel(a.teacher.model, { numClasses: classes, ...a.teacher.options });
  loadWeights(teacher, teacherFile);
  // the student's (and the discriminator's) initial weights follow the seed
  manualSeed(cfg.seed);
  const student: Module = createModel(a.student.model, { numClasses: classes, ...a.student.options });
  if (a.student.checkpoint) loadWeights(student, a.student.checkpoint);
  const range: [number[], number[]] | undefined =
    info.kind === 'image' && cfg.data.normalize ? [info.mean.map((m, c) => (0 - m) / info.std[c]), info.mean.map((m, c) => (1 - m) / info.std[c])] : info.kind === 'image' ? [info.mean.map(() => 0), info.mean.map(() => 1)] : undefined;
  const { optimizer, schedule } = studentOptim(cfg);
  try {
    return await adversarial({
      method, teacher, student, classes, alpha: a.alpha, temperature: a.temperature, studentOptimizer: optimizer, studentSchedule: schedule,
      discriminator: a.discriminator, bss: { ...a.bss, range },
      train: new DataLoader(data.train as never, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm] }),
      test: data.test as never, testTransforms: norm, epochs: cfg.training.epochs, seed: cfg.seed, outDir, checkpointEverySteps: a.checkpointEverySteps,
      resume: o.resume, force: o.force, signal: o.signal, log: o.log,
    });
  } finally {
    teacher.dispose();
    student.dispose();
  }
}

/** Runs the configured method (the teacher trained first when it has no checkpoint); the summary is the engine's. */
export async function runAdversarialConfig(cfg: AdversarialConfig, o: AdversarialRunFlags = {}): Promise<TrainSummary> {
  const data = loadConfigData(cfg);
  try {
    const teacherFile = await teacherWeights(cfg, data, o);
    return await runMethod(cfg, cfg.adversarial.method, teacherFile, data, cfg.output.dir, o);
  } finally {
    data.train.dispose();
    data.test.dispose();
  }
}

export interface AdversarialCompareRow {
  method: AdversarialMethod;
  best_test_acc: number;
  best_epoch: number;
  final_test_acc: number;
  mean_epoch_s: number;
  out_dir: string;
}
export interface AdversarialCompareResult {
  name: string;
  method: AdversarialMethod;
  seed: number;
  teacher_test_acc: number;
  rows: AdversarialCompareRow[];
  /** The method's best test accuracy minus plain KD's, and minus the student alone's (points). */
  gain_over_kd: number;
  gain_over_alone: number;
}

/**
 * The student alone, with KD and with the configured method, each in <output.dir>/<method> (finished runs are read
 * back, interrupted ones resumed with `resume`); the teacher's accuracy beside them.
 */
export async function compareAdversarial(cfg: AdversarialConfig, o: AdversarialRunFlags = {}): Promise<AdversarialCompareResult> {
  const data = loadConfigData(cfg);
  try {
    const teacherFile = await teacherWeights(cfg, data, o);
    const info = configDataset(cfg) as ImageDatasetInfo;
    const { norm } = transformsFor(cfg);
    const teacher = createModel(cfg.adversarial.teacher.model, { numClasses: info.classes.length, ...cfg.adversarial.teacher.options });
    loadWeights(teacher, teacherFile);
    const teacherAcc = await evaluate(teacher, data.test as never, norm);
    teacher.dispose();
    const methods = [...new Set<AdversarialMethod>(['alone', 'kd', cfg.adversarial.method])];
    const rows: AdversarialCompareRow[] = [];
    for (const m of methods) {
      const dir = path.join(cfg.output.dir, m);
      const doneFile = path.join(dir, 'result.json');
      let row: AdversarialCompareRow;
      if (fs.existsSync(doneFile) && !o.force) row = JSON.parse(fs.readFileSync(doneFile, 'utf8'));
      else {
        const s = await runMethod(cfg, m, teacherFile, data, dir, { ...o, resume: o.resume && fs.existsSync(path.join(dir, 'state.json')), force: o.force || !fs.existsSync(path.join(dir, 'state.json')) });
        row = { method: m, best_test_acc: s.best_test_acc, best_epoch: s.best_epoch, final_test_acc: s.final_test_acc, mean_epoch_s: s.mean_epoch_s, out_dir: dir };
        writeFileAtomic(doneFile, JSON.stringify(row) + '\n');
      }
      rows.push(row);
    }
    const acc = (m: AdversarialMethod) => rows.find((r) => r.method === m)!.best_test_acc;
    const m = cfg.adversarial.method;
    const result: AdversarialCompareResult = { name: cfg.name ?? 'adversarial', method: m, seed: cfg.seed, teacher_test_acc: teacherAcc, rows, gain_over_kd: acc(m) - acc('kd'), gain_over_alone: acc(m) - acc('alone') };
    writeFileAtomic(path.join(cfg.output.dir, 'compare.json'), JSON.stringify(result) + '\n');
    return result;
  } finally {
    data.train.dispose();
    data.test.dispose();
  }
}

/** The comparison as table rows (header first). */
export function adversarialTable(r: AdversarialCompareResult): string[][] {
  return [
    ['model', 'best test acc (%)', 'epoch', 'final (%)', 's / epoch'],
    ['teacher', r.teacher_test_acc.toFixed(2), '', '', ''],
    ...r.rows.map((x) => [x.method === 'alone' ? 'student alone' : x.method === 'kd' ? 'student + KD' : `student + KD + ${x.method}`, x.best_test_acc.toFixed(2), String(x.best_epoch), x.final_test_acc.toFixed(2), x.mean_epoch_s.toFixed(1)]),
  ];
}
