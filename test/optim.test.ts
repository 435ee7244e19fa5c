// Optimizers, schedules and gradient clipping against PyTorch 1.13 (fixtures from test/fixtures/make_optim_fixtures.py).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, dispose, liveTensors, loadSafetensors, noGrad, saveSafetensors, scalarTensor, tidy, zeros } from '../src/torch';
import {
  Adam, AdamW, CosineAnnealingLR, ExponentialLR, LRScheduler, LambdaLR, LinearLR, MultiStepLR, Optimizer, SGD, SequentialLR, StepLR,
  clipGradNorm, clipGradValue, warmup,
} from '../src/optim';
import { checkLeaks, fixture, fx, maxDiff } from './helpers';

const S = fixture('optim_steps.json');
const L = fixture('optim_schedules.json');
const C = fixture('optim_clip.json');

type Dt = 'float32' | 'float64';

/** The fixture's regression problem: loss = mean((X Wᵀ + b - Y)²). */
function problem(dtype: Dt = 'float64') {
  const W = fx(S.W0, dtype).requiresGrad_(true);
  const b = fx(S.b0, dtype).requiresGrad_(true);
  const X = fx(S.X, dtype), Y = fx(S.Y, dtype);
  /** One training step; with `skipB`, b's gradient is removed before the update (b is not updated). */
  const lossStep = (opt: Optimizer<any>, skipB = false) => {
    opt.zeroGrad();
    tidy(() => X.matmul(W.t()).add(b).sub(Y).pow(2).mean().backward());
    if (skipB) b.grad = null;
    opt.step();
  };
  const free = () => {
    W.grad = null;
    b.grad = null;
    dispose([W, b, X, Y]);
  };
  return { W, b, lossStep, free };
}

const makers: Record<string, (W: Tensor, b: Tensor) => Optimizer<any>> = {
  sgd: (W, b) => new SGD([W, b], { lr: 0.1 }),
  sgd_momentum: (W, b) => new SGD([W, b], { lr: 0.1, momentum: 0.9 }),
  sgd_nesterov_wd: (W, b) => new SGD([W, b], { lr: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.01 }),
  sgd_dampening: (W, b) => new SGD([W, b], { lr: 0.05, momentum: 0.5, dampening: 0.3 }),
  sgd_maximize_wd: (W, b) => new SGD([W, b], { lr: 0.05, momentum: 0.7, weightDecay: 0.1, maximize: true }),
  sgd_groups: (W, b) => new SGD([{ params: [W], lr: 0.05, momentum: 0.9 }, { params: [b] }], { lr: 0.1, momentum: 0.5 }),
  sgd_momentum_skip: (W, b) => new SGD([W, b], { lr: 0.1, momentum: 0.9 }),
  adam: (W, b) => new Adam([W, b], { lr: 0.01 }),
  adam_wd: (W, b) => new Adam([W, b], { lr: 0.01, weightDecay: 0.05 }),
  adam_amsgrad_wd: (W, b) => new Adam([W, b], { lr: 0.02, betas: [0.8, 0.9], weightDecay: 0.1, amsgrad: true }),
  adam_maximize: (W, b) => new Adam([W, b], { lr: 0.01, maximize: true, weightDecay: 0.02 }),
  adam_groups: (W, b) => new Adam([{ params: [W], weightDecay: 0.1, amsgrad: true }, { params: [b], betas: [0.5, 0.6], lr: 0.03 }], { lr: 0.01 }),
  adam_skip: (W, b) => new Adam([W, b], { lr: 0.01, amsgrad: true }),
  adamw: (W, b) => new AdamW([W, b], { lr: 0.01, weightDecay: 0.1 }),
  adamw_default: (W, b) => new AdamW([W, b]),
  adamw_amsgrad: (W, b) => new AdamW([W, b], { lr: 0.02, betas: [0.7, 0.95], eps: 1e-6, weightDecay: 0.2, amsgrad: true }),
  sgd_momentum_f32: (W, b) => new SGD([W, b], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }),
  adam_f32: (W, b) => new Adam([W, b], { lr: 0.01, amsgrad: true }),
  adamw_f32: (W, b) => new AdamW([W, b], { lr: 0.01, weightDecay: 0.1 }),
};
/** The step (0-based) before which b's gradient is removed, per run. */
const skips: Record<string, number> = { sgd_momentum_skip: 2, adam_skip: 1 };

