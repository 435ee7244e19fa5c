// Folder-per-class image sets (`root/<class>/<image>.jpg|.png`), from an extracted folder or straight from a .tar.gz
// archive. JPEG is decoded with jpeg-js and PNG with pngjs (pure JavaScript, no native build). Decoding happens once:
// the result is cached as one compact binary file (uint8 [N, C, H, W], int32 labels, class names) keyed by the
// source's contents, so later runs read one file instead of decoding every image.
//
// Cache file layout (little-endian): 8-byte magic "TSDIMG01", uint32 length L of a UTF-8 JSON header
// { n, c, h, w, classes, key, source }, the header, n*c*h*w image bytes (sample-major, channel-first), n int32 labels.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { noGrad, tensor, tidy } from '../torch';
import { writeFileAtomic } from '../torch/atomic';
import { ImageDataset } from './dataset';
import { sharedDataDir } from './text';

const IMAGE_EXT = /\.(jpe?g|png)$/i;
const CACHE_MAGIC = 'TSDIMG01';
const CACHE_VERSION = 1;

/** Where decoded image sets and extracted archives go: $TSDISTILL_CACHE, else $XDG_CACHE_HOME/tsdistill, else ~/.cache/tsdistill. */
export function defaultCacheDir(): string {
  if (process.env.TSDISTILL_CACHE) return process.env.TSDISTILL_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'tsdistill');
}

// ---------------------------------------------------------------------------------------------- decoding

/** 1: grayscale (ITU-R 601 luma, as PIL's convert('L')), 3: RGB. Alpha is dropped. */
export type ImageChannels = 1 | 3;

export interface DecodedImage {
  /** Channel-first bytes [C, H, W]. */
  data: Uint8Array;
  channels: ImageChannels;
  height: number;
  width: number;
}

function requireDecoder(pkg: 'jpeg-js' | 'pngjs'): any {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(pkg);
  } catch (e) {
    throw new Error(`image decoding needs the npm package ${pkg}: install it with \`npm i ${pkg}\` (${(e as Error).message})`);
  }
}

/** Interleaved pixels: RGB (stride 3) from JPEG, RGBA (stride 4) from PNG. */
function decodeInterleaved(buf: Uint8Array): { pixels: Uint8Array; stride: number; width: number; height: number } {
  if (buf.length >= 8 && buf[0] === 0x89 && buf[1] === 0x50 && buf[2] === 0x4e && buf[3] === 0x47) {
    const { PNG } = requireDecoder('pngjs');
    const png = PNG.sync.read(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
    return { pixels: png.data, stride: 4, width: png.width, height: png.height };
  }
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
    const jpeg = requireDecoder('jpeg-js');
    const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false });
    return { pixels: img.data, stride: 3, width: img.width, height: img.height };
  }
  const sig = Buffer.from(buf.subarray(0, 4)).toString('hex');
  throw new Error(`not a JPEG or PNG file (signature ${sig || 'empty'} at offset 0)`);
}

/** Writes interleaved pixels channel-first into `out` at `offset`. */
function toPlanar(pixels: Uint8Array, stride: number, npix: number, channels: ImageChannels, out: Uint8Array, offset: number): void {
  if (channels === 3) {
    for (let i = 0, j = 0; i < npix; i++, j += stride) {
      out[offset + i] = pixels[j];
      out[offset + npix + i] = pixels[j + 1];
      out[offset + 2 * npix + i] = pixels[j + 2];
    }
  } else {
    for (let i = 0, j = 0; i < npix; i++, j += stride)
      out[offset + i] = (pixels[j] * 19595 + pixels[j + 1] * 38470 + pixels[j + 2] * 7471 + 0x8000) >>> 16;
  }
}

