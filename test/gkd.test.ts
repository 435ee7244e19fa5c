// GKD (on-policy distillation of decoders): generalized JSD(β) against TRL's formula on fixed inputs (a Python
// fixture), β = 0 and 1 as forward and reverse KL; sft with kd.onPolicy = λ — the student's own answers scored by the
// teacher, the cross-entropy never on them, λ deciding the share of micro-batches, an exact resume, and the JSD on the
// student's own answers going down.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { manualSeed, noGrad, ops, tensor, tidy } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, encodeChat, generateTokens } from '../src/llm';
import { sft, type ChatExample } from '../src/distill/sft';
import { tokenKdLoss } from '../src/distill/token-kd';
import { TrainingInterrupted } from '../src/distill/trainer';
import { saveDecoder } from '../src/llm';
import { runSft } from '../src/cli/llm';
import { fixture } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-gkd-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tok = new ByteTokenizer();
const arch = (d: number, layers: number) => ({ vocabSize: tok.vocabSize, contextLength: 32, dModel: d, nLayer: layers, nHead: 2 });
const examples: ChatExample[] = [['hi', 'hello'], ['2+2?', 'four'], ['sky?', 'blue'], ['go', 'stop']].map(([q, a]) => ({
  messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }],
}));
const quiet = () => {};

describe('generalized JSD(β)', () => {
  it("equals TRL's generalized_jsd_loss on fixed inputs (τ² aside), β = 0 and 1 being forward and reverse KL", () => {
    const f = fixture('gkd_jsd.json');
    const [B, T, V] = f.shape;
    tidy(() => {
      const s = tensor(f.student, { shape: [B * T, V], dtype: 'float64' });
      const t = tensor(f.teacher, { shape: [B * T, V], dtype: 'float64' });
      const w = tensor(f.weights, { shape: [B * T], dtype: 'float64' });
      for (const c of f.cases) {
        const ours = tokenKdLoss('jsd', s, t, w, { beta: c.beta, temperature: c.temperature }).item() / c.temperature ** 2;
        assert.ok(Math.abs(ours - c.value) < 1e-12 * Math.max(1, Math.abs(c.value)), `β ${c.beta} τ ${c.temperature}: ${ours} vs TRL ${c.value}`);
      }
      assert.equal(tokenKdLoss('jsd', s, t, w, { beta: 0 }).item(), tokenKdLoss('forward_kl', s, t, w).item());
      assert.equal(tokenKdLoss('jsd', s, t, w, { beta: 1 }).item(), tokenKdLoss('reverse_kl', s, t, w).item());
    });
  });
});

/** Mean JSD(½) per token between student and teacher on answers the student samples now (a fixed set of seeds). */
function onPolicyJsd(student: GPT, teacher: GPT): number {
  let sum = 0;
  let n = 0;
  for (const [i, ex] of examples.entries())
    for (let r = 0; r < 4; r++) {
      const prompt = encodeChat(tok, ex.messages.slice(0, 1), { generationPrompt: true }).ids;
      const gen = generateTokens(student, prompt, { maxNewTokens: 10, temperature: 1, seed: 1000 + 10 * i + r, stopTokens: [tok.eosId] });
      if (!gen.tokens.length) continue;
      const seq = [...prompt, ...gen.tokens];
      sum += tidy(() =>
        noGrad(() => {
          const x = tensor(seq.slice(0, -1), { shape: [1, seq.length - 1], dtype: 'int64' });
          const rows = (m: GPT) => m.call(x).reshape(seq.length - 1, -1);
          const w = tensor(seq.slice(1).map((_, j) => (j + 1 >= prompt.length ? 1 : 0)), { shape: [seq.length - 1] });
          return tokenKdLoss('jsd', rows(student), rows(teacher), w, { beta: 0.5 }).item() * gen.tokens.length;
        }),
      );
      n += gen.tokens.length;
    }
  return sum / n;
}

