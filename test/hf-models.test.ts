// Hugging Face model directories: tiny random BERT, DistilBERT, GPT-2, Llama and Qwen2 models written by
// test/fixtures/make_hf_fixtures.py (plain PyTorch with transformers' parameter names and math) load here and give
// the same logits within 1e-5; decoders continue a prompt like the reference's greedy loop; saving and reloading
// (single file and sharded) keeps the logits; bad directories fail naming the file and the key or tensor.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, keep, noGrad, ones, saveSafetensors, loadSafetensors, tensor, tidy } from '../src/torch';
import { Adam } from '../src/optim';
import { tokenKdLoss } from '../src/distill/token-kd';
import {
  BertForMaskedLM, BertForSequenceClassification, HfCausalLM, LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, createHfModel, loadHfModel,
  saveHfModel, type HfPreTrainedModel,
} from '../src/models/hf';
import { generateTokens } from '../src/llm/decode';
import { DecodeBatcher } from '../src/llm/batcher';
import type { GPT } from '../src/models/gpt';
import { checkLeaks, maxAbsDiffShaped as maxAbsDiff } from './helpers';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'hf');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));
const inputs = expected.inputs;
const ENCODERS = ['bert-cls', 'bert-mlm', 'distilbert-cls', 'distilbert-mlm'];
const DECODERS = ['gpt2', 'llama', 'qwen2'];

function ids(rows: number[][]): Tensor {
  return tensor(rows, { dtype: 'int64' });
}

/** The logits of a fixture model on the fixture inputs. */
function logitsOf(name: string, model: HfPreTrainedModel): Tensor {
  return noGrad(() => {
    if (name.startsWith('bert'))
      return (model as BertForSequenceClassification).call(ids(inputs.bert_ids), {
        attentionMask: ids(inputs.bert_mask),
        tokenTypeIds: ids(inputs.bert_token_type_ids),
      });
    if (name.startsWith('distilbert')) return (model as BertForSequenceClassification).call(ids(inputs.bert_ids), { attentionMask: ids(inputs.bert_mask) });
    return (model as HfCausalLM).call(ids(inputs.decoder_ids));
  });
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-hf-'));
}

describe('Hugging Face checkpoints: parity with the PyTorch reference', () => {
  checkLeaks();
  for (const name of [...ENCODERS, ...DECODERS])
    it(`${name}: logits within 1e-5`, () => {
      const { model, unexpected, missing } = loadHfModel(path.join(FIX, name));
      try {
        assert.deepEqual(unexpected, []);
        assert.deepEqual(missing, []);
        const d = tidy(() => maxAbsDiff(logitsOf(name, model), expected[name].logits));
        assert.ok(d < 1e-5, `${name}: max |Δ| = ${d}`);
      } finally {
        model.dispose();
      }
    });

  it('the classes, heads and parameter names are those of transformers', () => {
    const a = loadHfModel(path.join(FIX, 'bert-mlm')).model;
    const b = loadHfModel(path.join(FIX, 'qwen2')).model;
    const c = loadHfModel(path.join(FIX, 'gpt2')).model;
    try {
      assert.ok(a instanceof BertForMaskedLM);
      assert.ok(b instanceof Qwen2ForCausalLM);
      assert.ok(c instanceof GPT2LMHeadModel);
      const ka = Object.keys(a.stateDict());
      assert.ok(ka.includes('bert.encoder.layer.1.attention.self.query.weight'));
      assert.ok(ka.includes('cls.predictions.bias'));
      assert.ok(!ka.includes('cls.predictions.decoder.weight'), 'the MLM decoder is tied to the word embedding');
      const kb = b.stateDict();
      assert.ok('model.layers.0.self_attn.q_proj.bias' in kb && !('model.layers.0.self_attn.o_proj.bias' in kb));
      assert.deepEqual(kb['model.layers.0.self_attn.k_proj.weight'].shape, [8, 24], 'two key/value heads of size 4');
      assert.ok(!('lm_head.weight' in kb), 'tied embeddings');
      assert.deepEqual(c.stateDict()['transformer.h.0.attn.c_attn.weight'].shape, [16, 48], 'Conv1D weight [in, out]');
    } finally {
      a.dispose();
      b.dispose();
      c.dispose();
    }
  });

  it('the hidden state and the attention probabilities of BERT are observable by path', () => {
    const { model } = loadHfModel(path.join(FIX, 'bert-cls'));
    try {
      tidy(() => {
        const { features } = model.captureFeatures(['bert', 'bert.encoder.layer.1.attention.self'], () => logitsOf('bert-cls', model));
        const d = maxAbsDiff(features.get('bert')!, expected['bert-cls'].last_hidden_state);
        assert.ok(d < 1e-5, `last hidden state: max |Δ| = ${d}`);
        const probs = features.get('bert.encoder.layer.1.attention.self#1')!;
        assert.deepEqual(probs.shape, [2, 4, 7, 7]);
        const p = probs.data() as Float32Array;
        // row 1 has 4 tokens: its keys 4..6 are padding and get no attention; every row sums to 1
        for (let h = 0; h < 4; h++)
          for (let q = 0; q < 7; q++) {
            const off = ((1 * 4 + h) * 7 + q) * 7;
            assert.ok(p[off + 4] + p[off + 5] + p[off + 6] < 1e-30);
            assert.ok(Math.abs(p.subarray(off, off + 7).reduce((s, x) => s + x, 0) - 1) < 1e-5);
          }
      });
    } finally {
      model.dispose();
    }
  });
});

