// The BERT-compression recipes as a configuration: a `bert:` section names the task, the unlabelled corpus, the
// tokenizer, the teacher's size, the students' layers and the recipes; `tsdistill distill` (or `compare`) runs their
// stages (src/distill/bert-recipes.ts: a teacher pretrained by masked LM and fine-tuned, then every recipe's student)
// and prints one row per recipe; each final model is written as a Hugging Face directory with the tokenizer.
// `tsdistill compare --seeds 0,1,2` runs it per seed and prints mean ± std per recipe.
//
//   name: sst2-bert
//   seed: 0
//   bert:
//     task: { dataset: sst2, limit: 12000 }         # sst2 | ag-news (../shared/data), or { train: a.tsv, test: b.tsv }
//     corpus: { sources: [sst2, ag-news], limit: 30000, generalLimit: 12000 }   # also 'task', or .txt / .tsv / .jsonl files
//     tokenizer: { vocabSize: 6000, maxLength: 48 }
//     teacher: { hidden: 128, layers: 4, heads: 4 }
//     studentLayers: 2
//     recipes: [teacher, alone, init, mlm, distilbert, tinybert, minilm, minilm-v2, theseus]
//     augment: { perSentence: 2, limit: 2000 }
//     epochs: { pretrain: 1, finetune: 2, general: 1, task: 1 }
//     lr: { pretrain: 5e-4, finetune: 3e-4, general: 5e-4 }
//   training: { threads: 1 }
//   output: { dir: runs/sst2-bert }
//
// Every stage is a run directory under <output.dir>/seed<seed>/<stage>: running again skips finished stages and
// `--resume` continues the one that was running. The tokenizer is built once per output directory (<output.dir>/tokenizer).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { checkDevice, setNumThreads, tensor, writeFileAtomic } from '../torch';
import { loadWeights } from '../nn';
import { Rng, TensorDataset, type TextExample, buildWordPiece, loadAgNews, loadSst2, ownDataset, padRows, readJsonl, readTsv, sharedDataDir } from '../data';
import { HfTokenizer, saveHfModel } from '../models/hf';
import { BERT_RECIPES, type BertRecipe, bertConfig, bertRecipeStages, newBert, runStages } from '../distill';
import { augmentTask } from '../distill/bert-recipes-augment';
import { applyOverrides, describe, readConfigMapping } from './config';
import { mean, std } from './stats';

const SHARED = ['sst2', 'ag-news'] as const;
const posInt = z.number().int().positive();

