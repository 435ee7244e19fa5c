// Distillation schemes as configurations: a `scheme:` section (next to data, training and output) expands to the
// stages, roles and terms of a staged configuration (src/run/stages.ts), which the one engine runs. `compare` on a
// scheme configuration trains what is missing and measures every peer / exit / generation / link and the baseline.
//
//   scheme:
//     kind: mutual                       # mutual | born-again | teacher-assistant | byot | cs-kd | tf-kd | fsp | theseus
//     peers: { a: { model: resnet20 }, b: { model: resnet20 } }
//
// Every scheme except born-again (whose generation 0 is the model alone) adds a stage `alone`: the scheme's model
// trained with cross-entropy alone on the same schedule, the baseline of the comparison.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { type Tensor, setNumThreads, writeFileAtomic } from '../torch';
import { Module, closest, loadWeights } from '../nn';
import { DataSplits, registerBuiltinDatasets } from '../data';
import { MultiExit, createModel, registerBuiltinModels } from '../models';
import {
  type TermSpec, type StagesResult, ceTerms, classWiseTerms, fspTerms, kdTerms, mutualTerms, selfDistillTerms, virtualTeacherTerms, exitAccuracies, Ensemble, evaluate,
} from '../distill';
import { checkDevice } from '../distill/pipeline';
import { applyOverrides, configSchema, describe, readConfigMapping } from './config';
import { type StagedConfig, runStagedConfig, validateStagedConfig } from './stages';
import { type RunFlags, datasetOf, transformsFor } from './runs';
import { measureModel } from './compare';

const modelRef = z
  .object({
    /** A zoo model name. */
    model: z.string().min(1),
    options: z.record(z.string(), z.unknown()).default({}),
    /** Weights to start from (safetensors, relative to the configuration file). */
    checkpoint: z.string().min(1).optional(),
  })
  .strict();
type ModelRef = z.infer<typeof modelRef>;
const prob = z.number().min(0).max(1);
const T = z.number().positive();

/** The comparison rows every scheme kind accepts: `alone` (always run) and `kd`, offline KD from a frozen teacher. */
const baselineKeys = {
  /** alone: the scheme's model trained with cross-entropy alone; kd: the same model distilled from a frozen teacher. */
  baselines: z.array(z.enum(['alone', 'kd'])).min(1).default(['alone']).refine((b) => b.includes('alone'), "must include 'alone' (the baseline of gain)"),
  kd: z
    .object({
      /**
       * The frozen teacher, trained in a stage `kd-teacher` for `epochs` (default training.epochs) unless it has a
       * checkpoint. Default: the teacher the scheme already trains (see docs/schemes.md).
       */
      teacher: modelRef.extend({ epochs: z.number().int().positive().optional() }).strict().optional(),
      temperature: T.default(4),
      /** Weight of the labels' cross-entropy; the KL at T (times T²) gets 1 − alpha. */
      alpha: prob.default(0.3),
    })
    .strict()
    .default({ temperature: 4, alpha: 0.3 }),
};

const schemeSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('mutual'),
    /** Two or more peers by role name, trained together (the first is the stage's primary role). */
    peers: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/, 'letters, digits, _ or -'), modelRef),
    /** each: the mean of the KLs to each other peer (DML); mean: the KL to their averaged soft targets (KDCL). */
    target: z.enum(['each', 'mean']).default('each'),
    temperature: T.default(1),
    weight: z.number().min(0).default(1),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('born-again'),
    model: modelRef,
    /** Generations after gen0 (the model alone): each the same architecture taught by the one before. */
    generations: z.number().int().min(1).max(20).default(2),
    temperature: T.default(1),
    /** Weight of the labels' cross-entropy (BAN: 0, the teacher's distribution only); KD gets 1 − alpha. */
    alpha: prob.default(0),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('teacher-assistant'),
    /** Trained in a stage `teacher` unless it has a checkpoint. */
    teacher: modelRef,
    assistants: z.array(modelRef).min(1),
    student: modelRef,
    temperature: T.default(4),
    alpha: prob.default(0.1),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('byot'),
    /** A CIFAR ResNet, Wide ResNet or VGG of the zoo: an exit after each stage but the last. */
    model: modelRef,
    temperature: T.default(3),
    alpha: prob.default(0.3),
    featureWeight: z.number().min(0).default(0.03),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('cs-kd'),
    model: modelRef,
    temperature: T.default(4),
    weight: z.number().min(0).default(1),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('tf-kd'),
    model: modelRef,
    /** virtual: the hand-designed teacher; self: the model's own checkpoint trained alone first. */
    teacher: z.enum(['virtual', 'self']).default('virtual'),
    /** Weight of the (virtual or self) teacher; cross-entropy gets 1 − alpha. */
    alpha: prob.default(0.1),
    temperature: T.default(20),
    correctProb: z.number().gt(0).lt(1).default(0.9),
    multiplier: z.number().positive().default(1),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('fsp'),
    /** Trained in a stage `teacher` unless it has a checkpoint. */
    teacher: modelRef,
    student: modelRef,
    /** Pairs of layers ([first, second] module paths) whose FSP matrices the student matches. */
    pairs: z.array(z.object({ student: z.tuple([z.string().min(1), z.string().min(1)]), teacher: z.tuple([z.string().min(1), z.string().min(1)]) }).strict()).min(1),
    /** Epochs of the FSP initialisation stage (default training.epochs). */
    initEpochs: z.number().int().positive().optional(),
    ...baselineKeys,
  }).strict(),
  z.object({
    kind: z.literal('theseus'),
    /** The trained model whose blocks are replaced: trained in a stage `predecessor` unless it has a checkpoint. */
    predecessor: modelRef,
    /** The compact model (same family: CIFAR ResNets with fewer blocks per stage). */
    successor: modelRef,
    /** The probability of running a successor block: a constant, or { from, to, until } (linear over that fraction of the stage). */
    replaceProb: z.union([prob, z.object({ from: prob, to: prob, until: z.number().gt(0).max(1).optional() }).strict()]).default({ from: 0.5, to: 1 }),
    /** Epochs of the successor fine-tuned alone (default training.epochs). */
    fineTuneEpochs: z.number().int().positive().optional(),
    ...baselineKeys,
  }).strict(),
]);
export type SchemeSpec = z.infer<typeof schemeSchema>;
export const SCHEME_KINDS = ['mutual', 'born-again', 'teacher-assistant', 'byot', 'cs-kd', 'tf-kd', 'fsp', 'theseus'] as const;

export const schemeConfigSchema = configSchema.pick({ name: true, seed: true, data: true, training: true, output: true }).extend({ scheme: schemeSchema }).strict();
export type SchemeConfig = z.infer<typeof schemeConfigSchema>;

/** True for a configuration with a `scheme` section. */
export function isSchemeConfig(raw: Record<string, unknown>): boolean {
  return 'scheme' in raw;
}

type StageIn = StagedConfig['stages'][number];
type RoleIn = Omit<StageIn['roles'][string], 'train' | 'cache'> & { train?: boolean; cache?: boolean };
const role = (r: ModelRef, train: boolean, extra: Partial<RoleIn> = {}): RoleIn => ({ model: r.model, options: r.options, ...(r.checkpoint ? { checkpoint: r.checkpoint } : {}), train, ...extra });
const frozenFrom = (r: ModelRef, stage: string): RoleIn => ({ model: r.model, options: r.options, from: stage, train: false });
const stage = (name: string, roles: Record<string, RoleIn>, terms: TermSpec[], extra: Partial<StageIn> = {}) => ({ name, roles, terms, ...extra });
const alone = (r: ModelRef) => stage('alone', { model: { model: r.model, options: r.options, train: true } }, ceTerms('model'));

/** The stages a scheme expands to (roles, terms), as a staged configuration's `stages` list. */
export function schemeStages(s: SchemeSpec, ctx: { outDir: string; baseDir: string; source: string }): Record<string, unknown>[] {
  const out = ownStages(s, ctx);
  if (!s.baselines.includes('kd')) return out;
  const kd = kdSource(s);
  if (!kd) return out; // the teacher-assistant scheme's `direct` link is offline KD already
  const o = s.kd;
  let teacher: RoleIn;
  if (o.teacher) {
    const { epochs, ...ref } = o.teacher;
    if (ref.checkpoint) teacher = role(ref, false);
    else {
      out.push(stage('kd-teacher', { teacher: role(ref, true) }, ceTerms('teacher'), epochs ? { epochs } : {}));
      teacher = frozenFrom(ref, 'kd-teacher');
    }
  } else if (kd.teacher) teacher = kd.teacher;
  else throw new Error(`${ctx.source}: scheme.kd.teacher: scheme '${s.kind}' trains no teacher to distil from; name one (e.g. { model: resnet20 })`);
  out.push(stage('kd', { teacher, student: role({ ...kd.student, checkpoint: undefined }, true) }, kdTerms('student', 'teacher', o)));
  return out;
}

