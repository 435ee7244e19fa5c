// Symbolic functions: how each recorded aten op is written as ONNX operators (the ONNX tracer is nn/onnx.ts). One
// entry per aten op (every overload) or per `op.overload`; an in-place op (`relu_`, `add_`) maps like its
// out-of-place form. Each function reads the call's arguments by their schema names through the context and returns
// the op's output value(s). The recorded output types are the truth: inputs are cast to them where ONNX, which does
// not promote types, needs it; sizes come from the recorded shapes, so a batch-dependent size becomes a computed one.
import type { Dim, OnnxAttr, OnnxDType, OnnxValue, SymbolicContext } from './onnx';

export interface OnnxSymbolic {
  fn: (g: SymbolicContext) => OnnxValue | (OnnxValue | null)[];
  /** Non-tensor arguments that may differ between the traces at two batch sizes (the function uses recorded shapes). */
  dynamicArgs?: string[];
}

/** The built-in table, by `aten::name` or `aten::name.overload`. */
export const BUILTIN_SYMBOLICS = new Map<string, OnnxSymbolic>();

function def(names: string | string[], fn: OnnxSymbolic['fn'], dynamicArgs?: string[]): void {
  for (const n of Array.isArray(names) ? names : [names]) BUILTIN_SYMBOLICS.set(`aten::${n}`, { fn, dynamicArgs });
}

const INT64_MAX = 9223372036854775807n;
const isFloat = (d: OnnxDType) => d === 'float32' || d === 'float64';
const shapeStr = (s: Dim[]) => `[${s.join(', ')}]`;

/** A dimension index in [0, rank). */
function axis(g: SymbolicContext, d: number, rank: number): number {
  const a = d < 0 ? d + rank : d;
  if (a < 0 || a >= Math.max(rank, 1)) g.fail(`dimension ${d} is out of range for rank ${rank}`);
  return a;
}

/** The type two operands meet at for a comparison (ONNX compares equal types only). */
function common(g: SymbolicContext, a: string, b: string): OnnxDType {
  const ta = g.dtype(a), tb = g.dtype(b);
  const sa = g.isScalar(a), sb = g.isScalar(b);
  if (sa && !sb) return isFloat(ta) && !isFloat(tb) ? 'float32' : tb;
  if (sb && !sa) return isFloat(tb) && !isFloat(ta) ? 'float32' : ta;
  if (ta === tb) return ta;
  if (ta === 'float64' || tb === 'float64') return 'float64';
  if (isFloat(ta) || isFloat(tb)) return 'float32';
  return 'int64';
}

/** The tensor argument `name` as the op's output type. */
const asOut = (g: SymbolicContext, name: string, i = 0): OnnxValue => g.cast(g.input(name, g.out(i).dtype), g.out(i).dtype);

/** A reduction over `axes` (null: all): ReduceSum takes axes as an input from opset 13, the others from opset 18. */
function reduce(g: SymbolicContext, op: string, x: OnnxValue, axes: number[] | null, keepdims: boolean): OnnxValue {
  const attrs: Record<string, OnnxAttr> = { keepdims: keepdims ? 1 : 0 };
  if (axes === null || axes.length === 0) return g.node(op, [x], attrs);
  if (op === 'ReduceSum' || g.opset >= 18) return g.node(op, [x, g.ints(axes, 'axes')], attrs);
  return g.node(op, [x], { ...attrs, axes });
}

function dimsArg(g: SymbolicContext, name: string, rank: number): number[] | null {
  const d = g.arg<number[] | number | null>(name);
  if (d === null || (Array.isArray(d) && d.length === 0)) return null;
  return (Array.isArray(d) ? d : [d]).map((x) => axis(g, x, rank));
}

// ---------------------------------------------------------------------------------------------------- pass-through

def(['alias', 'contiguous', 'clone', 'detach', 'lift_fresh', 'positive', 'resolve_conj', 'resolve_neg'], (g) => g.input('self'));
def(['dropout', 'feature_dropout', 'alpha_dropout', 'feature_alpha_dropout'], (g) => {
  if (g.arg('train')) g.fail('dropout in training mode (train = true) has no inference graph; pass training: this.training (Dropout modules do)');
  return g.input('input');
});
def(['to.dtype', 'to.device', 'to.dtype_layout', 'to.other', '_to_copy', 'type_as'], (g) => asOut(g, 'self'));

