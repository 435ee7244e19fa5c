// Scoring token sequences with a remote teacher: OpenAI's legacy Completions protocol with `echo: true`,
// `logprobs: k` and `max_tokens: 0` returns, for every token of a prompt given as token ids, its log-probability and
// the k likeliest tokens at that position (as `tsdistill serve` and vLLM answer it). On-policy distillation sends the
// student's own answers this way (../distill/sft.ts, `kd.endpoint`). Retryable failures (network, timeouts, 429, 5xx)
// are retried with backoff; the API key goes in the Authorization header only and is redacted from errors.
import { RequestError, RequestFailed, backoffDelay, parseRetryAfter, realClock, redact, urlCredentials, type Clock } from './client';

export interface ScoreEndpoint {
  /** The API's base URL, e.g. http://127.0.0.1:8000/v1 (`/completions` is appended). */
  baseUrl: string;
  /** The `model` field of the requests. */
  model: string;
  apiKey?: string;
  /** Per request (default 120,000). */
  timeoutMs?: number;
  /** Retries of a retryable failure (default 4). */
  maxRetries?: number;
  /** `max_tokens` of a scoring request (default 0; servers that refuse 0 take 1, its one generated token ignored). */
  maxTokens?: number;
  /**
   * Ask for tokens as `token_id:<id>` (vLLM's `return_tokens_as_token_ids`, which `tsdistill serve` honours), so that
   * alternatives whose texts are equal stay apart and map to ids without re-encoding (default false: texts).
   */
  tokenIds?: boolean;
  fetch?: typeof fetch;
  clock?: Clock;
}

export interface ScoredToken {
  /** The token's text as the server reports it (`token_id:<id>` with `tokenIds`). */
  token: string;
  /** Its log-probability after the tokens before it; null for the first token. */
  logprob: number | null;
  /** The k likeliest tokens at its position (text → log-probability); null for the first token. */
  top: { token: string; logprob: number }[] | null;
}

const ENDPOINT_KEYS = ['baseUrl', 'model', 'apiKey', 'timeoutMs', 'maxRetries', 'maxTokens', 'tokenIds', 'fetch', 'clock'];

/** Checks an endpoint's options; errors name the option at fault. */
export function checkScoreEndpoint(e: ScoreEndpoint, where: string): void {
  if (e === null || typeof e !== 'object') throw new Error(`${where} must be {baseUrl, model, ...}`);
  for (const k of Object.keys(e)) if (!ENDPOINT_KEYS.includes(k)) throw new Error(`${where}: unknown option '${k}' (known: ${ENDPOINT_KEYS.join(', ')})`);
  if (typeof e.baseUrl !== 'string' || !/^https?:\/\//.test(e.baseUrl)) throw new Error(`${where}.baseUrl must be an http(s) URL, got ${JSON.stringify(e.baseUrl)}`);
  const cred = urlCredentials(e.baseUrl);
  if (cred) throw new Error(`${where}.baseUrl holds credentials (${cred}); give the key as apiKey instead, sent as Authorization: Bearer`);
  if (typeof e.model !== 'string' || e.model === '') throw new Error(`${where}.model must be the model's name`);
  if (e.tokenIds !== undefined && typeof e.tokenIds !== 'boolean') throw new Error(`${where}.tokenIds must be true or false, got ${JSON.stringify(e.tokenIds)}`);
  for (const k of ['timeoutMs', 'maxRetries', 'maxTokens'] as const)
    if (e[k] !== undefined && !(Number.isInteger(e[k]) && e[k]! >= 0)) throw new Error(`${where}.${k} must be a non-negative integer, got ${e[k]}`);
}

/**
 * Scores each sequence of token ids: one request for all of them (`prompt` a list of id lists). Returns, per sequence,
 * one entry per token. Throws RequestFailed when the retries are spent, a RequestError ('malformed') when the answer
 * does not have one entry per token sent.
 */
export async function scoreTokens(e: ScoreEndpoint, sequences: number[][], k: number, signal?: AbortSignal): Promise<ScoredToken[][]> {
  const clock = e.clock ?? realClock;
  const secrets = e.apiKey ? [e.apiKey] : [];
  const body = { model: e.model, prompt: sequences, echo: true, logprobs: k, max_tokens: e.maxTokens ?? 0, temperature: 0, ...(e.tokenIds ? { return_tokens_as_token_ids: true } : {}) };
  const url = `${e.baseUrl.replace(/\/+$/, '')}/completions`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      if (signal?.aborted || !(err instanceof RequestError)) throw err;
      if (!err.retryable || attempt >= (e.maxRetries ?? 4)) throw new RequestFailed(err, attempt + 1);
      await clock.sleep(err.retryAfterMs ?? backoffDelay(attempt, { backoffMs: 500, maxBackoffMs: 20_000 }, clock.random), signal);
    }
  }

  async function once(): Promise<ScoredToken[][]> {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), e.timeoutMs ?? 120_000);
    const onAbort = () => ctrl.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (e.apiKey) headers.authorization = `Bearer ${e.apiKey}`;
      let res: Response;
      try {
        res = await (e.fetch ?? fetch)(url, { method: 'POST', headers, body: JSON.stringify(body), signal: ctrl.signal });
      } catch (err) {
        if (signal?.aborted) throw signal.reason ?? err;
        throw new RequestError(`scoring request to ${url} failed: ${redact((err as Error).message, secrets)}`, ctrl.signal.aborted ? 'timeout' : 'network', true);
      }
      const text = await res.text().catch(() => '');
      if (!res.ok) {
        const s = res.status;
        throw new RequestError(`scoring request to ${url}: HTTP ${s}: ${redact(text.slice(0, 300), secrets)}`, 'http', s === 408 || s === 409 || s === 429 || s >= 500, s, parseRetryAfter(res.headers, clock.now()));
      }
      let json: any;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RequestError(`scoring request to ${url}: the answer is not JSON (${text.length} bytes)`, 'malformed', true);
      }
      return parseScores(json, sequences, url);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** The legacy answer's per-token log-probabilities, one list per sequence in `choices[].index` order. */
