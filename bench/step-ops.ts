// Operator calls per training step of the seed recipe, tsdistill (trainModel) against PyTorch 1.13
// (bench/step_ops.py: the loop of bench/epoch_times.py), both recorded through libtorch's RecordFunction hooks
// (tsdistill's startOpProfile, torch.autograd.profiler). Per kind: the step time without the profile, recorded calls per
// step, and a table of the operators and autograd nodes whose calls per step or self time differ. Each kind trains one
// epoch over the first `steps` batches of Fashion-MNIST (its evaluation runs on 10 test images, so it adds almost
// nothing per step). Minor page faults per step are counted over the unprofiled run (the tsdistill figure includes the
// run's evaluation and checkpoint files).
//   npm run bench:step-ops -- [--steps 200] [--threads 2] [--kinds teacher,plain,kd,kd_cached] [--python /usr/bin/python3]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, setNumThreads, startOpProfile, stopOpProfile } from '../src/torch';
import { Module } from '../src/nn';
import { DataLoader, FASHION_MNIST_STATS, ImageDataset, loadFashionMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { teacherLogits, trainModel } from '../src/distill';

const KINDS = ['teacher', 'plain', 'kd', 'kd_cached'] as const;
type Kind = (typeof KINDS)[number];

function args(argv: string[]) {
  const a = { steps: 200, threads: 2, kinds: KINDS.join(','), python: '/usr/bin/python3' };
  for (let k = 0; k < argv.length; k += 2) {
    const name = argv[k].replace(/^--/, '') as keyof typeof a;
    if (!(name in a) || argv[k + 1] === undefined) throw new Error(`step-ops: unknown argument '${argv[k]}'`);
    (a as any)[name] = typeof a[name] === 'number' ? Number(argv[k + 1]) : argv[k + 1];
  }
  return a;
}

const model = (kind: Kind): Module => {
  manualSeed(0);
  return kind === 'teacher' ? new LeNet5(10) : new LeNet5Half(10, true);
};

async function run(kind: Kind, loader: DataLoader, test: ImageDataset, teacher: Module, dir: string): Promise<number> {
  const m = model(kind);
  const out = fs.mkdtempSync(path.join(dir, `${kind}-`));
  try {
    const s = await trainModel({
      name: kind, model: m, train: loader, test, testTransforms: loader.transforms, epochs: 1, seed: 0,
      optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0 }, schedule: 'constant', outDir: out,
      cacheDir: path.join(dir, 'cache'), progress: false, log: () => {}, checkpointEvery: 0,
      ...(kind === 'kd' || kind === 'kd_cached' ? { teacher, kd: { temperature: 4, alpha: 0.3, softLoss: 'kl' as const, cache: kind === 'kd_cached' } } : {}),
    });
    if (kind === 'kd_cached' && s.teacher_cache !== 'loaded') throw new Error(`step-ops: teacher cache ${s.teacher_cache}`);
    return s.mean_epoch_s;
  } finally {
    m.dispose();
    fs.rmSync(out, { recursive: true, force: true });
  }
}

async function main() {
  const a = args(process.argv.slice(2));
  setNumThreads(a.threads);
  const kinds = a.kinds.split(',') as Kind[];
  const train = loadFashionMnist({ split: 'train', limit: a.steps * 64 });
  const test = loadFashionMnist({ split: 'test', limit: 10 });
  const loader = new DataLoader(train, { batchSize: 64, shuffle: true, seed: 0, transforms: [normalize([...FASHION_MNIST_STATS.mean], [...FASHION_MNIST_STATS.std])] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-step-ops-'));
  const teacher = model('teacher');
  const ts: Record<string, { step_ms: number; faults: number; ops: Record<string, [number, number]> }> = {};
  try {
    (await teacherLogits(teacher, loader, path.join(dir, 'cache'))).logits.dispose();
    for (const kind of kinds) {
      await run(kind, loader, test, teacher, dir); // warm-up
      const f0 = process.resourceUsage().minorPageFault;
      const stepMs = ((await run(kind, loader, test, teacher, dir)) * 1000) / a.steps;
      const faults = (process.resourceUsage().minorPageFault - f0) / a.steps;
      startOpProfile();
      await run(kind, loader, test, teacher, dir);
      const rows = stopOpProfile();
      ts[kind] = { step_ms: +stepMs.toFixed(3), faults: +faults.toFixed(1), ops: Object.fromEntries(rows.map((r) => [r.name, [+(r.calls / a.steps).toFixed(3), +(r.selfUs / a.steps).toFixed(2)]])) };
      process.stderr.write(`ts ${kind}: ${stepMs.toFixed(3)} ms/step, ${rows.reduce((s, r) => s + r.calls, 0) / a.steps} recorded calls/step\n`);
    }
  } finally {
    teacher.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const script = path.join(__dirname, '..', '..', 'bench', 'step_ops.py');
  const r = spawnSync(a.python, [script, '--threads', String(a.threads), '--steps', String(a.steps), '--kinds', kinds.join(',')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`step-ops: ${script} failed (${r.error?.message ?? `exit ${r.status}`})`);
  const py = JSON.parse(r.stdout.trim().split('\n').pop()!);
  for (const kind of kinds) {
    const t = ts[kind], p = py[kind];
    const calls = (o: Record<string, [number, number]>) => Object.values(o).reduce((s, [c]) => s + c, 0);
    const self = (o: Record<string, [number, number]>) => Object.values(o).reduce((s, [, u]) => s + u, 0);
    process.stdout.write(`\n## ${kind}: tsdistill ${t.step_ms} ms/step, PyTorch ${p.step_ms} ms/step (no profile); minor page faults/step ${t.faults} vs ${p.faults}; recorded calls/step ${calls(t.ops).toFixed(1)} vs ${calls(p.ops).toFixed(1)}; recorded self µs/step ${self(t.ops).toFixed(0)} vs ${self(p.ops).toFixed(0)}\n\n`);
    process.stdout.write('| op | ts calls/step | py calls/step | ts self µs/step | py self µs/step |\n|---|---:|---:|---:|---:|\n');
    const names = [...new Set([...Object.keys(t.ops), ...Object.keys(p.ops)])];
    names.sort((x, y) => Math.max(t.ops[y]?.[1] ?? 0, p.ops[y]?.[1] ?? 0) - Math.max(t.ops[x]?.[1] ?? 0, p.ops[x]?.[1] ?? 0));
    for (const n of names) {
      const [tc, tu] = t.ops[n] ?? [0, 0], [pc, pu] = p.ops[n] ?? [0, 0];
      if (Math.abs(tc - pc) < 0.01 && Math.max(tu, pu) < 5) continue;
      process.stdout.write(`| ${n} | ${tc} | ${pc} | ${tu.toFixed(1)} | ${pu.toFixed(1)} |\n`);
    }
  }
  fs.writeFileSync(path.join(os.tmpdir(), 'tsd-step-ops.json'), JSON.stringify({ ts, py }));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
