// Black-box teachers: only outputs, no internals. Either an async function of a batch, or an HTTP endpoint speaking
// JSON. A batch from the trainer is split into requests of at most `batchSize` inputs; failed calls are retried with
// exponential backoff. Probabilities are turned into log-probabilities, which work as logits everywhere: softmax(log p
// / T) equals softmax(z / T) for the logits z behind p, since log p and z differ by a per-row constant.
//
// Inputs. By default a teacher receives the student's input tensor. With `input: 'raw'` it receives the raw samples of
// the batch's rows instead, taken from the data set by row index: a TextDataset's texts (strings), an ImageDataset's
// images ({ file, shape, pixels }: the file when the set was read from an image folder or list, and the uint8 pixels
// before any transform).
//
// Outputs, per input: a row of logits or probabilities (`returns`), or — with a declared `labels` list — a label →
// probability map: `{ positive: 0.9, negative: 0.1 }` or `[{ label: 'positive', score: 0.9 }, ...]`, full, partial or
// top-k. A map row becomes log-probabilities over `labels` (in that order) as follows, with s = the sum of the given
// probabilities and m = the number of labels the row leaves out:
//   given labels    q = p / max(s, 1)
//   missing labels  q = (1 − min(s, 1)) / m each (the missing mass spread evenly); with none missing, q = p / s
//   then every q below `floor` (default 1e-12) is raised to it, the row is divided by its sum, and log q is returned.
// Probabilities may exceed 1 by `tolerance` (default 1e-3; hierarchical softmaxes round above 1): a value or a row sum
// above 1 + tolerance is an error naming the sample and the sum, as is a label outside `labels`. Rows of probabilities
// must sum to 1 within the tolerance (a row far below 1 is not a distribution: logits, or a top-k to send as a map).
//
// HTTP protocol: POST `url` with `{"inputs": number[][], "shape": number[]}` (each input flattened row-major; `shape`
// is one input's shape), or with `input: 'raw'` `{"inputs": [...]}` holding the raw samples as JSON (texts as strings,
// images as {file, shape, pixels}); answered by `{"outputs": [...]}` (one row or map per input, in order; a bare array
// is accepted). Network errors, timeouts, 429 and 5xx answers are retried; other answers fail at once.
//
// Identity. The trainer's teacher cache keys rows by `id()`, so with a deterministic data pipeline each input is sent
// once. A function's behaviour depends on the state it closes over, which its source does not show, so
// `blackBoxTeacher(fn)` without an `id` has an identity of its own (its answers are cached for this process only:
// later epochs, pseudoLabel then distill); with `id` the identity is the function's source and the id, and answers are
// reused across runs — change the id whenever the state behind the function changes. An HTTP teacher's identity is
// its URL and `id` (give one and change it when the model behind the endpoint changes).
import * as crypto from 'node:crypto';
import { Tensor, dispose, ops, tensor, tidy } from '../torch';
import { closest } from '../nn';
import type { Teacher, TeacherInput } from './teacher';
import { shapeText, unknownName } from './teacher';

export type BlackBoxReturns = 'logits' | 'probs';

export interface BlackBoxOptions {
  /** What the function or endpoint returns per input: logits, or probabilities (converted with log). */
  returns: BlackBoxReturns;
  /** 'raw': the teacher receives the batch's raw samples (texts, images) instead of the student's tensor. */
  input?: TeacherInput;
  /** The label set (in output order) that label → probability maps refer to; rows then have this many columns. */
  labels?: string[];
  /** The least probability kept before the log (missing labels of a top-k map, zeros); default 1e-12. */
  floor?: number;
  /** How far probabilities and their row sums may exceed 1 (default 1e-3); rows are renormalised. */
  tolerance?: number;
  /** Inputs per call; the trainer's batches are split into calls of at most this many (default 64). */
  batchSize?: number;
  /** Retries after a failed call (default 3); the waits are backoffMs, 2·backoffMs, 4·backoffMs, ... */
  retries?: number;
  backoffMs?: number;
  /**
   * Identity for the teacher cache: change it whenever the teacher's answers can change. Functions: without it the
   * teacher's answers are cached for this process only. HTTP: added to the URL.
   */
  id?: string;
}

const OPTION_KEYS = ['returns', 'input', 'labels', 'floor', 'tolerance', 'batchSize', 'retries', 'backoffMs', 'id'];

