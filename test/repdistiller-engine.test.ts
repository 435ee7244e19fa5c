// The RepDistiller / mdistiller / IRG losses as engine terms: their own modules (VID's regressor and variance, OFD's
// connector, ReviewKD's ABF chain, CRD's embeddings and memory bank) train with the student, are saved with its
// checkpoints and resume exactly; FT runs as two stages (the paraphraser on the teacher's feature, then the student).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { dispose, loadSafetensors, manualSeed, tidy } from '../src/torch';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5 } from '../src/models';
import { type EngineOptions, type StageSpec, TrainingInterrupted, runEngine, runStages } from '../src/distill';
import { checkLeaks } from './helpers';

const quiet = { progress: false, log: () => {} };
const norm = [normalize([0.1307], [0.3081])];
const sgd = { kind: 'sgd' as const, lr: 0.02, momentum: 0.9 };

function weights(file: string): Record<string, number[]> {
  const w = loadSafetensors(file);
  try {
    return Object.fromEntries(Object.entries(w.tensors).map(([k, t]) => [k, tidy(() => t.double().toArray())]));
  } finally {
    dispose(w.tensors);
  }
}

describe('RepDistiller, mdistiller and IRG losses in the engine', () => {
  checkLeaks();

  it('VID, OFD, ReviewKD, CRD, IRG, AB and Correlation train together; their modules and the CRD bank resume exactly', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-rdl-'));
    const train = loadMnist({ split: 'train', limit: 256 });
    manualSeed(5);
    const teacher = new LeNet5();
    const opts = (out: string, student: LeNet5, extra: Partial<EngineOptions> = {}): EngineOptions => ({
      name: 'zoo', outDir: path.join(dir, out), epochs: 2, seed: 3, ...quiet,
      train: new DataLoader(train, { batchSize: 64, shuffle: true, seed: 3, transforms: norm }),
      roles: [{ name: 'student', model: student, optimizer: sgd }, { name: 'teacher', model: teacher }],
      terms: [
        { loss: 'ce', student: 'student.logits', teacher: 'labels' },
        { loss: 'vid', student: 'student.conv1', teacher: 'teacher.conv2', weight: 0.1 },
        { loss: 'ofd', student: 'student.conv2', teacher: 'teacher.conv2', weight: 0.01, options: { margins: Array.from({ length: 16 }, (_, i) => -0.1 - 0.01 * i) } },
        { loss: 'reviewkd', student: ['student.conv1', 'student.conv2', 'student.fc1'], teacher: ['teacher.conv1', 'teacher.conv2', 'teacher.fc1'], weight: 0.1 },
        { loss: 'crd', student: 'student.fc1', teacher: 'teacher.fc2', weight: 0.1, options: { featDim: 16, negatives: 32, seed: 1 } },
        { loss: 'irg', student: 'student.fc2', teacher: 'teacher.fc2', weight: 0.1 },
        { loss: 'irg_transform', student: ['student.fc1', 'student.fc2'], teacher: ['teacher.fc1', 'teacher.fc2'], weight: 0.1 },
        { loss: 'ab', student: 'student.conv2', teacher: 'teacher.conv2', weight: 0.1 },
        { loss: 'cc_repdistiller', student: 'student.fc2', teacher: 'teacher.fc2', weight: 0.01 },
      ],
      ...extra,
    });
    const student = () => { manualSeed(1); return new LeNet5(); };
    const s1 = student();
    await runEngine(opts('x', s1));
    const m = fs.readFileSync(path.join(dir, 'x', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const terms = m[1].terms as Record<string, number>;
    assert.equal(Object.keys(terms).length, 9);
    assert.ok(Object.values(terms).every((v) => Number.isFinite(v)), JSON.stringify(terms));
    const proj = weights(path.join(dir, 'x', 'last.proj.safetensors'));
    // the loss modules are saved: VID's variance, OFD's margins, ReviewKD's fusions, CRD's bank and its draw count
    for (const k of ['0.log_scale', '1.margin', '2.abfs.0.conv2.0.weight', '3.contrast.memory_v1', '3.contrast.memory_v2', '3.contrast.params', '3.contrast.draws'])
      assert.ok(k in proj, `${k} in last.proj.safetensors (${Object.keys(proj).slice(0, 8).join(', ')}, ...)`);
    assert.deepEqual(proj['3.contrast.draws'], [8], 'one draw of negatives per step');
    assert.ok(proj['3.contrast.params'][2] > 0 && proj['3.contrast.params'][3] > 0, 'normalisation constants set on the first batch');
    // the bank's rows of the training set moved to unit length (momentum update of the rows seen)
    const bank = proj['3.contrast.memory_v1'];
    const norms = Array.from({ length: 256 }, (_, r) => Math.hypot(...bank.slice(r * 16, r * 16 + 16)));
    assert.ok(norms.every((n) => Math.abs(n - 1) < 1e-5), 'every row was updated (256 rows, 2 epochs)');
    // VID's variance learnt (it starts at log(exp(5 − 1e-5) − 1) everywhere)
    const init = Math.log(Math.exp(5 - 1e-5) - 1);
    assert.ok(proj['0.log_scale'].some((v) => Math.abs(v - Math.fround(init)) > 1e-4));

    // interrupted after the third step, resumed: the same student, modules and bank as the uninterrupted run
    const s2 = student();
    const ac = new AbortController();
    let steps = 0;
    const loader = new DataLoader(train, { batchSize: 64, shuffle: true, seed: 3, transforms: norm });
    const batchAt = loader.batchAt.bind(loader);
    loader.batchAt = (i: number) => { if (++steps === 4) ac.abort(); return batchAt(i); };
    await assert.rejects(runEngine(opts('y', s2, { train: loader, signal: ac.signal })), (e: Error) => e instanceof TrainingInterrupted);
    const s3 = student();
    await runEngine(opts('y', s3, { resume: true }));
    for (const f of ['last.safetensors', 'last.proj.safetensors', 'last.optim.safetensors'])
      assert.deepEqual(weights(path.join(dir, 'y', f)), weights(path.join(dir, 'x', f)), f);
    for (const x of [teacher, s1, s2, s3]) x.dispose();
    train.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it("FT in two stages: the paraphraser learns to reconstruct the teacher's feature, then the student's translator matches its factor", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ft-'));
    const train = loadMnist({ split: 'train', limit: 192 });
    manualSeed(5);
    const teacher = new LeNet5();
    const made: LeNet5[] = [];
    const fresh = () => { manualSeed(1); const m = new LeNet5(); made.push(m); return m; };
    const loader = () => new DataLoader(train, { batchSize: 64, shuffle: true, seed: 3, transforms: norm });
    const paraFile = path.join(dir, 'paraphraser', 'last.proj.safetensors');
    const stages: StageSpec[] = [
      {
        name: 'paraphraser',
        // the student role only carries the optimizer: the one term reads the teacher and trains the paraphraser
        build: () => ({ roles: [{ name: 'student', model: fresh(), optimizer: { kind: 'adam', lr: 1e-3 } }, { name: 'teacher', model: teacher }], train: loader(), epochs: 2, seed: 1,
          terms: [{ loss: 'ft_paraphraser', student: 'student.conv2', teacher: 'teacher.conv2' }] }),
      },
      {
        name: 'student',
        build: () => ({ roles: [{ name: 'student', model: fresh(), optimizer: sgd }, { name: 'teacher', model: teacher }], train: loader(), epochs: 1, seed: 1,
          terms: [{ loss: 'ce', student: 'student.logits', teacher: 'labels' }, { loss: 'ft', student: 'student.conv2', teacher: 'teacher.conv2', weight: 200, options: { paraphraser: paraFile } }] }),
      },
    ];
    await runStages({ outDir: dir, stages, log: () => {} });
    const m = fs.readFileSync(path.join(dir, 'paraphraser', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const rec = m.map((l) => l.terms['ft_paraphraser:student.conv2']);
    assert.ok(rec[1] < rec[0], `the reconstruction improves: ${rec.join(' → ')}`);
    // the paraphraser is frozen in the second stage: its weights there are the first stage's
    const p1 = weights(paraFile), p2 = weights(path.join(dir, 'student', 'last.proj.safetensors'));
    for (const [k, v] of Object.entries(p1)) assert.deepEqual(p2[k.replace(/^0\./, '0.paraphraser.')], v, k);
    assert.ok(Object.keys(p2).some((k) => k.startsWith('0.translator.')));
    const ms = JSON.parse(fs.readFileSync(path.join(dir, 'student', 'metrics.jsonl'), 'utf8').trim().split('\n')[0]);
    assert.ok(Number.isFinite(ms.terms['ft:student.conv2']) && ms.terms['ft:student.conv2'] > 0);
    // without the paraphraser stage's file, the term says what is missing
    await assert.rejects(
      runEngine({ name: 'ft', outDir: path.join(dir, 'z'), roles: [{ name: 'student', model: fresh(), optimizer: sgd }, { name: 'teacher', model: teacher }], train: loader(), epochs: 1, seed: 1, ...quiet,
        terms: [{ loss: 'ft', student: 'student.conv2', teacher: 'teacher.conv2' }] }),
      /ft: needs option paraphraser/,
    );
    for (const x of [teacher, ...made]) x.dispose();
    train.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