/** Decodes one JPEG or PNG (a file path or its bytes) to channel-first bytes. Errors name the source. */
export function decodeImage(file: string | Uint8Array, opts: { channels?: ImageChannels; source?: string } = {}): DecodedImage {
  const source = opts.source ?? (typeof file === 'string' ? file : 'image');
  const channels = opts.channels ?? 3;
  let buf: Uint8Array;
  try {
    buf = typeof file === 'string' ? fs.readFileSync(file) : file;
  } catch (e) {
    throw new Error(`${source}: cannot read image: ${(e as Error).message}`);
  }
  let d: ReturnType<typeof decodeInterleaved>;
  try {
    d = decodeInterleaved(buf);
  } catch (e) {
    throw new Error(`${source}: cannot decode image: ${(e as Error).message}`);
  }
  const npix = d.width * d.height;
  const data = new Uint8Array(channels * npix);
  toPlanar(d.pixels, d.stride, npix, channels, data, 0);
  return { data, channels, height: d.height, width: d.width };
}

// ---------------------------------------------------------------------------------------------- building and caching

interface ImageItem {
  /** Path shown in errors. */
  source: string;
  label: number;
  read(): Uint8Array;
  /** The file on disk, when the image is one (kept as the row's raw sample). */
  file?: string;
}

export interface ImageSetOptions {
  /** Cache folder (default `defaultCacheDir()`); decoded sets go to `<cacheDir>/images/<key>.bin`. */
  cacheDir?: string;
  /** false: always decode, never read or write the cache. Default true. */
  cache?: boolean;
  /** Data set name (default: the folder's or archive's name). */
  name?: string;
  /** 3 (RGB, default) or 1 (grayscale). */
  channels?: ImageChannels;
}

interface CacheHeader {
  n: number;
  c: number;
  h: number;
  w: number;
  classes: string[];
  key: string;
  source: string;
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cacheFileFor(opts: ImageSetOptions, key: string): string {
  return path.join(opts.cacheDir ?? defaultCacheDir(), 'images', `${key}.bin`);
}

function datasetFrom(name: string, hdr: CacheHeader, images: Uint8Array, labels: Int32Array): ImageDataset {
  const ds = tidy(() =>
    noGrad(() => new ImageDataset(name, tensor(images, { shape: [hdr.n, hdr.c, hdr.h, hdr.w] }), tensor(labels, { dtype: 'int64' }), hdr.classes)),
  );
  ds.sourceKey = hdr.key;
  return ds;
}

/** Reads a cache file; null when absent or not matching (then the caller rebuilds it). */
function readCache(file: string, expect: { n: number; c: number; key: string; classes: string[] }): { hdr: CacheHeader; images: Uint8Array; labels: Int32Array } | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== CACHE_MAGIC) return null;
  const hl = buf.readUInt32LE(8);
  if (12 + hl > buf.length) return null;
  let hdr: CacheHeader;
  try {
    hdr = JSON.parse(buf.toString('utf8', 12, 12 + hl));
  } catch {
    return null;
  }
  const start = 12 + hl;
  const imgBytes = hdr.n * hdr.c * hdr.h * hdr.w;
  if (hdr.key !== expect.key || hdr.n !== expect.n || hdr.c !== expect.c || JSON.stringify(hdr.classes) !== JSON.stringify(expect.classes)) return null;
  if (buf.length !== start + imgBytes + 4 * hdr.n) return null;
  const images = new Uint8Array(buf.buffer, buf.byteOffset + start, imgBytes);
  const labels = new Int32Array(hdr.n);
  for (let i = 0; i < hdr.n; i++) labels[i] = buf.readInt32LE(start + imgBytes + 4 * i);
  for (let i = 0; i < hdr.n; i++) if (labels[i] < 0 || labels[i] >= hdr.classes.length) return null;
  return { hdr, images, labels };
}

/**
 * Decodes every item into one buffer laid out as the cache file (so writing it needs no extra copy), checks that all
 * images share the first one's size, writes the cache (unless disabled) and returns the data set.
 */
