// Schedules for distillation hyper-parameters — the temperature, the hard-label weight alpha, each match's weight —
// as functions of training progress, plus TextBrewer's per-sample dynamic temperatures (flsw, cwsm; after Li et al.,
// arXiv:1911.07471). A schedule is a number (constant) or { kind, ... } over the whole run or its first `epochs`.
import { Tensor, noGrad, tidy } from '../torch';

export type ScheduleSpec =
  | number
  | { kind: 'constant'; value: number }
  /** from → to, linearly over `epochs` (default: the whole run), then held at `to`. */
  | { kind: 'linear'; from: number; to: number; epochs?: number }
  /** from → to along half a cosine over `epochs` (default: the whole run), then held at `to`. */
  | { kind: 'cosine'; from: number; to: number; epochs?: number }
  /** 0 → value linearly over `epochs`, then value. */
  | { kind: 'warmup'; value: number; epochs: number };

/** Where training is: epoch (0-based), step within it, steps per epoch and total epochs. */
export interface Progress {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  epochs: number;
}

function check(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${name}: expected a finite number, got ${JSON.stringify(v)}`);
  return v;
}

/** Validates a schedule spec, naming `name` (e.g. 'distill.temperature') in errors. */
export function checkSchedule(spec: ScheduleSpec, name: string): void {
  if (typeof spec === 'number') return void check(name, spec);
  if (!spec || typeof spec !== 'object') throw new Error(`${name}: expected a number or { kind, ... }, got ${JSON.stringify(spec)}`);
  switch (spec.kind) {
    case 'constant':
      check(`${name}.value`, spec.value);
      return;
    case 'linear':
    case 'cosine':
      check(`${name}.from`, spec.from);
      check(`${name}.to`, spec.to);
      if (spec.epochs !== undefined && !(check(`${name}.epochs`, spec.epochs) > 0)) throw new Error(`${name}.epochs must be positive`);
      return;
    case 'warmup':
      check(`${name}.value`, spec.value);
      if (!(check(`${name}.epochs`, spec.epochs) > 0)) throw new Error(`${name}.epochs must be positive`);
      return;
    default:
      throw new Error(`${name}: unknown schedule kind '${(spec as { kind: string }).kind}' (expected constant, linear, cosine or warmup)`);
  }
}

/** The schedule's value at `p`. */
export function scheduleValue(spec: ScheduleSpec, p: Progress): number {
  if (typeof spec === 'number') return spec;
  const done = p.epoch + (p.stepsPerEpoch > 0 ? p.step / p.stepsPerEpoch : 0);
  const frac = (epochs: number | undefined) => Math.min(1, Math.max(0, done / (epochs ?? p.epochs)));
  switch (spec.kind) {
    case 'constant':
      return spec.value;
    case 'linear':
      return spec.from + (spec.to - spec.from) * frac(spec.epochs);
    case 'cosine':
      return spec.to + ((spec.from - spec.to) * (1 + Math.cos(Math.PI * frac(spec.epochs)))) / 2;
    case 'warmup':
      return spec.value * frac(spec.epochs);
  }
}

export const isConstant = (spec: ScheduleSpec) => typeof spec === 'number' || spec.kind === 'constant';

/** The schedule's value at the start of training. */
export const initialValue = (spec: ScheduleSpec) => scheduleValue(spec, { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 });

// ------------------------------------------------------------------------------------------- dynamic temperatures

export type DynamicTemperature = { kind: 'flsw'; beta: number; gamma: number; eps?: number } | { kind: 'cwsm'; beta: number };

/**
 * Per-sample temperatures [B] around `base` (TextBrewer's schedulers, after arXiv:1911.07471), from detached logits:
 *  - flsw: w = (1 − cos(student, teacher))^γ, τ = base + β·(mean(w) − w): samples where the two disagree get a lower
 *    temperature (sharper targets);
 *  - cwsm: w = 1 / (max softmax(student) + 1e-3), τ = base + β·(mean(w) − w): samples the student is unsure of get a
 *    lower temperature.
 */
export function dynamicTemperature(d: DynamicTemperature, student: Tensor, teacher: Tensor, base: number): Tensor {
  return tidy(() =>
    noGrad(() => {
      let w: Tensor;
      if (d.kind === 'flsw') {
        const eps = d.eps ?? 1e-4;
        const v = student.detach(), t = teacher.detach();
        const vn = v.div(v.norm(2, -1, true).add(eps)), tn = t.div(t.norm(2, -1, true).add(eps));
        w = vn.mul(tn).sum(-1).neg().add(1).pow(d.gamma);
      } else if (d.kind === 'cwsm') {
        w = student.detach().softmax(-1).max(-1)[0].add(1e-3).reciprocal();
      } else throw new Error(`dynamic temperature: unknown kind '${(d as { kind: string }).kind}' (expected flsw or cwsm)`);
      return w.mean().sub(w).mul(d.beta).add(base);
    }),
  );
}
