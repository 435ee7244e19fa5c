// Cross-modal distillation (Gupta et al. 2016, "Cross Modal Distillation for Supervision Transfer"; Aytar et al.
// 2016, SoundNet): a teacher trained on one modality gives soft targets on paired samples of another, and a student
// on the other modality learns them without ever seeing a label.
//
// The setting here: spoken digits (src/data/spoken-digits.ts) paired with MNIST images of the same digit. Each
// training utterance gets one MNIST training image of its digit (seeded); the batches hold the audio as `x`, the
// images as `batch.image`, and no labels (`y` is -1 everywhere, so a term on `labels` fails instead of reading one).
// The engine's roles: the frozen image teacher reads `batch.image` (RoleSpec.input), the audio student reads `x`, and
// one term, `kl` between their logits, trains the student. The pairing itself uses the digits (that is what makes the
// two modalities paired data: the same digit, seen and heard); nothing else of the student's training does.
//
// `crossModalDigits` runs it as stages of the one engine: the teacher trained on MNIST, the student from the teacher,
// and baselines on the same audio: the student trained on the true labels and, optionally, on the teacher's argmax
// (hard pseudo-labels). The students are evaluated on the held-out voices with their true labels.
import { Tensor, manualSeed, noGrad, ops, tensor, tidy } from '../torch';
import { F, loadWeights } from '../nn';
import { DataLoader, MNIST_STATS, Rng, loadMnist, mixSeed, normalize } from '../data';
import { type SpokenDigits, type SpokenDigitsOptions, loadSpokenDigits } from '../data/spoken-digits';
import { AudioCnn, LeNet5 } from '../models';
import { type BatchSource, type EngineBatch, type LrScheduleSpec, type OptimizerSpec, type TermSpec, type TrainSummary } from './engine';
import { registerLoss, registerBuiltinLosses } from './features';
import { runStages, type StageSpec } from './stages';

/**
 * For each item of `a` (its class in `aLabels`), a row of `bLabels` of the same class, drawn with a seeded generator:
 * each class's rows in a random order, without repeats until a class runs out (then a fresh order). Throws naming the
 * class when `b` has no row of a class that `a` needs.
 */
export function pairByClass(aLabels: ArrayLike<number>, bLabels: ArrayLike<number>, seed: number): Int32Array {
  const pools = new Map<number, number[]>();
  for (let i = 0; i < bLabels.length; i++) {
    const c = Number(bLabels[i]);
    if (!pools.has(c)) pools.set(c, []);
    pools.get(c)!.push(i);
  }
  const order = new Map<number, { rows: number[]; next: number; rng: Rng }>();
  const out = new Int32Array(aLabels.length);
  for (let i = 0; i < aLabels.length; i++) {
    const c = Number(aLabels[i]);
    const pool = pools.get(c);
    if (!pool) throw new Error(`pairByClass: item ${i} has class ${c}, but the other side has no row of class ${c} (classes there: ${[...pools.keys()].sort((x, y) => x - y).join(', ')})`);
    let o = order.get(c);
    if (!o) order.set(c, (o = { rows: [], next: 0, rng: new Rng(mixSeed(seed, c)) }));
    if (o.next === o.rows.length) {
      o.rows = Array.from(o.rng.permutation(pool.length), (k) => pool[k]);
      o.next = 0;
    }
    out[i] = o.rows[o.next++];
  }
  return out;
}

export interface CrossModalBatchesOptions {
  batchSize: number;
  /** The order of the samples in each epoch (shuffled per epoch unless shuffle is false). */
  seed: number;
  shuffle?: boolean;
  /** The batch tensor's name for the paired rows (default `image`: tapped as `batch.image`). */
  tap?: string;
}

/**
 * Batches of paired samples without labels: `x` is rows of `inputs` (the student's modality), `taps[tap]` the same
 * rows of `paired` (the teacher's), and `y` is -1 in every row: no labels reach the engine, and a term on `labels`
 * fails. Both tensors are float rows the models take as they are (normalised beforehand); they stay the caller's and
 * must outlive the batches.
 */
