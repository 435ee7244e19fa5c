// LeNet-5 (teacher) and the half-width LeNet student of the MNIST distillation experiment.
import { z } from 'zod';
import { Tensor, chain, ops } from '../torch';
import { Conv2d, F, Linear, Module } from '../nn';
import { type ModelOptionShape, numClasses } from './options';

/** Options of `lenet5`. */
export const LENET5_OPTIONS: ModelOptionShape = { numClasses };
/** Options of `lenet5-half`: `outputRelu` puts a ReLU on the logits, as the reference experiment's student has. */
export const LENET5_HALF_OPTIONS: ModelOptionShape = { numClasses, outputRelu: z.boolean() };

const relu = (x: Tensor) => x.relu();
const pool = (x: Tensor) => F.maxPool2d(x, 2);
const flatten = (x: Tensor) => x.flatten(1);

/** LeNet-5 for 28×28 inputs: conv(1→6, k5, pad 2) → pool → conv(6→16, k5) → pool → 400→120→84→classes. */
export class LeNet5 extends Module {
  conv1: Conv2d;
  conv2: Conv2d;
  fc1: Linear;
  fc2: Linear;
  fc3: Linear;
  // layer by layer, each intermediate released once the next exists (see chain)
  private readonly layers: ((x: Tensor) => Tensor)[];
  /** `widths`: the two convolutions' channels and the two hidden layers' units (default LeNet-5's 6, 16, 120, 84). */
  constructor(numClasses = 10, widths: readonly [number, number, number, number] = [6, 16, 120, 84]) {
    super();
    const [c1, c2, h1, h2] = widths;
    this.conv1 = this.registerModule('conv1', new Conv2d(1, c1, 5, { padding: 2 }));
    this.conv2 = this.registerModule('conv2', new Conv2d(c1, c2, 5));
    this.fc1 = this.registerModule('fc1', new Linear(c2 * 25, h1));
    this.fc2 = this.registerModule('fc2', new Linear(h1, h2));
    this.fc3 = this.registerModule('fc3', new Linear(h2, numClasses));
    this.layers = [
      (x) => this.conv1.call(x), relu, pool,
      (x) => this.conv2.call(x), relu, pool, flatten,
      (x) => this.fc1.call(x), relu,
      (x) => this.fc2.call(x), relu,
      (x) => this.fc3.call(x),
    ];
  }
  forward(x: Tensor): Tensor {
    return chain(x, this.layers);
  }
}

/**
 * The small student: conv(1→3, k5) → ReLU → max-pool 2 → linear(432→classes). `outputRelu` applies a ReLU to the
 * logits, as the reference experiment's student does.
 */
export class LeNet5Half extends Module {
  conv = this.registerModule('conv', new Conv2d(1, 3, 5));
  fc: Linear;
  private readonly layers: ((x: Tensor) => Tensor)[];
  constructor(numClasses = 10, readonly outputRelu = false) {
    super();
    this.fc = this.registerModule('fc', new Linear(432, numClasses));
    this.layers = [(x) => this.conv.call(x), relu, pool, flatten, (x) => this.fc.call(x), ...(outputRelu ? [relu] : [])];
  }
  forward(x: Tensor): Tensor {
    return chain(x, this.layers);
  }
}

/** Options of `lenet5-half-dafl`. */
export const LENET5_HALF_DAFL_OPTIONS: ModelOptionShape = { numClasses };

/**
 * LeNet-5 at half width, the student of DAFL (Chen et al. 2019) and of the data-free papers after it: every layer of
 * `lenet5` with half its channels or units, conv(1→3, k5, pad 2) → pool → conv(3→8, k5) → pool → 200→60→42→classes
 * (15,738 parameters for 10 classes; the authors' conv(8→60, k5) on 5×5 maps is the linear 200→60 here). No ReLU on
 * the logits.
 */
export class LeNet5HalfDafl extends LeNet5 {
  constructor(numClasses = 10) {
    super(numClasses, [3, 8, 60, 42]);
  }
}
