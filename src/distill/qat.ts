// Quantization-aware training of a student: fake quantizers attached where the int8 export quantizes, their ranges
// set on a few batches of training data before training starts (then tracked while training).
import { nextTick, noGrad, tidy } from '../torch';
import { Module } from '../nn';
import { BatchTransform, DataLoader, ImageDataset } from '../data';
import { prepareQuantAware, setQuantObserving } from '../export';

export interface QatOptions {
  observer: 'ema' | 'minmax' | 'percentile';
  momentum: number;
  calibrationBatches: number;
}

/**
 * Prepares `model` for quantization-aware training (see prepareQuantAware) and calibrates its activation ranges on
 * the first `calibrationBatches` batches of `data` (in order, with the deterministic `transforms`).
 */
export async function prepareQat(
  model: Module, o: QatOptions, data: ImageDataset, inputShape: number[], transforms: BatchTransform[], batchSize: number, log?: (line: string) => void,
): Promise<void> {
  const { layers, quantizers } = prepareQuantAware(model, { inputShape, observer: { method: o.observer, momentum: o.momentum } });
  const loader = new DataLoader(data, { batchSize, shuffle: false, seed: 0, transforms: transforms.filter((t) => !t.random) });
  const was = model.training;
  model.eval();
  setQuantObserving(model, 'always');
  let n = 0;
  try {
    for (const b of loader) {
      if (n >= o.calibrationBatches) {
        b.dispose();
        break;
      }
      try {
        tidy(() => noGrad(() => model.call(b.x)));
      } finally {
        b.dispose();
      }
      n++;
      await nextTick();
    }
  } finally {
    setQuantObserving(model, 'train');
    model.train(was);
  }
  log?.(`quantization-aware training: ${layers} layers, ${quantizers} activation quantizers, ranges calibrated on ${n} batches`);
}
