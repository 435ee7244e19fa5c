// The verdict explains itself: classes a model never predicts and output units dead on every test input are found
// and named (the seed recipe's ReLU on the logits kills units), whether the teacher beats the student alone is said,
// the setup (data set, sizes, T, α, epochs, schedule) is recorded and shown by the report, and over seeds every row
// gets mean ± std with Welch's t-test (checked against SciPy's ttest_ind(equal_var=False)).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { manualSeed, noGrad, ops, tidy } from '../src/torch';
import { LeNet5Half } from '../src/models';
import { loadMnist, normalize } from '../src/data';
import { compareSeeds, measureModel, setupLine, tTwoSided, validateConfig, verdictLines, welch, type CompareResult, type ModelReport } from '../src/run';
import { renderReport } from '../src/report';
import { checkLeaks } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-verdict-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('verdict', () => {
  checkLeaks();
  it('finds output units that are 0 on every test input behind a ReLU on the logits, and the classes never predicted', async () => {
    manualSeed(0);
    const m = new LeNet5Half(10, true);
    // units 1, 2 and 8: weights 0 and a negative bias, so the ReLU never opens
    tidy(() => noGrad(() => {
      for (const u of [1, 2, 8]) {
        ops.fill__Scalar(m.fc.weight.select(0, u), 0);
        ops.fill__Scalar(m.fc.bias!.select(0, u), -5);
      }
    }));
    const test = loadMnist({ split: 'test', limit: 300 });
    try {
      const r = await measureModel(m, test, [normalize([0.1307], [0.3081])], null);
      assert.deepEqual(r.dead.map((d) => d.unit), [1, 2, 8]);
      assert.ok(r.dead.every((d) => d.value === 0));
      for (const u of [1, 2, 8]) assert.ok(r.never.includes(u), `class ${u} is never predicted`);
      assert.equal(r.preds.length, 300);
    } finally {
      test.dispose();
      m.dispose();
    }
  });
  it('says it in sentences: the gap, KD against the student alone, dead units (and why), classes never predicted, ties', () => {
    const rep = (o: Partial<ModelReport>): ModelReport => ({
      model: 'm', acc: 0, errors: 0, params: 0, checkpoint_bytes: 0, latency_b1_ms: 0, throughput_b256: 0, agreement: null, ece: 0, epoch_s: 1,
      never_predicted: [], dead_outputs: [], tied_inputs: 0, ...o,
    });
    const result = { teacher_acc: 98.79, plain_acc: 66.69, kd_acc: 57.57, gap_closed: (57.57 - 66.69) / (98.79 - 66.69), teacher_better: true, kd_gain: 57.57 - 66.69 } as CompareResult;
    const lines = verdictLines(result, {
      teacher: rep({}),
      student: rep({ never_predicted: ['1', '2', '8'], dead_outputs: ['0', '1', '2', '8'].map((c) => ({ class: c, value: 0 })), tied_inputs: 312 }),
      distilled: rep({ never_predicted: ['6'], dead_outputs: [{ class: '6', value: 0 }] }),
    }, { outputRelu: { student: true, distilled: true } });
    assert.deepEqual(lines, [
      'teacher gap closed by distillation: -28.4 % (the teacher, 98.79 %, is better than the student alone, 66.69 %, by 32.10 points)',
      'student + KD vs student alone: -9.12 points (57.57 % vs 66.69 %)',
      'student alone never predicts classes 1, 2 and 8 on the test set',
      'student alone: the output units of classes 0, 1, 2 and 8 are dead — 0 on every test input: the ReLU on its logits (options.outputRelu) is off for them on every input, so no gradient reaches them',
      'student alone: on 312 test inputs every output has the same value (a tie, predicted as the first class)',
      'student + KD never predicts class 6 on the test set',
      'student + KD: the output unit of class 6 is dead — 0 on every test input: the ReLU on its logits (options.outputRelu) is off for it on every input, so no gradient reaches it',
    ]);
    const noGap = verdictLines({ ...result, teacher_acc: 60, gap_closed: null, teacher_better: false }, { teacher: rep({}), student: rep({}), distilled: rep({}) });
    assert.match(noGap[0], /^teacher gap closed by distillation: n\/a \(the teacher, 60\.00 %, is not more accurate than the student alone, 66\.69 %: there is no gap to close; train the teacher longer or choose a larger one\)$/);
  });
  it("Welch's t-test and Student's t tail match SciPy", () => {
    const w = welch([97.1, 97.4, 96.9], [95.0, 96.2, 95.5])!;
    assert.ok(Math.abs(w.t - 4.154252339470946) < 1e-9, String(w.t));
    assert.ok(Math.abs(w.df - 2.6766868158797585) < 1e-9, String(w.df));
    assert.ok(Math.abs(w.p - 0.031548180885775136) < 1e-9, String(w.p));
    const v = welch([1, 2, 3, 4, 5], [2, 9, 4.5])!;
    assert.ok(Math.abs(v.t + 1) < 1e-12 && Math.abs(v.p - 0.40444427037327874) < 1e-9, JSON.stringify(v));
    assert.ok(Math.abs(tTwoSided(2.5, 3.7) - 0.07182202291182678) < 1e-9);
    assert.equal(welch([1], [2, 3]), null);
    assert.equal(welch([1, 1], [2, 2]), null);
  });
  it('the report shows the setup and the verdict sentences', () => {
    const setup = {
      dataset: 'mnist', train_size: 60000, test_size: 10000, classes: 10, temperature: { kind: 'linear', from: 4, to: 1 }, alpha: 0.3, soft_loss: 'kl', epochs: 5,
      batch_size: 64, optimizer: 'sgd', lr: 0.01, schedule: 'cosine', warmup_epochs: 0, augment: null, seed: 0,
    };
    assert.equal(setupLine(setup), 'mnist: 60,000 training / 10,000 test images, 10 classes; T = linear 4 → 1, α = 0.3 (kl); 5 epochs at batch 64, sgd lr 0.01, cosine schedule; seed 0');
    const html = renderReport({
      title: 't', runs: [],
      summary: { teacher_acc: 99, plain_acc: 90, kd_acc: 95, gap_closed: 5 / 9, reports: { student: { never_predicted: ['3', '7'], dead_outputs: [{ class: '7', value: 0 }] } }, setup, verdict: ['student alone never predicts classes 3 and 7 on the test set'] },
    });
    assert.match(html, /<tr><th>data set<\/th><td>mnist<\/td><\/tr>/);
    assert.match(html, /<tr><th>training images<\/th><td>60,000<\/td><\/tr>/);
    assert.match(html, /<tr><th>temperature T<\/th><td>\{&quot;kind&quot;:&quot;linear&quot;,&quot;from&quot;:4,&quot;to&quot;:1\}<\/td><\/tr>/);
    assert.match(html, /<tr><th>hard-label weight α<\/th><td>0\.3<\/td><\/tr>/);
    assert.match(html, /<tr><th>learning-rate schedule<\/th><td>cosine<\/td><\/tr>/);
    assert.match(html, /<tr><th>epochs<\/th><td>5<\/td><\/tr>/);
    assert.match(html, /<ul id="verdict-notes">\n<li>student alone never predicts classes 3 and 7 on the test set<\/li>/);
    assert.match(html, /<tr><th>classes never predicted<\/th><td>-<\/td><td>3, 7<\/td><td>-<\/td><\/tr>/);
    assert.match(html, /<tr><th>dead output units<\/th><td>-<\/td><td>7<\/td><td>-<\/td><\/tr>/);
  });
});