export function parseScores(json: any, sequences: number[][], where: string): ScoredToken[][] {
  const bad = (why: string) => new RequestError(`${where}: malformed answer: ${why}`, 'malformed', false);
  const choices = json?.choices;
  if (!Array.isArray(choices) || choices.length !== sequences.length) throw bad(`expected ${sequences.length} choices, got ${Array.isArray(choices) ? choices.length : JSON.stringify(choices)?.slice(0, 60)}`);
  const out: ScoredToken[][] = new Array(sequences.length);
  choices.forEach((c: any, pos: number) => {
    const i = c?.index ?? pos;
    if (!Number.isInteger(i) || i < 0 || i >= sequences.length || out[i]) throw bad(`choices[${pos}].index is ${JSON.stringify(c?.index)}`);
    const lp = c.logprobs;
    const n = sequences[i].length;
    if (!lp || !Array.isArray(lp.tokens) || !Array.isArray(lp.token_logprobs) || !Array.isArray(lp.top_logprobs))
      throw bad(`choices[${pos}].logprobs must have tokens, token_logprobs and top_logprobs (does the server support echo with logprobs?)`);
    // a server that generated a token despite max_tokens 0 (or with max_tokens 1) reports it after the prompt's
    if (lp.tokens.length < n) throw bad(`choice ${i} scores ${lp.tokens.length} tokens, ${n} were sent (was the prompt re-tokenized?)`);
    out[i] = Array.from({ length: n }, (_, j) => {
      const top = lp.top_logprobs[j];
      const own = lp.token_logprobs[j];
      if (j > 0 && (typeof own !== 'number' || top === null || typeof top !== 'object')) throw bad(`choice ${i}, token ${j} has no log-probabilities`);
      return {
        token: String(lp.tokens[j]),
        logprob: j === 0 ? null : own,
        top: j === 0 || top === null ? null : Object.entries(top as Record<string, unknown>).filter(([, v]) => typeof v === 'number' && Number.isFinite(v)).map(([token, v]) => ({ token, logprob: v as number })),
      };
    });
  });
  return out;
}

/** The id in a `token_id:<id>` token, or null for a token given as text. */
export function tokenIdOf(token: string): number | null {
  const m = /^token_id:(\d+)$/.exec(token);
  return m ? Number(m[1]) : null;
}
