import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  dispose, loadSafetensors, parseSafetensors, randn, readSafetensorsHeader, saveSafetensors, serializeSafetensors, tensor,
  appendLineDurable, removeStaleTempFiles, writeFileAtomic, tidy,
} from '../src/torch';
import { checkLeaks } from './helpers';

const fixtures = path.join(__dirname, '..', '..', 'test', 'fixtures');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-st-'));

describe('safetensors', () => {
  checkLeaks();
  it('reads a file written from Python with PyTorch 1.13', () => {
    const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'python_written.json'), 'utf8'));
    const { tensors, metadata } = loadSafetensors(path.join(fixtures, 'python_written.safetensors'));
    try {
      assert.deepEqual(metadata, { format: 'pt', written_by: 'python' });
      assert.deepEqual(Object.keys(tensors).sort(), Object.keys(expected).sort());
      const dtypes: Record<string, string> = { f32: 'float32', f64: 'float64', f16: 'float16', bf16: 'bfloat16', i64: 'int64', i32: 'int32', u8: 'uint8', flags: 'bool', scalar: 'float32', empty: 'float32' };
      for (const [k, e] of Object.entries<any>(expected)) {
        assert.equal(tensors[k].dtype, dtypes[k], k);
        assert.deepEqual(tensors[k].shape, e.shape, k);
        const vals = tensors[k].toArray();
        const want = (e.values as (number | boolean)[]).map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v));
        if (k === 'f32') vals.forEach((v, i) => assert.ok(Math.abs(v - (want[i] as number)) < 1e-6, `${k}[${i}]`));
        else assert.deepEqual(vals, want, k);
      }
    } finally {
      dispose(tensors);
    }
  });
  it('round-trips every dtype and metadata through a file, byte for byte', () => {
    const dir = tmp();
    const src = {
      a: randn([3, 4]), b: randn([2], { dtype: 'float64' }), c: tensor([1, -2.5], { dtype: 'float16' }),
      d: tensor([1.5, 2], { dtype: 'bfloat16' }), e: tensor([1, 2, 3], { dtype: 'int64' }), f: tensor([7], { dtype: 'int32' }),
      g: tensor([1], { dtype: 'int16' }), h: tensor([-1], { dtype: 'int8' }), i: tensor([200], { dtype: 'uint8' }),
      j: tensor([true, false]), k: tidy(() => randn([4, 3]).t()), // non-contiguous
    };
    const file = path.join(dir, 'm.safetensors');
    saveSafetensors(file, src, { step: '3' });
    const { tensors, metadata } = loadSafetensors(file);
    try {
      assert.deepEqual(metadata, { step: '3' });
      for (const k of Object.keys(src)) {
        const a = (src as any)[k];
        assert.equal(tensors[k].dtype, a.dtype, k);
        assert.deepEqual(tensors[k].shape, a.shape, k);
        assert.deepEqual(tensors[k].toArray(), a.toArray(), k);
      }
      const hdr = readSafetensorsHeader(file);
      assert.deepEqual(hdr.entries.k.shape, [3, 4]);
      assert.equal(hdr.dataStart % 8, 0);
      // same bytes when written again
      assert.ok(serializeSafetensors(tensors, metadata).equals(fs.readFileSync(file)));
      // no temp files left behind
      assert.deepEqual(fs.readdirSync(dir), ['m.safetensors']);
    } finally {
      dispose([src, tensors]);
      fs.rmSync(dir, { recursive: true });
    }
  });
  it('rejects non-string metadata', () => {
    const t = randn(1);
    assert.throws(() => serializeSafetensors({ t }, { n: 3 as any }), /metadata value for 'n' must be a string/);
    t.dispose();
  });
  it('names the file and the offset for corrupt or truncated files', () => {
    const good = fs.readFileSync(path.join(fixtures, 'python_written.safetensors'));
    const n = Number(good.readBigUInt64LE(0));
    const parse = (b: Buffer) => parseSafetensors(b, { source: 'model.safetensors' });
    assert.throws(() => parse(good.subarray(0, 5)), /model\.safetensors: not a safetensors file: 5 bytes.*offset 0/);
    assert.throws(() => parse(good.subarray(0, 100)), /model\.safetensors: header length \d+ at offset 0 runs past the end of the file \(100 bytes\)/);
    assert.throws(() => parse(good.subarray(0, good.length - 10)), /model\.safetensors: tensor '\w+' data_offsets \[\d+, \d+\] end beyond the data section \(\d+ bytes, file offset \d+\)/);
    const badLen = Buffer.from(good);
    badLen.writeBigUInt64LE(BigInt(good.length), 0);
    assert.throws(() => parse(badLen), /header length .* runs past the end/);
    const badJson = Buffer.from(good);
    badJson[8] = 0x7b; badJson[9] = 0x7b; // '{{'
    assert.throws(() => parse(badJson), /invalid JSON header at offsets 8\.\./);
    const badDtype = Buffer.from(good.toString('latin1').replace('"F64"', '"X64"'), 'latin1');
    assert.throws(() => parse(badDtype), /tensor 'f64': unknown dtype 'X64'/);
    const extra = Buffer.concat([good, Buffer.alloc(4)]);
    assert.throws(() => parse(extra), /trailing bytes/);
    assert.equal(n % 8, 0);
  });
});

describe('durable writes', () => {
  checkLeaks();
  it('writes atomically, appends lines and cleans stale temp files', () => {
    const dir = tmp();
    const f = path.join(dir, 'a.json');
    writeFileAtomic(f, '{"x":1}');
    writeFileAtomic(f, '{"x":2}');
    assert.equal(fs.readFileSync(f, 'utf8'), '{"x":2}');
    fs.writeFileSync(path.join(dir, '.a.json.tmp-123-456'), 'partial');
    assert.deepEqual(removeStaleTempFiles(dir), ['.a.json.tmp-123-456']);
    const log = path.join(dir, 'm.jsonl');
    appendLineDurable(log, '{"a":1}');
    appendLineDurable(log, '{"a":2}\n');
    assert.equal(fs.readFileSync(log, 'utf8'), '{"a":1}\n{"a":2}\n');
    fs.rmSync(dir, { recursive: true });
  });
});
