// Weights for deployment and the model card that travels with them. The safetensors file holds the module's
// state_dict under PyTorch's keys (`layer1.0.conv1.weight`, `bn1.running_mean`, ...) with `format: pt` in its
// metadata, so `safetensors.torch.load_file` + `load_state_dict` read it unchanged. The card (`model-card.json`) says
// what the file is: architecture and options, input and preprocessing, teacher, recipe, data and metrics.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { serializeSafetensors, writeFileAtomic } from '../torch';
import { Module } from '../nn';

export interface ExportedFile {
  /** File name relative to the card's folder (or absolute when elsewhere). */
  file: string;
  format: 'onnx' | 'onnx-int8' | 'safetensors';
  bytes: number;
  sha256: string;
}

export interface ModelCard {
  card_version: 1;
  name: string;
  architecture: { model: string; class: string; options: Record<string, unknown>; parameters: number };
  input: {
    name?: string;
    /** One example, without the batch dimension. */
    shape: number[];
    dtype: 'float32' | 'int64';
    /** What to do to raw data before the model: pixel scaling, then per-channel normalisation. */
    preprocessing?: { scale?: number; mean?: number[]; std?: number[]; tokenizer?: Record<string, unknown> };
  };
  output: { name?: string; classes?: string[] };
  /** The exported files (one per format) made from `source`. */
  files: ExportedFile[];
  source: { checkpoint: string; sha256: string; run?: string; epoch?: number; checkpoint_test_acc?: number };
  teacher: Record<string, unknown> | null;
  recipe: Record<string, unknown> | null;
  data: Record<string, unknown> | null;
  metrics: Record<string, unknown> | null;
  created: string;
  tsdistill: string;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The bytes of a safetensors file holding `model`'s state_dict (PyTorch keys, `format: pt`). */
export function weightsBytes(model: Module, metadata: Record<string, string> = {}): Uint8Array {
  if (!(model instanceof Module)) throw new Error('safetensors export: expected a Module');
  return serializeSafetensors(model.stateDict(), { format: 'pt', ...metadata });
}

/** Writes bytes atomically and describes the file for a model card kept in `cardDir`. */
export function writeExported(file: string, bytes: Uint8Array, format: ExportedFile['format'], cardDir: string): ExportedFile {
  writeFileAtomic(file, bytes);
  const rel = path.relative(cardDir, path.resolve(file));
  return { file: rel.startsWith('..') ? path.resolve(file) : rel, format, bytes: bytes.byteLength, sha256: sha256(bytes) };
}

/**
 * Writes `card` to `file` atomically. When `file` already holds a card made from the same source checkpoint (same
 * sha256), the files it lists in other formats are kept, so exporting ONNX and safetensors into one folder gives one
 * card listing both. `replaced` names the source of a card for another checkpoint that was overwritten.
 */
export function writeModelCard(file: string, card: ModelCard): { card: ModelCard; replaced: string | null } {
  let files = card.files;
  let replaced: string | null = null;
  if (fs.existsSync(file)) {
    let old: Partial<ModelCard> | null = null;
    try {
      old = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<ModelCard>;
    } catch {
      replaced = `an unreadable file`;
    }
    if (old?.source?.sha256 === card.source.sha256 && Array.isArray(old.files)) {
      const formats = new Set(card.files.map((f) => f.format));
      files = [...old.files.filter((f) => !formats.has(f.format)), ...card.files];
    } else if (old) replaced = old.source?.checkpoint ?? 'another model';
  }
  const out = { ...card, files };
  writeFileAtomic(file, JSON.stringify(out, null, 2) + '\n');
  return { card: out, replaced };
}
