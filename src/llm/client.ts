// A client for OpenAI-compatible Chat Completions endpoints: one request (JSON or server-sent events), its errors
// sorted into retryable and final ones, retries with exponential backoff and jitter honouring Retry-After, and a
// shared limiter for requests and tokens per minute. The API key goes into the Authorization header only; every
// error text that leaves this file has it replaced by [redacted].
import type { ChatMessage } from './prompts';

/** Time, for the limiter and the backoff; tests give a fake one. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  random(): number;
}

export const realClock: Clock = {
  now: () => Date.now(),
  random: Math.random,
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason ?? new Error('aborted'));
      };
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  [key: string]: unknown;
}

export interface TopLogprob {
  token: string;
  logprob: number;
}
export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

/** One generated answer, as the server sent it. */
export interface Completion {
  content: string;
  /** From a reasoning_content (or reasoning) field, when the server separates it. */
  reasoning?: string;
  finishReason: string | null;
  usage?: Usage;
  model?: string;
  logprobs?: TokenLogprob[];
}

export type ErrorKind = 'http' | 'timeout' | 'network' | 'dropped' | 'malformed';

/** A failed attempt: `retryable` says whether another attempt may succeed. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly kind: ErrorKind,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Replaces every occurrence of each secret in `text` by [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out;
}

/** Retry-After in milliseconds: `retry-after-ms`, or `retry-after` as seconds or an HTTP date; undefined if absent. */
export function parseRetryAfter(headers: Headers, now: number): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '' && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const v = headers.get('retry-after');
  if (v === null || v.trim() === '') return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.max(0, Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

const retryableStatus = (s: number) => s === 408 || s === 409 || s === 429 || s >= 500;

// ---------------------------------------------------------------- rate limits

/** A token bucket that may go into debt: a request larger than the bucket waits for a full bucket, then borrows. */
class Bucket {
  private level: number;
  private last: number;
  constructor(private readonly perMs: number, private readonly capacity: number, private readonly clock: Clock) {
    this.level = capacity;
    this.last = clock.now();
  }
  private refill(): void {
    const t = this.clock.now();
    this.level = Math.min(this.capacity, this.level + (t - this.last) * this.perMs);
    this.last = t;
  }
  waitMs(cost: number): number {
    this.refill();
    const need = Math.min(cost, this.capacity);
    return this.level >= need ? 0 : (need - this.level) / this.perMs;
  }
  take(cost: number): void {
    this.refill();
    this.level -= cost;
  }
}

/**
 * Requests-per-minute and tokens-per-minute limits shared by all workers, plus a pause every worker honours after a
 * server asked to retry later. Each limit refills continuously and allows a burst of one second's worth.
 */
export class RateLimiter {
  private readonly rpm?: Bucket;
  private readonly tpm?: Bucket;
  private pausedUntil = 0;
  private chain: Promise<void> = Promise.resolve();
  constructor(limits: { rpm?: number; tpm?: number }, private readonly clock: Clock = realClock) {
    if (limits.rpm) this.rpm = new Bucket(limits.rpm / 60_000, Math.max(1, limits.rpm / 60), clock);
    if (limits.tpm) this.tpm = new Bucket(limits.tpm / 60_000, Math.max(1, limits.tpm / 60), clock);
  }
  /** Waits until one request costing `tokens` (an estimate) may start; callers are served in order. */
  acquire(tokens: number, signal?: AbortSignal): Promise<void> {
    const turn = this.chain.then(() => this.waitTurn(tokens, signal));
    this.chain = turn.catch(() => undefined);
    return turn;
  }
  private async waitTurn(tokens: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      const wait = Math.max(this.pausedUntil - this.clock.now(), this.rpm?.waitMs(1) ?? 0, this.tpm?.waitMs(tokens) ?? 0);
      if (wait <= 0) break;
      await this.clock.sleep(wait, signal);
    }
    this.rpm?.take(1);
    this.tpm?.take(tokens);
  }
  /** Corrects a request's token estimate with what the server reported. */
  settle(estimated: number, actual: number): void {
    this.tpm?.take(actual - estimated);
  }
  /** No request starts before `time` (ms, on the limiter's clock). */
  pauseUntil(time: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, time);
  }
}

// ---------------------------------------------------------------- one request

