// The distillation schemes (src/distill/schemes.ts, scheme-losses.ts, src/models/exits.ts, theseus.ts): the mutual-
// learning loss of peers, CS-KD and the virtual teacher against hand-computed values, the same-class pair sampler,
// early exits, module replacement (keys, schedule, which blocks run), and the schemes through the engine on tiny data.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Module, loadWeights } from '../src/nn';
import { buildOnnxGraph } from '../src/export';
import { Tensor, dispose, manualSeed, noGrad, ops, randint, randn, tensor, tidy } from '../src/torch';
import { DataLoader, TensorDataset } from '../src/data';
import { MultiExit, Replaceable, ResNetCifar, TransformerClassifier, Vgg, VGG_CONFIGS, WideResNet, createModel, registerBuiltinModels, theseusResnet, theseusTransformer } from '../src/models';
import {
  EngineStep, PairedBatches, bornAgain, fspDistill, classWiseKl, classWiseSelfKD, ensembleAccuracy, exitAccuracies, fspPooled, moduleReplacement, mutualLearning, mutualTerms, peerMeanKl,
  selfDistillation, teacherFreeKD, virtualTeacherKl,
} from '../src/distill';
import { validateSchemeConfig } from '../src/run';
import { checkLeaks } from './helpers';

const quiet = { progress: false, log: () => {} };

/** A model whose output is its parameter (fixed logits), whatever the input. */
class Fixed extends Module {
  z: Tensor;
  constructor(v: number[][]) {
    super();
    this.z = this.registerParameter('z', tensor(v));
  }
  forward(_x: Tensor): Tensor {
    return this.z.mul(1);
  }
}

// by hand
const softmax = (v: number[], T = 1) => { const e = v.map((x) => Math.exp(x / T)); const z = e.reduce((a, b) => a + b); return e.map((x) => x / z); };
const ce = (rows: number[][], y: number[]) => rows.reduce((a, r, i) => a - Math.log(softmax(r)[y[i]]), 0) / rows.length;
const kl = (p: number[], q: number[]) => p.reduce((a, pi, j) => a + pi * Math.log(pi / q[j]), 0);
const klRows = (t: number[][], s: number[][], T: number) => (T * T * t.reduce((a, r, i) => a + kl(softmax(r, T), softmax(s[i], T)), 0)) / t.length;

