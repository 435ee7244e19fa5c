// `generate` over several endpoints (teacher.endpoints), each a fake OpenAI-compatible server on its own port:
// requests follow the weights, a dead endpoint's work goes to the others, an endpoint killed mid-run loses and
// duplicates nothing, a late answer after a retry elsewhere is dropped and counted, an aborted run resumes exactly
// once (also with another set of endpoints), and when every endpoint fails the error names each one.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import {
  EndpointsUnavailable, generate, GenerationInterrupted, readPrompts, sampleId, validateGenerateConfig,
  type GenerateConfigInput, type GenerateSummary,
} from '../src/llm';
import { startFakeServer, type FakeServer, type FakeServerOptions } from './fake-openai';
import { assertExactlyOnce, readJsonl } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-gen-ep-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => path.join(tmp, `run-${++dirs}`);
const quiet = { progress: false, log: () => {} };

function writePrompts(name: string, count: number): { file: string; ids: (n: number) => string[] } {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Array.from({ length: count }, (_, i) => JSON.stringify({ id: `${name}-${i}`, prompt: `prompt ${i} of ${name}` })).join('\n') + '\n');
  return { file, ids: (n) => readPrompts(file).flatMap((p) => Array.from({ length: n }, (_, k) => sampleId(p.id, k))) };
}

type Ep = { baseUrl: string; weight?: number; model?: string; concurrency?: number };
function config(endpoints: Ep[], input: string, out: string, extra: { teacher?: object; requests?: object } = {}): GenerateConfigInput {
  return {
    input,
    output: { dir: out },
    teacher: { endpoints, model: 'fake', seed: 100, ...extra.teacher } as any,
    requests: { concurrency: 4, timeoutMs: 2000, backoffMs: 5, maxBackoffMs: 20, ...extra.requests },
    curation: { dedup: 'none' },
  };
}

async function servers(count: number, o: FakeServerOptions = {}): Promise<FakeServer[]> {
  return Promise.all(Array.from({ length: count }, () => startFakeServer(o)));
}
/** A base URL where nothing listens (connection refused). */
async function deadUrl(): Promise<string> {
  const s = await startFakeServer();
  await s.close();
  return s.url;
}
const closeAll = (list: FakeServer[]) => Promise.all(list.map((s) => s.close()));
const byUrl = (s: GenerateSummary) => new Map(s.this_run.endpoints!.map((r) => [r.url, r]));

