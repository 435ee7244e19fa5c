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
// The same run as a configuration file: examples/sst2-bert.yaml (`tsdistill distill examples/sst2-bert.yaml`); both
// go through runBertConfig (src/run/bert.ts).
import { BERT_RECIPES } from '../src/distill';
import { sharedDataDir } from '../src/data';
import { runBertConfig, validateBertConfig } from '../src/run';
import { setNumThreads } from '../src/torch';

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
  setNumThreads(num('threads', 1));
  // the unlabelled corpus: SST-2's training sentences (train + dev, the GLUE training set) and AG News; never the
  // SST-2 evaluation sentences
  const cfg = validateBertConfig({
    name: 'sst2-bert-recipes',
    seed: num('seed', 0),
    bert: {
      task: { dataset: 'sst2', limit: num('train-limit', 0) },
      corpus: { sources: ['sst2', 'ag-news'], limit: num('corpus-limit', 0), generalLimit: num('general-limit', 0) },
      tokenizer: { vocabSize: num('vocab', 8000), maxLength: num('max-len', 64) },
      teacher: { hidden: num('hidden', 128), layers: num('layers', 4), heads: num('heads', 4) },
      studentLayers: num('student-layers', 2),
      recipes: String(arg('recipes', BERT_RECIPES.join(','))).split(',').filter(Boolean),
      augment: { perSentence: num('aug', 2), limit: num('aug-limit', 8000) },
      epochs: { pretrain: num('pretrain-epochs', 1), finetune: num('finetune-epochs', 1), general: num('general-epochs', 1), task: num('task-epochs', 1) },
      lr: { pretrain: num('pretrain-lr', 5e-4), finetune: num('finetune-lr', 1e-4), general: num('general-lr', 5e-4) },
      batchSize: num('batch', 32),
    },
    training: { device: String(arg('device', 'cpu')) },
    output: { dir: String(arg('out', 'runs/sst2-bert')) },
  }, 'sst2-bert-recipes');
  const r = await runBertConfig(cfg, { resume: flag('resume'), force: flag('force') });
  console.log(`\n| recipe | final stage | parameters | SST-2 dev acc (%) | training (s) |\n|---|---|---:|---:|---:|`);
  for (const x of r.rows) console.log(`| ${x.recipe} | ${x.stage} | ${x.params.toLocaleString('en-US')} | ${x.acc.toFixed(2)} | ${x.seconds.toFixed(0)} |`);
  const { rows: _rows, ...out } = r;
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
