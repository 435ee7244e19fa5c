// The training loop shared by `train` (a teacher or a plain student) and `distill` (a student against a frozen
// teacher). Async, yielding every step; per-epoch evaluation; metrics appended durably to metrics.jsonl; checkpoints
// written atomically at each epoch end with state.json written last as the commit point, so `resume` continues from the
// last finished epoch and ends with the same weights as an uninterrupted run (data order, augmentation and libtorch's
// RNG are all derived from (seed, epoch)).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, dispose, keep, loadSafetensors, manualSeed, nextTick, noGrad, ops, saveSafetensors, tensor, tidy, writeFileAtomic, appendLineDurable, removeStaleTempFiles } from '../torch';
import { F, Module } from '../nn';
import { Adam, AdamW, CosineAnnealingLR, LRScheduler, LambdaLR, MultiStepLR, Optimizer, SGD, StepLR, warmup } from '../optim';
import { DataLoader, TensorDataset, mixSeed, rowIndex } from '../data';
import { responseKD, softTargetLoss } from './response';
import { kdLossPerSample } from './losses';
import { DynamicTemperature, Progress as RunProgress, ScheduleSpec, checkSchedule, dynamicTemperature, initialValue, isConstant, scheduleValue } from './schedules';
import type { FeatureMatcher } from './features';
import { computeTeacherLogits, readTeacherCache, teacherCacheFile, writeTeacherCache } from './teacher-cache';
import { type Teacher, isTeacher, runTeacher } from '../teachers';

export interface TrainOptions {
  model: Module;
  train: DataLoader;
  test: TensorDataset;
  testTransforms: DataLoader['transforms'];
  epochs: number;
  seed: number;
  optimizer: { kind: 'sgd' | 'adam' | 'adamw'; lr: number; momentum: number; weightDecay: number };
  schedule: 'constant' | 'cosine' | 'step' | 'multistep';
  /** For schedule 'multistep': epochs (counted after warm-up) at which the learning rate is multiplied by 0.1. */
  milestones?: number[];
  /** Linear warm-up over this many epochs before the schedule (0 = none). */
  warmupEpochs?: number;
  outDir: string;
  resume?: boolean;
  force?: boolean;
  checkpointEvery?: number;
  /**
   * Distillation: a frozen teacher and the response-KD settings. A Module runs inside the step; an external Teacher
   * (ONNX, TorchScript, black-box) is awaited before the step and its outputs fed to it (and to the teacher cache).
   */
  teacher?: Module | Teacher;
  kd?: {
    /** A number or a schedule over training (linear, cosine, warmup). */
    temperature: number | ScheduleSpec;
    /** Weight of the hard-label cross-entropy: a number or a schedule. */
    alpha: number | ScheduleSpec;
    softLoss: 'kl' | 'soft_ce' | 'logit_mse';
    cache: boolean;
    /** Per-sample temperatures around the scheduled one (TextBrewer's flsw / cwsm); KL soft loss only. */
    dynamicTemperature?: DynamicTemperature;
  };
  /**
   * Feature / relation matches between teacher and student (needs `teacher`): each match's weighted loss is added to
   * the response-KD loss (or to the cross-entropy without `kd`). The teacher then runs on every batch (no cache).
   */
  features?: FeatureMatcher;
  log?: (line: string) => void;
  name?: string;
  /** Progress display: a bar per epoch on a TTY, otherwise a line every quarter epoch. Default: on. */
  progress?: boolean;
  /** Stops the run after the current step, saving a resumable state (e.g. on Ctrl-C); trainModel then throws TrainingInterrupted. */
  signal?: AbortSignal;
  /** Where teacher logits are cached (default: `.teacher-cache` next to outDir). */
  cacheDir?: string;
}

export interface EpochMetrics {
  epoch: number;
  loss: number;
  hard?: number;
  soft?: number;
  train_acc: number;
  test_acc: number;
  lr: number;
  epoch_s: number;
  samples_per_s: number;
  /** Distillation: whether the teacher ran on every batch or its cached logits were used. */
  teacher?: 'live' | 'cached';
  /** Feature matches: each match's weighted loss, mean over the epoch. */
  terms?: Record<string, number>;
  /** Scheduled KD temperature and hard-label weight at the end of the epoch (when scheduled). */
  temperature?: number;
  alpha?: number;
}

