// Learning-rate schedules over an optimizer's parameter groups, with PyTorch 1.13's semantics and arithmetic:
// constructing a scheduler applies epoch 0, each `step()` advances one epoch (or one iteration, if called per
// iteration) using PyTorch's chainable form (from the groups' current learning rates), and `step(epoch)` jumps
// using the closed form where PyTorch has one.
import { powi } from './math';
import type { Optimizer } from './optimizer';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOptimizer = Optimizer<any>;

/** JSON-serialisable scheduler state. */
export interface SchedulerState {
  type?: string;
  lastEpoch: number;
  baseLrs: number[];
  lastLr?: number[];
  stepCount?: number;
  schedulers?: SchedulerState[];
  [key: string]: unknown;
}

function bisectRight(sorted: number[], x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < sorted[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function positiveInt(name: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name}: ${what} must be a positive integer, got ${v}`);
}
function finite(name: string, what: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${name}: ${what} must be a finite number, got ${String(v)}`);
}

export abstract class LRScheduler {
  readonly optimizer: AnyOptimizer;
  /** The epoch last applied: 0 after construction, then +1 per `step()`. */
  lastEpoch = -1;
  /** Each group's learning rate before any scheduler changed it (its `initialLr`). */
  readonly baseLrs: number[];
  /** @internal Number of `step` calls, including the one made at construction (PyTorch's `_step_count`). */
  stepCount = 0;
  protected lastLr: number[] = [];

  constructor(optimizer: AnyOptimizer) {
    if (!optimizer || !Array.isArray(optimizer.paramGroups))
      throw new Error(`${new.target.name}: expected an optimizer, got ${String(optimizer)}`);
    this.optimizer = optimizer;
    for (const g of optimizer.paramGroups) if (g.initialLr === undefined) g.initialLr = g.options.lr;
    this.baseLrs = optimizer.paramGroups.map((g) => g.initialLr as number);
    // subclasses call initialStep() at the end of their constructors, once their own fields are set
  }

  /** @internal Applies epoch 0 (PyTorch's `_initial_step`). */
  initialStep(): void {
    this.stepCount = 0;
    this.step();
  }

  /** Learning rates for `this.lastEpoch` (already advanced), from the groups' current ones: PyTorch's `get_lr`. */
  protected abstract getLr(): number[];
  /** Learning rates at `this.lastEpoch` from the base ones, where a closed form exists. */
  protected closedFormLr(): number[] | null {
    return null;
  }

  /** Advances one epoch; `step(epoch)` jumps to `epoch` (closed form where there is one), as PyTorch's deprecated form. */
  step(epoch?: number): void {
    const n = this.optimizer.paramGroups.length;
    if (n !== this.baseLrs.length)
      throw new Error(`${this.constructor.name}.step: the optimizer has ${n} parameter groups, the scheduler was built for ${this.baseLrs.length}`);
    this.stepCount++;
    let values: number[];
    if (epoch === undefined) {
      this.lastEpoch++;
      values = this.getLr();
    } else {
      if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`${this.constructor.name}.step: epoch must be a non-negative integer, got ${epoch}`);
      this.lastEpoch = epoch;
      values = this.closedFormLr() ?? this.getLr();
    }
    this.setLrs(values);
  }

  protected groupLrs(): number[] {
    return this.optimizer.paramGroups.map((g) => g.options.lr as number);
  }
  protected setLrs(values: number[]): void {
    this.optimizer.paramGroups.forEach((g, i) => (g.options.lr = values[i]));
    this.lastLr = this.groupLrs();
  }

  /** The learning rate of each group as last set by this scheduler. */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  /** Extra JSON state of a subclass (its settings, for checking on load). */
  protected extraState(): Record<string, unknown> {
    return {};
  }

  stateDict(): SchedulerState {
    return { type: this.constructor.name, lastEpoch: this.lastEpoch, baseLrs: [...this.baseLrs], lastLr: [...this.lastLr], stepCount: this.stepCount, ...this.extraState() };
  }

  /** Checks a saved state against this scheduler and returns the problems found. */
  protected stateProblems(s: SchedulerState): string[] {
    const problems: string[] = [];
    const n = this.optimizer.paramGroups.length;
    if (!s || typeof s !== 'object') return ['expected the object returned by stateDict()'];
    if (s.type !== undefined && s.type !== this.constructor.name) problems.push(`the state was saved by ${String(s.type)}`);
    if (!Number.isInteger(s.lastEpoch) || s.lastEpoch < -1) problems.push(`lastEpoch must be an integer >= -1, got ${String(s.lastEpoch)}`);
    const nums = (k: 'baseLrs' | 'lastLr', v: unknown) => {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) problems.push(`${k} must be an array of finite numbers`);
      else if (v.length !== n) problems.push(`${k} holds ${v.length} learning rates, the optimizer has ${n} parameter groups`);
    };
    nums('baseLrs', s.baseLrs);
    if (s.lastLr !== undefined) nums('lastLr', s.lastLr);
    return problems;
  }

  /**
   * Restores a state saved by `stateDict()`, and sets each group's learning rate to the saved last value (so a
   * resumed run continues the schedule whether or not the optimizer's own state was loaded).
   */
  loadStateDict(s: SchedulerState): void {
    const problems = this.stateProblems(s);
    if (problems.length) throw new Error(`${this.constructor.name}.loadStateDict: ${problems.join('; ')}`);
    this.lastEpoch = s.lastEpoch;
    s.baseLrs.forEach((b, i) => (this.baseLrs[i] = b));
    this.stepCount = s.stepCount ?? this.lastEpoch + 1;
    this.setLrs(s.lastLr ?? this.closedFormLr() ?? this.getLr());
  }
}

