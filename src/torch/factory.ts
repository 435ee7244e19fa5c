// Creating tensors: from JS data, filled, random, ranges.
import { native, wrap } from './handle';
import * as ops from './ops.generated';
import { Tensor } from './tensor';
import { DType, DeviceLike, isDType } from './types';

export interface TensorOptions {
  dtype?: DType;
  device?: DeviceLike;
  requiresGrad?: boolean;
}

type Nested = number | boolean | Nested[];
type TypedInput = Float32Array | Float64Array | Int32Array | BigInt64Array | Int16Array | Int8Array | Uint8Array;

function typedDtype(a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) return 'uint8';
  throw new TypeError(`tensor(): unsupported typed array ${a.constructor.name}`);
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  let out = t;
  if (opts.device && opts.device !== 'cpu') {
    out = t.to({ device: opts.device });
    t.dispose();
  }
  if (opts.requiresGrad) out.requiresGrad_(true);
  return out;
}

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

function flattenChecked(data: Nested, shape: number[], out: number[], depth = 0): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new Error(`tensor(): ragged nested array at depth ${depth}`);
    out.push(typeof data === 'boolean' ? (data ? 1 : 0) : data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth])
    throw new Error(`tensor(): ragged nested array: expected length ${shape[depth]} at depth ${depth}`);
  for (const d of data) flattenChecked(d, shape, out, depth + 1);
}

/**
 * A tensor from JS data. Typed arrays keep their dtype (pass `shape` to reshape them); nested number arrays are
 * float32 unless `dtype` says otherwise (JavaScript cannot tell `1` from `1.0`, so the PyTorch rule of inferring
 * int64 from integral literals would silently turn `[1.0, 2.0]` into integers); booleans give bool.
 */
export function tensor(data: Nested | TypedInput, opts: TensorOptions & { shape?: number[] } = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const src = typedDtype(data);
    const n = (data as TypedInput).length;
    const shape = opts.shape ?? [n];
    const numel = shape.reduce((a, b) => a * b, 1);
    if (numel !== n) throw new Error(`tensor(): shape [${shape.join(', ')}] holds ${numel} elements, the data has ${n}`);
    let t = wrap(native.fromBuffer(data, shape, src));
    if (opts.dtype && opts.dtype !== src) {
      const c = t.to(opts.dtype);
      t.dispose();
      t = c;
    }
    return finish(t, opts);
  }
  const inferred = inferShape(data as Nested);
  const flat: number[] = [];
  flattenChecked(data as Nested, inferred, flat);
  // `shape` reshapes nested data as it does typed arrays
  const shape = opts.shape ?? inferred;
  if (opts.shape && opts.shape.reduce((a, b) => a * b, 1) !== flat.length)
    throw new Error(`tensor(): shape [${opts.shape.join(', ')}] holds ${opts.shape.reduce((a, b) => a * b, 1)} elements, the data has ${flat.length}`);
  const isBool = shape.length === 0 ? typeof data === 'boolean' : flat.length > 0 && typeof firstLeaf(data as Nested) === 'boolean';
  const dtype = opts.dtype ?? (isBool ? 'bool' : 'float32');
  let t: Tensor;
  if (dtype === 'float32') t = wrap(native.fromBuffer(Float32Array.from(flat), shape, 'float32'));
  else if (dtype === 'float64') t = wrap(native.fromBuffer(Float64Array.from(flat), shape, 'float64'));
  else if (dtype === 'int32') t = wrap(native.fromBuffer(Int32Array.from(flat), shape, 'int32'));
  else {
    const f = wrap(native.fromBuffer(Float64Array.from(flat), shape, 'float64'));
    t = f.to(dtype);
    f.dispose();
  }
  return finish(t, opts);
}

function firstLeaf(d: Nested): number | boolean {
  let cur = d;
  while (Array.isArray(cur)) cur = cur[0];
  return cur;
}

/** A 0-d tensor holding one number. */
export function scalarTensor(value: number, opts: TensorOptions = {}): Tensor {
  return ops.scalar_tensor(value, { dtype: opts.dtype ?? 'float32', device: opts.device ?? null });
}

type ShapeArgs = (number | number[] | TensorOptions)[];
function splitShape(args: ShapeArgs): [number[], TensorOptions] {
  let opts: TensorOptions = {};
  const last = args[args.length - 1];
  if (last !== undefined && typeof last === 'object' && !Array.isArray(last)) {
    opts = last as TensorOptions;
    args = args.slice(0, -1);
  }
  const shape = args.length === 1 && Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
  for (const s of shape)
    if (!Number.isInteger(s) || s < 0) throw new Error(`invalid shape [${shape.join(', ')}]: sizes must be non-negative integers`);
  return [shape, opts];
}
function kw(opts: TensorOptions) {
  return { dtype: opts.dtype ?? 'float32', device: opts.device ?? null };
}
function grad(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export function zeros(...args: ShapeArgs): Tensor { const [s, o] = splitShape(args); return grad(ops.zeros(s, kw(o)), o); }
export function ones(...args: ShapeArgs): Tensor { const [s, o] = splitShape(args); return grad(ops.ones(s, kw(o)), o); }
export function empty(...args: ShapeArgs): Tensor { const [s, o] = splitShape(args); return grad(ops.empty_memory_format(s, kw(o)), o); }
/** Standard normal samples. */
export function randn(...args: ShapeArgs): Tensor { const [s, o] = splitShape(args); return grad(ops.randn(s, kw(o)), o); }
/** Uniform samples in [0, 1). */
export function rand(...args: ShapeArgs): Tensor { const [s, o] = splitShape(args); return grad(ops.rand(s, kw(o)), o); }
export function full(shape: number[], value: number, opts: TensorOptions = {}): Tensor {
  return grad(ops.full(shape, value, kw(opts)), opts);
}
/** Integers uniformly drawn from [low, high). */
export function randint(low: number, high: number, shape: number[], opts: TensorOptions = {}): Tensor {
  return ops.randint_low(low, high, shape, { dtype: opts.dtype ?? 'int64', device: opts.device ?? null });
}
export function randperm(n: number, opts: TensorOptions = {}): Tensor {
  return ops.randperm(n, { dtype: opts.dtype ?? 'int64', device: opts.device ?? null });
}
/** `arange(end)` or `arange(start, end, step)`; int64 when all arguments are integers, as in PyTorch. */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const dtype = opts.dtype ?? ([start, end, step].every(Number.isInteger) ? 'int64' : 'float32');
  return ops.arange_start_step(start, end, step, { dtype, device: opts.device ?? null });
}
export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  return ops.linspace(start, end, steps, kw(opts));
}
export function eye(n: number, opts: TensorOptions = {}): Tensor {
  return ops.eye(n, kw(opts));
}
export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return ops.zeros_like(t, { dtype: opts.dtype ?? null, device: opts.device ?? null });
}
export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return ops.ones_like(t, { dtype: opts.dtype ?? null, device: opts.device ?? null });
}
export function randnLike(t: Tensor): Tensor {
  return ops.randn_like(t);
}
export function fullLike(t: Tensor, value: number): Tensor {
  return ops.full_like(t, value);
}
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return ops.cat(tensors, dim);
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return ops.stack(tensors, dim);
}
export function where(condition: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  return ops.where_self(condition, a, b);
}

export { isDType };