export interface TrainSummary {
  name: string;
  epochs: number;
  best_test_acc: number;
  best_epoch: number;
  final_test_acc: number;
  mean_epoch_s: number;
  out_dir: string;
  teacher_cache?: 'built' | 'loaded' | 'off';
  /** Mean epoch time with the teacher run on every batch (the epoch that fills the cache counts here). */
  live_teacher_epoch_s?: number;
  /** Mean epoch time with teacher logits read from the cache. */
  cached_teacher_epoch_s?: number;
  resumed_from_epoch?: number;
}

function makeOptimizer(o: TrainOptions['optimizer'], params: Tensor[]): Optimizer<any> {
  if (o.kind === 'sgd') return new SGD(params, { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
  if (o.kind === 'adam') return new Adam(params, { lr: o.lr, weightDecay: o.weightDecay });
  return new AdamW(params, { lr: o.lr, weightDecay: o.weightDecay });
}
function makeSchedule(kind: TrainOptions['schedule'], opt: Optimizer<any>, epochs: number, warmupEpochs: number, milestones: number[] = []): LRScheduler {
  const rest = Math.max(1, epochs - warmupEpochs);
  if (kind === 'multistep' && !milestones.length) throw new Error("schedule 'multistep' needs milestones (epochs at which the learning rate drops by 10x)");
  const main =
    kind === 'cosine' ? new CosineAnnealingLR(opt, rest)
    : kind === 'step' ? new StepLR(opt, Math.max(1, Math.floor(rest / 3)), 0.1)
    : kind === 'multistep' ? new MultiStepLR(opt, milestones, 0.1)
    : new LambdaLR(opt, () => 1);
  return warmup(opt, warmupEpochs, main);
}

/** The device of a module's first parameter (CPU when it has none). */
export function deviceOf(m: Module): string {
  return m.parameters()[0]?.device ?? 'cpu';
}

/** Accuracy (percent) of `model` on a data set, in eval mode under no-grad. */
export async function evaluate(model: Module, test: TensorDataset, transforms: DataLoader['transforms'] = []): Promise<number> {
  const was = model.training;
  model.eval();
  let correct = 0;
  const loader = new DataLoader(test, { batchSize: 1000, transforms, device: deviceOf(model) });
  for (const b of loader) {
    correct += tidy(() => noGrad(() => (model.call(b.x) as Tensor).argmax(1).eq(b.y).sum().item()));
    dispose([b.x, b.y]);
    await nextTick();
  }
  model.train(was);
  return (100 * correct) / test.length;
}

/** Thrown by `trainModel` when its `signal` aborts: the state after the last finished step is saved for `resume`. */
export class TrainingInterrupted extends Error {
  constructor(readonly outDir: string, readonly epoch: number, readonly step: number) {
    super(`interrupted at epoch ${epoch}, step ${step}: the model and optimizer state are saved in ${outDir}; continue with resume`);
    this.name = 'TrainingInterrupted';
  }
}

/** libtorch's generator is reseeded before every step from (seed, epoch, step), so a run can resume at any step. */
function stepSeed(seed: number, epoch: number, step: number): number {
  return mixSeed(mixSeed(seed, epoch), step) & 0x7fffffff;
}

/** Each term's running sum divided by the samples seen. */
const termMeans = (sums: Record<string, number>, seen: number) => Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / seen]));

interface PartialEpoch {
  epoch: number;
  step: number;
  sum: number;
  hardSum: number;
  softSum: number;
  correct: number;
  seen: number;
  elapsed: number;
  terms?: Record<string, number>;
}