/** Multiplies the learning rate by `gamma` every `stepSize` epochs. */
export class StepLR extends LRScheduler {
  constructor(optimizer: AnyOptimizer, readonly stepSize: number, readonly gamma = 0.1) {
    super(optimizer);
    positiveInt('StepLR', 'stepSize', stepSize);
    finite('StepLR', 'gamma', gamma);
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return lrs;
    return lrs.map((lr) => lr * this.gamma);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => b * powi(this.gamma, Math.floor(this.lastEpoch / this.stepSize)));
  }
  protected override extraState(): Record<string, unknown> {
    return { stepSize: this.stepSize, gamma: this.gamma };
  }
}

/** Multiplies the learning rate by `gamma` at each milestone epoch (a milestone listed twice applies twice). */
export class MultiStepLR extends LRScheduler {
  readonly milestones: number[];
  private readonly counts = new Map<number, number>();
  constructor(optimizer: AnyOptimizer, milestones: number[], readonly gamma = 0.1) {
    super(optimizer);
    for (const m of milestones) if (!Number.isInteger(m) || m < 0) throw new Error(`MultiStepLR: milestones must be non-negative integers, got ${m}`);
    finite('MultiStepLR', 'gamma', gamma);
    this.milestones = [...milestones].sort((a, b) => a - b);
    for (const m of milestones) this.counts.set(m, (this.counts.get(m) ?? 0) + 1);
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    const c = this.counts.get(this.lastEpoch);
    if (c === undefined) return lrs;
    return lrs.map((lr) => lr * powi(this.gamma, c));
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => b * powi(this.gamma, bisectRight(this.milestones, this.lastEpoch)));
  }
  protected override extraState(): Record<string, unknown> {
    return { milestones: [...this.milestones], gamma: this.gamma };
  }
}

/** Multiplies the learning rate by `gamma` every epoch. */
export class ExponentialLR extends LRScheduler {
  constructor(optimizer: AnyOptimizer, readonly gamma: number) {
    super(optimizer);
    finite('ExponentialLR', 'gamma', gamma);
    this.initialStep();
  }
  protected getLr(): number[] {
    const lrs = this.groupLrs();
    return this.lastEpoch === 0 ? lrs : lrs.map((lr) => lr * this.gamma);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => b * powi(this.gamma, this.lastEpoch));
  }
  protected override extraState(): Record<string, unknown> {
    return { gamma: this.gamma };
  }
}

/**
 * Cosine annealing from the base learning rate to `etaMin` over `tMax` epochs:
 * `etaMin + (base - etaMin)·(1 + cos(π·epoch/tMax))/2`. Past `tMax` it rises again (period 2·tMax), as in PyTorch.
 */
