// Key/value caches (src/nn/kv-cache.ts): appending along the length, batched rows at their own lengths, capacity
// growth that keeps the rows, row removal by swapping the last row in, a step's positions, mask and in-place writes,
// and ownership (tensors survive scopes, dispose frees them all).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, liveTensors, manualSeed, noGrad, randn, tidy } from '../src/torch';
import { BatchKVCache, KVCache } from '../src/nn';
import { checkLeaks, maxDiff } from './helpers';

const H = 2;
const D = 3;

/** A single-sequence cache of `len` positions over `nLayer` layers, filled in two appends, with its inputs. */
function filled(nLayer: number, len: number): { cache: KVCache; ks: Tensor[]; vs: Tensor[] } {
  const cache = new KVCache(nLayer);
  const ks: Tensor[] = [];
  const vs: Tensor[] = [];
  tidy(() => {
    for (let i = 0; i < nLayer; i++) {
      const k = randn([1, H, len, D]);
      const v = randn([1, H, len, D]);
      const a = Math.ceil(len / 2);
      cache.append(i, k.narrow(2, 0, a), v.narrow(2, 0, a));
      if (len > a) cache.append(i, k.narrow(2, a, len - a), v.narrow(2, a, len - a));
      ks.push(k.keep());
      vs.push(v.keep());
    }
  });
  cache.length = len;
  return { cache, ks, vs };
}

const row = (t: Tensor, r: number, len: number) => t.narrow(0, r, 1).narrow(2, 0, len);

describe('KVCache', () => {
  checkLeaks();

  it('appends along the length, returns the whole keys and values, owns them across scopes, frees them on dispose', () => {
    manualSeed(0);
    const base = liveTensors();
    const { cache, ks, vs } = filled(2, 5);
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(cache.keys[i]!.shape, [1, H, 5, D]);
      assert.equal(maxDiff(cache.keys[i]!, ks[i]), 0);
      assert.equal(maxDiff(cache.values[i]!, vs[i]), 0);
    }
    tidy(() => {
      const [k, v] = cache.append(0, randn([1, H, 1, D]), randn([1, H, 1, D]));
      assert.equal(k, cache.keys[0]);
      assert.equal(v, cache.values[0]);
      assert.deepEqual(k.shape, [1, H, 6, D]);
      assert.equal(maxDiff(k.narrow(2, 0, 5), ks[0]), 0);
    });
    assert.ok(!cache.keys[0]!.isDisposed, 'the cache keeps its tensors out of scopes');
    assert.equal(liveTensors(), base + 4 + 4);
    cache.dispose();
    assert.equal(cache.length, 0);
    assert.ok(cache.keys.every((t) => t === null));
    for (const t of [...ks, ...vs]) t.dispose();
    assert.equal(liveTensors(), base);
  });

  it('rejects a layer count that is not a positive integer', () => {
    assert.throws(() => new KVCache(0), /KVCache: nLayer must be a positive integer, got 0/);
  });
});

