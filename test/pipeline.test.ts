// The library entry point `distill()` on a small MNIST subset: the teacher cache filled by the first epoch and read by
// the later ones, zoo specs with checkpoints, and option errors.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { manualSeed } from '../src/torch';
import { saveWeights } from '../src/nn';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { computeTeacherLogits, distill, readTeacherCache, teacherCacheFile } from '../src/distill';
import { checkLeaks, maxDiff } from './helpers';

describe('distill()', () => {
  checkLeaks();
  const quiet = { progress: false, log: () => {} };
  it('fills the teacher cache during the first epoch and reads it afterwards', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-distill-'));
    const train = loadMnist({ split: 'train', limit: 1200 });
    const test = loadMnist({ split: 'test', limit: 500 });
    manualSeed(0);
    const teacher = new LeNet5();
    const student = new LeNet5Half();
    const norm = [normalize([0.1307], [0.3081])];
    const s = await distill({ teacher, student, data: { train, test }, outDir: path.join(dir, 'run'), epochs: 3, alpha: 0.3, transforms: norm, ...quiet });
    assert.equal(s.epochs, 3);
    assert.equal(s.teacher_cache, 'built');
    assert.ok(s.live_teacher_epoch_s! > 0 && s.cached_teacher_epoch_s! > 0);
    const metrics = fs.readFileSync(path.join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.teacher), ['live', 'cached', 'cached']);
    assert.ok(metrics.every((m) => Number.isFinite(m.hard) && Number.isFinite(m.soft)));
    // the rows written during training equal the teacher's outputs computed on their own
    const loader = new DataLoader(train, { batchSize: 64, shuffle: true, seed: 0, transforms: norm });
    const file = teacherCacheFile(teacher, loader, path.join(dir, '.teacher-cache'));
    const rows = readTeacherCache(file, train.length)!;
    const direct = await computeTeacherLogits(teacher, loader);
    assert.equal(maxDiff(rows, direct), 0);
    rows.dispose();
    direct.dispose();
    // a second run reads the cache from its first epoch
    const student2 = new LeNet5Half();
    const s2 = await distill({ teacher, student: student2, data: { train, test }, outDir: path.join(dir, 'run2'), epochs: 1, transforms: norm, ...quiet });
    student2.dispose();
    assert.equal(s2.teacher_cache, 'loaded');
    assert.equal(s2.live_teacher_epoch_s, undefined);
    teacher.dispose();
    student.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('takes zoo specs with checkpoints and names bad options', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-distill-'));
    const train = loadMnist({ split: 'train', limit: 300 });
    const test = loadMnist({ split: 'test', limit: 200 });
    manualSeed(1);
    const t = new LeNet5();
    saveWeights(t, path.join(dir, 'teacher.safetensors'));
    t.dispose();
    const s = await distill({
      teacher: { model: 'lenet5', checkpoint: path.join(dir, 'teacher.safetensors') }, student: { model: 'lenet5-half', options: { outputRelu: true } },
      data: { train, test }, outDir: path.join(dir, 'run'), epochs: 1, cache: false, ...quiet,
    });
    assert.equal(s.teacher_cache, 'off');
    assert.ok(fs.existsSync(path.join(dir, 'run', 'best.safetensors')));
    assert.ok(fs.existsSync(path.join(dir, 'run', 'summary.json')));
    await assert.rejects(distill({ teacher: { model: 'lenet7' }, student: { model: 'lenet5-half' }, data: { train, test }, outDir: dir, ...quiet }), /unknown model 'lenet7'\. Closest: lenet5/);
    await assert.rejects(
      distill({ teacher: { model: 'lenet5', checkpoint: path.join(dir, 'nope.safetensors') }, student: { model: 'lenet5-half' }, data: { train, test }, outDir: dir, ...quiet }),
      /nope\.safetensors/,
    );
    const [a, b] = [new LeNet5(), new LeNet5Half()];
    await assert.rejects(distill({ teacher: a, student: b, data: { train, test } } as never), /outDir is required/);
    a.dispose();
    b.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
