import type { Tensor } from './tensor';

/** Element types, named as in PyTorch (`torch.float32` is `'float32'`). */
export type DType =
  | 'float32' | 'float64' | 'float16' | 'bfloat16'
  | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool'
  | 'complex64' | 'complex128';
/** `'cpu'`, `'cuda'`, `'cuda:1'`. */
export type DeviceLike = 'cpu' | 'cuda' | `cuda:${number}` | (string & {});
export type Layout = 'strided' | 'sparse_coo';
export type MemoryFormat = 'contiguous' | 'channels_last' | 'channels_last_3d' | 'preserve';
/** A Python-style scalar: integral numbers become int64, others float64, as PyTorch does for Python numbers. */
export type Scalar = number | boolean;
/** Where an op takes a Tensor, a plain number is accepted and treated as a PyTorch "wrapped number". */
export type TensorLike = Tensor | number | boolean;

export const DTYPES: readonly DType[] = [
  'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool', 'complex64', 'complex128',
];
export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
}
export function isFloatingDType(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';
}
