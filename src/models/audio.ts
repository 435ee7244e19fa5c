// A small CNN over spectrograms [B, 1, mels, frames] (log-mel features of spoken words): three blocks of
// conv 3×3 → BatchNorm → ReLU, the first two followed by 2×2 max-pooling, then the mean over time and frequency and a
// linear layer. Any input size of at least 4×4 works (the pooling at the end is global). Taps: block1 … block3 (after
// each block's ReLU and pooling), pool, logits.
import { z } from 'zod';
import { Tensor, chain } from '../torch';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential } from '../nn';
import { type ModelOptionShape, numClasses } from './options';

/** Options of `audio-cnn`: `width` channels in the first block (doubled in each later one; default 8), `inChannels` (default 1). */
export const AUDIO_CNN_OPTIONS: ModelOptionShape = { numClasses, width: z.number().int().positive(), inChannels: z.number().int().positive() };

export interface AudioCnnOptions {
  numClasses?: number;
  width?: number;
  inChannels?: number;
}

function block(cin: number, cout: number, pool: boolean): Sequential {
  return new Sequential(new Conv2d(cin, cout, 3, { padding: 1, bias: false }), new BatchNorm2d(cout), new ReLU(), ...(pool ? [new MaxPool2d(2)] : []));
}

export class AudioCnn extends Module {
  readonly block1: Sequential;
  readonly block2: Sequential;
  readonly block3: Sequential;
  readonly pool = this.registerModule('pool', new Sequential(new AdaptiveAvgPool2d(1), new Flatten()));
  readonly fc: Linear;
  constructor(readonly opts: AudioCnnOptions = {}) {
    super();
    const w = opts.width ?? 8, nc = opts.numClasses ?? 10, cin = opts.inChannels ?? 1;
    for (const [k, v] of Object.entries({ width: w, numClasses: nc, inChannels: cin }))
      if (!Number.isInteger(v) || v < 1) throw new Error(`audio-cnn: ${k} must be a positive integer, got ${v}`);
    this.block1 = this.registerModule('block1', block(cin, w, true));
    this.block2 = this.registerModule('block2', block(w, 2 * w, true));
    this.block3 = this.registerModule('block3', block(2 * w, 4 * w, false));
    this.fc = this.registerModule('fc', new Linear(4 * w, nc));
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[2] < 4 || x.shape[3] < 4)
      throw new Error(`audio-cnn: input must be spectrograms [B, ${this.opts.inChannels ?? 1}, mels, frames] with mels, frames >= 4, got [${x.shape}]`);
    return chain(x, [(t) => this.block1.call(t), (t) => this.block2.call(t), (t) => this.block3.call(t), (t) => this.pool.call(t), (t) => this.fc.call(t)]);
  }
}
