// A BERT-style WordPiece tokenizer.json built from a corpus. `@huggingface/tokenizers` (the pure-JS library the
// project reads tokenizer.json with) cannot train, so the vocabulary is chosen by frequency: the special tokens, every
// character seen (as a word start and as a `##` continuation), then the most frequent whole words and the most
// frequent word endings (`##ing`, `##ly`, ...) in the ratio `suffixShare`. Text goes through the same BertNormalizer
// (lower case, accents stripped) and BertPreTokenizer (whitespace and punctuation) that the written tokenizer.json
// names, so a word of the vocabulary is always one token and any other word is split greedily into known pieces, as
// WordPiece does. This is not WordPiece's likelihood-driven training; it is a valid WordPiece vocabulary.
import { BertNormalizer, BertPreTokenizer } from '@huggingface/tokenizers';

export const BERT_SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

export interface WordPieceBuildOptions {
  /** Size of the vocabulary, special tokens and characters included (default 8000). */
  vocabSize?: number;
  /** Words and endings seen fewer times are left out (default 2). */
  minFreq?: number;
  /** Share of the word slots given to word endings (default 0.15). */
  suffixShare?: number;
  /** Longest word ending considered, in characters (default 6). */
  maxSuffix?: number;
}

export interface WordPieceFiles {
  /** The tokenizer.json object (WordPiece model, BertNormalizer, BertPreTokenizer, [CLS] … [SEP] post-processor). */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json (the special tokens). */
  config: Record<string, unknown>;
  /** The vocabulary in id order. */
  vocab: string[];
}

/** The words of a text as the written tokenizer sees them (normalised, then split on whitespace and punctuation). */
export function bertWords(text: string): string[] {
  return preTokenizer.pre_tokenize_text(normalizer.normalize(text)) as string[];
}
// strip_accents null: accents are stripped when lowercasing, as transformers' BertNormalizer does
const normalizer = new BertNormalizer({ type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, lowercase: true } as ConstructorParameters<typeof BertNormalizer>[0]);
const preTokenizer = new BertPreTokenizer();

/** Builds a WordPiece vocabulary from `texts` (see the file header); the result is deterministic for given texts. */
export function buildWordPiece(texts: Iterable<string>, opts: WordPieceBuildOptions = {}): WordPieceFiles {
  const size = opts.vocabSize ?? 8000, minFreq = opts.minFreq ?? 2, share = opts.suffixShare ?? 0.15, maxSuffix = opts.maxSuffix ?? 6;
  if (!Number.isInteger(size) || size < BERT_SPECIAL_TOKENS.length + 1) throw new Error(`buildWordPiece: vocabSize must be an integer above ${BERT_SPECIAL_TOKENS.length}, got ${size}`);
  if (!(share >= 0 && share < 1)) throw new Error(`buildWordPiece: suffixShare must be in [0, 1), got ${share}`);
  const words = new Map<string, number>();
  for (const t of texts) for (const w of bertWords(t)) words.set(w, (words.get(w) ?? 0) + 1);
  const chars = new Map<string, number>();
  const suffixes = new Map<string, number>();
  for (const [w, n] of words) {
    const cs = [...w];
    for (const c of cs) chars.set(c, (chars.get(c) ?? 0) + n);
    for (let k = 2; k <= Math.min(maxSuffix, cs.length - 2); k++) {
      const s = '##' + cs.slice(cs.length - k).join('');
      suffixes.set(s, (suffixes.get(s) ?? 0) + n);
    }
  }
  // most frequent first, ties broken by the string so that the order does not depend on the corpus order
  const byCount = (m: Map<string, number>) => [...m].filter(([, n]) => n >= minFreq).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([s]) => s);
  const vocab: string[] = [...BERT_SPECIAL_TOKENS];
  const seen = new Set<string>(vocab);
  const add = (s: string) => {
    if (vocab.length < size && !seen.has(s)) {
      seen.add(s);
      vocab.push(s);
    }
  };
  const charList = [...chars].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
  for (const c of charList) add(c);
  for (const c of charList) add('##' + c);
  const left = size - vocab.length;
  const nSuffix = Math.floor(left * share);
  for (const s of byCount(suffixes).slice(0, nSuffix)) add(s);
  for (const w of byCount(words)) add(w);
  for (const s of byCount(suffixes)) add(s); // when the corpus has fewer words than slots
  const special = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const ids = Object.fromEntries(vocab.map((t, i) => [t, i]));
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BERT_SPECIAL_TOKENS.map((t, i) => special(t, i)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [ids['[CLS]']], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [ids['[SEP]']], tokens: ['[SEP]'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: ids },
  };
  const config = {
    do_lower_case: true, model_max_length: 512, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]',
    mask_token: '[MASK]', tokenizer_class: 'BertTokenizer', clean_up_tokenization_spaces: true,
  };
  return { tokenizer, config, vocab };
}
