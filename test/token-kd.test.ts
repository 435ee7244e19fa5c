// Token-level KD losses against values computed by hand (plain JavaScript arithmetic on the same numbers), plus
// gradient checks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tensor, tidy } from '../src/torch';
import { tokenKdLoss, topkForwardKl } from '../src/distill/token-kd';
import { checkLeaks, gradcheck } from './helpers';

const S = [[1, 0, -1], [0.5, 2, 0]];
const T = [[2, 0.5, 0], [0, 0, 0]];
const W = [1, 3];

const softmax = (r: number[], tau = 1) => {
  const e = r.map((x) => Math.exp(x / tau));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
};
const kl = (p: number[], q: number[]) => p.reduce((a, pi, i) => a + pi * Math.log(pi / q[i]), 0);
const wmean = (xs: number[], w: number[]) => xs.reduce((a, x, i) => a + x * w[i], 0) / w.reduce((a, b) => a + b, 0);
const f64 = (x: number[][] | number[]) => tensor(x as any, { dtype: 'float64' });

describe('token-level KD losses', () => {
  checkLeaks();
  it('forward KL, reverse KL and JSD(β) equal hand-computed values; τ² scaling', () => {
    const ps = S.map((r) => softmax(r));
    const pt = T.map((r) => softmax(r));
    const fwd = wmean(ps.map((_, n) => kl(pt[n], ps[n])), W);
    const rev = wmean(ps.map((_, n) => kl(ps[n], pt[n])), W);
    const beta = 0.3;
    const jsd = wmean(
      ps.map((_, n) => {
        const m = pt[n].map((p, i) => beta * p + (1 - beta) * ps[n][i]);
        return beta * kl(pt[n], m) + (1 - beta) * kl(ps[n], m);
      }),
      W,
    );
    const tau = 2;
    const fwdT = tau * tau * wmean(S.map((_, n) => kl(softmax(T[n], tau), softmax(S[n], tau))), W);
    tidy(() => {
      const [s, t, w] = [f64(S), f64(T), f64(W)];
      assert.ok(Math.abs(tokenKdLoss('forward_kl', s, t, w).item() - fwd) < 1e-12);
      assert.ok(Math.abs(tokenKdLoss('reverse_kl', s, t, w).item() - rev) < 1e-12);
      assert.ok(Math.abs(tokenKdLoss('jsd', s, t, w, { beta }).item() - jsd) < 1e-12);
      assert.ok(Math.abs(tokenKdLoss('forward_kl', s, t, w, { temperature: tau }).item() - fwdT) < 1e-12);
      assert.ok(Math.abs(fwd - rev) > 1e-3, 'the example tells forward from reverse KL');
      assert.ok(tokenKdLoss('forward_kl', s, s, w).item() < 1e-12);
      // a weight of 0 removes a position
      assert.ok(Math.abs(tokenKdLoss('forward_kl', s, t, f64([1, 0])).item() - kl(pt[0], ps[0])) < 1e-12);
    });
  });

  it('top-k logprobs with the tail mass: hand-computed, 0 when the top-k agree, equal to full KL when k = V', () => {
    const lpT = softmax([3, 1, 0, -1]).map(Math.log); // teacher over 4 tokens; top-2 are ids 0 and 1
    const ps = softmax([1, 2, 0.5, 0]);
    const k2 = [0, 1];
    const pTop = k2.map((i) => Math.exp(lpT[i]));
    const r = 1 - pTop[0] - pTop[1];
    const q = 1 - ps[0] - ps[1];
    const want = pTop[0] * (lpT[0] - Math.log(ps[0])) + pTop[1] * (lpT[1] - Math.log(ps[1])) + r * Math.log(r / q);
    tidy(() => {
      const s = f64([[1, 2, 0.5, 0]]);
      const got = topkForwardKl(s, tensor([k2], { dtype: 'int64' }), f64([k2.map((i) => lpT[i])]), f64([[1, 1]]), f64([1]));
      assert.ok(Math.abs(got.item() - want) < 1e-12, `${got.item()} vs ${want}`);
      // padded entries (valid 0) are ignored: same value with a third, invalid column
      const pad = topkForwardKl(s, tensor([[0, 1, 0]], { dtype: 'int64' }), f64([[lpT[0], lpT[1], -1e9]]), f64([[1, 1, 0]]), f64([1]));
      assert.ok(Math.abs(pad.item() - want) < 1e-12);
      // student equal to the teacher on the top-k and the tail mass: 0 whatever it does inside the tail
      const same = f64([[3, 1, -3, 0.3]].map((row) => row));
      const lpS = softmax([3, 1, -3, 0.3]).map(Math.log);
      assert.ok(topkForwardKl(same, tensor([[0, 1]], { dtype: 'int64' }), f64([[lpS[0], lpS[1]]]), f64([[1, 1]]), f64([1])).item() < 1e-12);
      // k = V: the full forward KL
      const all = topkForwardKl(s, tensor([[0, 1, 2, 3]], { dtype: 'int64' }), f64([lpT]), f64([[1, 1, 1, 1]]), f64([1]));
      assert.ok(Math.abs(all.item() - kl(lpT.map(Math.exp), ps)) < 1e-12);
    });
  });

  it('gradients match central differences', () => {
    const s = f64(S).requiresGrad_(true);
    const t = f64(T);
    const w = f64(W);
    for (const kind of ['forward_kl', 'reverse_kl', 'jsd'] as const) gradcheck(() => tokenKdLoss(kind, s, t, w, { temperature: 1.5 }), [s], { label: kind });
    const ids = tensor([[0, 2], [1, 0]], { dtype: 'int64' });
    const lp = f64([[-0.5, -2], [-0.3, -1.7]]);
    const v = f64([[1, 1], [1, 0]]);
    gradcheck(() => topkForwardKl(s, ids, lp, v, w), [s], { label: 'top-k' });
    for (const x of [s, t, w, ids, lp, v]) x.dispose();
  });

  it('shape errors name the shapes', () => {
    tidy(() => {
      assert.throws(() => tokenKdLoss('forward_kl', f64(S), f64([[1, 2], [3, 4]]), f64(W)), /teacher logits \[2, 2\] must match the student's \[2, 3\]/);
      assert.throws(() => tokenKdLoss('jsd', f64(S), f64(T), f64(W), { beta: 1.5 }), /beta must be in \[0, 1\] \(0: forward KL, 1: reverse KL\), got 1.5/);
      assert.throws(() => tokenKdLoss('forward_kl', f64(S), f64(T), f64([1])), /weights must be \[2\]/);
    });
  });
});
