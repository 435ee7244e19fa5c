// Adversarial distillation: the pieces the engine needs beyond roles and terms.
//
//   losses (registered by registerBuiltinLosses through registerAdversarialLosses)
//     adv_disc     the discriminator's loss on its output [real; fake] (Wang et al. 2018; Xu et al. 2018):
//                  bce   ½ (BCE(D(real), 1) + BCE(D(fake), 0))
//                  lsgan ½ mean (D(real) − 1)² + ½ mean D(fake)²      (least squares, Mao et al. 2017)
//     adv_student  the student's adversarial loss, fooling the discriminator on the fake rows:
//                  bce   BCE(D(fake), 1)
//                  lsgan ½ mean (D(fake) − 1)²
//     bss_kl       KL(softmax(t/T) ‖ softmax(s/T))·T² over the base rows of a batch (option rows: base) or over the
//                  boundary supporting samples appended to it (rows: boundary; Heo et al. 2019)
//   bssAttack      Heo et al.'s iterative attack: each sample moves toward the teacher's decision boundary between its
//                  base class and a target class, by steps of the logit margin over the squared gradient norm
//   BssBatches     a BatchSource that appends the boundary supporting samples of each batch after its base rows
//                  (labels −100: cross-entropy ignores them), with `batch.bss_rows` their count
import { Tensor, noGrad, ops, tensor, tidy, keep, dispose } from '../torch';
import { F, Module } from '../nn';
import { Rng, mixSeed } from '../data';
import type { BatchSource, EngineBatch } from './engine';
import type { LossDef } from './features';
import { softTerm } from './response';
import type { LossResult } from './terms';

export type AdversarialForm = 'bce' | 'lsgan';
const FORMS: readonly string[] = ['bce', 'lsgan'];

/** The label of the rows a cross-entropy term ignores (the boundary supporting samples). */
export const IGNORE_LABEL = -100;

/** [2N] scores of a discriminator's output [2N, 1] (or [2N]): the first N real (teacher), the last N fake (student). */
function halves(loss: string, d: Tensor): [Tensor, Tensor] {
  if (!(d.ndim === 1 || (d.ndim === 2 && d.shape[1] === 1)))
    throw new Error(`${loss}: expects the discriminator's output, one logit per row [2N, 1] (N real rows, then N fake), got [${d.shape.join(', ')}]`);
  const n = d.shape[0];
  if (n % 2 !== 0 || n === 0) throw new Error(`${loss}: the discriminator's output has ${n} rows; it judges N real then N fake rows (an even number)`);
  const flat = d.reshape([-1]);
  return [flat.narrow(0, 0, n / 2), flat.narrow(0, n / 2, n / 2)];
}
function checkForm(loss: string, form: unknown): AdversarialForm {
  if (!FORMS.includes(form as string)) throw new Error(`${loss}: option form must be 'bce' or 'lsgan', got ${JSON.stringify(form)}`);
  return form as AdversarialForm;
}

/** BCE with logits against a constant target, averaged. */
const bce = (d: Tensor, target: 0 | 1) => F.binaryCrossEntropyWithLogits(d, target ? ops.ones_like(d) : ops.zeros_like(d));

/** The discriminator's loss on [real; fake]: bce ½(BCE(real, 1) + BCE(fake, 0)); lsgan ½ mean (real − 1)² + ½ mean fake². */
export function advDiscriminatorLoss(d: Tensor, form: AdversarialForm = 'bce'): Tensor {
  checkForm('adv_disc', form);
  return tidy(() => {
    const [real, fake] = halves('adv_disc', d);
    if (form === 'bce') return bce(real, 1).add(bce(fake, 0)).mul(0.5);
    return real.sub(1).pow(2).mean().add(fake.pow(2).mean()).mul(0.5);
  });
}

/** The student's adversarial loss on [real; fake] (the fake rows only): bce BCE(fake, 1); lsgan ½ mean (fake − 1)². */
export function advStudentLoss(d: Tensor, form: AdversarialForm = 'bce'): Tensor {
  checkForm('adv_student', form);
  return tidy(() => {
    const [, fake] = halves('adv_student', d);
    return form === 'bce' ? bce(fake, 1) : fake.sub(1).pow(2).mean().mul(0.5);
  });
}