export const bertConfigSchema = z
  .object({
    name: z.string().default('bert-recipes'),
    seed: z.number().int().min(0).default(0),
    bert: z
      .object({
        /** The labelled task: a shared data set (sst2: train+dev to train, the 872 GLUE dev sentences to test; ag-news), or your own .tsv / .jsonl files. */
        task: z
          .object({
            dataset: z.enum(SHARED).optional(),
            train: z.string().min(1).optional(),
            test: z.string().min(1).optional(),
            textColumn: z.string().min(1).optional(),
            labelColumn: z.string().min(1).optional(),
            /** Training rows kept (a fixed random subset; 0 = all). */
            limit: z.number().int().min(0).default(0),
          })
          .strict()
          .superRefine((t, ctx) => {
            if (t.dataset !== undefined && (t.train !== undefined || t.test !== undefined)) ctx.addIssue({ code: 'custom', path: ['train'], message: 'give bert.task.dataset or your own bert.task.train and bert.task.test, not both' });
            else if (t.dataset === undefined && (t.train === undefined || t.test === undefined)) ctx.addIssue({ code: 'custom', message: 'no task data: give bert.task.dataset (sst2, ag-news) or bert.task.train and bert.task.test (.tsv or .jsonl with text and label)' });
          }),
        /** Unlabelled text for masked-LM pretraining and general distillation: 'task' (its training texts), sst2, ag-news, or files (.txt one text a line, .tsv / .jsonl with a text column). Never the task's test texts. */
        corpus: z
          .object({
            sources: z.array(z.string().min(1)).min(1).default(['task']),
            /** Rows kept (a fixed random subset; 0 = all). */
            limit: z.number().int().min(0).default(0),
            /** Rows of it the students' general stages run on (0 = the whole corpus). */
            generalLimit: z.number().int().min(0).default(0),
          })
          .strict()
          .default({ sources: ['task'], limit: 0, generalLimit: 0 }),
        tokenizer: z.object({ vocabSize: z.number().int().min(16).default(8000), maxLength: z.number().int().min(8).default(64) }).strict().default({ vocabSize: 8000, maxLength: 64 }),
        teacher: z.object({ hidden: posInt.default(128), layers: posInt.default(4), heads: posInt.default(4), intermediate: posInt.optional() }).strict().default({ hidden: 128, layers: 4, heads: 4 }),
        studentLayers: posInt.default(2),
        recipes: z.array(z.enum(BERT_RECIPES as [BertRecipe, ...BertRecipe[]])).min(1).default([...BERT_RECIPES]),
        /** TinyBERT's task augmentation: rewrites per sentence, of how many training sentences. */
        augment: z.object({ perSentence: posInt.default(2), limit: z.number().int().min(0).default(8000) }).strict().default({ perSentence: 2, limit: 8000 }),
        epochs: z
          .object({ pretrain: posInt.default(1), finetune: posInt.default(1), general: posInt.default(1), task: posInt.default(1), augmented: posInt.optional() })
          .strict()
          .default({ pretrain: 1, finetune: 1, general: 1, task: 1 }),
        lr: z
          .object({ pretrain: z.number().positive().default(5e-4), finetune: z.number().positive().default(1e-4), general: z.number().positive().default(5e-4) })
          .strict()
          .default({ pretrain: 5e-4, finetune: 1e-4, general: 5e-4 }),
        batchSize: posInt.default(32),
        distilbert: z
          .object({ layerMap: z.array(z.number().int().min(0)).min(1).optional(), temperature: z.number().positive().optional(), alphaCe: z.number().min(0).optional(), alphaMlm: z.number().min(0).optional(), alphaCos: z.number().min(0).optional() })
          .strict()
          .optional(),
        minilmV2Heads: posInt.optional(),
      })
      .strict(),
    training: z
      .object({ threads: posInt.optional(), device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, "expected 'cpu', 'cuda' or 'cuda:N'").default('cpu') })
      .strict()
      .default({ device: 'cpu' }),
    output: z.object({ dir: z.string().default('runs/bert') }).strict().default({ dir: 'runs/bert' }),
  })
  .strict();

export type BertRunConfig = z.infer<typeof bertConfigSchema>;

export function isBertConfig(raw: Record<string, unknown>): boolean {
  return 'bert' in raw;
}

