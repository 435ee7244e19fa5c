// Batched decoding (src/llm/batcher.ts, GPT.nextLogprobsBatch): rows at different lengths in one forward give what
// each sequence gives alone, and the scheduler's sequences match GPT.generate token for token.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manualSeed, nextTick } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { generateTokens, type GenerateOptions } from '../src/llm/decode';
import { DecodeBatcher } from '../src/llm/batcher';
import { Rng } from '../src/data/rng';
import { checkLeaks } from './helpers';

const tiny = { vocabSize: 41, contextLength: 32, dModel: 16, nLayer: 2, nHead: 4 };

function prompts(n: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: 1 + rng.int(12) }, () => rng.int(tiny.vocabSize)));
}

describe('batched decoding', () => {
  checkLeaks();
  for (const positional of ['learned', 'rope'] as const)
    it(`${positional} positions: a batched step equals each row decoded alone`, () => {
      manualSeed(3);
      const m = new GPT({ ...tiny, positional });
      const ps = prompts(5, 1);
      const cache = m.newBatchCache(2); // grows twice on the way
      const singles = ps.map((p) => {
        const c = m.newCache();
        m.nextLogprobs(p, c);
        cache.addRow(c);
        return c;
      });
      assert.equal(cache.capacity, 8);
      const V = tiny.vocabSize;
      let worst = 0;
      for (let step = 0; step < 4; step++) {
        const ids = ps.map((_, b) => (7 * b + 3 * step) % V);
        const batched = m.nextLogprobsBatch(ids, cache);
        ids.forEach((id, b) => {
          const alone = m.nextLogprobs([id], singles[b]);
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(alone[v] - batched[b * V + v]));
        });
        if (step === 1) {
          // a row leaves mid-way: the last row takes its place and both go on unchanged
          cache.removeRow(1);
          singles[1].dispose();
          singles[1] = singles.pop()!;
          ps[1] = ps.pop()!;
        }
      }
      assert.ok(worst < 1e-5, `max |Δ log p| = ${worst}`);
      assert.deepEqual(cache.lengths, ps.map((p) => p.length + 4));
      singles.forEach((c) => c.dispose());
      cache.dispose();
      m.dispose();
    });

  it('the scheduler gives GPT.generate’s tokens for every sequence, batched, queued and joining mid-way', async () => {
    manualSeed(4);
    const m = new GPT(tiny);
    const b = new DecodeBatcher(m, { maxBatch: 3 });
    const ps = prompts(7, 2);
    const opts = (k: number): GenerateOptions => ({
      maxNewTokens: 5 + k * 3, seed: 100 + k, temperature: k % 3 === 0 ? 0 : 1, topK: k === 4 ? 5 : undefined,
      topP: k === 5 ? 0.8 : undefined, stopTokens: [k % 5], topLogprobs: 2,
    });
    const seen: number[][] = ps.map(() => []);
    const first = ps.slice(0, 4).map((p, k) => b.submit(p, opts(k), (t) => void seen[k].push(t.id)));
    await nextTick();
    await nextTick();
    const later = ps.slice(4).map((p, i) => b.submit(p, opts(4 + i), (t) => void seen[4 + i].push(t.id)));
    const got = await Promise.all([...first, ...later]);
    got.forEach((r, k) => {
      const want = generateTokens(m, ps[k], opts(k));
      assert.deepEqual(r.tokens, want.tokens, `sequence ${k}`);
      assert.equal(r.finishReason, want.finishReason, `sequence ${k}`);
      assert.deepEqual(seen[k], want.tokens);
      r.steps.forEach((s, i) => {
        assert.ok(Math.abs(s.logprob - want.steps[i].logprob) < 1e-5);
        assert.deepEqual(s.top.map((x) => x.id), want.steps[i].top.map((x) => x.id));
      });
    });
    assert.ok(b.stats.maxBatchSeen === 3, `largest batch ${b.stats.maxBatchSeen}`);
    assert.ok(b.stats.rowSteps > b.stats.steps, 'more than one row per step on average');
    assert.equal(b.pending, 0);
    b.close();
    m.dispose();
  });

  it('sequences admitted together with one prompt share its prefill and still sample independently', async () => {
    manualSeed(6);
    const m = new GPT(tiny);
    const b = new DecodeBatcher(m);
    const [p, q] = prompts(2, 3);
    const jobs = [
      ...[0, 1, 2].map((k) => ({ prompt: p, o: { maxNewTokens: 6, seed: 10 + k, temperature: 1.3 } })),
      { prompt: q, o: { maxNewTokens: 6, seed: 10, temperature: 1.3 } },
    ];
    const got = await Promise.all(jobs.map((j) => b.submit(j.prompt, j.o)));
    assert.equal(b.stats.prefills, 2);
    got.forEach((r, k) => assert.deepEqual(r.tokens, generateTokens(m, jobs[k].prompt, jobs[k].o).tokens, `sequence ${k}`));
    assert.ok(new Set(got.slice(0, 3).map((r) => r.tokens.join(','))).size > 1, 'different seeds, different samples');
    b.close();
    m.dispose();
  });

  it('stops where the callback says, at the context length, and fails bad prompts with the reason', async () => {
    manualSeed(5);
    const m = new GPT(tiny);
    const b = new DecodeBatcher(m);
    const r = await b.submit([1, 2, 3], { maxNewTokens: 20, seed: 1 }, () => false);
    assert.equal(r.tokens.length, 1);
    assert.equal(r.finishReason, 'stop');
    const long = await b.submit(Array(30).fill(2), { maxNewTokens: 50, seed: 2 });
    assert.deepEqual(long.tokens, generateTokens(m, Array(30).fill(2), { maxNewTokens: 50, seed: 2 }).tokens);
    assert.equal(long.tokens.length, 3);
    assert.equal(long.finishReason, 'length');
    await assert.rejects(b.submit([99], { maxNewTokens: 2 }), /prompt token 99 is outside the vocabulary \[0, 41\)/);
    await assert.rejects(b.submit(Array(40).fill(1), { maxNewTokens: 2 }), /40 tokens, more than the context length 32/);
    b.close();
    await assert.rejects(b.submit([1], { maxNewTokens: 2 }), /closed/);
    m.dispose();
  });
});
