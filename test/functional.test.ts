// The functional API (src/nn/functional.ts): parity with PyTorch 1.13 fixtures in float64 and float32, hand-computed
// values, float64 gradient checks of every loss, activation and layer function, and the error messages.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, liveTensors, manualSeed, noGrad, ones, rand, randn, tensor, tidy, zeros } from '../src/torch';
import * as F from '../src/nn/functional';
import { checkLeaks, fixture, gradcheck } from './helpers';

type FxTensor = { shape: number[]; values: number[]; dtype?: 'int64' };
interface Case { name: string; fn: string; args: unknown[]; opts: Record<string, unknown> | null; out: FxTensor }
interface FixtureFile { torch: string; inputs: Record<string, FxTensor>; cases: Case[]; [k: string]: any }

type FloatDType = 'float64' | 'float32';
const TOL: Record<FloatDType, number> = { float64: 1e-10, float32: 1e-5 };

function toTensor(t: FxTensor, dtype: FloatDType): Tensor {
  return tensor(Float64Array.from(t.values), { shape: t.shape, dtype: t.dtype ?? dtype });
}

/** Replaces every "@key" in a fixture's args/opts with the input tensor of that key. */
function resolve(v: unknown, inputs: Record<string, FxTensor>, dtype: FloatDType): unknown {
  if (typeof v === 'string' && v.startsWith('@')) {
    const t = inputs[v.slice(1)];
    assert.ok(t, `fixture input ${v} is missing`);
    return toTensor(t, dtype);
  }
  if (Array.isArray(v)) return v.map((e) => resolve(e, inputs, dtype));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, resolve(e, inputs, dtype)]));
  return v;
}

/** Largest |actual - expected| / (1 + |expected|); NaN where both are NaN counts as equal. */
function relErr(actual: Tensor, expected: FxTensor, label: string): number {
  assert.deepEqual(actual.shape, expected.shape, `${label}: shape`);
  const a = actual.toArray();
  let m = 0;
  a.forEach((v, i) => {
    const e = expected.values[i];
    if (Number.isNaN(v) && Number.isNaN(e)) return;
    const d = Math.abs(v - e) / (1 + Math.abs(e));
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  });
  return m;
}

function runCase(X: FixtureFile, c: Case, dtype: FloatDType): void {
  tidy(() => {
    const args = resolve(c.args, X.inputs, dtype) as unknown[];
    const fn = (F as unknown as Record<string, (...a: unknown[]) => Tensor>)[c.fn];
    assert.equal(typeof fn, 'function', `F.${c.fn} does not exist`);
    const out = c.opts === null ? fn(...args) : fn(...args, resolve(c.opts, X.inputs, dtype));
    if (c.fn === 'oneHot') {
      assert.equal(out.dtype, 'int64', c.name);
      assert.deepEqual(out.toArray(), c.out.values, c.name);
      return;
    }
    assert.equal(out.dtype, dtype, `${c.name} (${dtype}): output dtype`);
    const err = relErr(out, c.out, `${c.name} (${dtype})`);
    assert.ok(err <= TOL[dtype], `${c.name} (${dtype}): relative difference ${err} from PyTorch exceeds ${TOL[dtype]}`);
  });
}

