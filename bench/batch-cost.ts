// Cost of one training batch from the DataLoader on Fashion-MNIST (60,000 images, batch 64, shuffled, normalize):
// per-batch conversion (gather uint8 rows, to float, ÷ 255, normalize) against the resident float mode (one gather of
// converted rows). Passes over a full epoch alternate between the two loaders; the table shows the best and median µs
// per batch over the passes, and the one-off cost of building the resident copy.
//   npm run bench:batches -- [--passes 5] [--threads 2]
import { setNumThreads } from '../src/torch';
import { DataLoader, FASHION_MNIST_STATS, loadFashionMnist, normalize } from '../src/data';

function main() {
  const argv = process.argv.slice(2);
  const opt = (name: string, d: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : d;
  };
  const passes = opt('passes', 5);
  setNumThreads(opt('threads', 2));
  const ds = loadFashionMnist({ split: 'train' });
  const [mean, std] = [FASHION_MNIST_STATS.mean[0], FASHION_MNIST_STATS.std[0]];
  const mk = (residentFloatMB?: number) => new DataLoader(ds, { batchSize: 64, shuffle: true, seed: 0, transforms: [normalize([mean], [std])], residentFloatMB });
  const perBatch = mk(0), resident = mk();
  let t = process.hrtime.bigint();
  resident.usesResidentFloat();
  const buildMs = Number(process.hrtime.bigint() - t) / 1e6;
  const pass = (dl: DataLoader) => {
    const t0 = process.hrtime.bigint();
    for (let b = 0; b < dl.length; b++) dl.batchAt(b).dispose();
    return Number(process.hrtime.bigint() - t0) / 1e3 / dl.length;
  };
  pass(perBatch);
  pass(resident);
  const a: number[] = [], r: number[] = [];
  for (let p = 0; p < passes; p++) {
    a.push(pass(perBatch));
    r.push(pass(resident));
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
  process.stdout.write(`| loader | best µs/batch | median µs/batch |\n|---|---:|---:|\n`);
  process.stdout.write(`| per-batch conversion | ${Math.min(...a).toFixed(0)} | ${med(a).toFixed(0)} |\n`);
  process.stdout.write(`| resident float | ${Math.min(...r).toFixed(0)} | ${med(r).toFixed(0)} |\n`);
  process.stdout.write(`resident copy: built once in ${buildMs.toFixed(0)} ms (${(ds.derivedBytes() / 2 ** 20).toFixed(0)} MiB); ${passes} alternating epoch passes of ${perBatch.length} batches each\n`);
  ds.dispose();
}
main();
