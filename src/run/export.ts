// Exporting a trained model (what `tsdistill export` does): out of a run folder (or a checkpoint) as ONNX or
// safetensors, with a model card.
//
// What is exported is found the way `eval` finds weights: a run folder (`runs/x/distilled`, holding best.safetensors
// and summary.json, with the run's config.json in it or its parent), an output folder holding such runs (`runs/x`:
// the distilled run, else the student's, unless --role), or a .safetensors checkpoint (its architecture from the
// config.json of the run it sits in, or from --config FILE with --role).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSafetensors, dispose, version } from '../torch';
import { Module } from '../nn';
import { DataLoader, loadDataset } from '../data';
import type { TrainSummary } from '../distill';
import { ExportedFile, Int8ExportInfo, ModelCard, prepareQuantAware, sha256, toOnnx, toOnnxInt8, weightsBytes, writeExported, writeModelCard } from '../export';
import { RunConfig, loadConfig, parseConfig } from './config';
import { buildModel, datasetOf, inputOf, modelOptions, transformsFor } from './runs';

export const EXPORT_FORMATS = ['onnx', 'onnx-int8', 'safetensors'] as const;
/** onnx-int8 without quantization-aware ranges: batches of training data that calibrate the activation ranges. */
export const DEFAULT_CALIBRATION_BATCHES = 16;
const KINDS = ['distilled', 'student', 'teacher'] as const;
type Kind = (typeof KINDS)[number];

export interface ExportArgs {
  /** A run folder, an output folder holding runs, or a .safetensors checkpoint. */
  source: string;
  format?: string;
  out?: string;
  /** Which run of an output folder (distilled, student, teacher), or which model of --config describes a checkpoint. */
  role?: string;
  /** A config (YAML/JSON) describing a checkpoint that is not inside a run folder. */
  config?: string;
  /** Default: model-card.json beside --out. */
  card?: string;
  opset?: number;
  /** A fixed batch size for ONNX (default: dynamic). */
  batch?: number;
  /** onnx-int8, post-training: how many training batches calibrate the activation ranges (default 16). */
  calibrationBatches?: number;
}

interface Resolved {
  checkpoint: string;
  cfg: RunConfig;
  kind: Kind;
  summary: TrainSummary | null;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
}

