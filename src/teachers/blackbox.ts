// Black-box teachers: only outputs, no internals. Either an async function of a batch, or an HTTP endpoint speaking
// JSON. A batch from the trainer is split into requests of at most `batchSize` inputs; failed calls are retried with
// exponential backoff. Probabilities are turned into log-probabilities, which work as logits everywhere: softmax(log p
// / T) equals softmax(z / T) for the logits z behind p, since log p and z differ by a per-row constant.
//
// HTTP protocol: POST `url` with `{"inputs": number[][], "shape": number[]}` (each input flattened row-major; `shape`
// is one input's shape), answered by `{"outputs": number[][]}` (one row per input, in order; a bare array is accepted).
// Network errors, timeouts, 429 and 5xx answers are retried; other answers fail at once with the status and body.
//
// The trainer's teacher cache keys rows by `id()`, so with a deterministic data pipeline each input is sent once.
import * as crypto from 'node:crypto';
import { Tensor, dispose, ops, tensor, tidy } from '../torch';
import type { Teacher } from './teacher';
import { shapeText, unknownName } from './teacher';

export type BlackBoxReturns = 'logits' | 'probs';

export interface BlackBoxOptions {
  /** What the function or endpoint returns per input: logits, or probabilities (converted with log). */
  returns: BlackBoxReturns;
  /** Inputs per call; the trainer's batches are split into calls of at most this many (default 64). */
  batchSize?: number;
  /** Retries after a failed call (default 3); the waits are backoffMs, 2·backoffMs, 4·backoffMs, ... */
  retries?: number;
  backoffMs?: number;
  /** Identity for the teacher cache (default: a hash of the function's source, or the URL). */
  id?: string;
}

/** What a black-box function may return for n inputs: a [n, C] tensor (freed by the teacher), n rows of numbers, or n·C numbers. */
export type BlackBoxOutput = Tensor | number[][] | Float32Array | Float64Array;

export interface BlackBoxStats {
  /** Calls that returned (after retries). */
  calls: number;
  /** Inputs sent in those calls. */
  inputs: number;
  /** Calls that failed and were retried. */
  retries: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An error that retrying will not fix (a 4xx answer, a malformed reply). */
class Permanent extends Error {}

export class BlackBoxTeacher implements Teacher {
  readonly kind = 'blackbox';
  readonly logits = 'output';
  readonly stats: BlackBoxStats = { calls: 0, inputs: 0, retries: 0 };
  private readonly batchSize: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  readonly returns: BlackBoxReturns;

  constructor(
    private readonly call: (x: Tensor) => Promise<BlackBoxOutput>,
    private readonly identity: string,
    private readonly where: string,
    o: BlackBoxOptions,
  ) {
    if (o.returns !== 'logits' && o.returns !== 'probs') throw new Error(`${where}: returns must be 'logits' or 'probs', got '${String(o.returns)}'`);
    this.returns = o.returns;
    this.batchSize = o.batchSize ?? 64;
    this.retries = o.retries ?? 3;
    this.backoffMs = o.backoffMs ?? 200;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new Error(`${where}: batchSize must be a positive integer, got ${this.batchSize}`);
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new Error(`${where}: retries must be a non-negative integer, got ${this.retries}`);
    if (!(this.backoffMs >= 0)) throw new Error(`${where}: backoffMs must be non-negative, got ${this.backoffMs}`);
  }

  id(): string {
    return `blackbox:${this.returns}:${this.identity}`;
  }
  outputNames(): string[] {
    return ['output'];
  }
  valueNames(): string[] {
    return ['output'];
  }

  async run(x: Tensor, names: string[]): Promise<Record<string, Tensor>> {
    for (const n of names) if (n !== 'output') throw unknownName(`${this.where} (black box: outputs only)`, n, ['output']);
    const n = x.shape[0];
    const parts: Tensor[] = [];
    try {
      for (let i = 0; i < n; i += this.batchSize) {
        const chunk = x.narrow(0, i, Math.min(this.batchSize, n - i));
        try {
          parts.push(await this.callWithRetries(chunk));
        } finally {
          chunk.dispose();
        }
      }
      const cols = parts[0].shape[1];
      parts.forEach((p) => {
        if (p.shape[1] !== cols) throw new Error(`${this.where}: calls returned rows of different lengths (${cols} and ${p.shape[1]})`);
      });
      const out = parts.length === 1 ? parts.pop()! : ops.cat(parts, 0);
      const moved = out.device === x.device ? out : out.to({ device: x.device });
      if (moved !== out) out.dispose();
      return { output: moved };
    } finally {
      dispose(parts);
    }
  }

  private async callWithRetries(x: Tensor): Promise<Tensor> {
    for (let attempt = 0; ; attempt++) {
      try {
        const raw = await this.call(x);
        const t = this.toRows(raw, x.shape[0]);
        this.stats.calls++;
        this.stats.inputs += x.shape[0];
        return t;
      } catch (e) {
        if (e instanceof Permanent || attempt >= this.retries) {
          const m = (e as Error).message;
          throw new Error(attempt > 0 ? `${m} (after ${attempt + 1} attempts)` : m);
        }
        this.stats.retries++;
        await sleep(this.backoffMs * 2 ** attempt);
      }
    }
  }