describe('generate: several endpoints', () => {
  it('validates teacher.endpoints, naming the key at fault', () => {
    const base = { input: 'x.jsonl', output: 'o' };
    const bad = (teacher: object, re: RegExp) => assert.throws(() => validateGenerateConfig({ ...base, teacher }), re);
    bad({ model: 'm' }, /teacher\.baseUrl: required: a baseUrl, or a list of endpoints/);
    bad({ model: 'm', baseUrl: 'http://127.0.0.1:1/v1', endpoints: [{ baseUrl: 'http://127.0.0.1:2/v1' }] }, /teacher\.endpoints: give either baseUrl or endpoints, not both/);
    bad({ model: 'm', endpoints: [] }, /teacher\.endpoints: expected at least one endpoint/);
    bad({ model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1', weight: 0 }] }, /teacher\.endpoints\.0\.weight: /);
    bad({ model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1', weight: -2 }] }, /teacher\.endpoints\.0\.weight: /);
    bad({ model: 'm', endpoints: [{ baseUrl: 'not a url' }] }, /teacher\.endpoints\.0\.baseUrl: /);
    bad(
      { model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1' }, { baseUrl: 'http://127.0.0.1:2/v1' }, { baseUrl: 'HTTP://127.0.0.1:1/v1/' }] },
      /teacher\.endpoints\.2\.baseUrl: HTTP:\/\/127\.0\.0\.1:1\/v1\/ is teacher\.endpoints\.0\.baseUrl again/,
    );
    bad({ model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1', wieght: 2 }] }, /teacher\.endpoints\.0\.wieght: unknown key; did you mean 'teacher\.endpoints\.0\.weight'\?/);
    bad({ model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1', apiKeyEnv: 'not-a-name' }] }, /teacher\.endpoints\.0\.apiKeyEnv: expected an environment variable name/);
    // the example in docs/llm.md is a valid teacher and requests section
    const doc = fs.readFileSync(path.join(root, 'docs', 'llm.md'), 'utf8');
    const block = /^### Several endpoints\n[\s\S]*?```yaml\n([\s\S]*?)```/m.exec(doc);
    assert.ok(block, 'docs/llm.md has the several-endpoints example');
    const example = validateGenerateConfig({ ...base, ...parseYaml(block[1]) }, 'docs/llm.md');
    assert.deepEqual(example.teacher.endpoints!.map((e) => [e.weight, e.model ?? example.teacher.model]), [[2, 'qwen2.5-7b-instruct'], [2, 'qwen2.5-7b-instruct'], [1, 'Qwen/Qwen2.5-7B-Instruct']]);
    const ok = validateGenerateConfig({ ...base, teacher: { model: 'm', endpoints: [{ baseUrl: 'http://127.0.0.1:1/v1' }, { baseUrl: 'http://127.0.0.1:2/v1', weight: 2.5, concurrency: 2 }] } });
    assert.deepEqual(ok.teacher.endpoints!.map((e) => e.weight), [1, 2.5]);
    assert.deepEqual([ok.requests.cooldownAfter, ok.requests.cooldownMs, ok.requests.lateAnswerMs], [3, 60_000, 0]);
  });

  it('spreads requests in proportion to the weights, the same way every run, with per-endpoint models and counts', async () => {
    const list = await servers(3);
    try {
      const { file, ids } = writePrompts('weights.jsonl', 200);
      const endpoints = [{ baseUrl: list[0].url, weight: 1 }, { baseUrl: list[1].url, weight: 2 }, { baseUrl: list[2].url, weight: 5, model: 'big' }];
      const out = newDir();
      const s = await generate(config(endpoints, file, out), quiet);
      assert.ok(s.complete && s.reconciled && s.written === 200, JSON.stringify(s));
      const counts = list.map((x) => x.requests.length);
      [25, 50, 125].forEach((want, i) => assert.ok(Math.abs(counts[i] - want) <= 10, `endpoint ${i}: ${counts[i]} requests, weight share ${want}`));
      assert.ok(list[2].requests.every((r) => r.body.model === 'big') && list[0].requests.every((r) => r.body.model === 'fake'), 'each endpoint gets its own model name');
      const { samples } = assertExactlyOnce(out, ids(1));
      const from = new Map(samples.map((x) => [x.id, x.meta.endpoint]));
      for (const [i, srv] of list.entries()) assert.equal(samples.filter((x) => x.meta.endpoint === srv.url).length, counts[i]);
      assert.ok(samples.filter((x) => x.meta.endpoint === list[2].url).every((x) => x.meta.model === 'big-served'));
      const reports = s.this_run.endpoints!;
      assert.deepEqual(reports.map((r) => [r.url, r.weight, r.requests, r.successes, r.failures, r.samples]), list.map((x, i) => [x.url, endpoints[i].weight, counts[i], counts[i], 0, counts[i]]));
      assert.ok(Math.abs(reports.reduce((a, r) => a + r.share, 0) - 1) < 1e-9);
      assert.ok(reports.every((r) => r.mean_latency_ms !== null && r.mean_latency_ms >= 0 && r.state === 'up'));
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).this_run.endpoints.map((r: any) => r.samples), counts);
      // deterministic: the same configuration sends the same samples to the same endpoints
      const out2 = newDir();
      await generate(config(endpoints, file, out2), quiet);
      assert.ok(readJsonl(path.join(out2, 'samples.jsonl')).every((x) => from.get(x.id) === x.meta.endpoint));
    } finally {
      await closeAll(list);
    }
  });

  it('an endpoint down from the start: the others do all the work; a per-endpoint concurrency is kept', async () => {
    const [b, c] = await servers(2, { latencyMs: 5 });
    let inFlight = 0;
    let most = 0;
    const capped = await startFakeServer({
      delayMs: () => {
        most = Math.max(most, ++inFlight);
        setTimeout(() => inFlight--, 15);
        return 15;
      },
    });
    try {
      const dead = await deadUrl();
      const { file, ids } = writePrompts('dead.jsonl', 40);
      const out = newDir();
      const logs: string[] = [];
      const endpoints = [{ baseUrl: dead, weight: 3 }, { baseUrl: b.url }, { baseUrl: c.url }, { baseUrl: capped.url, weight: 3, concurrency: 1 }];
      const s = await generate(config(endpoints, file, out, { teacher: { n: 2 }, requests: { concurrency: 6 } }), { progress: true, progressEveryMs: 10, log: (l) => logs.push(l) });
      assert.ok(s.complete && s.reconciled && s.written === 80, JSON.stringify(s));
      assertExactlyOnce(out, ids(2));
      const r = byUrl(s);
      assert.deepEqual([r.get(dead)!.samples, r.get(dead)!.failures, r.get(dead)!.cooldowns, r.get(dead)!.state], [0, 3, 1, 'cooling down']);
      assert.match(r.get(dead)!.last_error!, /ECONNREFUSED/);
      assert.equal(r.get(b.url)!.samples + r.get(c.url)!.samples + r.get(capped.url)!.samples, 80);
      assert.equal(s.this_run.retries, 3, 'each failed attempt on the dead endpoint was retried elsewhere');
      assert.equal(most, 1, 'the endpoint with concurrency 1 never had two requests at once');
      assert.ok(r.get(capped.url)!.samples > 0);
      assert.ok(logs.some((l) => l.includes(`${dead} taken out for 60000 ms after 3 failures in a row`)), logs.join('\n'));
      // progress lines (not a TTY) carry each endpoint's samples, share, failures and state
      const host = (u: string) => new URL(u).host.replace(/\./g, '\\.');
      const progressLine = new RegExp(`^generate: \\d+/80 samples .*; endpoints: ${host(dead)} 0 \\(0 %\\), 3 failed, cooling down; ${host(b.url)} \\d+ \\(\\d+ %\\), 0 failed; `);
      assert.ok(logs.some((l) => progressLine.test(l)), logs.join('\n'));
      assert.ok(logs.some((l) => l.startsWith(`generate:   ${dead} (weight 3): 0 samples (0.0 %), 3 requests, 0 answered, 3 failed, 3 retried`)), logs.join('\n'));
    } finally {
      await closeAll([b, c, capped]);
    }
  });

  it('a Retry-After pauses only the endpoint that sent it; the others go on, and rate limits do not take it out', async () => {
    const a = await startFakeServer({ latencyMs: 10, fault: (r) => (a.requests.indexOf(r) < 2 ? { status: 429, retryAfterMs: 150 } : null) });
    const b = await startFakeServer({ latencyMs: 10 });
    try {
      const { file, ids } = writePrompts('pause.jsonl', 60);
      const out = newDir();
      const s = await generate(config([{ baseUrl: a.url }, { baseUrl: b.url }], file, out, { requests: { concurrency: 2 } }), quiet);
      assert.ok(s.complete && s.reconciled && s.written === 60, JSON.stringify(s));
      assertExactlyOnce(out, ids(1));
      const time = (srv: FakeServer, i: number) => srv.startedAt + srv.requests[i].at;
      assert.ok(a.requests.length > 2, 'a was asked again after the pause');
      assert.ok(time(a, 2) - time(a, 0) >= 145, `a was asked again after ${time(a, 2) - time(a, 0)} ms; it asked for 150`);
      assert.ok(b.requests.filter((_, i) => time(b, i) > time(a, 0) && time(b, i) < time(a, 2)).length >= 4, 'b went on meanwhile');
      const r = byUrl(s).get(a.url)!;
      assert.deepEqual([r.failures, r.retries, r.cooldowns, r.state], [2, 2, 0, 'up']);
      assert.ok(r.samples > 0, 'a took requests again after the pause');
    } finally {
      await closeAll([a, b]);
    }
  });

  it('an endpoint taken out comes back after its cool-down on probation: one more failure takes it out again', async () => {
    // a fails its first 4 requests: 3 in a row take it out; the probe after the cool-down fails and takes it out at once
    const a = await startFakeServer({ latencyMs: 5, fault: (r) => (a.requests.indexOf(r) < 4 ? { status: 503 } : null) });
    const b = await startFakeServer({ latencyMs: 10 });
    try {
      const { file, ids } = writePrompts('probation.jsonl', 100);
      const out = newDir();
      const s = await generate(config([{ baseUrl: a.url }, { baseUrl: b.url }], file, out, { requests: { concurrency: 2, cooldownMs: 120 } }), quiet);
      assert.ok(s.complete && s.reconciled && s.written === 100, JSON.stringify(s));
      assertExactlyOnce(out, ids(1));
      const r = byUrl(s).get(a.url)!;
      assert.deepEqual([r.failures, r.cooldowns, r.state], [4, 2, 'up'], JSON.stringify(r));
      assert.ok(r.samples > 0, 'a took work again after its second cool-down');
      const at = (i: number) => a.requests[i].at;
      assert.ok(at(3) - at(2) >= 115 && at(4) - at(3) >= 115, `a was asked again ${at(3) - at(2)} and ${at(4) - at(3)} ms after being taken out`);
    } finally {
      await closeAll([a, b]);
    }
  });

  it('an endpoint killed mid-run: no sample lost or written twice', async () => {
    const list = await servers(3, { latencyMs: 8 });
    try {
      const { file, ids } = writePrompts('kill.jsonl', 120);
      const out = newDir();
      let killed: Promise<void> | undefined;
      const s = await generate(config(list.map((x) => ({ baseUrl: x.url })), file, out, { requests: { concurrency: 6 } }), {
        ...quiet,
        onSample: (e) => {
          if (e.stats.written >= 30 && !killed) killed = list[0].close();
        },
      });
      await killed;
      assert.ok(s.complete && s.reconciled && s.written === 120, JSON.stringify(s));
      const { samples } = assertExactlyOnce(out, ids(1));
      for (const x of samples) assert.equal(x.messages.at(-1).content, `Echo: ${x.messages.at(-2).content} #100`);
      const r = byUrl(s).get(list[0].url)!;
      assert.ok(r.samples >= 5 && r.samples < 60, `the killed endpoint produced ${r.samples}`);
      assert.ok(r.failures >= 3 && r.cooldowns === 1 && r.state === 'cooling down', JSON.stringify(r));
      assert.equal(s.duplicate_lines, 0);
    } finally {
      await closeAll(list);
    }
  });

  it('a request past its timeout is retried elsewhere; the first answer is kept, the other request abandoned or its answer dropped', async () => {
    // The timeout is 500 ms. a answers 'dropped' after 700 ms, 'kept' after 850 ms; b answers 'dropped' at once and
    // 'kept' after 3 s (its request for 'kept' would time out at about 1000 ms: a's late answer comes first).
    const a = await startFakeServer({ delayMs: (r) => (r.prompt.includes('kept') ? 850 : 700) });
    const b = await startFakeServer({ delayMs: (r) => (r.prompt.includes('kept') ? 3000 : 0) });
    try {
      const file = path.join(tmp, 'late.jsonl');
      fs.writeFileSync(file, '{"id": "dropped", "prompt": "late dropped"}\n{"id": "kept", "prompt": "late kept"}\n');
      // weights 3:1 send both first attempts to a
      const cfg = (out: string) => config([{ baseUrl: a.url, weight: 3 }, { baseUrl: b.url, weight: 1 }], file, out, { requests: { timeoutMs: 500, lateAnswerMs: 3000 } });
      // a transport that cannot stop requests to a once sent, so a's late answer to 'dropped' does arrive
      const deaf: typeof fetch = (url, init) => fetch(url, String(url).startsWith(a.url) ? { ...init, signal: undefined } : init);
      for (const transport of ['abortable', 'deaf'] as const) {
        const out = newDir();
        const s = await generate(cfg(out), { ...quiet, ...(transport === 'deaf' ? { fetch: deaf } : {}) });
        assert.ok(s.complete && s.reconciled && s.written === 2, JSON.stringify(s));
        const { samples } = assertExactlyOnce(out, [sampleId('dropped', 0), sampleId('kept', 0)]);
        const from = Object.fromEntries(samples.map((x) => [x.meta.prompt_id, [x.meta.endpoint, x.meta.attempts]]));
        assert.deepEqual(from, { dropped: [b.url, 2], kept: [a.url, 2] }, `${transport}: b answered "dropped" first; a's late answer to "kept" came before b's`);
        assert.deepEqual(s.this_run.errors, { timeout: 2 });
        const ra = byUrl(s).get(a.url)!;
        const rb = byUrl(s).get(b.url)!;
        assert.deepEqual([rb.requests, rb.successes, rb.failures, rb.samples, rb.superseded, rb.late_answers], [2, 1, 0, 1, 1, 0], `${transport}: b`);
        if (transport === 'abortable') {
          // a's request for 'dropped' is abandoned as soon as b answers
          assert.equal(s.this_run.late_answers, 0);
          assert.deepEqual([ra.requests, ra.successes, ra.failures, ra.samples, ra.superseded, ra.late_answers], [2, 1, 2, 1, 1, 0], `${transport}: a`);
        } else {
          // its answer arrives all the same: dropped and counted
          assert.equal(s.this_run.late_answers, 1);
          assert.deepEqual([ra.requests, ra.successes, ra.failures, ra.samples, ra.superseded, ra.late_answers], [2, 2, 2, 1, 1, 1], `${transport}: a`);
        }
      }
      assert.equal(b.requests.filter((q) => q.prompt === 'late kept').length, 2, 'b was asked for "kept" once per run, and abandoned');
    } finally {
      await closeAll([a, b]);
    }
  });

  it('sends each endpoint its own API key and keeps every key out of files and errors', async () => {
    const keys = { TSD_TEST_KEY_A: 'sk-endpoint-a-Qm3v9secret', TSD_TEST_KEY_DEFAULT: 'sk-default-Lp0x2secret' };
    Object.assign(process.env, keys);
    // a echoes the Authorization header in a 500 for one prompt; b echoes it in a 400
    const echo = (status: number) => (r: { prompt: string; headers: Record<string, unknown> }) => (r.prompt.includes('echo') ? { status, body: `server saw ${r.headers.authorization}` } : null);
    const a = await startFakeServer({ fault: echo(500) });
    const b = await startFakeServer({ fault: echo(400) });
    try {
      const file = path.join(tmp, 'keys.jsonl');
      fs.writeFileSync(file, Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `k${i}`, prompt: i === 0 ? 'please echo' : `fine ${i}` })).join('\n') + '\n');
      const out = newDir();
      const cfg = config([{ baseUrl: a.url, apiKeyEnv: 'TSD_TEST_KEY_A' } as Ep, { baseUrl: b.url }], file, out, { teacher: { apiKeyEnv: 'TSD_TEST_KEY_DEFAULT' }, requests: { maxRetries: 3 } });
      const logs: string[] = [];
      const s = await generate(cfg, { ...quiet, log: (l) => logs.push(l) });
      assert.ok(a.requests.every((r) => r.headers.authorization === `Bearer ${keys.TSD_TEST_KEY_A}`));
      assert.ok(b.requests.every((r) => r.headers.authorization === `Bearer ${keys.TSD_TEST_KEY_DEFAULT}`));
      assert.deepEqual([s.written, s.failed], [7, 1]);
      const [failure] = readJsonl(path.join(out, 'failures.jsonl'));
      assert.match(failure.error, /HTTP 400.*server saw Bearer \[redacted\]/);
      assert.match(byUrl(s).get(a.url)!.last_error!, /HTTP 500.*server saw Bearer \[redacted\]/);
      for (const f of fs.readdirSync(out)) for (const k of Object.values(keys)) assert.ok(!fs.readFileSync(path.join(out, f), 'utf8').includes(k), `a key in ${f}`);
      for (const k of Object.values(keys)) assert.ok(!logs.join('\n').includes(k), 'a key in the log');
      delete process.env.TSD_TEST_KEY_A;
      await assert.rejects(generate(cfg, quiet), /teacher\.endpoints\.0\.apiKeyEnv: the environment variable TSD_TEST_KEY_A is not set/);
    } finally {
      for (const k of Object.keys(keys)) delete process.env[k];
      await closeAll([a, b]);
    }
  });

  it('an aborted run, resumed (with another set of endpoints), writes every sample exactly once', async () => {
    const list = await servers(3, { latencyMs: 4 });
    try {
      const { file, ids } = writePrompts('resume.jsonl', 60);
      const out = newDir();
      const endpoints = list.map((x, i) => ({ baseUrl: x.url, weight: i + 1 }));
      const stop = new AbortController();
      let err: unknown;
      await generate(config(endpoints, file, out, { teacher: { n: 2 } }), { ...quiet, signal: stop.signal, onSample: (e) => e.stats.written >= 40 && stop.abort() }).catch((e) => (err = e));
      assert.ok(err instanceof GenerationInterrupted, String(err));
      const first = (err as GenerationInterrupted).summary;
      assert.ok(first.interrupted && first.reconciled && first.pending > 0 && first.written >= 40, JSON.stringify(first));
      const writtenFirst = new Set(readJsonl(path.join(out, 'samples.jsonl')).map((x) => x.id));
      assert.equal(writtenFirst.size, first.written);
      await new Promise((r) => setTimeout(r, 50)); // requests abandoned by the stop have reached the servers
      const asked = list.map((x) => x.requests.length);
      // the second run drops an endpoint and changes a weight: URLs, weights and limits may change between runs
      const s = await generate(config([{ baseUrl: list[1].url, weight: 1 }, { baseUrl: list[2].url, weight: 1 }], file, out, { teacher: { n: 2 } }), quiet);
      assert.ok(s.complete && s.reconciled, JSON.stringify(s));
      assert.equal(s.resumed, first.written);
      assertExactlyOnce(out, ids(2));
      assert.equal(list[0].requests.length, asked[0]);
      const idOf = new Map(readPrompts(file).map((p) => [p.messages[0].content, p.id]));
      const again = [1, 2].flatMap((i) => list[i].requests.slice(asked[i])).map((r) => sampleId(idOf.get(r.prompt)!, r.seed! - 100));
      assert.equal(again.length, 120 - first.written);
      assert.ok(again.every((id) => !writtenFirst.has(id)), 'nothing written by the first run was asked for again');
      // the models decide what a sample is: another one is refused
      await assert.rejects(
        generate(config([{ baseUrl: list[1].url, model: 'other' }], file, out, { teacher: { n: 2 } }), quiet),
        /holds samples generated under another configuration \(teacher\.models: \["fake"\] there, \["other"\] here\)/,
      );
    } finally {
      await closeAll(list);
    }
  });

  it('every endpoint failing stops the run with an error naming each; the output stays valid and a rerun resumes', async () => {
    const list = await servers(2, { latencyMs: 5 });
    try {
      const { file, ids } = writePrompts('down.jsonl', 50);
      const out = newDir();
      let killed: Promise<unknown> | undefined;
      const cfg = config(list.map((x) => ({ baseUrl: x.url })), file, out, { requests: { concurrency: 3 } });
      let err: unknown;
      await generate(cfg, { ...quiet, onSample: (e) => e.stats.written >= 15 && (killed ??= closeAll(list)) }).catch((e) => (err = e));
      await killed;
      assert.ok(err instanceof EndpointsUnavailable, String(err));
      const e = err as EndpointsUnavailable;
      for (const x of list) assert.match(e.message, new RegExp(`\\n  ${x.url.replace(/[.]/g, '\\.')}: (request failed|the connection broke)[^\\n]*\\(\\d+ failures in a row\\)`), e.message);
      assert.match(e.message, /pending of 50; the output so far is valid: run again to resume/);
      const first = e.summary;
      assert.ok(first.reconciled && first.interrupted && !first.complete && first.pending > 0 && first.written >= 15, JSON.stringify(first));
      assert.equal(first.failed, 0, 'samples left undone are pending, not failed');
      const written = readJsonl(path.join(out, 'samples.jsonl')).map((x) => x.id);
      assert.equal(new Set(written).size, written.length);
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).pending, first.pending);
      // the CLI says the same and exits with an error
      const cfgFile = path.join(tmp, 'down.yaml');
      fs.writeFileSync(cfgFile, `input: down.jsonl\noutput: ${JSON.stringify(out)}\nteacher:\n  model: fake\n  seed: 100\n  endpoints:\n${list.map((x) => `    - baseUrl: ${x.url}\n`).join('')}curation: { dedup: none }\nrequests: { backoffMs: 5, maxBackoffMs: 20 }\n`);
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const c = spawn(process.execPath, [cli, 'generate', cfgFile], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr.on('data', (d) => (stderr += d));
        c.on('exit', (code) => resolve({ code, stderr }));
      });
      assert.equal(r.code, 1, r.stderr);
      for (const x of list) assert.ok(r.stderr.includes(`${x.url}: request failed`), r.stderr);
      // endpoints back (on other ports): the same directory resumes
      const back = await servers(2);
      try {
        const s = await generate(config(back.map((x) => ({ baseUrl: x.url })), file, out), quiet);
        assert.ok(s.complete && s.reconciled && s.resumed === first.written, JSON.stringify(s));
        assertExactlyOnce(out, ids(1));
      } finally {
        await closeAll(back);
      }
    } finally {
      await closeAll(list);
    }
  });
});
