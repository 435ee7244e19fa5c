// Distillation schemes as configurations of the one engine: roles, terms over taps, stages. No scheme has a loop of
// its own.
//
//   mutual learning (DML, KDCL)   one stage, N trained peers, each: CE + KL to the others (or to their mean)
//   born-again networks           stages gen0 (alone) → gen1 → … → genK, each the same architecture taught by the last
//   teacher assistants (TAKD)     stages teacher → assistant(s) → student
//   self-distillation (BYOT)      one stage, one MultiExit role: the deepest exit teaches the others (KD + hints)
//   class-wise self-KD (CS-KD)    one stage; PairedBatches gives [anchors; same-class partners]
//   teacher-free KD (Tf-KD)       the virtual teacher (one stage), or the model's own earlier checkpoint (two stages)
//   FSP (RepDistiller)            an FSP initialisation stage, then cross-entropy
//   module replacement (Theseus)  a replacement stage (a `replaceModules` model), then the successor alone
//
// The term builders (`mutualTerms`, `kdTerms`, …) are what configurations (`scheme:`, src/run/schemes.ts) expand to;
// the library calls below run the same terms through `runStages`.
import { Tensor, nextTick, noGrad, tidy } from '../torch';
import { Module, loadWeights } from '../nn';
import { DataLoader, type DataLoaderOptions, Rng, TensorDataset, mixSeed } from '../data';
import { MultiExit } from '../models';
import { type BatchSource, type LrScheduleSpec, type OptimizerSpec, type RoleSpec, type TermSpec, type TrainSummary, evaluate } from './engine';
import { type StageContext, type StageSpec, type StagesResult, runStages } from './stages';
import { Ensemble } from './ensemble';

// --------------------------------------------------------------------------------------------------- the terms

export interface MutualOptions {
  /** 'each' (DML: the mean of the KLs to each other peer, default) or 'mean' (KDCL: KL to the peers' averaged soft targets). */
  target?: 'each' | 'mean';
  /** Default 1 (DML). */
  temperature?: number;
  /** Weight of the mimicry term (default 1). */
  weight?: number;
}

/**
 * Deep mutual learning over the peers (role names): for each peer i, `ce` on the labels and either (1/(N−1))·Σ_{j≠i}
 * KL(p_j ‖ p_i) (target 'each') or KL(mean_{j≠i} p_j ‖ p_i) (target 'mean'), at temperature T (·T²).
 */
export function mutualTerms(peers: string[], o: MutualOptions = {}): TermSpec[] {
  if (peers.length < 2) throw new Error(`mutual learning needs at least two peers, got ${peers.length}`);
  const T = o.temperature ?? 1, w = o.weight ?? 1;
  const terms: TermSpec[] = [];
  for (const p of peers) {
    terms.push({ loss: 'ce', student: `${p}.logits`, teacher: 'labels', name: `ce:${p}` });
    const others = peers.filter((q) => q !== p);
    if ((o.target ?? 'each') === 'mean')
      terms.push({ loss: 'kl_peers', student: `${p}.logits`, teacher: others.map((q) => `${q}.logits`), weight: w, options: { temperature: T }, name: `kl:${p}<-peers` });
    else
      for (const q of others)
        terms.push({ loss: 'kl', student: `${p}.logits`, teacher: `${q}.logits`, weight: w / others.length, options: { temperature: T }, name: `kl:${p}<-${q}` });
  }
  return terms;
}

/** Response KD: α·CE(labels) + (1 − α)·KL(teacher ‖ student)·T² (Hinton et al.). */
export function kdTerms(student: string, teacher: string, o: { alpha?: number; temperature?: number } = {}): TermSpec[] {
  const a = o.alpha ?? 0.1, T = o.temperature ?? 4;
  return [
    ...(a > 0 ? [{ loss: 'ce', student: `${student}.logits`, teacher: 'labels', weight: a, name: 'ce' }] : []),
    { loss: 'kl', student: `${student}.logits`, teacher: `${teacher}.logits`, weight: 1 - a, options: { temperature: T }, name: 'kd' },
  ];
}

export const ceTerms = (role: string): TermSpec[] => [{ loss: 'ce', student: `${role}.logits`, teacher: 'labels', name: 'ce' }];

export interface SelfDistillOptions {
  /** KD temperature (default 3, as the BYOT reference). */
  temperature?: number;
  /** Weight of KD from the deepest exit; CE gets 1 − alpha (default 0.3). */
  alpha?: number;
  /** Weight of the feature hint (L2 between an exit's pooled features and the deepest's; default 0.03). */
  featureWeight?: number;
}

