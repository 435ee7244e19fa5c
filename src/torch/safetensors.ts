// The safetensors format (https://huggingface.co/docs/safetensors): a little-endian u64 header length N, N bytes of
// UTF-8 JSON header (space-padded to a multiple of 8), then the data section. Each header entry is
// `name: {dtype, shape, data_offsets: [begin, end]}` with offsets relative to the start of the data section; an
// optional `__metadata__` maps strings to strings. Tensors are stored little-endian and C-contiguous.
//
// Writing follows the reference implementation: tensors are laid out by descending dtype alignment, then by name, and
// the header lists `__metadata__` first and the tensors in data order. Reading validates what the reference validates
// (the entries must tile the data section exactly) and every error names the file and the byte offset at fault.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { native, wrap } from './handle';
import './tensor'; // registers the Tensor class that wrap() builds
import type { Tensor } from './tensor';
import type { DType, DeviceLike } from './types';
import { writeFileAtomic } from './atomic';

/** The safetensors dtype codes that libtorch 1.13 can hold, and the matching tensor dtypes. */
const TO_ST: Partial<Record<DType, string>> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_ST: Record<string, DType> = Object.fromEntries(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));
const ITEMSIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** Codes the format defines that have no libtorch 1.13 dtype. */
const UNSUPPORTED = new Set(['U16', 'U32', 'U64', 'F8_E5M2', 'F8_E4M3']);
/** The reference's dtype order (increasing alignment); files are laid out in descending order of it, then by name. */
const ORDER = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64'];
/** The reference refuses headers larger than this. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsEntry {
  /** Format code: 'F32', 'BF16', 'I64', ... */
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  data_offsets: [number, number];
}
export interface SafetensorsHeader {
  /** Entries in data order (ascending offsets). */
  entries: Record<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + N). */
  dataStart: number;
  /** Total size of the file or buffer in bytes. */
  size: number;
}
export interface SafetensorsContents {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

function checkLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new Error('safetensors: this implementation needs a little-endian host');
}

/** Assigns an own property even for names such as `__proto__`. */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------------- writing

