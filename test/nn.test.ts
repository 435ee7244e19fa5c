// The module system and layers: PyTorch 1.13 parity (fixtures from test/fixtures/make_nn_fixtures.py), default
// initialisations, float64 gradient checks for every layer, and Module behaviour (state_dict keys, loading, freezing,
// modes, hooks, conversions).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, liveTensors, manualSeed, noGrad, ones, randn, tensor, tidy, zeros } from '../src/torch';
import {
  AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Dropout, Embedding, Flatten, GELU, Identity,
  LayerNorm, LeakyReLU, Linear, LogSoftmax, MaxPool2d, Module, ModuleList, MultiheadAttention, ReLU, Sequential, SiLU,
  Sigmoid, Softmax, Tanh, TransformerEncoder, TransformerEncoderLayer, attentionKey, init,
} from '../src/nn';
import { checkLeaks, fixture, fx, gradcheck, maxDiff } from './helpers';

const P = fixture('nn_parity.json');
const I = fixture('nn_init.json');

type Fx = { shape: number[]; values: number[] };

/** Loads a fixture state_dict (float64 values; num_batches_tracked as int64) into `m`. */
function load(m: Module, state: Record<string, Fx>): void {
  const sd: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(state)) sd[k] = fx(v, k.endsWith('num_batches_tracked') ? 'int64' : 'float64');
  try {
    m.loadStateDict(sd);
  } finally {
    dispose(sd);
  }
}
/** Asserts max |t - expected| <= tol (inside a tidy). */
function near(t: Tensor, expected: Fx, tol: number, what: string): void {
  const d = tidy(() => maxDiff(t, fx(expected, 'float64')));
  assert.ok(d <= tol, `${what}: max abs diff ${d} > ${tol}`);
}
/** Asserts every state_dict entry of `m` equals the fixture's. */
function nearState(m: Module, state: Record<string, Fx>, tol: number, what: string): void {
  const sd = m.stateDict();
  assert.deepEqual(Object.keys(sd), Object.keys(state), `${what}: keys`);
  for (const [k, v] of Object.entries(state)) near(sd[k], v, tol, `${what}: ${k}`);
}
const boolFx = (v: Fx): Tensor => tidy(() => fx(v, 'int64').bool());
const f64 = <M extends Module>(m: M): M => m.to('float64');

