import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randn, tidy } from '../src/torch';
import { checkLeaks, gradcheck } from './helpers';

describe('gradcheck helper', () => {
  checkLeaks();
  it('accepts a correct gradient', () => {
    const x = randn([3, 4], { dtype: 'float64', requiresGrad: true });
    gradcheck(() => x.mul(x).tanh(), [x], { label: 'tanh(x^2)' });
    x.dispose();
  });
  it('rejects a wrong gradient', () => {
    // detach() hides half of the dependence from autograd, so the analytic gradient is wrong.
    const x = randn([5], { dtype: 'float64', requiresGrad: true });
    assert.throws(() => gradcheck(() => x.mul(x.detach()), [x]), /analytic/);
    x.dispose();
  });
  it('leaves no tensors behind in tidy', () => {
    const x = randn([2], { dtype: 'float64', requiresGrad: true });
    tidy(() => gradcheck(() => x.exp(), [x]));
    x.dispose();
  });
});
