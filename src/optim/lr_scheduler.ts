// Learning-rate schedules over an optimizer's groups. `step()` advances one epoch (or one iteration, if called per
// iteration); values follow PyTorch 1.13's closed forms.
import type { Optimizer } from './optimizer';

export abstract class LRScheduler {
  lastEpoch = 0;
  readonly baseLrs: number[];
  constructor(readonly optimizer: Optimizer<{ lr: number }>) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.options.lr);
    // subclasses call apply() at the end of their constructors, once their own fields are set
  }
  /** Learning rate of group `i` at epoch `e`. */
  protected abstract lrAt(base: number, e: number, i: number): number;
  step(): void {
    this.lastEpoch++;
    this.apply();
  }
  protected apply(): void {
    this.optimizer.paramGroups.forEach((g, i) => (g.options.lr = this.lrAt(this.baseLrs[i], this.lastEpoch, i)));
  }
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.options.lr);
  }
  stateDict(): { lastEpoch: number; baseLrs: number[] } {
    return { lastEpoch: this.lastEpoch, baseLrs: [...this.baseLrs] };
  }
  loadStateDict(s: { lastEpoch: number; baseLrs: number[] }): void {
    if (s.baseLrs.length !== this.baseLrs.length)
      throw new Error(`${this.constructor.name}.loadStateDict: ${s.baseLrs.length} groups saved, the optimizer has ${this.baseLrs.length}`);
    this.lastEpoch = s.lastEpoch;
    s.baseLrs.forEach((b, i) => (this.baseLrs[i] = b));
    this.apply();
  }
}

export class StepLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly stepSize: number, readonly gamma = 0.1) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number { return base * this.gamma ** Math.floor(e / this.stepSize); }
}
export class MultiStepLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly milestones: number[], readonly gamma = 0.1) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number { return base * this.gamma ** this.milestones.filter((m) => m <= e).length; }
}
export class CosineAnnealingLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly tMax: number, readonly etaMin = 0) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number {
    return this.etaMin + ((base - this.etaMin) * (1 + Math.cos((Math.PI * e) / this.tMax))) / 2;
  }
}
/** Multiplies the base LR by a factor going linearly from startFactor to endFactor over totalIters steps. */
export class LinearLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly startFactor = 1 / 3, readonly endFactor = 1, readonly totalIters = 5) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number {
    const t = Math.min(e, this.totalIters);
    return base * (this.startFactor + ((this.endFactor - this.startFactor) * t) / this.totalIters);
  }
}
export class LambdaLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly fn: (epoch: number) => number) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number { return base * this.fn(e); }
}
/** Linear warm-up from `startFactor`·lr over `warmupSteps`, then `after` takes over (counting from 0), as SequentialLR. */
export class WarmupLR extends LRScheduler {
  constructor(opt: Optimizer<{ lr: number }>, readonly warmupSteps: number, readonly after?: (base: number, e: number) => number, readonly startFactor = 0.01) { super(opt); this.apply(); }
  protected lrAt(base: number, e: number): number {
    if (e < this.warmupSteps) return base * (this.startFactor + ((1 - this.startFactor) * e) / this.warmupSteps);
    return this.after ? this.after(base, e - this.warmupSteps) : base;
  }
}
/** Cosine decay to etaMin over tMax steps, usable as WarmupLR's `after`. */
export const cosineSchedule = (tMax: number, etaMin = 0) => (base: number, e: number) =>
  etaMin + ((base - etaMin) * (1 + Math.cos((Math.PI * Math.min(e, tMax)) / tMax))) / 2;
