// Run configurations are data (YAML or JSON), validated against one schema before anything trains. Unknown keys are
// errors that suggest the closest valid key; values are type- and range-checked; referenced files must exist.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { closest } from '../nn';
import { datasetNames, getDataset, hasDataset, registerBuiltinDatasets } from '../data';
import { getTeacherKind, isExternalTeacherSpec, teacherKinds } from '../teachers';
import { checkModelOptions, registerBuiltinModels } from '../models';

/**
 * A registered image data set (see registerDataset). An unknown name is an issue at `data.dataset` suggesting the
 * closest registered one.
 */
const datasetName = z.string().min(1).superRefine((name, ctx) => {
  const images = datasetNames().filter((n) => getDataset(n).kind === 'image');
  if (!hasDataset(name)) {
    const near = closest(name, images, 1)[0];
    ctx.addIssue({ code: 'custom', message: `unknown data set '${name}'${near ? `; did you mean '${near}'?` : ''} (registered image data sets: ${images.join(', ')})` });
  } else if (getDataset(name).kind !== 'image')
    ctx.addIssue({ code: 'custom', message: `'${name}' is a ${getDataset(name).kind} data set; configuration runs train image classifiers (image data sets: ${images.join(', ')})` });
});

const augmentSpec = z
  .object({
    /** Random translation by up to this many pixels (zero padding, then a random crop back to the image size). */
    crop: z.number().int().min(0).default(0),
    flip: z.boolean().default(false),
  })
  .strict();

const memberSpec = z
  .object({
    model: z.string().min(1),
    options: z.record(z.string(), z.unknown()).default({}),
    /** A trained member's weights (safetensors); required. */
    checkpoint: z.string().min(1),
    weight: z.number().min(0).default(1),
  })
  .strict();

const modelSpec = z
  .object({
    /** A zoo model name, or 'ensemble' (teacher only) with `members`. */
    model: z.string().min(1),
    /** model 'ensemble': trained teachers whose outputs are averaged (weights normalised). */
    members: z.array(memberSpec).min(1).optional(),
    /** model 'ensemble': average logits, or soft targets at the distillation temperature ('probs'). */
    mode: z.enum(['logits', 'probs']).optional(),
    /** Augmentation for this model's own training run (overrides data.augment). */
    augment: augmentSpec.optional(),
    options: z.record(z.string(), z.unknown()).default({}),
    /** Weights to start from (safetensors). */
    checkpoint: z.string().optional(),
  })
  .strict();

/**
 * The teacher: a zoo model (as above), or a model from elsewhere — `model: onnx` / `torchscript` / `tfjs` with `path`, or
 * `model: http` with `url` and `returns` (checked by `checkTeacherSource`).
 */
/** The keys of the built-in teacher kinds from elsewhere (a `teacher` section, or a frozen role of a staged configuration). */
export const externalTeacherKeys = {
  /** onnx, torchscript, tfjs: the model file (tfjs: model.json; relative to the configuration file). */
  path: z.string().min(1).optional(),
  /** onnx, tfjs: the model input fed with the images (default: the only input). */
  input: z.string().min(1).optional(),
  /** onnx, torchscript, tfjs: the output used as logits (default: the first output; TorchScript: `output` / `output.0`). */
  output: z.string().min(1).optional(),
  /** onnx, tfjs, http: inputs per call (default: the training batch for onnx and tfjs, 64 for http). */
  batchSize: z.number().int().positive().optional(),
  /** onnx: onnxruntime execution providers in order of preference (default [cpu]). */
  providers: z.array(z.enum(['cpu', 'cuda'])).min(1).optional(),
  /** http: the endpoint (POST JSON {inputs, shape} -> {outputs}). */
  url: z.string().url().optional(),
  /** http: what the endpoint returns per input; probabilities are turned into log-probabilities. */
  returns: z.enum(['logits', 'probs']).optional(),
  /** http: retries after a failed request (default 3), waiting 0.2 s, 0.4 s, ... */
  retries: z.number().int().min(0).optional(),
  /** http: per request (default 30000). */
  timeoutMs: z.number().int().positive().optional(),
};

const teacherSpec = modelSpec.extend(externalTeacherKeys);