export async function trainModel(o: TrainOptions): Promise<TrainSummary> {
  const log = o.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const name = o.name ?? 'run';
  const state = path.join(o.outDir, 'state.json');
  const metricsFile = path.join(o.outDir, 'metrics.jsonl');
  if (fs.existsSync(state) && !o.resume && !o.force)
    throw new Error(`${o.outDir} holds another run (state.json present): pass --resume to continue it or --force to overwrite it`);
  if (o.force && !o.resume)
    for (const f of fs.existsSync(o.outDir) ? fs.readdirSync(o.outDir) : [])
      if (f === 'state.json' || f === 'metrics.jsonl' || f === 'summary.json' || f.endsWith('.safetensors')) fs.rmSync(path.join(o.outDir, f), { force: true });
  fs.mkdirSync(o.outDir, { recursive: true });
  removeStaleTempFiles(o.outDir);

  const fm = o.features ?? null;
  if (fm) {
    if (!o.teacher) throw new Error(`${name}: feature matches need a teacher`);
    if (fm.student !== o.model || fm.teacher !== o.teacher) throw new Error(`${name}: the FeatureMatcher was built for other models than this run's student and teacher`);
    // a dry run on the first batch fixes the shapes and builds the projections (before the optimizer sees them)
    o.train.setEpoch(0);
    const b0 = o.train.batchAt(0);
    const t0 = isTeacher(o.teacher) ? await runTeacher(o.teacher, b0.x, fm.teacherNames) : undefined;
    try {
      fm.probe(b0.x, t0);
    } finally {
      b0.dispose();
      if (t0) dispose([...t0.values()]);
    }
  }
  const projFile = path.join(o.outDir, 'last.proj.safetensors');
  const opt = makeOptimizer(o.optimizer, fm ? [...o.model.parameters(), ...fm.parameters()] : o.model.parameters());
  const sched = makeSchedule(o.schedule, opt, o.epochs, o.warmupEpochs ?? 0, o.milestones);
  let startEpoch = 0;
  let best = { acc: -1, epoch: -1 };
  let resumedFrom: number | undefined;
  let partial: PartialEpoch | null = null;
  if (o.resume && fs.existsSync(state)) {
    const st = JSON.parse(fs.readFileSync(state, 'utf8'));
    const w = loadSafetensors(path.join(o.outDir, 'last.safetensors'));
    try { o.model.loadStateDict(w.tensors); } finally { dispose(w.tensors); }
    if (fm && fm.projections.length) {
      const pw = loadSafetensors(projFile);
      try { fm.projections.loadStateDict(pw.tensors); } finally { dispose(pw.tensors); }
    }
    const os_ = loadSafetensors(path.join(o.outDir, 'last.optim.safetensors'));
    try { opt.loadStateDict({ tensors: os_.tensors, meta: JSON.parse(os_.metadata.meta) }); } finally { dispose(os_.tensors); }
    sched.loadStateDict(st.scheduler);
    startEpoch = st.epoch + 1;
    best = st.best;
    partial = st.partial ?? null;
    resumedFrom = st.epoch + 1;
    // metrics beyond the committed epoch belong to an interrupted attempt
    if (fs.existsSync(metricsFile)) {
      const keepLines = fs.readFileSync(metricsFile, 'utf8').split('\n').filter((l) => l && JSON.parse(l).epoch <= st.epoch + 1);
      writeFileAtomic(metricsFile, keepLines.map((l) => l + '\n').join(''));
    }
    log(partial ? `${name}: resuming at epoch ${partial.epoch + 1} of ${o.epochs}, step ${partial.step} of ${o.train.length}` : `${name}: resuming after epoch ${startEpoch} of ${o.epochs}`);
  } else if (o.resume) log(`${name}: nothing to resume in ${o.outDir}; starting`);

  let cached: Tensor | null = null;
  let cacheState: TrainSummary['teacher_cache'] = o.teacher ? 'off' : undefined;
  let cacheFile: string | null = null;
  const kdo = o.kd;
  if (kdo) {
    checkSchedule(kdo.temperature, 'distill.temperature');
    checkSchedule(kdo.alpha, 'distill.alpha');
    if (kdo.dynamicTemperature && kdo.softLoss !== 'kl') throw new Error(`${name}: a dynamic temperature needs softLoss 'kl', got '${kdo.softLoss}'`);
  }
  const scheduled = !!kdo && (!isConstant(kdo.temperature) || !isConstant(kdo.alpha) || !!kdo.dynamicTemperature);
  const kdAt = (p: RunProgress) => {
    const T = scheduleValue(kdo!.temperature, p), alpha = scheduleValue(kdo!.alpha, p);
    if (!(T > 0)) throw new Error(`${name}: the temperature schedule reached ${T} at epoch ${p.epoch + 1}, step ${p.step + 1}; it must stay positive`);
    if (!(alpha >= 0 && alpha <= 1)) throw new Error(`${name}: the alpha schedule reached ${alpha} at epoch ${p.epoch + 1}, step ${p.step + 1}; it must stay in [0, 1]`);
    return { T, alpha };
  };
  // constant settings: one loss function; scheduled ones: the loss is rebuilt from the values at each step
  const kdConst = kdo && !scheduled ? responseKD({ temperature: initialValue(kdo.temperature), alpha: initialValue(kdo.alpha), softLoss: kdo.softLoss }) : null;
  let progressNow: RunProgress = { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: o.epochs };
  const kd = kdo
    ? (s: Tensor, t: Tensor, y: Tensor) => {
        if (kdConst) return kdConst(s, t, y);
        const { T, alpha } = kdAt(progressNow);
        return tidy(() => {
          const hard = F.crossEntropy(s, y);
          const soft = kdo.dynamicTemperature ? kdLossPerSample(s, t, dynamicTemperature(kdo.dynamicTemperature, s, t, T)) : softTargetLoss(s, t, T, kdo.softLoss);
          return { loss: hard.mul(alpha).add(soft.mul(1 - alpha)), hard, soft };
        });
      }
    : null;
  // an external teacher runs before each step (its outputs awaited); a Module teacher runs inside the step
  const external = isTeacher(o.teacher) ? o.teacher : null;
  if (o.teacher) {
    if (!isTeacher(o.teacher)) {
      o.teacher.eval();
      o.teacher.requiresGrad_(false);
    }
    if (o.kd?.cache && !fm && !o.train.transforms.some((t) => t.random)) {
      const cacheDir = o.cacheDir ?? path.join(o.outDir, '..', '.teacher-cache');
      fs.mkdirSync(cacheDir, { recursive: true });
      cacheFile = teacherCacheFile(o.teacher, o.train, cacheDir);
      cached = readTeacherCache(cacheFile, o.train.dataset.length);
      const device = deviceOf(o.model);
      if (cached && cached.device !== device) {
        const moved = keep(cached.to({ device }));
        cached.dispose();
        cached = moved;
      }
      if (cached) cacheState = 'loaded';
      else if (startEpoch > 0 || partial || o.train.dropLast) {
        // the first epoch will not cover every sample from the start: compute the rows now, from the same batches
        cached = await computeTeacherLogits(o.teacher, o.train);
        writeTeacherCache(cacheFile, cached, o.teacher.constructor.name);
        cacheState = 'built';
      }
      // otherwise the first epoch runs the teacher on every batch and fills the cache as it goes
    }
  }

  const times: number[] = [];
  const liveTimes: number[] = [];
  const cachedTimes: number[] = [];
  let lastAcc = 0;
  let filling: Tensor | null = null;
  try {
    for (let epoch = partial ? partial.epoch : startEpoch; epoch < o.epochs; epoch++) {
      o.train.setEpoch(epoch);
      o.model.train();
      fm?.train(true);
      const from = partial && partial.epoch === epoch ? partial : null;
      partial = null;
      let { sum, hardSum, softSum, correct, seen } = from ?? { sum: 0, hardSum: 0, softSum: 0, correct: 0, seen: 0 };
      const termSums: Record<string, number> = { ...(from?.terms ?? {}) };
      if (fm) for (const k of fm.termNames) termSums[k] ??= 0;
      const t0 = Date.now() - (from?.elapsed ?? 0) * 1000;
      const teacherMode: 'live' | 'cached' | null = o.teacher ? (cached ? 'cached' : 'live') : null;
      const steps = o.train.length;
      const progress = o.progress === false ? null : new Progress(`${name} ${epoch + 1}/${o.epochs}`, steps, log, from?.step ?? 0);
      for (let step = from?.step ?? 0; step < steps; step++) {
        const b = o.train.batchAt(step);
        manualSeed(stepSeed(o.seed, epoch, step));
        progressNow = { epoch, step, stepsPerEpoch: steps, epochs: o.epochs };
        const ext = external && (fm || !cached) ? await runTeacher(external, b.x, fm ? fm.teacherNames : ['logits']) : null;
        const r = disposingAfter(ext, () => tidy(() => {
          let logits: Tensor;
          let loss: Tensor, hard: Tensor | null = null, soft: Tensor | null = null;
          let terms: Map<string, Tensor> | null = null;
          if (fm) {
            const f = fm.forward(b.x, b.y, progressNow, ext ?? undefined);
            logits = f.logits;
            terms = f.terms;
            if (kd) ({ loss, hard, soft } = kd(logits, f.teacherLogits, b.y));
            else loss = F.crossEntropy(logits, b.y);
            for (const t of terms.values()) loss = loss.add(t);
          } else if (kd) {
            logits = o.model.call(b.x) as Tensor;
            let t: Tensor;
            if (cached) t = cached.indexSelect(0, rowIndex(b.indices, cached.device));
            else {
              t = ext ? ext.get('logits')! : tidy(() => noGrad(() => (o.teacher as Module).call(b.x) as Tensor));
              if (cacheFile) {
                if (!filling) filling = keep(ops.zeros([o.train.dataset.length, t.shape[1]], { dtype: 'float32', device: t.device }));
                noGrad(() => ops.index_copy_(filling!, 0, tensor(b.indices, { dtype: 'int64', device: t.device }), t.float()));
              }
            }
            ({ loss, hard, soft } = kd(logits, t, b.y));
          } else {
            logits = o.model.call(b.x) as Tensor;
            loss = F.crossEntropy(logits, b.y);
          }
          const value = loss.item();
          const termVals = terms ? [...terms].map(([k, v]) => [k, v.item()] as const) : null;
          if (!Number.isFinite(value)) {
            const bad = termVals?.filter(([, v]) => !Number.isFinite(v)).map(([k]) => k) ?? [];
            return { value, hard: NaN, soft: NaN, correct: 0, termVals, bad };
          }
          opt.zeroGrad();
          loss.backward();
          opt.step();
          return { value, hard: hard ? hard.item() : NaN, soft: soft ? soft.item() : NaN, correct: noGrad(() => logits.argmax(1).eq(b.y).sum().item()), termVals, bad: [] as string[] };
        }));
        const n = b.y.shape[0];
        b.dispose();
        if (!Number.isFinite(r.value))
          throw new Error(`${name}: loss is ${r.value} at epoch ${epoch + 1}, step ${step + 1}${r.bad.length ? ` (non-finite terms: ${r.bad.join(', ')})` : ''}; stopping. The last good checkpoint (epoch ${epoch}) is in ${o.outDir}`);
        sum += r.value * n; hardSum += r.hard * n; softSum += r.soft * n; correct += r.correct; seen += n;
        if (r.termVals) for (const [k, v] of r.termVals) termSums[k] += v * n;
        progress?.update(step + 1, {
          loss: sum / seen, ...(kd ? { hard: hardSum / seen, soft: softSum / seen } : {}), acc: (100 * correct) / seen,
          ...(fm ? { terms: termMeans(termSums, seen) } : {}),
          rate: seen / Math.max(1e-3, (Date.now() - t0) / 1000),
        });
        await nextTick();
        if (o.signal?.aborted && step + 1 < steps) {
          progress?.stop();
          const p: PartialEpoch = { epoch, step: step + 1, sum, hardSum, softSum, correct, seen, elapsed: (Date.now() - t0) / 1000, ...(fm ? { terms: termSums } : {}) };
          saveSafetensors(path.join(o.outDir, 'last.safetensors'), o.model.stateDict(), { epoch: String(epoch), step: String(step + 1) });
          if (fm && fm.projections.length) saveSafetensors(projFile, fm.projections.stateDict());
          const osd = opt.stateDict();
          saveSafetensors(path.join(o.outDir, 'last.optim.safetensors'), osd.tensors, { meta: JSON.stringify(osd.meta) });
          writeFileAtomic(state, JSON.stringify({ epoch: epoch - 1, best, scheduler: sched.stateDict(), partial: p }));
          throw new TrainingInterrupted(o.outDir, epoch + 1, step + 1);
        }
      }
      progress?.stop();
      const epochS = (Date.now() - t0) / 1000;
      times.push(epochS);
      if (teacherMode === 'live') liveTimes.push(epochS);
      else if (teacherMode === 'cached') cachedTimes.push(epochS);
      if (filling && cacheFile) {
        // every row was written by this epoch's batches: the cache is complete
        writeTeacherCache(cacheFile, filling, o.teacher!.constructor.name);
        cached = filling;
        filling = null;
        cacheState = 'built';
      }
      lastAcc = await evaluate(o.model, o.test, o.testTransforms);
      const lr = opt.paramGroups[0].options.lr;
      sched.step();
      const m: EpochMetrics = {
        epoch: epoch + 1, loss: sum / seen, train_acc: (100 * correct) / seen, test_acc: lastAcc, lr, epoch_s: epochS, samples_per_s: seen / epochS,
        ...(kd ? { hard: hardSum / seen, soft: softSum / seen } : {}), ...(teacherMode ? { teacher: teacherMode } : {}),
        ...(fm ? { terms: termMeans(termSums, seen) } : {}),
        ...(scheduled ? (({ T, alpha }) => ({ temperature: T, alpha }))(kdAt({ epoch, step: steps, stepsPerEpoch: steps, epochs: o.epochs })) : {}),
      };
      // checkpoint files first, then state.json (the commit point), then the metrics line
      if (lastAcc > best.acc) {
        best = { acc: lastAcc, epoch: epoch + 1 };
        saveSafetensors(path.join(o.outDir, 'best.safetensors'), o.model.stateDict(), { epoch: String(epoch + 1), test_acc: lastAcc.toFixed(2) });
      }
      const every = o.checkpointEvery ?? 1;
      if (every > 0 && (epoch + 1) % every === 0) saveSafetensors(path.join(o.outDir, `epoch-${epoch + 1}.safetensors`), o.model.stateDict());
      saveSafetensors(path.join(o.outDir, 'last.safetensors'), o.model.stateDict(), { epoch: String(epoch + 1) });
      if (fm && fm.projections.length) saveSafetensors(projFile, fm.projections.stateDict());
      const osd = opt.stateDict();
      saveSafetensors(path.join(o.outDir, 'last.optim.safetensors'), osd.tensors, { meta: JSON.stringify(osd.meta) });
      writeFileAtomic(state, JSON.stringify({ epoch, best, scheduler: sched.stateDict() }));
      appendLineDurable(metricsFile, JSON.stringify(m));
      const termText = m.terms ? ` [${Object.entries(m.terms).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}]` : '';
      log(`${name} epoch ${epoch + 1}/${o.epochs}  loss ${m.loss.toFixed(4)}${kd ? ` (hard ${m.hard!.toFixed(4)}, soft ${m.soft!.toFixed(4)})` : ''}${termText}  train ${m.train_acc.toFixed(2)} %  test ${lastAcc.toFixed(2)} %  ${m.samples_per_s.toFixed(0)} samples/s  ${epochS.toFixed(1)} s`);
      if (o.signal?.aborted && epoch + 1 < o.epochs) throw new TrainingInterrupted(o.outDir, epoch + 2, 0);
    }
    if (times.length === 0) lastAcc = await evaluate(o.model, o.test, o.testTransforms);
  } finally {
    cached?.dispose();
    (filling as Tensor | null)?.dispose();
    opt.dispose();
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return {
    name, epochs: o.epochs, best_test_acc: best.acc, best_epoch: best.epoch, final_test_acc: lastAcc,
    mean_epoch_s: mean(times), out_dir: o.outDir,
    ...(cacheState ? { teacher_cache: cacheState } : {}),
    ...(liveTimes.length ? { live_teacher_epoch_s: mean(liveTimes) } : {}), ...(cachedTimes.length ? { cached_teacher_epoch_s: mean(cachedTimes) } : {}),
    ...(resumedFrom !== undefined ? { resumed_from_epoch: resumedFrom } : {}),
  };
}

/** `fn()`, then disposes an external teacher's outputs for the step (they were made outside the step's scope). */
function disposingAfter<T>(outs: Map<string, Tensor> | null, fn: () => T): T {
  try {
    return fn();
  } finally {
    if (outs) dispose([...outs.values()]);
  }
}

/** A progress bar per epoch on a TTY (cli-progress), plain lines every quarter epoch elsewhere. */
class Progress {
  private bar: any = null;
  private nextLine: number;
  constructor(private readonly label: string, private readonly total: number, private readonly log: (l: string) => void, start = 0) {
    this.nextLine = Math.ceil(total / 4);
    while (this.nextLine <= start) this.nextLine += Math.ceil(total / 4);
    if (process.stdout.isTTY) {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { SingleBar, Presets } = require('cli-progress');
      this.bar = new SingleBar(
        { format: `${label} [{bar}] {value}/{total} batches | {terms} | acc {acc} % | {rate} samples/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true },
        Presets.shades_classic,
      );
      this.bar.start(total, start, { terms: '', acc: '0.00', rate: '0' });
    }
  }
  update(step: number, m: { loss: number; hard?: number; soft?: number; acc: number; rate: number; terms?: Record<string, number> }): void {
    const extra = m.terms ? Object.entries(m.terms).map(([k, v]) => ` ${k} ${v.toFixed(4)}`).join('') : '';
    const terms = `loss ${m.loss.toFixed(4)}${m.hard !== undefined ? ` hard ${m.hard.toFixed(4)} soft ${m.soft!.toFixed(4)}` : ''}${extra}`;
    if (this.bar) this.bar.update(step, { terms, acc: m.acc.toFixed(2), rate: m.rate.toFixed(0) });
    else if (step >= this.nextLine && step < this.total) {
      this.log(`${this.label}  batch ${step}/${this.total}  ${terms}  acc ${m.acc.toFixed(2)} %  ${m.rate.toFixed(0)} samples/s`);
      this.nextLine += Math.ceil(this.total / 4);
    }
  }
  stop(): void {
    this.bar?.stop();
  }
}
