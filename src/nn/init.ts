// Parameter initialisation, as torch.nn.init. All functions work in place under no-grad and return the tensor.
import { Tensor, noGrad } from '../torch';

export function calculateFanInAndFanOut(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new Error(`init: fan in and fan out need a tensor with at least 2 dimensions, got [${s.join(', ')}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return [s[1] * receptive, s[0] * receptive];
}

export function calculateGain(nonlinearity: 'linear' | 'conv' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu', param?: number): number {
  switch (nonlinearity) {
    case 'linear': case 'conv': case 'sigmoid': return 1;
    case 'tanh': return 5 / 3;
    case 'relu': return Math.SQRT2;
    case 'leaky_relu': { const s = param ?? 0.01; return Math.sqrt(2 / (1 + s * s)); }
    case 'selu': return 3 / 4;
  }
}

type Mode = 'fan_in' | 'fan_out';
type Nonlinearity = 'relu' | 'leaky_relu' | 'linear' | 'tanh' | 'sigmoid';

export function uniform_(t: Tensor, a = 0, b = 1): Tensor { return noGrad(() => t.uniform_(a, b)); }
export function normal_(t: Tensor, mean = 0, std = 1): Tensor { return noGrad(() => t.normal_(mean, std)); }
export function constant_(t: Tensor, v: number): Tensor { return noGrad(() => t.fill_(v)); }
export function zeros_(t: Tensor): Tensor { return noGrad(() => t.zero_()); }
export function ones_(t: Tensor): Tensor { return noGrad(() => t.fill_(1)); }

export function kaimingUniform_(t: Tensor, opts: { a?: number; mode?: Mode; nonlinearity?: Nonlinearity } = {}): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const fan = (opts.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  const bound = Math.sqrt(3) * (gain / Math.sqrt(fan));
  return uniform_(t, -bound, bound);
}
export function kaimingNormal_(t: Tensor, opts: { a?: number; mode?: Mode; nonlinearity?: Nonlinearity } = {}): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const fan = (opts.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  const gain = calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0);
  return normal_(t, 0, gain / Math.sqrt(fan));
}
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const a = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -a, a);
}
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  return normal_(t, 0, gain * Math.sqrt(2 / (fanIn + fanOut)));
}
