#!/usr/bin/env node
// Locates libtorch for the native build. Order: $LIBTORCH, LIBTORCH_USE_PYTORCH=1 (the `torch` Python
// package), then Debian's system paths. Prints gyp-ready values for --include, --libdir, --cflags, --json.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

function fromFolder(root, source) {
  const include = [path.join(root, 'include'), path.join(root, 'include/torch/csrc/api/include')];
  const libdir = path.join(root, 'lib');
  if (!fs.existsSync(path.join(include[0], 'ATen/ATen.h'))) return { error: `${source}: no include/ATen/ATen.h under ${root}` };
  if (!fs.existsSync(path.join(libdir, 'libtorch_cpu.so'))) return { error: `${source}: no lib/libtorch_cpu.so under ${root}` };
  let abi = 1;
  const cmake = path.join(root, 'share/cmake/Torch/TorchConfig.cmake');
  if (fs.existsSync(cmake) && /_GLIBCXX_USE_CXX11_ABI=0/.test(fs.readFileSync(cmake, 'utf8'))) abi = 0;
  return { source, include, libdir, abi, cuda: fs.existsSync(path.join(libdir, 'libtorch_cuda.so')) };
}

function fromPytorch() {
  const py = process.env.PYTHON || 'python3';
  let out;
  try {
    out = execFileSync(py, ['-c', 'import torch,os;print(os.path.dirname(torch.__file__));print(int(torch._C._GLIBCXX_USE_CXX11_ABI))'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return { error: `LIBTORCH_USE_PYTORCH=1: '${py} -c "import torch"' failed (${String(e.stderr || e.message).trim().split('\n').pop()})` };
  }
  const [root, abi] = out.trim().split('\n');
  const r = fromFolder(root, 'LIBTORCH_USE_PYTORCH');
  if (!r.error) r.abi = Number(abi);
  return r;
}

function fromSystem() {
  const include = ['/usr/include', '/usr/include/torch/csrc/api/include'];
  const candidates = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  const libdir = candidates.find((d) => fs.existsSync(path.join(d, 'libtorch_cpu.so')));
  if (!fs.existsSync('/usr/include/ATen/ATen.h') || !libdir) return { error: 'system: no /usr/include/ATen/ATen.h and libtorch_cpu.so in /usr/lib (Debian: apt-get install libtorch-dev)' };
  return { source: 'system', include, libdir, abi: 1, cuda: fs.existsSync(path.join(libdir, 'libtorch_cuda.so')) };
}

function find() {
  const tried = [];
  if (process.env.LIBTORCH) {
    const r = fromFolder(process.env.LIBTORCH, `LIBTORCH=${process.env.LIBTORCH}`);
    if (!r.error) return r;
    tried.push(r.error);
  } else tried.push('LIBTORCH: not set');
  if (process.env.LIBTORCH_USE_PYTORCH === '1') {
    const r = fromPytorch();
    if (!r.error) return r;
    tried.push(r.error);
  } else tried.push('LIBTORCH_USE_PYTORCH: not set to 1');
  const r = fromSystem();
  if (!r.error) return r;
  tried.push(r.error);
  const msg = [
    'tsdistill: libtorch not found. Tried:',
    ...tried.map((t) => '  - ' + t),
    'Possible solutions:',
    '  1. set LIBTORCH to an unpacked libtorch folder (CPU or CUDA) from pytorch.org',
    '  2. set LIBTORCH_USE_PYTORCH=1 to use the libtorch inside the Python `torch` package (how a CUDA build is used)',
    '  3. on Debian/Ubuntu: apt-get install libtorch-dev libopenblas0-pthread',
  ].join('\n');
  process.stderr.write(msg + '\n');
  process.exit(1);
}

/**
 * Whether the process groups (c10d over Gloo) can be built against `lt`: libtorch's c10d headers and the Gloo headers
 * are present (Debian: libgloo-dev; PyTorch's own packages carry both). TSDISTILL_NO_C10D=1 leaves them out. Returns
 * the extra compiler flags and libraries, or null.
 */
function c10d(lt) {
  if (process.env.TSDISTILL_NO_C10D === '1') return null;
  const dirs = [...lt.include, '/usr/include', '/usr/local/include'];
  const has = (rel) => dirs.some((d) => fs.existsSync(path.join(d, rel)));
  if (!has('torch/csrc/distributed/c10d/ProcessGroupGloo.hpp') || !has('gloo/algorithm.h')) return null;
  // Debian links Gloo as its own library; PyTorch's libtorch_cpu carries it inside
  const gloo = ['/usr/lib', lt.libdir, '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu'].find((d) => fs.existsSync(path.join(d, 'libgloo.so')));
  // c10d's reducer.hpp includes a distributed-autograd header that Debian's libtorch-dev leaves out: where it is
  // missing, native/compat declares the two type names the reducer needs from it
  const compat = has('torch/csrc/distributed/autograd/context/context.h') ? [] : [`-I${path.join(__dirname, 'compat')}`];
  return { cflags: ['-DUSE_C10D_GLOO', '-DTSD_C10D', ...compat], libs: gloo ? [`-L${gloo}`, '-lgloo'] : [] };
}

if (require.main === module) {
  const lt = find();
  const arg = process.argv[2];
  if (arg === '--include') console.log(lt.include.join(' '));
  else if (arg === '--libdir') console.log(lt.libdir);
  else if (arg === '--cflags') console.log([`-D_GLIBCXX_USE_CXX11_ABI=${lt.abi}`, ...(c10d(lt)?.cflags ?? [])].join(' '));
  else if (arg === '--libs') console.log([`-L${lt.libdir}`, `-Wl,-rpath,${lt.libdir}`, '-Wl,--no-as-needed', lt.cuda ? '-ltorch_cuda -lc10_cuda' : '', '-ltorch', '-ltorch_cpu', '-lc10', ...(c10d(lt)?.libs ?? []), '-Wl,--as-needed'].filter(Boolean).join(' '));
  else if (arg === '--c10d') console.log(c10d(lt) ? 'yes' : 'no');
  else console.log(JSON.stringify({ ...lt, c10d: !!c10d(lt) }));
}
module.exports = { find, c10d };