/** Serialises tensors (any device, any layout, any safetensors dtype) to the bytes of a safetensors file. */
export function serializeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  checkLittleEndian();
  const items: { name: string; code: string; shape: number[]; bytes: Uint8Array }[] = [];
  for (const name of Object.keys(tensors)) {
    if (name === '__metadata__') throw new Error(`safetensors: '__metadata__' is reserved and cannot name a tensor`);
    const t = tensors[name];
    if (!t || typeof t !== 'object' || !('_h' in t))
      throw new Error(`safetensors: value for '${name}' is not a Tensor (got ${t === null ? 'null' : typeof t})`);
    if (t.isDisposed) throw new Error(`safetensors: tensor '${name}' has been disposed`);
    const code = TO_ST[t.dtype];
    if (!code)
      throw new Error(`safetensors: tensor '${name}' has dtype ${t.dtype}, which the format cannot store (supported: ${Object.keys(TO_ST).join(', ')})`);
    // toBuffer copies to CPU and makes the bytes contiguous, whatever the device and strides
    const bytes = new Uint8Array(native.toBuffer(t._h));
    items.push({ name, code, shape: t.shape, bytes });
  }
  items.sort((a, b) => ORDER.indexOf(b.code) - ORDER.indexOf(a.code) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // The header is assembled by hand so that its key order is the data order (a JS object would put integer-like
  // names first).
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata))
      throw new Error(`safetensors: metadata must be an object of strings, got ${metadata === null ? 'null' : Array.isArray(metadata) ? 'an array' : typeof metadata}`);
    const keys = Object.keys(metadata).sort();
    for (const k of keys) {
      const v = metadata[k];
      if (typeof v !== 'string')
        throw new Error(`safetensors: metadata value for '${k}' must be a string, got ${v === null ? 'null' : typeof v} (${JSON.stringify(v)})`);
    }
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let offset = 0;
  for (const it of items) {
    const end = offset + it.bytes.byteLength;
    parts.push(`${JSON.stringify(it.name)}:{"dtype":"${it.code}","shape":[${it.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const n = json.length + ((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + n + offset, 0x20);
  out.writeBigUInt64LE(BigInt(n), 0);
  json.copy(out, 8);
  let pos = 8 + n;
  for (const it of items) {
    out.set(it.bytes, pos);
    pos += it.bytes.byteLength;
  }
  return out;
}

/**
 * Writes a safetensors file atomically: a temp file in the same directory, fsync, rename, fsync of the directory.
 * Readers see the old file or the complete new one, never a partial file.
 */
export function saveSafetensors(file: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  let bytes: Buffer;
  try {
    bytes = serializeSafetensors(tensors, metadata);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  writeFileAtomic(file, bytes);
}

// ---------------------------------------------------------------------------------------------------- reading

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses and validates a header. `head` holds at least the first 8 + N bytes (or the whole file when it is shorter);
 * `size` is the total byte length of the file or buffer. Errors name `source` and the byte offset at fault.
 */
export function parseHeader(head: Uint8Array, size: number, source: string): SafetensorsHeader {
  if (size < 8)
    throw new Error(`${source}: not a safetensors file: ${size} bytes, shorter than the 8-byte header length at offset 0`);
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const n64 = buf.readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER))
    throw new Error(`${source}: header length ${n64} at offset 0 is larger than the ${MAX_HEADER}-byte limit (file of ${size} bytes); not a safetensors file or corrupt`);
  if (n64 > BigInt(size - 8))
    throw new Error(`${source}: header length ${n64} at offset 0 runs past the end of the file (${size} bytes, header would end at offset ${8n + n64})`);
  const n = Number(n64);
  const dataStart = 8 + n;
  if (buf.length < dataStart) throw new Error(`${source}: header truncated: needs bytes 8..${dataStart}, have ${buf.length}`);
  const at = `header bytes 8..${dataStart}`;
  let text: string;
  try {
    text = utf8.decode(buf.subarray(8, dataStart));
  } catch {
    throw new Error(`${source}: the header (${at}) is not valid UTF-8`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: invalid JSON header at offsets 8..${dataStart}: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error(`${source}: the header (${at}) is not a JSON object`);

  const dataLen = size - dataStart;
  const metadata: Record<string, string> = {};
  const found: [string, SafetensorsEntry][] = [];
  for (const [name, e] of Object.entries<any>(parsed)) {
    if (name === '__metadata__') {
      if (e === null || typeof e !== 'object' || Array.isArray(e))
        throw new Error(`${source}: __metadata__ in the header (${at}) is not an object of strings`);
      for (const [k, v] of Object.entries(e)) {
        if (typeof v !== 'string')
          throw new Error(`${source}: __metadata__ value for '${k}' in the header (${at}) is not a string: ${JSON.stringify(v)}`);
        setOwn(metadata, k, v);
      }
      continue;
    }
    const where = `tensor '${name}' in the header (${at})`;
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new Error(`${source}: ${where}: entry is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in ITEMSIZE)) {
      if (UNSUPPORTED.has(e.dtype))
        throw new Error(`${source}: ${where}: dtype '${e.dtype}' has no libtorch 1.13 equivalent (readable: ${Object.keys(ITEMSIZE).join(', ')})`);
      throw new Error(`${source}: ${where}: unknown dtype ${JSON.stringify(e.dtype)} (known: ${Object.keys(ITEMSIZE).join(', ')})`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every((s: unknown) => Number.isSafeInteger(s) && (s as number) >= 0))
      throw new Error(`${source}: ${where}: invalid shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0) || off[1] < off[0])
      throw new Error(`${source}: ${where}: invalid data_offsets ${JSON.stringify(off)}`);
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const need = numel * ITEMSIZE[e.dtype];
    if (off[1] - off[0] !== need)
      throw new Error(`${source}: ${where}: data_offsets [${off[0]}, ${off[1]}] hold ${off[1] - off[0]} bytes, but shape [${e.shape}] of ${e.dtype} needs ${need}`);
    if (off[1] > dataLen)
      throw new Error(`${source}: tensor '${name}' data_offsets [${off[0]}, ${off[1]}] end beyond the data section (${dataLen} bytes, file offset ${dataStart}); the file is truncated or corrupt`);
    found.push([name, { dtype: e.dtype, shape: e.shape.slice(), data_offsets: [off[0], off[1]] }]);
  }
  // Like the reference: the entries, in offset order, must tile the data section exactly.
  found.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]);
  let expect = 0;
  let prev = '';
  for (const [name, e] of found) {
    const [b, end] = e.data_offsets;
    if (b !== expect) {
      const what = b < expect ? `overlaps tensor '${prev}', which ends at data offset ${expect}` : `leaves a hole after data offset ${expect} (file offset ${dataStart + expect})`;
      throw new Error(`${source}: tensor '${name}' data_offsets [${b}, ${end}] (file offset ${dataStart + b}) ${what}`);
    }
    expect = end;
    prev = name;
  }
  if (expect !== dataLen)
    throw new Error(`${source}: the tensors cover ${expect} bytes of a ${dataLen}-byte data section: ${dataLen - expect} trailing bytes at file offset ${dataStart + expect}`);
  const entries: Record<string, SafetensorsEntry> = {};
  for (const [name, e] of found) setOwn(entries, name, e);
  return { entries, metadata, dataStart, size };
}

function makeTensor(bytes: Uint8Array, e: SafetensorsEntry, device: DeviceLike | undefined): Tensor {
  // fromBuffer copies, so the view needs no alignment and the source buffer may be dropped afterwards
  const t = wrap(native.fromBuffer(bytes, e.shape, FROM_ST[e.dtype]));
  if (device === undefined || device === 'cpu') return t;
  let moved: Tensor;
  try {
    moved = t.to({ device });
  } catch (err) {
    t.dispose();
    throw err;
  }
  if (moved !== t) t.dispose();
  return moved;
}

function pick(h: SafetensorsHeader, keys: readonly string[] | undefined, source: string): [string, SafetensorsEntry][] {
  const all = Object.entries(h.entries);
  if (keys === undefined) return all;
  const out: [string, SafetensorsEntry][] = [];
  for (const k of keys) {
    if (!Object.prototype.hasOwnProperty.call(h.entries, k)) {
      const names = all.map(([n]) => n);
      const shown = names.slice(0, 20).join(', ') + (names.length > 20 ? `, ... (${names.length} in all)` : '');
      throw new Error(`${source}: no tensor named '${k}' (has: ${shown || 'no tensors'})`);
    }
    out.push([k, h.entries[k]]);
  }
  return out;
}

/**
 * Parses a whole safetensors buffer into tensors (on the CPU unless `device` is given). `keys` restricts the result
 * to those tensors. `source` names the buffer in errors.
 */
export function parseSafetensors(
  buf: Uint8Array,
  opts: { source?: string; device?: DeviceLike; keys?: readonly string[] } = {},
): SafetensorsContents {
  checkLittleEndian();
  const source = opts.source ?? '<buffer>';
  const h = parseHeader(buf, buf.byteLength, source);
  const tensors: Record<string, Tensor> = {};
  try {
    for (const [name, e] of pick(h, opts.keys, source)) {
      const [b, end] = e.data_offsets;
      const bytes = new Uint8Array(buf.buffer, buf.byteOffset + h.dataStart + b, end - b);
      setOwn(tensors, name, makeTensor(bytes, e, opts.device));
    }
  } catch (err) {
    for (const t of Object.values(tensors)) t.dispose();
    throw err;
  }
  return { tensors, metadata: h.metadata };
}

function readAt(fd: number, file: string, length: number, position: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const r = fs.readSync(fd, out, got, length - got, position + got);
    if (r === 0) throw new Error(`${file}: unexpected end of file at offset ${position + got} (the file shrank while being read)`);
    got += r;
  }
  return out;
}

function withFile<T>(file: string, fn: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot open: ${(e as Error).message}`);
  }
  try {
    return fn(fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}

function readHeaderFd(fd: number, size: number, file: string): SafetensorsHeader {
  if (size < 8) return parseHeader(readAt(fd, file, size, 0), size, file);
  const first = readAt(fd, file, 8, 0);
  const n = first.readBigUInt64LE(0);
  // invalid lengths are reported by parseHeader without reading further
  if (n > BigInt(Math.min(size - 8, MAX_HEADER))) return parseHeader(first, size, file);
  return parseHeader(readAt(fd, file, 8 + Number(n), 0), size, file);
}

/**
 * Reads a safetensors file. With `keys`, only those tensors' bytes are read from disk. Tensors are created on the
 * CPU unless `device` is given.
 */
export function loadSafetensors(file: string, opts: { device?: DeviceLike; keys?: readonly string[] } = {}): SafetensorsContents {
  checkLittleEndian();
  if (opts.keys === undefined) {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (e) {
      throw new Error(`${file}: cannot read: ${(e as Error).message}`);
    }
    return parseSafetensors(buf, { source: file, device: opts.device });
  }
  const keys = opts.keys;
  return withFile(file, (fd, size) => {
    const h = readHeaderFd(fd, size, file);
    const tensors: Record<string, Tensor> = {};
    try {
      for (const [name, e] of pick(h, keys, file)) {
        const [b, end] = e.data_offsets;
        setOwn(tensors, name, makeTensor(readAt(fd, file, end - b, h.dataStart + b), e, opts.device));
      }
    } catch (err) {
      for (const t of Object.values(tensors)) t.dispose();
      throw err;
    }
    return { tensors, metadata: h.metadata };
  });
}

/** Names, dtypes, shapes, offsets and metadata of a safetensors file, reading only its header (fully validated). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  return withFile(file, (fd, size) => readHeaderFd(fd, size, file));
}
