// What a candidate costs to deploy, measured before it is trained (none of it depends on the weights' values): the
// size of its int8 QDQ ONNX model, and its latency at batch 1 in onnxruntime. Latency in libtorch is compare's
// measurement (timeForward in run/compare.ts).
import type * as ort from 'onnxruntime-node';
import { type Tensor, getNumThreads } from '../torch';
import type { Module } from '../nn';
import { toOnnx, toOnnxInt8 } from '../export';

const runtime = (): typeof ort => require('onnxruntime-node');

/**
 * Bytes of the model's int8 QDQ ONNX model (post-training quantization, ranges calibrated on `calibration`, a batch of
 * preprocessed float32 inputs: the ranges change the stored scales, not the size).
 */
export async function int8Bytes(model: Module, inputShape: number[], calibration: Tensor): Promise<number> {
  model.eval();
  const { info } = await toOnnxInt8(model, { inputShape, calibration: [calibration] });
  return info.bytes;
}

/**
 * Latency (ms) at batch 1 of the model exported to ONNX (fp32) and run by onnxruntime on the CPU with libtorch's
 * thread count: the median of 200 runs after 20 warm-up runs, as timeForward measures libtorch.
 */
export async function onnxLatencyMs(model: Module, input: { shape: number[]; dtype: 'float32' | 'int64'; data: Float32Array | BigInt64Array }): Promise<number> {
  model.eval();
  const { bytes } = toOnnx(model, { inputShape: input.shape, inputDtype: input.dtype, batchSize: 1 });
  const rt = runtime();
  const session = await rt.InferenceSession.create(bytes, { intraOpNumThreads: getNumThreads().torch, interOpNumThreads: 1, executionMode: 'sequential' });
  try {
    const feeds = { [session.inputNames[0]]: new rt.Tensor(input.dtype, input.data, [1, ...input.shape]) };
    const lat: number[] = [];
    for (let i = 0; i < 220; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      if (i >= 20) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    lat.sort((a, b) => a - b);
    return lat[Math.floor(lat.length / 2)];
  } finally {
    await session.release();
  }
}