/** A number, or a value that moves over training: linear / cosine from → to (over `epochs`, default the run), warm-up. */
export const scheduleObj = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant'), value: z.number() }).strict(),
  z.object({ kind: z.literal('linear'), from: z.number(), to: z.number(), epochs: z.number().positive().optional() }).strict(),
  z.object({ kind: z.literal('cosine'), from: z.number(), to: z.number(), epochs: z.number().positive().optional() }).strict(),
  z.object({ kind: z.literal('warmup'), value: z.number(), epochs: z.number().positive() }).strict(),
]);

const layerPath = z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2)]);
const matchSpec = z
  .object({
    /** Teacher module path ('logits' for the output); two paths for pair losses (fsp). */
    teacher: layerPath,
    student: layerPath,
    /** A registered loss: hint, at, sp, rkd, pkt, cc, nst, fsp, dkd, kd, cosine, hidden_mse, ... */
    loss: z.string().min(1),
    weight: z.union([z.number().min(0), scheduleObj]).default(1),
    /** 'auto' inserts a trainable projection where the loss needs equal shapes and they differ. */
    proj: z.enum(['auto', 'none']).default('auto'),
    options: z.record(z.string(), z.unknown()).default({}),
    /** How paths with a '*' (one segment, e.g. 'layer3.*') pair up: uniform (TinyBERT), last_k, explicit. */
    map: z.enum(['uniform', 'last_k', 'explicit']).default('uniform'),
  })
  .strict();

export const configSchema = z
  .object({
    name: z.string().default('run'),
    seed: z.number().int().min(0).default(0),
    data: z
      .object({
        /** A registered image data set: mnist, fashion-mnist, cifar10 (../shared/data/cifar10-jpeg.tar.gz, decoded once, then cached), or a plugin's. */
        dataset: datasetName,
        batchSize: z.number().int().positive().default(64),
        /** Use only the first N training images. */
        limit: z.number().int().positive().optional(),
        normalize: z.boolean().default(true),
        augment: augmentSpec.optional(),
      })
      .strict(),
    teacher: teacherSpec.optional(),
    student: modelSpec,
    distill: z
      .object({
        temperature: z.union([z.number().positive(), scheduleObj]).default(4),
        alpha: z.union([z.number().min(0).max(1), scheduleObj]).default(0.1),
        /** Per-sample temperatures around `temperature` (TextBrewer's flsw / cwsm schedulers). */
        dynamicTemperature: z
          .discriminatedUnion('kind', [
            z.object({ kind: z.literal('flsw'), beta: z.number(), gamma: z.number(), eps: z.number().positive().optional() }).strict(),
            z.object({ kind: z.literal('cwsm'), beta: z.number() }).strict(),
          ])
          .optional(),
        softLoss: z.enum(['kl', 'soft_ce', 'logit_mse']).default('kl'),
        cache: z.boolean().default(true),
        /** Feature / relation matches added to the response-KD loss (the teacher then runs on every batch). */
        matches: z.array(matchSpec).default([]),
      })
      .strict()
      .default({ temperature: 4, alpha: 0.1, softLoss: 'kl', cache: true, matches: [] }),
    training: z
      .object({
        epochs: z.number().int().positive().default(10),
        optimizer: z.enum(['sgd', 'adam', 'adamw']).default('sgd'),
        lr: z.number().positive().default(0.01),
        momentum: z.number().min(0).max(1).default(0.9),
        weightDecay: z.number().min(0).default(0),
        schedule: z.enum(['constant', 'cosine', 'step', 'multistep']).default('constant'),
        /** schedule 'multistep': epochs at which the learning rate drops 10x (RepDistiller: [150, 180, 210] of 240). */
        milestones: z.array(z.number().int().positive()).optional(),
        warmupEpochs: z.number().int().min(0).default(0),
        threads: z.number().int().positive().optional(),
        device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, "expected 'cpu', 'cuda' or 'cuda:N'").default('cpu'),
      })
      .strict()
      .default({ epochs: 10, optimizer: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0, schedule: 'constant', warmupEpochs: 0, device: 'cpu' }),
    /** int8: quantization-aware training of the student (fake quantization; export with --format onnx-int8). */
    quantization: z
      .object({
        /** Train the student (plain and distilled runs) with fake-quantized weights and activations. */
        qat: z.boolean().default(false),
        /** How activation ranges are tracked during training: moving-average min/max (default), min/max, percentile. */
        observer: z.enum(['ema', 'minmax', 'percentile']).default('ema'),
        /** 'ema': weight of each new batch's range. */
        momentum: z.number().positive().max(1).default(0.01),
        /** Batches that set the starting ranges before training. */
        calibrationBatches: z.number().int().positive().default(16),
      })
      .strict()
      .optional(),
    output: z
      .object({ dir: z.string().default('runs/run'), checkpointEvery: z.number().int().min(0).default(1) })
      .strict()
      .default({ dir: 'runs/run', checkpointEvery: 1 }),
  })
  .strict();

