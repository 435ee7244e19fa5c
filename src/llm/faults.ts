// A fault-injecting reverse proxy for OpenAI-compatible endpoints: it sits in front of a base URL (`tsdistill
// serve`, vLLM, a fake server) and, on POST …/chat/completions only, answers some requests with a fault instead of
// (or while) forwarding them:
//
//   429    Too Many Requests with a Retry-After header (seconds, fractional values allowed for tests)
//   500    Internal Server Error
//   stall  reads the request, then sends nothing for stallMs (past a client's timeout), then forwards it
//   drop   forwards it, then cuts the connection after the first dropAfterBytes bytes of the answer's body (mid
//          stream for server-sent events; the end of the answer is never sent)
//   reset  closes the connection right after the request, before any response
//
// Which request gets which fault comes from a schedule (the first requests, in arrival order) and then from
// per-kind probabilities drawn from a seeded generator, so a seed gives the same sequence of faults on every run.
// Every other route passes through untouched. Listens on 127.0.0.1 unless told otherwise.
import * as http from 'node:http';
import * as https from 'node:https';
import { Rng } from '../data/rng';
import { listen } from './serve';

export const FAULT_KINDS = ['429', '500', 'stall', 'drop', 'reset'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultSpec {
  /** Probability per request of each kind; they must sum to at most 1 (the rest pass through). */
  rates?: Partial<Record<FaultKind, number>>;
  /** Faults for the first requests, in arrival order (null: passes); the rates apply after it. */
  schedule?: (FaultKind | null)[];
  /** Retry-After of a 429, in seconds (default 1). */
  retryAfterS?: number;
  /** How long a stalled request gets no answer (default 30000 ms). */
  stallMs?: number;
  /** A dropped answer is cut after this many bytes of its body (default 256, at least 1). */
  dropAfterBytes?: number;
}

export type FaultCounts = Record<FaultKind | 'none', number>;

/** One request to the chat completions route, as the proxy saw it. */
export interface FaultEvent {
  /** 0 for the first request to the route, 1 for the next, … */
  index: number;
  fault: FaultKind | null;
  /** The request body (JSON parsed; undefined when it is not JSON). */
  body: unknown;
}

export interface FaultProxyOptions {
  /** The base URL to put faults in front of, including /v1 (http: or https:). */
  target: string;
  faults: FaultSpec;
  /** Seed of the generator that draws faults by their rates (default 0). */
  seed?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Called for each request to the chat completions route once its fault is chosen. */
  onRequest?: (e: FaultEvent) => void;
}

export interface FaultProxy {
  /** Base URL of the proxy: the target's path on the proxy's host and port. */
  url: string;
  port: number;
  target: string;
  /** Requests to the chat completions route by the fault they got ('none': passed through). */
  counts: FaultCounts;
  close(): Promise<void>;
}

const DEFAULTS = { retryAfterS: 1, stallMs: 30_000, dropAfterBytes: 256 };
const isKind = (s: string): s is FaultKind => (FAULT_KINDS as readonly string[]).includes(s);

/** Throws naming the first bad field of a spec; returns it with defaults filled in. */
export function checkFaultSpec(spec: FaultSpec): Required<FaultSpec> {
  const rates = spec.rates ?? {};
  let sum = 0;
  for (const [k, p] of Object.entries(rates)) {
    if (!isKind(k)) throw new Error(`fault spec: unknown fault '${k}' (faults: ${FAULT_KINDS.join(', ')})`);
    if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > 1) throw new Error(`fault spec: the probability of '${k}' must be in [0, 1], got ${String(p)}`);
    sum += p;
  }
  if (sum > 1 + 1e-9) throw new Error(`fault spec: the probabilities sum to ${+sum.toFixed(6)}, more than 1`);
  const schedule = spec.schedule ?? [];
  schedule.forEach((k, i) => {
    if (k !== null && !isKind(k)) throw new Error(`fault spec: schedule[${i}] must be one of ${FAULT_KINDS.join(', ')} or null, got ${JSON.stringify(k)}`);
  });
  const out = { rates: { ...rates }, schedule: [...schedule], ...DEFAULTS };
  for (const [key, min, int] of [['retryAfterS', 0, false], ['stallMs', 0, false], ['dropAfterBytes', 1, true]] as const) {
    const v = spec[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (int && !Number.isInteger(v)))
      throw new Error(`fault spec: ${key} must be ${int ? 'an integer' : 'a number'} >= ${min}, got ${String(v)}`);
    out[key] = v;
  }
  return out;
}

const OPTION_KEYS: Record<string, 'retryAfterS' | 'stallMs' | 'dropAfterBytes'> = { 'retry-after': 'retryAfterS', 'stall-ms': 'stallMs', 'drop-after': 'dropAfterBytes' };

