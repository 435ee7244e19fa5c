// Text to token ids for classifiers: a tokenizer (bytes, words, or a Hugging Face `tokenizer.json` with a WordLevel or
// WordPiece model), optionally followed by hashed n-grams of its tokens (fastText's bag of n-grams), in padded rows.
//
// Id layout, the same for every tokenizer: id 0 is padding and never a real token, so a padded row says where it ends.
//   bytes      1..256 are the UTF-8 bytes 0..255 (a byte b is id b + 1)
//   words      a WordVocab built from the training texts (0 <pad>, 1 <unk>, then words by frequency)
//   file       the tokenizer.json's own ids, shifted by 1 when its id 0 is a real token (not [PAD] / <pad>)
// With `ngrams: N > 1`, each run of n = 2..N consecutive tokens is hashed (FNV-1a over the token ids) into one of
// `buckets` ids placed after the tokenizer's ids. A row is the tokens (at most `maxLen`) followed by their n-grams.
import * as fs from 'node:fs';
import { Tensor, noGrad, tensor, tidy } from '../torch';
import { TensorDataset } from './dataset';
import { WordVocab } from './vocab';
import type { TextExample } from './text';

export const TEXT_TOKENIZERS = ['bytes', 'words'] as const;

export interface TextEncoderSpec {
  /** 'bytes', 'words', or the path of a tokenizer.json. */
  tokenizer: string;
  /** Tokens kept per text (default 128). */
  maxLen?: number;
  /** Longest hashed n-gram (default 1: tokens only). */
  ngrams?: number;
  /** Hash buckets of the n-grams (default 65536; used when ngrams > 1). */
  buckets?: number;
  /** 'words': most words kept, <pad> and <unk> included (default 20000). */
  vocabSize?: number;
}

/** Turns texts into rows of ids; id 0 (`padId`) is padding only. */
export class TextIdEncoder {
  readonly maxLen: number;
  readonly ngrams: number;
  readonly buckets: number;
  /** Ids of the tokenizer's tokens (padding included); n-gram buckets follow. */
  readonly tokenIds: number;
  readonly padId = 0;
  private constructor(
    readonly tokenizer: string,
    private readonly tokenize: (text: string) => number[],
    tokenIds: number,
    spec: TextEncoderSpec,
    /** What `describe()` records of the tokenizer (its vocabulary for 'words'). */
    private readonly recorded: Record<string, unknown>,
  ) {
    this.tokenIds = tokenIds;
    this.maxLen = spec.maxLen ?? 128;
    this.ngrams = spec.ngrams ?? 1;
    this.buckets = this.ngrams > 1 ? spec.buckets ?? 65536 : 0;
    const int = (v: number, min: number, key: string) => {
      if (!Number.isInteger(v) || v < min) throw new Error(`text encoder: ${key} must be an integer >= ${min}, got ${v}`);
    };
    int(this.maxLen, 1, 'maxLen');
    int(this.ngrams, 1, 'ngrams');
    if (this.ngrams > 1) int(this.buckets, 1, 'buckets');
  }

  /**
   * The encoder a spec describes; 'words' builds its vocabulary from `trainTexts` (the training split), so the same
   * data gives the same ids.
   */
  static create(spec: TextEncoderSpec, trainTexts: readonly string[] = []): TextIdEncoder {
    const t = spec.tokenizer;
    if (t === 'bytes') return new TextIdEncoder('bytes', (s) => [...Buffer.from(s, 'utf8')].map((b) => b + 1), 257, spec, { kind: 'bytes' });
    if (t === 'words') {
      const vocab = WordVocab.build(trainTexts, { maxSize: spec.vocabSize ?? 20000 });
      return new TextIdEncoder('words', (s) => vocab.encode(s), vocab.size, spec, { kind: 'words', size: vocab.size });
    }
    if (!t.endsWith('.json')) throw new Error(`text encoder: tokenizer must be 'bytes', 'words' or the path of a tokenizer.json, got '${t}'`);
    const hf = readTokenizerJson(t);
    return new TextIdEncoder(t, hf.encode, hf.size, spec, { kind: 'tokenizer.json', file: t, size: hf.size });
  }

