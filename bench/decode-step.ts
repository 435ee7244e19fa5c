// Batched decoding step time against the batch size: one forward of GPT.nextLogprobsBatch for B rows (prompt of 24
// tokens each, then steps) and, for comparison, B single-sequence steps (GPT.nextLogprobs with a KV cache).
//
// node dist/bench/decode-step.js [--threads N] [--device cpu|cuda]
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, checkDevice } from '../src/torch';
import { GPT } from '../src/models/gpt';

const { values } = parseArgs({ options: { threads: { type: 'string' }, device: { type: 'string' }, steps: { type: 'string' } } });
setNumThreads(Number(values.threads ?? 2));
const device = checkDevice(values.device ?? 'cpu', '--device');
const steps = Number(values.steps ?? 32);
manualSeed(0);
const model = new GPT({ vocabSize: 260, contextLength: 192, dModel: 96, nLayer: 4, nHead: 4 });
if (device !== 'cpu') model.to(device);
const prompt = Array.from({ length: 24 }, (_, i) => 65 + (i % 26));
const rows: { batch: number; batched_ms: number; singles_ms: number; speedup: number }[] = [];
for (const B of [1, 4, 16, 64]) {
  const cache = model.newBatchCache(B);
  const singles = Array.from({ length: B }, () => {
    const c = model.newCache();
    model.nextLogprobs(prompt, c);
    cache.addRow(c);
    return c;
  });
  const ids = Array.from({ length: B }, (_, b) => 70 + (b % 20));
  for (let w = 0; w < 4; w++) model.nextLogprobsBatch(ids, cache);
  let t = process.hrtime.bigint();
  for (let s = 0; s < steps; s++) model.nextLogprobsBatch(ids, cache);
  const batched = Number(process.hrtime.bigint() - t) / 1e6 / steps;
  for (const c of singles) model.nextLogprobs([ids[0]], c);
  t = process.hrtime.bigint();
  for (let s = 0; s < Math.min(steps, 16); s++) for (const c of singles) model.nextLogprobs([ids[0]], c);
  const single = Number(process.hrtime.bigint() - t) / 1e6 / Math.min(steps, 16);
  rows.push({ batch: B, batched_ms: +batched.toFixed(3), singles_ms: +single.toFixed(3), speedup: +(single / batched).toFixed(2) });
  console.log(JSON.stringify(rows.at(-1)));
  singles.forEach((c) => c.dispose());
  cache.dispose();
}
console.log('| batch | one batched step (ms) | B single-sequence steps (ms) | speed-up |\n|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.batch} | ${r.batched_ms} | ${r.singles_ms} | ${r.speedup} |`);
console.log(JSON.stringify({ device, rows }));
model.dispose();
