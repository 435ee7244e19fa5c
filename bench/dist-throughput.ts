// Data-parallel throughput on one machine: the same training epoch as 1 process × T threads and as P processes × T/P
// threads (c10d, Gloo over loopback; the global batch the same), alternating in rounds; samples per second, medians.
// The data-parallel side runs three ways: gradient buckets all-reduced during the backward pass (c10d's Reducer, the
// default), one all-reduce after it, and the default with synchronised BatchNorm (models that have BatchNorm).
//   npm run bench:dist -- [--model lenet5] [--dataset mnist|cifar10|random:cifar10] [--steps 50] [--batch 64]
//                         [--procs 2] [--threads 2] [--rounds 3]
// cifar10 needs ../shared/data/cifar10-jpeg.tar.gz (or TSDISTILL_DATA); random:NAME draws images of NAME's shape.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { launch } from '../src/run';
import { distAvailable } from '../src/torch';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  if (!distAvailable()) throw new Error('bench:dist: the native addon has no process groups (apt-get install libgloo-dev, then node native/build.js)');
  const model = arg('model', 'lenet5'), dataset = arg('dataset', 'mnist');
  const steps = arg('steps', '50'), batch = arg('batch', '64');
  const procs = Number(arg('procs', '2')), threads = Number(arg('threads', '2')), rounds = Number(arg('rounds', '3'));
  const worker = path.join(__dirname, 'dist-worker.js');
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-dist-')), 'r.json');
  const env = { MODEL: model, DATASET: dataset, STEPS: steps, BATCH: batch, OUT_FILE: out, OPENBLAS_NUM_THREADS: '1' };
  const read = () => JSON.parse(fs.readFileSync(out, 'utf8')) as { samples_per_s: number; epoch_s: number };
  const sides: [string, Record<string, string> | null][] = [
    ['one', null],
    ['reducer', {}],
    ['after', { OVERLAP: '0' }],
    ...(/resnet|wrn|mobilenet|vgg/.test(model) ? [['syncbn', { SYNC_BN: '1' }] as [string, Record<string, string>]] : []),
  ];
  const got: Record<string, number[]> = Object.fromEntries(sides.map(([k]) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    // the order of the sides turns every round, so that a drifting load falls on each side alike
    const order = sides.map((_, i) => sides[(i + r) % sides.length]);
    for (const [side, extra] of order) {
      if (!extra) {
        const e: NodeJS.ProcessEnv = { ...process.env, ...env, THREADS: String(threads) };
        for (const k of ['WORLD_SIZE', 'RANK']) delete e[k];
        const res = spawnSync(process.execPath, [worker], { env: e, stdio: ['ignore', 'inherit', 'inherit'] });
        if (res.status !== 0) throw new Error('bench:dist: the single-process run failed');
      } else {
        const code = await launch({ nproc: procs, argv: [], script: worker, env: { ...env, ...extra, THREADS: String(Math.max(1, Math.floor(threads / procs))) }, log: () => {} });
        if (code !== 0) throw new Error(`bench:dist: the data-parallel run (${side}) failed`);
      }
      got[side].push(read().samples_per_s);
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const t = Math.max(1, Math.floor(threads / procs));
  const label: Record<string, string> = {
    one: `1 process × ${threads} threads`,
    reducer: `${procs} processes × ${t}, all-reduce during backward`,
    after: `${procs} processes × ${t}, all-reduce after backward`,
    syncbn: `${procs} processes × ${t}, during backward + SyncBN`,
  };
  console.log(`${model} on ${dataset}, ${steps} steps of global batch ${batch}, SGD; ${rounds} rounds, median samples/s`);
  for (const [k] of sides) console.log(`${label[k].padEnd(46)} | ${med(got[k]).toFixed(0).padStart(6)} | ${(med(got[k]) / med(got.one)).toFixed(3)}`);
  const m = (k: string) => (got[k]?.length ? +med(got[k]).toFixed(1) : undefined);
  console.log(JSON.stringify({
    model, dataset, steps: Number(steps), batch: Number(batch), procs, threads, rounds,
    one_process_samples_per_s: m('one'), data_parallel_samples_per_s: m('reducer'), after_backward_samples_per_s: m('after'), sync_bn_samples_per_s: m('syncbn'),
    ratio: +(med(got.reducer) / med(got.one)).toFixed(4), ratio_after_backward: +(med(got.after) / med(got.one)).toFixed(4),
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
