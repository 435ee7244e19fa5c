import { Tensor, ops, zerosLike } from '../torch';
import { Optimizer, ParamsArg } from './optimizer';

export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

/** Adam (and, with `decoupled`, AdamW) with PyTorch 1.13's update rule. */
class AdamBase extends Optimizer<AdamOptions> {
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions>, defaults: AdamOptions, private readonly decoupled: boolean) {
    const d = { ...defaults, ...opts };
    super(params, d, ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize']);
    this.checkOptions(opts);
    if (!(d.betas[0] >= 0 && d.betas[0] < 1 && d.betas[1] >= 0 && d.betas[1] < 1)) throw new Error(`${this.constructor.name}: invalid betas [${d.betas}]`);
    if (!(d.eps >= 0)) throw new Error(`${this.constructor.name}: invalid eps ${d.eps}`);
  }
  protected update(params: Tensor[], grads: Tensor[], o: AdamOptions): void {
    const [b1, b2] = o.betas;
    let g = o.maximize ? ops._foreach_neg(grads) : grads;
    if (o.weightDecay !== 0) {
      if (this.decoupled) ops._foreach_mul__Scalar(params, 1 - o.lr * o.weightDecay);
      else g = ops._foreach_add_List(g, params, { alpha: o.weightDecay });
    }
    const m: Tensor[] = [], v: Tensor[] = [], vmax: Tensor[] = [];
    // parameters are stepped together; their step counts agree unless some were skipped (no grad) before
    const groups = new Map<number, number[]>();
    params.forEach((p, i) => {
      const s = this.stateOf(p);
      if (!s.exp_avg) {
        this.setState(p, 'exp_avg', zerosLike(p));
        this.setState(p, 'exp_avg_sq', zerosLike(p));
        if (o.amsgrad) this.setState(p, 'max_exp_avg_sq', zerosLike(p));
      }
      const sc = this.scalarState.get(p) ?? { step: 0 };
      sc.step += 1;
      this.scalarState.set(p, sc);
      m.push(s.exp_avg); v.push(s.exp_avg_sq);
      if (o.amsgrad) vmax.push(s.max_exp_avg_sq);
      const list = groups.get(sc.step) ?? [];
      list.push(i);
      groups.set(sc.step, list);
    });
    ops._foreach_mul__Scalar(m, b1);
    ops._foreach_add__List(m, g, { alpha: 1 - b1 });
    ops._foreach_mul__Scalar(v, b2);
    ops._foreach_addcmul__Scalar(v, g, g, 1 - b2);
    if (o.amsgrad) ops._foreach_maximum__List(vmax, v);
    const second = o.amsgrad ? vmax : v;
    for (const [step, idx] of groups) {
      const pick = <T>(xs: T[]) => (idx.length === xs.length ? xs : idx.map((i) => xs[i]));
      const bc1 = 1 - b1 ** step;
      const bc2Sqrt = Math.sqrt(1 - b2 ** step);
      const denom = ops._foreach_sqrt(pick(second));
      ops._foreach_div__Scalar(denom, bc2Sqrt);
      ops._foreach_add__Scalar(denom, o.eps);
      ops._foreach_addcdiv__Scalar(pick(params), pick(m), denom, -o.lr / bc1);
    }
  }
}

export class Adam extends AdamBase {
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, opts, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, maximize: false }, false);
  }
}
/** Adam with decoupled weight decay (Loshchilov & Hutter); PyTorch's default weight decay 0.01. */
export class AdamW extends AdamBase {
  constructor(params: ParamsArg<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super(params, opts, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, amsgrad: false, maximize: false }, true);
  }
}
