// Rotary position embeddings (src/nn/rope.ts) against the direct formula: tables cos/sin(position · base^(−2i/d)),
// the rotation of each half-split feature pair, per-row positions for batched decoding, relative-position scores.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manualSeed, randn, tidy } from '../src/torch';
import { applyRope, applyRotary, ropeInverseFrequencies, ropeTables } from '../src/nn';
import { checkLeaks, maxAbsDiff, maxDiff } from './helpers';

const angle = (pos: number, i: number, d: number, base: number) => pos * Math.pow(base, (-2 * i) / d);

describe('rotary embeddings', () => {
  checkLeaks();

  it('tables are cos and sin of position · base^(−2i/d), for one start or one per row', () =>
    tidy(() => {
      const d = 6;
      const base = 500;
      assert.deepEqual(Array.from(ropeInverseFrequencies(d, base)), [0, 1, 2].map((i) => Math.pow(base, (-2 * i) / d)));
      const t = ropeTables(d, 3, 4, { base, dtype: 'float64' });
      assert.deepEqual(t.cos.shape, [4, 3]);
      const want = (f: (a: number) => number, starts: number[], T: number) =>
        starts.flatMap((s) => Array.from({ length: T }, (_, p) => [0, 1, 2].map((i) => f(angle(s + p, i, d, base)))).flat());
      assert.ok(maxAbsDiff(t.cos, want(Math.cos, [3], 4)) < 1e-15);
      assert.ok(maxAbsDiff(t.sin, want(Math.sin, [3], 4)) < 1e-15);
      const rows = ropeTables(d, [0, 7, 2], 2, { base, dtype: 'float64' });
      assert.deepEqual(rows.cos.shape, [3, 1, 2, 3]);
      assert.ok(maxAbsDiff(rows.cos, want(Math.cos, [0, 7, 2], 2)) < 1e-15);
      assert.ok(maxAbsDiff(rows.sin, want(Math.sin, [0, 7, 2], 2)) < 1e-15);
      // float32 tables: the float64 angles converted, then cos / sin
      const f = ropeTables(d, 3, 4, { base });
      assert.equal(f.cos.dtype, 'float32');
      assert.ok(maxAbsDiff(f.cos, want(Math.cos, [3], 4)) < 1e-6);
    }));

  it('rotates each (x1, x2) pair of the two halves by its angle', () =>
    tidy(() => {
      manualSeed(0);
      const [B, H, T, d] = [2, 3, 4, 8];
      const half = d / 2;
      const x = randn([B, H, T, d], { dtype: 'float64' });
      const start = 5;
      const out = applyRope(x, start);
      const xs = x.toArray();
      const want: number[] = new Array(xs.length);
      for (let r = 0; r < B * H; r++)
        for (let t = 0; t < T; t++)
          for (let i = 0; i < half; i++) {
            const o = (r * T + t) * d;
            const a = angle(start + t, i, d, 10000);
            const [x1, x2] = [xs[o + i], xs[o + half + i]];
            want[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
            want[o + half + i] = x2 * Math.cos(a) + x1 * Math.sin(a);
          }
      assert.ok(maxAbsDiff(out, want) < 1e-14);
      assert.equal(maxDiff(out, applyRotary(x, ropeTables(d, start, T, { dtype: 'float64' }))), 0);
      assert.equal(maxDiff(applyRope(x, 0).narrow(2, 0, 1), x.narrow(2, 0, 1)), 0, 'position 0 is the identity');
      assert.ok(maxAbsDiff(out.square().sum(-1).sub(x.square().sum(-1)), new Array(B * H * T).fill(0)) < 1e-12, 'a rotation keeps the norm');
    }));

  it('per-row positions rotate each row as its own start would', () =>
    tidy(() => {
      manualSeed(1);
      const x = randn([3, 2, 1, 4], { dtype: 'float64' });
      const starts = [0, 9, 4];
      const out = applyRope(x, starts);
      starts.forEach((s, b) => assert.equal(maxDiff(out.narrow(0, b, 1), applyRope(x.narrow(0, b, 1), s)), 0, `row ${b}`));
    }));

  it('rotated query · key depends on the distance only', () =>
    tidy(() => {
      manualSeed(2);
      const q = randn([1, 1, 1, 8], { dtype: 'float64' });
      const k = randn([1, 1, 1, 8], { dtype: 'float64' });
      const dot = (i: number, j: number) => applyRope(q, i).mul(applyRope(k, j)).sum().item();
      assert.ok(Math.abs(dot(2, 5) - dot(11, 14)) < 1e-12);
      assert.ok(Math.abs(dot(2, 5) - dot(2, 6)) > 1e-6);
    }));

  it('errors name the sizes', () =>
    tidy(() => {
      assert.throws(() => ropeTables(5, 0, 2), /rope: the head size must be a positive even integer, got 5/);
      assert.throws(() => ropeTables(4, 0, 2, { base: 1 }), /rope: base must be > 1, got 1/);
      assert.throws(() => ropeTables(4, -1, 2), /ropeTables: positions must be non-negative integers, got start -1/);
      assert.throws(() => applyRope(randn([1, 1, 2, 5]), 0), /applyRope: the last dimension must be even, got shape \[1, 1, 2, 5\]/);
      assert.throws(() => applyRope(randn([2, 1, 2, 4]), [0, 1, 2]), /applyRope: 3 row starts for shape \[2, 1, 2, 4\]/);
      assert.throws(() => applyRotary(randn([1, 1, 3, 4]), ropeTables(4, 0, 2)), /applyRotary: tables \[2, 2\] do not fit x \[1, 1, 3, 4\]/);
    }));
});
