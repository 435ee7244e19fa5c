// What a training step minimises: a weighted sum of loss terms. A registered loss returns either a tensor or a
// `ScaledLoss` (a tensor and a constant factor kept out of the graph, e.g. KL's T²/B), and `weightedSum` folds weight
// and factor into one multiply-add, so the common α·CE + (1−α)·T²·KL costs as few graph nodes as the formula allows.
// The engine's step, `responseKD` and FeatureMatcher all combine terms here: one path.
import { Tensor, noGrad, ops } from '../torch';
import type { Progress, ScheduleSpec } from './schedules';
import { checkSchedule, isConstant, scheduleValue } from './schedules';

/** A loss whose value is `value · scale`, with `scale` a plain number applied outside the graph's own nodes. */
export interface ScaledLoss {
  value: Tensor;
  scale: number;
}
export type LossResult = Tensor | ScaledLoss;

export const isScaled = (r: LossResult): r is ScaledLoss => !(r instanceof Tensor);

/** The loss as one tensor (a scaled loss multiplied out). */
export function lossTensor(r: LossResult): Tensor {
  return isScaled(r) ? r.value.mul(r.scale) : r;
}

/** The loss's value for reports (no graph). */
export function lossValue(r: LossResult): Tensor {
  return isScaled(r) ? noGrad(() => r.value.mul(r.scale)) : r;
}

/**
 * The loss's value as a number, the same as `lossValue(r).item()`: a scaled float32 or float64 loss is multiplied out
 * here in its own precision (one rounding of the exact product, as the tensor op rounds), without a tensor op.
 */
export function lossNumber(r: LossResult): number {
  if (!isScaled(r)) return r.item();
  const dt = r.value.dtype;
  if (dt === 'float32') return Math.fround(r.value.item() * Math.fround(r.scale));
  if (dt === 'float64') return r.value.item() * r.scale;
  return lossValue(r).item();
}

/**
 * Σ weightᵢ · lossᵢ in order. A plain loss with weight 1 is used as it is; a scaled loss enters as
 * `acc + (weight·scale)·value` in one op.
 */
export function weightedSum(parts: { loss: LossResult; weight: number }[]): Tensor {
  let acc: Tensor | null = null;
  for (const { loss, weight } of parts) {
    if (isScaled(loss)) {
      const w = weight * loss.scale;
      acc = acc ? ops.add_Tensor(acc, loss.value, { alpha: w }) : loss.value.mul(w);
    } else {
      const t: Tensor = weight === 1 && !acc ? loss : loss.mul(weight);
      acc = acc ? acc.add(t) : t;
    }
  }
  if (!acc) throw new Error('weightedSum: no terms');
  return acc;
}

/** A term weight: a number, a schedule over training, or a function of progress. */
export type WeightSpec = number | ScheduleSpec | ((p: Progress) => number);

/** The weight's value at `p` (functions and schedules evaluated, numbers as they are). */
export function weightAt(w: WeightSpec, p: Progress): number {
  return typeof w === 'function' ? w(p) : scheduleValue(w, p);
}

export function checkWeight(w: WeightSpec, name: string): void {
  if (typeof w === 'function') return;
  checkSchedule(w, name);
  if (typeof w === 'number' && w < 0) throw new Error(`${name} must be non-negative, got ${w}`);
}

const isScheduleObject = (v: unknown): v is Exclude<ScheduleSpec, number> =>
  !!v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { kind?: unknown }).kind === 'string' &&
  ['constant', 'linear', 'cosine', 'warmup'].includes((v as { kind: string }).kind);

/**
 * A loss's options at `p`: every option given as a schedule ({ kind: 'linear', from, to }, ...) or as a function of
 * progress becomes its value;
 * `scheduled` tells whether any of them moves (losses may then skip constant-only shortcuts).
 */
export function resolveOptions(opts: Record<string, unknown>, p: Progress): { values: Record<string, unknown>; scheduled: boolean } {
  let scheduled = false;
  const values: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (isScheduleObject(v)) {
      if (!isConstant(v)) scheduled = true;
      values[k] = scheduleValue(v, p);
    } else if (typeof v === 'function') {
      scheduled = true;
      values[k] = (v as (p: Progress) => unknown)(p);
    } else values[k] = v;
  }
  return { values, scheduled };
}

/** Checks every schedule-valued option of a loss, naming `where.options.<key>`. */
export function checkOptions(opts: Record<string, unknown>, where: string): void {
  for (const [k, v] of Object.entries(opts)) if (isScheduleObject(v)) checkSchedule(v, `${where}.options.${k}`);
}