/** The run configuration recorded in a run's config.json (output and threads are not recorded there). */
function recordedConfig(file: string): RunConfig {
  const raw = readJson(file);
  const r = parseConfig(raw);
  if (!r.success) throw new Error(`${file}: not a tsdistill run configuration: ${r.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

function findRecordedConfig(dir: string): string | null {
  for (const d of [dir, path.dirname(dir)]) if (fs.existsSync(path.join(d, 'config.json'))) return path.join(d, 'config.json');
  return null;
}

function checkKind(role: string | undefined, what: string): Kind | undefined {
  if (role === undefined) return undefined;
  if (!(KINDS as readonly string[]).includes(role)) throw new Error(`export: --role must be one of ${KINDS.join(', ')} (${what}), got '${role}'`);
  return role as Kind;
}

function resolveSource(a: ExportArgs): Resolved {
  const src = a.source;
  if (!fs.existsSync(src)) throw new Error(`export: ${src} does not exist (give a run folder, e.g. runs/x/distilled, or a .safetensors checkpoint)`);
  let role = checkKind(a.role, 'the run to export');
  let checkpoint: string;
  let runFolder: string;
  if (fs.statSync(src).isDirectory()) {
    runFolder = src;
    if (!fs.existsSync(path.join(src, 'best.safetensors'))) {
      const runs = KINDS.filter((k) => fs.existsSync(path.join(src, k, 'best.safetensors')));
      if (!runs.length)
        throw new Error(`export: ${src} holds no trained run (no best.safetensors in it or in ${KINDS.map((k) => `${k}/`).join(', ')})`);
      const pick = role ?? (runs.includes('distilled') ? 'distilled' : runs.includes('student') ? 'student' : 'teacher');
      if (!runs.includes(pick)) throw new Error(`export: ${src} has no ${pick} run (found: ${runs.join(', ')})`);
      runFolder = path.join(src, pick);
      role = pick;
    }
    checkpoint = path.join(runFolder, 'best.safetensors');
  } else {
    if (!src.endsWith('.safetensors')) throw new Error(`export: ${src}: expected a run folder or a .safetensors checkpoint`);
    checkpoint = src;
    runFolder = path.dirname(src);
  }
  const base = path.basename(path.resolve(runFolder));
  const folderKind = (KINDS as readonly string[]).includes(base) ? (base as Kind) : undefined;
  let cfg: RunConfig;
  if (a.config) cfg = loadConfig(a.config);
  else {
    const file = findRecordedConfig(runFolder);
    if (!file) throw new Error(`export: no config.json in ${runFolder} or its parent, so the architecture of ${checkpoint} is unknown; pass --config FILE (and --role)`);
    cfg = recordedConfig(file);
  }
  const kind: Kind = role ?? folderKind ?? 'student';
  const summaryFile = path.join(runFolder, 'summary.json');
  const summary = fs.existsSync(summaryFile) ? (readJson(summaryFile) as TrainSummary) : null;
  return { checkpoint, cfg, kind, summary };
}

function loadModel(r: Resolved, inputShape: number[]): { model: Module; metadata: Record<string, string> } {
  const spec = r.kind === 'teacher' ? r.cfg.teacher : r.cfg.student;
  if (!spec) throw new Error(`export: the configuration has no ${r.kind === 'teacher' ? 'teacher' : 'student'} section`);
  if (spec.members) throw new Error('export: the teacher is an ensemble of several models; export its members one by one');
  const model = buildModel(r.cfg, r.kind);
  const { tensors, metadata } = loadSafetensors(r.checkpoint);
  try {
    // a quantization-aware run's checkpoints hold the trained activation ranges beside the weights
    if (isQat(r)) prepareQuantAware(model, { inputShape });
    model.loadStateDict(tensors);
  } catch (e) {
    model.dispose();
    throw new Error(`${r.checkpoint}: ${(e as Error).message}`);
  } finally {
    dispose(tensors);
  }
  model.eval();
  return { model, metadata };
}

function isQat(r: Resolved): boolean {
  return r.kind !== 'teacher' && !!r.cfg.quantization?.qat;
}

/** The first `n` training batches, preprocessed as for testing: calibration data for post-training quantization. */
function calibrationBatches(r: Resolved, n: number) {
  const data = loadDataset(datasetOf(r.cfg).name, n * r.cfg.data.batchSize);
  data.test.dispose();
  const loader = new DataLoader(data.train, { batchSize: r.cfg.data.batchSize, shuffle: false, seed: 0, transforms: transformsFor(r.cfg, r.kind).norm });
  const xs = [];
  for (const b of loader) {
    xs.push(b.x);
    b.y.dispose();
  }
  data.train.dispose();
  return xs.slice(0, n);
}

/** Exports as `a` says; returns what was written. */
export async function runExport(a: ExportArgs): Promise<{ files: ExportedFile[]; card: string; model: string; replacedCard: string | null; int8?: Int8ExportInfo }> {
  const format = a.format;
  if (!format) throw new Error(`export: --format is required (${EXPORT_FORMATS.join(' or ')})`);
  if (a.calibrationBatches !== undefined && format !== 'onnx-int8') throw new Error('export: --calibration-batches applies to --format onnx-int8 only');
  if (a.calibrationBatches !== undefined && (!Number.isInteger(a.calibrationBatches) || a.calibrationBatches < 1))
    throw new Error(`export: --calibration-batches must be a positive integer, got ${a.calibrationBatches}`);
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new Error(`export: unknown --format '${format}'; available formats: ${EXPORT_FORMATS.join(', ')}`);
  if (!a.out) throw new Error(`export: --out FILE is required (e.g. --out student.${format.startsWith('onnx') ? 'onnx' : 'safetensors'})`);
  const r = resolveSource(a);
  const spec = (r.kind === 'teacher' ? r.cfg.teacher : r.cfg.student)!;
  const info = datasetOf(r.cfg);
  const input = inputOf(r.cfg);
  const inputShape = input.shape;
  const image = info.kind === 'image' ? info : null;
  const text = info.kind === 'text' ? info.encoder?.describe() : undefined;
  const sourceBytes = fs.readFileSync(r.checkpoint);
  const sourceSha = sha256(sourceBytes);
  const { model, metadata: meta } = loadModel(r, inputShape);
  let int8: Int8ExportInfo | undefined;
  try {
    const options = modelOptions(r.cfg, spec);
    const cardFile = a.card ?? path.join(path.dirname(path.resolve(a.out)), 'model-card.json');
    const cardDir = path.dirname(path.resolve(cardFile));
    const described = { model: spec.model, options: JSON.stringify(options), source_sha256: sourceSha, dataset: info.name };
    let bytes: Uint8Array;
    const onnxOpts = {
      inputShape, inputDtype: input.dtype, opset: a.opset, batchSize: a.batch,
      metadata: { ...described, ...(image && r.cfg.data.normalize ? { mean: JSON.stringify(image.mean), std: JSON.stringify(image.std) } : {}), ...(text ? { tokenizer: JSON.stringify(text) } : {}) },
      docString: `${spec.model} (${r.kind}) exported by tsdistill from ${path.basename(r.checkpoint)}`,
    };
    if (format === 'onnx') bytes = toOnnx(model, onnxOpts).bytes;
    else if (format === 'onnx-int8') {
      if (isQat(r)) {
        if (a.calibrationBatches !== undefined) throw new Error(`export: ${r.checkpoint} comes from quantization-aware training and carries its ranges; --calibration-batches does not apply`);
        ({ bytes, info: int8 } = await toOnnxInt8(model, onnxOpts));
      } else {
        const calibration = calibrationBatches(r, a.calibrationBatches ?? DEFAULT_CALIBRATION_BATCHES);
        try {
          ({ bytes, info: int8 } = await toOnnxInt8(model, { ...onnxOpts, calibration }));
        } finally {
          dispose(calibration);
        }
      }
    } else bytes = weightsBytes(model, described);
    const file = writeExported(a.out, bytes, format as ExportedFile['format'], cardDir);
    const distilled = r.kind === 'distilled';
    const card: ModelCard = {
      card_version: 1,
      name: r.cfg.name,
      architecture: { model: spec.model, class: model.constructor.name, options, parameters: model.numParameters() },
      input: {
        ...(format !== 'safetensors' ? { name: 'input' } : {}),
        shape: inputShape,
        dtype: input.dtype,
        preprocessing: text ? { tokenizer: text } : { scale: 1 / 255, ...(image && r.cfg.data.normalize ? { mean: image.mean, std: image.std } : {}) },
      },
      output: { ...(format !== 'safetensors' ? { name: 'logits' } : {}), classes: info.classes },
      files: [file],
      source: {
        checkpoint: path.resolve(r.checkpoint), sha256: sourceSha, run: r.kind,
        ...(meta.epoch ? { epoch: Number(meta.epoch) } : {}), ...(meta.test_acc ? { checkpoint_test_acc: Number(meta.test_acc) } : {}),
      },
      teacher: distilled && r.cfg.teacher
        ? { model: r.cfg.teacher.model, options: r.cfg.teacher.options, ...(r.cfg.teacher.checkpoint ? { checkpoint: r.cfg.teacher.checkpoint } : {}), ...(r.cfg.teacher.members ? { members: r.cfg.teacher.members } : {}) }
        : null,
      recipe: {
        kind: distilled ? 'distillation' : 'supervised', ...(distilled ? { distill: r.cfg.distill } : {}), training: r.cfg.training, seed: r.cfg.seed,
        ...(r.cfg.quantization?.qat && r.kind !== 'teacher' ? { quantization: r.cfg.quantization } : {}),
        ...(int8 ? { int8: { scheme: 'uint8 per-tensor activations, int8 per-channel symmetric weights (QDQ)', ranges: int8.ranges, quantized_layers: int8.quantizedLayers, ...(int8.calibrationBatches ? { calibration_batches: int8.calibrationBatches } : {}) } } : {}),
      },
      data: { ...r.cfg.data, augment: spec.augment ?? r.cfg.data.augment ?? null },
      metrics: r.summary
        ? { best_test_acc: r.summary.best_test_acc, best_epoch: r.summary.best_epoch, final_test_acc: r.summary.final_test_acc, epochs: r.summary.epochs, mean_epoch_s: r.summary.mean_epoch_s }
        : null,
      created: new Date().toISOString(),
      tsdistill: version().tsdistill,
    };
    const { replaced } = writeModelCard(cardFile, card);
    return { files: [file], card: cardFile, model: `${spec.model} (${r.kind}, ${path.resolve(r.checkpoint)})`, replacedCard: replaced, ...(int8 ? { int8 } : {}) };
  } finally {
    model.dispose();
  }
}