export type RunConfig = z.infer<typeof configSchema>;

/** Valid keys at a path of the schema, for "did you mean" messages. */
function keysAt(schema: z.ZodTypeAny, pathParts: (string | number)[]): string[] {
  let cur: any = schema;
  for (const p of [...pathParts, null]) {
    while (cur && (cur.def?.type === 'default' || cur.def?.type === 'optional' || cur.def?.type === 'nullable')) cur = cur.def.innerType;
    if (p === null) break;
    cur = typeof p === 'number' && cur?.def?.type === 'array' ? cur.def.element : cur?.def?.type === 'record' ? cur.def.valueType : cur?.shape?.[p];
  }
  return cur?.shape ? Object.keys(cur.shape) : [];
}

export function describe(issues: z.core.$ZodIssue[], source: string, schema: z.ZodTypeAny = configSchema): string {
  const lines = issues.flatMap((iss) => {
    const where = iss.path.length ? iss.path.join('.') : '(top level)';
    if (iss.code === 'unrecognized_keys') {
      const valid = keysAt(schema, iss.path as (string | number)[]);
      return iss.keys.map((k) => {
        const full = [...iss.path, k].join('.');
        const near = closest(k, valid, 1)[0];
        return `  ${full}: unknown key${near ? `; did you mean '${[...iss.path, near].join('.')}'?` : ''} (valid here: ${valid.join(', ')})`;
      });
    }
    return [`  ${where}: ${iss.message}`];
  });
  return `${source}: invalid configuration:\n${lines.join('\n')}`;
}

/** Applies `a.b.c=value` overrides; values are parsed as YAML scalars (numbers, booleans, strings). */
export function applyOverrides(raw: Record<string, unknown>, sets: string[]): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new Error(`--set ${s}: expected key.path=value`);
    const keys = s.slice(0, eq).split('.');
    const value = parseYaml(s.slice(eq + 1));
    let cur: any = out;
    for (const k of keys.slice(0, -1)) {
      if (cur[k] === undefined) cur[k] = {};
      if (typeof cur[k] !== 'object' || cur[k] === null) throw new Error(`--set ${s}: '${k}' is not a section`);
      cur = cur[k];
    }
    cur[keys[keys.length - 1]] = value;
  }
  return out;
}

/** The schema's verdict on a raw configuration; the built-in data sets are registered first (`data.dataset` names one). */
export function parseConfig(raw: unknown): ReturnType<typeof configSchema.safeParse> {
  registerBuiltinDatasets();
  return configSchema.safeParse(raw);
}

