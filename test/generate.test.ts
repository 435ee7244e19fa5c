// `generate` against a fake OpenAI-compatible server on 127.0.0.1: request bodies, streaming and JSON answers,
// injected faults (429 with Retry-After, 500, stalls past the timeout, connections dropped mid-stream, malformed
// bodies), exactly-once output across an aborted run, a SIGKILLed CLI and a torn last line, the API key kept out
// of every file and message, and curation counts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  generate, GenerationInterrupted, RateLimiter, readPrompts, scanJsonl, sampleId, splitReasoning, extractFinalAnswer, sameAnswer, parseRetryAfter,
  type Clock, type GenerateConfigInput, type GenerateSummary,
} from '../src/llm';
import { loadGenerateConfig, loadPlugins } from '../src/run';
import { startFakeServer, fakeTokens, type FakeRequest } from './fake-openai';
import { assertExactlyOnce, readJsonl } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-gen-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => path.join(tmp, `run-${++dirs}`);

function writePrompts(name: string, lines: unknown[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}
const quiet = { progress: false, log: () => {} };

function config(url: string, input: string, out: string, extra: { teacher?: object; requests?: object; curation?: object; output?: object } = {}): GenerateConfigInput {
  return {
    input,
    output: { dir: out, ...extra.output },
    teacher: { baseUrl: url, model: 'fake', seed: 100, ...extra.teacher } as any,
    requests: { concurrency: 4, timeoutMs: 2000, backoffMs: 10, maxBackoffMs: 40, ...extra.requests },
    curation: { ...extra.curation },
  };
}

const arithmetic = Array.from({ length: 12 }, (_, i) => ({ id: `q${i}`, prompt: `What is ${i} + ${i + 3}?`, answer: String(2 * i + 3) }));

describe('generate: inputs and requests', () => {
  it('reads JSONL, TSV and text prompts with stable ids, and names the line at fault', () => {
    const j = writePrompts('in.jsonl', [{ prompt: 'a' }, { id: 7, messages: [{ role: 'user', content: 'b' }] }, '', { prompt: 'a' }]);
    const p = readPrompts(j);
    assert.deepEqual(p.map((x) => x.messages[0].content), ['a', 'b', 'a']);
    assert.equal(p[1].id, '7');
    assert.match(p[0].id, /^p-[0-9a-f]{16}$/);
    assert.equal(p[2].id, `${p[0].id}-2`, 'a repeated prompt gets its own id');
    assert.deepEqual(readPrompts(j).map((x) => x.id), p.map((x) => x.id), 'ids are stable');
    const tsv = path.join(tmp, 'in.tsv');
    fs.writeFileSync(tsv, 'id\tquestion\tanswer\nx1\tWhat is 1+1?\t2\nx2\tWhat is 2+2?\t4\n');
    const t = readPrompts(tsv, { promptField: 'question' });
    assert.deepEqual(t.map((x) => [x.id, x.messages[0].content, x.record.answer]), [['x1', 'What is 1+1?', '2'], ['x2', 'What is 2+2?', '4']]);
    const txt = path.join(tmp, 'in.txt');
    fs.writeFileSync(txt, 'first prompt\n\nsecond prompt\n');
    assert.deepEqual(readPrompts(txt).map((x) => [x.messages[0].content, x.where]), [['first prompt', `${txt}:1`], ['second prompt', `${txt}:3`]]);
    assert.throws(() => readPrompts(writePrompts('bad1.jsonl', [{ prompt: 'a' }, '{"prompt": '])), /bad1\.jsonl:2: not valid JSON/);
    assert.throws(() => readPrompts(writePrompts('bad2.jsonl', [{ text: 'a' }])), /bad2\.jsonl:1: expected a string 'prompt' or a 'messages' array \(keys: text\)/);
    assert.throws(() => readPrompts(writePrompts('bad3.jsonl', [{ id: 1, prompt: 'a' }, { id: 1, prompt: 'b' }])), /bad3\.jsonl:2: prompt id '1' repeats the one at .*bad3\.jsonl:1/);
    assert.throws(() => readPrompts(tsv), /in\.tsv:1: no column 'prompt' in the header \(columns: id, question, answer\)/);
  });

  it('writes chat-format samples with meta, a plain form, and a reconciled summary (JSON answers)', async () => {
    const server = await startFakeServer();
    try {
      const input = writePrompts('basic.jsonl', [
        { id: 'a', prompt: 'hello there' },
        { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'own system' }] },
        { prompt: 'third' },
      ]);
      const out = newDir();
      const s = await generate(
        config(server.url, input, out, { teacher: { n: 2, temperature: 0.7, topP: 0.9, maxTokens: 64, systemPrompt: 'You are a teacher.', extraBody: { stop: ['\n\n'] } }, output: { plain: true } }),
        quiet,
      );
      assert.equal(s.total, 6);
      assert.equal(s.written, 6);
      assert.equal(s.pending, 0);
      assert.ok(s.reconciled && s.complete);
      assert.equal(s.this_run.requests, 6);
      const prompts = readPrompts(input);
      const ids = prompts.flatMap((p) => [0, 1].map((k) => sampleId(p.id, k)));
      const { samples } = assertExactlyOnce(out, ids);
      const a0 = samples.find((x) => x.id === sampleId('a', 0));
      assert.deepEqual(a0.messages, [
        { role: 'system', content: 'You are a teacher.' },
        { role: 'user', content: 'hello there' },
        { role: 'assistant', content: 'Echo: hello there #100' },
      ]);
      assert.equal(a0.meta.prompt_id, 'a');
      assert.equal(a0.meta.sample, 0);
      assert.equal(a0.meta.model, 'fake-served');
      assert.equal(a0.meta.finish_reason, 'stop');
      assert.equal(a0.meta.attempts, 1);
      assert.equal(a0.meta.usage.completion_tokens, 4);
      assert.ok(a0.meta.latency_ms >= 0);
      const own = samples.find((x) => x.messages[1]?.content === 'own system');
      assert.equal(own.messages[0].content, 'be brief', 'a prompt with its own system message keeps it');
      const body = server.requests.find((r) => r.prompt === 'hello there' && r.seed === 101)!.body;
      assert.deepEqual(
        { temperature: body.temperature, top_p: body.top_p, max_completion_tokens: body.max_completion_tokens, max_tokens: body.max_tokens, n: body.n, stop: body.stop, stream: body.stream, model: body.model },
        { temperature: 0.7, top_p: 0.9, max_completion_tokens: 64, max_tokens: undefined, n: undefined, stop: ['\n\n'], stream: false, model: 'fake' },
      );
      assert.equal(server.requests[0].headers.authorization, undefined, 'no key configured, no Authorization header');
      const plain = readJsonl(path.join(out, 'plain.jsonl'));
      assert.equal(plain.length, 6);
      assert.ok(plain.some((r) => r.prompt === 'third' && r.response === 'Echo: third #101'));
      assert.deepEqual(Object.keys(plain[0]), ['prompt', 'response']);
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).written, 6);
      // running again finds nothing to do
      const again = await generate(config(server.url, input, out, { teacher: { n: 2, temperature: 0.7, topP: 0.9, maxTokens: 64, systemPrompt: 'You are a teacher.', extraBody: { stop: ['\n\n'] } }, output: { plain: true } }), quiet);
      assert.equal(again.resumed, 6);
      assert.equal(again.this_run.requests, 0);
      assert.equal(server.requests.length, 6);
      // a larger n extends the same directory
      const more = await generate(config(server.url, input, out, { teacher: { n: 3, temperature: 0.7, topP: 0.9, maxTokens: 64, systemPrompt: 'You are a teacher.', extraBody: { stop: ['\n\n'] } }, output: { plain: true } }), quiet);
      assert.equal(more.written, 9);
      assert.equal(more.this_run.requests, 3);
      // another temperature is refused in the same directory
      await assert.rejects(
        generate(config(server.url, input, out, { teacher: { n: 2, temperature: 1.0 } }), quiet),
        /holds samples generated under another configuration \(.*teacher\.temperature: 0\.7 there, 1 here/,
      );
    } finally {
      await server.close();
    }
  });

  it('rejects configuration mistakes with the key at fault', async () => {
    await assert.rejects(generate({ input: 'x.jsonl', output: 'o', teacher: { baseUrl: 'http://127.0.0.1:1/v1', modle: 'm' } } as any, quiet), /teacher\.modle: unknown key; did you mean 'teacher\.model'\?/);
    await assert.rejects(generate({ input: 'x.jsonl', output: 'o', teacher: { baseUrl: 'http://127.0.0.1:1/v1', model: 'm' }, requests: { concurency: 2 } } as any, quiet), /requests\.concurency: unknown key; did you mean 'requests\.concurrency'\?/);
    const input = writePrompts('v.jsonl', [{ prompt: 'What is 1 + 1?' }]);
    await assert.rejects(
      generate(config('http://127.0.0.1:1/v1', input, newDir(), { curation: { verifier: 'exact-match' } }), quiet),
      /v\.jsonl:1: curation\.verifier 'exact-match' needs the field 'answer' \(curation\.answerField\) in every prompt/,
    );
    await assert.rejects(generate(config('http://127.0.0.1:1/v1', input, newDir(), { curation: { verifier: 'exact-mach' } }), quiet), /unknown verifier 'exact-mach'; did you mean 'exact-match'\?/);
  });
});

