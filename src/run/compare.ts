// Teacher vs plain student vs distilled student: train what is missing, measure all three (accuracy, size, speed,
// agreement, calibration), the verdict table, and the same over several seeds (mean ± standard deviation).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, dispose, nextTick, noGrad, tidy, writeFileAtomic } from '../torch';
import { Module, loadWeights } from '../nn';
import { BatchTransform, type ClassDataset, DataLoader, DataSplits, Rng } from '../data';
import { TrainSummary, deviceOf } from '../distill';
import { isExternalTeacherSpec } from '../teachers';
import { checkDevice } from '../distill/pipeline';
import type { RunConfig } from './config';
import { RunFlags, RunKind, buildModel, claimOutputDir, datasetOf, loadTeacher, prepareQatCheckpoint, runDir, runFromConfig, teacherWeights, transformsFor, withRunTimes } from './runs';
import { mean, std, welch, type WelchResult } from './stats';

export interface ModelReport {
  model: string;
  /** Test accuracy (%) of the best epoch's weights. */
  acc: number;
  errors: number;
  params: number;
  checkpoint_bytes: number;
  latency_b1_ms: number;
  throughput_b256: number;
  /** Top-1 agreement with the teacher (%), null for the teacher itself. */
  agreement: number | null;
  /** Expected calibration error (%), 15 equal-width confidence bins. */
  ece: number;
  epoch_s: number;
  /** Classes (names) the model predicts for no test input. */
  never_predicted: string[];
  /** Output units (class names) whose value is the same for every test input, and that value. */
  dead_outputs: { class: string; value: number }[];
  /** Test inputs on which every output unit has the same value (the prediction is a tie, which goes to the first class). */
  tied_inputs: number;
}

/** What a compare run was: the data, the distillation settings and the schedule (shown by the verdict and the report). */
export interface CompareSetup {
  dataset: string;
  train_size: number;
  test_size: number;
  classes: number;
  /** The distillation temperature and the hard-label weight α: a number, or a schedule. */
  temperature: unknown;
  alpha: unknown;
  soft_loss: string;
  epochs: number;
  batch_size: number;
  optimizer: string;
  lr: number;
  schedule: string;
  milestones?: number[];
  warmup_epochs: number;
  augment: unknown;
  seed: number;
}

