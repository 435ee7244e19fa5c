// The BERT-compression recipes over the Hugging Face BERT classes (src/models/hf/bert.ts), as stages of the one
// engine (runStages): each stage is roles, terms and data; checkpoints of one stage feed the next.
//
//   teacher       pretrain (masked LM, BertForMaskedLM) → finetune (BertForSequenceClassification on the task)
//   distilbert    student BertForMaskedLM initialised from teacher layers (layer map, DistilBERT's [0, 2, 4, 7, 9, 11]
//                 for 12 → 6), trained on the MLM corpus with soft-target KL (T) on the masked positions + MLM + cosine
//                 of the last hidden states over real tokens → fine-tuned on the task
//   tinybert      general distillation (embeddings, hidden states of layer m ← teacher layer g(m), attention scores) on
//                 the corpus → task distillation on augmented task data: intermediate layers, then the prediction layer
//   minilm        last-layer attention distributions + value relation (v1), or Q-Q / K-K / V-V relations (v2), on the
//                 corpus → fine-tuned on the task
//   theseus       successor layers replacing groups of the fine-tuned teacher's layers with a rising probability on the
//                 task → the successor fine-tuned alone
//   alone, init   baselines: the student fine-tuned on the task from random weights, and from the teacher's layers
//   mlm           baseline of the general stages: the student pretrained by masked LM alone on the same rows, then
//                 fine-tuned
//
// Students keep the teacher's width (no projections): the recipes differ in what they transfer, not in shapes.
import { Tensor, noGrad, ops } from '../torch';
import { type Module, loadWeights } from '../nn';
import { type TensorDataset, MlmBatches, TextBatches, trimPadding } from '../data';
import { BertForMaskedLM, BertForSequenceClassification, BertModel, HfConfig, type EncoderInputs, type HfConfigObject, type HfPreTrainedModel } from '../models/hf';
import { replaceModules, type ReplaceSchedule } from '../models/theseus';
import type { BatchSource, OptimizerSpec, LrScheduleSpec, RoleSpec, TermSpec } from './engine';
import { type StageSpec, type StageContext } from './stages';
import { registerBertRecipeLosses } from './bert-recipes-losses';
import { registerBuiltinLosses } from './features';

/** DistilBERT's choice of teacher layers for a 6-layer student of a 12-layer BERT. */
export const DISTILBERT_LAYER_MAP = [0, 2, 4, 7, 9, 11];

export interface BertSize {
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  intermediateSize: number;
  maxPositions: number;
}

/** A BERT config.json object for `size` (pad id 0, dropout 0.1, GELU, as bert-base). */
export function bertConfig(size: BertSize, extra: HfConfigObject = {}): HfConfigObject {
  return {
    model_type: 'bert', vocab_size: size.vocabSize, hidden_size: size.hiddenSize, num_hidden_layers: size.layers,
    num_attention_heads: size.heads, intermediate_size: size.intermediateSize, max_position_embeddings: size.maxPositions,
    type_vocab_size: 2, hidden_act: 'gelu', hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1,
    layer_norm_eps: 1e-12, initializer_range: 0.02, pad_token_id: 0, ...extra,
  };
}

/**
 * BertForMaskedLM (same class name, keys and config) that also takes packed input [B, 2, S]: the ids and, second, 1
 * where a prediction is made (MlmBatches with `packed`). It then runs the vocabulary projection at those positions only
 * and returns their logits [N, V] in row-major order, which is most of a small model's pretraining cost saved.
 */
export class PackedMaskedLM extends BertForMaskedLM {
  override forward(x: Tensor, inputs: EncoderInputs = {}): Tensor {
    if (x.ndim !== 3) return super.forward(x, inputs);
    if (x.shape[1] !== 2) throw new Error(`PackedMaskedLM: packed input must be [B, 2, S] (ids, prediction positions), got [${x.shape.join(', ')}]`);
    const h = this.bert.call(x.select(1, 0), inputs) as Tensor;
    const rows = ops.nonzero(x.select(1, 1).reshape([-1])).reshape([-1]);
    return this.cls.call(h.reshape([-1, h.shape[2]]).indexSelect(0, rows)) as Tensor;
  }
}

export type BertArchitecture = 'BertModel' | 'BertForMaskedLM' | 'BertForSequenceClassification';

