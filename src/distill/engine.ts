// The one training engine. A run has
//   roles   models, each frozen (a teacher: a Module, or an external Teacher run before the step, or its logits read
//           from the teacher cache) or trainable (its own optimizer and learning-rate schedule);
//   terms   registered losses (`ce`, `kl`, `soft_ce`, `logit_mse`, `dkd`, `hint`, `at`, `rkd`, ... — see
//           registerBuiltinLosses) over named taps `<role>.<tap>` (`student.logits`, `teacher.layer3`,
//           `student.encoder.layers.1.self_attn#1`) and `labels`, each weighted by a number or a schedule, with
//           projections inserted where shapes differ (trained with the role whose tap they read);
//   updates which terms each optimizer step minimises (default: one update, all terms, all trainable roles; several
//           updates alternate, e.g. a discriminator's step and then a generator's).
// Every kind of classification run goes through `runEngine`: plain training (one role, the term `ce`), response KD,
// feature KD, several students learning from each other. Its run directory is the RunDir: checkpoints of every role
// written atomically, state.json as the commit point, metrics.jsonl appended durably, exact resume at any step.
import { GradReducer, type ProcessGroup, Tensor, defaultProcessGroup, dispose, keep, manualSeed, nextTick, noGrad, ops, tensor, tidy } from '../torch';
import { Module, ModuleList, closest, syncBatchNorm } from '../nn';
import { Adam, AdamW, CosineAnnealingLR, LRScheduler, LambdaLR, MultiStepLR, Optimizer, SGD, StepLR, clipGradNorm, warmup, warmupCosine } from '../optim';
import { DataLoader, TensorDataset, mixSeed, rowIndex } from '../data';
import { type Teacher, isTeacher, runTeacher } from '../teachers';
import { type LayerMap, type LossDef, Projection, arityFits, arityText, expandMatches, getLoss, modelPaths, modulePath, planProjection, registerBuiltinLosses } from './features';
import { type Progress as RunProgress } from './schedules';
import { type LossResult, type WeightSpec, checkOptions, checkWeight, lossNumber, resolveOptions, weightAt, weightedSum } from './terms';
import { computeTeacherLogits, readTeacherCache, teacherCacheFile, writeTeacherCache } from './teacher-cache';
import { RunDir, readRunState } from './rundir';
import { Progress } from './progress';
import * as path from 'node:path';
import * as fs from 'node:fs';

export interface OptimizerSpec {
  kind: 'sgd' | 'adam' | 'adamw';
  lr: number;
  momentum?: number;
  weightDecay?: number;
  /** Adam / AdamW: (β₁, β₂); default (0.9, 0.999). */
  betas?: [number, number];
  /** Weight decay on matrices only (parameters of rank ≥ 2), none on biases and norms (GPT-2's convention). */
  decayMatricesOnly?: boolean;
}
export interface LrScheduleSpec {
  kind: 'constant' | 'cosine' | 'step' | 'multistep';
  /** Stepped once per epoch (default) or once per optimizer step. */
  per?: 'epoch' | 'step';
  /** For 'multistep': epochs (counted after warm-up) at which the learning rate is multiplied by 0.1. */
  milestones?: number[];
  /** Linear warm-up over this many epochs before the schedule (0 = none). */
  warmupEpochs?: number;
  /** per 'step', kind 'cosine': linear warm-up over this many steps, then a cosine down to `minLr` (default 0). */
  warmupSteps?: number;
  minLr?: number;
}

export interface RoleSpec {
  /** Letters, digits, _ and -: the prefix of the role's taps (`student.logits`). */
  name: string;
  /** A Module (trained here or frozen) or an external teacher (ONNX, TorchScript, TF.js, black box, HTTP). */
  model: Module | Teacher;
  /** Trainable roles have an optimizer; a role without one is frozen (eval mode, no gradients). */
  optimizer?: OptimizerSpec;
  schedule?: LrScheduleSpec;
  /**
   * Frozen roles: read logits from the teacher cache (computed once per data set and transforms) when only the logits
   * are tapped and the training transforms are deterministic.
   */
  cache?: boolean;
  /** Trainable roles: clip the gradient norm (L2, over the role's parameters) to this value before each step. */
  clip?: number;
  /** How the role's weights are written (default: safetensors of its state_dict), e.g. with a tokenizer beside them. */
  save?: (file: string, model: Module, meta: Record<string, string>) => void;
  /**
   * The role's input: another role's tap (`generator.logits`: a generator's images) instead of the batch's `x`. A
   * frozen role on a trained role's output passes gradients back to it in the updates that step that role (a teacher
   * judging a generator's images); elsewhere the input is a constant. Several taps: the module's forward receives them
   * as arguments in that order (a discriminator judging the teacher's and the student's outputs: `['teacher.logits',
   * 'student.logits']`); after the first, `labels` and `batch.<name>` may be among them (a conditional discriminator).
   * `batch.<name>` alone: another tensor of the batch (EngineBatch.taps), e.g. an image teacher reading `batch.image`
   * while the student reads the audio in `x`.
   */
  input?: string | string[];
  /** With `input`: never pass gradients back to the input's role (a student learning on a generator's images). */
  detachInput?: boolean;
  /** false: the role's output is not class logits (a generator): no accuracy counted or evaluated. Default true. */
  classify?: boolean;
}

/** One batch of a BatchSource: inputs, labels, the data-set rows (for the teacher cache), other named tensors. */
export interface EngineBatch {
  x: Tensor;
  /** The labels: the tap `labels`. */
  y: Tensor;
  indices?: Int32Array;
  /** More tensors of the batch, tapped as `batch.<name>` (e.g. per-token loss weights). */
  taps?: Record<string, Tensor>;
  dispose(): void;
}
/**
 * A BatchSource that data-parallel runs can split (a DataLoader, cached views): `setShard` makes each batch this
 * process's contiguous share of the global batch, `globalRows(b)` is the whole batch's size.
 */
export interface ShardableSource extends BatchSource {
  setShard(rank: number, world: number): void;
  globalRows(b: number): number;
}
function isShardable(s: BatchSource): s is ShardableSource {
  return typeof (s as Partial<ShardableSource>).setShard === 'function' && typeof (s as Partial<ShardableSource>).globalRows === 'function';
}

/** Where the training batches come from: a DataLoader, or any source with the same three members. */
export interface BatchSource {
  /** Batches per epoch. */
  readonly length: number;
  setEpoch(epoch: number): void;
  /** Batch i of the epoch; a source that must wait for something (a remote teacher) returns a promise. */
  batchAt(i: number): EngineBatch | Promise<EngineBatch>;
}

export interface TermSpec {
  /** A registered loss: ce, kl, soft_ce, logit_mse, dkd, hint, at, rkd, ... (lossNames()). */
  loss: string;
  /** The side that learns: tap(s) `<role>.<path>`; a `*` in the path pairs layers (see `map`). */
  student: string | string[];
  /** The target side (never receives gradients): tap(s) `<role>.<path>`, or `labels`. */
  teacher: string | string[];
  /** Default 1: a number, a schedule ({ kind: 'linear', from, to }, ...) or a function of progress. */
  weight?: WeightSpec;
  /** Options of the loss (temperature, p, ...); any numeric option may be a schedule. */
  options?: Record<string, unknown>;
  /** 'auto' (default) inserts a projection where the loss needs equal shapes and they differ; 'none' refuses. */
  proj?: 'auto' | 'none';
  /** How `*` patterns pair up (uniform, last_k, explicit); default uniform. */
  map?: LayerMap;
  /** Name in metrics and logs (default `<loss>:<student path>`). */
  name?: string;
  /**
   * Also report the unweighted value as a top-level metric under this key (e.g. `hard`, `soft`); false: not reported
   * apart from the total loss. Default: the weighted value under `terms.<name>`.
   */
  metric?: string | false;
}

export interface UpdateSpec {
  /** The trainable roles whose optimizers step in this update. */
  roles: string[];
  /** The terms (by name) this update minimises. */
  terms: string[];
  /**
   * Run this update only on every n-th optimizer step of the run (steps counted from 0 over the whole run; default 1,
   * every step): e.g. a discriminator stepped once per n student steps. k updates of the same role in a row step it k
   * times on the same batch.
   */
  every?: number;
}

