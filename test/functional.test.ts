import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, randn, tensor, tidy, rand } from '../src/torch';
import { F } from '../src/nn';
import { checkLeaks, fixture, fx, gradcheck, maxDiff } from './helpers';

const X = fixture('functional.json');
const logits = () => fx(X.inputs.logits);
const target = () => tensor(X.inputs.target, { dtype: 'int64' });
const probs = () => fx(X.inputs.probs);
const close = (a: Tensor, e: any, tol = 1e-10) => assert.ok(maxDiff(a, fx(e)) < tol, `max diff ${maxDiff(a, fx(e))}`);

describe('losses match PyTorch 1.13', () => {
  checkLeaks();
  it('crossEntropy: reductions, label smoothing, ignore index, class weights, probability targets', () => {
    tidy(() => {
      const ce = X.cross_entropy;
      for (const r of ['mean', 'sum', 'none'] as const) close(F.crossEntropy(logits(), target(), { reduction: r }), ce[`plain_${r}`]);
      close(F.crossEntropy(logits(), target(), { labelSmoothing: 0.2 }), ce.smooth);
      close(F.crossEntropy(logits(), tensor([0, -100, 1, 1, 2], { dtype: 'int64' })), ce.ignore);
      close(F.crossEntropy(logits(), target(), { ignoreIndex: 3 }), ce.ignore3);
      const w = fx(X.inputs.weight);
      close(F.crossEntropy(logits(), target(), { weight: w }), ce.weight);
      close(F.crossEntropy(logits(), target(), { weight: w, labelSmoothing: 0.1 }), ce.weight_smooth);
      close(F.crossEntropy(logits(), probs()), ce.probs);
      close(F.crossEntropy(logits(), probs(), { labelSmoothing: 0.3 }), ce.probs_smooth);
      close(F.softTargetCrossEntropy(logits(), probs()), ce.probs);
    });
  });
  it('klDiv: every reduction, with and without logTarget', () => {
    tidy(() => {
      const lp = F.logSoftmax(logits(), 1);
      for (const r of ['mean', 'sum', 'none', 'batchmean'] as const) {
        close(F.klDiv(lp, probs(), { reduction: r }), X.kl_div[r]);
        close(F.klDiv(lp, probs().log(), { reduction: r, logTarget: true }), X.kl_div[`${r}_logtarget`]);
      }
    });
  });
  it('klDiv on a hand-computed pair of distributions', () => {
    tidy(() => {
      const p = [0.5, 0.5], q = [0.9, 0.1];
      const expected = p[0] * Math.log(p[0] / q[0]) + p[1] * Math.log(p[1] / q[1]); // KL(p || q) = 0.5108...
      const kl = F.klDiv(tensor([q.map(Math.log)], { dtype: 'float64' }), tensor([p], { dtype: 'float64' }), { reduction: 'batchmean' });
      assert.ok(Math.abs(kl.item() - expected) < 1e-12);
      assert.ok(Math.abs(expected - 0.5108256237659907) < 1e-12);
    });
  });
  it('mse, l1, smooth L1, cosine embedding, BCE with logits', () => {
    tidy(() => {
      const a = fx(X.ab.a), b = fx(X.ab.b);
      for (const r of ['mean', 'sum', 'none'] as const) {
        close(F.mseLoss(a, b, { reduction: r }), X.mse[r]);
        close(F.l1Loss(a, b, { reduction: r }), X.l1[r]);
      }
      close(F.smoothL1Loss(a, b), X.smooth_l1.beta1);
      close(F.smoothL1Loss(a, b, { beta: 0.5 }), X.smooth_l1.beta05);
      const y = tensor(X.cosine_embedding.y, { dtype: 'float64' });
      close(F.cosineEmbeddingLoss(a, b, y), X.cosine_embedding.m0);
      close(F.cosineEmbeddingLoss(a, b, y, { margin: 0.3, reduction: 'none' }), X.cosine_embedding.m03);
      const t = fx(X.bce_logits.t);
      close(F.binaryCrossEntropyWithLogits(a, t), X.bce_logits.plain);
      close(F.binaryCrossEntropyWithLogits(a, t, { posWeight: tensor([1, 2, 3, 4], { dtype: 'float64' }) }), X.bce_logits.pos_weight);
      close(F.softmax(logits(), 1, { temperature: 4 }), X.softmax_t4);
      close(F.normalize(a), X.normalize);
    });
  });
});

