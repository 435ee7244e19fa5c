// Data-free distillation as a configuration: a `datafree:` section names the method, the trained teacher, the student
// and the generator; `data` names the data set only for its test split (the student's accuracy after every epoch) and
// its image shape and classes — the training split is never read. `tsdistill distill` runs it.
//
//   data: { dataset: mnist }
//   datafree:
//     method: dafl                              # dafl | deepinversion | dfad | noise
//     teacher: { model: lenet5, checkpoint: teacher.safetensors }
//     student: { model: lenet5-half, options: { outputRelu: false } }
//     generator: { width: 32 }                  # dafl-generator options (imageShape follows the data)
//     feature: fc1                              # DAFL's activation loss: the teacher's feature module
//     batchSize: 128
//     batchesPerEpoch: 120
//   training: { epochs: 200, threads: 1 }
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { manualSeed, setNumThreads } from '../torch';
import { loadWeights } from '../nn';
import { type ImageDatasetInfo, normalize, registerBuiltinDatasets } from '../data';
import { DaflGenerator, checkModelOptions, createModel, registerBuiltinModels } from '../models';
import { DATA_FREE_METHODS, type DataFreeOptions, type TrainSummary, dataFree } from '../distill';
import { applyOverrides, configSchema, configDataset, describe, readConfigMapping } from './config';

const modelRef = z.object({ model: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}), checkpoint: z.string().min(1).optional() }).strict();
const optimizer = z
  .object({ kind: z.enum(['sgd', 'adam', 'adamw']), lr: z.number().positive(), momentum: z.number().min(0).max(1).optional(), weightDecay: z.number().min(0).optional() })
  .strict();
const w = z.number().min(0).optional();

export const dataFreeConfigSchema = configSchema
  .pick({ name: true, seed: true, data: true, output: true })
  .extend({
    datafree: z
      .object({
        method: z.enum(DATA_FREE_METHODS),
        /** The trained teacher: a zoo model and its weights (required). */
        teacher: modelRef.extend({ checkpoint: z.string().min(1) }),
        student: modelRef,
        /** dafl-generator options (latentDim, width); imageShape follows the data. */
        generator: z.object({ latentDim: z.number().int().positive().optional(), width: z.number().int().min(2).optional() }).strict().default({}),
        /** DAFL: the teacher module whose output the activation loss reads (the layer before the classifier); other methods ignore it. */
        feature: z.string().min(1).optional(),
        featureRelu: z.boolean().optional(),
        batchSize: z.number().int().positive().default(512),
        batchesPerEpoch: z.number().int().positive().default(120),
        studentOptimizer: optimizer.optional(),
        generatorOptimizer: optimizer.optional(),
        temperature: z.number().positive().optional(),
        /** Student steps per generator step (default 1: DAFL's joint step; DFAD's paper uses 5). */
        studentSteps: z.number().int().positive().optional(),
        weights: z.object({ onehot: w, entropy: w, activation: w, ce: w, bn: w, tv: w, l2: w, adaptive: w }).strict().default({}),
        /** Commit a resumable state every N steps inside an epoch (default: at epoch ends). */
        checkpointEverySteps: z.number().int().positive().optional(),
      })
      .strict(),
    training: z.object({ epochs: z.number().int().positive().default(200), threads: z.number().int().positive().optional() }).strict().default({ epochs: 200 }),
  })
  .strict();
export type DataFreeConfig = z.infer<typeof dataFreeConfigSchema>;

/** True for a configuration with a `datafree` section. */
export function isDataFreeConfig(raw: Record<string, unknown>): boolean {
  return 'datafree' in raw;
}

/** Validates a data-free configuration (errors name the key and the file); paths become absolute. */
export function validateDataFreeConfig(raw: unknown, source = 'config'): DataFreeConfig {
  registerBuiltinDatasets();
  registerBuiltinModels();
  const r = dataFreeConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source, dataFreeConfigSchema));
  const cfg = r.data;
  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  const info = configDataset(cfg, source);
  if (info.kind !== 'image') throw new Error(`${source}: data: data-free distillation generates images; '${info.name}' is a ${info.kind} data set`);
  const d = cfg.datafree;
  const file = path.resolve(baseDir, d.teacher.checkpoint);
  if (!fs.existsSync(file)) throw new Error(`${source}: datafree.teacher.checkpoint: file not found: ${file}`);
  d.teacher.checkpoint = file;
  if (d.student.checkpoint) {
    const s = path.resolve(baseDir, d.student.checkpoint);
    if (!fs.existsSync(s)) throw new Error(`${source}: datafree.student.checkpoint: file not found: ${s}`);
    d.student.checkpoint = s;
  }
  for (const [k, m] of [['teacher', d.teacher], ['student', d.student]] as const) checkModelOptions(m.model, m.options, `${source}: datafree.${k}.options`);
  if (d.method === 'dafl' && !d.feature) throw new Error(`${source}: datafree.feature is required for method dafl (the teacher module before its classifier, e.g. fc1 of lenet5)`);
  return cfg;
}

export function loadDataFreeConfig(file: string, sets: string[] = []): DataFreeConfig {
  const cfg = validateDataFreeConfig(applyOverrides(readConfigMapping(file), sets), file);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  return cfg;
}

/**
 * Runs a data-free configuration: the teacher loaded frozen, the student and generator trained on noise; only the
 * data set's test split is read (to evaluate). Returns the engine's summary and the samples' PNG.
 */
export async function runDataFreeConfig(cfg: DataFreeConfig, o: { resume?: boolean; force?: boolean; signal?: AbortSignal; log?: (l: string) => void } = {}): Promise<TrainSummary & { samples: string }> {
  const info = configDataset(cfg) as ImageDatasetInfo;
  const d = cfg.datafree;
  const classes = info.classes.length;
  const withClasses = (opts: Record<string, unknown>) => ({ numClasses: classes, ...opts });
  // the student's and generator's initial weights follow the seed
  manualSeed(cfg.seed);
  const teacher = createModel(d.teacher.model, withClasses(d.teacher.options));
  loadWeights(teacher, d.teacher.checkpoint);
  const student = createModel(d.student.model, withClasses(d.student.options));
  if (d.student.checkpoint) loadWeights(student, d.student.checkpoint);
  const generator = d.method === 'noise' ? undefined : new DaflGenerator({ ...d.generator, imageShape: info.inputShape });
  const test = info.load('test', cfg.data.limit);
  try {
    const opts: DataFreeOptions = {
      method: d.method, teacher, student, generator, imageShape: info.inputShape, classes, feature: d.feature, featureRelu: d.featureRelu,
      batchSize: d.batchSize, batchesPerEpoch: d.batchesPerEpoch, epochs: cfg.training.epochs, seed: cfg.seed, outDir: cfg.output.dir,
      studentOptimizer: d.studentOptimizer, generatorOptimizer: d.generatorOptimizer, temperature: d.temperature, studentSteps: d.studentSteps, weights: d.weights,
      test, testTransforms: cfg.data.normalize ? [normalize(info.mean, info.std)] : [], checkpointEverySteps: d.checkpointEverySteps, checkpointEvery: cfg.output.checkpointEvery,
      resume: o.resume, force: o.force, signal: o.signal, log: o.log,
    };
    return await dataFree(opts);
  } finally {
    test.dispose();
    teacher.dispose();
    student.dispose();
    generator?.dispose();
  }
}
