// A checkable LLM distillation task: multi-digit addition with written-out steps, and rejection sampling.
//
//  1. a byte-level teacher decoder learns to add two 3-digit numbers, writing one column per step, right to left,
//     with its carry ("4+4+0=8, 7+0+0=7, 8+4+0=12. The answer is 1278."), from worked solutions;
//  2. it is served over the OpenAI Chat Completions protocol (in process, on 127.0.0.1, batched decoding) and
//     `generate` asks it for n samples per question (temperature 1) on questions it never saw; the exact-match
//     verifier checks each sample's final answer against the question's `answer` field (rejection sampling, as
//     DeepSeek-R1's data pipeline did);
//  3. students 4×+ smaller, from the same initialisation and for the same number of steps, are fine-tuned on
//     - every teacher sample (no rejection),
//     - the verified teacher samples only (rejection sampling),
//     - the worked solutions of the same questions (a reference: what a perfect teacher would have written);
//  4. exact-match accuracy (greedy decoding) on held-out questions for all of them, the teacher's pass rate per
//     sample, generation throughput and wall times.
//
// node dist/examples/arith-llm.js [--out DIR] [--quick] [--teacher-steps N] [--student-steps N] [--questions N]
//   [--n N] [--device cpu|cuda] [--threads N] [--student-width N] [--student-layers N] [--student-lr X]
//   [--teacher-checkpoint FILE] (a trained teacher; the generated data set in --out is then reused: generate resumes)
//   [--gkd] [--gkd-steps N] (also: students on every teacher sample for N steps — SFT, token KD to the teacher, and
//   on-policy distillation (GKD) from the teacher in process and from the teacher served over HTTP; --gkd-only: not
//   the three students above) [--gkd-variants sft,token_kd,local_jsd,endpoint_fkl] (which of the four; default all)
//   [--student-seed S] (default 1: every student's initialisation from S, its data order and on-policy draws from
//   S − 1; another S writes <name>-seed<S> run folders and results-seed<S>.json, so seeds share the teacher's data)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, checkDevice } from '../src/torch';
import { GPT, type DecoderOptions } from '../src/models/gpt';
import { ByteTokenizer, encodeChat } from '../src/llm/tokenizer';
import { loadDecoder } from '../src/llm/decoder-checkpoint';
import { serve } from '../src/llm/serve';
import { DecodeBatcher } from '../src/llm/batcher';
import { generate } from '../src/llm';
import { extractFinalAnswer, sameAnswer } from '../src/llm/curate';
import { readChatJsonl, sft, type ChatExample } from '../src/distill/sft';
import { Rng } from '../src/data/rng';

const { values } = parseArgs({
  options: {
    out: { type: 'string' }, quick: { type: 'boolean' }, 'teacher-steps': { type: 'string' }, 'student-steps': { type: 'string' },
    questions: { type: 'string' }, n: { type: 'string' }, threads: { type: 'string' }, device: { type: 'string' }, 'eval-size': { type: 'string' },
    'teacher-train': { type: 'string' }, 'teacher-checkpoint': { type: 'string' }, 'student-width': { type: 'string' }, 'student-layers': { type: 'string' }, 'student-lr': { type: 'string' },
    gkd: { type: 'boolean' }, 'gkd-steps': { type: 'string' }, 'gkd-only': { type: 'boolean' }, 'gkd-variants': { type: 'string' }, 'student-seed': { type: 'string' },
  },
});
const quick = values.quick === true;
const out = values.out ?? 'runs/arith-llm';
const teacherSteps = Number(values['teacher-steps'] ?? (quick ? 20 : 1500));
const studentSteps = Number(values['student-steps'] ?? (quick ? 10 : 3000));
const nQuestions = Number(values.questions ?? (quick ? 16 : 4000)); // questions sent to the teacher
const nPer = Number(values.n ?? 2); // samples per question
const nEval = Number(values['eval-size'] ?? (quick ? 32 : 500));
const nTeacherTrain = Number(values['teacher-train'] ?? (quick ? 200 : 20000));
const device = checkDevice(values.device ?? 'cpu', '--device');
const studentSeed = Number(values['student-seed'] ?? 1);
if (!Number.isInteger(studentSeed) || studentSeed < 1) throw new Error(`--student-seed: expected an integer ≥ 1, got '${values['student-seed']}'`);
/** Run folders and the results file of a seed other than the default carry it in their names. */
const seedSuffix = studentSeed === 1 ? '' : `-seed${studentSeed}`;
const resultsFile = () => path.join(out, `results${seedSuffix}.json`);
const GKD_VARIANTS = ['sft', 'token_kd', 'local_jsd', 'endpoint_fkl'];
const gkdVariants = (values['gkd-variants'] ?? GKD_VARIANTS.join(',')).split(',').filter(Boolean);
for (const v of gkdVariants) if (!GKD_VARIANTS.includes(v)) throw new Error(`--gkd-variants: unknown variant '${v}' (known: ${GKD_VARIANTS.join(', ')})`);
setNumThreads(Number(values.threads ?? 2));
fs.mkdirSync(out, { recursive: true });

