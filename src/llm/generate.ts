// `generate`: a data set from a teacher LLM behind any OpenAI-compatible Chat Completions endpoint.
//
// Every sample has a stable id (a hash of its prompt id and sample index). Its outcome goes to exactly one of
// three append-only files in the output directory: samples.jsonl (kept, chat format), rejected.jsonl (curation said
// no: duplicate, too short or long, truncated, not verified) or failures.jsonl (the request failed for good; retried
// by the next run). The first two are fsynced in batches; at start they are read back (a torn last line is cut off)
// and every sample already in them is skipped, so a run stopped at any moment and run again ends with each sample
// exactly once. summary.json reconciles prompts × n with what the files hold.
//
// With teacher.endpoints instead of one baseUrl, requests go through an EndpointPool (pool.ts): spread by weight,
// failing endpoints taken out for a while, and at most one outcome per sample however many attempts answer.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../torch/atomic';
import { validateGenerateConfig, type GenerateConfig, type GenerateConfigInput } from './config';
import { readPrompts, sampleId, type ChatMessage, type PromptRecord } from './prompts';
import {
  RateLimiter, RequestFailed, completeWithRetries, realClock, redact, type ChoiceAnswer, type Clock, type Completion, type ErrorKind, type Usage,
} from './client';
import { assistantMessage, getVerifier, normalizeText, splitReasoning, type Sample, type Verifier } from './curate';
import { JsonlAppender, lockDir, scanJsonl, writeLinesAtomic } from './store';
import { AllEndpointsDown, EndpointPool, type EndpointReport, type PoolEndpoint } from './pool';

export type RejectReason = 'duplicate' | 'too_short' | 'too_long' | 'truncated' | 'unverified';
const REASONS: RejectReason[] = ['duplicate', 'too_short', 'too_long', 'truncated', 'unverified'];

/** What a call may add to the configuration: code, and things that must not be written down. */
export interface GenerateRuntime {
  /** Stops the run: requests in flight are abandoned (their samples stay pending), files are flushed, then GenerationInterrupted is thrown. */
  signal?: AbortSignal;
  /** A progress bar on a TTY (default), plain lines every `progressEveryMs` elsewhere; false for neither. */
  progress?: boolean;
  progressEveryMs?: number;
  log?: (line: string) => void;
  /** A verifier function; overrides curation.verifier. */
  verifier?: Verifier;
  /** The API key itself (instead of teacher.apiKeyEnv, also for endpoints without their own apiKeyEnv); it is never written anywhere. */
  apiKey?: string;
  /** Start over: delete this directory's earlier output, or accept a changed configuration. */
  force?: boolean;
  /** The configuration file, for error messages and relative input paths. */
  source?: string;
  fetch?: typeof fetch;
  clock?: Clock;
  /** Called after each sample's outcome is queued for writing. */
  onSample?: (e: { id: string; outcome: 'written' | 'rejected' | 'failed'; reason?: RejectReason; stats: RunStats }) => void;
}

/** Counts for the current run. */
export interface RunStats {
  written: number;
  rejected: number;
  failed: number;
  requests: number;
  retries: number;
  errors: Partial<Record<ErrorKind | 'verifier', number>>;
  promptTokens: number;
  completionTokens: number;
  /** Answers that came after their sample already had one (teacher.endpoints with requests.lateAnswerMs); dropped. */
  lateAnswers: number;
}

