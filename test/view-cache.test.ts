// Cached views (src/distill/view-cache.ts, src/data/views.ts): the stored parameters reproduce the teacher's stored
// outputs, the student sees exactly the stored crop and flip, top-k storage round-trips and the soft_topk loss
// matches kl (k = C) and FKD's rebuilt distribution (k < C), a damaged file is rebuilt, and a run on cached views
// resumes to the same bytes as an uninterrupted one.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, dispose, loadSafetensors, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { DataLoader, Rng, loadMnist, registerBuiltinDatasets, normalize, randomCrop, randomHorizontalFlip, splitViewTransforms } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import {
  TrainingInterrupted, ViewCacheBatches, lossNumber, readViewCache, runEngine, softTerm, softTopkLoss, teacherViews, trainModel, viewInput, viewsOf, writeViewCache,
} from '../src/distill';
import { configSchema } from '../src/run/config';
import { checkLeaks } from './helpers';

const quiet = { progress: false, log: () => {} };
const MEAN = 0.1307, STD = 0.3081;
const augment = () => [randomCrop(28, 2), randomHorizontalFlip(), normalize([MEAN], [STD])];
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-views-'));

function frozenTeacher(seed = 5): LeNet5 {
  manualSeed(seed);
  const t = new LeNet5().eval();
  t.requiresGrad_(false);
  return t;
}

/** The view (top, left, flip) of a 28×28 image with padding 2 computed in plain JS, normalised: [28·28] floats. */
function jsView(img: Uint8Array, top: number, left: number, flip: number): Float32Array {
  const out = new Float32Array(28 * 28);
  for (let r = 0; r < 28; r++)
    for (let q = 0; q < 28; q++) {
      const sr = top + r - 2, sq = left + (flip ? 27 - q : q) - 2;
      const v = sr >= 0 && sr < 28 && sq >= 0 && sq < 28 ? img[sr * 28 + sq] / 255 : 0;
      out[r * 28 + q] = (v - MEAN) / STD;
    }
  return out;
}

