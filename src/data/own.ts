// Data sets of the user's own, described by a spec instead of registered in code: an image folder (a sub-folder per
// class), a CSV or JSONL list of image paths and labels, an IDX pair (images + labels), a TSV or JSONL text set, or a
// .tar.gz of any of these (extracted once into the cache folder, keyed by the archive's checksum). Either `train` and
// `test` sources, or one source (`path`, or `train` alone) and a `split` fraction held out for testing with a `seed`.
//
// `ownDataset(spec)` reads the data once to learn what a registration needs (kind, classes, image shape, the training
// split's mean and standard deviation, cached), checks it (train and test have the same classes, no class folder is
// empty), and registers it under a name derived from the spec; `loadDataset(name)` then loads it like a built-in set.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../torch/atomic';
import { closest } from '../util/closest';
import { ImageDataset } from './dataset';
import { defaultCacheDir, extractTarGz, loadImageFolder, loadImageList, readImageList, sortedLabels, type ImageChannels } from './imagefolder';
import { loadIdxPair } from './mnist';
import { readIdx } from './idx';
import { Rng, mixSeed } from './rng';
import { readJsonl } from './text';
import { TextIdEncoder, type TextEncoderSpec } from './text-encoder';
import { type DatasetInfo, type DatasetSplit, getDataset, hasDataset, registerDataset } from './registry';

/** One source: a path (folder, .csv, .jsonl, .tsv, .tar.gz), or an IDX pair. */
export type DataSource = string | { images: string; labels: string };

export interface OwnDataSpec extends Partial<TextEncoderSpec> {
  /** A short name for messages and model cards (default: the source's file or folder name). */
  name?: string;
  train?: DataSource;
  test?: DataSource;
  /** One source split into train and test by `split`. */
  path?: DataSource;
  /** Fraction of each class held out for testing when there is no `test` source (0 < split < 1). */
  split?: number;
  /** Seed of the split (default 0). */
  seed?: number;
  /** A .tar.gz whose extracted folder the other paths are relative to (default: the paths are files of their own). */
  archive?: string;
  /** Class names in label order (default: the data's class folders or labels, sorted). */
  classes?: string[];
  /** Images: 3 (RGB, default) or 1 (grayscale). */
  channels?: ImageChannels;
  /** Images: per-channel mean and standard deviation in [0, 1] (default: computed from the training split, cached). */
  mean?: number[];
  std?: number[];
  /** Text: the column (TSV header) or key (JSONL) of the text (default 'text', or 'sentence' when there is no 'text'). */
  textColumn?: string;
  /** Text: the column or key of the label (default 'label'). */
  labelColumn?: string;
  /** Where extracted archives and statistics go (default: defaultCacheDir()). */
  cacheDir?: string;
}

export const OWN_DATA_KEYS = [
  'name', 'train', 'test', 'path', 'split', 'seed', 'archive', 'classes', 'channels', 'mean', 'std', 'textColumn', 'labelColumn', 'cacheDir',
  'tokenizer', 'maxLen', 'ngrams', 'buckets', 'vocabSize',
] as const;
const TEXT_KEYS = ['tokenizer', 'maxLen', 'ngrams', 'buckets', 'vocabSize', 'textColumn', 'labelColumn'] as const;
const IMAGE_KEYS = ['channels', 'mean', 'std'] as const;

type Format = 'folder' | 'list' | 'idx' | 'text';

/** A source resolved to absolute paths and a format. */
interface Resolved {
  format: Format;
  /** For messages. */
  where: string;
  file: string;
  labels?: string;
}

// ---------------------------------------------------------------------------------------------- archives

