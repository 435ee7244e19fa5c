import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, manualSeed, noGrad, randn, tensor, tidy, zeros, liveTensors } from '../src/torch';
import {
  AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Dropout, Embedding, Flatten, GELU, LayerNorm, Linear,
  MaxPool2d, Module, ModuleList, MultiheadAttention, ReLU, Sequential, SiLU, Sigmoid, Tanh, TransformerEncoderLayer,
} from '../src/nn';
import { checkLeaks, fixture, fx, gradcheck, maxDiff } from './helpers';

const F = fixture('nn.json');
function loadFx(m: Module, state: Record<string, any>): void {
  const sd: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries<any>(state)) sd[k] = fx(v, k.endsWith('num_batches_tracked') ? 'int64' : 'float64');
  m.loadStateDict(sd);
  dispose(sd);
}

describe('layers match PyTorch 1.13', () => {
  checkLeaks();
  it('Linear', () => {
    const m = new Linear(5, 3).to('float64');
    loadFx(m, F.linear.state);
    tidy(() => assert.ok(maxDiff(m.call(fx(F.linear.x)), fx(F.linear.y)) < 1e-10));
    m.dispose();
  });
  it('Conv2d with stride and padding', () => {
    const m = new Conv2d(2, 3, 3, { stride: 2, padding: 1 }).to('float64');
    loadFx(m, F.conv2d.state);
    tidy(() => assert.ok(maxDiff(m.call(fx(F.conv2d.x)), fx(F.conv2d.y)) < 1e-10));
    m.dispose();
  });
  it('BatchNorm2d in training (running stats) and eval', () => {
    const m = new BatchNorm2d(3).to('float64');
    loadFx(m, F.batchnorm2d.state);
    tidy(() => {
      const x = fx(F.batchnorm2d.x);
      assert.ok(maxDiff(m.call(x), fx(F.batchnorm2d.y_train)) < 1e-10);
      const sd = m.stateDict();
      for (const [k, v] of Object.entries<any>(F.batchnorm2d.state_after))
        assert.ok(maxDiff(sd[k], fx(v, k.endsWith('tracked') ? 'int64' : 'float64')) < 1e-10, k);
      m.eval();
      assert.ok(maxDiff(m.call(x), fx(F.batchnorm2d.y_eval)) < 1e-10);
    });
    m.dispose();
  });
  it('LayerNorm', () => {
    const m = new LayerNorm(4).to('float64');
    loadFx(m, F.layernorm.state);
    tidy(() => assert.ok(maxDiff(m.call(fx(F.layernorm.x)), fx(F.layernorm.y)) < 1e-10));
    m.dispose();
  });
  it('MultiheadAttention output and attention weights', () => {
    const m = new MultiheadAttention(8, 2, { batchFirst: true }).to('float64');
    loadFx(m, F.mha.state);
    tidy(() => {
      const q = fx(F.mha.q), kv = fx(F.mha.kv);
      const mask = tensor([[false, false, false, true], [false, false, false, false]]);
      const [o, w] = m.call(q, kv, kv, { keyPaddingMask: mask });
      assert.ok(maxDiff(o, fx(F.mha.y)) < 1e-10);
      assert.ok(maxDiff(w!, fx(F.mha.w)) < 1e-10);
      const [o2, w2] = m.call(q, kv, kv, { averageAttnWeights: false });
      assert.ok(maxDiff(o2, fx(F.mha.y_nomask)) < 1e-10);
      assert.ok(maxDiff(w2!, fx(F.mha.w_heads)) < 1e-10);
    });
    m.dispose();
  });
  it('TransformerEncoderLayer, post-norm and pre-norm with GELU', () => {
    const m = new TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, batchFirst: true }).to('float64').eval();
    assert.deepEqual(Object.keys(m.stateDict()), F.encoder_layer.keys);
    loadFx(m, F.encoder_layer.state);
    const pre = new TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0, batchFirst: true, normFirst: true, activation: 'gelu' }).to('float64').eval();
    loadFx(pre, F.encoder_layer.state_pre);
    tidy(() => {
      const x = fx(F.encoder_layer.x);
      assert.ok(maxDiff(m.call(x), fx(F.encoder_layer.y)) < 1e-10);
      assert.ok(maxDiff(pre.call(x), fx(F.encoder_layer.y_pre)) < 1e-10);
      // attention probabilities of the layer are capturable
      const { features } = m.captureFeatures(['self_attn'], () => m.call(x));
      const probs = features.get('self_attn#1')!;
      assert.deepEqual(probs.shape, [2, 2, 5, 5]);
      assert.ok(maxDiff(probs.sum(-1), tensor(new Float64Array(20).fill(1), { shape: [2, 2, 5] })) < 1e-12);
    });
    m.dispose();
    pre.dispose();
  });
});