/** One test per function and dtype over every case of a fixture file. */
function parity(file: string, X: FixtureFile): void {
  const byFn = new Map<string, Case[]>();
  for (const c of X.cases) byFn.set(c.fn, [...(byFn.get(c.fn) ?? []), c]);
  for (const [fn, cases] of byFn) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${fn}: ${cases.length} cases from ${file} (${dtype})`, () => {
        for (const c of cases) runCase(X, c, dtype);
      });
    }
  }
}

const LOSSES: FixtureFile = fixture('functional_losses.json');
const ACTIVATIONS: FixtureFile = fixture('functional_activations.json');
const LAYERS: FixtureFile = fixture('functional_layers.json');

describe('parity with PyTorch 1.13: losses', () => {
  checkLeaks();
  it('covers every loss and the options that matter', () => {
    const names = new Set(LOSSES.cases.map((c) => c.name));
    for (const n of [
      'crossEntropy weight+ignore+smoothing none', 'crossEntropy probs+weight+smoothing mean', 'crossEntropy ignoreIndex 3 sum',
      'crossEntropy K-dim probs+smoothing mean', 'crossEntropy unbatched', 'nllLoss weight+ignore mean',
      'klDiv batchmean logTarget', 'klDiv mean', 'klDiv none logTarget', 'cosineEmbeddingLoss y margin 0.3 none',
      'cosineEmbeddingLoss y_neg margin -0.2 sum', 'smoothL1Loss beta 0.0 mean', 'binaryCrossEntropyWithLogits weight+posWeight none',
      'softTargetCrossEntropy sum', 'binaryCrossEntropy weight none', 'huberLoss delta 0.5 sum',
    ]) assert.ok(names.has(n), `fixture case '${n}' is missing`);
    assert.equal(LOSSES.torch.slice(0, 4), '1.13');
  });
  parity('functional_losses.json', LOSSES);
});

describe('parity with PyTorch 1.13: activations', () => {
  checkLeaks();
  parity('functional_activations.json', ACTIVATIONS);
});

describe('parity with PyTorch 1.13: layers as functions', () => {
  checkLeaks();
  parity('functional_layers.json', LAYERS);
  it('batchNorm in training mode updates the running statistics in place', () => {
    tidy(() => {
      const I = LAYERS.inputs;
      for (const dtype of ['float64', 'float32'] as const) {
        const rm = toTensor(I.bn_rm, dtype), rv = toTensor(I.bn_rv, dtype);
        F.batchNorm(toTensor(I.bn_x, dtype), rm, rv, { weight: toTensor(I.bn_w, dtype), training: true, momentum: 0.3 });
        const after = LAYERS.batchnorm_running_after;
        assert.ok(relErr(rm, after.running_mean, 'running mean') <= TOL[dtype], `running mean (${dtype})`);
        assert.ok(relErr(rv, after.running_var, 'running var') <= TOL[dtype], `running var (${dtype})`);
        // evaluation mode leaves them alone
        F.batchNorm(toTensor(I.bn_x, dtype), rm, rv);
        assert.ok(relErr(rm, after.running_mean, 'running mean') <= TOL[dtype], `running mean after eval (${dtype})`);
        // PyTorch's default momentum
        const rm2 = toTensor(I.bn_rm, dtype), rv2 = toTensor(I.bn_rv, dtype);
        F.batchNorm(toTensor(I.bn_x, dtype), rm2, rv2, { training: true });
        const after2 = LAYERS.batchnorm_running_after_default_momentum;
        assert.ok(relErr(rm2, after2.running_mean, 'running mean') <= TOL[dtype], `running mean, default momentum (${dtype})`);
        assert.ok(relErr(rv2, after2.running_var, 'running var') <= TOL[dtype], `running var, default momentum (${dtype})`);
      }
    });
  });
});

describe('hand-computed values', () => {
  checkLeaks();
  const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
  const f64 = (x: number[] | number[][]) => tensor(x, { dtype: 'float64' });
  const i64 = (x: number[]) => tensor(x, { dtype: 'int64' });

  it('klDiv of two tiny distributions, every reduction', () => {
    tidy(() => {
      // rows: KL(p || q) with p the target, q the model
      const p = [[0.5, 0.5], [0.25, 0.75]], q = [[0.9, 0.1], [0.5, 0.5]];
      const terms = p.map((row, i) => row.map((pi, j) => pi * Math.log(pi / q[i][j])));
      const rowKL = terms.map((r) => r[0] + r[1]);
      close(rowKL[0], 0.5108256237659907); // 0.5 ln(5/9) + 0.5 ln 5
      const logq = f64(q.map((r) => r.map(Math.log)));
      const sum = rowKL[0] + rowKL[1];
      close(F.klDiv(logq, f64(p), { reduction: 'sum' }).item(), sum);
      close(F.klDiv(logq, f64(p), { reduction: 'batchmean' }).item(), sum / 2);
      close(F.klDiv(logq, f64(p)).item(), sum / 4); // PyTorch's default 'mean' averages over all four elements
      const none = F.klDiv(logq, f64(p), { reduction: 'none' }).toArray();
      terms.flat().forEach((t, k) => close(none[k], t));
      close(F.klDiv(logq, f64(p.map((r) => r.map(Math.log))), { reduction: 'batchmean', logTarget: true }).item(), sum / 2);
      // identical distributions: zero
      close(F.klDiv(logq, f64(q), { reduction: 'sum' }).item(), 0);
    });
  });

  it('crossEntropy: plain, label smoothing, class weights, ignored targets, probabilities', () => {
    tidy(() => {
      // logits [0, ln 3]: softmax = [1/4, 3/4]
      const logits = f64([[0, Math.log(3)], [Math.log(3), 0]]);
      close(F.crossEntropy(logits, i64([1, 1])).item(), (Math.log(4 / 3) + Math.log(4)) / 2);
      // smoothing s: (1 - s) * nll + s * mean over classes of -log p
      const s = 0.2, nll0 = Math.log(4 / 3), uni0 = (Math.log(4) + Math.log(4 / 3)) / 2;
      close(F.crossEntropy(logits.index('0:1'), i64([1]), { labelSmoothing: s }).item(), (1 - s) * nll0 + s * uni0);
      // weights: sum(w_y * nll) / sum(w_y)
      const w = f64([1, 3]);
      close(F.crossEntropy(logits, i64([1, 0]), { weight: w }).item(), (3 * Math.log(4 / 3) + 1 * Math.log(4 / 3)) / 4);
      close(F.crossEntropy(logits, i64([0, 1]), { weight: w }).item(), (1 * Math.log(4) + 3 * Math.log(4)) / 4);
      // an ignored row contributes nothing, to the sum or to the count
      close(F.crossEntropy(logits, i64([1, -100])).item(), Math.log(4 / 3));
      assert.deepEqual(F.crossEntropy(logits, i64([1, -100]), { reduction: 'none' }).toArray().map((v) => +v.toFixed(12)), [+Math.log(4 / 3).toFixed(12), 0]);
      // probability targets: -sum p log q
      close(F.crossEntropy(logits, f64([[0.5, 0.5], [1, 0]])).item(), (0.5 * Math.log(4) + 0.5 * Math.log(4 / 3) + Math.log(4 / 3)) / 2);
      close(F.softTargetCrossEntropy(logits, f64([[0.5, 0.5], [1, 0]]), { reduction: 'sum' }).item(), 0.5 * Math.log(4) + 0.5 * Math.log(4 / 3) + Math.log(4 / 3));
      // probabilities with class weights and smoothing: -sum_c w_c q_c log p_c with q = (1 - s) p + s / C, 'mean'
      // dividing by the number of rows (not by the weights)
      const q = [[0.5, 0.5], [1, 0]].map((row) => row.map((v) => (1 - s) * v + s / 2));
      const logp = [[Math.log(1 / 4), Math.log(3 / 4)], [Math.log(3 / 4), Math.log(1 / 4)]];
      const wv = [1, 3];
      const rows = q.map((row, i) => -row.reduce((acc, qc, c) => acc + wv[c] * qc * logp[i][c], 0));
      close(F.crossEntropy(logits, f64([[0.5, 0.5], [1, 0]]), { weight: w, labelSmoothing: s }).item(), (rows[0] + rows[1]) / 2);
    });
  });

  it('KL(teacher || student) = cross-entropy - teacher entropy, at a temperature', () => {
    tidy(() => {
      manualSeed(3);
      const s = randn([4, 5], { dtype: 'float64' }), t = randn([4, 5], { dtype: 'float64' }), T = 2.5;
      const pt = F.softmax(t, 1, { temperature: T });
      const kl = F.klDiv(F.logSoftmax(s, 1, { temperature: T }), pt, { reduction: 'batchmean' }).item();
      const ce = F.softTargetCrossEntropy(s.div(T), pt).item();
      const entropy = pt.mul(pt.log()).sum().neg().div(4).item();
      close(kl, ce - entropy, 1e-12);
      close(F.klDiv(F.logSoftmax(s, 1, { temperature: T }), F.logSoftmax(t, 1, { temperature: T }), { reduction: 'batchmean', logTarget: true }).item(), kl);
    });
  });

  it('cosineEmbeddingLoss and cosineSimilarity on orthogonal and parallel vectors', () => {
    tidy(() => {
      const x1 = f64([[1, 0], [1, 1], [2, 0]]), x2 = f64([[0, 3], [2, 2], [-1, 0]]);
      assert.deepEqual(F.cosineSimilarity(x1, x2).toArray().map((v) => +v.toFixed(12)), [0, 1, -1]);
      // y = 1: 1 - cos; y = -1: max(0, cos - margin)
      const y = f64([1, -1, -1]);
      const none = F.cosineEmbeddingLoss(x1, x2, y, { margin: -0.5, reduction: 'none' }).toArray();
      [1, 1.5, 0].forEach((e, i) => close(none[i], e));
      close(F.cosineEmbeddingLoss(x1, x2, y, { margin: -0.5 }).item(), 2.5 / 3);
      close(F.cosineEmbeddingLoss(x1, x2, f64([-1, 1, 1]), { reduction: 'sum' }).item(), 0 + 0 + 2);
    });
  });

  it('mse, l1 and smooth L1 on a few numbers', () => {
    tidy(() => {
      const a = f64([0, 1, 3]), b = f64([0.5, -1, 3]);
      close(F.mseLoss(a, b).item(), (0.25 + 4) / 3);
      close(F.l1Loss(a, b, { reduction: 'sum' }).item(), 2.5);
      // |d| = 0.5 < beta 1: 0.5 * 0.25 / 1; |d| = 2: 2 - 0.5
      close(F.smoothL1Loss(a, b, { reduction: 'sum' }).item(), 0.125 + 1.5);
      close(F.binaryCrossEntropyWithLogits(f64([0]), f64([1])).item(), Math.log(2));
      close(F.binaryCrossEntropy(f64([0.25, 0.5]), f64([1, 0])).item(), (Math.log(4) + Math.log(2)) / 2);
      // Huber with delta 2: |d| = 0.5 -> 0.5 * 0.25; |d| = 2 is not below delta -> 2 * (2 - 1)
      close(F.huberLoss(a, b, { delta: 2, reduction: 'sum' }).item(), 0.125 + 2);
    });
  });

  it('leakyRelu, elu, softplus on a few numbers', () => {
    tidy(() => {
      const x = f64([-2, 0.5]);
      assert.deepEqual(F.leakyRelu(x).toArray(), [-0.02, 0.5]);
      const e = F.elu(x, 0.5).toArray();
      close(e[0], 0.5 * (Math.exp(-2) - 1));
      close(e[1], 0.5);
      const sp = F.softplus(x, { beta: 2, threshold: 0.9 }).toArray();
      close(sp[0], Math.log1p(Math.exp(-4)) / 2);
      close(sp[1], 0.5); // beta * x = 1 > threshold: linear
    });
  });

  it('softmax temperature, dtype option, normalize', () => {
    tidy(() => {
      const x = f64([[0, 2]]);
      const p = F.softmax(x, 1, { temperature: 2 }).toArray();
      close(p[1], Math.E / (1 + Math.E));
      close(F.logSoftmax(x, 1, { temperature: 2 }).toArray()[0], -Math.log(1 + Math.E));
      const x32 = tensor([[1, 2, 3]]);
      assert.equal(F.softmax(x32, -1, { dtype: 'float64' }).dtype, 'float64');
      assert.equal(F.logSoftmax(x32, -1, { dtype: 'float64' }).dtype, 'float64');
      assert.deepEqual(F.normalize(f64([[3, 4], [0, 0]])).toArray(), [0.6, 0.8, 0, 0]);
    });
  });

  it('dropout: scaled survivors in training, the same values otherwise', () => {
    tidy(() => {
      manualSeed(7);
      const x = ones([4000], { dtype: 'float64' });
      const y = F.dropout(x, 0.25).toArray();
      const kept = y.filter((v) => v !== 0);
      assert.ok(kept.every((v) => Math.abs(v - 4 / 3) < 1e-12), 'survivors are scaled by 1 / (1 - p)');
      assert.ok(Math.abs(kept.length / 4000 - 0.75) < 0.03, `kept fraction ${kept.length / 4000}`);
      assert.deepEqual(F.dropout(x, 0.9, false).toArray(), x.toArray());
      assert.deepEqual(F.dropout(x, 1).toArray(), new Array(4000).fill(0));
    });
    // eval-mode dropout returns a handle of its own: disposing it leaves the input alive
    const x = randn([3]);
    const y = F.dropout(x, 0.5, false);
    y.dispose();
    assert.equal(x.isDisposed, false);
    assert.equal(x.numel(), 3);
    x.dispose();
  });

  it('embedding gives the padding row no gradient; negative paddingIdx counts from the end', () => {
    const w = randn([5, 3], { dtype: 'float64', requiresGrad: true });
    tidy(() => {
      const idx = tensor([[0, 4, 4], [1, 4, 0]], { dtype: 'int64' });
      assert.deepEqual(F.embedding(idx, w, -1).toArray(), F.embedding(idx, w, 4).toArray());
      F.embedding(idx, w, -1).sum().backward();
      const g = w.grad!;
      assert.deepEqual(g.toArray(), [2, 2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      w.grad = null;
      F.embedding(idx, w).sum().backward();
      assert.deepEqual(w.grad!.index(4).toArray(), [3, 3, 3]);
    });
    w.grad = null;
    w.dispose();
  });

  it('gelu accepts the mode as an options object or a string', () => {
    tidy(() => {
      const x = f64([-1, 0.5, 2]);
      assert.deepEqual(F.gelu(x, 'tanh').toArray(), F.gelu(x, { approximate: 'tanh' }).toArray());
      assert.notDeepEqual(F.gelu(x).toArray(), F.gelu(x, 'tanh').toArray());
    });
  });

  it('intermediates are released when called outside tidy', () => {
    const x = randn([3, 4]), y = randn([3, 4]);
    const lp = F.logSoftmax(x, 1), py = F.softmax(y, 1);
    const base = liveTensors();
    const outs = [
      F.softmax(x, 1, { temperature: 3 }), F.logSoftmax(x, 0, { temperature: 0.5 }), F.normalize(x),
      F.klDiv(lp, py, { reduction: 'batchmean' }),
    ];
    assert.equal(liveTensors(), base + outs.length, 'only the outputs remain');
    dispose([outs, x, y, lp, py]);
  });
});

describe('gradients (float64 central differences)', () => {
  checkLeaks();
  const r = (shape: number[]) => randn(shape, { dtype: 'float64', requiresGrad: true });
  /** A probability-like leaf: positive entries that sum to 1 along dim 1. */
  const probsLeaf = (shape: number[]) => noGrad(() => tidy(() => randn(shape, { dtype: 'float64' }).softmax(1))).requiresGrad_(true);
  /** A leaf whose entries are at least `gap` away from zero (for kinks at 0). */
  const awayFromZero = (shape: number[], gap = 0.1) =>
    noGrad(() => tidy(() => { const x = randn(shape, { dtype: 'float64' }); return x.add(x.sign().mul(gap)); })).requiresGrad_(true);
  const idx = (v: number[] | number[][]) => tensor(v, { dtype: 'int64' });
  const f64 = (v: number[]) => tensor(v, { dtype: 'float64' });

  const cases: [string, () => Tensor[], (...xs: Tensor[]) => Tensor][] = [
    // activations
    ['relu', () => [awayFromZero([3, 4])], (x) => F.relu(x)],
    ['gelu', () => [r([3, 4])], (x) => F.gelu(x)],
    ['gelu tanh', () => [r([3, 4])], (x) => F.gelu(x, { approximate: 'tanh' })],
    ['silu', () => [r([3, 4])], (x) => F.silu(x)],
    ['mish', () => [r([3, 4])], (x) => F.mish(x)],
    ['hardswish', () => [r([3, 4])], (x) => F.hardswish(x)],
    ['logSigmoid', () => [r([3, 4])], (x) => F.logSigmoid(x)],
    ['leakyRelu 0.2', () => [awayFromZero([3, 4])], (x) => F.leakyRelu(x, 0.2)],
    ['elu alpha 0.5', () => [awayFromZero([3, 4])], (x) => F.elu(x, 0.5)],
    ['softplus beta 2 threshold 1', () => [r([3, 4])], (x) => F.softplus(x, { beta: 2, threshold: 1 })],
    ['tanh', () => [r([3, 4])], (x) => F.tanh(x)],
    ['sigmoid', () => [r([3, 4])], (x) => F.sigmoid(x)],
    ['softmax', () => [r([3, 4])], (x) => F.softmax(x, 1)],
    ['softmax T=3 dim 0', () => [r([3, 4])], (x) => F.softmax(x, 0, { temperature: 3 })],
    ['logSoftmax T=2', () => [r([3, 4])], (x) => F.logSoftmax(x, 1, { temperature: 2 })],
    ['logSoftmax dim -1', () => [r([2, 3, 2])], (x) => F.logSoftmax(x, -1)],
    ['dropout (fixed mask)', () => [r([3, 4])], (x) => { manualSeed(5); return F.dropout(x, 0.4); }],
    ['normalize', () => [r([3, 4])], (x) => F.normalize(x)],
    ['normalize p 3 dim 0', () => [r([3, 4])], (x) => F.normalize(x, { p: 3, dim: 0 })],
    ['cosineSimilarity', () => [r([3, 4]), r([3, 4])], (a, b) => F.cosineSimilarity(a, b)],
    // losses
    ['crossEntropy', () => [r([3, 4])], (x) => F.crossEntropy(x, idx([0, 3, 1]))],
    ['crossEntropy weight+ignore+smoothing', () => [r([4, 3])],
      (x) => F.crossEntropy(x, idx([0, -100, 2, 1]), { weight: f64([1, 2, 0.5]), labelSmoothing: 0.1 })],
    ['crossEntropy none', () => [r([3, 4])], (x) => F.crossEntropy(x, idx([2, 3, 1]), { reduction: 'none', labelSmoothing: 0.3 })],
    ['crossEntropy K-dim', () => [r([2, 3, 2])], (x) => F.crossEntropy(x, idx([[0, 2], [1, 1]]), { reduction: 'sum' })],
    ['crossEntropy probabilities (logits and target)', () => [r([3, 4]), probsLeaf([3, 4])], (x, p) => F.crossEntropy(x, p)],
    ['crossEntropy probabilities weight+smoothing', () => [r([3, 4]), probsLeaf([3, 4])],
      (x, p) => F.crossEntropy(x, p, { weight: f64([1, 2, 0.5, 1]), labelSmoothing: 0.2 })],
    ['softTargetCrossEntropy', () => [r([3, 4]), probsLeaf([3, 4])], (x, p) => F.softTargetCrossEntropy(x, p)],
    ['nllLoss weight+ignore', () => [r([4, 3])], (x) => F.nllLoss(x, idx([0, 2, -100, 1]), { weight: f64([1, 2, 0.5]) })],
    ['nllLoss none', () => [r([3, 4])], (x) => F.nllLoss(x, idx([0, 3, 1]), { reduction: 'none' })],
    ...(['mean', 'sum', 'none', 'batchmean'] as const).flatMap((red): [string, () => Tensor[], (...xs: Tensor[]) => Tensor][] => [
      [`klDiv ${red} (input and target)`, () => [r([3, 4]), probsLeaf([3, 4])], (x, p) => F.klDiv(x.logSoftmax(1), p, { reduction: red })],
      [`klDiv ${red} logTarget`, () => [r([3, 4]), r([3, 4])],
        (x, t) => F.klDiv(x.logSoftmax(1), t.logSoftmax(1), { reduction: red, logTarget: true })],
    ]),
    ['mseLoss', () => [r([3, 4]), r([3, 4])], (a, b) => F.mseLoss(a, b)],
    ['mseLoss sum', () => [r([3, 4]), r([3, 4])], (a, b) => F.mseLoss(a, b, { reduction: 'sum' })],
    ['l1Loss (away from the kink)', () => [awayFromZero([3, 4])], (d) => F.l1Loss(d, zeros([3, 4], { dtype: 'float64' }))],
    ['l1Loss none, both inputs', () => {
      const a = r([3, 4]);
      const b = noGrad(() => tidy(() => a.add(rand([3, 4], { dtype: 'float64' }).add(0.2)))).requiresGrad_(true);
      return [a, b];
    }, (a, b) => F.l1Loss(a, b, { reduction: 'none' })],
    ['smoothL1Loss beta 0.5', () => [r([3, 4]), r([3, 4])], (a, b) => F.smoothL1Loss(a, b, { beta: 0.5 })],
    ['smoothL1Loss default', () => [r([3, 4]), r([3, 4])], (a, b) => F.smoothL1Loss(a, b.mul(3), { reduction: 'sum' })],
    ['cosineEmbeddingLoss y ±1 margin -0.5', () => [r([4, 3]), r([4, 3])],
      (a, b) => F.cosineEmbeddingLoss(a, b, f64([1, -1, 1, -1]), { margin: -0.5 })],
    ['cosineEmbeddingLoss y = -1 margin 0 none', () => [r([4, 3]), r([4, 3])],
      (a, b) => F.cosineEmbeddingLoss(a, b, f64([-1, -1, -1, -1]), { reduction: 'none' })],
    ['binaryCrossEntropyWithLogits (logits and target)', () => [r([3, 4]), probsLeaf([3, 4])],
      (x, t) => F.binaryCrossEntropyWithLogits(x, t)],
    ['binaryCrossEntropyWithLogits weight+posWeight', () => [r([3, 4]), probsLeaf([3, 4])],
      (x, t) => F.binaryCrossEntropyWithLogits(x, t, { weight: f64([1, 0.5, 2, 1]), posWeight: f64([2, 1, 0.5, 3]), reduction: 'sum' })],
    ['binaryCrossEntropy weight (input and target)', () => [
      noGrad(() => tidy(() => rand([3, 4], { dtype: 'float64' }).mul(0.8).add(0.1))).requiresGrad_(true), probsLeaf([3, 4])],
    (p, t) => F.binaryCrossEntropy(p, t, { weight: f64([1, 0.5, 2, 1]) })],
    ['huberLoss delta 0.5', () => [r([3, 4]), r([3, 4])], (a, b) => F.huberLoss(a, b, { delta: 0.5 })],
    ['huberLoss delta 2 none', () => [r([3, 4]), r([3, 4])], (a, b) => F.huberLoss(a, b.mul(3), { delta: 2, reduction: 'none' })],
    // layers as functions
    ['linear', () => [r([3, 4]), r([2, 4]), r([2])], (x, w, b) => F.linear(x, w, b)],
    ['conv1d', () => [r([1, 2, 5]), r([3, 2, 3]), r([3])], (x, w, b) => F.conv1d(x, w, b, { padding: 1, stride: 2 })],
    ['conv2d groups', () => [r([1, 2, 4, 4]), r([2, 1, 3, 3]), r([2])], (x, w, b) => F.conv2d(x, w, b, { padding: 'same', groups: 2 })],
    ['maxPool2d', () => [r([1, 2, 4, 4])], (x) => F.maxPool2d(x, 2)],
    ['avgPool2d', () => [r([1, 2, 4, 4])], (x) => F.avgPool2d(x, 3, { stride: 1, padding: 1, countIncludePad: false })],
    ['adaptiveAvgPool2d', () => [r([1, 2, 5, 4])], (x) => F.adaptiveAvgPool2d(x, [2, 3])],
    ['layerNorm', () => [r([2, 3, 4]), r([4]), r([4])], (x, w, b) => F.layerNorm(x, [4], w, b)],
    ['batchNorm training', () => [r([4, 2, 3]), r([2]), r([2])], (x, w, b) => F.batchNorm(x, null, null, { weight: w, bias: b, training: true })],
    ['embedding', () => [r([5, 3])], (w) => F.embedding(idx([[0, 4], [4, 2]]), w)],
    ['pad reflect', () => [r([1, 2, 3, 3])], (x) => F.pad(x, [1, 2, 2, 0], { mode: 'reflect' })],
  ];

  for (const [name, make, f] of cases) {
    it(name, () => {
      manualSeed(1);
      const leaves = make();
      try {
        gradcheck(() => f(...leaves), leaves, { label: name });
      } finally {
        dispose(leaves);
      }
    });
  }
});

describe('bad inputs give messages naming the function, shapes and dtypes', () => {
  checkLeaks();
  const i64 = (v: number[] | number[][]) => tensor(v, { dtype: 'int64' });
  const cases: [string, () => unknown, RegExp][] = [
    ['crossEntropy probability target shape', () => F.crossEntropy(randn([4, 3]), randn([4, 2])),
      /^crossEntropy: probability targets must have the logits' shape: logits \[4, 3\], target \[4, 2\]$/],
    ['crossEntropy int32 target', () => F.crossEntropy(randn([4, 3]), tensor([1, 2, 0, 1], { dtype: 'int32' })),
      /^crossEntropy: class-index targets must be int64 \(or floating-point probabilities\), got int32 \(convert with target\.long\(\)\)$/],
    ['crossEntropy bool target', () => F.crossEntropy(randn([2, 3]), tensor([true, false], { dtype: 'bool' })), /must be int64.*got bool/],
    ['crossEntropy index target shape', () => F.crossEntropy(randn([4, 3]), i64([0, 1, 2, 0, 1])),
      /^crossEntropy: class-index target must have shape \[4\] \(logits \[4, 3\] without the class dimension\), got \[5\]$/],
    ['crossEntropy K-dim target shape', () => F.crossEntropy(randn([2, 3, 5]), i64([[0, 1, 2, 0], [0, 1, 2, 0]])),
      /must have shape \[2, 5\] \(logits \[2, 3, 5\] without the class dimension\), got \[2, 4\]/],
    ['crossEntropy float target shaped like class indices', () => F.crossEntropy(randn([4, 3]), tensor([0, 1, 2, 0])),
      /^crossEntropy: target float32 \[4\] has the shape of class indices for logits \[4, 3\], but class indices must be int64 \(convert with target\.long\(\)\); probability targets must have the logits' shape$/],
    ['crossEntropy integer logits', () => F.crossEntropy(i64([[1, 2]]), i64([0])), /^crossEntropy: logits must be a floating-point tensor, got int64$/],
    ['crossEntropy weight dtype', () => F.crossEntropy(randn([2, 3], { dtype: 'float64' }), i64([0, 1]), { weight: ones([3]) }),
      /^crossEntropy: weight is float32 but logits is float64; they must have the same dtype$/],
    ['crossEntropy ignoreIndex with probabilities', () => F.crossEntropy(randn([2, 3]), rand([2, 3]), { ignoreIndex: 1 }),
      /^crossEntropy: ignoreIndex \(1\) applies to class-index targets only; with probability targets leave it unset$/],
    ['crossEntropy scalar logits', () => F.crossEntropy(randn([]), i64([0])), /crossEntropy: logits needs a class dimension, got a scalar/],
    ['crossEntropy weight shape', () => F.crossEntropy(randn([4, 3]), i64([0, 1, 2, 0]), { weight: ones([4]) }),
      /^crossEntropy: weight must be 1-D with one entry per class \(3\), got \[4\]$/],
    ['crossEntropy labelSmoothing', () => F.crossEntropy(randn([4, 3]), i64([0, 1, 2, 0]), { labelSmoothing: 1.5 }),
      /crossEntropy: labelSmoothing must be in \[0, 1\], got 1.5/],
    ['crossEntropy ignoreIndex', () => F.crossEntropy(randn([4, 3]), i64([0, 1, 2, 0]), { ignoreIndex: 0.5 }),
      /crossEntropy: ignoreIndex must be an integer, got 0.5/],
    ['crossEntropy batchmean', () => F.crossEntropy(randn([4, 3]), i64([0, 1, 2, 0]), { reduction: 'batchmean' as any }),
      /^crossEntropy: reduction must be one of 'mean', 'sum', 'none', got "batchmean"$/],
    ['crossEntropy target out of range (from aten)', () => F.crossEntropy(randn([2, 3]), i64([0, 5])),
      /aten::cross_entropy_loss.*Target 5 is out of bounds/s],
    ['nllLoss weight dtype', () => F.nllLoss(randn([2, 3]), i64([0, 1]), { weight: ones([3], { dtype: 'float64' }) }),
      /^nllLoss: weight is float64 but input is float32; they must have the same dtype$/],
    ['softTargetCrossEntropy integer logits', () => F.softTargetCrossEntropy(i64([[1, 2]]), rand([1, 2])),
      /^softTargetCrossEntropy: student logits must be a floating-point tensor, got int64$/],
    ['nllLoss float target', () => F.nllLoss(randn([2, 3]), randn([2, 3])), /^nllLoss: targets must be int64 class indices, got float32$/],
    ['nllLoss target shape', () => F.nllLoss(randn([2, 3]), i64([[0, 1]])), /nllLoss: class-index target must have shape \[2\] \(input \[2, 3\]/],
    ['klDiv shapes', () => F.klDiv(randn([2, 3]), randn([3, 2])), /^klDiv: input \[2, 3\] and target \[3, 2\] must have the same shape$/],
    ['klDiv reduction', () => F.klDiv(randn([2, 3]), randn([2, 3]), { reduction: 'avg' as any }),
      /^klDiv: reduction must be one of 'mean', 'sum', 'none', 'batchmean', got "avg"$/],
    ['mseLoss shapes', () => F.mseLoss(randn([2]), randn([3])), /^mseLoss: input \[2\] and target \[3\] must have the same shape$/],
    ['mseLoss reduction', () => F.mseLoss(randn([2]), randn([2]), { reduction: 'avg' as any }), /mseLoss: reduction must be one of 'mean', 'sum', 'none', got "avg"/],
    ['l1Loss shapes', () => F.l1Loss(randn([2, 1]), randn([2])), /^l1Loss: input \[2, 1\] and target \[2\]/],
    ['smoothL1Loss beta', () => F.smoothL1Loss(randn([2]), randn([2]), { beta: -1 }), /smoothL1Loss: beta must be non-negative, got -1/],
    ['cosineEmbeddingLoss x shapes', () => F.cosineEmbeddingLoss(randn([3, 4]), randn([3, 5]), ones([3])),
      /cosineEmbeddingLoss: x1 \[3, 4\] and x2 \[3, 5\] must have the same shape/],
    ['cosineEmbeddingLoss y shape', () => F.cosineEmbeddingLoss(randn([3, 4]), randn([3, 4]), ones([4])),
      /^cosineEmbeddingLoss: y must have shape \[3\] \(one entry of \+1 or -1 per row of x1 \[3, 4\]\), got \[4\]$/],
    ['cosineEmbeddingLoss 3-D', () => F.cosineEmbeddingLoss(randn([2, 3, 4]), randn([2, 3, 4]), ones([2])), /must be \[N, D\] or \[D\], got \[2, 3, 4\]/],
    ['binaryCrossEntropyWithLogits shapes', () => F.binaryCrossEntropyWithLogits(randn([2, 3]), rand([3])),
      /binaryCrossEntropyWithLogits: logits \[2, 3\] and target \[3\] must have the same shape/],
    ['binaryCrossEntropyWithLogits int target', () => F.binaryCrossEntropyWithLogits(randn([2]), i64([0, 1])),
      /binaryCrossEntropyWithLogits: target must be a floating-point tensor, got int64/],
    ['binaryCrossEntropy shapes', () => F.binaryCrossEntropy(rand([2, 3]), rand([3, 2])), /binaryCrossEntropy: input \[2, 3\] and target \[3, 2\] must have the same shape/],
    ['binaryCrossEntropy int target', () => F.binaryCrossEntropy(rand([2]), i64([0, 1])), /binaryCrossEntropy: target must be a floating-point tensor, got int64/],
    ['huberLoss delta', () => F.huberLoss(randn([2]), randn([2]), { delta: 0 }), /huberLoss: delta must be positive, got 0/],
    ['huberLoss shapes', () => F.huberLoss(randn([2]), randn([2, 1])), /huberLoss: input \[2\] and target \[2, 1\] must have the same shape/],
    ['softplus beta', () => F.softplus(randn([2]), { beta: 0 }), /softplus: beta must be a finite non-zero number, got 0/],
    ['leakyRelu slope', () => F.leakyRelu(randn([2]), NaN), /leakyRelu: negativeSlope must be a finite number, got NaN/],
    ['softTargetCrossEntropy index target', () => F.softTargetCrossEntropy(randn([2, 3]), i64([0, 1])),
      /softTargetCrossEntropy: teacher probabilities must be a floating-point tensor, got int64/],
    ['softTargetCrossEntropy shapes', () => F.softTargetCrossEntropy(randn([2, 3]), rand([2, 4])),
      /student logits \[2, 3\] and teacher probabilities \[2, 4\] must have the same shape/],
    ['softmax temperature 0', () => F.softmax(randn([2, 3]), 1, { temperature: 0 }), /softmax: temperature must be a positive finite number, got 0/],
    ['logSoftmax temperature NaN', () => F.logSoftmax(randn([2, 3]), 1, { temperature: NaN }), /logSoftmax: temperature must be a positive finite number, got NaN/],
    ['softmax dim', () => F.softmax(randn([2, 3]), 0.5), /softmax: dim must be an integer, got 0.5/],
    ['gelu approximate', () => F.gelu(randn([2]), { approximate: 'fast' as any }), /gelu: approximate must be 'none' or 'tanh', got "fast"/],
    ['dropout p', () => F.dropout(randn([2]), 1.5), /dropout: p must be in \[0, 1\], got 1.5/],
    ['linear features', () => F.linear(randn([4, 5]), randn([3, 6])),
      /^linear: input \[4, 5\] has 5 features in its last dimension, but weight \[3, 6\] expects 6$/],
    ['conv2d padding string', () => F.conv2d(randn([1, 1, 3, 3]), randn([1, 1, 2, 2]), null, { padding: 'full' as any }),
      /conv2d: padding must be a number, an array, 'same' or 'valid', got "full"/],
    ['conv2d options twice', () => F.conv2d(randn([1, 1, 3, 3]), randn([1, 1, 2, 2]), { stride: 2 } as any, { padding: 1 }),
      /conv2d: the third argument must be the bias \(a Tensor or null\) when options follow it/],
    ['conv2d channels (from aten)', () => F.conv2d(randn([1, 2, 4, 4]), randn([3, 3, 3, 3])), /aten::conv2d.*expected input\[1, 2, 4, 4\] to have 3 channels/],
    ['embedding float indices', () => F.embedding(randn([2]), randn([4, 3])), /embedding: indices must be int64 or int32, got float32/],
    ['embedding paddingIdx', () => F.embedding(i64([0]), randn([4, 3]), 4), /embedding: paddingIdx 4 is outside \[-4, 4\) for weight \[4, 3\]/],
    ['embedding weight', () => F.embedding(i64([0]), randn([4])), /embedding: weight must be 2-D \[numEmbeddings, dim\], got \[4\]/],
    ['oneHot int32', () => F.oneHot(tensor([0, 1], { dtype: 'int32' })), /oneHot: indices must be int64, got int32/],
    ['batchNorm one value per channel', () => F.batchNorm(randn([1, 3]), null, null, { training: true }),
      /batchNorm: training needs more than one value per channel, got input \[1, 3\]/],
    ['batchNorm eval without statistics', () => F.batchNorm(randn([2, 3]), null, null), /batchNorm: evaluation mode \(training: false\) needs runningMean and runningVar/],
    ['pad odd length', () => F.pad(randn([2, 3]), [1, 2, 3]), /pad: padding needs \(before, after\) pairs for at most 2 dimensions of input \[2, 3\], got 3 values/],
    ['pad mode', () => F.pad(randn([1, 2, 3]), [1, 1], { mode: 'wrap' as any }), /pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got "wrap"/],
    ['pad value outside constant mode', () => F.pad(randn([1, 2, 3]), [1, 1], { mode: 'reflect', value: 2 }), /pad: value applies to mode 'constant' only/],
  ];
  for (const [name, f, re] of cases) {
    it(name, () => {
      tidy(() => {
        assert.throws(f, (e: unknown) => {
          assert.ok(e instanceof Error);
          assert.match(e.message, re);
          return true;
        });
      });
    });
  }
});
