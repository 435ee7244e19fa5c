// Feature matching: teacher layer → student layer pairs, each with a loss from the registry and a weight, and
// trainable projections inserted where the shapes differ (found by a dry run). The projections train with the student
// and are not part of it: the student's own state_dict never holds them.
//
//   const fm = new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'layer3', loss: 'hint' }]);
//   fm.probe(x);                                 // shapes → projections
//   const { logits, terms } = fm.forward(x, y);  // student logits + one loss tensor per match (weighted)
//
// The teacher is a Module (its layers are tapped with forward hooks) or an external Teacher (ONNX, TorchScript): then
// teacher paths are the teacher's value names, and the caller runs the teacher first (`runTeacher(teacher, x,
// fm.teacherNames)`) and passes the tensors to `probe` and `forward`.
import { Tensor, keep, noGrad, ops, tidy } from '../torch';
import { BatchNorm2d, Conv2d, Linear, Module, ModuleList, closest } from '../nn';
import { type Teacher, isTeacher } from '../teachers';
import { F } from '../nn';
import * as L from './losses';
import { DynamicTemperature, Progress, ScheduleSpec, checkSchedule, dynamicTemperature, initialValue, scheduleValue } from './schedules';
import { type LossResult, lossTensor } from './terms';
import { type SoftLoss, softTerm } from './response';
import { type TokenKdLoss, positionRows, tokenCrossEntropy, tokenKdLoss, topkForwardKl } from './token-kd';
import { classWiseKl, fspPooled, peerMeanKl, virtualTeacherKl } from './scheme-losses';
import { softTopkLoss } from './view-cache';
import { registerRepDistillerLosses } from './repdistiller-register';
import { registerLifelongLosses } from './lifelong';
import { registerAdversarialLosses } from './adversarial';
import { adaptiveJs, bnStats, daflActivation, daflEntropy, daflOneHot, dfadAdversarial, l2Prior, logitL1, tvPrior } from './datafree';

// ------------------------------------------------------------------------------------------------ the loss registry

/**
 * What a loss needs of the two sides' tensors: 'same' shape (a projection makes it so), 'spatial' (equal H×W; channels
 * may differ — resized when not), 'batch' (only the batch dimension in common: relation losses).
 */
export type LossNeeds = 'same' | 'spatial' | 'batch';

export interface LossContext {
  /** The batch's labels (class indices), for losses that use them (DKD). */
  labels?: Tensor;
  /** Every tensor of the batch by name: `labels`, and what the batch source adds (e.g. per-token `weights`). */
  batch?: Record<string, Tensor>;
  /** Where training is (for losses that change over training). */
  progress?: Progress;
  /** Whether any of the loss's options follows a schedule that moves (constant-only shortcuts must not apply). */
  scheduled?: boolean;
  /** The loss's own module (LossDef.module), when it has one. */
  module?: Module;
  /** The batch's rows in the training set (memory banks index by them). */
  indices?: Int32Array;
}

/** What a loss's own module is built from (on the first batch, before training). */
export interface LossModuleInfo {
  /** The shapes of the student side's and the teacher side's taps. */
  student: number[][];
  teacher: number[][];
  /** Rows in the training set (0 when the source does not say). */
  rows: number;
  /** The model behind the teacher side's taps, when it is a Module (e.g. its batch-norm parameters). */
  teacherModel: Module | null;
  options: Record<string, unknown>;
}

export interface LossDef {
  needs: LossNeeds;
  /** Number of layers per side (FSP uses pairs; 'many': one or more, as many on each side); default 1. */
  arity?: 1 | 2 | 'many';
  /** 'many': the teacher side takes one or more taps (an ensemble of them, e.g. the other peers), the student one. */
  teachers?: 'many';
  /**
   * The loss on captured tensors (one per layer of the match, per side): a tensor, or a tensor and a constant scale
   * kept out of the graph (see terms.ts).
   */
  fn: (student: Tensor[], teacher: Tensor[], ctx: LossContext, opts: Record<string, unknown>) => LossResult;
  /** One line for listings. */
  doc?: string;
  /**
   * Learnable parts or state the loss owns (regressors, connectors, embeddings, memory banks): built from the taps'
   * shapes on the first batch, trained with the role whose taps feed the student side, saved and restored with its
   * checkpoints; the loss receives it as `ctx.module`.
   */
  module?: (info: LossModuleInfo) => Module;
  /** The teacher side keeps its gradient (adversarial terms through both roles, e.g. a generator's); default false. */
  targetGrad?: boolean;
}