describe('gradients of every layer match central differences', () => {
  checkLeaks();
  const cases: [string, () => Module, number[]][] = [
    ['Linear', () => new Linear(3, 2), [2, 3]],
    ['Conv1d', () => new Conv1d(2, 2, 3, { padding: 1 }), [1, 2, 4]],
    ['Conv2d', () => new Conv2d(2, 2, 2, { groups: 2 }), [1, 2, 3, 3]],
    ['BatchNorm1d', () => new BatchNorm1d(3), [4, 3]],
    ['BatchNorm2d', () => new BatchNorm2d(2), [3, 2, 2, 2]],
    ['LayerNorm', () => new LayerNorm(4), [2, 4]],
    ['MaxPool2d', () => new MaxPool2d(2), [1, 1, 4, 4]],
    ['AvgPool2d', () => new AvgPool2d(2), [1, 2, 4, 4]],
    ['AdaptiveAvgPool2d', () => new AdaptiveAvgPool2d(2), [1, 2, 5, 5]],
    ['Flatten', () => new Flatten(), [2, 2, 2]],
    ['ReLU', () => new ReLU(), [3, 4]],
    ['GELU', () => new GELU(), [3, 4]],
    ['Tanh', () => new Tanh(), [3, 4]],
    ['Sigmoid', () => new Sigmoid(), [3, 4]],
    ['SiLU', () => new SiLU(), [3, 4]],
    ['Sequential', () => new Sequential(new Linear(3, 4), new Tanh(), new Linear(4, 2)), [2, 3]],
    ['TransformerEncoderLayer', () => new TransformerEncoderLayer(4, 2, { dimFeedforward: 6, dropout: 0, batchFirst: true }), [1, 3, 4]],
  ];
  for (const [name, make, shape] of cases) {
    it(name, () => {
      manualSeed(3);
      const m = make().to('float64');
      const x = randn(shape, { dtype: 'float64', requiresGrad: true });
      gradcheck(() => m.call(x), [x, ...m.parameters()], { label: name });
      x.dispose();
      m.dispose();
    });
  }
  it('MultiheadAttention (query, key, value and weights)', () => {
    manualSeed(4);
    const m = new MultiheadAttention(4, 2, { batchFirst: true }).to('float64');
    const q = randn([1, 2, 4], { dtype: 'float64', requiresGrad: true });
    const kv = randn([1, 3, 4], { dtype: 'float64', requiresGrad: true });
    gradcheck(() => m.call(q, kv, kv)[0], [q, kv, ...m.parameters()], { label: 'mha' });
    dispose([q, kv]);
    m.dispose();
  });
  it('Embedding (weight); the padding row gets no gradient', () => {
    const m = new Embedding(5, 3).to('float64');
    const idx = tensor([1, 0, 4, 1], { dtype: 'int64' });
    gradcheck(() => m.call(idx), m.parameters(), { label: 'embedding' });
    m.dispose();
    const p = new Embedding(5, 3, { paddingIdx: 0 });
    tidy(() => {
      assert.deepEqual(p.weight.index(0).toArray(), [0, 0, 0]);
      p.call(idx).sum().backward();
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
  });
});

class Net extends Module {
  features = this.registerModule('features', new Sequential(new Conv2d(1, 2, 3), new BatchNorm2d(2), new ReLU()));
  blocks = this.registerModule('blocks', new ModuleList([new Linear(2, 2), new Linear(2, 2)]));
  head = this.registerModule('head', new Linear(2, 1));
  forward(x: Tensor): Tensor {
    let h = this.features.call(x).mean([2, 3]);
    for (const b of this.blocks) h = b.call(h);
    return this.head.call(h);
  }
}

describe('Module', () => {
  checkLeaks();
  it('state_dict keys equal PyTorch\'s', () => {
    const net = new Net();
    assert.deepEqual(Object.keys(net.stateDict()), F.net_keys);
    assert.equal(net.stateDict()['features.1.num_batches_tracked'].dtype, 'int64');
    assert.equal(net.numParameters(), 2 * 9 + 2 + 2 + 2 + 2 * (4 + 2) + 3);
    net.dispose();
  });
  it('loadStateDict names every missing, unexpected and mismatched key', () => {
    const net = new Net();
    const sd = { ...net.stateDict() };
    delete sd['head.bias'];
    const extra = zeros([1]);
    const bad = zeros([3, 2]);
    sd['head.extra'] = extra;
    sd['blocks.0.weight'] = bad;
    assert.throws(() => net.loadStateDict(sd), (e: Error) =>
      /missing keys \(1\): head\.bias/.test(e.message) && /unexpected keys \(1\): head\.extra/.test(e.message) &&
      /blocks\.0\.weight: expected \[2, 2\], got \[3, 2\]/.test(e.message));
    delete sd['blocks.0.weight'];
    const r = net.loadStateDict({ ...sd, 'blocks.0.weight': net.blocks.at(0).stateDict().weight }, { strict: false });
    assert.deepEqual(r, { missing: ['head.bias'], unexpected: ['head.extra'] });
    dispose([extra, bad]);
    net.dispose();
  });
  it('copies values on load and keeps parameters as leaves', () => {
    const a = new Linear(3, 2), b = new Linear(3, 2);
    b.loadStateDict(a.stateDict());
    tidy(() => assert.deepEqual(b.weight.toArray(), a.weight.toArray()));
    assert.ok(b.weight.isLeaf && b.weight.requiresGrad);
    a.dispose();
    b.dispose();
  });
  it('requiresGrad_(false) freezes; train/eval switch Dropout and BatchNorm', () => {
    const net = new Sequential(new Linear(4, 4), new Dropout(0.5), new BatchNorm1d(4));
    net.requiresGrad_(false);
    assert.ok(net.parameters().every((p) => !p.requiresGrad));
    tidy(() => {
      const x = randn([8, 4]);
      const y = net.call(x);
      assert.equal(y.requiresGrad, false);
      net.eval();
      assert.ok(maxDiff(net.call(x), net.call(x)) === 0, 'eval is deterministic');
      assert.equal((net.at(1) as Dropout).training, false);
      net.train();
      assert.ok(maxDiff(net.call(x), net.call(x)) > 0, 'dropout is active in training');
    });
    net.dispose();
  });
  it('forward hooks capture submodule outputs by path and can be removed', () => {
    const net = new Net();
    tidy(() => {
      const x = randn([2, 1, 5, 5]);
      const { result, features } = net.captureFeatures(['features.0', 'blocks.1', 'head'], () => net.call(x));
      assert.deepEqual(features.get('features.0')!.shape, [2, 2, 3, 3]);
      assert.deepEqual(features.get('blocks.1')!.shape, [2, 2]);
      assert.equal(features.get('head'), result);
      let calls = 0;
      const remove = net.registerForwardHook('blocks.0', () => calls++);
      net.call(x);
      remove();
      net.call(x);
      assert.equal(calls, 1);
      assert.equal(net.getSubmodule('blocks.0').hasForwardHooks(), false);
    });
    net.dispose();
  });
  it('an unknown path lists the closest ones', () => {
    const net = new Net();
    assert.throws(() => net.getSubmodule('block.1'), /no submodule 'block\.1'\. Closest paths: blocks\.1, blocks, blocks\.0/);
    assert.throws(() => net.registerForwardHook('feature.0', () => {}), /Closest paths: features\.0/);
    net.dispose();
  });
  it('default initialisation follows PyTorch', () => {
    manualSeed(0);
    const lin = new Linear(400, 300);
    const conv = new Conv2d(16, 8, 3);
    tidy(() => {
      const bound = 1 / Math.sqrt(400);
      const w = lin.weight.abs().max().item();
      assert.ok(w <= bound + 1e-7 && w > bound * 0.99, `linear weight bound ${w} vs ${bound}`);
      const b = lin.bias!.abs().max().item();
      assert.ok(b <= bound && b > bound * 0.9);
      // kaiming_uniform(a=sqrt(5)) gives std = bound/sqrt(3)
      const std = lin.weight.std().item();
      assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.01 * bound, `std ${std}`);
      const cb = 1 / Math.sqrt(16 * 9);
      assert.ok(conv.weight.abs().max().item() <= cb + 1e-7);
    });
    lin.dispose();
    conv.dispose();
  });
  it('to(dtype) keeps the same parameter objects usable by an optimizer', () => {
    const lin = new Linear(2, 2);
    const p = lin.weight;
    const before = liveTensors();
    lin.to('float64');
    assert.equal(liveTensors(), before);
    assert.equal(lin.weight, p);
    assert.equal(p.dtype, 'float64');
    assert.ok(p.isLeaf && p.requiresGrad);
    tidy(() => lin.call(randn([1, 2], { dtype: 'float64' })).sum().backward());
    tidy(() => assert.equal(p.grad!.dtype, 'float64'));
    noGrad(() => lin.zeroGrad());
    lin.dispose();
  });
});
