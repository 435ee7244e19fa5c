// The one attention computation (scaledDotProductAttention, src/nn/functional.ts): against a direct float64
// implementation on small hand-made inputs, unmasked, masked (bool and additive) and causal (square and with cached
// keys before the queries); probabilities, dropout, gradients, errors; and the layers that call it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, manualSeed, noGrad, ops, randn, tensor, tidy } from '../src/torch';
import { MultiheadAttention, scaledDotProductAttention } from '../src/nn';
import { CausalSelfAttention } from '../src/models/gpt';
import { checkLeaks, gradcheck, maxAbsDiff, maxDiff } from './helpers';

type M = number[][];

/** softmax(q·kᵀ/√d + bias) · v for one head, with bias -Infinity where a key is masked: plain loops in float64. */
function reference(q: M, k: M, v: M, bias: (i: number, j: number) => number = () => 0): { out: M; probs: M } {
  const d = q[0].length;
  const probs = q.map((qi, i) => {
    const s = k.map((kj, j) => qi.reduce((a, x, c) => a + x * kj[c], 0) / Math.sqrt(d) + bias(i, j));
    const mx = Math.max(...s);
    const e = s.map((x) => Math.exp(x - mx));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  });
  const out = probs.map((p) => v[0].map((_, c) => p.reduce((a, pj, j) => a + pj * v[j][c], 0)));
  return { out, probs };
}

const t4 = (m: M) => tensor([[m]], { dtype: 'float64' }); // [1, 1, rows, cols]
const flat = (m: M) => m.flat();

const q: M = [[1, 0], [0, 2], [1, -1]];
const k: M = [[1, 1], [0, 1], [2, 0], [-1, 0.5]];
const v: M = [[1, 0], [2, 1], [3, -1], [0, 4]];

describe('scaledDotProductAttention', () => {
  checkLeaks();

  it('equals softmax(q·kᵀ/√d)·v on a hand-made case, and returns the probabilities when asked', () =>
    tidy(() => {
      const want = reference(q, k, v);
      // the first query by hand: scores (1, 0, 2, −1)/√2
      const e = [1, 0, 2, -1].map((s) => Math.exp(s / Math.SQRT2));
      const z = e.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(want.out[0][0] - (e[0] * 1 + e[1] * 2 + e[2] * 3) / z) < 1e-15);
      const [out, probs] = scaledDotProductAttention(t4(q), t4(k), t4(v), { needWeights: true });
      assert.deepEqual(out.shape, [1, 1, 3, 2]);
      assert.deepEqual(probs!.shape, [1, 1, 3, 4]);
      assert.ok(maxAbsDiff(out, flat(want.out)) < 1e-14);
      assert.ok(maxAbsDiff(probs!, flat(want.probs)) < 1e-14);
      assert.equal(scaledDotProductAttention(t4(q), t4(k), t4(v))[1], null, 'no probabilities unless asked');
    }));

  it('bool masks hide keys, float masks are added; several masks apply in order, broadcast over batch and heads', () =>
    tidy(() => {
      const hide = [[false, true, false, false], [false, false, false, true], [true, false, false, false]];
      const add = [0.5, -1, 0, 2];
      const want = reference(q, k, v, (i, j) => (hide[i][j] ? -Infinity : 0) + add[j]);
      const boolMask = tensor(hide.map((r) => r.map(Number))).bool(); // [L, S]
      const floatMask = tensor([[[add]]], { dtype: 'float64' }); // [1, 1, 1, S]
      const [out, probs] = scaledDotProductAttention(t4(q), t4(k), t4(v), { mask: [boolMask, floatMask], needWeights: true });
      assert.ok(maxAbsDiff(out, flat(want.out)) < 1e-14);
      assert.ok(maxAbsDiff(probs!, flat(want.probs)) < 1e-14);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) if (hide[i][j]) assert.equal(want.probs[i][j], 0);
      // one mask alone, and a null entry, are accepted
      const only = reference(q, k, v, (i, j) => (hide[i][j] ? -Infinity : 0));
      assert.ok(maxAbsDiff(scaledDotProductAttention(t4(q), t4(k), t4(v), { mask: boolMask })[0], flat(only.out)) < 1e-14);
      assert.ok(maxAbsDiff(scaledDotProductAttention(t4(q), t4(k), t4(v), { mask: [null, boolMask] })[0], flat(only.out)) < 1e-14);
    }));

  it('causal: query i attends to keys up to i, offset by the keys cached before the queries', () =>
    tidy(() => {
      // square: L = S = 4
      const q4: M = [...q, [0.5, 0.5]];
      const sq = reference(q4, k, v, (i, j) => (j > i ? -Infinity : 0));
      const [o1, p1] = scaledDotProductAttention(t4(q4), t4(k), t4(v), { causal: true, needWeights: true });
      assert.ok(maxAbsDiff(o1, flat(sq.out)) < 1e-14);
      assert.ok(maxAbsDiff(p1!, flat(sq.probs)) < 1e-14);
      assert.equal(sq.probs[0][1], 0);
      assert.ok(Math.abs(sq.out[0][0] - v[0][0]) < 1e-15, 'the first query sees only the first key');
      // 2 queries after 2 cached keys: query i is at position 2 + i
      const q2 = q.slice(1);
      const cached = reference(q2, k, v, (i, j) => (j > 2 + i ? -Infinity : 0));
      const [o2] = scaledDotProductAttention(t4(q2), t4(k), t4(v), { causal: true });
      assert.ok(maxAbsDiff(o2, flat(cached.out)) < 1e-14);
      // one query after the cache attends to everything
      const [o3] = scaledDotProductAttention(t4([q[2]]), t4(k), t4(v), { causal: true });
      assert.ok(maxAbsDiff(o3, flat(reference([q[2]], k, v).out)) < 1e-14);
      assert.throws(() => scaledDotProductAttention(t4(q4), t4(k.slice(0, 2)), t4(v.slice(0, 2)), { causal: true }), /causal attention needs at least as many keys as queries, got q \[1, 1, 4, 2\] and k \[1, 1, 2, 2\]/);
    }));

  it('batches and heads are independent; dropout acts on the output only, the probabilities stay distributions', () =>
    tidy(() => {
      manualSeed(0);
      const Q = randn([2, 3, 5, 4], { dtype: 'float64' });
      const K = randn([2, 3, 6, 4], { dtype: 'float64' });
      const V = randn([2, 3, 6, 7], { dtype: 'float64' });
      const [out] = scaledDotProductAttention(Q, K, V);
      assert.deepEqual(out.shape, [2, 3, 5, 7]);
      const m = (t: Tensor, b: number, h: number) => t.select(0, b).select(0, h).tolist() as M;
      for (const [b, h] of [[0, 0], [1, 2]]) assert.ok(maxAbsDiff(out.select(0, b).select(0, h), flat(reference(m(Q, b, h), m(K, b, h), m(V, b, h)).out)) < 1e-12);
      assert.equal(maxDiff(scaledDotProductAttention(Q, K, V, { dropout: 0 })[0], out), 0);
      const [dropped, probs] = scaledDotProductAttention(Q, K, V, { dropout: 1, needWeights: true });
      assert.equal(dropped.abs().max().item(), 0, 'p = 1 drops every probability');
      assert.ok(maxAbsDiff(probs!.sum(-1), Array(2 * 3 * 5).fill(1)) < 1e-12);
      manualSeed(5);
      const a = scaledDotProductAttention(Q, K, V, { dropout: 0.5 })[0];
      manualSeed(5);
      assert.equal(maxDiff(scaledDotProductAttention(Q, K, V, { dropout: 0.5 })[0], a), 0, 'seeded dropout repeats');
      assert.ok(maxDiff(a, out) > 1e-3);
    }));

  it('gradients match central differences (float64), with a causal and a float mask', () => {
    manualSeed(1);
    const [Q, K, V, bias] = [[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 3], [1, 1, 3, 5]].map((s) => randn(s, { dtype: 'float64', requiresGrad: true }));
    gradcheck(() => scaledDotProductAttention(Q, K, V, { causal: true, mask: bias })[0], [Q, K, V, bias], { label: 'scaledDotProductAttention' });
    for (const t of [Q, K, V, bias]) t.dispose();
  });

  it('errors name the function and the shapes', () =>
    tidy(() => {
      const x = randn([1, 2, 3, 4]);
      assert.throws(() => scaledDotProductAttention(x, randn([1, 2, 3, 5]), x), /scaledDotProductAttention: q \[\.\.\., L, d\], k \[\.\.\., S, d\] and v \[\.\.\., S, dv\] do not fit: q \[1, 2, 3, 4\], k \[1, 2, 3, 5\], v \[1, 2, 3, 4\]/);
      assert.throws(() => scaledDotProductAttention(x, x, randn([1, 2, 4, 4])), /do not fit/);
      assert.throws(() => scaledDotProductAttention(x, randn([2, 3, 4]), x), /must have the same number of dimensions \(at least 2\), got q \[1, 2, 3, 4\], k \[2, 3, 4\]/);
      assert.throws(() => scaledDotProductAttention(x, x, x, { dropout: 1.5 }), /scaledDotProductAttention: dropout must be in \[0, 1\], got 1.5/);
    }));
});