  /** All ids: padding, tokens, n-gram buckets (a model's vocabulary size). */
  get vocabSize(): number {
    return this.tokenIds + this.buckets;
  }
  /** Ids per row: the tokens and every n-gram of a text of maxLen tokens. */
  get rowLength(): number {
    let n = 0;
    for (let k = 1; k <= this.ngrams; k++) n += Math.max(0, this.maxLen - k + 1);
    return n;
  }

  /** The ids of one text: its tokens (at most maxLen; an empty text gives no ids), then its hashed n-grams. */
  encode(text: string): number[] {
    const tokens = this.tokenize(text).slice(0, this.maxLen);
    const out = tokens.slice();
    for (let n = 2; n <= this.ngrams; n++)
      for (let i = 0; i + n <= tokens.length; i++) {
        let h = 0x811c9dc5 ^ n;
        for (let k = 0; k < n; k++) {
          let v = tokens[i + k];
          for (let b = 0; b < 4; b++, v >>>= 8) h = Math.imul(h ^ (v & 0xff), 0x01000193);
        }
        out.push(this.tokenIds + ((h >>> 0) % this.buckets));
      }
    return out;
  }

  /**
   * int64 [N, length] rows padded with 0 (default length: the longest encoded text, at least 1). A text with no
   * tokens becomes a row of padding.
   */
  encodeBatch(texts: readonly string[], length?: number): Tensor {
    const rows = texts.map((t) => this.encode(t));
    const L = length ?? Math.max(1, ...rows.map((r) => r.length));
    const out = new BigInt64Array(texts.length * L);
    rows.forEach((r, i) => {
      for (let j = 0; j < Math.min(L, r.length); j++) out[i * L + j] = BigInt(r[j]);
    });
    return tensor(out, { shape: [texts.length, L] });
  }

  /** What identifies this encoder (cache keys, model cards). */
  describe(): Record<string, unknown> {
    return { ...this.recorded, maxLen: this.maxLen, ngrams: this.ngrams, buckets: this.buckets, vocabSize: this.vocabSize, padId: this.padId };
  }
}

/** Labelled texts as token ids: int64 ids [N, L] (0 = padding), int64 labels [N], the class names and the raw texts. */
export class TextDataset extends TensorDataset {
  constructor(readonly name: string, ids: Tensor, labels: Tensor, readonly classes: string[], readonly texts: readonly string[], readonly encoder: TextIdEncoder) {
    if (ids.dtype !== 'int64' || ids.ndim !== 2) throw new Error(`${name}: ids must be int64 [N, L], got ${ids.dtype} [${ids.shape}]`);
    if (labels.dtype !== 'int64' || labels.ndim !== 1) throw new Error(`${name}: labels must be int64 [N], got ${labels.dtype} [${labels.shape}]`);
    if (texts.length !== ids.shape[0]) throw new Error(`${name}: ${texts.length} texts for ${ids.shape[0]} rows of ids`);
    super(ids, labels);
  }
  /** Encodes labelled texts (rows padded to the encoder's row length). */
  static fromExamples(name: string, examples: readonly TextExample[], classes: string[], encoder: TextIdEncoder): TextDataset {
    examples.forEach((e, i) => {
      if (!Number.isInteger(e.label) || e.label < 0 || e.label >= classes.length) throw new Error(`${name}: example ${i} has label ${e.label}, not a class index (${classes.length} classes)`);
    });
    const texts = examples.map((e) => e.text);
    return tidy(() =>
      noGrad(() => new TextDataset(name, encoder.encodeBatch(texts, encoder.rowLength), tensor(BigInt64Array.from(examples, (e) => BigInt(e.label))), classes, texts, encoder)),
    );
  }
  get ids(): Tensor {
    return this.tensors[0];
  }
  get labels(): Tensor {
    return this.tensors[1];
  }
  override subset(indices: ArrayLike<number>, name = `${this.name}-subset`): TextDataset {
    const [ids, labels] = this.gatherRows(indices, `${this.name}.subset`);
    return new TextDataset(name, ids, labels, this.classes, Array.from(indices, (i) => this.texts[i]), this.encoder);
  }
  /** The texts of the rows at `indices` (before tokenisation), for teachers that take raw samples. */
  rawSamples(indices: ArrayLike<number>): string[] {
    return Array.from(indices, (i, k) => {
      if (!Number.isInteger(i) || i < 0 || i >= this.texts.length) throw new Error(`${this.name}.rawSamples: index ${i} (position ${k}) out of range [0, ${this.texts.length})`);
      return this.texts[i];
    });
  }
}

