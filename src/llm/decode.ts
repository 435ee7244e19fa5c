// Generating text with a decoder: sampling (temperature, top-k, top-p) on the JavaScript side with a seeded
// generator, so a seed fixes the output whatever libtorch's own generator has drawn, and the one-sequence generation
// loop (one forward over the prompt, then one token at a time against a key/value cache). The batched loop of
// `serve` is `DecodeBatcher` (batcher.ts); both choose tokens with `TokenSampler`, so a seed gives the same tokens
// either way. The model supplies the steps: `GPT.nextLogprobs` (one sequence) and `GPT.nextLogprobsBatch` (rows).
import { Rng } from '../data/rng';
import type { BatchKVCache, KVCache } from '../nn/kv-cache';

export interface SampleOptions {
  /** Softmax temperature; 0 picks the most likely token (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens (default: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling; default 1). */
  topP?: number;
}

export interface GenerateOptions extends SampleOptions {
  maxNewTokens: number;
  /** Seeds the sampler (default 0). */
  seed?: number;
  /** Token ids that end generation (the stop token is not returned). */
  stopTokens?: number[];
  /** Use the key/value cache (default true); false recomputes the whole sequence every step. */
  useCache?: boolean;
  /** Also report the top-n log-probabilities at each step (default 0). */
  topLogprobs?: number;
}

export interface GeneratedToken {
  id: number;
  /** log p(id) under the model's distribution (temperature 1, before top-k/top-p filtering). */
  logprob: number;
  top: { id: number; logprob: number }[];
}

export interface GenerateResult {
  tokens: number[];
  steps: GeneratedToken[];
  /** 'stop' when a stop token came, 'length' when maxNewTokens or the context length was reached. */
  finishReason: 'stop' | 'length';
}

/** What generation needs of a decoder (GPT has it). */
export interface StepDecoder {
  readonly vocabSize: number;
  readonly contextLength: number;
  newCache(): KVCache;
  /** Log-probabilities of the next token after `ids`, extending `cache` when given. */
  nextLogprobs(ids: number[], cache: KVCache | null): Float64Array;
}

/** What batched decoding (DecodeBatcher, `serve`) needs of a decoder: GPT and the Hugging Face decoders have it. */
export interface BatchStepDecoder extends StepDecoder {
  newBatchCache(initialCapacity?: number): BatchKVCache;
  /** One step of every row of `cache`: row b takes `ids[b]`; returns [B · V] log-probabilities. */
  nextLogprobsBatch(ids: number[], cache: BatchKVCache): Float64Array;
}

/** Samples one id from logits (a JS array) with temperature, top-k and top-p, using `rng`. */
export function sampleFromLogits(logits: ArrayLike<number>, o: SampleOptions, rng: Rng): number {
  const V = logits.length;
  const temperature = o.temperature ?? 1;
  if (!(temperature >= 0)) throw new Error(`sample: temperature must be >= 0, got ${temperature}`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new Error(`sample: topP must be in (0, 1], got ${topP}`);
  const topK = o.topK ?? V;
  if (!Number.isInteger(topK) || topK < 1) throw new Error(`sample: topK must be a positive integer, got ${topK}`);
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0 || topK === 1) return best;
  const kept = topK < V ? topIndices(logits, topK) : Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const mx = logits[best] / temperature;
  let probs = kept.map((i) => Math.exp(logits[i] / temperature - mx));
  let z = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / z);
  if (topP < 1) {
    let acc = 0;
    let n = 0;
    while (n < probs.length && acc < topP) acc += probs[n++];
    probs = probs.slice(0, Math.max(1, n));
    z = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / z);
  }
  let u = rng.random();
  for (let j = 0; j < probs.length; j++) {
    u -= probs[j];
    if (u < 0) return kept[j];
  }
  return kept[probs.length - 1];
}