describe('schemes', () => {
  checkLeaks();

  it('deep mutual learning: the loss of two peers is CE + KL to the other, each, as computed by hand', async () => {
    const A = [[1, 2, 0], [0.5, 0, -1]], B = [[0, 1, 1], [2, 0, 0]], y = [1, 0], T = 2;
    const a = new Fixed(A), b = new Fixed(B);
    const batch = { x: tensor([[0], [0]]), y: tensor(y, { dtype: 'int64' }) };
    const sgd = { kind: 'sgd' as const, lr: 0 };
    const step = await EngineStep.create({ roles: [{ name: 'a', model: a, optimizer: sgd }, { name: 'b', model: b, optimizer: sgd }], terms: mutualTerms(['a', 'b'], { temperature: T }), batch });
    const r = step.step(batch);
    const expected = ce(A, y) + ce(B, y) + klRows(B, A, T) + klRows(A, B, T);
    assert.ok(Math.abs(r.value - expected) < 1e-5, `${r.value} vs ${expected}`);
    assert.ok(Math.abs(r.terms['kl:a<-b'] - klRows(B, A, T)) < 1e-5);
    step.dispose();
    dispose([batch.x, batch.y]);
    a.dispose(); b.dispose();
  });

  it('the offline-KD baseline stage: alpha·CE + (1 − alpha)·T²·KL(teacher ‖ student), as computed by hand', async () => {
    const kdStage = (scheme: Record<string, unknown>) =>
      validateSchemeConfig({ data: { dataset: 'mnist' }, scheme: { baselines: ['alone', 'kd'], ...scheme } }).staged.stages.find((x) => x.name === 'kd')!;
    const st = kdStage({ kind: 'cs-kd', model: { model: 'lenet5' }, kd: { temperature: 2, alpha: 0.4 } });
    assert.equal(st.roles.teacher.from, 'alone');
    assert.equal(st.roles.teacher.train, false);
    const S = [[1, 2, 0], [0.5, 0, -1]], Tt = [[0, 3, 1], [2, -1, 0]], y = [1, 0], T = 2, alpha = 0.4;
    const student = new Fixed(S), teacher = new Fixed(Tt);
    const batch = { x: tensor([[0], [0]]), y: tensor(y, { dtype: 'int64' }) };
    const step = await EngineStep.create({ roles: [{ name: 'teacher', model: teacher }, { name: 'student', model: student, optimizer: { kind: 'sgd', lr: 0 } }], terms: st.terms, batch });
    const r = step.step(batch);
    const expected = alpha * ce(S, y) + (1 - alpha) * klRows(Tt, S, T);
    assert.ok(Math.abs(r.value - expected) < 1e-5, `${r.value} vs ${expected}`);
    step.dispose();
    dispose([batch.x, batch.y]);
    student.dispose(); teacher.dispose();
    // the teacher each kind distils from by default, or a kd-teacher stage of its own
    assert.equal(kdStage({ kind: 'born-again', model: { model: 'lenet5' } }).roles.teacher.from, 'gen0');
    assert.equal(kdStage({ kind: 'theseus', predecessor: { model: 'resnet20' }, successor: { model: 'resnet8' } }).roles.teacher.from, 'predecessor');
    const byot = validateSchemeConfig({ data: { dataset: 'cifar10' }, scheme: { kind: 'byot', model: { model: 'resnet8' }, baselines: ['alone', 'kd'], kd: { teacher: { model: 'resnet20', epochs: 2 } } } });
    assert.deepEqual(byot.staged.stages.map((x) => [x.name, x.epochs ?? null]), [['self', null], ['alone', null], ['kd-teacher', 2], ['kd', null]]);
    assert.throws(() => validateSchemeConfig({ data: { dataset: 'cifar10' }, scheme: { kind: 'byot', model: { model: 'resnet8' }, baselines: ['alone', 'kd'] } }), /scheme\.kd\.teacher: scheme 'byot' trains no teacher/);
    assert.throws(() => validateSchemeConfig({ data: { dataset: 'mnist' }, scheme: { kind: 'cs-kd', model: { model: 'lenet5' }, baselines: ['kd'] } }), /scheme\.baselines: must include 'alone'/);
  });

  it('three peers: DML averages the KLs to each other peer, KDCL takes the KL to their averaged soft targets', async () => {
    const L = [[[1, 0, -1]], [[0, 2, 0]], [[-1, 0, 3]]], y = [2];
    const batch = { x: tensor([[0]]), y: tensor(y, { dtype: 'int64' }) };
    const sgd = { kind: 'sgd' as const, lr: 0 };
    for (const target of ['each', 'mean'] as const) {
      const ms = L.map((v) => new Fixed(v));
      const roles = ms.map((m, i) => ({ name: `p${i}`, model: m, optimizer: sgd }));
      const step = await EngineStep.create({ roles, terms: mutualTerms(['p0', 'p1', 'p2'], { target }), batch });
      const r = step.step(batch);
      let expected = 0;
      for (let i = 0; i < 3; i++) {
        const others = [0, 1, 2].filter((j) => j !== i);
        expected += ce(L[i], y);
        if (target === 'each') expected += others.reduce((a, j) => a + klRows(L[j], L[i], 1), 0) / 2;
        else {
          const pbar = softmax(L[others[0]][0]).map((p, k) => (p + softmax(L[others[1]][0])[k]) / 2);
          expected += kl(pbar, softmax(L[i][0]));
        }
      }
      assert.ok(Math.abs(r.value - expected) < 1e-5, `${target}: ${r.value} vs ${expected}`);
      step.dispose();
      ms.forEach((m) => m.dispose());
    }
    dispose([batch.x, batch.y]);
    tidy(() => assert.throws(() => peerMeanKl(tensor([[1, 2]]), [tensor([[1, 2, 3]])]), /peer 0 logits \[1, 3\] differ from the student's \[1, 2\]/));
  });

  it('CS-KD: the anchors learn their partners\' predictions; the virtual teacher; FSP with pooling', () => {
    tidy(() => {
      const S = [[1, 0, 2], [0, 1, 0], [3, 1, 0], [0, 0, 1]], T = 4;
      const got = classWiseKl(tensor(S), tensor(S), T).item();
      assert.ok(Math.abs(got - klRows(S.slice(2), S.slice(0, 2), T)) < 1e-5, `${got}`);
      assert.throws(() => classWiseKl(tensor(S.slice(0, 3)), tensor(S.slice(0, 3))), /an even batch/);
      // Tf-KD: u = a on the label, (1-a)/(K-1) elsewhere; target softmax(u/T); KLDivLoss mean over B·K elements
      const Z = [[1, 2, 0, -1], [0, 0, 3, 1]], y = [1, 2], a = 0.9, Tv = 2;
      let sum = 0;
      Z.forEach((row, i) => {
        const u = row.map((_, k) => (k === y[i] ? a : (1 - a) / 3));
        const q = softmax(u, Tv), lp = softmax(row).map(Math.log);
        q.forEach((qk, k) => { sum += qk * (Math.log(qk) - lp[k]); });
      });
      const v = virtualTeacherKl(tensor(Z), tensor(y, { dtype: 'int64' }), { correctProb: a, temperature: Tv, multiplier: 3 }).item();
      assert.ok(Math.abs(v - (3 * sum) / 8) < 1e-6, `${v} vs ${(3 * sum) / 8}`);
      // FSP: a pair of maps of different sizes is pooled to the smaller first
      manualSeed(0);
      const s1 = randn([2, 3, 8, 8]), s2 = randn([2, 4, 4, 4]), t1 = randn([2, 3, 8, 8]), t2 = randn([2, 4, 4, 4]);
      const g = (x: Tensor, z: Tensor) => { const xp = ops.adaptive_avg_pool2d(x, [4, 4]); return xp.flatten(2).bmm(z.flatten(2).transpose(1, 2)).div(16); };
      const want = g(s1, s2).sub(g(t1, t2)).pow(2).mean().item();
      assert.ok(Math.abs(fspPooled([s1, s2], [t1, t2]).item() - want) < 1e-6);
    });
  });

  it('PairedBatches: each anchor is followed by a different sample of its class, the same for the same epoch', () => {
    const [xs, y] = tidy(() => [ops.arange_start(0, 10, { dtype: 'float32' }).view([10, 1]), tensor([0, 1, 0, 1, 2, 0, 1, 2, 0, 1], { dtype: 'int64' })]);
    const ds = new TensorDataset(xs, y);
    const pb = new PairedBatches(ds, { anchors: 4, shuffle: true, seed: 3, scale: false });
    assert.equal(pb.length, 3);
    const labels = y.toArray();
    const seen = new Set<number>();
    for (const e of [0, 1]) {
      pb.setEpoch(e);
      for (let b = 0; b < pb.length; b++) {
        const batch = pb.batchAt(b);
        const x = batch.x.toArray(), h = x.length / 2;
        assert.equal(x.length, b < 2 ? 8 : 4);
        for (let i = 0; i < h; i++) {
          if (e === 0) seen.add(x[i]);
          assert.equal(labels[x[i]], labels[x[h + i]], 'same class');
          assert.notEqual(x[i], x[h + i], 'another sample');
        }
        batch.dispose();
      }
    }
    assert.equal(seen.size, 10, 'every sample is an anchor once per epoch');
    pb.setEpoch(1);
    const again = pb.epochOrder().slice();
    pb.setEpoch(0);
    pb.setEpoch(1);
    assert.deepEqual(pb.epochOrder(), again);
    ds.dispose();
  });

  it('MultiExit: exits after each stage of a ResNet, WRN and VGG; the deepest is the backbone; each exit alone', () => {
    registerBuiltinModels();
    manualSeed(0);
    for (const [backbone, n] of [[new ResNetCifar(8, [16, 16, 32, 64], 10), 3], [new WideResNet(10, 1, 10), 3], [new Vgg(VGG_CONFIGS.vgg8, 10), 5]] as const) {
      const m = new MultiExit(backbone).eval();
      assert.equal(m.numExits, n);
      tidy(() => noGrad(() => {
        const x = randn([2, 3, 32, 32]);
        const all = m.forwardAll(x);
        assert.equal(all.length, n);
        for (const l of all) assert.deepEqual(l.shape, [2, 10]);
        assert.ok(all[n - 1].sub(backbone.call(x)).abs().max().item() < 1e-5, 'the deepest exit is the backbone');
        for (let i = 0; i < n; i++) assert.ok(m.forwardExit(x, i).sub(all[i]).abs().max().item() < 1e-5, `exit ${i}`);
      }));
      assert.ok(Object.keys(m.stateDict()).some((k) => k.startsWith('exits.0.bottleneck.')));
      m.dispose();
    }
    const me = createModel('multi-exit', { backbone: 'resnet8', numClasses: 5 }) as MultiExit;
    assert.ok(Object.keys(me.stateDict()).includes('backbone.fc.weight'));
    // exported, it is the deepest exit (the exits run only in training or when observed)
    const { graph } = buildOnnxGraph(me, { inputShape: [3, 32, 32] });
    assert.deepEqual(graph.outputs.map((o) => [o.name, o.shape]), [['logits', ['batch', 5]]]);
    me.dispose();
    assert.throws(() => createModel('multi-exit', { backbone: 'lenet5' }), /CIFAR ResNets, Wide ResNets and VGGs/);
  });

  it('module replacement: the successor\'s keys, the schedule, successor or predecessor blocks by probability', async () => {
    manualSeed(0);
    const pred = new ResNetCifar(14, [16, 16, 32, 64], 10), succ = new ResNetCifar(8, [16, 16, 32, 64], 10);
    const plainKeys = Object.keys(succ.stateDict());
    const m = theseusResnet(pred, succ, { from: 0, to: 1 });
    assert.deepEqual(Object.keys(m.stateDict()), plainKeys, 'checkpoints load into the plain successor');
    const fresh = new ResNetCifar(8, [16, 16, 32, 64], 10);
    assert.equal(m.numParameters(), fresh.numParameters());
    fresh.dispose();
    const reps = m.modules().filter((x): x is Replaceable => x instanceof Replaceable);
    assert.equal(reps.length, 3);
    // the shared stem starts as the predecessor's
    assert.ok(tidy(() => m.conv1.weight.sub(pred.conv1.weight).abs().max().item()) === 0);
    // probability 0 at the start of the run: every group runs its predecessor blocks; 1 at the end: the successors
    m.train();
    for (const r of reps) r.beforeStep({ epoch: 0, step: 0, stepsPerEpoch: 10, epochs: 1 });
    tidy(() => { m.call(randn([2, 3, 32, 32])); });
    assert.deepEqual(reps.map((r) => [r.predecessorRuns, r.successorRuns]), [[1, 0], [1, 0], [1, 0]]);
    for (const r of reps) r.beforeStep({ epoch: 0, step: 10, stepsPerEpoch: 10, epochs: 1 });
    assert.deepEqual(reps.map((r) => r.p), [1, 1, 1]);
    tidy(() => { m.call(randn([2, 3, 32, 32])); });
    assert.deepEqual(reps.map((r) => r.successorRuns), [1, 1, 1]);
    // in eval mode the model is the successor alone
    const plain = new ResNetCifar(8, [16, 16, 32, 64], 10);
    plain.loadStateDict(m.stateDict());
    m.eval(); plain.eval();
    tidy(() => noGrad(() => { const x = randn([2, 3, 32, 32]); assert.ok(m.call(x).sub(plain.call(x)).abs().max().item() < 1e-6); }));
    plain.dispose();
    m.dispose();
    const [p20, s14] = [new ResNetCifar(20, [16, 16, 32, 64]), new ResNetCifar(14, [16, 16, 32, 64])];
    assert.throws(() => theseusResnet(p20, s14, 0.5), /the predecessor's 3 blocks of layer1 do not split evenly into the successor's 2/);
    p20.dispose(); s14.dispose();
    // the Transformer classifier: 4 layers → 2
    const tp = new TransformerClassifier({ vocabSize: 20, layers: 4, dModel: 16, heads: 2, numClasses: 3 });
    const ts = new TransformerClassifier({ vocabSize: 20, layers: 2, dModel: 16, heads: 2, numClasses: 3 });
    const keys = Object.keys(ts.stateDict());
    const tm = theseusTransformer(tp, ts, 0.5);
    assert.deepEqual(Object.keys(tm.stateDict()), keys);
    tm.eval();
    assert.deepEqual(buildOnnxGraph(tm, { inputShape: [8], inputDtype: 'int64' }).graph.outputs.map((o) => o.shape), [['batch', 3]], 'exported, the successor alone');
    tm.train();
    tidy(() => { tm.call(randint(1, 20, [3, 7])); });
    tm.dispose();
  });

  it('a born-again chain whose earlier generations finished in another run builds its next generation as the uninterrupted chain', async () => {
    manualSeed(0);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ban-seed-'));
    const x = randn([64, 3, 16, 16]), y = randint(0, 3, [64]);
    const train = new TensorDataset(x, y);
    const base = { train: new DataLoader(train, { batchSize: 32, shuffle: true, seed: 0 }), test: train, epochs: 1, seed: 5, optimizer: { kind: 'sgd' as const, lr: 0.05, momentum: 0.9 }, ...quiet };
    const resnet = () => new ResNetCifar(8, [4, 4, 8, 8], 3);
    await bornAgain({ ...base, outDir: path.join(dir, 'whole'), make: resnet, generations: 2 });
    await bornAgain({ ...base, outDir: path.join(dir, 'parts'), make: resnet, generations: 1 });
    manualSeed(123); // another process: the generator holds anything
    const rest = await bornAgain({ ...base, outDir: path.join(dir, 'parts'), make: resnet, generations: 2, resume: true });
    assert.deepEqual(rest.stages.map((s) => [s.name, s.ran]), [['gen0', false], ['gen1', false], ['gen2', true]]);
    for (const f of ['gen2/last.safetensors', 'gen2/best.safetensors'])
      assert.ok(fs.readFileSync(path.join(dir, 'whole', f)).equals(fs.readFileSync(path.join(dir, 'parts', f))), `${f}: byte for byte`);
    train.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('the schemes through the engine on tiny data: DML, born-again, BYOT, CS-KD, Tf-KD, module replacement', async () => {
    manualSeed(0);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-schemes-'));
    const N = 96;
    const x = randn([N, 3, 16, 16]), y = randint(0, 3, [N]);
    const train = new TensorDataset(x, y), test = train;
    const loader = new DataLoader(train, { batchSize: 32, shuffle: true, seed: 0 });
    const base = { train: loader, test, epochs: 1, seed: 0, optimizer: { kind: 'sgd' as const, lr: 0.05, momentum: 0.9 }, ...quiet };
    const resnet = () => new ResNetCifar(8, [4, 4, 8, 8], 3);
    const dml = await mutualLearning({ ...base, outDir: path.join(dir, 'dml'), peers: [{ name: 'a', make: resnet }, { name: 'b', make: resnet }], target: 'mean' });
    assert.ok(dml.stages[0].summary.roles?.b.final_test_acc !== undefined);
    const ban = await bornAgain({ ...base, outDir: path.join(dir, 'ban'), make: resnet, generations: 2 });
    assert.deepEqual(ban.stages.map((s) => s.name), ['gen0', 'gen1', 'gen2']);
    const gens = ban.stages.map((s) => { const m = resnet(); loadWeights(m, path.join(s.summary.out_dir, 'best.safetensors')); return m; });
    const ens = await ensembleAccuracy(gens.slice(1), test);
    assert.ok(ens >= 0 && ens <= 100);
    gens.forEach((g) => g.dispose());
    const byot = await selfDistillation({ ...base, outDir: path.join(dir, 'byot'), make: () => new MultiExit(resnet()) });
    const terms = JSON.parse(fs.readFileSync(path.join(dir, 'byot', 'self', 'metrics.jsonl'), 'utf8').trim()).terms;
    assert.deepEqual(Object.keys(terms).sort(), ['ce:deepest', 'ce:exit0', 'ce:exit1', 'hint:exit0', 'hint:exit1', 'kd:exit0', 'kd:exit1']);
    const me = new MultiExit(resnet());
    loadWeights(me, path.join(byot.stages[0].summary.out_dir, 'best.safetensors'));
    const accs = await exitAccuracies(me, test);
    assert.equal(accs.length, 3);
    assert.ok(Math.abs(accs[2] - byot.stages[0].summary.best_test_acc) < 1e-9, 'the deepest exit is what the run evaluated');
    me.dispose();
    const cs = await classWiseSelfKD({ ...base, outDir: path.join(dir, 'cskd'), make: resnet, dataset: train, anchors: 16 });
    assert.ok(Number.isFinite(cs.stages[0].summary.last_loss!));
    const tf = await teacherFreeKD({ ...base, outDir: path.join(dir, 'tf'), make: resnet, teacher: 'self' });
    assert.deepEqual(tf.stages.map((s) => s.name), ['self0', 'self1']);
    const predFile = path.join(dir, 'ban', 'gen0', 'best.safetensors');
    const mr = await moduleReplacement({
      ...base, outDir: path.join(dir, 'theseus'), successor: resnet,
      replaced: () => { const p = resnet(); loadWeights(p, predFile); return theseusResnet(p, new ResNetCifar(8, [4, 4, 8, 8], 3), { from: 0.5, to: 1 }); },
    });
    assert.deepEqual(mr.stages.map((s) => s.name), ['replace', 'finetune']);
    const fsp = await fspDistill({
      ...base, outDir: path.join(dir, 'fsp'), teacher: resnet, teacherCheckpoint: predFile, student: resnet,
      pairs: [{ student: ['bn1', 'layer1'], teacher: ['bn1', 'layer1'] }, { student: ['layer1', 'layer2'], teacher: ['layer1', 'layer2'] }],
    });
    const init = JSON.parse(fs.readFileSync(path.join(dir, 'fsp', 'fsp-init', 'metrics.jsonl'), 'utf8').trim());
    assert.deepEqual(Object.keys(init.terms), ['fsp:0', 'fsp:1']);
    assert.equal(fsp.stages[1].name, 'train');
    train.dispose();
    // the Transformer classifier: a 2-layer predecessor trained briefly, its layers replaced by a 1-layer successor
    const ids = randint(1, 30, [64, 8]), labels = randint(0, 2, [64]);
    const text = new TensorDataset(ids, labels);
    const tbase = { ...base, train: new DataLoader(text, { batchSize: 16, shuffle: true, seed: 0 }), test: text };
    const tf2 = (layers: number) => () => new TransformerClassifier({ vocabSize: 30, layers, dModel: 16, heads: 2, numClasses: 2, maxLen: 8 });
    const tpred = await mutualLearning({ ...tbase, outDir: path.join(dir, 'tpred'), peers: [{ name: 'a', make: tf2(2) }, { name: 'b', make: tf2(2) }] });
    const tr = await moduleReplacement({
      ...tbase, outDir: path.join(dir, 'ttheseus'), successor: tf2(1),
      replaced: () => { const p = tf2(2)(); loadWeights(p, path.join(tpred.stages[0].summary.out_dir, 'best.safetensors')); return theseusTransformer(p, tf2(1)(), { from: 0.5, to: 1 }); },
    });
    assert.ok(tr.stages.every((s) => Number.isFinite(s.summary.last_loss!)));
    text.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});

