// Run configurations are data (YAML or JSON), validated against one schema before anything trains. Unknown keys are
// errors that suggest the closest valid key; values are type- and range-checked; referenced files must exist.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { closest } from '../nn';
import { type DatasetInfo, type OwnDataSpec, OWN_DATA_KEYS, absoluteDataSpec, datasetNames, getDataset, hasDataset, ownDataset, registerBuiltinDatasets } from '../data';
import { getTeacherKind, isExternalTeacherSpec, teacherKinds } from '../teachers';
import { checkModelOptions, registerBuiltinModels } from '../models';

/** Whether configuration runs can train on a registered data set: images, or text with an encoder (token ids). */
const trainable = (info: DatasetInfo) => info.kind === 'image' || (info.kind === 'text' && !!info.encoder);

/**
 * A registered data set (see registerDataset) of images, or of text with an encoder. An unknown name is an issue at
 * `data.dataset` suggesting the closest registered one.
 */
const datasetName = z.string().min(1).superRefine((name, ctx) => {
  const usable = datasetNames().filter((n) => trainable(getDataset(n)));
  if (!hasDataset(name)) {
    const near = closest(name, usable, 1)[0];
    ctx.addIssue({ code: 'custom', message: `unknown data set '${name}'${near ? `; did you mean '${near}'?` : ''} (registered data sets: ${usable.join(', ')}; or give your own with data.train / data.test or data.path + data.split)` });
  } else if (!trainable(getDataset(name)))
    ctx.addIssue({ code: 'custom', message: `'${name}' is a ${getDataset(name).kind} data set without a tokenizer; configuration runs train classifiers of images or text (usable data sets: ${usable.join(', ')})` });
});

/** A source of one's own data: a path (folder, .csv, .jsonl, .tsv, .tar.gz) or an IDX pair. */
const dataSource = z.union([z.string().min(1), z.object({ images: z.string().min(1), labels: z.string().min(1) }).strict()]);

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
  /** onnx, tfjs: the model input fed with the images (default: the only input); http: `raw` sends the raw samples. */
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
  /** http: the label set that label → probability answers refer to (in output order). */
  labels: z.array(z.string().min(1)).min(2).optional(),
  /** http: the least probability kept before the log (missing labels of a top-k answer); default 1e-12. */
  floor: z.number().positive().lt(1).optional(),
  /** http: how far probabilities and their sums may exceed 1 (default 1e-3). */
  tolerance: z.number().min(0).optional(),
  /** http: the teacher's identity for the teacher cache, added to the URL; change it when the endpoint's answers change. */
  id: z.string().min(1).optional(),
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
        /** A registered data set: mnist, fashion-mnist, cifar10 (../shared/data/cifar10-jpeg.tar.gz, decoded once, then cached), or a plugin's. */
        dataset: datasetName.optional(),
        // one's own data instead (see docs/data.md): train / test sources, or one source (path) and a split fraction
        /** A folder of class folders, a .csv / .jsonl image list, a .tsv / .jsonl text file, a .tar.gz of one, or { images, labels } (IDX). */
        train: dataSource.optional(),
        test: dataSource.optional(),
        path: dataSource.optional(),
        /** Fraction of each class held out for testing (without `test`). */
        split: z.number().gt(0).lt(1).optional(),
        /** Seed of the split (default 0). */
        seed: z.number().int().min(0).optional(),
        /** A .tar.gz that train / test / path are inside of (extracted once into the cache, keyed by its checksum). */
        archive: z.string().min(1).optional(),
        /** A short name for messages and model cards. */
        name: z.string().min(1).optional(),
        /** Class names in label order (default: the class folders or labels, sorted). */
        classes: z.array(z.string().min(1)).min(2).optional(),
        /** Images: 3 (RGB, default for folders and lists) or 1 (grayscale). */
        channels: z.union([z.literal(1), z.literal(3)]).optional(),
        /** Images: per-channel statistics in [0, 1] (default: computed from the training split, cached). */
        mean: z.array(z.number()).min(1).optional(),
        std: z.array(z.number().positive()).min(1).optional(),
        /** Text: the tokenizer, 'bytes', 'words' (default) or the path of a tokenizer.json. */
        tokenizer: z.string().min(1).optional(),
        /** Text: tokens kept per text (default 128). */
        maxLen: z.number().int().positive().optional(),
        /** Text: longest hashed n-gram added to the tokens (default 1: none). */
        ngrams: z.number().int().positive().optional(),
        /** Text: hash buckets of the n-grams (default 65536). */
        buckets: z.number().int().positive().optional(),
        /** Text, tokenizer 'words': most words kept (default 20000). */
        vocabSize: z.number().int().min(3).optional(),
        /** Text: the column (TSV header) or key (JSONL) of the text and of the label. */
        textColumn: z.string().min(1).optional(),
        labelColumn: z.string().min(1).optional(),
        batchSize: z.number().int().positive().default(64),
        /** Use only N training samples (the first N of a registered set; a fixed random N of one's own). */
        limit: z.number().int().positive().optional(),
        normalize: z.boolean().default(true),
        augment: augmentSpec.optional(),
      })
      .strict()
      .superRefine((d, ctx) => {
        const own = OWN_DATA_KEYS.filter((k) => k !== 'cacheDir' && d[k as keyof typeof d] !== undefined);
        if (d.dataset !== undefined && own.length)
          ctx.addIssue({ code: 'custom', path: [own[0]], message: `give a registered data.dataset or your own data (${own.join(', ')}), not both` });
        else if (d.dataset === undefined && d.train === undefined && d.path === undefined)
          ctx.addIssue({ code: 'custom', message: 'no data: give data.dataset (a registered name), or data.train and data.test (or data.path and data.split) for your own' });
      }),
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
        /**
         * true: cache the teacher's logits per image (when data.augment is off). 'views': with data.augment, cache its
         * top-k outputs for `views` crop/flip views per image and train on one of them per step, the student seeing
         * the same view (docs/performance.md, cached views).
         */
        cache: z.union([z.boolean(), z.literal('views')]).default(true),
        /** cache 'views': views stored per image (default 10). */
        views: z.number().int().positive().optional(),
        /** cache 'views': teacher logits kept per view (default 10; the rest of its mass is spread evenly over the other classes). */
        topk: z.number().int().positive().optional(),
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
        /** Several processes (--nproc): BatchNorm of the trained models over the whole global batch (SyncBatchNorm). */
        syncBatchNorm: z.boolean().optional(),
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