export interface EngineOptions {
  name?: string;
  roles: RoleSpec[];
  terms: TermSpec[];
  /** Default: one update over every term and every trainable role. */
  updates?: UpdateSpec[];
  /** The role whose weights are `last.safetensors` / `best.safetensors` (default: the first trainable role). */
  primary?: string;
  train: BatchSource;
  /**
   * Data-parallel training over a process group (default: defaultProcessGroup(); null: this process alone). Every
   * process runs the same engine call; `train` must be a DataLoader, whose batches become the global batches: each
   * process takes its share of every batch (DataLoader.setShard), gradients are averaged over the processes, weighted
   * by their shares, before every optimizer step, and rank 0 alone evaluates, writes checkpoints, metrics and logs. The
   * steps, samples and (up to float rounding) weights are those of one process with the same batch size.
   */
  dist?: ProcessGroup | null;
  /**
   * Data-parallel: all-reduce the gradients in buckets during the backward pass with c10d's Reducer, as PyTorch's DDP
   * does (default true); false: one all-reduce of all gradients after the backward pass. Steps with gradient
   * accumulation, and steps where some process's share is empty, use the latter either way.
   */
  overlapGradients?: boolean;
  /** Data-parallel: the Reducer's bucket size in MiB (default 25, DDP's bucket_cap_mb). */
  bucketCapMB?: number;
  /**
   * Data-parallel: synchronise the trained roles' BatchNorm layers (PyTorch's SyncBatchNorm): in training they
   * normalise with the statistics of the whole global batch, as one process would. Default false.
   */
  syncBatchNorm?: boolean;
  /** Batches per optimizer step (gradient accumulation; the loss of each is divided by their number). Default 1. */
  gradAccum?: number;
  /** Held-out data: the trainable roles' accuracy after every epoch (and train accuracy). None: no evaluation. */
  test?: TensorDataset;
  testTransforms?: DataLoader['transforms'];
  epochs: number;
  seed: number;
  outDir: string;
  resume?: boolean;
  force?: boolean;
  /** Keep `epoch-N.safetensors` every N epochs (0 = never; default 1). */
  checkpointEvery?: number;
  /** Also commit a resumable state every N optimizer steps inside an epoch (default: at epoch ends only). */
  checkpointEverySteps?: number;
  /** Append a metrics line every N optimizer steps (`step` counted over the run) instead of one per epoch. */
  logEverySteps?: number;
  /** Extra values logged per epoch (e.g. scheduled hyper-parameters), evaluated at the end of each epoch. */
  report?: (p: RunProgress) => Record<string, number>;
  log?: (line: string) => void;
  progress?: boolean;
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
  /** Each term's weighted loss (those without a top-level metric), mean over the epoch. */
  terms?: Record<string, number>;
  /** The other trainable roles' accuracies. */
  roles?: Record<string, { train_acc: number; test_acc: number }>;
  [extra: string]: unknown;
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
  /** The other trainable roles' final test accuracies. */
  roles?: Record<string, { final_test_acc: number }>;
  /** Optimizer steps of the whole run, and the loss of the last one. */
  steps?: number;
  last_loss?: number;
  /** The step (counted over the run) a resumed run continued from. */
  resumed_from_step?: number;
}

/** Thrown by a run whose `signal` aborts: the state after the last finished step is saved for `resume`. */
export class TrainingInterrupted extends Error {
  constructor(readonly outDir: string, readonly epoch: number, readonly step: number) {
    super(`interrupted at epoch ${epoch}, step ${step}: the model and optimizer state are saved in ${outDir}; continue with resume`);
    this.name = 'TrainingInterrupted';
  }
}

/** The device of a module's first parameter (CPU when it has none). */
export function deviceOf(m: Module): string {
  return m.parameters()[0]?.device ?? 'cpu';
}

/** Accuracy (percent) of `model` on a data set, in eval mode under no-grad. */
export async function evaluate(model: Module, test: TensorDataset, transforms: DataLoader['transforms'] = [], onProgress?: (done: number, total: number) => void): Promise<number> {
  return (100 * (await countCorrect(model, test, transforms, onProgress))) / test.length;
}

/** How many samples of `test` the model classifies right (top-1, in eval mode). */
export async function countCorrect(model: Module, test: TensorDataset, transforms: DataLoader['transforms'] = [], onProgress?: (done: number, total: number) => void): Promise<number> {
  const was = model.training;
  model.eval();
  let correct = 0, done = 0;
  try {
    const loader = new DataLoader(test, { batchSize: 1000, transforms, device: deviceOf(model) });
    for (const b of loader) {
      correct += tidy(() => noGrad(() => (model.call(b.x) as Tensor).argmax(1).eq(b.y).sum().item()));
      done += b.y.shape[0];
      dispose([b.x, b.y]);
      onProgress?.(done, test.length);
      await nextTick();
    }
  } finally {
    model.train(was);
  }
  return correct;
}

export function makeOptimizer(o: OptimizerSpec, params: Tensor[]): Optimizer<any> {
  const momentum = o.momentum ?? 0, weightDecay = o.weightDecay ?? 0;
  // decay on matrices only: two parameter groups, the matrices first
  const groups = o.decayMatricesOnly
    ? [{ params: params.filter((p) => p.ndim >= 2), weightDecay }, { params: params.filter((p) => p.ndim < 2), weightDecay: 0 }]
    : params;
  if (o.kind === 'sgd') return new SGD(groups, { lr: o.lr, momentum, weightDecay });
  if (o.kind === 'adam') return new Adam(groups, { lr: o.lr, weightDecay, ...(o.betas ? { betas: o.betas } : {}) });
  if (o.kind === 'adamw') return new AdamW(groups, { lr: o.lr, weightDecay, ...(o.betas ? { betas: o.betas } : {}) });
  throw new Error(`optimizer: unknown kind '${(o as { kind: string }).kind}' (expected sgd, adam or adamw)`);
}
/**
 * A learning-rate schedule (optim's schedulers): stepped per epoch over `epochs` (after an optional warm-up), or per
 * optimizer step over `epochs × stepsPerEpoch` steps.
 */
export function makeLrSchedule(s: LrScheduleSpec, opt: Optimizer<any>, epochs: number, stepsPerEpoch = 1): LRScheduler {
  if (s.per === 'step') {
    const total = epochs * stepsPerEpoch;
    if (s.kind === 'cosine') return warmupCosine(opt, { warmupSteps: s.warmupSteps ?? 0, totalSteps: total, minLr: s.minLr ?? 0 });
    if (s.kind === 'constant') return warmup(opt, s.warmupSteps ?? 0, new LambdaLR(opt, () => 1));
    throw new Error(`schedule '${s.kind}' per step: use 'cosine' or 'constant' (milestones and step decay count epochs)`);
  }
  const warmupEpochs = s.warmupEpochs ?? 0, milestones = s.milestones ?? [];
  const rest = Math.max(1, epochs - warmupEpochs);
  if (s.kind === 'multistep' && !milestones.length) throw new Error("schedule 'multistep' needs milestones (epochs at which the learning rate drops by 10x)");
  const main =
    s.kind === 'cosine' ? new CosineAnnealingLR(opt, rest)
    : s.kind === 'step' ? new StepLR(opt, Math.max(1, Math.floor(rest / 3)), 0.1)
    : s.kind === 'multistep' ? new MultiStepLR(opt, milestones, 0.1)
    : new LambdaLR(opt, () => 1);
  return warmup(opt, warmupEpochs, main);
}

/** libtorch's generator is reseeded before every step from (seed, epoch, step), so a run can resume at any step. */
export function stepSeed(seed: number, epoch: number, step: number): number {
  return mixSeed(mixSeed(seed, epoch), step) & 0x7fffffff;
}

// ------------------------------------------------------------------------------------------------ roles and taps

const LOGITS = 'logits';
const LABELS = 'labels';

interface Tap {
  /** '' for the batch's labels. */
  role: string;
  path: string;
}

interface Role {
  spec: RoleSpec;
  name: string;
  module: Module | null;
  external: Teacher | null;
  trainable: boolean;
  /** Taps read from this role (module paths or external value names; `logits` always for trainable roles). */
  taps: Set<string>;
  /** The module paths behind the taps other than logits (the modules whose outputs the forward pass captures). */
  inner: string[];
  /** Projections and loss modules fed by this role's taps (trained with it). */
  projections: Module[];
  opt: Optimizer<any> | null;
  sched: LRScheduler | null;
  /** Frozen roles: cached logits [N, C], or the rows filled during the first epoch. */
  cached: Tensor | null;
  filling: Tensor | null;
  cacheFile: string | null;
  /** Trainable roles: the modules that are told where training is before each step (see StepAware). */
  stepAware: StepAware[];
  /** Data-parallel: the parameters whose gradients are averaged over the processes (found on the first step). */
  gradParams?: Tensor[];
  /** The taps the role reads as its inputs (RoleSpec.input), or none for the batch's x. */
  inputs: Tap[];
}

/**
 * A module of a trained role that defines `beforeStep` is called with the run's progress before each optimizer step
 * (e.g. module replacement, whose replacement probability follows a schedule): resumed runs call it with the same
 * progress as uninterrupted ones.
 */
export interface StepAware {
  beforeStep(p: RunProgress): void;
}
const isStepAware = (m: Module): m is Module & StepAware => typeof (m as Partial<StepAware>).beforeStep === 'function';

interface Term {
  spec: TermSpec;
  name: string;
  def: LossDef;
  s: Tap[];
  t: Tap[];
  weight: WeightSpec;
  options: Record<string, unknown>;
  /** The options' values when none follows a schedule. */
  fixed: { values: Record<string, unknown>; scheduled: boolean } | null;
  proj: Projection | null;
  /** The loss's own module (LossDef.module), built by the dry run. */
  mod: Module | null;
}

