// The Tensor class: a thin wrapper over a native handle with PyTorch-style methods built on the generated ops.
import { Handle, native, setTensorClass, wrap } from './handle';
import * as ops from './ops.generated';
import { keep as keepTensor, setScopeTensorClass, track } from './scope';
import { DType, DeviceLike, MemoryFormat, Scalar, TensorLike, isDType } from './types';

/** One index in `t.index(...)`: a number selects, a slice string (`'1:3'`, `'::2'`, `':'`) or `[start, end, step]`
 * slices, `'...'` skips dimensions, `null` inserts a new axis, a Tensor (int64 or bool) indexes advanced-style. */
export type IndexSpec = number | string | null | [number | null, number | null, number?] | Tensor;

export type TypedArrayFor<D extends DType> = D extends 'float64'
  ? Float64Array
  : D extends 'int32'
    ? Int32Array
    : D extends 'int64'
      ? BigInt64Array
      : D extends 'int16'
        ? Int16Array
        : D extends 'int8'
          ? Int8Array
          : D extends 'uint8' | 'bool'
            ? Uint8Array
            : Float32Array;

function dimsArg(dims: (number | number[])[]): number[] {
  return dims.length === 1 && Array.isArray(dims[0]) ? (dims[0] as number[]) : (dims as number[]);
}

export class Tensor {
  /** @internal native handle */
  _h: Handle;
  /** @internal exempt from scopes */
  _kept = false;

  constructor(handle: Handle) {
    this._h = handle;
    track(this);
  }

  // ------------------------------------------------------------------ metadata

  get shape(): number[] {
    return native.shape(this._h);
  }
  get dtype(): DType {
    return native.dtype(this._h) as DType;
  }
  get device(): string {
    return native.meta(this._h)[2];
  }
  get ndim(): number {
    return native.shape(this._h).length;
  }
  size(dim?: number): number | number[] {
    const s = native.shape(this._h);
    if (dim === undefined) return s;
    return s[dim < 0 ? dim + s.length : dim];
  }
  numel(): number {
    return native.shape(this._h).reduce((a, b) => a * b, 1);
  }
  get isDisposed(): boolean {
    return native.isDisposed(this._h);
  }

  // ------------------------------------------------------------------ memory

  /** Releases this handle's reference to the native tensor. Storage is freed once no handle or graph uses it. */
  dispose(): void {
    native.dispose(this._h);
  }
  /** Exempts this tensor from scopes (see `tidy`). */
  keep(): this {
    return keepTensor(this);
  }

  // ------------------------------------------------------------------ autograd