/** Validates a raw configuration object; `source` names it in errors. */
export function validateConfig(raw: unknown, source = 'config'): RunConfig {
  const r = parseConfig(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source));
  const cfg = r.data;
  const baseDir = source.endsWith('.yaml') || source.endsWith('.yml') || source.endsWith('.json') ? path.dirname(source) : '.';
  checkTeacherSource(cfg.teacher, source, baseDir);
  for (const [role, spec] of [['teacher', cfg.teacher], ['student', cfg.student]] as const) {
    if (spec && (spec.model === 'ensemble') !== !!spec.members)
      throw new Error(`${source}: ${role}: ${spec.members ? `members need model: ensemble (got '${spec.model}')` : "model 'ensemble' needs a 'members' list"}`);
    if (spec && role === 'student' && spec.members) throw new Error(`${source}: student: an ensemble can only be a teacher`);
    if (spec && (spec.mode || spec.members) && spec.model !== 'ensemble') throw new Error(`${source}: ${role}.mode applies to model 'ensemble' only`);
    // zoo models' options, against each model's declaration (models registered by plugins are checked when declared)
    registerBuiltinModels();
    if (spec && !spec.members && !isExternalTeacherSpec(spec)) checkModelOptions(spec.model, spec.options, `${source}: ${role}.options`);
    spec?.members?.forEach((m, i) => checkModelOptions(m.model, m.options, `${source}: ${role}.members[${i}].options`));
    spec?.members?.forEach((m, i) => {
      const file = path.resolve(baseDir, m.checkpoint);
      if (!fs.existsSync(file)) throw new Error(`${source}: ${role}.members[${i}].checkpoint: file not found: ${file}`);
      m.checkpoint = file;
    });
    if (spec?.checkpoint) {
      const file = path.resolve(baseDir, spec.checkpoint);
      if (!fs.existsSync(file)) throw new Error(`${source}: ${role}.checkpoint: file not found: ${file}`);
      spec.checkpoint = file;
    }
  }
  return cfg;
}

/** The mapping in a YAML or JSON configuration file (by extension); errors name the file. */
export function readConfigMapping(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new Error(`${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: the configuration must be a mapping`);
  return raw as Record<string, unknown>;
}

/** Reads a YAML or JSON file, applies overrides and validates. */
export function loadConfig(file: string, sets: string[] = []): RunConfig {
  return validateConfig(applyOverrides(readConfigMapping(file), sets), file);
}

/** Reads a generate configuration (YAML or JSON) and applies `--set` overrides; `input: file` / `output: dir` shorthands become sections first. */
export function loadGenerateConfig(file: string, sets: string[]): Record<string, unknown> {
  const cfg = { ...readConfigMapping(file) };
  if (typeof cfg.input === 'string') cfg.input = { file: cfg.input };
  if (typeof cfg.output === 'string') cfg.output = { dir: cfg.output };
  return applyOverrides(cfg, sets);
}

/**
 * A teacher from elsewhere (a registered teacher kind): the keys its kind needs are present, keys of other kinds (and
 * the zoo's checkpoint, options, members) are refused, and its file exists (the path is made absolute, relative to the
 * configuration file). `section` names the section in errors.
 */
export function checkTeacherSource(spec: Record<string, unknown> & { model: string } | undefined, source: string, baseDir: string, section = 'teacher'): void {
  if (!spec) return;
  const kind = spec.model;
  const allKeys = [...new Set(teacherKinds().flatMap((k) => getTeacherKind(k).keys))];
  const given = allKeys.filter((k) => spec[k] !== undefined);
  if (!isExternalTeacherSpec(spec)) {
    if (given.length)
      throw new Error(`${source}: ${section}.${given[0]} applies to teachers from elsewhere (model: ${teacherKinds().join(' | ')}), not to the zoo model '${kind}'`);
    return;
  }
  const k = getTeacherKind(kind);
  const foreign = given.filter((x) => !k.keys.includes(x));
  if (foreign.length) throw new Error(`${source}: ${section}.${foreign[0]} does not apply to model ${kind} (its keys: ${k.keys.join(', ')})`);
  for (const x of ['checkpoint', 'members', 'mode', 'augment', 'from'])
    if (spec[x] !== undefined) throw new Error(`${source}: ${section}.${x} does not apply to model ${kind} (the model comes from ${k.file ? 'the file' : 'elsewhere'})`);
  if (spec.options && Object.keys(spec.options as object).length) throw new Error(`${source}: ${section}.options does not apply to model ${kind}`);
  for (const [key, what] of Object.entries(k.required)) if (spec[key] === undefined) throw new Error(`${source}: ${section}.${key} is required for model ${kind} (${what})`);
  if (k.file && typeof spec.path === 'string') {
    const file = path.resolve(baseDir, spec.path);
    if (!fs.existsSync(file)) throw new Error(`${source}: ${section}.path: file not found: ${file}`);
    spec.path = file;
  }
}
