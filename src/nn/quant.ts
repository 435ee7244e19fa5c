// Fake quantization for quantization-aware training, and the int8 arithmetic shared with the QDQ exporter.
//
// The scheme is the one ONNX Runtime's x86 int8 kernels run fastest (u8 × s8): activations per tensor as uint8 with a
// zero point (asymmetric, the range always containing 0), weights per output channel as int8 in [-127, 127] with zero
// point 0 (symmetric). A Linear or Conv layer with a `LayerQuant` attached runs
//   y = FQ_out( op( FQ_in(x), FQ_w(W) ) + b )
// where FQ_in / FQ_out are present only where the exported QDQ graph quantizes that tensor (the exporter decides, see
// tsdistill/export `prepareQuantAware`). An output quantizer marked `relu` uses the range [0, max] with zero point 0,
// so it also computes the ReLU that follows the layer: the exporter drops that Relu and lets the QuantizeLinear clamp.
// libtorch's fake_quantize ops give the straight-through gradient: identity inside the quantization range, zero outside.
//
// Observed ranges live in a persistent buffer per quantizer (`input_range` / `output_range`: [min, max, batches]), so
// checkpoints written during training carry the ranges that the exporter needs.
import { Tensor, noGrad, ops, tensor, tidy } from '../torch';

/** uint8 activations. */
export const ACT_QMIN = 0;
export const ACT_QMAX = 255;
/** int8 weights, symmetric (−128 unused so that the range is symmetric around the zero point 0). */
export const WEIGHT_QMAX = 127;
/** The smallest scale used for an all-zero range (float32 machine epsilon, as PyTorch's observers). */
const SCALE_EPS = 1.1920928955078125e-7;

export type ObserverMethod = 'minmax' | 'ema' | 'percentile';
export interface ObserverOptions {
  /**
   * 'minmax': the smallest and largest value seen over all batches; 'ema': an exponential moving average of each
   * batch's min and max (weight `momentum` for the new batch); 'percentile': the mean over batches of each batch's
   * (100 − p)-th and p-th percentiles (clips rare outliers).
   */
  method?: ObserverMethod;
  /** 'ema': weight of the newest batch (default 0.01, PyTorch's MovingAverageMinMaxObserver). */
  momentum?: number;
  /** 'percentile': p (default 99.99). */
  percentile?: number;
}

export function checkObserverOptions(o: ObserverOptions, what: string): Required<ObserverOptions> {
  const method = o.method ?? 'minmax';
  if (!['minmax', 'ema', 'percentile'].includes(method)) throw new Error(`${what}: observer method must be 'minmax', 'ema' or 'percentile', got '${method}'`);
  const momentum = o.momentum ?? 0.01;
  if (!(momentum > 0 && momentum <= 1)) throw new Error(`${what}: momentum must be in (0, 1], got ${momentum}`);
  const percentile = o.percentile ?? 99.99;
  if (!(percentile > 50 && percentile <= 100)) throw new Error(`${what}: percentile must be in (50, 100], got ${percentile}`);
  return { method, momentum, percentile };
}

/** uint8 asymmetric parameters for values in [min, max]: the range is widened to contain 0; scale is a float32. */
export function activationQParams(min: number, max: number): { scale: number; zeroPoint: number } {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) throw new Error(`activation range [${min}, ${max}] is not a finite range`);
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = Math.fround(Math.max((hi - lo) / (ACT_QMAX - ACT_QMIN), SCALE_EPS));
  const zeroPoint = Math.min(ACT_QMAX, Math.max(ACT_QMIN, Math.round(ACT_QMIN - lo / scale)));
  return { scale, zeroPoint };
}

/** Per-channel symmetric int8 scales of a weight laid out with channels along `axis`: max |w| / 127 (float32). */
export function perChannelScales(data: Float32Array, shape: number[], axis: number): Float32Array {
  if (axis < 0 || axis >= shape.length) throw new Error(`per-channel scales: axis ${axis} is out of range for shape [${shape.join(', ')}]`);
  const channels = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const maxAbs = new Float64Array(channels);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const a = Math.abs(data[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  return Float32Array.from(maxAbs, (m) => Math.fround(Math.max(Math.fround(m / WEIGHT_QMAX), SCALE_EPS)));
}

/** Round half to even (what QuantizeLinear and libtorch's fake_quantize do). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x → clamp(round(x · (1/scale)) + zeroPoint) computed in float32 as libtorch's fake_quantize does. */
export function quantizeValue(x: number, scale: number, zeroPoint: number, qmin: number, qmax: number): number {
  const q = roundHalfEven(Math.fround(x * Math.fround(1 / scale))) + zeroPoint;
  return q < qmin ? qmin : q > qmax ? qmax : q;
}

/** Running range of a tensor's values. `state` is [min, max, batches] (a module buffer for quantizers). */
export class RangeObserver {
  readonly opts: Required<ObserverOptions>;
  constructor(opts: ObserverOptions = {}, readonly state: Float64Array = new Float64Array([Infinity, -Infinity, 0])) {
    this.opts = checkObserverOptions(opts, 'observer');
  }
  get batches(): number {
    return this.state[2];
  }
  /** The observed [min, max]; null before the first batch. */
  range(): { min: number; max: number } | null {
    return this.state[2] > 0 ? { min: this.state[0], max: this.state[1] } : null;
  }
  /** Adds one batch given its own min and max (and, for 'percentile', its percentiles instead). */
  private update(bmin: number, bmax: number): void {
    const s = this.state;
    const n = s[2];
    if (n === 0) [s[0], s[1]] = [bmin, bmax];
    else if (this.opts.method === 'minmax') [s[0], s[1]] = [Math.min(s[0], bmin), Math.max(s[1], bmax)];
    else if (this.opts.method === 'ema') {
      const m = this.opts.momentum;
      s[0] += m * (bmin - s[0]);
      s[1] += m * (bmax - s[1]);
    } else {
      s[0] += (bmin - s[0]) / (n + 1);
      s[1] += (bmax - s[1]) / (n + 1);
    }
    s[2] = n + 1;
  }
  /** Observes a batch of values. */
  observeValues(v: Float32Array): void {
    if (v.length === 0) return;
    if (this.opts.method === 'percentile') {
      const sorted = Float32Array.from(v).sort();
      const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))))];
      this.update(at(100 - this.opts.percentile), at(this.opts.percentile));
      return;
    }
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`observer: the batch holds non-finite values (min ${lo}, max ${hi})`);
    this.update(lo, hi);
  }
  /** Observes a tensor (detached). */
  observe(t: Tensor): void {
    if (this.opts.method === 'percentile') {
      this.observeValues(noGrad(() => tidy(() => t.detach().float().contiguous().data() as Float32Array)));
      return;
    }
    const [lo, hi] = noGrad(() => tidy(() => {
      const [a, b] = ops.aminmax(t.detach());
      return [a.item(), b.item()];
    }));
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`observer: the batch holds non-finite values (min ${lo}, max ${hi})`);
    this.update(lo, hi);
  }
}