// ================================================================================================ parity
describe('layers match PyTorch 1.13', () => {
  checkLeaks();
  const TOL = 1e-10; // float64 throughout; the brief's bound is 1e-5

  it('Linear (float64 and float32), 3-D input without bias', () => {
    const m = f64(new Linear(5, 3));
    load(m, P.linear.state);
    tidy(() => near(m.call(fx(P.linear.x)), P.linear.y, TOL, 'linear'));
    const m32 = new Linear(5, 3);
    load(m32, P.linear.state);
    tidy(() => {
      const y = m32.call(fx(P.linear.x, 'float32'));
      assert.equal(y.dtype, 'float32');
      near(y, P.linear.y32, 1e-6, 'linear float32');
      near(y, P.linear.y, 1e-5, 'linear float32 vs float64');
    });
    const nb = f64(new Linear(4, 2, { bias: false }));
    assert.equal(nb.bias, null);
    load(nb, P.linear_nobias_3d.state);
    tidy(() => near(nb.call(fx(P.linear_nobias_3d.x)), P.linear_nobias_3d.y, TOL, 'linear 3-D'));
    dispose([m, m32, nb].map((x) => x.dispose()));
  });

  it('Conv2d: stride/padding, grouped/dilated/rectangular, padding same; Conv1d', () => {
    const cases: [Module, any, string][] = [
      [new Conv2d(2, 3, 3, { stride: 2, padding: 1 }), P.conv2d, 'conv2d'],
      [new Conv2d(4, 6, [3, 2], { stride: [1, 2], padding: [2, 1], dilation: [2, 1], groups: 2, bias: false }), P.conv2d_grouped, 'grouped'],
      [new Conv2d(2, 2, 3, { padding: 'same', dilation: 2 }), P.conv2d_same, 'same'],
      [new Conv1d(3, 2, 3, { padding: 1, stride: 2 }), P.conv1d, 'conv1d'],
    ];
    for (const [m, c, name] of cases) {
      f64(m);
      load(m, c.state);
      tidy(() => near(m.call(fx(c.x)), c.y, TOL, name));
      m.dispose();
    }
    const m32 = new Conv2d(2, 3, 3, { stride: 2, padding: 1 });
    load(m32, P.conv2d.state);
    tidy(() => near(m32.call(fx(P.conv2d.x, 'float32')), P.conv2d.y32, 1e-5, 'conv2d float32'));
    m32.dispose();
  });

  it('BatchNorm2d: two training steps (outputs, gradients, running stats), then eval', () => {
    const c = P.batchnorm2d;
    const m = f64(new BatchNorm2d(3));
    load(m, c.state);
    tidy(() => {
      const x1 = fx(c.x1).requiresGrad_(true);
      const y1 = m.call(x1);
      near(y1, c.y1, TOL, 'y1');
      y1.mul(fx(c.w)).sum().backward();
      near(x1.grad!, c.grad_x, 1e-9, 'grad x');
      near(m.weight!.grad!, c.grad_weight, 1e-9, 'grad weight');
      near(m.bias!.grad!, c.grad_bias, 1e-9, 'grad bias');
      nearState(m, c.state_after1, TOL, 'after step 1');
      near(m.call(fx(c.x2)), c.y2, TOL, 'y2');
      nearState(m, c.state_after2, TOL, 'after step 2');
      assert.equal(m.numBatchesTracked!.item(), 2);
      assert.equal(m.numBatchesTracked!.dtype, 'int64');
      m.eval();
      near(m.call(fx(c.x2)), c.y_eval, TOL, 'eval');
      nearState(m, c.state_after2, 0, 'eval leaves the running stats alone');
    });
    m.zeroGrad();
    m.dispose();
  });

  it('BatchNorm: cumulative average (momentum null), no running stats, BatchNorm1d on 2-D and 3-D input', () => {
    const cma = f64(new BatchNorm2d(2, { momentum: null, eps: 1e-3 }));
    tidy(() => {
      for (const x of P.batchnorm2d_cma.xs) cma.call(fx(x));
    });
    nearState(cma, P.batchnorm2d_cma.state_after, TOL, 'cma');
    cma.dispose();

    const ns = f64(new BatchNorm2d(2, { trackRunningStats: false, affine: false })).eval();
    assert.deepEqual(Object.keys(ns.stateDict()), P.batchnorm2d_nostats.keys);
    assert.equal(ns.parameters().length, 0);
    tidy(() => near(ns.call(fx(P.batchnorm2d_nostats.x)), P.batchnorm2d_nostats.y, TOL, 'no stats (batch statistics in eval)'));
    ns.dispose();

    const c = P.batchnorm1d;
    const b1 = f64(new BatchNorm1d(3, { momentum: 0.3 }));
    load(b1, c.state);
    tidy(() => {
      near(b1.call(fx(c.x)), c.y, TOL, 'bn1d 2-D');
      near(b1.call(fx(c.x3)), c.y3, TOL, 'bn1d 3-D');
    });
    nearState(b1, c.state_after, TOL, 'bn1d state');
    b1.dispose();
  });

  it('LayerNorm over two trailing dimensions', () => {
    const m = f64(new LayerNorm([3, 4], { eps: 1e-4 }));
    load(m, P.layernorm.state);
    tidy(() => near(m.call(fx(P.layernorm.x)), P.layernorm.y, TOL, 'layernorm'));
    m.dispose();
  });

  it('MultiheadAttention: output, averaged and per-head weights, masks, gradients, self-attention', () => {
    const c = P.mha;
    const m = f64(new MultiheadAttention(8, 2, { batchFirst: true }));
    load(m, c.state);
    tidy(() => {
      const q = fx(c.q).requiresGrad_(true);
      const kv = fx(c.kv);
      const [o, w] = m.call(q, kv, kv, { keyPaddingMask: boolFx(c.kpm) });
      near(o, c.y, TOL, 'output with key padding mask');
      near(w!, c.w, TOL, 'averaged weights');
      o.mul(fx(c.wo)).sum().backward();
      near(q.grad!, c.grad_q, 1e-9, 'grad query');
      near(m.in_proj_weight!.grad!, c.grad_in_proj_weight, 1e-9, 'grad in_proj_weight');
      const [o2, w2] = m.call(q, kv, kv, { averageAttnWeights: false });
      near(o2, c.y_nomask, TOL, 'output');
      assert.deepEqual(w2!.shape, [2, 2, 3, 4]);
      near(w2!, c.w_heads, TOL, 'per-head weights');
      const [o3, w3] = m.call(q, kv, kv, { attnMask: fx(c.attn_mask) });
      near(o3, c.y_am, TOL, 'float attn mask');
      near(w3!, c.w_am, TOL, 'float attn mask weights');
      const [o4, w4] = m.call(q, kv, kv, { attnMask: boolFx(c.bool_mask3), averageAttnWeights: false });
      near(o4, c.y_bm3, TOL, 'bool [B*H, L, S] mask');
      near(w4!, c.w_bm3, TOL, 'bool mask weights');
      const xs = fx(c.x_self);
      const [o5, w5] = m.call(xs, xs, xs);
      near(o5, c.y_self, TOL, 'self-attention');
      near(w5!, c.w_self, TOL, 'self-attention weights');
      const [, none] = m.call(xs, xs, xs, { needWeights: false });
      assert.equal(none, null);
    });
    m.zeroGrad();
    m.dispose();
  });

  it('MultiheadAttention: sequence-first layout, kdim/vdim, no bias, unbatched input', () => {
    const c = P.mha_kv;
    const m = f64(new MultiheadAttention(6, 3, { kdim: 4, vdim: 5, bias: false }));
    assert.deepEqual(Object.keys(m.stateDict()), c.keys);
    load(m, c.state);
    tidy(() => {
      const q = fx(c.q), k = fx(c.k), v = fx(c.v);
      const [o, w] = m.call(q, k, v);
      near(o, c.y, TOL, 'sequence-first output');
      near(w!, c.w, TOL, 'sequence-first weights');
      const [ou, wu] = m.call(q.select(1, 0), k.select(1, 0), v.select(1, 0), { averageAttnWeights: false });
      near(ou, c.y_unbatched, TOL, 'unbatched output');
      near(wu!, c.w_unbatched, TOL, 'unbatched weights');
    });
    m.dispose();
  });

  const telCases: [string, () => TransformerEncoderLayer][] = [
    ['tel_post', () => new TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, batchFirst: true })],
    ['tel_pre_gelu', () => new TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, batchFirst: true, normFirst: true, activation: 'gelu' })],
    ['tel_seq_first', () => new TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, layerNormEps: 1e-6 })],
  ];
  for (const [name, make] of telCases) {
    it(`TransformerEncoderLayer ${name}: output, gradients, captured attention probabilities, eval`, () => {
      const c = P[name];
      const m = f64(make());
      assert.deepEqual(Object.keys(m.stateDict()), c.keys);
      load(m, c.state);
      tidy(() => {
        const x = fx(c.x).requiresGrad_(true);
        const kpm = boolFx(c.kpm);
        const y = m.call(x, { srcKeyPaddingMask: kpm });
        near(y, c.y, TOL, 'output');
        y.mul(fx(c.w)).sum().backward();
        near(x.grad!, c.grad_x, 1e-9, 'grad input');
        near(m.self_attn.in_proj_weight!.grad!, c.grad_in_proj_weight, 1e-9, 'grad in_proj_weight');
        near(m.linear1.weight.grad!, c.grad_linear1_weight, 1e-9, 'grad linear1.weight');
        // attention distillation reads the layer's attention probabilities through captureFeatures
        const { result, features } = m.captureFeatures(['self_attn'], () => m.call(x, { srcKeyPaddingMask: kpm }));
        near(result, c.y, TOL, 'output while captured');
        const probs = features.get(attentionKey(''))!;
        assert.deepEqual(probs.shape, [2, 2, 5, 5]);
        near(probs, c.probs, TOL, 'attention probabilities');
        assert.equal(m.self_attn.hasForwardHooks(), false, 'hooks removed after capture');
        near(m.call(x), c.y_nomask, TOL, 'no mask');
        m.eval();
        near(noGrad(() => m.call(x)), c.y_eval, TOL, 'eval');
      });
      m.zeroGrad();
      m.dispose();
    });
  }
});