/**
 * Be Your Own Teacher over a MultiExit role with `exits` exits (the deepest included): the deepest exit learns from the
 * labels; each other exit i from the labels (1 − α), from the deepest exit's soft predictions (α, at T) and from the
 * deepest features (hint on `exits.i.pool` against `pool`, weight λ).
 */
export function selfDistillTerms(role: string, exits: number, o: SelfDistillOptions = {}): TermSpec[] {
  const T = o.temperature ?? 3, a = o.alpha ?? 0.3, lam = o.featureWeight ?? 0.03;
  const terms: TermSpec[] = [{ loss: 'ce', student: `${role}.logits`, teacher: 'labels', name: 'ce:deepest' }];
  for (let i = 0; i < exits - 1; i++) {
    terms.push({ loss: 'ce', student: `${role}.exits.${i}`, teacher: 'labels', weight: 1 - a, name: `ce:exit${i}` });
    terms.push({ loss: 'kl', student: `${role}.exits.${i}`, teacher: `${role}.logits`, weight: a, options: { temperature: T }, name: `kd:exit${i}` });
    if (lam > 0) terms.push({ loss: 'hint', student: `${role}.exits.${i}.pool`, teacher: `${role}.pool`, weight: lam, proj: 'none', name: `hint:exit${i}` });
  }
  return terms;
}

/**
 * CS-KD as its reference code trains: CE on the anchors (the batch's first half), and the anchors learn their same-class
 * partners' predictions (weight λ, default 1, T = 4; the partners' side detached).
 */
export function classWiseTerms(role: string, o: { temperature?: number; weight?: number } = {}): TermSpec[] {
  return [
    { loss: 'ce_anchors', student: `${role}.logits`, teacher: 'labels', name: 'ce' },
    { loss: 'cs_kd', student: `${role}.logits`, teacher: `${role}.logits`, weight: o.weight ?? 1, options: { temperature: o.temperature ?? 4 }, name: 'cs_kd' },
  ];
}

export interface VirtualTeacherOptions {
  /** Weight of the virtual teacher (CE gets 1 − alpha); default 0.1. */
  alpha?: number;
  /** Default 20. */
  temperature?: number;
  /** The virtual teacher's probability on the label; default 0.9. */
  correctProb?: number;
  multiplier?: number;
}
/** Tf-KD with the virtual teacher: (1 − α)·CE + α·KL(softmax(u/T) ‖ p), u the hand-designed distribution. */
export function virtualTeacherTerms(role: string, o: VirtualTeacherOptions = {}): TermSpec[] {
  const a = o.alpha ?? 0.1;
  return [
    { loss: 'ce', student: `${role}.logits`, teacher: 'labels', weight: 1 - a, name: 'ce' },
    { loss: 'tf_virtual', student: `${role}.logits`, teacher: 'labels', weight: a, options: { temperature: o.temperature ?? 20, correctProb: o.correctProb ?? 0.9, multiplier: o.multiplier ?? 1 }, name: 'virtual' },
  ];
}

/** FSP initialisation: one `fsp_pool` term per pair of layers ([first, second] module paths on each side). */
export function fspTerms(student: string, teacher: string, pairs: { student: [string, string]; teacher: [string, string] }[]): TermSpec[] {
  if (!pairs.length) throw new Error('fsp: give at least one pair of layers');
  return pairs.map((p, i) => ({ loss: 'fsp_pool', student: p.student.map((x) => `${student}.${x}`), teacher: p.teacher.map((x) => `${teacher}.${x}`), name: `fsp:${i}` }));
}

// ------------------------------------------------------------------------------------------ pairs of one class

/**
 * CS-KD's sampler as a DataLoader: each batch is `anchors` samples of the epoch's order followed by one partner per
 * anchor, a different sample of the same class drawn from (seed, epoch) (the anchor itself when its class has no
 * other). Batches hold 2 × anchors rows; the order is reproducible for any epoch, so runs resume exactly.
 */
