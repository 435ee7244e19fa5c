import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, arange, dispose, randn, scalarTensor, tensor, tidy, zeros } from '../src/torch';
import { native } from '../src/torch/handle';
import {
  loadSafetensors, parseSafetensors, readSafetensorsHeader, saveSafetensors, serializeSafetensors,
} from '../src/torch/safetensors';
import { appendLineDurable, removeStaleTempFiles, tempPathFor, writeFileAtomic } from '../src/torch/atomic';
import { checkLeaks } from './helpers';

const fixtures = path.join(__dirname, '..', '..', 'test', 'fixtures');
const pyFile = path.join(fixtures, 'python_written.safetensors');
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-st-'));
const hex = (t: Tensor) => Buffer.from(native.toBuffer(t._h)).toString('hex');

/** A file from a raw header object and a data section of `dataLen` bytes (the header is padded like the format). */
function build(header: unknown, dataLen: number): Buffer {
  let json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataLen, 7)]);
}
const parseAs = (name: string) => (b: Buffer) => parseSafetensors(b, { source: name });
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('safetensors: reading and writing', () => {
  checkLeaks();

  it('reads a file written from Python with PyTorch 1.13: every dtype, 0-d, empty, NaN/inf, UTF-8 names', () => {
    const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'python_written.json'), 'utf8'));
    const { __metadata__: wantMeta, ...want } = expected;
    const { tensors, metadata } = loadSafetensors(pyFile);
    try {
      assert.deepEqual(metadata, wantMeta);
      assert.equal(metadata.note, 'café');
      assert.deepEqual(Object.keys(tensors).sort(), Object.keys(want).sort());
      assert.ok('layer.über.weight' in tensors);
      for (const [k, e] of Object.entries<any>(want)) {
        const t = tensors[k];
        assert.equal(t.dtype, e.dtype, k);
        assert.deepEqual(t.shape, e.shape, k);
        assert.equal(hex(t), e.hex, `${k}: raw bytes`);
        const vals = t.toArray();
        const wantVals = (e.values as (number | boolean | string)[]).map((v) =>
          typeof v === 'boolean' ? (v ? 1 : 0) : v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v);
        assert.equal(vals.length, wantVals.length, k);
        vals.forEach((v, i) => assert.ok(Object.is(v, wantVals[i]), `${k}[${i}]: ${v} vs ${wantVals[i]}`));
      }
      assert.ok(Object.is(tensors.special.toArray()[3], -0));
      assert.deepEqual(tensors.scalar.shape, []);
      assert.equal(tensors.scalar.item(), 2.5);
    } finally {
      dispose(tensors);
    }
  });

  it('writes the same bytes as the Python writer for the same tensors and metadata', () => {
    const py = fs.readFileSync(pyFile);
    const { tensors, metadata } = parseSafetensors(py, { source: pyFile });
    try {
      const ours = serializeSafetensors(tensors, metadata);
      assert.equal(ours.toString('hex'), py.toString('hex'));
    } finally {
      dispose(tensors);
    }
  });

  it("matches the reference implementation's own byte-level test vectors", () => {
    const t = arange(6, undefined, 1, { dtype: 'float32' });
    const t3 = t.view([1, 2, 3]);
    const t4 = t.view([1, 1, 2, 3]);
    try {
      const out = serializeSafetensors({ 'attn.0': t3 });
      const want = [
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
      ];
      assert.deepEqual([...out], want);
      // a shorter name forces 7 bytes of space padding before the data
      assert.deepEqual([...serializeSafetensors({ attn0: t4 })], [
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
        121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
        91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
        115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
        32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
        160, 64,
      ]);
    } finally {
      dispose([t, t3, t4]);
    }
    assert.deepEqual([...serializeSafetensors({})], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    assert.deepEqual([...serializeSafetensors({}, { framework: 'pt' })], [
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
      95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
      116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]);
    const empty = parseSafetensors(serializeSafetensors({}, { framework: 'pt' }));
    assert.deepEqual(empty, { tensors: {}, metadata: { framework: 'pt' } });
  });

  it('lays data out by descending dtype alignment, then name, with the header in data order', () => {
    const src = {
      b: tensor([1], { dtype: 'uint8' }), a: tensor([1, 2], { dtype: 'float32' }), '10': tensor([1], { dtype: 'int64' }),
      '2': tensor([1], { dtype: 'int64' }), c: tensor([true]), d: tensor([1], { dtype: 'float16' }),
      e: tensor([1], { dtype: 'float64' }), f: tensor([1], { dtype: 'bfloat16' }), g: tensor([1], { dtype: 'int32' }),
      h: tensor([1], { dtype: 'int16' }), i: tensor([1], { dtype: 'int8' }),
    };
    try {
      const buf = serializeSafetensors(src, { z: '1', a: '2' });
      const n = Number(buf.readBigUInt64LE(0));
      const text = buf.subarray(8, 8 + n).toString('utf8');
      const keys = [...text.matchAll(/"([^"]+)":\{/g)].map((m) => m[1]);
      assert.deepEqual(keys, ['__metadata__', '10', '2', 'e', 'a', 'g', 'f', 'd', 'h', 'i', 'b', 'c']);
      assert.ok(text.startsWith('{"__metadata__":{"a":"2","z":"1"},"10":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},'));
      assert.match(text, /"c":\{"dtype":"BOOL","shape":\[1\],"data_offsets":\[44,45\]\}\} *$/);
    } finally {
      dispose(src);
    }
  });

  it('round-trips every dtype, 0-d, empty, non-contiguous and grad-requiring tensors through a file', () => {
    const dir = tmpDir();
    const src: Record<string, Tensor> = {
      a: randn([3, 4]), b: randn([2], { dtype: 'float64' }), c: tensor([1, -2.5, 65504], { dtype: 'float16' }),
      d: tensor([1.5, -2, 3.0e38], { dtype: 'bfloat16' }), e: tensor([1, -2, 2 ** 53], { dtype: 'int64' }),
      f: tensor([7, -2147483648], { dtype: 'int32' }), g: tensor([1, -32768], { dtype: 'int16' }),
      h: tensor([-1, 127], { dtype: 'int8' }), i: tensor([200, 0], { dtype: 'uint8' }), j: tensor([true, false]),
      k: tidy(() => randn([4, 3]).t()), // non-contiguous
      scalar: scalarTensor(-3.25, { dtype: 'float64' }), none: zeros([2, 0, 3]), w: randn([2, 2], { requiresGrad: true }),
    };
    const file = path.join(dir, 'sub', 'm.safetensors');
    try {
      saveSafetensors(file, src, { step: '3', note: 'ünïcode' });
      saveSafetensors(file, src, { step: '4', note: 'ünïcode' }); // replaces the first
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['m.safetensors']); // no temp files left behind
      const { tensors, metadata } = loadSafetensors(file);
      try {
        assert.deepEqual(metadata, { step: '4', note: 'ünïcode' });
        assert.deepEqual(Object.keys(tensors).sort(), Object.keys(src).sort());
        for (const k of Object.keys(src)) {
          assert.equal(tensors[k].dtype, src[k].dtype, k);
          assert.deepEqual(tensors[k].shape, src[k].shape, k);
          assert.equal(hex(tensors[k]), hex(src[k]), k);
          assert.equal(tensors[k].requiresGrad, false, k);
        }
        assert.deepEqual(tensors.k.toArray(), src.k.toArray());
        assert.equal(tensors.e.data()[2], 2n ** 53n);
        assert.deepEqual(tensors.d.toArray(), [1.5, -2, 3.00405527047391e38]); // bfloat16 rounding, as PyTorch gives
        // the same bytes when written again
        assert.ok(serializeSafetensors(tensors, metadata).equals(fs.readFileSync(file)));
      } finally {
        dispose(tensors);
      }
      const hdr = readSafetensorsHeader(file);
      assert.equal(hdr.dataStart % 8, 0);
      assert.equal(hdr.size, fs.statSync(file).size);
      assert.deepEqual(hdr.entries.k, { dtype: 'F32', shape: [3, 4], data_offsets: hdr.entries.k.data_offsets });
      assert.equal(hdr.entries.k.data_offsets[1] - hdr.entries.k.data_offsets[0], 48);
      assert.deepEqual(hdr.entries.none.shape, [2, 0, 3]);
      assert.deepEqual(hdr.metadata, { step: '4', note: 'ünïcode' });
    } finally {
      dispose(src);
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('loads a chosen subset of tensors and onto an explicit cpu device', () => {
    const sub = loadSafetensors(pyFile, { keys: ['i16', 'layer.über.weight'] });
    const onCpu = loadSafetensors(pyFile, { device: 'cpu', keys: ['u8'] });
    try {
      assert.deepEqual(Object.keys(sub.tensors).sort(), ['i16', 'layer.über.weight']);
      assert.deepEqual(sub.tensors.i16.toArray(), [-32768, 12]);
      assert.deepEqual(sub.tensors['layer.über.weight'].toArray(), [0, 3, 1, 4, 2, 5]);
      assert.equal(sub.metadata.written_by, 'python');
      assert.deepEqual(onCpu.tensors.u8.toArray(), [0, 255, 17]);
      assert.equal(onCpu.tensors.u8.device, 'cpu');
    } finally {
      dispose([sub.tensors, onCpu.tensors]);
    }
    assert.throws(() => loadSafetensors(pyFile, { keys: ['fc.weight'] }),
      new RegExp(`^Error: ${esc(pyFile)}: no tensor named 'fc.weight' \\(has: .*i64`));
    assert.throws(() => parseSafetensors(fs.readFileSync(pyFile), { keys: ['nope'] }), /<buffer>: no tensor named 'nope'/);
  });

  it('rejects what the format cannot hold, naming the key, and leaves an existing file untouched', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'keep.safetensors');
    const t = randn([2]);
    const c = tidy(() => t.to('complex64'));
    try {
      saveSafetensors(file, { t });
      const before = fs.readFileSync(file);
      assert.throws(() => serializeSafetensors({ t }, { n: 3 as any }), /metadata value for 'n' must be a string, got number \(3\)/);
      assert.throws(() => serializeSafetensors({ t }, null as any), /metadata must be an object of strings, got null/);
      assert.throws(() => saveSafetensors(file, { t, c }), new RegExp(`${esc(file)}: safetensors: tensor 'c' has dtype complex64, which the format cannot store`));
      assert.throws(() => saveSafetensors(file, { __metadata__: t }), /'__metadata__' is reserved/);
      assert.throws(() => serializeSafetensors({ x: 3 as any }), /value for 'x' is not a Tensor \(got number\)/);
      assert.ok(fs.readFileSync(file).equals(before));
      assert.deepEqual(fs.readdirSync(dir), ['keep.safetensors']);
      const gone = randn([1]);
      gone.dispose();
      assert.throws(() => serializeSafetensors({ gone }), /tensor 'gone' has been disposed/);
    } finally {
      dispose([t, c]);
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('safetensors: corrupt and truncated files', () => {
  checkLeaks();
  const good = fs.readFileSync(pyFile);
  const n = Number(good.readBigUInt64LE(0));
  const dataStart = 8 + n;
  const dataLen = good.length - dataStart;

  it('names the file and the offset for files truncated anywhere', () => {
    const dir = tmpDir();
    try {
      const cases: [number, RegExp][] = [
        [0, /not a safetensors file: 0 bytes, shorter than the 8-byte header length at offset 0/],
        [7, /not a safetensors file: 7 bytes, shorter than the 8-byte header length at offset 0/],
        [8, new RegExp(`header length ${n} at offset 0 runs past the end of the file \\(8 bytes, header would end at offset ${dataStart}\\)`)],
        [100, new RegExp(`header length ${n} at offset 0 runs past the end of the file \\(100 bytes`)],
        [dataStart - 1, new RegExp(`header length ${n} at offset 0 runs past the end of the file \\(${dataStart - 1} bytes`)],
        [dataStart, new RegExp(`tensor 'i64' data_offsets \\[0, 32\\] end beyond the data section \\(0 bytes, file offset ${dataStart}\\); the file is truncated`)],
        [dataStart + 40, new RegExp(`tensor '\\w+' data_offsets \\[\\d+, \\d+\\] end beyond the data section \\(40 bytes, file offset ${dataStart}\\)`)],
        [good.length - 1, new RegExp(`tensor 'flags' data_offsets \\[${dataLen - 3}, ${dataLen}\\] end beyond the data section \\(${dataLen - 1} bytes, file offset ${dataStart}\\)`)],
      ];
      for (const [len, re] of cases) {
        const file = path.join(dir, `cut${len}.safetensors`);
        fs.writeFileSync(file, good.subarray(0, len));
        const full = new RegExp(`^Error: ${esc(file)}: ${re.source}`);
        assert.throws(() => loadSafetensors(file), full, `cut at ${len}`);
        assert.throws(() => readSafetensorsHeader(file), full, `header of cut at ${len}`);
        assert.throws(() => loadSafetensors(file, { keys: ['f32'] }), full, `subset of cut at ${len}`);
      }
      assert.throws(() => loadSafetensors(path.join(dir, 'missing.safetensors')), /missing\.safetensors: cannot read: ENOENT/);
      assert.throws(() => readSafetensorsHeader(path.join(dir, 'missing.safetensors')), /missing\.safetensors: cannot open: ENOENT/);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('rejects a wrong header length, broken JSON, bad UTF-8 and unknown dtypes', () => {
    const parse = parseAs('model.safetensors');
    const withLen = (v: bigint) => {
      const b = Buffer.from(good);
      b.writeBigUInt64LE(v, 0);
      return b;
    };
    assert.throws(() => parse(withLen(BigInt(good.length))),
      new RegExp(`^Error: model\\.safetensors: header length ${good.length} at offset 0 runs past the end of the file \\(${good.length} bytes`));
    assert.throws(() => parse(withLen(2n ** 63n + 5n)), /model\.safetensors: header length 9223372036854775813 at offset 0 is larger than the 100000000-byte limit/);
    assert.throws(() => parse(withLen(BigInt(n - 8))), new RegExp(`model\\.safetensors: invalid JSON header at offsets 8\\.\\.${n}: `));
    assert.throws(() => parse(withLen(BigInt(n + 16))), new RegExp(`model\\.safetensors: (invalid JSON header at offsets 8\\.\\.${n + 24}|the header \\(header bytes 8\\.\\.${n + 24}\\) is not valid UTF-8)`));
    const badJson = Buffer.from(good);
    badJson[8] = 0x7b; badJson[9] = 0x7b; // '{{'
    assert.throws(() => parse(badJson), new RegExp(`model\\.safetensors: invalid JSON header at offsets 8\\.\\.${dataStart}: `));
    assert.throws(() => parse(build('[1, 2]', 0)), /model\.safetensors: the header \(header bytes 8\.\.16\) is not a JSON object/);
    const badUtf8 = build('{"a":{}}', 0);
    badUtf8[10] = 0xff;
    assert.throws(() => parse(badUtf8), /model\.safetensors: the header \(header bytes 8\.\.16\) is not valid UTF-8/);
    const swap = (from: string, to: string) => Buffer.from(good.toString('latin1').replace(from, to), 'latin1');
    assert.throws(() => parse(swap('"F64"', '"X64"')),
      new RegExp(`model\\.safetensors: tensor 'f64' in the header \\(header bytes 8\\.\\.${dataStart}\\): unknown dtype "X64" \\(known: F64, F32`));
    assert.throws(() => parse(swap('"I16"', '"U16"')), /tensor 'i16' in the header \(header bytes 8\.\.\d+\): dtype 'U16' has no libtorch 1\.13 equivalent/);
    assert.throws(() => parse(build({ a: { dtype: 'F32', shape: [2] } }, 8)), /tensor 'a' in the header \(header bytes 8\.\.\d+\): invalid data_offsets undefined/);
    assert.throws(() => parse(build({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8)), /tensor 'a' .*: invalid shape \[-2\]/);
    assert.throws(() => parse(build({ a: 5 }, 0)), /tensor 'a' .*: entry is not an object/);
    assert.throws(() => parse(build({ __metadata__: { n: 1 } }, 0)), /__metadata__ value for 'n' in the header \(header bytes 8\.\.32\) is not a string: 1/);
    assert.throws(() => parse(build({ __metadata__: 'x' }, 0)), /__metadata__ in the header \(header bytes 8\.\.32\) is not an object of strings/);
  });

  it('rejects offsets that do not match the shape, overlap, leave holes or leave trailing bytes', () => {
    const parse = parseAs('model.safetensors');
    const f32 = (shape: number[], off: [number, number]) => ({ dtype: 'F32', shape, data_offsets: off });
    // header {"a":...,"b":...} pads to 112 bytes: the data section starts at file offset 120
    const two = (a: [number, number], b: [number, number], len: number) => build({ a: f32([2], a), b: f32([2], b) }, len);
    assert.equal(Number(two([0, 8], [8, 16], 16).readBigUInt64LE(0)), 112);
    const ok = parse(two([8, 16], [0, 8], 16)); // any header order is fine
    assert.deepEqual(Object.keys(ok.tensors), ['b', 'a']);
    dispose(ok.tensors);
    assert.throws(() => parse(two([0, 8], [4, 12], 16)),
      /^Error: model\.safetensors: tensor 'b' data_offsets \[4, 12\] \(file offset 124\) overlaps tensor 'a', which ends at data offset 8$/);
    assert.throws(() => parse(two([0, 8], [12, 20], 20)),
      /^Error: model\.safetensors: tensor 'b' data_offsets \[12, 20\] \(file offset 132\) leaves a hole after data offset 8 \(file offset 128\)$/);
    assert.throws(() => parse(two([0, 8], [8, 16], 20)),
      /^Error: model\.safetensors: the tensors cover 16 bytes of a 20-byte data section: 4 trailing bytes at file offset 136$/);
    assert.throws(() => parse(two([0, 8], [8, 16], 12)),
      /^Error: model\.safetensors: tensor 'b' data_offsets \[8, 16\] end beyond the data section \(12 bytes, file offset 120\); the file is truncated or corrupt$/);
    assert.throws(() => parse(build({ 'fc.weight': f32([10, 10], [0, 300]) }, 300)),
      /model\.safetensors: tensor 'fc\.weight' in the header \(header bytes 8\.\.80\): data_offsets \[0, 300\] hold 300 bytes, but shape \[10,10\] of F32 needs 400/);
    assert.throws(() => parse(build({ 'fc.weight': f32([10, 10], [0, 400]) }, 300)),
      /^Error: model\.safetensors: tensor 'fc\.weight' data_offsets \[0, 400\] end beyond the data section \(300 bytes, file offset 80\)/);
    assert.throws(() => parse(build({ a: f32([2], [8, 0]) }, 8)), /tensor 'a' .*: invalid data_offsets \[8,0\]/);
  });
});

describe('durable writes', () => {
  checkLeaks();

  it('replaces files atomically, creating directories, and reports failures without leaving temp files', () => {
    const dir = tmpDir();
    try {
      const f = path.join(dir, 'deep', 'er', 'a.json');
      writeFileAtomic(f, '{"x":1}');
      writeFileAtomic(f, new Uint8Array([123, 125]));
      assert.equal(fs.readFileSync(f, 'utf8'), '{}');
      assert.deepEqual(fs.readdirSync(path.dirname(f)), ['a.json']);
      const t = tempPathFor(f);
      assert.equal(path.dirname(t), path.dirname(f));
      assert.match(path.basename(t), new RegExp(`^\\.a\\.json\\.tmp-${process.pid}-[0-9a-f]{8}$`));
      // renaming over a directory fails: the error names the file and the step, and the temp file is removed
      const d = path.join(dir, 'isdir');
      fs.mkdirSync(d);
      assert.throws(() => writeFileAtomic(d, 'x'), new RegExp(`^Error: ${esc(d)}: atomic write failed \\(rename the temp file over it\\): `));
      assert.deepEqual(fs.readdirSync(dir).sort(), ['deep', 'isdir']);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('removes temp files of writers that are gone or too old, and keeps live ones', () => {
    const dir = tmpDir();
    try {
      const deadPid = 4194304 + 12345; // above the largest Linux pid
      fs.writeFileSync(path.join(dir, `.a.json.tmp-${deadPid}-0123abcd`), 'partial');
      fs.writeFileSync(path.join(dir, `.b.json.tmp-${process.pid}-89abcdef`), 'in progress');
      fs.writeFileSync(path.join(dir, `.c.json.tmp-${process.pid}-00000000`), 'old');
      const old = new Date(Date.now() - 2 * 3600_000);
      fs.utimesSync(path.join(dir, `.c.json.tmp-${process.pid}-00000000`), old, old);
      fs.writeFileSync(path.join(dir, 'a.json'), '{}');
      fs.writeFileSync(path.join(dir, '.hidden'), '');
      assert.deepEqual(removeStaleTempFiles(dir), [`.a.json.tmp-${deadPid}-0123abcd`, `.c.json.tmp-${process.pid}-00000000`]);
      assert.deepEqual(fs.readdirSync(dir).sort(), [`.b.json.tmp-${process.pid}-89abcdef`, '.hidden', 'a.json']);
      assert.deepEqual(removeStaleTempFiles(dir, { maxAgeMs: 0 }), [`.b.json.tmp-${process.pid}-89abcdef`]);
      assert.deepEqual(removeStaleTempFiles(path.join(dir, 'nope')), []);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('appends lines durably, adding the newline only when missing', () => {
    const dir = tmpDir();
    try {
      const log = path.join(dir, 'logs', 'm.jsonl');
      appendLineDurable(log, '{"a":1}');
      appendLineDurable(log, '{"a":2}\n');
      appendLineDurable(log, '');
      assert.equal(fs.readFileSync(log, 'utf8'), '{"a":1}\n{"a":2}\n\n');
      assert.throws(() => appendLineDurable(dir, 'x'), new RegExp(`^Error: ${esc(dir)}: durable append failed: EISDIR`));
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});