function parseTap(ref: string, roles: Map<string, Role>, where: string): Tap {
  if (ref === LABELS) return { role: '', path: LABELS };
  if (ref.startsWith('batch.') && !roles.has('batch')) return { role: '', path: ref.slice('batch.'.length) };
  const i = ref.indexOf('.');
  const role = i < 0 ? ref : ref.slice(0, i);
  if (!roles.has(role))
    throw new Error(`${where}: '${ref}' names no role (taps are <role>.<path>, labels or batch.<name>; roles: ${[...roles.keys()].join(', ')}). Closest: ${closest(role, [...roles.keys()], 3).join(', ')}`);
  if (i < 0 || i === ref.length - 1) throw new Error(`${where}: '${ref}' needs a path after the role (e.g. ${role}.logits)`);
  return { role, path: ref.slice(i + 1) };
}

function checkTap(r: Role, tap: Tap, where: string): void {
  if (tap.path === LOGITS) return;
  const m = r.module ?? r.external!;
  const all = modelPaths(m);
  // an external teacher whose names are known only after a batch (TorchScript) is checked when it runs
  if (r.external && all.length === 0) return;
  const base = r.external ? tap.path : modulePath(tap.path);
  if (!all.includes(base))
    throw new Error(
      `${where}: '${base}' is not ${r.external ? `a value of the ${r.external.kind} teacher` : `a module of role '${r.name}' (${m.constructor.name})`}. Closest: ${closest(base, all, 5).join(', ')}`,
    );
}

const tapText = (t: Tap) => (t.role ? `${t.role}.${t.path}` : t.path);

/** The roles a role's inputs come from, directly or through other roles. */
function inputRoles(r: Role, roles: Map<string, Role>, out = new Set<Role>()): Set<Role> {
  for (const x of r.inputs)
    if (x.role && !out.has(roles.get(x.role)!)) {
      out.add(roles.get(x.role)!);
      inputRoles(roles.get(x.role)!, roles, out);
    }
  return out;
}

/** Whether a role's input comes (directly or through other roles) from a trainable role. */
function feedsFrom(r: Role | undefined, roles: Map<string, Role>): boolean {
  return !!r && [...inputRoles(r, roles)].some((x) => x.trainable);
}

// ------------------------------------------------------------------------------------------------------- the run

/** Runs the engine: trains the trainable roles on the terms, evaluating and checkpointing every epoch. */
/** What a step needs: the roles, the terms over their taps, and which updates minimise which terms. */
export interface StepSpec {
  name?: string;
  roles: RoleSpec[];
  terms: TermSpec[];
  /** Default: one update over every term and every trainable role. */
  updates?: UpdateSpec[];
  /** The trainable role whose predictions `correct` counts and whose weights are the run's (default: the first). */
  primary?: string;
}

/** The roles, terms and updates of a run, checked; nothing is run and no model is changed. */
interface Plan {
  name: string;
  roles: Map<string, Role>;
  terms: Term[];
  updates: { roles: Role[]; terms: Term[]; need: Role[]; every: number }[];
  trainable: Role[];
  frozen: Role[];
  primary: Role;
  /** The trainable roles other than the primary one whose accuracy is counted (classify not false). */
  others: Role[];
  projections: ModuleList;
  /** Whether a term reads more than logits (a dry run on the first batch then fixes the taps' shapes). */
  probing: boolean;
}

function planStep(o: StepSpec): Plan {
  const name = o.name ?? 'run';
  registerBuiltinLosses();
  if (!o.roles?.length) throw new Error(`${name}: a run needs at least one role`);
  if (!o.terms?.length) throw new Error(`${name}: a run needs at least one term`);

  // ---- roles
  const roles = new Map<string, Role>();
  for (const [i, spec] of o.roles.entries()) {
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(spec.name ?? '')) throw new Error(`${name}: roles[${i}].name '${spec.name}' must be letters, digits, _ or - (it prefixes taps)`);
    if (roles.has(spec.name)) throw new Error(`${name}: two roles are named '${spec.name}'`);
    const external = isTeacher(spec.model) ? spec.model : null;
    if (!external && !(spec.model instanceof Module)) throw new Error(`${name}: roles[${i}] (${spec.name}).model must be a Module or a Teacher`);
    if (external && spec.optimizer) throw new Error(`${name}: role '${spec.name}' is an external ${external.kind} teacher and cannot be trained (remove its optimizer)`);
    roles.set(spec.name, {
      spec, name: spec.name, module: external ? null : (spec.model as Module), external, trainable: !!spec.optimizer,
      taps: new Set(spec.optimizer ? [LOGITS] : []), inner: [], projections: [], opt: null, sched: null, cached: null, filling: null, cacheFile: null, stepAware: [], inputs: [],
    });
  }
  // ---- inputs: roles reading another role's tap, checked for cycles
  for (const r of roles.values()) {
    if (r.spec.input === undefined) continue;
    const where = `${name}: role '${r.name}'.input`;
    if (r.external) throw new Error(`${where}: an external ${r.external.kind} teacher runs on the batch's inputs only (its outputs carry no gradient); use a Module teacher`);
    const refs = Array.isArray(r.spec.input) ? r.spec.input : [r.spec.input];
    if (!refs.length) throw new Error(`${where}: an empty list (give one or more taps, or leave input out for the batch's x)`);
    for (const [i, ref] of refs.entries()) {
      const tap = parseTap(ref, roles, where);
      if (!tap.role) {
        if (i === 0 && tap.path === LABELS) throw new Error(`${where}: '${ref}' must be a role's tap (<role>.<path>) or a batch tensor (batch.<name>), not the labels (the labels may follow a first input)`);
      } else {
        if (tap.role === r.name) throw new Error(`${where}: a role cannot read its own output`);
        checkTap(roles.get(tap.role)!, tap, where);
        roles.get(tap.role)!.taps.add(tap.path);
      }
      r.inputs.push(tap);
    }
  }
  const visit = (r: Role, path: string[]): void => {
    for (const x of r.inputs) {
      if (!x.role) continue;
      if (path.includes(x.role)) throw new Error(`${name}: role inputs form a cycle (${[...path, x.role].join(' → ')})`);
      visit(roles.get(x.role)!, [...path, x.role]);
    }
  };
  for (const r of roles.values()) visit(r, [r.name]);
  const trainable = [...roles.values()].filter((r) => r.trainable);
  if (!trainable.length) throw new Error(`${name}: no trainable role (give at least one role an optimizer)`);
  const primary = o.primary ? roles.get(o.primary) : (trainable.find((r) => r.spec.classify !== false) ?? trainable[0]);
  if (!primary?.trainable) throw new Error(`${name}: primary role '${o.primary}' is not a trainable role (${trainable.map((r) => r.name).join(', ')})`);
  if (primary.spec.classify === false) throw new Error(`${name}: the primary role '${primary.name}' has classify: false; the primary role is the classifier the run evaluates and keeps`);

  // ---- terms: `*` patterns expanded, taps parsed and checked
  const terms: Term[] = [];
  const names = new Map<string, number>();
  o.terms.forEach((spec, i) => {
    const where = `${name}: terms[${i}] (${spec.loss})`;
    const def = getLoss(spec.loss);
    const sRefs = Array.isArray(spec.student) ? spec.student : [spec.student];
    const tRefs = Array.isArray(spec.teacher) ? spec.teacher : [spec.teacher];
    let pairs: [string[], string[]][] = [[sRefs, tRefs]];
    if (sRefs.length === 1 && tRefs.length === 1 && (sRefs[0].includes('*') || tRefs[0].includes('*'))) {
      const st = parseTap(sRefs[0], roles, where), tt = parseTap(tRefs[0], roles, where);
      const sm = roles.get(st.role)!, tm = tt.role ? roles.get(tt.role)! : null;
      if (!tm || !sm.module) throw new Error(`${where}: a '*' pattern needs model taps on both sides`);
      try {
        pairs = expandMatches(tm.module ?? tm.external!, sm.module, [{ teacher: tt.path, student: st.path, loss: spec.loss, map: spec.map }])
          .map((m) => [[`${st.role}.${m.student as string}`], [`${tt.role}.${m.teacher as string}`]]);
      } catch (e) {
        throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
      }
    }
    for (const [sr, tr] of pairs) {
      const s = sr.map((r) => parseTap(r, roles, where)), t = tr.map((r) => parseTap(r, roles, where));
      if (!arityFits(def, s.length, t.length))
        throw new Error(`${where}: loss '${spec.loss}' takes ${arityText(def)}, got student ${JSON.stringify(sr)} and teacher ${JSON.stringify(tr)}`);
      for (const tap of s) {
        if (!tap.role) throw new Error(`${where}: the student side cannot be labels`);
        const r = roles.get(tap.role)!;
        if (!r.trainable && !feedsFrom(r, roles))
          throw new Error(`${where}: the student side '${tapText(tap)}' belongs to the frozen role '${r.name}' (it would learn nothing; a frozen role learns only through a trained role's output as its input)`);
      }
      for (const tap of [...s, ...t]) if (tap.role) {
        const r = roles.get(tap.role)!;
        checkTap(r, tap, where);
        r.taps.add(tap.path);
      }
      const weight = spec.weight ?? 1;
      checkWeight(weight, `${where}.weight`);
      const options = spec.options ?? {};
      checkOptions(options, where);
      const base = spec.name ?? `${spec.loss}:${s.map(tapText).join('+')}`;
      const k = names.get(base) ?? 0;
      names.set(base, k + 1);
      // options that follow no schedule are resolved once, not every step
      const moving = Object.values(options).some((v) => typeof v === 'function' || (!!v && typeof v === 'object' && !Array.isArray(v) && 'kind' in v));
      const fixed = moving ? null : { values: { ...options }, scheduled: false };
      terms.push({ spec, name: k ? `${base}#${k}` : base, def, s, t, weight, options, fixed, proj: null, mod: null });
    }
  });
  const termByName = new Map(terms.map((t) => [t.name, t]));
  const updates = (o.updates ?? [{ roles: trainable.map((r) => r.name), terms: terms.map((t) => t.name) }]).map((u, i) => {
    for (const r of u.roles) if (!roles.get(r)?.trainable) throw new Error(`${name}: updates[${i}].roles: '${r}' is not a trainable role (${trainable.map((x) => x.name).join(', ')})`);
    for (const t of u.terms) if (!termByName.has(t)) throw new Error(`${name}: updates[${i}].terms: no term '${t}'. Closest: ${closest(t, [...termByName.keys()], 3).join(', ')}`);
    if (!u.terms.length || !u.roles.length) throw new Error(`${name}: updates[${i}] needs at least one role and one term`);
    const every = u.every ?? 1;
    if (!Number.isInteger(every) || every < 1) throw new Error(`${name}: updates[${i}].every must be a positive integer (run the update on every n-th step), got ${u.every}`);
    const ts = u.terms.map((t) => termByName.get(t)!);
    // the roles whose forward pass the update needs: those its terms tap, then its own
    const need = new Set(ts.flatMap((t) => [...t.s, ...t.t]).filter((x) => x.role).map((x) => roles.get(x.role)!));
    for (const r of u.roles) need.add(roles.get(r)!);
    // and the roles their inputs come from
    for (const r of [...need]) for (const x of inputRoles(r, roles)) need.add(x);
    return { roles: u.roles.map((r) => roles.get(r)!), terms: ts, need: [...need], every };
  });
  if (!updates.some((u) => u.every === 1)) throw new Error(`${name}: at least one update must run on every step (every: 1); the others may skip steps`);
  for (const r of roles.values()) r.inner = [...new Set([...r.taps].filter((p) => p !== LOGITS).map(modulePath))];
  const probing = terms.some((t) => [...t.s, ...t.t].some((x) => x.role && x.path !== LOGITS));
  return { name, roles, terms, updates, trainable, frozen: [...roles.values()].filter((r) => !r.trainable), primary, others: trainable.filter((r) => r !== primary && r.spec.classify !== false), projections: new ModuleList(), probing };
}

