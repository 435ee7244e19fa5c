// A word-level vocabulary for small text classifiers: lower-cased words (letters and digits, with an apostrophe
// suffix such as "n't" or "'s" kept as its own token) and single punctuation marks, ids by descending frequency.
// Id 0 is padding, id 1 stands for words outside the vocabulary. Saved as JSON beside the model that uses it.
import * as fs from 'node:fs';
import { Tensor, tensor, writeFileAtomic } from '../torch';

export const PAD = '<pad>';
export const UNK = '<unk>';

/** Splits text into lower-case word and punctuation tokens. */
export function wordTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+|'[\p{L}]+|[^\s\p{L}\p{N}]/gu) ?? [];
}

export interface VocabBuildOptions {
  /** Most tokens kept (the two specials included); default 20,000. */
  maxSize?: number;
  /** Fewest occurrences for a word to be kept; default 1. */
  minFreq?: number;
}

export class WordVocab {
  private readonly index = new Map<string, number>();
  constructor(readonly tokens: string[]) {
    if (tokens[0] !== PAD || tokens[1] !== UNK) throw new Error(`WordVocab: tokens must start with '${PAD}', '${UNK}'`);
    tokens.forEach((t, i) => {
      if (this.index.has(t)) throw new Error(`WordVocab: token '${t}' appears twice (ids ${this.index.get(t)} and ${i})`);
      this.index.set(t, i);
    });
  }

  /** Counts the tokens of `texts` and keeps the most frequent (ties in first-seen order). */
  static build(texts: Iterable<string>, opts: VocabBuildOptions = {}): WordVocab {
    const maxSize = opts.maxSize ?? 20000;
    const minFreq = opts.minFreq ?? 1;
    if (!Number.isInteger(maxSize) || maxSize < 3) throw new Error(`WordVocab.build: maxSize must be an integer >= 3, got ${maxSize}`);
    if (!Number.isInteger(minFreq) || minFreq < 1) throw new Error(`WordVocab.build: minFreq must be a positive integer, got ${minFreq}`);
    const counts = new Map<string, number>();
    for (const t of texts) for (const w of wordTokens(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const kept = [...counts.entries()]
      .filter(([w, c]) => c >= minFreq && w !== PAD && w !== UNK)
      .sort((a, b) => b[1] - a[1]) // stable: ties keep first-seen order
      .slice(0, maxSize - 2)
      .map(([w]) => w);
    return new WordVocab([PAD, UNK, ...kept]);
  }

  get size(): number {
    return this.tokens.length;
  }

  /** Token ids of `text`, cut to `maxLen` when given; an empty text gives [unk] so no row is all padding. */
  encode(text: string, maxLen?: number): number[] {
    const ids = wordTokens(text).map((w) => this.index.get(w) ?? 1);
    if (ids.length === 0) ids.push(1);
    return maxLen !== undefined ? ids.slice(0, maxLen) : ids;
  }

  /** int64 [N, maxLen] ids, padded with 0 at the end and truncated to maxLen. */
  encodeBatch(texts: string[], maxLen: number): Tensor {
    if (!Number.isInteger(maxLen) || maxLen < 1) throw new Error(`WordVocab.encodeBatch: maxLen must be a positive integer, got ${maxLen}`);
    const out = new BigInt64Array(texts.length * maxLen);
    texts.forEach((t, r) => this.encode(t, maxLen).forEach((id, c) => (out[r * maxLen + c] = BigInt(id))));
    return tensor(out, { shape: [texts.length, maxLen] });
  }

  /** The words of `ids` (padding dropped). */
  decode(ids: ArrayLike<number | bigint>): string[] {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      if (id !== 0) out.push(this.tokens[id] ?? UNK);
    }
    return out;
  }

  save(file: string): void {
    writeFileAtomic(file, JSON.stringify({ kind: 'word-vocab', tokens: this.tokens }));
  }

  static load(file: string): WordVocab {
    let j: { kind?: string; tokens?: unknown };
    try {
      j = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`WordVocab.load(${file}): ${(e as Error).message}`);
    }
    if (j.kind !== 'word-vocab' || !Array.isArray(j.tokens) || !j.tokens.every((t) => typeof t === 'string'))
      throw new Error(`WordVocab.load(${file}): not a word vocabulary (expected {"kind": "word-vocab", "tokens": [...strings]})`);
    return new WordVocab(j.tokens as string[]);
  }
}