// ---------------------------------------------------------------------------------------------------- arithmetic

/** self ± alpha·other; reversed (rsub): other − alpha·self. */
function addSub(op: 'Add' | 'Sub', reversed = false) {
  return (g: SymbolicContext) => {
    const alpha = g.arg<number>('alpha');
    const scaled = (v: OnnxValue) => (alpha === 1 ? v : g.node('Mul', [v, g.scalar(alpha, g.out().dtype, 'alpha')]));
    const x = asOut(g, 'self'), y = asOut(g, 'other');
    return reversed ? g.node('Sub', [y, scaled(x)]) : g.node(op, [x, scaled(y)]);
  };
}
def(['add.Tensor', 'add.Scalar'], addSub('Add'));
def(['sub.Tensor', 'sub.Scalar'], addSub('Sub'));
def(['rsub.Tensor', 'rsub.Scalar'], addSub('Sub', true));
def(['mul.Tensor', 'mul.Scalar'], (g) => g.node('Mul', [asOut(g, 'self'), asOut(g, 'other')]));
def(['div.Tensor', 'div.Scalar', 'div.Tensor_mode', 'div.Scalar_mode'], (g) => {
  const mode = g.overload.endsWith('_mode') ? g.arg<string | null>('rounding_mode') : null;
  const q = g.node('Div', [asOut(g, 'self'), asOut(g, 'other')]);
  if (mode === null) return q;
  if (mode === 'floor' && isFloat(g.out().dtype)) return g.node('Floor', [q]);
  return g.fail(`division with rounding_mode '${mode}' on ${g.out().dtype} is not supported`);
});
def(['pow.Tensor_Scalar', 'pow.Tensor_Tensor', 'pow.Scalar'], (g) => g.node('Pow', [asOut(g, 'self'), asOut(g, 'exponent')]));

// ---------------------------------------------------------------------------------------------------- comparisons, logic, selection

function compare(op: string, negate = false) {
  return (g: SymbolicContext) => {
    const t = common(g, 'self', 'other');
    const y = g.node(op, [g.cast(g.input('self', t), t), g.cast(g.input('other', t), t)], {}, { dtype: 'bool' });
    return negate ? g.node('Not', [y], {}, { dtype: 'bool' }) : y;
  };
}
for (const ov of ['Tensor', 'Scalar']) {
  def(`eq.${ov}`, compare('Equal'));
  def(`ne.${ov}`, compare('Equal', true));
  def(`lt.${ov}`, compare('Less'));
  def(`le.${ov}`, compare('LessOrEqual'));
  def(`gt.${ov}`, compare('Greater'));
  def(`ge.${ov}`, compare('GreaterOrEqual'));
}
def('logical_not', (g) => g.node('Not', [g.cast(g.input('self'), 'bool')], {}, { dtype: 'bool' }));
def('bitwise_not', (g) => {
  if (g.dtype('self') !== 'bool') g.fail(`bitwise_not of ${g.dtype('self')} is not supported (only bool)`);
  return g.node('Not', [g.input('self')]);
});
for (const [name, op] of [['logical_and', 'And'], ['logical_or', 'Or'], ['logical_xor', 'Xor']])
  def(name, (g) => g.node(op, [g.cast(g.input('self'), 'bool'), g.cast(g.input('other'), 'bool')], {}, { dtype: 'bool' }));
def(['where.self', 'where.ScalarSelf', 'where.ScalarOther', 'where.Scalar'], (g) =>
  g.node('Where', [g.cast(g.input('condition'), 'bool'), asOut(g, 'self'), asOut(g, 'other')]));
def(['masked_fill.Scalar', 'masked_fill.Tensor'], (g) =>
  g.node('Where', [g.cast(g.input('mask'), 'bool'), asOut(g, 'value'), asOut(g, 'self')]));

// ---------------------------------------------------------------------------------------------------- unary and activations