/** When quantizers observe: only in training mode (default), always (calibration), or never (ranges frozen). */
export type ObserveMode = 'train' | 'always' | 'never';

/** A per-tensor uint8 fake quantizer with its observer; `relu` fixes the lower end of the range at 0. */
export class ActivationFakeQuant {
  readonly observer: RangeObserver;
  observe: ObserveMode = 'train';
  constructor(readonly buffer: Tensor, readonly relu: boolean, opts: ObserverOptions) {
    if (buffer.numel() !== 3) throw new Error(`ActivationFakeQuant: expected a range buffer [min, max, batches], got shape [${buffer.shape}]`);
    this.observer = new RangeObserver(opts);
    this.sync();
  }
  /** Reads the range from the buffer (the buffer is the truth: loadStateDict writes it). */
  sync(): void {
    this.observer.state.set(Float64Array.from(noGrad(() => this.buffer.data() as ArrayLike<number>)));
  }
  private store(): void {
    noGrad(() => tidy(() => {
      ops.copy_(this.buffer, tensor(Array.from(this.observer.state), { dtype: this.buffer.dtype }));
    }));
  }
  /** uint8 parameters of the current range; null before anything was observed. */
  qparams(): { scale: number; zeroPoint: number } | null {
    this.sync();
    const r = this.observer.range();
    if (!r) return null;
    return this.relu ? activationQParams(0, Math.max(r.max, 0)) : activationQParams(r.min, r.max);
  }
  apply(x: Tensor, training: boolean): Tensor {
    this.sync();
    if (this.observe === 'always' || (this.observe === 'train' && training)) {
      this.observer.observe(x);
      this.store();
    }
    const r = this.observer.range();
    const q = r && (this.relu ? activationQParams(0, Math.max(r.max, 0)) : activationQParams(r.min, r.max));
    if (!q) return this.relu ? x.relu() : x;
    return ops.fake_quantize_per_tensor_affine(x, q.scale, q.zeroPoint, ACT_QMIN, ACT_QMAX);
  }
}

/** Per-output-channel symmetric int8 fake quantization of a weight (channels along dimension 0). */
export function fakeQuantWeight(w: Tensor): Tensor {
  const [scale, zp] = noGrad(() => tidy(() => {
    const s = ops.amax(w.detach().abs().flatten(1), 1).div(WEIGHT_QMAX).clamp(SCALE_EPS);
    return [s, ops.zeros([w.shape[0]], { dtype: 'int32' })];
  }));
  try {
    return ops.fake_quantize_per_channel_affine(w, scale, zp, 0, -WEIGHT_QMAX, WEIGHT_QMAX);
  } finally {
    scale.dispose();
    zp.dispose();
  }
}

/** The fake quantization of one Linear or Conv layer; set on the layer's `quant` field (see prepareQuantAware). */
export class LayerQuant {
  /** Quantize the weight (per channel). */
  weight = true;
  constructor(readonly input: ActivationFakeQuant | null, readonly output: ActivationFakeQuant | null) {}
  /** Runs `op` on the fake-quantized input and weight, then quantizes its output. */
  forward(x: Tensor, weight: Tensor, training: boolean, op: (x: Tensor, w: Tensor) => Tensor): Tensor {
    return tidy(() => {
      const xq = this.input ? this.input.apply(x, training) : x;
      const wq = this.weight ? fakeQuantWeight(weight) : weight;
      const y = op(xq, wq);
      return this.output ? this.output.apply(y, training) : y;
    });
  }
  quantizers(): ActivationFakeQuant[] {
    return [this.input, this.output].filter((q): q is ActivationFakeQuant => q !== null);
  }
}
