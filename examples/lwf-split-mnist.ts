// Learning without Forgetting on split MNIST (5 tasks of 2 digits: 0/1, 2/3, 4/5, 6/7, 8/9), task-incremental and
// class-incremental, against fine-tuning, as the stages of the engine (src/distill/lifelong.ts). The setting follows
// van de Ven & Tolias (2019): an MLP with two hidden layers of 400 units, Adam (lr 0.001, batch 128), LwF at T = 2, the
// current task weighted 1/k and the old tasks' distillation (k−1)/k at task k; they train 2,000 iterations per task
// (about 21 epochs), the default here is 2 epochs per task for a CPU.
//   npm run build && node dist/examples/lwf-split-mnist.js [--epochs 2] [--seeds 0,1,2] [--threads 1] [--out runs/lwf-split-mnist]
// Prints the mean accuracy over the 5 tasks after the last one (%, mean ± sd over seeds) beside the paper's numbers,
// and writes <out>/lwf-split-mnist.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualSeed, setNumThreads, writeFileAtomic } from '../src/torch';
import { loadMnist, normalize } from '../src/data';
import { Mlp } from '../src/models/mlp';
import { runStages } from '../src/distill';
import { type LifelongMethod, type LifelongScenario, classSubset, lifelongAccuracy, lifelongStages } from '../src/distill/lifelong';

const ANCHOR: Record<string, Record<LifelongScenario, number>> = { lwf: { task: 99.57, class: 23.85 }, finetune: { task: 87.19, class: 19.9 } };

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? def : process.argv[i + 1];
}

async function main(): Promise<void> {
  const epochs = Number(arg('epochs', '2')), seeds = arg('seeds', '0,1,2').split(',').map(Number), out = arg('out', 'runs/lwf-split-mnist');
  if (!Number.isInteger(epochs) || epochs < 1 || seeds.some((s) => !Number.isInteger(s))) throw new Error('lwf-split-mnist: --epochs must be a positive integer and --seeds integers');
  setNumThreads(Number(arg('threads', '1')));
  const train = loadMnist({ split: 'train' }), test = loadMnist({ split: 'test' });
  const norm = [normalize([0.1307], [0.3081])];
  const split = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]];
  const tasks = split.map((c) => ({ name: c.join(''), classes: c, train: classSubset(train, c) }));
  const tests = split.map((c) => ({ classes: c, test: classSubset(test, c) }));
  const results: { method: LifelongMethod; scenario: LifelongScenario; seed: number; per_task: number[]; mean: number }[] = [];
  try {
    for (const scenario of ['task', 'class'] as const)
      for (const method of ['lwf', 'finetune'] as const)
        for (const seed of seeds) {
          manualSeed(seed);
          const run = lifelongStages({
            model: () => new Mlp({ widths: [784, 400, 400, 10] }), tasks, scenario, method, epochs, batchSize: 128,
            optimizer: { kind: 'adam', lr: 1e-3, betas: [0.9, 0.999] }, transforms: norm, seed, log: () => {},
          });
          try {
            await runStages({ outDir: path.join(out, `${scenario}-${method}-${seed}`), stages: run.stages, force: true, log: () => {} });
            const perTask = lifelongAccuracy(run.learner, tests, scenario, norm);
            const mean = perTask.reduce((a, b) => a + b) / perTask.length;
            results.push({ method, scenario, seed, per_task: perTask, mean });
            process.stdout.write(`${scenario}-IL ${method} seed ${seed}: ${mean.toFixed(2)} % (per task ${perTask.map((a) => a.toFixed(1)).join(' / ')})\n`);
          } finally {
            run.release();
          }
        }
  } finally {
    for (const t of tasks) t.train.dispose();
    for (const t of tests) t.test.dispose();
    train.dispose();
    test.dispose();
  }
  const stat = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b) / xs.length;
    const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
    return `${m.toFixed(2)} ± ${sd.toFixed(2)}`;
  };
  const lines = [
    `split MNIST, 5 tasks × 2 digits, MLP 784-400-400-10, Adam lr 0.001, batch 128, ${epochs} epoch(s) per task, seeds ${seeds.join(',')}`,
    '',
    '| method | Task-IL (%) | van de Ven & Tolias | Class-IL (%) | van de Ven & Tolias |',
    '|---|---:|---:|---:|---:|',
    ...(['lwf', 'finetune'] as const).map((m) => {
      const r = (s: LifelongScenario) => stat(results.filter((x) => x.method === m && x.scenario === s).map((x) => x.mean));
      return `| ${m === 'lwf' ? 'LwF' : 'fine-tuning'} | ${r('task')} | ${ANCHOR[m].task} | ${r('class')} | ${ANCHOR[m].class} |`;
    }),
  ];
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, 'lwf-split-mnist.json'), JSON.stringify({ epochs, seeds, results }, null, 2));
  process.stdout.write('\n' + lines.join('\n') + '\n');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