describe('sft with kd.onPolicy (GKD)', () => {
  manualSeed(3);
  const teacher = new GPT(arch(32, 2));
  after(() => teacher.dispose());
  const kd = (onPolicy: number, extra: object = {}) => ({ teacher, loss: 'jsd' as const, beta: 0.5, alpha: 1, onPolicy, maxNewTokens: 10, ...extra });

  it('λ = 1: trains on its own answers scored by the teacher, lowering the JSD there; the cross-entropy never sees them', async () => {
    manualSeed(4);
    const student = new GPT(arch(16, 1));
    const before = onPolicyJsd(student, teacher);
    const s = await sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, 'gkd'), steps: 30, seqLen: 24, batchSize: 4, lr: 1e-2, logEvery: 1, kd: kd(1), log: quiet });
    assert.deepEqual(s.onPolicy && s.onPolicy.batches, 30);
    assert.ok(s.onPolicy!.generatedTokens > 0);
    const afterJsd = onPolicyJsd(student, teacher);
    assert.ok(afterJsd < before * 0.7, `JSD on the student's own answers ${before.toFixed(4)} -> ${afterJsd.toFixed(4)}`);
    // with the cross-entropy weighted in (α < 1) it still has nothing to train on in on-policy batches
    const s2 = await sft({ model: student, tokenizer: tok, data: examples, outDir: path.join(tmp, 'gkd-ce'), steps: 3, seqLen: 24, batchSize: 2, logEvery: 1, kd: kd(1, { alpha: 0.5 }), log: quiet });
    assert.equal(s2.onPolicy!.batches, 3);
    const metrics = fs.readFileSync(path.join(tmp, 'gkd-ce', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(metrics.length === 3 && metrics.every((m) => m.ce === 0 && m.kd > 0), JSON.stringify(metrics));
    student.dispose();
  });

  it('λ mixes on-policy and data micro-batches; a stopped and resumed run ends with the same weights', async () => {
    const opts = (outDir: string, model: GPT) => ({
      model, tokenizer: tok, data: examples, outDir, steps: 6, seqLen: 24, batchSize: 2, gradAccum: 2, lr: 3e-3, checkpointEvery: 100, logEvery: 1, kd: kd(0.5), log: quiet,
    });
    manualSeed(5);
    const a = new GPT(arch(16, 1));
    const s = await sft(opts(path.join(tmp, 'straight'), a));
    assert.ok(s.onPolicy!.batches > 0 && s.onPolicy!.batches < 12, `${s.onPolicy!.batches} of 12 micro-batches on-policy at λ = 0.5`);
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

  it('refuses settings it cannot honour, naming them', async () => {
    const student = new GPT(arch(16, 1));
    const run = (o: object, data: any = examples) => sft({ model: student, tokenizer: tok, data, outDir: path.join(tmp, 'bad'), steps: 1, seqLen: 24, log: quiet, ...o });
    await assert.rejects(run({ kd: kd(1.5) }), /kd\.onPolicy \(GKD's λ\) must be in \[0, 1\], got 1\.5/);
    await assert.rejects(run({ kd: { source: 'logprobs', onPolicy: 0.5 } }), /kd\.onPolicy needs a teacher to score the student's own answers: a local decoder \(kd\.teacher\) or a server \(kd\.endpoint\)/);
    await assert.rejects(run({ kd: kd(0.5) }, { texts: ['abc'.repeat(20)] }), /kd\.onPolicy needs chat data/);
    await assert.rejects(run({ kd: kd(0.5, { maxNewTokens: 24 }) }), /kd\.maxNewTokens must be an integer in \[1, 23\]/);
    student.dispose();
  });

  it('tsdistill sft --on-policy L trains on the student\'s own answers', async () => {
    const ckpt = path.join(tmp, 'teacher.safetensors');
    saveDecoder(teacher, ckpt, tok);
    const data = path.join(tmp, 'chat.jsonl');
    fs.writeFileSync(data, examples.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const a = JSON.stringify({ contextLength: 32, dModel: 16, nLayer: 1, nHead: 2 });
    // the command's own code, in this process (its options as the parser hands them over)
    const printed: string[] = [];
    const log = console.log;
    console.log = (l: string) => printed.push(l);
    try {
      const v = { arch: a, kd: 'jsd', beta: '1', alpha: '1', 'on-policy': '1', teacher: ckpt, steps: '2', 'seq-len': '24', batch: '2', out: path.join(tmp, 'cli'), json: true };
      assert.equal(await runSft(data, v, new AbortController().signal), 0);
      await assert.rejects(runSft(data, { arch: a, 'on-policy': '1', steps: '1', out: path.join(tmp, 'cli2') }, new AbortController().signal), /--on-policy needs --kd forward_kl\|reverse_kl\|jsd with --teacher/);
    } finally {
      console.log = log;
    }
    assert.equal(JSON.parse(printed.at(-1)!).onPolicy.batches, 2);
  });
});
