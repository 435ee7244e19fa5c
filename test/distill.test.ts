import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randn, tensor, tidy, dispose } from '../src/torch';
import { responseKD, softTargetLoss } from '../src/distill';
import { checkLeaks, gradcheck } from './helpers';

const softmax = (z: number[], T: number) => {
  const e = z.map((v) => Math.exp(v / T));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('response KD', () => {
  checkLeaks();
  it('equals α·CE + (1−α)·T²·KL computed by hand', () => {
    const s = [[1, 2, 0.5], [0, -1, 3]];
    const t = [[2, 1, 0], [1, 0, 4]];
    const y = [1, 2];
    const T = 3, alpha = 0.3;
    let ce = 0, kl = 0;
    for (let i = 0; i < 2; i++) {
      ce += -Math.log(softmax(s[i], 1)[y[i]]);
      const p = softmax(t[i], T), q = softmax(s[i], T);
      kl += p.reduce((acc, pi, k) => acc + pi * Math.log(pi / q[k]), 0);
    }
    ce /= 2;
    kl /= 2;
    tidy(() => {
      const r = responseKD({ temperature: T, alpha })(tensor(s, { dtype: 'float64' }), tensor(t, { dtype: 'float64' }), tensor(y, { dtype: 'int64' }));
      assert.ok(Math.abs(r.hard.item() - ce) < 1e-12);
      assert.ok(Math.abs(r.soft.item() - T * T * kl) < 1e-12);
      assert.ok(Math.abs(r.loss.item() - (alpha * ce + (1 - alpha) * T * T * kl)) < 1e-12);
      // soft cross-entropy differs from KL by the teacher's entropy (times T²), which has no student gradient
      const H = [0, 1].reduce((acc, i) => acc - softmax(t[i], T).reduce((a, p) => a + p * Math.log(p), 0), 0) / 2;
      const sce = softTargetLoss(tensor(s, { dtype: 'float64' }), tensor(t, { dtype: 'float64' }), T, 'soft_ce');
      assert.ok(Math.abs(sce.item() - T * T * (kl + H)) < 1e-12);
      const mse = softTargetLoss(tensor(s, { dtype: 'float64' }), tensor(t, { dtype: 'float64' }), T, 'logit_mse');
      assert.ok(Math.abs(mse.item() - [0, 1].reduce((a, i) => a + s[i].reduce((b, v, k) => b + (v - t[i][k]) ** 2, 0), 0) / 6) < 1e-12);
    });
  });
  it('has correct gradients for every soft loss', () => {
    const st = randn([3, 5], { dtype: 'float64', requiresGrad: true });
    const te = randn([3, 5], { dtype: 'float64' });
    const y = tensor([0, 4, 2], { dtype: 'int64' });
    for (const softLoss of ['kl', 'soft_ce', 'logit_mse'] as const) {
      const f = responseKD({ temperature: 2, alpha: 0.4, softLoss });
      gradcheck(() => f(st, te, y).loss, [st], { label: softLoss });
    }
    dispose([st, te, y]);
  });
  it('rejects bad options and mismatched logits', () => {
    assert.throws(() => responseKD({ alpha: 1.5 }), /alpha must be in \[0, 1\], got 1.5/);
    assert.throws(() => responseKD({ temperature: 0 }), /temperature must be positive/);
    tidy(() => {
      assert.throws(() => responseKD()(randn([2, 3]), randn([2, 4]), tensor([0, 1], { dtype: 'int64' })), /student logits \[2, 3\] and teacher logits \[2, 4\] differ/);
      assert.throws(() => softTargetLoss(randn([2, 3]), randn([2, 3]), 2, 'cosine' as any), /unknown soft loss 'cosine'/);
    });
  });
});
