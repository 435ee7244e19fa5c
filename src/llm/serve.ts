// Serves a decoder over the OpenAI Chat Completions protocol: POST /v1/chat/completions (JSON, or server-sent
// events with `stream: true`), GET /v1/models and GET /v1/models/{id}; and the legacy POST /v1/completions, whose
// `echo` with `logprobs` scores a given text (see `legacyCompletions` below: how a remote teacher scores a student's
// answers). Loopback by default; with an API key, every
// request must bring it as `Authorization: Bearer KEY`.
//
// Request fields honoured: model (another model's name is answered 404 model_not_found; none means this one),
// messages (roles system, developer — read as system — user and assistant), max_completion_tokens (or max_tokens),
// temperature, top_p, top_k (an extension), n, stop (a string or up to 4), seed (sample k of n uses seed + k; without
// a seed each request draws one), logprobs, top_logprobs (0–20), stream, stream_options.include_usage. Unknown fields
// are ignored, as OpenAI does. Errors have OpenAI's body: {error: {message, type, param, code}}. Prompts are rendered with the chat template of ./tokenizer.ts and end with `<|assistant|>\n`; generation
// stops at <|endoftext|> (or a role marker that is a special token), a stop string, max_tokens or the model's context length (finish_reason 'length').
// Reported log-probabilities are the model's own (temperature 1, before top-k/top-p), as vLLM reports them.
//
// Requests are decoded together (./batcher.ts): every sequence in flight — all requests, all n choices — advances by
// one token per forward, requests arriving meanwhile join at the next step, and the event loop runs between steps. A
// client that disconnects stops its generation.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DecodeBatcher, type BatcherStats } from './batcher';
import type { BatchStepDecoder, GeneratedToken } from './decode';
import { StreamDecoder, chatPromptIds, type ChatTurn, type Tokenizer } from './tokenizer';
import { Module } from '../nn';
import { noGrad, tensor, tidy } from '../torch';

export interface ServeOptions {
  model: BatchStepDecoder;
  tokenizer: Tokenizer;
  /** The name reported in answers and by /v1/models (default 'tsdistill-decoder'). */
  modelName?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** max_tokens when a request gives none (default 256). */
  defaultMaxTokens?: number;
  /** Token ids that also end an answer (a Hugging Face directory's generation_config.json `eos_token_id`s). */
  stopTokens?: number[];
  /** One line per request (default: nothing). */
  log?: (line: string) => void;
  /** Most sequences decoded together in one forward (default 64; 1 decodes one sequence at a time). */
  maxBatch?: number;
  /** Largest request body accepted, in bytes (default 1 MiB); a larger one is answered 413. */
  maxBodyBytes?: number;
  /**
   * Cross-origin requests from browsers: the origin allowed (`*` for any). Default: none, so a web page on another
   * origin cannot call the server (no CORS headers, preflight requests answered 405).
   */
  cors?: string;
  /** A key every request must bring as `Authorization: Bearer KEY` (answered 401 otherwise); default: none needed. */
  apiKey?: string;
}

/** The default request body limit of `serve` (bytes). */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

export interface Server {
  /** Base URL including /v1. */
  url: string;
  port: number;
  /** Completion tokens generated since start. */
  stats: { requests: number; completionTokens: number; errors: number };
  /** Batched decoding: steps run, tokens, mean batch = rowSteps / steps, largest batch. */
  batch: BatcherStats;
  close(): Promise<void>;
}

/** An error answer: the status and OpenAI's error object. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request the server cannot take as it is (400). */
class BadRequest extends ApiError {
  constructor(message: string, param: string | null = null, code: string | null = 'invalid_value') {
    super(400, message, param, code);
  }
}

/** OpenAI's answer to a model it does not serve. */
const modelNotFound = (name: string, param: string | null) =>
  new ApiError(404, `The model '${name}' does not exist or you do not have access to it.`, param, 'model_not_found');

