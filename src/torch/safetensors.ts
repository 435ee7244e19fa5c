// The safetensors format: u64 little-endian header length N, N bytes of JSON header (space-padded to a multiple of
// 8), then the data section. Files open in Python's `safetensors` and PyTorch and back.
import * as fs from 'node:fs';
import { native, wrap } from './handle';
import { Tensor } from './tensor';
import { DType, DeviceLike } from './types';
import { writeFileAtomic } from './atomic';

const TO_ST: Partial<Record<DType, string>> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_ST: Record<string, DType> = Object.fromEntries(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));
const ITEMSIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
export interface SafetensorsHeader {
  entries: Record<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + N). */
  dataStart: number;
}

/** Serialises tensors (any device, any layout) to the bytes of a safetensors file. */
export function serializeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw new Error(`safetensors: metadata value for '${k}' must be a string, got ${typeof v}`);
    header.__metadata__ = metadata;
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const st = TO_ST[t.dtype];
    if (!st) throw new Error(`safetensors: tensor '${name}' has dtype ${t.dtype}, which the format cannot store`);
    const bytes = new Uint8Array(native.toBuffer(t._h));
    header[name] = { dtype: st, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    blobs.push(bytes);
    offset += bytes.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.allocUnsafe(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const b of blobs) {
    out.set(b, pos);
    pos += b.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temp file, fsync, rename). */
export function saveSafetensors(file: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}

/** Parses and validates the header; `size` is the total byte length of the file or buffer. */
export function parseHeader(head: Buffer, size: number, source: string): SafetensorsHeader {
  if (size < 8) throw new Error(`${source}: not a safetensors file: ${size} bytes, shorter than the 8-byte header length (offset 0)`);
  const n64 = head.readBigUInt64LE(0);
  if (n64 > BigInt(size - 8))
    throw new Error(`${source}: header length ${n64} at offset 0 runs past the end of the file (${size} bytes)`);
  const n = Number(n64);
  if (head.length < 8 + n) throw new Error(`${source}: header truncated: needs bytes 8..${8 + n}, have ${head.length}`);
  let parsed: any;
  try {
    parsed = JSON.parse(head.subarray(8, 8 + n).toString('utf8'));
  } catch (e) {
    throw new Error(`${source}: invalid JSON header at offsets 8..${8 + n}: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error(`${source}: the header at offset 8 is not a JSON object`);
  const dataStart = 8 + n;
  const dataLen = size - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Record<string, SafetensorsEntry> = {};
  for (const [name, e] of Object.entries<any>(parsed)) {
    if (name === '__metadata__') {
      for (const [k, v] of Object.entries(e ?? {})) {
        if (typeof v !== 'string') throw new Error(`${source}: __metadata__ value for '${k}' is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!e || typeof e !== 'object') throw new Error(`${source}: tensor '${name}': header entry is not an object`);
    if (!(e.dtype in ITEMSIZE)) throw new Error(`${source}: tensor '${name}': unknown dtype '${e.dtype}' (known: ${Object.keys(ITEMSIZE).join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every((s: unknown) => Number.isInteger(s) && (s as number) >= 0))
      throw new Error(`${source}: tensor '${name}': invalid shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x: unknown) => Number.isInteger(x) && (x as number) >= 0) || off[1] < off[0])
      throw new Error(`${source}: tensor '${name}': invalid data_offsets ${JSON.stringify(off)}`);
    const numel = e.shape.reduce((a: number, b: number) => a * b, 1);
    const need = numel * ITEMSIZE[e.dtype];
    if (off[1] - off[0] !== need)
      throw new Error(`${source}: tensor '${name}': data_offsets [${off[0]}, ${off[1]}] hold ${off[1] - off[0]} bytes, shape [${e.shape}] of ${e.dtype} needs ${need}`);
    if (off[1] > dataLen)
      throw new Error(`${source}: tensor '${name}' data_offsets [${off[0]}, ${off[1]}] end beyond the data section (${dataLen} bytes, file offset ${dataStart}); the file is truncated or corrupt`);
    entries[name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off[0], off[1]] };
  }
  // The reference implementation requires the entries to tile the data section exactly.
  const sorted = Object.entries(entries).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]);
  let expect = 0;
  for (const [name, e] of sorted) {
    if (e.data_offsets[0] !== expect)
      throw new Error(`${source}: tensor '${name}' starts at data offset ${e.data_offsets[0]} (file offset ${dataStart + e.data_offsets[0]}), expected ${expect}: offsets overlap or leave a hole`);
    expect = e.data_offsets[1];
  }
  if (expect !== dataLen)
    throw new Error(`${source}: the tensors cover ${expect} bytes of a ${dataLen}-byte data section (file offset ${dataStart}): trailing bytes`);
  return { entries, metadata, dataStart };
}

/** Parses a whole safetensors buffer into tensors (on the CPU unless `device` is given). */
export function parseSafetensors(buf: Buffer, opts: { source?: string; device?: DeviceLike } = {}): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const source = opts.source ?? '<buffer>';
  const h = parseHeader(buf, buf.length, source);
  const tensors: Record<string, Tensor> = {};
  try {
    for (const [name, e] of Object.entries(h.entries)) {
      const start = h.dataStart + e.data_offsets[0];
      // a byte view needs no alignment; fromBuffer copies the bytes into the new tensor
      const bytes = new Uint8Array(buf.buffer, buf.byteOffset + start, e.data_offsets[1] - e.data_offsets[0]);
      let t = wrap(native.fromBuffer(bytes, e.shape, FROM_ST[e.dtype]));
      if (opts.device && opts.device !== 'cpu') {
        const moved = t.to({ device: opts.device });
        t.dispose();
        t = moved;
      }
      tensors[name] = t;
    }
  } catch (err) {
    for (const t of Object.values(tensors)) t.dispose();
    throw err;
  }
  return { tensors, metadata: h.metadata };
}

/** Reads a safetensors file. */
export function loadSafetensors(file: string, opts: { device?: DeviceLike } = {}): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  return parseSafetensors(buf, { source: file, device: opts.device });
}

/** Names, dtypes and shapes in a safetensors file, reading only its header. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const first = Buffer.alloc(Math.min(8, size));
    fs.readSync(fd, first, 0, first.length, 0);
    if (size < 8) return parseHeader(first, size, file);
    const n = Number(first.readBigUInt64LE(0));
    if (n > size - 8) return parseHeader(first, size, file);
    const head = Buffer.alloc(8 + n);
    fs.readSync(fd, head, 0, 8 + n, 0);
    return parseHeader(head, size, file);
  } finally {
    fs.closeSync(fd);
  }
}
