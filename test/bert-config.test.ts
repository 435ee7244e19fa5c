// The BERT recipes as a configuration through the tsdistill command: a tiny BERT on a small text task of our own
// (.tsv files) and a .txt corpus; every recipe's row, its Hugging Face directory classifying the test texts with the
// accuracy the run reported; a second run trains nothing; compare --seeds gives mean ± std per recipe; errors name the
// key or file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { HfTokenizer, loadHfModel, type BertForSequenceClassification } from '../src/models/hf';
import { noGrad, tensor, tidy, type Tensor } from '../src/torch';
import { padRows, sharedDataDir } from '../src/data';
import { loadBertConfig, validateBertConfig } from '../src/run';
import { Rng } from '../src/data/rng';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

const GOOD = ['great', 'charming', 'witty', 'moving', 'beautiful', 'smart', 'warm', 'gripping'];
const BAD = ['dull', 'boring', 'tedious', 'flat', 'messy', 'predictable', 'worse', 'long'];
const FILL = ['the', 'film', 'movie', 'plot', 'cast', 'story', 'is', 'and', 'a', 'very', 'quite', 'with', 'its'];

/** Sentences whose label is which word list they draw their adjectives from. */
function sentences(n: number, seed: number): { text: string; label: number }[] {
  const r = new Rng(seed);
  const pick = (a: string[]) => a[Math.floor(r.random() * a.length)];
  return Array.from({ length: n }, () => {
    const label = r.random() < 0.5 ? 1 : 0;
    const words = Array.from({ length: 6 + Math.floor(r.random() * 5) }, (_, i) => (i % 3 === 1 ? pick(label ? GOOD : BAD) : pick(FILL)));
    return { text: words.join(' '), label };
  });
}

