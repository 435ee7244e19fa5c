// Engine benchmark: per-op overhead, and one knowledge-distillation training step as the engine runs it
// (`EngineStep`, the step `runEngine` and `trainModel` run) against the same step written by hand in Node, in C++
// against the same libtorch (bench/kd_step.cc, built here and loaded as an addon) and in PyTorch (bench/kd_step.py, a
// child process: the bare step, and the step reading per step what the engine reports: loss, terms, correct count);
// plus RSS and live tensors over a long run of the engine step.
//   npm run bench:engine -- [--steps 400] [--rounds 10] [--rss-steps 5000] [--threads 1] [--python /usr/bin/python3]
//                           [--baseline OTHER_BUILD_DIR [--baseline-native OTHER_ADDON.node]]
// The steps alternate in rounds (the order rotating every round) in one run, so that all of them see the same machine
// state; the ratios are medians of the per-round ratios. --baseline adds the engine step of another build (its
// compiled output, e.g. another checkout's dist/, with its own addon when --baseline-native names it).
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { liveTensors, nextTick, noGrad, ops, randn, setNumThreads, tidy } from '../src/torch';
import { LeNet5Half } from '../src/models';
import { SGD } from '../src/optim';
import { F } from '../src/nn';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const STEPS = arg('steps', 400);
const ROUNDS = arg('rounds', 10);
const WARMUP = arg('warmup', 50);
const RSS_STEPS = arg('rss-steps', 5000);
const THREADS = arg('threads', 1);
function strArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const PYTHON = strArg('python') ?? '/usr/bin/python3';
const BASELINE = strArg('baseline');
const BASELINE_NATIVE = strArg('baseline-native');
const T = 4;
const ALPHA = 0.3;
const BATCH = 64;

const root = path.resolve(__dirname, '..', '..');

function buildCppAddon(): { init(threads: number): void; steps(n: number): number[]; opOverheadUs(): number; checksums(): number[] } {
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

/** The PyTorch step in a child process: `steps(n)` runs n steps there and resolves to their times (ms). */
class PythonStep {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  info: { torch: string; threads: number; checksums: number[] } | null = null;
  constructor(python: string, threads: number) {
    const script = path.join(root, 'bench', 'kd_step.py');
    this.child = spawn(python, [script, '--threads', String(threads), '--alpha', String(ALPHA), '--temperature', String(T)], {
      // OpenBLAS ignores torch.set_num_threads; libtorch's own threads wait as tsdistill's do
      env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' },
    });
    this.child.stderr.on('data', (d) => process.stderr.write(d));
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }
  private async line(): Promise<string> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`bench: ${PYTHON} bench/kd_step.py ended early (is PyTorch installed? apt-get install python3-torch)`);
    return r.value;
  }
  async start(): Promise<void> {
    this.info = JSON.parse(await this.line());
  }
  /** `reporting`: steps that also read the loss, the two terms and the correct count, as the engine's step does. */
  async steps(n: number, reporting = false): Promise<number[]> {
    this.child.stdin.write(`${reporting ? 'report' : 'steps'} ${n}\n`);
    return JSON.parse(await this.line());
  }
  close(): void {
    this.child.stdin.end('quit\n');
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The parts of a build of tsdistill the engine step needs (this one, or another given with --baseline). */
interface Build {
  torch: typeof import('../src/torch');
  models: typeof import('../src/models');
  distill: typeof import('../src/distill');
}

/**
 * The engine's step, configured as trainModel configures response KD: roles `student` (SGD) and `teacher` (frozen),
 * terms `hard` (ce, weight α) and `soft` (kl at T, weight 1 − α), both reported as metrics. The models and the batch
 * are drawn after seeding 0 in the order kd_step.cc and kd_step.py draw them: every side trains the same weights on
 * the same batch (max pooling's time depends on the data).
 */
async function engineSide(lib: Build) {
  const { manualSeed, randint, randn, tidy } = lib.torch;
  manualSeed(0);
  const teacher = new lib.models.LeNet5();
  teacher.eval();
  teacher.requiresGrad_(false);
  const student = new lib.models.LeNet5Half();
  const x = randn([BATCH, 1, 28, 28]).keep();
  const y = randint(0, 10, [BATCH]).keep();
  const sums = tidy(() => [x.sum().item(), ...[teacher, student].map((m) => m.parameters().reduce((a, p) => a + p.sum().item(), 0))]);
  const engine = await lib.distill.EngineStep.create({
    name: 'bench',
    roles: [
      { name: 'student', model: student, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0 } },
      { name: 'teacher', model: teacher },
    ],
    terms: [
      { loss: 'ce', name: 'hard', student: 'student.logits', teacher: 'labels', weight: ALPHA, metric: 'hard' },
      { loss: 'kl', name: 'soft', student: 'student.logits', teacher: 'teacher.logits', weight: 1 - ALPHA, options: { temperature: T }, metric: 'soft' },
    ],
    batch: { x, y },
  });
  let steps = 0;
  return {
    teacher, student, x, y, sums,
    step: () => { engine.step({ x, y }, { epoch: 0, step: steps++, stepsPerEpoch: 1e9, epochs: 1 }); },
    nextTick: lib.torch.nextTick,
    dispose: () => { engine.dispose(); teacher.dispose(); student.dispose(); x.dispose(); y.dispose(); },
  };
}

