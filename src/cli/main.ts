#!/usr/bin/env node
// The `tsdistill` command: train a teacher or a plain student, distill a student, evaluate weights.
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, writeFileAtomic } from '../torch';
import { loadWeights, closest } from '../nn';
import { DataLoader, ImageDataset, loadFashionMnist, loadMnist, normalize, randomCrop, randomHorizontalFlip } from '../data';
import { createModel, registerBuiltinModels } from '../models';
import { evaluate, trainModel } from '../distill';
import { RunConfig, loadConfig } from './config';

const COMMANDS = ['train', 'distill', 'eval'];
const USAGE = `usage: tsdistill <command> <config.yaml|json> [options]
commands:
  train     train a model alone: --role teacher (default) or --role student
  distill   train the student against the frozen teacher (teacher.checkpoint, or the teacher run's best weights)
  eval      test accuracy of --weights FILE (default: the run's best weights) for --role teacher|student
options:
  --set key.path=value   override a config value (repeatable)
  --epochs N  --threads N  --seed N  --out DIR  --device cpu|cuda
  --resume               continue the run in the output directory
  --force                overwrite a finished or interrupted run
  --json                 print the run summary as one JSON line at the end`;

const STATS = { mnist: [0.1307, 0.3081], 'fashion-mnist': [0.286, 0.353] } as const;

function datasets(cfg: RunConfig): { train: ImageDataset; test: ImageDataset } {
  const load = cfg.data.dataset === 'mnist' ? loadMnist : loadFashionMnist;
  return { train: load({ split: 'train', limit: cfg.data.limit }), test: load({ split: 'test' }) };
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      set: { type: 'string', multiple: true }, epochs: { type: 'string' }, threads: { type: 'string' }, seed: { type: 'string' },
      out: { type: 'string' }, device: { type: 'string' }, role: { type: 'string' }, weights: { type: 'string' },
      resume: { type: 'boolean' }, force: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, file] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (!COMMANDS.includes(command)) throw new Error(`unknown command '${command}'; did you mean '${closest(command, COMMANDS, 1)[0]}'?\n${USAGE}`);
  if (!file) throw new Error(`tsdistill ${command}: a config file is required\n${USAGE}`);
  const sets = [...(values.set ?? [])];
  if (values.epochs) sets.push(`training.epochs=${values.epochs}`);
  if (values.threads) sets.push(`training.threads=${values.threads}`);
  if (values.seed) sets.push(`seed=${values.seed}`);
  if (values.device) sets.push(`training.device=${values.device}`);
  if (values.out) sets.push(`output.dir=${values.out}`);
  const cfg = loadConfig(file, sets);
  if (cfg.training.device !== 'cpu') throw new Error(`training.device '${cfg.training.device}': only cpu runs are wired in the CLI so far`);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  registerBuiltinModels();
  const role = (values.role ?? (command === 'distill' ? 'student' : 'teacher')) as 'teacher' | 'student';
  if (role !== 'teacher' && role !== 'student') throw new Error(`--role must be teacher or student, got '${role}'`);
  const spec = role === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`${file}: no '${role}' section`);
  const runDir = path.join(cfg.output.dir, command === 'distill' ? 'distilled' : role);
  const teacherBest = cfg.teacher?.checkpoint ?? path.join(cfg.output.dir, 'teacher', 'best.safetensors');

  const { train, test } = datasets(cfg);
  const stats = STATS[cfg.data.dataset];
  const norm = cfg.data.normalize ? [normalize([stats[0]], [stats[1]])] : [];
  const aug = [
    ...(cfg.data.augment?.crop ? [randomCrop(28, cfg.data.augment.crop)] : []),
    ...(cfg.data.augment?.flip ? [randomHorizontalFlip()] : []),
  ];
  manualSeed(cfg.seed); // initial weights follow the run's seed
  const model = createModel(spec.model, { numClasses: 10, ...spec.options });
  try {
    if (command === 'eval') {
      const weights = values.weights ?? (role === 'teacher' ? teacherBest : path.join(runDir, 'best.safetensors'));
      loadWeights(model, weights);
      const acc = await evaluate(model, test, norm);
      console.log(`${spec.model} (${weights}): test accuracy ${acc.toFixed(2)} % on ${test.length} images`);
      if (values.json) console.log(JSON.stringify({ model: spec.model, weights, test_acc: acc }));
      return 0;
    }
    if (spec.checkpoint && command === 'train') loadWeights(model, spec.checkpoint);
    let teacher;
    if (command === 'distill') {
      if (!cfg.teacher) throw new Error(`${file}: distill needs a 'teacher' section`);
      teacher = createModel(cfg.teacher.model, { numClasses: 10, ...cfg.teacher.options });
      try {
        loadWeights(teacher, teacherBest);
      } catch (e) {
        throw new Error(`${(e as Error).message}\nTrain the teacher first (tsdistill train ${file} --role teacher) or set teacher.checkpoint.`);
      }
    }
    const loader = new DataLoader(train, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm] });
    const summary = await trainModel({
      name: `${cfg.name}/${command === 'distill' ? 'distilled' : role}`,
      model, train: loader, test, testTransforms: norm, epochs: cfg.training.epochs, seed: cfg.seed,
      optimizer: { kind: cfg.training.optimizer, lr: cfg.training.lr, momentum: cfg.training.momentum, weightDecay: cfg.training.weightDecay },
      schedule: cfg.training.schedule, outDir: runDir, resume: values.resume, force: values.force, checkpointEvery: cfg.output.checkpointEvery,
      teacher, kd: command === 'distill' ? cfg.distill : undefined,
    });
    teacher?.dispose();
    writeFileAtomic(path.join(runDir, 'summary.json'), JSON.stringify(summary, null, 2));
    console.log(`${summary.name}: best test accuracy ${summary.best_test_acc.toFixed(2)} % (epoch ${summary.best_epoch}), weights in ${runDir}/best.safetensors`);
    if (values.json) console.log(JSON.stringify(summary));
    return 0;
  } finally {
    model.dispose();
    train.dispose();
    test.dispose();
  }
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('\ninterrupted: the last finished epoch is saved; continue with --resume\n');
  process.exit(130);
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`tsdistill: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
