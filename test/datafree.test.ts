// Data-free distillation (src/distill/datafree.ts, datafree-run.ts, src/run/datafree.ts, src/models/generator.ts):
// the generator's loss terms against hand-computed values, the noise batches, roles reading another role's output
// (gradients into the generator through the frozen teacher, none through a detached input, the adversarial term
// through both sides), configurations through tsdistill distill (no training file opened; kill -9 and resume end
// byte-identical) and the image grid.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { Linear, Module, saveWeights } from '../src/nn';
import { Tensor, dispose, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { DaflGenerator, createModel, registerBuiltinModels } from '../src/models';
import {
  EngineStep, NoiseBatches, adaptiveJs, bnStats, daflActivation, daflEntropy, daflOneHot, dataFreeSpec, dfadAdversarial, l2Prior, logitL1, tvPrior,
} from '../src/distill';
import { imageGridPng } from '../src/report';
import { validateDataFreeConfig } from '../src/run';
import { checkLeaks } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const spy = path.join(root, 'dist', 'test-workers', 'fs-spy.js');
const close = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);
const val = (f: () => Tensor) => tidy(() => f().item());
const softmaxRow = (r: number[]) => {
  const m = Math.max(...r), e = r.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('data-free losses against hand-computed values', () => {
  checkLeaks();
  const L = [[2, 0, 0], [0, 1, 3]];

  it('dafl_onehot: cross-entropy against the argmax', () => {
    const want = (-Math.log(softmaxRow(L[0])[0]) - Math.log(softmaxRow(L[1])[2])) / 2;
    close(val(() => daflOneHot(tensor(L))), want);
  });

  it('dafl_entropy: Σ p̄ log10 p̄ of the mean softmax', () => {
    const p = [softmaxRow(L[0]), softmaxRow(L[1])];
    const pbar = [0, 1, 2].map((c) => (p[0][c] + p[1][c]) / 2);
    close(val(() => daflEntropy(tensor(L))), pbar.reduce((a, v) => a + v * Math.log10(v), 0));
    // the minimum is −log10(C), at balanced classes
    close(val(() => daflEntropy(tensor([[5, 0, 0], [0, 5, 0], [0, 0, 5]]))), -Math.log10(3), 1e-6);
  });

  it('dafl_activation: −mean |f|, or −mean relu(f)', () => {
    const f = [[1, -2], [3, -4]];
    close(val(() => daflActivation(tensor(f))), -2.5);
    close(val(() => daflActivation(tensor(f), true)), -1);
  });

  it('bn_stats: ‖mean − μ‖ + ‖var − σ²‖ per channel, biased variance', () => {
    // x [2, 2, 1, 2]: channel 0 holds 1, 2, 3, 5; channel 1 holds 0, 0, 4, 4
    const x = [[[[1, 2]], [[0, 0]]], [[[3, 5]], [[4, 4]]]];
    const m0 = 11 / 4, v0 = [1, 2, 3, 5].reduce((a, v) => a + (v - m0) ** 2, 0) / 4, m1 = 2, v1 = 4;
    const mu = [1, 1], s2 = [2, 3];
    const want = Math.hypot(m0 - mu[0], m1 - mu[1]) + Math.hypot(v0 - s2[0], v1 - s2[1]);
    close(val(() => bnStats(tensor(x), mu, s2)), want);
    assert.throws(() => tidy(() => bnStats(tensor(x), [0], [1])), /options mean and var need 2 numbers each/);
  });

  it('tv_prior (l2 and l1) and l2_prior on a 2×2 image', () => {
    const [a, b, c, d] = [1, 4, -2, 0.5];
    const img = [[[[a, b], [c, d]]]];
    const l2 = Math.hypot(a - b, c - d) + Math.hypot(a - c, b - d) + Math.abs(a - d) + Math.abs(b - c);
    const l1 = (Math.abs(a - b) + Math.abs(c - d)) / 2 + (Math.abs(a - c) + Math.abs(b - d)) / 2 + Math.abs(a - d) + Math.abs(b - c);
    close(val(() => tvPrior(tensor(img))), l2);
    close(val(() => tvPrior(tensor(img), 'l1')), l1);
    close(val(() => l2Prior(tensor([[[[3, 4]]], [[[0, 1]]]]))), (5 + 1) / 2);
  });

  it('adaptive_js: 1 − JS at temperature T; dfad_adv and logit_l1', () => {
    const s = [[1, 0, -1], [0.5, 0.5, 2]], t = [[0, 2, 0], [1, -1, 0]], T = 3;
    let js = 0;
    for (let i = 0; i < 2; i++) {
      const P = softmaxRow(s[i].map((v) => v / T)), Q = softmaxRow(t[i].map((v) => v / T));
      const M = P.map((p, k) => (p + Q[k]) / 2);
      js += 0.5 * P.reduce((a, p, k) => a + p * Math.log(p / M[k]), 0) + 0.5 * Q.reduce((a, q, k) => a + q * Math.log(q / M[k]), 0);
    }
    close(val(() => adaptiveJs(tensor(s), tensor(t), T)), 1 - js / 2);
    const l1 = s.flat().reduce((a, v, k) => a + Math.abs(v - t.flat()[k]), 0) / 6;
    close(val(() => dfadAdversarial(tensor(s), tensor(t))), -l1);
    close(val(() => logitL1(tensor(s), tensor(t))), l1);
  });
});

describe('noise batches', () => {
  checkLeaks();
  it('draw the same batch again for the same (seed, epoch, batch), other noise elsewhere', () => {
    const n = new NoiseBatches({ batches: 3, batchSize: 4, shape: [5], classes: 10, seed: 7 });
    const read = (epoch: number, i: number) => {
      n.setEpoch(epoch);
      const b = n.batchAt(i);
      const r = { x: [...(b.x.data() as Float32Array)], y: [...(b.y.data() as BigInt64Array)].map(Number), shape: b.x.shape };
      b.dispose();
      return r;
    };
    const a = read(1, 2);
    assert.deepEqual(a.shape, [4, 5]);
    assert.deepEqual(read(0, 0) && read(1, 2), a);
    assert.notDeepEqual(read(1, 1).x, a.x);
    assert.notDeepEqual(read(2, 2).x, a.x);
    assert.ok(a.y.every((c) => c >= 0 && c < 10));
    // roughly standard normal over many draws
    const big = new NoiseBatches({ batches: 1, batchSize: 100, shape: [100], classes: 2, seed: 1 }).batchAt(0);
    const v = big.x.data() as Float32Array;
    const mean = v.reduce((s, x) => s + x, 0) / v.length, sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    big.dispose();
    assert.ok(Math.abs(mean) < 0.05 && Math.abs(sd - 1) < 0.05, `mean ${mean}, sd ${sd}`);
    assert.throws(() => new NoiseBatches({ batches: 1, batchSize: 2, shape: [0], classes: 2, seed: 0 }), /shape must be a list of positive integers/);
  });
});

/** A classifier of 8×8 images: hidden (64 → 6), ReLU, fc (6 → 3). */
class Tiny extends Module {
  hidden = this.registerModule('hidden', new Linear(64, 6));
  fc = this.registerModule('fc', new Linear(6, 3));
  forward(x: Tensor): Tensor {
    return this.fc.call((this.hidden.call(x.flatten(1)) as Tensor).relu()) as Tensor;
  }
}
/** Logits that are a parameter, whatever the input (the input's gradient is then zero). */
class Fixed extends Module {
  z = this.registerParameter('z', tensor([[0.5, -1, 2]]));
  forward(x: Tensor): Tensor {
    return this.z.expand([x.shape[0], 3]).add(x.flatten(1).sum([1], true).mul(0));
  }
}

const snapshot = (m: Module) => noGrad(() => m.parameters().map((p) => [...(p.data() as Float32Array)]));
const changed = (m: Module, before: number[][]) => snapshot(m).some((p, i) => p.some((v, k) => v !== before[i][k]));

describe('roles on a generator\'s images (the engine)', () => {
  checkLeaks();
  const opts = (o: { teacher?: Module; student?: Module; generator?: DaflGenerator } = {}) => ({
    teacher: o.teacher ?? new Tiny(), student: o.student ?? new Tiny(), generator: o.generator ?? new DaflGenerator({ latentDim: 4, imageShape: [1, 8, 8], width: 4 }),
    imageShape: [1, 8, 8] as [number, number, number], classes: 3, feature: 'hidden', batchSize: 6, batchesPerEpoch: 1, epochs: 1, seed: 0, outDir: '',
  });
  const batch = () => new NoiseBatches({ batches: 1, batchSize: 6, shape: [4], classes: 3, seed: 3 }).batchAt(0);
  const stepWith = async (spec: Omit<Parameters<typeof EngineStep.create>[0], 'batch'>) => {
    const b = batch();
    const s = await EngineStep.create({ ...spec, batch: b });
    try {
      manualSeed(0);
      return s.step(b);
    } finally {
      s.dispose();
      b.dispose();
    }
  };

  it('DAFL: the teacher stays frozen, the generator learns through it, the student on detached images', async () => {
    const o = opts();
    const { noiseShape, ...spec } = dataFreeSpec({ method: 'dafl', ...o });
    assert.deepEqual(noiseShape, [4]);
    const [t0, g0, s0] = [snapshot(o.teacher), snapshot(o.generator), snapshot(o.student)];
    const r = await stepWith(spec);
    assert.ok(Number.isFinite(r.value));
    assert.deepEqual(Object.keys(r.terms).sort(), ['activation', 'entropy', 'onehot']);
    assert.ok(!changed(o.teacher, t0), 'teacher unchanged');
    assert.ok(o.teacher.parameters().every((p) => !p.grad), 'no gradient on the teacher');
    assert.ok(changed(o.generator, g0) && changed(o.student, s0));
    // the student's KD alone moves the student, never the generator (detached input) ...
    const o2 = opts();
    const g2 = snapshot(o2.generator);
    const kdOnly = dataFreeSpec({ method: 'dafl', ...o2 });
    await stepWith({ ...kdOnly, terms: kdOnly.terms.filter((t) => t.name === 'kd') });
    assert.ok(!changed(o2.generator, g2), 'KD leaves the generator');
    assert.ok(o2.generator.parameters().every((p) => !p.grad || noGrad(() => p.grad!.abs().sum().item()) === 0));
    // ... and the generator's one-hot term alone moves the generator, never the student
    const o3 = opts();
    const [g3, s3] = [snapshot(o3.generator), snapshot(o3.student)];
    const ohOnly = dataFreeSpec({ method: 'dafl', ...o3 });
    await stepWith({ ...ohOnly, terms: ohOnly.terms.filter((t) => t.name === 'onehot') });
    assert.ok(changed(o3.generator, g3) && !changed(o3.student, s3));
    for (const x of [o, o2, o3]) for (const m of [x.teacher, x.student, x.generator]) m.dispose();
  });

  it('studentSteps k: the generator is stepped on every k-th step, the student on every step', async () => {
    const o = opts();
    const { noiseShape: _n, ...spec } = dataFreeSpec({ method: 'dafl', ...o, studentSteps: 3 });
    assert.deepEqual(spec.updates!.map((u) => [u.roles, u.every ?? 1]), [[['generator'], 3], [['student'], 1]]);
    const b = batch();
    const s = await EngineStep.create({ ...spec, batch: b });
    try {
      for (const [step, genMoves] of [[0, true], [1, false], [2, false], [3, true]] as const) {
        const [g0, s0] = [snapshot(o.generator), snapshot(o.student)];
        manualSeed(step);
        const r = s.step(b, { epoch: 0, step, stepsPerEpoch: 4, epochs: 1 });
        assert.ok(Number.isFinite(r.value));
        assert.equal(changed(o.generator, g0), genMoves, `step ${step}: generator ${genMoves ? 'stepped' : 'left alone'}`);
        assert.ok(changed(o.student, s0), `step ${step}: student stepped`);
      }
    } finally {
      s.dispose();
      b.dispose();
    }
    for (const k of [0, 1.5]) assert.throws(() => dataFreeSpec({ method: 'dafl', ...o, studentSteps: k }), /studentSteps must be a positive integer .* got /);
    assert.equal(dataFreeSpec({ method: 'dfad', ...o, studentSteps: 5 }).updates![0].every, 5);
    for (const m of [o.teacher, o.student, o.generator]) m.dispose();
  });

  it('DFAD: the adversarial term reaches the generator through the student and through the teacher', async () => {
    for (const through of ['student', 'teacher'] as const) {
      // the other side ignores its input: the generator can learn only through `through`
      const o = opts(through === 'student' ? { teacher: new Fixed() } : { student: new Fixed() });
      const { noiseShape: _n, ...spec } = dataFreeSpec({ method: 'dfad', ...o });
      assert.deepEqual(spec.updates!.map((u) => u.roles), [['generator'], ['student']]);
      const [t0, g0, s0] = [snapshot(o.teacher), snapshot(o.generator), snapshot(o.student)];
      await stepWith(spec);
      assert.ok(changed(o.generator, g0), `the generator learns through the ${through}`);
      assert.ok(!changed(o.teacher, t0));
      assert.ok(changed(o.student, s0));
      for (const m of [o.teacher, o.student, o.generator]) m.dispose();
    }
    // the student runs in both updates; its predictions count once (Fixed predicts class 2, the labels are all 2)
    const o = opts({ student: new Fixed() });
    const { noiseShape: _n, ...spec } = dataFreeSpec({ method: 'dfad', ...o });
    const b = batch();
    const y = tensor(new BigInt64Array(6).fill(2n));
    const s = await EngineStep.create({ ...spec, batch: b });
    const r = s.step({ x: b.x, y });
    assert.deepEqual([r.correct, r.n], [6, 6]);
    s.dispose();
    b.dispose();
    y.dispose();
    for (const m of [o.teacher, o.student, o.generator]) m.dispose();
  });

  it('DeepInversion: BatchNorm taps of a CIFAR ResNet teacher; the generator and student updates alternate', async () => {
    registerBuiltinModels();
    const { batchNormTaps } = await import('../src/distill');
    const resnet = createModel('resnet8', {});
    const taps = batchNormTaps(resnet);
    assert.ok(taps.length >= 7, `${taps.length} BatchNorm taps`);
    assert.deepEqual(taps[0], { tap: 'conv1', bn: 'bn1', mean: taps[0].mean, var: taps[0].var });
    assert.ok(taps.every((t) => t.mean.length === t.var.length && t.mean.every((v) => v === 0) && t.var.every((v) => v === 1)));
    resnet.dispose();
    const o = opts();
    const { noiseShape: _n, ...spec } = dataFreeSpec({ method: 'deepinversion', ...o });
    assert.deepEqual(spec.updates!.map((u) => u.terms), [['ce', 'tv', 'l2', 'adaptive'], ['kd']]);
    const r = await stepWith(spec);
    assert.ok(Number.isFinite(r.value));
    for (const m of [o.teacher, o.student, o.generator]) m.dispose();
  });

  it('refuses inputs that name no role, cycles, and frozen roles that would learn nothing', async () => {
    const o = opts();
    const { noiseShape: _n, ...spec } = dataFreeSpec({ method: 'dafl', ...o });
    const b = batch();
    try {
      const roles = spec.roles.map((r) => (r.name === 'teacher' ? { ...r, input: 'gen.logits' } : r));
      await assert.rejects(EngineStep.create({ ...spec, roles, batch: b }), /role 'teacher'\.input: 'gen\.logits' names no role/);
      const cyc = spec.roles.map((r) => (r.name === 'generator' ? { ...r, input: 'student.logits' } : r));
      await assert.rejects(EngineStep.create({ ...spec, roles: cyc, batch: b }), /role inputs form a cycle \(generator → student → generator\)/);
      const plain = spec.roles.map((r) => (r.name === 'teacher' ? { ...r, input: undefined } : r));
      await assert.rejects(EngineStep.create({ ...spec, roles: plain, batch: b }), /belongs to the frozen role 'teacher' \(it would learn nothing/);
    } finally {
      b.dispose();
      for (const m of [o.teacher, o.student, o.generator]) m.dispose();
    }
  });
});

describe('data-free configurations (tsdistill distill)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-datafree-'));
  registerBuiltinModels();
  const teacherFile = path.join(dir, 'teacher.safetensors');
  const t = createModel('lenet5', {});
  saveWeights(t, teacherFile);
  t.dispose();
  const config = (name: string, extra: string[] = []) => {
    const f = path.join(dir, `${name}.yaml`);
    fs.writeFileSync(f, [
      `name: ${name}`, 'seed: 0', 'data: { dataset: mnist, limit: 200 }',
      'datafree:', '  method: dafl', '  teacher: { model: lenet5, checkpoint: teacher.safetensors }', '  student: { model: lenet5-half }',
      '  generator: { latentDim: 8, width: 4 }', '  feature: fc1', '  batchSize: 8', '  batchesPerEpoch: 4', ...extra,
      'training: { epochs: 2 }', `output: { dir: ${path.join(dir, name)} }`,
    ].join('\n'));
    return f;
  };
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, ['-r', spy, cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

  it('a data-free run reads the test split and never a training file', () => {
    const log = path.join(dir, 'opened.txt');
    const r = run(['distill', config('dafl', ['  checkpointEverySteps: 2']), '--threads', '1', '--json'], { FS_SPY_LOG: log });
    assert.equal(r.status, 0, r.stderr);
    const opened = fs.readFileSync(log, 'utf8').trim().split('\n');
    assert.ok(opened.some((f) => /t10k-images/.test(f)), `the test images were read (the spy sees reads): ${opened.filter((f) => /ubyte/.test(f)).join(', ')}`);
    const data = opened.filter((f) => /-idx\d-ubyte/.test(f));
    assert.deepEqual(data.filter((f) => !/t10k-(images|labels)/.test(path.basename(f))), [], 'no data file but the test split opened');
    assert.deepEqual(opened.filter((f) => /train-(images|labels)/.test(f)), [], 'no training file opened');
    // the control: the same spy sees a read of the training split
    const control = path.join(dir, 'control.txt');
    const c = spawnSync(process.execPath, ['-r', spy, '-e', `const d = require(${JSON.stringify(path.join(root, 'dist', 'src', 'data'))}); d.registerBuiltinDatasets(); d.getDataset('mnist').load('train', 10).dispose()`], { encoding: 'utf8', env: { ...process.env, FS_SPY_LOG: control } });
    assert.equal(c.status, 0, c.stderr);
    assert.ok(/train-images/.test(fs.readFileSync(control, 'utf8')), 'the spy sees the training images read');
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(summary.steps, 8);
    assert.ok(summary.best_test_acc >= 0 && summary.best_test_acc <= 100);
    for (const f of ['last.safetensors', 'last.generator.safetensors', 'last.generator.optim.safetensors', 'best.safetensors', 'samples.png'])
      assert.ok(fs.existsSync(path.join(dir, 'dafl', f)), f);
    const png = PNG.sync.read(fs.readFileSync(path.join(dir, 'dafl', 'samples.png')));
    assert.deepEqual([png.width, png.height], [8 * 56 + 9 * 2, 8 * 56 + 9 * 2]);
    const m = fs.readFileSync(path.join(dir, 'dafl', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(Object.keys(m[0].terms).sort(), ['activation', 'entropy', 'onehot']);
    // output.checkpointEvery (1 by default in configurations) keeps epoch-N weights; 0 keeps only last and best
    assert.ok(['epoch-1.safetensors', 'epoch-2.safetensors'].every((f) => fs.existsSync(path.join(dir, 'dafl', f))));
    const none = run(['distill', config('dafl-no-epochs'), '--threads', '1', '--set', 'output.checkpointEvery=0']);
    assert.equal(none.status, 0, none.stderr);
    const kept = fs.readdirSync(path.join(dir, 'dafl-no-epochs'));
    assert.ok(kept.includes('best.safetensors') && kept.includes('last.safetensors'));
    assert.deepEqual(kept.filter((f) => f.startsWith('epoch-')), []);
  });

  it('killed (kill -9) in the middle, it resumes and ends byte-identical to the uninterrupted run', async () => {
    const whole = run(['distill', config('whole', ['  checkpointEverySteps: 1']), '--threads', '1']);
    assert.equal(whole.status, 0, whole.stderr);
    const cfg = config('killed', ['  checkpointEverySteps: 1']);
    const out = path.join(dir, 'killed');
    const child = spawn(process.execPath, [cli, 'distill', cfg, '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const state = path.join(out, 'state.json');
    // kill -9 once a step inside the second epoch has been committed
    const killed = await new Promise<boolean>((resolve) => {
      const poll = setInterval(() => {
        try {
          const st = JSON.parse(fs.readFileSync(state, 'utf8'));
          if (st.partial?.epoch === 1) {
            child.kill('SIGKILL');
            clearInterval(poll);
          }
        } catch { /* not written yet */ }
      }, 2);
      child.on('exit', (_c, sig) => { clearInterval(poll); resolve(sig === 'SIGKILL'); });
    });
    assert.ok(killed, 'the run was killed before it finished');
    const resumed = run(['distill', cfg, '--threads', '1', '--resume']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout + resumed.stderr, /resuming at epoch 2 of 2, step \d of 4/);
    for (const f of ['last.safetensors', 'last.generator.safetensors', 'last.optim.safetensors', 'last.generator.optim.safetensors', 'best.safetensors', 'samples.png'])
      assert.ok(fs.readFileSync(path.join(dir, 'whole', f)).equals(fs.readFileSync(path.join(out, f))), `${f}: byte for byte`);
  });

  it('configurations name the key at fault', () => {
    const base = { name: 'x', data: { dataset: 'mnist' }, datafree: { method: 'dafl', teacher: { model: 'lenet5', checkpoint: teacherFile }, student: { model: 'lenet5-half' }, feature: 'fc1' } };
    assert.doesNotThrow(() => validateDataFreeConfig(base));
    assert.throws(() => validateDataFreeConfig({ ...base, datafree: { ...base.datafree, method: 'gan' } }), /datafree\.method/);
    assert.throws(() => validateDataFreeConfig({ ...base, datafree: { ...base.datafree, feature: undefined } }), /datafree\.feature is required for method dafl/);
    assert.throws(() => validateDataFreeConfig({ ...base, datafree: { ...base.datafree, batchsize: 3 } }), /datafree\.batchsize: unknown key; did you mean 'datafree\.batchSize'/);
    assert.throws(() => validateDataFreeConfig({ ...base, datafree: { ...base.datafree, teacher: { model: 'lenet5', checkpoint: 'nope.safetensors' } } }), /datafree\.teacher\.checkpoint: file not found/);
  });
});

describe('image grid', () => {
  checkLeaks();
  it('tiles images with gaps, each scaled by its own range', () => {
    const imgs = tensor([[[[0, 1], [2, 3]]], [[[-1, -1], [-1, 1]]], [[[5, 5], [5, 5]]]]);
    const png = PNG.sync.read(imageGridPng(imgs, { columns: 2, gap: 1 }));
    assert.deepEqual([png.width, png.height], [2 * 2 + 3, 2 * 2 + 3]);
    const px = (x: number, y: number) => png.data[(y * png.width + x) * 4];
    assert.deepEqual([px(1, 1), px(2, 1), px(1, 2), px(2, 2)], [0, 85, 170, 255]);
    assert.deepEqual([px(4, 1), px(5, 2)], [0, 255]);
    assert.equal(px(1, 4), 0); // a constant image
    assert.equal(px(0, 0), 128); // the gap
    assert.throws(() => tidy(() => imageGridPng(tensor([1, 2]))), /expects images \[N, 1 or 3, H, W\], got \[2\]/);
    dispose(imgs);
  });
});