function buildImageSet(name: string, items: ImageItem[], classes: string[], key: string, sourceDesc: string, opts: ImageSetOptions): ImageDataset {
  const channels = opts.channels ?? 3;
  const n = items.length;
  const first = decodeImage(items[0].read(), { channels, source: items[0].source });
  const { height: h, width: w } = first;
  const hdr: CacheHeader = { n, c: channels, h, w, classes, key, source: sourceDesc };
  const json = Buffer.from(JSON.stringify(hdr), 'utf8');
  const start = 12 + json.length;
  const per = channels * h * w;
  const out = Buffer.alloc(start + n * per + 4 * n);
  out.write(CACHE_MAGIC, 0, 'latin1');
  out.writeUInt32LE(json.length, 8);
  json.copy(out, 12);
  out.set(first.data, start);
  const labels = new Int32Array(n);
  const npix = h * w;
  for (let i = 0; i < n; i++) {
    const it = items[i];
    labels[i] = it.label;
    out.writeInt32LE(it.label, start + n * per + 4 * i);
    if (i === 0) continue;
    let d: ReturnType<typeof decodeInterleaved>;
    try {
      d = decodeInterleaved(it.read());
    } catch (e) {
      throw new Error(`${it.source}: cannot decode image: ${(e as Error).message}`);
    }
    if (d.height !== h || d.width !== w)
      throw new Error(`${it.source}: image is ${d.width}x${d.height}, the set's first image (${items[0].source}) is ${w}x${h}; all images must have one size`);
    toPlanar(d.pixels, d.stride, npix, channels, out, start + i * per);
  }
  if (opts.cache !== false) {
    const file = cacheFileFor(opts, key);
    try {
      writeFileAtomic(file, out);
    } catch (e) {
      process.emitWarning(`image cache not written (${(e as Error).message}); the next run decodes ${sourceDesc} again`);
    }
  }
  return datasetFrom(name, hdr, out.subarray(start, start + n * per), labels);
}

function loadOrBuild(name: string, items: ImageItem[], classes: string[], key: string, sourceDesc: string, opts: ImageSetOptions): ImageDataset {
  const channels = opts.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw new Error(`${name}: channels must be 1 or 3, got ${channels}`);
  const hit = opts.cache !== false ? readCache(cacheFileFor(opts, key), { n: items.length, c: channels, key, classes }) : null;
  const ds = hit ? datasetFrom(name, hit.hdr, hit.images, hit.labels) : buildImageSet(name, items, classes, key, sourceDesc, opts);
  if (items.every((it) => it.file)) ds.files = items.map((it) => it.file!);
  return ds;
}

// ---------------------------------------------------------------------------------------------- folders

/**
 * Loads `dir/<class>/<image>` (.jpg, .jpeg, .png; other files and hidden entries are ignored) as uint8 images
 * [N, C, H, W] and int64 labels, classes sorted by name, samples sorted by class then file name. All images must have
 * one size. The first call decodes every file and writes a cache file; later calls read it, until a file is added,
 * removed or modified (the key covers every file's name, size and modification time).
 */