const losses = new Map<string, LossDef>();

/** Whether `s` student taps and `t` teacher taps fit the loss's arity. */
export function arityFits(def: LossDef, s: number, t: number): boolean {
  const a = def.arity ?? 1;
  const sOk = a === 'many' ? s >= 1 : s === a;
  const tOk = def.teachers === 'many' ? t >= 1 : a === 'many' ? t === s : t === a;
  return sOk && tOk;
}
/** The arity in words, for errors. */
export function arityText(def: LossDef, noun = 'tap'): string {
  const a = def.arity ?? 1;
  if (a === 'many') return `one or more ${noun}s per side, as many on each`;
  return `${a} ${noun}(s) per side${def.teachers === 'many' ? ' (the teacher side: one or more)' : ''}`;
}

/** Adds a loss that configs can name in `matches[].loss`. */
export function registerLoss(name: string, def: LossDef): void {
  if (!/^[a-z][a-z0-9_.-]*$/i.test(name)) throw new Error(`registerLoss: '${name}' is not a valid loss name (letters, digits, _ . -)`);
  if (losses.has(name)) throw new Error(`registerLoss: a loss named '${name}' is already registered`);
  if (typeof def?.fn !== 'function' || !['same', 'spatial', 'batch'].includes(def.needs))
    throw new Error(`registerLoss('${name}'): expected { needs: 'same' | 'spatial' | 'batch', fn }`);
  losses.set(name, def);
}
export function lossNames(): string[] {
  return [...losses.keys()].sort();
}
export function getLoss(name: string): LossDef {
  const d = losses.get(name);
  if (!d) {
    const known = lossNames();
    throw new Error(`unknown loss '${name}'. Closest: ${closest(name, known, 3).join(', ')}. Known losses: ${known.join(', ')}`);
  }
  return d;
}