describe('Hugging Face decoders generate with generateTokens', () => {
  checkLeaks();
  for (const name of DECODERS)
    it(`${name}: greedy continuation with the key/value cache equals the reference's (no cache)`, () => {
      const { model } = loadHfModel(path.join(FIX, name));
      try {
        const m = model as HfCausalLM;
        const want = expected[name].greedy as number[];
        const withCache = generateTokens(m, expected[name].prompt, { maxNewTokens: want.length, temperature: 0 });
        const noCache = generateTokens(m, expected[name].prompt, { maxNewTokens: want.length, temperature: 0, useCache: false });
        assert.deepEqual(withCache.tokens, want);
        assert.deepEqual(noCache.tokens, want);
        // the cached step's log-probabilities equal the full recomputation's
        for (let i = 0; i < want.length; i++) assert.ok(Math.abs(withCache.steps[i].logprob - noCache.steps[i].logprob) < 1e-5);
      } finally {
        model.dispose();
      }
    });

  it('generation_config.json gives the eos ids and the sampling defaults', () => {
    const { model, generation } = loadHfModel(path.join(FIX, 'qwen2'));
    model.dispose();
    assert.deepEqual(generation?.eosTokenIds, [2, 5]);
    assert.deepEqual(generation?.sampling, { temperature: 0.7, topK: 20, topP: 0.8, maxNewTokens: 16 });
  });
});

