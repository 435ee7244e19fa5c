// Model directories in the layout transformers' `save_pretrained` writes:
//
//   config.json                          architectures, model_type and the architecture's settings
//   model.safetensors                    the state_dict (tied weights stored once), or, when sharded,
//   model.safetensors.index.json         {"metadata": {"total_size"}, "weight_map": {tensor: shard file}}
//   model-00001-of-0000N.safetensors     + the shards
//   generation_config.json               (optional) sampling defaults, eos ids
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json   (optional; see tokenizer.ts)
//
// Loading picks the class from `architectures[0]` (or `model_type` when absent), builds it from config.json and
// copies every parameter from the safetensors files, converting dtypes (bf16/f16 files load into float32 models).
// A checkpoint of the base model loads into a model with a head and the other way round (the `bert.` /
// `distilbert.` / `transformer.` / `model.` prefix is added or removed, as transformers does). Errors name the file
// and the tensor or key at fault; every file is written atomically (temp + rename).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, loadSafetensors, noGrad, readSafetensorsHeader, saveSafetensors, tidy, writeFileAtomic } from '../../torch';
import { HfConfig, readJsonFile, type HfConfigObject } from './config';
import type { HfPreTrainedModel } from './common';
import { BertForMaskedLM, BertForSequenceClassification, BertModel } from './bert';
import { DistilBertForMaskedLM, DistilBertForSequenceClassification, DistilBertModel } from './distilbert';
import { GPT2LMHeadModel } from './gpt2';
import { LlamaForCausalLM, Qwen2ForCausalLM } from './llama';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** The architectures that can be built, by the class name transformers writes in `architectures`. */
const ARCHITECTURES: Record<string, { modelType: string; build: (c: HfConfig) => HfPreTrainedModel }> = {
  BertModel: { modelType: 'bert', build: (c) => new BertModel(c) },
  BertForSequenceClassification: { modelType: 'bert', build: (c) => new BertForSequenceClassification(c) },
  BertForMaskedLM: { modelType: 'bert', build: (c) => new BertForMaskedLM(c) },
  DistilBertModel: { modelType: 'distilbert', build: (c) => new DistilBertModel(c) },
  DistilBertForSequenceClassification: { modelType: 'distilbert', build: (c) => new DistilBertForSequenceClassification(c) },
  DistilBertForMaskedLM: { modelType: 'distilbert', build: (c) => new DistilBertForMaskedLM(c) },
  GPT2LMHeadModel: { modelType: 'gpt2', build: (c) => new GPT2LMHeadModel(c) },
  LlamaForCausalLM: { modelType: 'llama', build: (c) => new LlamaForCausalLM(c) },
  Qwen2ForCausalLM: { modelType: 'qwen2', build: (c) => new Qwen2ForCausalLM(c) },
};
/** The class used when config.json names no architecture. */
const DEFAULT_FOR_TYPE: Record<string, string> = {
  bert: 'BertModel', distilbert: 'DistilBertModel', gpt2: 'GPT2LMHeadModel', llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM',
};
/** The attribute holding the base model in the classes with a head, by model_type. */
const BASE_PREFIX: Record<string, string> = { bert: 'bert', distilbert: 'distilbert', gpt2: 'transformer', llama: 'model', qwen2: 'model' };

export function hfArchitectures(): string[] {
  return Object.keys(ARCHITECTURES);
}

/**
 * Builds the model a config describes, initialised as transformers does (`initWeights`): the class `architecture`, else config.json's
 * `architectures[0]`, else the default class of its `model_type`.
 */
export function createHfModel(config: HfConfig | HfConfigObject, architecture?: string): HfPreTrainedModel {
  const c = config instanceof HfConfig ? config : new HfConfig(config);
  const modelType = c.str('model_type');
  if (!(modelType in DEFAULT_FOR_TYPE))
    throw new Error(`${c.source}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${Object.keys(DEFAULT_FOR_TYPE).join(', ')})`);
  let arch = architecture;
  if (arch === undefined) {
    const list = c.raw.architectures;
    if (list != null && (!Array.isArray(list) || list.length === 0 || typeof list[0] !== 'string'))
      throw new Error(`${c.source}: 'architectures' must be a non-empty list of class names, got ${JSON.stringify(list)}`);
    arch = list == null ? DEFAULT_FOR_TYPE[modelType] : (list[0] as string);
  }
  const entry = ARCHITECTURES[arch];
  if (entry === undefined) throw new Error(`${c.source}: architecture '${arch}' is not supported (supported: ${hfArchitectures().join(', ')})`);
  if (entry.modelType !== modelType) throw new Error(`${c.source}: architecture '${arch}' is a ${entry.modelType} model, but model_type is '${modelType}'`);
  const model = entry.build(c);
  model.initWeights();
  return model;
}

