import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manualSeed, noGrad, tensor, tidy, randint, cat } from '../src/torch';
import { GPT, applyRope, createDecoder } from '../src/models/gpt';
import { generateTokens, sampleFromLogits, topIndices } from '../src/llm/decode';
import { Rng } from '../src/data/rng';
import { ByteTokenizer, StreamDecoder, checkSameVocabulary, createTokenizer, encodeChat } from '../src/llm/tokenizer';
import { checkLeaks, maxDiff } from './helpers';

const tiny = { vocabSize: 37, contextLength: 24, dModel: 16, nLayer: 2, nHead: 4 };

describe('GPT decoder', () => {
  checkLeaks();
  it('state_dict keys follow GPT-2 names, the head is tied to wte', () => {
    manualSeed(0);
    const m = createDecoder(tiny);
    const keys = Object.keys(m.stateDict());
    assert.deepEqual(keys.slice(0, 2), ['wte.weight', 'wpe.weight']);
    for (const k of ['h.0.ln_1.weight', 'h.0.attn.c_attn.weight', 'h.0.attn.c_proj.bias', 'h.1.mlp.c_fc.weight', 'h.1.mlp.c_proj.weight', 'ln_f.bias']) assert.ok(keys.includes(k), k);
    assert.ok(!keys.some((k) => k.startsWith('lm_head')));
    const C = 16;
    const perBlock = 2 * 2 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C);
    assert.equal(m.numParameters(), 37 * C + 24 * C + 2 * perBlock + 2 * C);
    tidy(() => assert.deepEqual(m.call(tensor([[1, 2, 3]], { dtype: 'int64' })).shape, [1, 3, 37]));
    m.dispose();
  });

  it('is causal: logits at position t do not depend on later tokens', () => {
    manualSeed(1);
    const m = new GPT(tiny).eval();
    tidy(() =>
      noGrad(() => {
        const a = m.call(tensor([[5, 6, 7, 8, 9]], { dtype: 'int64' }));
        const b = m.call(tensor([[5, 6, 7, 30, 31]], { dtype: 'int64' }));
        assert.ok(maxDiff(a.narrow(1, 0, 3), b.narrow(1, 0, 3)) < 1e-6);
        assert.ok(maxDiff(a.narrow(1, 3, 1), b.narrow(1, 3, 1)) > 1e-4, 'a later token must change its own position');
      }),
    );
    m.dispose();
  });

  it('KV cache: cached logits equal a full forward pass, prompt then token by token', () => {
    manualSeed(2);
    const m = new GPT(tiny).eval();
    tidy(() =>
      noGrad(() => {
        const ids = randint(0, 37, [2, 12], { dtype: 'int64' });
        const full = m.call(ids);
        const cache = m.newCache();
        try {
          const parts = [m.call(ids.narrow(1, 0, 5), cache)];
          for (let t = 5; t < 12; t++) parts.push(m.call(ids.narrow(1, t, 1), cache));
          assert.equal(cache.length, 12);
          const cached = cat(parts, 1);
          const d = maxDiff(full, cached);
          assert.ok(d < 1e-5, `cached vs uncached max |diff| ${d}`);
          // a chunk of several new positions after a cached prefix uses the offset causal mask
          cache.dispose();
          const p2 = [m.call(ids.narrow(1, 0, 4), cache), m.call(ids.narrow(1, 4, 8), cache)];
          assert.ok(maxDiff(full, cat(p2, 1)) < 1e-5);
        } finally {
          cache.dispose();
        }
      }),
    );
    m.dispose();
  });

  it('generate: same tokens with and without the cache, seeded, stops at a stop token and at the context length', () => {
    manualSeed(3);
    const m = new GPT(tiny);
    const a = generateTokens(m, [1, 2, 3], { maxNewTokens: 10, temperature: 0.9, topK: 20, seed: 7, topLogprobs: 3 });
    const b = generateTokens(m, [1, 2, 3], { maxNewTokens: 10, temperature: 0.9, topK: 20, seed: 7, topLogprobs: 3, useCache: false });
    assert.deepEqual(a.tokens, b.tokens);
    for (let i = 0; i < a.steps.length; i++) assert.ok(Math.abs(a.steps[i].logprob - b.steps[i].logprob) < 1e-5);
    assert.equal(a.tokens.length, 10);
    assert.equal(a.finishReason, 'length');
    assert.ok(m.training, 'generate restores training mode');
    assert.equal(a.steps[0].top.length, 3);
    assert.ok(a.steps[0].top[0].logprob >= a.steps[0].top[1].logprob);
    const c = generateTokens(m, [1, 2, 3], { maxNewTokens: 10, temperature: 0.9, topK: 20, seed: 8 });
    assert.notDeepEqual(c.tokens, a.tokens, 'another seed, other tokens');
    const stop = generateTokens(m, [1, 2, 3], { maxNewTokens: 10, temperature: 0.9, topK: 20, seed: 7, stopTokens: [a.tokens[4]] });
    assert.equal(stop.finishReason, 'stop');
    assert.deepEqual(stop.tokens, a.tokens.slice(0, a.tokens.indexOf(a.tokens[4])));
    const long = generateTokens(m, Array(20).fill(1), { maxNewTokens: 50, temperature: 0 });
    assert.equal(long.tokens.length, 5, 'stops when the context (24) is full: 20 + 4 fed + 1 sampled last');
    assert.throws(() => generateTokens(m, [40], { maxNewTokens: 1 }), /prompt token 40 is outside the vocabulary \[0, 37\)/);
    m.dispose();
  });

  it('greedy decoding picks the argmax of the uncached forward pass', () => {
    manualSeed(4);
    const m = new GPT(tiny).eval();
    const g = generateTokens(m, [3, 4], { maxNewTokens: 1, temperature: 0 });
    const arg = tidy(() => noGrad(() => m.call(tensor([[3, 4]], { dtype: 'int64' })).select(1, -1).argmax(-1).item()));
    assert.equal(g.tokens[0], arg);
    m.dispose();
  });

  it('rotary positions: no wpe, cached equals uncached, scores depend on relative positions only', () => {
    manualSeed(5);
    const m = new GPT({ ...tiny, positional: 'rope' }).eval();
    assert.ok(!Object.keys(m.stateDict()).includes('wpe.weight'));
    const learned = new GPT(tiny);
    assert.equal(m.numParameters(), learned.numParameters() - 24 * 16);
    learned.dispose();
    tidy(() =>
      noGrad(() => {
        const ids = randint(0, 37, [1, 10], { dtype: 'int64' });
        const full = m.call(ids);
        const cache = m.newCache();
        try {
          const parts = [m.call(ids.narrow(1, 0, 6), cache)];
          for (let t = 6; t < 10; t++) parts.push(m.call(ids.narrow(1, t, 1), cache));
          assert.ok(maxDiff(full, cat(parts, 1)) < 1e-5);
        } finally {
          cache.dispose();
        }
        // q·k after rotation at positions (i, j) equals that at (i + 7, j + 7)
        const q = randint(-3, 4, [1, 1, 1, 8]).double();
        const k = randint(-3, 4, [1, 1, 1, 8]).double();
        const dot = (i: number, j: number) => applyRope(q, i).mul(applyRope(k, j)).sum().item();
        assert.ok(Math.abs(dot(2, 5) - dot(9, 12)) < 1e-9);
        assert.ok(Math.abs(dot(2, 5) - dot(2, 6)) > 1e-6, 'another distance, another score');
        // position 0 is the identity
        assert.ok(maxDiff(applyRope(q, 0), q) < 1e-12);
      }),
    );
    const g1 = generateTokens(m, [1, 2], { maxNewTokens: 6, seed: 1 });
    const g2 = generateTokens(m, [1, 2], { maxNewTokens: 6, seed: 1, useCache: false });
    assert.deepEqual(g1.tokens, g2.tokens);
    assert.throws(() => createDecoder({ ...tiny, nHead: 16, positional: 'rope' }), /rope needs an even head size, got dModel \/ nHead = 1/);
    m.dispose();
  });

  it('errors name the option and the sizes', () => {
    assert.throws(() => createDecoder({ ...tiny, nHead: 5 }), /dModel \(16\) must be divisible by nHead \(5\)/);
    assert.throws(() => createDecoder({ ...tiny, nLayers: 2 } as any), /unknown option 'nLayers'/);
    const m = new GPT(tiny);
    assert.throws(() => tidy(() => m.call(tensor([Array(25).fill(0)], { dtype: 'int64' }))), /25 new positions exceed the context length 24/);
    m.dispose();
  });
});