describe('generate: faults and retries', () => {
  it('streams, and recovers from 429, 500, stalls, dropped streams and malformed events', async () => {
    // each prompt's first attempt fails in its own way; the second succeeds
    const faults: Record<string, any> = { p0: { status: 429, retryAfterMs: 30 }, p1: { status: 500 }, p2: 'stall', p3: 'drop', p4: 'malformed', p5: { status: 503, retryAfter: '0' } };
    const server = await startFakeServer({
      answer: (r) => ({ content: `Answer to ${r.prompt} number ${r.seed} with several words in it` }),
      fault: (r) => (r.attempt === 1 ? faults[r.prompt.split(' ')[1]] : null),
    });
    try {
      for (const stream of [true, false]) {
        const input = writePrompts(`faults-${stream}.jsonl`, ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map((p) => ({ id: p, prompt: `${stream ? 'streamed' : 'json'} ${p}` })));
        const out = newDir();
        const s = await generate(config(server.url, input, out, { teacher: { stream }, requests: { timeoutMs: 1500, concurrency: 7 } }), quiet);
        assert.equal(s.written, 7, JSON.stringify(s));
        assert.ok(s.complete && s.reconciled);
        assert.equal(s.this_run.retries, 6, `stream ${stream}: ${JSON.stringify(s.this_run.errors)} ${JSON.stringify(readJsonl(path.join(out, "samples.jsonl")).map((x) => [x.meta.prompt_id, x.meta.attempts]))}`);
        // a JSON answer's connection is cut before the status line: a network error; a stream's is cut mid-answer
        assert.deepEqual(s.this_run.errors, { http: 3, timeout: 1, malformed: 1, ...(stream ? { dropped: 1 } : { network: 1 }) });
        const { samples } = assertExactlyOnce(out, ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map((p) => sampleId(p, 0)));
        for (const x of samples) {
          assert.equal(x.messages.at(-1).content, `Answer to ${stream ? 'streamed' : 'json'} ${x.meta.prompt_id} number 100 with several words in it`, 'no partial answer leaks into a sample');
          assert.equal(x.meta.attempts, x.meta.prompt_id === 'p6' ? 1 : 2);
        }
        if (stream) {
          assert.ok(server.requests.filter((r) => r.stream).every((r) => r.body.stream_options?.include_usage === true));
          assert.equal(samples[0].meta.usage.completion_tokens, 11, 'usage from the final stream chunk');
        }
      }
    } finally {
      await server.close();
    }
  });

  it('honours Retry-After (seconds and ms) and backs off exponentially otherwise (fake clock)', async () => {
    let t = 0;
    const sleeps: number[] = [];
    const clock: Clock = { now: () => t, random: () => 0.5, sleep: async (ms) => { sleeps.push(ms); t += ms; await new Promise((r) => setImmediate(r)); } };
    const server = await startFakeServer({
      fault: (r) =>
        r.prompt === 'ra' && r.attempt === 1 ? { status: 429, retryAfter: '7' } :
        r.prompt === 'ms' && r.attempt === 1 ? { status: 429, retryAfterMs: 1500 } :
        r.prompt === 'bo' && r.attempt <= 3 ? { status: 500 } : null,
    });
    try {
      for (const [p, expected] of [['ra', [7000 + 0.5 * 700]], ['ms', [1500 + 0.5 * 150]], ['bo', [0.75 * 100, 0.75 * 200, 0.75 * 400]]] as const) {
        sleeps.length = 0;
        const input = writePrompts(`ra-${p}.jsonl`, [{ id: p, prompt: p }]);
        const s = await generate(config(server.url, input, newDir(), { requests: { concurrency: 1, backoffMs: 100, maxBackoffMs: 10_000 } }), { ...quiet, clock });
        assert.equal(s.written, 1);
        // the limiter's own wait after a Retry-After pause is 0 here: the retry sleeps the full pause first
        assert.deepEqual(sleeps, expected, `prompt ${p}: waits ${sleeps}`);
      }
    } finally {
      await server.close();
    }
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString() }), Date.UTC(2030, 0, 1)), 10_000);
    assert.equal(parseRetryAfter(new Headers({}), 0), undefined);
  });

  it('waits out a real Retry-After before retrying, and pauses the other requests too', async () => {
    const server = await startFakeServer({ fault: (r) => (r.prompt === 'first' && r.attempt === 1 ? { status: 429, retryAfterMs: 250 } : null), latencyMs: 0 });
    try {
      const input = writePrompts('ra-real.jsonl', [{ id: 'first', prompt: 'first' }, ...Array.from({ length: 6 }, (_, i) => ({ id: `o${i}`, prompt: `other ${i}` }))]);
      const s = await generate(config(server.url, input, newDir(), { requests: { concurrency: 1 } }), quiet);
      assert.equal(s.written, 7);
      const [a1, a2] = server.requests.filter((r) => r.prompt === 'first');
      assert.ok(a2.at - a1.at >= 245, `retried after ${a2.at - a1.at} ms, asked for 250`);
      assert.ok(server.requests.filter((r) => r.prompt !== 'first').every((r) => r.at - a1.at >= 245), 'no request starts during the pause');
    } finally {
      await server.close();
    }
  });

  it('limits requests and tokens per minute (fake clock)', async () => {
    let t = 0;
    const clock: Clock = { now: () => t, random: () => 0.5, sleep: async (ms) => { t += ms; } };
    const rpm = new RateLimiter({ rpm: 60 }, clock); // one per second, a burst of one
    for (let i = 0; i < 5; i++) await rpm.acquire(1);
    assert.ok(Math.abs(t - 4000) < 1e-6, `5 requests at 60 rpm took ${t} ms`);
    t = 0;
    const tpm = new RateLimiter({ tpm: 6000 }, clock); // 100 tokens per second, a burst of 100
    await tpm.acquire(100);
    await tpm.acquire(300); // larger than the bucket: waits for a full bucket, then borrows
    await tpm.acquire(50);
    assert.ok(Math.abs(t - (1000 + 2500)) < 1e-6, `token waits took ${t} ms`);
  });

  it('records final failures with their error, and retries them on the next run', async () => {
    let broken = true;
    const server = await startFakeServer({ fault: (r) => (broken && r.prompt === 'bad' ? { status: 400, body: '{"error":{"message":"context too long"}}' } : broken && r.prompt === 'flaky' ? { status: 502 } : null) });
    try {
      const input = writePrompts('fail.jsonl', [{ id: 'ok', prompt: 'ok' }, { id: 'bad', prompt: 'bad' }, { id: 'flaky', prompt: 'flaky' }]);
      const out = newDir();
      const cfg = config(server.url, input, out, { requests: { maxRetries: 2 } });
      const s = await generate(cfg, quiet);
      assert.deepEqual([s.written, s.failed, s.pending, s.reconciled, s.complete], [1, 2, 0, true, false]);
      const failures = readJsonl(path.join(out, 'failures.jsonl'));
      const bad = failures.find((f) => f.prompt_id === 'bad');
      assert.match(bad.error, /HTTP 400 Bad Request: \{"error":\{"message":"context too long"\}\} \(after 1 attempt\)/);
      assert.equal(bad.attempts, 1, '400 is not retried');
      assert.equal(failures.find((f) => f.prompt_id === 'flaky').attempts, 3, '502: the first attempt and 2 retries');
      broken = false;
      const s2 = await generate(cfg, quiet);
      assert.deepEqual([s2.written, s2.failed, s2.complete, s2.this_run.requests], [3, 0, true, 2]);
      assert.equal(fs.readFileSync(path.join(out, 'failures.jsonl'), 'utf8'), '');
      assertExactlyOnce(out, ['ok', 'bad', 'flaky'].map((p) => sampleId(p, 0)));
    } finally {
      await server.close();
    }
  });
});