export interface GenerateSummary {
  name: string;
  model: string;
  prompts: number;
  n: number;
  /** prompts × n. */
  total: number;
  /** Distinct sample ids of this prompt set in samples.jsonl, rejected.jsonl and failures.jsonl (failed and not since done). */
  written: number;
  rejected: number;
  rejected_by: Record<RejectReason, number>;
  failed: number;
  /** Samples in none of the files (not yet attempted, or in flight when the run stopped). */
  pending: number;
  /** written + rejected + failed + pending === total, with no id in two places and no id twice. */
  reconciled: boolean;
  /** Lines whose id repeats an earlier line, or belongs to no prompt × sample index of this input (a changed input). */
  duplicate_lines: number;
  foreign_lines: number;
  complete: boolean;
  interrupted: boolean;
  /** Outcomes already on disk when this run started. */
  resumed: number;
  /** Bytes of a torn last line cut from the output files at start. */
  torn_bytes: number;
  this_run: {
    written: number; rejected: number; failed: number; requests: number; retries: number;
    errors: RunStats['errors']; prompt_tokens: number; completion_tokens: number;
    elapsed_s: number; samples_per_s: number; requests_per_s: number; completion_tokens_per_s: number;
    /** Answers dropped because their sample already had one. */
    late_answers: number;
    /** With teacher.endpoints: each endpoint's requests, successes, failures, retries, latency and share of the samples. */
    endpoints?: EndpointReport[];
  };
  files: { samples: string; rejected: string; failures: string; plain?: string; summary: string };
}

/** Thrown when `signal` stops a run; the summary is written and attached. Running again resumes. */
export class GenerationInterrupted extends Error {
  constructor(readonly summary: GenerateSummary) {
    super(`generation interrupted: ${summary.written} written, ${summary.rejected} rejected, ${summary.failed} failed, ${summary.pending} pending of ${summary.total}; run again to resume`);
    this.name = 'GenerationInterrupted';
  }
}

/** Thrown when every endpoint of teacher.endpoints is failing; the summary is written and attached. Running again resumes. */
export class EndpointsUnavailable extends Error {
  readonly endpoints: AllEndpointsDown['endpoints'];
  constructor(readonly summary: GenerateSummary, down: AllEndpointsDown) {
    super(
      `generate stopped: ${down.message}\n` +
        `${summary.written} written, ${summary.rejected} rejected, ${summary.failed} failed, ${summary.pending} pending of ${summary.total}; the output so far is valid: run again to resume`,
      { cause: down },
    );
    this.name = 'EndpointsUnavailable';
    this.endpoints = down.endpoints;
  }
}

/**
 * The configuration fields that decide what a sample is; a directory written under other values is refused. With
 * teacher.endpoints, the models they serve count, not their URLs, weights or limits (endpoints may change between runs).
 */
function fingerprint(cfg: GenerateConfig, inputFile: string): Record<string, unknown> {
  // how samples are asked for (field names, several per request) does not change what they are
  const { n: _n, endpoints, maxTokensField: _f, streamOptions: _s, samplesPerRequest: _m, ...teacher } = cfg.teacher;
  const { limit: _limit, ...input } = cfg.input;
  const models = endpoints ? { models: [...new Set(endpoints.map((e) => e.model ?? cfg.teacher.model))].sort() } : {};
  return { input: { ...input, file: inputFile }, teacher: { ...teacher, ...models }, curation: cfg.curation };
}

function diffKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    return keys.flatMap((k) => diffKeys((a as any)[k], (b as any)[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${prefix}: ${JSON.stringify(a)} there, ${JSON.stringify(b)} here`];
}

const fmtDuration = (s: number) => (!Number.isFinite(s) ? '?' : s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`);

/** A progress bar on a TTY (cli-progress), plain lines at an interval elsewhere. */
class Progress {
  private bar: any = null;
  private timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly total: number,
    private readonly start: number,
    private readonly snapshot: () => { done: number; rps: number; tps: number; errors: number; rejected: number; eta: number; endpoints?: string },
    private readonly log: (l: string) => void,
    tty: boolean,
    everyMs: number,
  ) {
    if (tty) {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { SingleBar, Presets } = require('cli-progress');
      this.bar = new SingleBar(
        { format: 'generate [{bar}] {value}/{total} samples | {rps} req/s | {tps} tok/s | {errors} errors | {rejected} rejected | ETA {eta_s}', hideCursor: true, clearOnComplete: true },
        Presets.shades_classic,
      );
      this.bar.start(total, start, { rps: '0.0', tps: '0', errors: 0, rejected: 0, eta_s: '?' });
      this.timer = setInterval(() => this.update(), 250);
    } else if (everyMs > 0) this.timer = setInterval(() => this.line(), everyMs);
    this.timer?.unref();
  }
  private update(): void {
    const s = this.snapshot();
    this.bar.update(s.done, { rps: s.rps.toFixed(1), tps: s.tps.toFixed(0), errors: s.errors, rejected: s.rejected, eta_s: fmtDuration(s.eta) });
  }
  private line(): void {
    const s = this.snapshot();
    this.log(`generate: ${s.done}/${this.total} samples (${((100 * s.done) / Math.max(1, this.total)).toFixed(0)} %), ${s.rps.toFixed(1)} req/s, ${s.tps.toFixed(0)} tok/s, ${s.errors} errors, ${s.rejected} rejected, ETA ${fmtDuration(s.eta)}${s.endpoints ? `; endpoints: ${s.endpoints}` : ''}`);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.bar) {
      this.update();
      this.bar.stop();
    }
  }
}