const t00 = Date.now();
const log = (l: string) => console.log(`[${((Date.now() - t00) / 1000).toFixed(0).padStart(4)} s] ${l}`);
const tok = new ByteTokenizer();
const CONTEXT = 96;

// ------------------------------------------------------------------ the task
interface Problem {
  a: number;
  b: number;
}
const question = (p: Problem) => `What is ${p.a} + ${p.b}?`;
/** The worked solution: one column per step, right to left, with the carry in. */
export function solution(p: Problem): string {
  const da = String(p.a).split('').reverse().map(Number);
  const db = String(p.b).split('').reverse().map(Number);
  const steps: string[] = [];
  let carry = 0;
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const s = (da[i] ?? 0) + (db[i] ?? 0) + carry;
    steps.push(`${da[i] ?? 0}+${db[i] ?? 0}+${carry}=${s}`);
    carry = s >= 10 ? 1 : 0;
  }
  return `${steps.join(', ')}. The answer is ${p.a + p.b}.`;
}
const chat = (p: Problem, answer: string): ChatExample => ({ messages: [{ role: 'user', content: question(p) }, { role: 'assistant', content: answer }] });

// disjoint question sets: the teacher's training set, the questions sent to the teacher, the evaluation set
const rng = new Rng(2026);
const seen = new Set<string>();
const draw = (count: number): Problem[] => {
  const outp: Problem[] = [];
  while (outp.length < count) {
    const p = { a: 100 + rng.int(900), b: 100 + rng.int(900) };
    const key = `${p.a}+${p.b}`;
    if (seen.has(key)) continue;
    seen.add(key);
    outp.push(p);
  }
  return outp;
};
// (drawn in this order, so the evaluation and teacher sets do not depend on --questions and a trained teacher can be
// reused with --teacher-checkpoint)
const evalSet = draw(nEval);
const teacherSet = draw(nTeacherTrain);
const genSet = draw(nQuestions);

const teacherArch: DecoderOptions = { vocabSize: tok.vocabSize, contextLength: CONTEXT, dModel: 128, nLayer: 4, nHead: 4 };
const studentArch: DecoderOptions = { vocabSize: tok.vocabSize, contextLength: CONTEXT, dModel: Number(values['student-width'] ?? 64), nLayer: Number(values['student-layers'] ?? 3), nHead: 4 };
const common = { tokenizer: tok, seqLen: CONTEXT, batchSize: 16, lr: 2e-3, log };

/** Greedy answers for `problems` through the batched decoder; exact-match accuracy of the final answers. */
async function exactMatch(m: GPT, problems: Problem[]): Promise<{ accuracy: number; correct: number; total: number; tokens_per_s: number; example: string }> {
  const b = new DecodeBatcher(m, { maxBatch: 128 });
  const t0 = Date.now();
  let tokens = 0;
  const answers = await Promise.all(
    problems.map(async (p) => {
      const prompt = encodeChat(tok, [{ role: 'user', content: question(p) }], { generationPrompt: true }).ids;
      const r = await b.submit(prompt, { maxNewTokens: CONTEXT - prompt.length, temperature: 0, stopTokens: [tok.eosId] });
      tokens += r.tokens.length;
      return tok.decode(r.tokens);
    }),
  );
  const secs = (Date.now() - t0) / 1000;
  b.close();
  const correct = answers.filter((a, i) => sameAnswer(extractFinalAnswer(a), String(problems[i].a + problems[i].b))).length;
  return { accuracy: (100 * correct) / problems.length, correct, total: problems.length, tokens_per_s: tokens / secs, example: `${question(problems[0])} -> ${answers[0]}` };
}

