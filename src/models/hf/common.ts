// What the Hugging Face architectures share: the base class (the config a model was built from, its architecture
// name, the prefix of its base model in state_dict keys), the additive attention mask transformers builds from a
// [B, S] padding mask, RMSNorm, transformers' Conv1D, and the decoding steps of causal language models.
import { Tensor, noGrad, ones, ops, tensor, tidy, zeros } from '../../torch';
import { BatchKVCache, Embedding, KVCache, Module, init, type BatchStep } from '../../nn';
import type { HfConfig } from './config';
import { readLogprobs } from '../logprobs';

/** The most negative float32: transformers adds it to the scores of masked keys (not -inf, so no row is all -inf). */
export const FLOAT32_MIN = -3.4028234663852886e38;

/** A model of a transformers architecture, with the exact state_dict keys of its PyTorch class. */
export abstract class HfPreTrainedModel extends Module {
  /** `BertForSequenceClassification`, `LlamaForCausalLM`, ... (written to config.json's `architectures`). */
  abstract readonly architecture: string;
  /** The attribute holding the base model (`bert`, `distilbert`, `transformer`, `model`); '' when this is the base model. */
  abstract readonly basePrefix: string;
  /** The `model_type` of config.json. */
  abstract readonly modelType: string;
  /** Keys a checkpoint may hold that this model has no parameter for (tied copies, non-persistent buffers). */
  readonly ignoredKeys: RegExp[] = [];
  constructor(readonly config: HfConfig) {
    super();
  }
  /**
   * transformers' `_init_weights`: matrices (linear, Conv1D, embedding) ~ N(0, initializer_range), biases 0, norm
   * weights 1, an embedding's padding row 0. Applied to freshly built models (`createHfModel`); loading overwrites it.
   */
  initWeights(): void {
    const std = this.config.has('initializer_range') ? this.config.num('initializer_range') : 0.02;
    noGrad(() =>
      tidy(() => {
        for (const [name, p] of this.namedParameters()) {
          if (p.ndim >= 2) init.normal_(p, 0, std);
          else if (name.endsWith('bias')) init.zeros_(p);
          else init.ones_(p);
        }
        for (const m of this.modules())
          if (m instanceof Embedding && m.paddingIdx !== null) m.weight.select(0, m.paddingIdx).zero_();
      }),
    );
  }
}

/**
 * The additive mask transformers builds from a [B, S] attention mask (1 = attend, 0 = padding): [B, 1, 1, S] float,
 * 0 where attended and the most negative float where not. Null when no mask is given.
 */
export function additiveKeyMask(mask: Tensor | null | undefined, B: number, S: number, where: string): Tensor | null {
  if (mask == null) return null;
  if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== S)
    throw new Error(`${where}: attentionMask must be [${B}, ${S}] like the input ids, got [${mask.shape.join(', ')}]`);
  return ops.rsub_Scalar(mask.to('float32'), 1).mul(FLOAT32_MIN).view(B, 1, 1, S);
}

/** Options of a decoder's forward beside the ids and the cache. */
export interface DecoderCallOptions {
  /**
   * [B, past + T] (the cached positions and the new ones): 1 for tokens, 0 for padding, as transformers' attention_mask.
   * Prompts of different lengths go in one batch left-padded; every row's positions count its tokens only
   * (cumsum − 1, as transformers' `generate`), so its logits are those of the prompt alone. Not with a batched step.
   */
  attentionMask?: Tensor | null;
}

/** What a padding mask gives a decoder's forward: each row's positions and the additive key mask. */
export interface DecoderPadding {
  /** [B][T]: the positions of the new tokens (cumsum(mask) − 1; 1 at padding, as transformers). */
  positions: number[][];
  /** The most positions any row has seen: max(positions) + 1. */
  seqLen: number;
  /** [B, 1, 1, past + T] float: 0 at tokens, the most negative float32 at padding. */
  keyMask: Tensor;
}

/** Positions and key mask of a padding mask [B, past + T] for T new tokens (see `DecoderCallOptions`). */
export function decoderPadding(mask: Tensor, B: number, past: number, T: number, where: string, device = mask.device): DecoderPadding {
  const S = past + T;
  if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== S)
    throw new Error(`${where}: attentionMask must be [${B}, ${S}] (batch, cached + new positions), got [${mask.shape.join(', ')}]`);
  const m = mask.toArray();
  const positions: number[][] = [];
  let seqLen = 1;
  for (let b = 0; b < B; b++) {
    const row: number[] = [];
    let n = 0;
    for (let j = 0; j < S; j++) {
      const v = m[b * S + j];
      if (v !== 0 && v !== 1) throw new Error(`${where}: attentionMask holds ${v} at [${b}, ${j}]; it must be 0 (padding) or 1 (token)`);
      n += v;
      if (j >= past) row.push(v === 0 ? 1 : n - 1);
    }
    seqLen = Math.max(seqLen, ...row.map((p) => p + 1));
    positions.push(row);
  }
  const keyMask = additiveKeyMask(mask, B, S, where)!;
  return { positions, seqLen, keyMask: keyMask.device === device ? keyMask : keyMask.to({ device }) };
}