/** A freshly initialised BERT of `config` whose padding ids (0) are masked when no attention mask is given. */
export function newBert(arch: 'BertModel', config: HfConfigObject): BertModel;
export function newBert(arch: 'BertForMaskedLM', config: HfConfigObject): BertForMaskedLM;
export function newBert(arch: 'BertForSequenceClassification', config: HfConfigObject): BertForSequenceClassification;
export function newBert(arch: BertArchitecture, config: HfConfigObject): HfPreTrainedModel;
export function newBert(arch: BertArchitecture, config: HfConfigObject): HfPreTrainedModel {
  const c = new HfConfig({ ...config, architectures: [arch] }, `${arch} config`);
  const m = arch === 'BertModel' ? new BertModel(c) : arch === 'BertForMaskedLM' ? new PackedMaskedLM(c) : new BertForSequenceClassification(c);
  m.initWeights();
  baseOf(m).maskPaddingIds = true;
  return m;
}

/** The BertModel inside a BERT with a head (or the model itself). */
export function baseOf(m: Module): BertModel {
  if (m instanceof BertModel) return m;
  if (m instanceof BertForMaskedLM || m instanceof BertForSequenceClassification) return m.bert;
  throw new Error(`expected a BertModel, BertForMaskedLM or BertForSequenceClassification, got ${m.constructor.name}`);
}

/**
 * Copies a teacher BERT's weights into a student BERT of the same width: the embeddings, student layer i ← teacher
 * layer `layerMap[i]`, and the parts both have of the pooler, the classifier and the MLM head (`cls.predictions`).
 * Returns the student's state_dict keys that were written. The keys differ only in the layer index (and the `bert.`
 * prefix where one of the two is a base model).
 */
export function initFromTeacher(student: Module, teacher: Module, layerMap: readonly number[]): string[] {
  const sb = baseOf(student), tb = baseOf(teacher);
  const ns = sb.encoder.layer.length, nt = tb.encoder.layer.length;
  if (layerMap.length !== ns) throw new Error(`initFromTeacher: the layer map [${layerMap}] has ${layerMap.length} entries for a student of ${ns} layers`);
  layerMap.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= nt) throw new Error(`initFromTeacher: layerMap[${i}] = ${t} is not a layer of the ${nt}-layer teacher`);
  });
  const tsd = teacher.stateDict(), ssd = student.stateDict();
  const sPrefix = sb === student ? '' : 'bert.', tPrefix = tb === teacher ? '' : 'bert.';
  const written: string[] = [];
  const copy = (sKey: string, tKey: string) => {
    const s = ssd[sKey], t = tsd[tKey];
    if (!t) return;
    if (s.shape.join() !== t.shape.join()) throw new Error(`initFromTeacher: student '${sKey}' [${s.shape}] and teacher '${tKey}' [${t.shape}] differ in shape (the recipes copy between equal widths)`);
    noGrad(() => s.copy_(t));
    written.push(sKey);
  };
  for (const key of Object.keys(ssd)) {
    const inner = sPrefix && key.startsWith(sPrefix) ? key.slice(sPrefix.length) : sPrefix ? null : key;
    if (inner === null) copy(key, key); // a head: classifier.*, cls.predictions.*
    else {
      const m = /^encoder\.layer\.(\d+)\.(.*)$/.exec(inner);
      copy(key, tPrefix + (m ? `encoder.layer.${layerMap[Number(m[1])]}.${m[2]}` : inner));
    }
  }
  return written;
}

/** Every other layer from the first, as DistilBERT's map does for 12 → 6 (4 → 2: [0, 2]). */
export function everyOtherLayer(teacherLayers: number, studentLayers: number): number[] {
  if (teacherLayers === 12 && studentLayers === 6) return [...DISTILBERT_LAYER_MAP];
  const step = teacherLayers / studentLayers;
  return Array.from({ length: studentLayers }, (_, i) => Math.floor(i * step));
}

/** TinyBERT's g(m) = m·N/M: student layer m (1-based) learns teacher layer g(m); returned 0-based. */
export function tinybertLayerMap(teacherLayers: number, studentLayers: number): number[] {
  if (teacherLayers % studentLayers) throw new Error(`tinybertLayerMap: ${teacherLayers} teacher layers do not split evenly into ${studentLayers}`);
  const k = teacherLayers / studentLayers;
  return Array.from({ length: studentLayers }, (_, m) => (m + 1) * k - 1);
}

/**
 * BERT-of-Theseus over the HF classifier: successor layer j stands for the predecessor's layers j·g … j·g + g − 1
 * (g = teacher layers / student layers), replaced with probability `replaceProb`; the embeddings, pooler and classifier
 * start from the predecessor's. The returned model's state_dict is the successor's own.
 */