/** Where each tensor of a model directory is: the file per tensor name, and the file that lists them. */
export interface WeightFiles {
  /** tensor name -> absolute path of the safetensors file holding it */
  files: Map<string, string>;
  /** model.safetensors or model.safetensors.index.json (named in errors) */
  source: string;
}

/** Lists the tensors of a model directory (model.safetensors, or the shards of model.safetensors.index.json). */
export function hfWeightFiles(dir: string): WeightFiles {
  const single = path.join(dir, WEIGHTS_FILE);
  const index = path.join(dir, WEIGHTS_INDEX_FILE);
  const files = new Map<string, string>();
  if (fs.existsSync(single)) {
    for (const k of Object.keys(readSafetensorsHeader(single).entries)) files.set(k, single);
    return { files, source: single };
  }
  if (fs.existsSync(index)) {
    const j = readJsonFile(index) as { weight_map?: unknown };
    const wm = j?.weight_map;
    if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new Error(`${index}: missing or invalid 'weight_map' (an object of tensor name -> file)`);
    const shards = new Map<string, Set<string>>();
    for (const [name, f] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f === '..')
        throw new Error(`${index}: weight_map['${name}'] must be a file name in the same directory, got ${JSON.stringify(f)}`);
      const abs = path.join(dir, f);
      files.set(name, abs);
      if (!shards.has(abs)) shards.set(abs, new Set());
      shards.get(abs)!.add(name);
    }
    for (const [abs, names] of shards) {
      if (!fs.existsSync(abs)) throw new Error(`${index}: shard ${path.basename(abs)} (holding '${[...names][0]}') does not exist`);
      const held = readSafetensorsHeader(abs).entries;
      for (const n of names) if (!(n in held)) throw new Error(`${index}: weight_map puts '${n}' in ${path.basename(abs)}, which does not hold it`);
    }
    return { files, source: index };
  }
  const bin = fs.existsSync(path.join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is a pickle, which is not read: convert it to safetensors)' : '';
  throw new Error(`${dir}: no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}${bin}`);
}

export interface LoadWeightsOptions {
  /** Keep the fresh initialisation of parameters the checkpoint lacks (e.g. a new classifier) instead of failing. */
  initMissing?: boolean;
}

export interface LoadWeightsResult {
  /** Parameters the checkpoint lacked (only with `initMissing`). */
  missing: string[];
  /** Tensors of the checkpoint the model has no parameter for (tied copies and known buffers are not listed). */
  unexpected: string[];
}