let builtinLosses = false;
/** Registers the built-in loss zoo (call once; nothing registers on import). */
export function registerBuiltinLosses(): void {
  if (builtinLosses) return;
  builtinLosses = true;
  const num = (o: Record<string, unknown>, k: string) => o[k] as number | undefined;
  const one = (needs: LossNeeds, doc: string, f: (s: Tensor, t: Tensor, ctx: LossContext, o: Record<string, unknown>) => LossResult): LossDef =>
    ({ needs, doc, fn: (s, t, ctx, o) => f(s[0], t[0], ctx, o) });
  registerLoss('ce', one('batch', 'cross-entropy of logits against class labels (teacher side: labels)', (s, t, _c, o) =>
    F.crossEntropy(s, t, num(o, 'labelSmoothing') ? { labelSmoothing: num(o, 'labelSmoothing') } : {})));
  // response KD: options temperature (default 4, may follow a schedule) and, for kl, dynamicTemperature (flsw / cwsm)
  const response = (kind: SoftLoss) => (s: Tensor, t: Tensor, c: LossContext, o: Record<string, unknown>) => {
    const T = num(o, 'temperature') ?? 4;
    if (typeof T !== 'number' || !(T > 0)) throw new Error(`${kind}: temperature must be positive, got ${T}`);
    const dyn = o.dynamicTemperature as DynamicTemperature | undefined;
    if (dyn && kind !== 'kl') throw new Error(`${kind}: a dynamic temperature needs the kl soft loss`);
    return softTerm(s, t, T, kind, { scheduled: c.scheduled, tau: dyn ? dynamicTemperature(dyn, s, t, T) : undefined });
  };
  const kl = one('same', 'KL(softmax(t/T) ‖ softmax(s/T))·T² on logits (response KD)', response('kl'));
  registerLoss('kl', kl);
  registerLoss('kd', { ...kl, doc: 'the same as kl' });
  registerLoss('soft_ce', one('same', 'soft cross-entropy on logits ·T²', response('soft_ce')));
  registerLoss('logit_mse', one('same', 'MSE between logits', response('logit_mse')));
  registerLoss('dkd', one('same', 'decoupled KD (target / non-target terms) on logits', (s, t, c, o) => {
    if (!c.labels) throw new Error('dkd: needs the batch labels');
    return L.dkdLoss(s, t, c.labels, { alpha: num(o, 'alpha'), beta: num(o, 'beta'), temperature: num(o, 'temperature') });
  }));
  // decoders: per-token losses over [B, T, V] logits, weighted per position by the batch's `weights` (answer tokens)
  const batchTensor = (c: LossContext, name: string, loss: string) => {
    const t = c.batch?.[name];
    if (!t) throw new Error(`${loss}: the batch has no '${name}' tensor (batch tensors: ${Object.keys(c.batch ?? {}).join(', ') || 'none'})`);
    return t;
  };
  const positionWeights = (c: LossContext, rows: Tensor) => c.batch?.weights ?? ops.ones([rows.shape[0]], { dtype: rows.dtype, device: rows.device });
  registerLoss('token_ce', one('batch', 'next-token cross-entropy, mean over the positions weighted by batch.weights (option weights: another batch tensor)', (s, t, c, o) => {
    const rows = positionRows(s);
    return tokenCrossEntropy(rows, t.reshape(-1), typeof o.weights === 'string' ? batchTensor(c, o.weights, 'token_ce') : positionWeights(c, rows));
  }));
  registerLoss('token_kd', one('batch', "token-level KD to a teacher decoder's distribution (options kind: forward_kl | reverse_kl | jsd, temperature, beta)", (s, t, c, o) => {
    const rows = positionRows(s);
    return tokenKdLoss((o.kind as TokenKdLoss) ?? 'forward_kl', rows, positionRows(t), positionWeights(c, rows), { temperature: num(o, 'temperature'), beta: num(o, 'beta') });
  }));
  registerLoss('topk_kl', one('batch', "forward KL to stored top-k teacher log-probabilities (teacher side: batch.topk_logprobs; batch.topk_ids, topk_valid, topk_weights)", (s, t, c) =>
    topkForwardKl(positionRows(s), batchTensor(c, 'topk_ids', 'topk_kl'), t, batchTensor(c, 'topk_valid', 'topk_kl'), batchTensor(c, 'topk_weights', 'topk_kl'))));
  registerLoss('soft_topk', one('batch', "KD to stored top-k teacher logits of a cached view, FKD's uniform tail (teacher side: batch.teacher_topk_logits; batch.teacher_topk_indices, teacher_topk_tail; option temperature)", (s, t, c, o) =>
    softTopkLoss(s, t, batchTensor(c, 'teacher_topk_indices', 'soft_topk'), batchTensor(c, 'teacher_topk_tail', 'soft_topk'), num(o, 'temperature') ?? 4)));
  registerLoss('hint', one('same', 'FitNets hint: MSE through a projection', (s, t) => L.hintLoss(s, t)));
  registerLoss('hidden_mse', one('same', 'TinyBERT hidden-state MSE', (s, t) => L.hiddenMseLoss(s, t)));
  registerLoss('cosine', one('same', 'DistilBERT cosine embedding loss', (s, t) => L.cosineLoss(s, t)));
  registerLoss('at', one('spatial', 'attention transfer (p = 2)', (s, t, _c, o) => L.atLoss(s, t, { p: num(o, 'p') })));
  registerLoss('nst', one('spatial', 'neuron selectivity transfer (polynomial-kernel MMD)', (s, t) => L.nstLoss(s, t)));
  registerLoss('pkt', one('batch', 'probabilistic knowledge transfer', (s, t) => L.pktLoss(s, t)));
  registerLoss('rkd', one('batch', 'relational KD: 25·distance + 50·angle', (s, t, _c, o) => L.rkdLoss(s, t, { distanceWeight: num(o, 'distanceWeight'), angleWeight: num(o, 'angleWeight') })));
  registerLoss('rkd_distance', one('batch', 'relational KD, distance term', (s, t) => L.rkdDistanceLoss(s, t)));
  registerLoss('rkd_angle', one('batch', 'relational KD, angle term', (s, t) => L.rkdAngleLoss(s, t)));
  registerLoss('sp', one('batch', 'similarity-preserving KD', (s, t) => L.spLoss(s, t)));
  registerLoss('cc', one('batch', 'correlation congruence (Gaussian kernel, Taylor order 2)', (s, t, _c, o) => L.ccLoss(s, t, { gamma: num(o, 'gamma'), order: num(o, 'order') })));
  registerLoss('attention_mse', one('same', 'TinyBERT attention-map MSE', (s, t) => L.attentionMseLoss(s, t)));
  registerLoss('attention_kl', one('same', 'MiniLM attention-distribution KL', (s, t) => L.attentionKlLoss(s, t)));
  registerLoss('relation_kl', one('batch', 'MiniLMv2 self-attention relation KL', (s, t, _c, o) => L.relationKlLoss(s, t, { heads: num(o, 'heads') })));
  registerLoss('fsp', { needs: 'batch', arity: 2, doc: 'FSP matrices of a pair of layers per side', fn: (s, t) => L.fspLoss([s[0], s[1]], [t[0], t[1]]) });
  // the schemes' losses (scheme-losses.ts)
  registerLoss('fsp_pool', { needs: 'batch', arity: 2, doc: "FSP as RepDistiller: each pair's larger map pooled to the smaller first", fn: (s, t) => fspPooled([s[0], s[1]], [t[0], t[1]]) });
  registerLoss('kl_peers', { needs: 'batch', teachers: 'many', doc: "KL to the peers' averaged soft targets ·T² (KDCL); teacher side: one tap per peer", fn: (s, t, _c, o) => peerMeanKl(s[0], t, num(o, 'temperature') ?? 1) });
  registerLoss('ce_anchors', one('batch', 'cross-entropy on the first half of the batch (CS-KD: the anchors of a [anchors; partners] batch; teacher side: labels)', (s, t, _c, o) => {
    const n = s.shape[0];
    if (n % 2 !== 0) throw new Error(`ce_anchors: expects a batch of anchors and their partners (an even batch), got ${n} rows (train from PairedBatches)`);
    return F.crossEntropy(s.narrow(0, 0, n / 2), t.narrow(0, 0, n / 2), num(o, 'labelSmoothing') ? { labelSmoothing: num(o, 'labelSmoothing') } : {});
  }));
  registerLoss('cs_kd', one('batch', "class-wise self-KD (CS-KD): batch [anchors; same-class partners], the anchors learn the partners' predictions", (s, t, _c, o) => classWiseKl(s, t, num(o, 'temperature') ?? 4)));
  registerRepDistillerLosses(registerLoss);
  registerLifelongLosses(registerLoss);
  registerAdversarialLosses(registerLoss);
  registerLoss('tf_virtual', one('batch', "Tf-KD's virtual teacher: correctProb on the label, the rest spread evenly (teacher side: labels)", (s, t, _c, o) =>
    virtualTeacherKl(s, t, { correctProb: num(o, 'correctProb'), temperature: num(o, 'temperature'), multiplier: num(o, 'multiplier') })));
  // data-free distillation (datafree.ts): a generator's terms, read on the teacher's outputs on its images
  registerLoss('dafl_onehot', one('batch', "DAFL: cross-entropy of the teacher's logits against their argmax (student side: the teacher's logits on generated images)", (s) => daflOneHot(s)));
  registerLoss('dafl_activation', one('batch', 'DAFL: −mean |f| of a teacher feature (option relu: after a ReLU)', (s, _t, _c, o) => daflActivation(s, o.relu === true)));
  registerLoss('dafl_entropy', one('batch', "DAFL: Σ p̄ log10 p̄ of the batch's mean teacher softmax (balanced classes)", (s) => daflEntropy(s)));
  registerLoss('bn_stats', one('batch', "DeepInversion: ‖μ − μ_bn‖ + ‖σ² − σ²_bn‖ of a BatchNorm's input (options mean, var)", (s, _t, _c, o) => bnStats(s, o.mean as number[], o.var as number[])));
  registerLoss('tv_prior', one('batch', 'DeepInversion: total variation of images (option norm: l2 | l1)', (s, _t, _c, o) => tvPrior(s, (o.norm as 'l1' | 'l2' | undefined) ?? 'l2')));
  registerLoss('l2_prior', one('batch', "DeepInversion: mean of each image's L2 norm", (s) => l2Prior(s)));
  registerLoss('adaptive_js', { ...one('same', 'DeepInversion: 1 − JS(softmax(s/T), softmax(t/T)), through both sides (option temperature, default 3)', (s, t, _c, o) => adaptiveJs(s, t, num(o, 'temperature') ?? 3)), targetGrad: true });
  registerLoss('dfad_adv', { ...one('same', 'DFAD: −mean |s − t| over logits, through both sides (a generator maximises disagreement)', (s, t) => dfadAdversarial(s, t)), targetGrad: true });
  registerLoss('logit_l1', one('same', 'mean |s − t| over logits', (s, t) => logitL1(s, t)));
}