export function theseusBert(predecessor: BertForSequenceClassification, successor: BertForSequenceClassification, replaceProb: ReplaceSchedule): BertForSequenceClassification {
  const m = predecessor.bert.encoder.layer.length, n = successor.bert.encoder.layer.length;
  if (m % n) throw new Error(`theseusBert: the predecessor's ${m} layers do not split evenly into the successor's ${n}`);
  const g = m / n;
  const groups = Array.from({ length: n }, (_, j) => ({
    successor: `bert.encoder.layer.${j}`,
    predecessors: Array.from({ length: g }, (_, k) => `bert.encoder.layer.${j * g + k}`),
  }));
  return replaceModules(predecessor, successor, { groups, shared: ['bert.embeddings', 'bert.pooler', 'classifier'], replaceProb });
}

// ------------------------------------------------------------------------------------------------------- stages

export interface BertRecipeData {
  /** Token-id rows of the unlabelled corpus (with [CLS] … [SEP]). */
  corpus: number[][];
  /** The rows the students' general distillation runs on (default: the corpus). */
  generalCorpus?: number[][];
  /** The task's training rows and labels. */
  train: { rows: number[][]; labels: number[] };
  /** Augmented task rows (TinyBERT's task distillation); default: the training rows. */
  augmented?: { rows: number[][]; labels: number[] };
  /** The task's evaluation set: ids padded to one length [N, S] and labels [N]. */
  test: TensorDataset;
  maskId: number;
  specialIds: number[];
}

export interface BertRecipeOptions {
  teacher: BertSize;
  /** The students' layer count (their width is the teacher's). */
  studentLayers: number;
  numLabels: number;
  data: BertRecipeData;
  seed: number;
  batchSize?: number;
  /** Epochs of each stage (defaults below). */
  epochs: { pretrain: number; finetune: number; general: number; task: number; augmented?: number };
  lr?: { pretrain?: number; finetune?: number; general?: number };
  /** DistilBERT: layer map (default everyOtherLayer), T (default 2), weights of soft CE / MLM / cosine (default 5 / 2 / 1). */
  distilbert?: { layerMap?: number[]; temperature?: number; alphaCe?: number; alphaMlm?: number; alphaCos?: number };
  /** Theseus: the replacement probability (default linear 0.5 → 1 over the stage). */
  theseus?: { replaceProb?: ReplaceSchedule };
  /** Relation heads of MiniLMv2 (default the teacher's heads). */
  minilmV2Heads?: number;
  /** Written beside each HF directory (the tokenizer's files). */
  files?: Record<string, unknown>;
  device?: string;
  /** No progress bars or log lines (tests). */
  quiet?: boolean;
}

export type BertRecipe = 'teacher' | 'alone' | 'init' | 'mlm' | 'distilbert' | 'tinybert' | 'minilm' | 'minilm-v2' | 'theseus';
export const BERT_RECIPES: BertRecipe[] = ['teacher', 'alone', 'init', 'mlm', 'distilbert', 'tinybert', 'minilm', 'minilm-v2', 'theseus'];

type EngineRun = Awaited<ReturnType<StageSpec['build']>>;

/**
 * The stages of the chosen recipes (the teacher's two stages come first whenever any recipe is chosen). Stage names:
 * `teacher-pretrain`, `teacher-finetune`, `<recipe>-general` / `<recipe>-task` ..., see the file header. Each stage's
 * stage's weights load into the Hugging Face classes (`exportBertStage` writes a model directory).
 */
