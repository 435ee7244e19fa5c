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

/** One answer of a request (one of its `choices`), as the server sent it. */
export interface ChoiceAnswer {
  /** The choice's `index`: 0 … n - 1 for a request with `n`. */
  index: number;
  content: string;
  /** From a reasoning_content (or reasoning) field, when the server separates it. */
  reasoning?: string;
  finishReason: string | null;
  logprobs?: TokenLogprob[];
}

/**
 * A request's answer: the first choice's fields at the top (what a request without `n` needs), every choice in
 * `choices` by `index`, and the request's usage and model.
 */
export interface Completion extends Omit<ChoiceAnswer, 'index'> {
  usage?: Usage;
  model?: string;
  choices: ChoiceAnswer[];
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

/** Query parameters that carry a secret when they appear in a URL (`?api_key=…`, `?key=…`, `?access_token=…`, …). */
const SECRET_PARAM = /^(api[-_]?key|key|(access|auth|id|refresh)?[-_]?token|secret|client[-_]?secret|password|passwd|pwd|sig|signature|auth(orization)?)$/i;

/**
 * What in `url` is a credential — a user name or password before the host, or a query parameter that holds a key —
 * described without its value; null when there is none. Keys go in the Authorization header (`apiKeyEnv`), never in a
 * URL, which is written to logs, errors and the output directory.
 */
export function urlCredentials(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.username || u.password) return `a ${u.password ? 'user name and password' : 'user name'} before the host (…@${u.host})`;
  const keys = [...u.searchParams.keys()].filter((k) => SECRET_PARAM.test(k));
  if (keys.length) return `the query parameter${keys.length === 1 ? '' : 's'} ${keys.map((k) => `'${k}'`).join(', ')}`;
  return null;
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

/** The choice index of `choice` at array position `pos`; throws on a bad, duplicate or out-of-range index. */
function choiceIndex(choice: any, pos: number, seen: Set<number>, n: number): number {
  const index = choice?.index ?? pos;
  if (!Number.isInteger(index) || index < 0 || index >= n)
    throw new RequestError(`malformed answer: choices[${pos}].index is ${JSON.stringify(choice?.index)}; the request asked for n = ${n} (indices 0 to ${n - 1})`, 'malformed', true);
  seen.add(index);
  return index;
}

/** A request's answer from its choices (sorted by index); the first one's fields also at the top. */
function completionOf(choices: ChoiceAnswer[], usage: Usage | undefined, model: string | undefined): Completion {
  choices.sort((a, b) => a.index - b.index);
  const { index: _index, ...first } = choices[0];
  return { ...first, ...(usage ? { usage } : {}), ...(model ? { model } : {}), choices };
}

const reasoningOf = (m: any): string | undefined => (typeof m?.reasoning_content === 'string' ? m.reasoning_content : typeof m?.reasoning === 'string' ? m.reasoning : undefined);

function fromJson(body: any, secrets: string[], n: number): Completion {
  const list = body?.choices;
  if (!Array.isArray(list) || list.length === 0 || !list.every((c) => c && typeof c === 'object')) {
    const err = body?.error ? `: ${redact(JSON.stringify(body.error).slice(0, 300), secrets)}` : '';
    throw new RequestError(`malformed answer: no choices${err}`, 'malformed', true);
  }
  const seen = new Set<number>();
  const choices = list.map((choice: any, pos: number): ChoiceAnswer => {
    const index = choiceIndex(choice, pos, seen, n);
    if (seen.size !== pos + 1) throw new RequestError(`malformed answer: choice index ${index} appears twice`, 'malformed', true);
    const msg = choice.message ?? {};
    const reasoning = reasoningOf(msg);
    const logprobs: TokenLogprob[] = [];
    mergeLogprobs(logprobs, choice.logprobs);
    return {
      index,
      content: typeof msg.content === 'string' ? msg.content : '',
      ...(reasoning ? { reasoning } : {}),
      finishReason: choice.finish_reason ?? null,
      ...(choice.logprobs ? { logprobs } : {}),
    };
  });
  return completionOf(choices, body.usage ?? undefined, typeof body.model === 'string' ? body.model : undefined);
}

interface StreamChoice {
  content: string;
  reasoning: string;
  finishReason: string | null;
  sawLogprobs: boolean;
  logprobs: TokenLogprob[];
}

/** Reads server-sent events; the choices' deltas are kept apart by `index` (a request with `n` interleaves them). */
async function readStream(res: Response, secrets: string[], n: number): Promise<Completion> {
  if (!res.body) throw new RequestError('malformed answer: an event stream without a body', 'malformed', true);
  const decoder = new TextDecoder();
  let buf = '';
  const byIndex = new Map<number, StreamChoice>();
  let usage: Usage | undefined;
  let model: string | undefined;
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
    const list = Array.isArray(chunk?.choices) ? chunk.choices : [];
    list.forEach((choice: any, pos: number) => {
      if (!choice || typeof choice !== 'object') return;
      const index = choiceIndex(choice, pos, new Set(), n);
      let c = byIndex.get(index);
      if (!c) byIndex.set(index, (c = { content: '', reasoning: '', finishReason: null, sawLogprobs: false, logprobs: [] }));
      const d = choice.delta ?? {};
      if (typeof d.content === 'string') c.content += d.content;
      const r = reasoningOf(d);
      if (r !== undefined) c.reasoning += r;
      if (choice.finish_reason) c.finishReason = choice.finish_reason;
      if (choice.logprobs) {
        c.sawLogprobs = true;
        mergeLogprobs(c.logprobs, choice.logprobs);
      }
    });
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
  const unfinished = [...byIndex.values()].some((c) => c.finishReason === null);
  if (!done && (byIndex.size === 0 || unfinished))
    throw new RequestError('the event stream ended before the answer was complete (no finish_reason, no [DONE])', 'dropped', true);
  if (byIndex.size === 0) throw new RequestError('malformed answer: an event stream without choices', 'malformed', true);
  const choices = [...byIndex].map(([index, c]): ChoiceAnswer => ({
    index,
    content: c.content,
    ...(c.reasoning ? { reasoning: c.reasoning } : {}),
    finishReason: c.finishReason,
    ...(c.sawLogprobs ? { logprobs: c.logprobs } : {}),
  }));
  return completionOf(choices, usage, model);
}

function describeFetchError(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const cause = err?.cause;
  return cause ? `${err.message}: ${cause.code ?? cause.message ?? String(cause)}` : String(err?.message ?? e);
}

/** Sends one Chat Completions request and reads the whole answer; throws RequestError (or the caller's abort reason). */
export async function chatCompletion(endpoint: EndpointOptions, body: Record<string, unknown>, signal?: AbortSignal): Promise<Completion> {
  const secrets = endpoint.apiKey ? [endpoint.apiKey] : [];
  const inUrl = urlCredentials(endpoint.baseUrl);
  // fetch itself refuses such a URL with an error that quotes it whole, secret included
  if (inUrl) throw new RequestError(`the base URL holds credentials (${inUrl}); give the key as an API key instead, sent as Authorization: Bearer`, 'http', false);
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
      const n = typeof body.n === 'number' && Number.isInteger(body.n) && body.n > 0 ? body.n : 1;
      if (body.stream) return await readStream(res, secrets, n);
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RequestError(`malformed answer: not JSON (${text.length} bytes, starting ${JSON.stringify(redact(text.slice(0, 60), secrets))})`, 'malformed', true);
      }
      return fromJson(json, secrets, n);
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
