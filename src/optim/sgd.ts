import { Tensor, ops } from '../torch';
import { mulScalar_ } from './foreach';
import { Optimizer, ParamsArg } from './optimizer';

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
}

const SGD_OPTIONS = ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'maximize'] as const;

/**
 * Stochastic gradient descent with PyTorch 1.13's update rule:
 * `d = ±grad + weightDecay·p; buf = momentum·buf + (1 - dampening)·d` (the first buffer is `d` itself);
 * `d = nesterov ? d + momentum·buf : buf; p -= lr·d`. State: `momentum_buffer` (when momentum ≠ 0).
 */
export class SGD extends Optimizer<SGDOptions> {
  /** `opts.lr` is required unless every group sets its own. */
  constructor(params: ParamsArg<SGDOptions>, opts: Partial<SGDOptions> = {}) {
    const builtin = { lr: undefined as unknown as number, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false };
    super(params, builtin, opts, SGD_OPTIONS);
  }

  protected override validateOptions(o: SGDOptions, where: string): void {
    if (o.lr === undefined) throw new Error(`SGD: ${where}: no learning rate; pass { lr } to the constructor or set it in the group`);
    super.validateOptions(o, where);
    if (!(o.momentum >= 0)) throw new Error(`SGD: ${where}: invalid momentum ${o.momentum} (expected >= 0)`);
    if (!(o.weightDecay >= 0)) throw new Error(`SGD: ${where}: invalid weightDecay ${o.weightDecay} (expected >= 0)`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0))
      throw new Error(`SGD: ${where}: Nesterov momentum requires momentum > 0 and dampening 0 (got momentum ${o.momentum}, dampening ${o.dampening})`);
  }

  protected stateNames(o: SGDOptions): { tensors: string[]; scalars: string[] } {
    return { tensors: o.momentum !== 0 ? ['momentum_buffer'] : [], scalars: [] };
  }

  protected update(params: Tensor[], grads: Tensor[], o: SGDOptions): void {
    // `d` starts as the gradients (read-only); once it is a temporary of this step it is updated in place
    let d = grads;
    let own = false;
    if (o.maximize) {
      d = ops._foreach_neg(grads);
      own = true;
    }
    if (o.weightDecay !== 0) {
      if (own) ops._foreach_add__List(d, params, { alpha: o.weightDecay });
      else d = ops._foreach_add_List(d, params, { alpha: o.weightDecay });
      own = true;
    }
    if (o.momentum !== 0) {
      const n = params.length;
      const bufs: Tensor[] = new Array(n);
      let missing = 0;
      for (let i = 0; i < n; i++) {
        const b = this.stateOf(params[i])?.tensors.momentum_buffer;
        if (b === undefined) missing++;
        else bufs[i] = b;
      }
      if (missing === 0) {
        mulScalar_(bufs, o.momentum);
        ops._foreach_add__List(bufs, d, { alpha: 1 - o.dampening });
      } else {
        // first update of some parameters: their buffer starts as a copy of d (PyTorch's `clone(d_p).detach()`)
        const old: Tensor[] = [];
        const oldD: Tensor[] = [];
        for (let i = 0; i < n; i++) {
          if (bufs[i] === undefined) bufs[i] = this.initState(params[i], 'momentum_buffer', ops.clone(d[i]));
          else { old.push(bufs[i]); oldD.push(d[i]); }
        }
        if (old.length !== 0) {
          mulScalar_(old, o.momentum);
          ops._foreach_add__List(old, oldD, { alpha: 1 - o.dampening });
        }
      }
      if (!o.nesterov) d = bufs;
      else if (own) ops._foreach_add__List(d, bufs, { alpha: o.momentum });
      else d = ops._foreach_add_List(d, bufs, { alpha: o.momentum });
    }
    ops._foreach_add__List(params, d, { alpha: -o.lr });
  }
}