export class CrossModalBatches implements BatchSource {
  readonly length: number;
  readonly inputs: Tensor;
  readonly paired: Tensor;
  private order: Int32Array;
  constructor(inputs: Tensor, paired: Tensor, readonly o: CrossModalBatchesOptions) {
    if (inputs.shape[0] !== paired.shape[0]) throw new Error(`CrossModalBatches: ${inputs.shape[0]} inputs [${inputs.shape}] but ${paired.shape[0]} paired rows [${paired.shape}]`);
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`CrossModalBatches: batchSize must be a positive integer, got ${o.batchSize}`);
    if (inputs.shape[0] === 0) throw new Error('CrossModalBatches: no samples');
    this.inputs = inputs;
    this.paired = paired;
    this.length = Math.ceil(inputs.shape[0] / o.batchSize);
    this.order = Int32Array.from({ length: inputs.shape[0] }, (_, i) => i);
  }
  setEpoch(epoch: number): void {
    const n = this.inputs.shape[0];
    this.order = this.o.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : new Rng(mixSeed(this.o.seed, epoch)).permutation(n);
  }
  batchAt(i: number): EngineBatch {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new Error(`CrossModalBatches: batch ${i} out of range [0, ${this.length})`);
    const rows = this.order.subarray(i * this.o.batchSize, Math.min(this.order.length, (i + 1) * this.o.batchSize));
    const [x, image, y] = tidy(() =>
      noGrad(() => {
        const idx = tensor(rows, { dtype: 'int64' });
        return [this.inputs.indexSelect(0, idx), this.paired.indexSelect(0, idx), ops.full([rows.length], -1, { dtype: 'int64' })];
      }),
    );
    return { x, y, taps: { [this.o.tap ?? 'image']: image }, dispose: () => { x.dispose(); y.dispose(); image.dispose(); } };
  }
}

let lossesRegistered = false;
/** Registers `teacher_argmax_ce`: cross-entropy of the student's logits against the teacher's top class (hard pseudo-labels). */
export function registerCrossModalLosses(): void {
  if (lossesRegistered) return;
  registerBuiltinLosses();
  registerLoss('teacher_argmax_ce', {
    needs: 'batch', doc: "cross-entropy against the teacher's top class (hard pseudo-labels; teacher side: the teacher's logits)",
    fn: (s, t) => F.crossEntropy(s[0], noGrad(() => t[0].argmax(1))),
  });
  lossesRegistered = true;
}

/** The terms that train a student from a teacher on paired data: `kl` (soft targets at `temperature`) or `teacher_argmax_ce`. */
export function crossModalTerms(kind: 'soft' | 'hard', temperature = 1, roles = { student: 'student', teacher: 'teacher' }): TermSpec[] {
  return kind === 'soft'
    ? [{ loss: 'kl', student: `${roles.student}.logits`, teacher: `${roles.teacher}.logits`, options: { temperature }, name: 'soft' }]
    : [{ loss: 'teacher_argmax_ce', student: `${roles.student}.logits`, teacher: `${roles.teacher}.logits`, name: 'pseudo' }];
}

export interface CrossModalDigitsOptions {
  outDir: string;
  /** The run's seed: the pairing, data order, initialisations (default 0). The corpus has its own seed (corpus.seed). */
  seed?: number;
  /** The spoken-digit corpus, or the options to load one (default: loadSpokenDigits()). */
  corpus?: SpokenDigits | SpokenDigitsOptions;
  /** The image teacher: LeNet-5 trained on MNIST for `epochs` (default 1) on the first `limit` images (default all), or read from `checkpoint`. */
  teacher?: { epochs?: number; limit?: number; testLimit?: number; checkpoint?: string; optimizer?: OptimizerSpec };
  /** The audio students: epochs (default 20), batch size (64), optimizer (Adam, lr 1e-3), audio-cnn width (8). */
  epochs?: number;
  batchSize?: number;
  optimizer?: OptimizerSpec;
  /** The students' learning-rate schedule (default cosine, per epoch). */
  schedule?: LrScheduleSpec;
  width?: number;
  /** Soft-target temperature (default 1: better than 4 in the measurements of docs/cross-modal.md). */
  temperature?: number;
  /** Which students to train: `teacher` (soft targets, no labels), `labels` (true labels), `pseudo` (teacher's argmax). Default teacher and labels. */
  students?: ('teacher' | 'labels' | 'pseudo')[];
  resume?: boolean;
  force?: boolean;
  log?: (line: string) => void;
  progress?: boolean;
}

export interface CrossModalDigitsResult {
  /** The teacher stage's summary (null when the teacher came from `teacher.checkpoint`). */
  teacher: TrainSummary | null;
  /** Each student's summary (test accuracy on the held-out voices), by kind. */
  students: Partial<Record<'teacher' | 'labels' | 'pseudo', TrainSummary>>;
  /** How often the teacher's top class on the paired images is the digit (the soft targets' quality). */
  pairedTeacherAcc: number;
  corpus: { train: number; test: number; voices: { train: string[]; test: string[] }; mels: number; frames: number; cacheFile: string | null };
}

const STAGE = { teacher: 'student-teacher', labels: 'student-labels', pseudo: 'student-pseudo' } as const;

/** The images of `rows` of an MNIST set, normalised with MNIST's statistics: float32 [n, 1, 28, 28]. */
function normalisedImages(images: Tensor, rows: Int32Array): Tensor {
  return tidy(() => noGrad(() => images.indexSelect(0, tensor(rows, { dtype: 'int64' })).float().div(255).sub(MNIST_STATS.mean[0]).div(MNIST_STATS.std[0])));
}

