// Teacher-output cache speed-up on MNIST: one epoch of KD with the teacher run on every batch, with cached logits,
// and a plain student epoch for reference (LeNet-5 teacher, half-width student, batch 64).
//   node dist/bench/teacher-cache.js [--threads 2]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tensor, manualSeed, nextTick, noGrad, setNumThreads, tensor, tidy } from '../src/torch';
import { F } from '../src/nn';
import { SGD } from '../src/optim';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { responseKD, teacherLogits } from '../src/distill';

const i = process.argv.indexOf('--threads');
setNumThreads(i >= 0 ? Number(process.argv[i + 1]) : 2);

async function epoch(loader: DataLoader, lossOf: (s: Tensor, b: { x: Tensor; y: Tensor; indices: Int32Array }) => Tensor): Promise<number> {
  manualSeed(1);
  const student = new LeNet5Half();
  const opt = new SGD(student.parameters(), { lr: 0.01, momentum: 0.9 });
  const t0 = Date.now();
  for await (const b of loader) {
    tidy(() => {
      const loss = lossOf(student.call(b.x), b);
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });
    b.x.dispose();
    b.y.dispose();
  }
  const s = (Date.now() - t0) / 1000;
  student.dispose();
  opt.dispose();
  return s;
}

async function main() {
  manualSeed(0);
  const data = loadMnist();
  const teacher = new LeNet5().eval();
  teacher.requiresGrad_(false);
  const loader = new DataLoader(data, { batchSize: 64, shuffle: true, seed: 1, transforms: [normalize([0.1307], [0.3081])] });
  const kd = responseKD({ temperature: 4, alpha: 0.3 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-cache-'));

  const plain = await epoch(loader, (s, b) => F.crossEntropy(s, b.y));
  const live = await epoch(loader, (s, b) => kd(s, tidy(() => noGrad(() => teacher.call(b.x))), b.y).loss);
  let t0 = Date.now();
  const first = await teacherLogits(teacher, loader, dir);
  const build = (Date.now() - t0) / 1000;
  first.logits.dispose();
  t0 = Date.now();
  const cached = await teacherLogits(teacher, loader, dir);
  const load = (Date.now() - t0) / 1000;
  const warm = await epoch(loader, (s, b) => kd(s, cached.logits.indexSelect(0, tensor(b.indices).long()), b.y).loss);
  await nextTick();
  console.log('measure                                   | seconds');
  console.log('------------------------------------------|--------');
  console.log(`plain student epoch (60k, batch 64)       | ${plain.toFixed(2)}`);
  console.log(`KD epoch, teacher run on every batch      | ${live.toFixed(2)}`);
  console.log(`teacher pass to build the cache           | ${build.toFixed(2)}`);
  console.log(`cache load from disk                      | ${load.toFixed(2)}`);
  console.log(`KD epoch with cached teacher logits       | ${warm.toFixed(2)}`);
  console.log(JSON.stringify({ plain_epoch_s: plain, kd_epoch_s: live, kd_cached_epoch_s: warm, cache_build_s: build, cache_load_s: load, speedup: +(live / warm).toFixed(3), cached_over_plain: +(warm / plain).toFixed(3) }));
  cached.logits.dispose();
  teacher.dispose();
  data.dispose();
  fs.rmSync(dir, { recursive: true });
}
main().catch((e) => { console.error(e); process.exit(1); });
