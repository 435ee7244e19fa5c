// LLM distillation end to end on a real corpus, small enough for a 2-core CPU: Debian's `fortunes` files
// (apt-get install fortunes) as chat data "Tell me a fortune about <topic>." -> a fortune from that file.
//
//  1. train a byte-level teacher decoder on the training fortunes (answer tokens only)
//  2. serve it over the OpenAI Chat Completions protocol (in process, on 127.0.0.1)
//  3. `generate` a data set from it (n samples per prompt, top-5 logprobs captured)
//  4. students 4×+ smaller: trained alone on the corpus; SFT on the teacher's samples (sequence-level KD);
//     token-level KD (forward KL to the teacher's full distribution) on the corpus; KD from the stored top-5
//     logprobs of the teacher's samples; on-policy distillation (GKD: the student's own answers with probability
//     λ = 0.5, scored by the teacher with JSD(0.5); and λ = 1 with reverse KL, JSD(1), as MiniLLM)
//  5. measure: held-out answer perplexity, perplexity of each model's own samples under the teacher, generation
//     tokens/s, wall times
//
// node dist/examples/fortunes-llm.js [--out DIR] [--quick] [--teacher-steps N] [--student-steps N] [--samples N]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, tensor, tidy, noGrad, ops } from '../src/torch';
import { GPT, type DecoderOptions } from '../src/models/gpt';
import { ByteTokenizer, encodeChat } from '../src/llm/tokenizer';
import { serve } from '../src/llm/serve';
import { generate, generateTokens } from '../src/llm';
import { evaluateNll, packChats, readChatJsonl, sft, type ChatExample } from '../src/distill/sft';
import { Rng } from '../src/data/rng';

const { values } = parseArgs({
  options: {
    out: { type: 'string' }, quick: { type: 'boolean' }, 'teacher-steps': { type: 'string' }, 'student-steps': { type: 'string' },
    samples: { type: 'string' }, threads: { type: 'string' }, corpus: { type: 'string' },
  },
});
const quick = values.quick === true;
const out = values.out ?? 'runs/fortunes-llm';
const corpusDir = values.corpus ?? '/usr/share/games/fortunes';
const teacherSteps = Number(values['teacher-steps'] ?? (quick ? 20 : 600));
const studentSteps = Number(values['student-steps'] ?? (quick ? 10 : 400));
const nSamples = Number(values.samples ?? (quick ? 16 : 344));
setNumThreads(Number(values.threads ?? 2));
fs.mkdirSync(out, { recursive: true });

const t00 = Date.now();
const log = (l: string) => console.log(`[${((Date.now() - t00) / 1000).toFixed(0).padStart(4)} s] ${l}`);
const tok = new ByteTokenizer();
const CONTEXT = 192;
const MAX_CHARS = 150; // fortunes up to this length (most one-liners and short quotes)

// ------------------------------------------------------------------ corpus
if (!fs.existsSync(corpusDir)) throw new Error(`${corpusDir} does not exist: apt-get install -y fortunes (or --corpus DIR)`);
const topics = fs.readdirSync(corpusDir).filter((f) => !f.includes('.') && fs.statSync(path.join(corpusDir, f)).isFile()).sort();
const all: { topic: string; text: string }[] = [];
for (const topic of topics) {
  const raw = fs.readFileSync(path.join(corpusDir, topic), 'utf8');
  for (const f of raw.split(/\n%\n/)) {
    const text = f.replace(/\n%\s*$/, '').trim();
    if (text.length >= 10 && text.length <= MAX_CHARS && /^[\x09\x0a\x20-\x7e]*$/.test(text)) all.push({ topic, text });
  }
}
const order = new Rng(12345).permutation(all.length);
const shuffled = Array.from(order, (i) => all[i]);
const nHeld = Math.round(shuffled.length * 0.05);
const held = shuffled.slice(0, nHeld);
const train = shuffled.slice(nHeld);
const promptFor = (topic: string) => `Tell me a fortune about ${topic}.`;
const asChat = (x: { topic: string; text: string }): ChatExample => ({ messages: [{ role: 'user', content: promptFor(x.topic) }, { role: 'assistant', content: x.text }] });
const trainChats = train.map(asChat);
const heldStream = packChats(tok, held.map(asChat));
log(`corpus: ${all.length} fortunes of ${topics.length} files (10-${MAX_CHARS} ASCII chars); ${train.length} train, ${held.length} held out; ${heldStream.ids.length} held-out tokens`);

