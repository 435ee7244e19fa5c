// MobileNetV2 (Sandler et al. 2018) with torchvision's module names, so that its state_dict loads here unchanged:
// features.0 (stem conv-BN-ReLU6), features.1..17 (inverted residual blocks, each `.conv` = [expand 1×1 conv-BN-ReLU6,]
// depthwise 3×3 conv-BN-ReLU6, linear 1×1 conv, BN), features.18 (1×1 conv-BN-ReLU6 to `lastChannel`), then global
// average pooling and classifier.0 (dropout) / classifier.1 (linear). `width` scales every channel count, rounded to a
// multiple of 8 as torchvision does (width 0.5: the distillation benchmarks' MobileNetV2 student).
import { z } from 'zod';
import { Tensor, ops } from '../torch';
import { BatchNorm2d, Conv2d, Dropout, Linear, Module, ReLU6, Sequential, init } from '../nn';
import { type ModelOptionShape, numClasses, probability } from './options';

/** Options of `mobilenetv2` and `mobilenetv2-0.5` (see MobileNetV2Options). */
export const MOBILENETV2_OPTIONS: ModelOptionShape = {
  numClasses, width: z.number().positive(), inChannels: z.number().int().positive(), smallInput: z.boolean(), dropout: probability,
};

export interface MobileNetV2Options {
  /** Channel multiplier; default 1. */
  width?: number;
  numClasses?: number;
  /** Input channels; default 3. */
  inChannels?: number;
  /**
   * For small images (32×32 CIFAR, 28×28 MNIST): the stem and the second stage keep stride 1, so the last feature map
   * is 4×4 at 32×32 instead of 1×1. Parameter names and shapes do not change. Default false (ImageNet strides).
   */
  smallInput?: boolean;
  /** Dropout before the classifier; default 0.2 as torchvision. */
  dropout?: number;
}

/** torchvision's `_make_divisible`: the nearest multiple of `divisor`, never below it and never 10 % below `v`. */
export function makeDivisible(v: number, divisor = 8): number {
  let n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

function convBnAct(inC: number, outC: number, kernel: number, stride: number, groups = 1): Sequential {
  return new Sequential(
    new Conv2d(inC, outC, kernel, { stride, padding: (kernel - 1) / 2, groups, bias: false }),
    new BatchNorm2d(outC),
    new ReLU6(),
  );
}

export class InvertedResidual extends Module {
  conv: Sequential;
  readonly useResidual: boolean;
  constructor(readonly inC: number, readonly outC: number, readonly stride: number, readonly expandRatio: number) {
    super();
    if (stride !== 1 && stride !== 2) throw new Error(`InvertedResidual: stride must be 1 or 2, got ${stride}`);
    const hidden = Math.round(inC * expandRatio);
    this.useResidual = stride === 1 && inC === outC;
    const layers: Module[] = [];
    if (expandRatio !== 1) layers.push(convBnAct(inC, hidden, 1, 1));
    layers.push(convBnAct(hidden, hidden, 3, stride, hidden), new Conv2d(hidden, outC, 1, { bias: false }), new BatchNorm2d(outC));
    this.conv = this.registerModule('conv', new Sequential(...layers));
  }
  forward(x: Tensor): Tensor {
    // module outputs are left to the caller's scope: forward hooks may hold them
    return this.useResidual ? x.add(this.conv.call(x)) : this.conv.call(x);
  }
}

/** [expansion t, channels c, repeats n, first stride s] per stage, from the paper's Table 2. */
const SETTINGS: [number, number, number, number][] = [
  [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
];

export class MobileNetV2 extends Module {
  features: Sequential;
  classifier: Sequential;
  readonly width: number;
  readonly lastChannel: number;
  constructor(opts: MobileNetV2Options = {}) {
    super();
    const width = (this.width = opts.width ?? 1);
    const numClasses = opts.numClasses ?? 10;
    const dropout = opts.dropout ?? 0.2;
    if (!(width > 0 && Number.isFinite(width))) throw new Error(`mobilenetv2: width must be a positive number, got ${width}`);
    if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`mobilenetv2: numClasses must be a positive integer, got ${numClasses}`);
    const small = opts.smallInput ?? false;
    let inC = makeDivisible(32 * width);
    this.lastChannel = makeDivisible(1280 * Math.max(1, width));
    const layers: Module[] = [convBnAct(opts.inChannels ?? 3, inC, 3, small ? 1 : 2)];
    SETTINGS.forEach(([t, c, n, s], stage) => {
      const outC = makeDivisible(c * width);
      const first = small && stage === 1 ? 1 : s;
      for (let i = 0; i < n; i++) {
        layers.push(new InvertedResidual(inC, outC, i === 0 ? first : 1, t));
        inC = outC;
      }
    });
    layers.push(convBnAct(inC, this.lastChannel, 1, 1));
    this.features = this.registerModule('features', new Sequential(...layers));
    this.classifier = this.registerModule('classifier', new Sequential(new Dropout(dropout), new Linear(this.lastChannel, numClasses)));
    // torchvision's initialisation
    for (const m of this.modules()) {
      if (m instanceof Conv2d) {
        init.kaimingNormal_(m.weight, { mode: 'fan_out' });
        if (m.bias) init.zeros_(m.bias);
      } else if (m instanceof BatchNorm2d) {
        if (m.weight) init.ones_(m.weight);
        if (m.bias) init.zeros_(m.bias);
      } else if (m instanceof Linear) {
        init.normal_(m.weight, 0, 0.01);
        if (m.bias) init.zeros_(m.bias);
      }
    }
  }
  forward(x: Tensor): Tensor {
    return this.classifier.call(ops.adaptive_avg_pool2d(this.features.call(x), [1, 1]).flatten(1));
  }
}
