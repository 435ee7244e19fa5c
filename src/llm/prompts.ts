// Prompt files for `generate`: JSONL ({"prompt": ...} or {"messages": [...]}, optional id and any other fields),
// TSV with a header line, or plain text with one prompt per line. Errors name the file and line.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** One prompt: its stable id, the messages sent (before the system prompt), and the record it came from. */
export interface PromptRecord {
  id: string;
  messages: ChatMessage[];
  /** The input record's fields (JSONL object, TSV row, or { prompt } for text); verifiers read e.g. `answer` here. */
  record: Record<string, unknown>;
  /** `file:line` of the prompt. */
  where: string;
}

export interface ReadPromptsOptions {
  format?: 'jsonl' | 'tsv' | 'text';
  promptField?: string;
  idField?: string;
  limit?: number;
}

export function formatOf(file: string): 'jsonl' | 'tsv' | 'text' {
  const ext = path.extname(file).toLowerCase();
  return ext === '.jsonl' || ext === '.json' || ext === '.ndjson' ? 'jsonl' : ext === '.tsv' ? 'tsv' : 'text';
}

const hash = (s: string, len: number) => crypto.createHash('sha256').update(s).digest('hex').slice(0, len);

/** The id of sample `k` of prompt `promptId`: stable across runs, independent of order and concurrency. */
export function sampleId(promptId: string, k: number): string {
  return hash(`${promptId}\u0000${k}`, 20);
}

function checkMessages(v: unknown, where: string, field: string): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new Error(`${where}: '${field}' must be a non-empty array of {role, content}`);
  v.forEach((m, i) => {
    if (m === null || typeof m !== 'object' || typeof (m as any).role !== 'string' || typeof (m as any).content !== 'string')
      throw new Error(`${where}: ${field}[${i}] must be an object with string 'role' and 'content'`);
  });
  return v as ChatMessage[];
}

/** Reads prompts; prompts without an id get a hash of their messages (a repeated prompt gets `-2`, `-3`, … appended). */
export function readPrompts(file: string, opts: ReadPromptsOptions = {}): PromptRecord[] {
  const format = opts.format ?? formatOf(file);
  const promptField = opts.promptField ?? 'prompt';
  const idField = opts.idField ?? 'id';
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read the prompts: ${(e as Error).message}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split(/\r?\n/);
  const raw: { where: string; messages: ChatMessage[]; record: Record<string, unknown>; id?: string }[] = [];
  if (format === 'jsonl') {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      const where = `${file}:${i + 1}`;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new Error(`${where}: not valid JSON: ${(e as Error).message}`);
      }
      if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new Error(`${where}: expected a JSON object`);
      const r = rec as Record<string, unknown>;
      let messages: ChatMessage[];
      if (r.messages !== undefined) messages = checkMessages(r.messages, where, 'messages');
      else if (typeof r[promptField] === 'string') messages = [{ role: 'user', content: r[promptField] as string }];
      else throw new Error(`${where}: expected a string '${promptField}' or a 'messages' array (keys: ${Object.keys(r).join(', ') || 'none'})`);
      const id = r[idField];
      if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') throw new Error(`${where}: '${idField}' must be a string or a number`);
      raw.push({ where, messages, record: r, id: id === undefined ? undefined : String(id) });
    });
  } else if (format === 'tsv') {
    const first = lines.findIndex((l) => l.trim() !== '');
    if (first < 0) throw new Error(`${file}: empty TSV file (expected a header line naming the columns)`);
    const names = lines[first].split('\t');
    if (!names.includes(promptField)) throw new Error(`${file}:${first + 1}: no column '${promptField}' in the header (columns: ${names.join(', ')})`);
    for (let i = first + 1; i < lines.length; i++) {
      if (!lines[i].trim()) continue;
      const fields = lines[i].split('\t');
      if (fields.length !== names.length) throw new Error(`${file}:${i + 1}: expected ${names.length} tab-separated fields, found ${fields.length}`);
      const r: Record<string, unknown> = Object.fromEntries(names.map((n, j) => [n, fields[j]]));
      const id = names.includes(idField) ? String(r[idField]) : undefined;
      raw.push({ where: `${file}:${i + 1}`, messages: [{ role: 'user', content: r[promptField] as string }], record: r, id });
    }
  } else {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      raw.push({ where: `${file}:${i + 1}`, messages: [{ role: 'user', content: line }], record: { [promptField]: line } });
    });
  }
  const limited = opts.limit !== undefined ? raw.slice(0, opts.limit) : raw;
  const seen = new Map<string, string>();
  const counts = new Map<string, number>();
  return limited.map((p) => {
    let id: string;
    if (p.id !== undefined) {
      if (seen.has(p.id)) throw new Error(`${p.where}: prompt id '${p.id}' repeats the one at ${seen.get(p.id)}`);
      id = p.id;
    } else {
      const base = `p-${hash(JSON.stringify(p.messages), 16)}`;
      const c = (counts.get(base) ?? 0) + 1;
      counts.set(base, c);
      id = c === 1 ? base : `${base}-${c}`;
      if (seen.has(id)) throw new Error(`${p.where}: generated prompt id '${id}' collides with an explicit id at ${seen.get(id)}`);
    }
    seen.set(id, p.where);
    return { id, messages: p.messages, record: p.record, where: p.where };
  });
}
