// `generate` and the request forms of the OpenAI specification, against the fake server: max_completion_tokens by
// default and max_tokens where an endpoint asks for it, stream_options left out per endpoint, several samples of a
// prompt in one request (`n`) kept apart by choices[].index in JSON and in interleaved streams, exactly once across
// failures, resumes and servers that ignore `n`, and base URLs with credentials refused before anything is written.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { chatCompletion, generate, readPrompts, sampleId, validateGenerateConfig, RequestError, type GenerateConfigInput, type GenerateSummary } from '../src/llm';
import { startFakeServer, type FakeRequest } from './fake-openai';
import { assertExactlyOnce, readJsonl } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-gen-openai-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => path.join(tmp, `run-${++dirs}`);
const quiet = { progress: false, log: () => {} };

const input = path.join(tmp, 'prompts.jsonl');
fs.writeFileSync(input, Array.from({ length: 4 }, (_, i) => JSON.stringify({ id: `p${i}`, prompt: `Question ${i}?` })).join('\n') + '\n');
const prompts = readPrompts(input);
const idsFor = (n: number) => prompts.flatMap((p) => Array.from({ length: n }, (_, k) => sampleId(p.id, k)));

function config(url: string, out: string, teacher: Record<string, unknown> = {}, requests: Record<string, unknown> = {}): GenerateConfigInput {
  return {
    input, output: { dir: out },
    teacher: { baseUrl: url, model: 'fake', seed: 10, maxTokens: 32, ...teacher } as any,
    requests: { concurrency: 3, timeoutMs: 3000, backoffMs: 5, maxBackoffMs: 20, ...requests },
    curation: { dedup: 'none', minChars: 0 },
  };
}

/** sample id → the assistant's text, from samples.jsonl. */
const answers = (dir: string) => new Map(readJsonl(path.join(dir, 'samples.jsonl')).map((l) => [l.id as string, l.messages.at(-1).content as string]));
const summaryOf = (dir: string): GenerateSummary => JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));

