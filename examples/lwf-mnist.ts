// Learning without Forgetting against fine-tuning and joint training on split MNIST (5 tasks of 2 digits: 0/1, 2/3,
// 4/5, 6/7, 8/9) and permuted MNIST (10 tasks, each the ten digits under its own pixel permutation, the first one
// unpermuted), in the Task-IL, Domain-IL and Class-IL scenarios, as stages of the engine (src/distill/lifelong.ts).
// The setting follows van de Ven & Tolias (2019) and their code: an MLP with two hidden layers of 400 (split) or 1,000
// (permuted) units, Adam (lr 0.001 split, 0.0001 permuted; batch 128), pixels in [0, 1] (permuted: padded to 32×32),
// LwF at T = 2 with the current task weighted 1/k and the distillation (k−1)/k at task k; they train 2,000 (split) or
// 5,000 (permuted) iterations per task, the defaults here.
//   npm run build && node dist/examples/lwf-mnist.js [--experiment split|permuted] [--scenario task,domain,class]
//     [--method lwf,finetune,joint] [--iters N] [--seeds 0,1,2] [--lr X] [--batch 128] [--class-kd all|old]
//     [--test-limit N] [--shuffle-digits] [--threads 1] [--out runs/lwf-<experiment>] [--resume]
// Each run (scenario, method, seed) is a chain of stages in <out>/<scenario>-<method>[-<class-kd>]-<seed>; --resume
// continues interrupted chains and re-scores finished ones. Prints the mean test accuracy over the tasks after the last
// one (%, mean ± sd over seeds; on the first N test images of each task with --test-limit) beside the paper's, and
// writes <out>/lwf-<experiment>.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualSeed, setNumThreads, writeFileAtomic } from '../src/torch';
import { loadWeights } from '../src/nn';
import { Rng, loadMnist } from '../src/data';
import { Mlp } from '../src/models/mlp';
import { runStages } from '../src/distill';
import {
  type LifelongMethod, type LifelongScenario, type LifelongTask, lifelongAccuracy, lifelongStages, outputUnits, permutedMnistTasks, splitMnistTasks,
} from '../src/distill/lifelong';

// van de Ven & Tolias (2019), average test accuracy after the last task (%), as quoted for this comparison
const ANCHOR: Record<string, Record<LifelongMethod, Record<LifelongScenario, number>>> = {
  split: { lwf: { task: 99.57, domain: 71.5, class: 23.85 }, finetune: { task: 87.19, domain: 59.21, class: 19.9 }, joint: { task: 99.66, domain: 98.42, class: 97.94 } },
  permuted: { lwf: { task: 69.84, domain: 72.64, class: 22.64 }, finetune: { task: 81.79, domain: 78.51, class: 17.26 }, joint: { task: 97.59, domain: 97.62, class: 97.67 } },
};
const NAMES: Record<LifelongMethod, string> = { lwf: 'LwF', finetune: 'fine-tuning', joint: 'joint' };

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? def : process.argv[i + 1];
}
function list<T extends string>(name: string, def: string, allowed: readonly T[]): T[] {
  const v = arg(name, def).split(',') as T[];
  const bad = v.find((x) => !allowed.includes(x));
  if (bad !== undefined) throw new Error(`lwf-mnist: --${name} '${bad}' is not one of ${allowed.join(', ')}`);
  return v;
}