describe('compare over seeds', () => {
  it('records the setup and verdict per seed, and mean ± std per row with the significance test over seeds', async () => {
    const out = path.join(tmp, 'seeds');
    const cfg = validateConfig({
      name: 'v', data: { dataset: 'mnist', batchSize: 64 }, teacher: { model: 'lenet5' }, student: { model: 'lenet5-half', options: { outputRelu: true } },
      distill: { temperature: 4, alpha: 0.3 }, training: { epochs: 1, lr: 0.05, threads: 1 }, output: { dir: out },
    }, 'v.yaml');
    const data = { train: loadMnist({ split: 'train', limit: 320 }), test: loadMnist({ split: 'test', limit: 400 }) };
    try {
      const { result, rowsTable } = await compareSeeds(cfg, [0, 1], data, { file: 'v.yaml', progress: false, log: () => {} });
      const s0 = JSON.parse(fs.readFileSync(path.join(out, 'seed-0', 'summary.json'), 'utf8'));
      assert.equal(s0.setup.dataset, 'mnist');
      assert.equal(s0.setup.train_size, 320);
      assert.equal(s0.setup.test_size, 400);
      assert.equal(s0.setup.temperature, 4);
      assert.equal(s0.setup.alpha, 0.3);
      assert.equal(s0.setup.epochs, 1);
      assert.equal(s0.setup.schedule, 'constant');
      assert.match(s0.verdict[0], /^teacher gap closed by distillation: /);
      for (const k of ['teacher', 'student', 'distilled']) assert.ok(Array.isArray(s0.reports[k].never_predicted) && Array.isArray(s0.reports[k].dead_outputs));
      assert.equal(typeof s0.teacher_better, 'boolean');
      // rows: each model's mean and std over the two seeds, from the per-seed summaries
      const acc = result.rows.find((r) => r.key === 'acc')!;
      const per = [0, 1].map((s) => JSON.parse(fs.readFileSync(path.join(out, `seed-${s}`, 'summary.json'), 'utf8')).reports.distilled.acc as number);
      assert.ok(Math.abs(acc.distilled[0] - (per[0] + per[1]) / 2) < 1e-9);
      assert.ok(Math.abs(acc.distilled[1] - Math.abs(per[0] - per[1]) / Math.SQRT2) < 1e-9);
      assert.equal(rowsTable[0][0], 'mean ± std over 2 seeds');
      assert.match(rowsTable[1].join('|'), /^test accuracy \(%\)\|\d+\.\d\d ± \d+\.\d\d\|/);
      assert.equal(result.significance.test, 'welch');
      const w = welch(result.runs.map((r) => r.kd_acc), result.runs.map((r) => r.plain_acc));
      assert.deepEqual(result.significance.kd_vs_plain, w);
      assert.match(result.note, /^Welch's t-test over 2 seeds, two-sided: student \+ KD vs student alone: (no test|[+-]\d+\.\d\d points, t = -?\d+\.\d\d, df = \d+\.\d, p = \S+ \((not )?significant at 5 %\))/);
      const seedsJson = JSON.parse(fs.readFileSync(path.join(out, 'seeds.json'), 'utf8'));
      assert.deepEqual(seedsJson.significance, JSON.parse(JSON.stringify(result.significance)));
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });
});
