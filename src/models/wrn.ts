// Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, pre-activation blocks, names as the common PyTorch
// implementation: conv1, block1..3.layer.i.{bn1, conv1, bn2, conv2, convShortcut}, bn1, fc.
import { Tensor, ops } from '../torch';
import { BatchNorm2d, Conv2d, Dropout, Linear, Module, Sequential } from '../nn';
import { type ModelOptionShape, numClasses, probability } from './options';

/** Options of the `wrn-D-W` models: dropout between the convolutions of a block (default 0). */
export const WRN_OPTIONS: ModelOptionShape = { numClasses, dropout: probability };

class WrnBlock extends Module {
  bn1: BatchNorm2d;
  conv1: Conv2d;
  bn2: BatchNorm2d;
  conv2: Conv2d;
  drop: Dropout;
  convShortcut: Conv2d | null = null;
  readonly equalInOut: boolean;
  constructor(inPlanes: number, outPlanes: number, stride: number, dropRate: number) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outPlanes));
    this.conv2 = this.registerModule('conv2', new Conv2d(outPlanes, outPlanes, 3, { padding: 1, bias: false }));
    this.drop = new Dropout(dropRate);
    this.equalInOut = inPlanes === outPlanes;
    if (!this.equalInOut) this.convShortcut = this.registerModule('convShortcut', new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false }));
  }
  forward(x: Tensor): Tensor {
    const a = this.bn1.call(x).relu();
    let out = this.conv1.call(a);
    out = this.conv2.call(this.drop.call(this.bn2.call(out).relu()));
    return out.add(this.equalInOut ? x : this.convShortcut!.call(a));
  }
  override train(on = true): this {
    super.train(on);
    this.drop.train(on);
    return this;
  }
}

class NetworkBlock extends Module {
  layer: Sequential;
  constructor(n: number, inPlanes: number, outPlanes: number, stride: number, dropRate: number) {
    super();
    const blocks: Module[] = [];
    for (let i = 0; i < n; i++) blocks.push(new WrnBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, dropRate));
    this.layer = this.registerModule('layer', new Sequential(...blocks));
  }
  forward(x: Tensor): Tensor {
    return this.layer.call(x);
  }
}

/** WRN-depth-widen, depth = 6n + 4 (16, 28, 40). */
export class WideResNet extends Module {
  conv1: Conv2d;
  block1: NetworkBlock;
  block2: NetworkBlock;
  block3: NetworkBlock;
  bn1: BatchNorm2d;
  fc: Linear;
  constructor(readonly depth: number, readonly widen: number, numClasses = 10, dropRate = 0) {
    super();
    if ((depth - 4) % 6 !== 0) throw new Error(`wrn: depth must be 6n+4 (16, 22, 28, 40), got ${depth}`);
    const n = (depth - 4) / 6;
    const ch = [16, 16 * widen, 32 * widen, 64 * widen];
    this.conv1 = this.registerModule('conv1', new Conv2d(3, ch[0], 3, { padding: 1, bias: false }));
    this.block1 = this.registerModule('block1', new NetworkBlock(n, ch[0], ch[1], 1, dropRate));
    this.block2 = this.registerModule('block2', new NetworkBlock(n, ch[1], ch[2], 2, dropRate));
    this.block3 = this.registerModule('block3', new NetworkBlock(n, ch[2], ch[3], 2, dropRate));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(ch[3]));
    this.fc = this.registerModule('fc', new Linear(ch[3], numClasses));
  }
  forward(x: Tensor): Tensor {
    let h = this.block3.call(this.block2.call(this.block1.call(this.conv1.call(x))));
    h = this.bn1.call(h).relu();
    return this.fc.call(ops.adaptive_avg_pool2d(h, [1, 1]).flatten(1));
  }
}
