import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, manualSeed, noGrad, randn, tidy } from '../src/torch';
import { loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { Ensemble, FeatureMatcher, distill, kdLoss, pseudoLabel } from '../src/distill';
import { saveWeights } from '../src/nn';
import { checkMatches, compareFromConfig, loadTeacher, validateConfig } from '../src/run';
import { checkLeaks, maxDiff } from './helpers';

describe('Ensemble teacher', () => {
  checkLeaks();
  it('averages logits, or soft targets exactly at the given temperature', () => {
    manualSeed(0);
    const a = new LeNet5(), b = new LeNet5();
    tidy(() =>
      noGrad(() => {
        const x = randn([5, 1, 28, 28]);
        const za = a.call(x) as Tensor, zb = b.call(x) as Tensor;
        const logits = new Ensemble([a, b], { weights: [1, 3] }).call(x) as Tensor;
        assert.ok(maxDiff(logits, za.mul(0.25).add(zb.mul(0.75))) < 1e-6);
        const T = 4;
        const probs = new Ensemble([a, b], { weights: [1, 3], mode: 'probs', temperature: T }).call(x) as Tensor;
        const want = za.div(T).softmax(-1).mul(0.25).add(zb.div(T).softmax(-1).mul(0.75));
        assert.ok(maxDiff(probs.div(T).softmax(-1), want) < 1e-6);
      }),
    );
    assert.throws(() => new Ensemble([a, b], { weights: [1] }), /1 weights for 2 teachers/);
    assert.throws(() => new Ensemble([a, b], { weights: [0, 0] }), /not all zero/);
    a.dispose();
    b.dispose();
  });
  it('is a teacher like any other: response KD with the cache, and feature matches into one member by path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ens-'));
    const train = loadMnist({ split: 'train', limit: 256 }), test = loadMnist({ split: 'test', limit: 100 });
    manualSeed(0);
    const ens = new Ensemble([new LeNet5(), new LeNet5()], { mode: 'probs', temperature: 4 });
    const student = new LeNet5Half();
    const s = await distill({ teacher: ens, student, data: { train, test }, outDir: path.join(dir, 'kd'), epochs: 2, transforms: [normalize([0.1307], [0.3081])], progress: false, log: () => {} });
    assert.equal(s.teacher_cache, 'built');
    // one KD loss per teacher: the members' outputs are module outputs too
    const fm = new FeatureMatcher(student, ens, [
      { teacher: 'members.1.conv2', student: 'conv', loss: 'at' },
      { teacher: 'members.0', student: 'logits', loss: 'kd' },
      { teacher: 'members.1', student: 'logits', loss: 'kd' },
    ]);
    tidy(() => {
      const x = randn([2, 1, 28, 28]);
      const { terms, logits } = fm.forward(x);
      assert.deepEqual([...terms.keys()], ['at:conv', 'kd:logits', 'kd:logits#1']);
      const [k0, k1] = [terms.get('kd:logits')!.item(), terms.get('kd:logits#1')!.item()];
      const m0 = noGrad(() => (ens.members.at(0).call(x) as Tensor));
      assert.ok(Math.abs(k0 - kdLoss(logits, m0).item()) < 1e-5 && Number.isFinite(k1) && k0 !== k1);
    });
    fm.dispose();
    ens.dispose();
    student.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('configs: teacher model ensemble with trained members, compared end to end; bad member specs are refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ens-cfg-'));
    manualSeed(3);
    for (const n of ['a', 'b']) {
      const t = new LeNet5();
      saveWeights(t, path.join(dir, `${n}.safetensors`));
      t.dispose();
    }
    const file = path.join(dir, 'ens.json');
    const raw = {
      name: 'ens', data: { dataset: 'mnist', limit: 256, batchSize: 64 },
      teacher: { model: 'ensemble', mode: 'probs', members: [{ model: 'lenet5', checkpoint: 'a.safetensors', weight: 2 }, { model: 'lenet5', checkpoint: 'b.safetensors' }] },
      student: { model: 'lenet5-half' }, distill: { temperature: 4, alpha: 0.3, matches: [{ teacher: 'members.0.conv2', student: 'conv', loss: 'at' }] },
      training: { epochs: 1 }, output: { dir: path.join(dir, 'out') },
    };
    fs.writeFileSync(file, JSON.stringify(raw));
    const cfg = validateConfig(raw, file);
    assert.equal(cfg.teacher!.members![0].checkpoint, path.join(dir, 'a.safetensors'));
    checkMatches(cfg, file);
    const ens = loadTeacher(cfg, file) as Ensemble;
    assert.deepEqual(ens.weights.map((w) => +w.toFixed(4)), [0.6667, 0.3333]);
    assert.equal(ens.mode, 'probs');
    ens.dispose();
    const data = { train: loadMnist({ split: 'train', limit: 256 }), test: loadMnist({ split: 'test', limit: 200 }) };
    const { result, reports } = await compareFromConfig(cfg, data, { file, progress: false, log: () => {} });
    assert.ok(reports.teacher.checkpoint_bytes > 2 * 240000, 'both members counted');
    assert.ok(Number.isFinite(result.kd_acc) && Number.isFinite(result.teacher_acc));
    // untrained members: the teacher is no better than the student alone, so there is no gap to close
    if (result.teacher_acc <= result.plain_acc) assert.equal(result.gap_closed, null);
    else assert.ok(Math.abs(result.gap_closed! - (result.kd_acc - result.plain_acc) / (result.teacher_acc - result.plain_acc)) < 1e-12);
    assert.ok(!fs.existsSync(path.join(dir, 'out', 'teacher')), 'an ensemble teacher is not trained');
    data.train.dispose();
    data.test.dispose();
    assert.throws(() => validateConfig({ ...raw, teacher: { model: 'lenet5', members: raw.teacher.members } }, file), /teacher: members need model: ensemble \(got 'lenet5'\)/);
    assert.throws(() => validateConfig({ ...raw, teacher: { model: 'ensemble' } }, file), /model 'ensemble' needs a 'members' list/);
    assert.throws(() => validateConfig({ ...raw, teacher: { ...raw.teacher, members: [{ model: 'lenet5', checkpoint: 'c.safetensors' }] } }, file), /teacher\.members\[0\]\.checkpoint: file not found: .*c\.safetensors/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('pseudoLabel (model compression on a transfer set)', () => {
  checkLeaks();
  it('labels images with the teacher, caches its logits for the labelled set, and distill reads them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-transfer-'));
    const transfer = loadMnist({ split: 'train', limit: 300 }), test = loadMnist({ split: 'test', limit: 100 });
    manualSeed(2);
    const ens = new Ensemble([new LeNet5(), new LeNet5()]);
    const norm = [normalize([0.1307], [0.3081])];
    const r = await pseudoLabel(ens, transfer, { transforms: norm, cacheDir: path.join(dir, '.teacher-cache') });
    // the labels are the ensemble's predictions
    const want = tidy(() => noGrad(() => {
      ens.eval();
      const x = transfer.images.float().div(255).sub(0.1307).div(0.3081);
      return (ens.call(x) as Tensor).argmax(1).toArray();
    }));
    assert.deepEqual(r.dataset.labels.toArray(), want);
    assert.ok(r.agreement >= 0 && r.agreement <= 100);
    const student = new LeNet5Half();
    const s = await distill({ teacher: ens, student, data: { train: r.dataset, test }, outDir: path.join(dir, 'run'), epochs: 1, alpha: 0, transforms: norm, progress: false, log: () => {} });
    assert.equal(s.teacher_cache, 'loaded');
    await assert.rejects(pseudoLabel(ens, transfer, { transforms: [...norm, { name: 'jitter', random: true, apply: (x: Tensor) => x }] }), /transforms must be deterministic \(got jitter\)/);
    r.dataset.dispose();
    student.dispose();
    ens.dispose();
    transfer.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