export class PairedBatches extends DataLoader {
  private readonly anchors: number;
  private readonly byClass: Int32Array[];
  private readonly labelOf: Int32Array;
  private readonly posInClass: Int32Array;
  private paired: { epoch: number; order: Int32Array } | null = null;
  private ep = 0;
  constructor(dataset: TensorDataset, opts: Omit<DataLoaderOptions, 'batchSize' | 'dropLast'> & { anchors: number }) {
    super(dataset, { ...opts, batchSize: 2 * opts.anchors });
    if (!Number.isInteger(opts.anchors) || opts.anchors < 1) throw new Error(`PairedBatches: anchors must be a positive integer, got ${opts.anchors}`);
    this.anchors = opts.anchors;
    const y = dataset.tensors[1];
    if (y.ndim !== 1) throw new Error(`PairedBatches: the labels must be class indices [N], got [${y.shape.join(', ')}]`);
    this.labelOf = Int32Array.from(y.toArray());
    const lists = new Map<number, number[]>();
    this.posInClass = new Int32Array(this.labelOf.length);
    this.labelOf.forEach((c, i) => {
      const l = lists.get(c) ?? lists.set(c, []).get(c)!;
      this.posInClass[i] = l.length;
      l.push(i);
    });
    this.byClass = [];
    for (const [c, l] of lists) this.byClass[c] = Int32Array.from(l);
  }
  override get length(): number {
    return Math.ceil(this.dataset.length / this.anchors);
  }
  override setEpoch(epoch: number): void {
    super.setEpoch(epoch);
    this.ep = epoch;
  }
  /** Per batch: its anchors (a slice of the epoch's permutation), then their partners in the same order. */
  override epochOrder(): Int32Array {
    if (this.paired?.epoch === this.ep) return this.paired.order;
    const n = this.dataset.length, B = this.anchors;
    const rng = new Rng(mixSeed(this.seed ^ 0x2c5e, this.ep));
    const perm = this.shuffle ? new Rng(mixSeed(this.seed, this.ep)).permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
    const order = new Int32Array(2 * n);
    for (let s = 0, o = 0; s < n; s += B) {
      const chunk = perm.subarray(s, Math.min(s + B, n));
      order.set(chunk, o);
      o += chunk.length;
      for (const a of chunk) {
        // a uniform draw among the other samples of the class
        const same = this.byClass[this.labelOf[a]];
        let k = same.length > 1 ? Math.floor(rng.random() * (same.length - 1)) : 0;
        if (same.length > 1 && k >= this.posInClass[a]) k++;
        order[o++] = same[k];
      }
    }
    this.paired = { epoch: this.ep, order };
    return order;
  }
}

// ------------------------------------------------------------------------------------------------ library calls

/** What every scheme run takes: the data, the schedule and where it goes. */
export interface SchemeRunOptions {
  train: BatchSource;
  test?: TensorDataset;
  testTransforms?: DataLoader['transforms'];
  /** Epochs of each stage (a stage may say otherwise). */
  epochs: number;
  seed?: number;
  /** Every trained role's optimizer unless it gives its own. */
  optimizer: OptimizerSpec;
  schedule?: LrScheduleSpec;
  outDir: string;
  resume?: boolean;
  force?: boolean;
  log?: (line: string) => void;
  progress?: boolean;
  signal?: AbortSignal;
}

interface StagePlan {
  name: string;
  /** Built when the stage starts (so it can load an earlier stage's weights). */
  roles(ctx: StageContext): RoleSpec[];
  /** A function is called after `roles` (terms that depend on the built models). */
  terms: TermSpec[] | (() => TermSpec[]);
  epochs?: number;
  train?: BatchSource;
  primary?: string;
}

/** Runs stages built from plans (every role's model is disposed when its stage ends). */
export async function runPlans(o: SchemeRunOptions, plans: StagePlan[]): Promise<StagesResult> {
  const stages: StageSpec[] = plans.map((p) => {
    let made: RoleSpec[] = [];
    return {
      name: p.name,
      build: (ctx) => {
        made = p.roles(ctx);
        return {
          roles: made,
          terms: typeof p.terms === 'function' ? p.terms() : p.terms, primary: p.primary, train: p.train ?? o.train, test: o.test, testTransforms: o.testTransforms, epochs: p.epochs ?? o.epochs,
          seed: o.seed ?? 0, log: o.log, progress: o.progress, signal: o.signal,
        };
      },
      release: () => {
        for (const r of made.splice(0)) if (r.model instanceof Module) r.model.dispose();
      },
    };
  });
  // each stage builds its models from the generator seeded with the run's seed: a chain resumed between stages, or
  // one whose earlier stages finished in another process, builds a stage as the uninterrupted chain does
  return runStages({ outDir: o.outDir, stages, resume: o.resume, force: o.force, log: o.log, seed: o.seed ?? 0 });
}

