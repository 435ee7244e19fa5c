// Supervised fine-tuning of a decoder on chat data, with optional token-level distillation.
//
// Data: chat JSONL as `tsdistill generate` writes it (`{"messages": [...], "logprobs"?: [...]}`), or `{"prompt",
// "response"}` lines, or plain texts (`{ texts }`, every token trained: pre-training a small model on a corpus).
// Conversations are rendered with the chat template (../llm/tokenizer.ts) and packed back to back into one token
// stream, cut into windows of `seqLen` + 1 tokens that overlap by one, so every token is predicted exactly once.
// Attention crosses example boundaries inside a window (the usual packing simplification; examples are separated
// by <|endoftext|>). The loss is taken on answer tokens only (the assistant's content and its <|endoftext|>).
//
// Optimisation: AdamW, gradient accumulation over `gradAccum` micro-batches, gradient-norm clipping, and a cosine
// schedule with linear warm-up: lr(s) = lr · (s + 1) / W for s < W, then minLr + ½ (lr − minLr)(1 + cos(π (s − W) /
// (steps − W))). Every `checkpointEvery` steps (and at the end) the run directory gets, atomically, `last.safetensors`
// (a decoder checkpoint), `last.optim.safetensors` and `state.json`; `metrics.jsonl` gets one durable line per logged
// step. `resume` continues from the last checkpoint to the same weights as an uninterrupted run: the data order
// depends only on (seed, epoch) and libtorch's generator is reseeded from (seed, step) before every step.
//
// Token-level KD (`kd`): loss = (1 − α) · CE + α · KD, where KD is one of ./token-kd.ts's losses against a local
// teacher decoder's full distribution (`teacher`), or forward KL to the top-k log-probabilities stored with each
// sample (`source: 'logprobs'`, for a remote teacher). Stored logprobs are used for an answer only when its tokens
// re-encode to exactly the teacher's tokens (the same tokenizer); alternatives that are not single tokens of the
// student's vocabulary fall into the tail mass.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Tensor, appendLineDurable, dispose, loadSafetensors, manualSeed, nextTick, noGrad, ops, saveSafetensors, tensor, tidy, writeFileAtomic,
} from '../torch';
import { AdamW, clipGradNorm } from '../optim';
import { Rng } from '../data/rng';
import type { GPT } from '../models/gpt';
import { checkSameVocabulary, encodeChat, type ChatTurn, type Tokenizer } from '../llm/tokenizer';
import { saveDecoder } from '../llm/decoder-checkpoint';
import { TOKEN_KD_LOSSES, tokenKdLoss, topkForwardKl, type TokenKdLoss } from './token-kd';
import { TrainingInterrupted } from './trainer';

export interface TopLogprobIn {
  token: string;
  logprob: number;
}
export interface ChatExample {
  messages: ChatTurn[];
  /** Per answer token, as `generate` stores it: {token, logprob, top_logprobs}. */
  logprobs?: { token: string; logprob: number; top_logprobs?: TopLogprobIn[] }[];
}

