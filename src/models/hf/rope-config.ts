// The rotary embedding of a Llama-family config.json, read as transformers reads it (modeling_rope_utils.py,
// `RotaryEmbeddingConfigMixin`): the settings are `rope_scaling` (older configs; `type` for `rope_type`) or else
// `rope_parameters` (newer transformers); the base is their `rope_theta`, else the config's `rope_theta`, else the
// family's default; llama3 and yarn take `original_max_position_embeddings` from the config's top level first, then
// from the settings, else max_position_embeddings. The formulas are `ropeFrequencies` (src/nn/rope.ts).
import type { RopeScaling } from '../../nn';
import type { HfConfig } from './config';

export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'llama3', 'yarn'] as const;

export interface HfRope {
  /** rope_theta */
  theta: number;
  scaling: RopeScaling;
  /** Where the settings were read: 'rope_scaling', 'rope_parameters' or '' (none). */
  key: string;
}

/** Reads the rotary settings of config `c` (max_position_embeddings `maxPositions`, base `fallbackTheta` by default). */
export function hfRope(c: HfConfig, fallbackTheta: number, maxPositions: number): HfRope {
  const raw = c.raw;
  const legacy = raw.rope_scaling;
  const isSet = (v: unknown) => v !== undefined && v !== null && !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);
  const key = isSet(legacy) ? 'rope_scaling' : isSet(raw.rope_parameters) ? 'rope_parameters' : '';
  const p = (key ? raw[key] : {}) as Record<string, unknown>;
  if (typeof p !== 'object' || Array.isArray(p)) throw new Error(`${c.source}: '${key}' must be an object, got ${JSON.stringify(p)}`);
  const at = (k: string) => `'${key}.${k}'`;
  const num = (k: string, fallback?: number, check: (v: number) => boolean = (v) => v > 0, need = 'a positive number'): number => {
    const v = p[k] ?? fallback;
    if (v === undefined) throw new Error(`${c.source}: ${at(k)} is missing (rope_type ${JSON.stringify(type)} needs it)`);
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new Error(`${c.source}: ${at(k)} must be ${need}, got ${JSON.stringify(v)}`);
    return v;
  };
  const type = p.rope_type ?? p.type ?? 'default';
  if (typeof type !== 'string' || !(ROPE_TYPES as readonly string[]).includes(type))
    throw new Error(`${c.source}: ${at(p.rope_type !== undefined ? 'rope_type' : 'type')} = ${JSON.stringify(type)} is not supported (supported: ${ROPE_TYPES.join(', ')})`);
  const theta = p.rope_theta != null ? num('rope_theta', undefined, (v) => v > 1, 'a number > 1') : c.num('rope_theta', fallbackTheta);
  if (!(theta > 1)) throw new Error(`${c.source}: 'rope_theta' must be a number > 1, got ${theta}`);
  const partial = p.partial_rotary_factor ?? raw.partial_rotary_factor;
  if (partial != null && partial !== 1) throw new Error(`${c.source}: 'partial_rotary_factor' = ${JSON.stringify(partial)} is not supported (every feature is rotated)`);
  const originalMax = (): number => {
    if (raw.original_max_position_embeddings != null) return c.int('original_max_position_embeddings');
    return num('original_max_position_embeddings', maxPositions, (v) => Number.isInteger(v) && v > 0, 'a positive integer');
  };
  const factor = () => num('factor');
  let scaling: RopeScaling;
  switch (type) {
    case 'default':
      scaling = { type: 'default' };
      break;
    case 'linear':
      scaling = { type: 'linear', factor: factor() };
      break;
    case 'dynamic':
      scaling = { type: 'dynamic', factor: num('factor', undefined, (v) => v >= 1, 'a number >= 1'), maxPositions };
      break;
    case 'llama3':
      scaling = { type: 'llama3', factor: factor(), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'), originalMaxPositions: originalMax() };
      if (scaling.highFreqFactor <= scaling.lowFreqFactor)
        throw new Error(`${c.source}: ${at('high_freq_factor')} (${scaling.highFreqFactor}) must exceed ${at('low_freq_factor')} (${scaling.lowFreqFactor})`);
      break;
    default: {
      const old = originalMax();
      const opt = (k: string) => (p[k] == null ? undefined : num(k, undefined, (v) => v >= 0, 'a non-negative number'));
      const truncate = p.truncate ?? true;
      if (typeof truncate !== 'boolean') throw new Error(`${c.source}: ${at('truncate')} must be true or false, got ${JSON.stringify(truncate)}`);
      scaling = {
        type: 'yarn',
        // without a factor, the ratio of the extended to the original context (as transformers)
        factor: p.factor == null ? maxPositions / old : factor(),
        originalMaxPositions: old,
        betaFast: opt('beta_fast'),
        betaSlow: opt('beta_slow'),
        attentionFactor: opt('attention_factor'),
        mscale: opt('mscale'),
        mscaleAllDim: opt('mscale_all_dim'),
        truncate,
      };
    }
  }
  return { theta, scaling, key };
}

/**
 * The longest sequence a model with this rotary embedding takes: max_position_embeddings, but factor × it for
 * dynamic scaling, which changes the frequencies only beyond max_position_embeddings.
 */
export function ropeContextLength(rope: HfRope, maxPositions: number): number {
  return rope.scaling.type === 'dynamic' ? Math.floor(rope.scaling.factor * maxPositions) : maxPositions;
}