const teacherArch: DecoderOptions = { vocabSize: tok.vocabSize, contextLength: CONTEXT, dModel: 96, nLayer: 4, nHead: 4 };
const studentArch: DecoderOptions = { vocabSize: tok.vocabSize, contextLength: CONTEXT, dModel: 48, nLayer: 2, nHead: 2 };
const common = { tokenizer: tok, seqLen: 128, batchSize: 8, lr: 2e-3, log };

const results: Record<string, any> = { corpus: { fortunes: all.length, files: topics.length, train: train.length, held_out: held.length, held_out_answer_tokens: heldStream.mask.reduce((a, b) => a + b, 0) } };

async function heldOut(m: GPT) {
  return evaluateNll(m, heldStream, { seqLen: 128, batchSize: 16 });
}

/** Samples `n` answers from `m` for random topics; tokens/s and the teacher's perplexity of them. */
function sampleAndScore(m: GPT, teacher: GPT, n: number, seed: number) {
  const rng = new Rng(seed);
  const chats: ChatExample[] = [];
  let tokens = 0;
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const topic = topics[rng.int(topics.length)];
    const prompt = encodeChat(tok, [{ role: 'user', content: promptFor(topic) }], { generationPrompt: true }).ids;
    const g = generateTokens(m, prompt, { maxNewTokens: CONTEXT - prompt.length, temperature: 1, seed: seed + i, stopTokens: [tok.eosId] });
    tokens += g.tokens.length;
    chats.push({ messages: [{ role: 'user', content: promptFor(topic) }, { role: 'assistant', content: tok.decode(g.tokens) }] });
  }
  const secs = (Date.now() - t0) / 1000;
  // the teacher's NLL on the answers, one conversation at a time (no packing across samples)
  let nll = 0;
  let count = 0;
  for (const c of chats) {
    const { ids, mask } = encodeChat(tok, c.messages);
    const cut = Math.min(ids.length, CONTEXT);
    const [s, k] = tidy(() =>
      noGrad(() => {
        teacher.eval();
        const x = tensor([ids.slice(0, cut - 1)], { dtype: 'int64' });
        const y = tensor(ids.slice(1, cut), { dtype: 'int64' });
        const w = tensor(mask.slice(1, cut), { dtype: 'float32' });
        const logits = teacher.call(x).select(0, 0);
        return [ops.cross_entropy_loss(logits, y, null, 0).mul(w).sum().item(), w.sum().item()];
      }),
    );
    nll += s;
    count += k;
  }
  return { tokens_per_s: tokens / secs, mean_tokens: tokens / n, ppl_under_teacher: Math.exp(nll / count), example: chats[0].messages[1].content };
}

