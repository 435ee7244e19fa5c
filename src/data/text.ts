// Line-oriented text data: TSV and JSONL readers with line-numbered errors, and the SST-2 and AG News loaders for
// the reference copies in ../shared/data (relative to the project root).
import * as fs from 'node:fs';
import * as path from 'node:path';

function readText(file: string, who: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${who}(${file}): cannot read the file: ${(e as Error).message}`);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export interface TsvOptions {
  /** The first line names the columns. */
  header?: boolean;
  /**
   * Without a header: the names of the fields, in order (required). With a header: the columns to keep (each must
   * appear in the header); default all.
   */
  columns?: string[];
}

/**
 * Reads a tab-separated file into rows of named string fields. Fields are split on every tab (no quoting, as in the
 * GLUE files); a line with the wrong number of fields is an error naming the file and line. Empty lines are skipped.
 */
export function readTsv(file: string, opts: TsvOptions = {}): Record<string, string>[] {
  return tsvRows(file, opts).map((r) => r.row);
}

/** readTsv with the 1-based line number of each row. */
function tsvRows(file: string, opts: TsvOptions): { line: number; row: Record<string, string> }[] {
  const lines = splitLines(readText(file, 'readTsv'));
  let names: string[];
  let first = 0;
  if (opts.header) {
    if (lines.length === 0) throw new Error(`${file}:1: expected a header line, the file is empty`);
    names = lines[0].split('\t');
    const dup = names.find((c, i) => names.indexOf(c) !== i);
    if (dup !== undefined) throw new Error(`${file}:1: column '${dup}' appears twice in the header`);
    first = 1;
  } else {
    if (!opts.columns || opts.columns.length === 0) throw new Error(`readTsv(${file}): give the column names ({ columns }) or { header: true }`);
    names = opts.columns;
  }
  const keep = opts.header && opts.columns ? opts.columns : names;
  const at = keep.map((c) => {
    const j = names.indexOf(c);
    if (j < 0) throw new Error(`${file}:1: no column '${c}' in the header (columns: ${names.join(', ')})`);
    return j;
  });
  const rows: { line: number; row: Record<string, string> }[] = [];
  for (let i = first; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const f = lines[i].split('\t');
    if (f.length !== names.length)
      throw new Error(`${file}:${i + 1}: expected ${names.length} tab-separated fields (${names.join(', ')}), got ${f.length}`);
    const r: Record<string, string> = {};
    for (let k = 0; k < keep.length; k++) r[keep[k]] = f[at[k]];
    rows.push({ line: i + 1, row: r });
  }
  return rows;
}

/** Reads a JSON Lines file (one JSON value per line); blank lines are skipped; errors name the file and line. */
export function readJsonl<T = unknown>(file: string): T[] {
  const out: T[] = [];
  splitLines(readText(file, 'readJsonl')).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON: ${(e as Error).message}`);
    }
  });
  return out;
}

/** The project root: the nearest folder above this file whose package.json is the tsdistill package. */
function projectRoot(): string | null {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'tsdistill') return dir;
      } catch {
        // not a readable package.json: keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * The shared reference data folder: $TSDISTILL_SHARED_DATA when set, else ../shared/data next to the project root
 * (or next to `root` when given). Null when it does not exist.
 */
export function sharedDataDir(root?: string): string | null {
  const env = root === undefined ? process.env.TSDISTILL_SHARED_DATA : undefined;
  const base = root ?? projectRoot();
  const dir = env ? path.resolve(env) : base ? path.resolve(base, '..', 'shared', 'data') : null;
  return dir && fs.existsSync(dir) ? dir : null;
}

export interface TextExample {
  text: string;
  label: number;
}

export const SST2_CLASSES = ['negative', 'positive'];
/** AG News classes in the order of the official label ids 1..4 (label k+1 -> index k). */
export const AG_NEWS_CLASSES = ['World', 'Sports', 'Business', 'Sci/Tech'];

function sharedFile(dir: string | null, rel: string, what: string): string {
  if (!dir) throw new Error(`${what} not found: the shared data folder (../shared/data next to the project, or $TSDISTILL_SHARED_DATA) is absent`);
  const file = path.join(dir, rel);
  if (!fs.existsSync(file)) throw new Error(`${what} not found: ${file} does not exist`);
  return file;
}

/**
 * SST-2 from shared/data/sst2: `train` and `dev` (together the GLUE training set) and `test` (the labelled GLUE dev
 * set, 872 sentences). Labels: 0 negative, 1 positive. Sentences keep their tokenised form, trailing space trimmed.
 */
export function loadSst2(split: 'train' | 'dev' | 'test', dir = sharedDataDir()): TextExample[] {
  if (!['train', 'dev', 'test'].includes(split)) throw new Error(`loadSst2: split must be 'train', 'dev' or 'test', got '${split}'`);
  const file = sharedFile(dir, path.join('sst2', `${split}.tsv`), 'SST-2');
  return tsvRows(file, { header: true, columns: ['sentence', 'label'] }).map(({ line, row: r }) => {
    if (r.label !== '0' && r.label !== '1') throw new Error(`${file}:${line}: label must be 0 or 1, got '${r.label}'`);
    return { text: r.sentence.trim(), label: Number(r.label) };
  });
}

/**
 * AG News from shared/data/agnews: `test` (the official 7,600) or `train-subset` (10,000 training samples). The files
 * hold class names (World, Sports, Business, Sci/Tech); labels are their indices in AG_NEWS_CLASSES. Numeric labels
 * 1..4 (the original CSV convention) are accepted too.
 */
export function loadAgNews(split: 'train-subset' | 'test', dir = sharedDataDir()): TextExample[] {
  if (split !== 'train-subset' && split !== 'test') throw new Error(`loadAgNews: split must be 'train-subset' or 'test', got '${split}'`);
  const file = sharedFile(dir, path.join('agnews', `${split}.tsv`), 'AG News');
  return tsvRows(file, { columns: ['text', 'label'] }).map(({ line, row: r }) => {
    let label = AG_NEWS_CLASSES.indexOf(r.label);
    if (label < 0 && /^[1-4]$/.test(r.label)) label = Number(r.label) - 1;
    if (label < 0) throw new Error(`${file}:${line}: unknown AG News label '${r.label}' (expected one of ${AG_NEWS_CLASSES.join(', ')})`);
    return { text: r.text, label };
  });
}