describe('gradients of losses and activations', () => {
  checkLeaks();
  const x = () => randn([3, 4], { dtype: 'float64', requiresGrad: true });
  const cases: [string, (a: Tensor, b: Tensor) => Tensor][] = [
    ['crossEntropy(index, smoothing)', (a) => F.crossEntropy(a, tensor([0, 3, 1], { dtype: 'int64' }), { labelSmoothing: 0.1 })],
    ['crossEntropy(probs)', (a, b) => F.crossEntropy(a, b.softmax(1))],
    ['klDiv batchmean', (a, b) => F.klDiv(a.logSoftmax(1), b.softmax(1), { reduction: 'batchmean' })],
    ['klDiv logTarget', (a, b) => F.klDiv(a.logSoftmax(1), b.logSoftmax(1), { reduction: 'sum', logTarget: true })],
    ['mseLoss', (a, b) => F.mseLoss(a, b)],
    ['smoothL1Loss', (a, b) => F.smoothL1Loss(a, b.mul(3), { beta: 0.5 })],
    ['cosineEmbeddingLoss', (a, b) => F.cosineEmbeddingLoss(a, b, tensor([1, -1, 1], { dtype: 'float64' }), { margin: -0.5 })],
    ['binaryCrossEntropyWithLogits', (a, b) => F.binaryCrossEntropyWithLogits(a, b.sigmoid())],
    ['softmax T=3', (a) => F.softmax(a, 1, { temperature: 3 })],
    ['logSoftmax T=2', (a) => F.logSoftmax(a, 0, { temperature: 2 })],
    ['gelu tanh', (a) => F.gelu(a, 'tanh')],
    ['silu', (a) => F.silu(a)],
    ['normalize', (a) => F.normalize(a)],
    ['cosineSimilarity', (a, b) => F.cosineSimilarity(a, b)],
  ];
  for (const [name, f] of cases) {
    it(name, () => {
      const a = x(), b = x();
      tidy(() => gradcheck(() => f(a, b), [a, b], { label: name }));
      dispose([a, b]);
    });
  }
  it('l1Loss away from its kink', () => {
    const a = x();
    const b = tidy(() => a.detach().add(rand([3, 4], { dtype: 'float64' }).add(0.5)).requiresGrad_(true));
    gradcheck(() => F.l1Loss(a, b), [a, b]);
    dispose([a, b]);
  });
});

describe('bad inputs', () => {
  checkLeaks();
  it('names shapes and dtypes', () => {
    tidy(() => {
      assert.throws(() => F.crossEntropy(randn([4, 3]), randn([4, 2])), /probability targets must have the logits' shape: logits \[4, 3\], target \[4, 2\]/);
      assert.throws(() => F.crossEntropy(randn([4, 3]), tensor([1, 2, 0, 1], { dtype: 'int32' })), /must be int64, got int32/);
      assert.throws(() => F.crossEntropy(randn([4, 3]), tensor([[1]], { dtype: 'int64' })), /need 1 dimensions for logits \[4, 3\], got target \[1, 1\]/);
      assert.throws(() => F.klDiv(randn([2, 3]), randn([3, 2])), /klDiv: input \[2, 3\] and target \[3, 2\]/);
      assert.throws(() => F.mseLoss(randn([2]), randn([3])), /mseLoss: input \[2\] and target \[3\]/);
      assert.throws(() => F.mseLoss(randn([2]), randn([2]), { reduction: 'avg' as any }), /reduction must be one of mean, sum, none, got 'avg'/);
      assert.throws(() => F.crossEntropy(randn([2, 3]), tensor([0, 5], { dtype: 'int64' })), /aten::cross_entropy_loss.*Target 5 is out of bounds/s);
    });
  });
});