export class CosineAnnealingLR extends LRScheduler {
  constructor(optimizer: AnyOptimizer, readonly tMax: number, readonly etaMin = 0) {
    super(optimizer);
    positiveInt('CosineAnnealingLR', 'tMax', tMax);
    finite('CosineAnnealingLR', 'etaMin', etaMin);
    this.initialStep();
  }
  protected getLr(): number[] {
    const e = this.lastEpoch, T = this.tMax, eta = this.etaMin;
    const lrs = this.groupLrs();
    if (e === 0) return lrs;
    if (this.stepCount === 1 && e > 0) return this.baseLrs.map((b) => eta + ((b - eta) * (1 + Math.cos((e * Math.PI) / T))) / 2);
    if ((e - 1 - T) % (2 * T) === 0) return lrs.map((lr, i) => lr + ((this.baseLrs[i] - eta) * (1 - Math.cos(Math.PI / T))) / 2);
    return lrs.map((lr) => ((1 + Math.cos((Math.PI * e) / T)) / (1 + Math.cos((Math.PI * (e - 1)) / T))) * (lr - eta) + eta);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => this.etaMin + ((b - this.etaMin) * (1 + Math.cos((Math.PI * this.lastEpoch) / this.tMax))) / 2);
  }
  protected override extraState(): Record<string, unknown> {
    return { tMax: this.tMax, etaMin: this.etaMin };
  }
}

/**
 * Scales the base learning rate by a factor going linearly from `startFactor` (epoch 0) to `endFactor` (epoch
 * `totalIters` and after). With startFactor < 1 and endFactor 1 this is a linear warm-up.
 */
export class LinearLR extends LRScheduler {
  constructor(optimizer: AnyOptimizer, readonly startFactor = 1 / 3, readonly endFactor = 1, readonly totalIters = 5) {
    super(optimizer);
    if (!(startFactor > 0 && startFactor <= 1)) throw new Error(`LinearLR: startFactor must be in (0, 1], got ${startFactor}`);
    if (!(endFactor >= 0 && endFactor <= 1)) throw new Error(`LinearLR: endFactor must be in [0, 1], got ${endFactor}`);
    positiveInt('LinearLR', 'totalIters', totalIters);
    this.initialStep();
  }
  protected getLr(): number[] {
    const e = this.lastEpoch, s = this.startFactor, d = this.endFactor - this.startFactor;
    const lrs = this.groupLrs();
    if (e === 0) return lrs.map((lr) => lr * s);
    if (e > this.totalIters) return lrs;
    return lrs.map((lr) => lr * (1 + d / (this.totalIters * s + (e - 1) * d)));
  }
  protected override closedFormLr(): number[] {
    const d = this.endFactor - this.startFactor;
    return this.baseLrs.map((b) => b * (this.startFactor + (d * Math.min(this.totalIters, this.lastEpoch)) / this.totalIters));
  }
  protected override extraState(): Record<string, unknown> {
    return { startFactor: this.startFactor, endFactor: this.endFactor, totalIters: this.totalIters };
  }
}

/** Sets each group's learning rate to its base value times `fn(epoch)` (one function, or one per group). */
export class LambdaLR extends LRScheduler {
  readonly fns: ((epoch: number) => number)[];
  constructor(optimizer: AnyOptimizer, fn: ((epoch: number) => number) | ((epoch: number) => number)[]) {
    super(optimizer);
    const n = optimizer.paramGroups.length;
    if (Array.isArray(fn) && fn.length !== n) throw new Error(`LambdaLR: ${fn.length} functions for ${n} parameter groups`);
    this.fns = Array.isArray(fn) ? [...fn] : new Array(n).fill(fn);
    for (const f of this.fns) if (typeof f !== 'function') throw new Error(`LambdaLR: expected a function of the epoch, got ${typeof f}`);
    this.initialStep();
  }
  protected getLr(): number[] {
    return this.baseLrs.map((b, i) => b * this.fns[i](this.lastEpoch));
  }
}

/**
 * Runs `schedulers` one after another, switching at each milestone epoch (the next one starts from its epoch 0),
 * as PyTorch's SequentialLR. All must drive `optimizer`.
 */
