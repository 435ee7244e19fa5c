import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import {
  Tensor, arange, cat, chain, dispose, full, keep, liveTensors, manualSeed, noGrad, enableGrad, isGradEnabled, ones,
  ops, rand, randn, randint, tensor, tidy, version, zeros, getNumThreads, setNumThreads, nextTick, scalarTensor,
  startOpProfile, stopOpProfile,
} from '../src/torch';
import { native, op } from '../src/torch/handle';
import { checkLeaks, gradcheck } from './helpers';

describe('tensor data in and out', () => {
  checkLeaks();
  it('round-trips every typed array dtype', () => {
    const cases: [ArrayBufferView, string][] = [
      [new Float32Array([1.5, -2, 3]), 'float32'],
      [new Float64Array([1e-300, 2, -3.25]), 'float64'],
      [new Int32Array([-(2 ** 31), 0, 2 ** 31 - 1]), 'int32'],
      [new BigInt64Array([-(2n ** 62n), 0n, 2n ** 62n]), 'int64'],
      [new Int16Array([-32768, 5, 32767]), 'int16'],
      [new Int8Array([-128, 0, 127]), 'int8'],
      [new Uint8Array([0, 128, 255]), 'uint8'],
    ];
    for (const [arr, dt] of cases) {
      const t = tensor(arr as any);
      assert.equal(t.dtype, dt);
      assert.deepEqual(Array.from(t.data() as any), Array.from(arr as any));
      t.dispose();
    }
  });
  it('converts float16 and bfloat16 through float32', () => {
    tidy(() => {
      const h = tensor(new Float32Array([1, 0.5, -2, 65504]), { dtype: 'float16' });
      assert.equal(h.dtype, 'float16');
      assert.deepEqual(Array.from(h.data() as Float32Array), [1, 0.5, -2, 65504]);
      const b = tensor(new Float32Array([1, 3.140625]), { dtype: 'bfloat16' });
      assert.equal(b.dtype, 'bfloat16');
      assert.deepEqual(Array.from(b.data() as Float32Array), [1, 3.140625]);
    });
  });
  it('infers shapes from nested arrays and rejects ragged ones', () => {
    tidy(() => {
      const t = tensor([[1, 2, 3], [4, 5, 6]]);
      assert.deepEqual(t.shape, [2, 3]);
      assert.equal(t.dtype, 'float32');
      assert.deepEqual(t.tolist(), [[1, 2, 3], [4, 5, 6]]);
      assert.equal(tensor([true, false]).dtype, 'bool');
      assert.equal(tensor([1, 2], { dtype: 'int64' }).dtype, 'int64');
      assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
      assert.throws(() => tensor(new Float32Array(5), { shape: [2, 2] }), /holds 4 elements, the data has 5/);
    });
  });
  it('reads scalars with item()', () => {
    tidy(() => {
      assert.equal(tensor([2.5]).sum().item(), 2.5);
      assert.equal(arange(5).sum().item(), 10);
      assert.equal(scalarTensor(3).ndim, 0);
    });
  });
});

