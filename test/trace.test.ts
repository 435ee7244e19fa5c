// Recording the ops a computation calls (torch/trace.ts): names and overloads, arguments by schema name with defaults
// filled in, tensors by handle identity, in-place results, and nothing recorded outside the recording.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OpCall, handleInfo, handleOf, ops, recordOps, tensor, tidy } from '../src/torch';
import { checkLeaks } from './helpers';

describe('recordOps', () => {
  checkLeaks();

  it('records each top-level op with its schema name, overload, arguments and outputs', () => {
    tidy(() => {
      const x = tensor([[1, -2], [3, -4]]);
      const calls: OpCall[] = [];
      let y!: ReturnType<typeof ops.relu>, pooled!: ReturnType<typeof ops.relu>;
      const out = recordOps(() => {
        y = x.mul(2).relu_();
        pooled = ops.max_pool2d(y.view(1, 1, 2, 2), 2);
        return pooled.sum();
      }, (c) => calls.push(c));
      assert.deepEqual(calls.map((c) => [c.name, c.overload]), [
        ['aten::mul', 'Tensor'], ['aten::relu_', ''], ['aten::view', ''], ['aten::max_pool2d', ''], ['aten::sum', ''],
      ]);
      const [mul, relu, view, pool] = calls;
      assert.equal(mul.args.self, handleOf(x), 'tensor arguments are handles');
      assert.equal(mul.args.other, 2, 'a wrapped number stays a number');
      assert.ok(relu.inplace && relu.outputs[0] === relu.args.self, 'an in-place op outputs the handle it wrote');
      assert.equal(relu.outputs[0], handleOf(y));
      assert.deepEqual(view.args.size, [1, 1, 2, 2]);
      // int[2] given as one int is expanded; omitted arguments hold the schema defaults
      assert.deepEqual([pool.args.kernel_size, pool.args.stride, pool.args.padding, pool.args.dilation, pool.args.ceil_mode], [[2, 2], [], [0, 0], [1, 1], false]);
      assert.deepEqual(handleInfo(pool.outputs[0]), { shape: [1, 1, 1, 1], dtype: 'float32' });
      assert.equal(out.item(), 6);
    });
  });

  it('groups list results, records nothing outside, restores the call path after an error, and does not nest', () => {
    tidy(() => {
      const x = tensor([1, 2, 3, 4]);
      const calls: OpCall[] = [];
      recordOps(() => x.chunk(2), (c) => calls.push(c));
      assert.deepEqual([calls[0].outputs.length, calls[0].outputGroups], [2, [2]]);
      x.add(1);
      assert.equal(calls.length, 1, 'nothing is recorded after recordOps returns');
      assert.throws(() => recordOps(() => { x.view(3); }, () => undefined), /shape '\[3\]' is invalid/);
      assert.throws(() => recordOps(() => recordOps(() => 0, () => undefined), () => undefined), /recordings do not nest/);
      recordOps(() => x.neg(), (c) => calls.push(c));
      assert.deepEqual(calls.map((c) => c.name), ['aten::chunk', 'aten::neg']);
    });
  });
});