export class SequentialLR extends LRScheduler {
  readonly schedulers: LRScheduler[];
  readonly milestones: number[];
  constructor(optimizer: AnyOptimizer, schedulers: LRScheduler[], milestones: number[]) {
    super(optimizer);
    if (schedulers.length === 0) throw new Error('SequentialLR: expected at least one scheduler');
    schedulers.forEach((s, i) => {
      if (!(s instanceof LRScheduler)) throw new Error(`SequentialLR: schedulers[${i}] is not a scheduler`);
      if (s.optimizer !== optimizer) throw new Error(`SequentialLR: schedulers[${i}] drives another optimizer than the one given`);
    });
    if (milestones.length !== schedulers.length - 1)
      throw new Error(`SequentialLR: ${schedulers.length} schedulers need ${schedulers.length - 1} milestones, got ${milestones.length}`);
    milestones.forEach((m, i) => {
      if (!Number.isInteger(m) || m <= 0 || (i > 0 && m <= milestones[i - 1]))
        throw new Error(`SequentialLR: milestones must be increasing positive integers, got [${milestones.join(', ')}]`);
    });
    this.schedulers = [...schedulers];
    this.milestones = [...milestones];
    this.lastEpoch = 0;
    // back to the initial learning rates; undo the step each scheduler made when it was built; start the first
    for (const g of optimizer.paramGroups) g.options.lr = g.initialLr;
    for (const s of this.schedulers) s.lastEpoch -= 1;
    this.schedulers[0].initialStep();
    this.lastLr = this.schedulers[0].getLastLr();
  }
  protected getLr(): number[] {
    return this.groupLrs();
  }
  override step(epoch?: number): void {
    if (epoch !== undefined) throw new Error('SequentialLR.step: takes no epoch');
    this.lastEpoch++;
    const idx = bisectRight(this.milestones, this.lastEpoch);
    const s = this.schedulers[idx];
    if (idx > 0 && this.milestones[idx - 1] === this.lastEpoch) s.step(0);
    else s.step();
    this.lastLr = s.getLastLr();
  }
  override stateDict(): SchedulerState {
    return { ...super.stateDict(), milestones: [...this.milestones], schedulers: this.schedulers.map((s) => s.stateDict()) };
  }
  override loadStateDict(s: SchedulerState): void {
    const problems = this.stateProblems(s);
    if (!Array.isArray(s?.schedulers) || s.schedulers.length !== this.schedulers.length)
      problems.push(`${Array.isArray(s?.schedulers) ? s.schedulers.length : 'no'} sub-scheduler states saved, this one runs ${this.schedulers.length}`);
    if (problems.length) throw new Error(`SequentialLR.loadStateDict: ${problems.join('; ')}`);
    this.schedulers.forEach((sub, i) => sub.loadStateDict(s.schedulers![i]));
    this.lastEpoch = s.lastEpoch;
    s.baseLrs.forEach((b, i) => (this.baseLrs[i] = b));
    this.stepCount = s.stepCount ?? this.lastEpoch + 1;
    this.setLrs(s.lastLr ?? this.schedulers[bisectRight(this.milestones, this.lastEpoch)].getLastLr());
  }
}

/**
 * Linear warm-up over `warmupSteps` steps from `startFactor`·lr (default 0.1) to lr, then `after` (built on the same
 * optimizer) from its epoch 0; without `after` the learning rate stays at its base value. The result is a
 * `SequentialLR([LinearLR, after], [warmupSteps])` (or the LinearLR alone), with PyTorch's values.
 */
export function warmup(optimizer: AnyOptimizer, warmupSteps: number, after?: LRScheduler, opts: { startFactor?: number } = {}): LRScheduler {
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new Error(`warmup: warmupSteps must be a non-negative integer, got ${warmupSteps}`);
  if (after && after.optimizer !== optimizer) throw new Error('warmup: the scheduler to hand over to drives another optimizer');
  if (warmupSteps === 0) return after ?? new LambdaLR(optimizer, () => 1);
  const linear = new LinearLR(optimizer, opts.startFactor ?? 0.1, 1, warmupSteps);
  return after ? new SequentialLR(optimizer, [linear, after], [warmupSteps]) : linear;
}

/**
 * Linear warm-up to the base learning rate over `warmupSteps` steps (lr·(s + 1)/W at step s), then half a cosine down
 * to `minLr` at `totalSteps` — the usual schedule of language-model training, stepped once per optimizer step.
 */
export function warmupCosine(optimizer: AnyOptimizer, o: { warmupSteps: number; totalSteps: number; minLr: number }): LRScheduler {
  const W = o.warmupSteps, N = o.totalSteps;
  if (!Number.isInteger(W) || W < 0) throw new Error(`warmupCosine: warmupSteps must be a non-negative integer, got ${W}`);
  if (!Number.isInteger(N) || N < 1) throw new Error(`warmupCosine: totalSteps must be a positive integer, got ${N}`);
  const cosine = new CosineAnnealingLR(optimizer, Math.max(1, N - W), o.minLr);
  if (W === 0) return cosine;
  const rise = W === 1 ? new LambdaLR(optimizer, () => 1) : new LinearLR(optimizer, 1 / W, 1, W - 1);
  return new SequentialLR(optimizer, [rise, cosine], [W]);
}
