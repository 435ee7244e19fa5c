// A small OpenAI-compatible Chat Completions server for tests and benchmarks (loopback only). It answers
// deterministically from the last user message and the request's seed (choice j of a request with `n` as if asked
// with seed + j, as `serve` does), and can inject faults per request:
// an HTTP status (with Retry-After), a stall, a connection dropped mid-answer, or a malformed body.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRequest {
  /** The last user message. */
  prompt: string;
  seed?: number;
  /** 1 for the first request with this (prompt, seed), 2 for the second, … */
  attempt: number;
  stream: boolean;
  body: any;
  headers: http.IncomingHttpHeaders;
  /** ms since the server started. */
  at: number;
  /** Which of the request's `n` choices an answer is for (0 for the request itself). */
  choice: number;
}

export interface FakeAnswer {
  content: string;
  reasoning_content?: string;
  finish_reason?: string;
}

export type Fault =
  | null
  | undefined
  | { status: number; retryAfter?: string; retryAfterMs?: number; body?: string }
  | 'stall'
  | 'drop'
  | 'malformed';

export interface FakeServerOptions {
  /** Delay before answering each request. */
  latencyMs?: number;
  /** Delay before answering one request (instead of latencyMs). */
  delayMs?: (r: FakeRequest) => number;
  answer?: (r: FakeRequest) => FakeAnswer;
  fault?: (r: FakeRequest) => Fault;
  /** Answer only choice 0 whatever `n` asks, as servers that do not support `n` do. */
  ignoreN?: boolean;
}

export interface FakeServer {
  /** Base URL including /v1. */
  url: string;
  requests: FakeRequest[];
  /** Date.now() when the server started: what each request's `at` counts from. */
  startedAt: number;
  close(): Promise<void>;
}

export const defaultAnswer = (r: FakeRequest): FakeAnswer => ({ content: `Echo: ${r.prompt} #${(r.seed ?? 0) + r.choice}` });

/** The tokens the server reports for a text: words with their trailing spaces. */
export const fakeTokens = (s: string): string[] => s.match(/\S+\s*|\s+/g) ?? [];

function logprobsFor(tokens: string[], k: number) {
  return tokens.map((token, i) => ({
    token,
    logprob: -0.25 * (i % 4),
    bytes: [...Buffer.from(token)],
    top_logprobs: Array.from({ length: k }, (_, j) => ({ token: j === 0 ? token : `alt${j}`, logprob: j === 0 ? -0.25 * (i % 4) : -1 - j, bytes: null })),
  }));
}

export async function startFakeServer(o: FakeServerOptions = {}): Promise<FakeServer> {
  const requests: FakeRequest[] = [];
  const attempts = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>(); // delayed answers, dropped at close
  const t0 = Date.now();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
        return;
      }
      let body: any;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end('{"error":{"message":"bad json"}}');
        return;
      }
      const users = (body.messages ?? []).filter((m: any) => m.role === 'user');
      const prompt: string = users.length ? users[users.length - 1].content : '';
      const key = `${prompt}\u0000${body.seed}`;
      const attempt = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, attempt);
      const r: FakeRequest = { prompt, seed: body.seed, attempt, stream: !!body.stream, body, headers: req.headers, at: Date.now() - t0, choice: 0 };
      requests.push(r);
      const respond = () => answer(r, res);
      const delay = o.delayMs ? o.delayMs(r) : o.latencyMs;
      if (delay) {
        const t = setTimeout(() => {
          timers.delete(t);
          respond();
        }, delay);
        timers.add(t);
      } else respond();
    });
  });
  const answer = (r: FakeRequest, res: http.ServerResponse) => {
    const fault = o.fault?.(r);
    if (fault === 'stall') return; // never answers; the client's timeout fires
    if (fault && typeof fault === 'object') {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
      if (fault.retryAfterMs !== undefined) headers['retry-after-ms'] = String(fault.retryAfterMs);
      res.writeHead(fault.status, headers).end(fault.body ?? JSON.stringify({ error: { message: `injected ${fault.status}` } }));
      return;
    }
    const n = o.ignoreN ? 1 : Number.isInteger(r.body.n) && r.body.n > 0 ? r.body.n : 1;
    const answers = Array.from({ length: n }, (_, j) => (o.answer ?? defaultAnswer)({ ...r, choice: j }));
    const toks = answers.map((a) => fakeTokens(a.content));
    const rToks = answers.map((a) => (a.reasoning_content ? fakeTokens(a.reasoning_content) : []));
    const completionTokens = toks.reduce((x, t, j) => x + t.length + rToks[j].length, 0);
    const usage = { prompt_tokens: fakeTokens(r.prompt).length, completion_tokens: completionTokens, total_tokens: fakeTokens(r.prompt).length + completionTokens };
    const k = r.body.logprobs ? Number(r.body.top_logprobs ?? 0) : -1;
    const model = `${r.body.model}-served`;
    if (!r.stream) {
      if (fault === 'drop') return res.socket?.destroy();
      if (fault === 'malformed') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [{"message": {"content": "cut');
      const choices = answers.map((a, j) => {
        const message: any = { role: 'assistant', content: a.content };
        if (a.reasoning_content) message.reasoning_content = a.reasoning_content;
        const choice: any = { index: j, message, finish_reason: a.finish_reason ?? 'stop' };
        if (k >= 0) choice.logprobs = { content: logprobsFor(toks[j], k) };
        return choice;
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'cmpl-1', object: 'chat.completion', model, choices, usage }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const chunk = (j: number, delta: any, extra: any = {}) => send({ id: 'cmpl-1', object: 'chat.completion.chunk', model, choices: [{ index: j, delta, finish_reason: null, ...extra }] });
    for (let j = 0; j < n; j++) chunk(j, { role: 'assistant', content: '' });
    // the choices' chunks interleave, one token of each in turn, as a server decoding them side by side sends them
    for (let i = 0; i < Math.max(...rToks.map((t) => t.length)); i++) for (let j = 0; j < n; j++) if (i < rToks[j].length) chunk(j, { reasoning_content: rToks[j][i] });
    const lps = toks.map((t) => (k >= 0 ? logprobsFor(t, k) : null));
    const longest = Math.max(...toks.map((t) => t.length));
    const cut = fault === 'drop' ? Math.floor(longest / 2) : longest;
    for (let i = 0; i < cut; i++)
      for (let j = 0; j < n; j++) if (i < toks[j].length) chunk(j, { content: toks[j][i] }, lps[j] ? { logprobs: { content: [lps[j]![i]] } } : {});
    if (fault === 'drop') {
      // flush what was written, then cut the connection without ending the response
      setTimeout(() => res.socket?.destroy(), 5);
      return;
    }
    if (fault === 'malformed') {
      res.write('data: {"choices": [{"delta": {"content": "x"\n\n');
      res.end();
      return;
    }
    for (let j = 0; j < n; j++) send({ id: 'cmpl-1', object: 'chat.completion.chunk', model, choices: [{ index: j, delta: {}, finish_reason: answers[j].finish_reason ?? 'stop' }] });
    if (r.body.stream_options?.include_usage) send({ id: 'cmpl-1', object: 'chat.completion.chunk', model, choices: [], usage });
    res.end('data: [DONE]\n\n');
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    startedAt: t0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
