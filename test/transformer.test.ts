// The text classifier (TransformerClassifier), the word vocabulary, its ONNX export run in onnxruntime, and
// TinyBERT/MiniLM-style feature matches on it (hidden states through a projection, attention probabilities).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Tensor, cat, manualSeed, noGrad, tidy, zeros } from '../src/torch';
import { createModel, registerBuiltinModels, TransformerClassifier } from '../src/models';
import { WordVocab, loadSst2, sharedDataDir, wordTokens } from '../src/data';
import { saveOnnx } from '../src/export';
import { FeatureMatcher } from '../src/distill';
import { SGD } from '../src/optim';
import { checkLeaks } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-transformer-'));

// SST-2 sentences when the shared data is there, else a few written here
const SENTENCES: string[] = (() => {
  if (sharedDataDir()) return loadSst2('dev').slice(0, 40).map((e) => e.text);
  return [
    "it's a charming and often affecting journey.",
    'unflinchingly bleak and desperate',
    'allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker.',
    "the acting, costumes, music, cinematography and sound are all astounding given the production's austere locales.",
    "it's slow -- very, very slow.",
    'although laced with humor and a few fanciful touches, the film is a refreshingly serious look at young women.',
    'a sometimes tedious film.',
    "or doing last year's taxes with your ex-wife.",
  ];
})();

describe('WordVocab', () => {
  checkLeaks();
  it('splits words, apostrophe suffixes and punctuation; ids by frequency; pad 0, unk 1', () => {
    assert.deepEqual(wordTokens("It's a film -- isn't it?"), ['it', "'s", 'a', 'film', '-', '-', 'isn', "'t", 'it', '?']);
    const v = WordVocab.build(['b a a', 'c a b'], {});
    assert.deepEqual(v.tokens, ['<pad>', '<unk>', 'a', 'b', 'c']);
    assert.deepEqual(v.encode('a c zebra'), [2, 4, 1]);
    assert.deepEqual(v.encode(''), [1], 'an empty text is one unknown token, never all padding');
    const capped = WordVocab.build(['b a a', 'c a b'], { maxSize: 4 });
    assert.deepEqual(capped.tokens, ['<pad>', '<unk>', 'a', 'b']);
    assert.deepEqual(WordVocab.build(['b a a', 'c a b'], { minFreq: 2 }).tokens, ['<pad>', '<unk>', 'a', 'b']);
  });
  it('encodeBatch pads and truncates to [N, maxLen] int64; save/load round trip; a bad file is named', () => {
    const v = WordVocab.build([...SENTENCES, 'a sometimes tedious film.']);
    const ids = v.encodeBatch(['a sometimes tedious film.', SENTENCES[2]], 6);
    try {
      assert.equal(ids.dtype, 'int64');
      assert.deepEqual(ids.shape, [2, 6]);
      const rows = Array.from(ids.data() as BigInt64Array, Number);
      assert.deepEqual(v.decode(rows.slice(0, 6)), ['a', 'sometimes', 'tedious', 'film', '.']);
      assert.equal(rows[5], 0, 'padding at the end');
      assert.deepEqual(v.decode(rows.slice(6)), wordTokens(SENTENCES[2]).slice(0, 6));
    } finally {
      ids.dispose();
    }
    const file = path.join(dir, 'vocab.json');
    v.save(file);
    assert.deepEqual(WordVocab.load(file).tokens, v.tokens);
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"tokens": 3}');
    assert.throws(() => WordVocab.load(path.join(dir, 'bad.json')), /bad\.json\): not a word vocabulary/);
  });
});

