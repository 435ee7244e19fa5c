// Token-id batches for BERT-style encoders, as sources of the training engine (length, setEpoch, batchAt):
//   MlmBatches    masked-LM batches: 15 % of the non-special tokens chosen, of those 80 % become [MASK], 10 % a random
//                 token, 10 % stay (BERT's recipe); `y` holds the original ids there and -100 elsewhere
//   TextBatches   classification batches of token ids and labels
// Rows keep their own lengths and each batch is padded on the right with `padId` to its longest row; the batch tensor
// `attention_mask` (1 token, 0 padding) goes with it. The order of an epoch and the masks of a batch are drawn from
// generators seeded by (seed, epoch) and (seed, epoch, batch), so a batch is the same whenever it is asked for (an
// exact resume). `trimPadding` cuts a padded TensorDataset batch to its longest row (evaluation).
import { Tensor, noGrad, stack, tensor, tidy } from '../torch';
import { Rng, mixSeed } from './rng';
import type { BatchTransform } from './transforms';

export interface MlmMaskOptions {
  /** Share of the maskable tokens chosen (default 0.15). */
  prob?: number;
  /** The [MASK] id. */
  maskId: number;
  /** Random replacements are drawn uniformly from the ids [0, vocabSize) that are not special. */
  vocabSize: number;
  /** Ids never chosen nor drawn ([PAD], [CLS], [SEP], [MASK], [UNK]...). */
  specialIds: readonly number[];
}

/** The label of positions without a prediction (cross-entropy's ignore index). */
export const IGNORE_INDEX = -100;

/**
 * BERT's masking of one row: each non-special token is chosen with probability `prob`; a chosen token becomes [MASK]
 * (80 %), a random non-special id (10 %) or stays (10 %), and its label is the original id (-100 elsewhere).
 */
export function maskTokens(ids: readonly number[], rng: Rng, o: MlmMaskOptions): { input: number[]; labels: number[] } {
  const prob = o.prob ?? 0.15;
  if (!(prob > 0 && prob < 1)) throw new Error(`maskTokens: prob must be in (0, 1), got ${prob}`);
  const special = new Set(o.specialIds);
  if (!special.has(o.maskId)) special.add(o.maskId);
  const input = ids.slice(), labels = ids.map(() => IGNORE_INDEX);
  for (let i = 0; i < ids.length; i++) {
    if (special.has(ids[i])) continue;
    if (rng.random() >= prob) continue;
    labels[i] = ids[i];
    const r = rng.random();
    if (r < 0.8) input[i] = o.maskId;
    else if (r < 0.9) {
      let id: number;
      do id = rng.int(o.vocabSize);
      while (special.has(id));
      input[i] = id;
    }
  }
  return { input, labels };
}

interface RowBatchOptions {
  batchSize: number;
  shuffle?: boolean;
  seed?: number;
  /** Padding id (default 0). */
  padId?: number;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
  device?: string;
}

function checkRows(rows: readonly (readonly number[])[], what: string): void {
  if (!rows.length) throw new Error(`${what}: no rows`);
  rows.forEach((r, i) => {
    if (!r.length) throw new Error(`${what}: row ${i} is empty`);
  });
}

/** Rows padded on the right to the longest: ids [B, S] and the attention mask [B, S] (int64). */
export function padRows(rows: readonly (readonly number[])[], padId = 0, device?: string): { ids: Tensor; mask: Tensor } {
  const S = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * S).fill(BigInt(padId)), mask = new BigInt64Array(rows.length * S);
  rows.forEach((r, i) => r.forEach((v, j) => { ids[i * S + j] = BigInt(v); mask[i * S + j] = 1n; }));
  const mk = (a: BigInt64Array) => tensor(a, { dtype: 'int64', ...(device ? { device } : {}) }).view(rows.length, S);
  return tidy(() => ({ ids: mk(ids), mask: mk(mask) }));
}

