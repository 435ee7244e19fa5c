// Epoch times on Fashion-MNIST for the seed recipe (examples/seed-fashion-mnist-lenet.yaml), tsdistill against the same
// recipe in PyTorch (bench/epoch_times.py) on the same libtorch, machine and thread count. Four epoch kinds: the
// LeNet-5 teacher (cross-entropy), the plain half-width student (cross-entropy), KD with the frozen teacher run on every
// batch, and KD with the teacher's logits read from a warm cache. The tsdistill side runs trainModel (progress off,
// output in a temporary folder) and reports its epoch_s, which excludes evaluation and checkpoints. Rounds alternate
// tsdistill and PyTorch (ts, py, ts, py, ...). The table shows, per kind, the best (minimum) epoch over rounds, as
// timeit does: on a shared machine interference only ever adds time. Medians are printed beside it, and both sides are
// treated alike. The targets are checked on the best times.
//   npm run build && node dist/bench/epoch-times.js [--epochs 1] [--rounds 5] [--threads 2] [--warmup 200] [--python /usr/bin/python3]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getNumThreads, manualSeed, setNumThreads, version } from '../src/torch';
import { Module } from '../src/nn';
import { DataLoader, FASHION_MNIST_STATS, ImageDataset, loadFashionMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { TrainSummary, teacherLogits, trainModel } from '../src/distill';

const KINDS = ['teacher', 'plain', 'kd', 'kd_cached'] as const;
type Kind = (typeof KINDS)[number];
type Times = Record<Kind, number>;
const LABELS: Record<Kind, string> = {
  teacher: 'teacher (lenet5, CE)',
  plain: 'plain student (CE)',
  kd: 'KD, live teacher',
  kd_cached: 'KD, warm teacher cache',
};

// the recipe: examples/seed-fashion-mnist-lenet.yaml
const SEED = 0;
const BATCH = 64;
const OPTIMIZER = { kind: 'sgd' as const, lr: 0.01, momentum: 0.9, weightDecay: 0 };
const KD = { temperature: 4, alpha: 0.3, softLoss: 'kl' as const };

interface Args {
  pairs: number;
  epochs: number;
  rounds: number;
  threads: number;
  warmup: number;
  python: string;
}

function parseArgs(argv: string[]): Args {
  const ints: Record<string, number> = { pairs: 5, epochs: 1, rounds: 5, threads: 2, warmup: 200 };
  let python = '/usr/bin/python3';
  for (let k = 0; k < argv.length; k += 2) {
    const flag = argv[k];
    const name = flag.replace(/^--/, '');
    const value = argv[k + 1];
    if (!flag.startsWith('--') || !(name in ints || name === 'python'))
      throw new Error(`epoch-times: unknown argument '${flag}' (expected --epochs, --rounds, --pairs, --threads, --warmup or --python)`);
    if (value === undefined) throw new Error(`epoch-times: ${flag} needs a value`);
    if (name === 'python') python = value;
    else {
      const n = Number(value);
      const min = name === 'warmup' || name === 'pairs' ? 0 : 1;
      if (!Number.isInteger(n) || n < min) throw new Error(`epoch-times: ${flag} must be an integer >= ${min}, got '${value}'`);
      ints[name] = n;
    }
  }
  return { epochs: ints.epochs, rounds: ints.rounds, pairs: ints.pairs, threads: ints.threads, warmup: ints.warmup, python };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function makeModel(kind: Kind): Module {
  manualSeed(SEED);
  return kind === 'teacher' ? new LeNet5(10) : new LeNet5Half(10, true);
}

const quiet = () => {};

/** One trainModel run of `kind` on `model` for `epochs` epochs in a fresh folder under `dir`. */
async function train(kind: Kind, model: Module, teacher: Module | undefined, loader: DataLoader, test: ImageDataset, epochs: number, dir: string): Promise<TrainSummary> {
  const out = fs.mkdtempSync(path.join(dir, `${kind}-`));
  const cached = kind === 'kd_cached';
  const summary = await trainModel({
    name: kind, model, train: loader, test, testTransforms: loader.transforms, epochs, seed: SEED, optimizer: OPTIMIZER,
    schedule: 'constant', outDir: out, cacheDir: path.join(dir, 'cache'), progress: false, log: quiet, checkpointEvery: 0,
    ...(kind === 'kd' || cached ? { teacher, kd: { ...KD, cache: cached } } : {}),
  });
  if (cached && summary.teacher_cache !== 'loaded') throw new Error(`epoch-times: the teacher cache was ${summary.teacher_cache}, expected a warm cache`);
  fs.rmSync(out, { recursive: true, force: true });
  return summary;
}

/**
 * One round of the tsdistill side: each kind on fresh models (the teacher kind's trained model is the KD teacher), its
 * mean epoch seconds. With `warmup` > 0, a throwaway model first trains that many steps of the same kind.
 */
async function tsRound(train60k: ImageDataset, warmupSet: ImageDataset | null, test: ImageDataset, small: ImageDataset, a: Args, dir: string): Promise<Times> {
  const norm = [normalize([...FASHION_MNIST_STATS.mean], [...FASHION_MNIST_STATS.std])];
  const loader = new DataLoader(train60k, { batchSize: BATCH, shuffle: true, seed: SEED, transforms: norm });
  const warmLoader = warmupSet ? new DataLoader(warmupSet, { batchSize: BATCH, shuffle: true, seed: SEED + 1000, transforms: norm }) : null;
  const times = {} as Times;
  let teacher: Module | undefined;
  try {
    for (const kind of KINDS) {
      if (kind === 'kd_cached') {
        // the cache is filled untimed, as PyTorch computes its logits untimed
        (await teacherLogits(teacher!, loader, path.join(dir, 'cache'))).logits.dispose();
        if (warmLoader) (await teacherLogits(teacher!, warmLoader, path.join(dir, 'cache'))).logits.dispose();
      }
      if (warmLoader) {
        const w = makeModel(kind);
        try {
          await train(kind, w, teacher, warmLoader, small, 1, dir);
        } finally {
          w.dispose();
        }
      }
      const model = makeModel(kind);
      try {
        const s = await train(kind, model, teacher, loader, test, a.epochs, dir);
        times[kind] = kind === 'kd_cached' ? s.cached_teacher_epoch_s! : kind === 'kd' ? s.live_teacher_epoch_s! : s.mean_epoch_s;
      } finally {
        if (kind === 'teacher') teacher = model;
        else model.dispose();
      }
      process.stdout.write(`  ts  ${kind.padEnd(10)} epoch ${times[kind].toFixed(2).padStart(7)} s\n`);
    }
  } finally {
    teacher?.dispose();
    fs.rmSync(path.join(dir, 'cache'), { recursive: true, force: true });
  }
  return times;
}

/**
 * Plain and warm-cache KD epochs back to back, `pairs` times, each pair on fresh students: the per-pair ratio cancels
 * the slow drift of a shared machine that separates kinds measured half a minute apart.
 */
async function pairedCacheRatio(train60k: ImageDataset, test: ImageDataset, pairs: number, dir: string): Promise<number[]> {
  const norm = [normalize([...FASHION_MNIST_STATS.mean], [...FASHION_MNIST_STATS.std])];
  const loader = new DataLoader(train60k, { batchSize: BATCH, shuffle: true, seed: SEED, transforms: norm });
  const teacher = makeModel('teacher');
  const ratios: number[] = [];
  try {
    (await teacherLogits(teacher, loader, path.join(dir, 'cache'))).logits.dispose();
    for (let i = 0; i < pairs; i++) {
      const t: Partial<Times> = {};
      for (const kind of ['plain', 'kd_cached'] as const) {
        const m = makeModel(kind);
        try {
          const sm = await train(kind, m, teacher, loader, test, 1, dir);
          t[kind] = kind === 'kd_cached' ? sm.cached_teacher_epoch_s! : sm.mean_epoch_s;
        } finally {
          m.dispose();
        }
      }
      ratios.push(t.kd_cached! / t.plain!);
      process.stdout.write(`  pair ${i + 1}/${pairs}  plain ${t.plain!.toFixed(2)} s  warm-cache KD ${t.kd_cached!.toFixed(2)} s  ratio ${ratios[i].toFixed(3)}\n`);
    }
  } finally {
    teacher.dispose();
    fs.rmSync(path.join(dir, 'cache'), { recursive: true, force: true });
  }
  return ratios;
}

function hasTorch(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error) return `${python} could not be run (${r.error.message})`;
  if (r.status !== 0) return `${python} cannot import torch and numpy (${(r.stderr || '').trim().split('\n').pop()})`;
  return null;
}

function pyRound(a: Args, script: string): Times {
  const r = spawnSync(a.python, [script, '--threads', String(a.threads), '--epochs', String(a.epochs), '--warmup', String(a.warmup)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
  });
  if (r.error || r.status !== 0) throw new Error(`epoch-times: ${a.python} ${script} failed (${r.error?.message ?? `exit status ${r.status}`})`);
  const lines = r.stdout.trim().split('\n');
  const last = JSON.parse(lines[lines.length - 1]);
  for (const k of KINDS) if (typeof last[k] !== 'number') throw new Error(`epoch-times: ${script} printed no time for '${k}': ${lines[lines.length - 1]}`);
  for (const l of lines.slice(0, -1)) process.stdout.write(`  py  ${l}\n`);
  if (!pyLoop) pyLoop = `${last.loop} (torch ${last.torch}, ${last.threads} threads)`;
  return last;
}
let pyLoop = '';

async function main() {
  const a = parseArgs(process.argv.slice(2));
  setNumThreads(a.threads);
  const root = path.resolve(__dirname, '..', '..');
  const script = path.join(root, 'bench', 'epoch_times.py');
  const missing = fs.existsSync(script) ? hasTorch(a.python) : `${script} not found`;
  if (missing) process.stdout.write(`PyTorch side skipped: ${missing}. Install python3-torch and python3-numpy (Debian) or pass --python PATH.\n`);

  const v = version();
  const threads = getNumThreads();
  process.stdout.write(
    `Fashion-MNIST, seed recipe (lenet5 teacher, lenet5-half student with outputRelu, SGD lr 0.01 momentum 0.9, batch ${BATCH}, T ${KD.temperature}, alpha ${KD.alpha}); ` +
      `${a.epochs} epoch(s) per kind, ${a.rounds} round(s), ${threads.torch} threads, ${a.warmup} warm-up steps per kind; libtorch ${v.libtorch}; OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY} for both sides\n`,
  );
  const train60k = loadFashionMnist({ split: 'train' });
  const test = loadFashionMnist({ split: 'test' });
  const small = loadFashionMnist({ split: 'test', limit: 1000 });
  const warmupSet = a.warmup > 0 ? loadFashionMnist({ split: 'train', limit: Math.min(train60k.length, a.warmup * BATCH) }) : null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-epochs-'));
  const ts: Times[] = [];
  let pairRatios: number[] = [];
  const py: Times[] = [];
  try {
    for (let r = 0; r < a.rounds; r++) {
      process.stdout.write(`round ${r + 1}/${a.rounds}\n`);
      ts.push(await tsRound(train60k, warmupSet, test, small, a, dir));
      if (!missing) py.push(pyRound(a, script));
    }
    if (a.pairs > 0) {
      process.stdout.write(`paired plain / warm-cache KD epochs (tsdistill)\n`);
      pairRatios = await pairedCacheRatio(train60k, test, a.pairs, dir);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const d of [train60k, test, small, warmupSet]) d?.dispose();
  }

  const reduce = (xs: Times[], f: (v: number[]) => number): Times => Object.fromEntries(KINDS.map((k) => [k, +f(xs.map((x) => x[k])).toFixed(3)])) as Times;
  const best = (v: number[]) => Math.min(...v);
  const tsB = reduce(ts, best), tsM = reduce(ts, median);
  const pyB = py.length ? reduce(py, best) : null, pyM = py.length ? reduce(py, median) : null;
  const f2 = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
  process.stdout.write('\n');
  if (pyLoop) process.stdout.write(`PyTorch loop: ${pyLoop}\n`);
  process.stdout.write(`tsdistill: trainModel, epoch_s (training steps only, no evaluation or checkpoints); best of ${a.rounds} round(s), median in brackets\n\n`);
  process.stdout.write('| kind | tsdistill epoch (s) | PyTorch 1.13 epoch (s) | tsdistill / PyTorch |\n|---|---:|---:|---:|\n');
  for (const k of KINDS) {
    const ratio = pyB ? (tsB[k] / pyB[k]).toFixed(2) : 'n/a';
    process.stdout.write(`| ${LABELS[k]} | ${f2(tsB[k])} (${f2(tsM[k])}) | ${f2(pyB?.[k])} (${f2(pyM?.[k])}) | ${ratio} |\n`);
  }
  process.stdout.write('\n');
  const kdVsTorch = pyB ? +(tsB.kd / pyB.kd).toFixed(3) : null;
  const cachedVsPlain = +(tsB.kd_cached / tsB.plain).toFixed(3);
  const torchCachedVsPlain = pyB ? +(pyB.kd_cached / pyB.plain).toFixed(3) : null;
  process.stdout.write(
    `KD epoch <= PyTorch KD epoch: ${pyB ? `${f2(tsB.kd)} s vs ${f2(pyB.kd)} s (x${kdVsTorch}) ${tsB.kd <= pyB.kd ? 'PASS' : 'FAIL'}` : 'n/a (no PyTorch)'}\n`,
  );
  process.stdout.write(
    `warm-cache KD epoch <= 1.1 x plain-student epoch: ${f2(tsB.kd_cached)} s vs ${f2(tsB.plain)} s (x${cachedVsPlain}) ${tsB.kd_cached <= 1.1 * tsB.plain ? 'PASS' : 'FAIL'}` +
      (torchCachedVsPlain !== null ? ` (PyTorch: x${torchCachedVsPlain})` : '') + '\n',
  );
  const pairedRatio = pairRatios.length ? +median(pairRatios).toFixed(3) : null;
  if (pairedRatio !== null)
    process.stdout.write(`warm-cache KD / plain, median of ${pairRatios.length} back-to-back pairs: x${pairedRatio} ${pairedRatio <= 1.1 ? 'PASS' : 'FAIL'} (pairs: ${pairRatios.map((r) => r.toFixed(3)).join(', ')})\n`);
  process.stdout.write(
    JSON.stringify({ paired_cached_vs_plain: pairedRatio, threads: a.threads, epochs: a.epochs, rounds: a.rounds, ts: tsB, torch: pyB, ts_median: tsM, torch_median: pyM, kd_vs_torch: kdVsTorch, cached_vs_plain: cachedVsPlain, torch_cached_vs_plain: torchCachedVsPlain }) + '\n',
  );
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
