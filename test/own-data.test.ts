// One's own data (src/data/own.ts) in configurations and distill(): image folders, image lists, IDX pairs, .tar.gz
// archives, split fractions, statistics from the training split, and the checks made before training (classes of
// train and test, empty class folders, numClasses against the data). The data is written by the tests.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as jpegjs from 'jpeg-js';
import { PNG } from 'pngjs';
import { Tensor, manualSeed } from '../src/torch';
import { Linear, Module } from '../src/nn';
import { ImageDataset, encodeIdx, extractArchiveCached, imageStats, loadDataset, ownDataset, stratifiedSplit } from '../src/data';
import { distill, trainModel } from '../src/distill';
import { DataLoader } from '../src/data';
import { datasetOf, loadConfigData, modelOptions, runFromConfig, runStagedConfig, transformsFor, validateConfig, validateStagedConfig } from '../src/run';
import { checkLeaks } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-own-'));
process.env.TSDISTILL_CACHE = path.join(root, 'cache');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const quiet = { progress: false, log: () => {} };
let counter = 0;
const fresh = (name: string) => {
  const d = path.join(root, `${name}-${counter++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

/** An 8x8 RGB image of class k (0: bright left half, 1: bright right half), with some per-image variation. */
function pixels(k: number, i: number): Buffer {
  const b = Buffer.alloc(8 * 8 * 4);
  for (let p = 0; p < 64; p++) {
    const bright = (p % 8 < 4) === (k === 0);
    const v = bright ? 180 + ((i * 7 + p) % 60) : (i * 13 + p * 3) % 50;
    b.set([v, (v + 20) % 256, v >> 1, 255], 4 * p);
  }
  return b;
}
const png = (k: number, i: number) => {
  const p = new PNG({ width: 8, height: 8 });
  pixels(k, i).copy(p.data);
  return PNG.sync.write(p);
};
const jpg = (k: number, i: number) => Buffer.from(jpegjs.encode({ data: pixels(k, i), width: 8, height: 8 }, 95).data);

/** dir/<class>/<n>.png|jpg for each class, `count` images each (alternating PNG and JPEG). */
function imageFolder(dir: string, classes: string[], count: number, offset = 0): string {
  classes.forEach((c, k) => {
    fs.mkdirSync(path.join(dir, c), { recursive: true });
    for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, c, `${i}.${i % 2 ? 'jpg' : 'png'}`), i % 2 ? jpg(k % 2, i + offset) : png(k % 2, i + offset));
  });
  return dir;
}

const mlp = { model: 'mlp', options: { widths: [192, 16] } };

describe('own data: image folders in configurations', () => {
  checkLeaks();

  it('trains from train/test class folders; classes, image shape and statistics come from the data', async () => {
    const dir = fresh('folders');
    imageFolder(path.join(dir, 'train'), ['left', 'right'], 24);
    imageFolder(path.join(dir, 'test'), ['left', 'right'], 6, 100);
    const file = path.join(dir, 'cfg.yaml');
    const cfg = validateConfig(
      { name: 'own', data: { train: 'train', test: 'test', batchSize: 16 }, student: { ...mlp, options: { widths: [192, 16, 2] } }, training: { epochs: 6, lr: 0.05 }, output: { dir: path.join(dir, 'runs') } },
      file,
    );
    assert.equal(cfg.data.train, path.join(dir, 'train'), 'relative paths are made absolute (from the configuration file)');
    const info = datasetOf(cfg);
    assert.equal(info.kind, 'image');
    if (info.kind !== 'image') return;
    assert.deepEqual(info.classes, ['left', 'right']);
    assert.deepEqual(info.inputShape, [3, 8, 8]);
    const data = loadConfigData(cfg);
    try {
      const direct = imageStats(data.train as ImageDataset);
      assert.deepEqual(info.mean, direct.mean);
      assert.deepEqual(info.std, direct.std);
      assert.ok(info.mean[0] > 0.2 && info.mean[0] < 0.6 && info.std[0] > 0.1, `statistics of the training images: ${JSON.stringify(info)}`);
      // cached beside the decoded images
      assert.equal(fs.readdirSync(path.join(root, 'cache', 'stats')).length >= 1, true);
      assert.deepEqual(transformsFor(cfg).norm.map((t) => t.name), [`normalize(mean=[${info.mean}], std=[${info.std}])`]);
      assert.equal(modelOptions(cfg, cfg.student).numClasses, 2);
      manualSeed(0);
      const s = await runFromConfig(cfg, 'student', data, { file, force: true, ...quiet });
      assert.ok(s.best_test_acc >= 90, `a separable toy set: ${s.best_test_acc} %`);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });

  it('a staged configuration (deep mutual learning of two fastText students) on a text file split in two', async () => {
    const dir = fresh('staged');
    const rows = Array.from({ length: 40 }, (_, i) => (i % 2 ? `good film ${i}\tpos` : `bad film ${i}\tneg`));
    fs.writeFileSync(path.join(dir, 'all.tsv'), rows.join('\n'));
    const file = path.join(dir, 'stages.yaml');
    const cfg = validateStagedConfig({
      data: { path: 'all.tsv', split: 0.25, seed: 1, batchSize: 8 },
      training: { epochs: 2, optimizer: 'adam', lr: 0.05 },
      stages: [{
        name: 'mutual',
        roles: { a: { model: 'fasttext', train: true }, b: { model: 'fasttext', options: { dim: 8 }, train: true } },
        terms: [
          { loss: 'ce', student: 'a.logits', teacher: 'labels' }, { loss: 'ce', student: 'b.logits', teacher: 'labels' },
          { loss: 'kl', student: 'a.logits', teacher: 'b.logits', options: { temperature: 1 } },
        ],
      }],
      output: { dir: path.join(dir, 'runs') },
    }, file);
    assert.equal(cfg.data.path, path.join(dir, 'all.tsv'));
    const data = loadConfigData(cfg);
    try {
      assert.deepEqual([data.train.length, data.test.length], [30, 10]);
      const r = await runStagedConfig(cfg, data, { file, force: true, ...quiet });
      assert.equal(r.stages[0].summary.epochs, 2);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });

  it('refuses train and test with different classes, naming both sides', () => {
    const dir = fresh('mismatch');
    imageFolder(path.join(dir, 'train'), ['a', 'b', 'extra'], 2);
    imageFolder(path.join(dir, 'test'), ['a', 'b'], 2);
    assert.throws(
      () => validateConfig({ data: { train: path.join(dir, 'train'), test: path.join(dir, 'test') }, student: mlp }, path.join(dir, 'c.yaml')),
      /c\.yaml: data: the classes of train and test differ \(only in train: extra\); train: data\.train \(.*train\), test: data\.test \(.*test\)/,
    );
  });

  it('refuses an empty class folder, naming it', () => {
    const dir = fresh('empty');
    imageFolder(path.join(dir, 'train'), ['a', 'b'], 2);
    imageFolder(path.join(dir, 'test'), ['a', 'b'], 2);
    fs.mkdirSync(path.join(dir, 'train', 'c'));
    fs.mkdirSync(path.join(dir, 'test', 'c'));
    assert.throws(
      () => validateConfig({ data: { train: path.join(dir, 'train'), test: path.join(dir, 'test') }, student: mlp }, 'c.yaml'),
      new RegExp(`class folder ${path.join(dir, 'train', 'c').replace(/[/.]/g, '\\$&')} has no \\.jpg/\\.jpeg/\\.png images`),
    );
  });

  it("refuses a model's numClasses that differs from the data's classes", () => {
    const dir = fresh('nc');
    imageFolder(path.join(dir, 'all'), ['a', 'b'], 4);
    assert.throws(
      () => validateConfig({ data: { path: path.join(dir, 'all'), split: 0.25 }, student: { model: 'mlp', options: { widths: [192, 3], numClasses: 3 } } }, 'nc.yaml'),
      /nc\.yaml: student\.options\.numClasses is 3, but the data \(nc-\d+-[0-9a-f]{8}\) has 2 classes \(a, b\)/,
    );
  });

  it('names the missing test data and the conflicting keys', () => {
    const dir = fresh('keys');
    imageFolder(path.join(dir, 'all'), ['a', 'b'], 2);
    assert.throws(() => validateConfig({ data: { train: path.join(dir, 'all') }, student: mlp }, 'k.yaml'), /data: no test data: give `test` or a `split` fraction of data\.train/);
    assert.throws(() => validateConfig({ data: { dataset: 'mnist', train: 'x' }, student: mlp }, 'k.yaml'), /data\.train: give a registered data\.dataset or your own data \(train\), not both/);
    assert.throws(() => validateConfig({ data: {}, student: mlp }, 'k.yaml'), /no data: give data\.dataset/);
    assert.throws(() => validateConfig({ data: { path: path.join(dir, 'nope'), split: 0.5 }, student: mlp }, 'k.yaml'), /k\.yaml: data\.path: not found: .*nope/);
    assert.throws(() => validateConfig({ data: { path: path.join(dir, 'all'), split: 0.5, tokenizer: 'words' }, student: mlp }, 'k.yaml'), /data\.tokenizer: applies to text data/);
    assert.throws(() => validateConfig({ data: { path: path.join(dir, 'all'), split: 0.5, mean: [0.5], std: [0.2] }, student: mlp }, 'k.yaml'), /k\.yaml: data\.mean: 1 value for images of 3 channels/);
  });
});

describe('own data: lists, IDX pairs, archives and splits', () => {
  checkLeaks();

  it('a CSV list with a split fraction: stratified, seeded, every class in both splits', () => {
    const dir = fresh('list');
    fs.mkdirSync(path.join(dir, 'img'));
    const lines = ['path,label'];
    for (let i = 0; i < 12; i++) {
      fs.writeFileSync(path.join(dir, 'img', `${i}.png`), png(i % 3 === 0 ? 0 : 1, i));
      lines.push(`img/${i}.png,${['cat', 'dog', 'fox'][i % 3]}`);
    }
    fs.writeFileSync(path.join(dir, 'list.csv'), lines.join('\n') + '\n');
    const info = ownDataset({ path: 'list.csv', split: 0.25, seed: 3 }, dir);
    assert.deepEqual(info.classes, ['cat', 'dog', 'fox']);
    const data = loadDataset(info.name);
    try {
      assert.equal(data.train.length, 9);
      assert.equal(data.test.length, 3);
      assert.deepEqual([...data.test.tensors[1].toArray()].sort(), [0, 1, 2]);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
    // the same seed gives the same split; another seed another one
    assert.deepEqual(stratifiedSplit([0, 0, 0, 0, 1, 1, 1, 1], 0.5, 1), stratifiedSplit([0, 0, 0, 0, 1, 1, 1, 1], 0.5, 1));
    fs.appendFileSync(path.join(dir, 'list.csv'), 'img/99.png,cat\n');
    assert.throws(() => ownDataset({ path: 'list.csv', split: 0.25, seed: 4 }, dir), /list\.csv:14: image .*img\/99\.png does not exist/);
  });

  it('a JSONL image list; a test image of another size is an error naming both splits', () => {
    const dir = fresh('jsonl');
    fs.mkdirSync(path.join(dir, 'img'));
    const rows: string[] = [];
    for (let i = 0; i < 6; i++) {
      fs.writeFileSync(path.join(dir, 'img', `${i}.jpg`), jpg(i % 2, i));
      rows.push(JSON.stringify({ path: `img/${i}.jpg`, label: i % 2 ? 'b' : 'a' }));
    }
    fs.writeFileSync(path.join(dir, 'train.jsonl'), rows.slice(0, 4).join('\n'));
    fs.writeFileSync(path.join(dir, 'test.jsonl'), rows.slice(4).join('\n'));
    const info = ownDataset({ train: 'train.jsonl', test: 'test.jsonl', channels: 1 }, dir);
    assert.equal(info.kind, 'image');
    if (info.kind === 'image') assert.deepEqual(info.inputShape, [1, 8, 8]);
    const big = new PNG({ width: 9, height: 8 });
    fs.writeFileSync(path.join(dir, 'img', 'big.png'), PNG.sync.write(big));
    fs.writeFileSync(path.join(dir, 'test2.jsonl'), [rows[5], JSON.stringify({ path: 'img/big.png', label: 'a' })].join('\n'));
    assert.throws(() => ownDataset({ train: 'train.jsonl', test: 'test2.jsonl' }, dir), /big\.png .*: image is 9x8, the set's first image .* is 8x8; all images must have one size/);
  });

  it('an IDX pair with class names; labels outside them are an error naming the file', () => {
    const dir = fresh('idx');
    const write = (name: string, n: number, labels: number[]) => {
      const img = new Uint8Array(n * 6 * 6).map((_, i) => (i * 31) % 256);
      fs.writeFileSync(path.join(dir, `${name}-images.idx`), encodeIdx({ dtype: 'uint8', shape: [n, 6, 6], data: img }));
      fs.writeFileSync(path.join(dir, `${name}-labels.idx`), encodeIdx({ dtype: 'uint8', shape: [n], data: Uint8Array.from(labels) }));
    };
    write('train', 6, [0, 1, 2, 0, 1, 2]);
    write('test', 3, [2, 1, 0]);
    const spec = { train: { images: 'train-images.idx', labels: 'train-labels.idx' }, test: { images: 'test-images.idx', labels: 'test-labels.idx' }, classes: ['zero', 'one', 'two'] };
    const info = ownDataset(spec, dir);
    assert.equal(info.kind, 'image');
    if (info.kind === 'image') assert.deepEqual(info.inputShape, [1, 6, 6]);
    assert.deepEqual(info.classes, ['zero', 'one', 'two']);
    write('bad', 2, [0, 3]);
    assert.throws(() => ownDataset({ ...spec, test: { images: 'bad-images.idx', labels: 'bad-labels.idx' } }, dir), /bad-labels\.idx: label 3 is not a class index \(3 classes: zero, one, two\)/);
  });

  it('a .tar.gz of class folders is extracted once into the cache, keyed by its checksum', () => {
    const dir = fresh('tgz');
    imageFolder(path.join(dir, 'set', 'train'), ['a', 'b'], 3);
    imageFolder(path.join(dir, 'set', 'test'), ['a', 'b'], 2, 50);
    execFileSync('tar', ['-czf', path.join(dir, 'set.tar.gz'), '-C', dir, 'set']);
    const cfg = validateConfig({ data: { archive: 'set.tar.gz', train: 'train', test: 'test' }, student: { ...mlp, options: { widths: [192, 2] } } }, path.join(dir, 'c.yaml'));
    const info = datasetOf(cfg);
    assert.deepEqual(info.classes, ['a', 'b']);
    const extracted = extractArchiveCached(path.join(dir, 'set.tar.gz'));
    assert.match(extracted, new RegExp(`${path.join(root, 'cache', 'archives').replace(/[/.]/g, '\\$&')}/[0-9a-f]{32}/set$`));
    assert.ok(fs.existsSync(path.join(path.dirname(extracted), '.extracted')));
    const data = loadConfigData(cfg);
    assert.deepEqual([data.train.length, data.test.length], [6, 4]);
    data.train.dispose();
    data.test.dispose();
  });
});

/** Records the mean of the inputs it sees, then a linear layer. */
class Probe extends Module {
  fc = this.registerModule('fc', new Linear(192, 2));
  seen: number[] = [];
  forward(x: Tensor): Tensor {
    if (this.training) this.seen.push(x.mean().item());
    return this.fc.call(x.flatten(1));
  }
}

describe('own data: distill() and trainModel', () => {
  checkLeaks();

  it('distill() on own data without transforms normalises with the training statistics', async () => {
    const dir = fresh('distill');
    imageFolder(path.join(dir, 'train'), ['l', 'r'], 8);
    imageFolder(path.join(dir, 'test'), ['l', 'r'], 2, 30);
    manualSeed(0);
    const student = new Probe();
    const s = await distill({ teacher: { model: 'mlp', options: { widths: [192, 8, 2] } }, student, data: { train: path.join(dir, 'train'), test: path.join(dir, 'test') }, outDir: path.join(dir, 'kd'), epochs: 1, batchSize: 16, ...quiet });
    assert.equal(s.epochs, 1);
    const mean = student.seen.reduce((a, b) => a + b, 0) / student.seen.length;
    assert.ok(Math.abs(mean) < 0.05, `normalised inputs have mean ~0 over the epoch, got ${mean}`);
    student.dispose();
    // the same splits given as data sets are normalised the same way
    const info = ownDataset({ train: path.join(dir, 'train'), test: path.join(dir, 'test') });
    const data = loadDataset(info.name);
    const probe = new Probe();
    try {
      await distill({ teacher: { model: 'mlp', options: { widths: [192, 8, 2] } }, student: probe, data, outDir: path.join(dir, 'kd2'), epochs: 1, batchSize: 16, ...quiet });
      const m2 = probe.seen.reduce((a, b) => a + b, 0) / probe.seen.length;
      assert.ok(Math.abs(m2) < 0.05, `got ${m2}`);
      await assert.rejects(
        distill({ teacher: { model: 'mlp', options: { widths: [192, 3], numClasses: 3 } }, student: probe, data, outDir: path.join(dir, 'kd3'), ...quiet }),
        /distill: teacher\.options\.numClasses is 3, but the data has 2 classes/,
      );
      const wrong = new Linear(192, 5);
      const flat = new (class extends Module {
        fc = this.registerModule('fc', wrong);
        forward(x: Tensor) { return this.fc.call(x.flatten(1)); }
      })();
      await assert.rejects(
        distill({ teacher: { model: 'mlp', options: { widths: [192, 2] } }, student: flat, data, outDir: path.join(dir, 'kd4'), ...quiet }),
        /distill: the student gives outputs \[2, 5\] for 2 samples; the data has 2 classes/,
      );
      flat.dispose();
    } finally {
      probe.dispose();
      data.train.dispose();
      data.test.dispose();
    }
  });

  it('trainModel keeps epoch-N checkpoints only when asked', async () => {
    const dir = fresh('epochs');
    imageFolder(path.join(dir, 'all'), ['l', 'r'], 4);
    const info = ownDataset({ path: path.join(dir, 'all'), split: 0.25 });
    const data = loadDataset(info.name);
    try {
      for (const every of [undefined, 1]) {
        const model = new Probe();
        const outDir = path.join(dir, `run-${every}`);
        await trainModel({
          model, train: new DataLoader(data.train, { batchSize: 4 }), test: data.test, testTransforms: [], epochs: 2, seed: 0,
          optimizer: { kind: 'sgd', lr: 0.01, momentum: 0, weightDecay: 0 }, schedule: 'constant', outDir, checkpointEvery: every, ...quiet,
        });
        model.dispose();
        const files = fs.readdirSync(outDir).filter((f) => f.startsWith('epoch-')).sort();
        assert.deepEqual(files, every ? ['epoch-1.safetensors', 'epoch-2.safetensors'] : []);
      }
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });
});