/** Validates a BERT-recipes configuration (errors name the key and the file); file paths become absolute and must exist. */
export function validateBertConfig(raw: unknown, source = 'config'): BertRunConfig {
  const r = bertConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source, bertConfigSchema));
  const cfg = r.data;
  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  const b = cfg.bert;
  const file = (key: string, f: string) => {
    const abs = path.resolve(baseDir, f);
    if (!fs.existsSync(abs)) throw new Error(`${source}: ${key}: file not found: ${abs}`);
    return abs;
  };
  if (b.task.train) b.task.train = file('bert.task.train', b.task.train);
  if (b.task.test) b.task.test = file('bert.task.test', b.task.test);
  b.corpus.sources = b.corpus.sources.map((s, i) => (s === 'task' || (SHARED as readonly string[]).includes(s) ? s : file(`bert.corpus.sources[${i}]`, s)));
  for (const [i, s] of b.corpus.sources.entries())
    if (s !== 'task' && !(SHARED as readonly string[]).includes(s) && !/\.(txt|tsv|jsonl)$/i.test(s)) throw new Error(`${source}: bert.corpus.sources[${i}]: expected 'task', sst2, ag-news or a .txt, .tsv or .jsonl file, got ${s}`);
  const needShared = b.task.dataset !== undefined || b.corpus.sources.some((s) => (SHARED as readonly string[]).includes(s));
  if (needShared && !sharedDataDir()) throw new Error(`${source}: bert: sst2 and ag-news are read from ../shared/data beside the project (or TSDISTILL_SHARED_DATA), which is not there`);
  const T = b.teacher;
  if (T.hidden % T.heads) throw new Error(`${source}: bert.teacher: hidden ${T.hidden} is not divisible by heads ${T.heads}`);
  if (T.layers % b.studentLayers) throw new Error(`${source}: bert.studentLayers: the teacher's ${T.layers} layers do not split evenly into ${b.studentLayers}`);
  if (b.distilbert?.layerMap) {
    const m = b.distilbert.layerMap;
    if (m.length !== b.studentLayers || m.some((l) => l >= T.layers)) throw new Error(`${source}: bert.distilbert.layerMap: expected ${b.studentLayers} teacher layers below ${T.layers}, got [${m.join(', ')}]`);
  }
  checkDevice(cfg.training.device, `${source}: training.device`);
  return cfg;
}

export function loadBertConfig(file: string, sets: string[] = []): BertRunConfig {
  const cfg = validateBertConfig(applyOverrides(readConfigMapping(file), sets), file);
  if (cfg.training.threads) setNumThreads(cfg.training.threads);
  return cfg;
}

/** A fixed random subset (the same for every seed, so that every run sees the same data), in the original order. */
const subset = <T>(a: T[], n: number): T[] => (n > 0 && n < a.length ? [...new Rng(12345).permutation(a.length)].slice(0, n).sort((x, y) => x - y).map((i) => a[i]) : a);

interface TaskData {
  train: TextExample[];
  test: TextExample[];
  classes: number;
  name: string;
}

function taskData(cfg: BertRunConfig): TaskData {
  const t = cfg.bert.task;
  if (t.dataset === 'sst2') return { train: [...loadSst2('train'), ...loadSst2('dev')], test: loadSst2('test'), classes: 2, name: 'SST-2' };
  if (t.dataset === 'ag-news') return { train: loadAgNews('train-subset'), test: loadAgNews('test'), classes: 4, name: 'AG News' };
  const info = ownDataset({ train: t.train, test: t.test, ...(t.textColumn ? { textColumn: t.textColumn } : {}), ...(t.labelColumn ? { labelColumn: t.labelColumn } : {}) });
  if (info.kind !== 'text') throw new Error(`bert.task: ${t.train} holds images; the BERT recipes train on text`);
  const load = (split: 'train' | 'test') => info.load(split) as TextExample[];
  return { train: load('train'), test: load('test'), classes: info.classes.length, name: path.basename(t.train!) };
}