/** One sample: the prompt, its index k among the prompt's teacher.n samples, and its id. */
interface Slot {
  prompt: PromptRecord;
  k: number;
  id: string;
}

/** One request: samples of one prompt, choice j of the answer being sample `slots[j]`. */
interface Task {
  prompt: PromptRecord;
  slots: Slot[];
  /** The first sample's id (the request's id in the endpoint pool). */
  id: string;
}

/**
 * Generates `teacher.n` samples for every prompt of `input` into `output.dir` and returns the reconciled summary
 * (also written to summary.json). Running again with the same configuration resumes: finished samples are skipped,
 * failed ones retried. Throws GenerationInterrupted when `runtime.signal` stops it.
 */
export async function generate(config: GenerateConfigInput | GenerateConfig, runtime: GenerateRuntime = {}): Promise<GenerateSummary> {
  const source = runtime.source ?? 'generate config';
  const cfg = validateGenerateConfig(config, source);
  const log = runtime.log ?? ((l: string) => console.log(l));
  const clock = runtime.clock ?? realClock;
  const { teacher, requests, curation } = cfg;

  const keyFrom = (name: string, key: string) => {
    const v = process.env[name];
    if (!v) throw new Error(`${source}: ${key}: the environment variable ${name} is not set (or empty)`);
    return v;
  };
  let apiKey = runtime.apiKey;
  if (apiKey === undefined && teacher.apiKeyEnv && (!teacher.endpoints || teacher.endpoints.some((e) => !e.apiKeyEnv))) apiKey = keyFrom(teacher.apiKeyEnv, 'teacher.apiKeyEnv');
  const poolEndpoints: PoolEndpoint[] | null =
    teacher.endpoints?.map((e, i) => ({
      baseUrl: e.baseUrl, weight: e.weight, model: e.model ?? teacher.model,
      apiKey: e.apiKeyEnv ? keyFrom(e.apiKeyEnv, `teacher.endpoints.${i}.apiKeyEnv`) : apiKey,
      concurrency: e.concurrency, rpm: e.rpm ?? requests.rpm, tpm: e.tpm ?? requests.tpm,
    })) ?? null;
  const secrets = [...new Set([apiKey, ...(poolEndpoints ?? []).map((e) => e.apiKey)].filter((k): k is string => !!k))];

  const baseDir = /\.(ya?ml|json)$/.test(source) ? path.dirname(source) : '.';
  const inputFile = path.resolve(baseDir, cfg.input.file);
  const prompts = readPrompts(inputFile, cfg.input);
  if (prompts.length === 0) throw new Error(`${inputFile}: no prompts`);
  const verifier = runtime.verifier ?? (curation.verifier ? getVerifier(curation.verifier, { answerField: curation.answerField }) : undefined);
  if (!runtime.verifier && curation.verifier === 'exact-match') {
    const missing = prompts.find((p) => p.record[curation.answerField] === undefined || p.record[curation.answerField] === null);
    if (missing) throw new Error(`${missing.where}: curation.verifier 'exact-match' needs the field '${curation.answerField}' (curation.answerField) in every prompt`);
  }

  const dir = path.resolve(cfg.output.dir);
  fs.mkdirSync(dir, { recursive: true });
  const files = {
    samples: path.join(dir, 'samples.jsonl'),
    rejected: path.join(dir, 'rejected.jsonl'),
    failures: path.join(dir, 'failures.jsonl'),
    ...(cfg.output.plain ? { plain: path.join(dir, 'plain.jsonl') } : {}),
    summary: path.join(dir, 'summary.json'),
  };
  const release = lockDir(dir);
  try {
    const fpFile = path.join(dir, 'generate.json');
    const fp = fingerprint(cfg, inputFile);
    if (runtime.force) for (const f of [files.samples, files.rejected, files.failures, path.join(dir, 'plain.jsonl'), files.summary]) fs.rmSync(f, { force: true });
    else if (fs.existsSync(fpFile)) {
      const diff = diffKeys(JSON.parse(fs.readFileSync(fpFile, 'utf8')), fp);
      if (diff.length) throw new Error(`${dir}: holds samples generated under another configuration (${diff.join('; ')}); choose another output directory, or pass --force (force: true) to start over`);
    }
    writeFileAtomic(fpFile, JSON.stringify(fp, null, 2) + '\n');

    // What earlier runs finished.
    const expected = new Map<string, Slot>();
    for (const p of prompts) for (let k = 0; k < teacher.n; k++) expected.set(sampleId(p.id, k), { prompt: p, k, id: sampleId(p.id, k) });
    const done = new Set<string>();
    const dedupKeys = new Set<string>();
    // a hash of the normalized text (with the prompt id when per prompt), so memory does not grow with answer length
    const dedupKey = (promptId: string, msg: ChatMessage) =>
      curation.dedup === 'none'
        ? null
        : crypto.createHash('sha256').update(`${curation.dedup === 'prompt' ? promptId : ''}\u0000${normalizeText(`${msg.reasoning_content ?? ''}\u0000${msg.content}`)}`).digest('base64');
    const prevFailures: any[] = [];
    const torn =
      scanJsonl(files.samples, (value) => {
        if (typeof value?.id !== 'string') return;
        done.add(value.id);
        const msg = Array.isArray(value.messages) ? value.messages[value.messages.length - 1] : undefined;
        const key = msg && typeof value.meta?.prompt_id === 'string' ? dedupKey(value.meta.prompt_id, msg) : null;
        if (key) dedupKeys.add(key);
      }).truncatedBytes +
      scanJsonl(files.rejected, (value) => typeof value?.id === 'string' && done.add(value.id)).truncatedBytes +
      scanJsonl(files.failures, (value) => prevFailures.push(value)).truncatedBytes;
    if (torn) log(`generate: cut a torn last line (${torn} bytes) left by an interrupted run`);
    const resumed = [...expected.keys()].filter((id) => done.has(id)).length;
    // requests: each prompt's samples in blocks of teacher.samplesPerRequest; a block asks for those not yet done
    const queue: Task[] = [];
    let toGo = 0;
    const per = teacher.samplesPerRequest;
    for (const p of prompts)
      for (let b = 0; b < teacher.n; b += per) {
        const slots: Slot[] = [];
        for (let k = b; k < Math.min(b + per, teacher.n); k++) if (!done.has(sampleId(p.id, k))) slots.push(expected.get(sampleId(p.id, k))!);
        if (slots.length) queue.push({ prompt: p, slots, id: slots[0].id });
        toGo += slots.length;
      }
    if (resumed) log(`generate: resuming: ${resumed} of ${expected.size} samples already done, ${toGo} to go`);

    const samplesOut = await JsonlAppender.open(files.samples);
    const rejectedOut = await JsonlAppender.open(files.rejected);
    const failuresOut = await JsonlAppender.open(files.failures);
    const failedNow = new Map<string, unknown>();
    const attempted = new Set<string>();
    const stats: RunStats = { written: 0, rejected: 0, failed: 0, requests: 0, retries: 0, errors: {}, promptTokens: 0, completionTokens: 0, lateAnswers: 0 };
    const countError = (k: ErrorKind | 'verifier') => (stats.errors[k] = (stats.errors[k] ?? 0) + 1);
    const limiter = new RateLimiter({ rpm: requests.rpm, tpm: requests.tpm }, clock);
    const pool = poolEndpoints
      ? new EndpointPool(poolEndpoints, {
          concurrency: requests.concurrency, timeoutMs: requests.timeoutMs, lateAnswerMs: requests.lateAnswerMs, maxRetries: requests.maxRetries,
          backoffMs: requests.backoffMs, maxBackoffMs: requests.maxBackoffMs, cooldownAfter: requests.cooldownAfter, cooldownMs: requests.cooldownMs,
          clock, fetch: runtime.fetch, secrets, log,
        })
      : null;
    const signal = runtime.signal;
    const t0 = clock.now();

    const elapsed = () => Math.max(1e-3, (clock.now() - t0) / 1000);
    const progress =
      runtime.progress === false
        ? null
        : new Progress(
            expected.size,
            resumed,
            () => {
              const finished = stats.written + stats.rejected + stats.failed;
              const rate = finished / elapsed();
              return {
                done: resumed + finished, rps: stats.requests / elapsed(), tps: stats.completionTokens / elapsed(),
                errors: Object.values(stats.errors).reduce((a, b) => a + (b ?? 0), 0), rejected: stats.rejected,
                eta: rate > 0 ? (toGo - finished) / rate : Infinity,
                ...(pool ? { endpoints: pool.describe() } : {}),
              };
            },
            log,
            !!process.stdout.isTTY,
            runtime.progressEveryMs ?? 10_000,
          );

    const baseMessages = (p: PromptRecord): ChatMessage[] =>
      teacher.systemPrompt && p.messages[0]?.role !== 'system' ? [{ role: 'system', content: teacher.systemPrompt }, ...p.messages] : p.messages;

    /** What an endpoint wants of a request's form: the field of the length limit, and whether it takes stream_options. */
    interface Form {
      maxTokensField: 'max_completion_tokens' | 'max_tokens';
      streamOptions: boolean;
    }
    const teacherForm: Form = { maxTokensField: teacher.maxTokensField, streamOptions: teacher.streamOptions };
    const requestBody = (messages: ChatMessage[], t: Task, form: Form): Record<string, unknown> => ({
      model: teacher.model,
      messages,
      ...(teacher.temperature !== undefined ? { temperature: teacher.temperature } : {}),
      ...(teacher.topP !== undefined ? { top_p: teacher.topP } : {}),
      ...(teacher.maxTokens !== undefined ? { [form.maxTokensField]: teacher.maxTokens } : {}),
      ...(t.slots.length > 1 ? { n: t.slots.length } : {}),
      // sample k alone is asked with seed + k; a request for several, with the first one's
      ...(teacher.seed !== undefined ? { seed: teacher.seed + t.slots[0].k } : {}),
      ...(teacher.topLogprobs !== undefined ? { logprobs: true, top_logprobs: teacher.topLogprobs } : {}),
      ...teacher.extraBody,
      stream: teacher.stream,
      ...(teacher.stream && form.streamOptions ? { stream_options: { include_usage: true } } : {}),
    });

    const failSample = (t: Slot, error: string, kind: string, extra: Record<string, unknown>) => {
      const rec = { id: t.id, prompt_id: t.prompt.id, sample: t.k, where: t.prompt.where, kind, error: redact(error, secrets), ...extra, time: new Date().toISOString() };
      failedNow.set(t.id, rec);
      failuresOut.append(rec);
      stats.failed++;
      runtime.onSample?.({ id: t.id, outcome: 'failed', stats });
    };
    const fail = (t: Task, error: string, kind: string, extra: Record<string, unknown>) => {
      for (const slot of t.slots) failSample(slot, error, kind, extra);
    };

    const estimateOf = (messages: ChatMessage[], t: Task) =>
      Math.ceil(messages.reduce((a, m) => a + m.content.length, 0) / 4) + (teacher.maxTokens ?? 512) * t.slots.length;

    /** One endpoint: retries with backoff on it, as long as requests.maxRetries allows. */
    const runTask = async (t: Task): Promise<void> => {
      for (const slot of t.slots) attempted.add(slot.id);
      const messages = baseMessages(t.prompt);
      const body = requestBody(messages, t, teacherForm);
      const estimate = estimateOf(messages, t);
      const start = clock.now();
      let completion: Completion;
      let attempts: number;
      try {
        const endpoint = { baseUrl: teacher.baseUrl!, apiKey, timeoutMs: requests.timeoutMs, fetch: runtime.fetch };
        ({ completion, attempts } = await completeWithRetries(endpoint, body, estimate, {
          maxRetries: requests.maxRetries, backoffMs: requests.backoffMs, maxBackoffMs: requests.maxBackoffMs, limiter, clock,
          onRetry: (e) => {
            stats.requests++;
            stats.retries++;
            countError(e.kind);
          },
        }, signal));
        stats.requests++;
      } catch (e) {
        if (signal?.aborted) return; // pending: the next run asks again
        if (e instanceof RequestFailed) {
          stats.requests++;
          countError(e.last.kind);
          fail(t, e.message, e.last.kind, { ...(e.last.status ? { status: e.last.status } : {}), attempts: e.attempts });
        } else fail(t, e instanceof Error ? e.message : String(e), 'internal', {});
        return;
      }
      await settle(t, messages, completion, attempts, start, {});
    };

    /** A request's answer: each of its samples gets the choice with its index (a missing one is a failure). */
    const settle = async (t: Task, messages: ChatMessage[], completion: Completion, attempts: number, start: number, where: { endpoint?: string }): Promise<void> => {
      const usage: Usage | undefined = completion.usage;
      stats.promptTokens += usage?.prompt_tokens ?? 0;
      stats.completionTokens += usage?.completion_tokens ?? 0;
      const many = t.slots.length > 1;
      for (let j = 0; j < t.slots.length; j++) {
        const choice = completion.choices.find((c) => c.index === j);
        if (choice) await settleOne(t.slots[j], messages, choice, completion, attempts, start, { ...where, ...(many ? { choice: j, request_samples: t.slots.length } : {}) });
        else {
          countError('malformed');
          failSample(t.slots[j], `the answer has no choice with index ${j} (${completion.choices.length} choice${completion.choices.length === 1 ? '' : 's'} for n = ${t.slots.length}); a server that ignores n needs teacher.samplesPerRequest: 1`, 'malformed', { attempts });
        }
      }
    };

    /** Curation of one answer and its one outcome line: samples.jsonl, rejected.jsonl or (a verifier error) failures.jsonl. */
    const settleOne = async (
      t: Slot, messages: ChatMessage[], choice: ChoiceAnswer, completion: Completion, attempts: number, start: number, where: Record<string, unknown>,
    ): Promise<void> => {
      const usage: Usage | undefined = completion.usage;
      const split = splitReasoning(choice);
      const assistant = assistantMessage(split, curation.reasoning);
      const all = [...messages, assistant];
      const chars = assistant.content.length + (typeof assistant.reasoning_content === 'string' ? assistant.reasoning_content.length : 0);
      let reason: RejectReason | undefined;
      if (curation.dropTruncated && choice.finishReason === 'length') reason = 'truncated';
      else if (chars < curation.minChars) reason = 'too_short';
      else if (curation.maxChars !== undefined && chars > curation.maxChars) reason = 'too_long';
      else if (verifier) {
        const sample: Sample = { id: t.id, promptId: t.prompt.id, index: t.k, answer: split.answer, ...(split.reasoning !== undefined ? { reasoning: split.reasoning } : {}), messages: all, finishReason: choice.finishReason };
        let ok: boolean;
        try {
          ok = await verifier(sample, t.prompt);
        } catch (e) {
          countError('verifier');
          failSample(t, `the verifier threw: ${(e as Error)?.message ?? String(e)}`, 'verifier', {});
          return;
        }
        if (ok !== true && ok !== false) {
          countError('verifier');
          failSample(t, `the verifier returned ${JSON.stringify(ok)}, expected true or false`, 'verifier', {});
          return;
        }
        if (!ok) reason = 'unverified';
      }
      const key = reason ? null : dedupKey(t.prompt.id, assistant);
      if (key && dedupKeys.has(key)) reason = 'duplicate';
      const meta = {
        prompt_id: t.prompt.id, sample: t.k, model: completion.model ?? teacher.model, finish_reason: choice.finishReason,
        usage: usage ?? null, latency_ms: Math.round(clock.now() - start), attempts, ...where, ...(verifier ? { verified: reason !== 'unverified' } : {}),
        created: new Date().toISOString(),
      };
      failedNow.delete(t.id);
      if (reason) {
        rejectedOut.append({ id: t.id, reason, response: assistant, meta });
        stats.rejected++;
        runtime.onSample?.({ id: t.id, outcome: 'rejected', reason, stats });
        return;
      }
      if (key) dedupKeys.add(key);
      samplesOut.append({ id: t.id, messages: all, meta, ...(choice.logprobs ? { logprobs: choice.logprobs } : {}) });
      stats.written++;
      runtime.onSample?.({ id: t.id, outcome: 'written', stats });
    };

    /** Several endpoints: the pool spreads the requests and gives each sample at most one answer. */
    const forms = new Map<PoolEndpoint, Form>(
      (poolEndpoints ?? []).map((ep, i) => {
        const e = teacher.endpoints![i];
        return [ep, { maxTokensField: e.maxTokensField ?? teacher.maxTokensField, streamOptions: e.streamOptions ?? teacher.streamOptions }];
      }),
    );
    const runPool = (p: EndpointPool) =>
      p.run(
        queue,
        {
          body: (t, ep) => ({ ...requestBody(baseMessages(t.prompt), t, forms.get(ep) ?? teacherForm), model: ep.model }),
          estimate: (t) => estimateOf(baseMessages(t.prompt), t),
          onDispatch: (t) => t.slots.forEach((slot) => attempted.add(slot.id)),
          onAttemptEnd: (e) => {
            stats.requests++;
            if (e) countError(e.kind);
          },
          onRetry: () => stats.retries++,
          onLate: () => stats.lateAnswers++,
          onAnswer: (t, completion, info) => settle(t, baseMessages(t.prompt), completion, info.attempts, info.startedAt, { endpoint: info.endpoint }),
          onFailed: (t, e) => fail(t, e.message, e.last.kind, { ...(e.last.status ? { status: e.last.status } : {}), attempts: e.attempts }),
        },
        signal,
      );

    let next = 0;
    const worker = async () => {
      while (!signal?.aborted && next < queue.length) await runTask(queue[next++]);
    };
    let stopped: AllEndpointsDown | null = null;
    try {
      if (pool) stopped = await runPool(pool).then(() => null, (e) => {
        if (e instanceof AllEndpointsDown) return e;
        throw e;
      });
      else await Promise.all(Array.from({ length: Math.min(requests.concurrency, queue.length) }, worker));
    } finally {
      progress?.stop();
      await Promise.allSettled([samplesOut.close(), rejectedOut.close(), failuresOut.close()]);
    }
    await samplesOut.flush();
    await rejectedOut.flush();

    // failures.jsonl: this run's failures plus earlier ones not retried this time (a stopped run), if still not done
    const failures = new Map<string, unknown>();
    for (const value of prevFailures) if (typeof value?.id === 'string' && !attempted.has(value.id) && !done.has(value.id) && expected.has(value.id)) failures.set(value.id, value);
    for (const [id, rec] of failedNow) failures.set(id, rec);
    writeLinesAtomic(files.failures, (write) => failures.forEach((r) => write(JSON.stringify(r))));

    const endpointReports = pool?.reports();
    const summary = reconcile(cfg, files, expected, prompts.length, stats, elapsed(), resumed, torn, !!signal?.aborted || !!stopped, endpointReports);
    if (files.plain) writePlain(files.samples, files.plain);
    writeFileAtomic(files.summary, JSON.stringify(summary, null, 2) + '\n');
    log(
      `generate: ${summary.written} written, ${summary.rejected} rejected` +
        (summary.rejected ? ` (${REASONS.filter((r) => summary.rejected_by[r]).map((r) => `${summary.rejected_by[r]} ${r}`).join(', ')})` : '') +
        `, ${summary.failed} failed, ${summary.pending} pending of ${summary.total} (${summary.prompts} prompts × ${summary.n}); ` +
        `this run ${summary.this_run.samples_per_s.toFixed(1)} samples/s, ${summary.this_run.completion_tokens_per_s.toFixed(0)} tok/s, ${summary.this_run.retries} retries` +
        (summary.reconciled ? '' : '; THE COUNTS DO NOT RECONCILE (see summary.json)'),
    );
    for (const r of endpointReports ?? [])
      log(
        `generate:   ${r.url} (weight ${r.weight}): ${r.samples} samples (${(100 * r.share).toFixed(1)} %), ${r.requests} requests, ${r.successes} answered, ` +
          `${r.failures} failed, ${r.retries} retried, ${r.late_answers} late, mean ${r.mean_latency_ms ?? '-'} ms${r.state === 'up' ? '' : `, ${r.state}`}`,
      );
    if (signal?.aborted) throw new GenerationInterrupted(summary);
    if (stopped) throw new EndpointsUnavailable(summary, stopped);
    return summary;
  } finally {
    release();
  }
}

