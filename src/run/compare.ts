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
import { RunFlags, RunKind, buildModel, claimOutputDir, loadTeacher, prepareQatCheckpoint, runDir, runFromConfig, teacherWeights, transformsFor } from './runs';

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
}

/** Bytes of the teacher's weights on disk (all members' for an ensemble). */
function teacherBytes(cfg: RunConfig): number {
  return cfg.teacher?.members ? cfg.teacher.members.reduce((a, m) => a + fs.statSync(m.checkpoint).size, 0) : fs.statSync(teacherWeights(cfg)).size;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Accuracy, errors, agreement with reference predictions, ECE, CPU latency (batch 1) and throughput (batch 256). */
export async function measureModel(model: Module, test: ClassDataset, norm: BatchTransform[], reference: Int32Array | null) {
  model.eval();
  const device = deviceOf(model);
  const loader = new DataLoader(test, { batchSize: 1000, transforms: norm, device });
  const preds = new Int32Array(test.length);
  const bins = Array.from({ length: 15 }, () => ({ n: 0, conf: 0, correct: 0 }));
  let correct = 0, agree = 0, k = 0;
  for (const b of loader) {
    const [conf, pred, y] = tidy(() => noGrad(() => {
      const p = (model.call(b.x) as Tensor).softmax(1);
      const [c, i] = p.max(1);
      return [c.toArray(), i.toArray(), b.y.toArray()];
    }));
    b.dispose();
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
  const lat: number[] = [];
  for (let i = 0; i < 220; i++) {
    const t0 = process.hrtime.bigint();
    tidy(() => noGrad(() => { (model.call(one) as Tensor).cpu(); }));
    if (i >= 20) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 10; i++) tidy(() => noGrad(() => { (model.call(many) as Tensor).cpu(); }));
  const throughput = (10 * many.shape[0]) / (Number(process.hrtime.bigint() - t0) / 1e9);
  dispose([one, many]);
  return { acc: (100 * correct) / n, errors: n - correct, preds, agreement: reference ? (100 * agree) / n : null, ece: 100 * ece, latency: median(lat), throughput };
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
}

/** Teacher vs plain student vs distilled student: trains what is missing, then measures all three. */
export async function compareFromConfig(
  cfg: RunConfig,
  data: DataSplits,
  flags: RunFlags,
): Promise<{ result: CompareResult; reports: Record<RunKind, ModelReport>; table: string[][] }> {
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
        summaries[kind] = s;
        continue;
      }
    }
    summaries[kind] = await runFromConfig(cfg, kind, data, { ...flags, resume: !flags.force });
  }
  const reports = {} as Record<RunKind, ModelReport>;
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
    kd_teacher_cache: kdRun.teacher_cache ?? 'off',
  };
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
  ];
  writeFileAtomic(path.join(cfg.output.dir, 'summary.json'), JSON.stringify({ name: cfg.name, ...result, reports }, null, 2));
  return { result, reports, table };
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
}

/**
 * `compareFromConfig` once per seed (each in `<output.dir>/seed-<n>`), then mean ± standard deviation: distillation
 * results of small students depend on the initialisation, so one seed is an anecdote.
 */
export async function compareSeeds(cfg: RunConfig, seeds: number[], data: DataSplits, flags: RunFlags): Promise<{ result: SeedsResult; table: string[][] }> {
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds: expected non-negative integers, got ${seeds.join(',')}`);
  const runs: CompareResult[] = [];
  for (const seed of seeds) {
    const c = { ...cfg, seed, output: { ...cfg.output, dir: path.join(cfg.output.dir, `seed-${seed}`) } };
    claimOutputDir(c, flags);
    runs.push((await compareFromConfig(c, data, flags)).result);
  }
  const keys = Object.keys(runs[0]).filter((k) => runs.every((r) => typeof (r as any)[k] === 'number'));
  const mean: Record<string, number> = {}, std: Record<string, number> = {};
  for (const k of keys) {
    const xs = runs.map((r) => (r as any)[k] as number);
    mean[k] = xs.reduce((a, b) => a + b, 0) / xs.length;
    std[k] = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean[k]) ** 2, 0) / (xs.length - 1)) : 0;
  }
  const pm = (k: string, scale = 1, d = 2) => (k in mean ? `${(mean[k] * scale).toFixed(d)} ± ${(std[k] * scale).toFixed(d)}` : 'n/a');
  const table = [
    ['seed', 'teacher acc (%)', 'student alone (%)', 'student + KD (%)', 'gap closed (%)'],
    ...runs.map((r, i) => [String(seeds[i]), r.teacher_acc.toFixed(2), r.plain_acc.toFixed(2), r.kd_acc.toFixed(2), r.gap_closed === null ? 'n/a' : (100 * r.gap_closed).toFixed(1)]),
    ['mean ± std', pm('teacher_acc'), pm('plain_acc'), pm('kd_acc'), pm('gap_closed', 100, 1)],
  ];
  const result = { seeds, runs, mean, std };
  writeFileAtomic(path.join(cfg.output.dir, 'seeds.json'), JSON.stringify({ name: cfg.name, ...result }, null, 2));
  return { result, table };
}
