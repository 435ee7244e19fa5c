// Curation of generated samples: reasoning handling, the normalized text used for deduplication, and verifiers
// for rejection sampling (a registry by name; `exact-match` is built in).
import type { ChatMessage, PromptRecord } from './prompts';
import type { Completion } from './client';
import { nearest } from './config';

/** A reasoning-model answer split into its reasoning and its final answer. */
export interface SplitAnswer {
  reasoning?: string;
  answer: string;
}

/**
 * Separates reasoning from the answer: a reasoning_content field when the server sent one, else a leading
 * `<think>…</think>` block in the content, or everything before a lone `</think>` (chat templates that open the
 * block in the prompt).
 */
export function splitReasoning(c: Pick<Completion, 'content' | 'reasoning'>): SplitAnswer {
  const content = c.content;
  let reasoning = c.reasoning?.trim() ? c.reasoning : undefined;
  let answer = content;
  const open = /^\s*<think>/.exec(content);
  const close = content.indexOf('</think>');
  if (close >= 0 && (open || !content.slice(0, close).includes('<think>'))) {
    const inner = content.slice(open ? open[0].length : 0, close);
    reasoning = reasoning ? `${reasoning}\n${inner}` : inner;
    answer = content.slice(close + '</think>'.length);
  } else if (open && close < 0) {
    // an unfinished reasoning block (cut off by max tokens): all reasoning, no answer
    reasoning = (reasoning ? `${reasoning}\n` : '') + content.slice(open[0].length);
    answer = '';
  }
  return { ...(reasoning !== undefined ? { reasoning: reasoning.trim() } : {}), answer: answer.trim() };
}

/** The assistant message as written for a reasoning mode. */
export function assistantMessage(s: SplitAnswer, mode: 'keep' | 'strip' | 'split'): ChatMessage {
  if (s.reasoning === undefined || mode === 'strip') return { role: 'assistant', content: s.answer };
  if (mode === 'split') return { role: 'assistant', content: s.answer, reasoning_content: s.reasoning };
  return { role: 'assistant', content: `<think>\n${s.reasoning}\n</think>\n\n${s.answer}` };
}

/** Text normalized for exact deduplication: Unicode NFC, whitespace runs collapsed, trimmed. */
export function normalizeText(s: string): string {
  return s.normalize('NFC').replace(/\s+/g, ' ').trim();
}

/** What a verifier sees of a sample. */
export interface Sample {
  id: string;
  promptId: string;
  /** Sample index within its prompt (0 … n-1). */
  index: number;
  /** The final answer, reasoning removed. */
  answer: string;
  reasoning?: string;
  /** The conversation as it will be written, assistant message last. */
  messages: ChatMessage[];
  finishReason: string | null;
}

/** Accepts or rejects a sample for rejection sampling. `prompt.record` holds the input fields (e.g. `answer`). */
export type Verifier = (sample: Sample, prompt: PromptRecord) => boolean | Promise<boolean>;

/** Options a verifier factory receives from the configuration's curation section. */
export interface VerifierOptions {
  answerField: string;
}
export type VerifierFactory = (o: VerifierOptions) => Verifier;

const verifiers = new Map<string, VerifierFactory>();

/** Registers a verifier by name (a plain verifier function, or a factory taking the curation options). */
export function registerVerifier(name: string, v: Verifier | { factory: VerifierFactory }): void {
  if (!name) throw new Error('registerVerifier: a name is required');
  verifiers.set(name, typeof v === 'function' ? () => v : v.factory);
}

export function verifierNames(): string[] {
  registerBuiltinVerifiers();
  return [...verifiers.keys()].sort();
}

/** The verifier registered as `name`; an unknown name is refused with the closest known one. */
export function getVerifier(name: string, o: VerifierOptions): Verifier {
  registerBuiltinVerifiers();
  const f = verifiers.get(name);
  if (!f) {
    const names = [...verifiers.keys()];
    throw new Error(`unknown verifier '${name}'; did you mean '${nearest(name, names)}'? (known: ${names.join(', ')}; a --plugin can registerVerifier)`);
  }
  return f(o);
}

/**
 * The final answer of a response: the last `\boxed{…}`, else the text after the last "answer:" / "answer is" /
 * "####", else the last number, else the last non-empty line.
 */
export function extractFinalAnswer(text: string): string {
  const boxed = [...text.matchAll(/\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}/g)];
  if (boxed.length) return boxed[boxed.length - 1][1].trim();
  const marked = [...text.matchAll(/(?:####|\banswer\s*(?:is|:)\s*:?)\s*([^\n]+)/gi)];
  if (marked.length) return marked[marked.length - 1][1].trim();
  const nums = text.match(/-?\d[\d,]*(?:\.\d+)?/g);
  if (nums) return nums[nums.length - 1];
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : '';
}

/** Answers compared loosely: case, surrounding punctuation and `$`, thousands separators, and numeric form. */
export function sameAnswer(a: string, b: string): boolean {
  const norm = (s: string) => s.trim().replace(/^[\s$*"'`(]+|[\s.$*"'`)!]+$/g, '').replace(/\s+/g, ' ').toLowerCase();
  const x = norm(a);
  const y = norm(b);
  if (x === y) return true;
  const num = (s: string) => (/^-?\d[\d,]*(\.\d+)?$/.test(s) ? Number(s.replace(/,/g, '')) : NaN);
  const nx = num(x);
  const ny = num(y);
  return Number.isFinite(nx) && Number.isFinite(ny) && nx === ny;
}

let builtinsRegistered = false;
/** Registers the built-in verifiers (idempotent). */
export function registerBuiltinVerifiers(): void {
  if (builtinsRegistered) return;
  builtinsRegistered = true;
  registerVerifier('exact-match', {
    factory: ({ answerField }) => (sample, prompt) => {
      const expected = prompt.record[answerField];
      if (expected === undefined || expected === null) throw new Error(`${prompt.where}: exact-match needs the field '${answerField}' in every prompt record`);
      return sameAnswer(extractFinalAnswer(sample.answer), String(expected));
    },
  });
}
