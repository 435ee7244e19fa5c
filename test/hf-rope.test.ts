// Rotary scaling, padding masks and Qwen2's sliding window of the Hugging Face decoders (src/nn/rope.ts,
// src/models/hf/rope-config.ts, llama.ts, gpt2.ts): each rope type's inverse frequencies against values worked out
// by hand for a tiny head; config.json read as transformers reads it (rope_scaling or rope_parameters), unknown
// types refused by name; tiny random models written by test/fixtures/make_hf_rope_fixtures.py (plain PyTorch, the
// published formulas) give the reference's frequencies and logits within 1e-5; left-padded batches give each prompt's
// logits alone; cached, batched and uncached decoding agree.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, noGrad, tensor, tidy } from '../src/torch';
import { ropeFrequencies, ropeTables, type RopeScaling } from '../src/nn';
import { HfCausalLM, HfConfig, LlamaForCausalLM, hfRope, llamaSettings, loadHfModel } from '../src/models/hf';
import { generateTokens } from '../src/llm/decode';
import { DecodeBatcher } from '../src/llm/batcher';
import type { GPT } from '../src/models/gpt';
import { checkLeaks, maxAbsDiffShaped as maxAbsDiff } from './helpers';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'hf-rope', 'expected.json'), 'utf8'));
const inputs = expected.inputs;
const CASES = ['llama-linear', 'llama-dynamic', 'llama-llama3', 'llama-yarn', 'qwen2-yarn', 'qwen2-sliding'];

const ids = (rows: number[][]) => tensor(rows, { dtype: 'int64' });
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

function load(name: string): HfCausalLM {
  const { model, unexpected, missing } = loadHfModel(path.join(FIX, name.includes('/') ? name : `hf-rope/${name}`));
  assert.deepEqual(unexpected, []);
  assert.deepEqual(missing, []);
  return model as HfCausalLM;
}

describe('rotary scaling: inverse frequencies worked out by hand', () => {
  // head size 6, base 10^6: the default frequencies are 1, 0.01, 0.0001 (wavelengths 2π, 200π, 20000π)
  const freqs = (s: RopeScaling, seqLen?: number) => ropeFrequencies(6, 1e6, s, seqLen);
  it('default and linear: base^(−2i/d), divided by the factor', () => {
    close(freqs({ type: 'default' }).invFreq, [1, 0.01, 0.0001], 1e-15, 'default');
    const lin = freqs({ type: 'linear', factor: 4 });
    close(lin.invFreq, [0.25, 0.0025, 0.000025], 1e-15, 'linear');
    assert.equal(lin.attentionScaling, 1);
  });
  it('dynamic: the default frequencies up to maxPositions, then base · (factor·L/max − (factor − 1))^(d/(d − 2))', () => {
    const s: RopeScaling = { type: 'dynamic', factor: 2, maxPositions: 8 };
    close(freqs(s, 8).invFreq, [1, 0.01, 0.0001], 1e-15, 'at max');
    close(freqs(s).invFreq, [1, 0.01, 0.0001], 1e-15, 'no length');
    // L = 16: base 10^6 · (2·16/8 − 1)^(6/4) = 10^6 · 3^1.5; frequencies (10^6 · 3^1.5)^(−1/3) = 0.01 / √3, and squared
    close(freqs(s, 16).invFreq, [1, 0.01 / Math.sqrt(3), 0.0001 / 3], 1e-14, 'L = 16');
  });
  it('llama3: short wavelengths kept, long ones divided by the factor, the middle blended', () => {
    // original 2000, low 1, high 4: wavelengths under 500 kept, over 2000 divided by 8; 200π ≈ 628 is blended with
    // s = (2000 / 200π − 1) / (4 − 1) = (10/π − 1) / 3: 0.01 · ((1 − s)/8 + s)
    const s = (10 / Math.PI - 1) / 3;
    const r = freqs({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 2000 });
    close(r.invFreq, [1, 0.01 * ((1 - s) / 8 + s), 0.0001 / 8], 1e-15, 'llama3');
    assert.equal(r.attentionScaling, 1);
  });
  it('yarn: a ramp between the bounds of betaFast and betaSlow rotations, and the attention factor', () => {
    // bound(r) = 6 · ln(2000 / (2πr)) / (2 ln 10^6): bound(32) = 0.499 → floor 0, bound(1) = 1.251 → ceil 2; the ramp
    // i / 2 is 0, 0.5, 1: frequency 0 kept, 1 half divided by 4, 2 divided by 4; attention 0.1 · ln 4 + 1
    const y: RopeScaling = { type: 'yarn', factor: 4, originalMaxPositions: 2000 };
    const r = freqs(y);
    close(r.invFreq, [1, 0.01 * (0.5 / 4 + 0.5), 0.0001 / 4], 1e-15, 'yarn');
    assert.ok(Math.abs(r.attentionScaling - (0.1 * Math.log(4) + 1)) < 1e-15);
    // without truncation the bounds stay 0.499 and 1.251: frequency 1 at ramp (1 − 0.499) / (1.251 − 0.499)
    const lo = (6 * Math.log(2000 / (64 * Math.PI))) / (2 * Math.log(1e6));
    const hi = (6 * Math.log(2000 / (2 * Math.PI))) / (2 * Math.log(1e6));
    const ramp = (1 - lo) / (hi - lo);
    close(freqs({ ...y, truncate: false }).invFreq, [1, 0.01 * (ramp / 4 + 1 - ramp), 0.0001 / 4], 1e-15, 'untruncated');
    // mscale over mscaleAllDim; an explicit attention factor wins
    assert.ok(Math.abs(freqs({ ...y, mscale: 1, mscaleAllDim: 0.5 }).attentionScaling - (0.1 * Math.log(4) + 1) / (0.05 * Math.log(4) + 1)) < 1e-15);
    assert.equal(freqs({ ...y, mscale: 1, mscaleAllDim: 0.5, attentionFactor: 0.75 }).attentionScaling, 0.75);
  });
  it('tables take the frequencies, a scale and positions per row and token', () =>
    tidy(() => {
      const { invFreq } = freqs({ type: 'linear', factor: 4 });
      const t = ropeTables(6, [[3, 0], [1, 5]], 2, { invFreq, scale: 2, dtype: 'float64' });
      assert.deepEqual(t.cos.shape, [2, 1, 2, 3]);
      const want = [3, 0, 1, 5].flatMap((p) => Array.from(invFreq, (f) => 2 * Math.cos(p * f)));
      close(t.cos.toArray(), want, 1e-15, 'cos');
      assert.throws(() => ropeTables(6, [[1, 2, 3]], 2, { invFreq }), /a row of 3 positions for length 2/);
    }));
});