describe('ops through the generic dispatcher call', () => {
  checkLeaks();
  it('computes like PyTorch (broadcasting, promotion, reductions)', () => {
    tidy(() => {
      const a = tensor([[1, 2], [3, 4]]);
      const b = tensor([10, 20]);
      assert.deepEqual(a.add(b).tolist(), [[11, 22], [13, 24]]);
      assert.deepEqual(a.add(b, 2).tolist(), [[21, 42], [23, 44]]);
      assert.deepEqual(a.matmul(a).tolist(), [[7, 10], [15, 22]]);
      assert.deepEqual(a.sum(1).tolist(), [3, 7]);
      assert.deepEqual(a.mean(0, true).tolist(), [[2, 3]]);
      // a wrapped JS number does not promote a float32 tensor to float64
      assert.equal(a.mul(2.5).dtype, 'float32');
      // but an integral number on an int tensor stays integral, and true division gives float
      const i = arange(4);
      assert.equal(i.mul(3).dtype, 'int64');
      assert.equal(i.div(2).dtype, 'float32');
      const [vals, idx] = a.max(1);
      assert.deepEqual(vals.tolist(), [2, 4]);
      assert.deepEqual(idx.tolist(), [1, 1]);
      assert.deepEqual(a.softmax(1).sum(1).toArray().map((x) => Math.round(x * 1e6) / 1e6), [1, 1]);
    });
  });
  it('returns the caller\'s own object from in-place and out= ops', () => {
    tidy(() => {
      const a = zeros([3]);
      const r = ops.add__Tensor(a, 1);
      assert.equal(r, a);
      assert.equal(a.add_(2), a);
      const out = zeros([3]);
      const r2 = ops.mul_out(a, a, { out });
      assert.equal(r2, out);
      assert.deepEqual(out.tolist(), [9, 9, 9]);
      const [mx, mi] = [zeros([2]), zeros([2], { dtype: 'int64' })];
      const res = ops.max_dim_max(tensor([[1, 5], [7, 2]]), 1, false, { max: mx, max_values: mi });
      assert.equal(res[0], mx);
      assert.equal(res[1], mi);
      assert.deepEqual(mx.tolist(), [5, 7]);
    });
  });
  it('indexes and slices', () => {
    tidy(() => {
      const t = arange(24).reshape(2, 3, 4);
      assert.deepEqual(t.index(1, 2).tolist(), [20, 21, 22, 23]);
      assert.deepEqual(t.index(0, '1:3', '::2').tolist(), [[4, 6], [8, 10]]);
      assert.deepEqual(t.index('...', -1).tolist(), [[3, 7, 11], [15, 19, 23]]);
      assert.deepEqual(t.index(null).shape, [1, 2, 3, 4]);
      assert.deepEqual(t.index(0, tensor([2, 0], { dtype: 'int64' }), 0).tolist(), [8, 0]);
      assert.deepEqual(t.index(1, [0, 2], 3).tolist(), [15, 19]);
      assert.throws(() => t.index(0, 0, 0, 0), /4 indices for a tensor of 3 dimensions/);
    });
  });
  it('moves between dtypes', () => {
    tidy(() => {
      const t = tensor([1.7, -1.7]);
      assert.deepEqual(t.to('int64').tolist(), [1, -1]);
      assert.equal(t.double().dtype, 'float64');
      assert.equal(t.to({ device: 'cpu' }).device, 'cpu');
    });
  });
});

describe('errors that name the op, argument and shapes', () => {
  checkLeaks();
  it('shape mismatch names the op and both shapes', () => {
    tidy(() => {
      assert.throws(
        () => zeros([2, 3]).add(zeros([4])),
        (e: Error) => /aten::add\.Tensor\(self: float32\[2, 3\], other: float32\[4\]\)/.test(e.message) &&
          /size of tensor a \(3\) must match the size of tensor b \(4\)/.test(e.message),
      );
      assert.throws(() => zeros([2, 3]).matmul(zeros([2, 3])), /aten::matmul.*\[2, 3\].*\[2, 3\].*mat1 and mat2 shapes cannot be multiplied/s);
    });
  });
  it('wrong dtype is reported with libtorch\'s message', () => {
    tidy(() => {
      assert.throws(() => ops.mm(zeros([2, 2]), zeros([2, 2], { dtype: 'int64' })), /aten::mm.*int64.*expected .*(same dtype|scalar type)/is);
    });
  });
  it('use after dispose is an error, not a crash', () => {
    const t = zeros([2]);
    t.dispose();
    assert.equal(t.isDisposed, true);
    assert.throws(() => t.add(1), /argument 'self' is a Tensor used after dispose\(\)/);
    assert.throws(() => t.shape, /used after dispose/);
    t.dispose(); // twice is harmless
  });
  it('unknown operators and overloads list what exists', () => {
    assert.throws(() => op('aten::add', 'Tensr'), /unknown operator aten::add\.Tensr; overloads of aten::add: .*Tensor/);
    assert.throws(() => op('aten::no_such_op', ''), /unknown operator aten::no_such_op/);
  });
  it('argument type errors name the argument', () => {
    tidy(() => {
      assert.throws(() => ops.sum_dim_IntList(zeros([2]), 'x' as any), /aten::sum\.dim_IntList: argument 'dim' expected an int or int\[1\], got string/);
      assert.throws(() => ops.narrow(zeros([4]), 0, 1.5, 1), /argument 'start' expected an integer, got 1.5/);
      assert.throws(() => (ops as any).add_Tensor(zeros([1])), /missing required argument 'other'/);
      // an options object where a tensor belongs is an error, not a silent default
      assert.throws(() => ops.conv2d(zeros([1, 1, 3, 3]), zeros([1, 1, 1, 1]), { padding: 1 } as any), /argument 'bias' expected a Tensor, got object/);
    });
  });
  it('libtorch warnings become process warnings', async () => {
    const seen: string[] = [];
    const onWarning = (w: Error) => seen.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      tidy(() => {
        const m = randn(2, 2);
        ops.chain_matmul([m, m]);
      });
      await nextTick();
    } finally {
      process.off('warning', onWarning);
    }
    assert.ok(seen.some((s) => /^TorchWarning: torch\.chain_matmul is deprecated/.test(s)), seen.join('\n'));
  });
});