/** The own-data spec of a configuration's data section (its keys other than the loader's), or null for a registered set. */
export function ownDataSpec(data: RunConfig['data']): OwnDataSpec | null {
  if (data.dataset !== undefined) return null;
  const spec: Record<string, unknown> = {};
  for (const k of OWN_DATA_KEYS) if ((data as Record<string, unknown>)[k] !== undefined) spec[k] = (data as Record<string, unknown>)[k];
  return spec as OwnDataSpec;
}

/**
 * The data set of a configuration: the registered `data.dataset`, or one's own data (read, checked and registered on
 * first use; see ownDataset). Errors name the configuration.
 */
export function configDataset(cfg: Pick<RunConfig, 'data'>, source = 'config'): DatasetInfo {
  registerBuiltinDatasets();
  const own = ownDataSpec(cfg.data);
  if (!own) return getDataset(cfg.data.dataset!);
  try {
    return ownDataset(own);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Checks the models against the data before anything trains: an explicit `options.numClasses` must equal the data's
 * number of classes, and augmentation applies to images only.
 */
function checkModelsAgainstData(cfg: RunConfig, source: string): void {
  const info = configDataset(cfg, source);
  const n = info.classes.length;
  const specs: [string, { options?: Record<string, unknown>; augment?: unknown; members?: { options?: Record<string, unknown> }[] } | undefined][] = [['teacher', cfg.teacher], ['student', cfg.student]];
  for (const [role, spec] of specs) {
    if (!spec) continue;
    const opts: [string, Record<string, unknown> | undefined][] = [[`${role}.options`, spec.options], ...(spec.members ?? []).map((m, i): [string, Record<string, unknown> | undefined] => [`${role}.members[${i}].options`, m.options])];
    for (const [key, o] of opts)
      if (o?.numClasses !== undefined && o.numClasses !== n)
        throw new Error(`${source}: ${key}.numClasses is ${o.numClasses}, but the data (${info.name}) has ${n} classes (${info.classes.join(', ')}); remove it (it follows the data) or fix it`);
    if (info.kind === 'text' && spec.augment) throw new Error(`${source}: ${role}.augment applies to images; ${info.name} is a text data set`);
  }
  if (info.kind === 'text' && cfg.data.augment) throw new Error(`${source}: data.augment applies to images; ${info.name} is a text data set`);
}

/** Validates a raw configuration object; `source` names it in errors. */
export function validateConfig(raw: unknown, source = 'config'): RunConfig {
  const r = parseConfig(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source));
  const cfg = r.data;
  const baseDir = source.endsWith('.yaml') || source.endsWith('.yml') || source.endsWith('.json') ? path.dirname(source) : '.';
  // one's own data: paths become absolute (the recorded config.json then stands on its own), then the data is checked
  const own = ownDataSpec(cfg.data);
  if (own) Object.assign(cfg.data, absoluteDataSpec(own, baseDir));
  checkModelsAgainstData(cfg, source);
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
