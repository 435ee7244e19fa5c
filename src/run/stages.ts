// Configurations written as the engine sees a run: stages, each with named roles (zoo models, frozen unless `train`,
// starting from a checkpoint file or from an earlier stage's weights) and loss terms over taps. A teacher-assistant
// chain, born-again generations or two students learning from each other are such configurations:
//
//   stages:
//     - name: teacher
//       roles: { teacher: { model: lenet5, train: true } }
//       terms: [{ loss: ce, student: teacher.logits, teacher: labels }]
//     - name: student
//       roles:
//         teacher: { model: lenet5, from: teacher }           # the teacher stage's best weights, frozen
//         student: { model: lenet5-half, train: true }
//       terms:
//         - { loss: ce, student: student.logits, teacher: labels, weight: 0.3 }
//         - { loss: kl, student: student.logits, teacher: teacher.logits, weight: 0.7, options: { temperature: 4 } }
//
// `data`, `training` (defaults for every trainable role, which may override them) and `output` are the sections of
// every configuration. Each stage runs in `<output.dir>/<stage>`; `--resume` continues the stage that was running.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { manualSeed, setNumThreads } from '../torch';
import { Module, loadWeights } from '../nn';
import { DataLoader, type DataSplits, absoluteDataSpec, registerBuiltinDatasets } from '../data';
import { createModel, registerBuiltinModels } from '../models';
import { PairedBatches, type RoleSpec, type StageSpec, type StagesResult, type TermSpec, runStages } from '../distill';
import { checkDevice } from '../distill/pipeline';
import { type Teacher, isExternalTeacherSpec, loadExternalTeacher } from '../teachers';
import { applyOverrides, checkTeacherSource, configSchema, describe, ownDataSpec, externalTeacherKeys, readConfigMapping, scheduleObj } from './config';
import { type RunFlags, datasetOf, modelOptions, transformsFor } from './runs';

const ident = /^[A-Za-z][A-Za-z0-9_-]*$/;
const optimizerKind = z.enum(['sgd', 'adam', 'adamw']);
const lrSchedule = z.enum(['constant', 'cosine', 'step', 'multistep']);

const roleSchema = z
  .object({
    /** A zoo model name. */
    model: z.string().min(1),
    options: z.record(z.string(), z.unknown()).default({}),
    /** Weights to start from (safetensors, relative to the configuration file). */
    checkpoint: z.string().min(1).optional(),
    /** Weights from an earlier stage: `<stage>` (its primary role's best epoch) or `<stage>.<role>`. */
    from: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)?$/, 'expected <stage> or <stage>.<role>').optional(),
    /** With `from`: the primary role's best epoch (default) or its last (an initialisation stage, whose accuracy means nothing). */
    fromWeights: z.enum(['best', 'last']).optional(),
    /** Trained in this stage (with `training`'s optimizer unless overridden here); otherwise frozen. */
    train: z.boolean().default(false),
    optimizer: optimizerKind.optional(),
    lr: z.number().positive().optional(),
    momentum: z.number().min(0).max(1).optional(),
    weightDecay: z.number().min(0).optional(),
    schedule: lrSchedule.optional(),
    milestones: z.array(z.number().int().positive()).optional(),
    warmupEpochs: z.number().int().min(0).optional(),
    /** Frozen roles whose logits alone are read: cache them on disk (default true). */
    cache: z.boolean().default(true),
    // a teacher from elsewhere (model: onnx | torchscript | tfjs | http), frozen
    ...externalTeacherKeys,
  })
  .strict();

const taps = z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2)]);
/** The target side may list more taps (kl_peers: one per peer). */
const targetTaps = z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(16)]);
const termSchema = z
  .object({
    /** A registered loss: ce, kl, soft_ce, logit_mse, dkd, hint, at, rkd, ... */
    loss: z.string().min(1),
    /** The side that learns: `<role>.<path>` (`student.logits`, `student.layer3`); a `*` pairs layers. */
    student: taps,
    /** The target side (no gradient): `<role>.<path>`, or `labels`. */
    teacher: targetTaps,
    weight: z.union([z.number().min(0), scheduleObj]).default(1),
    /** Options of the loss (temperature, p, ...); numbers may be schedules. */
    options: z.record(z.string(), z.unknown()).default({}),
    proj: z.enum(['auto', 'none']).default('auto'),
    map: z.enum(['uniform', 'last_k', 'explicit']).default('uniform'),
    /** The term's name in metrics and in `updates`. */
    name: z.string().min(1).optional(),
  })
  .strict();

