// Several OpenAI-compatible endpoints serving one teacher: requests are spread over them in proportion to their
// weights (smooth weighted round-robin, so the order is fixed by the configuration), each endpoint with its own
// concurrency, rate limits, backoff and failure count. An endpoint that fails `cooldownAfter` requests in a row is
// taken out for `cooldownMs` and its work goes to the others; when every endpoint is out, the run stops with
// AllEndpointsDown. A task is answered at most once: the first answer is taken and the task's other requests are
// abandoned; an answer that still arrives (a late request that could not be stopped in time) is dropped and counted.
import { RateLimiter, RequestError, RequestFailed, backoffDelay, chatCompletion, redact, type Clock, type Completion } from './client';

export interface PoolEndpoint {
  baseUrl: string;
  weight: number;
  /** The model name sent to this endpoint. */
  model: string;
  apiKey?: string;
  /** Requests in flight to this endpoint (undefined: only the pool's total limits it). */
  concurrency?: number;
  rpm?: number;
  tpm?: number;
}

export interface PoolOptions {
  /** Requests in flight over all endpoints. */
  concurrency: number;
  timeoutMs: number;
  /** How long past timeoutMs a request's answer is still taken while the task is retried elsewhere (0: abandoned). */
  lateAnswerMs: number;
  /** Attempts per task beyond the first, over all endpoints. */
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** Failures in a row that take an endpoint out, and for how long. */
  cooldownAfter: number;
  cooldownMs: number;
  clock: Clock;
  fetch?: typeof fetch;
  /** Every API key of the pool, replaced by [redacted] in the errors kept here. */
  secrets: string[];
  log?: (line: string) => void;
}

/** One endpoint's counts for a run. */
export interface EndpointReport {
  url: string;
  weight: number;
  model: string;
  /** Attempts sent (a retried task counts once per attempt). */
  requests: number;
  /** Answers received, late ones included. */
  successes: number;
  failures: number;
  /** Failures after which the task was tried again (here or elsewhere). */
  retries: number;
  /** Attempts abandoned because their task got its answer from another attempt (a late answer came first, or this was late). */
  superseded: number;
  /** Answers that came after the task had its answer from another attempt (not stopped in time); dropped. */
  late_answers: number;
  /** Tasks whose outcome is this endpoint's answer, and their share of all such tasks of the run. */
  samples: number;
  share: number;
  mean_latency_ms: number | null;
  cooldowns: number;
  /** 'up', or 'cooling down' while taken out. */
  state: 'up' | 'cooling down';
  last_error?: string;
}

/** Thrown when every endpoint is taken out while work is left; names each endpoint and its last error. */
export class AllEndpointsDown extends Error {
  constructor(readonly endpoints: { url: string; lastError: string; failuresInARow: number }[]) {
    super(`every endpoint is failing:\n${endpoints.map((e) => `  ${e.url}: ${e.lastError} (${e.failuresInARow} failure${e.failuresInARow === 1 ? '' : 's'} in a row)`).join('\n')}`);
    this.name = 'AllEndpointsDown';
  }
}

export interface PoolHooks<T> {
  /** The request body for `task` on `endpoint`. */
  body(task: T, endpoint: PoolEndpoint): Record<string, unknown>;
  /** Tokens the request may use, for the tokens-per-minute limit. */
  estimate(task: T): number;
  /** Once per task, when it is first sent. */
  onDispatch?(task: T): void;
  /** The first answer for a task (exactly one call per answered task). */
  onAnswer(task: T, completion: Completion, info: { endpoint: string; attempts: number; startedAt: number }): Promise<void>;
  /** A task that failed for good: a request error that is the request's own fault, or maxRetries exhausted. */
  onFailed(task: T, error: RequestFailed): void;
  /** Every attempt's end, with its error when it failed (a request past timeoutMs ends then, whatever comes later). */
  onAttemptEnd?(error?: RequestError): void;
  /** A failed attempt whose task goes back to the queue. */
  onRetry?(error: RequestError): void;
  /** An answer that came after its task had one; it is dropped. */
  onLate?(task: T): void;
}