describe('rotary settings of config.json', () => {
  const base = { model_type: 'llama', max_position_embeddings: 64, rope_theta: 500 };
  const read = (extra: Record<string, unknown>) => hfRope(new HfConfig({ ...base, ...extra }), 10000, 64);
  it('rope_scaling (type or rope_type) or rope_parameters, as transformers reads them', () => {
    assert.deepEqual(read({}), { theta: 500, scaling: { type: 'default' }, key: '' });
    assert.deepEqual(read({ rope_scaling: { type: 'linear', factor: 2 } }).scaling, { type: 'linear', factor: 2 });
    assert.deepEqual(read({ rope_scaling: { rope_type: 'dynamic', factor: 2 } }).scaling, { type: 'dynamic', factor: 2, maxPositions: 64 });
    const p = read({ rope_parameters: { rope_type: 'llama3', rope_theta: 8000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } });
    assert.equal(p.theta, 8000);
    assert.equal(p.key, 'rope_parameters');
    assert.deepEqual(p.scaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 });
    // yarn: original_max_position_embeddings from the top level first, else max_position_embeddings
    const y = read({ original_max_position_embeddings: 32, rope_scaling: { type: 'yarn', factor: 2, original_max_position_embeddings: 16 } }).scaling;
    assert.equal(y.type === 'yarn' && y.originalMaxPositions, 32);
    const y2 = read({ rope_scaling: { type: 'yarn', factor: 2 } }).scaling;
    assert.equal(y2.type === 'yarn' && y2.originalMaxPositions, 64);
  });
  it('unknown types and bad values are refused naming config.json and the key', () => {
    assert.throws(() => read({ rope_scaling: { rope_type: 'longrope', factor: 2 } }), /config\.json: 'rope_scaling\.rope_type' = "longrope" is not supported \(supported: default, linear, dynamic, llama3, yarn\)/);
    assert.throws(() => read({ rope_parameters: { type: 'su' } }), /config\.json: 'rope_parameters\.type' = "su" is not supported/);
    assert.throws(() => read({ rope_scaling: { type: 'linear' } }), /config\.json: 'rope_scaling\.factor' is missing \(rope_type "linear" needs it\)/);
    assert.throws(() => read({ rope_scaling: { rope_type: 'llama3', factor: 8 } }), /config\.json: 'rope_scaling\.low_freq_factor' is missing/);
    assert.throws(() => read({ rope_scaling: { type: 'dynamic', factor: 'big' } }), /config\.json: 'rope_scaling\.factor' must be a number >= 1, got "big"/);
    assert.throws(() => read({ rope_scaling: 'linear' }), /config\.json: 'rope_scaling' must be an object/);
    assert.throws(() => read({ partial_rotary_factor: 0.5 }), /config\.json: 'partial_rotary_factor' = 0\.5 is not supported/);
  });
});

