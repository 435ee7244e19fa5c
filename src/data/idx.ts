// The IDX format (MNIST and friends), raw or gzip-compressed.
//
// Layout: bytes 0-1 are zero, byte 2 is the element type code, byte 3 the number of dimensions; then one big-endian
// uint32 per dimension, then the elements, big-endian, row-major. Every error names the file and a byte offset.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as zlib from 'node:zlib';

export type IdxDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDType;
  shape: number[];
  data: IdxData;
}

export interface IdxReadOptions {
  /** Keep only the first `limit` entries along dimension 0 (the rest of the file is still size-checked, not read). */
  limit?: number;
}

/** Type code -> [dtype, bytes per element]. */
export const IDX_TYPES: Readonly<Record<number, readonly [IdxDType, number]>> = {
  0x08: ['uint8', 1], 0x09: ['int8', 1], 0x0b: ['int16', 2], 0x0c: ['int32', 4], 0x0d: ['float32', 4], 0x0e: ['float64', 8],
};
const CODES: Record<IdxDType, number> = { uint8: 0x08, int8: 0x09, int16: 0x0b, int32: 0x0c, float32: 0x0d, float64: 0x0e };
const LITTLE_ENDIAN = os.endianness() === 'LE';

interface IdxHeader {
  dtype: IdxDType;
  elemSize: number;
  shape: number[];
  headerLen: number;
  /** Bytes of element data the shape calls for. */
  dataBytes: number;
}

/** Parses and checks the header against the total length of the file (`total` bytes); `head` holds its first bytes. */
function parseHeader(head: Uint8Array, total: number, source: string): IdxHeader {
  if (total < 4)
    throw new Error(`${source}: not an IDX file: it is ${total} bytes long, the 4-byte magic number is incomplete (truncated at offset ${total})`);
  if (head[0] !== 0 || head[1] !== 0)
    throw new Error(
      `${source}: bad IDX magic at offset 0: ${Buffer.from(head.subarray(0, 4)).toString('hex')} (expected 0000 followed by a type code and the number of dimensions)`,
    );
  const type = IDX_TYPES[head[2]];
  if (!type)
    throw new Error(`${source}: unknown IDX type code 0x${head[2].toString(16).padStart(2, '0')} at offset 2 (known: 0x08 uint8, 0x09 int8, 0x0b int16, 0x0c int32, 0x0d float32, 0x0e float64)`);
  const rank = head[3];
  const headerLen = 4 + 4 * rank;
  if (total < headerLen)
    throw new Error(`${source}: header truncated: ${rank} dimensions need ${headerLen} bytes, the file has ${total} (truncated at offset ${total})`);
  const dv = new DataView(head.buffer, head.byteOffset, headerLen);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(dv.getUint32(4 + 4 * i, false));
  const [dtype, elemSize] = type;
  const dataBytes = shape.reduce((a, b) => a * b, 1) * elemSize;
  const have = total - headerLen;
  if (have < dataBytes)
    throw new Error(
      `${source}: expected ${dataBytes} data bytes after the ${headerLen}-byte header, file has ${have} (truncated at offset ${total}); the header describes ${dtype} [${shape.join(', ')}]`,
    );
  if (have > dataBytes)
    throw new Error(`${source}: ${have - dataBytes} unexpected bytes after the data of ${dtype} [${shape.join(', ')}] (from offset ${headerLen + dataBytes})`);
  return { dtype, elemSize, shape, headerLen, dataBytes };
}

function rowsKept(h: IdxHeader, limit: number | undefined, source: string): { shape: number[]; bytes: number } {
  if (limit === undefined || h.shape.length === 0) return { shape: h.shape, bytes: h.dataBytes };
  if (!Number.isInteger(limit) || limit < 0) throw new Error(`${source}: limit must be a non-negative integer, got ${limit}`);
  const n = Math.min(limit, h.shape[0]);
  const shape = [n, ...h.shape.slice(1)];
  return { shape, bytes: shape.reduce((a, b) => a * b, 1) * h.elemSize };
}

/** Big-endian element bytes -> a native typed array (always a fresh, aligned copy for multi-byte types). */
function decodeBody(body: Uint8Array, dtype: IdxDType, elemSize: number): IdxData {
  if (dtype === 'uint8') return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (dtype === 'int8') return new Int8Array(body.buffer, body.byteOffset, body.byteLength);
  const ab = new ArrayBuffer(body.byteLength);
  new Uint8Array(ab).set(body);
  if (LITTLE_ENDIAN) {
    const b = Buffer.from(ab);
    if (elemSize === 2) b.swap16();
    else if (elemSize === 4) b.swap32();
    else b.swap64();
  }
  switch (dtype) {
    case 'int16': return new Int16Array(ab);
    case 'int32': return new Int32Array(ab);
    case 'float32': return new Float32Array(ab);
    default: return new Float64Array(ab);
  }
}

