// Tokenizers for decoder models and the chat template the `serve` and `sft` commands share.
//
// - `bytes`: one id per UTF-8 byte (0–255) plus four special tokens: 256 <|endoftext|>, 257 <|system|>,
//   258 <|user|>, 259 <|assistant|> (vocabulary 260). For tiny models trained here.
// - `gpt2` (alias `r50k_base`), `p50k_base`, `cl100k_base`, `o200k_base`: byte-level BPE through the `gpt-tokenizer`
//   package, whose merge tables ship inside the package (no download). `gpt2` has 50,257 ids, <|endoftext|> = 50256.
// - `hf:DIR`: the tokenizer.json (and tokenizer_config.json) of a Hugging Face directory (src/models/hf/tokenizer.ts).
//
// Chat template (both kinds; role markers are single special ids for `bytes`, plain text for the BPE encodings):
//
//   <|system|>\n{system}\n          (only when there is a system message)
//   <|user|>\n{user}\n
//   <|assistant|>\n{answer}<|endoftext|>
//
// Several user/assistant turns repeat the last two lines. A prompt to be answered ends with `<|assistant|>\n`; the
// answer ends with <|endoftext|>, the stop token.

import { HfTokenizer } from '../models/hf/tokenizer';

export interface Tokenizer {
  /** The name that recreates it with `createTokenizer`. */
  readonly name: string;
  readonly vocabSize: number;
  /** The end-of-text id: it ends answers and separates packed documents. */
  readonly eosId: number;
  /** Text to ids; special-token text in `text` is encoded as ordinary text. */
  encode(text: string): number[];
  /** Ids to text (special ids as their text); a lone part of a multi-byte character decodes as U+FFFD. */
  decode(ids: readonly number[]): string;
  /** The id of a special token given by its text, or null when this tokenizer has none. */
  specialId(text: string): number | null;
}

export const EOT = '<|endoftext|>';
const BYTE_SPECIALS = [EOT, '<|system|>', '<|user|>', '<|assistant|>'];

/** One id per UTF-8 byte plus <|endoftext|>, <|system|>, <|user|>, <|assistant|> (ids 256–259). */
export class ByteTokenizer implements Tokenizer {
  readonly name = 'bytes';
  readonly vocabSize = 256 + BYTE_SPECIALS.length;
  readonly eosId = 256;
  private readonly dec = new TextDecoder('utf-8', { fatal: false });
  encode(text: string): number[] {
    return [...Buffer.from(text, 'utf8')];
  }
  decode(ids: readonly number[]): string {
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length) out += this.dec.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`ByteTokenizer.decode: id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
      if (id < 256) bytes.push(id);
      else {
        flush();
        out += BYTE_SPECIALS[id - 256];
      }
    }
    flush();
    return out;
  }
  specialId(text: string): number | null {
    const i = BYTE_SPECIALS.indexOf(text);
    return i < 0 ? null : 256 + i;
  }
}

interface GptEncodingApi {
  encode(text: string, opts?: { allowedSpecial?: Set<string>; disallowedSpecial?: Set<string> }): number[];
  decode(ids: Iterable<number>): string;
  vocabularySize: number;
}

const BPE_ENCODINGS: Record<string, () => GptEncodingApi> = {
  r50k_base: () => require('gpt-tokenizer/encoding/r50k_base'),
  p50k_base: () => require('gpt-tokenizer/encoding/p50k_base'),
  cl100k_base: () => require('gpt-tokenizer/encoding/cl100k_base'),
  o200k_base: () => require('gpt-tokenizer/encoding/o200k_base'),
};
const ALIASES: Record<string, string> = { gpt2: 'r50k_base' };

/** Byte-level BPE (tiktoken's encodings, through `gpt-tokenizer`). */
export class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  private readonly api: GptEncodingApi;
  constructor(readonly name: string) {
    const enc = ALIASES[name] ?? name;
    const load = BPE_ENCODINGS[enc];
    if (!load) throw new Error(`BpeTokenizer: unknown encoding '${name}' (known: ${tokenizerNames().filter((n) => n !== 'bytes').join(', ')})`);
    this.api = load();
    this.eosId = this.api.encode(EOT, { allowedSpecial: new Set([EOT]) })[0];
    // the encodings' special ids sit above the merge ranks; the vocabulary must cover the end-of-text id
    this.vocabSize = Math.max(this.api.vocabularySize, this.eosId + 1);
  }
  encode(text: string): number[] {
    return this.api.encode(text, { disallowedSpecial: new Set() });
  }
  decode(ids: readonly number[]): string {
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`BpeTokenizer(${this.name}).decode: id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return this.api.decode(ids);
  }
  specialId(text: string): number | null {
    return text === EOT ? this.eosId : null;
  }
}