const stageSchema = z
  .object({
    name: z.string().regex(ident, 'letters, digits, _ or -'),
    /** Default: training.epochs. */
    epochs: z.number().int().positive().optional(),
    roles: z.record(z.string().regex(ident, 'letters, digits, _ or -'), roleSchema),
    terms: z.array(termSchema).min(1),
    /** Alternating optimizer steps: each update's roles minimise its terms (by name). Default: one update. */
    updates: z.array(z.object({ roles: z.array(z.string()).min(1), terms: z.array(z.string()).min(1) }).strict()).min(1).optional(),
    /** The role whose weights are the stage's `best.safetensors` (default: the first trained role). */
    primary: z.string().optional(),
    /** 'pairs': each batch is batchSize samples and, after them, a different sample of the same class for each (CS-KD). */
    batches: z.enum(['plain', 'pairs']).default('plain'),
  })
  .strict();

export const stagedConfigSchema = configSchema.pick({ name: true, seed: true, data: true, training: true, output: true }).extend({ stages: z.array(stageSchema).min(1) }).strict();
export type StagedConfig = z.infer<typeof stagedConfigSchema>;

/** True for a configuration written as stages (a `stages` list) rather than teacher / student / distill sections. */
export function isStagedConfig(raw: Record<string, unknown>): boolean {
  return 'stages' in raw;
}

/** Validates a staged configuration: the schema, then stage names, `from` references and checkpoint files. */
export function validateStagedConfig(raw: unknown, source = 'config'): StagedConfig {
  registerBuiltinDatasets();
  const r = stagedConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source, stagedConfigSchema));
  const cfg = r.data;
  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  // one's own data: paths relative to the configuration file, as in a classic configuration
  const own = ownDataSpec(cfg.data);
  if (own) Object.assign(cfg.data, absoluteDataSpec(own, baseDir));
  const seen = new Map<string, StagedConfig['stages'][number]>();
  cfg.stages.forEach((stage, i) => {
    const where = `${source}: stages[${i}] (${stage.name})`;
    if (seen.has(stage.name)) throw new Error(`${where}: another stage is named '${stage.name}'`);
    const roles = Object.entries(stage.roles);
    if (!roles.some(([, r]) => r.train)) throw new Error(`${where}: no role has train: true (a stage trains at least one role)`);
    for (const [name, role] of roles) {
      checkTeacherSource(role, source, baseDir, `stages[${i}] (${stage.name}).roles.${name}`);
      if (isExternalTeacherSpec(role) && role.train) throw new Error(`${where}.roles.${name}: a ${role.model} teacher cannot be trained (remove train: true)`);
      if (role.checkpoint && role.from) throw new Error(`${where}.roles.${name}: give checkpoint or from, not both`);
      if (role.fromWeights && !role.from) throw new Error(`${where}.roles.${name}.fromWeights: applies with from`);
      if (role.checkpoint) {
        const file = path.resolve(baseDir, role.checkpoint);
        if (!fs.existsSync(file)) throw new Error(`${where}.roles.${name}.checkpoint: file not found: ${file}`);
        role.checkpoint = file;
      }
      if (role.from) {
        const [s, rn] = role.from.split('.');
        const earlier = seen.get(s);
        if (!earlier) throw new Error(`${where}.roles.${name}.from: '${s}' is not an earlier stage (earlier: ${[...seen.keys()].join(', ') || 'none'})`);
        if (rn && !earlier.roles[rn]?.train) throw new Error(`${where}.roles.${name}.from: stage '${s}' trains no role '${rn}' (it trains: ${Object.entries(earlier.roles).filter(([, x]) => x.train).map(([k]) => k).join(', ')})`);
      }
      if (!role.train && ['optimizer', 'lr', 'momentum', 'weightDecay', 'schedule', 'milestones', 'warmupEpochs'].some((k) => role[k as keyof typeof role] !== undefined))
        throw new Error(`${where}.roles.${name}: optimizer settings apply to trained roles only (set train: true)`);
    }
    if (stage.primary && !stage.roles[stage.primary]?.train) throw new Error(`${where}.primary: '${stage.primary}' is not a trained role of this stage`);
    seen.set(stage.name, stage);
  });
  return cfg;
}

