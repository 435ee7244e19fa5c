// `serve`: a decoder behind the OpenAI Chat Completions protocol on 127.0.0.1, checked with raw requests and with
// the `generate` client writing a data set from it.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { manualSeed } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, encodeChat } from '../src/llm/tokenizer';
import { serve, type Server } from '../src/llm/serve';
import { saveDecoder, loadDecoder, readDecoderInfo } from '../src/llm/decoder-checkpoint';
import { generate, generateTokens } from '../src/llm';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-serve-'));
const tok = new ByteTokenizer();
manualSeed(0);
const model = new GPT({ vocabSize: tok.vocabSize, contextLength: 64, dModel: 16, nLayer: 1, nHead: 2 });
let server: Server;
before(async () => {
  server = await serve({ model, tokenizer: tok, modelName: 'tiny' });
});
after(async () => {
  await server.close();
  model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const post = async (body: unknown) => {
  const res = await fetch(`${server.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
};
const events = (text: string) => text.split('\n\n').filter((e) => e.startsWith('data: ') && !e.includes('[DONE]')).map((e) => JSON.parse(e.slice(6)));
const msgs = [{ role: 'user', content: 'Tell me a fortune.' }];

describe('serve', () => {
  it('JSON answers: n choices, logprobs with top_logprobs, usage, seeded and reproducible', async () => {
    const body = { model: 'tiny', messages: msgs, max_tokens: 12, n: 2, seed: 5, temperature: 1.2, logprobs: true, top_logprobs: 3 };
    const a = await post(body);
    assert.equal(a.status, 200, a.text);
    const j = JSON.parse(a.text);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, 'tiny');
    assert.equal(j.choices.length, 2);
    const prompt = encodeChat(tok, msgs as any, { generationPrompt: true }).ids;
    assert.equal(j.usage.prompt_tokens, prompt.length);
    let total = 0;
    for (const c of j.choices) {
      const lp = c.logprobs.content;
      total += lp.length;
      assert.ok(lp.length >= 1 && lp.length <= 12);
      assert.equal(c.finish_reason, lp.length === 12 ? 'length' : 'stop');
      for (const t of lp) {
        assert.equal(t.top_logprobs.length, 3);
        assert.ok(t.logprob <= 0 && t.logprob >= t.top_logprobs[2].logprob - 1e9);
        assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      }
      // the sampled tokens are the model's: same seed, same tokens straight from generate()
      const g = generateTokens(model, prompt, { maxNewTokens: 12, temperature: 1.2, seed: 5 + c.index, stopTokens: [256, 257, 258, 259] });
      assert.equal(c.message.content, tok.decode(g.tokens));
      assert.ok(Math.abs(lp[0].logprob - g.steps[0].logprob) < 1e-9);
    }
    assert.equal(j.usage.completion_tokens, total);
    const b = JSON.parse((await post(body)).text);
    assert.deepEqual(b.choices.map((c: any) => c.message.content), j.choices.map((c: any) => c.message.content));
  });

  it('SSE streaming gives the same text as JSON, then usage and [DONE]', async () => {
    const body = { model: 'tiny', messages: msgs, max_tokens: 16, seed: 9, temperature: 0.8 };
    const plain = JSON.parse((await post(body)).text).choices[0].message.content;
    const s = await post({ ...body, stream: true, stream_options: { include_usage: true }, logprobs: true, top_logprobs: 2 });
    assert.ok(s.text.trimEnd().endsWith('data: [DONE]'));
    const ev = events(s.text);
    const text = ev.filter((e) => e.choices.length).map((e) => e.choices[0].delta.content ?? '').join('');
    assert.equal(text, plain);
    assert.ok(ev.some((e) => e.choices[0]?.finish_reason));
    const nLp = ev.flatMap((e) => e.choices[0]?.logprobs?.content ?? []).length;
    assert.equal(ev.at(-1).usage.completion_tokens, nLp);
  });

  it('stop strings cut the answer before the stop text, also when streaming', async () => {
    const body = { model: 'tiny', messages: msgs, max_tokens: 40, seed: 3, temperature: 0 };
    const full: string = JSON.parse((await post(body)).text).choices[0].message.content;
    assert.ok(full.length >= 6, `greedy answer too short to test stops: ${JSON.stringify(full)}`);
    const stop = full.slice(3, 5);
    const expect = full.slice(0, full.indexOf(stop));
    const j = JSON.parse((await post({ ...body, stop })).text);
    assert.equal(j.choices[0].message.content, expect);
    assert.equal(j.choices[0].finish_reason, 'stop');
    const s = events((await post({ ...body, stop: [stop], stream: true })).text);
    assert.equal(s.map((e) => e.choices[0]?.delta?.content ?? '').join(''), expect);
  });

  it('bad requests get 400 naming the field; unknown routes 404', async () => {
    let r = await post({ messages: [] });
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.text).error.message, /'messages' must be a non-empty array/);
    r = await post({ messages: msgs, temperature: 3 });
    assert.match(JSON.parse(r.text).error.message, /'temperature' must be a number in \[0, 2\], got 3/);
    r = await post({ messages: msgs, top_logprobs: 2 });
    assert.match(JSON.parse(r.text).error.message, /needs 'logprobs': true/);
    r = await post({ messages: [{ role: 'user', content: 'x'.repeat(80) }] });
    assert.match(JSON.parse(r.text).error.message, /the prompt has 85 tokens; the model's context length is 64/);
    const m = await fetch(`${server.url}/models`);
    assert.equal(((await m.json()) as any).data[0].id, 'tiny');
    assert.equal((await fetch(`${server.url}/embeddings`, { method: 'POST', body: '{}' })).status, 404);
    const legacy = await fetch(`${server.url}/completions`, { method: 'POST', body: '{}' });
    assert.equal(legacy.status, 400);
    assert.equal(((await legacy.json()) as { error: { param: string } }).error.param, 'prompt');
  });

  it('generate() writes a data set from the served checkpoint, JSON and streaming, with logprobs', async () => {
    const file = path.join(tmp, 'model.safetensors');
    saveDecoder(model, file, tok);
    assert.equal(readDecoderInfo(file).tokenizer, 'bytes');
    const loaded = loadDecoder(file);
    const s2 = await serve({ model: loaded.model, tokenizer: loaded.tokenizer });
    try {
      const input = path.join(tmp, 'prompts.jsonl');
      fs.writeFileSync(input, ['Q1', 'Q2', 'Q3'].map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n');
      for (const stream of [false, true]) {
        const out = path.join(tmp, `out-${stream}`);
        const summary = await generate(
          {
            input, output: { dir: out },
            teacher: { baseUrl: s2.url, model: 'tsdistill-decoder', n: 2, seed: 1, maxTokens: 10, temperature: 1, topLogprobs: 2, stream },
            requests: { concurrency: 3, timeoutMs: 20000 },
            curation: { minChars: 0, dropTruncated: false, dedup: 'none' },
          },
          { progress: false, log: () => {} },
        );
        const lines = fs.readFileSync(path.join(out, 'samples.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
        assert.equal(summary.total, 6);
        assert.equal(lines.length + summary.rejected, 6, JSON.stringify(summary));
        assert.ok(lines.length >= 1);
        for (const l of lines) assert.equal(l.messages.at(-1).role, 'assistant');
        const withText = lines.filter((l) => l.messages.at(-1).content !== '');
        assert.ok(withText.length >= 1);
        for (const l of withText) assert.ok(Array.isArray(l.logprobs) && l.logprobs[0].top_logprobs.length === 2);
      }
      assert.ok(s2.stats.requests >= 12);
    } finally {
      await s2.close();
      loaded.model.dispose();
    }
  });
});