/** sha256 of a file, streamed in 1 MiB pieces. */
function fileSha256(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * Extracts a .tar.gz into `<cacheDir>/archives/<sha256 prefix>` once (written under a temporary name and renamed when
 * complete, so a crash never leaves a half folder behind) and returns the folder; a folder holding nothing but one
 * sub-folder is entered.
 */
export function extractArchiveCached(archive: string, cacheDir = defaultCacheDir()): string {
  if (!fs.existsSync(archive)) throw new Error(`archive ${archive} does not exist`);
  const dest = extractTarGz(archive, path.join(cacheDir, 'archives', fileSha256(archive).slice(0, 32)));
  const entries = fs.readdirSync(dest).filter((e) => !e.startsWith('.'));
  if (entries.length === 1 && fs.statSync(path.join(dest, entries[0])).isDirectory()) return path.join(dest, entries[0]);
  return dest;
}

const isArchive = (p: string) => /\.(tar\.gz|tgz)$/i.test(p);

// ---------------------------------------------------------------------------------------------- sources

function resolveSource(src: DataSource, key: string, base: string, cacheDir: string): Resolved {
  if (src && typeof src === 'object') {
    const extra = Object.keys(src).filter((k) => k !== 'images' && k !== 'labels');
    if (extra.length || typeof src.images !== 'string' || typeof src.labels !== 'string')
      throw new Error(`data.${key}: an IDX pair is { images: FILE, labels: FILE }, got ${JSON.stringify(src)}`);
    const images = path.resolve(base, src.images), labels = path.resolve(base, src.labels);
    for (const [k, f] of [['images', images], ['labels', labels]]) if (!fs.existsSync(f)) throw new Error(`data.${key}.${k}: file not found: ${f}`);
    return { format: 'idx', where: `data.${key} (${images})`, file: images, labels };
  }
  if (typeof src !== 'string' || !src) throw new Error(`data.${key}: expected a path or { images, labels }, got ${JSON.stringify(src)}`);
  let file = path.resolve(base, src);
  if (!fs.existsSync(file)) throw new Error(`data.${key}: not found: ${file}`);
  if (isArchive(file)) file = extractArchiveCached(file, cacheDir);
  const where = `data.${key} (${file})`;
  if (fs.statSync(file).isDirectory()) return { format: 'folder', where, file };
  if (/\.csv$/i.test(file)) return { format: 'list', where, file };
  if (/\.tsv$/i.test(file)) return { format: 'text', where, file };
  if (/\.jsonl$/i.test(file)) {
    const first = readJsonl<Record<string, unknown>>(file)[0];
    if (!first || typeof first !== 'object') throw new Error(`${where}: the JSONL file is empty or holds no objects`);
    return { format: 'path' in first || 'image' in first || 'file' in first ? 'list' : 'text', where, file };
  }
  throw new Error(
    `${where}: unknown kind of data (expected a folder of class folders, a .csv or .jsonl image list, a .tsv or .jsonl text file, ` +
      'a .tar.gz of one of these, or an IDX pair { images, labels })',
  );
}

interface Rows {
  texts?: string[];
  /** Label names as written in the source. */
  labels: string[];
}

/** Rows of a text source: TSV (with a header naming the columns, or `text<TAB>label` lines) or JSONL objects. */
function readTextRows(r: Resolved, spec: OwnDataSpec): Rows {
  const texts: string[] = [], labels: string[] = [];
  const labelCol = spec.labelColumn ?? 'label';
  if (/\.jsonl$/i.test(r.file)) {
    readJsonl<Record<string, unknown>>(r.file).forEach((o, i) => {
      const textCol = spec.textColumn ?? ('text' in o ? 'text' : 'sentence');
      const t = o?.[textCol], l = o?.[labelCol];
      if (typeof t !== 'string' || (typeof l !== 'string' && typeof l !== 'number'))
        throw new Error(`${r.file}:${i + 1}: expected {"${textCol}": string, "${labelCol}": string or number}`);
      texts.push(t);
      labels.push(String(l));
    });
  } else {
    const lines = fs.readFileSync(r.file, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/);
    const head = lines[0]?.split('\t') ?? [];
    const textCol = spec.textColumn ?? (head.includes('text') ? 'text' : 'sentence');
    const header = head.includes(labelCol) && head.includes(textCol);
    if (!header && (spec.textColumn || spec.labelColumn)) throw new Error(`${r.file}:1: no header naming the columns '${textCol}' and '${labelCol}' (header: ${head.join(', ')})`);
    const [ti, li, width] = header ? [head.indexOf(textCol), head.indexOf(labelCol), head.length] : [0, 1, 2];
    for (let i = header ? 1 : 0; i < lines.length; i++) {
      if (lines[i] === '') continue;
      const f = lines[i].split('\t');
      if (f.length !== width) throw new Error(`${r.file}:${i + 1}: expected ${width} tab-separated fields (${header ? head.join(', ') : 'text, label'}), got ${f.length}`);
      texts.push(f[ti].trim());
      labels.push(f[li].trim());
    }
  }
  if (!texts.length) throw new Error(`${r.where}: no examples`);
  return { texts, labels };
}

/** The class names a source declares or holds, without decoding images. */
function sourceClasses(r: Resolved, spec: OwnDataSpec): string[] {
  switch (r.format) {
    case 'folder': {
      const dirs = fs.readdirSync(r.file, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
      return dirs.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }
    case 'list':
      return sortedLabels(readImageList(r.file).map((x) => x.label));
    case 'text':
      return sortedLabels(readTextRows(r, spec).labels);
    case 'idx': {
      const lab = readIdx(r.labels!);
      return sortedLabels(Array.from(lab.data as ArrayLike<number>, String));
    }
  }
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Stratified split: about `fraction` of each class's rows (at least one when the class has two or more) go to test. */
export function stratifiedSplit(labels: ArrayLike<number>, fraction: number, seed: number): { train: number[]; test: number[] } {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!byClass.has(l)) byClass.set(l, []);
    byClass.get(l)!.push(i);
  }
  const train: number[] = [], test: number[] = [];
  for (const [l, rows] of [...byClass.entries()].sort((a, b) => a[0] - b[0])) {
    const perm = new Rng(mixSeed(seed, l)).permutation(rows.length);
    const k = rows.length < 2 ? 0 : Math.min(rows.length - 1, Math.max(1, Math.round(rows.length * fraction)));
    perm.forEach((p, j) => (j < k ? test : train).push(rows[p]));
  }
  return { train: train.sort((a, b) => a - b), test: test.sort((a, b) => a - b) };
}

// ---------------------------------------------------------------------------------------------- statistics

/** Per-channel mean and (population) standard deviation of uint8 images [N, C, H, W] scaled to [0, 1]. */
export function imageStats(ds: ImageDataset): { mean: number[]; std: number[] } {
  const [n, c, h, w] = ds.images.shape;
  const data = ds.images.data() as Uint8Array;
  const plane = h * w;
  const mean: number[] = [], std: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    let s = 0, s2 = 0;
    for (let i = 0; i < n; i++) {
      const off = (i * c + ch) * plane;
      let a = 0, b = 0;
      for (let j = 0; j < plane; j++) {
        const v = data[off + j];
        a += v;
        b += v * v;
      }
      s += a;
      s2 += b;
    }
    const count = n * plane;
    const m = s / count / 255;
    const variance = Math.max(0, s2 / count / 65025 - m * m);
    mean.push(Number(m.toFixed(6)));
    // a constant channel would divide by zero: keep it unscaled
    std.push(variance > 1e-12 ? Number(Math.sqrt(variance).toFixed(6)) : 1);
  }
  return { mean, std };
}

