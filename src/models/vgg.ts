// VGG with batch norm for CIFAR (the distillation-benchmark variant): block0..4 of conv-BN-ReLU, max-pool between
// blocks, global pooling, one linear classifier.
import { Tensor, ops } from '../torch';
import { BatchNorm2d, Conv2d, F, Linear, Module, ReLU, Sequential } from '../nn';
import { type ModelOptionShape, numClasses } from './options';

/** Options of the `vggN` models. */
export const VGG_OPTIONS: ModelOptionShape = { numClasses };

export const VGG_CONFIGS: Record<string, number[][]> = {
  vgg8: [[64], [128], [256], [512], [512]],
  vgg11: [[64], [128], [256, 256], [512, 512], [512, 512]],
  vgg13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
};

export class Vgg extends Module {
  blocks: Sequential[] = [];
  classifier: Linear;
  constructor(readonly cfg: number[][], numClasses = 10) {
    super();
    let inC = 3;
    cfg.forEach((widths, b) => {
      const layers: Module[] = [];
      for (const w of widths) {
        layers.push(new Conv2d(inC, w, 3, { padding: 1 }), new BatchNorm2d(w), new ReLU());
        inC = w;
      }
      this.blocks.push(this.registerModule(`block${b}`, new Sequential(...layers)));
    });
    this.classifier = this.registerModule('classifier', new Linear(inC, numClasses));
  }
  forward(x: Tensor): Tensor {
    let h = x;
    this.blocks.forEach((blk, i) => {
      h = blk.call(h);
      if (i < this.blocks.length - 1) h = F.maxPool2d(h, 2);
    });
    return this.classifier.call(ops.adaptive_avg_pool2d(h, [1, 1]).flatten(1));
  }
}