async function main() {
  const results: Record<string, any> = {
    task: { digits: 3, teacher_train: teacherSet.length, questions: genSet.length, n: nPer, eval: evalSet.length, device },
  };
  // 1. teacher (or a trained one from --teacher-checkpoint, e.g. runs/arith-llm/teacher/last.safetensors)
  let teacher: GPT;
  let t = Date.now();
  if (values['teacher-checkpoint']) {
    teacher = loadDecoder(values['teacher-checkpoint']).model;
    if (JSON.stringify(teacher.options) !== JSON.stringify({ ...teacher.options, ...teacherArch }))
      throw new Error(`${values['teacher-checkpoint']}: the decoder is ${JSON.stringify(teacher.options)}, this demo's teacher is ${JSON.stringify(teacherArch)}`);
    if (device !== 'cpu') teacher.to(device);
    results.teacher = { params: teacher.numParameters(), steps: 0, checkpoint: values['teacher-checkpoint'], train_seconds: 0 };
  } else {
    manualSeed(0);
    teacher = new GPT(teacherArch);
    if (device !== 'cpu') teacher.to(device);
    const ts = await sft({ ...common, model: teacher, data: teacherSet.map((p) => chat(p, solution(p))), outDir: path.join(out, 'teacher'), steps: teacherSteps, force: true, logEvery: Math.max(1, Math.floor(teacherSteps / 10)) });
    results.teacher = { params: teacher.numParameters(), steps: teacherSteps, train_seconds: (Date.now() - t) / 1000, train_tokens_per_s: ts.tokensPerSecond, final_loss: ts.finalLoss };
  }
  results.teacher.exact_match = await exactMatch(teacher, evalSet);
  log(`teacher: ${results.teacher.params} parameters, exact match ${results.teacher.exact_match.accuracy.toFixed(1)} % (greedy, ${evalSet.length} held-out questions)`);

  // 2. serve it; generate n samples per question with the exact-match verifier (with --teacher-checkpoint, a
  // complete data set already in --out is reused as it is)
  const summaryFile = path.join(out, 'generated', 'summary.json');
  const reuse = values['teacher-checkpoint'] !== undefined && fs.existsSync(summaryFile) && JSON.parse(fs.readFileSync(summaryFile, 'utf8')).complete === true;
  let gen: { total: number; written: number; rejected: number; rejected_by: unknown; failed: number };
  if (reuse) {
    gen = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
    results.generate = { reused: summaryFile, requests: gen.total, verified: gen.written, rejected: gen.rejected, rejected_by: gen.rejected_by, failed: gen.failed, pass_rate: (100 * gen.written) / gen.total };
    log(`generate: reusing ${summaryFile}: ${gen.total} samples, ${gen.written} verified (${results.generate.pass_rate.toFixed(1)} %)`);
  } else {
    const server = await serve({ model: teacher, tokenizer: tok, modelName: 'arith-teacher' });
    const promptsFile = path.join(out, 'questions.jsonl');
    fs.writeFileSync(promptsFile, genSet.map((p, i) => JSON.stringify({ id: `q${i}`, prompt: question(p), answer: String(p.a + p.b) })).join('\n') + '\n');
    t = Date.now();
    gen = await generate(
      {
        input: promptsFile, output: { dir: path.join(out, 'generated') },
        teacher: { baseUrl: server.url, model: 'arith-teacher', n: nPer, seed: 1, temperature: 1, maxTokens: CONTEXT, stream: false },
        requests: { concurrency: 64, timeoutMs: 600000 },
        curation: { dedup: 'none', minChars: 1, dropTruncated: true, verifier: 'exact-match', answerField: 'answer' },
      },
      { progress: false, log: () => {}, force: true },
    );
    await server.close();
    const secs = (Date.now() - t) / 1000;
    results.generate = {
      requests: gen.total, verified: gen.written, rejected: gen.rejected, rejected_by: gen.rejected_by, failed: gen.failed, seconds: secs,
      completion_tokens: server.stats.completionTokens, tokens_per_s: server.stats.completionTokens / secs, mean_batch: server.batch.rowSteps / Math.max(1, server.batch.steps),
      prefills: server.batch.prefills, pass_rate: (100 * gen.written) / gen.total,
    };
    log(`generate: ${gen.total} samples, ${gen.written} verified (${results.generate.pass_rate.toFixed(1)} %), ${gen.rejected} rejected; ${results.generate.tokens_per_s.toFixed(0)} tok/s served, mean batch ${results.generate.mean_batch.toFixed(1)}`);
  }
  const samplesFile = path.join(out, 'generated', 'samples.jsonl');
  const verified = fs.statSync(samplesFile).size > 0 ? readChatJsonl(samplesFile) : [];
  const byId = new Map(genSet.map((p, i) => [`q${i}`, p]));
  const byQuestion = new Map(genSet.map((p) => [question(p), p]));
  const unverified: ChatExample[] = [];
  for (const line of fs.readFileSync(path.join(out, 'generated', 'rejected.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if (r.reason !== 'unverified') continue; // truncated answers are dropped in both sets
    unverified.push(chat(byId.get(r.meta.prompt_id)!, r.response.content));
  }
  const allSamples = [...verified, ...unverified];
  // where the rejected samples went wrong: in a column step, or only in the final answer after correct steps
  let badStep = 0;
  for (const c of unverified) {
    const want = solution(byQuestion.get(c.messages[0].content)!);
    const steps = want.slice(0, want.indexOf('.') + 1);
    if (!c.messages[1].content.startsWith(steps)) badStep++;
  }
  results.generate.rejected_wrong_step = badStep;
  results.generate.rejected_right_steps_wrong_answer = unverified.length - badStep;
  log(`rejected samples: ${badStep} with a wrong column step, ${unverified.length - badStep} with right steps and a wrong final answer`);

  // 3. students: same initialisation, same steps
  const runStudent = async (name: string, data: ChatExample[]) => {
    if (data.length === 0) {
      log(`${name}: no examples (the teacher passed no sample); skipped`);
      results[name] = { params: 0, steps: 0, examples: 0, train_seconds: 0, exact_match: { accuracy: NaN, tokens_per_s: NaN } };
      return;
    }
    manualSeed(studentSeed);
    const s = new GPT(studentArch);
    if (device !== 'cpu') s.to(device);
    const t1 = Date.now();
    const r = await sft({ ...common, seed: studentSeed - 1, lr: Number(values['student-lr'] ?? common.lr), model: s, data, outDir: path.join(out, name + seedSuffix), steps: studentSteps, force: true, logEvery: Math.max(1, Math.floor(studentSteps / 5)) });
    results[name] = { params: s.numParameters(), steps: studentSteps, examples: data.length, train_seconds: (Date.now() - t1) / 1000, train_tokens_per_s: r.tokensPerSecond, final_loss: r.finalLoss };
    results[name].exact_match = await exactMatch(s, evalSet);
    log(`${name}: ${data.length} examples, exact match ${results[name].exact_match.accuracy.toFixed(1)} %`);
    s.dispose();
  };
  const gkdOnly = values.gkd === true && values['gkd-only'] === true;
  if (!gkdOnly) {
    await runStudent('student_all_samples', allSamples);
    await runStudent('student_verified_samples', verified);
    await runStudent('student_worked_solutions', genSet.map((p) => chat(p, solution(p))));
  }
  // on-policy distillation against the off-policy students, on every teacher sample, at a shorter schedule
  if (values.gkd) {
    const gkdSteps = Number(values['gkd-steps'] ?? (quick ? 4 : 1000));
    const server = await serve({ model: teacher, tokenizer: tok, modelName: 'arith-teacher' });
    try {
      const lr = Number(values['student-lr'] ?? common.lr);
      const variants: [string, object | undefined][] = [
        ['gkd_sft', undefined],
        ['gkd_token_kd', { teacher, loss: 'forward_kl', alpha: 0.5 }],
        ['gkd_local_jsd', { teacher, loss: 'jsd', beta: 0.5, alpha: 1, onPolicy: 0.5, maxNewTokens: 48 }],
        ['gkd_endpoint_fkl', { source: 'logprobs', endpoint: { baseUrl: server.url, model: 'arith-teacher', tokenIds: true }, alpha: 1, onPolicy: 0.5, topk: 20, maxNewTokens: 48 }],
      ];
      for (const [name, kd] of variants) {
        if (!gkdVariants.includes(name.replace(/^gkd_/, ''))) continue;
        manualSeed(studentSeed);
        const s = new GPT(studentArch);
        const t1 = Date.now();
        const r = await sft({ ...common, seed: studentSeed - 1, lr, model: s, data: allSamples, outDir: path.join(out, name + seedSuffix), steps: gkdSteps, force: true, logEvery: Math.max(1, Math.floor(gkdSteps / 5)), ...(kd ? { kd: kd as any } : {}) });
        results[name] = { params: s.numParameters(), steps: gkdSteps, examples: allSamples.length, train_seconds: (Date.now() - t1) / 1000, final_loss: r.finalLoss, on_policy: r.onPolicy ?? null };
        results[name].exact_match = await exactMatch(s, evalSet);
        log(`${name}: ${gkdSteps} steps, exact match ${results[name].exact_match.accuracy.toFixed(1)} %${r.onPolicy ? `, ${r.onPolicy.batches} on-policy micro-batches` : ''}`);
        s.dispose();
        fs.writeFileSync(resultsFile(), JSON.stringify(results, null, 2));
      }
    } finally {
      await server.close();
    }
  }
  results.wall_seconds = (Date.now() - t00) / 1000;
  results.student_seed = studentSeed;
  fs.writeFileSync(resultsFile(), JSON.stringify(results, null, 2));

  console.log('\n| model | parameters | training data | examples | steps | exact match (greedy) | generation tok/s | training s |\n|---|---:|---|---:|---:|---:|---:|---:|');
  const row = (name: string, what: string) => {
    const r = results[name];
    if (!r) return;
    console.log(`| ${name} | ${r.params.toLocaleString('en')} | ${what} | ${(r.examples ?? teacherSet.length).toLocaleString('en')} | ${r.steps} | ${r.exact_match.accuracy.toFixed(1)} % | ${r.exact_match.tokens_per_s.toFixed(0)} | ${r.train_seconds.toFixed(0)} |`);
  };
  row('teacher', 'worked solutions');
  if (!gkdOnly) {
    row('student_all_samples', 'all teacher samples');
    row('student_verified_samples', 'verified teacher samples');
    row('student_worked_solutions', 'worked solutions of the same questions');
  }
  if (values.gkd) {
    row('gkd_sft', 'all teacher samples, SFT');
    row('gkd_token_kd', 'all teacher samples, token KD (forward KL, α 0.5)');
    row('gkd_local_jsd', 'GKD: JSD(0.5), λ 0.5, teacher in process');
    row('gkd_endpoint_fkl', 'GKD: forward KL to the served top-20, λ 0.5');
  }
  console.log(`\nteacher samples: ${gen.total} (${genSet.length} questions × ${nPer}), ${gen.written} verified = ${results.generate.pass_rate.toFixed(1)} % pass rate at temperature 1; rejected: ${badStep} with a wrong column step, ${unverified.length - badStep} with right steps and a wrong final answer`);
  console.log(`wall time ${results.wall_seconds.toFixed(0)} s; results in ${resultsFile()}`);
  const em = (k: string) => results[k]?.exact_match.accuracy ?? null;
  console.log(JSON.stringify({
    student_seed: studentSeed, teacher_em: em('teacher'), pass_rate: results.generate.pass_rate, all_samples_em: em('student_all_samples'), verified_em: em('student_verified_samples'), worked_em: em('student_worked_solutions'),
    ...(values.gkd ? { gkd_sft_em: em('gkd_sft'), gkd_token_kd_em: em('gkd_token_kd'), gkd_local_jsd_em: em('gkd_local_jsd'), gkd_endpoint_fkl_em: em('gkd_endpoint_fkl') } : {}),
  }));
  teacher.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
