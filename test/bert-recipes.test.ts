// The BERT-compression recipes over the Hugging Face BERT classes: layer-map initialisation copies exactly the mapped
// weights; the padding-masked losses match hand-computed values and do not change when a batch gets more padding (the
// unmasked losses do); BERT's 80/10/10 masking with a seed; TinyBERT's augmentation is deterministic; the WordPiece
// vocabulary built here tokenises as WordPiece does; and the whole stage chain (teacher pretraining and fine-tuning,
// baselines, DistilBERT, TinyBERT, MiniLM v1/v2, Theseus) runs on a few sentences with a tiny BERT, is skipped when run
// again, and its students load as Hugging Face directories.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, cat, manualSeed, noGrad, randn, tensor, tidy, zeros } from '../src/torch';
import { IGNORE_INDEX, MlmBatches, Rng, TensorDataset, TextBatches, buildWordPiece, maskTokens, padRows, trimPadding } from '../src/data';
import { HfTokenizer, loadHfModel, saveHfModel, type BertForSequenceClassification } from '../src/models/hf';
import {
  BERT_RECIPES, bertConfig, bertRecipeStages, cosineLoss, everyOtherLayer, initFromTeacher, maskedAttentionKl, maskedCosineLoss, maskedHiddenMseLoss,
  maskedRelationKl, mlmCrossEntropy, mlmKdLoss, newBert, runStages, theseusBert, tinybertAttentionMse, tinybertLayerMap, hiddenMseLoss,
} from '../src/distill';
import { augmentTask } from '../src/distill/bert-recipes-augment';
import { checkLeaks } from './helpers';

const SENTENCES = [
  'a gripping , funny and moving film', 'the plot is dull and the acting is worse', 'an utterly charming little movie',
  'boring , predictable and far too long', 'one of the best films of the year', 'a mess of a movie with nothing to say',
  'warm , witty and wise', 'the jokes fall flat again and again', 'a beautiful and haunting story', 'i wanted my two hours back',
  'smart writing and a great cast', 'tedious from start to finish',
];
const LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0];
const tiny = (vocabSize: number, layers = 4) => ({ vocabSize, hiddenSize: 16, layers, heads: 2, intermediateSize: 32, maxPositions: 32 });
const same = (a: Tensor, b: Tensor) => tidy(() => a.sub(b).abs().max().item() as number) === 0;

function tinyTokenizer(): HfTokenizer {
  const wp = buildWordPiece(SENTENCES, { vocabSize: 120, minFreq: 1 });
  return new HfTokenizer(wp.tokenizer, wp.config, 'test tokenizer.json');
}

describe('layer-map initialisation', () => {
  checkLeaks();
  it('copies the embeddings, the mapped layers and the shared heads, and nothing else', () => {
    manualSeed(1);
    const t = newBert('BertForSequenceClassification', bertConfig(tiny(50), { num_labels: 2 }));
    const s = newBert('BertForSequenceClassification', bertConfig(tiny(50, 2), { num_labels: 2 }));
    const written = initFromTeacher(s, t, [0, 2]);
    const ssd = s.stateDict(), tsd = t.stateDict();
    assert.deepEqual(written.sort(), Object.keys(ssd).sort(), 'every student tensor has a teacher counterpart');
    for (const k of Object.keys(ssd)) {
      const m = /^bert\.encoder\.layer\.(\d)\.(.*)$/.exec(k);
      const tk = m ? `bert.encoder.layer.${[0, 2][Number(m[1])]}.${m[2]}` : k;
      assert.ok(same(ssd[k], tsd[tk]), `${k} = teacher ${tk}`);
      if (m && k.endsWith('query.weight')) {
        const other = `bert.encoder.layer.${[1, 3][Number(m[1])]}.${m[2]}`;
        assert.ok(!same(ssd[k], tsd[other]), `${k} differs from the unmapped teacher ${other}`);
      }
    }
    // an MLM teacher into a base-model student: no heads, the prefix dropped
    const mlm = newBert('BertForMaskedLM', bertConfig(tiny(50)));
    const base = newBert('BertModel', bertConfig(tiny(50, 2)));
    const w2 = initFromTeacher(base, mlm, [1, 3]);
    assert.ok(same(base.stateDict()['encoder.layer.1.output.dense.weight'], mlm.stateDict()['bert.encoder.layer.3.output.dense.weight']));
    assert.ok(!w2.some((k) => k.startsWith('cls.')));
    assert.throws(() => initFromTeacher(s, t, [0, 4]), /layerMap\[1\] = 4 is not a layer of the 4-layer teacher/);
    assert.throws(() => initFromTeacher(s, t, [0]), /has 1 entries for a student of 2 layers/);
    for (const m of [t, s, mlm, base]) m.dispose();
  });
  it('layer maps: DistilBERT 12 → 6, every other layer, TinyBERT g(m)', () => {
    assert.deepEqual(everyOtherLayer(12, 6), [0, 2, 4, 7, 9, 11]);
    assert.deepEqual(everyOtherLayer(4, 2), [0, 2]);
    assert.deepEqual(tinybertLayerMap(12, 4), [2, 5, 8, 11]);
    assert.deepEqual(tinybertLayerMap(4, 2), [1, 3]);
  });
  it('Theseus over HF BERT: the replaced model saves exactly the successor’s keys', () => {
    manualSeed(2);
    const pred = newBert('BertForSequenceClassification', bertConfig(tiny(50), { num_labels: 2 }));
    const succ = newBert('BertForSequenceClassification', bertConfig(tiny(50, 2), { num_labels: 2 }));
    const keys = Object.keys(succ.stateDict()).sort();
    const predEmb = pred.stateDict()['bert.embeddings.word_embeddings.weight'];
    const m = theseusBert(pred, succ, 0.5);
    assert.deepEqual(Object.keys(m.stateDict()).sort(), keys);
    assert.ok(same(m.stateDict()['bert.embeddings.word_embeddings.weight'], predEmb));
    m.eval();
    tidy(() => assert.deepEqual((noGrad(() => m.call(tensor([[2, 7, 9, 3, 0]], { dtype: 'int64' }))) as Tensor).shape, [1, 2]));
    m.dispose();
  });
});