/**
 * Parses a fault spec such as `429:0.1,500:0.05,stall:0.05,drop:0.1,retry-after=0.2`. Items, separated by commas:
 * `KIND:P` (probability P per request), `KIND*N` (the next N requests of the schedule get KIND; `none*N` lets N
 * pass), and the options `retry-after=SECONDS`, `stall-ms=MS`, `drop-after=BYTES`. KIND is 429, 500, stall, drop
 * or reset. Errors name the item at fault.
 */
export function parseFaultSpec(text: string): FaultSpec {
  const spec: FaultSpec = {};
  const rates: Partial<Record<FaultKind, number>> = {};
  const schedule: (FaultKind | null)[] = [];
  const items = text.split(',').map((s) => s.trim());
  if (items.every((s) => s === '')) throw new Error(`fault spec: empty; expected items such as 429:0.1,500:0.05,stall:0.05,drop:0.1`);
  const num = (s: string) => (/^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(s) ? Number(s) : NaN);
  for (const item of items) {
    const bad = (why: string) => new Error(`fault spec: '${item}': ${why}`);
    if (item === '') throw bad('an empty item (two commas in a row?)');
    let m: RegExpMatchArray | null;
    if ((m = /^([^:*=]+)=(.*)$/.exec(item))) {
      const key = OPTION_KEYS[m[1].trim()];
      if (!key) throw bad(`unknown option '${m[1].trim()}' (options: ${Object.keys(OPTION_KEYS).join(', ')})`);
      const v = num(m[2]);
      if (!Number.isFinite(v)) throw bad('expected a number after =');
      if (key === 'dropAfterBytes' && (!Number.isInteger(v) || v < 1)) throw bad('drop-after must be an integer >= 1');
      spec[key] = v;
    } else if ((m = /^([^:*=]+)\*(.*)$/.exec(item))) {
      const kind = m[1].trim();
      if (kind !== 'none' && !isKind(kind)) throw bad(`unknown fault '${kind}' (faults: ${FAULT_KINDS.join(', ')}; none*N lets N requests pass)`);
      if (!/^\s*\d+\s*$/.test(m[2]) || Number(m[2]) < 1) throw bad(`expected a count >= 1 after *, as in ${kind}*3`);
      for (let i = 0; i < Number(m[2]); i++) schedule.push(kind === 'none' ? null : kind);
    } else if ((m = /^([^:*=]+):(.*)$/.exec(item))) {
      const kind = m[1].trim();
      if (!isKind(kind)) throw bad(`unknown fault '${kind}' (faults: ${FAULT_KINDS.join(', ')})`);
      const p = num(m[2]);
      if (!(p >= 0 && p <= 1)) throw bad('expected a probability in [0, 1] after :');
      if (rates[kind] !== undefined) throw bad(`'${kind}' has a probability already`);
      rates[kind] = p;
    } else throw bad(`expected KIND:PROBABILITY, KIND*COUNT or OPTION=VALUE (faults: ${FAULT_KINDS.join(', ')}; options: ${Object.keys(OPTION_KEYS).join(', ')})`);
  }
  if (Object.keys(rates).length) spec.rates = rates;
  if (schedule.length) spec.schedule = schedule;
  checkFaultSpec(spec);
  return spec;
}

/** The spec in words, for logs. */
export function describeFaultSpec(spec: FaultSpec): string {
  const s = checkFaultSpec(spec);
  const parts: string[] = [];
  const rates = FAULT_KINDS.filter((k) => s.rates[k]).map((k) => `${k} ${+(100 * s.rates[k]!).toFixed(4)} %`);
  if (s.schedule.length) parts.push(`the first ${s.schedule.length} request${s.schedule.length === 1 ? '' : 's'}: ${s.schedule.map((k) => k ?? 'none').join(', ')}`);
  if (rates.length) parts.push(`${s.schedule.length ? 'then ' : ''}per request ${rates.join(', ')}`);
  if (!parts.length) parts.push('no faults');
  const used = new Set<FaultKind>([...(s.schedule.filter((k) => k !== null) as FaultKind[]), ...FAULT_KINDS.filter((k) => s.rates[k])]);
  const details = [
    ...(used.has('429') ? [`Retry-After ${s.retryAfterS} s`] : []),
    ...(used.has('stall') ? [`stalls ${s.stallMs} ms`] : []),
    ...(used.has('drop') ? [`drops after ${s.dropAfterBytes} bytes`] : []),
  ];
  return parts.join('; ') + (details.length ? ` (${details.join(', ')})` : '');
}

/** The fault of each successive request: the schedule first, then one seeded draw per request against the rates. */
export function faultPlan(spec: FaultSpec, seed = 0): () => FaultKind | null {
  const s = checkFaultSpec(spec);
  const rng = new Rng(seed);
  let i = 0;
  return () => {
    if (i < s.schedule.length) return s.schedule[i++];
    i++;
    let u = rng.random();
    for (const k of FAULT_KINDS) {
      const p = s.rates[k] ?? 0;
      if (u < p) return k;
      u -= p;
    }
    return null;
  };
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
function endToEnd(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...h };
  for (const k of HOP_BY_HOP) delete out[k];
  return out;
}