async function main() {
  // 1. teacher
  manualSeed(0);
  const teacher = new GPT(teacherArch);
  let t = Date.now();
  const ts = await sft({ ...common, model: teacher, data: trainChats, outDir: path.join(out, 'teacher'), steps: teacherSteps, force: true, logEvery: Math.max(1, Math.floor(teacherSteps / 10)) });
  results.teacher = { params: teacher.numParameters(), steps: teacherSteps, train_seconds: (Date.now() - t) / 1000, train_tokens_per_s: ts.tokensPerSecond, held_out: await heldOut(teacher) };
  log(`teacher: ${results.teacher.params} parameters, held-out answer perplexity ${results.teacher.held_out.ppl.toFixed(3)}`);

  // 2-3. serve it and generate a data set
  const server = await serve({ model: teacher, tokenizer: tok, modelName: 'fortune-teacher' });
  const promptsFile = path.join(out, 'prompts.jsonl');
  const n = Math.max(1, Math.ceil(nSamples / topics.length)); // sample k of a prompt is requested with seed 1 + k
  fs.writeFileSync(promptsFile, topics.map((tp) => JSON.stringify({ id: tp, prompt: promptFor(tp) })).join('\n') + '\n');
  t = Date.now();
  const gen = await generate(
    {
      input: promptsFile, output: { dir: path.join(out, 'generated') },
      teacher: { baseUrl: server.url, model: 'fortune-teacher', n, seed: 1, temperature: 1, maxTokens: CONTEXT, topLogprobs: 5, stream: true },
      requests: { concurrency: 4, timeoutMs: 600000 },
      curation: { dedup: 'global', minChars: 5, dropTruncated: true },
    },
    { progress: false, log: () => {}, force: true },
  );
  await server.close();
  results.generate = { prompts: topics.length, n, written: gen.written, rejected: gen.rejected, seconds: (Date.now() - t) / 1000, completion_tokens: server.stats.completionTokens };
  results.generate.tokens_per_s = results.generate.completion_tokens / results.generate.seconds;
  log(`generate: ${gen.written} samples kept of ${gen.total} (${gen.rejected} rejected), ${results.generate.tokens_per_s.toFixed(0)} tok/s served`);
  const generated = readChatJsonl(path.join(out, 'generated', 'samples.jsonl'));

  // 4. students
  const students: Record<string, GPT> = {};
  const runStudent = async (name: string, opts: Partial<Parameters<typeof sft>[0]>) => {
    manualSeed(1);
    const s = new GPT(studentArch);
    const t1 = Date.now();
    const r = await sft({ ...common, model: s, data: trainChats, outDir: path.join(out, name), steps: studentSteps, force: true, logEvery: Math.max(1, Math.floor(studentSteps / 5)), ...opts } as any);
    students[name] = s;
    results[name] = { params: s.numParameters(), steps: studentSteps, train_seconds: (Date.now() - t1) / 1000, train_tokens_per_s: r.tokensPerSecond, unaligned: r.unaligned, held_out: await heldOut(s) };
    log(`${name}: held-out answer perplexity ${results[name].held_out.ppl.toFixed(3)} (${results[name].train_seconds.toFixed(0)} s)`);
  };
  await runStudent('student_alone', {});
  await runStudent('student_sft_on_teacher_samples', { data: generated });
  await runStudent('student_token_kd', { kd: { teacher, loss: 'forward_kl', alpha: 0.5 } });
  try {
    await runStudent('student_kd_top5_logprobs', { data: generated, kd: { source: 'logprobs', alpha: 0.5, topk: 5 } });
  } catch (e) {
    results.student_kd_top5_logprobs = { error: (e as Error).message };
    log(`student_kd_top5_logprobs: ${(e as Error).message}`);
  }
  await runStudent('student_gkd_jsd', { kd: { teacher, loss: 'jsd', beta: 0.5, alpha: 1, onPolicy: 0.5, maxNewTokens: 64 } });
  await runStudent('student_gkd_reverse_kl', { kd: { teacher, loss: 'jsd', beta: 1, alpha: 1, onPolicy: 1, maxNewTokens: 64 } });

  // 5. samples, their perplexity under the teacher, generation speed
  const nEval = quick ? 4 : 40;
  results.teacher.samples = sampleAndScore(teacher, teacher, nEval, 1000);
  for (const [name, s] of Object.entries(students)) results[name].samples = sampleAndScore(s, teacher, nEval, 1000);
  results.wall_seconds = (Date.now() - t00) / 1000;
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2));

  const rows = ['teacher', ...Object.keys(students)].map((k) => {
    const r = results[k];
    return `| ${k} | ${r.params.toLocaleString('en')} | ${r.steps} | ${r.held_out.ppl.toFixed(3)} | ${r.samples.ppl_under_teacher.toFixed(3)} | ${r.samples.tokens_per_s.toFixed(0)} | ${r.train_seconds.toFixed(0)} |`;
  });
  console.log('\n| model | parameters | steps | held-out answer perplexity | own samples: perplexity under the teacher | generation tok/s | training s |\n|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(r);
  console.log(`\nwall time ${results.wall_seconds.toFixed(0)} s; results in ${path.join(out, 'results.json')}`);
  for (const m of [teacher, ...Object.values(students)]) m.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