describe('cached views', () => {
  checkLeaks();

  it("the stored parameters reproduce the teacher's stored top-k outputs when it is rerun on the re-augmented image", async () => {
    const data = loadMnist({ split: 'test', limit: 96 });
    const teacher = frozenTeacher();
    const dir = tmp();
    const loader = new DataLoader(data, { batchSize: 32, shuffle: true, seed: 1, transforms: augment() });
    const { spec, rest } = splitViewTransforms(loader.transforms);
    for (const topk of [10, 3]) {
      const c = await teacherViews(teacher, loader, { views: 3, topk, temperature: 4, seed: 7, cacheDir: dir });
      try {
        assert.equal(c.fromCache, false);
        assert.deepEqual([c.n, c.views, c.k, c.classes], [96, 3, topk, 10]);
        // an image's views differ (25 crops × 2 flips to draw from)
        const varied = Array.from({ length: 96 }, (_, i) => new Set([0, 1, 2].map((v) => c.params.slice((i * 3 + v) * 3, (i * 3 + v + 1) * 3).join(','))).size > 1);
        assert.ok(varied.filter(Boolean).length > 85, `${varied.filter(Boolean).length} of 96 images have different views`);
        const rows = Int32Array.from([0, 17, 50, 95]);
        for (let v = 0; v < 3; v++) {
          const slots = Int32Array.from(rows, (i) => i * 3 + v);
          const p = {
            top: Int32Array.from(slots, (s) => c.params[s * 3]), left: Int32Array.from(slots, (s) => c.params[s * 3 + 1]), flip: Uint8Array.from(slots, (s) => c.params[s * 3 + 2]),
          };
          tidy(() => {
            const raw = data.tensors[0].indexSelect(0, tensor(rows).long()).float().div(255);
            const z = noGrad(() => teacher.call(viewInput(raw, spec, p, rest)) as Tensor);
            const [vals, idx] = z.topk(topk, 1);
            const stored = c.logits.indexSelect(0, tensor(slots).long());
            assert.ok(stored.sub(vals).abs().max().item() <= 1e-5, `view ${v}: logits differ by ${stored.sub(vals).abs().max().item()}`);
            assert.deepEqual(c.indices.indexSelect(0, tensor(slots).long()).toArray(), idx.toArray());
            const tail = z.double().div(4).softmax(1).gather(1, idx).sum(1).neg().add(1);
            const storedTail = c.tail.indexSelect(0, tensor(slots).long()).double();
            assert.ok(storedTail.sub(tail).abs().max().item() <= 1e-6);
            if (topk === 10) assert.equal(storedTail.abs().max().item(), 0);
            else assert.ok(storedTail.min().item() > 0);
          });
        }
      } finally {
        c.dispose();
      }
    }
    teacher.dispose();
    data.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it("the student's input for a drawn view is the crop and flip of that view's parameters; its teacher outputs are that view's", async () => {
    const data = loadMnist({ split: 'test', limit: 80 });
    const teacher = frozenTeacher();
    const dir = tmp();
    const loader = new DataLoader(data, { batchSize: 16, shuffle: true, seed: 4, transforms: augment() });
    const c = await teacherViews(teacher, loader, { views: 4, topk: 10, temperature: 4, seed: 4, cacheDir: dir });
    const src = new ViewCacheBatches(loader, c);
    const pixels = data.tensors[0].data() as Uint8Array;
    const seen = new Set<number>();
    for (const epoch of [0, 3]) {
      src.setEpoch(epoch);
      const b = src.batchAt(2);
      try {
        const v = viewsOf(loader.seed, epoch, b.indices, 4);
        const x = b.x.data() as Float32Array;
        for (let j = 0; j < b.indices.length; j++) {
          const s = b.indices[j] * 4 + v[j];
          seen.add(v[j]);
          const want = jsView(pixels.subarray(b.indices[j] * 784, (b.indices[j] + 1) * 784), c.params[s * 3], c.params[s * 3 + 1], c.params[s * 3 + 2]);
          let worst = 0;
          for (let q = 0; q < 784; q++) worst = Math.max(worst, Math.abs(x[j * 784 + q] - want[q]));
          assert.ok(worst <= 1e-5, `sample ${b.indices[j]} view ${v[j]}: ${worst}`);
        }
        tidy(() => {
          const slots = tensor(Int32Array.from(b.indices, (i, j) => i * 4 + v[j])).long();
          assert.deepEqual(b.taps!.teacher_topk_logits.toArray(), c.logits.indexSelect(0, slots).toArray());
          assert.deepEqual(b.taps!.teacher_topk_indices.toArray(), c.indices.indexSelect(0, slots).toArray());
          // the loader's order: the same rows and labels as the augmenting loader's batch
          loader.setEpoch(epoch);
          const lb = loader.batchAt(2);
          assert.deepEqual([...lb.indices], [...b.indices]);
          assert.deepEqual(lb.y.toArray(), b.y.toArray());
          lb.dispose();
        });
      } finally {
        b.dispose();
      }
    }
    assert.ok(seen.size > 1, 'samples draw different views');
    // the same batch twice gives the same bytes
    src.setEpoch(3);
    const [b1, b2] = [src.batchAt(1), src.batchAt(1)];
    assert.deepEqual(b1.x.data(), b2.x.data());
    b1.dispose();
    b2.dispose();
    c.dispose();
    teacher.dispose();
    data.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('randomCrop and randomHorizontalFlip draw views that splitViewTransforms can replay; other orders are refused', () => {
    assert.throws(() => splitViewTransforms([normalize([0], [1]), randomCrop(28, 2)]), /must come before the deterministic transforms/);
    assert.throws(() => splitViewTransforms([{ name: 'noise', random: true, apply: (x) => x }]), /noise has no view parameters/);
    const { spec, rest } = splitViewTransforms(augment());
    assert.deepEqual(spec, { crop: { size: [28, 28], padding: 2, mode: 'zeros' }, flip: { p: 0.5 } });
    assert.equal(rest.length, 1);
  });

  it('top-k storage round-trips; soft_topk equals kl when k = C and the FKD target (uniform tail) when k < C', () => {
    const dir = tmp();
    const file = path.join(dir, 'v.bin');
    const rng = new Rng(3);
    const body = {
      params: Int32Array.from({ length: 5 * 2 * 3 }, () => rng.int(5)), logits: Float32Array.from({ length: 5 * 2 * 3 }, () => rng.random() * 4 - 2),
      indices: Int32Array.from({ length: 5 * 2 * 3 }, () => rng.int(10)), tail: Float32Array.from({ length: 10 }, () => rng.random() * 0.2),
    };
    writeViewCache(file, { n: 5, views: 2, k: 3, classes: 10, temperature: 2, seed: 0, teacher: 'T' }, body);
    const back = readViewCache(file, { n: 5, views: 2, topk: 3 })!;
    assert.deepEqual([back.params, back.logits, back.indices, back.tail, back.k, back.classes, back.temperature], [body.params, body.logits, body.indices, body.tail, 3, 10, 2]);
    const lines: string[] = [];
    assert.equal(readViewCache(file, { n: 5, views: 3, topk: 3 }, (l) => lines.push(l)), null);
    assert.match(lines[0], /holds 5 images × 2 views × top-3, expected 5 × 3 × top-3/);

    tidy(() => {
      manualSeed(2);
      const s = tensor(Float32Array.from({ length: 4 * 6 }, () => rng.random() * 6 - 3), { shape: [4, 6] });
      const t = tensor(Float32Array.from({ length: 4 * 6 }, () => rng.random() * 6 - 3), { shape: [4, 6] });
      const T = 3;
      // k = C: kl on the full logits
      const [v6, i6] = t.topk(6, 1);
      const full = lossNumber(softTopkLoss(s, v6, i6, tensor(new Float32Array(4)), T));
      assert.ok(Math.abs(full - lossNumber(softTerm(s, t, T, 'kl'))) < 1e-5, `${full}`);
      // k = 2 < C = 6: the target computed here by hand
      const [v2, i2] = t.topk(2, 1);
      const tail = t.double().div(T).softmax(1).gather(1, i2).sum(1).neg().add(1).float();
      const got = lossNumber(softTopkLoss(s, v2, i2, tail, T));
      const sd = s.data() as Float32Array, vd = v2.data() as Float32Array, idd = i2.data() as BigInt64Array, td = tail.data() as Float32Array;
      let want = 0;
      for (let b = 0; b < 4; b++) {
        const row = Array.from(sd.subarray(b * 6, b * 6 + 6), (x) => x / T);
        const m = Math.max(...row), lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
        const e = [Math.exp(vd[b * 2] / T), Math.exp(vd[b * 2 + 1] / T)];
        const p = new Array(6).fill(td[b] / 4);
        p[Number(idd[b * 2])] = (e[0] / (e[0] + e[1])) * (1 - td[b]);
        p[Number(idd[b * 2 + 1])] = (e[1] / (e[0] + e[1])) * (1 - td[b]);
        for (let c = 0; c < 6; c++) want += p[c] * (Math.log(p[c]) - (row[c] - lse));
      }
      want = (want / 4) * T * T;
      assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `soft_topk ${got}, by hand ${want}`);
    });
    fs.rmSync(dir, { recursive: true });
  });

  it('a damaged cache file (same size, other bytes) is reported and rebuilt; the rebuilt file is read back', async () => {
    const data = loadMnist({ split: 'test', limit: 64 });
    const teacher = frozenTeacher();
    const dir = tmp();
    const loader = new DataLoader(data, { batchSize: 32, shuffle: true, seed: 1, transforms: augment() });
    const o = { views: 2, topk: 4, temperature: 4, seed: 0, cacheDir: dir };
    const a = await teacherViews(teacher, loader, o);
    const first = a.logits.toArray();
    a.dispose();
    const buf = fs.readFileSync(a.file);
    buf.fill(0x41, buf.length - 600, buf.length - 300);
    fs.writeFileSync(a.file, buf);
    const lines: string[] = [];
    const b = await teacherViews(teacher, loader, { ...o, warn: (l) => lines.push(l) });
    assert.equal(b.fromCache, false);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /view cache: .*corrupt: the body's SHA-256 is .*recomputing/);
    assert.deepEqual(b.logits.toArray(), first);
    b.dispose();
    fs.writeFileSync(a.file, buf.subarray(0, 100));
    const c = await teacherViews(teacher, loader, { ...o, warn: (l) => lines.push(l) });
    assert.match(lines[1], /corrupt or truncated/);
    c.dispose();
    const d = await teacherViews(teacher, loader, { ...o, warn: (l) => lines.push(l) });
    assert.equal(d.fromCache, true);
    assert.equal(lines.length, 2);
    d.dispose();
    teacher.dispose();
    data.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('a run on cached views resumes after an interruption to the same bytes as an uninterrupted run', async () => {
    const train = loadMnist({ split: 'train', limit: 320 });
    const test = loadMnist({ split: 'test', limit: 200 });
    const teacher = frozenTeacher();
    const dir = tmp();
    const loader = () => new DataLoader(train, { batchSize: 32, shuffle: true, seed: 2, transforms: augment() });
    const cache = await teacherViews(teacher, loader(), { views: 3, topk: 4, temperature: 4, seed: 2, cacheDir: dir });
    const run = (out: string, src: ViewCacheBatches, extra: { resume?: boolean; signal?: AbortSignal } = {}) => {
      manualSeed(9);
      const student = new LeNet5Half();
      return {
        student,
        done: runEngine({
          name: 'views', outDir: path.join(dir, out), epochs: 2, seed: 2, test, testTransforms: [normalize([MEAN], [STD])], ...quiet, ...extra, train: src,
          roles: [{ name: 'student', model: student, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 } }],
          terms: [
            { loss: 'ce', name: 'hard', student: 'student.logits', teacher: 'labels', weight: 0.1, metric: 'hard' },
            { loss: 'soft_topk', name: 'soft', student: 'student.logits', teacher: 'batch.teacher_topk_logits', weight: 0.9, options: { temperature: 4 }, metric: 'soft' },
          ],
        }),
      };
    };
    const a = run('x', new ViewCacheBatches(loader(), cache));
    const sa = await a.done;
    assert.equal(sa.steps, 20);
    assert.ok(Number.isFinite(sa.last_loss) && sa.last_loss! > 0, JSON.stringify(sa));
    const src = new ViewCacheBatches(loader(), cache);
    const ac = new AbortController();
    let n = 0;
    const batchAt = src.batchAt.bind(src);
    src.batchAt = (i: number) => { if (++n === 13) ac.abort(); return batchAt(i); };
    const b = run('y', src, { signal: ac.signal });
    await assert.rejects(b.done, (e: Error) => e instanceof TrainingInterrupted && e.epoch === 2 && e.step === 3);
    const c = run('y', new ViewCacheBatches(loader(), cache), { resume: true });
    await c.done;
    for (const f of ['last.safetensors', 'last.optim.safetensors', 'best.safetensors'])
      assert.ok(fs.readFileSync(path.join(dir, 'y', f)).equals(fs.readFileSync(path.join(dir, 'x', f))), f);
    const metrics = (d: string) => fs.readFileSync(path.join(dir, d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((m) => [m.loss, m.hard, m.soft, m.test_acc]);
    assert.deepEqual(metrics('y'), metrics('x'));
    for (const m of [a.student, b.student, c.student]) m.dispose();
    cache.dispose();
    teacher.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it("trainModel and configurations: distill.cache 'views' with augmentation trains on cached views, built once and then read", async () => {
    registerBuiltinDatasets();
    const cfg = configSchema.parse({ data: { dataset: 'mnist', augment: { crop: 2, flip: true } }, student: { model: 'lenet5-half' }, teacher: { model: 'lenet5' }, distill: { cache: 'views', views: 3, topk: 5 } });
    assert.deepEqual([cfg.distill.cache, cfg.distill.views, cfg.distill.topk], ['views', 3, 5]);
    assert.throws(() => configSchema.parse({ ...cfg, distill: { ...cfg.distill, cache: 'view' } }));
    const train = loadMnist({ split: 'train', limit: 192 });
    const test = loadMnist({ split: 'test', limit: 100 });
    const teacher = frozenTeacher();
    const dir = tmp();
    const lines: string[] = [];
    const go = async (out: string) => {
      manualSeed(3);
      const student = new LeNet5Half();
      try {
        return await trainModel({
          model: student, teacher, train: new DataLoader(train, { batchSize: 32, shuffle: true, seed: 0, transforms: augment() }), test, testTransforms: [normalize([MEAN], [STD])],
          epochs: 1, seed: 0, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 0 }, schedule: 'constant', outDir: path.join(dir, out),
          kd: { temperature: 4, alpha: 0.1, softLoss: 'kl', cache: 'views', views: 3, topk: 5 }, progress: false, log: (l) => lines.push(l),
        });
      } finally {
        student.dispose();
      }
    };
    const s1 = await go('a');
    const s2 = await go('b');
    assert.equal(s1.teacher_cache, 'built');
    assert.equal(s2.teacher_cache, 'loaded');
    assert.equal(s1.final_test_acc, s2.final_test_acc);
    assert.ok(s1.cached_teacher_epoch_s! > 0 && s1.live_teacher_epoch_s === undefined, JSON.stringify(s1));
    assert.ok(lines.some((l) => /teacher outputs for 3 views × 192 images \(top-5 of 10\) computed in/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /read from .*teacher-views-/.test(l)));
    await assert.rejects(
      trainModel({
        model: teacher, teacher, train: new DataLoader(train, { batchSize: 32, transforms: augment() }), test, testTransforms: [], epochs: 1, seed: 0,
        optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 0 }, schedule: 'constant', outDir: path.join(dir, 'c'),
        kd: { temperature: { kind: 'linear', from: 4, to: 1 }, alpha: 0.1, softLoss: 'kl', cache: 'views' }, progress: false, log: () => {},
      }),
      /cached views store the teacher's tail mass at one temperature/,
    );
    teacher.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
