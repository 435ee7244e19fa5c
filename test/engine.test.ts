// The one engine (src/distill/engine.ts): several trainable roles learning from each other (deep mutual learning),
// alternating updates, exact resume of every role after an interruption, the loss-term sum against hand-computed
// values, and errors that name the role, tap or term at fault.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { F } from '../src/nn';
import { dispose, loadSafetensors, manualSeed, ops, tensor, tidy } from '../src/torch';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { EngineStep, type EngineOptions, type StageSpec, TrainingInterrupted, lossNumber, lossValue, responseKD, runEngine, runStages, stepSeed, weightedSum } from '../src/distill';
import { correctCount } from '../src/distill/engine';
import { blackBoxTeacher } from '../src/teachers';
import { loadWeights } from '../src/nn';
import { checkLeaks, maxDiff } from './helpers';

const quiet = { progress: false, log: () => {} };
const norm = [normalize([0.1307], [0.3081])];
const sgd = { kind: 'sgd' as const, lr: 0.02, momentum: 0.9 };

function weights(file: string): Record<string, number[]> {
  const w = loadSafetensors(file);
  try {
    return Object.fromEntries(Object.entries(w.tensors).map(([k, t]) => [k, tidy(() => t.float().toArray())]));
  } finally {
    dispose(w.tensors);
  }
}