export async function startFaultProxy(o: FaultProxyOptions): Promise<FaultProxy> {
  const spec = checkFaultSpec(o.faults);
  let target: URL;
  try {
    target = new URL(o.target);
  } catch {
    throw new Error(`fault proxy: target must be a base URL such as http://127.0.0.1:8000/v1, got '${o.target}'`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`fault proxy: target must be an http: or https: URL, got '${o.target}'`);
  const basePath = target.pathname.replace(/\/+$/, '');
  const completionsPath = /\/chat\/completions$/.test(basePath) ? basePath : `${basePath}/chat/completions`;
  const client = target.protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true });
  const next = faultPlan(spec, o.seed ?? 0);
  const counts = Object.fromEntries([...FAULT_KINDS, 'none'].map((k) => [k, 0])) as FaultCounts;
  const timers = new Set<NodeJS.Timeout>();
  let index = 0;

  const jsonError = (res: http.ServerResponse, status: number, message: string, type: string, headers: Record<string, string> = {}) => {
    if (res.headersSent) return void res.destroy();
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ error: { message, type, code: null, param: null } }));
  };

  /** Sends the request on to the target; with `cutAfter`, the client gets that many body bytes, then a closed connection. */
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, cutAfter: number | null) => {
    let cut = false;
    const headers = endToEnd(req.headers);
    headers.host = target.host;
    headers['content-length'] = String(body.length);
    const up = client.request(
      { protocol: target.protocol, hostname: target.hostname.replace(/^\[|\]$/g, ''), port: target.port || undefined, method: req.method, path: req.url, headers, agent },
      (ur) => {
        const h = endToEnd(ur.headers);
        if (cutAfter !== null) delete h['content-length']; // chunked, so the client cannot take a cut answer for a whole one
        res.writeHead(ur.statusCode ?? 502, ur.statusMessage, h);
        if (cutAfter === null) {
          ur.pipe(res);
          ur.on('error', () => res.destroy());
          return;
        }
        let sent = 0;
        const hangUp = () => {
          if (cut) return;
          cut = true;
          up.destroy();
          res.socket?.destroy();
          res.destroy();
        };
        ur.on('data', (c: Buffer) => {
          if (cut || sent >= cutAfter) return;
          const part = c.length > cutAfter - sent ? c.subarray(0, cutAfter - sent) : c;
          sent += part.length;
          if (sent >= cutAfter) res.write(part, hangUp);
          else res.write(part);
        });
        // an answer shorter than cutAfter is cut before its end all the same
        ur.on('end', () => {
          if (sent < cutAfter) res.write('', hangUp);
        });
        ur.on('error', hangUp);
      },
    );
    up.on('error', (e) => {
      if (cut || res.destroyed) return; // cut on purpose, or the client went away
      jsonError(res, 502, `fault proxy: the target ${o.target} did not answer: ${e.message}`, 'server_error');
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy(); // the client went away: stop the target's work too
    });
    up.end(body);
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => {
    const route = (req.url ?? '').split('?')[0].replace(/\/+$/, '');
    if (req.method !== 'POST' || route !== completionsPath) return forward(req, res, body, null);
    const fault = next();
    counts[fault ?? 'none']++;
    if (o.onRequest) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      o.onRequest({ index, fault, body: parsed });
    }
    index++;
    switch (fault) {
      case '429':
        return jsonError(res, 429, `injected fault: rate limited; retry after ${spec.retryAfterS} s`, 'rate_limit_error', { 'retry-after': String(spec.retryAfterS) });
      case '500':
        return jsonError(res, 500, 'injected fault: internal server error', 'server_error');
      case 'reset': {
        const sock = req.socket as import('node:net').Socket & { resetAndDestroy?: () => void };
        return sock.resetAndDestroy ? sock.resetAndDestroy() : sock.destroy();
      }
      case 'stall': {
        const t = setTimeout(() => {
          timers.delete(t);
          if (!res.destroyed && !res.socket?.destroyed) forward(req, res, body, null);
        }, spec.stallMs);
        timers.add(t);
        res.on('close', () => {
          clearTimeout(t);
          timers.delete(t);
        });
        return;
      }
      case 'drop':
        return forward(req, res, body, spec.dropAfterBytes);
      default:
        return forward(req, res, body, null);
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
    req.on('error', () => res.destroy());
  });
  const { port, origin } = await listen(server, o.host ?? '127.0.0.1', o.port ?? 0);
  return {
    url: `${origin}${basePath}`,
    port,
    target: o.target,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
