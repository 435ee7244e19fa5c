// Module weights to and from safetensors files, under PyTorch's state_dict keys.
import { Tensor, dispose, loadSafetensors, noGrad, ops, saveSafetensors, tidy } from '../torch';
import type { Module } from './module';

/** Writes the module's state_dict to a safetensors file atomically. */
export function saveWeights(module: Module, file: string, metadata?: Record<string, string>): void {
  saveSafetensors(file, module.stateDict(), { format: 'pt', ...metadata });
}

/**
 * Loads a safetensors file into the module. With `strict` (default) every missing, unexpected or mismatched key is
 * reported in one error that names the file. Returns the file's metadata.
 */
export function loadWeights(module: Module, file: string, opts: { strict?: boolean } = {}): Record<string, string> {
  const { tensors, metadata } = loadSafetensors(file);
  try {
    checkFinite(tensors, file);
    module.loadStateDict(tensors, opts);
  } catch (e) {
    throw e instanceof NonFiniteWeights ? e : new Error(`${file}: ${(e as Error).message}`, { cause: e });
  } finally {
    dispose(tensors);
  }
  return metadata;
}

/** Thrown by checkFinite: the file's first tensor holding NaN or ±Inf values. */
export class NonFiniteWeights extends Error {
  constructor(readonly file: string, readonly tensorName: string, readonly nan: number, readonly inf: number, shape: number[]) {
    super(`${file}: tensor '${tensorName}' [${shape.join(', ')}] holds ${[nan ? `${nan} NaN` : '', inf ? `${inf} infinite` : ''].filter(Boolean).join(' and ')} value${nan + inf === 1 ? '' : 's'}; the weights are unusable (a diverged run, or a damaged file)`);
    this.name = 'NonFiniteWeights';
  }
}

/**
 * Refuses weights holding NaN or ±Inf, naming the first such tensor (in key order) of `file` and how many values are
 * not finite. Integer tensors are skipped.
 */
export function checkFinite(tensors: Record<string, Tensor>, file: string): void {
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name];
    if (!/^(float|bfloat|complex)/.test(t.dtype)) continue;
    const [nan, inf] = tidy(() => noGrad(() => ops.all(ops.isfinite(t)).item() ? [0, 0] : [ops.isnan(t).sum().item(), ops.isinf(t).sum().item()]));
    if (nan || inf) throw new NonFiniteWeights(file, name, nan, inf, t.shape);
  }
}
