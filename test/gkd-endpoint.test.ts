// On-policy distillation from a remote teacher: `serve`'s legacy /v1/completions scores token ids (echo + logprobs,
// checked against the teacher's own next-token distributions), `scoreTokens` reads the answer, and `sft` with
// kd.endpoint trains a student on its own answers scored by the server — lowering its KL to the teacher there, never
// training the cross-entropy on them, resuming to the same weights — and refuses settings it cannot honour.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { manualSeed, noGrad, ops, tensor, tidy } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, encodeChat, generateTokens } from '../src/llm';
import { serve, promptLogprobs, type Server } from '../src/llm/serve';
import { parseScores, scoreTokens } from '../src/llm/score';
import { RequestError } from '../src/llm/client';
import { sft, type ChatExample } from '../src/distill/sft';
import { tokenKdLoss } from '../src/distill/token-kd';
import { TrainingInterrupted } from '../src/distill/trainer';
import { runSft } from '../src/cli/llm';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-gkd-endpoint-'));
const tok = new ByteTokenizer();
const arch = (d: number, layers: number) => ({ vocabSize: tok.vocabSize, contextLength: 32, dModel: d, nLayer: layers, nHead: 2 });
const examples: ChatExample[] = [['hi', 'hello'], ['2+2?', 'four'], ['sky?', 'blue'], ['go', 'stop']].map(([q, a]) => ({
  messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }],
}));
const quiet = () => {};
manualSeed(3);
const teacher = new GPT(arch(32, 2));
let server: Server;
before(async () => {
  // a teacher that knows the answers (a random one is close to uniform, and so is every student)
  await sft({ model: teacher, tokenizer: tok, data: examples, outDir: path.join(tmp, 'teacher'), steps: 40, seqLen: 24, batchSize: 4, lr: 1e-2, log: quiet });
  server = await serve({ model: teacher, tokenizer: tok, modelName: 'teacher' });
});
after(async () => {
  await server.close();
  teacher.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});
