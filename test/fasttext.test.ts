// The fastText-style text model (src/models/fasttext.ts) and text as a data kind of configurations, distill(),
// compare and export: a TSV written by the test, the model trained from a configuration, exported to ONNX and run in
// onnxruntime, distilled with distill(), and compared. SST-2 from the shared data folder when present.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Tensor, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { loadWeights } from '../src/nn';
import { TextDataset, sharedDataDir } from '../src/data';
import { FastText, createModel, registerBuiltinModels } from '../src/models';
import { distill } from '../src/distill';
import { buildModel, compareFromConfig, datasetOf, inputOf, loadConfigData, modelOptions, runExport, runFromConfig, validateConfig } from '../src/run';
import { checkLeaks } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-fasttext-'));
process.env.TSDISTILL_CACHE = path.join(root, 'cache');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const quiet = { progress: false, log: () => {} };

const POS = ['good', 'great', 'lovely', 'fine', 'superb'];
const NEG = ['bad', 'awful', 'poor', 'dull', 'sad'];
const FILL = ['the', 'film', 'was', 'a', 'plot', 'very', 'and', 'it'];
/** `n` sentences: label pos or neg, one or two words of the class among filler words. */
function sentences(n: number, seed: number): string[] {
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const pos = (i + seed) % 2 === 0;
    const words = [FILL[(i * 3 + seed) % FILL.length], (pos ? POS : NEG)[(i * 7 + seed) % 5], FILL[(i * 5 + 1) % FILL.length], (pos ? POS : NEG)[(i + seed * 3) % 5]];
    rows.push(`${words.join(' ')}\t${pos ? 'pos' : 'neg'}`);
  }
  return rows;
}
const dir = path.join(root, 'text');
fs.mkdirSync(dir);
fs.writeFileSync(path.join(dir, 'train.tsv'), ['text\tlabel', ...sentences(80, 0)].join('\n') + '\n');
fs.writeFileSync(path.join(dir, 'test.tsv'), ['text\tlabel', ...sentences(20, 1)].join('\n') + '\n');

describe('fasttext model', () => {
  checkLeaks();

  it('averages the embeddings of the ids that are not padding', () => {
    manualSeed(0);
    const m = new FastText({ vocabSize: 20, numClasses: 3, dim: 4 });
    const [a, b] = tidy(() =>
      noGrad(() => [m.call(tensor(BigInt64Array.from([5n, 6n, 0n, 0n]), { shape: [1, 4] })).toArray(), m.call(tensor(BigInt64Array.from([6n, 5n]), { shape: [1, 2] })).toArray()]),
    );
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `${a} vs ${b}`);
    assert.throws(() => tidy(() => m.call(tensor([[1.5]]))), /FastText: expected int64 ids \[B, L\], got float32 \[1, 1\]/);
    m.dispose();
    registerBuiltinModels();
    assert.throws(() => createModel('fasttext', { numClasses: 2 }), /fasttext: options\.vocabSize is required/);
  });
});

