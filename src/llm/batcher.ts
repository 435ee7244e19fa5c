// Batched decoding: many sequences generated together, one forward per step for all of them (continuous batching).
//
// `submit` queues a sequence; a single loop admits queued sequences (each prompt runs alone through the model once —
// the prefill — and its keys/values join the shared `BatchKVCache`), then runs one step for every sequence in flight
// and hands each its token. Between steps the loop yields to the event loop, so requests that arrive meanwhile join
// at the next step and finished ones leave at once. Sampling happens per sequence on the JavaScript side with the
// sequence's own seeded `TokenSampler`, exactly as `generateTokenSteps` (decode.ts), so a seed gives the same tokens
// batched or not (up to the last bits of float arithmetic, which can only matter when a draw falls on a boundary).
import { nextTick } from '../torch';
import type { BatchKVCache, KVCache } from '../nn/kv-cache';
import { TokenSampler, checkGenerateRequest, type BatchStepDecoder, type GenerateOptions, type GenerateResult, type GeneratedToken } from './decode';

export interface BatcherOptions {
  /** Most sequences decoded in one step (default 64); more wait in a queue. */
  maxBatch?: number;
}

export interface BatcherStats {
  /** Batched steps run. */
  steps: number;
  /** Tokens produced by batched steps and prefills. */
  tokens: number;
  /** Sum of the batch sizes over steps (mean batch = rowSteps / steps). */
  rowSteps: number;
  /** Largest batch seen. */
  maxBatchSeen: number;
  /** Prompts run through the model (sequences admitted together with the same prompt share one). */
  prefills: number;
}

/** Called with each token as it is chosen; return false to end the sequence there (finish reason 'stop'). */
export type OnToken = (t: GeneratedToken) => boolean | void;

interface Job {
  prompt: number[];
  o: GenerateOptions;
  sampler: TokenSampler;
  steps: GeneratedToken[];
  onToken: OnToken;
  resolve: (r: GenerateResult) => void;
  reject: (e: Error) => void;
}

export class DecodeBatcher {
  readonly maxBatch: number;
  readonly stats: BatcherStats = { steps: 0, tokens: 0, rowSteps: 0, maxBatchSeen: 0, prefills: 0 };
  private queue: Job[] = [];
  /** Jobs in flight, in cache row order. */
  private active: Job[] = [];
  private cache: BatchKVCache | null = null;
  private running = false;
  private closed = false;

  constructor(readonly model: BatchStepDecoder, o: BatcherOptions = {}) {
    this.maxBatch = o.maxBatch ?? 64;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new Error(`DecodeBatcher: maxBatch must be a positive integer, got ${o.maxBatch}`);
  }

  /** Sequences queued or in flight. */
  get pending(): number {
    return this.queue.length + this.active.length;
  }

  /** Generates a continuation of `prompt` (as `GPT.generate` would), calling `onToken` with each token. */
  submit(prompt: number[], o: GenerateOptions, onToken: OnToken = () => true): Promise<GenerateResult> {
    if (this.closed) return Promise.reject(new Error('DecodeBatcher: closed'));
    try {
      checkGenerateRequest(prompt, o, this.model.vocabSize, this.model.contextLength, 'DecodeBatcher');
    } catch (e) {
      return Promise.reject(e);
    }
    if (o.maxNewTokens === 0) return Promise.resolve({ tokens: [], steps: [], finishReason: 'length' });
    return new Promise<GenerateResult>((resolve, reject) => {
      this.queue.push({ prompt: prompt.slice(), o, sampler: new TokenSampler(o), steps: [], onToken, resolve, reject });
      if (!this.running) void this.loop();
    });
  }

  /** Rejects what is queued or in flight and frees the cache. */
  close(): void {
    this.closed = true;
    const err = new Error('DecodeBatcher: closed');
    for (const j of [...this.queue, ...this.active]) j.reject(err);
    this.queue = [];
    this.active = [];
    this.cache?.dispose();
    this.cache = null;
  }

