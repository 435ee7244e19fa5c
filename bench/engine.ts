// Engine benchmark: per-op overhead and a knowledge-distillation training step, in Node and in C++ against the same
// libtorch (the C++ program is built here), plus RSS and live tensors over a long run.
//   npm run bench:engine -- [--steps 300] [--rss-steps 5000] [--threads 1]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, liveTensors, manualSeed, nextTick, noGrad, ops, randint, randn, setNumThreads, tidy } from '../src/torch';
import { LeNet5, LeNet5Half } from '../src/models';
import { SGD } from '../src/optim';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const STEPS = arg('steps', 300);
const WARMUP = arg('warmup', 50);
const RSS_STEPS = arg('rss-steps', 5000);
const THREADS = arg('threads', 1);

const root = path.resolve(__dirname, '..', '..');

function buildCpp(): string {
  const src = path.join(root, 'bench', 'kd_step.cc');
  const bin = path.join(root, 'build', 'kd_step_cpp');
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs > fs.statSync(src).mtimeMs) return bin;
  const find = path.join(root, 'native', 'find-libtorch.js');
  const q = (flag: string) => execFileSync(process.execPath, [find, flag], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean);
  const args = ['-O2', '-std=c++17', ...q('--cflags'), ...q('--include').map((d) => `-I${d}`), src, '-o', bin, ...q('--libs'), '-lpthread'];
  process.stderr.write('bench: building the C++ reference step (g++, about a minute)...\n');
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  execFileSync('g++', args, { stdio: 'inherit' });
  return bin;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  setNumThreads(THREADS);
  manualSeed(0);
  const teacher = new LeNet5();
  teacher.eval();
  teacher.requiresGrad_(false);
  const student = new LeNet5Half();
  const opt = new SGD(student.parameters(), { lr: 0.01, momentum: 0.9 });
  const x = randn([64, 1, 28, 28]).keep();
  const y = randint(0, 10, [64]).keep();
  const T = 4;
  const alpha = 0.3;

  const step = () =>
    tidy(() => {
      const tlogits = noGrad(() => teacher.call(x));
      const slogits = student.call(x);
      const ce = ops.cross_entropy_loss(slogits, y);
      const kl = ops.kl_div(slogits.div(T).logSoftmax(1), tlogits.div(T).logSoftmax(1), 2 /* sum */, { log_target: true }).div(64);
      const loss = ce.mul(alpha).add(kl.mul((1 - alpha) * T * T));
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });

  // op overhead: small out-of-place add, new wrapper + dispose each time
  const a = randn(10).keep();
  const b = randn(10).keep();
  const reps: number[] = [];
  const N = 200000;
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) a.add(b).dispose();
    reps.push(Number(process.hrtime.bigint() - t0) / N / 1000);
  }
  const opOverhead = median(reps);
  const t0i = process.hrtime.bigint();
  for (let i = 0; i < N; i++) a.add_(b);
  const inplaceUs = Number(process.hrtime.bigint() - t0i) / N / 1000;

  // KD step (the live-tensor baseline is taken after the first step, which creates the optimizer's momentum buffers)
  step();
  await nextTick();
  const baseline = liveTensors();
  const times: number[] = [];
  for (let i = 0; i < WARMUP + STEPS; i++) {
    const t0 = process.hrtime.bigint();
    step();
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    if (i >= WARMUP) times.push(dt);
    await nextTick();
  }
  const kdStep = median(times);

  // C++ reference, same process tree, same libtorch
  let cpp = { kd_step_cpp_ms: NaN, op_overhead_cpp_us: NaN };
  try {
    const bin = buildCpp();
    const out = execFileSync(bin, [String(STEPS), String(WARMUP), String(THREADS)], { encoding: 'utf8' });
    cpp = JSON.parse(out.trim().split('\n').pop()!);
  } catch (e) {
    process.stderr.write(`bench: C++ reference failed: ${(e as Error).message}\n`);
  }

  // a second Node measurement after the C++ run, to even out machine noise; the median of both is reported
  const times2: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = process.hrtime.bigint();
    step();
    times2.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await nextTick();
  }
  const kdStepNode = median([...times, ...times2]);

  // RSS over a long run
  const rss: number[] = [];
  for (let i = 0; i < RSS_STEPS; i++) {
    step();
    await nextTick();
    if (i % 250 === 0 || i === RSS_STEPS - 1) rss.push(process.memoryUsage().rss / 2 ** 20);
  }
  const liveLast = liveTensors() - baseline;

  const rows: [string, string, string][] = [
    ['op overhead, a.add(b) new tensor (µs)', opOverhead.toFixed(3), cpp.op_overhead_cpp_us.toFixed(3)],
    ['in-place a.add_(b) (µs)', inplaceUs.toFixed(3), ''],
    [`KD step, batch 64, ${THREADS} thread(s) (ms, median)`, kdStepNode.toFixed(3), cpp.kd_step_cpp_ms.toFixed(3)],
    ['KD step ratio Node / C++', (kdStepNode / cpp.kd_step_cpp_ms).toFixed(3), ''],
    [`RSS first / last over ${RSS_STEPS} steps (MB)`, `${rss[0].toFixed(1)} / ${rss[rss.length - 1].toFixed(1)}`, ''],
    ['live tensors after the run, vs baseline', String(liveLast), ''],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'measure'.padEnd(w0)} | ${'Node'.padStart(14)} | ${'C++'.padStart(8)}`);
  console.log(`${'-'.repeat(w0)}-|-${'-'.repeat(14)}-|-${'-'.repeat(8)}`);
  for (const r of rows) console.log(`${r[0].padEnd(w0)} | ${r[1].padStart(14)} | ${r[2].padStart(8)}`);
  void kdStep;
  console.log(
    JSON.stringify({
      op_overhead_us: +opOverhead.toFixed(4),
      op_overhead_cpp_us: cpp.op_overhead_cpp_us,
      inplace_op_us: +inplaceUs.toFixed(4),
      kd_step_ms: +kdStepNode.toFixed(4),
      kd_step_cpp_ms: cpp.kd_step_cpp_ms,
      kd_step_ratio: +(kdStepNode / cpp.kd_step_cpp_ms).toFixed(4),
      rss_mb_first: +rss[0].toFixed(1),
      rss_mb_last: +rss[rss.length - 1].toFixed(1),
      rss_steps: RSS_STEPS,
      live_tensors_last: liveLast,
      threads: THREADS,
    }),
  );
  teacher.dispose();
  student.dispose();
  for (const t of [x, y, a, b]) t.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
