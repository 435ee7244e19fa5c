// `generate` against a real `serve` (a tiny byte-level GPT) behind the fault proxy: 429s with Retry-After, 500s,
// stalls past the client's timeout, answers cut mid-stream and connections reset, by schedule and by seeded
// chance, streaming and JSON, a run aborted mid-way and resumed through the faults; every (prompt, sample) id ends up
// exactly once, and the samples are what the unfaulted server gives for the same seeds. Also the spec parser, the
// seeded plan, and `tsdistill serve --faults`.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { manualSeed } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { assertExactlyOnce, readJsonl, startServeProcess } from './helpers';
import {
  ByteTokenizer, generate, GenerationInterrupted, readPrompts, sampleId, saveDecoder, serve,
  startFaultProxy, parseFaultSpec, describeFaultSpec, faultPlan,
  type FaultEvent, type FaultSpec, type GenerateConfigInput, type GenerateSummary, type Server,
} from '../src/llm';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-faults-'));
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

const N = 2;
const SEED = 7;
const TIMEOUT_MS = 700;
const input = path.join(tmp, 'prompts.jsonl');
fs.writeFileSync(input, Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: `p${i}`, prompt: `Q${i}?` })).join('\n') + '\n');
const ids = readPrompts(input).flatMap((p) => Array.from({ length: N }, (_, k) => sampleId(p.id, k)));
const idOf = new Map(readPrompts(input).map((p) => [p.messages[0].content, p.id]));
/** The sample a request body asks for: its prompt and seed (sample k is asked with SEED + k). */
const requestedId = (body: any) => sampleId(idOf.get(body.messages.at(-1).content)!, body.seed - SEED);
const quiet = { progress: false, log: () => {} };
let dirs = 0;
const newDir = () => path.join(tmp, `run-${++dirs}`);

function config(url: string, out: string, stream: boolean, maxRetries = 10): GenerateConfigInput {
  return {
    input, output: { dir: out },
    teacher: { baseUrl: url, model: 'tiny', n: N, seed: SEED, maxTokens: 8, temperature: 1, stream },
    requests: { concurrency: 4, timeoutMs: TIMEOUT_MS, maxRetries, backoffMs: 5, maxBackoffMs: 20 },
    // keep every answer, empty or cut by max_tokens, so written === total
    curation: { minChars: 0, dropTruncated: false, dedup: 'none' },
  };
}

/** Every expected id is in exactly one output file, once; the summary on disk says the same. */
function assertComplete(dir: string): any[] {
  const { samples, rejected, failures } = assertExactlyOnce(dir, ids);
  const summary: GenerateSummary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual([summary.written, summary.rejected, summary.failed, summary.pending, summary.duplicate_lines], [samples.length, rejected.length, failures.length, 0, 0]);
  assert.ok(summary.reconciled && summary.complete, JSON.stringify(summary));
  return samples;
}

/** Like assertComplete, for a run that ended with failures. */
function assertExactlyOnceOrFailed(dir: string): void {
  assertExactlyOnce(dir, ids);
  const summary: GenerateSummary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  assert.ok(summary.reconciled && !summary.complete && summary.pending === 0 && summary.failed > 0, JSON.stringify(summary));
}

/** The answer of each sample id from the server without faults (the same seeds). */
let reference: Promise<Map<string, string>> | undefined;
const unfaulted = () =>
  (reference ??= (async () => {
    const out = newDir();
    const s = await generate(config(server.url, out, false), quiet);
    assert.deepEqual([s.written, s.this_run.retries], [ids.length, 0]);
    return new Map(readJsonl(path.join(out, 'samples.jsonl')).map((x) => [x.id, x.messages.at(-1).content as string]));
  })());

async function assertSameAsUnfaulted(samples: any[]): Promise<void> {
  const ref = await unfaulted();
  for (const x of samples) {
    assert.equal(x.messages.at(-1).content, ref.get(x.id), `sample ${x.meta.prompt_id}/${x.meta.sample}: the answer the unfaulted server gives (no partial answer)`);
    assert.ok(x.meta.finish_reason === 'stop' || x.meta.finish_reason === 'length', `finish_reason ${x.meta.finish_reason}`);
  }
}