/** Trains the image teacher, then the audio students (from the teacher without labels; with labels; ...), as stages. */
export async function crossModalDigits(o: CrossModalDigitsOptions): Promise<CrossModalDigitsResult> {
  const seed = o.seed ?? 0;
  const log = o.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const kinds = o.students ?? ['teacher', 'labels'];
  for (const k of kinds) if (!(k in STAGE)) throw new Error(`crossModalDigits: unknown student '${k}' (teacher, labels, pseudo)`);
  if (kinds.includes('pseudo')) registerCrossModalLosses();
  const own = !(o.corpus && 'train' in o.corpus);
  const corpus = own ? loadSpokenDigits({ log, ...(o.corpus as SpokenDigitsOptions | undefined) }) : (o.corpus as SpokenDigits);
  const mnistTrain = loadMnist({ split: 'train', limit: o.teacher?.limit });
  const mnistTest = loadMnist({ split: 'test', limit: o.teacher?.testLimit });
  const norm = [normalize([...MNIST_STATS.mean], [...MNIST_STATS.std])];
  const made: { dispose(): void }[] = [];
  const batchSize = o.batchSize ?? 64;
  const optimizer = o.optimizer ?? { kind: 'adam', lr: 1e-3 };
  const epochs = o.epochs ?? 20;
  const schedule = o.schedule ?? { kind: 'cosine' };
  // the pairing: one MNIST training image of the same digit per training utterance
  const audioDigits = corpus.trainUtterances.map((u) => u.digit);
  const imageLabels = mnistTrain.labels.toArray();
  const pairs = pairByClass(audioDigits, imageLabels, mixSeed(seed, 0x70616972));
  const student = () => {
    const m = new AudioCnn({ width: o.width });
    made.push(m);
    return m;
  };
  const teacherFrom = (file: string) => {
    const t = new LeNet5();
    loadWeights(t, file);
    made.push(t);
    return t;
  };
  let pairedTeacherAcc = NaN;
  const stages: StageSpec[] = [
    ...(o.teacher?.checkpoint ? [] : [{
      name: 'teacher',
      build: () => {
        manualSeed(seed);
        const t = new LeNet5();
        made.push(t);
        return {
          roles: [{ name: 'teacher', model: t, optimizer: o.teacher?.optimizer ?? { kind: 'sgd', lr: 0.01, momentum: 0.9 } }],
          terms: [{ loss: 'ce', student: 'teacher.logits', teacher: 'labels' }],
          train: new DataLoader(mnistTrain, { batchSize: 64, shuffle: true, seed, transforms: norm }),
          test: mnistTest, testTransforms: norm, epochs: o.teacher?.epochs ?? 1, seed, log, progress: o.progress,
        };
      },
    }]),
    ...kinds.map((kind): StageSpec => ({
      name: STAGE[kind],
      build: (ctx) => {
        // every student of a seed starts from the same weights
        manualSeed(mixSeed(seed, 0x73747564));
        const s = student();
        if (kind === 'labels')
          return {
            roles: [{ name: 'student', model: s, optimizer, schedule }],
            terms: [{ loss: 'ce', student: 'student.logits', teacher: 'labels' }],
            train: new DataLoader(corpus.train, { batchSize, shuffle: true, seed }),
            test: corpus.test, epochs, seed, log, progress: o.progress,
          };
        const teacher = teacherFrom(o.teacher?.checkpoint ?? ctx.checkpoint('teacher'));
        const images = normalisedImages(mnistTrain.images, pairs);
        if (Number.isNaN(pairedTeacherAcc))
          pairedTeacherAcc = tidy(() => noGrad(() => (100 * teacher.call(images).argmax(1).eq(tensor(Int32Array.from(audioDigits), { dtype: 'int64' })).sum().item()) / audioDigits.length));
        made.push(images);
        const batches = new CrossModalBatches(corpus.train.tensors[0], images, { batchSize, seed });
        return {
          roles: [
            { name: 'teacher', model: teacher, input: 'batch.image' },
            { name: 'student', model: s, optimizer, schedule },
          ],
          terms: crossModalTerms(kind === 'teacher' ? 'soft' : 'hard', o.temperature ?? 1),
          train: batches, test: corpus.test, epochs, seed, log, progress: o.progress,
        };
      },
    })),
  ];
  try {
    const r = await runStages({ outDir: o.outDir, stages, resume: o.resume, force: o.force, log });
    const by = new Map(r.stages.map((s) => [s.name, s.summary]));
    return {
      teacher: by.get('teacher') ?? null,
      students: Object.fromEntries(kinds.map((k) => [k, by.get(STAGE[k])!])),
      pairedTeacherAcc,
      corpus: {
        train: corpus.train.length, test: corpus.test.length, voices: corpus.voices, mels: corpus.spec.mels, frames: corpus.spec.frames, cacheFile: corpus.cacheFile,
      },
    };
  } finally {
    for (const m of made) m.dispose();
    mnistTrain.dispose();
    mnistTest.dispose();
    if (own) corpus.dispose();
  }
}