// ================================================================================================ initialisation
describe('default initialisation', () => {
  checkLeaks();
  const makers: Record<string, () => Module> = {
    linear: () => new Linear(5, 3),
    conv2d: () => new Conv2d(2, 3, 3),
    conv1d_nobias: () => new Conv1d(4, 2, 2, { bias: false }),
    embedding_pad: () => new Embedding(4, 3, { paddingIdx: 1 }),
    mha: () => new MultiheadAttention(4, 2),
    mha_kv: () => new MultiheadAttention(4, 2, { kdim: 3, vdim: 5 }),
    tel: () => new TransformerEncoderLayer(4, 2, { dimFeedforward: 6 }),
  };
  for (const [name, make] of Object.entries(makers)) {
    it(`${name} is bit for bit PyTorch's under the same manualSeed`, () => {
      manualSeed(I[name].seed);
      const m = make();
      const sd = m.stateDict();
      assert.deepEqual(Object.keys(sd), Object.keys(I[name].state));
      for (const [k, v] of Object.entries<Fx>(I[name].state)) {
        assert.equal(sd[k].dtype, 'float32');
        tidy(() => assert.equal(maxDiff(sd[k], fx(v, 'float32')), 0, `${name}.${k}`));
      }
      m.dispose();
    });
  }

  it('statistics: Linear/Conv bounds 1/sqrt(fan_in), Embedding N(0, 1), norms ones/zeros, attention biases zero', () => {
    manualSeed(0);
    const lin = new Linear(400, 300);
    const conv = new Conv2d(16, 8, 3);
    const emb = new Embedding(200, 100);
    const bn = new BatchNorm2d(4);
    const ln = new LayerNorm(6);
    const mha = new MultiheadAttention(8, 2);
    tidy(() => {
      const bound = 1 / Math.sqrt(400);
      const w = lin.weight.abs().max().item();
      assert.ok(w <= bound && w > bound * 0.99, `linear weight max ${w} vs bound ${bound}`);
      const b = lin.bias!.abs().max().item();
      assert.ok(b <= bound && b > bound * 0.95, `linear bias max ${b} vs bound ${bound}`);
      // kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std = bound / sqrt(3)
      const std = lin.weight.std().item();
      assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.01 * bound, `linear weight std ${std}`);
      const cb = 1 / Math.sqrt(16 * 9);
      const cw = conv.weight.abs().max().item();
      assert.ok(cw <= cb && cw > 0.95 * cb, `conv weight max ${cw} vs ${cb}`);
      assert.ok(Math.abs(emb.weight.mean().item()) < 0.02);
      assert.ok(Math.abs(emb.weight.std().item() - 1) < 0.02);
      assert.deepEqual(bn.weight!.toArray(), [1, 1, 1, 1]);
      assert.deepEqual(bn.bias!.toArray(), [0, 0, 0, 0]);
      assert.deepEqual(bn.runningVar!.toArray(), [1, 1, 1, 1]);
      assert.deepEqual(ln.weight!.toArray(), [1, 1, 1, 1, 1, 1]);
      assert.equal(mha.in_proj_bias!.abs().max().item(), 0);
      assert.equal(mha.out_proj.bias!.abs().max().item(), 0);
      const xb = Math.sqrt(6 / (8 + 24));
      const xw = mha.in_proj_weight!.abs().max().item();
      assert.ok(xw <= xb && xw > 0.9 * xb, `xavier bound ${xw} vs ${xb}`);
    });
    [lin, conv, emb, bn, ln, mha].forEach((m) => m.dispose());
  });
});