describe('memory: scopes, keep, dispose, live count', () => {
  checkLeaks();
  it('tidy disposes intermediates and hands returned tensors to the parent scope', () => {
    const before = liveTensors();
    const outer = tidy(() => {
      const inner = tidy(() => {
        const a = ones([3]);
        const b = a.mul(2);
        return { b, list: [b.add(1)] };
      });
      assert.equal(liveTensors() - before, 2);
      return inner.list[0].sum();
    });
    assert.equal(liveTensors() - before, 1);
    assert.equal(outer.item(), 9);
    outer.dispose();
  });
  it('keep exempts a tensor from every scope', () => {
    const k = tidy(() => keep(ones([2])));
    assert.equal(k.isDisposed, false);
    k.dispose();
  });
  it('tidy throws when the callback returns a Promise and frees what it made', () => {
    const before = liveTensors();
    assert.throws(() => tidy(async () => ones([1])), /returned a Promise/);
    assert.throws(() => tidy('step', () => { ones([1]); return Promise.resolve(); }), /tidy\('step'\)/);
    assert.equal(liveTensors(), before);
  });
  it('tidy frees everything when the callback throws', () => {
    const before = liveTensors();
    assert.throws(() => tidy(() => { ones([4]); throw new Error('boom'); }), /boom/);
    assert.equal(liveTensors(), before);
  });
  it('a scope releases its tensors in one call to the addon; the addon takes one handle or an array of them', () => {
    const before = liveTensors();
    const calls: unknown[] = [];
    const orig = native.dispose;
    native.dispose = (h) => { calls.push(h); orig(h); };
    try {
      const kept = tidy(() => {
        ones([2]).add(1).mul(3);
        return ones([1]);
      });
      assert.equal(calls.length, 1);
      assert.ok(Array.isArray(calls[0]) && (calls[0] as unknown[]).length === 3);
      kept.dispose();
    } finally {
      native.dispose = orig;
    }
    assert.equal(liveTensors(), before);
    const ts = [ones([1]), zeros([2])];
    native.dispose([ts[0]._h, ts[1]._h, ts[0]._h]); // disposing twice is a no-op, as for one handle
    assert.ok(ts.every((t) => t.isDisposed));
    assert.equal(liveTensors(), before);
    assert.throws(() => native.dispose([{}] as never), /dispose: expected tensor handles, got object at index 0/);
  });
  it('chain releases each intermediate it made once the next exists, never its input, kept tensors or older ones', () => {
    const before = liveTensors();
    const kept = keep(ones([2]));
    const older = tidy(() => {
      const outer = zeros([2]);
      const seen: Tensor[] = [];
      const out = chain(ones([2]), [
        (v: Tensor) => { seen.push(v); return v.add(1); },
        (v: Tensor) => { seen.push(v); return v; }, // returned unchanged: still live
        (v: Tensor) => { seen.push(v); return v.mul(2); },
        (v: Tensor) => { seen.push(v); return kept; }, // a kept tensor is never released
        (v: Tensor) => { seen.push(v); return outer; }, // nor one made before the chain
        (v: Tensor) => { seen.push(v); return v.sub(1); },
      ]);
      assert.deepEqual(seen.map((t) => t.isDisposed), [false, true, true, true, false, false]);
      assert.equal(kept.isDisposed, false);
      assert.deepEqual(out.toArray(), [-1, -1]);
      return outer;
    });
    assert.equal(older.isDisposed, false);
    older.dispose();
    kept.dispose();
    assert.equal(liveTensors(), before);
    // outside any scope nothing is released
    const x = ones([1]);
    const y1 = x.add(1);
    const y = chain(y1, [(v: Tensor) => v.mul(3)]);
    assert.equal(y1.isDisposed, false);
    dispose([x, y1, y]);
    assert.equal(liveTensors(), before);
  });
  it('dispose walks arrays and objects', () => {
    const before = liveTensors();
    const bag = { a: ones([1]), b: [zeros([1]), { c: rand(2) }] };
    assert.equal(liveTensors() - before, 3);
    dispose(bag);
    assert.equal(liveTensors(), before);
  });
  it('unreferenced handles are freed by the garbage collector as a backstop', async () => {
    let gc = (globalThis as any).gc as (() => void) | undefined;
    if (!gc) {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as () => void;
    }
    const before = liveTensors();
    (() => { for (let i = 0; i < 100; i++) zeros([10]); })();
    for (let i = 0; i < 5 && liveTensors() > before; i++) { gc(); await nextTick(); }
    assert.equal(liveTensors(), before);
  });
});