/** The names `createTokenizer` accepts. */
export function tokenizerNames(): string[] {
  return ['bytes', ...Object.keys(ALIASES), ...Object.keys(BPE_ENCODINGS)];
}

/** `bytes`, `gpt2`, `r50k_base`, `p50k_base`, `cl100k_base` or `o200k_base`. */
export function createTokenizer(name: string): Tokenizer {
  if (name === 'bytes') return new ByteTokenizer();
  if (ALIASES[name] || BPE_ENCODINGS[name]) return new BpeTokenizer(name);
  if (name.startsWith('hf:')) return HfTokenizer.fromDir(name.slice(3));
  throw new Error(`unknown tokenizer '${name}' (known: ${tokenizerNames().join(', ')}, or hf:DIR for a tokenizer.json directory)`);
}

/** Throws unless teacher and student have the same vocabulary size (token-level KD compares distributions over it). */
export function checkSameVocabulary(teacher: { vocabSize: number; name?: string }, student: { vocabSize: number; name?: string }, where = 'token-level KD'): void {
  if (teacher.vocabSize !== student.vocabSize)
    throw new Error(
      `${where}: the teacher's vocabulary has ${teacher.vocabSize} tokens${teacher.name ? ` (${teacher.name})` : ''} and the student's ` +
        `${student.vocabSize}${student.name ? ` (${student.name})` : ''}; token-level distillation needs one tokenizer for both`,
    );
}

// ---------------------------------------------------------------- chat template

export interface ChatTurn {
  role: string;
  content: string;
}

function marker(tok: Tokenizer, role: string): number[] {
  const text = `<|${role}|>`;
  const id = tok.specialId(text);
  return id === null ? tok.encode(text) : [id];
}

/**
 * Encodes a conversation with the chat template. `mask[i]` is 1 where token i is part of an assistant answer
 * (its content and the <|endoftext|> that ends it): the tokens a fine-tuning loss is taken on. With
 * `generationPrompt`, the ids end with the `<|assistant|>\n` that asks for the next answer.
 */
export function encodeChat(tok: Tokenizer, messages: readonly ChatTurn[], opts: { generationPrompt?: boolean } = {}): { ids: number[]; mask: number[] } {
  const ids: number[] = [];
  const mask: number[] = [];
  const push = (xs: number[], m: 0 | 1) => {
    for (const x of xs) {
      ids.push(x);
      mask.push(m);
    }
  };
  messages.forEach((msg, i) => {
    if (msg === null || typeof msg !== 'object' || typeof msg.content !== 'string')
      throw new Error(`chat template: message ${i} must be {role, content} with string content, got ${JSON.stringify(msg)}`);
    if (msg.role !== 'system' && msg.role !== 'user' && msg.role !== 'assistant')
      throw new Error(`chat template: message ${i} has role '${msg.role}' (system, user or assistant)`);
    push(marker(tok, msg.role), 0);
    push(tok.encode('\n'), 0);
    if (msg.role === 'assistant') {
      push(tok.encode(msg.content), 1);
      push([tok.eosId], 1);
    } else push(tok.encode(`${msg.content}\n`), 0);
  });
  if (opts.generationPrompt) {
    push(marker(tok, 'assistant'), 0);
    push(tok.encode('\n'), 0);
  }
  return { ids, mask };
}

/**
 * The ids of a prompt to be answered: a tokenizer.json tokenizer with a chat template renders the messages with it
 * (as transformers' apply_chat_template with add_generation_prompt); the others use the template above.
 */
export function chatPromptIds(tok: Tokenizer, messages: ChatTurn[]): number[] {
  if (tok instanceof HfTokenizer && tok.chatTemplate() !== null) return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }));
  return encodeChat(tok, messages, { generationPrompt: true }).ids;
}

/**
 * Turns ids into text as they arrive: `push(id)` returns the new text, holding back a trailing partial UTF-8
 * character until it is complete.
 */
export class StreamDecoder {
  private ids: number[] = [];
  private emitted = 0;
  constructor(private readonly tok: Tokenizer) {}
  push(id: number): string {
    this.ids.push(id);
    let text = this.tok.decode(this.ids);
    if (text.endsWith('\uFFFD')) text = text.slice(0, -1);
    if (text.length <= this.emitted) return '';
    const out = text.slice(this.emitted);
    this.emitted = text.length;
    return out;
  }
  /** Whatever is left (a dangling partial character as U+FFFD). */
  end(): string {
    const text = this.tok.decode(this.ids);
    const out = text.slice(this.emitted);
    this.emitted = text.length;
    return out;
  }
}