// ------------------------------------------------------------------------------------------------------ projections

/**
 * Maps a student tensor to the teacher's shape: a 1×1 convolution + batch norm for feature maps whose channels differ,
 * average pooling or bilinear resizing when H×W differ, a linear layer on the last dimension for vectors and token
 * states. Trained with the student; not part of it.
 */
export class Projection extends Module {
  conv: Conv2d | null = null;
  bn: BatchNorm2d | null = null;
  linear: Linear | null = null;
  constructor(readonly fromShape: number[], readonly toShape: number[], readonly resizeOnly = false) {
    const from = fromShape, to = toShape;
    super();
    if (from.length === 4) {
      if (!resizeOnly && from[1] !== to[1]) {
        this.conv = this.registerModule('conv', new Conv2d(from[1], to[1], 1, { bias: false }));
        this.bn = this.registerModule('bn', new BatchNorm2d(to[1]));
      }
    } else if (!resizeOnly && from[from.length - 1] !== to[to.length - 1]) {
      this.linear = this.registerModule('linear', new Linear(from[from.length - 1], to[to.length - 1]));
    }
  }
  forward(x: Tensor): Tensor {
    if (this.fromShape.length !== 4) return this.linear ? this.linear.call(x) : ops.alias(x);
    let h = x;
    if (this.conv) h = this.bn!.call(this.conv.call(h));
    const [H, W] = [this.toShape[2], this.toShape[3]];
    if (h.shape[2] !== H || h.shape[3] !== W)
      h = h.shape[2] >= H && h.shape[3] >= W ? ops.adaptive_avg_pool2d(h, [H, W]) : ops.upsample_bilinear2d(h, [H, W], false);
    return h === x ? ops.alias(x) : h;
  }
  override extraRepr(): string {
    return `[${this.fromShape.slice(1).join(', ')}] -> [${this.toShape.slice(1).join(', ')}]`;
  }
}