/** Copies the tensors of model directory `dir` into `model`'s parameters (matched by state_dict key, see above). */
export function loadHfWeights(model: HfPreTrainedModel, dir: string, opts: LoadWeightsOptions = {}): LoadWeightsResult {
  const wf = hfWeightFiles(dir);
  const own = model.stateDict();
  const keys = Object.keys(own);
  // the mapping model key -> file key that finds the most tensors: as is, without the base prefix, or with it
  const prefix = BASE_PREFIX[model.modelType];
  const maps: ((k: string) => string | null)[] = [(k) => k];
  if (model.basePrefix !== '') maps.push((k) => (k.startsWith(`${model.basePrefix}.`) ? k.slice(model.basePrefix.length + 1) : null));
  else if (prefix) maps.push((k) => `${prefix}.${k}`);
  const found = (f: (k: string) => string | null) => keys.filter((k) => wf.files.has(f(k) ?? '')).length;
  const map = maps.reduce((best, f) => (found(f) > found(best) ? f : best));
  const byFile = new Map<string, [string, string][]>();
  const missing: string[] = [];
  const used = new Set<string>();
  for (const k of keys) {
    const fk = map(k);
    const file = fk === null ? undefined : wf.files.get(fk);
    if (file === undefined) {
      if (!opts.initMissing)
        throw new Error(`${wf.source}: missing tensor '${fk ?? k}' (${model.architecture} parameter '${k}', shape [${own[k].shape.join(', ')}]); ` +
          'pass initMissing to keep it freshly initialised');
      missing.push(k);
      continue;
    }
    used.add(fk!);
    if (!byFile.has(file)) byFile.set(file, []);
    byFile.get(file)!.push([k, fk!]);
  }
  for (const [file, pairs] of byFile) {
    const { tensors } = loadSafetensors(file, { keys: pairs.map(([, fk]) => fk) });
    try {
      for (const [k, fk] of pairs) {
        const src = tensors[fk];
        const dst = own[k];
        if (src.shape.length !== dst.shape.length || src.shape.some((d, i) => d !== dst.shape[i]))
          throw new Error(`${file}: tensor '${fk}' has shape [${src.shape.join(', ')}], ${model.architecture} expects [${dst.shape.join(', ')}] for '${k}' (does config.json match the weights?)`);
        if (src.dtype === 'bool' || src.dtype.startsWith('int') || src.dtype === 'uint8')
          if (dst.dtype !== src.dtype) throw new Error(`${file}: tensor '${fk}' is ${src.dtype}, ${model.architecture} expects ${dst.dtype} for '${k}'`);
        noGrad(() => tidy(() => void dst.copy_(src)));
      }
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
  }
  const unexpected = [...wf.files.keys()].filter((fk) => !used.has(fk) && !model.ignoredKeys.some((re) => re.test(fk) || re.test(`${model.basePrefix}.${fk}`)));
  return { missing, unexpected };
}

/** generation_config.json as transformers writes it (the keys generation reads; others are kept in `raw`). */
export interface HfGenerationConfig {
  raw: Record<string, unknown>;
  /** eos_token_id as a list (transformers accepts one id or several). */
  eosTokenIds: number[];
  bosTokenId: number | null;
  /** Sampling settings in the form of src/llm/decode.ts's GenerateOptions (temperature 0 when do_sample is false). */
  sampling: { temperature: number; topK?: number; topP?: number; maxNewTokens?: number };
}

export function readGenerationConfig(file: string): HfGenerationConfig {
  const raw = readJsonFile(file) as Record<string, unknown>;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected a JSON object`);
  const ids = (key: string): number[] => {
    const v = raw[key];
    if (v == null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) if (!Number.isInteger(x) || (x as number) < 0) throw new Error(`${file}: '${key}' must be a token id or a list of them, got ${JSON.stringify(v)}`);
    return list as number[];
  };
  const num = (key: string, ok: (x: number) => boolean): number | undefined => {
    const v = raw[key];
    if (v == null) return undefined;
    if (typeof v !== 'number' || !ok(v)) throw new Error(`${file}: '${key}' has an invalid value ${JSON.stringify(v)}`);
    return v;
  };
  const doSample = raw.do_sample ?? false;
  if (typeof doSample !== 'boolean') throw new Error(`${file}: 'do_sample' must be true or false`);
  const temperature = num('temperature', (x) => x >= 0) ?? 1;
  const topK = num('top_k', (x) => Number.isInteger(x) && x >= 0);
  const topP = num('top_p', (x) => x > 0 && x <= 1);
  const maxNewTokens = num('max_new_tokens', (x) => Number.isInteger(x) && x >= 0);
  const sampling: HfGenerationConfig['sampling'] = { temperature: doSample ? temperature : 0 };
  if (doSample && topK !== undefined && topK > 0) sampling.topK = topK;
  if (doSample && topP !== undefined && topP < 1) sampling.topP = topP;
  if (maxNewTokens !== undefined) sampling.maxNewTokens = maxNewTokens;
  const bos = ids('bos_token_id');
  return { raw, eosTokenIds: ids('eos_token_id'), bosTokenId: bos.length ? bos[0] : null, sampling };
}

export interface LoadedHfModel<M extends HfPreTrainedModel = HfPreTrainedModel> extends LoadWeightsResult {
  model: M;
  config: HfConfig;
  /** generation_config.json when the directory has one. */
  generation: HfGenerationConfig | null;
}

/**
 * Loads a model directory: builds the class config.json names (or `architecture`, e.g. a classifier over a base
 * model's checkpoint with `initMissing`) and fills its parameters. The model is in eval mode.
 */
export function loadHfModel(dir: string, opts: LoadWeightsOptions & { architecture?: string } = {}): LoadedHfModel {
  const config = HfConfig.read(path.join(dir, CONFIG_FILE));
  const model = createHfModel(config, opts.architecture);  // initialised: parameters missing with initMissing keep it
  let r: LoadWeightsResult;
  try {
    r = loadHfWeights(model, dir, opts);
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  const g = path.join(dir, GENERATION_CONFIG_FILE);
  return { model, config, generation: fs.existsSync(g) ? readGenerationConfig(g) : null, ...r };
}

export interface SaveHfOptions {
  /** Shard the weights into files of at most this many bytes (a tensor larger than that gets a shard of its own). */
  maxShardSize?: number;
  /** Written as generation_config.json. */
  generationConfig?: Record<string, unknown>;
  /** Extra files written beside the model (e.g. a tokenizer's: `HfTokenizer.files()`), name -> JSON object. */
  files?: Record<string, unknown>;
}

const dtypeName = (t: Tensor) => t.dtype;
const ITEMSIZE: Record<string, number> = { float64: 8, float32: 4, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/**
 * Writes `model` as a transformers model directory: config.json (the model's config with `architectures`,
 * `model_type` and `torch_dtype` set), model.safetensors or shards + index, and the optional files. Weight files of
 * an earlier save that the new one does not use are removed afterwards.
 */
export function saveHfModel(dir: string, model: HfPreTrainedModel, opts: SaveHfOptions = {}): string[] {
  const sd = model.stateDict();
  const names = Object.keys(sd).sort();
  if (names.length === 0) throw new Error(`saveHfModel: ${model.architecture} has no parameters`);
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const max = opts.maxShardSize;
  if (max !== undefined && !(Number.isInteger(max) && max > 0)) throw new Error(`saveHfModel: maxShardSize must be a positive integer (bytes), got ${max}`);
  const bytes = (t: Tensor) => t.numel() * ITEMSIZE[t.dtype];
  const total = names.reduce((s, n) => s + bytes(sd[n]), 0);
  if (max === undefined || total <= max) {
    saveSafetensors(path.join(dir, WEIGHTS_FILE), sd, { format: 'pt' });
    written.push(WEIGHTS_FILE);
  } else {
    const shards: string[][] = [];
    let size = 0;
    for (const n of names) {
      const b = bytes(sd[n]);
      if (shards.length === 0 || size + b > max) {
        shards.push([]);
        size = 0;
      }
      shards[shards.length - 1].push(n);
      size += b;
    }
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const f = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      saveSafetensors(path.join(dir, f), Object.fromEntries(part.map((n) => [n, sd[n]])), { format: 'pt' });
      for (const n of part) weightMap[n] = f;
      written.push(f);
    });
    writeFileAtomic(path.join(dir, WEIGHTS_INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    written.push(WEIGHTS_INDEX_FILE);
  }
  const config = { ...model.config.raw, architectures: [model.architecture], model_type: model.modelType, torch_dtype: dtypeName(sd[names[0]]) };
  writeFileAtomic(path.join(dir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  written.push(CONFIG_FILE);
  if (opts.generationConfig) {
    writeFileAtomic(path.join(dir, GENERATION_CONFIG_FILE), JSON.stringify(opts.generationConfig, null, 2) + '\n');
    written.push(GENERATION_CONFIG_FILE);
  }
  for (const [name, obj] of Object.entries(opts.files ?? {})) {
    if (name.includes('/') || name.includes('\\') || name.startsWith('.')) throw new Error(`saveHfModel: extra file name '${name}' must be a plain file name`);
    writeFileAtomic(path.join(dir, name), JSON.stringify(obj, null, 2) + '\n');
    written.push(name);
  }
  // weight files of an earlier save (another shard count, or single vs sharded) would confuse a later load
  for (const f of fs.readdirSync(dir))
    if ((f === WEIGHTS_FILE || f === WEIGHTS_INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)) && !written.includes(f)) fs.rmSync(path.join(dir, f));
  return written;
}
