// `tsdistill export`: a trained model out of a run folder (or a checkpoint) as ONNX or safetensors, with a model card.
//
// What is exported is found the way `eval` finds weights: a run folder (`runs/x/distilled`, holding best.safetensors
// and summary.json, with the run's config.json in it or its parent), an output folder holding such runs (`runs/x`:
// the distilled run, else the student's, unless --role), or a .safetensors checkpoint (its architecture from the
// config.json of the run it sits in, or from --config FILE with --role).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSafetensors, dispose, version } from '../torch';
import { Module } from '../nn';
import { CIFAR10_CLASSES, FASHION_CLASSES, MNIST_CLASSES } from '../data';
import { DATASETS, TrainSummary, buildModel } from '../distill';
import { ExportedFile, ModelCard, sha256, toOnnx, weightsBytes, writeExported, writeModelCard } from '../export';
import { RunConfig, configSchema, loadConfig } from './config';

export const EXPORT_FORMATS = ['onnx', 'safetensors'] as const;
const PLANNED = ['onnx-int8'];
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
  const r = configSchema.safeParse(raw);
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

function loadModel(r: Resolved): { model: Module; metadata: Record<string, string> } {
  const spec = r.kind === 'teacher' ? r.cfg.teacher : r.cfg.student;
  if (!spec) throw new Error(`export: the configuration has no ${r.kind === 'teacher' ? 'teacher' : 'student'} section`);
  if (spec.members) throw new Error('export: the teacher is an ensemble of several models; export its members one by one');
  const model = buildModel(spec, r.cfg.seed);
  const { tensors, metadata } = loadSafetensors(r.checkpoint);
  try {
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

const CLASSES: Record<string, string[]> = { mnist: MNIST_CLASSES, 'fashion-mnist': FASHION_CLASSES, cifar10: CIFAR10_CLASSES };

/** Exports as `a` says; returns what was written. */
export function runExport(a: ExportArgs): { files: ExportedFile[]; card: string; model: string; replacedCard: string | null } {
  const format = a.format;
  if (!format) throw new Error(`export: --format is required (${EXPORT_FORMATS.join(' or ')})`);
  if (PLANNED.includes(format)) throw new Error(`export: --format ${format} is not implemented yet; available formats: ${EXPORT_FORMATS.join(', ')}`);
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new Error(`export: unknown --format '${format}'; available formats: ${EXPORT_FORMATS.join(', ')}`);
  if (!a.out) throw new Error(`export: --out FILE is required (e.g. --out student.${format === 'onnx' ? 'onnx' : 'safetensors'})`);
  const r = resolveSource(a);
  const spec = (r.kind === 'teacher' ? r.cfg.teacher : r.cfg.student)!;
  const info = DATASETS[r.cfg.data.dataset];
  const inputShape = [info.channels, info.size, info.size];
  const sourceBytes = fs.readFileSync(r.checkpoint);
  const sourceSha = sha256(sourceBytes);
  const { model, metadata: meta } = loadModel(r);
  try {
    const options = { numClasses: 10, ...spec.options };
    const cardFile = a.card ?? path.join(path.dirname(path.resolve(a.out)), 'model-card.json');
    const cardDir = path.dirname(path.resolve(cardFile));
    const described = { model: spec.model, options: JSON.stringify(options), source_sha256: sourceSha, dataset: r.cfg.data.dataset };
    let bytes: Uint8Array;
    if (format === 'onnx')
      bytes = toOnnx(model, {
        inputShape, opset: a.opset, batchSize: a.batch,
        metadata: { ...described, ...(r.cfg.data.normalize ? { mean: JSON.stringify(info.mean), std: JSON.stringify(info.std) } : {}) },
        docString: `${spec.model} (${r.kind}) exported by tsdistill from ${path.basename(r.checkpoint)}`,
      }).bytes;
    else bytes = weightsBytes(model, described);
    const file = writeExported(a.out, bytes, format as ExportedFile['format'], cardDir);
    const distilled = r.kind === 'distilled';
    const card: ModelCard = {
      card_version: 1,
      name: r.cfg.name,
      architecture: { model: spec.model, class: model.constructor.name, options, parameters: model.numParameters() },
      input: {
        ...(format === 'onnx' ? { name: 'input' } : {}),
        shape: inputShape,
        dtype: 'float32',
        preprocessing: { scale: 1 / 255, ...(r.cfg.data.normalize ? { mean: info.mean, std: info.std } : {}) },
      },
      output: { ...(format === 'onnx' ? { name: 'logits' } : {}), classes: CLASSES[r.cfg.data.dataset] },
      files: [file],
      source: {
        checkpoint: path.resolve(r.checkpoint), sha256: sourceSha, run: r.kind,
        ...(meta.epoch ? { epoch: Number(meta.epoch) } : {}), ...(meta.test_acc ? { checkpoint_test_acc: Number(meta.test_acc) } : {}),
      },
      teacher: distilled && r.cfg.teacher
        ? { model: r.cfg.teacher.model, options: r.cfg.teacher.options, ...(r.cfg.teacher.checkpoint ? { checkpoint: r.cfg.teacher.checkpoint } : {}), ...(r.cfg.teacher.members ? { members: r.cfg.teacher.members } : {}) }
        : null,
      recipe: { kind: distilled ? 'distillation' : 'supervised', ...(distilled ? { distill: r.cfg.distill } : {}), training: r.cfg.training, seed: r.cfg.seed },
      data: { ...r.cfg.data, augment: spec.augment ?? r.cfg.data.augment ?? null },
      metrics: r.summary
        ? { best_test_acc: r.summary.best_test_acc, best_epoch: r.summary.best_epoch, final_test_acc: r.summary.final_test_acc, epochs: r.summary.epochs, mean_epoch_s: r.summary.mean_epoch_s }
        : null,
      created: new Date().toISOString(),
      tsdistill: version().tsdistill,
    };
    const { replaced } = writeModelCard(cardFile, card);
    return { files: [file], card: cardFile, model: `${spec.model} (${r.kind}, ${path.resolve(r.checkpoint)})`, replacedCard: replaced };
  } finally {
    model.dispose();
  }
}
