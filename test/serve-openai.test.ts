// `serve` checked with the official `openai` Node SDK: models list and retrieve, chat with the developer role, n,
// logprobs and the refusal fields, streams kept apart by choice index, errors as OpenAI shapes them (unknown model,
// bad parameters, a missing or wrong API key on every route), the SDK's own retries through the fault proxy, `generate`
// asking for several samples per request through the same faults, and `tsdistill serve --api-key-file`.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { manualSeed } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, generate, readPrompts, sampleId, saveDecoder, serve, startFaultProxy, type Server } from '../src/llm';
import { serveApiKey } from '../src/cli/llm';
import { assertExactlyOnce, readJsonl, startServeProcess } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-serve-openai-'));
const KEY = 'sk-local-7Hq2VbX9';
const tok = new ByteTokenizer();
manualSeed(0);
const model = new GPT({ vocabSize: tok.vocabSize, contextLength: 64, dModel: 16, nLayer: 1, nHead: 2 });
let server: Server;
before(async () => {
  server = await serve({ model, tokenizer: tok, modelName: 'tiny', apiKey: KEY, cors: 'http://localhost:5173', maxBodyBytes: 4096 });
});
after(async () => {
  await server.close();
  model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const client = (o: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) => new OpenAI({ baseURL: server.url, apiKey: KEY, maxRetries: 0, ...o });
const user = (content: string) => ({ role: 'user' as const, content });

/** The texts of a stream's choices by index, and each choice's finish reason. */
async function collect(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) {
  const text = new Map<number, string>();
  const finish = new Map<number, string | null>();
  const tokens = new Map<number, number>();
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text.set(c.index, (text.get(c.index) ?? '') + (c.delta.content ?? ''));
      if (c.finish_reason) finish.set(c.index, c.finish_reason);
      if (c.logprobs) {
        assert.equal(c.logprobs.refusal, null);
        tokens.set(c.index, (tokens.get(c.index) ?? 0) + (c.logprobs.content?.length ?? 0));
      }
    }
  }
  return { text, finish, tokens, usage };
}

