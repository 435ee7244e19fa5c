// The BERT-compression recipes over Hugging Face BERT classes on SST-2 (docs/bert-recipes.md): a small BERT teacher
// pretrained here by masked LM on the text available (SST-2 and AG News sentences from ../shared/data), fine-tuned on
// SST-2, then students of half its layers by DistilBERT, TinyBERT, MiniLM (v1, v2) and BERT-of-Theseus, beside the
// student fine-tuned alone (random init), from the teacher's layers without distillation, and after masked-LM
// pretraining of its own on the same rows as the general distillations.
//   npm run build && node dist/examples/sst2-bert-recipes.js [--recipes teacher,alone,init,mlm,distilbert,tinybert,minilm,minilm-v2,theseus]
//       [--out runs/sst2-bert] [--seed 0] [--threads 1] [--hidden 128] [--layers 4] [--heads 4] [--student-layers 2]
//       [--vocab 8000] [--max-len 64] [--corpus-limit 0] [--general-limit 0] [--train-limit 0] [--batch 32]
//       [--pretrain-epochs 1] [--finetune-epochs 1] [--general-epochs 1] [--task-epochs 1] [--aug 2] [--aug-limit 8000]
//       [--pretrain-lr 5e-4] [--finetune-lr 1e-4] [--general-lr 5e-4]   (AdamW, warm-up 6 % then cosine, per stage)
//       [--resume] [--force]
// Every stage is a run directory under --out/seed<seed>/<stage>; running again skips finished stages and resumes the
// one that was running. The tokenizer is built once (--out/tokenizer) and reused. Prints a table and a final JSON line.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, TensorDataset, buildWordPiece, loadAgNews, loadSst2, padRows, sharedDataDir } from '../src/data';
import { HfTokenizer, saveHfModel } from '../src/models/hf';
import { loadWeights } from '../src/nn';
import { BERT_RECIPES, type BertRecipe, bertConfig, bertRecipeStages, newBert, runStages } from '../src/distill';
import { augmentTask } from '../src/distill/bert-recipes-augment';
import { checkDevice, manualSeed, setNumThreads, tensor, writeFileAtomic } from '../src/torch';

const arg = (name: string, dflt: number | string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : String(dflt);
};
const flag = (name: string) => process.argv.includes(`--${name}`);
const num = (name: string, dflt: number) => {
  const v = Number(arg(name, dflt));
  if (!Number.isFinite(v)) throw new Error(`--${name}: expected a number, got '${arg(name, dflt)}'`);
  return v;
};