describe('padding-masked losses', () => {
  checkLeaks();
  it('match hand-computed values', () => {
    tidy(() => {
      const s = tensor([[[1, 0], [0, 1]]]), t = tensor([[[1, 0], [1, 0]]]);
      assert.equal(maskedCosineLoss(s, t, tensor([[1, 0]], { dtype: 'int64' })).item(), 0);
      assert.equal(maskedCosineLoss(s, t, tensor([[1, 1]], { dtype: 'int64' })).item(), 0.5);
      // (1² + 2²) / (1 token · 2 dims)
      assert.equal(maskedHiddenMseLoss(tensor([[[1, 2], [3, 4]]]), zeros([1, 2, 2]), tensor([[1, 0]], { dtype: 'int64' })).item(), 2.5);
      // attention KL over the one real query row: KL([.5,.5] ‖ [.25,.75])
      const ps = tensor([[[[0.25, 0.75], [0.9, 0.1]]]]), pt = tensor([[[[0.5, 0.5], [0.1, 0.9]]]]);
      const kl = 0.5 * Math.log(0.5 / 0.25) + 0.5 * Math.log(0.5 / 0.75);
      assert.ok(Math.abs((maskedAttentionKl(ps, pt, tensor([[1, 0]], { dtype: 'int64' })).item() as number) - kl) < 1e-6);
      // TinyBERT scores with one head, d = 1: q·k over the real pair (0, 0) only → (1·2 − 3·1)² = 1
      const one = (v: number[]) => tensor([v.map((x) => [x])]);
      const l = tinybertAttentionMse(one([1, 5]), one([2, 7]), one([3, 4]), one([1, 9]), 1, tensor([[1, 0]], { dtype: 'int64' }));
      assert.equal(l.item(), 1);
      // relation KL, one real key: both relations put all mass on it → 0
      assert.ok(Math.abs(maskedRelationKl(randn([1, 3, 4]), randn([1, 3, 4]), 2, tensor([[1, 0, 0]], { dtype: 'int64' })).item() as number) < 1e-6);
      // masked-LM CE and KD on packed rows equal the full form
      const logits = randn([2, 3, 5]), tl = randn([2, 3, 5]);
      const labels = tensor([[IGNORE_INDEX, 4, IGNORE_INDEX], [1, IGNORE_INDEX, 2]], { dtype: 'int64' });
      const rows = tensor([1, 3, 5], { dtype: 'int64' });
      const packed = logits.reshape([6, 5]).indexSelect(0, rows), tpacked = tl.reshape([6, 5]).indexSelect(0, rows);
      assert.ok(Math.abs((mlmCrossEntropy(logits, labels).item() as number) - (mlmCrossEntropy(packed, labels).item() as number)) < 1e-6);
      assert.ok(Math.abs((mlmKdLoss(logits, tl, labels, 2).item() as number) - (mlmKdLoss(packed, tpacked, labels, 2).item() as number)) < 1e-6);
      // no position chosen: 0, not NaN
      const none = tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]], { dtype: 'int64' });
      assert.equal(Math.abs(mlmCrossEntropy(logits, none).item() as number), 0);
      assert.equal(Math.abs(mlmCrossEntropy(randn([0, 5]), none).item() as number), 0);
    });
  });
  it('do not change when the batch gets more padding; the unmasked losses do', () => {
    manualSeed(3);
    const cfgT = bertConfig(tiny(60), {}), cfgS = bertConfig(tiny(60, 2), {});
    const t = newBert('BertModel', cfgT).eval(), s = newBert('BertModel', cfgS).eval();
    const rows = [[2, 10, 11, 12, 3], [2, 20, 3]];
    const lossesAt = (extra: number) =>
      tidy(() => {
        const { ids, mask } = padRows(rows.map((r, i) => (i === 0 ? r : r)), 0);
        const x = extra ? cat([ids, zeros([2, extra], { dtype: 'int64' })], 1) : ids;
        const m = extra ? cat([mask, zeros([2, extra], { dtype: 'int64' })], 1) : mask;
        const capture = (mod: typeof t, paths: string[]) => noGrad(() => mod.captureFeatures(paths, () => mod.call(x) as Tensor).features);
        const paths = (l: number) => [`encoder.layer.${l}`, `encoder.layer.${l}.attention.self`, `encoder.layer.${l}.attention.self.query`, `encoder.layer.${l}.attention.self.key`, `encoder.layer.${l}.attention.self.value`];
        const ft = capture(t, paths(3)), fs2 = capture(s, paths(1));
        const g = (f: Map<string, Tensor>, l: number, p = '') => f.get(`encoder.layer.${l}${p}`)!;
        return [
          maskedCosineLoss(g(fs2, 1), g(ft, 3), m).item() as number,
          maskedHiddenMseLoss(g(fs2, 1), g(ft, 3), m).item() as number,
          tinybertAttentionMse(g(fs2, 1, '.attention.self.query'), g(fs2, 1, '.attention.self.key'), g(ft, 3, '.attention.self.query'), g(ft, 3, '.attention.self.key'), 2, m).item() as number,
          maskedAttentionKl(g(fs2, 1, '.attention.self#1'), g(ft, 3, '.attention.self#1'), m).item() as number,
          maskedRelationKl(g(fs2, 1, '.attention.self.value'), g(ft, 3, '.attention.self.value'), 2, m).item() as number,
          // the unmasked losses, for contrast
          cosineLoss(g(fs2, 1), g(ft, 3)).item() as number,
          hiddenMseLoss(g(fs2, 1), g(ft, 3)).item() as number,
        ];
      });
    const a = lossesAt(0), b = lossesAt(4);
    for (let i = 0; i < 5; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5 * Math.max(1, Math.abs(a[i])), `masked loss ${i}: ${a[i]} vs ${b[i]} with more padding`);
    assert.ok(Math.abs(a[5] - b[5]) > 1e-4, `the unmasked cosine changes with padding (${a[5]} vs ${b[5]})`);
    assert.ok(Math.abs(a[6] - b[6]) > 1e-4, `the unmasked MSE changes with padding (${a[6]} vs ${b[6]})`);
    t.dispose();
    s.dispose();
  });
});