describe('fault proxy: spec and plan', () => {
  it('parses specs, naming the item at fault', () => {
    assert.deepEqual(parseFaultSpec('429:0.1, 500:0.05,stall:0.05,drop:0.1'), { rates: { 429: 0.1, 500: 0.05, stall: 0.05, drop: 0.1 } });
    assert.deepEqual(parseFaultSpec('429*2,none*1,drop*1,reset:0.5,retry-after=0.25,stall-ms=1500,drop-after=64'), {
      schedule: ['429', '429', null, 'drop'], rates: { reset: 0.5 }, retryAfterS: 0.25, stallMs: 1500, dropAfterBytes: 64,
    });
    assert.throws(() => parseFaultSpec('429:0.1,503:0.2'), /fault spec: '503:0\.2': unknown fault '503' \(faults: 429, 500, stall, drop, reset\)/);
    assert.throws(() => parseFaultSpec('drop:1.5'), /'drop:1\.5': expected a probability in \[0, 1\]/);
    assert.throws(() => parseFaultSpec('drop:x'), /'drop:x': expected a probability/);
    assert.throws(() => parseFaultSpec('stall*0'), /'stall\*0': expected a count >= 1 after \*/);
    assert.throws(() => parseFaultSpec('429:0.1,,500:0.1'), /'': an empty item/);
    assert.throws(() => parseFaultSpec('retry=1'), /'retry=1': unknown option 'retry' \(options: retry-after, stall-ms, drop-after\)/);
    assert.throws(() => parseFaultSpec('drop-after=0'), /'drop-after=0': drop-after must be an integer >= 1/);
    assert.throws(() => parseFaultSpec('429'), /'429': expected KIND:PROBABILITY, KIND\*COUNT or OPTION=VALUE/);
    assert.throws(() => parseFaultSpec('429:0.6,500:0.6'), /the probabilities sum to 1\.2, more than 1/);
    assert.throws(() => parseFaultSpec(''), /fault spec: empty/);
    assert.equal(
      describeFaultSpec(parseFaultSpec('500*1,429:0.1,drop:0.05,retry-after=0.5')),
      'the first 1 request: 500; then per request 429 10 %, drop 5 % (Retry-After 0.5 s, drops after 256 bytes)',
    );
  });

  it('draws the same faults from the same seed, at the given rates', () => {
    const spec: FaultSpec = { schedule: ['stall', null], rates: { 429: 0.1, 500: 0.2, drop: 0.3 } };
    const draw = (seed: number, n: number) => {
      const next = faultPlan(spec, seed);
      return Array.from({ length: n }, next);
    };
    const a = draw(3, 20_000);
    assert.deepEqual(a, draw(3, 20_000), 'one seed, one sequence');
    assert.notDeepEqual(a.slice(0, 50), draw(4, 50), 'another seed, another sequence');
    assert.deepEqual(a.slice(0, 2), ['stall', null], 'the schedule comes first');
    const freq = (k: string | null) => a.slice(2).filter((x) => x === k).length / (a.length - 2);
    for (const [k, p] of [['429', 0.1], ['500', 0.2], ['drop', 0.3], [null, 0.4], ['stall', 0], ['reset', 0]] as const) assert.ok(Math.abs(freq(k) - p) < 0.015, `${k}: ${freq(k)} vs ${p}`);
  });
});