async function main() {
  if (!sharedDataDir()) {
    console.error('sst2-bert-recipes: SST-2 not found (expected ../shared/data/sst2 beside the project); nothing to do');
    process.exit(2);
  }
  const OUT = String(arg('out', 'runs/sst2-bert'));
  const SEED = num('seed', 0);
  setNumThreads(num('threads', 1));
  const device = checkDevice(String(arg('device', 'cpu')), '--device');
  const recipes = String(arg('recipes', BERT_RECIPES.join(','))).split(',').filter(Boolean) as BertRecipe[];
  const MAX_LEN = num('max-len', 64);
  // a fixed random subset (the same for every seed, so that every run sees the same data)
  const limit = <T>(a: T[], n: number) => (n > 0 && n < a.length ? [...new Rng(12345).permutation(a.length)].slice(0, n).sort((x, y) => x - y).map((i) => a[i]) : a);

  // the unlabelled corpus: SST-2's training sentences (train + dev, the GLUE training set) and AG News; never the
  // SST-2 evaluation sentences
  const sstTrain = loadSst2('train'), sstDev = loadSst2('dev'), sstTest = loadSst2('test');
  const corpusTexts = limit([...sstTrain, ...sstDev, ...loadAgNews('train-subset'), ...loadAgNews('test')].map((e) => e.text), num('corpus-limit', 0));
  const tokDir = path.join(OUT, 'tokenizer');
  if (!fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
    const wp = buildWordPiece(corpusTexts, { vocabSize: num('vocab', 8000) });
    fs.mkdirSync(tokDir, { recursive: true });
    writeFileAtomic(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify(wp.config, null, 1) + '\n');
    writeFileAtomic(path.join(tokDir, 'tokenizer.json'), JSON.stringify(wp.tokenizer, null, 1) + '\n');
  }
  const tok = HfTokenizer.fromDir(tokDir);
  const enc = (texts: string[]) => tok.batch(texts, { maxLength: MAX_LEN }).ids.map((r) => r.filter((id, j) => j === 0 || id !== tok.padId));
  const t0 = Date.now();
  const corpus = enc(corpusTexts);
  const generalCorpus = limit(corpus, num('general-limit', 0));
  const train = limit([...sstTrain, ...sstDev], num('train-limit', 0));
  const trainRows = enc(train.map((e) => e.text));
  const testRows = enc(sstTest.map((e) => e.text));
  const padded = padRows(testRows, 0);
  padded.mask.dispose();
  const test = new TensorDataset(padded.ids, tensor(BigInt64Array.from(sstTest.map((e) => BigInt(e.label)))));
  const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => tok.specialId(t)!);
  const tokens = corpus.reduce((s, r) => s + r.length, 0);
  console.log(`corpus ${corpus.length} rows, ${tokens} tokens; SST-2 ${trainRows.length} training rows, ${testRows.length} test; vocabulary ${tok.vocabSize}; encoded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const teacher = { vocabSize: tok.vocabSize, hiddenSize: num('hidden', 128), layers: num('layers', 4), heads: num('heads', 4), intermediateSize: 4 * num('hidden', 128), maxPositions: MAX_LEN };
  const runDir = path.join(OUT, `seed${SEED}`);
  const epochs = { pretrain: num('pretrain-epochs', 1), finetune: num('finetune-epochs', 1), general: num('general-epochs', 1), task: num('task-epochs', 1) };
  const lr = { pretrain: num('pretrain-lr', 5e-4), finetune: num('finetune-lr', 1e-4), general: num('general-lr', 5e-4) };
  const base = { teacher, studentLayers: num('student-layers', 2), numLabels: 2, seed: SEED, batchSize: num('batch', 32), epochs, lr, device };
  const data = { corpus, generalCorpus, train: { rows: trainRows, labels: train.map((e) => e.label) }, test, maskId: tok.specialId('[MASK]')!, specialIds: special };

  manualSeed(SEED);
  // the teacher's stages first: TinyBERT's augmentation needs the pretrained teacher
  const teacherStages = bertRecipeStages({ ...base, data }, ['teacher']);
  await runStages({ outDir: runDir, stages: teacherStages, resume: flag('resume'), force: flag('force'), seed: SEED });
  let augmented: { rows: number[][]; labels: number[] } | undefined;
  if (recipes.includes('tinybert')) {
    const augFile = path.join(runDir, `augmented-${num('aug', 2)}-${num('aug-limit', 8000)}.json`);
    if (fs.existsSync(augFile)) augmented = JSON.parse(fs.readFileSync(augFile, 'utf8'));
    else {
      const mlm = newBert('BertForMaskedLM', bertConfig(teacher));
      loadWeights(mlm, path.join(runDir, 'teacher-pretrain', 'last.safetensors'));
      const src = limit(train, num('aug-limit', 8000));
      const t1 = Date.now();
      augmented = augmentTask(src.map((e) => e.text), src.map((e) => e.label), { mlm, tokenizer: tok, perSentence: num('aug', 2), seed: SEED, maxLength: MAX_LEN });
      mlm.dispose();
      augmented = { rows: [...trainRows, ...augmented.rows], labels: [...data.train.labels, ...augmented.labels] };
      writeFileAtomic(augFile, JSON.stringify(augmented));
      console.log(`augmentation: ${augmented.rows.length} rows in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    }
  }
  const stages = bertRecipeStages({ ...base, data: { ...data, augmented } }, recipes);
  const result = await runStages({ outDir: runDir, stages, resume: flag('resume'), force: false, seed: SEED });

  // the final weights of each recipe as Hugging Face directories, with the tokenizer
  const finals: Record<string, string> = {
    teacher: 'teacher-finetune', alone: 'alone', init: 'init', mlm: 'mlm-task', distilbert: 'distilbert-task', tinybert: 'tinybert-task-pred',
    minilm: 'minilm-task', 'minilm-v2': 'minilm-v2-task', theseus: 'theseus-task',
  };
  const rows: { recipe: string; stage: string; acc: number; params: number; seconds: number }[] = [];
  const byName = new Map(result.stages.map((s) => [s.name, s.summary]));
  for (const r of recipes) {
    const st = finals[r], s = byName.get(st);
    if (!s) continue;
    const cfg = bertConfig(r === 'teacher' ? teacher : { ...teacher, layers: base.studentLayers }, { num_labels: 2 });
    const m = newBert('BertForSequenceClassification', cfg);
    loadWeights(m, path.join(runDir, st, 'best.safetensors'));
    saveHfModel(path.join(runDir, st, 'hf'), m, { files: tok.files() });
    const stagesOf = result.stages.filter((x) => x.name === st || x.name.startsWith(`${r}-`) || (r === 'teacher' && x.name.startsWith('teacher-')));
    rows.push({ recipe: r, stage: st, acc: s.best_test_acc, params: m.numParameters(), seconds: stagesOf.reduce((a, x) => a + x.summary.mean_epoch_s * x.summary.epochs, 0) });
    m.dispose();
  }
  console.log(`\n| recipe | final stage | parameters | SST-2 dev acc (%) | training (s) |\n|---|---|---:|---:|---:|`);
  for (const r of rows) console.log(`| ${r.recipe} | ${r.stage} | ${r.params.toLocaleString('en-US')} | ${r.acc.toFixed(2)} | ${r.seconds.toFixed(0)} |`);
  const out = { seed: SEED, teacher, student_layers: base.studentLayers, epochs, corpus_rows: corpus.length, general_rows: generalCorpus.length, corpus_tokens: tokens, train_rows: trainRows.length, runs: Object.fromEntries(rows.map((r) => [r.recipe, { acc: r.acc, params: r.params, seconds: r.seconds }])) };
  // one summary per set of recipes, so that runs of different recipes side by side do not overwrite each other's
  writeFileAtomic(path.join(runDir, `summary-${recipes.join('+')}.json`), JSON.stringify(out, null, 2));
  console.log(JSON.stringify(out));
  test.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
