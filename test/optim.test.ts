import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, noGrad, tidy, zeros, liveTensors } from '../src/torch';
import {
  Adam, AdamW, CosineAnnealingLR, LinearLR, MultiStepLR, SGD, StepLR, WarmupLR, clipGradNorm, clipGradValue, cosineSchedule, Optimizer,
} from '../src/optim';
import { checkLeaks, fixture, fx, maxDiff } from './helpers';

const O = fixture('optim.json');

function problem() {
  const W = fx(O.W0).requiresGrad_(true);
  const b = fx(O.b0).requiresGrad_(true);
  const X = fx(O.X), Y = fx(O.Y);
  const lossStep = (opt: Optimizer<any>) => {
    opt.zeroGrad();
    tidy(() => X.matmul(W.t()).add(b).sub(Y).pow(2).mean().backward());
    opt.step();
  };
  return { W, b, X, Y, lossStep, dispose: () => dispose([W, b, X, Y]) };
}

const makers: Record<string, (p: Tensor[]) => Optimizer<any>> = {
  sgd: (p) => new SGD(p, { lr: 0.1 }),
  sgd_momentum: (p) => new SGD(p, { lr: 0.1, momentum: 0.9 }),
  sgd_nesterov_wd: (p) => new SGD(p, { lr: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.01 }),
  sgd_dampening: (p) => new SGD(p, { lr: 0.05, momentum: 0.5, dampening: 0.3 }),
  adam: (p) => new Adam(p, { lr: 0.01 }),
  adam_amsgrad_wd: (p) => new Adam(p, { lr: 0.02, betas: [0.8, 0.9], weightDecay: 0.1, amsgrad: true }),
  adamw: (p) => new AdamW(p, { lr: 0.01, weightDecay: 0.1 }),
};

describe('optimizers follow PyTorch 1.13 step by step', () => {
  checkLeaks();
  for (const [name, make] of Object.entries(makers)) {
    it(name, () => {
      const pr = problem();
      const opt = make([pr.W, pr.b]);
      let live = 0;
      O.runs[name].forEach((expected: any, i: number) => {
        pr.lossStep(opt);
        if (i === 0) live = liveTensors();
        else assert.equal(liveTensors(), live, `step ${i} leaves no tensors behind`);
        tidy(() => {
          assert.ok(maxDiff(pr.W.flatten(), fx({ shape: [6], values: expected.W })) < 1e-12, `${name} W at step ${i + 1}`);
          assert.ok(maxDiff(pr.b, fx({ shape: [2], values: expected.b })) < 1e-12, `${name} b at step ${i + 1}`);
        });
      });
      opt.dispose();
      noGrad(() => { pr.W.grad = null; pr.b.grad = null; });
      pr.dispose();
    });
  }
});

describe('optimizer state save and load', () => {
  checkLeaks();
  for (const name of ['sgd_momentum', 'adam_amsgrad_wd']) {
    it(`${name}: resuming from a state dict gives the uninterrupted result`, () => {
      const a = problem();
      const optA = makers[name]([a.W, a.b]);
      for (let i = 0; i < 5; i++) a.lossStep(optA);

      const b = problem();
      const optB = makers[name]([b.W, b.b]);
      for (let i = 0; i < 3; i++) b.lossStep(optB);
      const saved = optB.stateDict();
      const meta = JSON.parse(JSON.stringify(saved.meta));
      const tensors = Object.fromEntries(Object.entries(saved.tensors).map(([k, t]) => [k, t.clone()]));
      optB.dispose();
      const optC = makers[name]([b.W, b.b]);
      optC.loadStateDict({ tensors, meta });
      for (let i = 0; i < 2; i++) b.lossStep(optC);
      assert.ok(maxDiff(a.W, b.W) === 0 && maxDiff(a.b, b.b) === 0);
      dispose(tensors);
      for (const o of [optA, optC]) o.dispose();
      for (const p of [a, b]) { p.W.grad = null; p.b.grad = null; p.dispose(); }
    });
  }
  it('a mismatched state names what is wrong', () => {
    const p = problem();
    const opt = new SGD([p.W, p.b], { lr: 0.1, momentum: 0.9 });
    p.lossStep(opt);
    const sd = opt.stateDict();
    const bad = zeros([5]);
    assert.throws(() => opt.loadStateDict({ tensors: { ...sd.tensors, 'state.0.momentum_buffer': bad }, meta: sd.meta }), /'state\.0\.momentum_buffer': parameter shape \[2,3\], state shape \[5\]/);
    assert.throws(() => new Adam([p.W, p.b]).loadStateDict(sd), /the state was saved by SGD/);
    assert.throws(() => new SGD([p.W], { lr: 0.1 }).loadStateDict(sd), /group 0 saved 2 parameters, the optimizer has 1/);
    assert.throws(() => new SGD([p.W], { lr: 0.1, momentm: 0.9 } as any), /unknown option 'momentm'/);
    bad.dispose();
    opt.dispose();
    p.W.grad = null; p.b.grad = null;
    p.dispose();
  });
});

describe('learning-rate schedules and gradient clipping', () => {
  checkLeaks();
  const seq = (mk: (o: SGD) => { step(): void }, n = 20) => {
    const p = zeros([1]).requiresGrad_(true);
    const o = new SGD([p], { lr: 0.1 });
    const s = mk(o);
    const out: number[] = [];
    for (let i = 0; i < n; i++) { out.push(o.paramGroups[0].options.lr); s.step(); }
    p.dispose();
    return out;
  };
  const near = (a: number[], b: number[]) => a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-12, `step ${i}: ${x} vs ${b[i]}`));
  it('match PyTorch', () => {
    near(seq((o) => new StepLR(o, 3, 0.5)), O.schedules.step);
    near(seq((o) => new MultiStepLR(o, [2, 5, 11], 0.3)), O.schedules.multistep);
    near(seq((o) => new CosineAnnealingLR(o, 10, 0.01), 10), O.schedules.cosine);
    near(seq((o) => new LinearLR(o, 0.25, 1, 4)), O.schedules.linear);
  });
  it('warm-up hands over to cosine decay', () => {
    const lrs = seq((o) => new WarmupLR(o, 4, cosineSchedule(10), 0.25), 16);
    near(lrs.slice(0, 5), [0.025, 0.04375, 0.0625, 0.08125, 0.1]);
    assert.ok(Math.abs(lrs[9] - 0.05) < 1e-12 && Math.abs(lrs[14]) < 1e-12);
  });
  it('clipGradNorm and clipGradValue match PyTorch', () => {
    const p1 = zeros([3, 4]).requiresGrad_(true), p2 = zeros([5]).requiresGrad_(true);
    tidy(() => {
      p1.grad = fx(O.clip.g1).float();
      p2.grad = fx(O.clip.g2).float();
    });
    const total = clipGradNorm([p1, p2], 2.0);
    assert.ok(Math.abs(total - O.clip.total) < 1e-4, `${total} vs ${O.clip.total}`);
    tidy(() => {
      assert.ok(maxDiff(p1.grad!, fx(O.clip.c1)) < 1e-5);
      assert.ok(maxDiff(p2.grad!, fx(O.clip.c2)) < 1e-5);
    });
    clipGradValue([p1, p2], 0.1);
    tidy(() => assert.ok(p1.grad!.abs().max().item() <= 0.1 + 1e-7));
    dispose([p1, p2]);
  });
});