/** Bytes of the teacher's weights on disk (all members' for an ensemble). */
function teacherBytes(cfg: RunConfig): number {
  return cfg.teacher?.members ? cfg.teacher.members.reduce((a, m) => a + fs.statSync(m.checkpoint).size, 0) : fs.statSync(teacherWeights(cfg)).size;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * CPU time of the model's forward pass (eval mode, no gradients, output copied to the CPU): the median of 200 calls on
 * `one` (batch 1) after 20 warm-up calls, in ms, and, given `many`, 10 calls on it as inputs per second.
 */
export function timeForward(model: Module, one: Tensor, many?: Tensor): { latency: number; throughput: number } {
  model.eval();
  const lat: number[] = [];
  for (let i = 0; i < 220; i++) {
    const t0 = process.hrtime.bigint();
    tidy(() => noGrad(() => { (model.call(one) as Tensor).cpu(); }));
    if (i >= 20) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  if (!many) return { latency: median(lat), throughput: NaN };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10; i++) tidy(() => noGrad(() => { (model.call(many) as Tensor).cpu(); }));
  return { latency: median(lat), throughput: (10 * many.shape[0]) / (Number(process.hrtime.bigint() - t0) / 1e9) };
}

/**
 * Accuracy, errors, agreement with reference predictions, ECE, CPU latency (batch 1) and throughput (batch 256); the
 * classes predicted for no test input (`never`) and the output units whose value is the same on every test input
 * (`dead`: a unit behind a ReLU that never turns on is constantly 0, and no gradient reaches it).
 */
export async function measureModel(model: Module, test: ClassDataset, norm: BatchTransform[], reference: Int32Array | null) {
  model.eval();
  const device = deviceOf(model);
  const loader = new DataLoader(test, { batchSize: 1000, transforms: norm, device });
  const preds = new Int32Array(test.length);
  const bins = Array.from({ length: 15 }, () => ({ n: 0, conf: 0, correct: 0 }));
  let correct = 0, agree = 0, k = 0;
  let lo: Float64Array | null = null, hi: Float64Array | null = null;
  let counts: number[] = [];
  let ties = 0;
  for (const b of loader) {
    const [conf, pred, y, logits, width] = tidy(() => noGrad(() => {
      const out = model.call(b.x) as Tensor;
      const [c, i] = out.softmax(1).max(1);
      return [c.toArray(), i.toArray(), b.y.toArray(), out.float().cpu().toArray(), [out.shape[1]]];
    }));
    b.dispose();
    const C = width[0];
    if (!lo || !hi) {
      lo = new Float64Array(C).fill(Infinity);
      hi = new Float64Array(C).fill(-Infinity);
      counts = new Array(C).fill(0);
    }
    for (let r = 0; r * C < logits.length; r++) {
      let same = true;
      for (let u = 0; u < C; u++) {
        const v = logits[r * C + u];
        if (v < lo[u]) lo[u] = v;
        if (v > hi[u]) hi[u] = v;
        if (v !== logits[r * C]) same = false;
      }
      if (same && C > 1) ties++;
    }
    for (const p of pred) counts[p]++;
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
  const n = test.length;
  const ece = bins.reduce((a, bn) => a + (bn.n ? (bn.n / n) * Math.abs(bn.correct / bn.n - bn.conf / bn.n) : 0), 0);
  const prep = (count: number) => tidy(() => {
    // images are scaled as the loader scales them; token ids go in as they are
    const rows = test.tensors[0].narrow(0, 0, Math.min(count, n)).to({ device });
    let x = rows.dtype === 'uint8' ? rows.float().div(255) : rows;
    for (const t of norm) x = t.apply(x, new Rng(0));
    return x;
  });
  const one = prep(1);
  const many = prep(256);
  const { latency, throughput } = timeForward(model, one, many);
  dispose([one, many]);
  const never = counts.flatMap((c, u) => (c === 0 ? [u] : []));
  const dead = lo ? [...lo].flatMap((v, u) => (v === hi![u] ? [{ unit: u, value: v }] : [])) : [];
  return { acc: (100 * correct) / n, errors: n - correct, preds, agreement: reference ? (100 * agree) / n : null, ece: 100 * ece, latency, throughput, never, dead, ties };
}

export interface CompareResult {
  teacher_acc: number;
  plain_acc: number;
  kd_acc: number;
  /** (KD − plain) / (teacher − plain); null when the teacher is not more accurate than the student alone (no gap). */
  gap_closed: number | null;
  teacher_epoch_s: number | null;
  plain_epoch_s: number;
  /** Mean KD epoch with the teacher run on every batch (null when every epoch read cached logits). */
  kd_epoch_s: number | null;
  /** Mean KD epoch with cached teacher logits (null when the cache was off). */
  kd_cached_epoch_s: number | null;
  kd_teacher_cache: string;
  /** Whether the teacher is more accurate than the student alone (otherwise there is no gap to close). */
  teacher_better: boolean;
  /** Test accuracy of the distilled student minus the student alone's (points). */
  kd_gain: number;
}

const KIND_LABEL: Record<RunKind, string> = { teacher: 'teacher', student: 'student alone', distilled: 'student + KD' };

/** A number or a schedule, in words. */
function valueText(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v && typeof v === 'object' && 'kind' in v) {
    const s = v as { kind: string; value?: number; from?: number; to?: number; epochs?: number };
    return s.kind === 'constant' ? String(s.value) : s.kind === 'warmup' ? `${s.value} after ${s.epochs} warm-up epochs` : `${s.kind} ${s.from} → ${s.to}${s.epochs ? ` over ${s.epochs} epochs` : ''}`;
  }
  return JSON.stringify(v);
}

/** The setup as one line: data set and its size, T, α, epochs and the schedule. */
export function setupLine(s: CompareSetup): string {
  const lr = `${s.optimizer} lr ${s.lr}, ${s.schedule} schedule${s.milestones?.length ? ` (milestones ${s.milestones.join(', ')})` : ''}${s.warmup_epochs ? `, ${s.warmup_epochs} warm-up epochs` : ''}`;
  return `${s.dataset}: ${s.train_size.toLocaleString('en-US')} training / ${s.test_size.toLocaleString('en-US')} test images, ${s.classes} classes; ` +
    `T = ${valueText(s.temperature)}, α = ${valueText(s.alpha)} (${s.soft_loss}); ${s.epochs} epochs at batch ${s.batch_size}, ${lr}; seed ${s.seed}`;
}

/**
 * The verdict in sentences: the share of the teacher gap closed (or why there is no gap), whether distillation beat the
 * student alone, and each model's classes that are never predicted and output units that are dead on every test input.
 */
export function verdictLines(result: CompareResult, reports: Record<RunKind, ModelReport>, notes: { outputRelu?: Partial<Record<RunKind, boolean>> } = {}): string[] {
  const pct = (x: number) => `${x.toFixed(2)} %`;
  const lines = [
    result.gap_closed === null
      ? `teacher gap closed by distillation: n/a (the teacher, ${pct(result.teacher_acc)}, is not more accurate than the student alone, ${pct(result.plain_acc)}: there is no gap to close; train the teacher longer or choose a larger one)`
      : `teacher gap closed by distillation: ${(100 * result.gap_closed).toFixed(1)} % (the teacher, ${pct(result.teacher_acc)}, is better than the student alone, ${pct(result.plain_acc)}, by ${(result.teacher_acc - result.plain_acc).toFixed(2)} points)`,
    `student + KD vs student alone: ${result.kd_gain >= 0 ? '+' : ''}${result.kd_gain.toFixed(2)} points (${pct(result.kd_acc)} vs ${pct(result.plain_acc)})`,
  ];
  const list = (xs: string[]) => (xs.length === 1 ? `class ${xs[0]}` : `classes ${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`);
  for (const kind of ['teacher', 'student', 'distilled'] as RunKind[]) {
    const r = reports[kind];
    if (r.never_predicted.length) lines.push(`${KIND_LABEL[kind]} never predicts ${list(r.never_predicted)} on the test set`);
    if (r.dead_outputs.length) {
      const zero = r.dead_outputs.every((d) => d.value === 0);
      const them = r.dead_outputs.length === 1 ? 'it' : 'them';
      const why = zero && notes.outputRelu?.[kind] ? `: the ReLU on its logits (options.outputRelu) is off for ${them} on every input, so no gradient reaches ${them}` : '';
      lines.push(`${KIND_LABEL[kind]}: the output unit${r.dead_outputs.length === 1 ? '' : 's'} of ${list(r.dead_outputs.map((d) => d.class))} ${r.dead_outputs.length === 1 ? 'is' : 'are'} dead — ` +
        `${zero ? '0' : 'constant'} on every test input${why}`);
    }
    if (r.tied_inputs)
      lines.push(`${KIND_LABEL[kind]}: on ${r.tied_inputs.toLocaleString('en-US')} test input${r.tied_inputs === 1 ? '' : 's'} every output has the same value (a tie, predicted as the first class)`);
  }
  return lines;
}

/** Teacher vs plain student vs distilled student: trains what is missing, then measures all three. */
export async function compareFromConfig(
  cfg: RunConfig,
  data: DataSplits,
  flags: RunFlags,
): Promise<{ result: CompareResult; reports: Record<RunKind, ModelReport>; table: string[][]; setup: CompareSetup; verdict: string[] }> {
  const kinds: RunKind[] = ['teacher', 'student', 'distilled'];
  const summaries: Partial<Record<RunKind, TrainSummary>> = {};
  if (!cfg.teacher) throw new Error(`${flags.file}: compare needs a 'teacher' section`);
  if (isExternalTeacherSpec(cfg.teacher)) throw new Error(`${flags.file}: compare measures a teacher trained here or a zoo model; for a ${cfg.teacher.model} teacher use distill`);
  for (const kind of kinds) {
    const done = path.join(runDir(cfg, kind), 'summary.json');
    if (kind === 'teacher' && (cfg.teacher.checkpoint || cfg.teacher.members)) continue;
    if (fs.existsSync(done) && !flags.force) {
      const s = JSON.parse(fs.readFileSync(done, 'utf8')) as TrainSummary;
      if (s.epochs === cfg.training.epochs) {
        // (a summary rewritten on resume by an earlier version gets the epoch times of all its epochs back)
        summaries[kind] = withRunTimes(s, runDir(cfg, kind));
        continue;
      }
    }
    summaries[kind] = await runFromConfig(cfg, kind, data, { ...flags, resume: !flags.force });
  }
  const reports = {} as Record<RunKind, ModelReport>;
  const classes = datasetOf(cfg).classes;
  const className = (u: number) => classes[u] ?? String(u);
  let teacherPreds: Int32Array | null = null;
  for (const kind of kinds) {
    const spec = kind === 'teacher' ? cfg.teacher : cfg.student;
    const weights = kind === 'teacher' ? teacherWeights(cfg) : path.join(runDir(cfg, kind), 'best.safetensors');
    const model = kind === 'teacher' ? loadTeacher(cfg, flags.file) : buildModel(cfg, kind);
    try {
      prepareQatCheckpoint(model, cfg, kind);
      if (kind !== 'teacher') loadWeights(model, weights);
      const device = checkDevice(cfg.training.device);
      if (device !== 'cpu') model.to(device);
      const m = await measureModel(model, data.test, transformsFor(cfg, kind).norm, teacherPreds);
      if (kind === 'teacher') teacherPreds = m.preds;
      reports[kind] = {
        model: spec.model, acc: m.acc, errors: m.errors, params: model.numParameters(), checkpoint_bytes: kind === 'teacher' ? teacherBytes(cfg) : fs.statSync(weights).size,
        latency_b1_ms: m.latency, throughput_b256: m.throughput, agreement: m.agreement, ece: m.ece, epoch_s: summaries[kind]?.mean_epoch_s ?? NaN,
        never_predicted: m.never.map(className), dead_outputs: m.dead.map((d) => ({ class: className(d.unit), value: d.value })), tied_inputs: m.ties,
      };
    } finally {
      model.dispose();
    }
  }
  const t = reports.teacher, p = reports.student, k = reports.distilled;
  const kdRun = summaries.distilled!;
  const result: CompareResult = {
    teacher_acc: t.acc, plain_acc: p.acc, kd_acc: k.acc, gap_closed: t.acc > p.acc ? (k.acc - p.acc) / (t.acc - p.acc) : null,
    teacher_epoch_s: Number.isFinite(t.epoch_s) ? t.epoch_s : null, plain_epoch_s: p.epoch_s,
    kd_epoch_s: kdRun.live_teacher_epoch_s ?? null, kd_cached_epoch_s: kdRun.cached_teacher_epoch_s ?? null,
    kd_teacher_cache: kdRun.teacher_cache ?? 'off', teacher_better: t.acc > p.acc, kd_gain: k.acc - p.acc,
  };
  const setup: CompareSetup = {
    dataset: datasetOf(cfg).name, train_size: data.train.length, test_size: data.test.length, classes: classes.length,
    temperature: cfg.distill.temperature, alpha: cfg.distill.alpha, soft_loss: cfg.distill.softLoss, epochs: cfg.training.epochs, batch_size: cfg.data.batchSize,
    optimizer: cfg.training.optimizer, lr: cfg.training.lr, schedule: cfg.training.schedule, ...(cfg.training.milestones ? { milestones: cfg.training.milestones } : {}),
    warmup_epochs: cfg.training.warmupEpochs, augment: cfg.data.augment ?? null, seed: cfg.seed,
  };
  const outputRelu = { teacher: cfg.teacher.options?.outputRelu === true, student: cfg.student.options?.outputRelu === true, distilled: cfg.student.options?.outputRelu === true };
  const verdict = verdictLines(result, reports, { outputRelu });
  const s = (x: number | null | undefined, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  const table = [
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
    ['mean epoch time (s)', ...[t, p, k].map((r) => s(r.epoch_s))],
    ['KD epoch, live / cached teacher (s)', '-', '-', `${s(result.kd_epoch_s)} / ${s(result.kd_cached_epoch_s)}`],
    ['classes never predicted', ...[t, p, k].map((r) => r.never_predicted.join(', ') || '-')],
    ['dead output units', ...[t, p, k].map((r) => r.dead_outputs.map((d) => d.class).join(', ') || '-')],
  ];
  writeFileAtomic(path.join(cfg.output.dir, 'summary.json'), JSON.stringify({ name: cfg.name, ...result, reports, setup, verdict }, null, 2));
  return { result, reports, table, setup, verdict };
}

/** The verdict table as aligned text lines. */
export function formatTable(rows: string[][]): string[] {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines: string[] = [];
  rows.forEach((r, i) => {
    lines.push(r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
    if (i === 0) lines.push(w.map((x) => '-'.repeat(x)).join('  '));
  });
  return lines;
}

export interface SeedsResult {
  seeds: number[];
  /** Per-seed results, in seed order. */
  runs: CompareResult[];
  /** Mean and sample standard deviation over seeds of every numeric field. */
  mean: Record<string, number>;
  std: Record<string, number>;
  /** The verdict table's numeric rows, each model's mean and standard deviation over seeds. */
  rows: { row: string; key: keyof ModelReport; teacher: [number, number]; student: [number, number]; distilled: [number, number] }[];
  /**
   * Welch's two-sided t-test (unequal variances) over seeds: the distilled student's test accuracy against the student
   * alone's, and the teacher's against the student alone's; null with fewer than two seeds or no spread.
   */
  significance: { test: 'welch'; kd_vs_plain: WelchResult | null; teacher_vs_plain: WelchResult | null };
  /** The significance in words. */
  note: string;
  setup: CompareSetup;
}

/** The verdict rows that are averaged over seeds: [label, report key, decimals]. */
const SEED_ROWS: [string, keyof ModelReport, number][] = [
  ['test accuracy (%)', 'acc', 2], ['test errors', 'errors', 1], ['top-1 agreement with teacher (%)', 'agreement', 2],
  ['expected calibration error (%)', 'ece', 2], ['CPU latency, batch 1 (ms)', 'latency_b1_ms', 3], ['mean epoch time (s)', 'epoch_s', 2],
];

function significanceNote(sig: SeedsResult['significance'], n: number): string {
  const one = (w: WelchResult | null, a: string, b: string) =>
    w === null
      ? `${a} vs ${b}: no test (${n < 2 ? 'one seed' : 'no spread over seeds'})`
      : `${a} vs ${b}: ${w.diff >= 0 ? '+' : ''}${w.diff.toFixed(2)} points, t = ${w.t.toFixed(2)}, df = ${w.df.toFixed(1)}, p = ${w.p < 0.001 ? w.p.toExponential(1) : w.p.toFixed(3)}` +
        ` (${w.p < 0.05 ? 'significant' : 'not significant'} at 5 %)`;
  return `Welch's t-test over ${n} seeds, two-sided: ${one(sig.kd_vs_plain, 'student + KD', 'student alone')}; ${one(sig.teacher_vs_plain, 'teacher', 'student alone')}` +
    (n < 5 && n >= 2 ? `; with ${n} seeds only large differences can show` : '');
}

/**
 * `compareFromConfig` once per seed (each in `<output.dir>/seed-<n>`), then mean ± standard deviation of every row of
 * the verdict and Welch's t-test of the distilled student against the student alone: distillation results of small
 * students depend on the initialisation, so one seed is an anecdote.
 */
export async function compareSeeds(cfg: RunConfig, seeds: number[], data: DataSplits, flags: RunFlags): Promise<{ result: SeedsResult; table: string[][]; rowsTable: string[][] }> {
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds: expected non-negative integers, got ${seeds.join(',')}`);
  if (new Set(seeds).size !== seeds.length) throw new Error(`--seeds: a seed is repeated in ${seeds.join(',')}`);
  const runs: CompareResult[] = [];
  const reports: Record<RunKind, ModelReport>[] = [];
  let setup: CompareSetup | undefined;
  for (const seed of seeds) {
    const c = { ...cfg, seed, output: { ...cfg.output, dir: path.join(cfg.output.dir, `seed-${seed}`) } };
    claimOutputDir(c, flags);
    const r = await compareFromConfig(c, data, flags);
    runs.push(r.result);
    reports.push(r.reports);
    setup ??= { ...r.setup, seed: seeds[0] };
  }
  const keys = Object.keys(runs[0]).filter((k) => runs.every((r) => typeof (r as any)[k] === 'number'));
  const meanOf: Record<string, number> = {}, stdOf: Record<string, number> = {};
  for (const k of keys) {
    const xs = runs.map((r) => (r as any)[k] as number);
    meanOf[k] = mean(xs);
    stdOf[k] = std(xs);
  }
  const ms = (xs: number[]): [number, number] => [mean(xs), std(xs)];
  const rows = SEED_ROWS.map(([row, key]) => {
    const of = (kind: RunKind) => ms(reports.map((r) => r[kind][key] as number).filter((x) => typeof x === 'number' && Number.isFinite(x)));
    return { row, key, teacher: of('teacher'), student: of('student'), distilled: of('distilled') };
  });
  const significance = {
    test: 'welch' as const,
    kd_vs_plain: welch(runs.map((r) => r.kd_acc), runs.map((r) => r.plain_acc)),
    teacher_vs_plain: welch(runs.map((r) => r.teacher_acc), runs.map((r) => r.plain_acc)),
  };
  const note = significanceNote(significance, seeds.length);
  const pm = (k: string, scale = 1, d = 2) => (k in meanOf ? `${(meanOf[k] * scale).toFixed(d)} ± ${(stdOf[k] * scale).toFixed(d)}` : 'n/a');
  const table = [
    ['seed', 'teacher acc (%)', 'student alone (%)', 'student + KD (%)', 'gap closed (%)'],
    ...runs.map((r, i) => [String(seeds[i]), r.teacher_acc.toFixed(2), r.plain_acc.toFixed(2), r.kd_acc.toFixed(2), r.gap_closed === null ? 'n/a' : (100 * r.gap_closed).toFixed(1)]),
    ['mean ± std', pm('teacher_acc'), pm('plain_acc'), pm('kd_acc'), pm('gap_closed', 100, 1)],
  ];
  const cell = ([m, s]: [number, number], d: number) => (Number.isFinite(m) ? `${m.toFixed(d)} ± ${s.toFixed(d)}` : '-');
  const rowsTable = [
    [`mean ± std over ${seeds.length} seeds`, 'teacher', 'student alone', 'student + KD'],
    ...rows.map((r, i) => [r.row, ...(['teacher', 'student', 'distilled'] as const).map((k) => (r.key === 'agreement' && k === 'teacher' ? '-' : cell(r[k], SEED_ROWS[i][2])))]),
  ];
  const result: SeedsResult = { seeds, runs, mean: meanOf, std: stdOf, rows, significance, note, setup: setup! };
  writeFileAtomic(path.join(cfg.output.dir, 'seeds.json'), JSON.stringify({ name: cfg.name, ...result }, null, 2));
  return { result, table, rowsTable };
}
