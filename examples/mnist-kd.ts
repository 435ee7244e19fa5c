// A real distillation on real data: a LeNet-5 teacher trained on MNIST teaches a half-width student
// (Hinton et al. 2015: loss = α·CE(student, labels) + (1−α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T))).
// Trains the teacher, a plain student and a distilled student, then prints the verdict.
//   node dist/examples/mnist-kd.js [--epochs 5] [--threads 2] [--out runs/mnist-kd]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, manualSeed, nextTick, noGrad, saveSafetensors, setNumThreads, tidy, writeFileAtomic } from '../src/torch';
import { F, Module } from '../src/nn';
import { SGD } from '../src/optim';
import { DataLoader, ImageDataset, loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { responseKD } from '../src/distill';

const arg = (name: string, dflt: number | string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : String(dflt);
};
const EPOCHS = Number(arg('epochs', 5));
const THREADS = Number(arg('threads', 2));
const OUT = String(arg('out', 'runs/mnist-kd'));
const T = 4;
const ALPHA = 0.3;
const MNIST_NORM = normalize([0.1307], [0.3081]);

async function evaluate(model: Module, test: ImageDataset): Promise<number> {
  model.eval();
  let correct = 0;
  for (const b of new DataLoader(test, { batchSize: 1000, transforms: [MNIST_NORM] })) {
    correct += tidy(() => noGrad(() => model.call(b.x).argmax(1).eq(b.y).sum().item()));
    b.x.dispose();
    b.y.dispose();
    await nextTick();
  }
  model.train();
  return (100 * correct) / test.length;
}

async function train(
  name: string,
  model: Module,
  trainSet: ImageDataset,
  test: ImageDataset,
  lossFn: (logits: Tensor, x: Tensor, y: Tensor) => Tensor,
): Promise<{ acc: number; best: number; epochS: number }> {
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const loader = new DataLoader(trainSet, { batchSize: 64, shuffle: true, seed: 1, transforms: [MNIST_NORM] });
  let best = 0;
  let acc = 0;
  let epochTime = 0;
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    loader.setEpoch(epoch);
    const t0 = Date.now();
    let lossSum = 0;
    let steps = 0;
    for await (const b of loader) {
      lossSum += tidy(() => {
        const loss = lossFn(model.call(b.x), b.x, b.y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        return loss.item();
      });
      steps++;
      b.x.dispose();
      b.y.dispose();
    }
    epochTime += (Date.now() - t0) / 1000;
    acc = await evaluate(model, test);
    best = Math.max(best, acc);
    console.log(`${name.padEnd(12)} epoch ${epoch + 1}/${EPOCHS}  loss ${(lossSum / steps).toFixed(4)}  test acc ${acc.toFixed(2)} %  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  opt.dispose();
  saveSafetensors(path.join(OUT, `${name}.safetensors`), model.stateDict(), { model: model.constructor.name, test_acc: acc.toFixed(2) });
  return { acc, best, epochS: epochTime / EPOCHS };
}

async function main() {
  setNumThreads(THREADS);
  manualSeed(0);
  fs.mkdirSync(OUT, { recursive: true });
  const trainSet = loadMnist({ split: 'train' });
  const test = loadMnist({ split: 'test' });
  console.log(`MNIST: ${trainSet.length} train / ${test.length} test images; ${EPOCHS} epochs each, ${THREADS} threads`);

  const teacher = new LeNet5();
  const t = await train('teacher', teacher, trainSet, test, (logits, _x, y) => F.crossEntropy(logits, y));
  teacher.eval().requiresGrad_(false);

  manualSeed(1);
  const plain = new LeNet5Half(10, true);
  const p = await train('student', plain, trainSet, test, (logits, _x, y) => F.crossEntropy(logits, y));

  manualSeed(1);
  const kdStudent = new LeNet5Half(10, true);
  const kd = responseKD({ temperature: T, alpha: ALPHA });
  const k = await train('kd-student', kdStudent, trainSet, test, (logits, x, y) => {
    const tl = tidy(() => noGrad(() => teacher.call(x))); // frees the teacher's activations at once
    return kd(logits, tl, y).loss;
  });

  const gap = (k.best - p.best) / (t.best - p.best);
  const rows = [
    ['model', 'params', 'best test acc', 'test errors', 'epoch (s)'],
    ['teacher LeNet-5', String(teacher.numParameters()), `${t.best.toFixed(2)} %`, String(Math.round((100 - t.best) * 100)), t.epochS.toFixed(1)],
    ['student alone', String(plain.numParameters()), `${p.best.toFixed(2)} %`, String(Math.round((100 - p.best) * 100)), p.epochS.toFixed(1)],
    [`student + KD (T=${T}, α=${ALPHA})`, String(kdStudent.numParameters()), `${k.best.toFixed(2)} %`, String(Math.round((100 - k.best) * 100)), k.epochS.toFixed(1)],
  ];
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log('');
  for (const [i, r] of rows.entries()) {
    console.log(r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
    if (i === 0) console.log(w.map((n) => '-'.repeat(n)).join('  '));
  }
  console.log(`\nteacher gap closed by distillation: ${(100 * gap).toFixed(1)} %   (checkpoints in ${OUT}/)`);
  const summary = { teacher_acc: t.best, plain_acc: p.best, kd_acc: k.best, gap_closed: gap, teacher_epoch_s: t.epochS, plain_epoch_s: p.epochS, kd_epoch_s: k.epochS, epochs: EPOCHS };
  writeFileAtomic(path.join(OUT, 'summary.json'), JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
  for (const m of [teacher, plain, kdStudent]) m.dispose();
  trainSet.dispose();
  test.dispose();
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