describe('sliding-window settings of config.json (Qwen2)', () => {
  const qwen = (extra: Record<string, unknown>) =>
    llamaSettings(new HfConfig({ model_type: 'qwen2', hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 3, ...extra }), 'qwen2');
  it('layers from max_window_layers on, or as layer_types says; none without use_sliding_window or with a null window', () => {
    assert.deepEqual(qwen({ use_sliding_window: true, sliding_window: 5, max_window_layers: 1 }).slidingLayers, [false, true, true]);
    assert.equal(qwen({ use_sliding_window: true, sliding_window: 5 }).slidingWindow, 5);
    const given = qwen({ use_sliding_window: true, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] });
    assert.deepEqual(given.slidingLayers, [true, false, true]);
    assert.equal(given.slidingWindow, 4096);
    assert.equal(qwen({ use_sliding_window: false, sliding_window: 5, max_window_layers: 0 }).slidingWindow, null);
    assert.equal(qwen({ use_sliding_window: true, sliding_window: null }).slidingWindow, null);
    assert.throws(() => qwen({ use_sliding_window: true, layer_types: ['full_attention'] }), /config\.json: 'layer_types' must list "full_attention" or "sliding_attention" for each of the 3 layers/);
    assert.throws(() => qwen({ layer_types: ['sliding_attention', 'full_attention', 'full_attention'] }), /config\.json: 'layer_types' has sliding_attention layers, but use_sliding_window is not true/);
  });
});

describe('rotary scaling and sliding window: parity with the PyTorch reference', () => {
  checkLeaks();
  for (const name of CASES)
    it(`${name}: frequencies, attention scaling and logits within 1e-5`, () => {
      const m = load(name) as LlamaForCausalLM;
      try {
        const e = expected[name];
        const { rope, headDim } = m.settings;
        const f = ropeFrequencies(headDim, rope.theta, rope.scaling);
        close(f.invFreq, e.inv_freq, 1e-6, 'inv_freq'); // the reference's are float32
        assert.ok(Math.abs(f.attentionScaling - e.attention_scaling) < 1e-12);
        const d = tidy(() => maxAbsDiff(noGrad(() => m.call(ids(inputs.ids))), e.logits));
        assert.ok(d < 1e-5, `${name}: max |Δ| = ${d}`);
      } finally {
        m.dispose();
      }
    });

  it('llama-dynamic: beyond max_position_embeddings the frequencies follow the longest length, as transformers', () => {
    const m = load('llama-dynamic') as LlamaForCausalLM;
    try {
      const e = expected['llama-dynamic'];
      const { rope, headDim } = m.settings;
      assert.equal(m.contextLength, 16, 'factor × max_position_embeddings');
      close(ropeFrequencies(headDim, rope.theta, rope.scaling, 12).invFreq, e.inv_freq_long, 1e-6, 'inv_freq at 12');
      tidy(() =>
        noGrad(() => {
          const long = m.call(ids(inputs.long_ids));
          const d = maxAbsDiff(long, e.long_logits);
          assert.ok(d < 1e-5, `12 positions: max |Δ| = ${d}`);
          // 10 positions after 12: still the frequencies of 12 (transformers keeps the longest length seen) ...
          const ten = ids([inputs.long_ids[0].slice(0, 10)]);
          assert.ok(m.call(ten).sub(long.narrow(1, 0, 10)).abs().max().item() < 1e-5);
          // ... until a forward stays within max_position_embeddings: the default frequencies again
          assert.ok(maxAbsDiff(m.call(ids(inputs.ids)), e.logits) < 1e-5);
          const fresh = load('llama-dynamic');
          try {
            assert.ok(fresh.call(ten).sub(long.narrow(1, 0, 10)).abs().max().item() > 1e-3, 'a fresh model computes 10 positions at the default frequencies');
          } finally {
            fresh.dispose();
          }
        }),
      );
    } finally {
      m.dispose();
    }
  });

  for (const name of CASES.filter((n) => n !== 'llama-dynamic'))
    it(`${name}: greedy decoding with the cache, without it and in batches gives the reference's tokens`, async () => {
      const m = load(name);
      const batcher = new DecodeBatcher(m as unknown as GPT, { maxBatch: 4 });
      try {
        const want = expected[name].greedy as number[];
        const prompt = inputs.prompt as number[];
        const withCache = generateTokens(m, prompt, { maxNewTokens: want.length, temperature: 0 });
        const noCache = generateTokens(m, prompt, { maxNewTokens: want.length, temperature: 0, useCache: false });
        assert.deepEqual(withCache.tokens, want);
        assert.deepEqual(noCache.tokens, want);
        for (let i = 0; i < want.length; i++) assert.ok(Math.abs(withCache.steps[i].logprob - noCache.steps[i].logprob) < 1e-5);
        // rows at their own positions (the sliding window's batched mask included)
        const prompts = [prompt, [1], [4, 4, 9, 30, 2, 11, 6]];
        const batched = await Promise.all(prompts.map((p, i) => batcher.submit(p, { maxNewTokens: 5 + 2 * i, temperature: 0 })));
        prompts.forEach((p, i) => {
          const one = generateTokens(m, p, { maxNewTokens: 5 + 2 * i, temperature: 0, useCache: false });
          assert.deepEqual(batched[i].tokens, one.tokens, `row ${i}`);
          batched[i].steps.forEach((s, t) => assert.ok(Math.abs(s.logprob - one.steps[t].logprob) < 1e-5));
        });
      } finally {
        batcher.close();
        m.dispose();
      }
    });
});

