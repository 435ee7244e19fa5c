// Line-oriented text data: TSV and JSONL readers with line-numbered errors, SST-2 and AG News loaders.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Reads a TSV file into rows of named columns. With `header`, names come from the first line. */
export function readTsv(file: string, opts: { header?: boolean; columns?: string[] } = {}): Record<string, string>[] {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  let cols = opts.columns;
  let first = 0;
  if (opts.header) {
    const names = lines[0]?.split('\t') ?? [];
    cols = cols ?? names;
    first = 1;
  }
  if (!cols) throw new Error(`readTsv(${file}): give column names or header: true`);
  const rows: Record<string, string>[] = [];
  for (let i = first; i < lines.length; i++) {
    const f = lines[i].split('\t');
    if (f.length !== cols.length) throw new Error(`${file}:${i + 1}: expected ${cols.length} tab-separated fields (${cols.join(', ')}), got ${f.length}`);
    const r: Record<string, string> = {};
    cols.forEach((c, j) => (r[c] = f[j]));
    rows.push(r);
  }
  return rows;
}

/** Reads a JSON Lines file; blank lines are skipped. */
export function readJsonl<T = any>(file: string): T[] {
  const out: T[] = [];
  fs.readFileSync(file, 'utf8').split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON: ${(e as Error).message}`);
    }
  });
  return out;
}

/** Where the shared reference data lives relative to the project (../shared/data), or null when absent. */
export function sharedDataDir(root = path.resolve(__dirname, '..', '..', '..')): string | null {
  const dir = path.resolve(root, '..', 'shared', 'data');
  return fs.existsSync(dir) ? dir : null;
}

export interface TextExample {
  text: string;
  label: number;
}

/** SST-2 from shared/data/sst2 (`train`, `dev`, or `test` = the labelled GLUE dev set). */
export function loadSst2(split: 'train' | 'dev' | 'test', dir = sharedDataDir()): TextExample[] {
  if (!dir) throw new Error('SST-2 not found: ../shared/data is absent');
  const file = path.join(dir, 'sst2', `${split}.tsv`);
  return readTsv(file, { header: true }).map((r, i) => {
    const label = Number(r.label);
    if (label !== 0 && label !== 1) throw new Error(`${file}:${i + 2}: label must be 0 or 1, got '${r.label}'`);
    return { text: r.sentence, label };
  });
}

/** AG News from shared/data/agnews (`train-subset` or `test`), labels 0..3. */
export function loadAgNews(split: 'train-subset' | 'test', dir = sharedDataDir()): TextExample[] {
  if (!dir) throw new Error('AG News not found: ../shared/data is absent');
  const file = path.join(dir, 'agnews', `${split}.tsv`);
  return readTsv(file, { columns: ['text', 'label'] }).map((r) => ({ text: r.text, label: Number(r.label) }));
}