describe('fault proxy in front of serve', () => {
  it('passes other routes through; each fault looks as it should to a raw client', async () => {
    const proxy = await startFaultProxy({ target: server.url, faults: parseFaultSpec('429*1,500*1,reset*1,drop*2,stall*1,retry-after=0.5,drop-after=300,stall-ms=60000'), seed: 1 });
    try {
      assert.equal(((await (await fetch(`${proxy.url}/models`)).json()) as any).data[0].id, 'tiny');
      assert.equal((await fetch(`${proxy.url}/embeddings`, { method: 'POST', body: '{}' })).status, 404);
      const post = (signal?: AbortSignal, stream = false) =>
        fetch(`${proxy.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, seed: 1, stream }), signal });
      const r429 = await post();
      assert.deepEqual([r429.status, r429.headers.get('retry-after')], [429, '0.5']);
      assert.match(await r429.text(), /injected fault: rate limited/);
      assert.equal((await post()).status, 500);
      await assert.rejects(post(), /fetch failed/, 'reset: no response at all');
      const cut = await post();
      assert.equal(cut.status, 200, 'drop: the status line and headers come through');
      await assert.rejects(cut.text(), /terminated/, 'drop: the body is cut');
      const cutStream = await post(undefined, true);
      assert.equal(cutStream.status, 200);
      const reader = cutStream.body!.getReader();
      let got = Buffer.alloc(0);
      await assert.rejects(async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          got = Buffer.concat([got, value]);
        }
      }, /terminated/, 'drop: the stream is cut');
      assert.equal(got.length, 300, 'exactly drop-after bytes of the stream came through');
      assert.match(got.toString(), /^data: \{"id":"chatcmpl-.*"object":"chat\.completion\.chunk"[^\n]*\n\ndata: /, 'a whole event or more, then the cut');
      const t0 = Date.now();
      await assert.rejects(post(AbortSignal.timeout(150)), /aborted|timeout/i, 'stall: nothing comes');
      assert.ok(Date.now() - t0 >= 140);
      const ok = await post();
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as any).object, 'chat.completion');
      assert.deepEqual(proxy.counts, { 429: 1, 500: 1, stall: 1, drop: 2, reset: 1, none: 1 }, 'only chat completions are counted');
    } finally {
      await proxy.close();
    }
  });

  for (const stream of [false, true]) {
    it(`generate (${stream ? 'streaming' : 'JSON'}) through each fault kind: every sample exactly once, as the unfaulted server gives it`, async () => {
      await unfaulted();
      const events: (FaultEvent & { at: number; id: string })[] = [];
      // a stream is cut in its third event or so (mid-answer); a JSON answer inside its body
      const spec = parseFaultSpec(`429*2,500*2,stall*1,drop*2,reset*2,retry-after=0.05,stall-ms=20000,drop-after=${stream ? 500 : 60}`);
      const proxy = await startFaultProxy({ target: server.url, faults: spec, seed: 5, onRequest: (e) => events.push({ ...e, at: Date.now(), id: requestedId(e.body) }) });
      try {
        const out = newDir();
        const s = await generate(config(proxy.url, out, stream), quiet);
        const samples = assertComplete(out);
        assert.equal(s.written, ids.length, JSON.stringify(s));
        const { none, ...faults } = proxy.counts;
        assert.deepEqual(faults, { 429: 2, 500: 2, stall: 1, drop: 2, reset: 2 });
        const injected = 9;
        // every attempt reached the proxy, and every fault cost one retry (a slow machine may add timeouts of its own)
        assert.equal(s.this_run.requests, none + injected);
        const e = s.this_run.errors;
        assert.deepEqual([e.http, e.dropped, e.network], [4, 2, 2], JSON.stringify(e));
        assert.ok((e.timeout ?? 0) >= 1, 'the stalled request timed out');
        assert.equal(s.this_run.retries, injected + (e.timeout! - 1));
        assert.equal(samples.reduce((a, x) => a + x.meta.attempts, 0), s.this_run.requests, 'attempts per sample add up to the requests');
        assert.ok(s.this_run.elapsed_s < 15, 'nobody waited for the stall to end');
        // each faulted request was asked again, after the Retry-After or the timeout
        for (const f of events.filter((x) => x.fault)) {
          const retry = events.find((x) => x.index > f.index && x.id === f.id);
          assert.ok(retry, `${f.fault} of ${f.id} was retried`);
          if (f.fault === '429') assert.ok(retry.at - f.at >= 48, `Retry-After 0.05 s honoured: ${retry.at - f.at} ms`);
          if (f.fault === 'stall') assert.ok(retry.at - f.at >= TIMEOUT_MS - 5, `the stall was given up after the timeout: ${retry.at - f.at} ms`);
          assert.ok(samples.find((x) => x.id === f.id).meta.attempts >= 2);
        }
        await assertSameAsUnfaulted(samples);
      } finally {
        await proxy.close();
      }
    });
  }

  it('a run aborted mid-way and resumed through seeded random faults ends with each id exactly once', async () => {
    await unfaulted();
    const events: (FaultEvent & { id: string })[] = [];
    const spec = parseFaultSpec('429:0.1,500:0.1,drop:0.1,reset:0.05,stall:0.03,retry-after=0.02,drop-after=300,stall-ms=20000');
    const proxy = await startFaultProxy({ target: server.url, faults: spec, seed: 42, onRequest: (e) => events.push({ ...e, id: requestedId(e.body) }) });
    try {
      const out = newDir();
      const cfg = config(proxy.url, out, true);
      const stop = new AbortController();
      let err: unknown;
      await generate(cfg, { ...quiet, signal: stop.signal, onSample: (e) => e.stats.written >= 7 && stop.abort() }).catch((x) => (err = x));
      assert.ok(err instanceof GenerationInterrupted, String(err));
      const first = err.summary;
      assert.ok(first.interrupted && first.reconciled, JSON.stringify(first));
      assert.ok(first.written >= 7 && first.pending > 0, `written ${first.written}, pending ${first.pending}`);
      assert.equal(first.written + first.rejected + first.failed + first.pending, ids.length);
      const writtenFirst = new Set(readJsonl(path.join(out, 'samples.jsonl')).map((x) => x.id));
      assert.equal(writtenFirst.size, first.written);
      const asked = events.length;
      const s = await generate(cfg, quiet);
      assert.equal(s.resumed, first.written);
      assert.equal(s.written, ids.length, JSON.stringify(s));
      const samples = assertComplete(out);
      assert.ok(events.slice(asked).every((x) => !writtenFirst.has(x.id)), 'nothing written by the first run was asked for again');
      assert.equal(s.this_run.requests, events.length - asked);
      const { none, ...faults } = proxy.counts;
      const injected = Object.values(faults).reduce((a, b) => a + b, 0);
      assert.ok(injected >= 3 && first.this_run.retries + s.this_run.retries >= 3, `faults ${JSON.stringify(faults)}, retries ${first.this_run.retries} + ${s.this_run.retries}`);
      assert.equal(none + injected, events.length);
      await assertSameAsUnfaulted(samples);

      // the checks above catch a duplicate: a second copy of one line is found, by them and by the summary
      const copy = newDir();
      fs.cpSync(out, copy, { recursive: true });
      fs.appendFileSync(path.join(copy, 'samples.jsonl'), fs.readFileSync(path.join(copy, 'samples.jsonl'), 'utf8').split('\n')[0] + '\n');
      const again = await generate(config(proxy.url, copy, true), quiet);
      assert.deepEqual([again.duplicate_lines, again.reconciled, again.this_run.requests], [1, false, 0]);
      assert.throws(() => assertComplete(copy), /no sample id appears twice/);
    } finally {
      await proxy.close();
    }
  });

  it('without retries each faulted request is a failure, once; running again retries just those', async () => {
    await unfaulted();
    const events: (FaultEvent & { id: string })[] = [];
    const spec = parseFaultSpec('429*1,500*1,drop*1,reset*1,500:0.15,drop:0.1,retry-after=0.02,drop-after=300');
    const proxy = await startFaultProxy({ target: server.url, faults: spec, seed: 9, onRequest: (e) => events.push({ ...e, id: requestedId(e.body) }) });
    try {
      const out = newDir();
      const first = await generate(config(proxy.url, out, true, 0), quiet);
      const faulted = events.filter((e) => e.fault);
      assert.ok(faulted.length >= 4);
      assert.equal(events.length, ids.length, 'one request per sample');
      assert.deepEqual([first.written, first.failed, first.this_run.retries], [ids.length - faulted.length, faulted.length, 0]);
      const failures = readJsonl(path.join(out, 'failures.jsonl'));
      assert.deepEqual(failures.map((f) => f.id).sort(), faulted.map((e) => e.id).sort(), 'the failed samples are the faulted requests');
      const kindOf = { 429: 'http', 500: 'http', drop: 'dropped', reset: 'network' } as Record<string, string>;
      for (const f of failures) assert.deepEqual([f.kind, f.attempts], [kindOf[faulted.find((e) => e.id === f.id)!.fault!], 1], JSON.stringify(f));
      assertExactlyOnceOrFailed(out);
      const asked = events.length;
      const s = await generate(config(proxy.url, out, true), quiet);
      assert.deepEqual([s.resumed, s.written, s.failed], [first.written, ids.length, 0]);
      assert.deepEqual([...new Set(events.slice(asked).map((e) => e.id))].sort(), failures.map((f) => f.id).sort(), 'only the failed samples are asked again');
      assert.equal(readJsonl(path.join(out, 'failures.jsonl')).length, 0);
      await assertSameAsUnfaulted(assertComplete(out));
    } finally {
      await proxy.close();
    }
  });

  it('tsdistill serve --faults puts the proxy on the public port', async () => {
    const ckpt = path.join(tmp, 'tiny.safetensors');
    saveDecoder(model, ckpt, tok);
    const srv = await startServeProcess(cli, [ckpt, '--port', '0', '--threads', '1', '--quiet', '--faults', '500*1,429*1,retry-after=0', '--fault-seed', '3'], /at (http:\/\/127\.0\.0\.1:\d+\/v1)[\s\S]*\n.*injecting faults/);
    const url = srv.url;
    try {
      assert.match(srv.out.stdout, /injecting faults at http:\/\/127\.0\.0\.1:\d+\/v1 \(seed 3\): the first 2 requests: 500, 429 \(Retry-After 0 s\); the server itself is at http:\/\/127\.0\.0\.1:\d+\/v1/);
      const post = () => fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }) });
      assert.equal((await post()).status, 500);
      const r = await post();
      assert.deepEqual([r.status, r.headers.get('retry-after')], [429, '0']);
      assert.equal((await post()).status, 200);
    } finally {
      assert.equal(await srv.stop(), 0, srv.out.stderr);
    }
    assert.match(srv.out.stdout, /faults injected: 429 ×1, 500 ×1; 1 request passed/);
  });
});