describe('init', () => {
  checkLeaks();
  it('fan computation and gains follow torch.nn.init', () => {
    const w = zeros([8, 3, 5, 2]);
    assert.deepEqual(init.calculateFanInAndFanOut(w), [30, 80]);
    const v = zeros([4]);
    assert.throws(() => init.calculateFanInAndFanOut(v), /fewer than 2 dimensions, got shape \[4\]/);
    assert.throws(() => init.kaimingUniform_(v), /fewer than 2 dimensions/);
    assert.equal(init.calculateGain('relu'), Math.SQRT2);
    assert.equal(init.calculateGain('tanh'), 5 / 3);
    assert.equal(init.calculateGain('leaky_relu', Math.sqrt(5)), Math.sqrt(2 / 6));
    assert.equal(init.calculateGain('selu'), 0.75);
    dispose([w, v]);
  });
  it('bounds and standard deviations; deterministic under manualSeed', () => {
    const t = zeros([200, 300]);
    tidy(() => {
      init.kaimingUniform_(t, { nonlinearity: 'relu' });
      let b = Math.SQRT2 * Math.sqrt(3 / 300);
      assert.ok(t.abs().max().item() <= b && t.abs().max().item() > 0.99 * b);
      init.kaimingUniform_(t, { mode: 'fan_out', nonlinearity: 'relu' });
      b = Math.SQRT2 * Math.sqrt(3 / 200);
      assert.ok(t.abs().max().item() <= b && t.abs().max().item() > 0.99 * b);
      init.kaimingNormal_(t, { nonlinearity: 'relu' });
      assert.ok(Math.abs(t.std().item() - Math.SQRT2 / Math.sqrt(300)) < 0.01 * Math.SQRT2 / Math.sqrt(300) * 2);
      init.xavierUniform_(t, 2);
      b = 2 * Math.sqrt(6 / 500);
      assert.ok(t.abs().max().item() <= b && t.abs().max().item() > 0.99 * b);
      init.xavierNormal_(t);
      assert.ok(Math.abs(t.std().item() - Math.sqrt(2 / 500)) < 0.02 * Math.sqrt(2 / 500));
      init.normal_(t, 3, 0.5);
      assert.ok(Math.abs(t.mean().item() - 3) < 0.01 && Math.abs(t.std().item() - 0.5) < 0.01);
      init.uniform_(t, -1, 2);
      assert.ok(t.min().item() >= -1 && t.max().item() <= 2 && Math.abs(t.mean().item() - 0.5) < 0.01);
      init.truncNormal_(t, 0, 1, -0.5, 1);
      assert.ok(t.min().item() >= -0.5 && t.max().item() <= 1);
      // mean of N(0,1) truncated to [-0.5, 1]: (phi(-0.5) - phi(1)) / (Phi(1) - Phi(-0.5)) = 0.2067
      assert.ok(Math.abs(t.mean().item() - 0.2067) < 0.01, `truncated mean ${t.mean().item()}`);
      init.constant_(t, 0.25);
      assert.equal(t.min().item(), 0.25);
      init.ones_(t);
      assert.equal(t.sum().item(), 60000);
      init.zeros_(t);
      assert.equal(t.abs().sum().item(), 0);
      const a = zeros([3, 4]);
      const b2 = zeros([3, 4]);
      manualSeed(7);
      init.kaimingNormal_(a);
      manualSeed(7);
      init.kaimingNormal_(b2);
      assert.equal(maxDiff(a, b2), 0);
      init.kaimingNormal_(b2);
      assert.ok(maxDiff(a, b2) > 0);
    });
    t.dispose();
  });
  it('works on parameters without recording autograd history', () => {
    const lin = new Linear(3, 2);
    init.xavierUniform_(lin.weight);
    init.zeros_(lin.bias!);
    assert.ok(lin.weight.isLeaf && lin.weight.requiresGrad);
    assert.equal(lin.weight.gradFn, null);
    lin.dispose();
  });
});

