// Tokenizers from a transformers directory: tokenizer.json (WordPiece, byte-level BPE, Unigram / SentencePiece, with
// their normalizers, pre-tokenizers, post-processors and decoders) through `@huggingface/tokenizers`, a maintained
// pure-JS implementation, and chat templates (`chat_template` of tokenizer_config.json) through `@huggingface/jinja`.
// Nothing is downloaded: the files are read from the directory.
//
// `HfTokenizer` has the shape of the decoder tokenizers of src/llm/tokenizer.ts (name, vocabSize, eosId, encode,
// decode, specialId), so `generate`, `serve` and `sft` code can take it; unlike those, text that spells an added
// token (`<|im_end|>`) is encoded as that token, as transformers does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { readJsonFile } from './config';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const SPECIAL_TOKENS_MAP_FILE = 'special_tokens_map.json';

/** A chat message; other fields (tool calls, names) are passed to the template as they are. */
export interface ChatMessage {
  role: string;
  content: string;
}

export interface EncodeOptions {
  /** Add the post-processor's special tokens ([CLS] … [SEP], a BOS, …). Default false. */
  addSpecialTokens?: boolean;
  /** The second text of a pair (token type 1 for BERT). */
  pair?: string;
}

export interface BatchEncoding {
  /** [B][S] ids, padded on the right with the pad id to the longest row. */
  ids: number[][];
  /** [B][S], 1 for tokens and 0 for padding. */
  attentionMask: number[][];
  /** [B][S] segment ids (0 for the first text, 1 for the second of a pair; 0 on padding). */
  tokenTypeIds: number[][];
}

type Obj = Record<string, unknown>;