  private finish(j: Job, finishReason: 'stop' | 'length'): void {
    j.resolve({ tokens: j.steps.map((s) => s.id), steps: j.steps, finishReason });
  }

  /**
   * Records a chosen token (null: a stop token came). Returns true while the sequence goes on: not stopped, under
   * maxNewTokens, and with room in the context for one more position.
   */
  private take(j: Job, t: GeneratedToken | null): boolean {
    if (t === null) {
      this.finish(j, 'stop');
      return false;
    }
    j.steps.push(t);
    this.stats.tokens++;
    let more: boolean | void;
    try {
      more = j.onToken(t);
    } catch (e) {
      j.reject(e as Error);
      return false;
    }
    if (more === false) {
      this.finish(j, 'stop');
      return false;
    }
    if (j.steps.length >= j.o.maxNewTokens || j.prompt.length + j.steps.length > this.model.contextLength) {
      this.finish(j, 'length');
      return false;
    }
    return true;
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      // start on the next turn of the event loop: sequences submitted in the same turn are admitted together
      await nextTick();
      while (!this.closed && (this.queue.length > 0 || this.active.length > 0)) {
        try {
          this.admit();
          if (this.active.length > 0) this.step();
        } catch (e) {
          // a failing forward fails every sequence in flight; the batcher stays usable for new ones
          for (const j of this.active) j.reject(e as Error);
          this.active = [];
          this.cache?.dispose();
          this.cache = null;
        }
        await nextTick();
      }
    } finally {
      this.running = false;
      if (this.active.length === 0 && this.cache !== null) {
        this.cache.dispose();
        this.cache = null;
      }
    }
  }

  /**
   * Prefills queued prompts while there is room in the batch. Sequences admitted together with the same prompt (the
   * n choices of a request, or n requests for one prompt) share one prefill: its keys and values are copied into each
   * row, and each draws its first token from the same log-probabilities with its own generator.
   */
  private admit(): void {
    const shared = new Map<string, { cache: KVCache; lp: Float64Array }>();
    try {
      while (this.queue.length > 0 && this.active.length < this.maxBatch) {
        const j = this.queue.shift()!;
        const key = j.prompt.join(',');
        try {
          let pre = shared.get(key);
          if (pre === undefined) {
            const cache = this.model.newCache();
            try {
              pre = { cache, lp: this.model.nextLogprobs(j.prompt, cache) };
            } catch (e) {
              cache.dispose();
              throw e;
            }
            shared.set(key, pre);
            this.stats.prefills++;
          }
          const t = j.sampler.choose(pre.lp);
          if (!this.take(j, t)) continue;
          this.cache ??= this.model.newBatchCache(Math.min(this.maxBatch, 4));
          this.cache.addRow(pre.cache);
          this.active.push(j);
        } catch (e) {
          j.reject(e as Error);
        }
      }
    } finally {
      for (const { cache } of shared.values()) cache.dispose();
    }
  }

  /** One forward for every sequence in flight: feeds each its last token, picks the next. */
  private step(): void {
    const cache = this.cache!;
    const B = this.active.length;
    const V = this.model.vocabSize;
    const lp = this.model.nextLogprobsBatch(this.active.map((j) => j.steps[j.steps.length - 1].id), cache);
    this.stats.steps++;
    this.stats.rowSteps += B;
    this.stats.maxBatchSeen = Math.max(this.stats.maxBatchSeen, B);
    const done: number[] = [];
    for (let b = 0; b < B; b++) {
      const j = this.active[b];
      if (!this.take(j, j.sampler.choose(lp.subarray(b * V, (b + 1) * V)))) done.push(b);
    }
    // remove from the end so that the rows moved into freed places are ones that stay
    for (let k = done.length - 1; k >= 0; k--) {
      const r = done[k];
      cache.removeRow(r);
      const last = this.active.pop()!;
      if (r < this.active.length) this.active[r] = last;
    }
  }
}
