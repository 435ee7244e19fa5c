// DAFL's image generator (Chen et al. 2019, the authors' DAFL-train.py): noise z → linear to width×(H/4)×(W/4) →
// BatchNorm → ×2 nearest upsampling → conv3×3 → BatchNorm(eps 0.8) → LeakyReLU(0.2) → ×2 upsampling → conv3×3 to
// width/2 → BatchNorm(eps 0.8) → LeakyReLU(0.2) → conv3×3 to C → tanh → BatchNorm without affine parameters. The last
// BatchNorm puts every generated batch on zero mean and unit variance per channel, as normalised data is. The
// BatchNorms' eps of 0.8 is the reference code's (`nn.BatchNorm2d(128, 0.8)` passes 0.8 as eps) and is kept.
import { z } from 'zod';
import { Tensor, ops } from '../torch';
import { BatchNorm2d, Conv2d, F, Linear, Module } from '../nn';
import type { ModelOptionShape } from './options';

/** Options of `dafl-generator`. */
export const DAFL_GENERATOR_OPTIONS: ModelOptionShape = {
  /** Length of the noise vector z (default 100). */
  latentDim: z.number().int().positive(),
  /** [C, H, W] of the images (default [1, 28, 28]); H and W divisible by 4. */
  imageShape: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
  /** Channels of the first convolutions (default 128, the reference's; the last hidden one has half). */
  width: z.number().int().min(2),
};

export interface DaflGeneratorOptions {
  latentDim?: number;
  imageShape?: [number, number, number];
  width?: number;
}

export class DaflGenerator extends Module {
  readonly latentDim: number;
  readonly imageShape: [number, number, number];
  readonly width: number;
  l1: Linear;
  bn0: BatchNorm2d;
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  conv3: Conv2d;
  bn3: BatchNorm2d;
  constructor(o: DaflGeneratorOptions = {}) {
    super();
    this.latentDim = o.latentDim ?? 100;
    this.imageShape = o.imageShape ?? [1, 28, 28];
    this.width = o.width ?? 128;
    const [c, h, w] = this.imageShape;
    if (h % 4 || w % 4) throw new Error(`dafl-generator: imageShape [${this.imageShape.join(', ')}]: H and W must be divisible by 4 (two ×2 upsamplings)`);
    const wd = this.width;
    this.l1 = this.registerModule('l1', new Linear(this.latentDim, wd * (h / 4) * (w / 4)));
    this.bn0 = this.registerModule('bn0', new BatchNorm2d(wd));
    this.conv1 = this.registerModule('conv1', new Conv2d(wd, wd, 3, { padding: 1 }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(wd, { eps: 0.8 }));
    this.conv2 = this.registerModule('conv2', new Conv2d(wd, wd >> 1, 3, { padding: 1 }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(wd >> 1, { eps: 0.8 }));
    this.conv3 = this.registerModule('conv3', new Conv2d(wd >> 1, c, 3, { padding: 1 }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(c, { affine: false }));
  }
  forward(z: Tensor): Tensor {
    if (z.ndim !== 2 || z.shape[1] !== this.latentDim)
      throw new Error(`dafl-generator: expects noise [batch, ${this.latentDim}], got [${z.shape.join(', ')}]`);
    const [, h, w] = this.imageShape;
    const up = (x: Tensor) => ops.upsample_nearest2d(x, [x.shape[2] * 2, x.shape[3] * 2]);
    let x = this.l1.call(z).view([z.shape[0], this.width, h / 4, w / 4]);
    x = up(this.bn0.call(x) as Tensor);
    x = F.leakyRelu(this.bn1.call(this.conv1.call(x)) as Tensor, 0.2);
    x = up(x);
    x = F.leakyRelu(this.bn2.call(this.conv2.call(x)) as Tensor, 0.2);
    return this.bn3.call(F.tanh(this.conv3.call(x) as Tensor)) as Tensor;
  }
}
