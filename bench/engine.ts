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

function buildCppAddon(): { init(threads: number): void; steps(n: number): number[]; opOverheadUs(): number } {
  const src = path.join(root, 'bench', 'kd_step.cc');
  const bin = path.join(root, 'build', 'kd_bench.node');
  if (!(fs.existsSync(bin) && fs.statSync(bin).mtimeMs > fs.statSync(src).mtimeMs)) {
    const find = path.join(root, 'native', 'find-libtorch.js');
    const q = (flag: string) => execFileSync(process.execPath, [find, flag], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean);
    const nodeInclude = [path.resolve(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node'].find((d) => fs.existsSync(path.join(d, 'node_api.h')));
    if (!nodeInclude) throw new Error('bench: Node headers (node_api.h) not found next to the node binary or in /usr/include/node');
    const napi = require('node-addon-api').include_dir as string;
    const args = ['-O2', '-std=c++17', '-shared', '-fPIC', '-DKD_BENCH_ADDON', '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', ...q('--cflags'),
      `-I${nodeInclude}`, `-I${napi}`, ...q('--include').map((d) => `-I${d}`), src, '-o', bin, ...q('--libs')];
    process.stderr.write('bench: building the C++ reference step (g++, about 20 s)...\n');
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    execFileSync('g++', args, { stdio: 'inherit' });
  }
  return require(bin);
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
      const tlogits = tidy(() => noGrad(() => teacher.call(x))); // teacher activations freed at once, as in C++
      const slogits = student.call(x);
      const ce = ops.cross_entropy_loss(slogits, y);
      const kl = ops.kl_div(slogits.div(T).logSoftmax(1), tlogits.div(T).logSoftmax(1), 2 /* sum */, { log_target: true }).div(64);
      const loss = ce.mul(alpha).add(kl.mul((1 - alpha) * T * T));
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });

  // KD step, Node and C++ interleaved in rounds inside this process so that both see the same machine state.
  // (the live-tensor baseline is taken after the first step, which creates the optimizer's momentum buffers)
  const cpp = buildCppAddon();
  cpp.init(THREADS);
  step();
  await nextTick();
  const baseline = liveTensors();
  const nodeTimes: number[] = [];
  const cppTimes: number[] = [];
  const ROUNDS = 10;
  const per = Math.ceil(STEPS / ROUNDS);
  for (let i = 0; i < WARMUP; i++) { step(); await nextTick(); }
  cpp.steps(WARMUP);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < per; i++) {
      const t0 = process.hrtime.bigint();
      step();
      nodeTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await nextTick();
    }
    cppTimes.push(...cpp.steps(per));
    await nextTick();
  }
  const kdStepNode = median(nodeTimes);
  const kdStepCpp = median(cppTimes);
  const opOverheadCpp = cpp.opOverheadUs();

  // op overhead (after the step timings, so the garbage it leaves cannot slow them): small out-of-place add,
  // new wrapper + dispose each time
  const a = randn(10);
  const b = randn(10);
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
  a.dispose();
  b.dispose();
  await nextTick();

  // RSS over a long run
  const rss: number[] = [];
  for (let i = 0; i < RSS_STEPS; i++) {
    step();
    await nextTick();
    if (i % 250 === 0 || i === RSS_STEPS - 1) rss.push(process.memoryUsage().rss / 2 ** 20);
  }
  const liveLast = liveTensors() - baseline;

  const rows: [string, string, string][] = [
    ['op overhead, a.add(b) new tensor (µs)', opOverhead.toFixed(3), opOverheadCpp.toFixed(3)],
    ['in-place a.add_(b) (µs)', inplaceUs.toFixed(3), ''],
    [`KD step, batch 64, ${THREADS} thread(s) (ms, median)`, kdStepNode.toFixed(3), kdStepCpp.toFixed(3)],
    ['KD step ratio Node / C++', (kdStepNode / kdStepCpp).toFixed(3), ''],
    [`RSS first / last over ${RSS_STEPS} steps (MB)`, `${rss[0].toFixed(1)} / ${rss[rss.length - 1].toFixed(1)}`, ''],
    ['live tensors after the run, vs baseline', String(liveLast), ''],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'measure'.padEnd(w0)} | ${'Node'.padStart(14)} | ${'C++'.padStart(8)}`);
  console.log(`${'-'.repeat(w0)}-|-${'-'.repeat(14)}-|-${'-'.repeat(8)}`);
  for (const r of rows) console.log(`${r[0].padEnd(w0)} | ${r[1].padStart(14)} | ${r[2].padStart(8)}`);
  console.log(
    JSON.stringify({
      op_overhead_us: +opOverhead.toFixed(4),
      op_overhead_cpp_us: +opOverheadCpp.toFixed(4),
      inplace_op_us: +inplaceUs.toFixed(4),
      kd_step_ms: +kdStepNode.toFixed(4),
      kd_step_cpp_ms: +kdStepCpp.toFixed(4),
      kd_step_ratio: +(kdStepNode / kdStepCpp).toFixed(4),
      rss_mb_first: +rss[0].toFixed(1),
      rss_mb_last: +rss[rss.length - 1].toFixed(1),
      rss_steps: RSS_STEPS,
      live_tensors_last: liveLast,
      threads: THREADS,
    }),
  );
  teacher.dispose();
  student.dispose();
  for (const t of [x, y]) t.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
