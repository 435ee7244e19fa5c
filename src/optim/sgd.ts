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

/** Stochastic gradient descent with PyTorch 1.13's update rule (momentum, dampening, Nesterov, weight decay). */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ParamsArg<SGDOptions>, opts: Partial<SGDOptions> & { lr: number }) {
    const defaults: SGDOptions = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...opts };
    super(params, defaults, ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'maximize']);
    this.checkOptions(opts);
    if (defaults.nesterov && (defaults.momentum <= 0 || defaults.dampening !== 0))
      throw new Error('SGD: Nesterov momentum requires a momentum and zero dampening');
  }
  protected update(params: Tensor[], grads: Tensor[], o: SGDOptions): void {
    let d = grads;
    if (o.weightDecay !== 0) d = ops._foreach_add_List(grads, params, { alpha: o.weightDecay });
    if (o.momentum !== 0) {
      const bufs: Tensor[] = [];
      const existing: Tensor[] = [];
      const existingD: Tensor[] = [];
      for (let i = 0; i < params.length; i++) {
        const s = this.stateOf(params[i]);
        if (s.momentum_buffer === undefined) {
          bufs.push(this.setState(params[i], 'momentum_buffer', d[i].clone()));
        } else {
          existing.push(s.momentum_buffer);
          existingD.push(d[i]);
          bufs.push(s.momentum_buffer);
        }
      }
      if (existing.length) {
        ops._foreach_mul__Scalar(existing, o.momentum);
        ops._foreach_add__List(existing, existingD, { alpha: 1 - o.dampening });
      }
      d = o.nesterov ? ops._foreach_add_List(d, bufs, { alpha: o.momentum }) : bufs;
    }
    ops._foreach_add__List(params, d, { alpha: o.maximize ? o.lr : -o.lr });
  }
}