export interface EndpointOptions {
  baseUrl: string;
  apiKey?: string;
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** The completions URL for a base URL (a base URL already ending in /chat/completions is used as it is). */
export function completionsUrl(baseUrl: string): string {
  const b = baseUrl.replace(/\/+$/, '');
  return /\/chat\/completions$/.test(b) ? b : `${b}/chat/completions`;
}

function mergeLogprobs(into: TokenLogprob[], lp: any): void {
  const content = lp?.content;
  if (!Array.isArray(content)) return;
  for (const t of content) {
    if (!t || typeof t.token !== 'string' || typeof t.logprob !== 'number') continue;
    const top = Array.isArray(t.top_logprobs)
      ? t.top_logprobs.filter((x: any) => x && typeof x.token === 'string' && typeof x.logprob === 'number').map((x: any) => ({ token: x.token, logprob: x.logprob }))
      : [];
    into.push({ token: t.token, logprob: t.logprob, top_logprobs: top });
  }
}

function fromJson(body: any, secrets: string[]): Completion {
  const choice = body?.choices?.[0];
  if (!choice || typeof choice !== 'object') {
    const err = body?.error ? `: ${redact(JSON.stringify(body.error).slice(0, 300), secrets)}` : '';
    throw new RequestError(`malformed answer: no choices${err}`, 'malformed', true);
  }
  const msg = choice.message ?? {};
  const logprobs: TokenLogprob[] = [];
  mergeLogprobs(logprobs, choice.logprobs);
  const reasoning = typeof msg.reasoning_content === 'string' ? msg.reasoning_content : typeof msg.reasoning === 'string' ? msg.reasoning : undefined;
  return {
    content: typeof msg.content === 'string' ? msg.content : '',
    ...(reasoning ? { reasoning } : {}),
    finishReason: choice.finish_reason ?? null,
    ...(body.usage ? { usage: body.usage } : {}),
    ...(typeof body.model === 'string' ? { model: body.model } : {}),
    ...(choice.logprobs ? { logprobs } : {}),
  };
}

async function readStream(res: Response, secrets: string[]): Promise<Completion> {
  if (!res.body) throw new RequestError('malformed answer: an event stream without a body', 'malformed', true);
  const decoder = new TextDecoder();
  let buf = '';
  let content = '';
  let reasoning = '';
  let finishReason: string | null = null;
  let usage: Usage | undefined;
  let model: string | undefined;
  let sawLogprobs = false;
  const logprobs: TokenLogprob[] = [];
  let done = false;
  const onEvent = (event: string) => {
    const data = event
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (!data) return;
    if (data.trim() === '[DONE]') {
      done = true;
      return;
    }
    let chunk: any;
    try {
      chunk = JSON.parse(data);
    } catch {
      throw new RequestError(`malformed answer: an event that is not JSON: ${redact(data.slice(0, 120), secrets)}`, 'malformed', true);
    }
    if (chunk?.error) throw new RequestError(`the server reported an error mid-stream: ${redact(JSON.stringify(chunk.error).slice(0, 300), secrets)}`, 'http', true);
    if (typeof chunk?.model === 'string') model = chunk.model;
    if (chunk?.usage) usage = chunk.usage;
    const choice = chunk?.choices?.[0];
    if (!choice) return;
    const d = choice.delta ?? {};
    if (typeof d.content === 'string') content += d.content;
    if (typeof d.reasoning_content === 'string') reasoning += d.reasoning_content;
    else if (typeof d.reasoning === 'string') reasoning += d.reasoning;
    if (choice.finish_reason) finishReason = choice.finish_reason;
    if (choice.logprobs) {
      sawLogprobs = true;
      mergeLogprobs(logprobs, choice.logprobs);
    }
  };
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += decoder.decode(value, { stream: true });
      let cut: RegExpExecArray | null;
      while ((cut = /\r?\n\r?\n/.exec(buf))) {
        const event = buf.slice(0, cut.index);
        buf = buf.slice(cut.index + cut[0].length);
        onEvent(event);
      }
    }
    buf += decoder.decode();
    if (buf.trim()) onEvent(buf);
  } catch (e) {
    reader.cancel().catch(() => undefined); // stop reading an answer that is being given up on; frees the connection
    throw e;
  } finally {
    reader.releaseLock();
  }
  if (!done && finishReason === null) throw new RequestError('the event stream ended before the answer was complete (no finish_reason, no [DONE])', 'dropped', true);
  return {
    content,
    ...(reasoning ? { reasoning } : {}),
    finishReason,
    ...(usage ? { usage } : {}),
    ...(model ? { model } : {}),
    ...(sawLogprobs ? { logprobs } : {}),
  };
}

function describeFetchError(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const cause = err?.cause;
  return cause ? `${err.message}: ${cause.code ?? cause.message ?? String(cause)}` : String(err?.message ?? e);
}