/**
 * KL(softmax(t/T) ‖ softmax(s/T))·T², batch mean, over one part of a batch that BssBatches made: its first
 * `rows − boundary` rows (the base samples) or its last `boundary` rows (the boundary supporting samples). No boundary
 * rows: 0 (kept in the graph).
 */
export function bssKl(s: Tensor, t: Tensor, boundary: number, rows: 'base' | 'boundary', temperature: number): LossResult {
  if (rows !== 'base' && rows !== 'boundary') throw new Error(`bss_kl: option rows must be 'base' or 'boundary', got ${JSON.stringify(rows)}`);
  if (s.ndim !== 2 || t.ndim !== 2 || s.shape[0] !== t.shape[0] || s.shape[1] !== t.shape[1])
    throw new Error(`bss_kl: expects student and teacher logits of one shape [rows, classes], got [${s.shape.join(', ')}] and [${t.shape.join(', ')}]`);
  const n = s.shape[0];
  if (!Number.isInteger(boundary) || boundary < 0 || boundary >= n)
    throw new Error(`bss_kl: batch.bss_rows is ${boundary}, but the batch has ${n} rows (at least one base row, then the boundary rows)`);
  if (rows === 'boundary' && boundary === 0) return s.sum().mul(0);
  const [from, len] = rows === 'base' ? [0, n - boundary] : [n - boundary, boundary];
  return softTerm(s.narrow(0, from, len), t.narrow(0, from, len), temperature, 'kl');
}

/** The adversarial losses, for registerBuiltinLosses. */
export function registerAdversarialLosses(register: (name: string, def: LossDef) => void): void {
  const form = (o: Record<string, unknown>) => (o.form ?? 'bce') as AdversarialForm;
  register('adv_disc', {
    needs: 'batch', doc: "adversarial KD: the discriminator's loss on its output [real; fake] (option form: bce | lsgan)",
    fn: (s, _t, _c, o) => advDiscriminatorLoss(s[0], form(o)),
  });
  register('adv_student', {
    needs: 'batch', doc: "adversarial KD: the student's loss fooling the discriminator on the fake rows (option form: bce | lsgan)",
    fn: (s, _t, _c, o) => advStudentLoss(s[0], form(o)),
  });
  register('bss_kl', {
    needs: 'same', doc: 'BSS: KL·T² over the base rows or the appended boundary supporting samples (options rows: base | boundary, temperature; reads batch.bss_rows)',
    fn: (s, t, c, o) => {
      const n = c.batch?.bss_rows;
      if (!n) throw new Error(`bss_kl: the batch has no 'bss_rows' tensor (train from BssBatches; batch tensors: ${Object.keys(c.batch ?? {}).join(', ') || 'none'})`);
      const T = (o.temperature as number | undefined) ?? 4;
      if (!(T > 0)) throw new Error(`bss_kl: temperature must be positive, got ${T}`);
      return bssKl(s[0], t[0], n.item(), (o.rows as 'base' | 'boundary' | undefined) ?? 'boundary', T);
    },
  });
}

// ------------------------------------------------------------------------------------------------------ the attack

export interface BssAttackOptions {
  /** Iterations (the reference: 10). */
  steps?: number;
  /** η, the fraction of the linearised distance to the boundary moved per step (the reference: 0.3). */
  stepSize?: number;
  /** The valid input range per channel (normalised pixels 0 and 1): [min, max] numbers or per-channel lists. */
  range?: [number | number[], number | number[]];
}

/**
 * Heo et al.'s attack: from x [N, ...] (which the teacher puts in class `base` [N]), each sample moves toward the
 * teacher's decision boundary between `base` and `target` [N]: x ← clip(x + η (z_b − z_t + 1e-4) ∇(z_t − z_b) /
 * ‖∇(z_t − z_b)‖²), a step of η of the distance to the linearised boundary. A sample stops once the teacher no longer
 * predicts its base class; all stop after `steps`. The teacher runs in its current mode; its parameters get no
 * gradient. Returns the moved samples (no grad), freed by the caller's scope.
 */