/** Checks token ids [B, T] (int64) against the longest length (ids outside the vocabulary fail in the embedding). */
export function checkIds(ids: Tensor, maxLength: number, where: string): void {
  if (ids.ndim !== 2) throw new Error(`${where}: expected token ids [batch, time], got shape [${ids.shape.join(', ')}]`);
  if (ids.dtype !== 'int64' && ids.dtype !== 'int32') throw new Error(`${where}: token ids must be int64, got ${ids.dtype}`);
  if (ids.shape[1] > maxLength) throw new Error(`${where}: ${ids.shape[1]} positions exceed the ${maxLength} left of max_position_embeddings`);
}

/** RMSNorm as Llama's: x / sqrt(mean(x²) + eps) · weight, computed in float32 (`weight` [n], `variance_epsilon`). */
export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(readonly size: number, readonly eps = 1e-6) {
    super();
    this.weight = this.registerParameter('weight', ones([size]));
  }
  forward(x: Tensor): Tensor {
    const dt = x.dtype;
    const h = dt === 'float32' ? x : x.to('float32');
    const n = h.mul(h.pow(2).mean(-1, true).add(this.eps).rsqrt());
    return this.weight.mul(dt === 'float32' ? n : n.to(dt));
  }
  override extraRepr(): string {
    return `${this.size}, eps=${this.eps}`;
  }
}

/** transformers' Conv1D (GPT-2): `weight` [in, out] (the transpose of nn.Linear's), `bias` [out]; y = x · W + b. */
export class Conv1D extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly nx: number, readonly nf: number) {
    super();
    this.weight = this.registerParameter('weight', zeros([nx, nf]));
    this.bias = this.registerParameter('bias', zeros([nf]));
    init.normal_(this.weight, 0, 0.02);
  }
  forward(x: Tensor): Tensor {
    const lead = x.shape.slice(0, -1);
    if (x.shape[x.ndim - 1] !== this.nx) throw new Error(`Conv1D: expected input [..., ${this.nx}], got [${x.shape.join(', ')}]`);
    return ops.addmm(this.bias, x.reshape(-1, this.nx), this.weight).view(...lead, this.nf);
  }
  override extraRepr(): string {
    return `nx=${this.nx}, nf=${this.nf}`;
  }
}

/**
 * A causal language model of a transformers architecture: `forward(ids, cache)` gives logits [B, T, V]. The decoding
 * steps are those of the project's GPT: `newCache` + `nextLogprobs` (what `generateTokens` of src/llm/decode.ts
 * needs) and `newBatchCache` + `nextLogprobsBatch` (batched decoding, rows at their own positions, as `serve`'s
 * DecodeBatcher drives it).
 */
export abstract class HfCausalLM extends HfPreTrainedModel {
  abstract readonly vocabSize: number;
  /** max_position_embeddings (n_positions for GPT-2). */
  abstract readonly contextLength: number;
  abstract readonly numLayers: number;
  /**
   * ids [B, T] -> logits [B, T, V]; with a cache, ids are the positions after the cached ones (a BatchStep: T = 1);
   * `attentionMask` marks left padding (DecoderCallOptions).
   */
  abstract override forward(ids: Tensor, cache?: KVCache | BatchStep | null, o?: DecoderCallOptions): Tensor;
  /** The device of the parameters. */
  get device(): string {
    return this.parameters()[0].device;
  }
  newCache(): KVCache {
    return new KVCache(this.numLayers);
  }
  /** An empty cache for batched decoding (`nextLogprobsBatch`). */
  newBatchCache(initialCapacity = 4): BatchKVCache {
    return new BatchKVCache(this.numLayers, this.contextLength, initialCapacity);
  }
  /** Log-probabilities of the next token after `ids` (extending `cache` when given), in eval mode, as float64. */
  nextLogprobs(ids: number[], cache: KVCache | null = null): Float64Array {
    return readLogprobs(this, () => this.forward(this.idsTensor([ids]), cache).select(1, -1).select(0, 0));
  }
  /**
   * One batched decoding step: row b of `cache` takes token `ids[b]` at its own position and the cache grows by it.
   * Returns the next-token log-probabilities of every row, [B · V] row-major float64.
   */
  nextLogprobsBatch(ids: number[], cache: BatchKVCache): Float64Array {
    const B = ids.length;
    if (B === 0 || B !== cache.size) throw new Error(`${this.architecture}.nextLogprobsBatch: ${B} ids for a cache of ${cache.size} rows`);
    cache.lengths.forEach((L, b) => {
      if (L >= this.contextLength) throw new Error(`${this.architecture}.nextLogprobsBatch: row ${b} already holds ${L} positions, the context length is ${this.contextLength}`);
    });
    const lp = readLogprobs(this, () => this.forward(this.idsTensor(ids.map((i) => [i])), cache.beginStep(this.device)).select(1, 0));
    cache.endStep();
    return lp;
  }
  private idsTensor(rows: number[][]): Tensor {
    const x = tensor(rows, { dtype: 'int64' });
    const dev = this.device;
    return dev === 'cpu' ? x : x.to({ device: dev });
  }
}

/** A cache argument split by kind: a single-sequence cache, or a batched step. */
export function cacheKinds(cache: KVCache | BatchStep | null | undefined): { kv: KVCache | null; step: BatchStep | null } {
  if (cache == null) return { kv: null, step: null };
  return cache instanceof KVCache ? { kv: cache, step: null } : { kv: null, step: cache };
}