describe('bert configurations (tsdistill distill)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bert-cfg-'));
  const tsv = (file: string, rows: { text: string; label: number }[]) => fs.writeFileSync(path.join(dir, file), ['text\tlabel', ...rows.map((x) => `${x.text}\t${x.label ? 'pos' : 'neg'}`)].join('\n') + '\n');
  const train = sentences(160, 1), test = sentences(48, 2);
  tsv('train.tsv', train);
  tsv('test.tsv', test);
  fs.writeFileSync(path.join(dir, 'corpus.txt'), sentences(240, 3).map((x) => x.text).join('\n') + '\n');
  const config = {
    name: 'tiny-bert', seed: 0,
    bert: {
      task: { train: 'train.tsv', test: 'test.tsv' },
      corpus: { sources: ['corpus.txt', 'task'] },
      tokenizer: { vocabSize: 100, maxLength: 16 },
      teacher: { hidden: 16, layers: 2, heads: 2 },
      studentLayers: 1,
      recipes: ['teacher', 'alone', 'init', 'tinybert', 'theseus'],
      augment: { perSentence: 1, limit: 40 },
      epochs: { pretrain: 1, finetune: 8, general: 1, task: 1 },
      lr: { finetune: 3e-3 },
      batchSize: 16,
    },
    training: { threads: 1 },
    output: { dir: path.join(dir, 'out') },
  };
  const file = path.join(dir, 'bert.yaml');
  fs.writeFileSync(file, stringify(config));

  it('runs every recipe, writes Hugging Face directories that score what the run reported, and trains nothing when run again', () => {
    const first = run(['distill', file]);
    assert.equal(first.status, 0, first.stderr + first.stdout);
    const r = lastJson(first.stdout);
    assert.deepEqual(r.rows.map((x: { recipe: string }) => x.recipe), ['teacher', 'alone', 'init', 'tinybert', 'theseus']);
    assert.equal(r.train_rows, 160);
    assert.equal(r.test_rows, 48);
    assert.equal(r.corpus_rows, 400, 'the corpus file and the task texts');
    assert.ok(fs.existsSync(path.join(dir, 'out', 'seed0', 'augmented-1-40.json')), 'TinyBERT augmentation cached');
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'out', 'seed0', 'augmented-1-40.json'), 'utf8')).rows.length, 200);
    for (const row of r.rows as { recipe: string; acc: number; hf: string; params: number }[]) {
      const tok = HfTokenizer.fromDir(row.hf);
      const { model } = loadHfModel(row.hf);
      const m = model as BertForSequenceClassification;
      m.eval();
      assert.equal(m.numParameters(), row.params, row.recipe);
      const ids = tok.batch(test.map((x) => x.text), { maxLength: 16 }).ids.map((x) => x.filter((id, j) => j === 0 || id !== tok.padId));
      const p = padRows(ids, 0);
      const correct = tidy(() => {
        const logits = noGrad(() => m.call(p.ids, { attentionMask: p.mask }) as Tensor);
        // the labels are the classes' sorted names: neg 0, pos 1
        return logits.argmax(1).eq(tensor(test.map((x) => x.label), { dtype: 'int64' })).sum().item() as number;
      });
      p.ids.dispose();
      p.mask.dispose();
      assert.ok(Math.abs((100 * correct) / test.length - row.acc) < 1e-9, `${row.recipe}: the HF directory scores ${(100 * correct) / test.length} %, the run reported ${row.acc} %`);
      m.dispose();
    }
    assert.ok(r.runs.teacher.acc > 60, `the teacher learns the task: ${r.runs.teacher.acc} %`);
    const again = run(['distill', file]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /theseus-task finished earlier/);
    assert.doesNotMatch(again.stdout, /stage \d+\/\d+: [\w-]+\n/);
    assert.deepEqual(lastJson(again.stdout).runs, r.runs);
    // over seeds: seed 0 is the finished run (nothing trains), seed 1 trains; mean ± std per recipe
    const c = run(['compare', file, '--seeds', '0,1']);
    assert.equal(c.status, 0, c.stderr);
    const s = lastJson(c.stdout);
    assert.deepEqual(s.seeds, [0, 1]);
    assert.deepEqual(s.recipes.map((x: { recipe: string }) => x.recipe), config.bert.recipes);
    const one = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'seed1', 'summary-teacher+alone+init+tinybert+theseus.json'), 'utf8'));
    for (const x of s.recipes as { recipe: string; accs: number[]; mean: number; std: number; vs_alone?: number }[]) {
      assert.deepEqual(x.accs, [r.runs[x.recipe].acc, one.runs[x.recipe].acc], x.recipe);
      assert.ok(Math.abs(x.mean - (x.accs[0] + x.accs[1]) / 2) < 1e-12);
      assert.ok(Math.abs(x.std - Math.abs(x.accs[0] - x.accs[1]) / Math.SQRT2) < 1e-12);
    }
    const alone = s.recipes.find((x: { recipe: string }) => x.recipe === 'alone').mean;
    const tiny = s.recipes.find((x: { recipe: string }) => x.recipe === 'tinybert');
    assert.ok(Math.abs(tiny.vs_alone - (tiny.mean - alone)) < 1e-12);
    assert.ok(fs.existsSync(path.join(dir, 'out', 'seeds.json')));
    assert.match(c.stdout, /tinybert\s+\S+ \/ \S+\s+\d+\.\d\d ± \d+\.\d\d/);
    assert.match(run(['compare', file, '--seeds', '0,x']).stderr, /--seeds: expected a count \(--seeds 3: seeds 0, 1, 2\) or a comma-separated list/);
  });

  it('refuses what cannot run, naming the key or the file', () => {
    const bad = (patch: (c: typeof config) => unknown, re: RegExp) => assert.throws(() => validateBertConfig(patch(structuredClone(config)), file), re);
    bad((c) => ({ ...c, bert: { ...c.bert, task: { ...c.bert.task, dataset: 'sst2' } } }), /bert\.task\.train: give bert\.task\.dataset or your own/);
    bad((c) => ({ ...c, bert: { ...c.bert, task: { train: 'missing.tsv', test: 'test.tsv' } } }), /bert\.task\.train: file not found: .*missing\.tsv/);
    bad((c) => ({ ...c, bert: { ...c.bert, corpus: { sources: ['notes.md'] } } }), /bert\.corpus\.sources\[0\]: file not found/);
    bad((c) => ({ ...c, bert: { ...c.bert, recipes: ['tinybert', 'bogus'] } }), /bert\.recipes\.1/);
    bad((c) => ({ ...c, bert: { ...c.bert, studentLayers: 3 } }), /bert\.studentLayers: the teacher's 2 layers do not split evenly into 3/);
    bad((c) => ({ ...c, bert: { ...c.bert, teacher: { hidden: 15, layers: 2, heads: 2 } } }), /bert\.teacher: hidden 15 is not divisible by heads 2/);
    // the tokenizer of an output directory is not mixed with another corpus
    const other = path.join(dir, 'other.yaml');
    fs.writeFileSync(other, stringify({ ...config, bert: { ...config.bert, tokenizer: { vocabSize: 90, maxLength: 16 } } }));
    const r = run(['distill', other]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /tokenizer: the tokenizer there was built from .*"vocabSize":100.*this configuration asks for .*"vocabSize":90/);
    const e = run(['distill', file, '--epochs', '3']);
    assert.match(e.stderr, /--epochs: a bert configuration has epochs per stage kind; use --set bert\.epochs\.task=N/);
  });

  it('examples/sst2-bert.yaml is a valid configuration (the run the documentation measures)', (t) => {
    if (!sharedDataDir()) return t.skip('../shared/data (SST-2, AG News) is absent');
    const c = loadBertConfig(path.join(root, 'examples', 'sst2-bert.yaml'));
    assert.deepEqual([c.bert.task.dataset, c.bert.task.limit, c.bert.corpus.limit, c.bert.tokenizer.vocabSize, c.bert.recipes.length], ['sst2', 12000, 30000, 6000, 9]);
  });

  it('cleans up', () => fs.rmSync(dir, { recursive: true }));
});