const post = async (body: object) => {
  const res = await fetch(`${server.url}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as any };
};

/** Mean forward KL(teacher ‖ student) per token on answers the student samples now (a fixed set of seeds). */
function onPolicyKl(student: GPT): number {
  let sum = 0;
  let n = 0;
  for (const [i, ex] of examples.entries())
    for (let r = 0; r < 4; r++) {
      const prompt = encodeChat(tok, ex.messages.slice(0, 1), { generationPrompt: true }).ids;
      const gen = generateTokens(student, prompt, { maxNewTokens: 10, temperature: 1, seed: 1000 + 10 * i + r, stopTokens: [tok.eosId] });
      if (!gen.tokens.length) continue;
      const seq = [...prompt, ...gen.tokens];
      sum += tidy(() => noGrad(() => {
        const x = tensor(seq.slice(0, -1), { shape: [1, seq.length - 1], dtype: 'int64' });
        const rows = (m: GPT) => m.call(x).reshape(seq.length - 1, -1);
        const w = tensor(seq.slice(1).map((_, j) => (j + 1 >= prompt.length ? 1 : 0)), { shape: [seq.length - 1] });
        return tokenKdLoss('forward_kl', rows(student), rows(teacher), w).item() * gen.tokens.length;
      }));
      n += gen.tokens.length;
    }
  return sum / n;
}

describe('serve: legacy /v1/completions', () => {
  it('echo with logprobs scores every token as the model gives it; the first token has none', async () => {
    const ids = [...Buffer.from('hello world')];
    const { status, body } = await post({ model: 'teacher', prompt: ids, echo: true, logprobs: 3, max_tokens: 0, return_tokens_as_token_ids: true });
    assert.equal(status, 200, JSON.stringify(body));
    const lp = body.choices[0].logprobs;
    assert.equal(body.choices[0].text, 'hello world');
    assert.deepEqual(lp.tokens, ids.map((i) => `token_id:${i}`));
    assert.deepEqual(lp.text_offset, ids.map((_, j) => j));
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    const cache = teacher.newCache();
    for (let j = 1; j < ids.length; j++) {
      const want = teacher.nextLogprobs([ids[j - 1]], cache);
      assert.ok(Math.abs(lp.token_logprobs[j] - want[ids[j]]) < 1e-4, `token ${j}: ${lp.token_logprobs[j]} vs ${want[ids[j]]}`);
      const best = [...want.keys()].sort((a, b) => want[b] - want[a]).slice(0, 3);
      const got = lp.top_logprobs[j] as Record<string, number>;
      assert.equal(Object.keys(got).length, 3);
      for (const id of best) assert.ok(Math.abs(got[`token_id:${id}`] - want[id]) < 1e-4, `token ${j}, alternative ${id}`);
    }
    assert.deepEqual(body.usage, { prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
    // as texts (the protocol's default)
    const texts = await post({ model: 'teacher', prompt: ids, echo: true, logprobs: 3, max_tokens: 0 });
    assert.deepEqual(texts.body.choices[0].logprobs.tokens, 'hello world'.split(''));
    // a string prompt, and an answer after the echo; the answer's offsets continue the text
    const g = await post({ model: 'teacher', prompt: 'ab', echo: true, logprobs: 1, max_tokens: 4, temperature: 0 });
    assert.equal(g.status, 200);
    const want = generateTokens(teacher, [97, 98], { maxNewTokens: 4, temperature: 0, stopTokens: [tok.eosId] });
    assert.equal(g.body.choices[0].text, 'ab' + tok.decode(want.tokens));
    assert.equal(g.body.choices[0].logprobs.tokens.length, 2 + want.tokens.length);
    assert.equal(g.body.choices[0].logprobs.text_offset[2], 2);
    // the one-pass scoring equals the token-by-token one
    const one = promptLogprobs(teacher, ids, 2);
    assert.equal(one.logprob.length, ids.length - 1);
  });

  it('refuses what it does not do, naming the field', async () => {
    assert.match((await post({ prompt: 'a', n: 2 })).body.error.message, /'n' must be 1/);
    assert.match((await post({ prompt: 'a', stream: true })).body.error.message, /'stream' is not supported on \/v1\/completions/);
    assert.match((await post({ prompt: 'a', max_tokens: 0 })).body.error.message, /'max_tokens' 0 asks for nothing without 'echo'/);
    const oov = await post({ prompt: [1, 99999], echo: true, max_tokens: 0 });
    assert.equal(oov.status, 400);
    assert.match(oov.body.error.message, /token id 99999 is outside the vocabulary/);
    const other = await post({ model: 'gpt-4o', prompt: 'a' });
    assert.equal(other.status, 404);
    assert.equal(other.body.error.code, 'model_not_found');
  });
});

describe('scoreTokens', () => {
  it('reads one entry per token sent for each sequence; a short answer is malformed', async () => {
    const seqs = [[104, 105, 33], [97, 98, 99, 100]];
    const scored = await scoreTokens({ baseUrl: server.url, model: 'teacher', tokenIds: true }, seqs, 4);
    assert.deepEqual(scored.map((s) => s.length), [3, 4]);
    assert.equal(scored[1][0].logprob, null);
    assert.equal(scored[1][3].top!.length, 4);
    const local = promptLogprobs(teacher, seqs[1], 4);
    assert.ok(Math.abs(scored[1][3].logprob! - local.logprob[2]) < 1e-6);
    const short = { choices: [{ index: 0, logprobs: { tokens: ['a'], token_logprobs: [null], top_logprobs: [null] } }] };
    assert.throws(() => parseScores(short, [[1, 2]], 'x'), (e: unknown) => e instanceof RequestError && /scores 1 tokens, 2 were sent/.test(e.message));
  });
});

describe('sft with kd.endpoint (GKD from a server)', () => {
  const endpoint = () => ({ baseUrl: server.url, model: 'teacher', tokenIds: true });
  const kd = (extra: object = {}) => ({ source: 'logprobs' as const, endpoint: endpoint(), onPolicy: 1, alpha: 1, topk: 20, maxNewTokens: 10, ...extra });

  it('λ = 1: the student\'s own answers scored by the server; its KL to the teacher there goes down; no cross-entropy on them', async () => {
    manualSeed(4);
    const student = new GPT(arch(16, 1));
    const before = onPolicyKl(student);
    const s = await sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, 'gkd'), steps: 30, seqLen: 24, batchSize: 4, lr: 1e-2, logEvery: 1, kd: kd(), log: quiet });
    assert.equal(s.onPolicy!.batches, 30);
    const afterKl = onPolicyKl(student);
    assert.ok(afterKl < before * 0.7, `KL on the student's own answers ${before.toFixed(4)} -> ${afterKl.toFixed(4)}`);
    const s2 = await sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, 'gkd-ce'), steps: 3, seqLen: 24, batchSize: 2, logEvery: 1, kd: kd({ alpha: 0.5 }), log: quiet });
    assert.equal(s2.onPolicy!.batches, 3);
    const metrics = fs.readFileSync(path.join(tmp, 'gkd-ce', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(metrics.length === 3 && metrics.every((m) => m.ce === 0 && m.kd > 0), JSON.stringify(metrics));
    student.dispose();
  });

  it('λ = 0.5 with the data\'s batches in between, scored by the server too; a stopped and resumed run ends with the same weights', async () => {
    const opts = (outDir: string, model: GPT) => ({
      model, tokenizer: tok, data: examples, outDir, steps: 6, seqLen: 24, batchSize: 2, lr: 3e-3, checkpointEvery: 100, logEvery: 1, kd: kd({ onPolicy: 0.5, alpha: 0.5 }), log: quiet,
    });
    manualSeed(5);
    const a = new GPT(arch(16, 1));
    const s = await sft(opts(path.join(tmp, 'straight'), a));
    assert.ok(s.onPolicy!.batches > 0 && s.onPolicy!.batches < 6, `${s.onPolicy!.batches} of 6 on-policy`);
    // the data's micro-batches carry no stored log-probabilities: the server scores them too, so every step has a KD term
    const steps = fs.readFileSync(path.join(tmp, 'straight', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(steps.length, 6);
    assert.ok(steps.every((m) => m.kd > 0), JSON.stringify(steps.map((m) => m.kd)));
    assert.ok(steps.filter((m) => m.ce > 0).length === 6 - s.onPolicy!.batches, 'the cross-entropy trains on the data\'s micro-batches only');
    manualSeed(5);
    const b = new GPT(arch(16, 1));
    const ac = new AbortController();
    await assert.rejects(
      sft({ ...opts(path.join(tmp, 'resumed'), b), signal: ac.signal, log: (l) => l.includes('step 3/') && ac.abort() }),
      (e: unknown) => e instanceof TrainingInterrupted && e.step === 3,
    );
    b.dispose();
    manualSeed(77);
    const c = new GPT(arch(16, 1));
    await sft({ ...opts(path.join(tmp, 'resumed'), c), resume: true });
    const sa = a.stateDict();
    const sc = c.stateDict();
    for (const k of Object.keys(sa)) assert.ok(ops.equal(sa[k], sc[k]), k);
    a.dispose();
    c.dispose();
  });

  it('windows as long as the teacher\'s context are scored within it', async () => {
    manualSeed(6);
    const m = new GPT(arch(16, 1));
    // seqLen = the served teacher's context (32): a data window of 32 tokens and its next token would be 33
    const s = await sft({ model: m, tokenizer: tok, data: examples, outDir: path.join(tmp, 'full-window'), steps: 4, seqLen: 32, batchSize: 2, logEvery: 1, kd: kd({ onPolicy: 0.5, alpha: 0.5 }), log: quiet });
    const steps = fs.readFileSync(path.join(tmp, 'full-window', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(s.onPolicy!.batches < 4 && steps.every((x) => x.kd > 0), JSON.stringify(steps));
    m.dispose();
  });

  it('refuses settings it cannot honour, naming them', async () => {
    const student = new GPT(arch(16, 1));
    const run = (k: object) => sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, 'bad'), steps: 1, seqLen: 24, log: quiet, kd: k });
    await assert.rejects(run(kd({ onPolicy: 0 })), /kd\.endpoint scores on-policy answers: give kd\.onPolicy/);
    await assert.rejects(run({ ...kd(), source: 'teacher', teacher }), /kd\.endpoint .* goes with kd\.source 'logprobs'/);
    await assert.rejects(run(kd({ endpoint: { baseUrl: 'http://user:pw@127.0.0.1:1/v1', model: 't' } })), /kd\.endpoint\.baseUrl holds credentials/);
    await assert.rejects(run(kd({ endpoint: { baseUrl: server.url, model: 't', temperature: 1 } })), /kd\.endpoint: unknown option 'temperature'/);
    await assert.rejects(run(kd({ endpoint: { baseUrl: server.url, model: 'nobody', maxRetries: 0 } })), /HTTP 404.*model_not_found|does not exist/);
    student.dispose();
  });

  it("tsdistill sft --teacher-url URL --teacher-model NAME --on-policy L", async () => {
    const data = path.join(tmp, 'chat.jsonl');
    fs.writeFileSync(data, examples.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const a = JSON.stringify({ contextLength: 32, dModel: 16, nLayer: 1, nHead: 2 });
    const base = { arch: a, 'teacher-url': server.url, 'teacher-model': 'teacher', 'teacher-token-ids': true, 'on-policy': '1', alpha: '1', steps: '2', 'seq-len': '24', batch: '2', json: true };
    const printed: string[] = [];
    const log = console.log;
    console.log = (l: string) => printed.push(l);
    try {
      assert.equal(await runSft(data, { ...base, out: path.join(tmp, 'cli') }, new AbortController().signal), 0);
      const sig = new AbortController().signal;
      await assert.rejects(runSft(data, { ...base, 'on-policy': undefined, out: path.join(tmp, 'cli2') }, sig), /--teacher-url scores the student's own answers: give --on-policy/);
      await assert.rejects(runSft(data, { ...base, kd: 'jsd', out: path.join(tmp, 'cli3') }, sig), /--kd jsd does not go with --teacher-url/);
      await assert.rejects(runSft(data, { ...base, 'teacher-key-env': 'TSD_NO_SUCH_VAR', out: path.join(tmp, 'cli4') }, sig), /TSD_NO_SUCH_VAR: the environment variable is not set/);
    } finally {
      console.log = log;
    }
    const summary = JSON.parse(printed.at(-1)!);
    assert.equal(summary.onPolicy.batches, 2);
    assert.ok(summary.onPolicy.generatedTokens > 0);
  });
});