export function loadImageFolder(dir: string, opts: ImageSetOptions = {}): ImageDataset {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new Error(`image folder ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new Error(`image folder ${dir} is not a directory`);
  const classes = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name).sort(byCodeUnit);
  if (classes.length === 0) throw new Error(`image folder ${dir} has no class subfolders (expected ${path.join(dir, '<class>', '<image>.jpg')})`);
  const channels = opts.channels ?? 3;
  const hash = crypto.createHash('sha256').update(`folder v${CACHE_VERSION} c${channels}\n`);
  const items: ImageItem[] = [];
  classes.forEach((c, label) => {
    const names = fs.readdirSync(path.join(dir, c)).filter((f) => IMAGE_EXT.test(f) && !f.startsWith('.')).sort(byCodeUnit);
    if (names.length === 0)
      throw new Error(`image folder ${dir}: class folder ${path.join(dir, c)} has no .jpg/.jpeg/.png images (an empty class cannot be learned; remove the folder or add images)`);
    for (const f of names) {
      const file = path.join(dir, c, f);
      const s = fs.statSync(file);
      if (!s.isFile()) continue;
      hash.update(`${c}/${f}\0${s.size}\0${Math.trunc(s.mtimeMs)}\n`);
      items.push({ source: file, label, read: () => fs.readFileSync(file), file });
    }
  });
  if (items.length === 0) throw new Error(`image folder ${dir} has no .jpg/.jpeg/.png files in its class subfolders (${classes.join(', ')})`);
  const name = opts.name ?? path.basename(path.resolve(dir));
  return loadOrBuild(name, items, classes, hash.digest('hex').slice(0, 32), path.resolve(dir), opts);
}

// ---------------------------------------------------------------------------------------------- lists

export interface ImageListOptions extends ImageSetOptions {
  /** Class names in label order; every label of the list must be one of them (default: the list's labels, sorted). */
  classes?: string[];
}

/** The (path, label) rows of a CSV (`path,label`; a header line `path,label` is skipped) or JSONL ({"path", "label"}) list, 1-based lines. */
export function readImageList(file: string): { line: number; path: string; label: string }[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read the image list: ${(e as Error).message}`, { cause: e });
  }
  const rows: { line: number; path: string; label: string }[] = [];
  const jsonl = /\.jsonl$/i.test(file);
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (!raw.trim()) return;
    if (jsonl) {
      let o: any;
      try {
        o = JSON.parse(raw);
      } catch (e) {
        throw new Error(`${file}:${line}: invalid JSON: ${(e as Error).message}`);
      }
      const p = o?.path ?? o?.image ?? o?.file;
      if (typeof p !== 'string' || (typeof o.label !== 'string' && typeof o.label !== 'number'))
        throw new Error(`${file}:${line}: expected {"path": string, "label": string or number}, got ${raw.slice(0, 80)}`);
      rows.push({ line, path: p, label: String(o.label) });
      return;
    }
    const comma = raw.lastIndexOf(',');
    if (comma <= 0) throw new Error(`${file}:${line}: expected 'path,label', got '${raw.slice(0, 80)}'`);
    const p = raw.slice(0, comma).trim().replace(/^"(.*)"$/, '$1'), label = raw.slice(comma + 1).trim().replace(/^"(.*)"$/, '$1');
    if (rows.length === 0 && line === 1 && /^(path|file|image|filename)$/i.test(p) && /^(label|class)$/i.test(label)) return;
    rows.push({ line, path: p, label });
  });
  if (rows.length === 0) throw new Error(`${file}: the image list is empty`);
  return rows;
}

/** Class names of labels: sorted numerically when every label is an integer, else by code unit. */
export function sortedLabels(labels: Iterable<string>): string[] {
  const set = [...new Set(labels)];
  return set.every((l) => /^-?\d+$/.test(l)) ? set.sort((a, b) => Number(a) - Number(b)) : set.sort(byCodeUnit);
}

/**
 * Loads the images listed in a CSV or JSONL file (see readImageList; paths relative to the list's folder), cached like
 * loadImageFolder (the key covers every listed file's path, size, modification time and label).
 */