  get requiresGrad(): boolean {
    return native.meta(this._h)[3];
  }
  set requiresGrad(on: boolean) {
    native.setRequiresGrad(this._h, on);
  }
  requiresGrad_(on = true): this {
    native.setRequiresGrad(this._h, on);
    return this;
  }
  /** The accumulated gradient, or null. Each access returns a new handle to the same gradient tensor. */
  get grad(): Tensor | null {
    const g = native.grad(this._h);
    return g === null ? null : wrap(g);
  }
  set grad(g: Tensor | null) {
    native.setGrad(this._h, g === null ? null : g._h);
  }
  get isLeaf(): boolean {
    return native.autogradInfo(this._h)[0];
  }
  get gradFn(): string | null {
    return native.autogradInfo(this._h)[1];
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean; inputs?: Tensor[] } = {}): void {
    native.backward(
      this._h,
      gradient ? gradient._h : null,
      opts.retainGraph,
      opts.createGraph ?? false,
      opts.inputs ? opts.inputs.map((t) => t._h) : null,
    );
  }
  detach(): Tensor {
    return ops.detach(this);
  }
  detach_(): this {
    ops.detach_(this);
    return this;
  }

  // ------------------------------------------------------------------ data out

  /** Copies the elements into a typed array matching the dtype (float16/bfloat16 come back as Float32Array). */
  data<D extends DType = DType>(): TypedArrayFor<D> {
    const dt = this.dtype;
    if (dt === 'float16' || dt === 'bfloat16') {
      const f = ops.to_dtype(this, 'float32');
      try {
        return new Float32Array(native.toBuffer(f._h)) as TypedArrayFor<D>;
      } finally {
        f.dispose();
      }
    }
    const buf = native.toBuffer(this._h);
    switch (dt) {
      case 'float32': return new Float32Array(buf) as TypedArrayFor<D>;
      case 'float64': return new Float64Array(buf) as TypedArrayFor<D>;
      case 'int32': return new Int32Array(buf) as TypedArrayFor<D>;
      case 'int64': return new BigInt64Array(buf) as TypedArrayFor<D>;
      case 'int16': return new Int16Array(buf) as TypedArrayFor<D>;
      case 'int8': return new Int8Array(buf) as TypedArrayFor<D>;
      case 'uint8':
      case 'bool': return new Uint8Array(buf) as TypedArrayFor<D>;
      default: throw new Error(`Tensor.data(): dtype ${dt} has no typed array`);
    }
  }
  /** Elements as a flat array of numbers (int64 converted with Number(); booleans as 0/1). */
  toArray(): number[] {
    const d = this.data();
    if (d instanceof BigInt64Array) return Array.from(d, (x) => Number(x));
    return Array.from(d as ArrayLike<number>);
  }
  /** Nested arrays shaped like the tensor. */
  tolist(): any {
    const flat = this.toArray();
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    let i = 0;
    const build = (d: number): any => {
      const out: any[] = [];
      for (let k = 0; k < shape[d]; k++) out.push(d === shape.length - 1 ? flat[i++] : build(d + 1));
      return out;
    };
    return build(0);
  }
  /** The single element as a number. */
  item(): number {
    return ops.item(this);
  }
  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    const [shape, dtype, device, rg] = native.meta(this._h);
    const n = shape.reduce((a, b) => a * b, 1);
    const vals = n <= 20 ? ` ${JSON.stringify(this.tolist())}` : '';
    return `Tensor(${dtype}[${shape.join(', ')}]${device !== 'cpu' ? ' on ' + device : ''}${rg ? ', requiresGrad' : ''})${vals}`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  // ------------------------------------------------------------------ conversion

  /** `to('float64')`, `to('cuda')`, `to({ device, dtype })`. Returns `this` when nothing changes. */
  to(target: DType | DeviceLike | { dtype?: DType; device?: DeviceLike; copy?: boolean }): Tensor {
    const t = typeof target === 'string' ? (isDType(target) ? { dtype: target } : { device: target }) : target;
    if (t.device !== undefined) return ops.to_device(this, t.device, t.dtype ?? this.dtype, false, t.copy ?? false);
    if (t.dtype !== undefined) return ops.to_dtype(this, t.dtype, false, t.copy ?? false);
    return this;
  }
  float(): Tensor { return this.to('float32'); }
  double(): Tensor { return this.to('float64'); }
  long(): Tensor { return this.to('int64'); }
  int(): Tensor { return this.to('int32'); }
  bool(): Tensor { return this.to('bool'); }
  half(): Tensor { return this.to('float16'); }
  cpu(): Tensor { return this.to({ device: 'cpu' }); }
  cuda(index = 0): Tensor { return this.to({ device: `cuda:${index}` }); }
  clone(): Tensor { return ops.clone(this); }
  contiguous(memoryFormat?: MemoryFormat): Tensor {
    return ops.contiguous(this, memoryFormat ? { memory_format: memoryFormat } : undefined);
  }

  // ------------------------------------------------------------------ arithmetic

  add(other: TensorLike, alpha?: Scalar): Tensor { return ops.add_Tensor(this, other, alpha === undefined ? undefined : { alpha }); }
  sub(other: TensorLike, alpha?: Scalar): Tensor { return ops.sub_Tensor(this, other, alpha === undefined ? undefined : { alpha }); }
  mul(other: TensorLike): Tensor { return ops.mul_Tensor(this, other); }
  div(other: TensorLike, roundingMode?: 'trunc' | 'floor'): Tensor {
    return roundingMode ? ops.div_Tensor_mode(this, other, { rounding_mode: roundingMode }) : ops.div_Tensor(this, other);
  }
  pow(exponent: TensorLike): Tensor {
    return typeof exponent === 'object' ? ops.pow_Tensor_Tensor(this, exponent) : ops.pow_Tensor_Scalar(this, exponent);
  }
  neg(): Tensor { return ops.neg(this); }
  abs(): Tensor { return ops.abs(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  log1p(): Tensor { return ops.log1p(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  rsqrt(): Tensor { return ops.rsqrt(this); }
  square(): Tensor { return ops.square(this); }
  sign(): Tensor { return ops.sign(this); }
  reciprocal(): Tensor { return ops.reciprocal(this); }
  remainder(other: TensorLike): Tensor { return ops.remainder_Tensor(this, other); }
  floor(): Tensor { return ops.floor(this); }
  round(): Tensor { return ops.round(this); }
  clamp(min?: number | null, max?: number | null): Tensor { return ops.clamp(this, min ?? null, max ?? null); }
  matmul(other: Tensor): Tensor { return ops.matmul(this, other); }
  mm(other: Tensor): Tensor { return ops.mm(this, other); }
  bmm(other: Tensor): Tensor { return ops.bmm(this, other); }

  add_(other: TensorLike, alpha?: Scalar): this { ops.add__Tensor(this, other, alpha === undefined ? undefined : { alpha }); return this; }
  sub_(other: TensorLike, alpha?: Scalar): this { ops.sub__Tensor(this, other, alpha === undefined ? undefined : { alpha }); return this; }
  mul_(other: TensorLike): this { ops.mul__Tensor(this, other); return this; }
  div_(other: TensorLike): this { ops.div__Tensor(this, other); return this; }
  clamp_(min?: number | null, max?: number | null): this { ops.clamp_(this, min ?? null, max ?? null); return this; }
  zero_(): this { ops.zero_(this); return this; }
  fill_(value: Scalar): this { ops.fill__Scalar(this, value); return this; }
  copy_(src: Tensor): this { ops.copy_(this, src); return this; }
  normal_(mean = 0, std = 1): this { ops.normal_(this, mean, std); return this; }
  uniform_(from = 0, to = 1): this { ops.uniform_(this, from, to); return this; }

  // ------------------------------------------------------------------ activations

  relu(): Tensor { return ops.relu(this); }
  relu_(): this { ops.relu_(this); return this; }
  sigmoid(): Tensor { return ops.sigmoid(this); }
  tanh(): Tensor { return ops.tanh(this); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return ops.gelu(this, { approximate }); }
  silu(): Tensor { return ops.silu(this); }
  softmax(dim: number): Tensor { return ops.softmax_int(this, dim); }
  logSoftmax(dim: number): Tensor { return ops.log_softmax_int(this, dim); }

  // ------------------------------------------------------------------ comparisons

  eq(other: TensorLike): Tensor { return ops.eq_Tensor(this, other); }
  ne(other: TensorLike): Tensor { return ops.ne_Tensor(this, other); }
  lt(other: TensorLike): Tensor { return ops.lt_Tensor(this, other); }
  le(other: TensorLike): Tensor { return ops.le_Tensor(this, other); }
  gt(other: TensorLike): Tensor { return ops.gt_Tensor(this, other); }
  ge(other: TensorLike): Tensor { return ops.ge_Tensor(this, other); }
  logicalNot(): Tensor { return ops.logical_not(this); }
  where(condition: Tensor, other: TensorLike): Tensor { return ops.where_self(condition, this, other); }
  maskedFill(mask: Tensor, value: Scalar): Tensor { return ops.masked_fill_Scalar(this, mask, value); }
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8): boolean { return ops.allclose(this, other, rtol, atol); }

  // ------------------------------------------------------------------ reductions

  sum(dim?: number | number[], keepdim = false): Tensor {
    return dim === undefined ? ops.sum(this) : ops.sum_dim_IntList(this, dim, keepdim);
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return dim === undefined ? ops.mean(this) : ops.mean_dim(this, dim, keepdim);
  }
  var(dim?: number | number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return ops.var_correction(this, dim ?? null, { correction: opts.correction ?? 1, keepdim: opts.keepdim ?? false });
  }
  std(dim?: number | number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return ops.std_correction(this, dim ?? null, { correction: opts.correction ?? 1, keepdim: opts.keepdim ?? false });
  }
  /** Without `dim`: the maximum element. With `dim`: `[values, indices]`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    return dim === undefined ? ops.max(this) : ops.max_dim(this, dim, keepdim);
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    return dim === undefined ? ops.min(this) : ops.min_dim(this, dim, keepdim);
  }
  argmax(dim?: number, keepdim = false): Tensor { return ops.argmax(this, dim ?? null, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return ops.argmin(this, dim ?? null, keepdim); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return ops.logsumexp(this, dim, keepdim); }
  norm(p: number = 2, dim?: number | number[], keepdim = false): Tensor {
    return dim === undefined ? ops.norm_Scalar(this, p) : ops.norm_ScalarOpt_dim(this, p, dim, keepdim);
  }

  // ------------------------------------------------------------------ shape

  view(...shape: (number | number[])[]): Tensor { return ops.view(this, dimsArg(shape)); }
  reshape(...shape: (number | number[])[]): Tensor { return ops.reshape(this, dimsArg(shape)); }
  permute(...dims: (number | number[])[]): Tensor { return ops.permute(this, dimsArg(dims)); }
  transpose(dim0: number, dim1: number): Tensor { return ops.transpose_int(this, dim0, dim1); }
  /** Transpose of a matrix (2-D), as `t()` in PyTorch. */
  t(): Tensor { return ops.t(this); }
  flatten(startDim = 0, endDim = -1): Tensor { return ops.flatten_using_ints(this, startDim, endDim); }
  unsqueeze(dim: number): Tensor { return ops.unsqueeze(this, dim); }
  squeeze(dim?: number): Tensor { return dim === undefined ? ops.squeeze(this) : ops.squeeze_dim(this, dim); }
  expand(...shape: (number | number[])[]): Tensor { return ops.expand(this, dimsArg(shape)); }
  expandAs(other: Tensor): Tensor { return ops.expand_as(this, other); }
  repeat(...sizes: (number | number[])[]): Tensor { return ops.repeat(this, dimsArg(sizes)); }
  chunk(chunks: number, dim = 0): Tensor[] { return ops.chunk(this, chunks, dim); }
  split(size: number, dim = 0): Tensor[] { return ops.split_Tensor(this, size, dim); }

  // ------------------------------------------------------------------ indexing

  select(dim: number, index: number): Tensor { return ops.select_int(this, dim, index); }
  narrow(dim: number, start: number, length: number): Tensor { return ops.narrow(this, dim, start, length); }
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return ops.slice_Tensor(this, dim, start ?? null, end ?? null, step);
  }
  indexSelect(dim: number, index: Tensor): Tensor { return ops.index_select(this, dim, index); }
  gather(dim: number, index: Tensor): Tensor { return ops.gather(this, dim, index); }
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    return typeof src === 'number' ? ops.scatter_value(this, dim, index, src) : ops.scatter_src(this, dim, index, src);
  }
  /** PyTorch-style indexing: `t.index(0, '1:3', '...', null, idxTensor)`. */
  index(...specs: IndexSpec[]): Tensor {
    return indexTensor(this, specs);
  }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return ops.topk(this, k, dim, largest, sorted);
  }
  sort(dim = -1, descending = false): [Tensor, Tensor] { return ops.sort(this, dim, descending); }
}

