import { Tensor, ops } from '../torch';
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
    let d = o.maximize ? ops._foreach_neg(grads) : grads;
    if (o.weightDecay !== 0) d = ops._foreach_add_List(d, params, { alpha: o.weightDecay });
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
        ops._foreach_mul__Scalar(bufs, o.momentum);
        ops._foreach_add__List(bufs, d, { alpha: 1 - o.dampening });
      } else {
        const old: Tensor[] = [];
        const oldD: Tensor[] = [];
        for (let i = 0; i < n; i++) {
          if (bufs[i] === undefined) bufs[i] = this.initState(params[i], 'momentum_buffer', ops.clone(d[i]));
          else { old.push(bufs[i]); oldD.push(d[i]); }
        }
        if (old.length !== 0) {
          ops._foreach_mul__Scalar(old, o.momentum);
          ops._foreach_add__List(old, oldD, { alpha: 1 - o.dampening });
        }
      }
      d = o.nesterov ? ops._foreach_add_List(d, bufs, { alpha: o.momentum }) : bufs;
    }
    ops._foreach_add__List(params, d, { alpha: -o.lr });
  }
}