/** The texts of a corpus file: .txt one per non-empty line; .tsv / .jsonl their `text` (or `sentence`) column. */
function corpusFile(file: string): string[] {
  if (/\.txt$/i.test(file)) return fs.readFileSync(file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const rows: Record<string, unknown>[] = /\.jsonl$/i.test(file) ? readJsonl<Record<string, unknown>>(file) : readTsv(file, { header: true });
  if (!rows.length) throw new Error(`${file}: no rows`);
  const col = 'text' in rows[0] ? 'text' : 'sentence';
  return rows.map((r, i) => {
    if (typeof r[col] !== 'string') throw new Error(`${file}: row ${i + 1}: no '${col}' text (a corpus file needs a 'text' or 'sentence' column)`);
    return (r[col] as string).trim();
  });
}

/** Unlabelled texts: never the task's test split. */
function corpusTexts(cfg: BertRunConfig, task: TaskData): string[] {
  const out: string[] = [];
  for (const s of cfg.bert.corpus.sources) {
    if (s === 'task') out.push(...task.train.map((e) => e.text));
    else if (s === 'sst2') out.push(...[...loadSst2('train'), ...loadSst2('dev')].map((e) => e.text));
    else if (s === 'ag-news') out.push(...(cfg.bert.task.dataset === 'ag-news' ? loadAgNews('train-subset') : [...loadAgNews('train-subset'), ...loadAgNews('test')]).map((e) => e.text));
    else out.push(...corpusFile(s));
  }
  return subset(out, cfg.bert.corpus.limit);
}

export interface BertRecipeRow {
  recipe: BertRecipe;
  stage: string;
  acc: number;
  params: number;
  seconds: number;
  hf: string;
}

export interface BertRunResult {
  name: string;
  seed: number;
  task: string;
  teacher: { vocabSize: number; hiddenSize: number; layers: number; heads: number; intermediateSize: number; maxPositions: number };
  student_layers: number;
  epochs: BertRunConfig['bert']['epochs'];
  corpus_rows: number;
  general_rows: number;
  corpus_tokens: number;
  train_rows: number;
  test_rows: number;
  runs: Partial<Record<BertRecipe, { acc: number; params: number; seconds: number; hf: string }>>;
  rows: BertRecipeRow[];
}

const FINAL_STAGE: Record<BertRecipe, string> = {
  teacher: 'teacher-finetune', alone: 'alone', init: 'init', mlm: 'mlm-task', distilbert: 'distilbert-task', tinybert: 'tinybert-task-pred',
  minilm: 'minilm-task', 'minilm-v2': 'minilm-v2-task', theseus: 'theseus-task',
};

/**
 * Runs the configured recipes: the tokenizer (built once per output directory), the teacher's stages, TinyBERT's
 * augmentation (cached), every recipe's stages; then each recipe's final model as a Hugging Face directory.
 */
export async function runBertConfig(cfg: BertRunConfig, flags: { resume?: boolean; force?: boolean; log?: (l: string) => void } = {}): Promise<BertRunResult> {
  const log = flags.log ?? ((l: string) => console.log(l));
  const b = cfg.bert, OUT = cfg.output.dir, SEED = cfg.seed, MAX_LEN = b.tokenizer.maxLength;
  const device = checkDevice(cfg.training.device, 'training.device');
  const task = taskData(cfg);
  const texts = corpusTexts(cfg, task);
  if (!texts.length) throw new Error(`bert.corpus: no texts in ${b.corpus.sources.join(', ')}`);

  // the tokenizer, once per output directory; a different corpus or size there is refused rather than mixed
  const tokDir = path.join(OUT, 'tokenizer');
  const builtFrom = { vocabSize: b.tokenizer.vocabSize, sources: b.corpus.sources, limit: b.corpus.limit, rows: texts.length };
  const builtFile = path.join(tokDir, 'built-from.json');
  if (fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
    if (fs.existsSync(builtFile)) {
      const was = JSON.parse(fs.readFileSync(builtFile, 'utf8'));
      if (JSON.stringify(was) !== JSON.stringify(builtFrom))
        throw new Error(`${tokDir}: the tokenizer there was built from ${JSON.stringify(was)}, this configuration asks for ${JSON.stringify(builtFrom)}; use another output.dir`);
    }
  } else {
    const wp = buildWordPiece(texts, { vocabSize: b.tokenizer.vocabSize });
    fs.mkdirSync(tokDir, { recursive: true });
    writeFileAtomic(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify(wp.config, null, 1) + '\n');
    writeFileAtomic(path.join(tokDir, 'tokenizer.json'), JSON.stringify(wp.tokenizer, null, 1) + '\n');
    writeFileAtomic(builtFile, JSON.stringify(builtFrom) + '\n');
  }
  const tok = HfTokenizer.fromDir(tokDir);
  const enc = (xs: string[]) => tok.batch(xs, { maxLength: MAX_LEN }).ids.map((r) => r.filter((id, j) => j === 0 || id !== tok.padId));
  const t0 = Date.now();
  const corpus = enc(texts);
  const generalCorpus = subset(corpus, b.corpus.generalLimit);
  const train = subset(task.train, b.task.limit);
  const trainRows = enc(train.map((e) => e.text));
  const testRows = enc(task.test.map((e) => e.text));
  const padded = padRows(testRows, 0);
  padded.mask.dispose();
  const test = new TensorDataset(padded.ids, tensor(BigInt64Array.from(task.test.map((e) => BigInt(e.label)))));
  try {
    const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => tok.specialId(t)!);
    const tokens = corpus.reduce((s, r) => s + r.length, 0);
    log(`corpus ${corpus.length} rows, ${tokens} tokens; ${task.name} ${trainRows.length} training rows, ${testRows.length} test; vocabulary ${tok.vocabSize}; encoded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const teacher = { vocabSize: tok.vocabSize, hiddenSize: b.teacher.hidden, layers: b.teacher.layers, heads: b.teacher.heads, intermediateSize: b.teacher.intermediate ?? 4 * b.teacher.hidden, maxPositions: MAX_LEN };
    const runDir = path.join(OUT, `seed${SEED}`);
    const base = {
      teacher, studentLayers: b.studentLayers, numLabels: task.classes, seed: SEED, batchSize: b.batchSize, epochs: b.epochs, lr: b.lr, device,
      ...(b.distilbert ? { distilbert: b.distilbert } : {}), ...(b.minilmV2Heads ? { minilmV2Heads: b.minilmV2Heads } : {}),
    };
    const data = { corpus, generalCorpus, train: { rows: trainRows, labels: train.map((e) => e.label) }, test, maskId: tok.specialId('[MASK]')!, specialIds: special };
    const recipes = b.recipes;

    // the teacher's stages first: TinyBERT's augmentation needs the pretrained teacher
    await runStages({ outDir: runDir, stages: bertRecipeStages({ ...base, data }, ['teacher']), resume: flags.resume, force: flags.force, seed: SEED, log });
    let augmented: { rows: number[][]; labels: number[] } | undefined;
    if (recipes.includes('tinybert')) {
      const augFile = path.join(runDir, `augmented-${b.augment.perSentence}-${b.augment.limit}.json`);
      if (fs.existsSync(augFile) && !flags.force) augmented = JSON.parse(fs.readFileSync(augFile, 'utf8'));
      else {
        const mlm = newBert('BertForMaskedLM', bertConfig(teacher));
        try {
          loadWeights(mlm, path.join(runDir, 'teacher-pretrain', 'last.safetensors'));
          const src = subset(train, b.augment.limit);
          const t1 = Date.now();
          const a = augmentTask(src.map((e) => e.text), src.map((e) => e.label), { mlm, tokenizer: tok, perSentence: b.augment.perSentence, seed: SEED, maxLength: MAX_LEN });
          augmented = { rows: [...trainRows, ...a.rows], labels: [...data.train.labels, ...a.labels] };
          writeFileAtomic(augFile, JSON.stringify(augmented));
          log(`augmentation: ${augmented.rows.length} rows in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
        } finally {
          mlm.dispose();
        }
      }
    }
    const result = await runStages({ outDir: runDir, stages: bertRecipeStages({ ...base, data: { ...data, augmented } }, recipes), resume: flags.resume, force: false, seed: SEED, log });

    // the final weights of each recipe as Hugging Face directories, with the tokenizer
    const rows: BertRecipeRow[] = [];
    const byName = new Map(result.stages.map((s) => [s.name, s.summary]));
    for (const r of recipes) {
      const st = FINAL_STAGE[r], s = byName.get(st);
      if (!s) continue;
      const m = newBert('BertForSequenceClassification', bertConfig(r === 'teacher' ? teacher : { ...teacher, layers: b.studentLayers }, { num_labels: task.classes }));
      try {
        loadWeights(m, path.join(runDir, st, 'best.safetensors'));
        const hf = path.join(runDir, st, 'hf');
        saveHfModel(hf, m, { files: tok.files() });
        const stagesOf = result.stages.filter((x) => x.name === st || x.name.startsWith(`${r}-`) || (r === 'teacher' && x.name.startsWith('teacher-')));
        rows.push({ recipe: r, stage: st, acc: s.best_test_acc, params: m.numParameters(), seconds: stagesOf.reduce((a, x) => a + x.summary.mean_epoch_s * x.summary.epochs, 0), hf });
      } finally {
        m.dispose();
      }
    }
    const out: BertRunResult = {
      name: cfg.name, seed: SEED, task: task.name, teacher, student_layers: b.studentLayers, epochs: b.epochs, corpus_rows: corpus.length, general_rows: generalCorpus.length,
      corpus_tokens: tokens, train_rows: trainRows.length, test_rows: testRows.length,
      runs: Object.fromEntries(rows.map((r) => [r.recipe, { acc: r.acc, params: r.params, seconds: r.seconds, hf: r.hf }])), rows,
    };
    // one summary per set of recipes, so that runs of different recipes side by side do not overwrite each other's
    const { rows: _rows, ...summary } = out;
    writeFileAtomic(path.join(runDir, `summary-${recipes.join('+')}.json`), JSON.stringify(summary, null, 2));
    return out;
  } finally {
    test.dispose();
  }
}