export function bertRecipeStages(o: BertRecipeOptions, recipes: readonly BertRecipe[]): StageSpec[] {
  registerBuiltinLosses();
  registerBertRecipeLosses();
  for (const r of recipes) if (!BERT_RECIPES.includes(r)) throw new Error(`bertRecipeStages: unknown recipe '${r}' (known: ${BERT_RECIPES.join(', ')})`);
  const T = o.teacher, L = o.studentLayers;
  if (T.layers % L) throw new Error(`bertRecipeStages: the teacher's ${T.layers} layers do not split evenly into ${L} student layers`);
  const student: BertSize = { ...T, layers: L };
  const tcfg = bertConfig(T, { num_labels: o.numLabels }), scfg = bertConfig(student, { num_labels: o.numLabels });
  const bs = o.batchSize ?? 32;
  const adamw = (lr: number): OptimizerSpec => ({ kind: 'adamw', lr, weightDecay: 0.01, decayMatricesOnly: true });
  const lrs = { pretrain: o.lr?.pretrain ?? 5e-4, finetune: o.lr?.finetune ?? 1e-4, general: o.lr?.general ?? 5e-4 };
  const sched = (warmupSteps: number): LrScheduleSpec => ({ kind: 'cosine', per: 'step', warmupSteps, minLr: 0 });
  const d = o.data, dev = o.device;
  const mlmData = (salt: number, rows = d.corpus) =>
    new MlmBatches(rows, { batchSize: bs, seed: o.seed * 1000 + salt, maskId: d.maskId, vocabSize: T.vocabSize, specialIds: d.specialIds, device: dev, packed: true });
  const general = d.generalCorpus ?? d.corpus;
  const corpusData = (salt: number) => new TextBatches(general, general.map(() => 0), { batchSize: bs, seed: o.seed * 1000 + salt, device: dev });
  const taskData = (salt: number, rows = d.train) => new TextBatches(rows.rows, rows.labels, { batchSize: bs, seed: o.seed * 1000 + salt, device: dev });
  const test = { test: d.test, testTransforms: [trimPadding(0)] };
  const owned: Module[] = [];
  const keep = <M extends Module>(m: M): M => {
    owned.push(m);
    if (dev && dev !== 'cpu') m.to(dev);
    return m;
  };
  const release = () => { for (const m of owned.splice(0)) m.dispose(); };
  const trained = (name: string, model: Module, lr: number, warm: number): RoleSpec => ({ name, model, optimizer: adamw(lr), schedule: sched(warm), clip: 1 });
  const frozen = (name: string, model: Module): RoleSpec => ({ name, model, cache: false });
  const loaded = <M extends Module>(m: M, file: string): M => {
    loadWeights(m, file);
    return m;
  };
  /** A classifier whose base model's weights come from a file of a base or MLM model (the head stays initialised). */
  const classifierFrom = (cfg: HfConfigObject, file: string, arch: 'BertModel' | 'BertForMaskedLM'): BertForSequenceClassification => {
    const src = newBert(arch, cfg);
    try {
      loadWeights(src, file);
      const c = newBert('BertForSequenceClassification', cfg);
      initFromTeacher(c, src, Array.from({ length: baseOf(c).encoder.layer.length }, (_, i) => i));
      return c;
    } finally {
      src.dispose();
    }
  };
  const ce = (role: string): TermSpec => ({ loss: 'ce', student: `${role}.logits`, teacher: 'labels', name: 'ce' });
  const quiet = o.quiet ? { progress: false, log: () => {} } : {};
  const stage = (name: string, build: (ctx: StageContext) => EngineRun): StageSpec => ({ name, build: (ctx) => ({ ...build(ctx), ...quiet }), release });
  const steps = (src: BatchSource, epochs: number) => src.length * epochs;
  const warm = (src: BatchSource, epochs: number) => Math.max(1, Math.round(0.06 * steps(src, epochs)));
  /** Fine-tuning a student classifier on the task (labels only). */
  const fineTune = (name: string, model: (ctx: StageContext) => BertForSequenceClassification, salt: number): StageSpec =>
    stage(name, (ctx) => {
      const train = taskData(salt);
      return { roles: [trained('student', keep(model(ctx)), lrs.finetune, warm(train, o.epochs.task))], terms: [ce('student')], train, ...test, epochs: o.epochs.task, seed: o.seed };
    });
  const teacherFile = (ctx: StageContext) => ctx.checkpoint('teacher-finetune');
  const pretrainedFile = (ctx: StageContext) => ctx.checkpoint('teacher-pretrain', undefined, 'last');
  /** The pretrained teacher's encoder (every layer of its masked-LM checkpoint), kept for the stage. */
  const pretrainedEncoder = (ctx: StageContext) => {
    const teacher = keep(newBert('BertModel', tcfg));
    const mlm = loaded(newBert('BertForMaskedLM', tcfg), pretrainedFile(ctx));
    initFromTeacher(teacher, mlm, Array.from({ length: T.layers }, (_, i) => i));
    mlm.dispose();
    return teacher;
  };
  const tLast = `encoder.layer.${T.layers - 1}`, sLast = `encoder.layer.${L - 1}`;

  const stages: StageSpec[] = [];
  if (recipes.length) {
    stages.push(stage('teacher-pretrain', () => {
      const train = mlmData(1);
      return {
        roles: [{ ...trained('teacher', keep(newBert('BertForMaskedLM', tcfg)), lrs.pretrain, warm(train, o.epochs.pretrain)) }],
        terms: [{ loss: 'mlm_ce', student: 'teacher.logits', teacher: 'labels', name: 'mlm' }],
        train, epochs: o.epochs.pretrain, seed: o.seed, checkpointEverySteps: 200,
      };
    }));
    stages.push(stage('teacher-finetune', (ctx) => {
      const train = taskData(2);
      const m = keep(classifierFrom(tcfg, pretrainedFile(ctx), 'BertForMaskedLM'));
      return { roles: [trained('teacher', m, lrs.finetune, warm(train, o.epochs.finetune))], terms: [ce('teacher')], train, ...test, epochs: o.epochs.finetune, seed: o.seed };
    }));
  }
  const want = new Set(recipes);
  if (want.has('alone')) stages.push(fineTune('alone', () => newBert('BertForSequenceClassification', scfg), 11));
  const teacherLayers = (ctx: StageContext, map: number[]) => {
    const c = newBert('BertForSequenceClassification', scfg), t = loaded(newBert('BertForSequenceClassification', tcfg), teacherFile(ctx));
    initFromTeacher(c, t, map);
    t.dispose();
    return c;
  };
  if (want.has('init')) stages.push(fineTune('init', (ctx) => teacherLayers(ctx, o.distilbert?.layerMap ?? everyOtherLayer(T.layers, L)), 12));

  if (want.has('mlm')) {
    stages.push(stage('mlm-general', () => {
      const train = mlmData(61, general);
      return {
        roles: [trained('student', keep(newBert('BertForMaskedLM', scfg)), lrs.general, warm(train, o.epochs.general))],
        terms: [{ loss: 'mlm_ce', student: 'student.logits', teacher: 'labels', name: 'mlm' }],
        train, epochs: o.epochs.general, seed: o.seed, checkpointEverySteps: 200,
      };
    }));
    stages.push(fineTune('mlm-task', (ctx) => classifierFrom(scfg, ctx.checkpoint('mlm-general', undefined, 'last'), 'BertForMaskedLM'), 62));
  }
  if (want.has('distilbert')) {
    const db = o.distilbert ?? {};
    const map = db.layerMap ?? everyOtherLayer(T.layers, L);
    stages.push(stage('distilbert-general', (ctx) => {
      const train = mlmData(21, general);
      const teacher = keep(loaded(newBert('BertForMaskedLM', tcfg), pretrainedFile(ctx)));
      const s = keep(newBert('BertForMaskedLM', scfg));
      initFromTeacher(s, teacher, map);
      return {
        roles: [{ ...trained('student', s, lrs.general, warm(train, o.epochs.general)) }, frozen('teacher', teacher)],
        terms: [
          { loss: 'mlm_kd', student: 'student.logits', teacher: 'teacher.logits', weight: db.alphaCe ?? 5, options: { temperature: db.temperature ?? 2 }, name: 'soft' },
          { loss: 'mlm_ce', student: 'student.logits', teacher: 'labels', weight: db.alphaMlm ?? 2, name: 'mlm' },
          { loss: 'masked_cosine', student: `student.bert.${sLast}`, teacher: `teacher.bert.${tLast}`, weight: db.alphaCos ?? 1, name: 'cos', proj: 'none' },
        ],
        train, epochs: o.epochs.general, seed: o.seed, checkpointEverySteps: 200,
      };
    }));
    stages.push(fineTune('distilbert-task', (ctx) => classifierFrom(scfg, ctx.checkpoint('distilbert-general', undefined, 'last'), 'BertForMaskedLM'), 22));
  }

  if (want.has('tinybert')) {
    const g = tinybertLayerMap(T.layers, L);
    const inter = (sRole: string, tRole: string, sPre: string, tPre: string): TermSpec[] => [
      { loss: 'masked_hidden_mse', student: `${sRole}.${sPre}embeddings`, teacher: `${tRole}.${tPre}embeddings`, name: 'emb', proj: 'none' },
      ...g.flatMap((t, m): TermSpec[] => [
        { loss: 'masked_hidden_mse', student: `${sRole}.${sPre}encoder.layer.${m}`, teacher: `${tRole}.${tPre}encoder.layer.${t}`, name: `hid${m}`, proj: 'none' },
        {
          loss: 'tinybert_attention_mse', name: `att${m}`, options: { heads: T.heads },
          student: [`${sRole}.${sPre}encoder.layer.${m}.attention.self.query`, `${sRole}.${sPre}encoder.layer.${m}.attention.self.key`],
          teacher: [`${tRole}.${tPre}encoder.layer.${t}.attention.self.query`, `${tRole}.${tPre}encoder.layer.${t}.attention.self.key`],
        },
      ]),
    ];
    stages.push(stage('tinybert-general', (ctx) => {
      const train = corpusData(31);
      const teacher = pretrainedEncoder(ctx);
      return {
        roles: [{ ...trained('student', keep(newBert('BertModel', scfg)), lrs.general, warm(train, o.epochs.general)) }, frozen('teacher', teacher)],
        terms: inter('student', 'teacher', '', ''), train, epochs: o.epochs.general, seed: o.seed, checkpointEverySteps: 200,
      };
    }));
    const aug = d.augmented ?? d.train;
    const augEpochs = o.epochs.augmented ?? o.epochs.task;
    stages.push(stage('tinybert-task-inter', (ctx) => {
      const train = taskData(32, aug);
      const teacher = keep(loaded(newBert('BertForSequenceClassification', tcfg), teacherFile(ctx)));
      const s = keep(classifierFrom(scfg, ctx.checkpoint('tinybert-general', undefined, 'last'), 'BertModel'));
      return {
        roles: [trained('student', s, lrs.general, warm(train, augEpochs)), frozen('teacher', teacher)],
        terms: inter('student', 'teacher', 'bert.', 'bert.'), train, ...test, epochs: augEpochs, seed: o.seed,
      };
    }));
    stages.push(stage('tinybert-task-pred', (ctx) => {
      const train = taskData(33, aug);
      const teacher = keep(loaded(newBert('BertForSequenceClassification', tcfg), teacherFile(ctx)));
      const s = keep(loaded(newBert('BertForSequenceClassification', scfg), ctx.checkpoint('tinybert-task-inter', undefined, 'last')));
      return {
        roles: [trained('student', s, lrs.finetune, warm(train, augEpochs)), frozen('teacher', teacher)],
        terms: [{ loss: 'soft_ce', student: 'student.logits', teacher: 'teacher.logits', options: { temperature: 1 }, name: 'pred' }],
        train, ...test, epochs: augEpochs, seed: o.seed,
      };
    }));
  }

  for (const v of ['minilm', 'minilm-v2'] as const) {
    if (!want.has(v)) continue;
    const rh = o.minilmV2Heads ?? T.heads;
    const at = (role: string, layer: string, part: string) => `${role}.${layer}.attention.self${part}`;
    const terms: TermSpec[] = v === 'minilm'
      ? [
          { loss: 'masked_attention_kl', student: at('student', sLast, '#1'), teacher: at('teacher', tLast, '#1'), name: 'att', proj: 'none' },
          { loss: 'masked_relation_kl', student: at('student', sLast, '.value'), teacher: at('teacher', tLast, '.value'), options: { heads: T.heads }, name: 'vr' },
        ]
      : (['query', 'key', 'value'] as const).map((p) => ({ loss: 'masked_relation_kl', student: at('student', sLast, `.${p}`), teacher: at('teacher', tLast, `.${p}`), options: { heads: rh }, name: `${p[0]}${p[0]}` }));
    stages.push(stage(`${v}-general`, (ctx) => {
      const train = corpusData(41);
      const teacher = pretrainedEncoder(ctx);
      return {
        roles: [{ ...trained('student', keep(newBert('BertModel', scfg)), lrs.general, warm(train, o.epochs.general)) }, frozen('teacher', teacher)],
        terms, train, epochs: o.epochs.general, seed: o.seed, checkpointEverySteps: 200,
      };
    }));
    stages.push(fineTune(`${v}-task`, (ctx) => classifierFrom(scfg, ctx.checkpoint(`${v}-general`, undefined, 'last'), 'BertModel'), 42));
  }

  if (want.has('theseus')) {
    stages.push(stage('theseus-replace', (ctx) => {
      const train = taskData(51);
      const pred = loaded(newBert('BertForSequenceClassification', tcfg), teacherFile(ctx));
      const m = keep(theseusBert(pred, newBert('BertForSequenceClassification', scfg), o.theseus?.replaceProb ?? { from: 0.5, to: 1 }));
      return { roles: [trained('student', m, lrs.finetune, warm(train, o.epochs.task))], terms: [ce('student')], train, ...test, epochs: o.epochs.task, seed: o.seed };
    }));
    stages.push(fineTune('theseus-task', (ctx) => loaded(newBert('BertForSequenceClassification', scfg), ctx.checkpoint('theseus-replace', undefined, 'last')), 52));
  }
  return stages;
}