/** Reads chat JSONL (`{messages}` or `{prompt, response}` per line); errors name the file and line. */
export function readChatJsonl(file: string): ChatExample[] {
  const out: ChatExample[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let r: any;
    try {
      r = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not JSON: ${(e as Error).message}`);
    }
    if (Array.isArray(r?.messages)) {
      for (const [j, m] of r.messages.entries())
        if (!m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role))
          throw new Error(`${file}:${i + 1}: messages[${j}] must be {role: system|user|assistant, content: string}`);
      if (!r.messages.some((m: any) => m.role === 'assistant')) throw new Error(`${file}:${i + 1}: no assistant message to train on`);
      out.push({ messages: r.messages.map((m: any) => ({ role: m.role, content: m.content })), ...(Array.isArray(r.logprobs) ? { logprobs: r.logprobs } : {}) });
    } else if (typeof r?.prompt === 'string' && typeof r?.response === 'string') {
      out.push({ messages: [{ role: 'user', content: r.prompt }, { role: 'assistant', content: r.response }] });
    } else throw new Error(`${file}:${i + 1}: expected {"messages": [...]} or {"prompt", "response"}, got keys ${Object.keys(r ?? {}).join(', ') || '(none)'}`);
  });
  if (out.length === 0) throw new Error(`${file}: no examples`);
  return out;
}

/** A packed token stream: ids, the loss mask per token, and optional top-k teacher targets per token. */
export interface TokenStream {
  ids: Int32Array;
  mask: Uint8Array;
  /** Top-k targets for the token at each index (it is predicted from the tokens before it). */
  topk?: { k: number; ids: Int32Array; logprobs: Float32Array; valid: Uint8Array; has: Uint8Array };
  /** Answers whose stored logprobs did not line up with their re-encoded tokens (trained without KD targets). */
  unaligned: number;
}

/** Packs texts into one stream (each followed by <|endoftext|>), every token in the loss. */
export function packTexts(tok: Tokenizer, texts: readonly string[]): TokenStream {
  const ids: number[] = [];
  for (const t of texts) ids.push(...tok.encode(t), tok.eosId);
  return { ids: Int32Array.from(ids), mask: new Uint8Array(ids.length).fill(1), unaligned: 0 };
}

/**
 * The logprob entries that spell `content`: all of them, or — when the answer was stored trimmed, as `generate`
 * stores it — without the leading and trailing entries that are whitespace only. Null when they do not spell it.
 */
function trimmedLogprobs<T extends { token: string }>(lps: T[], content: string): T[] | null {
  const join = (xs: T[]) => xs.map((x) => x.token).join('');
  if (join(lps) === content) return lps;
  let a = 0;
  let b = lps.length;
  while (a < b && lps[a].token.trim() === '') a++;
  while (b > a && lps[b - 1].token.trim() === '') b--;
  const mid = lps.slice(a, b);
  return join(mid) === content ? mid : null;
}

/** Packs conversations into one stream with the chat template; the mask marks answer tokens. */
export function packChats(tok: Tokenizer, examples: readonly ChatExample[], opts: { topk?: number } = {}): TokenStream {
  const ids: number[] = [];
  const mask: number[] = [];
  const K = opts.topk ?? 0;
  const tk: { at: number; top: [number, number][] }[] = [];
  let unaligned = 0;
  const single = new Map<string, number | null>();
  const idOf = (s: string): number | null => {
    if (!single.has(s)) {
      const e = tok.encode(s);
      single.set(s, e.length === 1 && tok.decode(e) === s ? e[0] : null);
    }
    return single.get(s)!;
  };
  for (const ex of examples) {
    const enc = encodeChat(tok, ex.messages);
    const base = ids.length;
    ids.push(...enc.ids);
    mask.push(...enc.mask);
    if (K > 0 && ex.logprobs && ex.logprobs.length) {
      // the last assistant answer's content tokens: the masked run before the final <|endoftext|>
      let end = enc.ids.length - 1;
      while (end >= 0 && enc.mask[end] === 0) end--;
      let start = end - 1;
      while (start >= 0 && enc.mask[start] === 1) start--;
      const answer = enc.ids.slice(start + 1, end); // without the <|endoftext|>
      const lps = trimmedLogprobs(ex.logprobs, tok.decode(answer));
      const ok = lps !== null && answer.length === lps.length && lps.every((lp, i) => tok.decode([answer[i]]) === lp.token);
      if (!ok) unaligned++;
      else
        lps!.forEach((lp, i) => {
          const top = (lp.top_logprobs?.length ? lp.top_logprobs : [{ token: lp.token, logprob: lp.logprob }])
            .map((t) => [idOf(t.token), t.logprob] as [number | null, number])
            .filter((t): t is [number, number] => t[0] !== null && Number.isFinite(t[1]));
          const seen = new Set<number>();
          tk.push({ at: base + start + 1 + i, top: top.filter(([id]) => !seen.has(id) && (seen.add(id), true)).slice(0, K) });
        });
    }
    ids.push(tok.eosId);
    mask.push(0);
  }
  const s: TokenStream = { ids: Int32Array.from(ids), mask: Uint8Array.from(mask), unaligned };
  if (K > 0) {
    const n = ids.length;
    const t = { k: K, ids: new Int32Array(n * K), logprobs: new Float32Array(n * K).fill(-1e9), valid: new Uint8Array(n * K), has: new Uint8Array(n) };
    for (const { at, top } of tk) {
      t.has[at] = 1;
      top.forEach(([id, lp], j) => {
        t.ids[at * K + j] = id;
        t.logprobs[at * K + j] = lp;
        t.valid[at * K + j] = 1;
      });
    }
    s.topk = t;
  }
  return s;
}

/** Start offsets of windows of seqLen + 1 tokens overlapping by one (the last partial window dropped, unless it is the only one). */
export function windowStarts(n: number, seqLen: number): number[] {
  const out: number[] = [];
  for (let s = 0; s + seqLen + 1 <= n; s += seqLen) out.push(s);
  return out;
}

interface Batch {
  x: Tensor;
  y: Tensor;
  w: Tensor;
  tk?: { ids: Tensor; logprobs: Tensor; valid: Tensor; w: Tensor };
}

function makeBatch(s: TokenStream, starts: number[], seqLen: number, device = 'cpu'): Batch {
  // called inside a scope: the CPU copies of tensors moved to another device are freed with it
  const on = (t: Tensor) => (device === 'cpu' ? t : t.to({ device }));
  const B = starts.length;
  const x = new Int32Array(B * seqLen);
  const y = new Int32Array(B * seqLen);
  const w = new Float32Array(B * seqLen);
  starts.forEach((st, b) => {
    for (let j = 0; j < seqLen; j++) {
      x[b * seqLen + j] = s.ids[st + j];
      y[b * seqLen + j] = s.ids[st + j + 1];
      w[b * seqLen + j] = s.mask[st + j + 1];
    }
  });
  const batch: Batch = {
    x: on(tensor(x, { shape: [B, seqLen], dtype: 'int64' })),
    y: on(tensor(y, { shape: [B * seqLen], dtype: 'int64' })),
    w: on(tensor(w, { shape: [B * seqLen] })),
  };
  if (s.topk) {
    const K = s.topk.k;
    const ids = new Int32Array(B * seqLen * K);
    const lps = new Float32Array(B * seqLen * K);
    const valid = new Float32Array(B * seqLen * K);
    const tw = new Float32Array(B * seqLen);
    starts.forEach((st, b) => {
      for (let j = 0; j < seqLen; j++) {
        const at = st + j + 1;
        const row = b * seqLen + j;
        tw[row] = s.topk!.has[at] && s.mask[at] ? 1 : 0;
        for (let q = 0; q < K; q++) {
          ids[row * K + q] = s.topk!.ids[at * K + q];
          lps[row * K + q] = s.topk!.logprobs[at * K + q];
          valid[row * K + q] = s.topk!.valid[at * K + q];
        }
      }
    });
    batch.tk = {
      ids: on(tensor(ids, { shape: [B * seqLen, K], dtype: 'int64' })),
      logprobs: on(tensor(lps, { shape: [B * seqLen, K] })),
      valid: on(tensor(valid, { shape: [B * seqLen, K] })),
      w: on(tensor(tw, { shape: [B * seqLen] })),
    };
  }
  return batch;
}

/** Mean negative log-likelihood per masked token of `model` on a stream, and its perplexity. */
export async function evaluateNll(model: GPT, s: TokenStream, opts: { seqLen?: number; batchSize?: number; maxWindows?: number } = {}): Promise<{ nll: number; ppl: number; tokens: number }> {
  const seqLen = opts.seqLen ?? model.contextLength;
  let starts = windowStarts(s.ids.length, seqLen);
  if (opts.maxWindows !== undefined) starts = starts.slice(0, opts.maxWindows);
  if (starts.length === 0) throw new Error(`evaluateNll: the stream has ${s.ids.length} tokens, fewer than one window of ${seqLen + 1}`);
  const bs = opts.batchSize ?? 8;
  const wasTraining = model.training;
  model.eval();
  let sum = 0;
  let count = 0;
  try {
    for (let i = 0; i < starts.length; i += bs) {
      const [a, c] = tidy(() =>
        noGrad(() => {
          const b = makeBatch(s, starts.slice(i, i + bs), seqLen, model.wte.weight.device);
          const logits = model.call(b.x);
          const nll = ops.cross_entropy_loss(logits.reshape(-1, logits.shape[2]), b.y, null, 0);
          return [nll.mul(b.w).sum().item(), b.w.sum().item()];
        }),
      );
      sum += a;
      count += c;
      await nextTick();
    }
  } finally {
    model.train(wasTraining);
  }
  const nll = sum / Math.max(count, 1);
  return { nll, ppl: Math.exp(nll), tokens: count };
}

export interface SftKdOptions {
  /** 'teacher' (default when `teacher` is given): a local decoder's full distribution; 'logprobs': the stored top-k. */
  source?: 'teacher' | 'logprobs';
  teacher?: GPT;
  /** forward_kl (default), reverse_kl or jsd (local teacher only; stored logprobs support forward_kl). */
  loss?: TokenKdLoss;
  /** JSD's β (default 0.5). */
  beta?: number;
  temperature?: number;
  /** Weight of the KD term: loss = (1 − α) CE + α KD (default 0.5). */
  alpha?: number;
  /** Top-k entries per token read from stored logprobs (default 20, the most OpenAI returns). */
  topk?: number;
}

export interface SftOptions {
  model: GPT;
  tokenizer: Tokenizer;
  /** A chat JSONL file, examples, or `{ texts }` to train on every token. */
  data: string | ChatExample[] | { texts: string[] };
  outDir: string;
  /** Optimizer steps. */
  steps: number;
  /** Tokens per window (default: the model's context length). */
  seqLen?: number;
  /** Windows per micro-batch (default 8). */
  batchSize?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  lr?: number;
  /** Final learning rate of the cosine (default lr / 10). */
  minLr?: number;
  /** Linear warm-up steps (default 5 % of steps). */
  warmupSteps?: number;
  weightDecay?: number;
  /** Gradient-norm clipping (default 1; 0 turns it off). */
  clip?: number;
  seed?: number;
  /** Save a checkpoint every N steps (default: steps / 10, at least 1). */
  checkpointEvery?: number;
  /** Log (and append to metrics.jsonl) every N steps (default: steps / 20, at least 1). */
  logEvery?: number;
  kd?: SftKdOptions;
  resume?: boolean;
  /** Start over in a directory that holds a run. */
  force?: boolean;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface SftSummary {
  steps: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  finalLoss: number;
  resumedFrom?: number;
  windows: number;
  unaligned: number;
  outDir: string;
  checkpoint: string;
}

/** lr at step s (0-based) of the cosine schedule with linear warm-up. */
export function cosineLr(s: number, o: { lr: number; minLr: number; warmupSteps: number; steps: number }): number {
  if (s < o.warmupSteps) return (o.lr * (s + 1)) / o.warmupSteps;
  const span = Math.max(1, o.steps - o.warmupSteps);
  const p = Math.min(1, (s - o.warmupSteps) / span);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * p));
}

const SFT_KEYS = ['model', 'tokenizer', 'data', 'outDir', 'steps', 'seqLen', 'batchSize', 'gradAccum', 'lr', 'minLr', 'warmupSteps', 'weightDecay', 'clip', 'seed', 'checkpointEvery', 'logEvery', 'kd', 'resume', 'force', 'signal', 'log'];
const KD_KEYS = ['source', 'teacher', 'loss', 'beta', 'temperature', 'alpha', 'topk'];

/** Fine-tunes `model` (in place) and writes the run directory. See the file header. */
export async function sft(o: SftOptions): Promise<SftSummary> {
  for (const k of Object.keys(o)) if (!SFT_KEYS.includes(k)) throw new Error(`sft: unknown option '${k}' (known: ${SFT_KEYS.join(', ')})`);
  for (const k of Object.keys(o.kd ?? {})) if (!KD_KEYS.includes(k)) throw new Error(`sft: unknown kd option '${k}' (known: ${KD_KEYS.join(', ')})`);
  const log = o.log ?? ((l: string) => console.log(l));
  const model = o.model;
  const tok = o.tokenizer;
  if (tok.vocabSize > model.vocabSize) throw new Error(`sft: the tokenizer '${tok.name}' has ${tok.vocabSize} ids but the model's vocabulary only ${model.vocabSize}`);
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new Error(`sft: steps must be a positive integer, got ${o.steps}`);
  const seqLen = o.seqLen ?? model.contextLength;
  if (!Number.isInteger(seqLen) || seqLen < 1 || seqLen > model.contextLength) throw new Error(`sft: seqLen must be in [1, ${model.contextLength}] (the context length), got ${seqLen}`);
  const B = o.batchSize ?? 8;
  const accum = o.gradAccum ?? 1;
  for (const [k, v] of [['batchSize', B], ['gradAccum', accum]] as const) if (!Number.isInteger(v) || v < 1) throw new Error(`sft: ${k} must be a positive integer, got ${v}`);
  const lr = o.lr ?? 3e-4;
  const sched = { lr, minLr: o.minLr ?? lr / 10, warmupSteps: o.warmupSteps ?? Math.max(1, Math.round(o.steps * 0.05)), steps: o.steps };
  const seed = o.seed ?? 0;
  const clip = o.clip ?? 1;
  const every = o.checkpointEvery ?? Math.max(1, Math.floor(o.steps / 10));
  const logEvery = o.logEvery ?? Math.max(1, Math.floor(o.steps / 20));

  // KD settings
  const kd = o.kd;
  const kdSource = kd ? (kd.source ?? (kd.teacher ? 'teacher' : 'logprobs')) : null;
  const kdLoss: TokenKdLoss = kd?.loss ?? 'forward_kl';
  const alpha = kd?.alpha ?? 0.5;
  if (kd) {
    if (!TOKEN_KD_LOSSES.includes(kdLoss)) throw new Error(`sft: kd.loss must be one of ${TOKEN_KD_LOSSES.join(', ')}, got '${kdLoss}'`);
    if (!(alpha >= 0 && alpha <= 1)) throw new Error(`sft: kd.alpha must be in [0, 1], got ${alpha}`);
    if (kdSource === 'teacher') {
      if (!kd.teacher) throw new Error("sft: kd.source 'teacher' needs kd.teacher (a decoder)");
      checkSameVocabulary({ vocabSize: kd.teacher.vocabSize, name: 'teacher decoder' }, { vocabSize: model.vocabSize, name: `student decoder, tokenizer ${tok.name}` }, 'sft: token-level KD');
      if (kd.teacher.wte.weight.device !== model.wte.weight.device)
        throw new Error(`sft: the teacher decoder is on ${kd.teacher.wte.weight.device}, the student on ${model.wte.weight.device}; move both to one device`);
      if (kd.teacher.contextLength < seqLen) throw new Error(`sft: the teacher's context length ${kd.teacher.contextLength} is shorter than seqLen ${seqLen}`);
    } else if (kdSource === 'logprobs') {
      if (kdLoss !== 'forward_kl') throw new Error(`sft: stored top-k logprobs support kd.loss 'forward_kl' only (got '${kdLoss}'); reverse KL and JSD need the teacher's full distribution (kd.teacher)`);
    } else throw new Error(`sft: kd.source must be 'teacher' or 'logprobs', got '${kdSource}'`);
  }

  // data
  const stream =
    typeof o.data === 'string'
      ? packChats(tok, readChatJsonl(o.data), { topk: kdSource === 'logprobs' ? (kd!.topk ?? 20) : 0 })
      : Array.isArray(o.data)
        ? packChats(tok, o.data, { topk: kdSource === 'logprobs' ? (kd!.topk ?? 20) : 0 })
        : packTexts(tok, o.data.texts);
  for (let i = 0; i < stream.ids.length; i++)
    if (stream.ids[i] >= model.vocabSize) throw new Error(`sft: token id ${stream.ids[i]} is outside the model's vocabulary ${model.vocabSize}`);
  const starts = windowStarts(stream.ids.length, seqLen);
  if (starts.length === 0) throw new Error(`sft: the data has ${stream.ids.length} tokens, fewer than one window of ${seqLen + 1}`);
  if (kdSource === 'logprobs' && !stream.topk!.has.some((h) => h === 1))
    throw new Error(`sft: kd.source 'logprobs' but no answer carries usable logprobs (${stream.unaligned} did not line up with the tokenizer '${tok.name}'; generate them with topLogprobs from a server using the same tokenizer)`);
  if (stream.unaligned) log(`sft: ${stream.unaligned} answers' logprobs do not line up with the tokenizer '${tok.name}'; they train without KD targets`);

  // run directory
  fs.mkdirSync(o.outDir, { recursive: true });
  const stateFile = path.join(o.outDir, 'state.json');
  const lastFile = path.join(o.outDir, 'last.safetensors');
  const optimFile = path.join(o.outDir, 'last.optim.safetensors');
  const metricsFile = path.join(o.outDir, 'metrics.jsonl');
  const decay = model.namedParameters().filter(([, p]) => p.ndim >= 2).map(([, p]) => p);
  const noDecay = model.namedParameters().filter(([, p]) => p.ndim < 2).map(([, p]) => p);
  const opt = new AdamW([{ params: decay, weightDecay: o.weightDecay ?? 0.1 }, { params: noDecay, weightDecay: 0 }], { lr, betas: [0.9, 0.95] });
  let step = 0;
  let tokensSeen = 0;
  let resumedFrom: number | undefined;
  if (fs.existsSync(stateFile) && !o.force) {
    const st = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    if (!o.resume) throw new Error(`sft: ${o.outDir} holds a run at step ${st.step} of ${st.steps}; resume it (resume / --resume) or start over (force / --force)`);
    const w = loadSafetensors(lastFile);
    try {
      model.loadStateDict(w.tensors);
    } finally {
      dispose(w.tensors);
    }
    const os_ = loadSafetensors(optimFile);
    try {
      opt.loadStateDict({ tensors: os_.tensors, meta: JSON.parse(os_.metadata.meta) });
    } finally {
      dispose(os_.tensors);
    }
    step = st.step;
    tokensSeen = st.tokens;
    resumedFrom = step;
    if (fs.existsSync(metricsFile)) {
      const keepLines = fs.readFileSync(metricsFile, 'utf8').split('\n').filter((l) => l && JSON.parse(l).step <= step);
      writeFileAtomic(metricsFile, keepLines.map((l) => l + '\n').join(''));
    }
    log(`sft: resuming at step ${step} of ${o.steps}`);
  } else if (o.force) {
    for (const f of [stateFile, lastFile, optimFile, metricsFile]) fs.rmSync(f, { force: true });
  }

  const save = () => {
    saveDecoder(model, lastFile, tok, { step: String(step) });
    const osd = opt.stateDict();
    saveSafetensors(optimFile, osd.tensors, { meta: JSON.stringify(osd.meta) });
    writeFileAtomic(stateFile, JSON.stringify({ step, steps: o.steps, tokens: tokensSeen }));
  };

  // the micro-batch g of the run takes windows perm_e[(g·B .. g·B + B) mod n] of epoch e = ⌊g·B / n⌋
  const n = starts.length;
  const perms = new Map<number, Int32Array>();
  const windowsFor = (g: number): number[] => {
    const out: number[] = [];
    for (let i = 0; i < B; i++) {
      const idx = g * B + i;
      const e = Math.floor(idx / n);
      if (!perms.has(e)) {
        perms.clear();
        perms.set(e, new Rng(seed * 7919 + e).permutation(n));
      }
      out.push(starts[perms.get(e)![idx % n]]);
    }
    return out;
  };

  const teacher = kd?.teacher;
  teacher?.eval();
  model.train();
  const t0 = Date.now();
  let runTokens = 0;
  let lastLoss = NaN;
  let lossSum = 0;
  let lossCount = 0;
  try {
    while (step < o.steps) {
      if (o.signal?.aborted) {
        save();
        throw new TrainingInterrupted(o.outDir, 0, step);
      }
      manualSeed((seed * 1000003 + step) % 2 ** 31);
      const curLr = cosineLr(step, sched);
      for (const g of opt.paramGroups) g.options.lr = curLr;
      let stepLoss = 0;
      const terms = { ce: 0, kd: 0 };
      for (let a = 0; a < accum; a++) {
        const r = tidy(() => {
          const b = makeBatch(stream, windowsFor(step * accum + a), seqLen, model.wte.weight.device);
          const logits = model.call(b.x);
          const flat = logits.reshape(-1, logits.shape[2]);
          const ceRows = ops.cross_entropy_loss(flat, b.y, null, 0);
          const wsum = b.w.sum().clamp(1);
          const ce = ceRows.mul(b.w).sum().div(wsum);
          let loss = ce;
          let kdv: Tensor | null = null;
          if (kdSource === 'teacher') {
            const tl = noGrad(() => teacher!.call(b.x)).reshape(-1, logits.shape[2]);
            kdv = tokenKdLoss(kdLoss, flat, tl, b.w, { temperature: kd!.temperature, beta: kd!.beta });
          } else if (kdSource === 'logprobs') {
            kdv = topkForwardKl(flat, b.tk!.ids, b.tk!.logprobs, b.tk!.valid, b.tk!.w);
          }
          if (kdv !== null) loss = ce.mul(1 - alpha).add(kdv.mul(alpha));
          loss.div(accum).backward();
          return [loss.item(), ce.item(), kdv === null ? 0 : kdv.item(), b.w.sum().item()];
        });
        stepLoss += r[0] / accum;
        terms.ce += r[1] / accum;
        terms.kd += r[2] / accum;
        runTokens += B * seqLen;
        tokensSeen += B * seqLen;
      }
      if (!Number.isFinite(stepLoss)) {
        throw new Error(`sft: the loss is ${stepLoss} at step ${step} (lr ${curLr}); lower lr or check the data`);
      }
      if (clip > 0) clipGradNorm(model.parameters(), clip);
      opt.step();
      opt.zeroGrad();
      step++;
      lastLoss = stepLoss;
      lossSum += stepLoss;
      lossCount++;
      if (step % logEvery === 0 || step === o.steps) {
        const secs = (Date.now() - t0) / 1000;
        const m = { step, loss: lossSum / lossCount, ce: terms.ce, ...(kd ? { kd: terms.kd } : {}), lr: curLr, tokens: tokensSeen, tokens_per_s: Math.round(runTokens / Math.max(secs, 1e-9)) };
        appendLineDurable(metricsFile, JSON.stringify(m));
        log(`sft: step ${step}/${o.steps} loss ${m.loss.toFixed(4)}${kd ? ` (ce ${terms.ce.toFixed(4)}, kd ${terms.kd.toFixed(4)})` : ''} lr ${curLr.toExponential(2)} ${m.tokens_per_s} tok/s`);
        lossSum = 0;
        lossCount = 0;
      }
      if (step % every === 0 || step === o.steps) save();
      await nextTick();
    }
  } finally {
    opt.dispose();
  }
  const seconds = (Date.now() - t0) / 1000;
  return {
    steps: step, tokens: tokensSeen, seconds, tokensPerSecond: runTokens / Math.max(seconds, 1e-9), finalLoss: lastLoss, resumedFrom,
    windows: n, unaligned: stream.unaligned, outDir: o.outDir, checkpoint: lastFile,
  };
}