describe('TransformerClassifier', () => {
  checkLeaks();
  registerBuiltinModels();
  const vocab = WordVocab.build(SENTENCES);

  it('padding changes nothing: the same sentences padded to 12 and to 20 give the same logits (eval)', () => {
    manualSeed(1);
    const m = createModel('transformer', { vocabSize: vocab.size, numClasses: 2, maxLen: 24, dModel: 32, heads: 4, layers: 2 }).eval();
    try {
      tidy(() => {
        const a = vocab.encodeBatch(SENTENCES.slice(0, 6), 12);
        const b = cat([a, zeros([6, 8], { dtype: 'int64' })], 1);
        const la = noGrad(() => m.call(a) as Tensor);
        const lb = noGrad(() => m.call(b) as Tensor);
        assert.deepEqual(la.shape, [6, 2]);
        assert.ok(la.sub(lb).abs().max().item() < 1e-5, 'padding must not change the logits');
        // a different sentence gives different logits (the check above can fail)
        assert.ok(la.select(0, 0).sub(la.select(0, 1)).abs().max().item() > 1e-4);
      });
    } finally {
      m.dispose();
    }
  });

  it('bad input: float ids and too-long sequences name the shape; vocabSize is required', () => {
    manualSeed(1);
    const m = new TransformerClassifier({ vocabSize: 20, maxLen: 8, dModel: 16, heads: 2, layers: 1 });
    try {
      tidy(() => {
        assert.throws(() => m.call(zeros([2, 4])), /expected int64 token ids \[B, L\], got float32 \[2, 4\]/);
        assert.throws(() => m.call(zeros([2, 9], { dtype: 'int64' })), /sequence length 9 exceeds maxLen 8/);
      });
    } finally {
      m.dispose();
    }
    assert.throws(() => createModel('transformer', { numClasses: 2 }), /options\.vocabSize is required/);
  });

  it('ONNX export runs in onnxruntime: max |diff| to libtorch <= 1e-4 at batch 5 and 1, padded rows included', async () => {
    manualSeed(2);
    const m = createModel('transformer', { vocabSize: vocab.size, numClasses: 3, maxLen: 16, dModel: 32, heads: 4, layers: 2, activation: 'gelu' }).eval();
    const file = path.join(dir, 'transformer.onnx');
    const x = vocab.encodeBatch(SENTENCES.slice(0, 5), 16);
    try {
      const info = saveOnnx(m, file, { inputShape: [16], inputDtype: 'int64' });
      assert.ok(info.ops.Softmax === 2 && info.ops.LayerNormalization === 5, JSON.stringify(info.ops));
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
      try {
        for (const batch of [5, 1]) {
          const xb = x.narrow(0, 0, batch);
          const expected = tidy(() => noGrad(() => m.call(xb) as Tensor));
          const out = await session.run({ input: new ort.Tensor('int64', xb.data() as BigInt64Array, xb.shape) });
          const got = out.logits.data as Float32Array;
          const e = expected.data() as Float32Array;
          let diff = 0;
          for (let i = 0; i < e.length; i++) diff = Math.max(diff, Math.abs(e[i] - got[i]));
          assert.deepEqual([...out.logits.dims], [batch, 3]);
          assert.ok(diff <= 1e-4, `max |ONNX - libtorch| = ${diff} at batch ${batch}`);
          expected.dispose();
          xb.dispose();
        }
      } finally {
        await session.release();
      }
    } finally {
      x.dispose();
      m.dispose();
    }
  });

  it('feature matches: hidden states through a projection (32 <- 16) and attention probabilities (MiniLM KL)', () => {
    manualSeed(3);
    const teacher = createModel('transformer', { vocabSize: vocab.size, numClasses: 2, maxLen: 16, dModel: 32, heads: 4, layers: 2, dropout: 0 }).eval();
    const student = createModel('transformer', { vocabSize: vocab.size, numClasses: 2, maxLen: 16, dModel: 16, heads: 4, layers: 1, dropout: 0 });
    teacher.requiresGrad_(false);
    const fm = new FeatureMatcher(student, teacher, [
      { teacher: 'encoder.layers.1', student: 'encoder.layers.0', loss: 'hidden_mse' },
      { teacher: 'encoder.layers.*.self_attn#1', student: 'encoder.layers.*.self_attn#1', loss: 'attention_kl', map: 'last_k' },
    ]);
    const x = vocab.encodeBatch(SENTENCES.slice(0, 8), 16);
    const opt = new SGD([...student.parameters(), ...fm.parameters()], { lr: 0.5 });
    try {
      fm.probe(x);
      assert.deepEqual(fm.termNames, ['hidden_mse:encoder.layers.0', 'attention_kl:encoder.layers.0.self_attn#1']);
      assert.equal(fm.projections.length, 1, 'one projection, for the hidden states');
      assert.deepEqual(fm.projections.parameters()[0].shape, [32, 16]);
      const losses: number[][] = [];
      for (let s = 0; s < 40; s++)
        tidy(() => {
          const { terms } = fm.forward(x);
          const vals = [...terms.values()];
          losses.push(vals.map((t) => t.item()));
          const total = vals.reduce((a, b) => a.add(b));
          opt.zeroGrad();
          total.backward();
          opt.step();
        });
      const [first, last] = [losses[0], losses[losses.length - 1]];
      assert.ok(first.every((v) => Number.isFinite(v) && v > 0), JSON.stringify(first));
      assert.ok(last[0] < 0.8 * first[0], `hidden-state MSE should fall: ${first[0]} -> ${last[0]}`);
      assert.ok(last[1] < first[1], `attention KL should fall: ${first[1]} -> ${last[1]}`);
    } finally {
      opt.dispose();
      fm.dispose();
      x.dispose();
      teacher.dispose();
      student.dispose();
    }
  });
});