// ================================================================================================ gradients
describe('gradients of every layer match central differences (float64)', () => {
  checkLeaks();
  const cases: [string, () => Module, number[]][] = [
    ['Linear', () => new Linear(3, 2), [2, 3]],
    ['Linear without bias', () => new Linear(3, 2, { bias: false }), [2, 2, 3]],
    ['Conv1d', () => new Conv1d(2, 2, 3, { padding: 1, stride: 2 }), [1, 2, 5]],
    ['Conv2d grouped', () => new Conv2d(2, 2, 2, { groups: 2 }), [1, 2, 3, 3]],
    ['Conv2d dilated, padding same', () => new Conv2d(1, 2, 3, { padding: 'same', dilation: 2 }), [1, 1, 4, 4]],
    ['BatchNorm1d', () => new BatchNorm1d(3), [4, 3]],
    ['BatchNorm2d', () => new BatchNorm2d(2), [3, 2, 2, 2]],
    ['BatchNorm2d eval', () => new BatchNorm2d(2).eval(), [2, 2, 2, 2]],
    ['LayerNorm', () => new LayerNorm([2, 3]), [2, 2, 3]],
    ['MaxPool2d', () => new MaxPool2d(2, { stride: 1 }), [1, 1, 3, 3]],
    ['AvgPool2d', () => new AvgPool2d(2, { padding: 1 }), [1, 2, 3, 3]],
    ['AdaptiveAvgPool2d', () => new AdaptiveAvgPool2d([2, null]), [1, 2, 5, 3]],
    ['Flatten', () => new Flatten(), [2, 2, 2]],
    ['Identity', () => new Identity(), [2, 3]],
    ['Dropout eval', () => new Dropout(0.5).eval(), [2, 3]],
    ['ReLU', () => new ReLU(), [3, 4]],
    ['GELU', () => new GELU(), [3, 4]],
    ['GELU tanh', () => new GELU('tanh'), [3, 4]],
    ['Tanh', () => new Tanh(), [3, 4]],
    ['Sigmoid', () => new Sigmoid(), [3, 4]],
    ['SiLU', () => new SiLU(), [3, 4]],
    ['LeakyReLU', () => new LeakyReLU(0.2), [3, 4]],
    ['Softmax', () => new Softmax(-1), [3, 4]],
    ['LogSoftmax', () => new LogSoftmax(1), [3, 4]],
    ['Sequential', () => new Sequential(new Linear(3, 4), new Tanh(), new Linear(4, 2)), [2, 3]],
    ['TransformerEncoderLayer', () => new TransformerEncoderLayer(4, 2, { dimFeedforward: 6, dropout: 0, batchFirst: true }), [1, 3, 4]],
    ['TransformerEncoderLayer pre-norm gelu', () => new TransformerEncoderLayer(4, 2, { dimFeedforward: 3, dropout: 0, normFirst: true, activation: 'gelu' }), [2, 1, 4]],
  ];
  for (const [name, make, shape] of cases) {
    it(name, () => {
      manualSeed(3);
      const m = f64(make());
      // move away from kinks (ReLU at 0, max-pool ties) so that central differences are valid
      const x = tidy(() => {
        const r = randn(shape, { dtype: 'float64' });
        return r.add(r.sign().mul(0.05)).requiresGrad_(true);
      });
      gradcheck(() => m.call(x), [x, ...m.parameters()], { label: name });
      x.dispose();
      m.dispose();
    });
  }
  it('MultiheadAttention (query, key, value, weights) with a key padding mask', () => {
    manualSeed(4);
    const m = f64(new MultiheadAttention(4, 2, { batchFirst: true }));
    noGrad(() => init.uniform_(m.in_proj_bias!, -0.5, 0.5));
    const q = randn([2, 2, 4], { dtype: 'float64', requiresGrad: true });
    const k = randn([2, 3, 4], { dtype: 'float64', requiresGrad: true });
    const v = randn([2, 3, 4], { dtype: 'float64', requiresGrad: true });
    const mask = tensor([[false, false, true], [false, false, false]]);
    gradcheck(() => m.call(q, k, v, { keyPaddingMask: mask })[0], [q, k, v, ...m.parameters()], { label: 'mha output' });
    gradcheck(() => m.call(q, k, v, { averageAttnWeights: false })[1]!, [q, k], { label: 'mha weights' });
    dispose([q, k, v, mask]);
    m.dispose();
  });
  it('Embedding (weight); the padding row gets no gradient', () => {
    const m = f64(new Embedding(5, 3));
    const idx = tensor([[1, 0], [4, 1]], { dtype: 'int64' });
    gradcheck(() => m.call(idx), m.parameters(), { label: 'embedding' });
    m.dispose();
    const p = new Embedding(5, 3, { paddingIdx: 0 });
    tidy(() => {
      assert.deepEqual(p.weight.index(0).toArray(), [0, 0, 0]);
      p.call(tensor([1, 0, 4, 1], { dtype: 'int64' })).sum().backward();
      assert.deepEqual(p.weight.grad!.index(0).toArray(), [0, 0, 0]);
      assert.deepEqual(p.weight.grad!.index(1).toArray(), [2, 2, 2]);
    });
    idx.dispose();
    p.dispose();
    const last = new Embedding(4, 2, { paddingIdx: -1 });
    assert.equal(last.paddingIdx, 3);
    tidy(() => assert.deepEqual(last.weight.index(3).toArray(), [0, 0]));
    last.dispose();
    assert.throws(() => new Embedding(4, 2, { paddingIdx: 4 }), /paddingIdx 4 out of range for 4 embeddings/);
    const w = tensor([[1, 2], [3, 4]]);
    const pre = Embedding.fromPretrained(w);
    assert.equal(pre.weight.requiresGrad, false);
    tidy(() => assert.deepEqual(pre.call(tensor([1], { dtype: 'int64' })).toArray(), [3, 4]));
    dispose(w);
    pre.dispose();
  });
});

// ================================================================================================ Module
class Block extends Module {
  conv1 = this.registerModule('conv1', new Conv2d(2, 4, 3, { stride: 2, padding: 1, bias: false }));
  bn1 = this.registerModule('bn1', new BatchNorm2d(4));
  conv2 = this.registerModule('conv2', new Conv2d(4, 4, 3, { padding: 1, bias: false }));
  bn2 = this.registerModule('bn2', new BatchNorm2d(4));
  downsample = this.registerModule('downsample', new Sequential(new Conv2d(2, 4, 1, { stride: 2, bias: false }), new BatchNorm2d(4)));
  forward(x: Tensor): Tensor {
    const h = this.bn2.call(this.conv2.call(this.bn1.call(this.conv1.call(x)).relu()));
    return h.add(this.downsample.call(x)).relu();
  }
}