/** The table `tsdistill distill` prints: a row per recipe. */
export function bertTable(r: BertRunResult): string[][] {
  return [
    ['recipe', 'final stage', 'parameters', `${r.task} test acc (%)`, 'training (s)'],
    ...r.rows.map((x) => [x.recipe, x.stage, x.params.toLocaleString('en-US'), x.acc.toFixed(2), x.seconds.toFixed(0)]),
  ];
}

export interface BertSeedsResult {
  name: string;
  task: string;
  seeds: number[];
  /** Per recipe: its accuracy per seed (in the order of `seeds`), their mean and sample standard deviation, and the mean's difference to the student alone's. */
  recipes: { recipe: BertRecipe; accs: number[]; mean: number; std: number; vs_alone?: number }[];
}

/** The configured recipes once per seed (each seed in <output.dir>/seed<seed>; finished seeds train nothing), then mean ± std per recipe, written to <output.dir>/seeds.json. */
export async function runBertSeeds(cfg: BertRunConfig, seeds: number[], flags: { resume?: boolean; force?: boolean; log?: (l: string) => void } = {}): Promise<BertSeedsResult> {
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds: expected non-negative integers, got ${seeds.join(', ')}`);
  const runs: BertRunResult[] = [];
  for (const seed of seeds) runs.push(await runBertConfig({ ...cfg, seed }, flags));
  const alone = cfg.bert.recipes.includes('alone') ? mean(runs.map((r) => r.runs.alone!.acc)) : undefined;
  const out: BertSeedsResult = {
    name: cfg.name, task: runs[0].task, seeds,
    recipes: cfg.bert.recipes.map((recipe) => {
      const accs = runs.map((r) => r.runs[recipe]!.acc);
      const m = mean(accs);
      return { recipe, accs, mean: m, std: std(accs), ...(alone !== undefined && recipe !== 'alone' && recipe !== 'teacher' ? { vs_alone: m - alone } : {}) };
    }),
  };
  writeFileAtomic(path.join(cfg.output.dir, 'seeds.json'), JSON.stringify(out, null, 2));
  return out;
}

/** The table of `tsdistill compare --seeds` on a bert configuration: a row per recipe. */
export function bertSeedsTable(r: BertSeedsResult): string[][] {
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  return [
    ['recipe', `seed ${r.seeds.join(' / ')}`, `${r.task} test acc, mean ± std (%)`, 'against alone'],
    ...r.recipes.map((x) => [x.recipe, x.accs.map((a) => a.toFixed(2)).join(' / '), `${x.mean.toFixed(2)} ± ${x.std.toFixed(2)}`, x.vs_alone === undefined ? '' : signed(x.vs_alone)]),
  ];
}