const unary: [string, string][] = [
  ['relu', 'Relu'], ['sigmoid', 'Sigmoid'], ['tanh', 'Tanh'], ['exp', 'Exp'], ['log', 'Log'], ['sqrt', 'Sqrt'], ['abs', 'Abs'],
  ['neg', 'Neg'], ['reciprocal', 'Reciprocal'], ['floor', 'Floor'], ['ceil', 'Ceil'], ['round', 'Round'], ['sign', 'Sign'],
  ['erf', 'Erf'], ['sin', 'Sin'], ['cos', 'Cos'], ['tan', 'Tan'], ['atan', 'Atan'], ['asin', 'Asin'], ['acos', 'Acos'],
  ['sinh', 'Sinh'], ['cosh', 'Cosh'], ['hardswish', 'HardSwish'], ['softsign', 'Softsign'],
];
for (const [name, op] of unary) def(name, (g) => g.node(op, [asOut(g, 'self')]));
def('rsqrt', (g) => g.node('Reciprocal', [g.node('Sqrt', [asOut(g, 'self')])]));
def('square', (g) => {
  const x = asOut(g, 'self');
  return g.node('Mul', [x, x]);
});
def('log1p', (g) => g.node('Log', [g.node('Add', [asOut(g, 'self'), g.scalar(1, g.out().dtype)])]));
def('expm1', (g) => g.node('Sub', [g.node('Exp', [asOut(g, 'self')]), g.scalar(1, g.out().dtype)]));
def('silu', (g) => {
  const x = g.input('self');
  return g.node('Mul', [x, g.node('Sigmoid', [x])]);
});
def('mish', (g) => {
  const x = g.input('self');
  return g.node('Mul', [x, g.node('Tanh', [g.node('Softplus', [x])])]);
});
def('gelu', (g) => {
  const x = g.input('self');
  const c = (v: number, hint: string) => g.scalar(v, x.dtype, hint);
  let inner: OnnxValue;
  if (g.arg<string>('approximate') === 'tanh') {
    const cube = g.node('Mul', [g.node('Mul', [x, x]), x]);
    const s = g.node('Add', [x, g.node('Mul', [cube, c(0.044715, 'gelu_c')])]);
    inner = g.node('Tanh', [g.node('Mul', [s, c(Math.sqrt(2 / Math.PI), 'sqrt_2_over_pi')])]);
  } else inner = g.node('Erf', [g.node('Mul', [x, c(Math.SQRT1_2, 'inv_sqrt2')])]);
  return g.node('Mul', [g.node('Mul', [x, g.node('Add', [inner, c(1, 'one')])]), c(0.5, 'half')]);
});
function clip(g: SymbolicContext, lo: number | null, hi: number | null): OnnxValue {
  const x = g.input('self');
  return g.node('Clip', [x, lo === null ? null : g.scalar(lo, x.dtype, 'clip_min'), hi === null ? null : g.scalar(hi, x.dtype, 'clip_max')]);
}
def('hardtanh', (g) => clip(g, g.arg('min_val'), g.arg('max_val')));
def('relu6', (g) => clip(g, 0, 6));
def('clamp', (g) => clip(g, g.arg('min'), g.arg('max')));
def('clamp_min', (g) => clip(g, g.arg('min'), null));
def('clamp_max', (g) => clip(g, null, g.arg('max')));
def('leaky_relu', (g) => g.node('LeakyRelu', [g.input('self')], { alpha: { float: g.arg('negative_slope') } }));
def('elu', (g) => {
  if (g.arg('scale') !== 1 || g.arg('input_scale') !== 1) g.fail('elu with scale or input_scale other than 1 is not supported');
  return g.node('Elu', [g.input('self')], { alpha: { float: g.arg('alpha') } });
});
def('selu', (g) => g.node('Selu', [g.input('self')]));
def('softplus', (g) => {
  const x = g.input('self');
  const beta = g.arg<number>('beta');
  if (beta === 1) return g.node('Softplus', [x]);
  const b = g.scalar(beta, x.dtype, 'beta');
  return g.node('Div', [g.node('Softplus', [g.node('Mul', [x, b])]), b]);
});
def('hardsigmoid', (g) => g.node('HardSigmoid', [g.input('self')], { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }));
def('log_sigmoid', (g) => g.node('Neg', [g.node('Softplus', [g.node('Neg', [g.input('self')])])]));
def(['softmax.int', '_softmax'], (g) => g.node('Softmax', [asOut(g, 'self')], { axis: g.arg('dim') }));
def(['log_softmax.int', '_log_softmax'], (g) => g.node('LogSoftmax', [asOut(g, 'self')], { axis: g.arg('dim') }));