/** Each trainable role's optimizer (over its parameters and the projections it feeds); frozen roles in eval mode without gradients. */
function setUp(plan: Plan): void {
  for (const r of plan.trainable) r.opt = makeOptimizer(r.spec.optimizer!, [...r.module!.parameters(), ...r.projections.flatMap((p) => p.parameters())]);
  for (const r of plan.trainable) r.stepAware = r.module!.modules().filter(isStepAware);
  for (const r of plan.frozen)
    if (r.module) {
      r.module.eval();
      r.module.requiresGrad_(false);
    }
}

/** Frees what the plan owns: optimizer state, cached teacher logits, projections. */
function tearDown(plan: Plan): void {
  for (const r of plan.roles.values()) {
    r.cached?.dispose();
    r.filling?.dispose();
    r.opt?.dispose();
  }
  plan.projections.dispose();
}

/** A batch as `EngineStep.step` takes it; `indices` (the rows in the data set) are needed only by the teacher cache. */
export interface StepBatch {
  x: Tensor;
  y: Tensor;
  indices?: Int32Array;
  taps?: Record<string, Tensor>;
}

/**
 * The engine's training step on its own, prepared once: roles, terms, projections and optimizers as `runEngine` sets
 * them up, and `step(batch)` as its loop runs it, without the epoch loop, data loader, evaluation or checkpoints (the
 * engine benchmark times this). External teachers, which are awaited before each step, run through `runEngine` only.
 */
export class EngineStep {
  private constructor(private readonly plan: Plan) {}

  /** Checks the spec, probes the taps' shapes on `batch` when a term reads more than logits, and makes the optimizers. */
  static async create(o: StepSpec & { batch: StepBatch }): Promise<EngineStep> {
    const plan = planStep(o);
    const ext = plan.frozen.find((r) => r.external);
    if (ext) throw new Error(`${plan.name}: role '${ext.name}' is an external ${ext.external!.kind} teacher; EngineStep runs module roles only (use runEngine)`);
    if (plan.probing) await probe(o.batch, plan);
    setUp(plan);
    return new EngineStep(plan);
  }

  /** One step on `batch` (every update's forward, terms, backward and optimizer steps); its tensors are freed before it returns. */
  step(batch: StepBatch, progress: RunProgress = { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 }): StepResult {
    const { roles, frozen, updates, primary, others } = this.plan;
    for (const r of this.plan.trainable) for (const m of r.stepAware) m.beforeStep(progress);
    return trainStep([batch], progress, { roles, frozen, updates, primary, others, ext: [new Map()], rows: 0, classify: true });
  }

  /** Each trainable role's optimizer, by role name. */
  get optimizers(): Record<string, Optimizer<any>> {
    return Object.fromEntries(this.plan.trainable.map((r) => [r.name, r.opt!]));
  }

  /** Frees the optimizers' state and the projections (the roles' models stay the caller's). */
  dispose(): void {
    tearDown(this.plan);
  }
}