  /** Checks a reply for n inputs and returns [n, C] float32 logits (log-probabilities for 'probs'). */
  private toRows(raw: BlackBoxOutput, n: number): Tensor {
    let t: Tensor;
    if (raw instanceof Tensor) {
      // the returned tensor is the teacher's to free
      try {
        if (raw.ndim !== 2 || raw.shape[0] !== n) throw new Permanent(`${this.where}: returned a tensor of shape ${shapeText(raw.shape)} for ${n} inputs; expected [${n}, classes]`);
        t = tidy(() => raw.detach().float().cpu().contiguous().clone());
      } finally {
        raw.dispose();
      }
    } else if (Array.isArray(raw)) {
      if (raw.length !== n) throw new Permanent(`${this.where}: returned ${raw.length} rows for ${n} inputs`);
      const c = Array.isArray(raw[0]) ? raw[0].length : -1;
      if (c < 1 || raw.some((r) => !Array.isArray(r) || r.length !== c))
        throw new Permanent(`${this.where}: expected ${n} rows of equal, non-zero length (number[][]), got rows of lengths ${raw.slice(0, 5).map((r) => (Array.isArray(r) ? r.length : typeof r)).join(', ')}`);
      const flat = new Float32Array(n * c);
      raw.forEach((r, i) => flat.set(r as number[], i * c));
      t = tensor(flat, { shape: [n, c] });
    } else if (raw instanceof Float32Array || raw instanceof Float64Array) {
      if (raw.length === 0 || raw.length % n) throw new Permanent(`${this.where}: returned ${raw.length} numbers for ${n} inputs (not a multiple)`);
      t = tensor(Float32Array.from(raw), { shape: [n, raw.length / n] });
    } else throw new Permanent(`${this.where}: expected a Tensor, number[][] or Float32Array, got ${raw === null ? 'null' : typeof raw}`);
    try {
      return tidy(() => {
        if (!ops.all(ops.isfinite(t)).item()) throw new Permanent(`${this.where}: the reply holds non-finite values`);
        if (this.returns === 'logits') return ops.alias(t);
        const lo = t.min().item(), hi = t.max().item();
        const sums = t.sum([1]);
        const off = sums.sub(1).abs().max().item();
        if (lo < 0 || hi > 1 || off > 1e-3)
          throw new Permanent(`${this.where}: returns is 'probs' but the reply is not probabilities (values in [${lo}, ${hi}], row sums off by up to ${off}); use returns: logits`);
        return t.clamp(1e-12).log();
      });
    } finally {
      t.dispose();
    }
  }

  dispose(): void {}
}

/** A teacher from an async function of a batch ([n, ...] tensor) returning logits or probabilities per input. */
export function blackBoxTeacher(fn: (x: Tensor) => Promise<BlackBoxOutput> | BlackBoxOutput, opts: BlackBoxOptions): BlackBoxTeacher {
  if (typeof fn !== 'function') throw new Error('blackBoxTeacher: expected a function (x: Tensor) => logits | probabilities');
  const id = opts.id ?? crypto.createHash('sha256').update(fn.toString()).digest('hex').slice(0, 32);
  return new BlackBoxTeacher(async (x) => fn(x), `fn:${id}`, `black-box teacher ${opts.id ?? fn.name ?? 'fn'}`, opts);
}

export interface HttpTeacherOptions extends BlackBoxOptions {
  url: string;
  /** Per request (default 30 s); a timeout counts as a failure and is retried. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/** A teacher behind an HTTP endpoint (JSON in, JSON out; see the protocol above). */
export function httpTeacher(opts: HttpTeacherOptions): BlackBoxTeacher {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new Error(`http teacher: '${opts.url}' is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`http teacher: ${opts.url}: expected an http or https URL`);
  const where = `http teacher ${opts.url}`;
  const timeoutMs = opts.timeoutMs ?? 30000;
  const call = async (x: Tensor): Promise<BlackBoxOutput> => {
    const n = x.shape[0];
    const flat = tidy(() => x.float().cpu().reshape([n, -1]));
    let inputs: number[][];
    try {
      const d = flat.data() as Float32Array;
      const c = flat.shape[1];
      inputs = Array.from({ length: n }, (_, i) => Array.from(d.subarray(i * c, (i + 1) * c)));
    } finally {
      flat.dispose();
    }
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...opts.headers },
        body: JSON.stringify({ inputs, shape: x.shape.slice(1) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      throw new Error(`${where}: request failed: ${(e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause?.message ?? (e as Error).message)}`);
    }
    const text = await res.text();
    if (!res.ok) {
      const msg = `${where}: HTTP ${res.status} ${res.statusText}: ${text.slice(0, 300)}`;
      if (res.status === 429 || res.status >= 500) throw new Error(msg);
      throw new Permanent(msg);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Permanent(`${where}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
    const rows = Array.isArray(body) ? body : (body as { outputs?: unknown })?.outputs;
    if (!Array.isArray(rows)) throw new Permanent(`${where}: expected {"outputs": number[][]} or an array, got ${text.slice(0, 200)}`);
    return rows as number[][];
  };
  return new BlackBoxTeacher(call, `http:${url.href}`, where, opts);
}