async function main() {
  setNumThreads(THREADS);
  const eng = await engineSide({ torch: require('../src/torch'), models: require('../src/models'), distill: require('../src/distill') });
  const { teacher, x, y, sums } = eng;
  const engineStep = eng.step;
  const handStudent = new LeNet5Half();
  noGrad(() => handStudent.parameters().forEach((p, i) => p.copy_(eng.student.parameters()[i])));
  // another build's engine step (--baseline DIR: its compiled output, e.g. a checkout's dist/), loaded with its own
  // addon when --baseline-native names one
  let base: Awaited<ReturnType<typeof engineSide>> | null = null;
  if (BASELINE) {
    if (BASELINE_NATIVE) process.env.TSDISTILL_NATIVE = path.resolve(BASELINE_NATIVE);
    const dir = path.resolve(BASELINE);
    base = await engineSide({ torch: require(path.join(dir, 'src/torch')), models: require(path.join(dir, 'src/models')), distill: require(path.join(dir, 'src/distill')) });
    delete process.env.TSDISTILL_NATIVE;
  }

  // The same step written by hand against the tensor API (no engine): what the engine adds on top of it.
  const opt = new SGD(handStudent.parameters(), { lr: 0.01, momentum: 0.9 });
  const handStep = () =>
    tidy(() => {
      const tlogits = tidy(() => noGrad(() => teacher.call(x))); // teacher activations freed at once, as in C++
      const slogits = handStudent.call(x);
      const ce = ops.cross_entropy_loss(slogits, y);
      const kl = ops.kl_div(slogits.div(T).logSoftmax(1), tlogits.div(T).logSoftmax(1), 2 /* sum */, { log_target: true }).div(BATCH);
      const loss = ce.mul(ALPHA).add(kl.mul((1 - ALPHA) * T * T));
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });

  const cpp = buildCppAddon();
  cpp.init(THREADS);
  const py = new PythonStep(PYTHON, THREADS);
  await py.start();
  const same = (other: number[]) => other.every((v, i) => Math.abs(v - sums[i]) <= 1e-3 * Math.max(1, Math.abs(sums[i])));
  if (!same(cpp.checksums()) || !same(py.info!.checksums) || (base && !same(base.sums)))
    process.stderr.write(`bench: warning: the sides start from different data (sums of x, teacher, student: Node ${sums}, C++ ${cpp.checksums()}, ` +
      `Python ${py.info!.checksums}${base ? `, baseline ${base.sums}` : ''})\n`);

  // the live-tensor baseline is taken after the first steps, which create the optimizers' momentum buffers
  engineStep();
  handStep();
  await nextTick();
  const liveBaseline = liveTensors();

  // a Node side's step time leaves out the event-loop turn after it (as the engine's loop takes one every step),
  // which is measured apart for the engine's step
  const turns: number[] = [];
  const nodeSide = async (fn: () => void, n: number, tick: () => Promise<void>, turnTimes?: number[]): Promise<number[]> => {
    const ts: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      fn();
      const t1 = process.hrtime.bigint();
      ts.push(Number(t1 - t0) / 1e6);
      await tick();
      turnTimes?.push(Number(process.hrtime.bigint() - t1) / 1e3);
    }
    return ts;
  };
  // the engine's step with libtorch's own max_pool2d kernel for the teacher as well (op for op what C++ and Python run;
  // by default a frozen model's max-pooling takes the tiled path of F.maxPool2d)
  const engineKernelPool = () => {
    const prev = F.setFastMaxPool(false);
    try {
      engineStep();
    } finally {
      F.setFastMaxPool(prev);
    }
  };
  type Side = 'cpp' | 'engine' | 'engineKernelPool' | 'hand' | 'python' | 'pythonReporting' | 'baseline';
  const SIDES: Side[] = ['cpp', 'engine', 'engineKernelPool', 'hand', 'python', 'pythonReporting', ...(base ? ['baseline' as const] : [])];
  const run = async (s: Side, n: number): Promise<number[]> => {
    if (s === 'cpp') {
      const ts = cpp.steps(n);
      await nextTick();
      return ts;
    }
    if (s === 'python' || s === 'pythonReporting') return py.steps(n, s === 'pythonReporting');
    if (s === 'baseline') return nodeSide(base!.step, n, base!.nextTick);
    return nodeSide(s === 'engine' ? engineStep : s === 'engineKernelPool' ? engineKernelPool : handStep, n, nextTick, s === 'engine' ? turns : undefined);
  };
  for (const s of SIDES) await run(s, WARMUP);
  turns.length = 0;
  const times: Record<Side, number[]> = { cpp: [], engine: [], engineKernelPool: [], hand: [], python: [], pythonReporting: [], baseline: [] };
  const rounds: Record<Side, number>[] = [];
  const per = Math.ceil(STEPS / ROUNDS);
  for (let r = 0; r < ROUNDS; r++) {
    const round = {} as Record<Side, number>;
    for (let k = 0; k < SIDES.length; k++) {
      const s = SIDES[(k + r) % SIDES.length];
      const ts = await run(s, per);
      times[s].push(...ts);
      round[s] = median(ts);
    }
    rounds.push(round);
  }
  py.close();
  const ms = Object.fromEntries(SIDES.map((s) => [s, median(times[s])])) as Record<Side, number>;
  const ratio = (a: Side, b: Side) => median(rounds.map((r) => r[a] / r[b]));
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

  // RSS over a long run of the engine's step
  const rss: number[] = [];
  for (let i = 0; i < RSS_STEPS; i++) {
    engineStep();
    await nextTick();
    if (i % 250 === 0 || i === RSS_STEPS - 1) rss.push(process.memoryUsage().rss / 2 ** 20);
  }
  const liveLast = liveTensors() - liveBaseline;

  const f = (v: number) => v.toFixed(3);
  console.log(`KD step, LeNet-5 teacher → half-width student, batch ${BATCH}, T = ${T}, α = ${ALPHA}, SGD momentum 0.9, ${THREADS} thread(s);`);
  console.log(`${ROUNDS} rounds of ${per} steps per side, alternating; ms per step, median of all steps (ratios: median of per-round ratios)`);
  const table: [string, string][] = [
    ['C++ (libtorch API)', f(ms.cpp)],
    ['engine step (EngineStep)', f(ms.engine)],
    ["engine step, libtorch's max_pool2d kernel for the teacher too", f(ms.engineKernelPool)],
    ['Node, hand-written step', f(ms.hand)],
    [`Python (PyTorch ${py.info?.torch})`, f(ms.python)],
    ['Python, reading per step what the engine reports', f(ms.pythonReporting)],
    ['ratio engine / C++', f(ratio('engine', 'cpp'))],
    ['ratio engine / Python', f(ratio('engine', 'python'))],
    ['ratio engine / Python reading the same', f(ratio('engine', 'pythonReporting'))],
    ["ratio engine (libtorch's max_pool2d kernel) / C++", f(ratio('engineKernelPool', 'cpp'))],
    ["ratio engine (libtorch's max_pool2d kernel) / Python", f(ratio('engineKernelPool', 'python'))],
    ['ratio hand-written / C++', f(ratio('hand', 'cpp'))],
    ...(base ? [[`engine step of the baseline build (${BASELINE})`, f(ms.baseline)], ['ratio engine / baseline build', f(ratio('engine', 'baseline'))],
      ['ratio baseline build / C++', f(ratio('baseline', 'cpp'))], ['ratio baseline build / Python', f(ratio('baseline', 'python'))]] as [string, string][] : []),
    ['event-loop turn after an engine step (µs, median)', turns.length ? median(turns).toFixed(1) : ''],
    ['op overhead, a.add(b) new tensor (µs): Node', f(opOverhead)],
    ['op overhead, at::add (µs): C++', f(opOverheadCpp)],
    ['in-place a.add_(b) (µs): Node', f(inplaceUs)],
    [`RSS first / last over ${RSS_STEPS} engine steps (MB)`, `${rss[0].toFixed(1)} / ${rss[rss.length - 1].toFixed(1)}`],
    ['live tensors after the run, vs baseline', String(liveLast)],
  ];
  const w0 = Math.max(...table.map((r) => r[0].length));
  const w1 = Math.max(...table.map((r) => r[1].length));
  console.log(`${'measure'.padEnd(w0)} | ${'value'.padStart(w1)}`);
  console.log(`${'-'.repeat(w0)}-|-${'-'.repeat(w1)}`);
  for (const r of table) console.log(`${r[0].padEnd(w0)} | ${r[1].padStart(w1)}`);
  const r4 = (v: number) => +v.toFixed(4);
  console.log(
    JSON.stringify({
      kd_step_cpp_ms: r4(ms.cpp),
      kd_step_engine_ms: r4(ms.engine),
      kd_step_engine_kernel_pool_ms: r4(ms.engineKernelPool),
      kd_step_hand_ms: r4(ms.hand),
      kd_step_python_ms: r4(ms.python),
      kd_step_python_reporting_ms: r4(ms.pythonReporting),
      engine_vs_cpp: r4(ratio('engine', 'cpp')),
      engine_vs_python: r4(ratio('engine', 'python')),
      engine_vs_python_reporting: r4(ratio('engine', 'pythonReporting')),
      engine_kernel_pool_vs_cpp: r4(ratio('engineKernelPool', 'cpp')),
      engine_kernel_pool_vs_python: r4(ratio('engineKernelPool', 'python')),
      hand_vs_cpp: r4(ratio('hand', 'cpp')),
      ...(base ? { baseline: BASELINE, kd_step_baseline_ms: r4(ms.baseline), engine_vs_baseline: r4(ratio('engine', 'baseline')),
        baseline_vs_cpp: r4(ratio('baseline', 'cpp')), baseline_vs_python: r4(ratio('baseline', 'python')) } : {}),
      event_loop_turn_us: turns.length ? +median(turns).toFixed(1) : null,
      op_overhead_us: r4(opOverhead),
      op_overhead_cpp_us: r4(opOverheadCpp),
      inplace_op_us: r4(inplaceUs),
      rss_mb_first: +rss[0].toFixed(1),
      rss_mb_last: +rss[rss.length - 1].toFixed(1),
      rss_steps: RSS_STEPS,
      live_tensors_last: liveLast,
      threads: THREADS,
      rounds: ROUNDS,
      steps_per_round: per,
      torch_python: py.info?.torch,
    }),
  );
  eng.dispose();
  base?.dispose();
  opt.dispose();
  handStudent.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