describe('BatchKVCache', () => {
  checkLeaks();

  it('rows join at their own lengths; capacity doubles from initialCapacity and keeps the rows', () => {
    manualSeed(1);
    const lens = [4, 1, 6, 3, 5];
    const singles = lens.map((L) => filled(2, L));
    const b = new BatchKVCache(2, 8, 2);
    assert.equal(b.capacity, 0);
    const caps: number[] = [];
    for (const s of singles) {
      b.addRow(s.cache);
      caps.push(b.capacity);
    }
    assert.deepEqual(caps, [2, 2, 4, 4, 8]);
    assert.equal(b.size, 5);
    assert.deepEqual(b.lengths, lens);
    assert.deepEqual(b.keys[1]!.shape, [8, H, 8, D]);
    tidy(() =>
      singles.forEach((s, r) => {
        for (let i = 0; i < 2; i++) {
          assert.equal(maxDiff(row(b.keys[i]!, r, lens[r]), s.ks[i]), 0, `keys of row ${r}, layer ${i}`);
          assert.equal(maxDiff(row(b.values[i]!, r, lens[r]), s.vs[i]), 0, `values of row ${r}, layer ${i}`);
        }
        assert.equal(b.keys[0]!.narrow(0, r, 1).narrow(2, lens[r], 8 - lens[r]).abs().sum().item(), 0, 'positions past a row are zero');
      }),
    );
    assert.throws(() => b.addRow(new KVCache(2)), /BatchKVCache.addRow: the cache must hold 2 filled layers/);
    const other = filled(3, 2);
    assert.throws(() => b.addRow(other.cache), /must hold 2 filled layers/);
    for (const s of [...singles, other]) {
      s.cache.dispose();
      for (const t of [...s.ks, ...s.vs]) t.dispose();
    }
    b.dispose();
    assert.equal(b.capacity, 0);
    assert.equal(b.size, 0);
  });

  it('a removed row is replaced by the last one; removing the last row just shrinks', () => {
    manualSeed(2);
    const lens = [3, 5, 2, 4];
    const singles = lens.map((L) => filled(1, L));
    const b = new BatchKVCache(1, 6);
    singles.forEach((s) => b.addRow(s.cache));
    b.removeRow(1); // row 3 (length 4) moves to 1
    assert.deepEqual(b.lengths, [3, 4, 2]);
    b.removeRow(2); // the last row
    assert.deepEqual(b.lengths, [3, 4]);
    tidy(() => {
      assert.equal(maxDiff(row(b.keys[0]!, 1, 4), singles[3].ks[0]), 0);
      assert.equal(maxDiff(row(b.values[0]!, 1, 4), singles[3].vs[0]), 0);
      assert.equal(maxDiff(row(b.keys[0]!, 0, 3), singles[0].ks[0]), 0);
    });
    assert.throws(() => b.removeRow(2), /BatchKVCache.removeRow: row 2 is not in use \(size 2\)/);
    assert.throws(() => b.removeRow(-1), /row -1 is not in use/);
    for (const s of singles) {
      s.cache.dispose();
      for (const t of [...s.ks, ...s.vs]) t.dispose();
    }
    b.dispose();
  });

  it('a step writes each row at its own position, attends to [B, H, span, D] views and masks keys past each row', () => {
    manualSeed(3);
    const lens = [2, 5, 3];
    const singles = lens.map((L) => filled(2, L));
    const b = new BatchKVCache(2, 6);
    singles.forEach((s) => b.addRow(s.cache));
    tidy(() =>
      noGrad(() => {
        const step = b.beginStep('cpu');
        assert.deepEqual(step.positions, [2, 5, 3]);
        assert.equal(step.span, 6);
        assert.deepEqual(step.pos.toArray(), [2, 5, 3]);
        assert.deepEqual(step.rows.toArray(), [0, 1, 2]);
        assert.deepEqual(step.mask.shape, [3, 1, 1, 6]);
        assert.deepEqual(step.mask.tolist(), lens.map((L) => [[Array.from({ length: 6 }, (_, j) => Number(j > L))]]));
        const knew = randn([3, H, 1, D]);
        const vnew = randn([3, H, 1, D]);
        for (let i = 0; i < 2; i++) {
          const [K, V] = b.appendStep(step, i, knew, vnew);
          assert.deepEqual(K.shape, [3, H, 6, D]);
          assert.deepEqual(V.shape, [3, H, 6, D]);
          lens.forEach((L, r) => {
            assert.equal(maxDiff(K.select(0, r).narrow(1, L, 1), knew.select(0, r)), 0, `row ${r}'s new key at position ${L}`);
            assert.equal(maxDiff(V.select(0, r).narrow(1, L, 1), vnew.select(0, r)), 0);
            assert.equal(maxDiff(K.narrow(0, r, 1).narrow(2, 0, L), singles[r].ks[i]), 0, 'earlier positions untouched');
          });
        }
      }),
    );
    b.endStep();
    assert.deepEqual(b.lengths, [3, 6, 4]);
    assert.throws(() => tidy(() => b.beginStep()), /BatchKVCache.beginStep: row 1 already holds 6 positions, maxLength is 6/);
    for (const s of singles) {
      s.cache.dispose();
      for (const t of [...s.ks, ...s.vs]) t.dispose();
    }
    b.dispose();
    assert.throws(() => b.beginStep(), /BatchKVCache.beginStep: no row in use/);
  });

  it('checks its sizes', () => {
    assert.throws(() => new BatchKVCache(2, 0), /BatchKVCache: maxLength must be a positive integer, got 0/);
    assert.throws(() => new BatchKVCache(2, 8, 0), /initialCapacity must be a positive integer, got 0/);
  });
});
