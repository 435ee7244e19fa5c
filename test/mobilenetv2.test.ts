import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, noGrad, randint, randn, tensor, tidy } from '../src/torch';
import { F } from '../src/nn';
import { SGD } from '../src/optim';
import { MobileNetV2, createModel, makeDivisible, registerBuiltinModels } from '../src/models';
import { checkLeaks, fixture } from './helpers';

// Reference from torchvision 0.14 (test/fixtures/make_mobilenetv2_fixture.py): names, shapes, parameter counts, and
// eval-mode outputs for weights and input given by a deterministic pattern both sides compute.
const M = fixture('mobilenetv2.json');
registerBuiltinModels();

function weyl(n: number, t: number): Float64Array {
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) out[j] = (2 * ((j * 2654435761 + t * 40503 + 12345) % 4294967296)) / 4294967296 - 1;
  return out;
}

function patternState(model: MobileNetV2): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  Object.entries(model.stateDict()).forEach(([k, v], t) => {
    if (k.endsWith('num_batches_tracked')) {
      out[k] = v.clone();
      return;
    }
    const base = weyl(v.numel(), t);
    const vals = new Float32Array(v.numel());
    const fanIn = v.ndim > 1 ? v.numel() / v.shape[0] : 0;
    for (let j = 0; j < vals.length; j++) {
      const b = base[j];
      vals[j] = k.endsWith('running_var') ? 1 + 0.2 * Math.abs(b) : k.endsWith('running_mean') ? 0.1 * b
        : v.ndim > 1 ? b * Math.sqrt(6 / fanIn) : k.endsWith('weight') ? 1 + 0.1 * b : 0.1 * b;
    }
    out[k] = tensor(vals, { shape: v.shape });
  });
  return out;
}

function closeTo(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  const worst = Math.max(...actual.map((a, i) => Math.abs(a - expected[i]) / (1e-4 + Math.abs(expected[i]))));
  assert.ok(worst < 2e-3, `${what}: worst relative difference ${worst}`);
}

describe('MobileNetV2', () => {
  checkLeaks();
  it('width 0.5: state_dict names, shapes and parameter count equal torchvision', () => {
    const m = createModel('mobilenetv2-0.5', { numClasses: 10 });
    const sd = m.stateDict();
    assert.deepEqual(Object.keys(sd), M.keys);
    assert.deepEqual(Object.values(sd).map((t) => t.shape), M.shapes);
    assert.equal(m.numParameters(), M.params);
    m.dispose();
    const full = createModel('mobilenetv2');
    assert.equal(full.numParameters(), M.params_width1);
    full.dispose();
    assert.deepEqual([makeDivisible(16), makeDivisible(12), makeDivisible(4), makeDivisible(1280 * 0.75)], [16, 16, 8, 960]);
  });
  for (const variant of ['imagenet', 'small'] as const) {
    it(`${variant} strides: eval outputs and feature maps equal torchvision's for the same weights`, () => {
      const m = new MobileNetV2({ width: 0.5, numClasses: 10, smallInput: variant === 'small' });
      const w = patternState(m);
      m.loadStateDict(w);
      dispose(Object.values(w));
      m.eval();
      tidy(() => {
        const n = 3 * 32 * 32;
        const img = new Float32Array(2 * n);
        img.set(Float32Array.from(weyl(n, 1000)));
        for (let j = 0; j < n; j++) img[n + j] = (4 * j) / n - 2;
        const x = tensor(img, { shape: [2, 3, 32, 32] });
        const ref = M.outputs[variant];
        noGrad(() => {
          const f = m.features.call(x) as Tensor;
          assert.deepEqual(f.shape, ref.features_shape);
          closeTo(f.narrow(1, 0, 8).contiguous().toArray(), ref.features_head, 'features[:, :8]');
          closeTo((m.call(x) as Tensor).toArray(), ref.logits.flat(), 'logits');
        });
      });
      m.dispose();
    });
  }
  it('trains: a few SGD steps on one batch lower the loss, in train mode with dropout and batch statistics', async () => {
    const m = new MobileNetV2({ width: 0.5, numClasses: 10, smallInput: true, inChannels: 1 });
    const opt = new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
    const x = randn([8, 1, 28, 28]);
    const y = randint(0, 10, [8], { dtype: 'int64' });
    const losses: number[] = [];
    m.train();
    for (let s = 0; s < 8; s++) {
      losses.push(tidy(() => {
        const loss = F.crossEntropy(m.call(x) as Tensor, y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        return loss.item();
      }));
      await new Promise<void>((r) => setImmediate(r));
    }
    assert.ok(losses[losses.length - 1] < losses[0] * 0.7, `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
    assert.equal(m.features.at(0).stateDict()['1.num_batches_tracked'].item(), 8);
    dispose([x, y]);
    opt.dispose();
    m.dispose();
  });
  it('rejects a bad width', () => {
    assert.throws(() => new MobileNetV2({ width: 0 }), /mobilenetv2: width must be a positive number, got 0/);
  });
});