describe('Hugging Face checkpoints: saving', () => {
  checkLeaks();
  it('save, then load: single file and sharded, the same logits', () => {
    for (const [name, maxShardSize] of [['llama', undefined], ['bert-mlm', 4000], ['distilbert-cls', 1 << 30]] as const) {
      const dir = tmpDir();
      const { model } = loadHfModel(path.join(FIX, name));
      try {
        const written = saveHfModel(dir, model, { maxShardSize });
        if (maxShardSize === 4000) {
          assert.ok(written.includes('model.safetensors.index.json') && written.filter((f) => f.endsWith('.safetensors')).length > 2, written.join(' '));
          const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
          assert.equal(index.weight_map['cls.predictions.bias'].slice(0, 6), 'model-');
        } else assert.ok(written.includes('model.safetensors'));
        const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
        const orig = JSON.parse(fs.readFileSync(path.join(FIX, name, 'config.json'), 'utf8'));
        assert.deepEqual(cfg, { ...orig, torch_dtype: 'float32' });
        const again = loadHfModel(dir).model;
        try {
          const d = tidy(() => maxAbsDiff(logitsOf(name, again), expected[name].logits));
          assert.ok(d < 1e-5, `${name} after save: ${d}`);
        } finally {
          again.dispose();
        }
        // a later single-file save removes the shards
        saveHfModel(dir, model);
        assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('safetensors')).sort(), ['model.safetensors']);
      } finally {
        model.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a float16 checkpoint loads into the float32 model (converted on load)', () => {
    const dir = tmpDir();
    const { model } = loadHfModel(path.join(FIX, 'llama'));
    try {
      fs.copyFileSync(path.join(FIX, 'llama', 'config.json'), path.join(dir, 'config.json'));
      tidy(() => saveSafetensors(path.join(dir, 'model.safetensors'), Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, t.to('float16')]))));
      const half = loadHfModel(dir).model;
      try {
        assert.equal(half.parameters()[0].dtype, 'float32');
        const d = tidy(() => maxAbsDiff(logitsOf('llama', half), expected.llama.logits));
        assert.ok(d > 0 && d < 5e-2, `float16 weights: max |Δ| = ${d}`);
      } finally {
        half.dispose();
      }
    } finally {
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a base-model checkpoint loads into a classifier with initMissing, and a classifier into the base model', () => {
    const dir = tmpDir();
    try {
      const cls = loadHfModel(path.join(FIX, 'bert-cls')).model as BertForSequenceClassification;
      saveHfModel(dir, cls.bert);
      const saved = Object.keys(loadSafetensorsKeys(path.join(dir, 'model.safetensors')));
      assert.ok(saved.includes('encoder.layer.0.attention.self.query.weight'), 'the base model is saved without the bert. prefix');
      assert.throws(() => loadHfModel(dir, { architecture: 'BertForSequenceClassification' }), /missing tensor 'classifier\.weight'.*initMissing/);
      const r = loadHfModel(dir, { architecture: 'BertForSequenceClassification', initMissing: true });
      assert.deepEqual(r.missing, ['classifier.weight', 'classifier.bias']);
      const base = loadHfModel(path.join(FIX, 'bert-cls'), { architecture: 'BertModel' });
      assert.deepEqual(base.unexpected.sort(), ['classifier.bias', 'classifier.weight']);
      tidy(() => {
        const h = noGrad(() => base.model.call(ids(inputs.bert_ids), { attentionMask: ids(inputs.bert_mask), tokenTypeIds: ids(inputs.bert_token_type_ids) }));
        assert.ok(maxAbsDiff(h as Tensor, expected['bert-cls'].last_hidden_state) < 1e-5);
      });
      cls.dispose();
      r.model.dispose();
      base.model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function loadSafetensorsKeys(file: string): Record<string, true> {
  const { tensors } = loadSafetensors(file);
  const out: Record<string, true> = {};
  for (const [k, t] of Object.entries(tensors)) {
    out[k] = true;
    t.dispose();
  }
  return out;
}

describe('Hugging Face checkpoints: errors name the file and the key', () => {
  checkLeaks();
  const copy = (name: string): string => {
    const dir = tmpDir();
    for (const f of fs.readdirSync(path.join(FIX, name))) fs.copyFileSync(path.join(FIX, name, f), path.join(dir, f));
    return dir;
  };
  const editConfig = (dir: string, edit: (c: Record<string, unknown>) => void) => {
    const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    edit(c);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
  };
  it('unknown model_type or architecture, unsupported settings, missing keys', () => {
    const dir = copy('llama');
    try {
      editConfig(dir, (c) => (c.model_type = 'mamba'));
      assert.throws(() => loadHfModel(dir), /config\.json: model_type "mamba" is not supported \(supported: bert, distilbert, gpt2, llama, qwen2\)/);
      editConfig(dir, (c) => ((c.model_type = 'llama'), (c.architectures = ['LlamaForTokenClassification'])));
      assert.throws(() => loadHfModel(dir), /config\.json: architecture 'LlamaForTokenClassification' is not supported/);
      editConfig(dir, (c) => ((c.architectures = ['BertForMaskedLM'])));
      assert.throws(() => loadHfModel(dir), /architecture 'BertForMaskedLM' is a bert model, but model_type is 'llama'/);
      editConfig(dir, (c) => ((c.architectures = ['LlamaForCausalLM']), (c.rope_scaling = { rope_type: 'longrope', factor: 8 })));
      assert.throws(() => loadHfModel(dir), /config\.json: 'rope_scaling\.rope_type' = "longrope" is not supported/);
      editConfig(dir, (c) => ((c.rope_scaling = null), delete c.vocab_size, (c.num_key_value_heads = 3)));
      assert.throws(() => loadHfModel(dir), /config\.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
      editConfig(dir, (c) => ((c.num_key_value_heads = 2), (c.hidden_size = 24)));
      assert.throws(() => loadHfModel(dir), /model\.safetensors: tensor 'model\.embed_tokens\.weight' has shape \[48, 16\], LlamaForCausalLM expects \[32000, 24\]/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('a missing tensor, a missing shard, a shard that lacks a tensor, no weights at all', () => {
    const dir = copy('gpt2');
    try {
      const shard = path.join(dir, 'model-00002-of-00002.safetensors');
      const { tensors } = loadSafetensors(shard);
      const key = Object.keys(tensors).find((k) => k.endsWith('ln_f.weight'))!;
      const kept = Object.fromEntries(Object.entries(tensors).filter(([k]) => k !== key));
      saveSafetensors(shard, kept);
      for (const t of Object.values(tensors)) t.dispose();
      assert.throws(() => loadHfModel(dir), /model\.safetensors\.index\.json: weight_map puts 'transformer\.ln_f\.weight' in model-00002-of-00002\.safetensors, which does not hold it/);
      const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
      delete index.weight_map[key];
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
      assert.throws(() => loadHfModel(dir), /model\.safetensors\.index\.json: missing tensor 'transformer\.ln_f\.weight' \(GPT2LMHeadModel parameter 'transformer\.ln_f\.weight', shape \[16\]\)/);
      fs.rmSync(shard);
      assert.throws(() => loadHfModel(dir), /model\.safetensors\.index\.json: shard model-00002-of-00002\.safetensors \(holding '.*'\) does not exist/);
      fs.rmSync(path.join(dir, 'model.safetensors.index.json'));
      assert.throws(() => loadHfModel(dir), /no model\.safetensors or model\.safetensors\.index\.json/);
      fs.rmSync(path.join(dir, 'config.json'));
      assert.throws(() => loadHfModel(dir), /config\.json: cannot read/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('createHfModel builds a fresh model from a config object', () => {
    const m = createHfModel({ model_type: 'llama', vocab_size: 10, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 16 });
    try {
      assert.ok(m instanceof LlamaForCausalLM);
      assert.equal((m as LlamaForCausalLM).settings.numKvHeads, 2);
      assert.equal((m as LlamaForCausalLM).settings.ropeTheta, 10000);
    } finally {
      m.dispose();
    }
    // transformers' initialisation: N(0, initializer_range) matrices, zero biases, unit norms, a zero padding row
    const b = createHfModel({ model_type: 'bert', vocab_size: 200, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 128, initializer_range: 0.05, pad_token_id: 3 });
    try {
      tidy(() => {
        const sd = b.stateDict();
        const std = sd['encoder.layer.0.intermediate.dense.weight'].std().item();
        assert.ok(Math.abs(std - 0.05) < 0.005, `std ${std}`);
        assert.equal(sd['encoder.layer.0.output.dense.bias'].abs().sum().item(), 0);
        assert.equal(sd['encoder.layer.0.output.LayerNorm.weight'].sub(1).abs().sum().item(), 0);
        assert.equal(sd['embeddings.word_embeddings.weight'].select(0, 3).abs().sum().item(), 0);
        assert.ok(sd['embeddings.word_embeddings.weight'].select(0, 4).abs().sum().item() > 0);
      });
    } finally {
      b.dispose();
    }
  });
});

describe('Hugging Face decoders in batched decoding (serve\'s DecodeBatcher)', () => {
  checkLeaks();
  for (const name of DECODERS)
    it(`${name}: rows at their own positions give the tokens of one-sequence generation`, async () => {
      const { model } = loadHfModel(path.join(FIX, name));
      const m = model as HfCausalLM;
      // the batcher is typed for the project's GPT; it uses only the decoding steps HfCausalLM has as well
      const batcher = new DecodeBatcher(m as unknown as GPT, { maxBatch: 4 });
      try {
        const prompts = [[7, 3, 19], [1], [4, 4, 9, 30, 2, 11, 6], [12, 40]];
        const opts = prompts.map((_, i) => ({ maxNewTokens: 6 + i, temperature: i === 0 ? 0 : 0.9, topK: 20, seed: 11 + i }));
        const batched = await Promise.all(prompts.map((p, i) => batcher.submit(p, opts[i])));
        prompts.forEach((p, i) => {
          const one = generateTokens(m, p, opts[i]);
          assert.deepEqual(batched[i].tokens, one.tokens, `row ${i}`);
          batched[i].steps.forEach((s, t) => assert.ok(Math.abs(s.logprob - one.steps[t].logprob) < 1e-5));
        });
        assert.ok(batcher.stats.maxBatchSeen > 1, 'rows were decoded together');
      } finally {
        batcher.close();
        model.dispose();
      }
    });
});

describe('Hugging Face models as teacher and student', () => {
  checkLeaks();
  it('token-level KD: a Qwen2 student learns a Llama teacher\'s next-token distributions; gradients reach every parameter', async () => {
    const teacher = loadHfModel(path.join(FIX, 'llama')).model as HfCausalLM;
    const student = loadHfModel(path.join(FIX, 'qwen2')).model as HfCausalLM;
    student.train();
    const opt = new Adam(student.parameters(), { lr: 1e-2 });
    try {
      const x = ids(inputs.decoder_ids);
      const w = tidy(() => keep(ones([12])));
      const lossAt = () => {
        const t = noGrad(() => teacher.call(x)).view(12, -1);
        return tokenKdLoss('forward_kl', student.call(x).view(12, -1), t, w);
      };
      const first = tidy(() => lossAt().item());
      for (let step = 0; step < 30; step++) {
        tidy(() => {
          opt.zeroGrad();
          const loss = lossAt();
          loss.backward();
          if (step === 0)
            for (const [name, p] of student.namedParameters())
              assert.ok(p.grad !== null && p.grad.abs().sum().item() > 0, `no gradient reached ${name}`);
          opt.step();
        });
        await new Promise((r) => setImmediate(r));
      }
      const last = tidy(() => lossAt().item());
      assert.ok(last < first / 2, `KL(teacher ‖ student) ${first.toFixed(4)} -> ${last.toFixed(4)}`);
      w.dispose();
      x.dispose();
    } finally {
      opt.dispose?.();
      teacher.dispose();
      student.dispose();
    }
  });
});