/** Decides the projection a match needs, or explains why none can make the shapes fit. */
export function planProjection(loss: string, needs: LossNeeds, s: number[], t: number[], mode: 'auto' | 'none'): Projection | null {
  const f = (x: number[]) => `[${x.join(', ')}]`;
  if (s[0] !== t[0]) throw new Error(`match '${loss}': batch sizes differ (student ${f(s)}, teacher ${f(t)})`);
  if (needs === 'batch') return null;
  if (s.length !== t.length)
    throw new Error(`match '${loss}': student ${f(s)} and teacher ${f(t)} differ in rank; no projection maps one onto the other (match layers of the same kind)`);
  const same = s.every((d, i) => d === t[i]);
  if (needs === 'spatial') {
    if (s.length < 3) throw new Error(`match '${loss}': needs feature maps [B, C, H, W], got student ${f(s)}`);
    if (s.slice(2).every((d, i) => d === t[i + 2])) return null;
    if (mode === 'none') throw new Error(`match '${loss}': spatial sizes differ (student ${f(s)}, teacher ${f(t)}) and proj is 'none'`);
    if (s.length !== 4) throw new Error(`match '${loss}': cannot resize ${f(s)} to ${f(t)}`);
    return new Projection(s, t, true);
  }
  if (same) return null;
  if (mode === 'none') throw new Error(`match '${loss}': shapes differ (student ${f(s)}, teacher ${f(t)}) and proj is 'none'`);
  if (s.length !== 4 && s.slice(0, -1).some((d, i) => d !== t[i]))
    throw new Error(`match '${loss}': student ${f(s)} and teacher ${f(t)} differ in more than the last dimension; a linear projection cannot fix that`);
  return new Projection(s, t);
}

// ---------------------------------------------------------------------------------------------------- the matcher

