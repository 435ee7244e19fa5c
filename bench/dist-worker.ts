// One process of bench/dist-throughput.ts: trains MODEL (zoo name) on the first STEPS × BATCH images of DATASET for
// one epoch through the engine (SGD, cross-entropy; DATASET 'random' draws images of the data set's shape instead),
// joined to the process group the environment describes, and writes {samples_per_s, epoch_s} to OUT_FILE (rank 0).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, randint, randn, setNumThreads } from '../src/torch';
import { DataLoader, TensorDataset, loadDataset, normalize, getImageDataset, registerBuiltinDatasets } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { runEngine } from '../src/distill';
import { joinProcessGroupFromEnv } from '../src/run';

async function main() {
  const env = process.env;
  setNumThreads(Number(env.THREADS ?? 1));
  const group = joinProcessGroupFromEnv();
  registerBuiltinDatasets();
  registerBuiltinModels();
  const name = env.DATASET ?? 'mnist';
  const steps = Number(env.STEPS ?? 50), batch = Number(env.BATCH ?? 64);
  manualSeed(0);
  let train: TensorDataset;
  let stats: { mean: number[]; std: number[] };
  if (name.startsWith('random:')) {
    const ds = getImageDataset(name.slice(7));
    train = new TensorDataset(randn([steps * batch, ...ds.inputShape]), randint(0, ds.classes.length, [steps * batch]));
    stats = { mean: ds.inputShape.map(() => 0).slice(0, ds.inputShape[0]), std: ds.inputShape.map(() => 1).slice(0, ds.inputShape[0]) };
  } else {
    const ds = getImageDataset(name);
    const data = loadDataset(name, steps * batch);
    data.test.dispose();
    train = data.train;
    stats = { mean: [...ds.mean], std: [...ds.std] };
  }
  const model = createModel(env.MODEL ?? 'lenet5', { numClasses: 10 });
  const loader = new DataLoader(train, { batchSize: batch, shuffle: true, seed: 0, transforms: [normalize(stats.mean, stats.std)] });
  const s = await runEngine({
    name: 'bench', roles: [{ name: 'model', model, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 } }],
    terms: [{ loss: 'ce', student: 'model.logits', teacher: 'labels' }],
    train: loader, epochs: 1, seed: 0, outDir: fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-dist-')), force: true, progress: false, log: () => {}, checkpointEvery: 0,
    overlapGradients: env.OVERLAP !== '0', syncBatchNorm: env.SYNC_BN === '1',
  });
  if (!group || group.rank === 0) fs.writeFileSync(env.OUT_FILE!, JSON.stringify({ samples_per_s: (steps * batch) / s.mean_epoch_s, epoch_s: s.mean_epoch_s }));
  group?.destroy();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