/** Status codes that mean "this endpoint cannot serve us" rather than "this request is wrong". */
const ENDPOINT_STATUS = new Set([401, 403, 404]);

interface Job<T> {
  task: T;
  attempts: number;
  startedAt: number;
  tried: Set<Endpoint>;
}

interface Attempt {
  endpoint: Endpoint;
  ctrl: AbortController;
  /** Past timeoutMs: counted as failed, still awaited for up to lateAnswerMs. */
  late: boolean;
}

class Endpoint {
  readonly limiter: RateLimiter;
  inFlight = 0;
  failuresInARow = 0;
  /** No new request before this time (backoff, Retry-After). */
  notBefore = 0;
  /** Taken out until this time. */
  downUntil = 0;
  /** Smooth weighted round-robin state. */
  current = 0;
  lastError = '';
  latencyTotal = 0;
  readonly report: EndpointReport;
  constructor(readonly cfg: PoolEndpoint, defaults: { clock: Clock }) {
    this.limiter = new RateLimiter({ rpm: cfg.rpm, tpm: cfg.tpm }, defaults.clock);
    this.report = {
      url: cfg.baseUrl, weight: cfg.weight, model: cfg.model, requests: 0, successes: 0, failures: 0, retries: 0, superseded: 0, late_answers: 0,
      samples: 0, share: 0, mean_latency_ms: null, cooldowns: 0, state: 'up',
    };
  }
  available(now: number): boolean {
    return now >= this.downUntil && now >= this.notBefore && this.inFlight < (this.cfg.concurrency ?? Infinity);
  }
}

/** Endpoints of one teacher and their state for one run. */
export class EndpointPool {
  private readonly endpoints: Endpoint[];
  private wakeUp: (() => void) | null = null;

  constructor(endpoints: PoolEndpoint[], private readonly o: PoolOptions) {
    if (!endpoints.length) throw new Error('EndpointPool: no endpoints');
    this.endpoints = endpoints.map((e) => new Endpoint(e, { clock: o.clock }));
  }

  /** Per-endpoint counts so far (shares of the answered tasks). */
  reports(): EndpointReport[] {
    const now = this.o.clock.now();
    const samples = this.endpoints.reduce((a, e) => a + e.report.samples, 0);
    return this.endpoints.map((e) => ({
      ...e.report,
      share: samples ? e.report.samples / samples : 0,
      mean_latency_ms: e.report.successes ? Math.round(e.latencyTotal / e.report.successes) : null,
      state: e.downUntil > now ? 'cooling down' : 'up',
      ...(e.lastError ? { last_error: e.lastError } : {}),
    }));
  }

