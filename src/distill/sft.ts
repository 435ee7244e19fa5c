// Supervised fine-tuning of a decoder on chat data, with optional token-level distillation.
//
// Data: chat JSONL as `tsdistill generate` writes it (`{"messages": [...], "logprobs"?: [...]}`), or `{"prompt",
// "response"}` lines, or plain texts (`{ texts }`, every token trained: pre-training a small model on a corpus).
// Conversations are rendered with the chat template (../llm/tokenizer.ts) and packed back to back into one token
// stream, cut into windows of `seqLen` + 1 tokens that overlap by one, so every token is predicted exactly once.
// Attention crosses example boundaries inside a window (the usual packing simplification; examples are separated
// by <|endoftext|>). The loss is taken on answer tokens only (the assistant's content and its <|endoftext|>).
//
// Training is a configuration of the one engine (./engine.ts): the role `student` (AdamW with decay on matrices only,
// gradient accumulation over `gradAccum` micro-batches, gradient-norm clipping, optim's `warmupCosine` schedule:
// lr · (s + 1) / W for s < W, then a cosine down to minLr), the terms `token_ce` and, with KD, `token_kd` or `topk_kl`,
// and the engine's run directory: every `checkpointEvery` steps (and at the end) `last.safetensors` (a decoder
// checkpoint with its tokenizer), `last.optim.safetensors` and `state.json`; `metrics.jsonl` gets one durable line per
// logged step. `resume` continues from the last commit to the same weights as an uninterrupted run: the data order
// depends only on (seed, epoch) and libtorch's generator is reseeded from (seed, step) before every step.
//
// Token-level KD (`kd`): loss = (1 − α) · CE + α · KD, where KD is one of ./token-kd.ts's losses against a local
// teacher decoder's full distribution (`teacher`), or forward KL to the top-k log-probabilities stored with each
// sample (`source: 'logprobs'`, for a remote teacher). Stored logprobs are used for an answer only when its tokens
// re-encode to exactly the teacher's tokens (the same tokenizer); alternatives that are not single tokens of the
// student's vocabulary fall into the tail mass.
//
// Hugging Face decoders (`HfCausalLM`: GPT-2, Llama, Qwen2) train the same way. With a tokenizer.json tokenizer that
// has a chat template, conversations are rendered with the template (as transformers' apply_chat_template); each
// assistant turn's text is located in the rendering (the rendering of the turns before it with the generation prompt
// is a prefix of it), the rendering is cut there and each piece encoded on its own, so the answer's content and the
// template's end-of-turn text (`<|im_end|>\n`) are the trained tokens and a prompt's tokens are those `serve` gives it.
// Checkpoints are `last.safetensors` with the model's own parameter names, and the run ends by writing the model as a
// Hugging Face directory in `<outDir>/model` (config.json, model.safetensors, the tokenizer's files,
// generation_config.json), which `serve`, `sft --init` and `--teacher` read.
//
// On-policy distillation (`kd.onPolicy` = λ, GKD of Agarwal et al. 2024, as TRL's GKDTrainer): each micro-batch is,
// with probability λ (drawn from (seed, micro-batch index), so a resumed run draws the same), the student's own
// answers instead of the data's: the prompts of B examples (the conversation before its last answer), each answered by
// the student at its current weights (sampling at `kd.generationTemperature`, up to `kd.maxNewTokens` tokens, seeded
// from (seed, micro-batch, row)); the teacher then scores every generated token and `token_kd` (JSD(β), β = 0
// forward KL, β = 1 reverse KL as in MiniLLM) is taken on those tokens only. The cross-entropy term never trains on
// the student's own tokens (its weights are zero there); GKD proper is α = 1 (KD only). A remote teacher
// (`kd.endpoint`) scores the student's answers, and the data's micro-batches too when the data stores no logprobs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, dispose, nextTick, noGrad, ops, tensor, tidy } from '../torch';
import { generateTokens } from '../llm/decode';
import { Rng } from '../data/rng';
import type { GPT } from '../models/gpt';
import { HfCausalLM, HfTokenizer, saveHfModel } from '../models/hf';
import { chatPromptIds, checkSameVocabulary, encodeChat, type ChatTurn, type Tokenizer } from '../llm/tokenizer';
import { saveDecoder } from '../llm/decoder-checkpoint';
import { checkScoreEndpoint, scoreTokens, tokenIdOf, type ScoreEndpoint, type ScoredToken } from '../llm/score';
import { TOKEN_KD_LOSSES, type TokenKdLoss } from './token-kd';
import { type BatchSource, type EngineBatch, type RoleSpec, type TermSpec, runDirStep, runEngine } from './engine';

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
  const idOf = singleTokenIds(tok);
  const templated = tok instanceof HfTokenizer && tok.chatTemplate() !== null;
  for (const ex of examples) {
    const enc: { ids: number[]; mask: number[]; answer?: { start: number; end: number } } = templated ? encodeTemplateChat(tok as HfTokenizer, ex.messages) : encodeChat(tok, ex.messages);
    const base = ids.length;
    ids.push(...enc.ids);
    mask.push(...enc.mask);
    if (K > 0 && ex.logprobs && ex.logprobs.length) {
      // the last assistant answer's content tokens: the masked run before the final <|endoftext|> (with a chat
      // template: the content's own piece)
      let end = enc.ids.length - 1;
      let start: number;
      if (enc.answer) {
        start = enc.answer.start - 1;
        end = enc.answer.end;
      } else {
        while (end >= 0 && enc.mask[end] === 0) end--;
        start = end - 1;
        while (start >= 0 && enc.mask[start] === 1) start--;
      }
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

/**
 * A conversation rendered with a tokenizer.json chat template, the trained tokens marked: each assistant turn's
 * content and the template's text after it up to the next turn. `answer` is the last assistant content's token range.
 * Errors name the message when the template's renderings are not prefixes of one another (such a template cannot be
 * cut into turns).
 */
export function encodeTemplateChat(tok: HfTokenizer, messages: readonly ChatTurn[]): { ids: number[]; mask: number[]; answer: { start: number; end: number } } {
  const full = tok.applyChatTemplate(messages);
  const ids: number[] = [];
  const mask: number[] = [];
  let at = 0; // characters of `full` encoded so far
  let answer = { start: 0, end: 0 };
  const piece = (text: string, m: 0 | 1) => {
    const e = tok.encode(text);
    for (const x of e) {
      ids.push(x);
      mask.push(m);
    }
    return e.length;
  };
  messages.forEach((msg, i) => {
    if (msg.role !== 'assistant') return;
    const before = tok.applyChatTemplate(messages.slice(0, i), { addGenerationPrompt: true });
    const upTo = tok.applyChatTemplate(messages.slice(0, i + 1));
    const start = before.length;
    if (!full.startsWith(before) || !upTo.startsWith(before) || !full.startsWith(upTo) || upTo.slice(start, start + msg.content.length) !== msg.content || start < at)
      throw new Error(`chat template of ${tok.name}: message ${i} (assistant) is not found where the template renders it (the renderings of the conversation up to a turn must be prefixes of the whole)`);
    piece(full.slice(at, start), 0);
    const a = ids.length;
    piece(msg.content, 1);
    answer = { start: a, end: ids.length };
    piece(upTo.slice(start + msg.content.length), 1);
    at = upTo.length;
  });
  piece(full.slice(at), 0);
  return { ids, mask, answer };
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
export async function evaluateNll(model: GPT | HfCausalLM, s: TokenStream, opts: { seqLen?: number; batchSize?: number; maxWindows?: number } = {}): Promise<{ nll: number; ppl: number; tokens: number }> {
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
          const b = makeBatch(s, starts.slice(i, i + bs), seqLen, deviceOf(model));
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
  teacher?: GPT | HfCausalLM;
  /** forward_kl (default), reverse_kl or jsd (local teacher only; stored logprobs support forward_kl). */
  loss?: TokenKdLoss;
  /** JSD's β (default 0.5). */
  beta?: number;
  temperature?: number;
  /** Weight of the KD term: loss = (1 − α) CE + α KD (default 0.5). */
  alpha?: number;
  /** Top-k entries per token read from stored logprobs (default 20, the most OpenAI returns). */
  topk?: number;
  /** GKD's λ in [0, 1]: the probability that a micro-batch is the student's own answers (default 0; chat data). */
  onPolicy?: number;
  /**
   * A remote teacher for the on-policy micro-batches: an OpenAI-compatible server that scores token ids through the
   * legacy Completions protocol (`echo`, `logprobs`: ../llm/score.ts). Its top-k log-probabilities on the student's
   * answers are the targets (forward KL, as with stored logprobs); the data's micro-batches use the stored logprobs.
   */
  endpoint?: ScoreEndpoint;
  /** Longest on-policy answer, in tokens (default seqLen / 2). */
  maxNewTokens?: number;
  /** Sampling temperature of the student's on-policy answers (default 1). */
  generationTemperature?: number;
}

export interface SftOptions {
  /** The project's decoder, or a Hugging Face one (then the run also writes `<outDir>/model`, a model directory). */
  model: GPT | HfCausalLM;
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
  /** Token ids that end an on-policy answer besides the tokenizer's eos (generation_config.json's `eos_token_id`s). */
  stopTokens?: number[];
  /** generation_config.json written with a Hugging Face model's directory. */
  generationConfig?: Record<string, unknown>;
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
  /** A Hugging Face model's directory written at the end (`<outDir>/model`). */
  modelDir?: string;
  /** With kd.onPolicy: micro-batches of this run that were the student's own answers, and their generated tokens. */
  onPolicy?: { batches: number; generatedTokens: number };
}

const SFT_KEYS = ['model', 'tokenizer', 'data', 'outDir', 'steps', 'seqLen', 'batchSize', 'gradAccum', 'lr', 'minLr', 'warmupSteps', 'weightDecay', 'clip', 'seed', 'checkpointEvery', 'logEvery', 'kd', 'stopTokens', 'generationConfig', 'resume', 'force', 'signal', 'log'];
const KD_KEYS = ['source', 'teacher', 'loss', 'beta', 'temperature', 'alpha', 'topk', 'onPolicy', 'endpoint', 'maxNewTokens', 'generationTemperature'];

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
  if (kd?.endpoint) {
    checkScoreEndpoint(kd.endpoint, 'sft: kd.endpoint');
    if (kdSource !== 'logprobs') throw new Error("sft: kd.endpoint scores the student's answers with top-k log-probabilities: it goes with kd.source 'logprobs', not a local kd.teacher");
    if (!(kd.onPolicy! > 0)) throw new Error('sft: kd.endpoint scores on-policy answers: give kd.onPolicy (GKD\'s λ) above 0');
  }
  const kdLoss: TokenKdLoss = kd?.loss ?? 'forward_kl';
  const alpha = kd?.alpha ?? 0.5;
  if (kd) {
    if (!TOKEN_KD_LOSSES.includes(kdLoss)) throw new Error(`sft: kd.loss must be one of ${TOKEN_KD_LOSSES.join(', ')}, got '${kdLoss}'`);
    if (!(alpha >= 0 && alpha <= 1)) throw new Error(`sft: kd.alpha must be in [0, 1], got ${alpha}`);
    if (kdSource === 'teacher') {
      if (!kd.teacher) throw new Error("sft: kd.source 'teacher' needs kd.teacher (a decoder)");
      checkSameVocabulary({ vocabSize: kd.teacher.vocabSize, name: 'teacher decoder' }, { vocabSize: model.vocabSize, name: `student decoder, tokenizer ${tok.name}` }, 'sft: token-level KD');
      if (deviceOf(kd.teacher) !== deviceOf(model))
        throw new Error(`sft: the teacher decoder is on ${deviceOf(kd.teacher)}, the student on ${deviceOf(model)}; move both to one device`);
      if (kd.teacher.contextLength < seqLen) throw new Error(`sft: the teacher's context length ${kd.teacher.contextLength} is shorter than seqLen ${seqLen}`);
    } else if (kdSource === 'logprobs') {
      if (kdLoss !== 'forward_kl') throw new Error(`sft: stored top-k logprobs support kd.loss 'forward_kl' only (got '${kdLoss}'); reverse KL and JSD need the teacher's full distribution (kd.teacher)`);
    } else throw new Error(`sft: kd.source must be 'teacher' or 'logprobs', got '${kdSource}'`);
  }
  const lambda = kd?.onPolicy ?? 0;
  if (!(lambda >= 0 && lambda <= 1)) throw new Error(`sft: kd.onPolicy (GKD's λ) must be in [0, 1], got ${lambda}`);
  if (lambda > 0 && kdSource !== 'teacher' && !kd?.endpoint) throw new Error("sft: kd.onPolicy needs a teacher to score the student's own answers: a local decoder (kd.teacher) or a server (kd.endpoint)");
  if (lambda > 0 && !(typeof o.data === 'string' || Array.isArray(o.data))) throw new Error('sft: kd.onPolicy needs chat data (prompts to answer), not { texts }');
  const maxNew = kd?.maxNewTokens ?? Math.max(1, Math.floor(seqLen / 2));
  if (!Number.isInteger(maxNew) || maxNew < 1 || maxNew >= seqLen) throw new Error(`sft: kd.maxNewTokens must be an integer in [1, ${seqLen - 1}] (below seqLen), got ${maxNew}`);
  const genTemperature = kd?.generationTemperature ?? 1;
  if (!(genTemperature >= 0)) throw new Error(`sft: kd.generationTemperature must be >= 0, got ${genTemperature}`);

  // data
  const chats = typeof o.data === 'string' ? readChatJsonl(o.data) : Array.isArray(o.data) ? o.data : null;
  const stream = chats ? packChats(tok, chats, { topk: kdSource === 'logprobs' ? (kd!.topk ?? 20) : 0 }) : packTexts(tok, (o.data as { texts: string[] }).texts);
  for (let i = 0; i < stream.ids.length; i++)
    if (stream.ids[i] >= model.vocabSize) throw new Error(`sft: token id ${stream.ids[i]} is outside the model's vocabulary ${model.vocabSize}`);
  const starts = windowStarts(stream.ids.length, seqLen);
  if (starts.length === 0) throw new Error(`sft: the data has ${stream.ids.length} tokens, fewer than one window of ${seqLen + 1}`);
  if (kdSource === 'logprobs' && !kd!.endpoint && !stream.topk!.has.some((h) => h === 1))
    throw new Error(`sft: kd.source 'logprobs' but no answer carries usable logprobs (${stream.unaligned} did not line up with the tokenizer '${tok.name}'; generate them with topLogprobs from a server using the same tokenizer)`);
  if (stream.unaligned) log(`sft: ${stream.unaligned} answers' logprobs do not line up with the tokenizer '${tok.name}'; they train without KD targets`);

  // the run: the engine with one trained role (and a frozen teacher decoder for token KD), the decoder written with
  // its tokenizer; its state commits every `every` steps
  const held = runDirStep(o.outDir, o.steps);
  if (held !== null && !o.resume && !o.force)
    throw new Error(`sft: ${o.outDir} holds a run at step ${held} of ${o.steps}; resume it (resume / --resume) or start over (force / --force)`);
  const n = starts.length;
  const tokensPerStep = accum * B * seqLen;
  const roles: RoleSpec[] = [{
    name: 'student', model,
    optimizer: { kind: 'adamw', lr, weightDecay: o.weightDecay ?? 0.1, betas: [0.9, 0.95], decayMatricesOnly: true },
    schedule: { kind: 'cosine', per: 'step', warmupSteps: sched.warmupSteps, minLr: sched.minLr },
    ...(clip > 0 ? { clip } : {}),
    ...(model instanceof HfCausalLM ? {} : { save: (file: string, m: unknown, meta: Record<string, string>) => saveDecoder(m as GPT, file, tok, meta) }),
  }];
  const terms: TermSpec[] = [{
    loss: 'token_ce', name: 'ce', student: 'student.logits', teacher: 'labels', weight: kd ? 1 - alpha : 1, metric: 'ce', ...(lambda > 0 ? { options: { weights: 'ce_weights' } } : {}),
  }];
  if (kdSource === 'teacher') {
    roles.push({ name: 'teacher', model: kd!.teacher! });
    terms.push({ loss: 'token_kd', name: 'kd', student: 'student.logits', teacher: 'teacher.logits', weight: alpha, metric: 'kd', options: { kind: kdLoss, temperature: kd!.temperature, beta: kd!.beta } });
  } else if (kdSource === 'logprobs') {
    terms.push({ loss: 'topk_kl', name: 'kd', student: 'student.logits', teacher: 'batch.topk_logprobs', weight: alpha, metric: 'kd' });
  }
  const t0 = Date.now();
  const from = o.resume ? (held ?? 0) : 0;
  const windows = new WindowBatches(stream, starts, seqLen, B, seed, o.steps * accum, deviceOf(model));
  const train =
    lambda > 0
      ? new OnPolicyBatches(windows, promptsOf(tok, chats!, seqLen - maxNew), model, { lambda, maxNew, temperature: genTemperature, seqLen, B, seed, eos: tok.eosId, stopTokens: [...new Set([...stopTokensOf(tok), ...(o.stopTokens ?? [])])], ...(kd?.endpoint ? { endpoint: kd.endpoint, tokenizer: tok, topk: kd.topk ?? 20, signal: o.signal } : {}) })
      : windows;
  const summary = await runEngine({
    name: 'sft', roles, terms, train, gradAccum: accum,
    epochs: 1, seed, outDir: o.outDir, resume: o.resume, force: o.force, checkpointEverySteps: every, logEverySteps: logEvery, progress: false,
    report: (p) => ({ tokens: (p.step + 1) * tokensPerStep, tokens_per_s: Math.round(((p.step + 1 - from) * tokensPerStep) / Math.max((Date.now() - t0) / 1000, 1e-9)) }),
    signal: o.signal, log,
  });
  const seconds = (Date.now() - t0) / 1000;
  let modelDir: string | undefined;
  if (model instanceof HfCausalLM) {
    modelDir = path.join(o.outDir, 'model');
    saveHfModel(modelDir, model, { ...(tok instanceof HfTokenizer ? { files: tok.files() } : {}), ...(o.generationConfig ? { generationConfig: o.generationConfig } : {}) });
  }
  return {
    steps: o.steps, tokens: o.steps * tokensPerStep, seconds, tokensPerSecond: ((o.steps - from) * tokensPerStep) / Math.max(seconds, 1e-9), finalLoss: summary.last_loss ?? NaN,
    resumedFrom: summary.resumed_from_step, windows: n, unaligned: stream.unaligned, outDir: o.outDir, checkpoint: path.join(o.outDir, 'last.safetensors'), ...(modelDir ? { modelDir } : {}),
    ...(train instanceof OnPolicyBatches ? { onPolicy: { batches: train.counts.onPolicy, generatedTokens: train.counts.generatedTokens } } : {}),
  };
}

/**
 * The training windows as batches for the engine: micro-batch g takes windows perm_e[(g·B .. g·B + B) mod n] of epoch
 * e = ⌊g·B / n⌋, with the answer mask as the batch's `weights` and stored top-k targets as `topk_*`.
 */
class WindowBatches implements BatchSource {
  private perm: { e: number; p: Int32Array } | null = null;
  constructor(
    private readonly stream: TokenStream, private readonly starts: number[], private readonly seqLen: number, private readonly B: number,
    private readonly seed: number, readonly length: number, private readonly device: string,
  ) {}
  setEpoch(): void {}
  batchAt(g: number): EngineBatch {
    const n = this.starts.length;
    const at: number[] = [];
    for (let i = 0; i < this.B; i++) {
      const idx = g * this.B + i;
      const e = Math.floor(idx / n);
      if (this.perm?.e !== e) this.perm = { e, p: new Rng(this.seed * 7919 + e).permutation(n) };
      at.push(this.starts[this.perm.p[idx % n]]);
    }
    const b = tidy(() => makeBatch(this.stream, at, this.seqLen, this.device));
    const taps: Record<string, Tensor> = { weights: b.w, ...(b.tk ? { topk_ids: b.tk.ids, topk_logprobs: b.tk.logprobs, topk_valid: b.tk.valid, topk_weights: b.tk.w } : {}) };
    return { x: b.x, y: b.y, taps, dispose: () => dispose([b.x, b.y, ...Object.values(taps)]) };
  }
}

/** The ids that end an answer: <|endoftext|> and the role markers that are single tokens. */
function stopTokensOf(tok: Tokenizer): number[] {
  return [tok.eosId, ...['<|system|>', '<|user|>', '<|assistant|>'].map((t) => tok.specialId(t)).filter((x): x is number => x !== null)];
}

/** Each example's prompt: the conversation before its last answer, with the generation prompt, its last `room` tokens. */
function promptsOf(tok: Tokenizer, chats: readonly ChatExample[], room: number): number[][] {
  return chats.map((ex) => {
    let last = ex.messages.length - 1;
    while (last >= 0 && ex.messages[last].role !== 'assistant') last--;
    const ids = chatPromptIds(tok, ex.messages.slice(0, Math.max(0, last)));
    return ids.length > room ? ids.slice(ids.length - room) : ids;
  });
}

/**
 * GKD's data mixing: micro-batch g is, with probability λ, B prompts answered by the student now (see the header);
 * otherwise the data's windows. Either way `ce_weights` are the weights the cross-entropy may train on (none of the
 * student's own tokens).
 */
class OnPolicyBatches implements BatchSource {
  readonly length: number;
  /** Micro-batches that were on-policy, and the tokens the student generated for them. */
  readonly counts = { onPolicy: 0, generatedTokens: 0 };
  /** A teacher token's text as one id of the student's vocabulary, or null (its mass goes to the tail). */
  private idOf: ((text: string) => number | null) | null = null;
  constructor(
    private readonly off: WindowBatches, private readonly prompts: number[][], private readonly model: GPT | HfCausalLM,
    private readonly o: {
      lambda: number; maxNew: number; temperature: number; seqLen: number; B: number; seed: number; eos: number; stopTokens: number[];
      endpoint?: ScoreEndpoint; tokenizer?: Tokenizer; topk?: number; signal?: AbortSignal;
    },
  ) {
    this.length = off.length;
  }
  setEpoch(): void {}
  async batchAt(g: number): Promise<EngineBatch> {
    const o = this.o;
    const rng = new Rng(o.seed * 1_000_003 + g * 7 + 1);
    if (rng.random() >= o.lambda) {
      const b = this.off.batchAt(g);
      const ce = tidy(() => b.taps!.weights.clone());
      const stored = b.taps!.topk_weights !== undefined && tidy(() => b.taps!.topk_weights.sum().item() as number) > 0;
      if (!o.endpoint || stored) return { ...b, taps: { ...b.taps, ce_weights: ce }, dispose: () => (b.dispose(), ce.dispose()) };
      // the data's windows carry no stored log-probabilities: the remote teacher scores their answer tokens, as a local
      // teacher would run on them
      const T = o.seqLen;
      // each window's T tokens (the teacher's context is T): position j < T − 1 gets the teacher's targets for token
      // j + 1; the window's last position, whose next token lies past it, has none
      const xs = b.x.tolist() as number[][], ws = b.taps!.weights.tolist() as number[];
      const tk = await this.score(xs, (r, j) => ws[r * T + j] > 0);
      const device = deviceOf(this.model);
      const extra = this.topkTaps(tk, device);
      for (const k of ['topk_ids', 'topk_logprobs', 'topk_valid', 'topk_weights']) b.taps![k]?.dispose();
      const taps = { ...b.taps!, ...extra, ce_weights: ce };
      return { x: b.x, y: b.y, taps, dispose: () => dispose([b.x, b.y, ...Object.values(taps)]) };
    }
    this.counts.onPolicy++;
    const T = o.seqLen;
    const x = new Int32Array(o.B * T).fill(o.eos);
    const y = new Int32Array(o.B * T).fill(o.eos);
    const w = new Float32Array(o.B * T);
    const seqs: { seq: number[]; from: number }[] = [];
    const wasTraining = this.model.training;
    this.model.eval();
    try {
      for (let r = 0; r < o.B; r++) {
        const prompt = this.prompts[rng.int(this.prompts.length)];
        const gen = noGrad(() => generateTokens(this.model, prompt, { maxNewTokens: o.maxNew, temperature: o.temperature, seed: rng.int(2 ** 31), stopTokens: o.stopTokens }, 'sft: on-policy answer'));
        // the answer ends with <|endoftext|> when the student stopped, as the data's answers do
        const seq = [...prompt, ...gen.tokens, ...(gen.finishReason === 'stop' ? [o.eos] : [])].slice(0, T + 1);
        this.counts.generatedTokens += gen.tokens.length;
        seqs.push({ seq, from: prompt.length });
        for (let j = 0; j + 1 < seq.length; j++) {
          x[r * T + j] = seq[j];
          y[r * T + j] = seq[j + 1];
          w[r * T + j] = j + 1 >= prompt.length ? 1 : 0;
        }
      }
    } finally {
      this.model.train(wasTraining);
    }
    const device = deviceOf(this.model);
    const on = (t: Tensor) => (device === 'cpu' ? t : t.to({ device }));
    // a remote teacher scores the answers: its top-k at each generated position are the KD targets
    const tk = o.endpoint ? await this.score(seqs.map((s) => s.seq), (r, j) => j + 1 >= seqs[r].from) : null;
    const b = tidy(() => ({
      x: on(tensor(x, { shape: [o.B, T], dtype: 'int64' })),
      y: on(tensor(y, { shape: [o.B * T], dtype: 'int64' })),
      w: on(tensor(w, { shape: [o.B * T] })),
      ce: on(ops.zeros([o.B * T])),
    }));
    const { x: bx, y: by, w: bw, ce: bce } = b;
    const taps: Record<string, Tensor> = { weights: bw, ce_weights: bce, ...(tk ? this.topkTaps(tk, device) : {}) };
    return { x: bx, y: by, taps, dispose: () => dispose([bx, by, ...Object.values(taps)]) };
  }

  /**
   * The remote teacher's top-k at the positions `want(row, j)` picks (position j predicts token j + 1 of the row's
   * sequence), as KD targets of the student's vocabulary: rows of [B·T, K].
   */
  private async score(seqs: number[][], want: (row: number, j: number) => boolean): Promise<TopkTargets> {
    const o = this.o, T = o.seqLen, K = o.topk!;
    // at most T tokens a sequence (an answer that filled the window loses its last target): the teacher's context
    seqs = seqs.map((q) => q.slice(0, T));
    const scored = await scoreTokens(o.endpoint!, seqs, K, o.signal);
    const byText = (this.idOf ??= singleTokenIds(o.tokenizer!));
    const V = this.model.vocabSize;
    const idOf = (t: string) => {
      const id = tokenIdOf(t);
      return id === null ? byText(t) : id < V ? id : null;
    };
    const tk: TopkTargets = { ids: new Int32Array(o.B * T * K), lps: new Float32Array(o.B * T * K).fill(-1e9), valid: new Float32Array(o.B * T * K), tw: new Float32Array(o.B * T), K };
    seqs.forEach((seq, r) => {
      for (let j = 0; j + 1 < seq.length && j < T; j++) {
        if (!want(r, j)) continue;
        const top = scoredTop(scored[r][j + 1], idOf);
        if (!top.length) continue;
        const row = r * T + j;
        tk.tw[row] = 1;
        top.slice(0, K).forEach(([id, lp], q) => {
          tk.ids[row * K + q] = id;
          tk.lps[row * K + q] = lp;
          tk.valid[row * K + q] = 1;
        });
      }
    });
    return tk;
  }

  private topkTaps(tk: TopkTargets, device: string): Record<string, Tensor> {
    const n = this.o.B * this.o.seqLen;
    const on = (t: Tensor) => (device === 'cpu' ? t : t.to({ device }));
    return tidy(() => ({
      topk_ids: on(tensor(tk.ids, { shape: [n, tk.K], dtype: 'int64' })),
      topk_logprobs: on(tensor(tk.lps, { shape: [n, tk.K] })),
      topk_valid: on(tensor(tk.valid, { shape: [n, tk.K] })),
      topk_weights: on(tensor(tk.tw, { shape: [n] })),
    }));
  }
}

interface TopkTargets {
  ids: Int32Array;
  lps: Float32Array;
  valid: Float32Array;
  tw: Float32Array;
  K: number;
}

/** A token's text as the one id of `tok` that spells it, or null when it takes several ids (memoised). */
function singleTokenIds(tok: Tokenizer): (text: string) => number | null {
  const single = new Map<string, number | null>();
  return (s: string) => {
    if (!single.has(s)) {
      const e = tok.encode(s);
      single.set(s, e.length === 1 && tok.decode(e) === s ? e[0] : null);
    }
    return single.get(s)!;
  };
}

/** A scored position's top-k as (id, logprob) of the student's vocabulary: unknown texts dropped, first of a repeat kept. */
function scoredTop(t: ScoredToken, idOf: (text: string) => number | null): [number, number][] {
  const seen = new Set<number>();
  const out: [number, number][] = [];
  for (const { token, logprob } of t.top ?? []) {
    const id = idOf(token);
    if (id === null || seen.has(id) || !Number.isFinite(logprob)) continue;
    seen.add(id);
    out.push([id, logprob]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

/** The device of a decoder's parameters. */
function deviceOf(m: GPT | HfCausalLM): string {
  return m.parameters()[0].device;
}