describe('masked-LM batches', () => {
  checkLeaks();
  const opts = { maskId: 4, vocabSize: 100, specialIds: [0, 1, 2, 3, 4] };
  it('mask 15 % of the non-special tokens: 80 % [MASK], 10 % random, 10 % kept; seeded', () => {
    const row = [2, ...Array.from({ length: 40000 }, (_, i) => 5 + (i % 95)), 3];
    const { input, labels } = maskTokens(row, new Rng(7), opts);
    let chosen = 0, masked = 0, random = 0, kept = 0;
    for (let i = 0; i < row.length; i++) {
      if (labels[i] === IGNORE_INDEX) {
        assert.equal(input[i], row[i]);
        continue;
      }
      chosen++;
      assert.equal(labels[i], row[i]);
      if (input[i] === 4) masked++;
      else if (input[i] === row[i]) kept++;
      else {
        random++;
        assert.ok(input[i] >= 5 && input[i] < 100, 'random replacements are never special');
      }
    }
    assert.equal(labels[0], IGNORE_INDEX);
    assert.equal(labels[row.length - 1], IGNORE_INDEX);
    const n = row.length - 2;
    assert.ok(Math.abs(chosen / n - 0.15) < 0.01, `chosen ${chosen / n}`);
    assert.ok(Math.abs(masked / chosen - 0.8) < 0.02, `[MASK] ${masked / chosen}`);
    // a random draw equal to the original token (1 in 95) counts as kept
    assert.ok(Math.abs(random / chosen - 0.1 * (94 / 95)) < 0.015, `random ${random / chosen}`);
    assert.ok(Math.abs(kept / chosen - (0.1 + 0.1 / 95)) < 0.015, `kept ${kept / chosen}`);
    assert.deepEqual(maskTokens(row, new Rng(7), opts), { input, labels });
    assert.notDeepEqual(maskTokens(row, new Rng(8), opts).labels, labels);
  });
  it('MlmBatches: a batch is the same whenever asked for, another epoch draws again; packed input marks the predictions', () => {
    const rows = Array.from({ length: 10 }, (_, i) => [2, ...Array.from({ length: 3 + i }, (_, j) => 5 + ((i * 7 + j) % 90)), 3]);
    const src = new MlmBatches(rows, { ...opts, batchSize: 4, seed: 1, prob: 0.5 });
    const read = (b: number) => {
      const x = src.batchAt(b);
      const r = { x: x.x.tolist(), y: x.y.tolist(), m: x.taps.attention_mask.tolist() };
      x.dispose();
      return r;
    };
    src.setEpoch(0);
    const a = read(1);
    read(2);
    assert.deepEqual(read(1), a);
    src.setEpoch(1);
    assert.notDeepEqual(read(1), a);
    assert.equal(src.length, 3);
    const packed = new MlmBatches(rows, { ...opts, batchSize: 4, seed: 1, prob: 0.5, packed: true });
    const p = packed.batchAt(1);
    assert.deepEqual(p.x.shape.slice(0, 2), [4, 2]);
    tidy(() => {
      assert.deepEqual(p.x.select(1, 0).tolist(), a.x);
      assert.deepEqual(p.x.select(1, 1).tolist(), (a.y as number[][]).map((r) => r.map((v) => (v === IGNORE_INDEX ? 0 : 1))));
    });
    p.dispose();
  });
  it('TextBatches pad each batch to its longest row; trimPadding cuts padded columns', () => {
    const src = new TextBatches([[2, 5, 3], [2, 5, 6, 7, 3]], [0, 1], { batchSize: 2, shuffle: false });
    const b = src.batchAt(0);
    assert.deepEqual(b.x.tolist(), [[2, 5, 3, 0, 0], [2, 5, 6, 7, 3]]);
    assert.deepEqual(b.taps.attention_mask.tolist(), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]);
    b.dispose();
    tidy(() => {
      const x = tensor([[2, 5, 3, 0, 0, 0], [2, 5, 0, 0, 0, 0]], { dtype: 'int64' });
      assert.deepEqual(trimPadding(0).apply(x, new Rng(0) as never).tolist(), [[2, 5, 3], [2, 5, 0]]);
    });
  });
});