export function loadImageList(file: string, opts: ImageListOptions = {}): ImageDataset {
  const rows = readImageList(file);
  const classes = opts.classes ?? sortedLabels(rows.map((r) => r.label));
  const label = new Map(classes.map((c, i) => [c, i]));
  const channels = opts.channels ?? 3;
  const hash = crypto.createHash('sha256').update(`list v${CACHE_VERSION} c${channels}\n${JSON.stringify(classes)}\n`);
  const dir = path.dirname(path.resolve(file));
  const items: ImageItem[] = rows.map((r) => {
    const k = label.get(r.label);
    if (k === undefined) throw new Error(`${file}:${r.line}: label '${r.label}' is not one of the classes (${classes.join(', ')})`);
    const abs = path.resolve(dir, r.path);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch {
      throw new Error(`${file}:${r.line}: image ${abs} does not exist`);
    }
    hash.update(`${abs}\0${st.size}\0${Math.trunc(st.mtimeMs)}\0${k}\n`);
    return { source: `${abs} (${file}:${r.line})`, label: k, read: () => fs.readFileSync(abs), file: abs };
  });
  const name = opts.name ?? path.basename(file).replace(/\.(csv|jsonl)$/i, '');
  return loadOrBuild(name, items, classes, hash.digest('hex').slice(0, 32), path.resolve(file), opts);
}

// ---------------------------------------------------------------------------------------------- tar archives

export interface TarEntry {
  /** Path inside the archive (pax and GNU long names applied). */
  name: string;
  /** '0' regular file, '5' directory, others as in the tar format. */
  type: string;
  /** Byte offset of the entry's header in the uncompressed archive. */
  offset: number;
  data: Buffer;
}

function tarString(hdr: Buffer, a: number, b: number): string {
  const s = hdr.subarray(a, b);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? s.length : z).toString('utf8');
}

function tarNumber(hdr: Buffer, a: number, b: number): number {
  if (hdr[a] & 0x80) {
    // GNU base-256 for large sizes
    let v = 0;
    for (let i = a + 1; i < b; i++) v = v * 256 + hdr[i];
    return v;
  }
  const t = tarString(hdr, a, b).trim();
  return t === '' ? 0 : /^[0-7]+$/.test(t) ? parseInt(t, 8) : NaN;
}

/**
 * Iterates over the entries of an uncompressed tar archive (ustar, pax path records, GNU long names). Header
 * checksums are verified; corrupt or truncated archives are errors naming `source` and the byte offset.
 */
export function* readTar(buf: Buffer, source: string): Generator<TarEntry> {
  let off = 0;
  let longName: string | null = null;
  let paxPath: string | null = null;
  while (off < buf.length) {
    if (off + 512 > buf.length) throw new Error(`${source}: tar header at offset ${off} is truncated (the archive ends at offset ${buf.length})`);
    const hdr = buf.subarray(off, off + 512);
    let zero = true;
    for (let i = 0; i < 512 && zero; i++) if (hdr[i] !== 0) zero = false;
    if (zero) return;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : hdr[i];
    const stored = tarNumber(hdr, 148, 156);
    if (stored !== sum) throw new Error(`${source}: tar header checksum mismatch at offset ${off} (stored ${stored}, computed ${sum}): the archive is corrupt`);
    const size = tarNumber(hdr, 124, 136);
    const type = String.fromCharCode(hdr[156] || 0x30);
    const prefix = tarString(hdr, 345, 500);
    const base = tarString(hdr, 0, 100);
    const headerName = prefix && hdr.toString('latin1', 257, 262) === 'ustar' ? `${prefix}/${base}` : base;
    if (!Number.isFinite(size)) throw new Error(`${source}: tar entry '${headerName}' at offset ${off} has an invalid size field`);
    const start = off + 512;
    if (start + size > buf.length)
      throw new Error(`${source}: tar entry '${headerName}' at offset ${off} needs ${size} bytes of data, the archive ends at offset ${buf.length} (truncated)`);
    const data = buf.subarray(start, start + size);
    if (type === 'L') longName = tarString(data, 0, data.length);
    else if (type === 'x') {
      const text = data.toString('utf8');
      let p = 0;
      while (p < text.length) {
        const sp = text.indexOf(' ', p);
        const len = parseInt(text.slice(p, sp), 10);
        if (sp < 0 || !(len > 0)) throw new Error(`${source}: malformed pax header at offset ${off}`);
        const rec = text.slice(sp + 1, p + len - 1);
        const eq = rec.indexOf('=');
        if (rec.slice(0, eq) === 'path') paxPath = rec.slice(eq + 1);
        p += len;
      }
    } else if (type !== 'g') {
      yield { name: paxPath ?? longName ?? headerName, type: type === '7' ? '0' : type, offset: off, data };
      longName = null;
      paxPath = null;
    }
    off = start + Math.ceil(size / 512) * 512;
  }
}