describe('autograd', () => {
  checkLeaks();
  it('backward fills .grad of leaves', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    tidy(() => x.mul(x).sum().backward());
    const g = x.grad!;
    assert.deepEqual(g.tolist(), [2, 4, 6]);
    assert.equal(x.isLeaf, true);
    g.dispose();
    // gradients accumulate
    tidy(() => x.sum().backward());
    tidy(() => assert.deepEqual(x.grad!.tolist(), [3, 5, 7]));
    x.grad = null;
    assert.equal(x.grad, null);
    x.dispose();
  });
  it('noGrad and enableGrad scope the grad mode', () => {
    const x = tensor([1], { requiresGrad: true });
    tidy(() => {
      const y = noGrad(() => x.mul(2));
      assert.equal(y.requiresGrad, false);
      assert.equal(isGradEnabled(), true);
      noGrad(() => {
        const z = enableGrad(() => x.mul(2));
        assert.equal(z.requiresGrad, true);
        assert.equal(z.gradFn, 'MulBackward0');
      });
      assert.equal(x.mul(2).detach().requiresGrad, false);
      assert.throws(() => noGrad(() => x.mul(2)).backward(), /does not require grad/);
    });
    x.dispose();
  });
  it('matches central differences through a small composite', () => {
    const a = randn([3, 4], { dtype: 'float64', requiresGrad: true });
    const b = randn([4, 2], { dtype: 'float64', requiresGrad: true });
    gradcheck(() => a.matmul(b).logSoftmax(1).exp().mul(a.sum(1, true)), [a, b], { label: 'composite' });
    dispose([a, b]);
  });
});

describe('runtime', () => {
  checkLeaks();
  it('the same seed gives the same random numbers', () => {
    tidy(() => {
      manualSeed(123);
      const a = randn(5).toArray();
      const i = randint(0, 10, [5]).toArray();
      manualSeed(123);
      assert.deepEqual(randn(5).toArray(), a);
      assert.deepEqual(randint(0, 10, [5]).toArray(), i);
      manualSeed(124);
      assert.notDeepEqual(randn(5).toArray(), a);
    });
  });
  it('thread settings govern libtorch and OpenBLAS', () => {
    const before = getNumThreads();
    setNumThreads(1);
    const one = getNumThreads();
    assert.equal(one.torch, 1);
    if (one.openblas !== null) assert.equal(one.openblas, 1);
    setNumThreads(2);
    assert.equal(getNumThreads().torch, 2);
    setNumThreads(before.torch);
    assert.throws(() => setNumThreads(0), /positive integer/);
  });
  it('profiles operator calls and autograd nodes with nesting', () => {
    const w = tidy(() => keep(randn([4, 3]).requiresGrad_()));
    startOpProfile();
    tidy(() => {
      for (let i = 0; i < 3; i++) ops.mm(randn([2, 4]), w).sum().backward();
    });
    const rows = stopOpProfile();
    const row = (name: string) => rows.find((r) => r.name === name);
    assert.equal(row('aten::mm')?.calls, 3 + 3, 'three forward mm and three for the weight gradient');
    assert.equal(row('aten::randn')?.calls, 3);
    assert.equal(row('MmBackward0')?.calls, 3);
    for (const r of rows) assert.ok(r.selfUs <= r.totalUs + 1e-6 && r.totalUs >= 0, r.name);
    const randn_ = row('aten::randn')!;
    assert.ok(randn_.selfUs < randn_.totalUs, 'randn contains normal_ (self time excludes it)');
    assert.deepEqual(rows.map((r) => r.selfUs), [...rows.map((r) => r.selfUs)].sort((a, b) => b - a), 'most self time first');
    // stopped: nothing more is recorded, and a second stop returns nothing
    tidy(() => {
      ops.mm(w.t(), w);
    });
    assert.deepEqual(stopOpProfile(), []);
    w.dispose();
  });
  it('reports versions and checks them at load', () => {
    const v = version();
    assert.match(v.libtorch, /^\d+\.\d+\.\d+/);
    assert.equal(v.built, v.libtorch);
    assert.equal(v.generatedFrom, v.libtorch);
    assert.equal(native.version().built, v.built);
  });
  it('cat, full and other factories', () => {
    tidy(() => {
      assert.deepEqual(cat([ones([1]), zeros([2])]).tolist(), [1, 0, 0]);
      assert.deepEqual(full([2], 7).tolist(), [7, 7]);
      assert.ok(full([2], 7) instanceof Tensor);
      assert.throws(() => zeros([2, -1]), /invalid shape/);
    });
  });
});