/** float64 runs must agree to rounding noise; float32 runs to float32 precision. */
function assertClose(actual: ArrayLike<number>, expected: number[], dtype: Dt, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const rel = dtype === 'float64' ? 1e-12 : 1e-6;
  for (let i = 0; i < expected.length; i++) {
    const tol = rel * Math.max(1, Math.abs(expected[i]));
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs PyTorch ${expected[i]}`);
  }
}

describe('optimizers follow PyTorch 1.13 step by step', () => {
  checkLeaks();
  it('the fixture covers every configuration', () => {
    assert.deepEqual(Object.keys(S.runs).sort(), Object.keys(makers).sort());
  });
  for (const [name, make] of Object.entries(makers)) {
    it(name, () => {
      const run = S.runs[name];
      const dtype = run.dtype as Dt;
      const pr = problem(dtype);
      const opt = make(pr.W, pr.b);
      let live = 0;
      run.trajectory.forEach((expected: { W: number[]; b: number[] }, i: number) => {
        pr.lossStep(opt, skips[name] === i);
        // the first step creates the optimizer's state; later steps leave no tensor behind
        if (i === 0) live = liveTensors();
        else assert.equal(liveTensors(), live, `${name}: live tensors after step ${i + 1}`);
        assertClose(pr.W.toArray(), expected.W, dtype, `${name} W after step ${i + 1}`);
        assertClose(pr.b.toArray(), expected.b, dtype, `${name} b after step ${i + 1}`);
      });
      // the state dict has PyTorch's names and values
      const sd = opt.stateDict();
      const names = [...Object.keys(sd.tensors), ...Object.entries(sd.meta.state).flatMap(([i, s]) => Object.keys(s).map((k) => `state.${i}.${k}`))];
      assert.deepEqual(names.sort(), Object.keys(run.state).sort(), `${name}: state names`);
      for (const [k, t] of Object.entries(sd.tensors)) assertClose(t.toArray(), run.state[k].values, dtype, `${name} ${k}`);
      for (const [i, s] of Object.entries(sd.meta.state)) for (const [k, v] of Object.entries(s)) assert.equal(v, run.state[`state.${i}.${k}`], `${name} state.${i}.${k}`);
      opt.dispose();
      pr.free();
    });
  }
  it('a step leaves gradients untouched (Nesterov, weight decay, maximize)', () => {
    const pr = problem();
    const opt = new SGD([pr.W, pr.b], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 });
    pr.lossStep(opt);
    const before = tidy(() => pr.W.grad!.toArray());
    opt.step();
    tidy(() => assert.deepEqual(pr.W.grad!.toArray(), before));
    opt.dispose();
    pr.free();
  });
  it('step(closure) runs the closure with gradients on and returns its loss', () => {
    const pr = problem();
    const opt = new SGD([pr.W, pr.b], { lr: 0.1 });
    const loss = noGrad(() =>
      opt.step(() => {
        opt.zeroGrad();
        return tidy(() => {
          const l = pr.W.sum().mul(2);
          l.backward();
          return l.item();
        });
      }),
    );
    assert.ok(Math.abs(loss! - 2 * S.W0.values.reduce((a: number, b: number) => a + b, 0)) < 1e-12);
    assertClose(pr.W.toArray(), S.W0.values.map((v: number) => v - 0.2), 'float64', 'W after the closure step');
    opt.dispose();
    pr.free();
  });
  it('zeroGrad sets gradients to null by default, or zeroes them in place', () => {
    const pr = problem();
    const opt = new Adam([pr.W, pr.b]);
    pr.lossStep(opt);
    opt.zeroGrad({ setToNone: false });
    tidy(() => {
      const g = pr.W.grad!;
      assert.deepEqual(g.shape, [3, 4]);
      assert.deepEqual(g.toArray(), new Array(12).fill(0));
    });
    opt.zeroGrad();
    assert.equal(pr.W.grad, null);
    assert.equal(pr.b.grad, null);
    opt.dispose();
    pr.free();
  });
  it('a group mixing float32 and float64 parameters updates each as a group of its own dtype would', () => {
    for (const make of [
      (ps: Tensor[]) => new SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }),
      (ps: Tensor[]) => new AdamW(ps, { lr: 0.01, weightDecay: 0.1, amsgrad: true }),
    ]) {
      const mixed = [problem('float64'), problem('float32')];
      const alone = [problem('float64'), problem('float32')];
      const optMixed = make([mixed[0].W, mixed[1].b]);
      const optAlone = [make([alone[0].W]), make([alone[1].b])];
      for (let i = 0; i < 3; i++) {
        for (const pr of [...mixed, ...alone]) {
          pr.W.grad = null;
          pr.b.grad = null;
          tidy(() => noGrad(() => {
            pr.W.grad = pr.W.mul(0.3).sub(0.1);
            pr.b.grad = pr.b.mul(-0.2).add(0.05);
          }));
        }
        optMixed.step();
        for (const o of optAlone) o.step();
      }
      assert.equal(mixed[0].W.dtype, 'float64');
      assert.equal(mixed[1].b.dtype, 'float32');
      assert.equal(maxDiff(mixed[0].W, alone[0].W), 0);
      assert.equal(maxDiff(mixed[1].b, alone[1].b), 0);
      assert.ok(Math.abs(mixed[0].W.toArray()[0] - S.W0.values[0]) > 1e-3, 'the parameters moved');
      for (const o of [optMixed, ...optAlone]) o.dispose();
      for (const pr of [...mixed, ...alone]) pr.free();
    }
  });
  it('bfloat16 parameters (number operands passed as Scalars) follow the SGD rule written out with tensor methods', () => {
    const p = tidy(() => fx(S.W0).to('bfloat16').keep()).requiresGrad_(true);
    const ref = tidy(() => fx(S.W0).to('bfloat16').keep());
    const g = tidy(() => fx(S.X).narrow(0, 0, 3).to('bfloat16').keep());
    const buf = tidy(() => g.clone().keep());
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.25 });
    for (let i = 0; i < 4; i++) {
      tidy(() => { p.grad = g.clone(); });
      opt.step();
      if (i > 0) buf.mul_(0.9).add_(g, 0.75);
      ref.add_(buf, -0.1);
    }
    assert.equal(p.dtype, 'bfloat16');
    assert.equal(maxDiff(p, ref), 0);
    assert.ok(Math.abs(p.toArray()[0] - S.W0.values[0]) > 0.05, 'the parameter moved');
    opt.dispose();
    p.grad = null;
    dispose([p, ref, g, buf]);
  });
  it('parameters without a gradient are skipped and get no state', () => {
    const pr = problem();
    const opt = new Adam([pr.W, pr.b]);
    const b0 = pr.b.toArray();
    pr.lossStep(opt, true);
    assert.deepEqual(pr.b.toArray(), b0);
    assert.deepEqual(Object.keys(opt.stateDict().tensors).sort(), ['state.0.exp_avg', 'state.0.exp_avg_sq']);
    opt.dispose();
    pr.free();
  });
});

describe('optimizer options are checked', () => {
  checkLeaks();
  it('names the option, group or parameter at fault', () => {
    const pr = problem();
    const { W, b } = pr;
    assert.throws(() => new SGD([W], { lr: 0.1, momentm: 0.9 } as any), /SGD: options: unknown option 'momentm' \(known: lr, momentum/);
    assert.throws(() => new SGD([{ params: [W], lr: 0.1 }, { params: [b], betas: [0.9, 0.9] } as any]), /SGD: group 1: unknown option 'betas'/);
    assert.throws(() => new SGD([W]), /SGD: group 0: no learning rate/);
    assert.throws(() => new SGD([W], { lr: -1 }), /SGD: group 0: invalid learning rate -1/);
    assert.throws(() => new SGD([W], { lr: 0.1, nesterov: true }), /Nesterov momentum requires momentum > 0 and dampening 0/);
    assert.throws(() => new SGD([W], { lr: 0.1, momentum: -0.5 }), /invalid momentum -0.5/);
    assert.throws(() => new SGD([W], { lr: 0.1, nesterov: 'yes' as any }), /option 'nesterov' must be true or false/);
    assert.throws(() => new Adam([W], { betas: [0.9, 1] }), /Adam: group 0: invalid betas \[0.9,1\]/);
    assert.throws(() => new AdamW([W], { eps: -1 }), /AdamW: group 0: invalid eps -1/);
    assert.throws(() => new Adam([]), /Adam: got an empty parameter list/);
    assert.throws(() => new Adam([W, b, W]), /parameter 2 of group 0 \(shape \[3, 4\]\) appears more than once/);
    assert.throws(() => new Adam([{ params: [W] }, { params: [W] }]), /parameter 0 of group 1 \(shape \[3, 4\]\) appears more than once/);
    tidy(() => assert.throws(() => new Adam([W.mul(2)]), /parameter 0 of group 0 \(shape \[3, 4\]\) is not a leaf tensor/));
    const opt = new SGD([{ params: [W], lr: 0.5 }], { lr: 0.1 });
    opt.addParamGroup({ params: [b], momentum: 0.9 });
    assert.deepEqual(opt.paramGroups.map((g) => [g.options.lr, g.options.momentum]), [[0.5, 0], [0.1, 0.9]]);
    pr.free();
  });
});

describe('optimizer state save and load', () => {
  checkLeaks();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-optim-'));
  const resumable = ['sgd_momentum', 'sgd_nesterov_wd', 'adam_amsgrad_wd', 'adam_groups', 'adam_skip', 'adamw', 'sgd_momentum_f32'];
  for (const name of resumable) {
    it(`${name}: saved after 3 steps to safetensors + JSON and loaded into a new optimizer, continues exactly`, () => {
      const dtype = S.runs[name].dtype as Dt;
      const a = problem(dtype);
      const optA = makers[name](a.W, a.b);
      for (let i = 0; i < 5; i++) a.lossStep(optA, skips[name] === i);

      const b = problem(dtype);
      const optB = makers[name](b.W, b.b);
      for (let i = 0; i < 3; i++) b.lossStep(optB, skips[name] === i);
      const saved = optB.stateDict();
      const file = path.join(dir, `${name}.safetensors`);
      saveSafetensors(file, saved.tensors, { meta: JSON.stringify(saved.meta) });
      optB.dispose();

      const optC = makers[name](b.W, b.b);
      const loaded = loadSafetensors(file);
      try {
        optC.loadStateDict({ tensors: loaded.tensors, meta: JSON.parse(loaded.metadata.meta) });
      } finally {
        dispose(loaded.tensors);
      }
      for (let i = 3; i < 5; i++) b.lossStep(optC, skips[name] === i);
      assert.equal(maxDiff(a.W, b.W), 0, 'W equals the uninterrupted run');
      assert.equal(maxDiff(a.b, b.b), 0, 'b equals the uninterrupted run');
      const last = S.runs[name].trajectory[4];
      assertClose(b.W.toArray(), last.W, dtype, `${name} W after resuming`);
      optA.dispose();
      optC.dispose();
      a.free();
      b.free();
    });
  }
  it('loading restores group options, including a learning rate a scheduler changed', () => {
    const pr = problem();
    const opt = new SGD([{ params: [pr.W] }, { params: [pr.b], lr: 0.3 }], { lr: 0.1, momentum: 0.9 });
    const sched = new StepLR(opt, 1, 0.5);
    pr.lossStep(opt);
    sched.step();
    const sd = opt.stateDict();
    assert.deepEqual(sd.meta.param_groups.map((g) => [g.lr, g.initial_lr, g.params]), [[0.05, 0.1, [0]], [0.15, 0.3, [1]]]);
    const fresh = new SGD([{ params: [pr.W] }, { params: [pr.b], lr: 0.3 }], { lr: 0.1, momentum: 0.9 });
    fresh.loadStateDict(JSON.parse(JSON.stringify({ meta: sd.meta, tensors: {} })));
    assert.deepEqual(fresh.paramGroups.map((g) => [g.options.lr, g.initialLr]), [[0.05, 0.1], [0.15, 0.3]]);
    opt.dispose();
    pr.free();
  });
  it('accepts step counts saved as one-element tensors, as PyTorch keeps them', () => {
    const a = problem();
    const optA = new Adam([a.W, a.b], { lr: 0.01, amsgrad: true });
    for (let i = 0; i < 5; i++) a.lossStep(optA);
    const b = problem();
    const optB = new Adam([b.W, b.b], { lr: 0.01, amsgrad: true });
    for (let i = 0; i < 3; i++) b.lossStep(optB);
    const sd = optB.stateDict();
    const steps = tidy(() => Object.fromEntries(Object.entries(sd.meta.state).map(([i, s]) => [`state.${i}.step`, scalarTensor(s.step).keep()])));
    const optC = new Adam([b.W, b.b], { lr: 0.01, amsgrad: true });
    optC.loadStateDict({ tensors: { ...sd.tensors, ...steps }, meta: { ...sd.meta, state: {} } });
    dispose(steps);
    optB.dispose();
    assert.deepEqual(optC.stateDict().meta.state, { 0: { step: 3 }, 1: { step: 3 } });
    for (let i = 0; i < 2; i++) b.lossStep(optC);
    assert.equal(maxDiff(a.W, b.W), 0);
    for (const o of [optA, optC]) o.dispose();
    a.free();
    b.free();
  });
  it('state is cast to the parameter dtype on load, and the caller keeps the given tensors', () => {
    const pr = problem('float64');
    const opt = new SGD([pr.W, pr.b], { lr: 0.1, momentum: 0.9 });
    pr.lossStep(opt);
    const sd = opt.stateDict();
    const f32 = Object.fromEntries(Object.entries(sd.tensors).map(([k, t]) => [k, t.float()]));
    const fresh = new SGD([pr.W, pr.b], { lr: 0.1, momentum: 0.9 });
    fresh.loadStateDict({ tensors: f32, meta: sd.meta });
    assert.equal(fresh.stateDict().tensors['state.0.momentum_buffer'].dtype, 'float64');
    assert.ok(f32['state.0.momentum_buffer'].dtype === 'float32' && !f32['state.0.momentum_buffer'].isDisposed);
    dispose(f32);
    fresh.dispose();
    opt.dispose();
    pr.free();
  });
  it('a state that does not fit names what is wrong and changes nothing', () => {
    const pr = problem();
    const opt = new Adam([pr.W, pr.b], { lr: 0.01 });
    pr.lossStep(opt);
    const sd = opt.stateDict();
    const meta = () => JSON.parse(JSON.stringify(sd.meta));
    const bad = zeros([5], { dtype: 'float64' });
    const without = (key: string) => Object.fromEntries(Object.entries(sd.tensors).filter(([k]) => k !== key));
    const cases: [Parameters<Optimizer<any>['loadStateDict']>[0], RegExp][] = [
      [{ tensors: { ...sd.tensors, 'state.0.exp_avg': bad }, meta: sd.meta }, /'state\.0\.exp_avg': the parameter has shape \[3, 4\], the saved state has shape \[5\]/],
      [{ tensors: without('state.1.exp_avg_sq'), meta: sd.meta }, /'state\.1\.exp_avg_sq' is missing \(parameter 1 has exp_avg, step\)/],
      [{ tensors: { ...sd.tensors, 'state.0.max_exp_avg_sq': bad }, meta: sd.meta }, /'state\.0\.max_exp_avg_sq' is not state of Adam with group 0's options \(expected: exp_avg, exp_avg_sq, step\)/],
      [{ tensors: { ...sd.tensors, 'state.7.exp_avg': bad }, meta: sd.meta }, /'state\.7\.exp_avg' refers to parameter 7, which no group lists \(2 parameters\)/],
      [{ tensors: { ...sd.tensors, momentum: bad }, meta: sd.meta }, /unexpected tensor key 'momentum' \(expected state\.<index>\.<name>\)/],
      [{ tensors: sd.tensors, meta: { ...meta(), state: {} } }, /'state\.0\.step' is missing/],
      [{ tensors: sd.tensors, meta: { ...meta(), type: 'SGD' } }, /the state was saved by SGD, this optimizer is Adam/],
      [{ tensors: sd.tensors, meta: { ...meta(), param_groups: [{ ...meta().param_groups[0], betaz: [0.9, 0.9] }] } }, /group 0: unknown option 'betaz'/],
      [{ tensors: sd.tensors, meta: { ...meta(), param_groups: [{ ...meta().param_groups[0], lr: -3 }] } }, /group 0: invalid learning rate -3/],
      [{ tensors: sd.tensors, meta: { ...meta(), param_groups: [{ ...meta().param_groups[0], params: [0] }] } }, /group 0: 1 parameters saved, the optimizer has 2/],
    ];
    for (const [state, re] of cases) assert.throws(() => opt.loadStateDict(state), (e: Error) => /^Adam\.loadStateDict: /.test(e.message) && re.test(e.message));
    const two = new Adam([{ params: [pr.W] }, { params: [pr.b] }]);
    assert.throws(() => two.loadStateDict(sd), /1 parameter groups saved, the optimizer has 2/);
    // the failed loads left the state as it was: the next step matches a run that never tried them
    const ref = problem();
    const optRef = new Adam([ref.W, ref.b], { lr: 0.01 });
    for (let i = 0; i < 2; i++) ref.lossStep(optRef);
    pr.lossStep(opt);
    assert.equal(maxDiff(pr.W, ref.W), 0);
    bad.dispose();
    for (const o of [opt, optRef, two]) o.dispose();
    pr.free();
    ref.free();
  });
  it('cleans up the temporary directory', () => {
    fs.rmSync(dir, { recursive: true, force: true });
    assert.ok(!fs.existsSync(dir));
  });
});

describe('learning-rate schedules follow PyTorch 1.13', () => {
  checkLeaks();
  type Make = (o: SGD) => LRScheduler;
  function withOptimizer<T>(groupLrs: number[], fn: (o: SGD) => T): T {
    const ps = groupLrs.map(() => zeros([1]).requiresGrad_(true));
    try {
      return fn(new SGD(ps.map((p, i) => ({ params: [p], lr: groupLrs[i] })), { lr: groupLrs[0] }));
    } finally {
      dispose(ps);
    }
  }
  function sequence(make: Make, n: number, groupLrs = [0.1]): number[][] {
    return withOptimizer(groupLrs, (o) => {
      const s = make(o);
      const out = [s.getLastLr()];
      for (let i = 0; i < n; i++) {
        s.step();
        out.push(s.getLastLr());
        assert.deepEqual(o.paramGroups.map((g) => g.options.lr), out[out.length - 1], 'the groups hold the scheduled rates');
      }
      return out;
    });
  }
  const cases: Record<string, [Make, number?, number[]?]> = {
    step: [(o) => new StepLR(o, 3, 0.5)],
    step_groups: [(o) => new StepLR(o, 4, 0.3), 20, [0.1, 0.02]],
    multistep: [(o) => new MultiStepLR(o, [2, 5, 11], 0.3)],
    multistep_repeated: [(o) => new MultiStepLR(o, [3, 7, 7, 12], 0.5)],
    cosine: [(o) => new CosineAnnealingLR(o, 10, 0.01), 25],
    cosine_groups: [(o) => new CosineAnnealingLR(o, 7), 20, [0.1, 0.5]],
    linear: [(o) => new LinearLR(o, 0.25, 1, 4)],
    linear_decay: [(o) => new LinearLR(o, 1, 0.1, 12)],
    exponential: [(o) => new ExponentialLR(o, 0.9)],
    lambda: [(o) => new LambdaLR(o, (e) => 0.95 ** e)],
    lambda_groups: [(o) => new LambdaLR(o, [(e) => 1 / (e + 1), (e) => (e % 2 ? 0.5 : 1.0)]), 20, [0.1, 0.02]],
    warmup_cosine: [(o) => warmup(o, 5, new CosineAnnealingLR(o, 15, 0.001), { startFactor: 0.1 })],
    warmup_step: [(o) => new SequentialLR(o, [new LinearLR(o, 0.2, 1, 3), new StepLR(o, 4, 0.5)], [3])],
  };
  it('the fixture covers every schedule', () => assert.deepEqual(Object.keys(L).sort(), Object.keys(cases).sort()));
  for (const [name, [make, n, lrs]] of Object.entries(cases)) {
    it(name, () => {
      const expected: number[][] = L[name];
      const got = sequence(make, n ?? 20, lrs);
      assert.equal(got.length, expected.length);
      got.forEach((row, i) => assertClose(row, expected[i], 'float64', `${name} epoch ${i}`));
    });
  }
  it('step(epoch) uses the closed form', () => {
    withOptimizer([0.1], (o) => {
      const s = new StepLR(o, 3, 0.5);
      s.step(7);
      assert.equal(s.lastEpoch, 7);
      assert.equal(o.paramGroups[0].options.lr, 0.1 * 0.5 ** 2);
    });
  });
  for (const [name, make] of [
    ['StepLR', (o: SGD) => new StepLR(o, 3, 0.5)],
    ['CosineAnnealingLR', (o: SGD) => new CosineAnnealingLR(o, 10, 0.01)],
    ['SequentialLR', (o: SGD) => warmup(o, 5, new CosineAnnealingLR(o, 15, 0.001))],
  ] as [string, Make][]) {
    it(`${name}: a state saved mid-way and loaded into a new scheduler continues the same sequence`, () => {
      const full = sequence(make, 20, [0.1, 0.02]);
      const resumed = withOptimizer([0.1, 0.02], (o) => {
        const s = make(o);
        for (let i = 0; i < 7; i++) s.step();
        return JSON.stringify(s.stateDict());
      });
      const rest = withOptimizer([0.1, 0.02], (o) => {
        const s = make(o);
        s.loadStateDict(JSON.parse(resumed));
        const out = [s.getLastLr()];
        assert.deepEqual(o.paramGroups.map((g) => g.options.lr), out[0], 'loading sets the groups to the saved rates');
        for (let i = 7; i < 20; i++) { s.step(); out.push(s.getLastLr()); }
        return out;
      });
      assert.deepEqual(rest, full.slice(7));
    });
  }
  it('bad arguments and states are named', () => {
    withOptimizer([0.1], (o) => {
      assert.throws(() => new StepLR(o, 0), /StepLR: stepSize must be a positive integer, got 0/);
      assert.throws(() => new LinearLR(o, 0), /LinearLR: startFactor must be in \(0, 1\], got 0/);
      assert.throws(() => new LambdaLR(o, [() => 1, () => 2]), /LambdaLR: 2 functions for 1 parameter groups/);
      assert.throws(() => new SequentialLR(o, [new StepLR(o, 2), new StepLR(o, 3)], []), /2 schedulers need 1 milestones, got 0/);
      const s = new CosineAnnealingLR(o, 10);
      const extra = zeros([1]).requiresGrad_(true);
      o.addParamGroup({ params: [extra] });
      assert.throws(() => s.step(), /CosineAnnealingLR\.step: the optimizer has 2 parameter groups, the scheduler was built for 1/);
      o.paramGroups.pop();
      extra.dispose();
      assert.throws(() => s.loadStateDict({ ...s.stateDict(), type: 'StepLR' }), /CosineAnnealingLR\.loadStateDict: the state was saved by StepLR/);
      assert.throws(() => s.loadStateDict({ ...s.stateDict(), baseLrs: [0.1, 0.2] }), /baseLrs holds 2 learning rates, the optimizer has 1 parameter groups/);
    });
  });
  it('loads the earlier { lastEpoch, baseLrs } form with the closed form', () => {
    withOptimizer([0.1], (o) => {
      const s = new StepLR(o, 3, 0.5);
      s.loadStateDict({ lastEpoch: 7, baseLrs: [0.1] });
      assert.deepEqual(s.getLastLr(), [0.025]);
      s.step();
      s.step();
      assert.deepEqual(s.getLastLr(), [0.0125]);
    });
  });
});

describe('gradient clipping follows PyTorch 1.13', () => {
  checkLeaks();
  function withGrads<T>(dtype: Dt, fn: (ps: Tensor[]) => T): T {
    const ps = C.grads.map((g: { shape: number[] }) => zeros(g.shape, { dtype }).requiresGrad_(true));
    ps.forEach((p: Tensor, i: number) => tidy(() => { p.grad = fx(C.grads[i], dtype); }));
    try {
      return fn(ps);
    } finally {
      for (const p of ps) p.grad = null;
      dispose(ps);
    }
  }
  for (const c of C.cases) {
    it(`clipGradNorm ${c.dtype} norm ${c.norm_type}, max ${c.max_norm}`, () => {
      withGrads(c.dtype, (ps) => {
        const total = clipGradNorm(ps, c.max_norm, c.norm_type === 'inf' ? Infinity : c.norm_type);
        assertClose([total], [c.total], c.dtype, 'total norm');
        ps.forEach((p, i) => tidy(() => assertClose(p.grad!.toArray(), c.clipped[i].values, c.dtype, `clipped grad ${i}`)));
      });
    });
  }
  it('clipGradValue', () => {
    withGrads('float32', (ps) => {
      clipGradValue(ps, C.value.clip_value);
      ps.forEach((p, i) => tidy(() => assert.deepEqual(p.grad!.toArray(), C.value.clipped[i].values)));
    });
  });
  it('parameters without gradients are ignored; a non-finite norm can be refused', () => {
    const p = zeros([3]).requiresGrad_(true);
    assert.equal(clipGradNorm([p], 1), 0);
    tidy(() => { p.grad = zeros([3]).fill_(NaN); });
    assert.throws(() => clipGradNorm(p, 1, 2, { errorIfNonfinite: true }), /clipGradNorm: the total norm of order 2 of the gradients is NaN/);
    assert.ok(Number.isNaN(clipGradNorm(p, 1)));
    p.grad = null;
    p.dispose();
  });
});
