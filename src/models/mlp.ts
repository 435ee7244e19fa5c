// Multi-layer perceptron: 784-1200-1200-10 (Hinton's teacher) or any widths, optional dropout.
import { z } from 'zod';
import { Tensor } from '../torch';
import { Dropout, Linear, Module, ModuleList } from '../nn';
import { type ModelOptionShape, numClasses, probability } from './options';

/** Options of `mlp` (widths include input and output; the default [784, 800, 800, numClasses]). */
export const MLP_OPTIONS: ModelOptionShape = { numClasses, widths: z.array(z.number().int().positive()).min(2), dropout: probability, inputDropout: probability };
/** Options of `mlp-1200` (Hinton's teacher: dropout 0.5, input dropout 0.2 by default). */
export const MLP_1200_OPTIONS: ModelOptionShape = { numClasses, dropout: probability, inputDropout: probability };
/** Options of `mlp-800` (Hinton's unregularised student). */
export const MLP_800_OPTIONS: ModelOptionShape = { numClasses };

export interface MlpOptions {
  /** Layer widths including input and output, e.g. [784, 1200, 1200, 10]. */
  widths: number[];
  dropout?: number;
  /** Dropout on the input (Hinton et al. use 0.2 on inputs, 0.5 on hidden units). */
  inputDropout?: number;
}

/** Flattens its input; `layers.0`, `layers.1`, ... are the Linear layers. */
export class Mlp extends Module {
  readonly layers: ModuleList;
  readonly drop: Dropout;
  readonly inDrop: Dropout;
  constructor(readonly opts: MlpOptions) {
    super();
    if (opts.widths.length < 2) throw new Error(`mlp: widths needs at least input and output sizes, got [${opts.widths}]`);
    this.layers = this.registerModule('layers', new ModuleList(opts.widths.slice(1).map((w, i) => new Linear(opts.widths[i], w))));
    this.drop = this.registerModule('drop', new Dropout(opts.dropout ?? 0));
    this.inDrop = this.registerModule('in_drop', new Dropout(opts.inputDropout ?? 0));
  }
  forward(x: Tensor): Tensor {
    let h = this.inDrop.call(x.flatten(1));
    const n = this.layers.length;
    for (let i = 0; i < n; i++) {
      h = this.layers.at(i).call(h);
      if (i < n - 1) h = this.drop.call(h.relu());
    }
    return h;
  }
}