/** Runs the engine: trains the trainable roles on the terms, evaluating and checkpointing every epoch. */
export async function runEngine(o: EngineOptions): Promise<TrainSummary> {
  // data-parallel: rank 0 writes and logs; every rank trains its share of each batch
  const group = o.dist === undefined ? defaultProcessGroup() : o.dist;
  const dist = group && group.worldSize > 1 ? group : null;
  const writer = !dist || dist.rank === 0;
  const log = writer ? (o.log ?? ((l: string) => process.stdout.write(l + '\n'))) : () => {};
  const plan = planStep(o);
  const { name, roles, terms, updates, trainable, frozen, primary, projections, probing, others: otherTrainable } = plan;

  const dir = new RunDir(o.outDir, { name, resume: o.resume, force: o.force, log });
  if (writer) dir.claim();
  if (dist) {
    if (!isShardable(o.train)) throw new Error(`${name}: a data-parallel run needs training batches that can be split (a DataLoader or cached views: setShard and globalRows), each process taking its share of every batch`);
    o.train.setShard(dist.rank, dist.worldSize);
    if (o.syncBatchNorm) {
      const last = o.train.globalRows(o.train.length - 1);
      if (last < dist.worldSize)
        throw new Error(`${name}: with syncBatchNorm every process needs rows in every batch, but the last batch has ${last} row(s) for ${dist.worldSize} processes; set the loader's dropLast or another batch size`);
    }
    dist.barrier(); // the run directory is claimed (and cleared with force) before any rank reads it
  }

  const accum = o.gradAccum ?? 1;
  if (!Number.isInteger(accum) || accum < 1) throw new Error(`${name}: gradAccum must be a positive integer, got ${accum}`);
  const steps = Math.floor(o.train.length / accum);
  if (steps < 1) throw new Error(`${name}: the training data gives ${o.train.length} batches, fewer than one step of ${accum}`);
  const loader = o.train instanceof DataLoader ? o.train : null;
  const classify = !!o.test;

  // ---- projections: a dry run on the first batch fixes the taps' shapes (only when a term reads more than logits)
  if (probing) {
    o.train.setEpoch(0);
    const b0 = await o.train.batchAt(0);
    try {
      await probe(b0, plan, loader?.dataset, loader?.dataset.length ?? 0);
    } finally {
      b0.dispose();
    }
  }
  setUp(plan);
  for (const r of trainable) r.sched = makeLrSchedule(r.spec.schedule ?? { kind: 'constant' }, r.opt!, o.epochs, steps);
  const files = {
    weights: (r: Role) => (r === primary ? 'last.safetensors' : `last.${r.name}.safetensors`),
    optim: (r: Role) => (r === primary ? 'last.optim.safetensors' : `last.${r.name}.optim.safetensors`),
    proj: 'last.proj.safetensors',
  };
  const saveWeights = (r: Role, file: string, meta: Record<string, string> = {}) =>
    !writer ? undefined : r.spec.save ? r.spec.save(dir.path(file), r.module!, meta) : dir.saveModule(file, r.module!, meta);
  const saveAll = (meta: Record<string, string>) => {
    if (!writer) return;
    for (const r of trainable) {
      saveWeights(r, files.weights(r), meta);
      dir.saveOptimizer(files.optim(r), r.opt!);
    }
    if (projections.length) dir.saveModule(files.proj, projections);
  };
  const stepped = (r: Role) => r.spec.schedule?.per === 'step';

  // ---- resume
  let startEpoch = 0;
  let best = { acc: -1, epoch: -1 };
  let resumedFrom: number | undefined;
  let resumedStep: number | undefined;
  let partial: PartialEpoch | null = null;
  const st = dir.resumeState();
  if (st) {
    for (const r of trainable) {
      dir.loadModule(files.weights(r), r.module!);
      dir.loadOptimizer(files.optim(r), r.opt!);
      const ss = r === primary ? st.scheduler : st.schedulers?.[r.name];
      if (!ss) throw new Error(`${o.outDir}/state.json: no scheduler state for role '${r.name}' (the run was started with other roles); pass --force to start over`);
      r.sched!.loadStateDict(ss);
    }
    if (projections.length) dir.loadModule(files.proj, projections);
    startEpoch = st.epoch + 1;
    best = st.best;
    partial = (st.partial as PartialEpoch | undefined) ?? null;
    resumedFrom = st.epoch + 1;
    resumedStep = committedStep(st, steps);
    if (writer) dir.truncateMetrics((m) => (typeof m.step === 'number' ? m.step <= resumedStep! : m.epoch <= st.epoch + 1));
    log(partial ? `${name}: resuming at epoch ${partial.epoch + 1} of ${o.epochs}, step ${partial.step} of ${steps}` : `${name}: resuming after epoch ${startEpoch} of ${o.epochs}`);
  }

  // data-parallel: every rank starts from rank 0's weights
  if (dist) noGrad(() => dist.broadcast([...trainable.flatMap((r) => [...r.module!.parameters(), ...r.module!.buffers()]), ...projections.parameters()], 0));

  // ---- frozen roles: eval mode, no gradients; the teacher cache where it applies
  let cacheState: TrainSummary['teacher_cache'] = frozen.length ? 'off' : undefined;
  for (const r of frozen) {
    const onlyLogits = [...r.taps].every((p) => p === LOGITS);
    if (!r.spec.cache || r.inputs.length || !loader || accum > 1 || !onlyLogits || probing || loader.transforms.some((t) => t.random) || !r.taps.size) continue;
    const cacheDir = o.cacheDir ?? path.join(o.outDir, '..', '.teacher-cache');
    fs.mkdirSync(cacheDir, { recursive: true });
    const model = r.module ?? r.external!;
    r.cacheFile = teacherCacheFile(model, loader, cacheDir);
    r.cached = readTeacherCache(r.cacheFile, loader.dataset.length, log);
    const device = deviceOf(primary.module!);
    if (r.cached && r.cached.device !== device) {
      const moved = keep(r.cached.to({ device }));
      r.cached.dispose();
      r.cached = moved;
    }
    if (r.cached) cacheState = 'loaded';
    else if (startEpoch > 0 || partial || loader.dropLast) {
      // the first epoch will not cover every sample from the start: compute the rows now, from the same batches
      r.cached = await computeTeacherLogits(model, loader);
      if (writer) writeTeacherCache(r.cacheFile, r.cached, model.constructor.name);
      cacheState = 'built';
    }
    // otherwise the first epoch runs the teacher on every batch and fills the cache as it goes
  }

  const times: number[] = [], liveTimes: number[] = [], cachedTimes: number[] = [];
  let lastAcc = 0, lastLoss = NaN, lastRows = 0;
  const otherAcc: Record<string, number> = {};
  const metricKeys = [...new Set(terms.flatMap((t) => (t.spec.metric ? [t.spec.metric] : [])))];
  const plainTerms = terms.filter((t) => t.spec.metric === undefined);
  const external = frozen.filter((r) => r.external);
  const rows = loader?.dataset.length ?? 0;
  // data-parallel: every rank evaluates a contiguous share of the test set (with rank 0's BatchNorm statistics, as
  // DDP's broadcast_buffers gives every rank), and the correct answers are summed
  const shareIdx = dist && o.test ? shareRows(o.test.length, dist.rank, dist.worldSize) : null;
  const testShare = shareIdx?.length ? o.test!.subset(shareIdx) : null;
  const evaluateAll = async (test: TensorDataset, progress?: Progress | null) => {
    const shown = progress ? (done: number, total: number) => progress.evaluating(done, total) : undefined;
    if (dist) noGrad(() => dist.broadcast(trainable.flatMap((r) => r.module!.buffers()), 0));
    const mine = dist ? testShare : test;
    const count = async (m: Module) => (mine ? countCorrect(m, mine, o.testTransforms, shown) : 0);
    const correct = [await count(primary.module!)];
    for (const r of otherTrainable) correct.push(await count(r.module!));
    const got = dist ? sumOverRanks(dist, correct) : correct;
    lastAcc = (100 * got[0]) / test.length;
    otherTrainable.forEach((r, i) => (otherAcc[r.name] = (100 * got[i + 1]) / test.length));
  };
  const fresh = () => newAccumulator(metricKeys, plainTerms.map((t) => t.name), otherTrainable.map((r) => r.name));
  // data-parallel: gradient buckets all-reduced during the backward pass (c10d's Reducer, one per trained role), and
  // BatchNorm over the global batch when asked; both undone in the finally below
  const reducers = new Map<Role, GradReducer>();
  try {
    if (dist && (o.overlapGradients ?? true))
      for (const r of trainable) {
        const ps = gradParamsOf(r);
        if (ps.length) reducers.set(r, GradReducer.create(dist, ps, { bucketCapMB: o.bucketCapMB }));
      }
    if (dist && o.syncBatchNorm) for (const r of trainable) syncBatchNorm(r.module!, dist);
    for (let epoch = partial ? partial.epoch : startEpoch; epoch < o.epochs; epoch++) {
      o.train.setEpoch(epoch);
      for (const r of trainable) r.module!.train();
      projections.train(true);
      const from = partial && partial.epoch === epoch ? partial : null;
      partial = null;
      // data-parallel: a committed partial epoch holds the sums over every rank; rank 0 carries them on
      const acc: Accumulator = from && writer ? structuredClone(from.acc) : fresh();
      const win: Accumulator = from?.win && writer ? structuredClone(from.win) : fresh();
      const t0 = Date.now() - (from?.elapsed ?? 0) * 1000;
      const teacherMode: 'live' | 'cached' | null = frozen.length ? (frozen.every((r) => r.cached || !r.taps.size) ? 'cached' : 'live') : null;
      const progress = o.progress === false || o.logEverySteps || !writer ? null : new Progress(`${name} ${epoch + 1}/${o.epochs}`, steps, log, from?.step ?? 0);
      for (let step = from?.step ?? 0; step < steps; step++) {
        const bs: EngineBatch[] = [];
        for (let a = 0; a < accum; a++) bs.push(await o.train.batchAt(step * accum + a));
        manualSeed(stepSeed(o.seed, epoch, step));
        const p: RunProgress = { epoch, step, stepsPerEpoch: steps, epochs: o.epochs };
        const lr = primary.opt!.paramGroups[0].options.lr;
        // external teachers run before the synchronous step; their tensors are released after it
        const ext: Map<Role, Map<string, Tensor>>[] = [];
        let res: StepResult;
        try {
          for (const b of bs) {
            const m = new Map<Role, Map<string, Tensor>>();
            ext.push(m);
            for (const r of external) if (!r.cached && r.taps.size) m.set(r, await runTeacher(r.external!, b.x, [...r.taps], { dataset: loader?.dataset, indices: b.indices }));
          }
          const shares = dist ? bs.map((b, a) => (b.y.shape[0] * dist.worldSize) / (o.train as ShardableSource).globalRows(step * accum + a)) : undefined;
          for (const r of trainable) for (const m of r.stepAware) m.beforeStep(p);
          // the Reducer serves steps of one batch in which every process has rows (else: one all-reduce after backward)
          const overlap = reducers.size > 0 && accum === 1 && (o.train as ShardableSource).globalRows(step) >= dist!.worldSize;
          res = trainStep(bs, p, { roles, frozen, updates, primary, others: otherTrainable, ext, rows, classify, dist, shares, reducers: overlap ? reducers : undefined });
        } finally {
          for (const m of ext) for (const t of m.values()) dispose([...t.values()]);
          for (const b of bs) b.dispose();
        }
        if (!Number.isFinite(res.value))
          throw new Error(`${name}: loss is ${res.value} at epoch ${epoch + 1}, step ${step + 1}${res.bad.length ? ` (non-finite terms: ${res.bad.join(', ')})` : ''}; stopping. The last good checkpoint (epoch ${epoch}) is in ${o.outDir}`);
        for (const r of trainable) if (stepped(r)) r.sched!.step();
        lastLoss = res.value;
        lastRows = res.n;
        for (const x of [acc, win]) {
          x.sum += res.value * res.n; x.correct += res.correct; x.seen += res.n;
          for (const [k, v] of Object.entries(res.metrics)) x.metrics[k] += v * res.n;
          for (const [k, v] of Object.entries(res.terms)) if (k in x.terms) x.terms[k] += v * res.n;
          for (const [k, v] of Object.entries(res.others)) x.others[k] += v;
        }
        progress?.update(step + 1, {
          loss: acc.sum / acc.seen, metrics: means(acc.metrics, acc.seen), ...(classify ? { acc: (100 * acc.correct) / acc.seen } : {}),
          ...(plainTerms.length ? { terms: means(acc.terms, acc.seen) } : {}),
          rate: acc.seen / Math.max(1e-3, (Date.now() - t0) / 1000),
        });
        const global = epoch * steps + step + 1;
        const last = step + 1 === steps;
        if (o.logEverySteps && (global % o.logEverySteps === 0 || (last && epoch + 1 === o.epochs))) {
          // appended before the next commit: a line past the committed step is dropped on resume and written again
          const m = { step: global, epoch: epoch + 1, loss: win.sum / win.seen, ...means(win.metrics, win.seen), ...(plainTerms.length ? { terms: means(win.terms, win.seen) } : {}), lr, ...(o.report ? o.report(p) : {}) };
          if (writer) dir.appendMetrics(m);
          const mk = metricKeys.map((k) => `${k} ${Number((m as Record<string, unknown>)[k]).toFixed(4)}`).join(', ');
          log(`${name}: step ${global}/${o.epochs * steps} loss ${m.loss.toFixed(4)}${mk ? ` (${mk})` : ''} lr ${lr.toExponential(2)}`);
          Object.assign(win, fresh());
        }
        // (read after the log line: its reader may have asked to stop)
        // (data-parallel: a stop request ends the processes at once; every rank must reach the same commits)
        const stopping = !!o.signal?.aborted && !last && !dist;
        if (!last && (stopping || (o.checkpointEverySteps && global % o.checkpointEverySteps === 0))) {
          saveAll({ epoch: String(epoch), step: String(step + 1) });
          const pe: PartialEpoch = { epoch, step: step + 1, acc: dist ? sumAccumulator(dist, acc) : acc, win: dist ? sumAccumulator(dist, win) : win, elapsed: (Date.now() - t0) / 1000 };
          if (writer) dir.commit({ epoch: epoch - 1, best, scheduler: primary.sched!.stateDict(), schedulers: schedulerStates(trainable.filter((r) => r !== primary)), partial: pe });
        }
        await nextTick();
        if (stopping) {
          progress?.stop();
          throw new TrainingInterrupted(o.outDir, epoch + 1, step + 1);
        }
      }
      if (dist) Object.assign(acc, sumAccumulator(dist, acc));
      const epochS = (Date.now() - t0) / 1000;
      times.push(epochS);
      if (teacherMode === 'live') liveTimes.push(epochS);
      else if (teacherMode === 'cached') cachedTimes.push(epochS);
      for (const r of frozen)
        if (r.filling && r.cacheFile) {
          // every row was written by this epoch's batches (data-parallel: each rank wrote its shares' rows, zeros
          // elsewhere, so their sum is the whole cache): the cache is complete
          if (dist) dist.allReduce([r.filling]);
          if (writer) writeTeacherCache(r.cacheFile, r.filling, (r.module ?? r.external!).constructor.name);
          r.cached = r.filling;
          r.filling = null;
          cacheState = 'built';
        }
      // the display shows the evaluation, then gives way to the epoch's line
      if (o.test) await evaluateAll(o.test, progress);
      progress?.stop();
      const lr = primary.opt!.paramGroups[0].options.lr;
      for (const r of trainable) if (!stepped(r)) r.sched!.step();
      const seen = acc.seen;
      const m: EpochMetrics = {
        epoch: epoch + 1, loss: acc.sum / seen, train_acc: (100 * acc.correct) / seen, test_acc: lastAcc, lr, epoch_s: epochS, samples_per_s: seen / epochS,
        ...means(acc.metrics, seen), ...(teacherMode ? { teacher: teacherMode } : {}),
        ...(plainTerms.length ? { terms: means(acc.terms, seen) } : {}),
        ...(otherTrainable.length ? { roles: Object.fromEntries(otherTrainable.map((r) => [r.name, { train_acc: (100 * acc.others[r.name]) / seen, test_acc: otherAcc[r.name] }])) } : {}),
        ...(o.report ? o.report({ epoch, step: steps, stepsPerEpoch: steps, epochs: o.epochs }) : {}),
      };
      // checkpoint files first, then state.json (the commit point), then the metrics line
      if (o.test && lastAcc > best.acc) {
        best = { acc: lastAcc, epoch: epoch + 1 };
        saveWeights(primary, 'best.safetensors', { epoch: String(epoch + 1), test_acc: lastAcc.toFixed(2) });
      }
      const every = o.checkpointEvery ?? 1;
      if (every > 0 && (epoch + 1) % every === 0 && o.test) saveWeights(primary, `epoch-${epoch + 1}.safetensors`);
      saveAll({ epoch: String(epoch + 1), ...(o.logEverySteps ? { step: String((epoch + 1) * steps) } : {}) });
      if (writer) dir.commit({ epoch, best, scheduler: primary.sched!.stateDict(), schedulers: schedulerStates(trainable.filter((r) => r !== primary)) });
      if (!o.logEverySteps) {
        if (writer) dir.appendMetrics(m);
        log(epochLine(name, o.epochs, m, metricKeys, classify));
      }
      if (o.signal?.aborted && epoch + 1 < o.epochs) throw new TrainingInterrupted(o.outDir, epoch + 2, 0);
    }
    if (times.length === 0 && o.test) await evaluateAll(o.test);
    if (dist) {
      // the last step's loss over every rank's share
      const [sum, n] = sumOverRanks(dist, [lastRows ? lastLoss * lastRows : 0, lastRows]);
      if (n > 0) lastLoss = sum / n;
      // rank 0's files are complete before any rank reads them (a later stage starting from them)
      dist.barrier();
    }
  } finally {
    testShare?.dispose();
    if (dist) (o.train as ShardableSource).setShard(0, 1);
    for (const red of reducers.values()) red.destroy();
    if (dist && o.syncBatchNorm) for (const r of trainable) syncBatchNorm(r.module!, null);
    for (const r of roles.values()) {
      r.cached?.dispose();
      r.filling?.dispose();
      r.opt?.dispose();
    }
    projections.dispose();
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return {
    name, epochs: o.epochs, best_test_acc: best.acc, best_epoch: best.epoch, final_test_acc: lastAcc,
    mean_epoch_s: mean(times), out_dir: o.outDir,
    ...(cacheState ? { teacher_cache: cacheState } : {}),
    ...(liveTimes.length ? { live_teacher_epoch_s: mean(liveTimes) } : {}), ...(cachedTimes.length ? { cached_teacher_epoch_s: mean(cachedTimes) } : {}),
    ...(resumedFrom !== undefined ? { resumed_from_epoch: resumedFrom } : {}),
    ...(otherTrainable.length ? { roles: Object.fromEntries(otherTrainable.map((r) => [r.name, { final_test_acc: otherAcc[r.name] }])) } : {}),
    steps: o.epochs * steps, last_loss: lastLoss,
    ...(resumedStep !== undefined ? { resumed_from_step: resumedStep } : {}),
  };
}

/** The optimizer steps (counted over the run) a committed state has finished. */
function committedStep(st: { epoch: number; partial?: unknown }, steps: number): number {
  const p = st.partial as PartialEpoch | undefined;
  return p ? p.epoch * steps + p.step : (st.epoch + 1) * steps;
}

/** The step of the run a run directory holds (state.json), or null when it holds none. */
export function runDirStep(dir: string, stepsPerEpoch: number): number | null {
  const st = readRunState(path.join(dir, 'state.json'));
  return st ? committedStep(st, stepsPerEpoch) : null;
}

/** Data-parallel: each number summed over the ranks (one all-reduce in float64). */
function sumOverRanks(dist: ProcessGroup, v: number[]): number[] {
  return tidy(() => {
    const t = tensor(Float64Array.from(v));
    dist.allReduce([t]);
    return [...(t.data() as Float64Array)];
  });
}

/** Data-parallel: an accumulator's sums over every rank. */
function sumAccumulator(dist: ProcessGroup, a: Accumulator): Accumulator {
  const keys = (r: Record<string, number>) => Object.keys(r).sort();
  const groups = [keys(a.metrics), keys(a.terms), keys(a.others)];
  const v = sumOverRanks(dist, [a.sum, a.correct, a.seen, ...groups[0].map((k) => a.metrics[k]), ...groups[1].map((k) => a.terms[k]), ...groups[2].map((k) => a.others[k])]);
  let i = 3;
  const take = (ks: string[]) => Object.fromEntries(ks.map((k) => [k, v[i++]]));
  return { sum: v[0], correct: v[1], seen: v[2], metrics: take(groups[0]), terms: take(groups[1]), others: take(groups[2]) };
}

const schedulerStates = (rs: Role[]) => Object.fromEntries(rs.map((r) => [r.name, r.sched!.stateDict()]));

interface Accumulator {
  sum: number;
  correct: number;
  seen: number;
  /** Unweighted sums of the terms reported as top-level metrics (hard, soft). */
  metrics: Record<string, number>;
  /** Weighted sums of the other terms. */
  terms: Record<string, number>;
  /** Correct predictions of the other trainable roles. */
  others: Record<string, number>;
}
const newAccumulator = (metrics: string[], terms: string[], others: string[]): Accumulator => ({
  sum: 0, correct: 0, seen: 0,
  metrics: Object.fromEntries(metrics.map((k) => [k, 0])), terms: Object.fromEntries(terms.map((k) => [k, 0])), others: Object.fromEntries(others.map((k) => [k, 0])),
});
const means = (sums: Record<string, number>, seen: number) => Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / seen]));

