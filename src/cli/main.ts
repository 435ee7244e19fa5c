#!/usr/bin/env node
// The `tsdistill` command: train a teacher or a plain student, distill a student, evaluate weights.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Tensor, dispose, manualSeed, nextTick, noGrad, setNumThreads, tidy, writeFileAtomic } from '../torch';
import { Module, loadWeights, closest } from '../nn';
import { BatchTransform, DataLoader, ImageDataset, loadFashionMnist, loadMnist, normalize, randomCrop, randomHorizontalFlip } from '../data';
import { createModel, registerBuiltinModels } from '../models';
import { TrainSummary, evaluate, trainModel } from '../distill';
import { RunConfig, loadConfig } from './config';

const COMMANDS = ['train', 'distill', 'eval', 'compare'];
const USAGE = `usage: tsdistill <command> <config.yaml|json> [options]
commands:
  train     train a model alone: --role teacher (default) or --role student
  distill   train the student against the frozen teacher (teacher.checkpoint, or the teacher run's best weights)
  compare   teacher vs plain student vs distilled student (trains what is missing): accuracy, size, speed,
            agreement, calibration and the share of the teacher gap closed
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
    return values.help ? 0 : 2;
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
  const data = datasets(cfg);
  try {
    const flags = { resume: values.resume, force: values.force, file };
    if (command === 'compare') {
      const result = await compare(cfg, data, flags);
      if (values.json) console.log(JSON.stringify(result));
      return 0;
    }
    if (command === 'eval') {
      const spec = role === 'teacher' ? cfg.teacher : cfg.student;
      if (!spec) throw new Error(`${file}: no '${role}' section`);
      const weights = values.weights ?? path.join(runDir(cfg, role === 'teacher' ? 'teacher' : 'student'), 'best.safetensors');
      const model = buildModel(spec, cfg.seed);
      try {
        loadWeights(model, weights);
        const acc = await evaluate(model, data.test, transformsFor(cfg).norm);
        console.log(`${spec.model} (${weights}): test accuracy ${acc.toFixed(2)} % on ${data.test.length} images`);
        if (values.json) console.log(JSON.stringify({ model: spec.model, weights, test_acc: acc }));
      } finally {
        model.dispose();
      }
      return 0;
    }
    const kind: RunKind = command === 'distill' ? 'distilled' : role;
    const summary = await runKind(cfg, kind, data, flags);
    console.log(`${summary.name}: best test accuracy ${summary.best_test_acc.toFixed(2)} % (epoch ${summary.best_epoch}), weights in ${summary.out_dir}/best.safetensors`);
    if (values.json) console.log(JSON.stringify(summary));
    return 0;
  } finally {
    data.train.dispose();
    data.test.dispose();
  }
}

type RunKind = 'teacher' | 'student' | 'distilled';
type Data = { train: ImageDataset; test: ImageDataset };
type Flags = { resume?: boolean; force?: boolean; file: string };

function runDir(cfg: RunConfig, kind: RunKind): string {
  return path.join(cfg.output.dir, kind);
}
function teacherWeights(cfg: RunConfig): string {
  return cfg.teacher?.checkpoint ?? path.join(runDir(cfg, 'teacher'), 'best.safetensors');
}
function buildModel(spec: NonNullable<RunConfig['teacher']>, seed: number): Module {
  manualSeed(seed); // initial weights follow the run's seed
  return createModel(spec.model, { numClasses: 10, ...spec.options });
}
function transformsFor(cfg: RunConfig) {
  const stats = STATS[cfg.data.dataset];
  const norm = cfg.data.normalize ? [normalize([stats[0]], [stats[1]])] : [];
  const aug = [
    ...(cfg.data.augment?.crop ? [randomCrop(28, cfg.data.augment.crop)] : []),
    ...(cfg.data.augment?.flip ? [randomHorizontalFlip()] : []),
  ];
  return { norm, aug };
}

/** Trains the teacher, the plain student or the distilled student as the config says. */
async function runKind(cfg: RunConfig, kind: RunKind, data: Data, flags: Flags): Promise<TrainSummary> {
  const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
  if (!spec) throw new Error(`${flags.file}: no '${kind === 'teacher' ? 'teacher' : 'student'}' section`);
  const model = buildModel(spec, cfg.seed);
  let teacher: Module | undefined;
  try {
    if (spec.checkpoint && kind !== 'distilled') loadWeights(model, spec.checkpoint);
    if (kind === 'distilled') {
      if (!cfg.teacher) throw new Error(`${flags.file}: distill needs a 'teacher' section`);
      teacher = createModel(cfg.teacher.model, { numClasses: 10, ...cfg.teacher.options });
      try {
        loadWeights(teacher, teacherWeights(cfg));
      } catch (e) {
        throw new Error(`${(e as Error).message}\nTrain the teacher first (tsdistill train ${flags.file} --role teacher) or set teacher.checkpoint.`);
      }
    }
    const { norm, aug } = transformsFor(cfg);
    const loader = new DataLoader(data.train, { batchSize: cfg.data.batchSize, shuffle: true, seed: cfg.seed, transforms: [...aug, ...norm] });
    const out = runDir(cfg, kind);
    const summary = await trainModel({
      name: `${cfg.name}/${kind}`, model, train: loader, test: data.test, testTransforms: norm, epochs: cfg.training.epochs, seed: cfg.seed,
      optimizer: { kind: cfg.training.optimizer, lr: cfg.training.lr, momentum: cfg.training.momentum, weightDecay: cfg.training.weightDecay },
      schedule: cfg.training.schedule, warmupEpochs: cfg.training.warmupEpochs, outDir: out, resume: flags.resume, force: flags.force, checkpointEvery: cfg.output.checkpointEvery,
      teacher, kd: kind === 'distilled' ? cfg.distill : undefined,
    });
    writeFileAtomic(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2));
    return summary;
  } finally {
    model.dispose();
    teacher?.dispose();
  }
}

interface ModelReport {
  model: string;
  acc: number;
  errors: number;
  params: number;
  checkpoint_bytes: number;
  latency_b1_ms: number;
  throughput_b256: number;
  agreement: number | null;
  ece: number;
  epoch_s: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Accuracy, errors, agreement with reference predictions and expected calibration error (15 bins). */
async function measure(model: Module, data: Data, norm: BatchTransform[], reference: Int32Array | null) {
  model.eval();
  const loader = new DataLoader(data.test, { batchSize: 1000, transforms: norm });
  const preds = new Int32Array(data.test.length);
  const bins = Array.from({ length: 15 }, () => ({ n: 0, conf: 0, correct: 0 }));
  let correct = 0, agree = 0, k = 0;
  for (const b of loader) {
    const [conf, pred, y] = tidy(() => noGrad(() => {
      const p = (model.call(b.x) as Tensor).softmax(1);
      const [c, i] = p.max(1);
      return [c.toArray(), i.toArray(), b.y.toArray()];
    }));
    dispose([b.x, b.y]);
    for (let j = 0; j < pred.length; j++, k++) {
      preds[k] = pred[j];
      const ok = pred[j] === y[j] ? 1 : 0;
      correct += ok;
      if (reference && reference[k] === pred[j]) agree++;
      const bin = bins[Math.min(14, Math.floor(conf[j] * 15))];
      bin.n++; bin.conf += conf[j]; bin.correct += ok;
    }
    await nextTick();
  }
  const n = data.test.length;
  const ece = bins.reduce((a, bn) => a + (bn.n ? (bn.n / n) * Math.abs(bn.correct / bn.n - bn.conf / bn.n) : 0), 0);
  // latency at batch 1 and throughput at batch 256
  const one = tidy(() => data.test.images.narrow(0, 0, 1).float().div(255));
  const many = tidy(() => data.test.images.narrow(0, 0, 256).float().div(255));
  const lat: number[] = [];
  for (let i = 0; i < 220; i++) {
    const t0 = process.hrtime.bigint();
    tidy(() => noGrad(() => { model.call(one); }));
    if (i >= 20) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10; i++) tidy(() => noGrad(() => { model.call(many); }));
  const throughput = (10 * 256) / (Number(process.hrtime.bigint() - t0) / 1e9);
  dispose([one, many]);
  return { acc: (100 * correct) / n, errors: n - correct, preds, agreement: reference ? (100 * agree) / n : null, ece: 100 * ece, latency: median(lat), throughput };
}

/** Teacher vs plain student vs distilled student: trains what is missing, then measures all three. */
async function compare(cfg: RunConfig, data: Data, flags: Flags): Promise<Record<string, number | string | null>> {
  const kinds: RunKind[] = ['teacher', 'student', 'distilled'];
  const summaries: Partial<Record<RunKind, TrainSummary>> = {};
  for (const kind of kinds) {
    const dir = runDir(cfg, kind);
    const done = path.join(dir, 'summary.json');
    if (kind === 'teacher' && cfg.teacher?.checkpoint) continue;
    if (fs.existsSync(done) && !flags.force) summaries[kind] = JSON.parse(fs.readFileSync(done, 'utf8'));
    else summaries[kind] = await runKind(cfg, kind, data, { ...flags, resume: true });
  }
  const { norm } = transformsFor(cfg);
  const reports: Record<RunKind, ModelReport> = {} as Record<RunKind, ModelReport>;
  let teacherPreds: Int32Array | null = null;
  for (const kind of kinds) {
    const spec = kind === 'teacher' ? cfg.teacher! : cfg.student;
    const weights = kind === 'teacher' ? teacherWeights(cfg) : path.join(runDir(cfg, kind), 'best.safetensors');
    const model = buildModel(spec, cfg.seed);
    try {
      loadWeights(model, weights);
      const m = await measure(model, data, norm, teacherPreds);
      if (kind === 'teacher') teacherPreds = m.preds;
      reports[kind] = {
        model: spec.model, acc: m.acc, errors: m.errors, params: model.numParameters(), checkpoint_bytes: fs.statSync(weights).size,
        latency_b1_ms: m.latency, throughput_b256: m.throughput, agreement: m.agreement, ece: m.ece, epoch_s: summaries[kind]?.mean_epoch_s ?? NaN,
      };
    } finally {
      model.dispose();
    }
  }
  const t = reports.teacher, p = reports.student, k = reports.distilled;
  const gap = (k.acc - p.acc) / (t.acc - p.acc);
  const rows = [
    ['', 'teacher', 'student alone', 'student + KD'],
    ['model', t.model, p.model, k.model],
    ['test accuracy (%)', ...[t, p, k].map((r) => r.acc.toFixed(2))],
    ['test errors', ...[t, p, k].map((r) => String(r.errors))],
    ['parameters', ...[t, p, k].map((r) => r.params.toLocaleString('en-US'))],
    ['checkpoint (bytes)', ...[t, p, k].map((r) => r.checkpoint_bytes.toLocaleString('en-US'))],
    ['CPU latency, batch 1 (ms)', ...[t, p, k].map((r) => r.latency_b1_ms.toFixed(3))],
    ['throughput, batch 256 (img/s)', ...[t, p, k].map((r) => r.throughput_b256.toFixed(0))],
    ['top-1 agreement with teacher (%)', '-', ...[p, k].map((r) => r.agreement!.toFixed(2))],
    ['expected calibration error (%)', ...[t, p, k].map((r) => r.ece.toFixed(2))],
    ['mean epoch time (s)', ...[t, p, k].map((r) => (Number.isFinite(r.epoch_s) ? r.epoch_s.toFixed(2) : '-'))],
  ];
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log('');
  rows.forEach((r, i) => {
    console.log(r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
    if (i === 0) console.log(w.map((x) => '-'.repeat(x)).join('  '));
  });
  console.log(`\nteacher gap closed by distillation: ${(100 * gap).toFixed(1)} %`);
  const kdSummary = summaries.distilled!;
  const result = {
    teacher_acc: t.acc, plain_acc: p.acc, kd_acc: k.acc, gap_closed: gap,
    teacher_epoch_s: Number.isFinite(t.epoch_s) ? t.epoch_s : null, plain_epoch_s: p.epoch_s, kd_epoch_s: k.epoch_s,
    kd_cached_epoch_s: kdSummary.teacher_cache && kdSummary.teacher_cache !== 'off' ? k.epoch_s : null,
    kd_teacher_cache: kdSummary.teacher_cache ?? 'off',
  };
  writeFileAtomic(path.join(cfg.output.dir, 'summary.json'), JSON.stringify({ ...result, reports }, null, 2));
  return result;
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