describe('WordPiece vocabulary and TinyBERT augmentation', () => {
  checkLeaks();
  it('a vocabulary word is one token, another word splits into known pieces', () => {
    const tok = tinyTokenizer();
    const w = tok.tokenizerJson as { model: { vocab: Record<string, number> } };
    assert.ok('the' in w.model.vocab && 'movie' in w.model.vocab);
    assert.equal(tok.encode('The movie').length, 2);
    const pieces = tok.encodeFull('moviest').tokens;
    assert.ok(pieces.length > 1 && pieces.slice(1).every((p) => p.startsWith('##')), pieces.join(' '));
    assert.deepEqual(tok.encode('A film', { addSpecialTokens: true }).slice(0, 1), [tok.specialId('[CLS]')]);
    assert.deepEqual(buildWordPiece(SENTENCES, { vocabSize: 120, minFreq: 1 }).vocab, buildWordPiece([...SENTENCES], { vocabSize: 120, minFreq: 1 }).vocab);
  });
  it('is deterministic for a seed, keeps labels and draws replacements from the vocabulary words', () => {
    const tok = tinyTokenizer();
    manualSeed(4);
    const mlm = newBert('BertForMaskedLM', bertConfig({ ...tiny(tok.vocabSize), maxPositions: 40 }));
    const run = (seed: number) => augmentTask(SENTENCES.slice(0, 4), LABELS.slice(0, 4), { mlm, tokenizer: tok, perSentence: 3, seed, maxLength: 40 });
    const a = run(0), b = run(0), c = run(1);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.texts, c.texts);
    assert.equal(a.rows.length, 12);
    assert.deepEqual(a.labels, [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
    const vocab = new Set(Object.keys((tok.tokenizerJson as { model: { vocab: Record<string, number> } }).model.vocab));
    const changed = a.texts.filter((t, i) => t !== SENTENCES[Math.floor(i / 3)].split(' ').join(' '));
    assert.ok(changed.length > 0, 'some words were replaced');
    for (const t of a.texts) for (const w of t.split(' ')) assert.ok(vocab.has(w) || SENTENCES.some((s) => s.split(' ').includes(w)), `'${w}' is a vocabulary word or an original word`);
    mlm.dispose();
  });
});

describe('the recipes as stages', () => {
  checkLeaks();
  it('run end to end on a few sentences with a tiny BERT, are skipped when run again, and load as HF directories', async () => {
    const tok = tinyTokenizer();
    const enc = (texts: string[]) => texts.map((t) => tok.encode(t, { addSpecialTokens: true }));
    const rows = enc(SENTENCES);
    const { ids, mask } = padRows(rows, 0);
    mask.dispose();
    const test = new TensorDataset(ids, tensor(LABELS, { dtype: 'int64' }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bert-recipes-'));
    const o = {
      teacher: tiny(tok.vocabSize), studentLayers: 2, numLabels: 2, seed: 0, batchSize: 4, quiet: true,
      epochs: { pretrain: 1, finetune: 1, general: 1, task: 1 },
      data: { corpus: rows, train: { rows, labels: LABELS }, test, maskId: tok.specialId('[MASK]')!, specialIds: [0, 1, 2, 3, 4] },
    };
    manualSeed(0);
    const logs: string[] = [];
    const first = await runStages({ outDir: dir, stages: bertRecipeStages(o, BERT_RECIPES), log: (l) => logs.push(l) });
    const names = first.stages.map((s) => s.name);
    assert.deepEqual(names, [
      'teacher-pretrain', 'teacher-finetune', 'alone', 'init', 'mlm-general', 'mlm-task', 'distilbert-general', 'distilbert-task', 'tinybert-general', 'tinybert-task-inter',
      'tinybert-task-pred', 'minilm-general', 'minilm-task', 'minilm-v2-general', 'minilm-v2-task', 'theseus-replace', 'theseus-task',
    ]);
    assert.ok(first.stages.every((s) => s.ran));
    for (const s of first.stages) assert.ok(Number.isFinite(s.summary.last_loss), `${s.name} finished with a finite loss`);
    const metrics = (stage: string) => fs.readFileSync(path.join(dir, stage, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const dm = metrics('distilbert-general').at(-1);
    for (const k of ['soft', 'mlm', 'cos']) assert.ok(Number.isFinite(dm.terms?.[`${k}`] ?? dm[k]), `distilbert-general logs ${k}: ${JSON.stringify(dm)}`);
    const again = await runStages({ outDir: dir, stages: bertRecipeStages(o, BERT_RECIPES), log: () => {} });
    assert.ok(again.stages.every((s) => !s.ran), 'finished stages are not run again');
    // a student's weights as an HF directory, read back by loadHfModel
    const s = newBert('BertForSequenceClassification', bertConfig({ ...o.teacher, layers: 2 }, { num_labels: 2 }));
    const { loadWeights } = await import('../src/nn');
    loadWeights(s, path.join(dir, 'distilbert-task', 'best.safetensors'));
    saveHfModel(path.join(dir, 'hf'), s, { files: tok.files() });
    const back = loadHfModel(path.join(dir, 'hf')).model as BertForSequenceClassification;
    s.eval();
    tidy(() => {
      const x = ids.narrow(0, 0, 3);
      const m = x.ne(0);
      assert.ok(same(noGrad(() => s.call(x) as Tensor), noGrad(() => back.call(x, { attentionMask: m }))));
    });
    assert.equal(HfTokenizer.fromDir(path.join(dir, 'hf')).encode('a film').length, 2);
    s.dispose();
    back.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