/** The TypeScript twin of make_nn_fixtures.py's Net. */
class Net extends Module {
  stem = this.registerModule('stem', new Sequential(new Conv2d(1, 2, 3), new BatchNorm2d(2), new ReLU()));
  layer1 = this.registerModule('layer1', new Sequential(new Block()));
  blocks = this.registerModule('blocks', new ModuleList([new Linear(4, 4), new Linear(4, 4)]));
  encoder = this.registerModule(
    'encoder',
    new TransformerEncoder(() => new TransformerEncoderLayer(4, 2, { dimFeedforward: 8, dropout: 0.1 }), 2, { norm: new LayerNorm(4) }),
  );
  emb = this.registerModule('emb', new Embedding(5, 4));
  head = this.registerModule('head', new Linear(4, 1));
  /** x [B, 1, 6, 6], tokens [B, T] -> [B, 1] */
  forward(x: Tensor, tokens: Tensor): Tensor {
    let h = this.layer1.call(this.stem.call(x)).mean([2, 3]); // [B, 4]
    for (const b of this.blocks) h = b.call(h);
    const seq = this.emb.call(tokens).add(h.unsqueeze(1)).transpose(0, 1); // [T, B, 4]
    return this.head.call(this.encoder.call(seq).mean(0));
  }
}