/** imageStats cached in `<cacheDir>/stats/<key>.json` (key: the training split's identity). */
function cachedStats(ds: ImageDataset, key: string, cacheDir: string): { mean: number[]; std: number[] } {
  const file = path.join(cacheDir, 'stats', `${key}.json`);
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    const c = ds.images.shape[1];
    if (Array.isArray(j.mean) && Array.isArray(j.std) && j.mean.length === c && j.std.length === c) return { mean: j.mean, std: j.std };
  } catch {
    // absent or unreadable: compute it
  }
  const stats = imageStats(ds);
  try {
    writeFileAtomic(file, JSON.stringify(stats));
  } catch (e) {
    process.emitWarning(`statistics not cached (${(e as Error).message})`);
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------- the spec

function checkSpec(spec: OwnDataSpec): void {
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new Error('data: expected { train, test } or { path, split } (own data) or a registered name');
  for (const k of Object.keys(spec))
    if (!(OWN_DATA_KEYS as readonly string[]).includes(k)) {
      const near = closest(k, [...OWN_DATA_KEYS], 1)[0];
      throw new Error(`data.${k}: unknown key${near ? `; did you mean 'data.${near}'?` : ''} (valid: ${OWN_DATA_KEYS.join(', ')})`);
    }
  if (spec.path !== undefined && (spec.train !== undefined || spec.test !== undefined)) throw new Error('data: give `path` (with `split`) or `train` / `test`, not both');
  if (spec.path === undefined && spec.train === undefined) throw new Error('data: give `train` (and `test`, or a `split` fraction) or `path` with a `split` fraction');
  if (spec.test !== undefined && spec.split !== undefined) throw new Error('data.split: there is a `test` source already; remove `split` or `test`');
  if (spec.test === undefined && spec.split === undefined)
    throw new Error(`data: no test data: give \`test\` or a \`split\` fraction of ${spec.path !== undefined ? 'data.path' : 'data.train'} to hold out (e.g. split: 0.2)`);
  if (spec.split !== undefined && !(typeof spec.split === 'number' && spec.split > 0 && spec.split < 1)) throw new Error(`data.split: must be a fraction in (0, 1), got ${spec.split}`);
  if (spec.seed !== undefined && !(Number.isInteger(spec.seed) && spec.seed >= 0)) throw new Error(`data.seed: must be a non-negative integer, got ${spec.seed}`);
  if (spec.classes !== undefined && (!Array.isArray(spec.classes) || !spec.classes.length || spec.classes.some((c) => typeof c !== 'string' || !c) || new Set(spec.classes).size !== spec.classes.length))
    throw new Error(`data.classes: must be distinct non-empty names, got ${JSON.stringify(spec.classes)}`);
}

/** The spec with absolute paths (relative ones are taken from `baseDir`). */
export function absoluteDataSpec(spec: OwnDataSpec, baseDir = '.'): OwnDataSpec {
  const abs = (p: DataSource | undefined): DataSource | undefined =>
    p === undefined ? undefined : typeof p === 'string' ? path.resolve(baseDir, p) : p && typeof p === 'object' ? { images: path.resolve(baseDir, p.images), labels: path.resolve(baseDir, p.labels) } : p;
  const out: OwnDataSpec = { ...spec };
  for (const k of ['train', 'test', 'path'] as const) if (spec[k] !== undefined && !spec.archive) out[k] = abs(spec[k]);
  if (spec.archive) out.archive = path.resolve(baseDir, spec.archive);
  if (spec.tokenizer && spec.tokenizer.endsWith('.json')) out.tokenizer = path.resolve(baseDir, spec.tokenizer);
  return out;
}

/** The registered name of a spec: its label and a digest of the spec (paths made absolute first). */
export function ownDatasetName(spec: OwnDataSpec): string {
  const main = spec.path ?? spec.train;
  const file = spec.archive ?? (typeof main === 'string' ? main : main?.images ?? 'data');
  const base = (f: string) => path.basename(f).replace(/\.(tar\.gz|tgz|csv|jsonl|tsv|idx|gz)$/i, '');
  // 'train.tsv', 'photos/train': the folder above names the data better
  const label = spec.name ?? (/^(train|training|all|data|images|train-images)$/i.test(base(file)) ? base(path.dirname(file)) || base(file) : base(file));
  const stable = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, stable((v as Record<string, unknown>)[k])])) : v;
  const digest = crypto.createHash('sha256').update(JSON.stringify(stable(spec))).digest('hex').slice(0, 8);
  return `${label}-${digest}`;
}