export function bssAttack(teacher: Module, x: Tensor, base: Tensor, target: Tensor, o: BssAttackOptions = {}): Tensor {
  const steps = o.steps ?? 10, eta = o.stepSize ?? 0.3;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`bssAttack: steps must be a positive integer, got ${o.steps}`);
  if (!(eta > 0)) throw new Error(`bssAttack: stepSize must be positive, got ${o.stepSize}`);
  const N = x.shape[0];
  if (base.ndim !== 1 || target.ndim !== 1 || base.shape[0] !== N || target.shape[0] !== N)
    throw new Error(`bssAttack: base and target must be class indices [${N}] for x [${x.shape.join(', ')}], got [${base.shape.join(', ')}] and [${target.shape.join(', ')}]`);
  const [lo, hi] = rangeTensors(o.range, x);
  let cur = keep(noGrad(() => x.detach().clone()));
  try {
    const b1 = base.reshape([N, 1]), t1 = target.reshape([N, 1]);
    for (let k = 0; k < steps; k++) {
      const next = tidy(() => {
        const xv = cur.detach().requiresGrad_(true);
        const z = teacher.call(xv) as Tensor;
        const zb = z.gather(1, b1), zt = z.gather(1, t1);
        const active = noGrad(() => z.argmax(1).eq(base));
        if (active.sum().item() === 0) return null;
        zt.sub(zb).sum().backward(undefined, { inputs: [xv] });
        return noGrad(() => {
          const g = xv.grad!;
          const shape = [N, ...x.shape.slice(1).map(() => 1)];
          const g2 = g.reshape([N, -1]).pow(2).sum([1]).clamp(1e-12, null).reshape(shape);
          const margin = zb.sub(zt).add(1e-4).reshape(shape);
          const step = g.mul(margin.div(g2)).mul(active.to({ dtype: g.dtype }).reshape(shape)).mul(eta);
          return keep(ops.minimum(ops.maximum(cur.add(step), lo), hi));
        });
      });
      if (!next) break;
      cur.dispose();
      cur = next;
    }
    // a handle of the caller's scope (cur itself is kept)
    return cur.detach();
  } finally {
    dispose([lo, hi, cur]);
  }
}

/** The range's bounds as tensors broadcasting over x [N, C, ...] (per channel when lists are given). */
function rangeTensors(range: BssAttackOptions['range'], x: Tensor): [Tensor, Tensor] {
  const [a, b] = range ?? [-Infinity, Infinity];
  const C = x.ndim > 1 ? x.shape[1] : 1;
  const make = (v: number | number[], which: string) => {
    const vs = Array.isArray(v) ? v : [v];
    if (Array.isArray(v) && v.length !== C) throw new Error(`bssAttack: range ${which} has ${v.length} values for ${C} channels`);
    if (!vs.every((u) => typeof u === 'number' && !Number.isNaN(u))) throw new Error(`bssAttack: range ${which} must be numbers, got ${JSON.stringify(v)}`);
    const t = tensor(Float32Array.from(vs.map((u) => (u === Infinity ? 3.4e38 : u === -Infinity ? -3.4e38 : u))), { device: x.device }).to({ dtype: x.dtype });
    return keep(x.ndim > 1 ? t.reshape([1, vs.length, ...x.shape.slice(2).map(() => 1)]) : t);
  };
  return tidy(() => [make(a, 'min'), make(b, 'max')]) as [Tensor, Tensor];
}

// --------------------------------------------------------------------------------------------- the batch transform

export interface BssBatchesOptions {
  /** The frozen teacher (attacked; eval mode). */
  teacher: Module;
  /** The student (its predictions pick the base samples when there are more candidates than `attackSize`). */
  student: Module;
  /** Base samples attacked per batch at most (the reference: 64 of 256). Default: a quarter of the batch. */
  attackSize?: number;
  /** Seed of the target classes' draws (with the epoch and the batch). */
  seed: number;
  attack?: BssAttackOptions;
}

/**
 * Each batch of `source` with its boundary supporting samples appended (Heo et al.): of the samples the teacher
 * classifies right, the `attackSize` with the largest student–teacher disagreement off the true class
 * (Σ_{c≠y} (p_t,c − p_s,c)²) are moved toward the teacher's boundary with a target class drawn from the teacher's
 * softmax over the classes other than its top one (in proportion to it). The rows after the base rows are the moved
 * samples, labelled −100 (ignored by cross-entropy); `batch.bss_rows` holds their count. The draws come from a
 * generator seeded by (seed, epoch, batch) and the student's weights at the step, so a resumed run makes the same
 * samples.
 */