export interface MatchSpec {
  /** Module path in the teacher ('logits' for its output); two paths for pair losses (fsp). */
  teacher: string | string[];
  student: string | string[];
  loss: string;
  /** Default 1; a schedule ({ kind: 'linear', from, to }, ...) varies it over training. */
  weight?: number | ScheduleSpec;
  /** 'auto' (default) inserts a projection where the loss needs equal shapes and they differ; 'none' refuses. */
  proj?: 'auto' | 'none';
  /** Options passed to the loss (temperature, p, heads, ...). */
  options?: Record<string, unknown>;
  /** How `*` patterns pair up (uniform, last_k, explicit); default uniform. */
  map?: LayerMap;
}

interface Match {
  spec: MatchSpec;
  name: string;
  def: LossDef;
  t: string[];
  s: string[];
  weight: ScheduleSpec;
  proj: Projection | null;
}

const LOGITS = 'logits';

/**
 * The module path of a feature key: a module returning several tensors (attention returns [output, probabilities])
 * is captured as `path` (element 0), `path#1`, ...; `encoder.layers.0.self_attn#1` is attention probabilities.
 */
export function modulePath(key: string): string {
  const i = key.indexOf('#');
  return i < 0 ? key : key.slice(0, i);
}

/** All module paths of a model (an external teacher's value names), for error messages. */
export function modelPaths(m: Module | Teacher): string[] {
  if (isTeacher(m)) return m.valueNames();
  return m.namedModules().map(([p]) => p).filter((p) => p !== '');
}

/**
 * Teacher → student layer matching with a loss per pair. `probe(x)` runs both models once on x to learn the shapes
 * and builds the projections; `forward(x, labels)` then returns the student's logits and each match's weighted loss.
 */
export class FeatureMatcher {
  readonly matches: Match[];
  /** The projections (trainable; give `parameters()` to the optimizer with the student's). */
  readonly projections = new ModuleList();
  private probed = false;

  constructor(readonly student: Module, readonly teacher: Module | Teacher, specs: MatchSpec[]) {
    registerBuiltinLosses();
    if (!Array.isArray(specs) || specs.length === 0) throw new Error('FeatureMatcher: give at least one match');
    const check = (m: Module | Teacher, side: string, p: string, i: number) => {
      if (p === LOGITS) return;
      const all = modelPaths(m);
      // an external teacher whose names are known only after a batch (TorchScript) is checked when it runs
      if (isTeacher(m) && all.length === 0) return;
      // a module's extra outputs (`path#1`) are checked by their module path; an external teacher's value names as they are
      const base = isTeacher(m) ? p : modulePath(p);
      if (!all.includes(base))
        throw new Error(
          `matches[${i}].${side}: '${base}' is not ${isTeacher(m) ? `a value of the ${m.kind} teacher` : `a module of the ${side} (${m.constructor.name})`}. Closest: ${closest(base, all, 5).join(', ')}`,
        );
    };
    const names = new Map<string, number>();
    specs = expandMatches(teacher, student, specs);
    this.matches = specs.map((spec, i) => {
      const def = getLoss(spec.loss);
      const t = Array.isArray(spec.teacher) ? spec.teacher : [spec.teacher];
      const s = Array.isArray(spec.student) ? spec.student : [spec.student];
      if (!arityFits(def, s.length, t.length))
        throw new Error(`matches[${i}]: loss '${spec.loss}' takes ${arityText(def, 'layer')}, got teacher ${JSON.stringify(spec.teacher)} and student ${JSON.stringify(spec.student)}`);
      t.forEach((p) => check(teacher, 'teacher', p, i));
      s.forEach((p) => check(student, 'student', p, i));
      const weight = spec.weight ?? 1;
      checkSchedule(weight, `matches[${i}].weight`);
      if (typeof weight === 'number' && weight < 0) throw new Error(`matches[${i}].weight must be non-negative, got ${weight}`);
      const base = `${spec.loss}:${s.join('+')}`;
      const k = names.get(base) ?? 0;
      names.set(base, k + 1);
      return { spec, name: k ? `${base}#${k}` : base, def, t, s, weight, proj: null };
    });
  }

  /** Loss-term names, in match order (as logged). */
  get termNames(): string[] {
    return this.matches.map((m) => m.name);
  }

  /** The teacher names the matches read ('logits' included): what an external teacher must be run for. */
  get teacherNames(): string[] {
    return [...new Set([LOGITS, ...this.matches.flatMap((m) => m.t)])];
  }