describe('serve and the official openai SDK', () => {
  it('lists and retrieves the model; chat with developer role, n, logprobs and refusal fields; streams by choice index', async () => {
    const c = client();
    const list = await c.models.list();
    assert.deepEqual(list.data.map((m) => m.id), ['tiny']);
    const m = await c.models.retrieve('tiny');
    assert.deepEqual([m.id, m.object, m.owned_by], ['tiny', 'model', 'tsdistill']);

    const base = { model: 'tiny', max_completion_tokens: 10, seed: 4, temperature: 1.1 };
    const asDeveloper = await c.chat.completions.create({ ...base, messages: [{ role: 'developer', content: 'Be terse.' }, user('A fortune?')], n: 3, logprobs: true, top_logprobs: 2 });
    const asSystem = await c.chat.completions.create({ ...base, messages: [{ role: 'system', content: 'Be terse.' }, user('A fortune?')], n: 3 });
    assert.equal(asDeveloper.object, 'chat.completion');
    assert.deepEqual(asDeveloper.choices.map((x) => x.index), [0, 1, 2]);
    // developer messages are read as system messages: the same prompt, the same seeded answers
    assert.deepEqual(asDeveloper.choices.map((x) => x.message.content), asSystem.choices.map((x) => x.message.content));
    assert.ok(new Set(asDeveloper.choices.map((x) => x.message.content)).size > 1, 'the choices differ (seed + index)');
    let total = 0;
    for (const x of asDeveloper.choices) {
      assert.equal(x.message.role, 'assistant');
      assert.equal(x.message.refusal, null);
      assert.equal(x.logprobs!.refusal, null);
      const n = x.logprobs!.content!.length;
      assert.ok(n >= 1 && n <= 10 && (x.finish_reason === 'length') === (n === 10), `${n} tokens, ${x.finish_reason}`);
      assert.ok(x.logprobs!.content!.every((t) => t.top_logprobs.length === 2 && t.logprob <= 0));
      total += x.logprobs!.content!.length;
    }
    assert.equal(asDeveloper.usage!.completion_tokens, total);

    // streamed: the three choices' chunks interleave; kept apart by index they give the JSON answers
    const stream = await c.chat.completions.create({
      ...base, messages: [{ role: 'developer', content: 'Be terse.' }, user('A fortune?')], n: 3, stream: true, stream_options: { include_usage: true }, logprobs: true,
    });
    const s = await collect(stream);
    assert.deepEqual([...s.text.keys()].sort(), [0, 1, 2]);
    for (const x of asDeveloper.choices) {
      assert.equal(s.text.get(x.index), x.message.content);
      assert.equal(s.finish.get(x.index), x.finish_reason);
      assert.equal(s.tokens.get(x.index), x.logprobs!.content!.length);
    }
    assert.equal(s.usage!.completion_tokens, total);
    // max_tokens, the older name, still limits the answer
    const old = await c.chat.completions.create({ model: 'tiny', messages: [user('A fortune?')], max_tokens: 3, temperature: 0 });
    assert.ok(old.usage!.completion_tokens <= 3);
  });

  it('answers errors as OpenAI shapes them: unknown model, bad parameters, unknown routes', async () => {
    const c = client();
    const err = async (p: Promise<unknown>) => p.then(() => assert.fail('expected an error'), (e) => e as InstanceType<typeof OpenAI.APIError>);
    let e = await err(c.chat.completions.create({ model: 'gpt-4o', messages: [user('hi')] }));
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.deepEqual([e.status, e.code, e.type, e.param], [404, 'model_not_found', 'invalid_request_error', 'model']);
    assert.match(e.message, /The model 'gpt-4o' does not exist/);
    e = await err(c.models.retrieve('gpt-4o'));
    assert.ok(e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
    e = await err(c.chat.completions.create({ model: 'tiny', messages: [user('hi')], temperature: 3 }));
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.deepEqual([e.code, e.param], ['invalid_value', 'temperature']);
    e = await err(c.chat.completions.create({ model: 'tiny', messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }));
    assert.deepEqual([e.status, e.param], [400, 'messages[0].role']);
    assert.match(e.message, /must be system, developer, user or assistant, got "tool"/);
    e = await err(c.chat.completions.create({ model: 'tiny', messages: [user('x'.repeat(80))] }));
    assert.deepEqual([e.status, e.code, e.param], [400, 'context_length_exceeded', 'messages']);
    const raw = await fetch(`${server.url}/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: '{}' });
    assert.equal(raw.status, 404);
    assert.deepEqual(Object.keys(((await raw.json()) as any).error).sort(), ['code', 'message', 'param', 'type']);
  });

  it('checks the API key on every request (401 as OpenAI answers it); CORS preflight and the body limit still work', async () => {
    const wrong = client({ apiKey: 'sk-wrong' });
    for (const call of [() => wrong.models.list(), () => wrong.models.retrieve('tiny'), () => wrong.chat.completions.create({ model: 'tiny', messages: [user('hi')] })]) {
      const e = await call().then(() => null, (x) => x);
      assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
      assert.deepEqual([e.status, e.code, e.type], [401, 'invalid_api_key', 'invalid_request_error']);
      assert.ok(!e.message.includes('sk-wrong'));
    }
    const before = server.stats.requests;
    for (const [url, init] of [
      [`${server.url}/models`, {}],
      [`${server.url}/models/tiny`, {}],
      [`${server.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny', messages: [user('hi')] }) }],
      [`${server.url}/chat/completions`, { method: 'POST', headers: { authorization: `Basic ${KEY}` }, body: '{}' }],
      [`${server.url}/nowhere`, {}],
    ] as [string, RequestInit][]) {
      const r = await fetch(url, init);
      assert.equal(r.status, 401, url);
      assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:5173', 'a browser may read the refusal');
      const body = (await r.json()) as any;
      assert.deepEqual([body.error.type, body.error.param, body.error.code], ['invalid_request_error', null, null]);
      assert.match(body.error.message, /You didn't provide an API key/);
    }
    assert.equal(server.stats.requests, before, 'no generation for a refused request');
    // preflights carry no credentials and are answered; the request that follows must bring the key
    const pre = await fetch(`${server.url}/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
    const big = await fetch(`${server.url}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: 'tiny', messages: [user('x'.repeat(5000))] }) });
    assert.equal(big.status, 413);
    assert.deepEqual(Object.keys(((await big.json()) as any).error).sort(), ['code', 'message', 'param', 'type']);
    await assert.rejects(serve({ model, tokenizer: tok, apiKey: ' ' }), /apiKey must be a non-empty string/);
  });

  it('through the fault proxy: the SDK retries 429, 500 and resets and gets the unfaulted answer; a cut stream is an error', async () => {
    const body = { model: 'tiny', messages: [user('Tell me')], max_completion_tokens: 8, seed: 2, temperature: 1 };
    const expected = (await client().chat.completions.create(body)).choices[0].message.content;
    const proxy = await startFaultProxy({ target: server.url, faults: { schedule: ['429', '500', 'reset', null, 'drop'], retryAfterS: 0.05, dropAfterBytes: 40 } });
    try {
      const c = new OpenAI({ baseURL: proxy.url, apiKey: KEY, maxRetries: 3 });
      const got = await c.chat.completions.create(body);
      assert.equal(got.choices[0].message.content, expected);
      assert.deepEqual({ ...proxy.counts }, { 429: 1, 500: 1, stall: 0, drop: 0, reset: 1, none: 1 });
      // the answer cut mid-stream: the SDK does not retry a stream it has begun to read
      const stream = await c.chat.completions.create({ ...body, stream: true });
      await assert.rejects(collect(stream));
      assert.equal(proxy.counts.drop, 1);
    } finally {
      await proxy.close();
    }
  });

  it('generate asks serve for several samples per request through faults: each sample once, equal to one request per sample', async () => {
    const input = path.join(tmp, 'prompts.jsonl');
    fs.writeFileSync(input, Array.from({ length: 5 }, (_, i) => JSON.stringify({ id: `p${i}`, prompt: `Q${i}?` })).join('\n') + '\n');
    const ids = readPrompts(input).flatMap((p) => Array.from({ length: 4 }, (_, k) => sampleId(p.id, k)));
    const cfg = (url: string, out: string, stream: boolean, samplesPerRequest: number) => ({
      input, output: { dir: out },
      teacher: { baseUrl: url, model: 'tiny', n: 4, samplesPerRequest, seed: 3, maxTokens: 8, temperature: 1, stream, topLogprobs: 1 },
      requests: { concurrency: 3, timeoutMs: 600, maxRetries: 8, backoffMs: 5, maxBackoffMs: 20 },
      curation: { minChars: 0, dropTruncated: false, dedup: 'none' as const },
    });
    const quiet = { progress: false, log: () => {}, apiKey: KEY };
    const proxy = await startFaultProxy({ target: server.url, faults: { rates: { 429: 0.1, 500: 0.1, drop: 0.15, reset: 0.05, stall: 0.05 }, retryAfterS: 0.02, stallMs: 900, dropAfterBytes: 120 }, seed: 5 });
    try {
      for (const stream of [false, true]) {
        const one = path.join(tmp, `one-${stream}`);
        const grouped = path.join(tmp, `grouped-${stream}`);
        await generate(cfg(server.url, one, stream, 1), quiet);
        const s = await generate(cfg(proxy.url, grouped, stream, 4), quiet);
        assert.ok(s.complete && s.reconciled && s.written === 20, JSON.stringify(s));
        const { samples } = assertExactlyOnce(grouped, ids);
        const reference = new Map(readJsonl(path.join(one, 'samples.jsonl')).map((l) => [l.id, l]));
        for (const l of samples) {
          const r = reference.get(l.id);
          assert.equal(l.messages.at(-1).content, r.messages.at(-1).content, l.id);
          // the same tokens; log-probabilities to float32 rounding (rows decoded in other batches)
          assert.deepEqual(l.logprobs.map((t: any) => [t.token, t.top_logprobs[0].token]), r.logprobs.map((t: any) => [t.token, t.top_logprobs[0].token]), l.id);
          l.logprobs.forEach((t: any, i: number) => assert.ok(Math.abs(t.logprob - r.logprobs[i].logprob) < 1e-5, l.id));
        }
      }
      const c = proxy.counts;
      assert.ok(c[429] + c[500] + c.drop + c.reset + c.stall >= 2, JSON.stringify(c));
    } finally {
      await proxy.close();
    }
  });

  it('tsdistill serve --api-key-file: refuses requests without the key, answers the SDK with it', async () => {
    const ckpt = path.join(tmp, 'tiny.safetensors');
    saveDecoder(model, ckpt, tok);
    const keyFile = path.join(tmp, 'key.txt');
    fs.writeFileSync(keyFile, `${KEY}\n`);
    const srv = await startServeProcess(cli, [ckpt, '--port', '0', '--model-name', 'tiny', '--threads', '1', '--api-key-file', keyFile, '--quiet'], /at (http:\/\/127\.0\.0\.1:\d+\/v1)/);
    try {
      assert.match(srv.out.stdout, /requests must bring the API key/);
      assert.ok(!srv.out.stdout.includes(KEY));
      assert.equal((await fetch(`${srv.url}/models`)).status, 401);
      const c = new OpenAI({ baseURL: srv.url, apiKey: KEY, maxRetries: 0 });
      const r = await c.chat.completions.create({ model: 'tiny', messages: [user('hi')], max_completion_tokens: 4 });
      assert.ok(r.usage!.completion_tokens >= 1 && r.usage!.completion_tokens <= 4);
    } finally {
      assert.equal(await srv.stop(), 0, srv.out.stderr);
    }
    // the options as the command reads them
    assert.equal(serveApiKey({ 'api-key-file': keyFile }), KEY);
    assert.equal(serveApiKey({ 'api-key': KEY }), KEY);
    assert.equal(serveApiKey({}), undefined);
    assert.throws(() => serveApiKey({ 'api-key': 'a', 'api-key-file': keyFile }), /give --api-key or --api-key-file, not both/);
    assert.throws(() => serveApiKey({ 'api-key-file': path.join(tmp, 'missing.txt') }), /--api-key-file .*missing\.txt: cannot read it \(ENOENT\)/);
    assert.throws(() => serveApiKey({ 'api-key': 'two words' }), /--api-key: the key must be one word without white space/);
    fs.writeFileSync(keyFile, '\n');
    assert.throws(() => serveApiKey({ 'api-key-file': keyFile }), /--api-key-file .*key\.txt: the key must be one word without white space, got an empty one/);
  });
});