abstract class RowBatches {
  readonly batchSize: number;
  readonly seed: number;
  readonly padId: number;
  protected epoch = 0;
  private order: Int32Array | null = null;
  constructor(readonly rows: readonly (readonly number[])[], protected readonly o: RowBatchOptions, what: string) {
    checkRows(rows, what);
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`${what}: batchSize must be a positive integer, got ${o.batchSize}`);
    this.batchSize = o.batchSize;
    this.seed = o.seed ?? 0;
    this.padId = o.padId ?? 0;
  }
  get length(): number {
    return this.o.dropLast ? Math.floor(this.rows.length / this.batchSize) : Math.ceil(this.rows.length / this.batchSize);
  }
  setEpoch(epoch: number): void {
    if (epoch !== this.epoch) this.order = null;
    this.epoch = epoch;
  }
  /** The rows of batch `b` of the current epoch. */
  protected indicesOf(b: number): Int32Array {
    if (!Number.isInteger(b) || b < 0 || b >= this.length) throw new Error(`batch ${b} out of range (${this.length} batches)`);
    if (!this.order) this.order = this.o.shuffle === false ? Int32Array.from(this.rows.keys()) : new Rng(mixSeed(this.seed, this.epoch)).permutation(this.rows.length);
    return this.order.slice(b * this.batchSize, Math.min((b + 1) * this.batchSize, this.rows.length));
  }
}

export interface MlmBatchOptions extends RowBatchOptions, MlmMaskOptions {
  /**
   * `x` as [B, 2, S]: the masked ids and, second, 1 where a prediction is made (labels ≠ -100), for a model that runs
   * its vocabulary projection at those positions only (PackedMaskedLM of tsdistill/distill). Default false: [B, S].
   */
  packed?: boolean;
}

/** Masked-LM batches over token-id rows (with their [CLS] … [SEP]); see the file header. */
export class MlmBatches extends RowBatches {
  constructor(rows: readonly (readonly number[])[], readonly mask: MlmBatchOptions) {
    super(rows, mask, 'MlmBatches');
  }
  batchAt(b: number): { x: Tensor; y: Tensor; indices: Int32Array; taps: Record<string, Tensor>; dispose(): void } {
    const indices = this.indicesOf(b);
    const rng = new Rng(mixSeed(mixSeed(this.seed ^ 0x6d6c6d, this.epoch), b));
    const masked = [...indices].map((i) => maskTokens(this.rows[i], rng, this.mask));
    const { ids, mask } = padRows(masked.map((m) => m.input), this.padId, this.o.device);
    const labels = padRows(masked.map((m) => m.labels), IGNORE_INDEX, this.o.device);
    labels.mask.dispose();
    const x = this.mask.packed ? tidy(() => stack([ids, labels.ids.ne(IGNORE_INDEX).to('int64')], 1)) : ids;
    if (x !== ids) ids.dispose();
    return { x, y: labels.ids, indices, taps: { attention_mask: mask }, dispose: () => { x.dispose(); labels.ids.dispose(); mask.dispose(); } };
  }
}

/** Classification batches of token-id rows and their labels; see the file header. */
export class TextBatches extends RowBatches {
  constructor(rows: readonly (readonly number[])[], readonly labels: readonly number[], o: RowBatchOptions) {
    super(rows, o, 'TextBatches');
    if (labels.length !== rows.length) throw new Error(`TextBatches: ${rows.length} rows but ${labels.length} labels`);
  }
  batchAt(b: number): { x: Tensor; y: Tensor; indices: Int32Array; taps: Record<string, Tensor>; dispose(): void } {
    const indices = this.indicesOf(b);
    const { ids, mask } = padRows([...indices].map((i) => this.rows[i]), this.padId, this.o.device);
    const y = tensor(BigInt64Array.from([...indices].map((i) => BigInt(this.labels[i]))), { dtype: 'int64', ...(this.o.device ? { device: this.o.device } : {}) });
    return { x: ids, y, indices, taps: { attention_mask: mask }, dispose: () => { ids.dispose(); y.dispose(); mask.dispose(); } };
  }
}

/** Cuts a batch of right-padded ids [B, S] to its longest row (all-padding columns at the end removed). */
export function trimPadding(padId = 0): BatchTransform {
  return {
    name: `trim-padding(${padId})`,
    random: false,
    apply: (x: Tensor) =>
      noGrad(() => {
        // right padding: the longest row is the largest count of non-padding ids
        const n = Math.max(1, x.ne(padId).sum(1).max().item() as number);
        return n === x.shape[1] ? x.clone() : x.narrow(1, 0, n).contiguous();
      }),
  };
}