function gunzipArchive(archive: string): Buffer {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(archive);
  } catch (e) {
    throw new Error(`${archive}: cannot read the archive: ${(e as Error).message}`);
  }
  try {
    return zlib.gunzipSync(raw);
  } catch (e) {
    throw new Error(`${archive}: gzip data is corrupt or truncated (${(e as Error).message}); the compressed file is ${raw.length} bytes`);
  }
}

function safeTarget(dest: string, name: string, archive: string, offset: number): string {
  const root = path.resolve(dest);
  const target = path.resolve(root, name);
  if (target !== root && !target.startsWith(root + path.sep)) throw new Error(`${archive}: tar entry '${name}' at offset ${offset} points outside ${dest}`);
  return target;
}

/**
 * Extracts a .tar.gz archive (regular files and folders; links and devices are skipped) into `dest`, once. A new
 * `dest` is written under a temporary name and renamed when complete; a marker file `.extracted` records a finished
 * extraction, so an interrupted one is redone. Returns `dest`.
 */
export function extractTarGz(archive: string, dest: string): string {
  const marker = (d: string) => path.join(d, '.extracted');
  if (fs.existsSync(marker(dest))) return dest;
  const tar = gunzipArchive(archive);
  const fresh = !fs.existsSync(dest);
  const work = fresh ? `${dest}.partial-${process.pid}-${crypto.randomBytes(3).toString('hex')}` : dest;
  fs.mkdirSync(work, { recursive: true });
  try {
    for (const e of readTar(tar, archive)) {
      const target = safeTarget(work, e.name, archive, e.offset);
      if (e.type === '5') fs.mkdirSync(target, { recursive: true });
      else if (e.type === '0') {
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, e.data);
      }
    }
    fs.writeFileSync(marker(work), `${path.resolve(archive)}\n${new Date().toISOString()}\n`);
    if (fresh) fs.renameSync(work, dest);
  } catch (e) {
    if (fresh) fs.rmSync(work, { recursive: true, force: true });
    throw e;
  }
  return dest;
}

/**
 * Loads the folder-per-class images under `prefix/` inside a .tar.gz archive (`prefix/<class>/<image>`) without
 * extracting it to disk, cached like loadImageFolder; the key covers the archive's path, size and modification time.
 */