// ---------------------------------------------------------------------------------------------------- linear algebra

def(['matmul', 'mm', 'bmm'], (g) => g.node('MatMul', [g.input('self'), g.input(g.op === 'aten::matmul' ? 'other' : 'mat2')]));
def('linear', (g) => {
  const x = g.input('input');
  const rank = g.shape('input').length;
  const w = g.input('weight');
  const b = g.has('bias') ? g.input('bias') : null;
  // Gemm for 2-D input (the weight stays [out, in]); MatMul with the transposed weight (+ Add) otherwise
  if (rank === 2) return g.node('Gemm', [x, w, b], { transB: 1 });
  let wt: OnnxValue;
  if (g.isConstant('weight')) {
    const c = g.constant('weight');
    const [outF, inF] = c.shape;
    const src = c.data as Float32Array;
    const data = new (src.constructor as Float32ArrayConstructor)(src.length);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) data[i * outF + o] = src[o * inF + i];
    wt = g.constNamed(`${c.value.name}_t`, data, [inF, outF], c.dtype);
  } else wt = g.node('Transpose', [w], { perm: [1, 0] }, { shape: [...g.shape('weight')].reverse() });
  const y = g.node('MatMul', [x, wt]);
  return b ? g.node('Add', [y, b]) : y;
});
def('addmm', (g) => {
  const attrs: Record<string, OnnxAttr> = {};
  if (g.arg('alpha') !== 1) attrs.alpha = { float: g.arg('alpha') };
  if (g.arg('beta') !== 1) attrs.beta = { float: g.arg('beta') };
  return g.node('Gemm', [g.input('mat1'), g.input('mat2'), asOut(g, 'self')], attrs);
});

// ---------------------------------------------------------------------------------------------------- convolution and normalisation

function conv(g: SymbolicContext, padding: number[] | string): OnnxValue {
  const w = g.shape('weight') as number[];
  const n = w.length - 2;
  const k = w.slice(2);
  if (g.shape('input').length !== n + 2) g.fail(`an unbatched input (shape ${shapeStr(g.shape('input'))}) is not supported; add the batch dimension`);
  const stride = g.arg<number[]>('stride'), dilation = g.arg<number[]>('dilation');
  let pads: number[];
  if (padding === 'valid') pads = Array(2 * n).fill(0);
  else if (padding === 'same') {
    // PyTorch puts the odd element of the padding at the end
    const total = k.map((kk, i) => dilation[i] * (kk - 1));
    pads = [...total.map((t) => Math.floor(t / 2)), ...total.map((t) => t - Math.floor(t / 2))];
  } else if (Array.isArray(padding)) pads = [...padding, ...padding];
  else g.fail(`padding '${padding}' is not supported`);
  const b = g.has('bias') ? g.input('bias') : null;
  return g.node('Conv', [g.input('input'), g.input('weight'), b], { kernel_shape: k, strides: stride, pads, dilations: dilation, group: g.arg('groups') });
}
def(['conv1d', 'conv2d', 'conv3d', 'conv1d.padding', 'conv2d.padding', 'conv3d.padding'], (g) => conv(g, g.arg('padding')));
def('convolution', (g) => {
  if (g.arg('transposed')) g.fail('transposed convolution is not supported');
  return conv(g, g.arg('padding'));
});
def('batch_norm', (g) => {
  if (g.arg('training') || !g.has('running_mean') || !g.has('running_var'))
    g.fail('batch normalisation with batch statistics (training mode, or a BatchNorm without running statistics: trackRunningStats false) has no inference-form ONNX op');
  const c = g.shape('running_mean')[0] as number;
  const x = g.input('input');
  const scale = g.has('weight') ? g.input('weight') : g.const(new Float32Array(c).fill(1), [c], x.dtype, 'weight');
  const shift = g.has('bias') ? g.input('bias') : g.const(new Float32Array(c), [c], x.dtype, 'bias');
  return g.node('BatchNormalization', [x, scale, shift, g.input('running_mean'), g.input('running_var')], { epsilon: { float: g.arg('eps') } });
});
def('layer_norm', (g) => {
  if (g.opset < 17) g.fail(`LayerNormalization needs opset 17 or later (exporting at opset ${g.opset})`);
  const shape = g.arg<number[]>('normalized_shape');
  const n = shape.reduce((a, b) => a * b, 1);
  const x = g.input('input');
  const scale = g.has('weight') ? g.input('weight') : g.const(new Float32Array(n).fill(1), shape, x.dtype, 'weight');
  const shift = g.has('bias') ? g.input('bias') : g.const(new Float32Array(n), shape, x.dtype, 'bias');
  return g.node('LayerNormalization', [x, scale, shift], { axis: -shape.length, epsilon: { float: g.arg('eps') } });
});
def('embedding', (g) => g.node('Gather', [g.input('weight'), g.input('indices')], { axis: 0 }));

