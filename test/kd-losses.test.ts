import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, tidy } from '../src/torch';
import {
  atLoss, attentionKlLoss, attentionMseLoss, ccLoss, cosineLoss, dkdLoss, fspLoss, hintLoss, nstLoss, pktLoss,
  relationKlLoss, rkdAngleLoss, rkdDistanceLoss, rkdLoss, spLoss,
} from '../src/distill';
import { checkLeaks, fixture, fx } from './helpers';

// Reference values: test/fixtures/make_kd_losses_fixture.py (PyTorch 1.13, float64, written independently from the
// papers' formulas as the benchmark code computes them).
const K = fixture('kd_losses.json');

type Fn = (ins: Tensor[], opts: any) => Tensor;
const LOSSES: Record<string, Fn> = {
  dkd: ([s, t, y], o) => dkdLoss(s, t, y, o),
  hint: ([s, t]) => hintLoss(s, t),
  at: ([s, t], o) => atLoss(s, t, o),
  cosine: ([s, t]) => cosineLoss(s, t),
  nst: ([s, t]) => nstLoss(s, t),
  pkt: ([s, t], o) => pktLoss(s, t, o),
  rkd_distance: ([s, t]) => rkdDistanceLoss(s, t),
  rkd_angle: ([s, t]) => rkdAngleLoss(s, t),
  rkd: ([s, t], o) => rkdLoss(s, t, o),
  sp: ([s, t]) => spLoss(s, t),
  fsp: ([s1, s2, t1, t2]) => fspLoss([s1, s2], [t1, t2]),
  cc: ([s, t], o) => ccLoss(s, t, o),
  attention_mse: ([s, t]) => attentionMseLoss(s, t),
  attention_kl: ([s, t]) => attentionKlLoss(s, t),
  relation_kl: ([s, t], o) => relationKlLoss(s, t, o),
};

function input(key: string, dtype: 'float64' | 'float32'): Tensor {
  const v = K.inputs[key];
  return v.dtype === 'int64' ? fx(v, 'int64') : fx(v, dtype);
}

describe('distillation loss zoo against PyTorch', () => {
  checkLeaks();
  it('covers every loss in the fixture', () => {
    assert.deepEqual([...new Set(K.cases.map((c: any) => c.loss))].sort(), Object.keys(LOSSES).sort());
  });
  for (const c of K.cases) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${c.name} (${dtype})`, () => {
        tidy(() => {
          const ins = c.inputs.map((k: string) => input(k, dtype));
          const out = LOSSES[c.loss](ins, c.opts);
          assert.deepEqual(out.shape, [], 'a scalar');
          const got = out.item();
          const tol = dtype === 'float64' ? 1e-10 : 2e-5;
          assert.ok(Math.abs(got - c.value) <= tol * Math.max(1, Math.abs(c.value)), `${c.name}: ${got} vs PyTorch ${c.value}`);
        });
      });
    }
  }
  it('gradients flow to the student only through the loss, and every loss is finite on identical inputs', () => {
    tidy(() => {
      const s = input('fmap_s', 'float64').requiresGrad_(true);
      const t = input('fmap_t3', 'float64');
      const total = atLoss(s, t).add(spLoss(s, t)).add(nstLoss(s, t)).add(pktLoss(s, t)).add(rkdLoss(s, t)).add(ccLoss(s, t)).add(hintLoss(s, t));
      total.backward();
      assert.ok(s.grad && s.grad.abs().sum().item() > 0);
      for (const [name, v] of Object.entries({ at: atLoss(t, t), sp: spLoss(t, t), nst: nstLoss(t, t), pkt: pktLoss(t, t), rkd: rkdLoss(t, t), cc: ccLoss(t, t) }))
        assert.ok(Math.abs(v.item()) < 1e-9, `${name}(t, t) = ${v.item()}, expected 0`);
    });
  });
  it('shape errors name the loss and both shapes', () => {
    tidy(() => {
      const a = input('fmap_s', 'float64'), b = input('fmap_t', 'float64'), e = input('emb_s', 'float64');
      assert.throws(() => hintLoss(a, b), /hint: student and teacher shapes differ: \[4, 3, 5, 5\] vs \[4, 6, 5, 5\]/);
      assert.throws(() => atLoss(e, b), /at: student feature map must have rank 4, got \[7, 5\]/);
      assert.throws(() => spLoss(e, b), /sp: student \[7, 5\] and teacher \[4, 6, 5, 5\] must share the batch dimension/);
      assert.throws(() => relationKlLoss(input('states_s', 'float64'), input('states_t', 'float64'), { heads: 4 }), /heads \(4\) must divide the state width 6/);
      assert.throws(() => dkdLoss(e, e, input('labels', 'float64')), /dkd: labels must be \[7\] class indices/);
    });
  });
});