describe('padding masks of the decoders', () => {
  checkLeaks();
  const prompts = inputs.padded.map((row: number[], r: number) => row.filter((_, j) => inputs.mask[r][j] === 1)) as number[][];
  const width = inputs.padded[0].length;
  /** The model on the left-padded batch with its mask; `at(r)` is row r's logits at its prompt's tokens. */
  const onPadded = (name: string, check: (m: HfCausalLM, at: (r: number) => Tensor) => void) => {
    const m = load(name);
    try {
      tidy(() =>
        noGrad(() => {
          const out = m.call(ids(inputs.padded), null, { attentionMask: ids(inputs.mask) });
          check(m, (r) => out.select(0, r).narrow(0, width - prompts[r].length, prompts[r].length));
        }),
      );
    } finally {
      m.dispose();
    }
  };
  for (const name of CASES)
    it(`${name}: a left-padded batch gives each prompt's reference logits at its tokens`, () =>
      onPadded(name, (_m, at) =>
        prompts.forEach((_p, r) => {
          const d = maxAbsDiff(at(r), expected[name].alone_logits[r]);
          assert.ok(d < 1e-5, `row ${r}: max |Δ| = ${d}`);
        }),
      ));

  for (const name of ['hf/gpt2', 'hf/llama', 'hf/qwen2'])
    it(`${name}: a left-padded batch gives the logits of each prompt alone`, () =>
      onPadded(name, (m, at) => {
        prompts.forEach((p, r) => {
          const d = at(r).sub(m.call(ids([p])).select(0, 0)).abs().max().item();
          assert.ok(d < 1e-5, `row ${r}: max |Δ| = ${d}`);
        });
        // without the mask the padding does change the logits (the test can fail)
        const unmasked = m.call(ids(inputs.padded));
        const p = prompts[1];
        assert.ok(unmasked.select(0, 1).narrow(0, width - p.length, p.length).sub(m.call(ids([p])).select(0, 0)).abs().max().item() > 1e-3);
      }));

  for (const name of ['llama-yarn', 'qwen2-sliding', 'hf/gpt2'])
    it(`${name}: a padded prefill and cached steps continue each prompt as alone`, () => {
      const m = load(name);
      const cache = m.newCache();
      try {
        tidy(() =>
          noGrad(() => {
            const next = [[11], [23], [6]];
            m.call(ids(inputs.padded), cache, { attentionMask: ids(inputs.mask) });
            const mask = inputs.mask.map((row: number[]) => [...row, 1]);
            const step = m.call(ids(next), cache, { attentionMask: ids(mask) });
            prompts.forEach((p, r) => {
              const alone = m.call(ids([[...p, ...next[r]]])).select(1, p.length);
              const d = step.select(0, r).select(0, 0).sub(alone.select(0, 0)).abs().max().item();
              assert.ok(d < 1e-5, `row ${r}: max |Δ| = ${d}`);
            });
          }),
        );
      } finally {
        cache.dispose();
        m.dispose();
      }
    });

  it('a mask of the wrong shape, values other than 0 and 1, a mask with a batched step: errors', () => {
    const m = load('llama-yarn');
    try {
      tidy(() =>
        noGrad(() => {
          assert.throws(() => m.call(ids(inputs.padded), null, { attentionMask: ids([[1, 1]]) }), /LlamaModel: attentionMask must be \[3, 6\] \(batch, cached \+ new positions\), got \[1, 2\]/);
          const two = inputs.mask.map((row: number[]) => row.map((v) => 2 * v));
          assert.throws(() => m.call(ids(inputs.padded), null, { attentionMask: ids(two) }), /attentionMask holds 2 at \[0, 1\]; it must be 0 \(padding\) or 1 \(token\)/);
          const bc = m.newBatchCache();
          try {
            const c = m.newCache();
            m.call(ids([[1, 2]]), c);
            bc.addRow(c);
            c.dispose();
            assert.throws(() => m.call(ids([[3]]), bc.beginStep(), { attentionMask: ids([[1, 1, 1]]) }), /attentionMask is not taken with a batched step/);
          } finally {
            bc.dispose();
          }
        }),
      );
    } finally {
      m.dispose();
    }
  });
});
