// LeNet-5 (teacher) and the half-width LeNet student of the MNIST distillation experiment.
import { Tensor, ops } from '../torch';
import { Conv2d, Linear, Module } from '../nn';

/** LeNet-5 for 28×28 inputs: conv(1→6, k5, pad 2) → pool → conv(6→16, k5) → pool → 400→120→84→classes. */
export class LeNet5 extends Module {
  conv1 = this.registerModule('conv1', new Conv2d(1, 6, 5, { padding: 2 }));
  conv2 = this.registerModule('conv2', new Conv2d(6, 16, 5));
  fc1 = this.registerModule('fc1', new Linear(400, 120));
  fc2 = this.registerModule('fc2', new Linear(120, 84));
  fc3: Linear;
  constructor(numClasses = 10) {
    super();
    this.fc3 = this.registerModule('fc3', new Linear(84, numClasses));
  }
  forward(x: Tensor): Tensor {
    x = ops.max_pool2d(this.conv1.call(x).relu(), 2);
    x = ops.max_pool2d(this.conv2.call(x).relu(), 2).flatten(1);
    x = this.fc1.call(x).relu();
    x = this.fc2.call(x).relu();
    return this.fc3.call(x);
  }
}

/**
 * The small student: conv(1→3, k5) → ReLU → max-pool 2 → linear(432→classes). `outputRelu` applies a ReLU to the
 * logits, as the reference experiment's student does.
 */
export class LeNet5Half extends Module {
  conv = this.registerModule('conv', new Conv2d(1, 3, 5));
  fc: Linear;
  constructor(numClasses = 10, readonly outputRelu = false) {
    super();
    this.fc = this.registerModule('fc', new Linear(432, numClasses));
  }
  forward(x: Tensor): Tensor {
    const y = this.fc.call(ops.max_pool2d(this.conv.call(x).relu(), 2).flatten(1));
    return this.outputRelu ? y.relu() : y;
  }
}