export function loadStagedConfig(file: string, sets: string[] = []): StagedConfig {
  const cfg = validateStagedConfig(applyOverrides(readConfigMapping(file), sets), file);
  checkDevice(cfg.training.device);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  return cfg;
}

/** Runs every stage of a staged configuration in order (finished stages are not run again). */
export async function runStagedConfig(cfg: StagedConfig, data: DataSplits, flags: RunFlags): Promise<StagesResult> {
  registerBuiltinModels();
  const info = datasetOf(cfg);
  const { norm, aug } = transformsFor(cfg);
  const device = checkDevice(cfg.training.device);
  const t = cfg.training;
  const stages: StageSpec[] = cfg.stages.map((stage) => {
    const made: (Module | Teacher)[] = [];
    const primary = stage.primary ?? Object.entries(stage.roles).find(([, r]) => r.train)![0];
    return {
      name: stage.name,
      build: async (ctx) => {
        manualSeed(cfg.seed);
        const roles: RoleSpec[] = [];
        for (const [name, r] of Object.entries(stage.roles)) {
          if (isExternalTeacherSpec(r)) {
            const teacher = await loadExternalTeacher(r, `${flags.file}: stage '${stage.name}', role '${name}'`);
            made.push(teacher);
            roles.push({ name, model: teacher, cache: r.cache });
            continue;
          }
          const model = createModel(r.model, modelOptions(cfg, r));
          made.push(model);
          const weights = r.checkpoint ?? (r.from ? ctx.checkpoint(r.from.split('.')[0], r.from.split('.')[1], r.fromWeights) : undefined);
          if (weights)
            try {
              loadWeights(model, weights);
            } catch (e) {
              throw new Error(`${flags.file}: stage '${stage.name}', role '${name}': ${(e as Error).message}`, { cause: e });
            }
          if (device !== 'cpu') model.to(device);
          roles.push({
            name, model, cache: r.cache,
            ...(r.train
              ? {
                  optimizer: { kind: r.optimizer ?? t.optimizer, lr: r.lr ?? t.lr, momentum: r.momentum ?? t.momentum, weightDecay: r.weightDecay ?? t.weightDecay },
                  schedule: { kind: r.schedule ?? t.schedule, milestones: r.milestones ?? t.milestones, warmupEpochs: r.warmupEpochs ?? t.warmupEpochs },
                }
              : {}),
          });
        }
        const terms: TermSpec[] = stage.terms;
        return {
          name: `${cfg.name}/${stage.name}`, roles, terms, updates: stage.updates, primary,
          train: stage.batches === 'pairs'
            ? new PairedBatches(data.train, { anchors: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm], device })
            : new DataLoader(data.train, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm], device }),
          test: data.test, testTransforms: norm, epochs: stage.epochs ?? t.epochs, seed: cfg.seed,
          checkpointEvery: cfg.output.checkpointEvery, cacheDir: path.join(cfg.output.dir, '.teacher-cache'),
          signal: flags.signal, progress: flags.progress, log: flags.log, syncBatchNorm: t.syncBatchNorm,
        };
      },
      release: () => {
        for (const m of made.splice(0)) m.dispose();
      },
    };
  });
  return runStages({ outDir: cfg.output.dir, stages, resume: flags.resume, force: flags.force, log: flags.log });
}

/** One row per stage: what it trained, its best and final test accuracy, epochs and mean epoch time. */
export function stagesTable(r: StagesResult): string[][] {
  return [
    ['stage', 'ran now', 'epochs', 'best test (%)', 'final test (%)', 'other roles, final test (%)', 'mean epoch (s)'],
    ...r.stages.map((s) => [
      s.name, s.ran ? 'yes' : 'no (finished earlier)', String(s.summary.epochs), s.summary.best_test_acc.toFixed(2), s.summary.final_test_acc.toFixed(2),
      s.summary.roles ? Object.entries(s.summary.roles).map(([k, v]) => `${k} ${v.final_test_acc.toFixed(2)}`).join(', ') : '-',
      s.summary.mean_epoch_s.toFixed(2),
    ]),
  ];
}