describe('generate: exactly once', () => {
  it('an aborted run, a torn last line and a resume leave every sample exactly once', async () => {
    const server = await startFakeServer({ latencyMs: 3, fault: (r) => (r.seed === 101 && r.attempt === 1 && r.prompt.endsWith('3') ? { status: 500 } : null) });
    try {
      const input = writePrompts('once.jsonl', Array.from({ length: 30 }, (_, i) => ({ prompt: `prompt ${i}` })));
      const out = newDir();
      const cfg = config(server.url, input, out, { teacher: { n: 2 }, requests: { concurrency: 4 } });
      const stop = new AbortController();
      let err: unknown;
      await generate(cfg, { ...quiet, signal: stop.signal, onSample: (e) => e.stats.written >= 15 && stop.abort() }).catch((e) => (err = e));
      assert.ok(err instanceof GenerationInterrupted, String(err));
      const first: GenerateSummary = (err as GenerationInterrupted).summary;
      assert.ok(first.interrupted && first.reconciled);
      assert.ok(first.written >= 15 && first.pending > 0, `written ${first.written}, pending ${first.pending}`);
      assert.equal(first.written + first.pending + first.failed + first.rejected, 60);
      const writtenFirst = new Set(readJsonl(path.join(out, 'samples.jsonl')).map((r) => r.id));
      assert.equal(writtenFirst.size, first.written);
      // a crash mid-write leaves half a line
      fs.appendFileSync(path.join(out, 'samples.jsonl'), '{"id":"torn","messages":[{"role":"user","cont');
      const before = server.requests.length;
      const logs: string[] = [];
      // not a TTY: progress comes as plain lines at an interval
      const s = await generate(cfg, { progress: true, progressEveryMs: 15, log: (l) => logs.push(l) });
      assert.ok(logs.some((l) => /cut a torn last line \(\d+ bytes\)/.test(l)));
      assert.ok(logs.some((l) => /^generate: \d+\/60 samples \(\d+ %\), [\d.]+ req\/s, \d+ tok\/s, \d+ errors, 0 rejected, ETA \S+$/.test(l)), logs.join('\n'));
      assert.ok(s.torn_bytes > 0);
      assert.ok(s.complete && s.reconciled, JSON.stringify(s));
      assert.equal(s.resumed, first.written);
      const ids = readPrompts(input).flatMap((p) => [0, 1].map((k) => sampleId(p.id, k)));
      assertExactlyOnce(out, ids);
      // nothing written by the first run was asked for again
      const prompts = new Map(readPrompts(input).map((p) => [p.messages[0].content, p.id]));
      const askedAgain = server.requests.slice(before).map((r: FakeRequest) => sampleId(prompts.get(r.prompt)!, r.seed! - 100));
      assert.ok(askedAgain.every((id) => !writtenFirst.has(id)));
    } finally {
      await server.close();
    }
  });

  it('a CLI run stopped by Ctrl-C, then one killed with SIGKILL, then run again, writes every sample exactly once', async () => {
    const server = await startFakeServer({ latencyMs: 15 });
    try {
      const input = writePrompts('kill.txt', Array.from({ length: 80 }, (_, i) => `line prompt ${i}`));
      const out = newDir();
      const cfgFile = path.join(tmp, 'kill.yaml');
      fs.writeFileSync(cfgFile, `input: kill.txt\noutput: ${JSON.stringify(out)}\nteacher:\n  baseUrl: ${server.url}\n  model: fake\n  seed: 100\n  stream: true\nrequests:\n  concurrency: 2\n`);
      const args = [cli, 'generate', cfgFile, '--json'];
      const samplesFile = path.join(out, 'samples.jsonl');
      const lines = () => (fs.existsSync(samplesFile) ? fs.readFileSync(samplesFile, 'utf8').split('\n').filter(Boolean).length : 0);
      /** Runs the command; sends `sig` once samples.jsonl has `atLeast` lines. */
      const runCli = (sig?: NodeJS.Signals, atLeast = 0) =>
        new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; sentAt: number }>((resolve) => {
          const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          let sentAt = -1;
          c.stdout.on('data', (d) => (stdout += d));
          c.stderr.on('data', (d) => (stderr += d));
          const poll = sig
            ? setInterval(() => {
                const n = lines();
                if (n >= atLeast && sentAt < 0) {
                  c.kill(sig);
                  sentAt = n;
                }
              }, 5)
            : undefined;
          c.on('exit', (code, signal) => {
            clearInterval(poll);
            resolve({ code, signal, stdout, stderr, sentAt });
          });
        });
      const a = await runCli('SIGINT', 5);
      assert.equal(a.code, 130, a.stderr);
      assert.match(a.stderr, /stopping: abandoning requests in flight and flushing the output/);
      assert.match(a.stderr, /generation interrupted: \d+ written, 0 rejected, 0 failed, \d+ pending of 80; run again to resume/);
      const afterInt = JSON.parse(a.stdout.trim().split('\n').pop()!);
      assert.ok(afterInt.interrupted && afterInt.reconciled && afterInt.written >= 5 && afterInt.pending > 0, JSON.stringify(afterInt));
      const b = await runCli('SIGKILL', afterInt.written + 5);
      assert.equal(b.signal, 'SIGKILL');
      assert.ok(b.sentAt < 80, `killed after ${b.sentAt} samples`);
      assert.ok(fs.existsSync(path.join(out, 'generate.lock')), 'the killed run left its lock');
      const r = await runCli();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /resuming: \d+ of 80 samples already done/);
      const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
      assert.ok(s.complete && s.reconciled && s.written === 80, JSON.stringify(s));
      assertExactlyOnce(out, readPrompts(input).map((p) => sampleId(p.id, 0)));
      assert.ok(!fs.existsSync(path.join(out, 'generate.lock')));
    } finally {
      await server.close();
    }
  });
  it('reads output files in chunks, cutting a torn or unparsable last line and refusing a bad line elsewhere', () => {
    const file = path.join(tmp, 'scan.jsonl');
    // lines of ~300 kB cross the 1 MB read chunks
    const big = Array.from({ length: 12 }, (_, i) => JSON.stringify({ id: `r${i}`, pad: 'é'.repeat(150_000 + i) }) + '\n').join('');
    const ids: string[] = [];
    for (const [tail, cut] of [['', 0], ['{"id":"torn","pa', 16], ['{"id":"bad"}}\n', 14], ['{"id":"r12"}\n', 0]] as const) {
      fs.writeFileSync(file, big + tail);
      ids.length = 0;
      const r = scanJsonl(file, (v, line) => ids.push(`${v.id}@${line}`));
      assert.equal(r.truncatedBytes, cut, JSON.stringify(tail));
      assert.equal(fs.statSync(file).size, Buffer.byteLength(big + tail) - cut);
      assert.deepEqual(ids, [...Array.from({ length: 12 }, (_, i) => `r${i}@${i + 1}`), ...(tail.includes('r12') ? ['r12@13'] : [])]);
    }
    fs.writeFileSync(file, '{"id":"a"}\n{"id":\n{"id":"c"}\n');
    assert.throws(() => scanJsonl(file, () => {}), /scan\.jsonl:2: not valid JSON .*only a torn last line is repaired automatically/);
    assert.deepEqual(scanJsonl(path.join(tmp, 'none.jsonl'), () => {}), { records: 0, truncatedBytes: 0 });
  });

  it('one writer per output directory: a live lock is refused, a stale one taken over', async () => {
    const server = await startFakeServer({ latencyMs: 20 });
    try {
      const input = writePrompts('lock.jsonl', [{ prompt: 'x' }, { prompt: 'y' }]);
      const out = newDir();
      const first = generate(config(server.url, input, out), quiet);
      await assert.rejects(generate(config(server.url, input, out), quiet), /another generate run in this process is writing here/);
      assert.equal((await first).written, 2);
      const lock = path.join(out, 'generate.lock');
      fs.writeFileSync(lock, `${process.ppid}\n`); // a running process
      await assert.rejects(generate(config(server.url, input, out), quiet), new RegExp(`another generate run \\(process ${process.ppid}\\) is writing here`));
      fs.writeFileSync(lock, '999999999\n'); // no such process
      assert.equal((await generate(config(server.url, input, out), quiet)).resumed, 2);
      assert.ok(!fs.existsSync(lock));
    } finally {
      await server.close();
    }
  });
});