/**
 * The offline-KD baseline's student (the scheme's model) and its default frozen teacher: the model trained alone
 * (mutual, CS-KD, Tf-KD; born-again's gen0), FSP's teacher, module replacement's predecessor; BYOT trains none.
 * Null for teacher assistants, whose `direct` stage is that baseline.
 */
function kdSource(s: SchemeSpec): { student: ModelRef; teacher?: RoleIn } | null {
  switch (s.kind) {
    case 'mutual': {
      const first = s.peers[Object.keys(s.peers)[0]];
      return { student: first, teacher: frozenFrom(first, 'alone') };
    }
    case 'born-again':
      return { student: s.model, teacher: frozenFrom(s.model, 'gen0') };
    case 'teacher-assistant':
      return s.kd.teacher ? { student: s.student } : null;
    case 'byot':
      return { student: s.model };
    case 'cs-kd':
    case 'tf-kd':
      return { student: s.model, teacher: frozenFrom(s.model, 'alone') };
    case 'fsp':
      return { student: s.student, teacher: s.teacher.checkpoint ? role(s.teacher, false) : frozenFrom(s.teacher, 'teacher') };
    case 'theseus':
      return { student: s.successor, teacher: s.predecessor.checkpoint ? role(s.predecessor, false) : frozenFrom(s.predecessor, 'predecessor') };
  }
}

function ownStages(s: SchemeSpec, ctx: { outDir: string; baseDir: string; source: string }): Record<string, unknown>[] {
  const abs = (f: string) => path.resolve(ctx.baseDir, f);
  switch (s.kind) {
    case 'mutual': {
      const names = Object.keys(s.peers);
      if (names.length < 2) throw new Error(`${ctx.source}: scheme.peers: mutual learning needs at least two peers, got ${names.length}`);
      const first = s.peers[names[0]];
      return [
        stage('mutual', Object.fromEntries(names.map((n) => [n, role(s.peers[n], true)])), mutualTerms(names, s)),
        alone({ ...first, checkpoint: undefined }),
      ];
    }
    case 'born-again': {
      const out = [stage('gen0', { student: role(s.model, true) }, ceTerms('student'))];
      for (let k = 1; k <= s.generations; k++)
        out.push(stage(`gen${k}`, { teacher: frozenFrom(s.model, `gen${k - 1}`), student: role({ ...s.model, checkpoint: undefined }, true) }, kdTerms('student', 'teacher', s)));
      return out;
    }
    case 'teacher-assistant': {
      const out: Record<string, unknown>[] = [];
      const teacher = (): RoleIn => (s.teacher.checkpoint ? role(s.teacher, false) : frozenFrom(s.teacher, 'teacher'));
      if (!s.teacher.checkpoint) out.push(stage('teacher', { teacher: role(s.teacher, true) }, ceTerms('teacher')));
      const chain = [...s.assistants, s.student];
      chain.forEach((m, i) => {
        const name = i === chain.length - 1 ? 'student' : `assistant${i + 1}`;
        const from = i === 0 ? teacher() : frozenFrom(chain[i - 1], `assistant${i}`);
        out.push(stage(name, { teacher: from, student: role(m, true) }, kdTerms('student', 'teacher', s)));
      });
      out.push(stage('direct', { teacher: teacher(), student: role(s.student, true) }, kdTerms('student', 'teacher', s)));
      out.push(alone(s.student));
      return out;
    }
    case 'byot': {
      registerBuiltinModels();
      const opts = { backbone: s.model.model, backboneOptions: s.model.options };
      let exits: number;
      try {
        const m = createModel('multi-exit', opts) as MultiExit;
        exits = m.numExits;
        m.dispose();
      } catch (e) {
        throw new Error(`${ctx.source}: scheme.model: ${(e as Error).message}`, { cause: e });
      }
      return [stage('self', { model: { model: 'multi-exit', options: opts, train: true } }, selfDistillTerms('model', exits, s)), alone(s.model)];
    }
    case 'cs-kd':
      return [stage('cskd', { model: role(s.model, true) }, classWiseTerms('model', s), { batches: 'pairs' }), alone(s.model)];
    case 'tf-kd':
      if (s.teacher === 'virtual') return [stage('virtual', { model: role(s.model, true) }, virtualTeacherTerms('model', s)), alone(s.model)];
      return [
        alone(s.model),
        stage('self', { teacher: frozenFrom(s.model, 'alone'), model: role(s.model, true) }, kdTerms('model', 'teacher', { alpha: 1 - s.alpha, temperature: s.temperature })),
      ];
    case 'fsp': {
      const out: Record<string, unknown>[] = [];
      if (!s.teacher.checkpoint) out.push(stage('teacher', { teacher: role(s.teacher, true) }, ceTerms('teacher')));
      const teacher = s.teacher.checkpoint ? role(s.teacher, false) : frozenFrom(s.teacher, 'teacher');
      out.push(stage('fsp-init', { teacher, student: role(s.student, true) }, fspTerms('student', 'teacher', s.pairs), s.initEpochs ? { epochs: s.initEpochs } : {}));
      // the initialisation's last weights (its test accuracy, with an untrained classifier, picks no best epoch)
      out.push(stage('train', { student: { ...frozenFrom(s.student, 'fsp-init'), fromWeights: 'last', train: true } }, ceTerms('student')));
      out.push(alone(s.student));
      return out;
    }
    case 'theseus': {
      const out: Record<string, unknown>[] = [];
      if (!s.predecessor.checkpoint) out.push(stage('predecessor', { model: role(s.predecessor, true) }, ceTerms('model')));
      const predFile = s.predecessor.checkpoint ? abs(s.predecessor.checkpoint) : path.resolve(ctx.outDir, 'predecessor', 'best.safetensors');
      const options = {
        predecessor: s.predecessor.model, predecessorOptions: s.predecessor.options, successor: s.successor.model, successorOptions: s.successor.options,
        checkpoint: predFile, replaceProb: s.replaceProb,
      };
      out.push(stage('replace', { model: { model: 'theseus', options, train: true } }, ceTerms('model')));
      out.push(stage('finetune', { model: { ...frozenFrom(s.successor, 'replace'), train: true } }, ceTerms('model'), s.fineTuneEpochs ? { epochs: s.fineTuneEpochs } : {}));
      out.push(alone(s.successor));
      return out;
    }
  }
}

