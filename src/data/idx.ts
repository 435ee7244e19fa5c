// The IDX format (MNIST and friends), raw or gzip-compressed.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';

export interface IdxArray {
  dtype: 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const TYPES: Record<number, [IdxArray['dtype'], number]> = {
  0x08: ['uint8', 1], 0x09: ['int8', 1], 0x0b: ['int16', 2], 0x0c: ['int32', 4], 0x0d: ['float32', 4], 0x0e: ['float64', 8],
};

/** Parses IDX bytes; `source` names the file in errors. */
export function parseIdx(buf: Buffer, source: string): IdxArray {
  if (buf.length < 4) throw new Error(`${source}: not an IDX file: ${buf.length} bytes, the 4-byte magic is incomplete (offset 0)`);
  if (buf[0] !== 0 || buf[1] !== 0)
    throw new Error(`${source}: bad IDX magic at offset 0: ${buf.subarray(0, 4).toString('hex')} (expected 0000 followed by type and rank)`);
  const type = TYPES[buf[2]];
  if (!type) throw new Error(`${source}: unknown IDX type code 0x${buf[2].toString(16)} at offset 2`);
  const rank = buf[3];
  const headerLen = 4 + 4 * rank;
  if (buf.length < headerLen) throw new Error(`${source}: header truncated: ${rank} dimensions need ${headerLen} bytes, the file has ${buf.length}`);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(buf.readUInt32BE(4 + 4 * i));
  const [dtype, size] = type;
  const n = shape.reduce((a, b) => a * b, 1);
  const need = n * size;
  const have = buf.length - headerLen;
  if (have < need)
    throw new Error(`${source}: expected ${need} data bytes after the ${headerLen}-byte header, file has ${have} (truncated at offset ${buf.length})`);
  if (have > need) throw new Error(`${source}: ${have - need} unexpected bytes after the data (from offset ${headerLen + need})`);
  const body = buf.subarray(headerLen, headerLen + need);
  let data: IdxArray['data'];
  if (size === 1) data = dtype === 'uint8' ? new Uint8Array(body) : new Int8Array(body.buffer.slice(body.byteOffset, body.byteOffset + need));
  else {
    // big-endian to native
    const dv = new DataView(body.buffer, body.byteOffset, need);
    if (dtype === 'int16') { data = new Int16Array(n); for (let i = 0; i < n; i++) data[i] = dv.getInt16(2 * i); }
    else if (dtype === 'int32') { data = new Int32Array(n); for (let i = 0; i < n; i++) data[i] = dv.getInt32(4 * i); }
    else if (dtype === 'float32') { data = new Float32Array(n); for (let i = 0; i < n; i++) data[i] = dv.getFloat32(4 * i); }
    else { data = new Float64Array(n); for (let i = 0; i < n; i++) data[i] = dv.getFloat64(8 * i); }
  }
  return { dtype, shape, data };
}

/** Reads an IDX file; `.gz` files are decompressed. */
export function readIdx(file: string): IdxArray {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  if (file.endsWith('.gz') || (buf[0] === 0x1f && buf[1] === 0x8b)) {
    try {
      buf = zlib.gunzipSync(buf);
    } catch (e) {
      throw new Error(`${file}: gzip data is corrupt or truncated: ${(e as Error).message}`);
    }
  }
  return parseIdx(buf, file);
}

/** Writes an IDX file (used by tests and tools). */
export function encodeIdx(a: IdxArray): Buffer {
  const code = Number(Object.entries(TYPES).find(([, v]) => v[0] === a.dtype)![0]);
  const size = TYPES[code][1];
  const head = Buffer.alloc(4 + 4 * a.shape.length);
  head[2] = code;
  head[3] = a.shape.length;
  a.shape.forEach((s, i) => head.writeUInt32BE(s, 4 + 4 * i));
  const body = Buffer.alloc(a.data.length * size);
  for (let i = 0; i < a.data.length; i++) {
    const v = a.data[i];
    if (a.dtype === 'uint8') body.writeUInt8(v, i);
    else if (a.dtype === 'int8') body.writeInt8(v, i);
    else if (a.dtype === 'int16') body.writeInt16BE(v, 2 * i);
    else if (a.dtype === 'int32') body.writeInt32BE(v, 4 * i);
    else if (a.dtype === 'float32') body.writeFloatBE(v, 4 * i);
    else body.writeDoubleBE(v, 8 * i);
  }
  return Buffer.concat([head, body]);
}
