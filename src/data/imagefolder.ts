// Folder-per-class image sets (JPEG via jpeg-js, PNG via pngjs), decoded once and cached as one compact binary file
// keyed by the folder's contents, plus a tar.gz extractor for archives such as CIFAR-10.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { tensor } from '../torch';
import { writeFileAtomic } from '../torch/atomic';
import { ImageDataset } from './dataset';

const EXT = /\.(jpe?g|png)$/i;

export function defaultCacheDir(): string {
  return process.env.TSDISTILL_CACHE ?? path.join(os.homedir(), '.cache', 'tsdistill');
}

/** Decodes one JPEG or PNG file to RGB, channel-first: returns [C=3, H, W] bytes. */
export function decodeImage(file: string): { data: Uint8Array; height: number; width: number } {
  const buf = fs.readFileSync(file);
  let rgba: Uint8Array, width: number, height: number;
  try {
    if (buf[0] === 0x89 && buf[1] === 0x50) {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { PNG } = require('pngjs');
      const png = PNG.sync.read(buf);
      rgba = png.data;
      width = png.width;
      height = png.height;
    } else if (buf[0] === 0xff && buf[1] === 0xd8) {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const jpeg = require('jpeg-js');
      const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
      rgba = img.data;
      width = img.width;
      height = img.height;
    } else throw new Error('not a JPEG or PNG file (unknown signature at offset 0)');
  } catch (e) {
    throw new Error(`${file}: cannot decode image: ${(e as Error).message}`);
  }
  const n = width * height;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    out[i] = rgba[4 * i];
    out[n + i] = rgba[4 * i + 1];
    out[2 * n + i] = rgba[4 * i + 2];
  }
  return { data: out, height, width };
}

interface Listing {
  classes: string[];
  files: { rel: string; label: number }[];
  key: string;
}

function list(dir: string): Listing {
  if (!fs.existsSync(dir)) throw new Error(`image folder ${dir} does not exist`);
  const classes = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  if (classes.length === 0) throw new Error(`image folder ${dir} has no class subfolders (expected ${dir}/<class>/<image>.jpg)`);
  const files: { rel: string; label: number }[] = [];
  const h = crypto.createHash('sha1');
  classes.forEach((c, label) => {
    for (const f of fs.readdirSync(path.join(dir, c)).filter((f) => EXT.test(f)).sort()) {
      const rel = path.join(c, f);
      const st = fs.statSync(path.join(dir, rel));
      h.update(`${rel}\0${st.size}\0${st.mtimeMs}\n`);
      files.push({ rel, label });
    }
  });
  if (files.length === 0) throw new Error(`image folder ${dir} has no .jpg/.jpeg/.png files`);
  return { classes, files, key: h.digest('hex').slice(0, 20) };
}

/**
 * Loads `dir/<class>/<image>` as uint8 images [N, 3, H, W] and int64 labels (classes sorted by name). The first
 * call decodes every file and writes a cache file (in `cacheDir`, default ~/.cache/tsdistill); later calls read it,
 * unless a file was added, removed or modified.
 */