describe('the layers compute their attention with it', () => {
  checkLeaks();

  it('MultiheadAttention = in-projection, scaledDotProductAttention over heads, out-projection', () => {
    manualSeed(2);
    const mha = new MultiheadAttention(8, 2, { batchFirst: true });
    tidy(() =>
      noGrad(() => {
        const x = randn([3, 5, 8]);
        const pad = tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]]).bool();
        const [out, w] = mha.call(x, x, x, { keyPaddingMask: pad, averageAttnWeights: false });
        const heads = (t: Tensor) => t.view(3, 5, 2, 4).transpose(1, 2);
        const [pq, pk, pv] = ops.linear(x, mha.in_proj_weight!, mha.in_proj_bias).chunk(3, -1);
        const [a, p] = scaledDotProductAttention(heads(pq), heads(pk), heads(pv), { mask: pad.view(3, 1, 1, 5), needWeights: true });
        assert.equal(maxDiff(mha.out_proj.call(a.transpose(1, 2).reshape(3, 5, 8)), out), 0);
        assert.equal(maxDiff(p!, w!), 0);
      }),
    );
    mha.dispose();
  });

  it('the decoder attention is causal scaledDotProductAttention over c_attn, then c_proj', () => {
    manualSeed(3);
    const attn = new CausalSelfAttention(8, 2).eval();
    tidy(() =>
      noGrad(() => {
        const x = randn([2, 6, 8]);
        const heads = (t: Tensor) => t.view(2, 6, 2, 4).transpose(1, 2);
        const [q0, k0, v0] = attn.c_attn.call(x).chunk(3, -1);
        const [a] = scaledDotProductAttention(heads(q0), heads(k0), heads(v0), { causal: true });
        assert.equal(maxDiff(attn.c_proj.call(a.transpose(1, 2).reshape(2, 6, 8)), attn.call(x)), 0);
      }),
    );
    attn.dispose();
  });
});