// ---------------------------------------------------------------------------------------------------- pooling

function pool(op: 'MaxPool' | 'AveragePool') {
  return (g: SymbolicContext) => {
    const k = g.arg<number[]>('kernel_size');
    const n = k.length;
    if (g.shape('self').length !== n + 2) g.fail(`an unbatched input (shape ${shapeStr(g.shape('self'))}) is not supported; add the batch dimension`);
    const s = g.arg<number[]>('stride');
    const stride = s.length ? s : k;
    const padding = g.arg<number[]>('padding');
    const attrs: Record<string, OnnxAttr> = { kernel_shape: k, strides: stride, pads: [...padding, ...padding], ceil_mode: g.arg('ceil_mode') ? 1 : 0 };
    if (op === 'MaxPool') attrs.dilations = g.arg<number[]>('dilation');
    else {
      if (g.arg('ceil_mode')) g.fail('average pooling with ceil_mode is not supported (PyTorch and ONNX Runtime differ on partial windows)');
      if (g.schemaHas('divisor_override') && g.arg('divisor_override') !== null) g.fail(`divisor_override (${g.arg('divisor_override')}) has no ONNX AveragePool equivalent`);
      attrs.count_include_pad = g.arg('count_include_pad') ? 1 : 0;
    }
    return g.node(op, [g.input('self')], attrs);
  };
}
def(['max_pool1d', 'max_pool2d', 'max_pool3d'], pool('MaxPool'));
def(['avg_pool1d', 'avg_pool2d', 'avg_pool3d'], pool('AveragePool'));
function adaptivePool(global: string, windowed: string | null) {
  return (g: SymbolicContext) => {
    const x = g.input('self');
    const inDims = g.shape('self');
    const size = g.out().shape.slice(2);
    const spatial = inDims.slice(2);
    if (inDims.length !== size.length + 2) g.fail(`an unbatched input (shape ${shapeStr(inDims)}) is not supported; add the batch dimension`);
    if (size.every((d) => d === 1)) return g.node(global, [x]);
    if (spatial.every((d, i) => d === size[i])) return x;
    if (windowed && spatial.every((d, i) => typeof d === 'number' && typeof size[i] === 'number' && d % (size[i] as number) === 0)) {
      const k = spatial.map((d, i) => (d as number) / (size[i] as number));
      return g.node(windowed, [x], { kernel_shape: k, strides: k });
    }
    g.fail(`adaptive pooling of ${spatial.join('×')} to ${size.join('×')} has uneven windows and no ONNX equivalent (input shape ${shapeStr(inDims)}); the output size must divide the input size`);
  };
}
def(['adaptive_avg_pool1d', 'adaptive_avg_pool2d', 'adaptive_avg_pool3d', '_adaptive_avg_pool2d'], adaptivePool('GlobalAveragePool', 'AveragePool'));
def(['adaptive_max_pool1d', 'adaptive_max_pool2d'], (g) => {
  if (g.outputUsed(1)) g.fail('the indices of adaptive max pooling are not supported');
  return [adaptivePool('GlobalMaxPool', 'MaxPool')(g), null];
});

// ---------------------------------------------------------------------------------------------------- shapes

