// The schemes table (docs/schemes.md): `compare` on example scheme configurations, once per seed, then mean ± sample
// standard deviation of every row's test accuracy and of the scheme's gain over its baseline.
//   npm run build && node dist/bench/schemes.js [--examples dml-scheme-fmnist,born-again-fmnist] [--seeds 0,1,2]
//      [--epochs N] [--limit N] [--threads 2] [--out runs/schemes] [--set key.path=value ...] (overrides, e.g.
//      scheme.target=mean for KDCL; each example is then labelled `<example> (<overrides>)`)
// Each run is `<out>/<example>/seed-<n>` (a finished stage is measured, not trained again; an interrupted one
// resumes). The data set of a configuration is loaded once for every seed and example that reads the same data.
// Prints a markdown table and a JSON line, and writes both to <out>/schemes.md and <out>/schemes.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { setNumThreads, writeFileAtomic } from '../src/torch';
import type { DataSplits } from '../src/data';
import { type SchemeCompareResult, compareScheme, loadConfigData, loadSchemeConfig } from '../src/run';

const { values } = parseArgs({
  options: {
    examples: { type: 'string', default: 'dml-scheme-fmnist,born-again-fmnist,cskd-fmnist,tfkd-fmnist,ta-scheme-mnist' },
    seeds: { type: 'string', default: '0,1,2' }, epochs: { type: 'string' }, limit: { type: 'string' }, threads: { type: 'string', default: '2' },
    out: { type: 'string', default: 'runs/schemes' }, set: { type: 'string', multiple: true, default: [] },
  },
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => (xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)) : 0);
const pm = (xs: number[]) => `${mean(xs).toFixed(2)} ± ${std(xs).toFixed(2)}`;

async function main() {
  setNumThreads(Number(values.threads));
  const seeds = values.seeds!.split(',').map(Number);
  const lines: string[] = ['| scheme | row | test accuracy (%), mean ± std | seeds | schedule |', '|---|---|---|---|---|'];
  const json: Record<string, unknown> = {};
  const loadedData = new Map<string, DataSplits>();
  for (const example of values.examples!.split(',')) {
    const ex = values.set!.length ? `${example} (${values.set!.join(', ')})` : example;
    const dirName = values.set!.length ? `${example}-${values.set!.join('-').replace(/[^A-Za-z0-9.-]+/g, '_')}` : example;
    const results: SchemeCompareResult[] = [];
    let schedule = '';
    for (const seed of seeds) {
      const sets = [...values.set!, `seed=${seed}`, `output.dir=${path.join(values.out!, dirName, `seed-${seed}`)}`, `training.threads=${values.threads}`];
      if (values.epochs) sets.push(`training.epochs=${values.epochs}`);
      if (values.limit) sets.push(`data.limit=${values.limit}`);
      const loaded = loadSchemeConfig(path.join(__dirname, '..', '..', 'examples', `${example}.yaml`), sets);
      const c = loaded.staged;
      schedule = `${c.data.dataset}, ${c.data.limit ?? 'all'} training images, ${c.training.epochs} epochs, batch ${c.data.batchSize}, ${c.training.optimizer} lr ${c.training.lr}${c.training.schedule !== 'constant' ? ` ${c.training.schedule}` : ''}`;
      const key = JSON.stringify(c.data);
      if (!loadedData.has(key)) loadedData.set(key, loadConfigData(c));
      const t0 = Date.now();
      const { result } = await compareScheme(loaded, loadedData.get(key)!, { file: ex, resume: true, progress: false, log: () => {} });
      results.push(result);
      process.stderr.write(`${ex} seed ${seed}: ${result.rows.map((r) => `${r.row} ${r.acc.toFixed(2)}`).join(', ')} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }
    const rows = results[0].rows.map((r) => ({ row: r.row, accs: results.map((x) => x.rows.find((q) => q.row === r.row)?.acc ?? NaN) }));
    for (const r of rows) lines.push(`| ${ex} | ${r.row} | ${pm(r.accs)} | ${seeds.length} | ${schedule} |`);
    if (results[0].ensemble_acc !== undefined) lines.push(`| ${ex} | ensemble of gen1.. | ${pm(results.map((x) => x.ensemble_acc!))} | ${seeds.length} | ${schedule} |`);
    const resultRow = results.every((x) => x.result.row === results[0].result.row) ? results[0].result.row : 'the best peer';
    lines.push(`| ${ex} | gain of ${resultRow} over ${results[0].baseline.row} (points) | ${pm(results.map((x) => x.gain))} | ${seeds.length} | ${schedule} |`);
    if (results.every((x) => x.kd_gain !== undefined))
      lines.push(`| ${ex} | gain of ${resultRow} over ${results[0].kd!.row} (points) | ${pm(results.map((x) => x.kd_gain!))} | ${seeds.length} | ${schedule} |`);
    json[ex] = {
      schedule, seeds, rows: rows.map((r) => ({ row: r.row, mean: mean(r.accs), std: std(r.accs), accs: r.accs })), gain: results.map((x) => x.gain),
      kd_gain: results.map((x) => x.kd_gain), ensemble: results.map((x) => x.ensemble_acc),
    };
  }
  for (const d of loadedData.values()) {
    d.train.dispose();
    d.test.dispose();
  }
  fs.mkdirSync(values.out!, { recursive: true });
  writeFileAtomic(path.join(values.out!, 'schemes.md'), lines.join('\n') + '\n');
  writeFileAtomic(path.join(values.out!, 'schemes.json'), JSON.stringify(json, null, 2));
  console.log(lines.join('\n'));
  console.log(JSON.stringify(json));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