interface PartialEpoch {
  epoch: number;
  step: number;
  acc: Accumulator;
  /** The sums since the last step metrics line. */
  win?: Accumulator;
  elapsed: number;
}

/** What one step reports: the loss, the samples and correct predictions, term values for the metrics. */
export interface StepResult {
  /** The step's loss (the mean over its batches). */
  value: number;
  /** Samples (rows of the labels) over the step's batches. */
  n: number;
  correct: number;
  metrics: Record<string, number>;
  terms: Record<string, number>;
  others: Record<string, number>;
  bad: string[];
}

/** The batch's tensor `name` (EngineBatch.taps): a term's `batch.<name>` tap or a role's input. */
function batchTensor(b: StepBatch, name: string): Tensor {
  const t = b.taps?.[name];
  if (!t) throw new Error(`the batch has no tensor '${name}' (batch taps: ${Object.keys(b.taps ?? {}).join(', ') || 'none'})`);
  return t;
}

/** The forward pass of one role on its inputs: logits and the captured taps (frozen roles under no-grad). */
function forwardRole(r: Role, xs: Tensor[], updating = true): Map<string, Tensor> {
  const m = r.module!, inner = r.inner;
  const run = () => {
    if (!inner.length) return new Map([[LOGITS, m.call(...xs) as Tensor]]);
    const { result, features } = m.captureFeatures(inner, () => m.call(...xs) as Tensor);
    for (const p of r.taps)
      if (p !== LOGITS && !features.has(p))
        throw new Error(`role '${r.name}' (${m.constructor.name}): module '${modulePath(p)}' gave no output '${p}' (it produced: ${[...features.keys()].filter((k) => modulePath(k) === modulePath(p)).join(', ') || 'nothing'})`);
    features.set(LOGITS, result);
    return features;
  };
  // in a scope of its own, as C++ scoping does: intermediate tensors that neither the taps nor autograd hold (all of a
  // frozen role's activations) are freed as soon as the forward pass ends, not at the end of the step
  // (a frozen role on a trained role's output passes its gradients back: its own parameters need none; nor do those
  // of a trained role that this update does not step, e.g. a generator whose images only the student learns from)
  return tidy(() => ((r.trainable && updating) || xs.some((x) => x.requiresGrad) ? run() : noGrad(run)));
}