  /** One line for progress logs: each endpoint's host, answers, failures and state. */
  describe(): string {
    return this.reports()
      .map((r) => {
        let host = r.url;
        try {
          host = new URL(r.url).host;
        } catch {
          // keep the whole URL
        }
        return `${host} ${r.samples} (${(100 * r.share).toFixed(0)} %), ${r.failures} failed${r.state === 'up' ? '' : `, ${r.state}`}`;
      })
      .join('; ');
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /** Waits until something changes (an attempt ends, the run is stopped) or `ms` pass. */
  private async idle(ms: number): Promise<void> {
    const stop = new AbortController();
    const woken = new Promise<void>((resolve) => (this.wakeUp = resolve));
    const timer = Number.isFinite(ms) ? this.o.clock.sleep(Math.max(1, ms), stop.signal).catch(() => undefined) : new Promise<void>(() => {});
    await Promise.race([woken, timer]);
    stop.abort();
    this.wakeUp = null;
  }

  /** Smooth weighted round-robin over the endpoints that can take a request now, preferring ones the job has not tried. */
  private pick(now: number, job: Job<unknown>): Endpoint | null {
    const free = this.endpoints.filter((e) => e.available(now));
    const fresh = free.filter((e) => !job.tried.has(e));
    const candidates = fresh.length ? fresh : free;
    if (!candidates.length) return null;
    let total = 0;
    let best: Endpoint | null = null;
    for (const e of candidates) {
      e.current += e.cfg.weight;
      total += e.cfg.weight;
      if (!best || e.current > best.current) best = e;
    }
    best!.current -= total;
    return best;
  }

  /**
   * Runs every task to an outcome: one `onAnswer` or one `onFailed` per task, unless `signal` stops the run or every
   * endpoint is taken out (AllEndpointsDown); tasks without an outcome then stay without one. Returns when no attempt
   * is in flight any more (late ones are abandoned).
   */
  async run<T extends { id: string }>(tasks: readonly T[], hooks: PoolHooks<T>, signal?: AbortSignal): Promise<void> {
    const o = this.o;
    const clock = o.clock;
    const retries: Job<T>[] = [];
    let next = 0;
    /** Tasks with an outcome (or one being written). */
    const settled = new Set<string>();
    const live = new Map<string, Set<Attempt>>();
    const running = new Set<Promise<void>>();
    let inFlight = 0; // attempts not yet past timeoutMs, plus answers being handled
    let fatal: unknown = null;
    const onAbort = () => this.wake();
    signal?.addEventListener('abort', onAbort, { once: true });

    const failed = (job: Job<T>, ep: Endpoint, e: unknown) => {
      if (!(e instanceof RequestError)) {
        fatal ??= e;
        return;
      }
      const now = clock.now();
      ep.report.failures++;
      ep.lastError = redact(e.message, o.secrets);
      hooks.onAttemptEnd?.(e);
      if (settled.has(job.task.id)) return; // answered meanwhile by another attempt
      const endpointFault = ENDPOINT_STATUS.has(e.status ?? 0);
      if (!e.retryable && !endpointFault) {
        settled.add(job.task.id);
        hooks.onFailed(job.task, new RequestFailed(e, job.attempts));
        return;
      }
      if (e.status === 429) {
        // rate limited: this endpoint waits, it is not failing
        const wait = e.retryAfterMs ?? backoffDelay(0, o, clock.random);
        ep.notBefore = Math.max(ep.notBefore, now + wait);
        ep.limiter.pauseUntil(now + wait);
      } else {
        ep.failuresInARow++;
        if (endpointFault || ep.failuresInARow >= o.cooldownAfter) {
          if (ep.downUntil <= now) {
            ep.report.cooldowns++;
            o.log?.(`generate: ${ep.cfg.baseUrl} taken out for ${o.cooldownMs} ms after ${ep.failuresInARow} failure${ep.failuresInARow === 1 ? '' : 's'} in a row: ${ep.lastError}`);
          }
          ep.downUntil = now + o.cooldownMs;
        } else ep.notBefore = Math.max(ep.notBefore, now + (e.retryAfterMs ?? backoffDelay(ep.failuresInARow - 1, o, clock.random)));
      }
      if (job.attempts > o.maxRetries) {
        settled.add(job.task.id);
        hooks.onFailed(job.task, new RequestFailed(e, job.attempts));
        return;
      }
      ep.report.retries++;
      hooks.onRetry?.(e);
      job.tried.add(ep);
      retries.push(job);
    };

    const answered = async (job: Job<T>, attempt: Attempt, completion: Completion, sentAt: number) => {
      const ep = attempt.endpoint;
      ep.report.successes++;
      ep.latencyTotal += clock.now() - sentAt;
      ep.failuresInARow = 0;
      if (!attempt.late) hooks.onAttemptEnd?.();
      const id = job.task.id;
      if (settled.has(id)) {
        ep.report.late_answers++;
        hooks.onLate?.(job.task);
        return;
      }
      settled.add(id);
      ep.report.samples++;
      for (const other of live.get(id) ?? [])
        if (other !== attempt && !other.ctrl.signal.aborted) {
          other.endpoint.report.superseded++;
          other.ctrl.abort();
        }
      inFlight++;
      try {
        await hooks.onAnswer(job.task, completion, { endpoint: ep.cfg.baseUrl, attempts: job.attempts, startedAt: job.startedAt });
      } catch (e) {
        fatal ??= e;
      } finally {
        inFlight--;
      }
    };

    const start = (job: Job<T>, ep: Endpoint) => {
      if (job.attempts === 0) {
        job.startedAt = clock.now();
        hooks.onDispatch?.(job.task);
      }
      job.attempts++;
      inFlight++;
      ep.inFlight++;
      ep.report.requests++;
      const attempt: Attempt = { endpoint: ep, ctrl: new AbortController(), late: false };
      const id = job.task.id;
      if (!live.has(id)) live.set(id, new Set());
      live.get(id)!.add(attempt);
      let soft: NodeJS.Timeout | undefined;
      const p = (async () => {
        try {
          const estimate = hooks.estimate(job.task);
          await ep.limiter.acquire(estimate, attempt.ctrl.signal);
          const sentAt = clock.now();
          if (o.lateAnswerMs > 0)
            soft = setTimeout(() => {
              attempt.late = true;
              inFlight--;
              failed(job, ep, new RequestError(`no complete answer within ${o.timeoutMs} ms (its answer is still taken for ${o.lateAnswerMs} ms more)`, 'timeout', true));
              this.wake();
            }, o.timeoutMs);
          const endpoint = { baseUrl: ep.cfg.baseUrl, apiKey: ep.cfg.apiKey, timeoutMs: o.timeoutMs + o.lateAnswerMs, fetch: o.fetch };
          const completion = await chatCompletion(endpoint, hooks.body(job.task, ep.cfg), attempt.ctrl.signal);
          clearTimeout(soft);
          const used = completion.usage?.total_tokens;
          if (typeof used === 'number') ep.limiter.settle(estimate, used);
          await answered(job, attempt, completion, sentAt);
        } catch (e) {
          clearTimeout(soft);
          if (attempt.ctrl.signal.aborted) {
            // the run stopped, or another attempt's answer superseded this one: not the endpoint's fault
          } else if (attempt.late) {
            if (e instanceof RequestError) ep.lastError = redact(e.message, o.secrets);
          } else failed(job, ep, e);
        } finally {
          if (!attempt.late) inFlight--;
          ep.inFlight--;
          live.get(id)?.delete(attempt);
          if (!live.get(id)?.size) live.delete(id);
          this.wake();
        }
      })().catch((e) => {
        fatal ??= e; // a hook that threw (e.g. an output file that cannot be written)
        this.wake();
      });
      running.add(p);
      void p.then(() => running.delete(p));
    };

    const abortAll = () => {
      for (const set of live.values()) for (const a of set) a.ctrl.abort();
    };

    try {
      for (;;) {
        if (fatal) throw fatal;
        if (signal?.aborted) break;
        const now = clock.now();
        for (const e of this.endpoints)
          if (e.downUntil && now >= e.downUntil) {
            // back on probation: one more failure takes it out again
            e.downUntil = 0;
            e.failuresInARow = Math.max(0, o.cooldownAfter - 1);
          }
        while (retries.length && settled.has(retries[0].task.id)) retries.shift();
        while (next < tasks.length && settled.has(tasks[next].id)) next++;
        const job: Job<T> | null = retries.length ? retries[0] : next < tasks.length ? { task: tasks[next], attempts: 0, startedAt: 0, tried: new Set() } : null;
        if (!job && inFlight === 0) break;
        if (job && this.endpoints.every((e) => e.downUntil > now))
          throw new AllEndpointsDown(this.endpoints.map((e) => ({ url: e.cfg.baseUrl, lastError: e.lastError || 'no answer', failuresInARow: e.failuresInARow })));
        if (job && inFlight < o.concurrency) {
          const ep = this.pick(now, job);
          if (ep) {
            if (retries.length && retries[0] === job) retries.shift();
            else next++;
            start(job, ep);
            continue;
          }
        }
        let until = Infinity;
        if (job && inFlight < o.concurrency)
          for (const e of this.endpoints) {
            const t = Math.max(e.downUntil, e.notBefore);
            if (t > now) until = Math.min(until, t);
          }
        await this.idle(until - now);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      abortAll();
      await Promise.allSettled([...running]);
    }
    if (fatal) throw fatal;
  }
}