describe('sampling', () => {
  it('temperature 0 and top-k 1 are greedy; top-k and top-p restrict the support', () => {
    const logits = [0, 3, 1, 2.9, -5];
    const rng = new Rng(0);
    assert.equal(sampleFromLogits(logits, { temperature: 0 }, rng), 1);
    assert.equal(sampleFromLogits(logits, { topK: 1 }, rng), 1);
    const seen = new Set<number>();
    for (let i = 0; i < 300; i++) seen.add(sampleFromLogits(logits, { topK: 2 }, rng));
    assert.deepEqual([...seen].sort(), [1, 3]);
    // p(1) ≈ 0.45, p(3) ≈ 0.41: top-p 0.5 keeps {1, 3}, top-p 0.3 keeps {1}
    const seenP = new Set<number>();
    for (let i = 0; i < 300; i++) seenP.add(sampleFromLogits(logits, { topP: 0.5 }, rng));
    assert.deepEqual([...seenP].sort(), [1, 3]);
    for (let i = 0; i < 50; i++) assert.equal(sampleFromLogits(logits, { topP: 0.3 }, rng), 1);
    // frequencies follow softmax(logits / T)
    const counts = [0, 0];
    const r2 = new Rng(1);
    for (let i = 0; i < 4000; i++) counts[sampleFromLogits([0, Math.log(3)], {}, r2)]++;
    assert.ok(Math.abs(counts[1] / 4000 - 0.75) < 0.03, `p(1) ${counts[1] / 4000}`);
    assert.deepEqual(topIndices([1, 5, 5, 2, 9], 3), [4, 1, 2]);
  });
});