interface StepEnv {
  roles: Map<string, Role>;
  frozen: Role[];
  updates: Plan['updates'];
  primary: Role;
  others: Role[];
  /** External teachers' tensors, per batch of the step. */
  ext: Map<Role, Map<string, Tensor>>[];
  /** Rows of the data set (the teacher cache's size). */
  rows: number;
  /** Count correct predictions (classification). */
  classify: boolean;
  /** Data-parallel: the group, and per batch of the step its share's weight (rows here × processes / rows in all). */
  dist?: ProcessGroup | null;
  shares?: number[];
  /** Data-parallel: the trained roles' gradient reducers, when this step all-reduces during the backward pass. */
  reducers?: Map<Role, GradReducer>;
}

/**
 * One optimizer step over the step's batches: for each update, every batch's forward, terms and backward (the loss
 * divided by the number of batches), then gradient clipping and the update's optimizer steps. Each batch runs in its
 * own scope; frozen roles run once per batch and update.
 */
function trainStep(bs: StepBatch[], p: RunProgress, env: StepEnv): StepResult {
  const { roles, frozen, updates, primary, others, ext, rows, classify, dist, shares, reducers } = env;
  const out: StepResult = { value: 0, n: 0, correct: 0, metrics: {}, terms: {}, others: Object.fromEntries(others.map((r) => [r.name, 0])), bad: [] };
  const k = bs.length;
  // the updates of this step (an update with `every` runs on every n-th step of the run)
  const global = p.epoch * p.stepsPerEpoch + p.step;
  const runs = updates.map((u) => global % u.every === 0);
  const first = runs.indexOf(true);
  // each role's predictions are counted in the first update that runs it (several updates may run the same role)
  const countedIn = (r: Role) => updates.findIndex((u, i) => runs[i] && u.need.includes(r));
  for (const [ui, u] of updates.entries()) {
    if (!runs[ui]) continue;
    for (const r of u.roles) r.opt!.zeroGrad();
    for (const [bi, b] of bs.entries()) {
      // data-parallel: a process whose share of this batch is empty (a last batch smaller than the group) adds nothing
      if (dist && b.y.shape[0] === 0) continue;
      const r = tidy(() => {
        const taps = new Map<Role, Map<string, Tensor>>();
        // a role reading another role's tap runs after it (see RoleSpec.input)
        const tapsOf = (r: Role): Map<string, Tensor> => {
          let t = taps.get(r);
          if (!t) taps.set(r, (t = forwardRole(r, r.inputs.length ? r.inputs.map((x) => inputOf(r, x)) : [b.x], u.roles.includes(r))));
          return t;
        };
        const inputOf = (r: Role, x: Tap): Tensor => {
          if (!x.role) {
            const t = x.path === LABELS ? b.y : b.taps?.[x.path];
            if (!t) throw new Error(`role '${r.name}'.input: the batch has no tensor '${x.path}' (batch taps: ${Object.keys(b.taps ?? {}).join(', ') || 'none'})`);
            return t;
          }
          const t = tapsOf(roles.get(x.role)!).get(x.path)!;
          return r.spec.detachInput || !updating(roles.get(x.role)!) ? t.detach() : t;
        };
        const updating = (r: Role): boolean => u.roles.includes(r) || (!r.trainable && r.inputs.some((x) => !!x.role && updating(roles.get(x.role)!)));
        for (const fr of frozen) {
          if (!fr.taps.size) continue;
          if (fr.cached) {
            taps.set(fr, new Map([[LOGITS, fr.cached.indexSelect(0, rowIndex(b.indices!, fr.cached.device))]]));
            continue;
          }
          const t = fr.external ? ext[bi].get(fr)! : tapsOf(fr);
          taps.set(fr, t);
          if (fr.cacheFile && ui === first) {
            // the first epoch fills the cache from the teacher's outputs as it goes
            const l = t.get(LOGITS)!;
            if (!fr.filling) fr.filling = keep(ops.zeros([rows, l.shape[1]], { dtype: 'float32', device: l.device }));
            noGrad(() => ops.index_copy_(fr.filling!, 0, tensor(b.indices!, { dtype: 'int64', device: l.device }), l.float()));
          }
        }
        const need = u.need;
        for (const r of need) if (r.trainable) tapsOf(r);
        const get = (tap: Tap, target: boolean): Tensor => {
          if (!tap.role) {
            if (tap.path === LABELS) return b.y;
            return batchTensor(b, tap.path);
          }
          const r = roles.get(tap.role)!;
          const t = taps.get(r)!.get(tap.path)!;
          // the target side never receives gradients (another trainable role's output, or a frozen role's on a trained
          // role's output, is a constant here)
          return target && t.requiresGrad ? t.detach() : t;
        };
        const batchTaps = { labels: b.y, ...(b.taps ?? {}) };
        // the terms and their sum in a scope of their own: the loss's intermediate tensors are freed before the
        // backward pass (autograd keeps what it needs), as C++ scoping frees them
        let value = 0;
        let bad: string[] | null = null;
        const vals: [Term, number, number][] = []; // [term, unweighted value, weight] of the reported terms
        const loss = tidy(() => {
          const parts: { loss: LossResult; weight: number }[] = [];
          for (const term of u.terms) {
            const { values, scheduled } = term.fixed ?? resolveOptions(term.options, p);
            const sv = term.s.map((x) => get(x, false)), tv = term.t.map((x) => get(x, !term.def.targetGrad));
            const sp = term.proj ? [term.proj.call(sv[0]) as Tensor] : sv;
            let loss: LossResult;
            try {
              loss = term.def.fn(sp, tv, { labels: b.y, batch: batchTaps, progress: p, scheduled, module: term.mod ?? undefined, indices: b.indices }, values);
            } catch (e) {
              throw new Error(`term '${term.name}' at epoch ${p.epoch + 1}, step ${p.step + 1}: ${(e as Error).message}`, { cause: e });
            }
            const weight = weightAt(term.weight, p);
            if (!(weight >= 0)) throw new Error(`term '${term.name}': its weight reached ${weight} at epoch ${p.epoch + 1}, step ${p.step + 1}; weights must stay non-negative`);
            parts.push({ loss, weight });
          }
          const loss = weightedSum(parts);
          value = loss.item();
          // each term's value, for the metrics (terms reported only in the total are read only when it is not finite)
          const valueOf = (i: number) => lossNumber(parts[i].loss);
          if (!Number.isFinite(value)) bad = u.terms.filter((t, i) => !Number.isFinite(valueOf(i) * parts[i].weight)).map((t) => t.name);
          else u.terms.forEach((t, i) => { if (t.spec.metric !== false) vals.push([t, valueOf(i), parts[i].weight]); });
          return loss;
        });
        if (bad) return { value, bad: bad as string[] };
        // data-parallel: weighted by this process's share, so that the average over the processes is the gradient of
        // the whole batch's loss
        const share = shares ? shares[bi] : 1;
        const scaled = share !== 1 ? loss.mul(share / k) : k > 1 ? loss.div(k) : loss;
        if (reducers) {
          for (const r of u.roles) reducers.get(r)?.prepare([scaled]);
          try {
            scaled.backward();
          } catch (e) {
            throw new Error(`rank ${dist!.rank} of ${dist!.worldSize}: the backward pass with its gradient all-reduce failed: ${(e as Error).message}`, { cause: e });
          }
        } else scaled.backward();
        const correct = (r: Role) => (classify && r.spec.classify !== false && need.includes(r) ? correctCount(taps.get(r)!.get(LOGITS)!, b.y) : 0);
        return { value, bad: [] as string[], vals, n: b.y.shape[0], correct: correct(primary), others: others.map((r) => [r.name, correct(r)] as const) };
      });
      if (!Number.isFinite(r.value)) return { ...out, value: r.value, bad: r.bad };
      out.value += r.value / k;
      for (const [t, v, w] of r.vals!) {
        if (t.spec.metric) out.metrics[t.spec.metric] = (out.metrics[t.spec.metric] ?? 0) + v / k;
        else out.terms[t.name] = (out.terms[t.name] ?? 0) + (v * w) / k;
      }
      // samples and accuracies: counted once per batch (from the update that ran the role)
      if (ui === first) out.n += r.n!;
      if (r.correct && ui === countedIn(primary)) out.correct += r.correct;
      for (const [name, c] of r.others!) if (ui === countedIn(roles.get(name)!)) out.others[name] += c;
    }
    if (dist) for (const r of u.roles) if (!reducers?.has(r)) averageGradients(dist, r);
    for (const r of u.roles) {
      if (r.spec.clip) clipGradNorm([...r.module!.parameters(), ...r.projections.flatMap((x) => x.parameters())], r.spec.clip);
      r.opt!.step();
    }
  }
  return out;
}