def(['view', 'reshape', '_reshape_alias', 'view_as', 'reshape_as', 'unflatten.int'], (g) => g.node('Reshape', [g.input('self'), g.reshapeTarget()]), ['size', 'sizes', 'stride']);
def('flatten.using_ints', (g) => {
  const r = g.shape('self').length;
  if (r === 0) return g.node('Reshape', [g.input('self'), g.ints([1], 'shape')]);
  const s = axis(g, g.arg('start_dim'), r), e = axis(g, g.arg('end_dim'), r);
  if (s === e) return g.input('self');
  if (s === 1 && e === r - 1) return g.node('Flatten', [g.input('self')], { axis: 1 });
  return g.node('Reshape', [g.input('self'), g.reshapeTarget()]);
});
def('unsqueeze', (g) => g.node('Unsqueeze', [g.input('self'), g.ints([axis(g, g.arg('dim'), g.shape('self').length + 1)], 'axes')]));
def(['squeeze', 'squeeze.dim'], (g) => {
  const dims = g.shape('self');
  const axes = g.overload === 'dim' ? [axis(g, g.arg('dim'), dims.length)].filter((a) => dims[a] === 1) : dims.map((d, i) => i).filter((i) => dims[i] === 1);
  return axes.length ? g.node('Squeeze', [g.input('self'), g.ints(axes, 'axes')]) : g.input('self');
});
function transpose(g: SymbolicContext, perm: number[]): OnnxValue {
  return perm.every((p, i) => p === i) ? g.input('self') : g.node('Transpose', [g.input('self')], { perm });
}
def('transpose.int', (g) => {
  const r = g.shape('self').length;
  const perm = Array.from({ length: r }, (_, i) => i);
  const [a, b] = [axis(g, g.arg('dim0'), r), axis(g, g.arg('dim1'), r)];
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return transpose(g, perm);
});
def('t', (g) => (g.shape('self').length < 2 ? g.input('self') : transpose(g, [1, 0])));
def('permute', (g) => transpose(g, g.arg<number[]>('dims').map((d) => axis(g, d, g.shape('self').length))));
def(['expand', 'broadcast_to'], (g) => g.node('Expand', [g.input('self'), g.explicitShape()]), ['size']);
def('expand_as', (g) => g.node('Expand', [g.input('self'), g.node('Shape', [g.input('other')], {}, { shape: [g.shape('other').length], dtype: 'int64' })]));
def('repeat', (g) => {
  const reps = g.arg<number[]>('repeats');
  let x = g.input('self');
  const r = g.shape('self').length;
  if (reps.length > r) x = g.node('Reshape', [x, g.ints([...Array(reps.length - r).fill(1), ...g.shape('self').map(() => 0)], 'shape')], {}, { shape: [...Array(reps.length - r).fill(1), ...g.shape('self')] });
  return g.node('Tile', [x, g.ints(reps, 'repeats')]);
});
def('cat', (g) => {
  const xs = g.inputs('tensors').map((x) => g.cast(x!, g.out().dtype));
  const r = g.out().shape.length;
  return g.node('Concat', xs, { axis: axis(g, g.arg('dim'), r) });
});
def('stack', (g) => {
  const r = g.out().shape.length;
  const a = axis(g, g.arg('dim'), r);
  const xs = g.inputs('tensors').map((x) => g.node('Unsqueeze', [g.cast(x!, g.out().dtype), g.ints([a], 'axes')], {}, { shape: [...x!.shape.slice(0, a), 1, ...x!.shape.slice(a)] }));
  return g.node('Concat', xs, { axis: a });
});
function split(g: SymbolicContext, squeeze = false): OnnxValue[] {
  const r = g.shape('self').length;
  const a = axis(g, g.arg('dim'), r);
  const sizes = Array.from({ length: g.outputs }, (_, i) => (squeeze ? 1 : g.out(i).shape[a]));
  if (sizes.some((s) => typeof s !== 'number')) g.fail(`splitting the batch dimension (shape ${shapeStr(g.shape('self'))}) is not supported`);
  const outs = g.nodeN('Split', [g.input('self'), g.ints(sizes as number[], 'split')], sizes.length, { axis: a },
    squeeze ? Array.from({ length: sizes.length }, (_, i) => ({ shape: g.shape('self').map((d, k) => (k === a ? 1 : d)), dtype: g.out(i).dtype })) : undefined);
  return squeeze ? outs.map((o) => g.node('Squeeze', [o, g.ints([a], 'axes')])) : outs;
}
def(['chunk', 'split.Tensor', 'split_with_sizes', 'unsafe_chunk', 'unsafe_split.Tensor', 'unsafe_split_with_sizes', 'split.sizes'], (g) => split(g));
def('unbind.int', (g) => split(g, true));
def('select.int', (g) => {
  const a = axis(g, g.arg('dim'), g.shape('self').length);
  return g.node('Gather', [g.input('self'), g.scalar(g.arg('index'), 'int64', 'index')], { axis: a });
});
/** Slice of `dim` from `start` to `end`; an end at or past the (possibly batch-dependent) size becomes "to the end". */
function slice(g: SymbolicContext, dim: number, start: [number | null, number | null], end: [number | null, number | null], step: number): OnnxValue {
  const [s1, s2] = g.shapesAtBothBatches('self');
  const a = axis(g, dim, s1.length);
  if (start[0] !== start[1]) g.fail(`the slice start depends on the batch size (${start[0]} and ${start[1]}); export with a fixed batchSize`);
  const toEnd = (e: number | null, size: number) => e === null || e >= size;
  let e: number | bigint;
  if (toEnd(end[0], s1[a]) && toEnd(end[1], s2[a])) e = INT64_MAX;
  else if (end[0] === end[1]) e = end[0]!;
  else g.fail(`the slice end depends on the batch size (${end[0]} and ${end[1]}); export with a fixed batchSize`);
  const s = start[0] ?? 0;
  if (s === 0 && e === INT64_MAX && step === 1) return g.input('self');
  return g.node('Slice', [g.input('self'), g.const([BigInt(s)], [1], 'int64', 'starts'), g.const([BigInt(e)], [1], 'int64', 'ends'), g.ints([a], 'axes'), g.ints([step], 'steps')]);
}
def('slice.Tensor', (g) => slice(g, g.arg('dim'), g.argAtBothBatches('start'), g.argAtBothBatches('end'), g.arg('step')), ['start', 'end']);
def('narrow', (g) => {
  const [s1, s2] = g.argAtBothBatches<number>('start');
  const [l1, l2] = g.argAtBothBatches<number>('length');
  return slice(g, g.arg('dim'), [s1, s2], [s1 + l1, s2 + l2], 1);
}, ['start', 'length']);
def('index_select', (g) => g.node('Gather', [g.input('self'), g.input('index')], { axis: axis(g, g.arg('dim'), g.shape('self').length) }));
def('index.Tensor', (g) => {
  const idx = g.inputs('indices');
  const given = idx.map((x, i) => (x ? i : -1)).filter((i) => i >= 0);
  if (given.length !== 1 || idx[given[0]]!.dtype === 'bool') g.fail('indexing is supported with one integer index tensor (no boolean masks, no several index tensors)');
  return g.node('Gather', [g.input('self'), idx[given[0]]], { axis: given[0] });
});
def('gather', (g) => g.node('GatherElements', [g.input('self'), g.input('index')], { axis: axis(g, g.arg('dim'), g.shape('self').length) }));
def(['triu', 'tril'], (g) => {
  if (g.opset < 14) g.fail(`Trilu needs opset 14 or later (exporting at opset ${g.opset})`);
  return g.node('Trilu', [g.input('self'), g.scalar(g.arg('diagonal'), 'int64', 'diagonal')], { upper: g.op === 'aten::triu' ? 1 : 0 });
});
def(['pad', 'constant_pad_nd'], (g) => {
  const p = g.arg<number[]>('pad');
  const r = g.shape('self').length;
  const mode = g.op === 'aten::pad' ? g.arg<string>('mode') : 'constant';
  const begins = Array(r).fill(0), ends = Array(r).fill(0);
  for (let i = 0; i < p.length / 2; i++) {
    begins[r - 1 - i] = p[2 * i];
    ends[r - 1 - i] = p[2 * i + 1];
  }
  const onnxMode = ({ constant: 'constant', reflect: 'reflect', replicate: 'edge', circular: 'wrap' } as Record<string, string>)[mode];
  if (onnxMode === undefined) g.fail(`padding mode '${mode}' is not supported`);
  if (onnxMode === 'wrap' && g.opset < 19) g.fail(`circular padding needs opset 19 or later (exporting at opset ${g.opset})`);
  const x = g.input('self');
  const value = g.arg<number | null>('value') ?? 0;
  return g.node('Pad', [x, g.ints([...begins, ...ends], 'pads'), onnxMode === 'constant' ? g.scalar(value, x.dtype, 'pad_value') : null], { mode: onnxMode });
});

