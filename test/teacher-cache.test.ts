import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { manualSeed, noGrad, tidy, tensor } from '../src/torch';
import { DataLoader, loadMnist, normalize, randomHorizontalFlip } from '../src/data';
import { LeNet5Half } from '../src/models';
import { hashDataset, hashModule, teacherCacheFile, teacherLogits } from '../src/distill';
import { checkLeaks, maxDiff } from './helpers';

describe('teacher-output cache', () => {
  checkLeaks();
  it('computes once, reuses from disk, and follows the teacher\'s weights', async () => {
    manualSeed(0);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cache-'));
    const data = loadMnist({ split: 'test', limit: 700 });
    const teacher = new LeNet5Half();
    const loader = new DataLoader(data, { batchSize: 64, shuffle: true, seed: 3, transforms: [normalize([0.1307], [0.3081])] });
    const a = await teacherLogits(teacher, loader, dir);
    assert.equal(a.fromCache, false);
    assert.deepEqual(a.logits.shape, [700, 10]);
    const b = await teacherLogits(teacher, loader, dir);
    assert.equal(b.fromCache, true);
    assert.equal(b.file, a.file);
    assert.equal(maxDiff(a.logits, b.logits), 0);
    // rows match running the teacher on a shuffled training batch
    const batch = loader.batchAt(2);
    tidy(() => {
      teacher.eval();
      const direct = noGrad(() => teacher.call(batch.x));
      const cached = b.logits.indexSelect(0, tensor(batch.indices).long());
      assert.ok(maxDiff(direct, cached) < 1e-5);
      teacher.train();
    });
    // other weights, other key
    const h0 = hashModule(teacher);
    tidy(() => noGrad(() => { teacher.fc.bias!.add_(1); }));
    assert.notEqual(hashModule(teacher), h0);
    const c = await teacherLogits(teacher, loader, dir);
    assert.equal(c.fromCache, false);
    assert.notEqual(c.file, a.file);
    // random augmentation is refused; a damaged file is named and rebuilt
    const aug = new DataLoader(data, { batchSize: 64, transforms: [randomHorizontalFlip()] });
    await assert.rejects(teacherLogits(teacher, aug, dir), /random transforms \(randomHorizontalFlip\(0\.5\)\)/);
    fs.truncateSync(c.file, 1000);
    const warnings: string[] = [];
    const d = await teacherLogits(teacher, loader, dir, (l) => warnings.push(l));
    assert.equal(d.fromCache, false);
    assert.deepEqual(warnings, [`teacher cache: ${c.file}: corrupt or truncated (${1000 - 4 - fs.readFileSync(c.file).readUInt32LE(0)} logit bytes for 700×10); recomputing the teacher's outputs`]);
    assert.equal(maxDiff(c.logits, d.logits), 0);
    for (const r of [a, b, c, d]) r.logits.dispose();
    batch.x.dispose();
    batch.y.dispose();
    teacher.dispose();
    data.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('keys and fills the cache the same whether the loader converts per batch or keeps a resident float copy', async () => {
    manualSeed(0);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cache-'));
    const data = loadMnist({ split: 'test', limit: 300 });
    const teacher = new LeNet5Half();
    const norm = [normalize([0.1307], [0.3081])];
    const perBatch = new DataLoader(data, { batchSize: 64, shuffle: true, seed: 3, transforms: norm, residentFloatMB: 0 });
    const hash0 = hashDataset(data);
    const file0 = teacherCacheFile(teacher, perBatch, dir);
    const a = await teacherLogits(teacher, perBatch, dir);
    assert.equal(a.fromCache, false);
    fs.rmSync(a.file);
    const resident = new DataLoader(data, { batchSize: 64, shuffle: true, seed: 3, transforms: norm });
    assert.ok(resident.usesResidentFloat());
    assert.equal(hashDataset(data), hash0, 'the resident copy is not part of the data set identity');
    assert.equal(teacherCacheFile(teacher, resident, dir), file0);
    const b = await teacherLogits(teacher, resident, dir);
    assert.equal(b.fromCache, false);
    assert.equal(b.file, file0);
    assert.equal(maxDiff(a.logits, b.logits), 0, 'the same logits, bit for bit');
    // and a cache written by one is read by the other
    const c = await teacherLogits(teacher, perBatch, dir);
    assert.equal(c.fromCache, true);
    for (const r of [a, b, c]) r.logits.dispose();
    teacher.dispose();
    data.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