/**
 * Data-parallel: replaces the gradients of a role's parameters (and its projections') by their mean over the
 * processes — one all-reduce of one flat buffer, which also counts the processes that have each gradient: a parameter
 * no process has a gradient for keeps none (as in one process, and as the Reducer does); elsewhere a missing gradient
 * counts as zeros.
 */
function averageGradients(dist: ProcessGroup, r: Role): void {
  const ps = gradParamsOf(r);
  if (!ps.length) return;
  tidy(() =>
    noGrad(() => {
      const have = tensor(ps.map((p) => (p.grad ? 1 : 0)), { dtype: 'float32' });
      const flat = ops.cat([...ps.map((p) => (p.grad ?? ops.zeros_like(p)).reshape([-1])), have]);
      dist.allReduce([flat]);
      const total = ps.reduce((a, p) => a + p.numel(), 0);
      const counts = flat.narrow(0, total, ps.length).toArray();
      flat.div_(dist.worldSize);
      let off = 0;
      for (const [i, p] of ps.entries()) {
        const n = p.numel();
        const g = flat.narrow(0, off, n).view(p.shape);
        const own = p.grad;
        if (own) own.copy_(g);
        else if (counts[i] > 0) p.grad = g.clone();
        off += n;
      }
    }),
  );
}

/** Rows ⌊r·n/P⌋ … ⌊(r+1)·n/P⌋ of n: rank r's contiguous share of P. */
function shareRows(n: number, rank: number, world: number): Int32Array {
  const a = Math.floor((rank * n) / world), b = Math.floor(((rank + 1) * n) / world);
  return Int32Array.from({ length: b - a }, (_, i) => a + i);
}

/** A trained role's parameters and its projections' (fixed once the run has set up: collected once). */
function gradParamsOf(r: Role): Tensor[] {
  return (r.gradParams ??= [...r.module!.parameters(), ...r.projections.flatMap((x) => x.parameters())].filter((p) => p.requiresGrad));
}

/**
 * How many rows of `logits` pick the class in `labels` (top-1, `argmax(1).eq(labels).sum()`). Small [N, C] logits with
 * labels [N] are read and counted here, as libtorch's argmax picks (the first NaN, otherwise the first maximum): two
 * reads instead of four tensor ops, for a number reported every step.
 */
export function correctCount(logits: Tensor, labels: Tensor): number {
  const s = logits.shape, ls = labels.shape;
  const d = s.length === 2 && ls.length === 1 && ls[0] === s[0] && s[0] * s[1] <= 65536 ? logits.data() : null;
  // floating-point logits only (half precision comes back as float32, which keeps order, ties and NaN)
  if (!(d instanceof Float32Array || d instanceof Float64Array)) return noGrad(() => logits.argmax(1).eq(labels).sum().item());
  const y = labels.data();
  const C = s[1];
  let correct = 0;
  for (let i = 0, off = 0; i < s[0]; i++, off += C) {
    let best = 0, bv = d[off];
    if (bv === bv)
      for (let j = 1; j < C; j++) {
        const v = d[off + j];
        if (v !== v) { best = j; break; }
        if (v > bv) { bv = v; best = j; }
      }
    if (Number(y[i]) === best) correct++;
  }
  return correct;
}

/** Runs every role once on the first batch (eval mode, no grad) and builds the projections the terms need. */
async function probe(b0: StepBatch, plan: Plan, dataset?: unknown, rows = 0): Promise<void> {
  const { roles, terms, projections } = plan;
  const ext = new Map<Role, Map<string, Tensor>>();
  try {
    for (const r of roles.values()) if (r.external && r.taps.size) ext.set(r, await runTeacher(r.external, b0.x, [...r.taps], { dataset, indices: b0.indices }));
    const modes = [...roles.values()].filter((r) => r.module).map((r) => [r, r.module!.training] as const);
    for (const [r] of modes) r.module!.eval();
    try {
      tidy(() =>
        noGrad(() => {
          const taps = new Map<Role, Map<string, Tensor>>();
          const tapsOf = (r: Role): Map<string, Tensor> => {
            let t = taps.get(r);
            if (!t) taps.set(r, (t = r.external ? ext.get(r)! : forwardRole(r, r.inputs.length ? r.inputs.map(inputOf) : [b0.x])));
            return t;
          };
          const inputOf = (x: Tap): Tensor => {
            if (!x.role) {
              const t = x.path === LABELS ? b0.y : b0.taps?.[x.path];
              if (!t) throw new Error(`the batch has no tensor '${x.path}' (batch taps: ${Object.keys(b0.taps ?? {}).join(', ') || 'none'})`);
              return t;
            }
            return tapsOf(roles.get(x.role)!).get(x.path)!;
          };
          for (const r of roles.values()) if (r.taps.size) tapsOf(r);
          const shape = (x: Tap) => (x.role ? taps.get(roles.get(x.role)!)!.get(x.path)!.shape : b0.y.shape);
          for (const term of terms) {
            if (term.def.module) {
              // the loss's own parts, built from the taps' shapes, trained and saved with the student side's role
              const tr = term.t[0].role ? roles.get(term.t[0].role)! : null;
              const options = (term.fixed ?? resolveOptions(term.options, { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 })).values;
              term.mod = term.def.module({ student: term.s.map(shape), teacher: term.t.map(shape), rows, teacherModel: tr?.module ?? null, options });
              const sf = taps.get(roles.get(term.s[0].role)!)!.get(term.s[0].path)!;
              if (sf.device !== 'cpu') term.mod.to(sf.device);
              projections.append(term.mod);
              roles.get(term.s[0].role)!.projections.push(term.mod);
              continue;
            }
            if ((term.def.arity ?? 1) !== 1 || !term.t[0].role) continue;
            const sf = taps.get(roles.get(term.s[0].role)!)!.get(term.s[0].path)!;
            term.proj = planProjection(term.spec.loss, term.def.needs, sf.shape, shape(term.t[0]), term.spec.proj ?? 'auto');
            if (term.proj) {
              if (sf.device !== 'cpu') term.proj.to(sf.device); // projections live where the student's features are
              projections.append(term.proj);
              roles.get(term.s[0].role)!.projections.push(term.proj);
            }
          }
        }),
      );
    } finally {
      for (const [r, was] of modes) r.module!.train(was);
    }
  } finally {
    // the batch stays the caller's
    for (const m of ext.values()) dispose([...m.values()]);
  }
}

function epochLine(name: string, epochs: number, m: EpochMetrics, metricKeys: string[], classify: boolean): string {
  const f = (v: unknown) => (v as number).toFixed(4);
  const metricText = metricKeys.length ? ` (${metricKeys.map((k) => `${k} ${f(m[k])}`).join(', ')})` : '';
  const termText = m.terms ? ` [${Object.entries(m.terms).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}]` : '';
  const roleText = m.roles ? ` | ${Object.entries(m.roles).map(([k, v]) => `${k} test ${v.test_acc.toFixed(2)} %`).join(', ')}` : '';
  const accText = classify ? `  train ${m.train_acc.toFixed(2)} %  test ${m.test_acc.toFixed(2)} %` : '';
  return `${name} epoch ${m.epoch}/${epochs}  loss ${m.loss.toFixed(4)}${metricText}${termText}${accText}  ${m.samples_per_s.toFixed(0)} samples/s  ${m.epoch_s.toFixed(1)} s${roleText}`;
}

/** The progress display per epoch: one line on a terminal that fits its width, plain lines every quarter epoch elsewhere. */
export { Progress } from './progress';