export class BssBatches implements BatchSource {
  private epoch = 0;
  constructor(readonly source: BatchSource, readonly o: BssBatchesOptions) {
    if (!(o.teacher instanceof Module) || !(o.student instanceof Module)) throw new Error('BssBatches: teacher and student must be Modules (the attack needs the teacher\'s input gradient)');
    if (o.attackSize !== undefined && (!Number.isInteger(o.attackSize) || o.attackSize < 1)) throw new Error(`BssBatches: attackSize must be a positive integer, got ${o.attackSize}`);
    if (!Number.isFinite(o.seed)) throw new Error(`BssBatches: seed must be a finite number, got ${o.seed}`);
  }
  get length(): number {
    return this.source.length;
  }
  setEpoch(epoch: number): void {
    this.epoch = epoch;
    this.source.setEpoch(epoch);
  }
  async batchAt(i: number): Promise<EngineBatch> {
    const b = await this.source.batchAt(i);
    try {
      const { x, y, n } = this.extend(b.x, b.y, new Rng(mixSeed(mixSeed(this.o.seed ^ 0x62737300, this.epoch), i)));
      const rows = tensor(BigInt64Array.of(BigInt(n)));
      const taps = { ...(b.taps ?? {}), bss_rows: rows };
      return { x, y, taps, dispose: () => { dispose([x, y, rows]); b.dispose(); } };
    } catch (e) {
      b.dispose();
      throw e;
    }
  }
  /** [x; x_adv], [y; −100 …] and the number of appended rows. */
  private extend(x: Tensor, y: Tensor, rng: Rng): { x: Tensor; y: Tensor; n: number } {
    const { teacher, student } = this.o;
    const B = x.shape[0];
    const size = this.o.attackSize ?? Math.max(1, Math.floor(B / 4));
    const modes = [teacher.training, student.training];
    teacher.eval();
    student.eval();
    try {
      const [pt, ps] = noGrad(() => tidy(() => [F.softmax(teacher.call(x) as Tensor, 1).float().keep(), F.softmax(student.call(x) as Tensor, 1).float().keep()]));
      const P = pt.data() as Float32Array, Q = ps.data() as Float32Array;
      dispose([pt, ps]);
      const C = P.length / B;
      const labels = y.data();
      // candidates: the teacher's top class is the label; ranked by the disagreement off the true class
      const cand: { i: number; score: number }[] = [];
      for (let i = 0; i < B; i++) {
        const row = P.subarray(i * C, (i + 1) * C);
        const top = argmax(row), lab = Number(labels[i]);
        if (top !== lab) continue;
        let score = 0;
        for (let c = 0; c < C; c++) if (c !== lab) score += (row[c] - Q[i * C + c]) ** 2;
        cand.push({ i, score });
      }
      cand.sort((a, b) => b.score - a.score || a.i - b.i);
      const picked = cand.slice(0, size).map((c) => c.i).sort((a, b) => a - b);
      if (!picked.length) return { x: x.clone(), y: y.clone(), n: 0 };
      // target classes: drawn from the teacher's probabilities over the classes other than its top one
      const targets = picked.map((i) => {
        const row = Array.from(P.subarray(i * C, (i + 1) * C), (p, c) => ({ p, c }));
        const rest = row.sort((a, b) => b.p - a.p || a.c - b.c).slice(1);
        const u = rng.random() * rest.reduce((s, r) => s + r.p, 0);
        let acc = 0;
        for (const r of rest) if ((acc += r.p) >= u) return r.c;
        return rest[rest.length - 1].c;
      });
      return tidy(() => {
        const idx = tensor(BigInt64Array.from(picked.map(BigInt)), { device: x.device });
        const base = y.indexSelect(0, idx);
        const target = tensor(BigInt64Array.from(targets.map(BigInt)), { device: x.device });
        const adv = bssAttack(teacher, x.indexSelect(0, idx), base, target, this.o.attack);
        const fill = ops.full([picked.length], IGNORE_LABEL, { dtype: y.dtype, device: y.device });
        const both = keep(ops.cat([x, adv], 0));
        adv.dispose();
        return { x: both, y: keep(ops.cat([y, fill], 0)), n: picked.length };
      });
    } finally {
      teacher.train(modes[0]);
      student.train(modes[1]);
    }
  }
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let c = 1; c < row.length; c++) if (row[c] > row[best]) best = c;
  return best;
}
