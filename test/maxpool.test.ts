// maxPool2d's tiled path (elementwise maxima of strided slices, taken when no gradient flows through the pooling):
// the same values as libtorch's max_pool2d kernel, NaN included; the kernel where a gradient is recorded, for other
// layouts, and while ops are recorded for export.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { noGrad, ops, randn, recordOps, startOpProfile, stopOpProfile, tensor, tidy } from '../src/torch';
import * as F from '../src/nn/functional';
import { MaxPool2d } from '../src/nn';
import { checkLeaks } from './helpers';

/** The kernel's result for the same call. */
function kernel(x: ReturnType<typeof randn>, k: number | number[], stride?: number | number[]) {
  return ops.max_pool2d(x, k, stride ?? k, 0, 1, false);
}

describe('maxPool2d, tiled path', () => {
  checkLeaks();
  it('equals the kernel for 2×2, 3×3 and 2×3 tiles, odd sizes (floor mode), 3-D input and float64', () =>
      tidy(() =>
        noGrad(() => {
          const cases: [number[], number | number[], 'float32' | 'float64'][] = [
            [[4, 6, 28, 28], 2, 'float32'], [[2, 3, 17, 13], 2, 'float32'], [[2, 3, 17, 13], 3, 'float32'],
            [[2, 3, 17, 13], [2, 3], 'float64'], [[3, 11, 9], 2, 'float32'], [[1, 1, 4, 4], 4, 'float32'],
          ];
          for (const [shape, k, dtype] of cases) {
            const x = randn(shape, { dtype });
            const a = F.maxPool2d(x, k);
            const b = kernel(x, k);
            assert.deepEqual(a.shape, b.shape, `shape for ${shape} k=${k}`);
            assert.ok(ops.equal(a, b), `values for ${shape} k=${k} ${dtype}`);
          }
        }),
      ));

  it('propagates NaN and keeps -Infinity as the kernel does', () =>
    tidy(() =>
      noGrad(() => {
        const x = tensor([1, NaN, 3, 4, -Infinity, -Infinity, -Infinity, -Infinity, 5, 6, 7, 8, 0, 0, 0, 0], { shape: [1, 1, 4, 4] });
        assert.deepEqual([...F.maxPool2d(x, 2).data()], [...kernel(x, 2).data()]);
        assert.deepEqual([...F.maxPool2d(x, 2).data()], [NaN, 4, 6, 8]);
      }),
    ));

  it('takes the kernel when a gradient is recorded: the same gradients as max_pool2d', () =>
    tidy(() => {
      const x = randn([2, 3, 8, 8]).requiresGrad_();
      F.maxPool2d(x, 2).sum().backward();
      const g1 = x.grad!.clone();
      x.grad!.zero_();
      kernel(x, 2).sum().backward();
      assert.ok(ops.equal(g1, x.grad!));
      // the gradient of max_pool2d goes to one element per tile (elementwise maxima would split ties)
      const z = tensor([0, 0, 0, 0], { shape: [1, 1, 2, 2] }).requiresGrad_();
      F.maxPool2d(z, 2).sum().backward();
      assert.deepEqual([...z.grad!.data()], [1, 0, 0, 0]);
    }));

  it('records max_pool2d (not the maxima) while ops are recorded for export', () =>
    tidy(() =>
      noGrad(() => {
        const names: string[] = [];
        recordOps(() => new MaxPool2d(2).call(randn([1, 2, 6, 6])), (c) => names.push(c.name));
        assert.ok(names.includes('aten::max_pool2d'), `recorded: ${names.join(', ')}`);
        assert.ok(!names.includes('aten::maximum'), `recorded: ${names.join(', ')}`);
      }),
    ));

  it('is used by the MaxPool2d layer, and setFastMaxPool(false) restores the kernel', () =>
    tidy(() =>
      noGrad(() => {
        const x = randn([1, 2, 6, 6]);
        const layer = new MaxPool2d(2);
        const opsRun = (fn: () => unknown) => {
          startOpProfile();
          try {
            fn();
          } finally {
            return stopOpProfile().map((r) => r.name);
          }
        };
        const fast = opsRun(() => layer.call(x));
        assert.ok(fast.includes('aten::maximum') && !fast.includes('aten::max_pool2d_with_indices'), fast.join(', '));
        const prev = F.setFastMaxPool(false);
        let slow: string[];
        try {
          slow = opsRun(() => layer.call(x));
        } finally {
          F.setFastMaxPool(prev);
        }
        assert.equal(prev, true);
        assert.ok(slow.includes('aten::max_pool2d_with_indices') && !slow.includes('aten::maximum'), slow.join(', '));
      }),
    ));
});