  /** Trainable parameters of the projections. */
  parameters(): Tensor[] {
    return this.projections.parameters();
  }

  private capture(model: Module, wanted: string[], x: Tensor): { logits: Tensor; features: Map<string, Tensor> } {
    const inner = [...new Set(wanted.filter((p) => p !== LOGITS).map(modulePath))];
    const { result, features } = model.captureFeatures(inner, () => model.call(x) as Tensor);
    for (const p of wanted)
      if (p !== LOGITS && !features.has(p))
        throw new Error(`FeatureMatcher: ${model.constructor.name} module '${modulePath(p)}' gave no output '${p}' (it produced: ${[...features.keys()].filter((k) => modulePath(k) === modulePath(p)).join(', ') || 'nothing'})`);
    features.set(LOGITS, result);
    return { logits: result, features };
  }

  /** The external teacher's tensors for the matches (see `teacherNames`), checked to be all there. */
  private given(teacherFeatures: Map<string, Tensor> | undefined, what: string): Map<string, Tensor> {
    if (!teacherFeatures) throw new Error(`FeatureMatcher.${what}: the teacher is external (${(this.teacher as Teacher).kind}); run it first and pass its tensors (runTeacher(teacher, x, fm.teacherNames))`);
    for (const n of this.teacherNames) if (!teacherFeatures.has(n)) throw new Error(`FeatureMatcher.${what}: the teacher's tensors lack '${n}'`);
    return teacherFeatures;
  }

  /**
   * Runs both models once on x (eval mode, no grad) and builds a projection wherever a match needs one. An external
   * teacher's tensors for x are passed in `teacherFeatures`.
   */
  probe(x: Tensor, teacherFeatures?: Map<string, Tensor>): void {
    const teacher = isTeacher(this.teacher) ? null : this.teacher;
    const tf = teacher ? null : this.given(teacherFeatures, 'probe');
    const sTrain = this.student.training, tTrain = teacher?.training ?? false;
    this.student.eval();
    teacher?.eval();
    try {
      tidy(() =>
        noGrad(() => {
          const s = this.capture(this.student, this.matches.flatMap((m) => m.s), x);
          const t = teacher ? this.capture(teacher, this.matches.flatMap((m) => m.t), x) : { features: tf! };
          for (const m of this.matches) {
            if (m.proj) continue;
            // a loss that owns modules (crd, vid, ...) is built by the engine, which trains and saves them
            if (m.def.module || (m.def.arity ?? 1) !== 1) continue;
            const sf = s.features.get(m.s[0])!;
            m.proj = planProjection(m.spec.loss, m.def.needs, sf.shape, t.features.get(m.t[0])!.shape, m.spec.proj ?? 'auto');
            if (m.proj) {
              if (sf.device !== 'cpu') m.proj.to(sf.device); // projections live where the student's features are
              this.projections.append(m.proj);
            }
          }
        }),
      );
    } finally {
      this.student.train(sTrain);
      teacher?.train(tTrain);
    }
    this.probed = true;
  }

  /**
   * The student's logits and each match's weighted loss for input x (teacher under no-grad). Call inside a scope;
   * the returned tensors belong to it.
   */
  forward(x: Tensor, labels?: Tensor, progress?: Progress, teacherFeatures?: Map<string, Tensor>): { logits: Tensor; teacherLogits: Tensor; terms: Map<string, Tensor> } {
    if (!this.probed) this.probe(x, teacherFeatures);
    const teacher = isTeacher(this.teacher) ? null : this.teacher;
    const tf = teacher
      ? new Map(tidy(() => noGrad(() => {
          const r = this.capture(teacher, this.matches.flatMap((m) => m.t), x);
          return [...r.features.entries()].map(([k, v]) => [k, keep(v)] as const);
        })))
      : new Map(this.given(teacherFeatures, 'forward'));
    try {
      const s = this.capture(this.student, this.matches.flatMap((m) => m.s), x);
      const terms = new Map<string, Tensor>();
      for (const m of this.matches) {
        const sv = m.s.map((p) => s.features.get(p)!);
        const tv = m.t.map((p) => tf.get(p)!);
        const sp = m.proj ? [m.proj.call(sv[0]) as Tensor] : sv;
        const w = progress ? scheduleValue(m.weight, progress) : initialValue(m.weight);
        terms.set(m.name, lossTensor(m.def.fn(sp, tv, { labels, progress }, m.spec.options ?? {})).mul(w));
      }
      return { logits: s.logits, teacherLogits: ops.alias(tf.get(LOGITS)!), terms };
    } finally {
      // the teacher's own tensors: the caller's when it passed them
      if (teacher) for (const v of tf.values()) v.dispose();
    }
  }

