// Adversarial distillation (src/distill/adversarial.ts, adversarial-run.ts, src/models/discriminator.ts): the
// discriminator's and the student's losses and the BSS KL against hand-computed values; the discriminator model; the
// discriminator's and the student's updates alternating as configured (which parameters change in which step); BSS
// samples moving toward the teacher's boundary inside the valid range; an interrupted run resuming byte-identical.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { F, Linear, Module } from '../src/nn';
import { Tensor, dispose, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { Discriminator, LeNet5, LeNet5Half, createModel, registerBuiltinModels } from '../src/models';
import {
  BssBatches, EngineStep, IGNORE_LABEL, TrainingInterrupted, adversarial, adversarialSpec, advDiscriminatorLoss, advStudentLoss, bssAttack, bssKl,
  lossNames, lossValue, makeOptimizer, registerBuiltinLosses, type AdversarialOptions,
} from '../src/distill';
import { checkLeaks } from './helpers';

const close = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);
const val = (f: () => Tensor) => tidy(() => f().item());
const softplus = (v: number) => Math.log(1 + Math.exp(v));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const softmaxRow = (r: number[], T = 1) => {
  const m = Math.max(...r), e = r.map((v) => Math.exp((v - m) / T)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const klRow = (s: number[], t: number[], T: number) => {
  const p = softmaxRow(t, T), q = softmaxRow(s, T);
  return p.reduce((a, pi, i) => a + pi * Math.log(pi / q[i]), 0);
};
const norm = [normalize([0.1307], [0.3081])];
const snapshot = (m: Module) => m.parameters().map((p) => Array.from(p.data() as Float32Array));

describe('adversarial losses against hand-computed values', () => {
  checkLeaks();
  // the discriminator's output [real; fake]: real 1, −2; fake 0.5, 3
  const d = [[1], [-2], [0.5], [3]];
  const real = [1, -2], fake = [0.5, 3];

  it('adv_disc: ½(BCE(real, 1) + BCE(fake, 0)); lsgan ½ mean (real − 1)² + ½ mean fake²', () => {
    close(val(() => advDiscriminatorLoss(tensor(d))), 0.5 * (mean(real.map((r) => softplus(-r))) + mean(fake.map((f) => softplus(f)))));
    close(val(() => advDiscriminatorLoss(tensor(d), 'lsgan')), 0.5 * mean(real.map((r) => (r - 1) ** 2)) + 0.5 * mean(fake.map((f) => f * f)));
  });

  it('adv_student: BCE(fake, 1) on the fake rows only; lsgan ½ mean (fake − 1)²', () => {
    close(val(() => advStudentLoss(tensor(d))), mean(fake.map((f) => softplus(-f))));
    close(val(() => advStudentLoss(tensor(d), 'lsgan')), 0.5 * mean(fake.map((f) => (f - 1) ** 2)));
    // the real rows do not matter
    close(val(() => advStudentLoss(tensor([[9], [-9], [0.5], [3]]))), mean(fake.map((f) => softplus(-f))));
  });

  it('bad discriminator outputs and forms are refused, naming the loss', () => {
    assert.throws(() => tidy(() => advDiscriminatorLoss(tensor([[1], [2], [3]]))), /adv_disc: .*3 rows.*even/);
    assert.throws(() => tidy(() => advStudentLoss(tensor([[1, 2], [3, 4]]))), /adv_student: expects the discriminator's output/);
    assert.throws(() => tidy(() => advDiscriminatorLoss(tensor(d), 'wgan' as 'bce')), /adv_disc: option form must be 'bce' or 'lsgan', got "wgan"/);
  });

  it('bss_kl: KL·T² over the base rows or over the appended boundary rows', () => {
    const s = [[1, 0, -1], [0.5, 0.5, 0], [2, -1, 0]], t = [[2, 0, 0], [0, 1, 3], [1, 1, 1]];
    const T = 3;
    // one boundary row (the last)
    close(val(() => lossValue(bssKl(tensor(s), tensor(t), 1, 'base', T))), ((klRow(s[0], t[0], T) + klRow(s[1], t[1], T)) / 2) * T * T);
    close(val(() => lossValue(bssKl(tensor(s), tensor(t), 1, 'boundary', T))), klRow(s[2], t[2], T) * T * T);
    close(val(() => lossValue(bssKl(tensor(s), tensor(t), 0, 'boundary', T))), 0);
    assert.throws(() => tidy(() => lossValue(bssKl(tensor(s), tensor(t), 3, 'base', T))), /bss_kl: batch.bss_rows is 3, but the batch has 3 rows/);
  });

  it('the engine knows the losses by name', () => {
    registerBuiltinLosses();
    for (const n of ['adv_disc', 'adv_student', 'bss_kl']) assert.ok(lossNames().includes(n), n);
  });
});

describe('the discriminator model', () => {
  checkLeaks();

  it('judges [real; fake] in one pass; conditioned, it reads the one-hot label; bad inputs are named', () => {
    registerBuiltinModels();
    manualSeed(0);
    const D = createModel('discriminator', { numClasses: 3, hidden: [8] }) as Discriminator;
    assert.equal(D.inputDim, 3);
    assert.deepEqual(Object.keys(D.stateDict()), ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    tidy(() => {
      const r = tensor([[1, 2, 3], [0, 0, 1]]), f = tensor([[3, 2, 1], [1, 1, 1]]);
      const out = D.call(r, f).tolist() as number[][];
      assert.equal(out.length, 4);
      // row by row: the same as judging each side alone
      const swapped = D.call(f, r).tolist() as number[][];
      close(out[2][0], swapped[0][0]);
    });
    manualSeed(0);
    const C = new Discriminator({ inputDim: 3, hidden: [8], classes: 3 });
    tidy(() => {
      const r = tensor([[1, 2, 3], [0, 0, 1]]), f = tensor([[3, 2, 1], [1, 1, 1]]);
      const a = C.call(r, f, tensor(BigInt64Array.of(0n, 1n))).tolist() as number[][], b = C.call(r, f, tensor(BigInt64Array.of(2n, 1n))).tolist() as number[][];
      // the label changes the first real and the first fake row's score, not the second ones
      assert.notEqual(a[0][0], b[0][0]);
      assert.notEqual(a[2][0], b[2][0]);
      close(a[1][0], b[1][0]);
      close(a[3][0], b[3][0]);
      assert.throws(() => C.call(r, f), /conditioned on 3 classes, it needs labels/);
      assert.throws(() => D.call(tensor([[1, 2]]), f), /the real \(teacher\) side has 2 features per row .* inputDim 3/);
    });
    assert.throws(() => createModel('discriminator', { hiden: [4] }), /hiden.*hidden/);
    D.dispose();
    C.dispose();
  });
});

/** A frozen linear "teacher" over flattened inputs, for attacks whose steps can be computed by hand. */
class LinearTeacher extends Module {
  fc = this.registerModule('fc', new Linear(4, 3));
  forward(x: Tensor): Tensor {
    return this.fc.call(x.reshape([x.shape[0], -1]));
  }
}

describe('boundary supporting samples', () => {
  checkLeaks();

  it('on a linear teacher each step removes η of the margin to the boundary; clipped to the valid range', () => {
    manualSeed(3);
    const t = new LinearTeacher().eval().requiresGrad_(false);
    tidy(() => {
      const x = tensor([[0.3, -0.2, 0.1, 0.4], [-0.1, 0.2, 0.3, -0.3]]);
      const z = noGrad(() => t.call(x)).tolist() as number[][];
      const base = z.map((r) => r.indexOf(Math.max(...r)));
      const target = base.map((b) => (b + 1) % 3);
      const margin = (zz: number[][]) => zz.map((r, i) => r[base[i]] - r[target[i]]);
      const m0 = margin(z);
      const one = bssAttack(t, x, tensor(BigInt64Array.from(base.map(BigInt))), tensor(BigInt64Array.from(target.map(BigInt))), { steps: 1, stepSize: 0.3 });
      const m1 = margin(noGrad(() => t.call(one)).tolist() as number[][]);
      // linear: the margin falls by exactly η (margin + 1e-4)
      m1.forEach((m, i) => close(m, m0[i] - 0.3 * (m0[i] + 1e-4), 1e-4));
      // more steps: the margin keeps shrinking toward 0 (the boundary), while the base class is still the top one
      const five = bssAttack(t, x, tensor(BigInt64Array.from(base.map(BigInt))), tensor(BigInt64Array.from(target.map(BigInt))), { steps: 5, stepSize: 0.3 });
      const m5 = margin(noGrad(() => t.call(five)).tolist() as number[][]);
      m5.forEach((m, i) => assert.ok(Math.abs(m) < Math.abs(m1[i]), `sample ${i}: margin ${m} after 5 steps, ${m1[i]} after 1`));
      // a tight range clips every value
      const clipped = bssAttack(t, x, tensor(BigInt64Array.from(base.map(BigInt))), tensor(BigInt64Array.from(target.map(BigInt))), { steps: 5, stepSize: 0.9, range: [-0.25, 0.25] });
      const v = clipped.data() as Float32Array;
      assert.ok(v.every((u) => u >= -0.25 && u <= 0.25), `clipped: ${Array.from(v)}`);
    });
    assert.equal(t.fc.weight.grad, null, 'the teacher has no gradient');
    t.dispose();
  });

  it('BssBatches: base rows then the moved samples (labels −100), nearer the teacher boundary, in range, drawn again identically', async () => {
    manualSeed(4);
    const train = loadMnist({ split: 'train', limit: 64 });
    const teacher = new LeNet5(), student = new LeNet5Half();
    const loader = new DataLoader(train, { batchSize: 32, shuffle: true, seed: 1, transforms: norm });
    // a teacher that classifies its batch: 30 steps of plain training on it first
    loader.setEpoch(0);
    const first = loader.batchAt(0);
    const opt = makeOptimizer({ kind: 'sgd', lr: 0.05, momentum: 0.9 }, teacher.parameters());
    for (let i = 0; i < 30; i++) {
      opt.zeroGrad();
      tidy(() => F.crossEntropy(teacher.call(first.x), first.y).backward());
      opt.step();
    }
    opt.dispose();
    first.dispose();
    teacher.eval().requiresGrad_(false);
    const lo = (0 - 0.1307) / 0.3081, hi = (1 - 0.1307) / 0.3081;
    const bss = new BssBatches(loader, { teacher, student, attackSize: 8, seed: 5, attack: { steps: 10, stepSize: 0.3, range: [lo, hi] } });
    bss.setEpoch(0);
    const b = await bss.batchAt(0), again = await bss.batchAt(0);
    try {
      const n = Number(b.taps!.bss_rows.item());
      assert.equal(b.x.shape[0], 32 + n);
      assert.ok(n >= 1 && n <= 8, `attacked ${n}`);
      const y = Array.from(b.y.data() as BigInt64Array, Number);
      assert.ok(y.slice(32).every((v) => v === IGNORE_LABEL) && y.slice(0, 32).every((v) => v >= 0 && v < 10));
      assert.deepEqual(Array.from(again.x.data() as Float32Array), Array.from(b.x.data() as Float32Array), 'the same batch again');
      const xs = b.x.data() as Float32Array;
      assert.ok(xs.every((v) => v >= lo - 1e-6 && v <= hi + 1e-6), 'every pixel inside the normalised [0, 1] range');
      // the teacher's top-two margin is smaller on the moved samples than on the samples they came from
      tidy(() => {
        const z = noGrad(() => teacher.call(b.x)).tolist() as number[][];
        const top2 = (r: number[]) => { const s = [...r].sort((p, q) => q - p); return s[0] - s[1]; };
        const moved = z.slice(32).map(top2);
        const bases = z.slice(0, 32).filter((r, i) => r.indexOf(Math.max(...r)) === y[i]).map(top2);
        assert.ok(mean(moved) < mean(bases), `mean margin ${mean(moved)} on the moved samples, ${mean(bases)} on the correctly classified base samples`);
      });
    } finally {
      b.dispose();
      again.dispose();
      train.dispose();
      teacher.dispose();
      student.dispose();
    }
  });
});

describe('adversarial runs', () => {
  checkLeaks();

  it('the discriminator steps k times on every n-th step, the student every step; the adversarial term reaches the student', async () => {
    const train = loadMnist({ split: 'train', limit: 32 });
    const loader = new DataLoader(train, { batchSize: 32, transforms: norm });
    manualSeed(7);
    const teacher = new LeNet5(), student = new LeNet5Half();
    const D = new Discriminator({ inputDim: 10, hidden: [16] });
    const spec = adversarialSpec({
      method: 'discriminator', teacher, student, train: loader, classes: 10, epochs: 1, seed: 0, outDir: '',
      discriminator: { model: D, steps: 2, every: 2, weight: 1, optimizer: { kind: 'sgd', lr: 0.1 } },
    });
    assert.deepEqual(spec.updates!.map((u) => [u.roles, u.terms, u.every ?? 1]), [[['discriminator'], ['disc'], 2], [['discriminator'], ['disc'], 2], [['student'], ['hard', 'soft', 'adv'], 1]]);
    assert.deepEqual(spec.roles.find((r) => r.name === 'discriminator')!.input, ['teacher.logits', 'student.logits']);
    const b = loader.batchAt(0);
    const eng = await EngineStep.create({ ...spec, batch: b });
    try {
      const tBefore = snapshot(teacher);
      for (let step = 0; step < 4; step++) {
        const d0 = snapshot(D), s0 = snapshot(student);
        eng.step(b, { epoch: 0, step, stepsPerEpoch: 4, epochs: 1 });
        const dMoved = snapshot(D).some((p, i) => p.some((v, j) => v !== d0[i][j]));
        const sMoved = snapshot(student).some((p, i) => p.some((v, j) => v !== s0[i][j]));
        assert.equal(dMoved, step % 2 === 0, `step ${step}: the discriminator ${dMoved ? 'changed' : 'did not change'}`);
        assert.ok(sMoved, `step ${step}: the student changed`);
      }
      assert.deepEqual(snapshot(teacher), tBefore, 'the frozen teacher never changes');
    } finally {
      eng.dispose();
    }
    // k = 2 steps the discriminator twice: the same as two steps of k = 1 on the same batch
    const dTwice = (k: number, steps: number) => {
      manualSeed(7);
      const t = new LeNet5(), s = new LeNet5Half(), d = new Discriminator({ inputDim: 10, hidden: [16] });
      return { t, s, d, spec: adversarialSpec({ method: 'discriminator', teacher: t, student: s, train: loader, classes: 10, epochs: 1, seed: 0, outDir: '', discriminator: { model: d, steps: k, optimizer: { kind: 'sgd', lr: 0.1 } } }), steps };
    };
    const runD = async ({ t, s, d, spec: sp, steps }: ReturnType<typeof dTwice>) => {
      const onlyD = { ...sp, updates: sp.updates!.filter((u) => u.roles[0] === 'discriminator') };
      const e = await EngineStep.create({ ...onlyD, batch: b });
      for (let i = 0; i < steps; i++) e.step(b, { epoch: 0, step: i, stepsPerEpoch: 4, epochs: 1 });
      e.dispose();
      const w = snapshot(d);
      for (const m of [t, s, d]) m.dispose();
      return w;
    };
    assert.deepEqual(await runD(dTwice(2, 1)), await runD(dTwice(1, 2)));
    // the adversarial term's gradient reaches the student through the discriminator: weight 0 and weight 1 differ
    const studentAfter = async (weight: number) => {
      manualSeed(7);
      const t = new LeNet5(), s = new LeNet5Half(), d = new Discriminator({ inputDim: 10, hidden: [16] });
      const sp = adversarialSpec({ method: 'discriminator', teacher: t, student: s, train: loader, classes: 10, epochs: 1, seed: 0, outDir: '', discriminator: { model: d, weight } });
      const e = await EngineStep.create({ ...sp, batch: b });
      e.step(b);
      e.dispose();
      const w = snapshot(s);
      for (const m of [t, s, d]) m.dispose();
      return w;
    };
    assert.notDeepEqual(await studentAfter(0), await studentAfter(1));
    b.dispose();
    for (const m of [teacher, student, D]) m.dispose();
    train.dispose();
  });

  for (const method of ['discriminator', 'bss'] as const) {
    it(`${method}: interrupted and resumed, it ends with the same bytes as an uninterrupted run`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tsd-adv-${method}-`));
      const train = loadMnist({ split: 'train', limit: 192 }), test = loadMnist({ split: 'test', limit: 100 });
      const lo = (0 - 0.1307) / 0.3081, hi = (1 - 0.1307) / 0.3081;
      const opts = (out: string, loader?: DataLoader, signal?: AbortSignal, resume?: boolean): AdversarialOptions => {
        manualSeed(11);
        return {
          method, teacher: new LeNet5(), student: new LeNet5Half(), classes: 10, epochs: 2, seed: 3, outDir: path.join(dir, out), test, testTransforms: norm,
          train: loader ?? new DataLoader(train, { batchSize: 32, shuffle: true, seed: 3, transforms: norm }),
          discriminator: { conditional: true, hidden: [16], steps: 2 }, bss: { attackSize: 4, steps: 3, range: [lo, hi] },
          checkpointEverySteps: 1, signal, resume, progress: false, log: () => {},
        };
      };
      const free = (o: AdversarialOptions) => { o.teacher.dispose(); o.student.dispose(); };
      const whole = opts('whole');
      const s1 = await adversarial(whole);
      free(whole);
      assert.equal(s1.steps, 12);
      // interrupted in the second epoch, after its second step
      const ac = new AbortController();
      let n = 0;
      const loader = new DataLoader(train, { batchSize: 32, shuffle: true, seed: 3, transforms: norm });
      const batchAt = loader.batchAt.bind(loader);
      loader.batchAt = (i: number) => { if (++n === 9) ac.abort(); return batchAt(i); };
      const cut = opts('cut', loader, ac.signal);
      await assert.rejects(adversarial(cut), (e: Error) => e instanceof TrainingInterrupted);
      free(cut);
      const rest = opts('cut', undefined, undefined, true);
      const s2 = await adversarial(rest);
      free(rest);
      assert.equal(s2.final_test_acc, s1.final_test_acc);
      const files = ['last.safetensors', 'last.optim.safetensors', 'best.safetensors', ...(method === 'discriminator' ? ['last.discriminator.safetensors', 'last.discriminator.optim.safetensors'] : [])];
      for (const f of files) assert.ok(fs.readFileSync(path.join(dir, 'whole', f)).equals(fs.readFileSync(path.join(dir, 'cut', f))), `${f}: byte for byte`);
      const metrics = (d: string) => fs.readFileSync(path.join(dir, d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => { const m = JSON.parse(l); return [m.loss, m.terms, m.disc]; });
      assert.deepEqual(metrics('cut'), metrics('whole'));
      train.dispose();
      test.dispose();
    });
  }
});

describe('adversarial configurations', () => {
  it('the examples validate; unknown keys and bad values are named with the file', () => {
    const { loadAdversarialConfig, validateAdversarialConfig } = require('../src/run') as typeof import('../src/run');
    const root = path.join(__dirname, '..', '..');
    for (const f of ['adversarial-fmnist.yaml', 'bss-fmnist.yaml']) {
      const cfg = loadAdversarialConfig(path.join(root, 'examples', f));
      assert.ok(['discriminator', 'bss'].includes(cfg.adversarial.method), f);
    }
    const base = { data: { dataset: 'fashion-mnist' }, adversarial: { method: 'bss', teacher: { model: 'lenet5', epochs: 1 }, student: { model: 'lenet5-half' } } };
    assert.equal(validateAdversarialConfig(base, 'a.yaml').adversarial.alpha, 0.1);
    assert.throws(() => validateAdversarialConfig({ ...base, adversarial: { ...base.adversarial, bss: { stepsize: 0.3 } } }, 'a.yaml'), /a\.yaml[\s\S]*adversarial\.bss\.stepsize: unknown key; did you mean 'adversarial\.bss\.stepSize'/);
    assert.throws(() => validateAdversarialConfig({ ...base, adversarial: { ...base.adversarial, method: 'gan' } }, 'a.yaml'), /adversarial\.method/);
    assert.throws(() => validateAdversarialConfig({ ...base, adversarial: { ...base.adversarial, teacher: { model: 'lenet5', checkpoint: 'nope.safetensors' } } }, 'a.yaml'), /adversarial\.teacher\.checkpoint: file not found/);
    assert.throws(() => validateAdversarialConfig({ ...base, adversarial: { ...base.adversarial, discriminator: { tap: 'fc1' } } }, 'a.yaml'), /discriminator\.inputDim is required with tap 'fc1'/);
  });
});