/** A special token of tokenizer_config.json: a string or an AddedToken object `{content, ...}`. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as Obj).content === 'string') return (v as Obj).content as string;
  return null;
}

export class HfTokenizer {
  readonly name: string;
  readonly vocabSize: number;
  /** eos_token's id, else sep_token's (BERT), else pad_token's; -1 when the tokenizer names none of them. */
  readonly eosId: number;
  /** pad_token's id (padding of `batch`), else eosId. */
  readonly padId: number;
  private readonly tok: Tokenizer;
  private readonly specialIds: Set<number>;
  /** `name` defaults to `hf:` + the directory of `source` (what `createTokenizer` of src/llm takes back). */
  constructor(readonly tokenizerJson: Obj, readonly tokenizerConfig: Obj = {}, readonly source = TOKENIZER_FILE, name?: string) {
    if (tokenizerJson === null || typeof tokenizerJson !== 'object' || tokenizerJson.model == null)
      throw new Error(`${source}: not a tokenizer.json (no 'model')`);
    const type = (tokenizerJson.model as Obj).type;
    if (type !== undefined && !['WordPiece', 'BPE', 'Unigram', 'WordLevel'].includes(type as string))
      throw new Error(`${source}: model.type ${JSON.stringify(type)} is not supported (WordPiece, BPE, Unigram, WordLevel)`);
    try {
      this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
    }
    this.name = name ?? `hf:${path.dirname(source)}`;
    const vocab = this.tok.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const idOf = (key: string): number | null => {
      const t = tokenText(tokenizerConfig[key]);
      if (t === null) return null;
      const id = this.tok.token_to_id(t);
      if (id === undefined) throw new Error(`${source}: ${key} ${JSON.stringify(t)} of tokenizer_config.json is not in the vocabulary`);
      return id;
    };
    this.eosId = idOf('eos_token') ?? idOf('sep_token') ?? idOf('pad_token') ?? -1;
    this.padId = idOf('pad_token') ?? this.eosId;
    this.specialIds = new Set([...this.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
  }

  /**
   * Reads `dir`/tokenizer.json and, when present, tokenizer_config.json (its special tokens and chat template) and
   * special_tokens_map.json (special tokens that tokenizer_config.json does not set).
   */
  static fromDir(dir: string): HfTokenizer {
    const file = path.join(dir, TOKENIZER_FILE);
    if (!fs.existsSync(file)) {
      const sp = fs.existsSync(path.join(dir, 'tokenizer.model')) ? ' (tokenizer.model, a SentencePiece file, is not read: convert it to tokenizer.json)' : '';
      throw new Error(`${dir}: no ${TOKENIZER_FILE}${sp}`);
    }
    const json = readJsonFile(file) as Obj;
    const cfgFile = path.join(dir, TOKENIZER_CONFIG_FILE);
    const mapFile = path.join(dir, SPECIAL_TOKENS_MAP_FILE);
    const cfg = fs.existsSync(cfgFile) ? (readJsonFile(cfgFile) as Obj) : {};
    const map = fs.existsSync(mapFile) ? (readJsonFile(mapFile) as Obj) : {};
    for (const [obj, f] of [[cfg, cfgFile], [map, mapFile]] as const)
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${f}: expected a JSON object`);
    return new HfTokenizer(json, { ...map, ...cfg }, file);
  }

  /** Text to ids (without special tokens unless `addSpecialTokens`). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.encodeFull(text, opts).ids;
  }
  /** Ids and token type ids of a text or a pair. */
  encodeFull(text: string, opts: EncodeOptions = {}): { ids: number[]; tokenTypeIds: number[]; tokens: string[] } {
    if (typeof text !== 'string') throw new TypeError(`${this.name}: encode expects a string, got ${typeof text}`);
    const e = this.tok.encode(text, { text_pair: opts.pair ?? null, add_special_tokens: opts.addSpecialTokens ?? false, return_token_type_ids: true });
    return { ids: e.ids, tokenTypeIds: e.token_type_ids ?? e.ids.map(() => 0), tokens: e.tokens };
  }
  /** The tokens (strings) of a text, without special tokens. */
  tokenize(text: string): string[] {
    return this.tok.tokenize(text);
  }
  /** Ids to text; special tokens are kept unless `skipSpecialTokens`. */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`${this.name}: decode: id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    if (ids.length === 0) return ''; // the library refuses an empty list (an answer that stops at once)
    return this.tok.decode(ids as number[], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }
  /** The id of a token given by its text (special or not), or null. */
  specialId(text: string): number | null {
    return this.tok.token_to_id(text) ?? null;
  }
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * Encodes texts (or pairs) with special tokens for an encoder: rows longer than `maxLength` are cut to it, keeping
   * their last token when it is special (the final [SEP]); rows are padded on the right with `padId`.
   */
  batch(texts: readonly (string | readonly [string, string])[], opts: { maxLength?: number; addSpecialTokens?: boolean } = {}): BatchEncoding {
    const max = opts.maxLength;
    if (max !== undefined && !(Number.isInteger(max) && max > 0)) throw new Error(`${this.name}: maxLength must be a positive integer, got ${max}`);
    if (this.padId < 0) throw new Error(`${this.name}: batch needs a pad_token (or eos_token) in tokenizer_config.json`);
    const rows = texts.map((t) => {
      let { ids, tokenTypeIds } = typeof t === 'string'
        ? this.encodeFull(t, { addSpecialTokens: opts.addSpecialTokens ?? true })
        : this.encodeFull(t[0], { pair: t[1], addSpecialTokens: opts.addSpecialTokens ?? true });
      if (max !== undefined && ids.length > max) {
        const last = ids[ids.length - 1];
        const keepLast = this.specialIds.has(last) && max > 1;
        ids = keepLast ? [...ids.slice(0, max - 1), last] : ids.slice(0, max);
        tokenTypeIds = keepLast ? [...tokenTypeIds.slice(0, max - 1), tokenTypeIds[tokenTypeIds.length - 1]] : tokenTypeIds.slice(0, max);
      }
      return { ids, tokenTypeIds };
    });
    const S = Math.max(0, ...rows.map((r) => r.ids.length));
    const pad = (a: number[], v: number) => [...a, ...Array(S - a.length).fill(v)];
    return {
      ids: rows.map((r) => pad(r.ids, this.padId)),
      attentionMask: rows.map((r) => pad(r.ids.map(() => 1), 0)),
      tokenTypeIds: rows.map((r) => pad(r.tokenTypeIds, 0)),
    };
  }

  /** The chat template of tokenizer_config.json (`name` picks one of a list of named templates), or null. */
  chatTemplate(name = 'default'): string | null {
    const t = this.tokenizerConfig.chat_template;
    if (t == null) return null;
    if (typeof t === 'string') return t;
    if (Array.isArray(t)) {
      const hit = t.find((x) => x !== null && typeof x === 'object' && (x as Obj).name === name);
      if (hit === undefined) throw new Error(`${this.source}: no chat template named '${name}' (have: ${t.map((x) => (x as Obj).name).join(', ')})`);
      return (hit as Obj).template as string;
    }
    throw new Error(`${this.source}: chat_template must be a string or a list of {name, template}`);
  }

  /**
   * Renders messages with the chat template, as transformers' `apply_chat_template(tokenize=False)`: the special
   * tokens (bos_token, eos_token, ...) are in the template's context, with `add_generation_prompt` and any `extra`.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean; templateName?: string; extra?: Obj } = {}): string {
    const src = this.chatTemplate(opts.templateName);
    if (src === null) throw new Error(`${this.source}: tokenizer_config.json has no chat_template`);
    for (const [i, m] of messages.entries())
      if (m === null || typeof m !== 'object' || typeof m.role !== 'string' || typeof m.content !== 'string')
        throw new Error(`applyChatTemplate: message ${i} must be {role: string, content: string}, got ${JSON.stringify(m)}`);
    const specials: Obj = {};
    for (const k of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) specials[k] = tokenText(this.tokenizerConfig[k]) ?? '';
    let template: Template;
    try {
      template = new Template(src);
    } catch (e) {
      throw new Error(`${this.source}: chat_template does not parse: ${(e as Error).message}`, { cause: e });
    }
    return template.render({ ...specials, ...opts.extra, messages, add_generation_prompt: opts.addGenerationPrompt ?? false });
  }

  /** The files that recreate this tokenizer (for `saveHfModel`'s `files`). */
  files(): Record<string, unknown> {
    return { [TOKENIZER_FILE]: this.tokenizerJson, [TOKENIZER_CONFIG_FILE]: this.tokenizerConfig };
  }
}
