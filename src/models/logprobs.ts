// Next-token log-probabilities read off a decoder for the decoding loop: shared by the project's GPT and the Hugging
// Face decoders.
import { type Tensor, noGrad, ops, tidy } from '../torch';
import type { Module } from '../nn';

/** log_softmax of the logits `fn` returns, as float64, computed in eval mode without gradients (restores the mode). */
export function readLogprobs(model: Module, fn: () => Tensor): Float64Array {
  const wasTraining = model.training;
  if (wasTraining) model.eval();
  try {
    const t = tidy(() => noGrad(() => ops.log_softmax_int(fn(), -1, 'float64')));
    const data = t.data() as Float64Array;
    t.dispose();
    return data;
  } finally {
    if (wasTraining) model.train(true);
  }
}
