// The data-set registry (src/data/registry.ts): built-ins, registration checks, unknown names, and a data set of the
// user's own (3 classes) driving a config run, distill() and export: the models get 3 outputs, the card its classes.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadSafetensors, dispose, noGrad, tensor, tidy, zeros, type Tensor } from '../src/torch';
import {
  ImageDataset, datasetNames, getDataset, getImageDataset, loadDataset, registerBuiltinDatasets, registerDataset, type DatasetSplit, type ImageDatasetInfo,
} from '../src/data';
import { distill } from '../src/distill';
import { buildModel, datasetOf, loadPlugins, runExport, runFromConfig, transformsFor, validateConfig } from '../src/run';
import { checkLeaks } from './helpers';

/** A learnable toy set: 28×28 gray images, class k lights up the k-th third of the rows. */
function toySplit(split: DatasetSplit, limit?: number): ImageDataset {
  const n = Math.min(limit ?? Infinity, split === 'train' ? 96 : 48);
  const pixels = new Uint8Array(n * 28 * 28);
  const labels = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const k = i % 3;
    labels[i] = BigInt(k);
    for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) pixels[i * 784 + r * 28 + c] = Math.floor(r / 10) === k ? 200 + ((i + c) % 50) : (i * 7 + r * c) % 40;
  }
  return tidy(() => noGrad(() => new ImageDataset(`toy3-${split}`, tensor(pixels, { shape: [n, 1, 28, 28] }), tensor(labels), ['top', 'middle', 'bottom'])));
}
const toy: ImageDatasetInfo = { name: 'toy3', kind: 'image', classes: ['top', 'middle', 'bottom'], inputShape: [1, 28, 28], mean: [0.3], std: [0.35], load: toySplit };