/**
 * Parses the bytes of an IDX file; `source` names the file in errors. 1-byte data is returned as a view into `buf`
 * (no copy); wider types are converted from big-endian into a new array.
 */
export function parseIdx(buf: Uint8Array, source: string, opts: IdxReadOptions = {}): IdxArray {
  const h = parseHeader(buf, buf.byteLength, source);
  const keep = rowsKept(h, opts.limit, source);
  const body = buf.subarray(h.headerLen, h.headerLen + keep.bytes);
  return { dtype: h.dtype, shape: keep.shape, data: decodeBody(body, h.dtype, h.elemSize) };
}

function isGzip(file: string, head: Uint8Array): boolean {
  return file.endsWith('.gz') || (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b);
}

function gunzipFile(file: string, buf: Buffer): Buffer {
  try {
    return zlib.gunzipSync(buf);
  } catch (e) {
    // A truncated stream still yields its complete prefix under a sync flush: report what the IDX data lacks.
    let partial: Buffer | null = null;
    try {
      partial = zlib.gunzipSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch {
      partial = null;
    }
    const why = (e as Error).message;
    if (partial) {
      let idxProblem = '';
      try {
        parseHeader(partial, partial.length, 'decompressed data');
      } catch (e2) {
        idxProblem = `; ${(e2 as Error).message}`;
      }
      throw new Error(
        `${file}: gzip data is corrupt or truncated (${why}) at compressed offset ${buf.length}: it decompresses to ${partial.length} bytes${idxProblem}`,
      );
    }
    throw new Error(`${file}: gzip data is corrupt or truncated (${why}); the compressed file is ${buf.length} bytes`);
  }
}

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the IDX file: ${(e as Error).message}`);
  }
}

/**
 * Reads an IDX file. Files ending in `.gz` (or starting with the gzip signature) are decompressed. With `limit`, a raw
 * file is read only as far as the kept rows (its size is still checked against the header).
 */
export function readIdx(file: string, opts: IdxReadOptions = {}): IdxArray {
  if (opts.limit !== undefined) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new Error(`${file}: cannot read the IDX file: ${(e as Error).message}`);
    }
    try {
      const total = fs.fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(total, 4 + 4 * 255));
      fs.readSync(fd, head, 0, head.length, 0);
      if (!isGzip(file, head)) {
        const h = parseHeader(head, total, file);
        const keep = rowsKept(h, opts.limit, file);
        const body = Buffer.alloc(keep.bytes);
        const got = keep.bytes ? fs.readSync(fd, body, 0, keep.bytes, h.headerLen) : 0;
        if (got !== keep.bytes) throw new Error(`${file}: short read: ${got} of ${keep.bytes} bytes at offset ${h.headerLen}`);
        return { dtype: h.dtype, shape: keep.shape, data: decodeBody(body, h.dtype, h.elemSize) };
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  let buf = readFile(file);
  if (isGzip(file, buf)) buf = gunzipFile(file, buf);
  return parseIdx(buf, file, opts);
}

/** Encodes an array as IDX bytes (big-endian). Used by tests and tools. */
export function encodeIdx(a: IdxArray): Buffer {
  const code = CODES[a.dtype];
  if (code === undefined) throw new Error(`encodeIdx: IDX has no type code for dtype '${a.dtype}'`);
  const n = a.shape.reduce((x, y) => x * y, 1);
  if (n !== a.data.length) throw new Error(`encodeIdx: shape [${a.shape.join(', ')}] holds ${n} elements, the data has ${a.data.length}`);
  if (a.shape.length > 255) throw new Error(`encodeIdx: IDX allows at most 255 dimensions, got ${a.shape.length}`);
  const elemSize = IDX_TYPES[code][1];
  const head = Buffer.alloc(4 + 4 * a.shape.length);
  head[2] = code;
  head[3] = a.shape.length;
  a.shape.forEach((s, i) => head.writeUInt32BE(s, 4 + 4 * i));
  const Ctor = { uint8: Uint8Array, int8: Int8Array, int16: Int16Array, int32: Int32Array, float32: Float32Array, float64: Float64Array }[a.dtype];
  const typed = a.data instanceof Ctor ? a.data : (Ctor as any).from(a.data);
  const body = Buffer.from(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  if (LITTLE_ENDIAN && elemSize > 1) {
    if (elemSize === 2) body.swap16();
    else if (elemSize === 4) body.swap32();
    else body.swap64();
  }
  return Buffer.concat([head, body]);
}