describe('Module', () => {
  checkLeaks();

  it("stateDict keys, order and dtypes equal PyTorch's for a nested model", () => {
    const net = new Net();
    const sd = net.stateDict();
    assert.deepEqual(Object.keys(sd), I.net_keys);
    assert.equal(sd['stem.1.num_batches_tracked'].dtype, 'int64');
    assert.equal(sd['layer1.0.bn1.running_var'].dtype, 'float32');
    assert.equal(net.numParameters(), I.net_num_parameters);
    assert.deepEqual(net.namedParameters().map((x) => x[0]), I.net_keys.filter((k: string) => !/running_|num_batches/.test(k)));
    assert.deepEqual(net.namedBuffers().map((x) => x[0]).slice(0, 3), ['stem.1.running_mean', 'stem.1.running_var', 'stem.1.num_batches_tracked']);
    const paths = [...net.namedModules()].map((x) => x[0]);
    assert.ok(paths.includes('layer1.0.downsample.1') && paths.includes('encoder.layers.1.self_attn.out_proj'));
    assert.equal(paths[0], '');
    assert.deepEqual([...net.children()].length, 6);
    assert.equal(net.getSubmodule('layer1.0.conv1'), (net.layer1.at(0) as Block).conv1);
    tidy(() => {
      const y = net.call(randn([2, 1, 6, 6]), tensor([[1, 2, 3], [0, 4, 4]], { dtype: 'int64' }));
      assert.deepEqual(y.shape, [2, 1]);
    });
    net.dispose();
  });

  it('loadStateDict copies values, keeps parameters as leaves, and accepts a Map', () => {
    manualSeed(1);
    const a = new Net(), b = new Net();
    tidy(() => assert.ok(maxDiff(a.head.weight, b.head.weight) > 0));
    b.loadStateDict(a.stateDict());
    tidy(() => {
      for (const [k, t] of Object.entries(b.stateDict())) assert.equal(maxDiff(t, a.stateDict()[k]), 0, k);
    });
    assert.ok(b.head.weight.isLeaf && b.head.weight.requiresGrad);
    assert.notEqual(b.head.weight, a.head.weight);
    const c = new Linear(2, 2);
    const m = new Map<string, Tensor>([['weight', ones([2, 2])], ['bias', zeros([2])]]);
    c.loadStateDict(m);
    tidy(() => assert.deepEqual(c.weight.toArray(), [1, 1, 1, 1]));
    dispose([...m.values()]);
    [a, b, c].forEach((x) => x.dispose());
  });

  it('loadStateDict reports every missing, unexpected and mismatched key in one error, and loads nothing', () => {
    const net = new Net();
    const before = tidy(() => net.head.weight.toArray());
    const sd = { ...net.stateDict() };
    delete sd['head.bias'];
    delete sd['encoder.norm.weight'];
    const extra = zeros([1]);
    const bad1 = zeros([3, 4]);
    const bad2 = zeros([2, 1, 3]);
    const newHead = ones([1, 4]);
    sd['head.extra'] = extra;
    sd['blocks.0.weight'] = bad1;
    sd['stem.0.weight'] = bad2;
    sd['head.weight'] = newHead;
    assert.throws(
      () => net.loadStateDict(sd),
      (e: Error) => {
        const m = e.message;
        assert.match(m, /Net\.loadStateDict/);
        assert.match(m, /missing keys \(2\): encoder\.norm\.weight, head\.bias/);
        assert.match(m, /unexpected keys \(1\): head\.extra/);
        assert.match(m, /blocks\.0\.weight: expected \[4, 4\], got \[3, 4\]/);
        assert.match(m, /stem\.0\.weight: expected \[2, 1, 3, 3\], got \[2, 1, 3\]/);
        return true;
      },
    );
    tidy(() => assert.deepEqual(net.head.weight.toArray(), before, 'nothing loaded'));
    // strict: false still rejects shape mismatches, and reports what it skipped
    assert.throws(() => net.loadStateDict(sd, { strict: false }), /blocks\.0\.weight: expected \[4, 4\], got \[3, 4\]/);
    sd['blocks.0.weight'] = net.blocks.at(0).stateDict().weight;
    sd['stem.0.weight'] = net.stem.at(0).stateDict().weight;
    const r = net.loadStateDict(sd, { strict: false });
    assert.deepEqual(r, { missing: ['encoder.norm.weight', 'head.bias'], unexpected: ['head.extra'] });
    tidy(() => assert.deepEqual(net.head.weight.toArray(), [1, 1, 1, 1]));
    assert.throws(() => net.loadStateDict({ ...net.stateDict(), 'head.bias': 3 as any }), /head\.bias/);
    dispose([extra, bad1, bad2, newHead]);
    net.dispose();
  });

  it('requiresGrad_(false) freezes: no gradients, numParameters(trainableOnly)', () => {
    const net = new Sequential(new Linear(3, 4), new ReLU(), new Linear(4, 2));
    (net.at(0) as Linear).requiresGrad_(false);
    assert.equal(net.numParameters(), 12 + 4 + 8 + 2);
    assert.equal(net.numParameters(true), 10);
    tidy(() => net.call(randn([5, 3])).sum().backward());
    const [w0, b0, w1, b1] = net.parameters();
    assert.equal(w0.grad, null);
    assert.equal(b0.grad, null);
    tidy(() => {
      assert.ok(w1.grad !== null && b1.grad !== null);
      assert.ok(w1.grad!.abs().sum().item() > 0);
    });
    net.zeroGrad({ setToNone: false });
    tidy(() => assert.equal(w1.grad!.abs().sum().item(), 0));
    net.zeroGrad();
    assert.equal(w1.grad, null);
    net.requiresGrad_(false);
    assert.ok(net.parameters().every((p) => !p.requiresGrad));
    tidy(() => assert.equal(net.call(randn([1, 3])).requiresGrad, false));
    net.requiresGrad_(true);
    assert.ok(net.parameters().every((p) => p.requiresGrad && p.isLeaf));
    net.dispose();
  });

  it('train()/eval() switch Dropout and BatchNorm throughout the tree', () => {
    const net = new Sequential(new Linear(4, 4), new Dropout(0.5), new Sequential(new BatchNorm1d(4)));
    const bn = (net.at(2) as Sequential).at(0) as BatchNorm1d;
    tidy(() => {
      const x = randn([8, 4]);
      assert.equal(net.training, true);
      const a = net.call(x), b = net.call(x);
      assert.ok(maxDiff(a, b) > 0, 'dropout is active in training');
      assert.equal(bn.numBatchesTracked!.item(), 2);
      net.eval();
      assert.ok([...net.namedModules()].every(([, m]) => m.training === false));
      const stats = bn.runningMean!.clone();
      const c = net.call(x), d = net.call(x);
      assert.equal(maxDiff(c, d), 0, 'eval is deterministic');
      assert.equal(maxDiff(bn.runningMean!, stats), 0, 'running stats frozen in eval');
      assert.equal(bn.numBatchesTracked!.item(), 2);
      // eval BatchNorm uses the running statistics
      const lin = (net.at(0) as Linear).call(x);
      const expect = lin.sub(bn.runningMean!).div(bn.runningVar!.add(1e-5).sqrt());
      assert.ok(maxDiff(c, expect) < 1e-5);
      // dropout in eval is the identity
      assert.equal(maxDiff(net.at(1).call(x), x), 0);
      net.train();
      assert.ok(bn.training && net.at(1).training);
      const drop = new Dropout(1);
      assert.equal(drop.call(x).abs().sum().item(), 0);
      assert.throws(() => bn.call(randn([1, 4])), /more than 1 value per channel when training/);
      assert.throws(() => bn.call(randn([3, 5])), /input has 5 channels/);
    });
    assert.throws(() => new Dropout(1.5), /p must be in \[0, 1\], got 1.5/);
    net.dispose();
  });

  it('forward hooks capture submodule outputs by path, and removers work', () => {
    const net = new Net();
    tidy(() => {
      const x = randn([2, 1, 6, 6]);
      const tok = tensor([[1, 2], [3, 4]], { dtype: 'int64' });
      const { result, features } = net.captureFeatures(
        ['stem.0', 'layer1.0.downsample', 'blocks.1', 'encoder.layers.1.self_attn', 'head'],
        () => net.call(x, tok),
      );
      assert.deepEqual(features.get('stem.0')!.shape, [2, 2, 4, 4]);
      assert.deepEqual(features.get('layer1.0.downsample')!.shape, [2, 4, 2, 2]);
      assert.deepEqual(features.get('blocks.1')!.shape, [2, 4]);
      assert.deepEqual(features.get('encoder.layers.1.self_attn')!.shape, [2, 2, 4]);
      assert.deepEqual(features.get(attentionKey('encoder.layers.1'))!.shape, [2, 2, 2, 2]);
      assert.equal(maxDiff(features.get('head')!, result), 0);
      // the captured stem output is what the first conv computes
      assert.equal(maxDiff(features.get('stem.0')!, net.stem.at(0).call(x)), 0);
      assert.ok(!net.getSubmodule('head').hasForwardHooks(), 'capture hooks removed');

      const seen: string[] = [];
      const r1 = net.registerForwardHook('blocks.0', (m, inputs, out) => {
        seen.push(`${m.constructor.name}:${(inputs[0] as Tensor).shape}->${(out as Tensor).shape}`);
      });
      const r2 = net.registerForwardHook('', () => seen.push('root'));
      net.call(x, tok);
      assert.deepEqual(seen, ['Linear:2,4->2,4', 'root']);
      r1();
      r1();
      net.call(x, tok);
      assert.deepEqual(seen, ['Linear:2,4->2,4', 'root', 'root']);
      r2();
      net.call(x, tok);
      assert.equal(seen.length, 3);
      assert.ok(!net.hasForwardHooks() && !net.getSubmodule('blocks.0').hasForwardHooks());
      // an error inside fn removes the hooks too
      assert.throws(() => net.captureFeatures(['head'], () => { throw new Error('boom'); }), /boom/);
      assert.ok(!net.getSubmodule('head').hasForwardHooks());
    });
    assert.throws(() => net.captureFeatures(['head', 'haed.0'], () => 0), /no submodule 'haed\.0'/);
    assert.ok(!net.getSubmodule('head').hasForwardHooks(), 'no hook left behind by a bad path');
    net.dispose();
  });

  it('getSubmodule: an unknown path lists the closest existing ones', () => {
    const net = new Net();
    assert.throws(() => net.getSubmodule('layer1.0.conv3'), /no submodule 'layer1\.0\.conv3'.*Closest paths: layer1\.0\.conv1, layer1\.0\.conv2/s);
    assert.throws(() => net.getSubmodule('block.1'), /Closest paths: blocks\.1\b/);
    assert.throws(() => net.registerForwardHook('encoder.layer.0', () => {}), /Closest paths: encoder\.layers\.0\b/);
    const lone = new Linear(2, 2);
    assert.throws(() => lone.getSubmodule('x'), /has no submodule 'x'/);
    lone.dispose();
    net.dispose();
  });

  it('to(dtype) converts in place: same objects, leaves, gradients converted, int buffers kept', () => {
    const net = new Sequential(new Linear(2, 3), new BatchNorm1d(3));
    const lin = net.at(0) as Linear;
    const bn = net.at(1) as BatchNorm1d;
    const w = lin.weight;
    tidy(() => net.call(randn([4, 2])).sum().backward());
    const before = liveTensors();
    net.to('float64');
    assert.equal(liveTensors(), before, 'no handle leaked or lost');
    assert.equal(lin.weight, w);
    assert.equal(w.dtype, 'float64');
    assert.ok(w.isLeaf && w.requiresGrad);
    tidy(() => assert.equal(w.grad!.dtype, 'float64'));
    assert.equal(bn.runningMean!.dtype, 'float64');
    assert.equal(bn.numBatchesTracked!.dtype, 'int64');
    net.zeroGrad();
    tidy(() => net.call(randn([4, 2], { dtype: 'float64' })).sum().backward());
    tidy(() => assert.equal(w.grad!.dtype, 'float64'));
    assert.throws(() => net.to('int64'), /floating/);
    net.to('float32');
    assert.equal(w.dtype, 'float32');
    net.dispose();
  });

  it('registration rules and errors name the module and shapes', () => {
    class Bad extends Module {
      forward(): void {}
    }
    const b = new Bad();
    const t = zeros([2]);
    b.registerParameter('p', t);
    const other = zeros([1]);
    assert.throws(() => b.registerBuffer('p', other), /parameter of that name exists/);
    other.dispose();
    assert.throws(() => b.registerModule('a.b', new Identity()), /invalid/);
    const nonLeaf = tidy(() => randn([2], { requiresGrad: true }).mul(2));
    assert.throws(() => b.registerParameter('q', nonLeaf), /leaf|history|operation/);
    nonLeaf.dispose();
    b.dispose();
    assert.equal(t.isDisposed, true, 'dispose frees registered tensors');

    const lin = new Linear(5, 3);
    tidy(() => assert.throws(() => lin.call(zeros([2, 4])), /Linear\(in_features=5, out_features=3, bias=true\).*\[2, 4\]/s));
    const conv = new Conv2d(3, 4, 3);
    tidy(() => assert.throws(() => conv.call(zeros([1, 2, 5, 5])), /Conv2d\(3, 4, kernel_size=\(3, 3\).*\[1, 2, 5, 5\]/s));
    const mha = new MultiheadAttention(4, 2);
    tidy(() => {
      const q = zeros([3, 1, 4]);
      assert.throws(() => mha.call(q, q, q, { keyPaddingMask: zeros([1, 2]).bool() }), /keyPaddingMask must be \[1, 3\].*got \[1, 2\]/);
      assert.throws(() => mha.call(q, q, q, { attnMask: zeros([3, 2]) }), /attnMask must be \[3, 3\] or \[2, 3, 3\]/);
    });
    assert.throws(() => new MultiheadAttention(6, 4), /embedDim \(6\) must be divisible by numHeads \(4\)/);
    assert.throws(() => new Conv2d(3, 4, 3, { groups: 2 }), /divisible by groups/);
    assert.throws(() => new Conv2d(3, 4, 3, { padding: 'same', stride: 2 }), /'same'.*strided/);
    [lin, conv, mha].forEach((m) => m.dispose());
  });

  it('containers and repr', () => {
    const seq = new Sequential(new Linear(2, 2), new ReLU());
    seq.append(new Flatten());
    assert.equal(seq.length, 3);
    assert.ok(seq.at(-1) instanceof Flatten);
    assert.deepEqual(Object.keys(seq.stateDict()), ['0.weight', '0.bias']);
    const list = new ModuleList<Linear>([new Linear(1, 1)]).extend([new Linear(1, 2)]);
    assert.equal(list.at(1).outFeatures, 2);
    assert.throws(() => list.call(), /ModuleList has no forward/);
    assert.match(String(seq), /Sequential\(\)\n {2}\(0\): Linear\(in_features=2, out_features=2, bias=true\)\n {2}\(1\): ReLU\(\)/);
    // a layer's output is released as soon as the next layer has run (autograd keeps what backward needs)
    tidy(() => {
      const x = randn([3, 2]);
      const before = liveTensors();
      const y = seq.call(x);
      assert.equal(liveTensors() - before, 1, 'only the output is left');
      y.sum().backward();
      assert.deepEqual(seq.at(0).parameters().map((p) => p.grad !== null), [true, true]);
      for (const p of seq.parameters()) p.grad = null;
    });
    seq.dispose();
    list.dispose();
  });
});