/** A trained role (the run's optimizer unless `optimizer` is given) and a frozen one. */
const trained = (name: string, model: Module, o: SchemeRunOptions, optimizer?: OptimizerSpec): RoleSpec => ({ name, model, optimizer: optimizer ?? o.optimizer, schedule: o.schedule });
const frozen = (name: string, model: Module): RoleSpec => ({ name, model });
/** `make()` with the weights of an earlier stage's role. */
const loaded = (make: () => Module, file: string): Module => {
  const m = make();
  try {
    loadWeights(m, file);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return m;
};

export interface Peer {
  name: string;
  make: () => Module;
  /** Weights to start from. */
  checkpoint?: string;
  optimizer?: OptimizerSpec;
}

/** Deep mutual learning (or KDCL with target 'mean'): the peers in one stage `mutual`; its summary reports each peer. */
export async function mutualLearning(o: SchemeRunOptions & MutualOptions & { peers: Peer[] }): Promise<StagesResult> {
  return runPlans(o, [{
    name: 'mutual',
    roles: () => o.peers.map((p) => trained(p.name, p.checkpoint ? loaded(p.make, p.checkpoint) : p.make(), o, p.optimizer)),
    terms: mutualTerms(o.peers.map((p) => p.name), o),
  }]);
}

/** Born-again networks: gen0 trained alone, then generations 1..K, each the same architecture taught by the one before. */
export async function bornAgain(o: SchemeRunOptions & { make: () => Module; generations: number; temperature?: number; alpha?: number }): Promise<StagesResult> {
  if (!Number.isInteger(o.generations) || o.generations < 1) throw new Error(`born-again: generations must be a positive integer, got ${o.generations}`);
  const plans: StagePlan[] = [{ name: 'gen0', roles: () => [trained('student', o.make(), o)], terms: ceTerms('student') }];
  for (let k = 1; k <= o.generations; k++)
    plans.push({
      name: `gen${k}`,
      roles: (ctx) => [frozen('teacher', loaded(o.make, ctx.checkpoint(`gen${k - 1}`))), trained('student', o.make(), o)],
      terms: kdTerms('student', 'teacher', { alpha: o.alpha ?? 0, temperature: o.temperature ?? 1 }),
    });
  return runPlans(o, plans);
}

/** Teacher → assistant(s) → student, plus the direct teacher → student and the student alone for comparison. */
export async function teacherAssistant(o: SchemeRunOptions & {
  teacher: () => Module; teacherCheckpoint?: string; assistants: (() => Module)[]; student: () => Module; alpha?: number; temperature?: number;
}): Promise<StagesResult> {
  const kd = { alpha: o.alpha ?? 0.1, temperature: o.temperature ?? 4 };
  const teacherFile = (ctx: StageContext) => o.teacherCheckpoint ?? ctx.checkpoint('teacher');
  const plans: StagePlan[] = o.teacherCheckpoint ? [] : [{ name: 'teacher', roles: () => [trained('teacher', o.teacher(), o)], terms: ceTerms('teacher') }];
  const chain = [...o.assistants, o.student];
  chain.forEach((make, i) => {
    const name = i === chain.length - 1 ? 'student' : `assistant${i + 1}`;
    const prev = i === 0 ? null : `assistant${i}`;
    plans.push({
      name,
      roles: (ctx) => [frozen('teacher', loaded(i === 0 ? o.teacher : chain[i - 1], prev ? ctx.checkpoint(prev) : teacherFile(ctx))), trained('student', make(), o)],
      terms: kdTerms('student', 'teacher', kd),
    });
  });
  plans.push({ name: 'direct', roles: (ctx) => [frozen('teacher', loaded(o.teacher, teacherFile(ctx))), trained('student', o.student(), o)], terms: kdTerms('student', 'teacher', kd) });
  plans.push({ name: 'alone', roles: () => [trained('student', o.student(), o)], terms: ceTerms('student') });
  return runPlans(o, plans);
}

/** Be Your Own Teacher: one stage `self` training a MultiExit model; `exitAccuracies` then evaluates every exit. */
export async function selfDistillation(o: SchemeRunOptions & SelfDistillOptions & { make: () => MultiExit }): Promise<StagesResult> {
  let exits = 0;
  return runPlans(o, [{
    name: 'self',
    roles: () => {
      const m = o.make();
      exits = m.numExits;
      return [trained('model', m, o)];
    },
    terms: () => selfDistillTerms('model', exits, o),
  }]);
}

/** Test accuracy (%) of every exit of a MultiExit model, shallowest first, from one forward pass per batch. */
export async function exitAccuracies(model: MultiExit, test: TensorDataset, transforms: DataLoader['transforms'] = []): Promise<number[]> {
  const was = model.training;
  model.eval();
  const correct = new Array(model.numExits).fill(0);
  const loader = new DataLoader(test, { batchSize: 500, transforms });
  for (const b of loader) {
    tidy(() => noGrad(() => model.forwardAll(b.x).forEach((l: Tensor, i) => { correct[i] += l.argmax(1).eq(b.y).sum().item(); })));
    b.dispose();
    await nextTick();
  }
  model.train(was);
  return correct.map((c) => (100 * c) / test.length);
}

/** CS-KD: one stage `cskd` on PairedBatches over `dataset` (`anchors` per batch). */
export async function classWiseSelfKD(o: Omit<SchemeRunOptions, 'train'> & { make: () => Module; dataset: TensorDataset; anchors: number; transforms?: DataLoader['transforms']; temperature?: number; weight?: number }): Promise<StagesResult> {
  const train = new PairedBatches(o.dataset, { anchors: o.anchors, shuffle: true, seed: o.seed ?? 0, transforms: o.transforms });
  const run = { ...o, train };
  return runPlans(run, [{ name: 'cskd', roles: () => [trained('model', o.make(), run)], terms: classWiseTerms('model', o) }]);
}

/**
 * Teacher-free KD: with teacher 'virtual', one stage `virtual` (the hand-designed teacher); with teacher 'self', the
 * model trained alone (`self0`), then the same architecture taught by that checkpoint (`self1`).
 */
export async function teacherFreeKD(o: SchemeRunOptions & VirtualTeacherOptions & { make: () => Module; teacher: 'virtual' | 'self' }): Promise<StagesResult> {
  if (o.teacher === 'virtual') return runPlans(o, [{ name: 'virtual', roles: () => [trained('model', o.make(), o)], terms: virtualTeacherTerms('model', o) }]);
  return runPlans(o, [
    { name: 'self0', roles: () => [trained('model', o.make(), o)], terms: ceTerms('model') },
    {
      name: 'self1', roles: (ctx) => [frozen('teacher', loaded(o.make, ctx.checkpoint('self0'))), trained('model', o.make(), o)],
      terms: kdTerms('model', 'teacher', { alpha: 1 - (o.alpha ?? 0.1), temperature: o.temperature ?? 20 }),
    },
  ]);
}

/** FSP as RepDistiller: `fsp-init` (the student's layers learn the teacher's FSP matrices), then `train` with cross-entropy. */
export async function fspDistill(o: SchemeRunOptions & {
  teacher: () => Module; teacherCheckpoint: string; student: () => Module; pairs: { student: [string, string]; teacher: [string, string] }[]; initEpochs?: number;
}): Promise<StagesResult> {
  return runPlans(o, [
    { name: 'fsp-init', roles: () => [frozen('teacher', loaded(o.teacher, o.teacherCheckpoint)), trained('student', o.student(), o)], terms: fspTerms('student', 'teacher', o.pairs), epochs: o.initEpochs },
    { name: 'train', roles: (ctx) => [trained('student', loaded(o.student, ctx.checkpoint('fsp-init', 'student', 'last')), o)], terms: ceTerms('student') },
  ]);
}

/**
 * Module replacement: `replace` trains `replaced()` (a model from replaceModules / theseusResnet / theseusTransformer,
 * whose replacement probability follows its schedule through the engine's beforeStep), then `finetune` trains the
 * successor architecture `successor()` alone from those weights.
 */
export async function moduleReplacement(o: SchemeRunOptions & { replaced: () => Module; successor: () => Module; fineTuneEpochs?: number }): Promise<StagesResult> {
  return runPlans(o, [
    { name: 'replace', roles: () => [trained('successor', o.replaced(), o)], terms: ceTerms('successor') },
    { name: 'finetune', roles: (ctx) => [trained('successor', loaded(o.successor, ctx.checkpoint('replace')), o)], terms: ceTerms('successor'), epochs: o.fineTuneEpochs },
  ]);
}

/** Test accuracy (%) of the average of models' logits (e.g. the born-again generations). */
export async function ensembleAccuracy(models: Module[], test: TensorDataset, transforms: DataLoader['transforms'] = []): Promise<number> {
  const e = new Ensemble(models);
  return evaluate(e, test, transforms);
}

export type { TrainSummary };