// ---------------------------------------------------------------------------------------------- tokenizer.json

interface HfTokenizer {
  size: number;
  encode(text: string): number[];
}

/** A Hugging Face tokenizer.json with a WordLevel or WordPiece model (BERT's normaliser and pre-tokeniser rules). */
export function readTokenizerJson(file: string): HfTokenizer {
  let j: any;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the tokenizer: ${(e as Error).message}`, { cause: e });
  }
  const model = j?.model;
  const type = model?.type ?? (model?.continuing_subword_prefix !== undefined ? 'WordPiece' : undefined);
  if (type !== 'WordLevel' && type !== 'WordPiece')
    throw new Error(`${file}: model.type '${type ?? '(missing)'}' is not supported (supported: WordLevel, WordPiece; or use tokenizer 'bytes' or 'words')`);
  const vocab = model.vocab;
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) throw new Error(`${file}: model.vocab must be an object { token: id }`);
  const ids = new Map<string, number>();
  let size = 0;
  for (const [tok, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${file}: model.vocab['${tok}'] must be a non-negative integer id, got ${JSON.stringify(id)}`);
    ids.set(tok, id as number);
    size = Math.max(size, (id as number) + 1);
  }
  for (const t of j.added_tokens ?? []) if (Number.isInteger(t?.id)) size = Math.max(size, t.id + 1);
  const unkToken: string = model.unk_token ?? '[UNK]';
  const unk = ids.get(unkToken);
  if (unk === undefined) throw new Error(`${file}: the unknown token '${unkToken}' (model.unk_token) is not in model.vocab`);
  // id 0 may be padding already; otherwise every id moves up by one so that 0 is free for padding
  const zero = [...ids.entries()].find(([, id]) => id === 0)?.[0];
  const shift = zero === '[PAD]' || zero === '<pad>' ? 0 : 1;
  const lower = j.normalizer?.lowercase ?? (j.normalizer?.type === 'BertNormalizer' ? true : false);
  const prefix: string = model.continuing_subword_prefix ?? '##';
  const maxChars: number = model.max_input_chars_per_word ?? 100;
  const words = (text: string) => {
    let s = text.normalize('NFC');
    if (lower) s = s.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
    return s.match(/[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ?? [];
  };
  const piece = (w: string, out: number[]) => {
    if (type === 'WordLevel' || w.length > maxChars) {
      out.push(type === 'WordLevel' ? ids.get(w) ?? unk : unk);
      return;
    }
    const start = out.length;
    for (let i = 0; i < w.length; ) {
      let j2 = w.length, found: number | undefined;
      for (; j2 > i; j2--) {
        found = ids.get((i > 0 ? prefix : '') + w.slice(i, j2));
        if (found !== undefined) break;
      }
      if (found === undefined) {
        out.length = start;
        out.push(unk);
        return;
      }
      out.push(found);
      i = j2;
    }
  };
  return {
    size: size + shift,
    encode: (text) => {
      const out: number[] = [];
      for (const w of words(text)) piece(w, out);
      return shift ? out.map((x) => x + shift) : out;
    },
  };
}