/** Compares two strings in time that does not depend on where they differ. */
function sameSecret(a: string, b: string): boolean {
  const h = (x: string) => crypto.createHash('sha256').update(x).digest();
  return crypto.timingSafeEqual(h(a), h(b));
}

interface ParsedRequest {
  messages: ChatTurn[];
  maxTokens: number;
  temperature: number;
  topP: number;
  topK?: number;
  n: number;
  stop: string[];
  seed: number;
  logprobs: boolean;
  topLogprobs: number;
  stream: boolean;
  includeUsage: boolean;
}

function num(body: any, key: string, def: number, lo: number, hi: number, int = false): number {
  const v = body[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
    throw new BadRequest(`'${key}' must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`, key, typeof v === 'number' ? 'invalid_value' : 'invalid_type');
  return v;
}

function parseRequest(body: any, defaultMaxTokens: number, modelName: string): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('the request body must be a JSON object', null, 'invalid_type');
  if (body.model !== undefined && body.model !== null) {
    if (typeof body.model !== 'string') throw new BadRequest(`'model' must be a string, got ${JSON.stringify(body.model)}`, 'model', 'invalid_type');
    if (body.model !== modelName) throw modelNotFound(body.model, 'model');
  }
  const msgs = body.messages;
  if (msgs === undefined) throw new BadRequest("'messages' is required", 'messages', 'missing_required_parameter');
  if (!Array.isArray(msgs) || msgs.length === 0) throw new BadRequest("'messages' must be a non-empty array", 'messages', Array.isArray(msgs) ? 'empty_array' : 'invalid_type');
  const messages: ChatTurn[] = msgs.map((m: any, i: number) => {
    if (m === null || typeof m !== 'object') throw new BadRequest(`messages[${i}] must be an object`, `messages[${i}]`, 'invalid_type');
    let content = m.content;
    if (Array.isArray(content)) content = content.map((p: any) => (p && p.type === 'text' && typeof p.text === 'string' ? p.text : '')).join('');
    if (content === null && m.role === 'assistant') content = '';
    if (typeof content !== 'string') throw new BadRequest(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`, 'invalid_type');
    if (!['system', 'developer', 'user', 'assistant'].includes(m.role))
      throw new BadRequest(`messages[${i}].role must be system, developer, user or assistant, got ${JSON.stringify(m.role)}`, `messages[${i}].role`);
    // developer messages are the system messages of OpenAI's newer models
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) stop = body.stop;
  else if (body.stop !== undefined && body.stop !== null) throw new BadRequest("'stop' must be a string or an array of strings", 'stop', 'invalid_type');
  if (stop.length > 4 || stop.some((s) => typeof s !== 'string' || s === '')) throw new BadRequest("'stop' must hold at most 4 non-empty strings", 'stop');
  const maxKey = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const logprobs = body.logprobs === true;
  const topLogprobs = num(body, 'top_logprobs', 0, 0, 20, true);
  if (topLogprobs > 0 && !logprobs) throw new BadRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs');
  return {
    messages,
    maxTokens: num(body, maxKey, defaultMaxTokens, 0, 1e9, true),
    temperature: num(body, 'temperature', 1, 0, 2),
    topP: num(body, 'top_p', 1, Number.MIN_VALUE, 1),
    topK: body.top_k === undefined || body.top_k === null || body.top_k === -1 ? undefined : num(body, 'top_k', 0, 1, 1e9, true),
    n: num(body, 'n', 1, 1, 128, true),
    stop,
    seed: num(body, 'seed', Math.floor(Math.random() * 2 ** 31), -(2 ** 53), 2 ** 53, true),
    logprobs,
    topLogprobs,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
  };
}

/** Length of the longest suffix of `text` that is a proper prefix of a stop string (text that must be held back). */
function pendingStopPrefix(text: string, stops: string[]): number {
  let best = 0;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > best; k--)
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
  return best;
}

interface ChoiceEvents {
  /** New text (may be empty) and, with logprobs, the token just generated. */
  delta(text: string, token: GeneratedToken | null): void;
}

export async function serve(o: ServeOptions): Promise<Server> {
  const { model, tokenizer } = o;
  if (tokenizer.vocabSize > model.vocabSize)
    throw new Error(`serve: the tokenizer '${tokenizer.name}' has ${tokenizer.vocabSize} ids but the model's vocabulary only ${model.vocabSize}`);
  const modelName = o.modelName ?? 'tsdistill-decoder';
  if (o.apiKey !== undefined && (typeof o.apiKey !== 'string' || o.apiKey.trim() === '' || /\s/.test(o.apiKey)))
    throw new Error('serve: apiKey must be a non-empty string without white space');
  const defaultMaxTokens = o.defaultMaxTokens ?? 256;
  // an answer ends at <|endoftext|> or at a role marker the model starts on its own
  const stopTokens = [...new Set([tokenizer.eosId, ...['<|system|>', '<|user|>', '<|assistant|>'].map((t) => tokenizer.specialId(t)).filter((x): x is number => x !== null), ...(o.stopTokens ?? [])])];
  for (const t of o.stopTokens ?? []) if (!(Number.isInteger(t) && t >= 0 && t < model.vocabSize)) throw new Error(`serve: stop token ${t} is outside the model's vocabulary ${model.vocabSize}`);
  const stats = { requests: 0, completionTokens: 0, errors: 0 };
  const created = () => Math.floor(Date.now() / 1000);
  let nextId = 0;
  const batcher = new DecodeBatcher(model, { maxBatch: o.maxBatch ?? 64 });

  const tokenLogprob = (t: GeneratedToken, k: number) => {
    const entry = (id: number, logprob: number) => {
      const token = tokenizer.decode([id]);
      return { token, logprob, bytes: id < 256 && tokenizer.name === 'bytes' ? [id] : [...Buffer.from(token, 'utf8')] };
    };
    return { ...entry(t.id, t.logprob), top_logprobs: t.top.slice(0, k).map((x) => entry(x.id, x.logprob)) };
  };

  /** Generates one choice, reporting text as it becomes final; returns the finish reason and token count. */
  const runChoice = async (prompt: number[], r: ParsedRequest, k: number, ev: ChoiceEvents, closed: () => boolean) => {
    const room = model.contextLength - prompt.length;
    const maxNew = Math.min(r.maxTokens, room);
    const dec = new StreamDecoder(tokenizer);
    let text = '';
    let sent = 0;
    let count = 0;
    let stopped = false;
    const res = await batcher.submit(prompt, {
      maxNewTokens: maxNew, temperature: r.temperature, topP: r.topP, topK: r.topK, seed: r.seed + k,
      stopTokens, topLogprobs: r.logprobs ? r.topLogprobs : 0,
    }, (t) => {
      count++;
      text += dec.push(t.id);
      const hit = r.stop.map((s) => text.indexOf(s)).filter((i) => i >= 0);
      if (hit.length) {
        text = text.slice(0, Math.min(...hit));
        ev.delta(text.slice(sent), r.logprobs ? t : null);
        sent = text.length;
        stopped = true;
        return false;
      }
      const safe = text.length - pendingStopPrefix(text, r.stop);
      ev.delta(safe > sent ? text.slice(sent, safe) : '', r.logprobs ? t : null);
      sent = Math.max(sent, safe);
      return !closed();
    });
    const finish: 'stop' | 'length' = stopped ? 'stop' : res.finishReason;
    if (!stopped) text += dec.end();
    if (text.length > sent) ev.delta(text.slice(sent), null);
    stats.completionTokens += count;
    return { finish, count, text };
  };


  /**
   * POST /v1/completions, OpenAI's legacy protocol: `prompt` a string, a list of token ids, or a list of either (one
   * choice per prompt, in order); `max_tokens` (default 16; 0 with `echo` scores the prompt only); `echo` puts the
   * prompt's text and log-probabilities before the answer's; `logprobs` k (0–20) returns, per token, its
   * log-probability and the k likeliest tokens as {text: logprob} (the first prompt token has none: null);
   * temperature, top_p, top_k, seed and stop as in chat. `n` above 1 and `stream` are refused. With
   * `return_tokens_as_token_ids` (vLLM's extension) tokens are written `token_id:<id>`, so that tokens whose texts
   * are equal (bytes of a partial character) stay apart.
   */
  const legacyCompletions = async (raw: string, json: (status: number, obj: unknown) => void, refuse: (e: ApiError) => void, closed: () => boolean) => {
    let prompts: number[][];
    let r: ParsedRequest;
    let echo: boolean;
    let k: number | null;
    let asIds = false;
    try {
      let body: any;
      try {
        body = JSON.parse(raw);
      } catch (e) {
        throw new BadRequest(`the body is not JSON: ${(e as Error).message}`, null, null);
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('the body must be a JSON object', null, null);
      if (body.model !== undefined && body.model !== null) {
        if (typeof body.model !== 'string') throw new BadRequest(`'model' must be a string, got ${JSON.stringify(body.model)}`, 'model', 'invalid_type');
        if (body.model !== modelName) throw modelNotFound(body.model, 'model');
      }
      if (body.stream === true) throw new BadRequest("'stream' is not supported on /v1/completions by this server; use /v1/chat/completions to stream", 'stream', 'unsupported_value');
      if (body.n !== undefined && body.n !== null && body.n !== 1) throw new BadRequest("'n' must be 1 on /v1/completions (send the prompt several times in 'prompt' instead)", 'n', 'unsupported_value');
      const ids = (p: unknown, where: string): number[] => {
        if (typeof p === 'string') return tokenizer.encode(p);
        if (Array.isArray(p) && p.every((x) => Number.isInteger(x))) {
          for (const x of p as number[]) if (x < 0 || x >= model.vocabSize) throw new BadRequest(`${where}: token id ${x} is outside the vocabulary [0, ${model.vocabSize})`, 'prompt');
          return p as number[];
        }
        throw new BadRequest(`${where} must be a string or a list of token ids`, 'prompt', 'invalid_type');
      };
      const p = body.prompt;
      if (p === undefined || p === null) throw new BadRequest("'prompt' is required", 'prompt', 'missing_required_parameter');
      prompts = typeof p === 'string' || (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x))) ? [ids(p, "'prompt'")]
        : Array.isArray(p) && p.length > 0 ? p.map((x: unknown, i: number) => ids(x, `'prompt'[${i}]`)) : (() => { throw new BadRequest("'prompt' must not be empty", 'prompt'); })();
      echo = body.echo === true;
      asIds = body.return_tokens_as_token_ids === true;
      k = body.logprobs === undefined || body.logprobs === null ? null : num(body, 'logprobs', 0, 0, 20, true);
      const maxTokens = num(body, 'max_tokens', 16, 0, 1e9, true);
      if (maxTokens === 0 && !echo) throw new BadRequest("'max_tokens' 0 asks for nothing without 'echo'", 'max_tokens');
      prompts.forEach((q, i) => {
        if (q.length === 0) throw new BadRequest(`'prompt'[${i}] is empty`, 'prompt');
        if (q.length + (maxTokens > 0 ? 1 : 0) > model.contextLength)
          throw new BadRequest(`'prompt'[${i}] has ${q.length} tokens; the model's context length is ${model.contextLength}${maxTokens > 0 ? ' (it must leave room for an answer)' : ''}`, 'prompt', 'context_length_exceeded');
      });
      const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
      if (!Array.isArray(stop) || stop.length > 4 || !stop.every((x: unknown) => typeof x === 'string' && x.length > 0))
        throw new BadRequest("'stop' must be a non-empty string or a list of up to 4", 'stop');
      r = {
        messages: [], maxTokens, temperature: num(body, 'temperature', 1, 0, 2), topP: num(body, 'top_p', 1, Number.MIN_VALUE, 1),
        topK: body.top_k === undefined || body.top_k === null || body.top_k === -1 ? undefined : num(body, 'top_k', 0, 1, 1e9, true),
        n: 1, stop, seed: num(body, 'seed', Math.floor(Math.random() * 2 ** 31), -(2 ** 53), 2 ** 53, true),
        logprobs: k !== null, topLogprobs: k ?? 0, stream: false, includeUsage: false,
      };
    } catch (e) {
      refuse(e instanceof ApiError ? e : new ApiError(500, (e as Error).message));
      return;
    }
    stats.requests++;
    const text = (id: number) => (asIds ? `token_id:${id}` : tokenizer.decode([id]));
    const top = (xs: { id: number; logprob: number }[]) => Object.fromEntries(xs.map((x) => [text(x.id), x.logprob]));
    let completion = 0;
    const choices = await Promise.all(prompts.map(async (q, index) => {
      const lp = { tokens: [] as string[], token_logprobs: [] as (number | null)[], top_logprobs: [] as (Record<string, number> | null)[], text_offset: [] as number[] };
      let out = '';
      let answered = 0; // characters of the answer's tokens so far
      const add = (id: number, logprob: number | null, alts: { id: number; logprob: number }[] | null) => {
        lp.text_offset.push(out.length + answered);
        answered += tokenizer.decode([id]).length;
        lp.tokens.push(text(id));
        lp.token_logprobs.push(logprob);
        lp.top_logprobs.push(alts ? top(alts) : null);
      };
      if (echo) {
        out = tokenizer.decode(q);
        if (k !== null) {
          const scored = promptLogprobs(model, q, k);
          let at = 0;
          q.forEach((id, j) => {
            lp.text_offset.push(at);
            lp.tokens.push(text(id));
            at += tokenizer.decode([id]).length;
            lp.token_logprobs.push(j === 0 ? null : scored.logprob[j - 1]);
            lp.top_logprobs.push(j === 0 ? null : top(scored.top[j - 1]));
          });
        }
      }
      let finish: string = 'length';
      if (r.maxTokens > 0) {
        const c = await runChoice(q, r, index, { delta: (_t, tok) => tok && k !== null && add(tok.id, tok.logprob, tok.top.slice(0, k)) }, closed);
        out += c.text;
        finish = c.finish;
        completion += c.count;
      }
      return { text: out, index, logprobs: k !== null ? lp : null, finish_reason: finish };
    }));
    if (closed()) return;
    const promptTokens = prompts.reduce((a, q) => a + q.length, 0);
    json(200, { id: `cmpl-${Date.now().toString(36)}-${nextId++}`, object: 'text_completion', created: created(), model: modelName, choices, usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion } });
    o.log?.(`completions prompts=${prompts.length} prompt=${promptTokens} completion=${completion} tokens${echo ? ' echo' : ''}`);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
    const url = (req.url ?? '').split('?')[0].replace(/\/+$/, '');
    if (o.cors !== undefined && req.method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-methods': 'GET, POST, OPTIONS', 'access-control-allow-headers': 'content-type, authorization', 'access-control-max-age': '600' }).end();
      return;
    }
    const json = (status: number, obj: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(obj));
    };
    const refuse = (e: ApiError) => {
      stats.errors++;
      json(e.status, e.body());
    };
    const modelObject = { id: modelName, object: 'model', created: 0, owned_by: 'tsdistill' };
    if (req.method === 'GET' && url === '/v1/models') {
      json(200, { object: 'list', data: [modelObject] });
      return;
    }
    if (req.method === 'GET' && url.startsWith('/v1/models/')) {
      let id: string;
      try {
        id = decodeURIComponent(url.slice('/v1/models/'.length));
      } catch {
        id = url.slice('/v1/models/'.length);
      }
      if (id === modelName) json(200, modelObject);
      else refuse(modelNotFound(id, 'model'));
      return;
    }
    if (url !== '/v1/chat/completions' && url !== '/v1/completions') {
      refuse(new ApiError(404, `Invalid URL (${req.method} ${req.url}); this server answers POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /v1/models/{id}`));
      return;
    }
    if (req.method !== 'POST') {
      refuse(new ApiError(405, `use POST for ${url}, got ${req.method}`, null, 'method_not_supported'));
      return;
    }
    if (url === '/v1/completions') {
      await legacyCompletions(raw, json, refuse, () => res.writableEnded || res.destroyed);
      return;
    }
    let r: ParsedRequest;
    let prompt: number[];
    try {
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch (e) {
        throw new BadRequest(`the body is not JSON: ${(e as Error).message}`, null, null);
      }
      r = parseRequest(body, defaultMaxTokens, modelName);
      prompt = chatPromptIds(tokenizer, r.messages);
      if (prompt.length >= model.contextLength)
        throw new BadRequest(`the prompt has ${prompt.length} tokens; the model's context length is ${model.contextLength} (it must leave room for an answer)`, 'messages', 'context_length_exceeded');
    } catch (e) {
      refuse(e instanceof ApiError ? e : new ApiError(500, (e as Error).message));
      return;
    }
    stats.requests++;
    const id = `chatcmpl-${Date.now().toString(36)}-${nextId++}`;
    const t0 = Date.now();
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    let completion = 0;
    if (!r.stream) {
      // the n choices decode side by side in the batch
      const choices = await Promise.all(Array.from({ length: r.n }, async (_, k) => {
        const lps: unknown[] = [];
        const c = await runChoice(prompt, r, k, { delta: (_t, tok) => tok && lps.push(tokenLogprob(tok, r.topLogprobs)) }, () => closed);
        completion += c.count;
        return { index: k, message: { role: 'assistant', content: c.text, refusal: null }, logprobs: r.logprobs ? { content: lps, refusal: null } : null, finish_reason: c.finish };
      }));
      if (closed) return;
      json(200, { id, object: 'chat.completion', created: created(), model: modelName, choices, usage: { prompt_tokens: prompt.length, completion_tokens: completion, total_tokens: prompt.length + completion } });
    } else {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
      const chunk = (k: number, delta: unknown, extra: Record<string, unknown> = {}) =>
        send({ id, object: 'chat.completion.chunk', created: created(), model: modelName, choices: [{ index: k, delta, logprobs: null, finish_reason: null, ...extra }] });
      // the n choices decode side by side; their chunks interleave, told apart by `index` (as OpenAI streams them)
      await Promise.all(Array.from({ length: r.n }, async (_, k) => {
        chunk(k, { role: 'assistant', content: '', refusal: null });
        const c = await runChoice(prompt, r, k, {
          delta: (text, tok) => {
            if (closed || (text === '' && tok === null)) return;
            chunk(k, { content: text }, tok ? { logprobs: { content: [tokenLogprob(tok, r.topLogprobs)], refusal: null } } : {});
          },
        }, () => closed);
        completion += c.count;
        if (!closed) chunk(k, {}, { finish_reason: c.finish });
      }));
      if (closed) return;
      if (r.includeUsage) send({ id, object: 'chat.completion.chunk', created: created(), model: modelName, choices: [], usage: { prompt_tokens: prompt.length, completion_tokens: completion, total_tokens: prompt.length + completion } });
      res.end('data: [DONE]\n\n');
    }
    o.log?.(`${r.stream ? 'stream' : 'json'} n=${r.n} prompt=${prompt.length} completion=${completion} tokens ${Date.now() - t0} ms`);
  };

  const maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBody) || maxBody < 1) throw new Error(`serve: maxBodyBytes must be a positive integer, got ${maxBody}`);
  const server = http.createServer((req, res) => {
    if (o.cors !== undefined) res.setHeader('access-control-allow-origin', o.cors);
    // every request but a browser's CORS preflight (which never carries credentials) must bring the key
    if (o.apiKey !== undefined && !(o.cors !== undefined && req.method === 'OPTIONS')) {
      const auth = req.headers.authorization;
      const m = typeof auth === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
      if (!m || !sameSecret(m[1], o.apiKey)) {
        stats.errors++;
        o.log?.(`error: ${m ? 'a wrong' : 'no'} API key (401)`);
        const e = m
          ? new ApiError(401, 'Incorrect API key provided.', null, 'invalid_api_key')
          : new ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end(JSON.stringify(e.body()));
        req.resume();
        return;
      }
    }
    const tooLarge = () => {
      stats.errors++;
      o.log?.(`error: request body over ${maxBody} bytes (413)`);
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' })
        .end(JSON.stringify(new ApiError(413, `the request body is larger than this server's limit of ${maxBody} bytes (--max-body-bytes)`).body()));
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBody) {
      tooLarge();
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > maxBody) {
        refused = true;
        chunks.length = 0;
        tooLarge();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (refused) return;
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((e) => {
        stats.errors++;
        o.log?.(`error: ${(e as Error).message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify(new ApiError(500, (e as Error).message).body()));
        else res.end();
      });
    });
  });
  const { port, origin } = await listen(server, o.host ?? '127.0.0.1', o.port ?? 0);
  return {
    url: `${origin}/v1`,
    port,
    stats,
    batch: batcher.stats,
    close: () =>
      new Promise<void>((resolve) => {
        batcher.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Starts `server` on host:port (0: any free port); resolves with the port and `http://host:port` once listening. */
export async function listen(server: http.Server, host: string, port: number): Promise<{ port: number; origin: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return { port: bound, origin: `http://${host.includes(':') ? `[${host}]` : host}:${bound}` };
}

/**
 * The log-probability of each token of `ids` after the ones before it, and the `k` likeliest tokens at each position
 * (positions 1 … T−1; the first token has no context). One forward pass for a module decoder; token by token through
 * a KV cache for any other.
 */
export function promptLogprobs(model: BatchStepDecoder, ids: number[], k: number): { logprob: number[]; top: { id: number; logprob: number }[][] } {
  const T = ids.length;
  if (T < 2) return { logprob: [], top: [] };
  if (model instanceof Module) {
    const m = model as Module & BatchStepDecoder;
    const was = m.training;
    m.eval();
    try {
      return tidy(() => noGrad(() => {
        const dev = m.parameters()[0]?.device ?? 'cpu';
        const x = tensor([ids], { dtype: 'int64' });
        const logits = (m.call(dev === 'cpu' ? x : x.to({ device: dev })) as ReturnType<typeof tensor>).select(0, 0).narrow(0, 0, T - 1).to({ dtype: 'float32', device: 'cpu' });
        const lp = logits.logSoftmax(-1);
        const next = tensor(ids.slice(1), { dtype: 'int64' }).unsqueeze(1);
        const own = lp.gather(1, next).reshape([T - 1]).toArray();
        let top: { id: number; logprob: number }[][] = Array.from({ length: T - 1 }, () => []);
        if (k > 0) {
          const [v, i] = lp.topk(Math.min(k, m.vocabSize), -1);
          const vs = v.toArray();
          const is = i.toArray();
          const kk = v.shape[1];
          top = Array.from({ length: T - 1 }, (_, j) => Array.from({ length: kk }, (_, q) => ({ id: is[j * kk + q], logprob: vs[j * kk + q] })));
        }
        return { logprob: own, top };
      }));
    } finally {
      m.train(was);
    }
  }
  const cache = model.newCache();
  const logprob: number[] = [];
  const top: { id: number; logprob: number }[][] = [];
  for (let j = 0; j + 1 < T; j++) {
    const lp = model.nextLogprobs([ids[j]], cache);
    logprob.push(lp[ids[j + 1]]);
    top.push([...lp.keys()].sort((a, b) => lp[b] - lp[a]).slice(0, k).map((id) => ({ id, logprob: lp[id] })));
  }
  return { logprob, top };
}