/** Sends one Chat Completions request and reads the whole answer; throws RequestError (or the caller's abort reason). */
export async function chatCompletion(endpoint: EndpointOptions, body: Record<string, unknown>, signal?: AbortSignal): Promise<Completion> {
  const secrets = endpoint.apiKey ? [endpoint.apiKey] : [];
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctrl.abort();
  }, endpoint.timeoutMs);
  const onAbort = () => ctrl.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const fail = (e: unknown, stage: string): never => {
    if (signal?.aborted) throw signal.reason ?? e;
    if (e instanceof RequestError) throw e;
    if (timedOut) throw new RequestError(`no complete answer within ${endpoint.timeoutMs} ms (${stage})`, 'timeout', true);
    const msg = redact(describeFetchError(e), secrets);
    if (stage === 'reading the answer') throw new RequestError(`the connection broke while ${stage}: ${msg}`, 'dropped', true);
    throw new RequestError(`request failed: ${msg}`, 'network', true);
  };
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: body.stream ? 'text/event-stream' : 'application/json' };
    if (endpoint.apiKey) headers.authorization = `Bearer ${endpoint.apiKey}`;
    let res: Response;
    try {
      res = await (endpoint.fetch ?? fetch)(completionsUrl(endpoint.baseUrl), { method: 'POST', headers, body: JSON.stringify(body), signal: ctrl.signal });
    } catch (e) {
      return fail(e, 'connecting');
    }
    try {
      if (!res.ok) {
        let text = '';
        try {
          text = (await res.text()).slice(0, 300).replace(/\s+/g, ' ').trim();
        } catch {
          // the status is what matters
        }
        const retryAfterMs = parseRetryAfter(res.headers, Date.now());
        throw new RequestError(
          `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${text ? `: ${redact(text, secrets)}` : ''}`,
          'http',
          retryableStatus(res.status),
          res.status,
          retryAfterMs,
        );
      }
      if (body.stream) return await readStream(res, secrets);
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RequestError(`malformed answer: not JSON (${text.length} bytes, starting ${JSON.stringify(redact(text.slice(0, 60), secrets))})`, 'malformed', true);
      }
      return fromJson(json, secrets);
    } catch (e) {
      return fail(e, 'reading the answer');
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------- retries

export interface RetryOptions {
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
  limiter: RateLimiter;
  clock: Clock;
  /** Called before each wait: the failed attempt's error and how long the client will wait. */
  onRetry?: (error: RequestError, delayMs: number, attempt: number) => void;
}

/** The wait before retry number `attempt` (0-based) when the server gave no Retry-After: full-range jitter in [½, 1]. */
export function backoffDelay(attempt: number, o: { backoffMs: number; maxBackoffMs: number }, random: () => number): number {
  const cap = Math.min(o.maxBackoffMs, o.backoffMs * 2 ** attempt);
  return cap * (0.5 + 0.5 * random());
}

/** A request that failed for good: the last attempt's error and how many attempts were made. */
export class RequestFailed extends Error {
  constructor(readonly last: RequestError, readonly attempts: number) {
    super(`${last.message} (after ${attempts} attempt${attempts === 1 ? '' : 's'})`);
    this.name = 'RequestFailed';
  }
}

/**
 * Sends the request through the limiter, retrying retryable failures. A Retry-After is honoured (waited in full,
 * plus up to 10 % jitter) and pauses every other request too. Throws RequestFailed, or the abort reason of `signal`.
 */
export async function completeWithRetries(
  endpoint: EndpointOptions,
  body: Record<string, unknown>,
  tokenEstimate: number,
  o: RetryOptions,
  signal?: AbortSignal,
): Promise<{ completion: Completion; attempts: number }> {
  for (let attempt = 0; ; attempt++) {
    await o.limiter.acquire(tokenEstimate, signal);
    try {
      const completion = await chatCompletion(endpoint, body, signal);
      const used = completion.usage?.total_tokens;
      if (typeof used === 'number') o.limiter.settle(tokenEstimate, used);
      return { completion, attempts: attempt + 1 };
    } catch (e) {
      if (signal?.aborted || !(e instanceof RequestError)) throw e;
      if (!e.retryable || attempt >= o.maxRetries) throw new RequestFailed(e, attempt + 1);
      let delay: number;
      if (e.retryAfterMs !== undefined) {
        delay = e.retryAfterMs + o.clock.random() * Math.min(e.retryAfterMs * 0.1, 1000);
        o.limiter.pauseUntil(o.clock.now() + e.retryAfterMs);
      } else delay = backoffDelay(attempt, o, o.clock.random);
      o.onRetry?.(e, delay, attempt);
      await o.clock.sleep(delay, signal);
    }
  }
}

export type { ChatMessage };