describe('tokenizers', () => {
  it('bytes: round trip, specials, chat template mask', () => {
    const t = new ByteTokenizer();
    assert.equal(t.vocabSize, 260);
    const s = 'héllo ✓';
    assert.equal(t.decode(t.encode(s)), s);
    assert.equal(t.encode('A')[0], 65);
    assert.equal(t.decode([72, 105, 256]), 'Hi<|endoftext|>');
    const { ids, mask } = encodeChat(t, [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'ok' }]);
    assert.deepEqual(ids, [258, 10, 81, 10, 259, 10, 111, 107, 256]);
    assert.deepEqual(mask, [0, 0, 0, 0, 0, 0, 1, 1, 1]);
    const p = encodeChat(t, [{ role: 'user', content: 'Q' }], { generationPrompt: true });
    assert.deepEqual(p.ids, [258, 10, 81, 10, 259, 10]);
    assert.throws(() => encodeChat(t, [{ role: 'bot', content: 'x' }]), /message 0 has role 'bot'/);
    const sd = new StreamDecoder(t);
    const bytes = t.encode('✓!');
    assert.equal(sd.push(bytes[0]), '');
    assert.equal(sd.push(bytes[1]), '');
    assert.equal(sd.push(bytes[2]), '✓');
    assert.equal(sd.push(bytes[3]), '!');
  });
  it('gpt2 BPE ships with the package (no network)', () => {
    const t = createTokenizer('gpt2');
    assert.equal(t.vocabSize, 50257);
    assert.equal(t.eosId, 50256);
    assert.deepEqual(t.encode('Hello world'), [15496, 995]);
    assert.equal(t.decode(t.encode('Fortune favours the bold.')), 'Fortune favours the bold.');
    assert.notEqual(t.encode(' <|endoftext|>').at(-1), 50256, 'special text in data is plain text');
    const { ids, mask } = encodeChat(t, [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yo' }]);
    assert.equal(ids.at(-1), 50256);
    assert.equal(t.decode(ids.filter((_, i) => mask[i] === 1)), 'Yo<|endoftext|>');
    assert.throws(() => createTokenizer('gpt3'), /unknown tokenizer 'gpt3' \(known: bytes, gpt2/);
  });
  it('a vocabulary mismatch names both sizes', () => {
    assert.throws(() => checkSameVocabulary({ vocabSize: 50257, name: 'gpt2' }, { vocabSize: 260, name: 'bytes' }), /teacher's vocabulary has 50257 tokens \(gpt2\) and the student's 260 \(bytes\)/);
    checkSameVocabulary({ vocabSize: 260 }, { vocabSize: 260 });
  });
});