export function loadImageFolder(dir: string, opts: { cacheDir?: string; name?: string } = {}): ImageDataset {
  const lst = list(dir);
  const cacheDir = path.join(opts.cacheDir ?? defaultCacheDir(), 'imagefolder');
  const cacheFile = path.join(cacheDir, `${lst.key}.bin`);
  const name = opts.name ?? path.basename(path.resolve(dir));
  let images: Uint8Array, labels: Float64Array, h: number, w: number;
  if (fs.existsSync(cacheFile)) {
    const buf = fs.readFileSync(cacheFile);
    const hl = buf.readUInt32LE(0);
    const meta = JSON.parse(buf.subarray(4, 4 + hl).toString('utf8'));
    ({ h, w } = meta);
    const n = lst.files.length;
    const start = 4 + hl;
    if (meta.n !== n || buf.length !== start + n * 3 * h * w + n)
      throw new Error(`${cacheFile}: cache file does not match ${dir} (${meta.n} images cached, ${n} listed); delete it to rebuild`);
    images = new Uint8Array(buf.buffer, buf.byteOffset + start, n * 3 * h * w);
    labels = Float64Array.from(buf.subarray(start + n * 3 * h * w));
  } else {
    const first = decodeImage(path.join(dir, lst.files[0].rel));
    h = first.height;
    w = first.width;
    const n = lst.files.length;
    images = new Uint8Array(n * 3 * h * w);
    const lab = new Uint8Array(n);
    lst.files.forEach((f, i) => {
      const img = i === 0 ? first : decodeImage(path.join(dir, f.rel));
      if (img.height !== h || img.width !== w)
        throw new Error(`${path.join(dir, f.rel)}: image is ${img.width}x${img.height}, the folder's first image is ${w}x${h}`);
      images.set(img.data, i * 3 * h * w);
      lab[i] = f.label;
    });
    const meta = Buffer.from(JSON.stringify({ n, h, w, classes: lst.classes }), 'utf8');
    const head = Buffer.alloc(4);
    head.writeUInt32LE(meta.length, 0);
    writeFileAtomic(cacheFile, Buffer.concat([head, meta, Buffer.from(images.buffer, images.byteOffset, images.byteLength), Buffer.from(lab)]));
    labels = Float64Array.from(lab);
  }
  const n = lst.files.length;
  return new ImageDataset(name, tensor(images, { shape: [n, 3, h, w] }), tensor(labels, { dtype: 'int64' }), lst.classes);
}

/**
 * Extracts a .tar.gz archive (regular files and folders; ustar names) into `dest`, once: a marker file records a
 * finished extraction, so an interrupted one is redone. Returns `dest`.
 */
export function extractTarGz(archive: string, dest: string): string {
  const marker = path.join(dest, '.extracted');
  if (fs.existsSync(marker)) return dest;
  let buf: Buffer;
  try {
    buf = zlib.gunzipSync(fs.readFileSync(archive));
  } catch (e) {
    throw new Error(`${archive}: cannot read gzip data: ${(e as Error).message}`);
  }
  fs.mkdirSync(dest, { recursive: true });
  let off = 0;
  while (off + 512 <= buf.length) {
    const hdr = buf.subarray(off, off + 512);
    if (hdr.every((b) => b === 0)) break;
    const str = (a: number, b: number) => hdr.subarray(a, b).toString('utf8').replace(/\0.*$/s, '');
    const nameField = str(0, 100);
    const prefix = str(345, 500);
    const name = prefix ? `${prefix}/${nameField}` : nameField;
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const type = String.fromCharCode(hdr[156] || 48);
    if (!Number.isFinite(size) || off + 512 + size > buf.length)
      throw new Error(`${archive}: tar entry '${name}' at offset ${off} runs past the end of the archive`);
    const target = path.resolve(dest, name);
    if (!target.startsWith(path.resolve(dest) + path.sep) && target !== path.resolve(dest))
      throw new Error(`${archive}: tar entry '${name}' points outside ${dest}`);
    if (type === '5') fs.mkdirSync(target, { recursive: true });
    else if (type === '0') {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, buf.subarray(off + 512, off + 512 + size));
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  fs.writeFileSync(marker, new Date().toISOString());
  return dest;
}

/** CIFAR-10 from ../shared/data/cifar10-jpeg.tar.gz (extracted once into the cache directory). */
export function loadCifar10(split: 'train' | 'test', opts: { archive?: string; cacheDir?: string } = {}): ImageDataset {
  const archive = opts.archive ?? path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'data', 'cifar10-jpeg.tar.gz');
  if (!fs.existsSync(archive)) throw new Error(`CIFAR-10 archive not found at ${archive}`);
  const root = extractTarGz(archive, path.join(opts.cacheDir ?? defaultCacheDir(), 'cifar10-jpeg'));
  return loadImageFolder(path.join(root, split), { cacheDir: opts.cacheDir, name: `cifar10-${split}` });
}
