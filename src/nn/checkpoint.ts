// Module weights to and from safetensors files, under PyTorch's state_dict keys.
import { dispose, loadSafetensors, saveSafetensors } from '../torch';
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
    module.loadStateDict(tensors, opts);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  } finally {
    dispose(tensors);
  }
  return metadata;
}