/**
 * A label → probability map: `{ label: p }` (a label whose value is undefined counts as missing), or a list of
 * `{ label, score }` (as text-classification pipelines answer).
 */
export type LabelScores = { readonly [label: string]: number | undefined } | readonly { label: string; score: number }[];
/** One input's answer: a row of logits or probabilities, or (with `labels`) a label → probability map. */
export type BlackBoxRow = number[] | LabelScores;
/** What a black-box function may return for n inputs: a [n, C] tensor (freed by the teacher), n rows, or n·C numbers. */
export type BlackBoxOutput = Tensor | BlackBoxRow[] | Float32Array | Float64Array;

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

const shortHash = (s: string) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);

/** A short description of a raw sample for messages: a text's start, an image's file. */
function describeSample(s: unknown): string {
  if (typeof s === 'string') return ` ("${s.length > 40 ? `${s.slice(0, 40)}…` : s}")`;
  const file = (s as { file?: unknown } | null)?.file;
  return typeof file === 'string' ? ` (${file})` : '';
}

export class BlackBoxTeacher implements Teacher {
  readonly kind = 'blackbox';
  readonly logits = 'output';
  readonly stats: BlackBoxStats = { calls: 0, inputs: 0, retries: 0 };
  readonly input: TeacherInput;
  readonly takesRaw: boolean;
  readonly returns: BlackBoxReturns;
  readonly labels: readonly string[] | null;
  private readonly labelIndex: Map<string, number> | null;
  private readonly floor: number;
  private readonly tolerance: number;
  private readonly batchSize: number;
  private readonly retries: number;
  private readonly backoffMs: number;

  constructor(
    private readonly call: (x: Tensor, raw: readonly unknown[] | null) => Promise<BlackBoxOutput>,
    private readonly identity: string,
    private readonly where: string,
    o: BlackBoxOptions,
    extraKeys: string[] = [],
  ) {
    if (!o || typeof o !== 'object') throw new Error(`${where}: expected options { returns: 'logits' | 'probs', ... }`);
    const known = [...OPTION_KEYS, ...extraKeys];
    for (const k of Object.keys(o))
      if (!known.includes(k)) throw new Error(`${where}: unknown option '${k}'${closest(k, known, 1).length ? `; did you mean '${closest(k, known, 1)[0]}'?` : ''} (options: ${known.join(', ')})`);
    if (o.returns !== 'logits' && o.returns !== 'probs') throw new Error(`${where}: returns must be 'logits' or 'probs', got '${String(o.returns)}'`);
    this.returns = o.returns;
    this.input = o.input ?? 'tensor';
    if (this.input !== 'tensor' && this.input !== 'raw') throw new Error(`${where}: input must be 'tensor' or 'raw', got '${String(o.input)}'`);
    this.takesRaw = this.input === 'raw';
    this.batchSize = o.batchSize ?? 64;
    this.retries = o.retries ?? 3;
    this.backoffMs = o.backoffMs ?? 200;
    this.floor = o.floor ?? 1e-12;
    this.tolerance = o.tolerance ?? 1e-3;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new Error(`${where}: batchSize must be a positive integer, got ${this.batchSize}`);
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new Error(`${where}: retries must be a non-negative integer, got ${this.retries}`);
    if (!(this.backoffMs >= 0)) throw new Error(`${where}: backoffMs must be non-negative, got ${this.backoffMs}`);
    if (!(this.floor > 0 && this.floor < 1)) throw new Error(`${where}: floor must be in (0, 1), got ${this.floor}`);
    if (!(this.tolerance >= 0 && this.tolerance < 1)) throw new Error(`${where}: tolerance must be in [0, 1), got ${this.tolerance}`);
    if (o.labels !== undefined) {
      if (!Array.isArray(o.labels) || o.labels.length < 1 || o.labels.some((l) => typeof l !== 'string'))
        throw new Error(`${where}: labels must be a non-empty list of strings (the label set, in output order)`);
      const dup = o.labels.find((l, i) => o.labels!.indexOf(l) !== i);
      if (dup !== undefined) throw new Error(`${where}: label '${dup}' appears twice in labels`);
      this.labels = [...o.labels];
      this.labelIndex = new Map(o.labels.map((l, i) => [l, i]));
    } else {
      this.labels = null;
      this.labelIndex = null;
    }
  }