describe('generate: secrets', () => {
  it('sends the API key from the named variable and never writes it to files, logs or errors', async () => {
    const key = 'sk-test-Zq8vY3u1Kk0secretvalue';
    const server = await startFakeServer({
      // servers that echo what they received: a 401 quoting the header, a 500 quoting it in a retried error
      fault: (r) =>
        r.prompt === 'deny' ? { status: 401, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${r.headers.authorization}` } }) } :
        r.prompt === 'echo' ? { status: 500, body: `upstream said ${r.headers.authorization}` } : null,
    });
    try {
      const input = writePrompts('secret.jsonl', [{ id: 'ok', prompt: 'fine' }, { id: 'deny', prompt: 'deny' }, { id: 'echo', prompt: 'echo' }]);
      const out = newDir();
      const cfgFile = path.join(tmp, 'secret.json');
      fs.writeFileSync(cfgFile, JSON.stringify({ input, output: out, teacher: { baseUrl: server.url, model: 'fake', apiKeyEnv: 'TSD_TEST_API_KEY', stream: true }, requests: { maxRetries: 1, backoffMs: 1 } }));
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn(process.execPath, [cli, 'generate', cfgFile, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TSD_TEST_API_KEY: key } });
        let all = '';
        c.stdout.on('data', (d) => (all += d));
        c.stderr.on('data', (d) => (all += d));
        c.on('exit', (code) => resolve({ code, out: all }));
      });
      assert.equal(r.code, 3, r.out);
      assert.ok(server.requests.every((q) => q.headers.authorization === `Bearer ${key}`), 'the key is sent');
      assert.match(r.out, /2 sample\(s\) failed/);
      assert.ok(!r.out.includes(key), 'not in the command output');
      const failures = readJsonl(path.join(out, 'failures.jsonl'));
      assert.match(failures.find((f) => f.prompt_id === 'deny').error, /HTTP 401.*Incorrect API key provided: Bearer \[redacted\]/);
      assert.match(failures.find((f) => f.prompt_id === 'echo').error, /HTTP 500.*upstream said Bearer \[redacted\] \(after 2 attempts\)/);
      for (const f of fs.readdirSync(out)) assert.ok(!fs.readFileSync(path.join(out, f), 'utf8').includes(key), `not in ${f}`);
      // the variable unset: refused, naming the variable
      delete process.env.TSD_TEST_UNSET_KEY;
      await assert.rejects(
        generate(config(server.url, input, newDir(), { teacher: { apiKeyEnv: 'TSD_TEST_UNSET_KEY' } }), quiet),
        /teacher\.apiKeyEnv: the environment variable TSD_TEST_UNSET_KEY is not set/,
      );
    } finally {
      await server.close();
    }
  });
});

describe('generate: curation', () => {
  it('deduplicates, filters by length and finish reason, and counts each', async () => {
    const server = await startFakeServer({
      answer: (r) =>
        r.prompt === 'same' ? { content: 'Always  the same\nanswer' } :
        r.prompt === 'short' ? { content: r.seed === 100 ? 'ok' : 'a longer answer here' } :
        r.prompt === 'long' ? { content: 'x'.repeat(r.seed === 100 ? 100 : 10) } :
        r.prompt === 'cut' ? { content: 'cut off mid', finish_reason: r.seed === 100 ? 'length' : 'stop' } :
        { content: `fine ${r.seed}` },
    });
    try {
      const input = writePrompts('cur.jsonl', ['same', 'short', 'long', 'cut', 'fine'].map((p) => ({ id: p, prompt: p })));
      const out = newDir();
      const s = await generate(config(server.url, input, out, { teacher: { n: 3, seed: undefined }, curation: { minChars: 5, maxChars: 50 } }), quiet);
      // without a seed the server gives one answer per prompt: n = 3 gives 1 kept + 2 duplicates for each prompt
      assert.deepEqual(s.rejected_by, { duplicate: 2 + 2 + 2 + 2 + 2, too_short: 0, too_long: 0, truncated: 0, unverified: 0 });
      const out2 = newDir();
      const s2 = await generate(config(server.url, input, out2, { teacher: { n: 2 }, curation: { minChars: 5, maxChars: 50 } }), quiet);
      assert.deepEqual(s2.rejected_by, { duplicate: 1, too_short: 1, too_long: 1, truncated: 1, unverified: 0 });
      assert.deepEqual([s2.written, s2.rejected, s2.total, s2.reconciled], [6, 4, 10, true]);
      const { rejected } = assertExactlyOnce(out2, ['same', 'short', 'long', 'cut', 'fine'].flatMap((p) => [0, 1].map((k) => sampleId(p, k))));
      assert.deepEqual(rejected.find((r) => r.reason === 'too_short').response, { role: 'assistant', content: 'ok' });
      // dedup survives a resume: the kept answer is read back, so a regenerated duplicate is still rejected
      fs.rmSync(path.join(out2, 'rejected.jsonl'));
      const s3 = await generate(config(server.url, input, out2, { teacher: { n: 2 }, curation: { minChars: 5, maxChars: 50 } }), quiet);
      assert.equal(s3.rejected_by.duplicate, 1);
      assert.equal(s3.written, 6);
    } finally {
      await server.close();
    }
  });

  it('rejection sampling: exact-match, an async function verifier and a --plugin verifier keep only verified samples', async () => {
    // even seeds answer correctly, odd ones are off by one; the answer comes after reasoning
    const server = await startFakeServer({
      answer: (r) => {
        const [a, b] = r.prompt.match(/\d+/g)!.map(Number);
        const v = a + b + ((r.seed ?? 0) % 2);
        return { content: `<think>${a} plus ${b}, carry nothing</think>The answer is ${v}.` };
      },
    });
    try {
      const input = writePrompts('arith.jsonl', arithmetic);
      const out = newDir();
      const s = await generate(config(server.url, input, out, { teacher: { n: 4 }, curation: { verifier: 'exact-match' } }), quiet);
      // samples 0 and 2 of a prompt are right and word for word the same: the second is a duplicate
      assert.deepEqual([s.written, s.rejected_by.unverified, s.rejected_by.duplicate, s.total], [12, 24, 12, 48]);
      const { samples, rejected } = assertExactlyOnce(out, arithmetic.flatMap((p) => [0, 1, 2, 3].map((k) => sampleId(p.id, k))));
      assert.ok(samples.every((x) => x.meta.verified === true && x.meta.sample % 2 === 0));
      assert.ok(rejected.every((x) => (x.meta.verified === false && x.reason === 'unverified') || (x.meta.verified === true && x.reason === 'duplicate')));
      // a function verifier from TypeScript
      const seen: string[] = [];
      const s2 = await generate(config(server.url, input, newDir(), { teacher: { n: 2 } }), {
        ...quiet,
        verifier: async (sample, prompt) => {
          seen.push(sample.id);
          await new Promise((r) => setImmediate(r));
          return sample.answer.includes(String(prompt.record.answer)) && sample.reasoning!.includes('plus');
        },
      });
      assert.deepEqual([s2.written, s2.rejected_by.unverified, seen.length], [12, 12, 24]);
      // a verifier registered by a plugin file, named in the configuration
      const plugin = path.join(tmp, 'verify-plugin.ts');
      fs.writeFileSync(plugin, `export function register(api: any): void {\n  api.registerVerifier('first-six', (s: { answer: string }, p: { id: string }) => Number(p.id.slice(1)) < 6);\n}\n`);
      loadPlugins([plugin]);
      const s3 = await generate(config(server.url, input, newDir(), { curation: { verifier: 'first-six' } }), quiet);
      assert.deepEqual([s3.written, s3.rejected_by.unverified], [6, 6]);
    } finally {
      await server.close();
    }
  });

  it('keeps, strips or splits reasoning from <think> tags and reasoning_content (both transports)', async () => {
    const server = await startFakeServer({
      answer: (r) => (r.prompt === 'tags' ? { content: '<think>\nstep one\nstep two\n</think>\n\nFinal: 42' } : r.prompt === 'open' ? { content: 'only closing</think> done' } : { content: 'Final: 7', reasoning_content: 'separately reasoned' }),
    });
    try {
      const input = writePrompts('think.jsonl', [{ id: 'tags', prompt: 'tags' }, { id: 'field', prompt: 'field' }, { id: 'open', prompt: 'open' }]);
      const want = {
        keep: { tags: { content: '<think>\nstep one\nstep two\n</think>\n\nFinal: 42' }, field: { content: '<think>\nseparately reasoned\n</think>\n\nFinal: 7' }, open: { content: '<think>\nonly closing\n</think>\n\ndone' } },
        strip: { tags: { content: 'Final: 42' }, field: { content: 'Final: 7' }, open: { content: 'done' } },
        split: { tags: { content: 'Final: 42', reasoning_content: 'step one\nstep two' }, field: { content: 'Final: 7', reasoning_content: 'separately reasoned' }, open: { content: 'done', reasoning_content: 'only closing' } },
      } as const;
      for (const stream of [false, true]) {
        for (const mode of ['keep', 'strip', 'split'] as const) {
          const out = newDir();
          await generate(config(server.url, input, out, { teacher: { stream }, curation: { reasoning: mode } }), quiet);
          const got = Object.fromEntries(readJsonl(path.join(out, 'samples.jsonl')).map((x) => [x.meta.prompt_id, x.messages.at(-1)]));
          for (const id of ['tags', 'field', 'open'] as const) assert.deepEqual(got[id], { role: 'assistant', ...want[mode][id] }, `${mode}, stream ${stream}, ${id}`);
        }
      }
      assert.deepEqual(splitReasoning({ content: '<think>never closed' }), { reasoning: 'never closed', answer: '' });
      assert.deepEqual(splitReasoning({ content: 'no reasoning' }), { answer: 'no reasoning' });
    } finally {
      await server.close();
    }
  });

  it('captures top-k logprobs when the server returns them (both transports)', async () => {
    const server = await startFakeServer();
    try {
      const input = writePrompts('lp.jsonl', [{ id: 'a', prompt: 'tell me three words' }]);
      for (const stream of [false, true]) {
        const out = newDir();
        await generate(config(server.url, input, out, { teacher: { stream, topLogprobs: 3 } }), quiet);
        const [x] = readJsonl(path.join(out, 'samples.jsonl'));
        const content = x.messages.at(-1).content;
        assert.equal(x.logprobs.map((t: any) => t.token).join(''), content);
        assert.equal(x.logprobs.length, fakeTokens(content).length);
        assert.ok(x.logprobs.every((t: any, i: number) => t.logprob === -0.25 * (i % 4) && t.top_logprobs.length === 3 && t.top_logprobs[0].token === t.token && !('bytes' in t)));
        assert.deepEqual(x.logprobs[1].top_logprobs[1], { token: 'alt1', logprob: -2 });
        const body = server.requests.at(-1)!.body;
        assert.deepEqual([body.logprobs, body.top_logprobs], [true, 3]);
      }
      const out = newDir();
      await generate(config(server.url, input, out), quiet);
      assert.ok(!('logprobs' in readJsonl(path.join(out, 'samples.jsonl'))[0]), 'no logprobs asked, none stored');
    } finally {
      await server.close();
    }
  });

  it('examples/generate-arith.yaml runs as written against a local endpoint', async () => {
    const server = await startFakeServer({
      answer: (r) => {
        const [a, b] = r.prompt.match(/\d+/g)!.map(Number);
        return { content: `<think>${a} + ${b}: add the units, then the tens, then the hundreds.</think>The answer is ${a + b}.` };
      },
    });
    try {
      const file = path.join(root, 'examples', 'generate-arith.yaml');
      const out = newDir();
      const raw = loadGenerateConfig(file, [`teacher.baseUrl=${server.url}`, `output.dir=${out}`]);
      const s = await generate(raw as GenerateConfigInput, { ...quiet, source: file });
      // every sample is right and identical: one kept per question, three duplicates
      assert.deepEqual([s.prompts, s.total, s.written, s.rejected_by.duplicate, s.complete], [8, 32, 8, 24, true]);
      const [x] = readJsonl(path.join(out, 'samples.jsonl'));
      assert.equal(x.messages[0].role, 'system');
      assert.match(x.messages.at(-1).content, /^The answer is \d+\.$/);
      assert.match(x.messages.at(-1).reasoning_content, /add the units/);
      assert.ok(x.logprobs.length > 0);
      assert.equal(readJsonl(path.join(out, 'plain.jsonl')).length, 8);
    } finally {
      await server.close();
    }
  });

  it('extracts and compares final answers', () => {
    assert.equal(extractFinalAnswer('so \\boxed{1} and then \\boxed{\\frac{1}{2}}'), '\\frac{1}{2}');
    assert.equal(extractFinalAnswer('work...\n#### 1,234'), '1,234');
    assert.equal(extractFinalAnswer('The answer is: 12.'), '12.');
    assert.equal(extractFinalAnswer('I think 3 then 4 then 17'), '17');
    assert.ok(sameAnswer('1,234', '1234'));
    assert.ok(sameAnswer('12.', '12'));
    assert.ok(sameAnswer(' Paris ', 'paris'));
    assert.ok(!sameAnswer('12', '13'));
    assert.ok(sameAnswer('$5', '5.0'));
  });
});
