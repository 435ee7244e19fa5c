// Distilling a Transformer text classifier on SST-2 (sentence sentiment, ../shared/data/sst2), the TinyBERT / MiniLM
// way: a 4-layer teacher (d = 128) teaches a 2-layer student (d = 64, ~4× fewer encoder parameters) through
//   kd        response KD on the logits only
//   kd+feat   response KD + the teacher's last hidden states (through a learned 64 → 128 projection, TinyBERT's
//             hidden-state MSE, student layer 2 ← teacher layer 4) + the last layer's self-attention distributions
//             (MiniLM's attention KL, heads paired one to one)
// against the same student trained alone. Words are tokenised with a vocabulary built from the training sentences.
// Evaluation is on the 872 labelled GLUE SST-2 dev sentences (sst2/test.tsv here).
//   npm run build && node dist/examples/sst2-minilm.js [--teacher-epochs 3] [--epochs 3] [--limit N] [--threads 2]
//                                                       [--max-len 40] [--out runs/sst2-minilm] [--device cpu|cuda]
// Prints a table and a final JSON line; each run's metrics and checkpoints are in --out.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkDevice, manualSeed, setNumThreads, writeFileAtomic } from '../src/torch';
import { Module } from '../src/nn';
import { DataLoader, TensorDataset, WordVocab, loadSst2, sharedDataDir } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { FeatureMatcher, TrainSummary, trainModel } from '../src/distill';
import { tensor } from '../src/torch';

const arg = (name: string, dflt: number | string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : String(dflt);
};
const TEACHER_EPOCHS = Number(arg('teacher-epochs', 3));
const EPOCHS = Number(arg('epochs', 3));
const LIMIT = Number(arg('limit', 0));
const THREADS = Number(arg('threads', 2));
const MAX_LEN = Number(arg('max-len', 40));
const OUT = String(arg('out', 'runs/sst2-minilm'));
const DEVICE = String(arg('device', 'cpu'));
const SEED = 0;

async function main() {
  if (!sharedDataDir()) {
    console.error('sst2-minilm: SST-2 not found (expected ../shared/data/sst2 beside the project); nothing to do');
    process.exit(2);
  }
  setNumThreads(THREADS);
  const device = checkDevice(DEVICE, '--device');
  registerBuiltinModels();
  let train = loadSst2('train');
  if (LIMIT > 0) train = train.slice(0, LIMIT);
  const test = loadSst2('test');
  const vocab = WordVocab.build(train.map((e) => e.text), { maxSize: 16000, minFreq: 2 });
  fs.mkdirSync(OUT, { recursive: true });
  vocab.save(path.join(OUT, 'vocab.json'));
  const dataset = (rows: typeof train) =>
    new TensorDataset(vocab.encodeBatch(rows.map((e) => e.text), MAX_LEN), tensor(BigInt64Array.from(rows.map((e) => BigInt(e.label)))));
  const trainSet = dataset(train);
  const testSet = dataset(test);
  console.log(`SST-2: ${train.length} training sentences, ${test.length} test; vocabulary ${vocab.size} words; max length ${MAX_LEN}`);

  const common = { vocabSize: vocab.size, numClasses: 2, maxLen: MAX_LEN, dropout: 0.1 };
  const TEACHER = { ...common, dModel: 128, heads: 4, layers: 4, dimFeedforward: 512 };
  const STUDENT = { ...common, dModel: 64, heads: 4, layers: 2, dimFeedforward: 256 };
  const optimizer = { kind: 'adamw' as const, lr: 5e-4, momentum: 0, weightDecay: 0.01 };
  const run = async (name: string, model: Module, epochs: number, extra: Partial<Parameters<typeof trainModel>[0]> = {}): Promise<TrainSummary> =>
    trainModel({
      model, name, epochs, seed: SEED, optimizer, schedule: 'cosine', warmupEpochs: 0,
      train: new DataLoader(trainSet, { batchSize: 64, shuffle: true, seed: SEED, device }),
      test: testSet, testTransforms: [], outDir: path.join(OUT, name), force: true, ...extra,
    });

  manualSeed(SEED);
  const teacher = createModel('transformer', TEACHER).to(device);
  const t = await run('teacher', teacher, TEACHER_EPOCHS);
  teacher.eval();
  teacher.requiresGrad_(false);

  const kd = { temperature: 2, alpha: 0.5, softLoss: 'kl' as const, cache: false };
  const rows: { name: string; params: number; summary: TrainSummary }[] = [{ name: 'teacher', params: teacher.numParameters(), summary: t }];
  for (const kind of ['student', 'kd', 'kd+feat'] as const) {
    manualSeed(SEED + 1); // every student starts from the same weights
    const student = createModel('transformer', STUDENT).to(device);
    const features =
      kind === 'kd+feat'
        ? new FeatureMatcher(student, teacher, [
            { teacher: 'encoder.layers.3', student: 'encoder.layers.1', loss: 'hidden_mse', weight: 1 },
            { teacher: 'encoder.layers.3.self_attn#1', student: 'encoder.layers.1.self_attn#1', loss: 'attention_kl', weight: 1 },
          ])
        : undefined;
    const summary = await run(kind, student, EPOCHS, kind === 'student' ? {} : { teacher, kd, features });
    rows.push({ name: kind, params: student.numParameters(), summary });
    features?.dispose();
    student.dispose();
  }

  console.log(`\n| model | parameters | best test acc (%) | epochs | epoch (s) |\n|---|---:|---:|---:|---:|`);
  for (const r of rows)
    console.log(`| ${r.name} | ${r.params.toLocaleString('en-US')} | ${r.summary.best_test_acc.toFixed(2)} | ${r.summary.epochs} | ${r.summary.mean_epoch_s.toFixed(1)} |`);
  const out = { device, data: 'sst2', train: train.length, test: test.length, vocab: vocab.size, max_len: MAX_LEN, runs: Object.fromEntries(rows.map((r) => [r.name, { params: r.params, best_test_acc: r.summary.best_test_acc, epochs: r.summary.epochs, epoch_s: r.summary.mean_epoch_s }])) };
  writeFileAtomic(path.join(OUT, 'summary.json'), JSON.stringify(out, null, 2));
  console.log(JSON.stringify(out));
  teacher.dispose();
  trainSet.dispose();
  testSet.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
