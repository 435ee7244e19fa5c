import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const script = path.join(__dirname, '..', '..', 'native', 'find-libtorch.js');
const run = (env: Record<string, string>) =>
  JSON.parse(execFileSync(process.execPath, [script], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' }));

describe('finding libtorch', () => {
  it('prefers $LIBTORCH, reading its C++ ABI from TorchConfig.cmake', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-lt-'));
    fs.mkdirSync(path.join(dir, 'include', 'ATen'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'lib'));
    fs.mkdirSync(path.join(dir, 'share', 'cmake', 'Torch'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'include', 'ATen', 'ATen.h'), '');
    fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cpu.so'), '');
    fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cuda.so'), '');
    fs.writeFileSync(path.join(dir, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")');
    const r = run({ LIBTORCH: dir });
    assert.equal(r.source, `LIBTORCH=${dir}`);
    assert.equal(r.abi, 0);
    assert.equal(r.cuda, true);
    assert.equal(r.libdir, path.join(dir, 'lib'));
    fs.rmSync(dir, { recursive: true });
  });
  it('falls back past a $LIBTORCH without libtorch', (t) => {
    if (!fs.existsSync('/usr/include/ATen/ATen.h')) return t.skip('no system libtorch');
    assert.equal(run({ LIBTORCH: '/nonexistent' }).source, 'system');
  });
});