describe('data-set registry', () => {
  checkLeaks();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-datasets-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const quiet = { progress: false, log: () => {} };

  it('registers nothing on import; the built-ins on request, once', () => {
    assert.deepEqual(datasetNames(), []);
    registerBuiltinDatasets();
    registerBuiltinDatasets();
    assert.deepEqual(datasetNames(), ['cifar10', 'fashion-mnist', 'mnist']);
    const mnist = getImageDataset('mnist');
    assert.deepEqual([mnist.classes.length, mnist.inputShape, mnist.mean, mnist.std], [10, [1, 28, 28], [0.1307], [0.3081]]);
    const cifar = getImageDataset('cifar10');
    assert.deepEqual([cifar.classes[0], cifar.inputShape, cifar.mean.length], ['airplane', [3, 32, 32], 3]);
    assert.equal(getDataset('fashion-mnist').classes[9], 'Ankle boot');
  });

  it('refuses bad registrations, naming the data set and the field', () => {
    const ok = { ...toy, name: 'bad' };
    assert.throws(() => registerDataset({ ...ok, name: '' }), /registerDataset: name must be a non-empty string, got ""/);
    assert.throws(() => registerDataset({ ...ok, kind: 'video' } as never), /registerDataset\('bad'\): kind must be one of image, text, tokens, got "video"/);
    assert.throws(() => registerDataset({ ...ok, inputShape: [28, 28] } as never), /registerDataset\('bad'\): inputShape must be \[C, H, W\] of positive integers, got \[28,28\]/);
    assert.throws(() => registerDataset({ ...ok, mean: [0.1, 0.2] }), /registerDataset\('bad'\): mean must hold 1 number\(s\), one per channel of inputShape \[1,28,28\], got \[0.1,0.2\]/);
    assert.throws(() => registerDataset({ ...ok, std: [0] }), /registerDataset\('bad'\): std must hold 1 positive number/);
    assert.throws(() => registerDataset({ ...ok, classes: [] }), /registerDataset\('bad'\): classes must list at least one class name for kind 'image', got \[\]/);
    assert.throws(() => registerDataset({ ...ok, classes: ['a', 'a'] }), /registerDataset\('bad'\): classes must be distinct/);
    assert.throws(() => registerDataset({ ...ok, load: undefined } as never), /registerDataset\('bad'\): load must be a function/);
    assert.throws(() => registerDataset({ ...ok, inputshape: [1, 28, 28] } as never), /registerDataset\('bad'\): unknown field 'inputshape'; did you mean 'inputShape'\?/);
    assert.throws(() => registerDataset({ name: 'txt', kind: 'text', classes: ['a', 'b'], load: () => [], mean: [0] } as never), /registerDataset\('txt'\): unknown field 'mean'/);
    assert.ok(!datasetNames().includes('bad'));
    assert.throws(() => registerDataset({ ...toy, name: 'mnist' }), /registerDataset: a data set named 'mnist' is already registered/);
  });

  it('an unknown name lists the closest ones, in the library and at the config key data.dataset', () => {
    assert.throws(() => getDataset('mnits'), /unknown data set 'mnits'\. Closest: mnist, .*Known data sets: cifar10, fashion-mnist, mnist/);
    assert.throws(() => loadDataset('cifar'), /unknown data set 'cifar'\. Closest: cifar10/);
    assert.throws(
      () => validateConfig({ data: { dataset: 'fashion_mnist' }, student: { model: 'lenet5-half' } }, 'x.yaml'),
      /x\.yaml: invalid configuration:\n  data\.dataset: unknown data set 'fashion_mnist'; did you mean 'fashion-mnist'\? \(registered data sets: cifar10, fashion-mnist, mnist; or give your own with data\.train \/ data\.test or data\.path \+ data\.split\)/,
    );
    registerDataset({ name: 'reviews', kind: 'text', classes: ['negative', 'positive'], load: () => [{ text: 'fine', label: 1 }] });
    assert.throws(() => getImageDataset('reviews', 'distill: data'), /distill: data: 'reviews' is a text data set, not an image data set/);
    assert.throws(() => validateConfig({ data: { dataset: 'reviews' }, student: { model: 'lenet5-half' } }), /data\.dataset: 'reviews' is a text data set without a tokenizer; configuration runs train classifiers of images or text/);
  });

  it('checks what a loader gives against the registration', () => {
    registerDataset({ ...toy, name: 'toy-rgb', inputShape: [3, 28, 28], mean: [0, 0, 0], std: [1, 1, 1] });
    assert.throws(() => loadDataset('toy-rgb'), /data set 'toy-rgb': load\('train'\) gave images \[1,28,28\], registered inputShape \[3,28,28\]/);
    registerDataset({ ...toy, name: 'toy-none', load: (() => null) as never });
    assert.throws(() => loadDataset('toy-none'), /data set 'toy-none': load\('train'\) returned null, expected an ImageDataset/);
  });

  it("a user's data set decides the classes, input shape and statistics of a config run, and export's card", async () => {
    registerDataset(toy);
    const cfg = validateConfig({
      name: 'toy', data: { dataset: 'toy3', batchSize: 32, augment: { crop: 2 } }, student: { model: 'lenet5-half' }, training: { epochs: 1 }, output: { dir: path.join(dir, 'cfg') },
    });
    assert.deepEqual(datasetOf(cfg).classes, ['top', 'middle', 'bottom']);
    const { norm, aug } = transformsFor(cfg);
    assert.deepEqual([...norm, ...aug].map((t) => t.name), ['normalize(mean=[0.3], std=[0.35])', 'randomCrop(28, padding=2)']);
    const logitsOf = (c: typeof cfg) => {
      const m = buildModel(c, 'student');
      try {
        return tidy(() => noGrad(() => (m.call(zeros([2, 1, 28, 28])) as Tensor).shape));
      } finally {
        m.dispose();
      }
    };
    assert.deepEqual(logitsOf(cfg), [2, 3]);
    assert.deepEqual(logitsOf({ ...cfg, student: { ...cfg.student, options: { numClasses: 5 } } }), [2, 5]);

    const data = loadDataset('toy3');
    try {
      const s = await runFromConfig(cfg, 'student', data, { file: 'toy.yaml', force: true, ...quiet });
      assert.equal(s.epochs, 1);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
    const best = loadSafetensors(path.join(dir, 'cfg', 'student', 'best.safetensors'));
    assert.deepEqual(best.tensors['fc.weight'].shape, [3, 432]);
    dispose(best.tensors);

    fs.writeFileSync(path.join(dir, 'cfg', 'config.json'), JSON.stringify(cfg));
    const out = path.join(dir, 'export', 'toy.safetensors');
    const r = await runExport({ source: path.join(dir, 'cfg', 'student'), format: 'safetensors', out });
    const card = JSON.parse(fs.readFileSync(r.card, 'utf8'));
    assert.deepEqual(card.output.classes, ['top', 'middle', 'bottom']);
    assert.deepEqual(card.input.shape, [1, 28, 28]);
    assert.deepEqual(card.input.preprocessing, { scale: 1 / 255, mean: [0.3], std: [0.35] });
    assert.deepEqual(card.architecture.options, { numClasses: 3 });
  });

  it('distill() takes a registered data set by name: its splits, statistics and classes', async () => {
    const s = await distill({ teacher: { model: 'lenet5' }, student: { model: 'lenet5-half' }, data: 'toy3', outDir: path.join(dir, 'kd'), epochs: 1, batchSize: 32, ...quiet });
    assert.equal(s.epochs, 1);
    const best = loadSafetensors(path.join(dir, 'kd', 'best.safetensors'));
    assert.deepEqual(best.tensors['fc.weight'].shape, [3, 432]);
    dispose(best.tensors);
    await assert.rejects(distill({ teacher: { model: 'lenet5' }, student: { model: 'lenet5-half' }, data: 'reviews', outDir: dir, ...quiet }), /distill: data: 'reviews' is a text data set/);
  });

  it('plugins register data sets through api.registerDataset', () => {
    const file = path.join(dir, 'plugin.js');
    fs.writeFileSync(file, `exports.register = (api) => api.registerDataset({ name: 'from-plugin', kind: 'tokens', classes: [], load: () => ({ length: 0, get() {} }) });`);
    loadPlugins([file]);
    assert.equal(getDataset('from-plugin').kind, 'tokens');
  });
});
