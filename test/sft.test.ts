// SFT and token-level KD of a tiny decoder: packing and masks, the schedule, loss going down, resume to the same
// bytes, KD towards a local teacher and towards stored top-k logprobs.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { liveTensors, manualSeed, noGrad, ops, tidy, tensor, zeros } from '../src/torch';
import { SGD, warmupCosine } from '../src/optim';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, encodeChat } from '../src/llm/tokenizer';
import { evaluateNll, packChats, packTexts, readChatJsonl, sft, windowStarts, type ChatExample } from '../src/distill/sft';
import { tokenKdLoss } from '../src/distill/token-kd';
import { TrainingInterrupted } from '../src/distill/trainer';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-sft-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tok = new ByteTokenizer();
const arch = (d = 32, layers = 2) => ({ vocabSize: tok.vocabSize, contextLength: 48, dModel: d, nLayer: layers, nHead: 2 });
const examples: ChatExample[] = [
  ['hi', 'hello there'], ['2+2?', 'four'], ['color?', 'blue sky'], ['name?', 'tiny model'], ['go', 'stop'], ['yes?', 'no way'],
].map(([q, a]) => ({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] }));
const quiet = () => {};

describe('sft data', () => {
  it('packs chats with the template; the mask covers answers and their end-of-text; windows overlap by one', () => {
    const s = packChats(tok, examples.slice(0, 2));
    const one = encodeChat(tok, examples[0].messages);
    assert.deepEqual([...s.ids.slice(0, one.ids.length)], one.ids);
    assert.equal(s.ids[one.ids.length], tok.eosId, 'examples are separated by <|endoftext|>');
    const masked = [...s.ids].filter((_, i) => s.mask[i] === 1);
    assert.equal(tok.decode(masked), 'hello there<|endoftext|>four<|endoftext|>');
    assert.deepEqual(windowStarts(10, 4), [0, 4]);
    assert.deepEqual(windowStarts(9, 4), [0, 4]);
    assert.deepEqual(windowStarts(4, 4), []);
    const t = packTexts(tok, ['ab', 'c']);
    assert.deepEqual([...t.ids], [97, 98, 256, 99, 256]);
  });
  it('reads generate output and prompt/response lines; errors name the line', () => {
    const f = path.join(tmp, 'd.jsonl');
    fs.writeFileSync(f, '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"meta":{}}\n\n{"prompt":"c","response":"d"}\n');
    const ex = readChatJsonl(f);
    assert.equal(ex.length, 2);
    assert.equal(ex[1].messages[1].content, 'd');
    fs.writeFileSync(f, '{"prompt":"c","response":"d"}\n{"text": 1}\n');
    assert.throws(() => readChatJsonl(f), new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: expected`));
  });
  it('stored logprobs line up with re-encoded answers; misaligned answers are counted', () => {
    const ex: ChatExample[] = [
      { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'ab' }], logprobs: [
        { token: 'a', logprob: -0.1, top_logprobs: [{ token: 'a', logprob: -0.1 }, { token: 'xy', logprob: -3 }, { token: 'c', logprob: -4 }] },
        { token: 'b', logprob: -0.2, top_logprobs: [{ token: 'b', logprob: -0.2 }] },
      ] },
      { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'zz' }], logprobs: [{ token: 'zz', logprob: -1 }] },
      // stored trimmed (as generate stores answers): the whitespace entries at either end are dropped
      { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'cd' }], logprobs: [' ', 'c', 'd', '\n'].map((t) => ({ token: t, logprob: -1 })) },
    ];
    const s = packChats(tok, ex, { topk: 3 });
    assert.equal(s.unaligned, 1);
    const at = [...s.ids].indexOf(97); // 'a' inside the first answer
    assert.equal(s.topk!.has[at], 1);
    assert.deepEqual([...s.topk!.ids.slice(at * 3, at * 3 + 2)], [97, 99], "'xy' is not one token: it goes to the tail");
    assert.deepEqual([...s.topk!.valid.slice(at * 3, at * 3 + 3)], [1, 1, 0]);
    assert.equal(s.topk!.has[at + 1], 1);
    assert.equal(s.topk!.has[at + 2], 0, 'no target for the end-of-text');
    const c = [...s.ids].lastIndexOf(99);
    assert.deepEqual([s.topk!.has[c], s.topk!.has[c + 1], s.topk!.ids[c * 3], s.topk!.ids[(c + 1) * 3]], [1, 1, 99, 100]);
  });
  it('cosine schedule with warm-up (optim.warmupCosine, stepped per optimizer step)', () => {
    const p = zeros([1]);
    const opt = new SGD([p], { lr: 1 });
    const sched = warmupCosine(opt, { minLr: 0.1, warmupSteps: 4, totalSteps: 104 });
    const lrs: number[] = [];
    for (let i = 0; i <= 104; i++) {
      lrs.push(opt.paramGroups[0].options.lr);
      sched.step();
    }
    assert.equal(lrs[0], 0.25);
    assert.equal(lrs[3], 1);
    assert.ok(Math.abs(lrs[4] - 1) < 1e-12);
    assert.ok(Math.abs(lrs[54] - 0.55) < 1e-12);
    assert.ok(Math.abs(lrs[104] - 0.1) < 1e-12);
    opt.dispose();
    p.dispose();
  });
});

describe('sft training', () => {
  it('lowers the answer loss, writes checkpoints and metrics, and leaks no tensors', async () => {
    const base = liveTensors();
    manualSeed(0);
    const m = new GPT(arch());
    const data = packChats(tok, examples);
    const before = await evaluateNll(m, data, { seqLen: 32 });
    const out = path.join(tmp, 'plain');
    const s = await sft({ model: m, tokenizer: tok, data: examples, outDir: out, steps: 40, seqLen: 32, batchSize: 4, lr: 3e-3, log: quiet });
    const afterNll = await evaluateNll(m, data, { seqLen: 32 });
    assert.ok(afterNll.nll < before.nll - 1.0, `answer NLL ${before.nll.toFixed(3)} -> ${afterNll.nll.toFixed(3)}`);
    assert.equal(s.steps, 40);
    for (const f of ['last.safetensors', 'last.optim.safetensors', 'state.json', 'metrics.jsonl']) assert.ok(fs.existsSync(path.join(out, f)), f);
    assert.equal(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 20);
    await assert.rejects(sft({ model: m, tokenizer: tok, data: examples, outDir: out, steps: 40, seqLen: 32, log: quiet }), /holds a run at step 40 of 40; resume it/);
    m.dispose();
    assert.equal(liveTensors(), base);
  });

  it('stopped and resumed (with gradient accumulation) ends with the same weights, byte for byte', async () => {
    const opts = (outDir: string, model: GPT) => ({ model, tokenizer: tok, data: examples, outDir, steps: 8, seqLen: 16, batchSize: 2, gradAccum: 2, lr: 1e-3, checkpointEvery: 100, logEvery: 1, log: quiet });
    manualSeed(1);
    const a = new GPT({ ...arch(16, 1), dropout: 0.1 });
    await sft(opts(path.join(tmp, 'straight'), a));
    manualSeed(1);
    const b = new GPT({ ...arch(16, 1), dropout: 0.1 });
    const ac = new AbortController();
    await assert.rejects(
      sft({ ...opts(path.join(tmp, 'resumed'), b), signal: ac.signal, log: (l) => l.includes('step 3/') && ac.abort() }),
      (e: unknown) => e instanceof TrainingInterrupted && e.step === 3,
    );
    b.dispose();
    manualSeed(99);
    const c = new GPT({ ...arch(16, 1), dropout: 0.1 }); // other initial weights: all state comes from the run folder
    const r = await sft({ ...opts(path.join(tmp, 'resumed'), c), resume: true });
    assert.equal(r.resumedFrom, 3);
    const bytes = (d: string) => fs.readFileSync(path.join(tmp, d, 'last.safetensors')).subarray(0, 1 << 30);
    const sa = a.stateDict();
    const sc = c.stateDict();
    for (const k of Object.keys(sa)) assert.ok(ops.equal(sa[k], sc[k]), k);
    assert.ok(Buffer.compare(bytes('straight'), bytes('resumed')) === 0, 'checkpoint files are identical');
    const lines = fs.readFileSync(path.join(tmp, 'resumed', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
    assert.deepEqual(lines, [1, 2, 3, 4, 5, 6, 7, 8]);
    a.dispose();
    c.dispose();
  });

  it('token KD towards a local teacher lowers the KL to it; mismatched vocabularies are refused', async () => {
    manualSeed(2);
    const teacher = new GPT(arch(32, 2));
    await sft({ model: teacher, tokenizer: tok, data: examples, outDir: path.join(tmp, 'teacher'), steps: 30, seqLen: 32, batchSize: 4, lr: 3e-3, log: quiet });
    const student = new GPT(arch(16, 1));
    const data = packChats(tok, examples);
    const kl = () =>
      tidy(() =>
        noGrad(() => {
          teacher.eval();
          student.eval();
          const x = tensor([Array.from(data.ids.slice(0, 32))], { dtype: 'int64' });
          const w = tensor(Array.from(data.mask.slice(1, 33)), { dtype: 'float32' });
          const v = tokenKdLoss('forward_kl', student.call(x).reshape(32, -1), teacher.call(x).reshape(32, -1), w).item();
          student.train();
          return v;
        }),
      );
    const k0 = kl();
    for (const loss of ['forward_kl', 'reverse_kl', 'jsd'] as const) {
      const s = await sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, `kd-${loss}`), steps: 10, seqLen: 32, batchSize: 4, lr: 3e-3, kd: { teacher, loss, alpha: 1, beta: 0.5 }, log: quiet });
      assert.ok(Number.isFinite(s.finalLoss));
    }
    const k1 = kl();
    assert.ok(k1 < k0 * 0.7, `KL(teacher ‖ student) ${k0.toFixed(3)} -> ${k1.toFixed(3)}`);
    const other = new GPT({ ...arch(16, 1), vocabSize: 300 });
    await assert.rejects(
      sft({ model: other, tokenizer: tok, data: examples, outDir: path.join(tmp, 'kd-mismatch'), steps: 1, seqLen: 32, kd: { teacher }, log: quiet }),
      /teacher's vocabulary has 260 tokens \(teacher decoder\) and the student's 300/,
    );
    teacher.dispose();
    student.dispose();
    other.dispose();
  });

  it('token KD from stored top-k logprobs pulls the student towards them', async () => {
    // a "remote teacher" that puts 0.9 on the answer's own token and 0.05 on 'z' at every position
    const withLp: ChatExample[] = examples.map((e) => ({
      ...e,
      logprobs: [...e.messages[1].content].map((ch) => ({ token: ch, logprob: Math.log(0.9), top_logprobs: [{ token: ch, logprob: Math.log(0.9) }, { token: 'z', logprob: Math.log(0.05) }] })),
    }));
    manualSeed(3);
    const student = new GPT(arch(16, 1));
    const s = await sft({ model: student, tokenizer: tok, data: withLp, outDir: path.join(tmp, 'kd-lp'), steps: 60, seqLen: 32, batchSize: 4, lr: 5e-3, kd: { source: 'logprobs', alpha: 1 }, log: quiet });
    assert.equal(s.unaligned, 0);
    const m = fs.readFileSync(path.join(tmp, 'kd-lp', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(m.at(-1).kd < m[0].kd * 0.5, `kd ${m[0].kd} -> ${m.at(-1).kd}`);
    await assert.rejects(
      sft({ model: student, tokenizer: tok, data: withLp, outDir: path.join(tmp, 'kd-lp2'), steps: 1, seqLen: 32, kd: { source: 'logprobs', loss: 'jsd' }, log: quiet }),
      /stored top-k logprobs support kd.loss 'forward_kl' only/,
    );
    student.dispose();
  });
});
