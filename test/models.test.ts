import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randn, tidy, noGrad } from '../src/torch';
import { createModel, modelNames, registerBuiltinModels } from '../src/models';
import { checkLeaks, fixture } from './helpers';

const Z = fixture('zoo.json');
registerBuiltinModels();

describe('model zoo', () => {
  checkLeaks();
  for (const name of Object.keys(Z)) {
    it(`${name}: state_dict keys, shapes and parameter count equal PyTorch's`, () => {
      const m = createModel(name, { numClasses: 10 });
      const sd = m.stateDict();
      assert.deepEqual(Object.keys(sd), Z[name].keys);
      assert.deepEqual(Object.values(sd).map((t) => t.shape), Z[name].shapes);
      assert.equal(m.numParameters(), Z[name].params);
      if (['resnet8', 'wrn-16-2', 'vgg8'].includes(name))
        tidy(() => {
          m.eval();
          assert.deepEqual(noGrad(() => m.call(randn([2, 3, 32, 32]))).shape, [2, 10]);
        });
      m.dispose();
    });
  }
  it('MLPs and LeNets by name', () => {
    for (const [name, params] of [['mlp-1200', 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10], ['mlp-800', 784 * 800 + 800 + 800 * 800 + 800 + 8010], ['lenet5-half', 4408], ['lenet5', 61706], ['lenet5-half-dafl', 3 * 25 + 3 + 8 * 3 * 25 + 8 + 200 * 60 + 60 + 60 * 42 + 42 + 42 * 10 + 10]] as const) {
      const m = createModel(name);
      assert.equal(m.numParameters(), params, name);
      tidy(() => assert.deepEqual(m.call(randn([3, 1, 28, 28])).shape, [3, 10]));
      m.dispose();
    }
    // DAFL's student is lenet5 at half width, layer for layer
    const [full, half] = [createModel('lenet5'), createModel('lenet5-half-dafl')];
    assert.deepEqual(Object.keys(half.stateDict()), Object.keys(full.stateDict()));
    for (const [k, t] of Object.entries(half.stateDict()))
      if (!k.startsWith('fc3') && !k.startsWith('conv1.weight')) assert.ok(t.shape.every((d, i) => d * 2 >= full.stateDict()[k].shape[i]), k);
    full.dispose();
    half.dispose();
    const small = createModel('mlp', { widths: [784, 32, 10] });
    assert.deepEqual(Object.keys(small.stateDict()), ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']);
    small.dispose();
  });
  it('an unknown name lists the known ones', () => {
    assert.throws(() => createModel('resnet21'), (e: Error) => /unknown model 'resnet21'\. Closest: resnet20/.test(e.message) && e.message.includes(modelNames().join(', ')));
    assert.throws(() => createModel('wrn-40-3'), /Closest: wrn-40-1, wrn-40-2/);
  });
});