describe('engine', () => {
  checkLeaks();

  it('the loss-term sum equals α·CE + (1−α)·T²·KL computed by hand', () => {
    tidy(() => {
      const s = tensor([[1.0, -0.5, 0.25], [0.3, 0.1, -1.2]]), t = tensor([[2.0, 0.0, -1.0], [-0.5, 1.5, 0.5]]);
      const y = tensor([0, 2], { dtype: 'int64' });
      const T = 3, alpha = 0.25;
      // by hand, from the formulas
      const sm = (v: number[]) => { const e = v.map((x) => Math.exp(x / T)); const z = e.reduce((a, b) => a + b); return e.map((x) => x / z); };
      const lsm = (v: number[]) => { const m = Math.log(v.map((x) => Math.exp(x)).reduce((a, b) => a + b)); return v.map((x) => x - m); };
      const S = [[1.0, -0.5, 0.25], [0.3, 0.1, -1.2]], Tt = [[2.0, 0.0, -1.0], [-0.5, 1.5, 0.5]];
      const ce = -(lsm(S[0])[0] + lsm(S[1])[2]) / 2;
      const kl = S.map((row, i) => { const p = sm(Tt[i]), q = sm(row); return p.reduce((a, pi, j) => a + pi * Math.log(pi / q[j]), 0); }).reduce((a, b) => a + b) / 2;
      const expected = alpha * ce + (1 - alpha) * T * T * kl;
      const r = responseKD({ temperature: T, alpha })(s, t, y);
      assert.ok(Math.abs(r.loss.item() - expected) < 1e-5, `${r.loss.item()} vs ${expected}`);
      assert.ok(Math.abs(r.hard.item() - ce) < 1e-6);
      assert.ok(Math.abs(r.soft.item() - T * T * kl) < 1e-5);
      // weightedSum: plain and scaled terms
      const sum = weightedSum([{ loss: F.crossEntropy(s, y), weight: 2 }, { loss: { value: tensor(3), scale: 0.5 }, weight: 4 }]);
      assert.ok(Math.abs(sum.item() - (2 * ce + 4 * 0.5 * 3)) < 1e-5);
    });
  });

  it('the correct count read per step is argmax(1).eq(labels).sum(), NaN and ties as libtorch picks them', () => {
    tidy(() => {
      manualSeed(3);
      const y = tensor([1, 0, 0, 3, 0, 2, 2, 1], { dtype: 'int64' });
      const rows = [[1, NaN, 3, NaN], [2, 2, 1, 2], [-0, 0, -1, -2], [-Infinity, -Infinity, -Infinity, -Infinity], [NaN, 5, 7, 7], [1, Infinity, Infinity, 3], [0.5, 0.25, 0.75, 0.75], [4, 4, 4, 4]];
      for (const dtype of ['float32', 'float64'] as const) {
        const l = tensor(rows, { dtype });
        assert.equal(correctCount(l, y), l.argmax(1).eq(y).sum().item());
      }
      for (let i = 0; i < 20; i++) {
        // random logits, rounded so that ties happen, some NaN; labels int64 and int32
        const l = ops.randn([64, 5]).mul(2).round().maskedFill(ops.rand([64, 5]).lt(0.05), NaN);
        const yy = ops.randint_low(0, 5, [64]);
        const expected = l.argmax(1).eq(yy).sum().item();
        assert.equal(correctCount(l, yy), expected);
        assert.equal(correctCount(l, yy.int()), expected);
      }
      // other shapes go through the tensor ops: [N, C, L] logits, [N, L] labels
      const l3 = ops.randn([4, 3, 5]), y3 = ops.randint_low(0, 3, [4, 5]);
      assert.equal(correctCount(l3, y3), l3.argmax(1).eq(y3).sum().item());
    });
  });

  it('lossNumber gives what lossValue(r).item() gives, without the tensor op', () => {
    tidy(() => {
      manualSeed(4);
      for (const dtype of ['float32', 'float64'] as const)
        for (const scale of [0.25, 16 / 64, 4.5 / 128, 1, 3, 1e-3, 1 / 3, 7.1e6])
          for (let i = 0; i < 30; i++) {
            const value = ops.randn([]).mul(10 ** (i % 7 - 3)).to(dtype);
            const r = { value, scale };
            assert.equal(lossNumber(r), lossValue(r).item(), `${dtype} ${value.item()} × ${scale}`);
          }
      const plain = tensor(1.5);
      assert.equal(lossNumber(plain), 1.5);
      const half = { value: tensor(0.1).half(), scale: 0.3 };
      assert.equal(lossNumber(half), lossValue(half).item());
    });
  });

  it('two students learn from each other (mutual learning); both roles resume to the same weights after an interruption', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-engine-'));
    const train = loadMnist({ split: 'train', limit: 512 });
    const test = loadMnist({ split: 'test', limit: 200 });
    const opts = (out: string, a: LeNet5Half, b: LeNet5Half, extra: Partial<EngineOptions> = {}): EngineOptions => ({
      name: 'dml', outDir: path.join(dir, out), epochs: 2, seed: 3, test, testTransforms: norm, ...quiet,
      train: new DataLoader(train, { batchSize: 64, shuffle: true, seed: 3, transforms: norm }),
      roles: [{ name: 'a', model: a, optimizer: sgd }, { name: 'b', model: b, optimizer: sgd, schedule: { kind: 'cosine' } }],
      terms: [
        { loss: 'ce', student: 'a.logits', teacher: 'labels' },
        { loss: 'ce', student: 'b.logits', teacher: 'labels' },
        { loss: 'kl', student: 'a.logits', teacher: 'b.logits', options: { temperature: 1 } },
        { loss: 'kl', student: 'b.logits', teacher: 'a.logits', options: { temperature: { kind: 'linear', from: 2, to: 1 } } },
      ],
      ...extra,
    });
    const models = () => { manualSeed(1); const a = new LeNet5Half(); manualSeed(2); const b = new LeNet5Half(); return [a, b]; };
    const [a1, b1] = models();
    const s1 = await runEngine(opts('x', a1, b1));
    assert.ok(s1.final_test_acc > 30 && s1.roles!.b.final_test_acc > 30, JSON.stringify(s1));
    const m = fs.readFileSync(path.join(dir, 'x', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(m.length, 2);
    assert.deepEqual(Object.keys(m[0].terms), ['ce:a.logits', 'ce:b.logits', 'kl:a.logits', 'kl:b.logits']);
    assert.ok(Object.values(m[1].terms as Record<string, number>).every((v) => Number.isFinite(v) && v > 0));
    assert.ok(m[1].roles.b.test_acc > 0);
    for (const f of ['last.safetensors', 'last.b.safetensors', 'last.optim.safetensors', 'last.b.optim.safetensors', 'best.safetensors', 'state.json'])
      assert.ok(fs.existsSync(path.join(dir, 'x', f)), f);
    // the two students differ (different initialisations), and each learnt
    assert.notDeepEqual(weights(path.join(dir, 'x', 'last.safetensors')), weights(path.join(dir, 'x', 'last.b.safetensors')));

    // stopped after the fifth step of the first epoch, then resumed: the same weights for both roles, the same metrics
    const [a2, b2] = models();
    const ac = new AbortController();
    let steps = 0;
    const loader = new DataLoader(train, { batchSize: 64, shuffle: true, seed: 3, transforms: norm });
    const batchAt = loader.batchAt.bind(loader);
    loader.batchAt = (i: number) => { if (++steps === 5) ac.abort(); return batchAt(i); };
    await assert.rejects(runEngine(opts('y', a2, b2, { train: loader, signal: ac.signal })), (e: Error) => e instanceof TrainingInterrupted && e.step === 5);
    const [a3, b3] = models();
    await runEngine(opts('y', a3, b3, { resume: true }));
    for (const f of ['last.safetensors', 'last.b.safetensors', 'last.b.optim.safetensors']) assert.deepEqual(weights(path.join(dir, 'y', f)), weights(path.join(dir, 'x', f)), f);
    const my = fs.readFileSync(path.join(dir, 'y', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(my.map((l) => [l.loss, l.terms, l.roles]), m.map((l) => [l.loss, l.terms, l.roles]));
    for (const x of [a1, b1, a2, b2, a3, b3]) x.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('updates step only their own roles, in order; a frozen teacher role is never trained', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-engine-'));
    const train = loadMnist({ split: 'train', limit: 128 });
    const test = loadMnist({ split: 'test', limit: 100 });
    manualSeed(0);
    const teacher = new LeNet5(), a = new LeNet5Half(), b = new LeNet5Half(), c = new LeNet5Half();
    const before = (m: LeNet5Half | LeNet5) => m.parameters().map((p) => (p.toArray() as number[]).slice());
    const [t0, a0, b0, c0] = [teacher, a, b, c].map(before);
    const base = {
      outDir: path.join(dir, 'u'), epochs: 1, seed: 0, test, testTransforms: norm, ...quiet,
      train: new DataLoader(train, { batchSize: 64, shuffle: true, seed: 0, transforms: norm }),
      roles: [{ name: 'teacher', model: teacher }, { name: 'a', model: a, optimizer: sgd }, { name: 'b', model: b, optimizer: sgd }, { name: 'c', model: c, optimizer: sgd }],
      terms: [
        { loss: 'kl', name: 'a_from_teacher', student: 'a.logits', teacher: 'teacher.logits' },
        { loss: 'kl', name: 'b_from_a', student: 'b.logits', teacher: 'a.logits' },
      ],
    };
    await runEngine({ ...base, updates: [{ roles: ['a'], terms: ['a_from_teacher'] }, { roles: ['b'], terms: ['b_from_a'] }] });
    const changed = (x: number[][], y: number[][]) => x.some((p, i) => p.some((v, j) => v !== y[i][j]));
    assert.ok(!changed(before(teacher), t0), 'the frozen teacher is unchanged');
    assert.ok(changed(before(a), a0) && changed(before(b), b0), 'a and b trained');
    assert.ok(!changed(before(c), c0), 'c is in no update: unchanged');
    // errors name the role, tap or term at fault
    await assert.rejects(runEngine({ ...base, outDir: path.join(dir, 'e1'), terms: [{ loss: 'kl', student: 'd.logits', teacher: 'teacher.logits' }] }), /'d\.logits' names no role .*roles: teacher, a, b, c/);
    await assert.rejects(runEngine({ ...base, outDir: path.join(dir, 'e2'), terms: [{ loss: 'kl', student: 'teacher.logits', teacher: 'a.logits' }] }), /belongs to the frozen role 'teacher'/);
    await assert.rejects(runEngine({ ...base, outDir: path.join(dir, 'e3'), terms: [{ loss: 'hint', student: 'a.conv3', teacher: 'teacher.conv2' }] }), /'conv3' is not a module of role 'a' \(LeNet5Half\)\. Closest: conv/);
    await assert.rejects(runEngine({ ...base, outDir: path.join(dir, 'e4'), updates: [{ roles: ['a'], terms: ['a_from_techer'] }] }), /updates\[0\]\.terms: no term 'a_from_techer'\. Closest: a_from_teacher/);
    await assert.rejects(runEngine({ ...base, outDir: path.join(dir, 'e5'), updates: [{ roles: ['teacher'], terms: ['a_from_teacher'] }] }), /'teacher' is not a trainable role/);
    for (const m of [teacher, a, b, c]) m.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('EngineStep runs the step runEngine runs: one epoch of its steps ends with the same weights, projections included', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-engine-'));
    const train = loadMnist({ split: 'train', limit: 256 });
    const test = loadMnist({ split: 'test', limit: 100 });
    const loader = () => new DataLoader(train, { batchSize: 64, shuffle: true, seed: 5, transforms: norm });
    const spec = (teacher: LeNet5, student: LeNet5Half) => ({
      roles: [{ name: 'student', model: student, optimizer: sgd }, { name: 'teacher', model: teacher }],
      terms: [
        { loss: 'ce', name: 'hard', student: 'student.logits', teacher: 'labels', weight: 0.3, metric: 'hard' },
        { loss: 'kl', name: 'soft', student: 'student.logits', teacher: 'teacher.logits', weight: 0.7, options: { temperature: 4 }, metric: 'soft' },
        { loss: 'hint', student: 'student.conv', teacher: 'teacher.conv2', weight: { kind: 'linear' as const, from: 0.5, to: 0.1 } },
      ],
    });
    const models = () => { manualSeed(4); return [new LeNet5(), new LeNet5Half()] as const; };
    const [t1, s1] = models();
    await runEngine({ ...spec(t1, s1), outDir: path.join(dir, 'run'), epochs: 1, seed: 9, test, testTransforms: norm, train: loader(), ...quiet });
    const [t2, s2] = models();
    const l = loader();
    l.setEpoch(0);
    const b0 = l.batchAt(0);
    const step = await EngineStep.create({ ...spec(t2, s2), batch: b0 });
    b0.dispose();
    assert.deepEqual(Object.keys(step.optimizers), ['student']);
    for (let i = 0; i < l.length; i++) {
      const b = l.batchAt(i);
      manualSeed(stepSeed(9, 0, i));
      const r = step.step(b, { epoch: 0, step: i, stepsPerEpoch: l.length, epochs: 1 });
      b.dispose();
      assert.ok(Number.isFinite(r.value) && r.metrics.hard > 0 && r.metrics.soft > 0 && r.terms['hint:student.conv'] > 0, JSON.stringify(r));
    }
    step.dispose();
    const got = Object.fromEntries(Object.entries(s2.stateDict()).map(([k, t]) => [k, t.toArray()]));
    assert.deepEqual(got, weights(path.join(dir, 'run', 'last.safetensors')));
    // external teachers are awaited before each step: runEngine's loop only
    await assert.rejects(
      EngineStep.create({ roles: [{ name: 's', model: s2, optimizer: sgd }, { name: 't', model: blackBoxTeacher(async (x) => ops.zeros([x.shape[0], 10]), { returns: 'logits' }) }],
        terms: [{ loss: 'kl', student: 's.logits', teacher: 't.logits' }], batch: b0 }),
      /role 't' is an external blackbox teacher; EngineStep runs module roles only/,
    );
    for (const m of [t1, s1, t2, s2]) m.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('stages: teacher → assistant → student, each from the one before; an interrupted stage resumes and the chain ends as an uninterrupted one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-stages-'));
    const train = loadMnist({ split: 'train', limit: 384 });
    const test = loadMnist({ split: 'test', limit: 100 });
    const made: (LeNet5 | LeNet5Half)[] = [];
    const model = <M extends LeNet5 | LeNet5Half>(m: M, file?: string) => { if (file) loadWeights(m, file); made.push(m); return m; };
    const stages = (signal?: AbortSignal): StageSpec[] => {
      const common = (seed: number) => ({ epochs: 2, seed, test, testTransforms: norm, ...quiet, train: new DataLoader(train, { batchSize: 64, shuffle: true, seed, transforms: norm }) });
      return [
        { name: 'teacher', build: () => { manualSeed(0); return { ...common(0), roles: [{ name: 'teacher', model: model(new LeNet5()), optimizer: sgd }], terms: [{ loss: 'ce', student: 'teacher.logits', teacher: 'labels' }] }; } },
        { name: 'assistant', build: (c) => { manualSeed(1); return { ...common(1), signal, roles: [{ name: 'teacher', model: model(new LeNet5(), c.checkpoint('teacher')) }, { name: 'assistant', model: model(new LeNet5Half()), optimizer: sgd }],
          terms: [{ loss: 'ce', student: 'assistant.logits', teacher: 'labels', weight: 0.5 }, { loss: 'kl', student: 'assistant.logits', teacher: 'teacher.logits', weight: 0.5 }] }; } },
        { name: 'student', build: (c) => { manualSeed(2); return { ...common(2), roles: [{ name: 'assistant', model: model(new LeNet5Half(), c.checkpoint('assistant', 'assistant')) }, { name: 'student', model: model(new LeNet5Half()), optimizer: sgd }],
          terms: [{ loss: 'ce', student: 'student.logits', teacher: 'labels', weight: 0.5 }, { loss: 'kl', student: 'student.logits', teacher: 'assistant.logits', weight: 0.5 }] }; } },
      ];
    };
    const whole = await runStages({ outDir: path.join(dir, 'a'), stages: stages(), log: () => {} });
    assert.deepEqual(whole.stages.map((s) => [s.name, s.ran]), [['teacher', true], ['assistant', true], ['student', true]]);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'a', 'stages.json'), 'utf8'));
    assert.deepEqual(report.map((s: { stage: string }) => s.stage), ['teacher', 'assistant', 'student']);
    assert.ok(report.every((s: { best_test_acc: number }) => s.best_test_acc > 10));

    // the assistant stage is stopped at once; resuming runs it from its state and then the student stage
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(runStages({ outDir: path.join(dir, 'b'), stages: stages(ac.signal), log: () => {} }), (e: Error) => e instanceof TrainingInterrupted && e.step === 1);
    await assert.rejects(runStages({ outDir: path.join(dir, 'b'), stages: stages(), log: () => {} }), /holds another run \(state\.json present\): pass --resume/);
    const resumed = await runStages({ outDir: path.join(dir, 'b'), stages: stages(), resume: true, log: () => {} });
    assert.deepEqual(resumed.stages.map((s) => [s.name, s.ran]), [['teacher', false], ['assistant', true], ['student', true]]);
    for (const f of ['teacher/last.safetensors', 'assistant/last.safetensors', 'student/last.safetensors', 'student/best.safetensors'])
      assert.deepEqual(weights(path.join(dir, 'b', f)), weights(path.join(dir, 'a', f)), f);
    // a later stage cannot read a stage after it
    await assert.rejects(runStages({ outDir: path.join(dir, 'c'), log: () => {}, stages: [{ name: 'x', build: (c) => { c.checkpoint('y'); throw new Error('unreachable'); } }, { name: 'y', build: () => { throw new Error('unreachable'); } }] }),
      /stage 'x': 'y' is not an earlier stage \(earlier: none\)/);
    for (const m of made) m.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('stages with a seed: a stage builds the same initial weights whichever stages were built before it in the process', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-stage-seed-'));
    const train = loadMnist({ split: 'train', limit: 64 });
    const made: LeNet5Half[] = [];
    const initial: Record<string, number[]> = {};
    const stage = (name: string): StageSpec => ({
      name,
      build: () => {
        const m = new LeNet5Half();
        made.push(m);
        initial[name] = tidy(() => m.parameters()[0].flatten().tolist() as number[]);
        return { epochs: 1, seed: 3, ...quiet, train: new DataLoader(train, { batchSize: 64, seed: 3, transforms: norm }), roles: [{ name: 's', model: m, optimizer: sgd }], terms: [{ loss: 'ce', student: 's.logits', teacher: 'labels' }] };
      },
    });
    const firstOf = async (sub: string, names: string[], seed?: number) => {
      manualSeed(0);
      await runStages({ outDir: path.join(dir, sub), stages: names.map(stage), log: () => {}, ...(seed === undefined ? {} : { seed }) });
      return initial.b;
    };
    const alone = await firstOf('alone', ['b'], 7);
    const after = await firstOf('after', ['a', 'b'], 7);
    assert.deepEqual(after, alone, "stage 'b' built after stage 'a' draws the weights it draws alone");
    assert.deepEqual(initial.a, initial.b, 'the same model first in two stages: the same weights');
    assert.notDeepEqual(await firstOf('other-seed', ['b'], 8), alone, 'another seed, other weights');
    // without a seed the generator is left as it is: the stage's weights follow what was built before it
    assert.notDeepEqual(await firstOf('unseeded-after', ['a', 'b']), await firstOf('unseeded-alone', ['b']));
    for (const m of made) m.dispose();
    train.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
