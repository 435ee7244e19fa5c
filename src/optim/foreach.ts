// In-place multi-tensor arithmetic with a number, for the optimizers' inner loops.
//
// libtorch's `_foreach_*_.Scalar` ops on CPU run one `mul_(Scalar)` (etc.) per tensor, and each of those turns the
// number into a float64 "wrapped number" tensor that TensorIterator then copies into the tensor's dtype: about
// 1 µs of allocation per tensor per op. Passing instead one 0-dim tensor already in the tensor's dtype to the
// `_foreach_*_.List` op takes the same kernel with the same operand value (for float32, the double rounded once to
// float, as the cast does), without those copies. Only float32 and float64 CPU tensors take this route; anything
// else (CUDA, where the Scalar ops have a fused kernel; half precision, where rounding twice could differ) uses the
// Scalar op. The 0-dim tensors are created in the current scope: call these inside `tidy`.
import { Tensor, cuda, ops, scalarTensor } from '../torch';

let cudaPossible: boolean | undefined;

/** `v` as a 0-dim CPU tensor per entry of `ts` in that entry's dtype, or null where the Scalar op must be used. */
function operands(ts: Tensor[], v: number): Tensor[] | null {
  if (cudaPossible === undefined) cudaPossible = cuda.isAvailable();
  let s32: Tensor | undefined;
  let s64: Tensor | undefined;
  const out = new Array<Tensor>(ts.length);
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    if (cudaPossible && t.device !== 'cpu') return null;
    const dt = t.dtype;
    if (dt === 'float32') out[i] = s32 ??= scalarTensor(v, { dtype: 'float32' });
    else if (dt === 'float64') out[i] = s64 ??= scalarTensor(v, { dtype: 'float64' });
    else return null;
  }
  return out;
}

/** `t *= v` for every tensor of `ts`. */
export function mulScalar_(ts: Tensor[], v: number): void {
  const s = operands(ts, v);
  if (s) ops._foreach_mul__List(ts, s);
  else ops._foreach_mul__Scalar(ts, v);
}

/** `t += v` for every tensor of `ts`. */
export function addScalar_(ts: Tensor[], v: number): void {
  const s = operands(ts, v);
  if (s) ops._foreach_add__List(ts, s);
  else ops._foreach_add__Scalar(ts, v);
}

/** `t /= v` for every tensor of `ts`. */
export function divScalar_(ts: Tensor[], v: number): void {
  const s = operands(ts, v);
  if (s) ops._foreach_div__List(ts, s);
  else ops._foreach_div__Scalar(ts, v);
}
