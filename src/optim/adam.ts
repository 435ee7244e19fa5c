import { Tensor, ops, zerosLike } from '../torch';
import { addScalar_, divScalar_, mulScalar_ } from './foreach';
import { powi } from './math';
import { Optimizer, ParamsArg } from './optimizer';

export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

const ADAM_OPTIONS = ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize'] as const;

/** Adam and AdamW: PyTorch 1.13's update rule, with weight decay as an L2 term (Adam) or decoupled (AdamW). */
abstract class AdamBase extends Optimizer<AdamOptions> {
  protected abstract readonly decoupled: boolean;

  protected constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions>, builtin: AdamOptions) {
    super(params, builtin, opts, ADAM_OPTIONS);
  }

  protected override validateOptions(o: AdamOptions, where: string): void {
    super.validateOptions(o, where);
    const name = this.constructor.name;
    const b = o.betas;
    if (!Array.isArray(b) || b.length !== 2 || !(b[0] >= 0 && b[0] < 1 && b[1] >= 0 && b[1] < 1))
      throw new Error(`${name}: ${where}: invalid betas ${JSON.stringify(b)} (expected two numbers in [0, 1))`);
    if (!(o.eps >= 0)) throw new Error(`${name}: ${where}: invalid eps ${o.eps} (expected >= 0)`);
    if (!(o.weightDecay >= 0)) throw new Error(`${name}: ${where}: invalid weightDecay ${o.weightDecay} (expected >= 0)`);
  }

  protected stateNames(o: AdamOptions): { tensors: string[]; scalars: string[] } {
    return { tensors: o.amsgrad ? ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'] : ['exp_avg', 'exp_avg_sq'], scalars: ['step'] };
  }

  protected update(params: Tensor[], grads: Tensor[], o: AdamOptions): void {
    const [b1, b2] = o.betas;
    const n = params.length;
    const m: Tensor[] = new Array(n);
    const v: Tensor[] = new Array(n);
    const vmax: Tensor[] = o.amsgrad ? new Array(n) : [];
    const steps: number[] = new Array(n);
    let sameStep = true;
    for (let i = 0; i < n; i++) {
      const p = params[i];
      let s = this.stateOf(p);
      if (s === undefined || s.tensors.exp_avg === undefined) {
        this.initState(p, 'exp_avg', zerosLike(p));
        this.initState(p, 'exp_avg_sq', zerosLike(p));
        s = this.stateOf(p)!;
        s.scalars.step = 0;
      }
      const t = s.tensors;
      if (o.amsgrad && t.max_exp_avg_sq === undefined) this.initState(p, 'max_exp_avg_sq', zerosLike(p));
      m[i] = t.exp_avg;
      v[i] = t.exp_avg_sq;
      if (o.amsgrad) vmax[i] = t.max_exp_avg_sq;
      steps[i] = s.scalars.step = (s.scalars.step ?? 0) + 1;
      if (steps[i] !== steps[0]) sameStep = false;
    }

    let g = o.maximize ? ops._foreach_neg(grads) : grads;
    if (o.weightDecay !== 0) {
      if (this.decoupled) mulScalar_(params, 1 - o.lr * o.weightDecay);
      else if (o.maximize) ops._foreach_add__List(g, params, { alpha: o.weightDecay });
      else g = ops._foreach_add_List(g, params, { alpha: o.weightDecay });
    }
    mulScalar_(m, b1);
    ops._foreach_add__List(m, g, { alpha: 1 - b1 });
    mulScalar_(v, b2);
    ops._foreach_addcmul__Scalar(v, g, g, 1 - b2);
    if (o.amsgrad) ops._foreach_maximum__List(vmax, v);
    const second = o.amsgrad ? vmax : v;

    // Bias corrections depend on each parameter's step count; parameters skipped at some earlier step (no
    // gradient) have fewer steps, so they are updated in separate batches.
    if (sameStep) this.applyUpdate(params, m, second, steps[0], o);
    else {
      const byStep = new Map<number, number[]>();
      steps.forEach((st, i) => {
        const list = byStep.get(st);
        if (list) list.push(i);
        else byStep.set(st, [i]);
      });
      for (const [st, idx] of byStep)
        this.applyUpdate(idx.map((i) => params[i]), idx.map((i) => m[i]), idx.map((i) => second[i]), st, o);
    }
  }

  private applyUpdate(params: Tensor[], m: Tensor[], second: Tensor[], step: number, o: AdamOptions): void {
    const [b1, b2] = o.betas;
    const stepSize = o.lr / (1 - powi(b1, step));
    const bc2Sqrt = Math.sqrt(1 - powi(b2, step));
    const denom = ops._foreach_sqrt(second);
    divScalar_(denom, bc2Sqrt);
    addScalar_(denom, o.eps);
    ops._foreach_addcdiv__Scalar(params, m, denom, -stepSize);
  }
}

/**
 * Adam (Kingma & Ba) as in PyTorch 1.13, with optional AMSGrad. `weightDecay` adds `weightDecay·p` to the
 * gradient. State per parameter: `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (AMSGrad) and the `step` count.
 * Defaults: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0.
 */
export class Adam extends AdamBase {
  protected readonly decoupled = false;
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, opts, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, maximize: false });
  }
}

/**
 * AdamW (Loshchilov & Hutter) as in PyTorch 1.13: decoupled weight decay `p ← p·(1 - lr·weightDecay)` before the
 * Adam update. Same state as Adam. Defaults as Adam except weightDecay 1e-2.
 */
export class AdamW extends AdamBase {
  protected readonly decoupled = true;
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, opts, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, amsgrad: false, maximize: false });
  }
}