// ---------------------------------------------------------------------------------------------------- reductions

function reduction(op: string) {
  return (g: SymbolicContext) => {
    const r = g.shape('self').length;
    const all = !g.schemaHas('dim');
    return reduce(g, op, asOut(g, 'self'), all ? null : dimsArg(g, 'dim', r), all ? false : g.arg('keepdim'));
  };
}
def(['sum', 'sum.dim_IntList'], reduction('ReduceSum'));
def(['mean', 'mean.dim'], reduction('ReduceMean'));
def(['amax', 'amin'], (g) => reduce(g, g.op === 'aten::amax' ? 'ReduceMax' : 'ReduceMin', g.input('self'), dimsArg(g, 'dim', g.shape('self').length), g.arg('keepdim')));
def(['max', 'min'], (g) => reduce(g, g.op === 'aten::max' ? 'ReduceMax' : 'ReduceMin', g.input('self'), null, false));
def(['max.dim', 'min.dim'], (g) => {
  const a = axis(g, g.arg('dim'), g.shape('self').length);
  const keep = g.arg<boolean>('keepdim');
  const values = g.outputUsed(0) ? reduce(g, g.op === 'aten::max' ? 'ReduceMax' : 'ReduceMin', g.input('self'), [a], keep) : null;
  const indices = g.outputUsed(1) ? g.node(g.op === 'aten::max' ? 'ArgMax' : 'ArgMin', [g.input('self')], { axis: a, keepdims: keep ? 1 : 0 }, g.out(1)) : null;
  return [values, indices];
});
def(['argmax', 'argmin'], (g) => {
  const op = g.op === 'aten::argmax' ? 'ArgMax' : 'ArgMin';
  const d = g.arg<number | null>('dim');
  if (d === null) return g.node(op, [g.node('Reshape', [g.input('self'), g.ints([-1], 'shape')], {}, { shape: ['?'] })], { axis: 0, keepdims: 0 });
  return g.node(op, [g.input('self')], { axis: axis(g, d, g.shape('self').length), keepdims: g.arg('keepdim') ? 1 : 0 });
});
def('logsumexp', (g) => reduce(g, 'ReduceLogSumExp', asOut(g, 'self'), dimsArg(g, 'dim', g.shape('self').length), g.arg('keepdim')));
def('norm.ScalarOpt_dim', (g) => {
  const p = g.arg<number | null>('p') ?? 2;
  if (p !== 1 && p !== 2) g.fail(`the ${p}-norm is not supported (only 1 and 2)`);
  return reduce(g, p === 2 ? 'ReduceL2' : 'ReduceL1', g.input('self'), dimsArg(g, 'dim', g.shape('self').length), g.arg('keepdim'));
});
def('cumsum', (g) => g.node('CumSum', [asOut(g, 'self'), g.scalar(axis(g, g.arg('dim'), g.shape('self').length), 'int64', 'axis')]));