/** Counts what the files on disk hold, independently of what the run believes it wrote. */
function reconcile(
  cfg: GenerateConfig, files: GenerateSummary['files'], expected: Map<string, Slot>, prompts: number, stats: RunStats,
  elapsedS: number, resumed: number, torn: number, interrupted: boolean, endpoints?: EndpointReport[],
): GenerateSummary {
  const seen = new Map<string, string>();
  let duplicateLines = 0;
  let foreignLines = 0;
  let clash = false;
  const rejectedBy = Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
  const counts = { samples: 0, rejected: 0, failures: 0 };
  for (const which of ['samples', 'rejected', 'failures'] as const) {
    scanJsonl(files[which], (value) => {
      const id = value?.id;
      if (typeof id !== 'string' || !expected.has(id)) {
        foreignLines++;
        return;
      }
      const before = seen.get(id);
      if (before === which) {
        duplicateLines++;
        return;
      }
      if (before) {
        clash = true; // failures.jsonl is rewritten without done ids, so this means two outcomes for one sample
        return;
      }
      seen.set(id, which);
      counts[which]++;
      if (which === 'rejected' && REASONS.includes(value.reason)) rejectedBy[value.reason as RejectReason]++;
    });
  }
  const total = expected.size;
  const pending = total - counts.samples - counts.rejected - counts.failures;
  const e = elapsedS;
  return {
    name: cfg.name, model: cfg.teacher.model, prompts, n: cfg.teacher.n, total,
    written: counts.samples, rejected: counts.rejected, rejected_by: rejectedBy, failed: counts.failures, pending,
    reconciled: !clash && duplicateLines === 0 && pending >= 0 && counts.samples + counts.rejected + counts.failures + pending === total,
    duplicate_lines: duplicateLines, foreign_lines: foreignLines,
    complete: pending === 0 && counts.failures === 0, interrupted, resumed, torn_bytes: torn,
    this_run: {
      written: stats.written, rejected: stats.rejected, failed: stats.failed, requests: stats.requests, retries: stats.retries, errors: stats.errors,
      prompt_tokens: stats.promptTokens, completion_tokens: stats.completionTokens, elapsed_s: Number(e.toFixed(3)),
      samples_per_s: (stats.written + stats.rejected + stats.failed) / e, requests_per_s: stats.requests / e, completion_tokens_per_s: stats.completionTokens / e,
      late_answers: stats.lateAnswers, ...(endpoints ? { endpoints } : {}),
    },
    files,
  };
}

/** plain.jsonl: {"prompt", "response"} per kept sample (the last user message and the assistant's content). */
function writePlain(samplesFile: string, plainFile: string): void {
  writeLinesAtomic(plainFile, (write) =>
    scanJsonl(samplesFile, (value) => {
      const msgs: ChatMessage[] = value.messages;
      const user = [...msgs].reverse().find((m) => m.role === 'user');
      write(JSON.stringify({ prompt: user?.content ?? '', response: msgs[msgs.length - 1].content }));
    }),
  );
}
