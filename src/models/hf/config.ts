// A Hugging Face `config.json`, read with checks: every getter names the file and the key at fault. The raw object
// is kept as it was read, so that saving a model writes back every key, those this code does not use included.
import * as fs from 'node:fs';

export type HfConfigObject = Record<string, unknown>;

/** Reads and parses a JSON file, naming it in any error. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
}

export class HfConfig {
  constructor(readonly raw: HfConfigObject, readonly source = 'config.json') {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${source}: expected a JSON object`);
  }
  static read(file: string): HfConfig {
    return new HfConfig(readJsonFile(file) as HfConfigObject, file);
  }
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }
  private get(key: string, fallback: unknown): unknown {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) throw new Error(`${this.source}: missing key '${key}'`);
      return fallback;
    }
    return v;
  }
  /** A positive integer (or a non-negative one with `min: 0`). */
  int(key: string, fallback?: number, min = 1): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw new Error(`${this.source}: '${key}' must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  }
  /** A positive number. */
  num(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !(v > 0)) throw new Error(`${this.source}: '${key}' must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(key: string, fallback?: boolean): boolean {
    const v = this.get(key, fallback);
    if (typeof v !== 'boolean') throw new Error(`${this.source}: '${key}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  /** A string, one of `allowed` when given. */
  str(key: string, fallback?: string, allowed?: readonly string[]): string {
    const v = this.get(key, fallback);
    if (typeof v !== 'string') throw new Error(`${this.source}: '${key}' must be a string, got ${JSON.stringify(v)}`);
    if (allowed && !allowed.includes(v)) throw new Error(`${this.source}: '${key}' is ${JSON.stringify(v)}; supported: ${allowed.join(', ')}`);
    return v;
  }
  /** The number of labels of a classification head: `num_labels`, else the size of `id2label`, else 2 (as transformers). */
  numLabels(): number {
    if (this.has('num_labels')) return this.int('num_labels');
    const m = this.raw.id2label;
    if (m !== undefined && m !== null) {
      if (typeof m !== 'object' || Array.isArray(m)) throw new Error(`${this.source}: 'id2label' must be an object`);
      const n = Object.keys(m).length;
      if (n === 0) throw new Error(`${this.source}: 'id2label' is empty`);
      return n;
    }
    return 2;
  }
  /** Refuses a key whose value this implementation does not support (anything but the given neutral values). */
  refuse(key: string, neutral: unknown[], why: string): void {
    const v = this.raw[key];
    if (v === undefined || neutral.some((n) => JSON.stringify(n) === JSON.stringify(v))) return;
    throw new Error(`${this.source}: '${key}' = ${JSON.stringify(v)} is not supported (${why})`);
  }
}