export function loadImageArchive(archive: string, opts: ImageSetOptions & { prefix?: string } = {}): ImageDataset {
  let st: fs.Stats;
  try {
    st = fs.statSync(archive);
  } catch {
    throw new Error(`image archive ${archive} does not exist`);
  }
  const prefix = (opts.prefix ?? '').replace(/^\.?\/+|\/+$/g, '');
  const channels = opts.channels ?? 3;
  const key = crypto
    .createHash('sha256')
    .update(`archive v${CACHE_VERSION} c${channels}\n${path.resolve(archive)}\0${st.size}\0${Math.trunc(st.mtimeMs)}\0${prefix}\n`)
    .digest('hex')
    .slice(0, 32);
  const name = opts.name ?? (prefix ? `${path.basename(archive).replace(/\.(tar\.gz|tgz)$/, '')}-${prefix}` : path.basename(archive));
  const sourceDesc = `${path.resolve(archive)}${prefix ? `:${prefix}/` : ''}`;
  // The cache header records n and the classes: read it first, so a hit does not decompress the archive.
  if (opts.cache !== false) {
    const hit = peekCache(cacheFileFor(opts, key), key, channels);
    if (hit) return datasetFrom(name, hit.hdr, hit.images, hit.labels);
  }
  const head = prefix ? `${prefix}/` : '';
  const found: { rel: string; cls: string; file: string; data: Buffer }[] = [];
  for (const e of readTar(gunzipArchive(archive), archive)) {
    if (e.type !== '0') continue;
    const rel = e.name.replace(/^\.\//, '');
    if (!rel.startsWith(head)) continue;
    const parts = rel.slice(head.length).split('/');
    if (parts.length !== 2 || !IMAGE_EXT.test(parts[1]) || parts[0].startsWith('.') || parts[1].startsWith('.')) continue;
    found.push({ rel, cls: parts[0], file: parts[1], data: e.data });
  }
  const classes = [...new Set(found.map((e) => e.cls))].sort(byCodeUnit);
  if (classes.length === 0) throw new Error(`${archive}: no images under '${head}<class>/' in the archive`);
  found.sort((a, b) => byCodeUnit(a.cls, b.cls) || byCodeUnit(a.file, b.file));
  const label = new Map(classes.map((c, i) => [c, i]));
  const items = found.map((e) => ({ source: `${archive}:${e.rel}`, label: label.get(e.cls)!, read: () => e.data }));
  return buildImageSet(name, items, classes, key, sourceDesc, opts);
}

function peekCache(file: string, key: string, channels: number): ReturnType<typeof readCache> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  let hdr: CacheHeader;
  try {
    const head = Buffer.alloc(12);
    if (fs.readSync(fd, head, 0, 12, 0) !== 12 || head.toString('latin1', 0, 8) !== CACHE_MAGIC) return null;
    const json = Buffer.alloc(head.readUInt32LE(8));
    if (fs.readSync(fd, json, 0, json.length, 12) !== json.length) return null;
    hdr = JSON.parse(json.toString('utf8'));
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
  return readCache(file, { n: hdr.n, c: channels, key, classes: hdr.classes });
}

// ---------------------------------------------------------------------------------------------- CIFAR-10

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
/** Per-channel mean and std of the CIFAR-10 training images in [0, 1] (computed on the original binaries). */
export const CIFAR10_STATS = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] } as const;

export interface Cifar10Options extends ImageSetOptions {
  /** The archive (default: cifar10-jpeg.tar.gz in the shared data folder). */
  archive?: string;
  /** An already extracted copy holding train/ and test/ (read instead of the archive). */
  root?: string;
}

/**
 * CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB) from the JPEG archive in ../shared/data (decoded once, then
 * cached), or from an extracted folder given as `root`.
 */
export function loadCifar10(split: 'train' | 'test', opts: Cifar10Options = {}): ImageDataset {
  if (split !== 'train' && split !== 'test') throw new Error(`loadCifar10: split must be 'train' or 'test', got '${split}'`);
  const name = opts.name ?? `cifar10-${split}`;
  let ds: ImageDataset;
  if (opts.root) ds = loadImageFolder(path.join(opts.root, split), { ...opts, name });
  else {
    const shared = sharedDataDir();
    const archive = opts.archive ?? (shared ? path.join(shared, 'cifar10-jpeg.tar.gz') : null);
    if (!archive || !fs.existsSync(archive))
      throw new Error(`CIFAR-10 not found: ${archive ?? 'the shared data folder (../shared/data)'} is absent; pass { archive } or { root } (an extracted folder with train/ and test/)`);
    ds = loadImageArchive(archive, { ...opts, prefix: split, name });
  }
  if (JSON.stringify(ds.classes) !== JSON.stringify(CIFAR10_CLASSES)) {
    const got = ds.classes.join(', ');
    ds.dispose();
    throw new Error(`${name}: expected the CIFAR-10 classes (${CIFAR10_CLASSES.join(', ')}), found ${got}`);
  }
  return ds;
}