describe('generate: OpenAI request forms', () => {
  it('sends max_completion_tokens by default, max_tokens where an endpoint asks, and stream_options only where wanted', async () => {
    const a = await startFakeServer();
    const b = await startFakeServer();
    try {
      await generate(config(a.url, newDir(), { stream: true }), quiet);
      assert.ok(a.requests.length === 4);
      for (const r of a.requests) {
        assert.equal(r.body.max_completion_tokens, 32);
        assert.ok(!('max_tokens' in r.body));
        assert.deepEqual(r.body.stream_options, { include_usage: true });
      }
      a.requests.length = 0;
      await generate(config(a.url, newDir(), { stream: true, maxTokensField: 'max_tokens', streamOptions: false }), quiet);
      for (const r of a.requests) {
        assert.equal(r.body.max_tokens, 32);
        assert.ok(!('max_completion_tokens' in r.body) && !('stream_options' in r.body));
      }
      // several endpoints: each its own form, the teacher's being the default
      a.requests.length = 0;
      const out = newDir();
      const s = await generate(
        {
          ...config(a.url, out, { stream: true, n: 2 }),
          teacher: {
            model: 'fake', seed: 10, maxTokens: 32, stream: true, n: 2, streamOptions: false,
            endpoints: [{ baseUrl: a.url }, { baseUrl: b.url, maxTokensField: 'max_tokens', streamOptions: true }],
          },
        },
        quiet,
      );
      assert.equal(s.written, 8);
      assert.ok(a.requests.length > 0 && b.requests.length > 0);
      for (const r of a.requests) assert.ok(r.body.max_completion_tokens === 32 && !('max_tokens' in r.body) && !('stream_options' in r.body));
      for (const r of b.requests) assert.ok(r.body.max_tokens === 32 && !('max_completion_tokens' in r.body) && r.body.stream_options?.include_usage === true);
      // without stream_options there is no usage chunk; the samples are written all the same
      assert.ok(readJsonl(path.join(out, 'samples.jsonl')).some((l) => l.meta.usage === null));
    } finally {
      await a.close();
      await b.close();
    }
  });

  for (const stream of [false, true])
    it(`asks for several samples in one request with n, each choice its own sample (${stream ? 'interleaved stream' : 'JSON'})`, async () => {
      const server = await startFakeServer();
      try {
        const one = newDir();
        await generate(config(server.url, one, { n: 5, stream, topLogprobs: 2 }), quiet);
        assert.equal(server.requests.length, 20);
        server.requests.length = 0;
        const grouped = newDir();
        const s = await generate(config(server.url, grouped, { n: 5, stream, topLogprobs: 2, samplesPerRequest: 3 }), quiet);
        assert.ok(s.reconciled && s.complete && s.written === 20, JSON.stringify(s));
        // blocks of 3: samples 0-2 with seed + 0 and n = 3, samples 3-4 with seed + 3 and n = 2
        assert.equal(server.requests.length, 8);
        for (const p of prompts) {
          const mine = server.requests.filter((r) => r.prompt === p.messages[0].content).map((r) => [r.body.n, r.body.seed]);
          assert.deepEqual(mine.sort(), [[2, 13], [3, 10]]);
        }
        // the fake answers choice j as if asked with seed + j: the same samples as one request each, none mixed up
        const a = answers(one);
        const g = answers(grouped);
        assert.equal(g.size, 20);
        for (const [id, text] of a) assert.equal(g.get(id), text, id);
        for (const p of prompts) for (let k = 0; k < 5; k++) assert.equal(g.get(sampleId(p.id, k)), `Echo: ${p.messages[0].content} #${10 + k}`);
        const lines = readJsonl(path.join(grouped, 'samples.jsonl'));
        for (const l of lines) {
          // each choice's own logprobs: its tokens, not its neighbour's
          assert.equal(l.logprobs.map((t: any) => t.token).join(''), l.messages.at(-1).content);
          assert.equal(l.meta.request_samples, l.meta.sample < 3 ? 3 : 2);
          assert.equal(l.meta.choice, l.meta.sample < 3 ? l.meta.sample : l.meta.sample - 3);
        }
        assertExactlyOnce(grouped, idsFor(5));
      } finally {
        await server.close();
      }
    });

  it('exactly once with n: requests failing for good fail all their samples, a rerun and a changed grouping resume', async () => {
    // the first attempt of every request for 'Question 1?' and 'Question 2?' is cut mid-stream or answered 500;
    // 'Question 3?' fails for good in the first run
    let failing = true;
    const server = await startFakeServer({
      fault: (r: FakeRequest) =>
        r.prompt === 'Question 3?' && failing ? { status: 400, body: '{"error":{"message":"refused"}}' } :
        r.attempt === 1 && r.prompt === 'Question 1?' ? 'drop' : r.attempt === 1 && r.prompt === 'Question 2?' ? { status: 500 } : null,
    });
    try {
      const out = newDir();
      // first run: 2 samples per prompt, both in one request
      let s = await generate(config(server.url, out, { n: 2, stream: true, samplesPerRequest: 2 }), quiet);
      assert.deepEqual([s.written, s.failed, s.pending, s.reconciled], [6, 2, 0, true]);
      assertExactlyOnce(out, idsFor(2));
      const f = readJsonl(path.join(out, 'failures.jsonl'));
      assert.deepEqual(f.map((x) => x.sample).sort(), [0, 1]);
      assert.ok(f.every((x) => x.prompt_id === 'p3' && /HTTP 400/.test(x.error)));
      // second run: n grows to 5 in blocks of 3; block [0, 1, 2] asks only for sample 2 (or, for p3, all three)
      failing = false;
      server.requests.length = 0;
      s = await generate(config(server.url, out, { n: 5, stream: true, samplesPerRequest: 3 }), quiet);
      assert.ok(s.reconciled && s.complete && s.written === 20 && s.resumed === 6, JSON.stringify(s));
      assertExactlyOnce(out, idsFor(5));
      // the (n, seed) of each request sent, retries counted once
      const asked = (prompt: string) => [...new Set(server.requests.filter((r) => r.prompt === prompt).map((r) => `n=${r.body.n ?? 1} seed=${r.seed}`))].sort();
      assert.deepEqual(asked('Question 0?'), ['n=1 seed=12', 'n=2 seed=13']);
      assert.deepEqual(asked('Question 1?'), ['n=1 seed=12', 'n=2 seed=13']);
      assert.deepEqual(asked('Question 3?'), ['n=2 seed=13', 'n=3 seed=10']);
      const g = answers(out);
      for (const p of prompts) for (let k = 0; k < 5; k++) assert.equal(g.get(sampleId(p.id, k)), `Echo: ${p.messages[0].content} #${10 + k}`);
    } finally {
      await server.close();
    }
  });

  it('several samples per request through several endpoints, one of them failing: each sample once', async () => {
    const good = await startFakeServer();
    const bad = await startFakeServer({ fault: () => ({ status: 503 }) });
    try {
      const out = newDir();
      const s = await generate(
        {
          ...config(good.url, out),
          teacher: { model: 'fake', seed: 10, maxTokens: 32, n: 3, samplesPerRequest: 3, stream: true, endpoints: [{ baseUrl: bad.url }, { baseUrl: good.url }] },
          requests: { concurrency: 2, timeoutMs: 3000, backoffMs: 5, maxBackoffMs: 20, cooldownAfter: 1, cooldownMs: 60_000, maxRetries: 3 },
        },
        quiet,
      );
      assert.ok(s.complete && s.reconciled && s.written === 12, JSON.stringify(s));
      assertExactlyOnce(out, idsFor(3));
      assert.ok(bad.requests.length >= 1 && bad.requests.every((r) => r.body.n === 3));
      assert.equal(good.requests.length, 4);
      const g = answers(out);
      for (const p of prompts) for (let k = 0; k < 3; k++) assert.equal(g.get(sampleId(p.id, k)), `Echo: ${p.messages[0].content} #${10 + k}`);
    } finally {
      await good.close();
      await bad.close();
    }
  });

  it('a server that ignores n: the missing choices fail with a message saying what to change, a rerun with one per request completes', async () => {
    const server = await startFakeServer({ ignoreN: true });
    try {
      for (const stream of [false, true]) {
        const out = newDir();
        const s = await generate(config(server.url, out, { n: 3, stream, samplesPerRequest: 3 }), quiet);
        assert.deepEqual([s.written, s.failed, s.pending, s.reconciled], [4, 8, 0, true]);
        assertExactlyOnce(out, idsFor(3));
        for (const f of readJsonl(path.join(out, 'failures.jsonl'))) {
          assert.ok(f.sample >= 1);
          assert.equal(f.kind, 'malformed');
          assert.match(f.error, new RegExp(`the answer has no choice with index ${f.sample} \\(1 choice for n = 3\\); a server that ignores n needs teacher\\.samplesPerRequest: 1`));
        }
        const again = await generate(config(server.url, out, { n: 3, stream, samplesPerRequest: 1 }), quiet);
        assert.ok(again.complete && again.reconciled && again.written === 12);
        assertExactlyOnce(out, idsFor(3));
      }
    } finally {
      await server.close();
    }
  });

  it('refuses credentials in a base URL, naming the key, before anything is sent or written', async () => {
    const secret = 'hunter2-Zq8vY3';
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ baseUrl: `http://user:${secret}@127.0.0.1:1/v1` }, /teacher\.baseUrl: holds credentials \(a user name and password before the host \(…@127\.0\.0\.1:1\)\)/],
      [{ baseUrl: `http://${secret}@127.0.0.1:1/v1` }, /teacher\.baseUrl: holds credentials \(a user name before the host/],
      [{ baseUrl: undefined, endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1' }, { baseUrl: `https://api.example.com/v1?api-version=1&api_key=${secret}` }] }, /teacher\.endpoints\.1\.baseUrl: holds credentials \(the query parameter 'api_key'\)/],
      [{ baseUrl: `http://127.0.0.1:1/v1?access_token=${secret}` }, /teacher\.baseUrl: holds credentials \(the query parameter 'access_token'\)/],
      [{ extraBody: { n: 2 } }, /teacher\.extraBody\.n: samples per prompt are teacher\.n, and how many of them one request asks for teacher\.samplesPerRequest/],
    ];
    for (const [teacher, re] of cases) {
      const out = newDir();
      const err = await generate(config('http://127.0.0.1:1/v1', out, teacher), quiet).then(() => null, (e: Error) => e);
      assert.ok(err, JSON.stringify(teacher));
      assert.match(err.message, re);
      assert.match(err.message, /apiKeyEnv|samplesPerRequest/);
      assert.ok(!err.message.includes(secret), err.message);
      assert.ok(!fs.existsSync(out), 'nothing written');
    }
    // a query parameter that is not a credential is fine
    validateGenerateConfig(config('https://x.example/v1?api-version=2024-10-21', newDir()));
    // the client refuses such a URL too, without quoting it (fetch's own error would)
    await assert.rejects(chatCompletion({ baseUrl: `http://u:${secret}@127.0.0.1:1/v1`, timeoutMs: 1000 }, { model: 'm', messages: [] }), (e: RequestError) => {
      assert.equal(e.retryable, false);
      assert.ok(!e.message.includes(secret), e.message);
      return /the base URL holds credentials/.test(e.message);
    });
  });
});