// ---------------------------------------------------------------------------------------------------- tensors made in the forward

// (made from constants only, they are folded into initializers; these run when the size depends on the batch)
function filled(g: SymbolicContext, value: number, shape: OnnxValue): OnnxValue {
  return g.node('Expand', [g.scalar(value, g.out().dtype, 'fill'), shape]);
}
const fillValue = (g: SymbolicContext) => (g.schemaHas('fill_value') ? Number(g.arg('fill_value')) : /ones/.test(g.op) ? 1 : 0);
def(['zeros', 'ones', 'full', 'empty.memory_format', 'new_zeros', 'new_ones', 'new_full', 'new_empty'], (g) => filled(g, fillValue(g), g.explicitShape()), ['size']);
def(['zeros_like', 'ones_like', 'full_like', 'empty_like'], (g) =>
  filled(g, fillValue(g), g.node('Shape', [g.input('self')], {}, { shape: [g.shape('self').length], dtype: 'int64' })));
def(['zero_', 'fill_.Scalar'], (g) =>
  filled(g, g.op === 'aten::zero_' ? 0 : Number(g.arg('value')), g.node('Shape', [g.input('self')], {}, { shape: [g.shape('self').length], dtype: 'int64' })));
def('copy_', (g) => g.node('Expand', [asOut(g, 'src'), g.node('Shape', [g.input('self')], {}, { shape: [g.shape('self').length], dtype: 'int64' })]));