/** Indices of the n largest values, largest first (ties: lower index first). */
export function topIndices(v: ArrayLike<number>, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (out.length === n && v[i] <= v[out[n - 1]]) continue;
    let j = out.length < n ? out.length : n - 1;
    if (out.length < n) out.push(i);
    while (j > 0 && v[out[j - 1]] < v[i]) {
      out[j] = out[j - 1];
      j--;
    }
    out[j] = i;
  }
  return out;
}

/**
 * Picks the next token from log-probabilities `lp` (sampling with `o` and `rng`; log-softmax differs from the logits
 * by a constant only). Null when the pick is one of `stops`. With `nTop`, also reports the top-n log-probabilities.
 */
export function chooseToken(lp: Float64Array, o: SampleOptions, rng: Rng, nTop: number, stops: Set<number>): GeneratedToken | null {
  const id = sampleFromLogits(lp, o, rng);
  if (stops.has(id)) return null;
  const top: { id: number; logprob: number }[] = [];
  if (nTop > 0) for (const i of topIndices(lp, nTop)) top.push({ id: i, logprob: lp[i] });
  return { id, logprob: lp[id], top };
}

/** The token choices of one sequence: its options, its own seeded generator, its stop tokens. */
export class TokenSampler {
  readonly rng: Rng;
  readonly stops: Set<number>;
  readonly nTop: number;
  constructor(readonly options: GenerateOptions) {
    this.rng = new Rng(options.seed ?? 0);
    this.stops = new Set(options.stopTokens ?? []);
    this.nTop = options.topLogprobs ?? 0;
  }
  /** The next token from log-probabilities `lp`, or null when a stop token was drawn. */
  choose(lp: Float64Array): GeneratedToken | null {
    return chooseToken(lp, this.options, this.rng, this.nTop, this.stops);
  }
}

/** Checks a generation request against a decoder's vocabulary and context, naming `where` in the error. */
export function checkGenerateRequest(prompt: number[], o: GenerateOptions, vocabSize: number, contextLength: number, where: string): void {
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new Error(`${where}: maxNewTokens must be a non-negative integer, got ${o.maxNewTokens}`);
  if (prompt.length === 0) throw new Error(`${where}: the prompt is empty (give at least one token, e.g. the end-of-text id)`);
  for (const t of prompt) if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new Error(`${where}: prompt token ${t} is outside the vocabulary [0, ${vocabSize})`);
  if (prompt.length > contextLength) throw new Error(`${where}: the prompt has ${prompt.length} tokens, more than the context length ${contextLength}`);
}

/**
 * Continues `prompt` (token ids) by up to `maxNewTokens` tokens one at a time: yields each token as it is chosen and
 * returns the result. Callers that serve several requests await between steps; returning early (`break`) frees the
 * cache. `where` names the caller in errors.
 */
export function* generateTokenSteps(model: StepDecoder, prompt: number[], o: GenerateOptions, where = 'generateTokens'): Generator<GeneratedToken, GenerateResult, void> {
  checkGenerateRequest(prompt, o, model.vocabSize, model.contextLength, where);
  const sampler = new TokenSampler(o);
  const useCache = o.useCache ?? true;
  const cache = useCache ? model.newCache() : null;
  const seq = prompt.slice();
  const steps: GeneratedToken[] = [];
  let finishReason: 'stop' | 'length' = 'length';
  try {
    let feed = seq.slice();
    for (let step = 0; step < o.maxNewTokens && seq.length <= model.contextLength; step++) {
      const t = sampler.choose(model.nextLogprobs(useCache ? feed : seq, cache));
      if (t === null) {
        finishReason = 'stop';
        break;
      }
      steps.push(t);
      seq.push(t.id);
      feed = [t.id];
      yield t;
    }
  } finally {
    cache?.dispose();
  }
  return { tokens: steps.map((s) => s.id), steps, finishReason };
}

/** `generateTokenSteps` run to the end: the tokens with their log-probabilities. */
export function generateTokens(model: StepDecoder, prompt: number[], o: GenerateOptions, where = 'generateTokens'): GenerateResult {
  const it = generateTokenSteps(model, prompt, o, where);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}