function parseSlice(s: string, what: string): [number | null, number | null, number] {
  const parts = s.split(':').map((p) => p.trim());
  if (parts.length < 2 || parts.length > 3) throw new Error(`Tensor.index: cannot parse slice '${what}'`);
  const num = (p: string | undefined): number | null => {
    if (p === undefined || p === '') return null;
    const v = Number(p);
    if (!Number.isInteger(v)) throw new Error(`Tensor.index: cannot parse slice '${what}'`);
    return v;
  };
  return [num(parts[0]), num(parts[1]), num(parts[2]) ?? 1];
}

function indexTensor(t: Tensor, specs: IndexSpec[]): Tensor {
  const ellipses = specs.filter((s) => s === '...').length;
  if (ellipses > 1) throw new Error("Tensor.index: at most one '...' is allowed");
  const consumes = specs.filter((s) => s !== null && s !== '...').length;
  const ndim = t.ndim;
  if (consumes > ndim) throw new Error(`Tensor.index: ${consumes} indices for a tensor of ${ndim} dimensions`);
  let cur = t;
  const temps: Tensor[] = [];
  const advanced: (Tensor | null)[] = [];
  let dim = 0;
  try {
    for (const s of specs) {
      let next: Tensor | null = null;
      if (s === '...') {
        const skip = ndim - consumes;
        for (let i = 0; i < skip; i++) advanced.push(null);
        dim += skip;
        continue;
      } else if (s === null) {
        next = cur.unsqueeze(dim);
        advanced.push(null);
        dim++;
      } else if (typeof s === 'number') {
        next = cur.select(dim, s);
      } else if (typeof s === 'string' || Array.isArray(s)) {
        const [a, b, c] = typeof s === 'string' ? parseSlice(s, s) : [s[0], s[1], s[2] ?? 1];
        next = a === null && b === null && c === 1 ? null : cur.slice(dim, a, b, c);
        advanced.push(null);
        dim++;
      } else if (s instanceof Tensor) {
        while (advanced.length < dim) advanced.push(null);
        advanced.push(s);
        dim++;
      } else throw new Error(`Tensor.index: unsupported index ${String(s)}`);
      if (next) {
        if (cur !== t) temps.push(cur);
        cur = next;
      }
    }
    if (advanced.some((a) => a !== null)) {
      while (advanced.length && advanced[advanced.length - 1] === null) advanced.pop();
      const out = ops.index_Tensor(cur, advanced);
      if (cur !== t) temps.push(cur);
      cur = out;
    }
    return cur === t ? ops.alias(t) : cur;
  } finally {
    for (const x of temps) x.dispose();
  }
}

setTensorClass(Tensor);
setScopeTensorClass(Tensor);