  /** Train/eval mode for the projections (batch norm); follows the student's mode in training loops. */
  train(on = true): void {
    this.projections.train(on);
  }

  dispose(): void {
    this.projections.dispose();
  }
}

// ---------------------------------------------------------------------------------------------- layer-mapping helpers

/**
 * Module paths of `model` matching `pattern`, where `*` stands for one path segment (`layer3.*`, `encoder.layer.*`),
 * in registration order. An empty result lists the closest paths.
 */
export function expandPattern(model: Module | Teacher, pattern: string): string[] {
  const all = modelPaths(model);
  if (!pattern.includes('*')) return [pattern];
  // an output suffix (`encoder.layers.*.self_attn#1`) is kept on every expanded path
  const base = modulePath(pattern);
  const suffix = pattern.slice(base.length);
  const re = new RegExp(`^${base.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]+')}$`);
  const found = all.filter((p) => re.test(p));
  if (!found.length) throw new Error(`'${pattern}' matches no ${isTeacher(model) ? `value of the ${model.kind} teacher` : `module of ${model.constructor.name}`}. Closest: ${closest(base, all, 5).join(', ')}`);
  return found.map((p) => p + suffix);
}

export type LayerMap = 'uniform' | 'last_k' | 'explicit';

/**
 * Pairs M student layers with N teacher layers: 'uniform' (TinyBERT's g(m) = m·N/M, student layer m of 1..M learns
 * from teacher layer m·N/M), 'last_k' (the student's layers with the teacher's last M), 'explicit' (equal counts, in
 * order). Returns [teacher, student] path pairs.
 */
export function mapLayers(teacherLayers: string[], studentLayers: string[], how: LayerMap = 'uniform'): [string, string][] {
  const M = studentLayers.length, N = teacherLayers.length;
  if (M === 0 || N === 0) throw new Error('mapLayers: both sides need at least one layer');
  if (how === 'explicit') {
    if (M !== N) throw new Error(`mapLayers: 'explicit' needs as many teacher layers as student layers, got ${N} and ${M}`);
    return studentLayers.map((s, i) => [teacherLayers[i], s]);
  }
  if (M > N) throw new Error(`mapLayers: '${how}' needs at least as many teacher layers (${N}) as student layers (${M})`);
  if (how === 'last_k') return studentLayers.map((s, i) => [teacherLayers[N - M + i], s]);
  if (how === 'uniform') {
    if (N % M) throw new Error(`mapLayers: 'uniform' needs the teacher's layer count (${N}) to be a multiple of the student's (${M})`);
    return studentLayers.map((s, i) => [teacherLayers[((i + 1) * N) / M - 1], s]);
  }
  throw new Error(`mapLayers: unknown mapping '${how as string}' (expected uniform, last_k or explicit)`);
}

/**
 * Expands matches whose paths hold a `*` (one path segment) into one match per layer pair, paired by `map`
 * (default 'uniform'); other matches pass through unchanged.
 */
export function expandMatches(teacher: Module | Teacher, student: Module, specs: MatchSpec[]): MatchSpec[] {
  return specs.flatMap((spec, i) => {
    const t = typeof spec.teacher === 'string' ? spec.teacher : null, s = typeof spec.student === 'string' ? spec.student : null;
    if (!(t?.includes('*') || s?.includes('*'))) {
      const { map: _m, ...rest } = spec;
      return [rest];
    }
    if (!t || !s) throw new Error(`matches[${i}]: a '*' pattern needs a single path on each side`);
    let pairs: [string, string][];
    try {
      pairs = mapLayers(expandPattern(teacher, t), expandPattern(student, s), spec.map ?? 'uniform');
    } catch (e) {
      throw new Error(`matches[${i}]: ${(e as Error).message}`);
    }
    const { map: _m, ...rest } = spec;
    return pairs.map(([tp, sp]) => ({ ...rest, teacher: tp, student: sp }));
  });
}