  /** Changes whenever the outputs can: the identity, what is returned, the input kind, the label set and the floor. */
  id(): string {
    const labels = this.labels ? shortHash(JSON.stringify(this.labels)) : '-';
    return `blackbox:${this.returns}:${this.input}:${labels}:${this.floor}:${this.identity}`;
  }
  outputNames(): string[] {
    return ['output'];
  }
  valueNames(): string[] {
    return ['output'];
  }

  async run(x: Tensor, names: string[], raw?: readonly unknown[]): Promise<Record<string, Tensor>> {
    for (const n of names) if (n !== 'output') throw unknownName(`${this.where} (black box: outputs only)`, n, ['output']);
    const n = x.shape[0];
    if (this.input === 'raw' && (!raw || raw.length !== n))
      throw new Error(`${this.where}: takes raw samples (input: 'raw'); expected ${n} of them with the batch, got ${raw ? raw.length : 'none'}`);
    const parts: Tensor[] = [];
    try {
      for (let i = 0; i < n; i += this.batchSize) {
        const size = Math.min(this.batchSize, n - i);
        const chunk = x.narrow(0, i, size);
        try {
          parts.push(await this.callWithRetries(chunk, this.input === 'raw' ? raw!.slice(i, i + size) : null, i));
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

  private async callWithRetries(x: Tensor, raw: readonly unknown[] | null, offset: number): Promise<Tensor> {
    for (let attempt = 0; ; attempt++) {
      try {
        const reply = await this.call(x, raw);
        const t = this.toRows(reply, x.shape[0], offset, raw);
        this.stats.calls++;
        this.stats.inputs += x.shape[0];
        return t;
      } catch (e) {
        if (e instanceof Permanent || attempt >= this.retries) {
          const m = (e as Error).message;
          throw new Error(attempt > 0 ? `${m} (after ${attempt + 1} attempts)` : m, { cause: e });
        }
        this.stats.retries++;
        await sleep(this.backoffMs * 2 ** attempt);
      }
    }
  }

  /** "sample 3 of the batch ("the film…")" */
  private sample(k: number, offset: number, raw: readonly unknown[] | null): string {
    return `sample ${offset + k} of the batch${raw ? describeSample(raw[k]) : ''}`;
  }

  /**
   * Checks a reply for n inputs (the batch's samples offset..offset+n-1) and returns [n, C] float32 logits
   * (log-probabilities for probabilities and label maps).
   */
  private toRows(reply: BlackBoxOutput, n: number, offset: number, raw: readonly unknown[] | null): Tensor {
    let flat: Float32Array, c: number;
    if (reply instanceof Tensor) {
      // the returned tensor is the teacher's to free
      try {
        if (reply.ndim !== 2 || reply.shape[0] !== n) throw new Permanent(`${this.where}: returned a tensor of shape ${shapeText(reply.shape)} for ${n} inputs; expected [${n}, classes]`);
        c = reply.shape[1];
        const host = tidy(() => reply.detach().float().cpu().contiguous());
        try {
          flat = Float32Array.from(host.data() as Float32Array);
        } finally {
          if (host !== reply) host.dispose();
        }
      } finally {
        reply.dispose();
      }
    } else if (Array.isArray(reply)) {
      if (reply.length !== n) throw new Permanent(`${this.where}: returned ${reply.length} rows for ${n} inputs`);
      const numeric = (r: unknown) => Array.isArray(r) && r.length > 0 && r.every((v) => typeof v === 'number');
      if (reply.every(numeric)) {
        c = (reply[0] as number[]).length;
        if (reply.some((r) => (r as number[]).length !== c))
          throw new Permanent(`${this.where}: expected ${n} rows of equal, non-zero length (number[][]), got rows of lengths ${reply.slice(0, 5).map((r) => (r as number[]).length).join(', ')}`);
        flat = new Float32Array(n * c);
        reply.forEach((r, i) => flat.set(r as number[], i * c));
      } else if (reply.some(numeric) || !this.labels) {
        throw new Permanent(
          `${this.where}: expected ${n} rows of equal, non-zero length (number[][])${this.labels ? ' or label → probability maps' : ' (label → probability maps need the label set: give labels)'}, got rows of lengths ${reply.slice(0, 5).map((r) => (Array.isArray(r) ? r.length : r === null ? 'null' : typeof r)).join(', ')}`,
        );
      } else {
        if (this.returns !== 'probs') throw new Permanent(`${this.where}: returned label → probability maps, which hold probabilities; use returns: 'probs'`);
        return tensor(this.fromMaps(reply as LabelScores[], offset, raw), { shape: [n, this.labels.length] });
      }
    } else if (reply instanceof Float32Array || reply instanceof Float64Array) {
      if (reply.length === 0 || reply.length % n) throw new Permanent(`${this.where}: returned ${reply.length} numbers for ${n} inputs (not a multiple)`);
      c = reply.length / n;
      flat = Float32Array.from(reply);
    } else throw new Permanent(`${this.where}: expected a Tensor, number[][], label → probability maps or a Float32Array, got ${reply === null ? 'null' : typeof reply}`);
    if (this.labels && c !== this.labels.length) throw new Permanent(`${this.where}: returned rows of ${c} values; the label set has ${this.labels.length} labels`);
    for (let i = 0; i < flat.length; i++)
      if (!Number.isFinite(flat[i])) throw new Permanent(`${this.where}: the reply holds non-finite values (${this.sample(Math.floor(i / c), offset, raw)})`);
    if (this.returns === 'probs') this.rowsToLogProbs(flat, c, offset, raw);
    return tensor(flat, { shape: [n, c] });
  }

  /** Rows of probabilities (in place) to log-probabilities: checked, renormalised, floored. */
  private rowsToLogProbs(flat: Float32Array, c: number, offset: number, raw: readonly unknown[] | null): void {
    const top = 1 + this.tolerance;
    for (let k = 0; k * c < flat.length; k++) {
      const row = flat.subarray(k * c, (k + 1) * c);
      let lo = Infinity, hi = -Infinity, s = 0;
      for (const v of row) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
        s += v;
      }
      if (lo < 0 || hi > top || s > top || s < 1 - this.tolerance) {
        if (lo >= 0 && hi <= top && s <= top) throw new Permanent(`${this.where}: ${this.sample(k, offset, raw)}: the probabilities sum to ${+s.toPrecision(6)}, below 1 − tolerance ${this.tolerance}; send a partial or top-k answer as a label → probability map (labels), or use returns: logits`);
        if (lo >= 0 && s > top) throw new Permanent(`${this.where}: ${this.sample(k, offset, raw)}: the probabilities sum to ${+s.toPrecision(6)}, above 1 + tolerance ${this.tolerance}`);
        throw new Permanent(`${this.where}: returns is 'probs' but the reply is not probabilities (${this.sample(k, offset, raw)}: values in [${lo}, ${hi}], sum ${+s.toPrecision(6)}); use returns: logits`);
      }
      this.normaliseLog(row);
    }
  }

  /** q → log(max(q, floor) / Σ max(q, floor)), in place. */
  private normaliseLog(row: Float32Array | Float64Array): void {
    let total = 0;
    for (let j = 0; j < row.length; j++) total += (row[j] = Math.max(row[j], this.floor));
    const lt = Math.log(total);
    for (let j = 0; j < row.length; j++) row[j] = Math.log(row[j]) - lt;
  }

  /** Label → probability maps to rows of log-probabilities over `labels` (see the top of this file). */
  private fromMaps(maps: LabelScores[], offset: number, raw: readonly unknown[] | null): Float32Array {
    const labels = this.labels!, index = this.labelIndex!, C = labels.length;
    const out = new Float32Array(maps.length * C);
    const top = 1 + this.tolerance;
    maps.forEach((m, k) => {
      const where = () => `${this.where}: ${this.sample(k, offset, raw)}`;
      let entries: [string, unknown][];
      if (Array.isArray(m)) {
        entries = m.map((e) => {
          if (!e || typeof e !== 'object' || typeof (e as { label?: unknown }).label !== 'string')
            throw new Permanent(`${where()}: expected { label, score } entries, got ${JSON.stringify(e)?.slice(0, 80)}`);
          return [(e as { label: string }).label, (e as { score?: unknown }).score];
        });
      } else if (m && typeof m === 'object') entries = Object.entries(m).filter(([, p]) => p !== undefined);
      else throw new Permanent(`${where()}: expected a row of numbers or a label → probability map, got ${m === null ? 'null' : typeof m}`);
      const row = new Float64Array(C);
      const seen = new Uint8Array(C);
      let s = 0, given = 0;
      for (const [label, p] of entries) {
        const j = index.get(label);
        if (j === undefined) {
          const near = closest(label, [...labels], 3);
          throw new Permanent(`${where()}: label '${label}' is not in the declared label set${near.length ? ` (closest: ${near.join(', ')})` : ''}; labels: ${labels.slice(0, 20).join(', ')}${C > 20 ? ', …' : ''}`);
        }
        if (seen[j]) throw new Permanent(`${where()}: label '${label}' appears twice`);
        if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > top)
          throw new Permanent(`${where()}: the probability of '${label}' is ${JSON.stringify(p)}; expected a number in [0, 1]`);
        seen[j] = 1;
        row[j] = p;
        s += p;
        given++;
      }
      if (s > top) throw new Permanent(`${where()}: the probabilities sum to ${+s.toPrecision(6)}, above 1 + tolerance ${this.tolerance}`);
      const missing = C - given;
      if (missing === 0) {
        if (!(s > 0)) throw new Permanent(`${where()}: every probability is 0`);
        for (let j = 0; j < C; j++) row[j] /= s;
      } else {
        const scale = Math.max(s, 1), rest = (1 - Math.min(s, 1)) / missing;
        for (let j = 0; j < C; j++) row[j] = seen[j] ? row[j] / scale : rest;
      }
      this.normaliseLog(row);
      out.set(row, k * C);
    });
    return out;
  }

  dispose(): void {}
}

/**
 * A teacher from a function of a batch returning logits, probabilities or label → probability maps per input: of the
 * student's input tensor [n, ...], or with `input: 'raw'` of the batch's raw samples (texts, images).
 */
export function blackBoxTeacher(fn: (x: Tensor) => Promise<BlackBoxOutput> | BlackBoxOutput, opts: BlackBoxOptions & { input?: 'tensor' }): BlackBoxTeacher;
export function blackBoxTeacher<S = unknown>(fn: (samples: S[]) => Promise<BlackBoxOutput> | BlackBoxOutput, opts: BlackBoxOptions & { input: 'raw' }): BlackBoxTeacher;
export function blackBoxTeacher(fn: (x: any) => Promise<BlackBoxOutput> | BlackBoxOutput, opts: BlackBoxOptions): BlackBoxTeacher {
  if (typeof fn !== 'function') throw new Error('blackBoxTeacher: expected a function (x: Tensor) => logits | probabilities (or of raw samples, with input: raw)');
  if (opts?.id !== undefined && (typeof opts.id !== 'string' || !opts.id)) throw new Error('blackBoxTeacher: id must be a non-empty string');
  const source = shortHash(fn.toString());
  // the source does not show the state a function closes over: without an id, this teacher is the only one with its identity
  const identity = opts?.id !== undefined ? `fn:${source}:${opts.id}` : `fn:${source}:unnamed-${crypto.randomUUID()}`;
  const where = `black-box teacher ${opts?.id ?? (fn.name || 'fn')}`;
  return new BlackBoxTeacher(async (x, raw) => fn(raw ? [...raw] : x), identity, where, opts);
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
  const call = async (x: Tensor, raw: readonly unknown[] | null): Promise<BlackBoxOutput> => {
    let body: string;
    if (raw) body = JSON.stringify({ inputs: raw }, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v));
    else {
      const n = x.shape[0];
      const flat = tidy(() => x.float().cpu().reshape([n, -1]));
      try {
        const d = flat.data() as Float32Array;
        const c = flat.shape[1];
        const inputs = Array.from({ length: n }, (_, i) => Array.from(d.subarray(i * c, (i + 1) * c)));
        body = JSON.stringify({ inputs, shape: x.shape.slice(1) });
      } finally {
        flat.dispose();
      }
    }
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...opts.headers },
        body,
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
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new Permanent(`${where}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
    const rows = Array.isArray(answer) ? answer : (answer as { outputs?: unknown })?.outputs;
    if (!Array.isArray(rows)) throw new Permanent(`${where}: expected {"outputs": number[][]} or an array, got ${text.slice(0, 200)}`);
    return rows as BlackBoxRow[];
  };
  return new BlackBoxTeacher(call, `http:${url.href}${opts.id ? `:${opts.id}` : ''}`, where, opts, ['url', 'timeoutMs', 'headers']);
}
