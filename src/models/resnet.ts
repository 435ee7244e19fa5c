// CIFAR ResNets (He et al. 2016, the 6n+2 family) with the module names of the common PyTorch implementation used in
// distillation benchmarks: conv1, bn1, layer1..3 (BasicBlock: conv1, bn1, conv2, bn2, downsample.0/1), fc.
import { Tensor } from '../torch';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Module, Sequential } from '../nn';
import { type ModelOptionShape, numClasses } from './options';

/** Options of the `resnetN` models. */
export const RESNET_OPTIONS: ModelOptionShape = { numClasses };

export class BasicBlock extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  downsample: Sequential | null = null;
  constructor(inplanes: number, planes: number, stride = 1) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    if (stride !== 1 || inplanes !== planes)
      this.downsample = this.registerModule('downsample', new Sequential(new Conv2d(inplanes, planes, 1, { stride, bias: false }), new BatchNorm2d(planes)));
  }
  forward(x: Tensor): Tensor {
    const out = this.bn2.call(this.conv2.call(this.bn1.call(this.conv1.call(x)).relu()));
    const res = this.downsample ? this.downsample.call(x) : x;
    return out.add(res).relu();
  }
}

/** depth = 6n + 2; `widths` = [stem, stage1, stage2, stage3], e.g. [16, 16, 32, 64] (x4 variants: [32, 64, 128, 256]). */
export class ResNetCifar extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  /** Global average pooling then flattening: `pool`'s output is the [B, C] embedding relation losses use (no weights). */
  pool: Sequential;
  fc: Linear;
  constructor(readonly depth: number, readonly widths: number[], numClasses = 10) {
    super();
    if ((depth - 2) % 6 !== 0) throw new Error(`resnet-cifar: depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110), got ${depth}`);
    const n = (depth - 2) / 6;
    this.conv1 = this.registerModule('conv1', new Conv2d(3, widths[0], 3, { padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(widths[0]));
    let inplanes = widths[0];
    const stage = (planes: number, stride: number) => {
      const blocks: Module[] = [];
      for (let i = 0; i < n; i++) {
        blocks.push(new BasicBlock(inplanes, planes, i === 0 ? stride : 1));
        inplanes = planes;
      }
      return new Sequential(...blocks);
    };
    this.layer1 = this.registerModule('layer1', stage(widths[1], 1));
    this.layer2 = this.registerModule('layer2', stage(widths[2], 2));
    this.layer3 = this.registerModule('layer3', stage(widths[3], 2));
    this.pool = this.registerModule('pool', new Sequential(new AdaptiveAvgPool2d(1), new Flatten()));
    this.fc = this.registerModule('fc', new Linear(widths[3], numClasses));
  }
  forward(x: Tensor): Tensor {
    let h = this.conv1.call(x);
    h = this.bn1.call(h).relu();
    h = this.layer3.call(this.layer2.call(this.layer1.call(h)));
    return this.fc.call(this.pool.call(h));
  }
}