/**
 * The data set a spec describes, registered (once) under `ownDatasetName(spec)`: read, checked and described as
 * explained at the top of this file. Relative paths are taken from `baseDir`.
 */
export function ownDataset(specIn: OwnDataSpec, baseDir = '.'): DatasetInfo {
  checkSpec(specIn);
  const spec = absoluteDataSpec(specIn, baseDir);
  const name = ownDatasetName(spec);
  if (hasDataset(name)) return getDataset(name);
  const cacheDir = spec.cacheDir ?? defaultCacheDir();
  const root = spec.archive ? extractArchiveCached(spec.archive, cacheDir) : '.';
  const single = spec.test === undefined;
  const trainSrc = resolveSource((spec.path ?? spec.train)!, spec.path !== undefined ? 'path' : 'train', root, cacheDir);
  const testSrc = single ? null : resolveSource(spec.test!, 'test', root, cacheDir);
  const kind = trainSrc.format === 'text' ? 'text' : 'image';
  if (testSrc && (testSrc.format === 'text') !== (kind === 'text'))
    throw new Error(`data: ${trainSrc.where} holds ${kind === 'text' ? 'text' : 'images'}, ${testSrc.where} holds ${kind === 'text' ? 'images' : 'text'}`);
  const foreign = (kind === 'text' ? IMAGE_KEYS : TEXT_KEYS).filter((k) => spec[k] !== undefined);
  if (foreign.length) throw new Error(`data.${foreign[0]}: applies to ${kind === 'text' ? 'image' : 'text'} data; ${trainSrc.where} holds ${kind === 'text' ? 'text' : 'images'}`);

  // classes: the same in train and test (an explicit list is the order; every label must be in it)
  const trainClasses = sourceClasses(trainSrc, spec);
  const testClasses = testSrc ? sourceClasses(testSrc, spec) : [];
  if (testSrc) {
    const onlyTrain = trainClasses.filter((c) => !testClasses.includes(c)), onlyTest = testClasses.filter((c) => !trainClasses.includes(c));
    if ((onlyTrain.length || onlyTest.length) && !(spec.classes && trainSrc.format !== 'folder'))
      throw new Error(
        `data: the classes of train and test differ (${[onlyTrain.length ? `only in train: ${onlyTrain.join(', ')}` : '', onlyTest.length ? `only in test: ${onlyTest.join(', ')}` : ''].filter(Boolean).join('; ')}); ` +
          `train: ${trainSrc.where}, test: ${testSrc.where}`,
      );
  }
  if (trainSrc.format === 'idx') {
    // IDX labels are class indices: data.classes names them, else they are the names
    const k = spec.classes?.length ?? Math.max(...trainClasses.map(Number)) + 1;
    for (const [src, labels] of [[trainSrc, trainClasses], [testSrc, testClasses]] as const) {
      const bad = labels.map(Number).filter((l) => l >= k);
      if (bad.length) throw new Error(`${src!.labels}: label ${bad[0]} is not a class index (${k} classes${spec.classes ? `: ${spec.classes.join(', ')}` : ''})`);
    }
    if (!spec.classes && trainClasses.length !== k)
      throw new Error(`${trainSrc.labels}: labels are ${trainClasses.join(', ')}; IDX labels must be class indices 0..${k - 1}, each present (or name the classes in data.classes)`);
  }
  const classes = spec.classes ?? trainClasses;
  if (spec.classes && trainSrc.format !== 'idx') {
    const unknown = [...trainClasses, ...testClasses].filter((c) => !classes.includes(c));
    if (unknown.length) throw new Error(`data.classes: the data has label${unknown.length > 1 ? 's' : ''} ${[...new Set(unknown)].join(', ')} not in data.classes (${classes.join(', ')})`);
    if (trainSrc.format === 'folder' && !sameList(classes, trainClasses)) throw new Error(`data.classes: an image folder's classes are its sub-folders (${trainClasses.join(', ')})`);
  }
  if (classes.length < 2) throw new Error(`data: ${trainSrc.where} has ${classes.length} class${classes.length === 1 ? '' : 'es'} (${classes.join(', ')}); a classifier needs at least 2`);
  const display = spec.name ?? name.replace(/-[0-9a-f]{8}$/, '');
  const seed = spec.seed ?? 0;

  if (kind === 'text') {
    const toExamples = (r: Resolved) => {
      const rows = readTextRows(r, spec);
      return rows.texts!.map((text, i) => ({ text, label: classes.indexOf(rows.labels[i]) }));
    };
    let train = toExamples(trainSrc), test = testSrc ? toExamples(testSrc) : null;
    if (!test) {
      const s = stratifiedSplit(train.map((e) => e.label), spec.split!, seed);
      test = s.test.map((i) => train[i]);
      train = s.train.map((i) => train[i]);
    }
    const encoder = TextIdEncoder.create({ tokenizer: spec.tokenizer ?? 'words', maxLen: spec.maxLen, ngrams: spec.ngrams, buckets: spec.buckets, vocabSize: spec.vocabSize }, train.map((e) => e.text));
    const splits = { train, test };
    registerDataset({
      name, kind: 'text', classes, encoder,
      description: `${display}: ${train.length} train / ${test.length} test texts (${trainSrc.where})`,
      load: (split, limit) => {
        const all = splits[split];
        if (limit === undefined || limit >= all.length) return all;
        // a fixed random subset (the same every time), as for images
        return Array.from(new Rng(mixSeed(seed, 0x11a1)).permutation(all.length).slice(0, limit).sort(), (i) => all[i]);
      },
    });
    return getDataset(name);
  }

  const channels = spec.channels ?? (trainSrc.format === 'idx' ? 1 : 3);
  if (trainSrc.format === 'idx' && channels !== 1) throw new Error('data.channels: IDX images have one channel');
  const loadSource = (r: Resolved, what: string): ImageDataset => {
    const opts = { channels, name: `${display}-${what}`, cacheDir: spec.cacheDir };
    if (r.format === 'folder') return loadImageFolder(r.file, opts);
    if (r.format === 'list') return loadImageList(r.file, { ...opts, classes });
    // IDX labels are class indices; the classes name them
    const ds = loadIdxPair(opts.name, r.file, r.labels!, classes);
    const sig = [r.file, r.labels!].map((f) => `${f}\0${fs.statSync(f).size}\0${Math.trunc(fs.statSync(f).mtimeMs)}`).join('\n');
    ds.sourceKey = crypto.createHash('sha256').update(sig).digest('hex').slice(0, 32);
    return ds;
  };
  /** Both splits, the split applied; the caller disposes them. */
  const loadSplits = (): { train: ImageDataset; test: ImageDataset } => {
    const whole = loadSource(trainSrc, testSrc ? 'train' : 'all');
    if (testSrc) {
      let test: ImageDataset;
      try {
        test = loadSource(testSrc, 'test');
      } catch (e) {
        whole.dispose();
        throw e;
      }
      return { train: whole, test };
    }
    try {
      const s = stratifiedSplit(whole.labels.toArray(), spec.split!, seed);
      const train = whole.subset(s.train, `${display}-train`), test = whole.subset(s.test, `${display}-test`);
      train.sourceKey = whole.sourceKey && `${whole.sourceKey}-split-${spec.split}-${seed}`;
      return { train, test };
    } finally {
      whole.dispose();
    }
  };
  const first = loadSplits();
  let info: { inputShape: [number, number, number]; mean: number[]; std: number[]; n: [number, number] };
  try {
    const [c, h, w] = first.train.imageShape;
    const [, th, tw] = first.test.imageShape;
    if (th !== h || tw !== w) throw new Error(`data: train images are ${w}x${h}, test images ${tw}x${th} (${trainSrc.where}, ${testSrc?.where}); all images must have one size`);
    let mean = spec.mean, std = spec.std;
    if ((mean === undefined) !== (std === undefined)) throw new Error(`data.${mean === undefined ? 'mean' : 'std'}: give mean and std together (or neither: they are computed from the training split)`);
    for (const [k, v] of [['mean', mean], ['std', std]] as const)
      if (v && v.length !== c) throw new Error(`data.${k}: ${v.length} value${v.length === 1 ? '' : 's'} for images of ${c} channel${c === 1 ? '' : 's'} (${trainSrc.where})`);
    if (!mean || !std) ({ mean, std } = first.train.sourceKey ? cachedStats(first.train, first.train.sourceKey, cacheDir) : imageStats(first.train));
    info = { inputShape: [c, h, w], mean, std, n: [first.train.length, first.test.length] };
  } finally {
    first.train.dispose();
    first.test.dispose();
  }
  registerDataset({
    name, kind: 'image', classes, inputShape: info.inputShape, mean: info.mean, std: info.std,
    description: `${display}: ${info.n[0]} train / ${info.n[1]} test images ${info.inputShape.join('x')} (${trainSrc.where})`,
    load: (split: DatasetSplit, limit?: number) => {
      const s = loadSplits();
      const keep = s[split], drop = s[split === 'train' ? 'test' : 'train'];
      drop.dispose();
      if (limit === undefined || limit >= keep.length) return keep;
      // a fixed random subset (the same every time): folders are sorted by class, so the first N would miss classes
      try {
        return keep.subset(new Rng(mixSeed(seed, 0x11a1)).permutation(keep.length).slice(0, limit).sort(), keep.name);
      } finally {
        keep.dispose();
      }
    },
  });
  return getDataset(name);
}
