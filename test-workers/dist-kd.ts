// A rank of the data-parallel tests (started by test/dist.test.ts through the launcher, or alone): one epoch of KD
// from a frozen LeNet-5 into the half-width LeNet on 300 MNIST images (the last batch smaller than the others),
// through the engine, into OUT_DIR. Joins the process group the environment describes.
// STUDENT=bn trains a small convolutional student with BatchNorm instead; SYNC_BN=1 synchronises its BatchNorm over
// the ranks; VIEWS=1 distils on cached teacher views of randomly cropped and flipped images; OVERLAP=0 all-reduces the gradients after the backward pass instead of during it.
//   OUT_DIR=... [BATCH=64] [EPOCHS=1] [RESUME=1] [STEP_DELAY_MS=0] [STUDENT=bn] [SYNC_BN=1] [OVERLAP=0] node dist/test-workers/dist-kd.js
import { manualSeed, setNumThreads } from '../src/torch';
import { DataLoader, MNIST_STATS, loadMnist, normalize, randomCrop, randomHorizontalFlip } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { runEngine, trainModel } from '../src/distill';
import { BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../src/nn';
import { joinProcessGroupFromEnv } from '../src/run';

async function main() {
  setNumThreads(1);
  const group = joinProcessGroupFromEnv();
  manualSeed(0);
  const teacher = new LeNet5();
  const student =
    process.env.STUDENT === 'bn'
      ? new Sequential(new Conv2d(1, 8, 5), new BatchNorm2d(8), new ReLU(), new MaxPool2d(2), new Conv2d(8, 16, 5), new BatchNorm2d(16), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(256, 10))
      : new LeNet5Half();
  const train = loadMnist({ split: 'train', limit: Number(process.env.LIMIT ?? 300) });
  const test = loadMnist({ split: 'test', limit: 100 });
  const delay = Number(process.env.STEP_DELAY_MS ?? 0);
  // a slow loader (STEP_DELAY_MS per batch) gives the fault tests time to kill a rank mid-epoch
  class SlowLoader extends DataLoader {
    override batchAt(b: number) {
      const t = Date.now() + delay;
      while (Date.now() < t);
      return super.batchAt(b);
    }
  }
  const loader = new SlowLoader(train, { batchSize: Number(process.env.BATCH ?? 64), shuffle: true, seed: 3, transforms: [normalize([...MNIST_STATS.mean], [...MNIST_STATS.std])] });
  if (process.env.VIEWS === '1') {
    // KD on cached teacher views (random crop + flip): trainModel builds the view cache on rank 0, every rank reads it
    const aug = new DataLoader(train, { batchSize: Number(process.env.BATCH ?? 64), shuffle: true, seed: 3, transforms: [randomCrop(28, 2), randomHorizontalFlip(), normalize([...MNIST_STATS.mean], [...MNIST_STATS.std])] });
    const s = await trainModel({
      name: 'dist-views', model: student, teacher: teacher.eval(), train: aug, test, testTransforms: [normalize([...MNIST_STATS.mean], [...MNIST_STATS.std])],
      epochs: Number(process.env.EPOCHS ?? 1), seed: 0, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 5e-4 }, schedule: 'constant',
      outDir: process.env.OUT_DIR!, force: true, kd: { temperature: 4, alpha: 0.3, softLoss: 'kl', cache: 'views', views: 3, topk: 4 },
      cacheDir: `${process.env.OUT_DIR}-cache`, progress: false, log: () => {},
    });
    if (process.env.PRINT === '1' && (!group || group.rank === 0)) process.stdout.write(JSON.stringify(s) + '\n');
    group?.destroy();
    return;
  }
  const summary = await runEngine({
    name: 'dist-kd',
    roles: [{ name: 'student', model: student, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 5e-4 } }, { name: 'teacher', model: teacher, cache: true }],
    terms: [
      { loss: 'ce', name: 'hard', student: 'student.logits', teacher: 'labels', weight: 0.3, metric: 'hard' },
      { loss: 'kl', name: 'soft', student: 'student.logits', teacher: 'teacher.logits', weight: 0.7, options: { temperature: 4 }, metric: 'soft' },
    ],
    train: loader, test, epochs: Number(process.env.EPOCHS ?? 1), seed: 0, outDir: process.env.OUT_DIR!, resume: process.env.RESUME === '1', force: process.env.RESUME !== '1',
    checkpointEverySteps: 2, progress: false, log: () => {},
    overlapGradients: process.env.OVERLAP !== '0', syncBatchNorm: process.env.SYNC_BN === '1',
  });
  if (process.env.PRINT === '1' && (!group || group.rank === 0)) process.stdout.write(JSON.stringify(summary) + '\n');
  group?.destroy();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