export interface LoadedScheme {
  scheme: SchemeSpec;
  /** The staged configuration the scheme expands to. */
  staged: StagedConfig;
}

/** Validates a scheme configuration (errors name the key) and expands it to its staged configuration. */
export function validateSchemeConfig(raw: unknown, source = 'config'): LoadedScheme {
  registerBuiltinDatasets();
  const r = schemeConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describeScheme(r.error.issues, raw, source));
  const { scheme, ...rest } = r.data;
  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  const stages = schemeStages(scheme, { outDir: rest.output.dir, baseDir, source });
  let staged: StagedConfig;
  try {
    staged = validateStagedConfig({ ...rest, stages }, source);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n(in the stages that scheme '${scheme.kind}' expands to)`, { cause: e });
  }
  return { scheme, staged };
}

/**
 * The schema's issues as text; inside `scheme`, unknown keys are named with the keys of the scheme's kind (and its
 * closest one), and an unknown kind lists the kinds.
 */
function describeScheme(issues: z.core.$ZodIssue[], raw: unknown, source: string): string {
  const kind = (raw as { scheme?: { kind?: unknown } })?.scheme?.kind;
  const option = schemeSchema.options.find((o) => o.shape.kind.value === kind);
  const lines: string[] = [];
  const rest: z.core.$ZodIssue[] = [];
  for (const iss of issues) {
    if (iss.path[0] !== 'scheme') rest.push(iss);
    else if (!option && (iss.path[1] === 'kind' || iss.path.length === 1))
      lines.push(`  scheme.kind: expected one of ${SCHEME_KINDS.join(', ')}, got ${JSON.stringify(kind)}${typeof kind === 'string' ? `; did you mean '${closest(kind, [...SCHEME_KINDS], 1)[0]}'?` : ''}`);
    else if (iss.code === 'unrecognized_keys' && iss.path.length === 1 && option) {
      const valid = Object.keys(option.shape);
      for (const k of iss.keys) lines.push(`  scheme.${k}: unknown key for scheme kind '${kind}'; did you mean 'scheme.${closest(k, valid, 1)[0]}'? (valid here: ${valid.join(', ')})`);
    } else if (iss.code === 'unrecognized_keys') {
      for (const k of iss.keys) lines.push(`  ${[...iss.path, k].join('.')}: unknown key; did you mean '${[...iss.path, closest(k, ['model', 'options', 'checkpoint'], 1)[0]].join('.')}'? (valid here: model, options, checkpoint)`);
    } else lines.push(`  ${iss.path.join('.')}: ${iss.message}`);
  }
  const head = rest.length ? describe(rest, source, schemeConfigSchema) : `${source}: invalid configuration:`;
  return [head, ...lines].join('\n');
}

export function loadSchemeConfig(file: string, sets: string[] = []): LoadedScheme {
  const loaded = validateSchemeConfig(applyOverrides(readConfigMapping(file), sets), file);
  checkDevice(loaded.staged.training.device);
  if (loaded.staged.training.threads) setNumThreads(loaded.staged.training.threads);
  return loaded;
}

// ------------------------------------------------------------------------------------------------------ compare

export interface SchemeRow {
  /** What the row is: `peer a`, `exit 2`, `gen1`, `assistant1`, `student (TAKD)`, `alone`, ... */
  row: string;
  stage: string;
  model: string;
  /** Test accuracy (%) of the stage's final weights. */
  acc: number;
  params: number;
  /** CPU latency at batch 1 (ms), median. */
  latency_b1_ms: number;
}

export interface SchemeCompareResult {
  name: string;
  scheme: SchemeSpec['kind'];
  rows: SchemeRow[];
  /** The model trained alone on the same schedule (born-again: generation 0). */
  baseline: SchemeRow;
  /** The scheme's result row (the best peer, the deepest exit, the last generation, the TAKD student, ...). */
  result: SchemeRow;
  /** result.acc − baseline.acc (percentage points). */
  gain: number;
  /** With `baselines: [alone, kd]`: the scheme's model distilled offline from a frozen teacher (teacher assistants: the direct link). */
  kd?: SchemeRow;
  /** result.acc − kd.acc (percentage points). */
  kd_gain?: number;
  /** Born-again: the ensemble of generations 1..K. */
  ensemble_acc?: number;
}

/** The final weights of a stage's role (`last.safetensors` for its primary role). */
function lastWeights(cfg: StagedConfig, stageName: string, roleName: string): string {
  const st = cfg.stages.find((s) => s.name === stageName)!;
  const primary = st.primary ?? Object.entries(st.roles).find(([, r]) => r.train)![0];
  return path.join(cfg.output.dir, stageName, roleName === primary ? 'last.safetensors' : `last.${roleName}.safetensors`);
}

/**
 * Trains what is missing (finished stages are not run again; `resume` continues an interrupted one), then measures
 * every row of the scheme on the test set; writes `<output.dir>/scheme.json`.
 */
export async function compareScheme(loaded: LoadedScheme, data: DataSplits, flags: RunFlags): Promise<{ result: SchemeCompareResult; table: string[][]; stages: StagesResult }> {
  const { scheme: s, staged: cfg } = loaded;
  const stages = await runStagedConfig(cfg, data, flags);
  registerBuiltinModels();
  const numClasses = datasetOf(cfg).classes.length;
  const { norm } = transformsFor(cfg);
  const device = checkDevice(cfg.training.device);
  const rows: SchemeRow[] = [];
  const build = (stageName: string, roleName: string): Module => {
    const r = cfg.stages.find((x) => x.name === stageName)!.roles[roleName];
    const m = createModel(r.model === 'theseus' ? String((r.options as { successor: string }).successor) : r.model,
      r.model === 'theseus' ? { numClasses, ...((r.options as { successorOptions?: object }).successorOptions ?? {}) } : { numClasses, ...r.options });
    const file = lastWeights(cfg, stageName, roleName);
    loadWeights(m, file);
    if (device !== 'cpu') m.to(device);
    return m;
  };
  const measure = async (row: string, stageName: string, roleName: string, keep?: Module[]): Promise<SchemeRow> => {
    const m = build(stageName, roleName);
    try {
      const r = await measureModel(m, data.test, norm, null);
      const spec = cfg.stages.find((x) => x.name === stageName)!.roles[roleName];
      const out = { row, stage: stageName, model: spec.model === 'theseus' ? String(spec.options.successor) : spec.model, acc: r.acc, params: m.numParameters(), latency_b1_ms: r.latency };
      rows.push(out);
      return out;
    } finally {
      if (keep) keep.push(m);
      else m.dispose();
    }
  };
  let result: SchemeRow;
  let ensemble_acc: number | undefined;
  switch (s.kind) {
    case 'mutual': {
      for (const n of Object.keys(s.peers)) await measure(`peer ${n}`, 'mutual', n);
      result = rows.reduce((a, b) => (b.acc > a.acc ? b : a));
      break;
    }
    case 'born-again': {
      const gens: Module[] = [];
      for (let k = 0; k <= s.generations; k++) await measure(`gen${k}`, `gen${k}`, 'student', k > 0 ? gens : undefined);
      try {
        ensemble_acc = await evaluate(new Ensemble(gens), data.test, norm);
      } finally {
        gens.forEach((g) => g.dispose());
      }
      result = rows[rows.length - 1];
      break;
    }
    case 'teacher-assistant':
      if (!s.teacher.checkpoint) await measure('teacher', 'teacher', 'teacher');
      for (let i = 1; i <= s.assistants.length; i++) await measure(`assistant${i}`, `assistant${i}`, 'student');
      result = await measure('student (TAKD)', 'student', 'student');
      await measure('student (direct KD)', 'direct', 'student');
      break;
    case 'byot': {
      const st = cfg.stages.find((x) => x.name === 'self')!;
      const m = createModel('multi-exit', { numClasses, ...st.roles.model.options }) as MultiExit;
      try {
        loadWeights(m, lastWeights(cfg, 'self', 'model'));
        if (device !== 'cpu') m.to(device);
        m.eval();
        const accs = await exitAccuracies(m, data.test, norm);
        for (let i = 0; i < m.numExits; i++) {
          const view = new ExitView(m, i);
          const r = await measureModel(view, data.test, norm, null);
          rows.push({ row: i === m.numExits - 1 ? `exit ${i} (deepest)` : `exit ${i}`, stage: 'self', model: `${s.model.model}+exits`, acc: accs[i], params: m.exitParameters(i), latency_b1_ms: r.latency });
        }
      } finally {
        m.dispose();
      }
      result = rows[rows.length - 1];
      break;
    }
    case 'cs-kd':
      result = await measure('cs-kd', 'cskd', 'model');
      break;
    case 'tf-kd':
      result = await measure(s.teacher === 'virtual' ? 'tf-kd (virtual teacher)' : 'tf-kd (self)', s.teacher === 'virtual' ? 'virtual' : 'self', 'model');
      break;
    case 'fsp':
      if (!s.teacher.checkpoint) await measure('teacher', 'teacher', 'teacher');
      result = await measure('student (FSP init + CE)', 'train', 'student');
      break;
    case 'theseus':
      if (!s.predecessor.checkpoint) await measure('predecessor', 'predecessor', 'model');
      await measure('successor after replacement', 'replace', 'model');
      result = await measure('successor fine-tuned', 'finetune', 'model');
      break;
  }
  const baseline = s.kind === 'born-again' ? rows[0] : await measure('alone (baseline)', 'alone', 'model');
  let kd: SchemeRow | undefined;
  if (s.baselines.includes('kd')) {
    if (cfg.stages.some((x) => x.name === 'kd-teacher')) await measure('offline KD teacher', 'kd-teacher', 'teacher');
    kd = cfg.stages.some((x) => x.name === 'kd') ? await measure('offline KD', 'kd', 'student') : rows.find((r) => r.stage === 'direct');
  }
  const out: SchemeCompareResult = {
    name: cfg.name, scheme: s.kind, rows, baseline, result: result!, gain: result!.acc - baseline.acc,
    ...(kd ? { kd, kd_gain: result!.acc - kd.acc } : {}), ...(ensemble_acc !== undefined ? { ensemble_acc } : {}),
  };
  fs.mkdirSync(cfg.output.dir, { recursive: true });
  writeFileAtomic(path.join(cfg.output.dir, 'scheme.json'), JSON.stringify(out, null, 2));
  const table = [
    ['row', 'stage', 'model', 'test acc (%)', 'parameters', 'latency b1 (ms)'],
    ...rows.map((r) => [r.row, r.stage, r.model, r.acc.toFixed(2), r.params.toLocaleString('en-US'), r.latency_b1_ms.toFixed(3)]),
    ...(ensemble_acc !== undefined ? [['ensemble of gen1..', '-', '-', ensemble_acc.toFixed(2), '-', '-']] : []),
  ];
  return { result: out, table, stages };
}

/** Exit i of a MultiExit as a model of its own (what measuring its accuracy and latency runs). */
class ExitView extends Module {
  constructor(private readonly m: MultiExit, private readonly i: number) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.m.forwardExit(x, this.i);
  }
}