describe('text data in configurations, distill(), compare and export', () => {
  checkLeaks();
  const file = path.join(dir, 'cfg.yaml');
  const raw = {
    name: 'text',
    data: { train: 'train.tsv', test: 'test.tsv', tokenizer: 'words', ngrams: 2, buckets: 512, maxLen: 16, batchSize: 16 },
    teacher: { model: 'fasttext', options: { dim: 32 } },
    student: { model: 'fasttext', options: { dim: 8 } },
    training: { epochs: 8, lr: 0.5, momentum: 0.9 },
    output: { dir: path.join(dir, 'runs') },
  };

  it('a TSV trains a fastText student; the models get the vocabulary, padding id and classes of the data', async () => {
    const cfg = validateConfig(raw, file);
    const info = datasetOf(cfg);
    assert.equal(info.kind, 'text');
    assert.deepEqual(info.classes, ['neg', 'pos']);
    const opts = modelOptions(cfg, cfg.student);
    assert.equal(opts.numClasses, 2);
    assert.equal(opts.padId, 0);
    assert.equal(opts.vocabSize, (info.kind === 'text' && info.encoder!.vocabSize) || -1);
    assert.deepEqual(inputOf(cfg), { shape: [16 + 15], dtype: 'int64' });
    const data = loadConfigData(cfg);
    try {
      assert.ok(data.train instanceof TextDataset);
      assert.equal(data.train.length, 80);
      manualSeed(0);
      const s = await runFromConfig(cfg, 'student', data, { file, force: true, ...quiet });
      assert.ok(s.best_test_acc >= 90, `the class words decide the label: ${s.best_test_acc} %`);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
    assert.throws(() => validateConfig({ ...raw, data: { ...raw.data, augment: { flip: true } } }, file), /data\.augment applies to images; .* is a text data set/);
  });

  it('JSONL text and a tokenizer.json relative to the configuration file', () => {
    const sub = path.join(dir, 'jsonl');
    fs.mkdirSync(sub, { recursive: true });
    const line = (t: string, l: string) => JSON.stringify({ text: t, label: l });
    fs.writeFileSync(path.join(sub, 'train.jsonl'), [line('good day', 'pos'), line('bad day', 'neg'), line('good film', 'pos'), line('bad film', 'neg')].join('\n'));
    fs.writeFileSync(path.join(sub, 'test.jsonl'), [line('good', 'pos'), line('bad', 'neg')].join('\n'));
    fs.writeFileSync(path.join(sub, 'tok.json'), JSON.stringify({ model: { type: 'WordLevel', unk_token: '[UNK]', vocab: { '[PAD]': 0, '[UNK]': 1, good: 2, bad: 3 } } }));
    const cfg = validateConfig({ data: { train: 'train.jsonl', test: 'test.jsonl', tokenizer: 'tok.json', maxLen: 4 }, student: { model: 'fasttext' } }, path.join(sub, 'c.yaml'));
    assert.equal(cfg.data.tokenizer, path.join(sub, 'tok.json'));
    const info = datasetOf(cfg);
    assert.ok(info.kind === 'text' && info.encoder);
    assert.deepEqual(info.encoder.encode('good day, bad'), [2, 1, 1, 3]);
    assert.deepEqual(info.classes, ['neg', 'pos']);
    assert.throws(
      () => validateConfig({ data: { train: 'train.jsonl', test: 'test.jsonl', labelColumn: 'y' }, student: { model: 'fasttext' } }, path.join(sub, 'c.yaml')),
      /train\.jsonl:1: expected \{"text": string, "y": string or number\}/,
    );
  });

  it('exports the trained student to ONNX; onnxruntime computes what libtorch computes', async () => {
    const cfg = validateConfig(raw, file);
    fs.writeFileSync(path.join(dir, 'runs', 'config.json'), JSON.stringify(cfg));
    const out = path.join(dir, 'export', 'student.onnx');
    const r = await runExport({ source: path.join(dir, 'runs', 'student'), format: 'onnx', out });
    const card = JSON.parse(fs.readFileSync(r.card, 'utf8'));
    assert.equal(card.input.dtype, 'int64');
    assert.equal(card.input.preprocessing.tokenizer.kind, 'words');
    assert.deepEqual(card.output.classes, ['neg', 'pos']);
    const data = loadConfigData(cfg);
    const model = buildModel(cfg, 'student');
    const session = await ort.InferenceSession.create(out, { intraOpNumThreads: 1 });
    try {
      loadWeights(model, path.join(dir, 'runs', 'student', 'best.safetensors'));
      model.eval();
      const x = (data.test as TextDataset).ids.narrow(0, 0, 5);
      const expected = tidy(() => noGrad(() => (model.call(x) as Tensor).toArray()));
      const got = (await session.run({ input: new ort.Tensor('int64', x.data() as BigInt64Array, x.shape) })).logits;
      x.dispose();
      assert.deepEqual([...got.dims], [5, 2]);
      const diff = Math.max(...expected.map((e, i) => Math.abs(e - (got.data as Float32Array)[i])));
      assert.ok(diff <= 1e-5, `max |diff| ${diff}`);
    } finally {
      await session.release();
      model.dispose();
      data.train.dispose();
      data.test.dispose();
    }
  });

  it('distill() takes text data: strings in, byte n-grams, zoo specs sized by the data', async () => {
    const s = await distill({
      teacher: { model: 'fasttext', options: { dim: 16 } }, student: { model: 'fasttext', options: { dim: 4 } },
      data: { train: path.join(dir, 'train.tsv'), test: path.join(dir, 'test.tsv'), tokenizer: 'bytes', ngrams: 3, buckets: 1024, maxLen: 48 },
      outDir: path.join(dir, 'kd'), epochs: 2, batchSize: 16, optimizer: { lr: 0.5 }, ...quiet,
    });
    assert.equal(s.epochs, 2);
    await assert.rejects(
      distill({ teacher: { model: 'fasttext' }, student: { model: 'fasttext' }, data: { train: path.join(dir, 'train.tsv'), test: path.join(dir, 'test.tsv') }, transforms: [], testTransforms: [{ name: 'x', random: false, apply: (x) => x }], outDir: path.join(dir, 'kd2'), ...quiet }),
      /distill: transforms apply to images; the data is text/,
    );
  });

  it('compare: teacher, student alone and distilled student on text', async () => {
    const cfg = validateConfig({ ...raw, training: { ...raw.training, epochs: 3 }, output: { dir: path.join(dir, 'cmp') } }, file);
    const data = loadConfigData(cfg);
    try {
      const { result, reports } = await compareFromConfig(cfg, data, { file, force: true, ...quiet });
      assert.ok(result.teacher_acc > 50 && Number.isFinite(result.kd_acc), JSON.stringify(result));
      assert.equal(reports.distilled.model, 'fasttext');
      assert.ok(reports.student.agreement !== null);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });

  it('SST-2 from the shared data folder: a fastText student of word bigrams, 10,000 sentences, 3 epochs', async (t) => {
    const shared = sharedDataDir();
    if (!shared || !fs.existsSync(path.join(shared, 'sst2', 'train.tsv'))) return t.skip('SST-2 is absent (../shared/data/sst2 or $TSDISTILL_SHARED_DATA/sst2)');
    const cfg = validateConfig({
      data: { train: path.join(shared, 'sst2', 'train.tsv'), test: path.join(shared, 'sst2', 'test.tsv'), textColumn: 'sentence', ngrams: 2, buckets: 16384, maxLen: 32, limit: 10000, batchSize: 64 },
      student: { model: 'fasttext', options: { dim: 16 } }, training: { epochs: 3, optimizer: 'adam', lr: 0.02 }, output: { dir: path.join(root, 'sst2') },
    }, 'sst2.yaml');
    assert.deepEqual(datasetOf(cfg).classes, ['0', '1']);
    const data = loadConfigData(cfg);
    try {
      assert.equal(data.train.length, 10000);
      assert.equal(data.test.length, 872);
      manualSeed(0);
      const s = await runFromConfig(cfg, 'student', data, { file: 'sst2.yaml', force: true, ...quiet });
      assert.ok(s.best_test_acc > 70, `SST-2 dev accuracy ${s.best_test_acc} %`);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });
});
