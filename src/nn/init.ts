// Parameter initialisation, as torch.nn.init. Every function works in place under no-grad and returns the tensor.
// Random ones draw from libtorch's default generator, so they are deterministic under `manualSeed` and, for the same
// seed, call order, shape and dtype, produce PyTorch's values bit for bit (CPU).
import { Tensor, noGrad, ops } from '../torch';

export type Nonlinearity =
  | 'linear' | 'conv1d' | 'conv2d' | 'conv3d' | 'conv_transpose1d' | 'conv_transpose2d' | 'conv_transpose3d'
  | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';
export type FanMode = 'fan_in' | 'fan_out';

/** [fan_in, fan_out] of a weight: dims 1 and 0 times the receptive field (product of dims 2..). Needs >= 2 dims. */
export function calculateFanInAndFanOut(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2)
    throw new Error(`init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions, got shape [${s.join(', ')}]`);
  let receptive = 1;
  for (let i = 2; i < s.length; i++) receptive *= s[i];
  return [s[1] * receptive, s[0] * receptive];
}

/** The recommended gain for a nonlinearity (torch.nn.init.calculate_gain). `param` is leaky_relu's negative slope (default 0.01). */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear': case 'conv1d': case 'conv2d': case 'conv3d':
    case 'conv_transpose1d': case 'conv_transpose2d': case 'conv_transpose3d': case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const s = param ?? 0.01;
      if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`init.calculateGain: negative slope ${s} is not a valid number`);
      return Math.sqrt(2 / (1 + s * s));
    }
    case 'selu':
      return 3 / 4;
    default:
      throw new Error(`init.calculateGain: unsupported nonlinearity '${nonlinearity as string}'`);
  }
}

/** True (and nothing done) for zero-element tensors, like PyTorch's warning no-op. */
function empty(t: Tensor): boolean {
  return t.numel() === 0;
}

function fanFor(t: Tensor, mode: FanMode, fn: string): number {
  if (mode !== 'fan_in' && mode !== 'fan_out') throw new Error(`init.${fn}: mode must be 'fan_in' or 'fan_out', got '${mode as string}'`);
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  return mode === 'fan_in' ? fanIn : fanOut;
}

/** U(a, b). */
export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  return noGrad(() => t.uniform_(a, b));
}
/** N(mean, std²). */
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => t.normal_(mean, std));
}
/** N(mean, std²) truncated to [a, b] (inverse-CDF method, as torch.nn.init.trunc_normal_). */
export function truncNormal_(t: Tensor, mean = 0, std = 1, a = -2, b = 2): Tensor {
  const cdf = (x: number) => (1 + erf(x / Math.SQRT2)) / 2;
  const l = cdf((a - mean) / std);
  const u = cdf((b - mean) / std);
  return noGrad(() => {
    t.uniform_(2 * l - 1, 2 * u - 1);
    ops.erfinv_(t);
    t.mul_(std * Math.SQRT2);
    t.add_(mean);
    t.clamp_(a, b);
    return t;
  });
}
export function constant_(t: Tensor, v: number): Tensor {
  return noGrad(() => t.fill_(v));
}
export function zeros_(t: Tensor): Tensor {
  return noGrad(() => t.zero_());
}
export function ones_(t: Tensor): Tensor {
  return noGrad(() => t.fill_(1));
}

export interface KaimingOptions {
  /** Negative slope of the rectifier after this layer (leaky_relu only); default 0. */
  a?: number;
  mode?: FanMode;
  nonlinearity?: Nonlinearity;
}

/** U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al. 2015). Defaults: a=0, fan_in, leaky_relu. */
export function kaimingUniform_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  if (empty(t)) return t;
  const fan = fanFor(t, opts.mode ?? 'fan_in', 'kaimingUniform_');
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  const std = gain / Math.sqrt(fan);
  const bound = Math.sqrt(3) * std;
  return uniform_(t, -bound, bound);
}
/** N(0, std²) with std = gain / sqrt(fan). Defaults: a=0, fan_in, leaky_relu. */
export function kaimingNormal_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  if (empty(t)) return t;
  const fan = fanFor(t, opts.mode ?? 'fan_in', 'kaimingNormal_');
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  return normal_(t, 0, gain / Math.sqrt(fan));
}
/** U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010). */
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const std = gain * Math.sqrt(2 / (fanIn + fanOut));
  const a = Math.sqrt(3) * std;
  return uniform_(t, -a, a);
}
/** N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out)). */
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  return normal_(t, 0, gain * Math.sqrt(2 / (fanIn + fanOut)));
}

// Abramowitz-Stegun 7.1.26 is too coarse for truncation bounds; use a series / continued fraction with ~1e-15 error.
function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const z = Math.abs(x);
  if (z < 2.5) {
    // Maclaurin series: erf(z) = 2/sqrt(pi) * sum (-1)^n z^(2n+1) / (n! (2n+1))
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return sign * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // continued fraction for erfc (Lentz)
  let f = z;
  let c = z;
  let d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = z + an * d;
    d = d === 0 ? 1e-300 : 1 / d;
    c = z + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
  return sign * (1 - erfc);
}