async function main(): Promise<void> {
  const experiment = arg('experiment', 'split');
  if (experiment !== 'split' && experiment !== 'permuted') throw new Error(`lwf-mnist: --experiment must be split or permuted, got '${experiment}'`);
  const split = experiment === 'split';
  const scenarios = list('scenario', 'task,domain,class', ['task', 'domain', 'class'] as const);
  const methods = list('method', 'lwf,finetune,joint', ['lwf', 'finetune', 'joint'] as const);
  const iters = Number(arg('iters', split ? '2000' : '5000')), lr = Number(arg('lr', split ? '0.001' : '0.0001')), batch = Number(arg('batch', '128'));
  const seeds = arg('seeds', '0,1,2').split(',').map(Number), out = arg('out', `runs/lwf-${experiment}`);
  const classKd = arg('class-kd', 'all');
  if (classKd !== 'all' && classKd !== 'old') throw new Error(`lwf-mnist: --class-kd must be all or old, got '${classKd}'`);
  if (!Number.isInteger(iters) || iters < 1 || !Number.isInteger(batch) || batch < 1 || !(lr > 0) || seeds.some((s) => !Number.isInteger(s)))
    throw new Error('lwf-mnist: --iters and --batch must be positive integers, --lr positive and --seeds integers');
  const resume = process.argv.includes('--resume'), shuffle = process.argv.includes('--shuffle-digits');
  setNumThreads(Number(arg('threads', '1')));
  const testLimit = arg('test-limit', '');
  if (testLimit && !(Number.isInteger(Number(testLimit)) && Number(testLimit) > 0)) throw new Error(`lwf-mnist: --test-limit must be a positive integer, got '${testLimit}'`);
  const train = loadMnist({ split: 'train' }), test = loadMnist({ split: 'test', ...(testLimit ? { limit: Number(testLimit) } : {}) });
  const hidden = split ? 400 : 1000;
  const results: { method: LifelongMethod; scenario: LifelongScenario; seed: number; per_task: number[]; mean: number; train_s: number; tasks?: number[][] }[] = [];
  try {
    for (const scenario of scenarios)
      for (const method of methods)
        for (const seed of seeds) {
          // --shuffle-digits: the digits dealt to the 5 tasks in a seeded random order, as van de Ven & Tolias's seeds other than 0
          const order = shuffle ? [...new Rng(seed).permutation(10)] : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
          const pairs = [0, 2, 4, 6, 8].map((i) => order.slice(i, i + 2));
          const tasks: LifelongTask[] = split ? splitMnistTasks(train, test, pairs) : permutedMnistTasks(train, test, { tasks: 10, seed });
          const units = outputUnits(tasks, scenario);
          manualSeed(seed);
          const run = lifelongStages({
            model: () => new Mlp({ widths: [split ? 784 : 1024, hidden, hidden, units] }), tasks, scenario, method, iters, batchSize: batch,
            optimizer: { kind: 'adam', lr, betas: [0.9, 0.999] }, seed, classKd, log: () => {},
          });
          const dir = path.join(out, `${scenario}-${method}${method === 'lwf' && scenario === 'class' && classKd === 'old' ? '-old' : ''}-${seed}`);
          try {
            const t0 = performance.now();
            await runStages({ outDir: dir, stages: run.stages, resume, force: !resume, log: () => {} });
            const trainS = (performance.now() - t0) / 1000;
            loadWeights(run.learner, path.join(dir, `task${tasks.length}`, 'last.safetensors'));
            const perTask = lifelongAccuracy(run.learner, tasks, scenario);
            const mean = perTask.reduce((a, b) => a + b) / perTask.length;
            results.push({ method, scenario, seed, per_task: perTask, mean, train_s: trainS, ...(split ? { tasks: pairs } : {}) });
            process.stdout.write(`${scenario}-IL ${method} seed ${seed}: ${mean.toFixed(2)} % (per task ${perTask.map((a) => a.toFixed(1)).join(' / ')}; ${trainS.toFixed(0)} s)\n`);
          } finally {
            run.release();
            if (split) for (const t of tasks) { t.train.dispose(); t.test!.dispose(); }
          }
        }
  } finally {
    train.dispose();
    test.dispose();
  }
  const stat = (xs: number[]) => {
    if (!xs.length) return '—';
    const m = xs.reduce((a, b) => a + b) / xs.length;
    const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
    return `${m.toFixed(2)} ± ${sd.toFixed(2)}`;
  };
  const SC: Record<LifelongScenario, string> = { task: 'Task-IL', domain: 'Domain-IL', class: 'Class-IL' };
  const lines = [
    `${experiment} MNIST, MLP ${split ? 784 : 1024}-${hidden}-${hidden}-out, Adam lr ${lr}, batch ${batch}, ${iters} iterations per task, seeds ${seeds.join(',')}, ${testLimit ? `the first ${testLimit} test images` : 'all test images'}` +
      (scenarios.includes('class') && methods.includes('lwf') ? `, Class-IL LwF softmax over ${classKd === 'all' ? 'all seen classes' : 'old classes'}` : ''),
    '',
    `| method | ${scenarios.map((s) => `${SC[s]} (%) | paper`).join(' | ')} |`,
    `|---|${scenarios.map(() => '---:|---:').join('|')}|`,
    ...methods.map((m) => `| ${NAMES[m]} | ${scenarios.map((s) => `${stat(results.filter((x) => x.method === m && x.scenario === s).map((x) => x.mean))} | ${ANCHOR[experiment][m][s]}`).join(' | ')} |`),
  ];
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, `lwf-${experiment}.json`), JSON.stringify({ experiment, iters, lr, batch, seeds, classKd, testLimit: testLimit ? Number(testLimit) : null, results }, null, 2));
  process.stdout.write('\n' + lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify({ experiment, iters, results: results.map((r) => ({ scenario: r.scenario, method: r.method, seed: r.seed, mean: +r.mean.toFixed(2) })) }) + '\n');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
