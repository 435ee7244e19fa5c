// What each command does once its arguments are parsed (main.ts): parse values, call the run layer (src/run), print.
import * as path from 'node:path';
import { isWriterProcess, setNumThreads } from '../torch';
import { writeReport } from '../report';
import {
  RunKind, isDataFreeConfig, loadDataFreeConfig, runDataFreeConfig, isAdversarialConfig, loadAdversarialConfig, runAdversarialConfig, compareAdversarial, adversarialTable, claimOutputDir, compareFromConfig, compareScheme, isSchemeConfig, loadSchemeConfig, isSearchConfig, compareSeeds, setupLine, evaluateFromConfig, formatTable, isStagedConfig, isBertConfig, loadBertConfig, runBertConfig, bertTable, runBertSeeds, bertSeedsTable, loadPlugins, loadStagedConfig, prepareConfig, readConfigMapping, runExport,
  joinProcessGroupFromEnv, loadConfigData, runFromConfig, runStagedConfig, stagesTable,
} from '../run';
import { runGenerate } from './generate';
import { runServe, runSft } from './llm';
import { commandHelp, helpWidth } from './commands';

/** The parsed options (each command takes a subset; see commands.ts). */
export interface Values {
  set?: string[]; plugin?: string[];
  epochs?: string; threads?: string; seed?: string; seeds?: string; out?: string; device?: string; role?: string; weights?: string;
  format?: string; config?: string; card?: string; opset?: string; batch?: string; 'calibration-batches'?: string; concurrency?: string; limit?: string;
  resume?: boolean; force?: boolean; json?: boolean;
  [key: string]: string | boolean | string[] | undefined;
}

/** Runs `command` on `file`; returns the exit status. `setStopNote` says what a first Ctrl-C does. */
export async function execute(command: string, file: string | undefined, values: Values, o: { signal: AbortSignal; setStopNote: (note: string) => void }): Promise<number> {
  const what = command === 'export' ? 'a run folder or checkpoint' : command === 'serve' ? 'a decoder checkpoint' : command === 'sft' ? 'a chat JSONL file' : 'a config file';
  if (!file) throw new Error(`${command}: ${what} is required\n${commandHelp(command, helpWidth())}`);
  if (command === 'serve') {
    o.setStopNote('stopping the server');
    return runServe(file, values, o.signal);
  }
  if (command === 'sft') return runSft(file, values, o.signal);
  if (command === 'export') {
    if (values.plugin?.length) loadPlugins(values.plugin);
    if (values.threads) setNumThreads(Number(values.threads));
    const int = (v: string | undefined, name: string) => {
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v)) throw new Error(`export: --${name} must be a positive integer, got '${v}'`);
      return Number(v);
    };
    const r = await runExport({
      source: file, format: values.format, out: values.out, role: values.role, config: values.config, card: values.card, opset: int(values.opset, 'opset'), batch: int(values.batch, 'batch'),
      calibrationBatches: int(values['calibration-batches'], 'calibration-batches'),
    });
    for (const f of r.files) console.log(`${r.model} -> ${values.out} (${f.format}, ${f.bytes} bytes, sha256 ${f.sha256.slice(0, 16)}…)`);
    console.log(`model card: ${r.card}${r.replacedCard ? ` (replaced the card of ${r.replacedCard}; use --card FILE to keep cards apart)` : ''}`);
    if (values.json) console.log(JSON.stringify(r));
    return 0;
  }
  if (command === 'generate') {
    const sets = [...(values.set ?? [])];
    if (values.out) sets.push(`output.dir=${values.out}`);
    if (values.concurrency) sets.push(`requests.concurrency=${values.concurrency}`);
    if (values.limit) sets.push(`input.limit=${values.limit}`);
    if (values.plugin?.length) loadPlugins(values.plugin);
    o.setStopNote('stopping: abandoning requests in flight and flushing the output (Ctrl-C again to quit at once; the output stays consistent)');
    return runGenerate(file, { sets, force: values.force, json: values.json, signal: o.signal });
  }
  // a rank of a data-parallel run (started by --nproc, or by torchrun) joins its process group first
  if (command === 'train' || command === 'distill') joinProcessGroupFromEnv();
  const sets = [...(values.set ?? [])];
  if (values.epochs) sets.push(`training.epochs=${values.epochs}`);
  if (values.threads) sets.push(`training.threads=${values.threads}`);
  if (values.seed) sets.push(`seed=${values.seed}`);
  if (values.device) sets.push(`training.device=${values.device}`);
  if (values.out) sets.push(`output.dir=${values.out}`);
  if (values.plugin?.length) loadPlugins(values.plugin);
  const raw = readConfigMapping(file);
  // a student-search configuration has a command of its own
  if (isSearchConfig(raw)) throw new Error(`${file}: a configuration with a 'search' section runs with tsdistill search (not tsdistill ${command})`);
  if (isDataFreeConfig(raw)) {
    // data-free distillation: a generator, the frozen teacher and the student; only the test split is read
    if (command !== 'distill') throw new Error(`${file}: a data-free configuration runs with tsdistill distill`);
    const r = await runDataFreeConfig(loadDataFreeConfig(file, sets), { resume: values.resume, force: values.force, signal: o.signal });
    console.log(`${r.name}: best test accuracy ${r.best_test_acc.toFixed(2)} % (epoch ${r.best_epoch}), weights in ${path.join(r.out_dir, 'best.safetensors')}; generated samples: ${r.samples}`);
    if (values.json) console.log(JSON.stringify(r));
    return 0;
  }
  if (isAdversarialConfig(raw)) {
    // adversarial distillation: a discriminator role or boundary supporting samples; compare: alone, KD and the method
    if (command !== 'distill' && command !== 'compare') throw new Error(`${file}: an adversarial configuration runs with tsdistill distill or tsdistill compare`);
    const cfg = loadAdversarialConfig(file, sets);
    const flags = { resume: values.resume, force: values.force, signal: o.signal };
    if (command === 'compare') {
      const r = await compareAdversarial(cfg, flags);
      console.log('');
      for (const line of formatTable(adversarialTable(r))) console.log(line);
      console.log(`\n${r.method}: ${r.gain_over_kd >= 0 ? '+' : ''}${r.gain_over_kd.toFixed(2)} points against KD, ${r.gain_over_alone >= 0 ? '+' : ''}${r.gain_over_alone.toFixed(2)} against the student alone; ${path.join(cfg.output.dir, 'compare.json')}`);
      console.log(JSON.stringify(r));
      return 0;
    }
    const r = await runAdversarialConfig(cfg, flags);
    console.log(`${r.name}: best test accuracy ${r.best_test_acc.toFixed(2)} % (epoch ${r.best_epoch}), weights in ${path.join(r.out_dir, 'best.safetensors')}`);
    if (values.json) console.log(JSON.stringify(r));
    return 0;
  }
  if (isBertConfig(raw)) {
    // the BERT-compression recipes: the teacher's stages, then each recipe's; compare prints the same table
    if (command !== 'distill' && command !== 'compare') throw new Error(`${file}: a configuration with a 'bert' section runs with tsdistill distill or tsdistill compare`);
    if (values.epochs) throw new Error(`${file}: --epochs: a bert configuration has epochs per stage kind; use --set bert.epochs.task=N (pretrain, finetune, general, task)`);
    const cfg = loadBertConfig(file, sets);
    if (command === 'compare' && values.seeds) {
      const r = await runBertSeeds(cfg, parseSeeds(values.seeds), { resume: values.resume, force: values.force });
      console.log('');
      for (const line of formatTable(bertSeedsTable(r))) console.log(line);
      console.log(`all seeds: ${path.join(cfg.output.dir, 'seeds.json')}`);
      console.log(JSON.stringify(r));
      return 0;
    }
    const r = await runBertConfig(cfg, { resume: values.resume, force: values.force });
    console.log('');
    for (const line of formatTable(bertTable(r))) console.log(line);
    console.log(`Hugging Face directories: ${path.join(cfg.output.dir, `seed${cfg.seed}`, '<stage>', 'hf')}`);
    console.log(JSON.stringify(r));
    return 0;
  }
  if (isStagedConfig(raw) || isSchemeConfig(raw)) {
    // a configuration of stages, roles and terms (or a scheme, which expands to one): `distill` (or `train`) runs its
    // stages in order; `compare` measures a scheme's every peer / exit / generation / link against its baseline
    const scheme = isSchemeConfig(raw) ? loadSchemeConfig(file, sets) : null;
    if (command !== 'distill' && command !== 'train' && command !== 'report' && !(scheme && command === 'compare'))
      throw new Error(`${file}: a configuration of stages runs with tsdistill distill (compare and eval need teacher / student sections, or a scheme)`);
    const cfg = scheme ? scheme.staged : loadStagedConfig(file, sets);
    if (command === 'report') {
      console.log(`report: ${writeReport(cfg.output.dir, { title: cfg.name, kind: 'stages' })}`);
      return 0;
    }
    // data-parallel ranks: rank 0 claims, prints and reports
    if (isWriterProcess()) claimOutputDir(cfg, { file, force: values.force });
    const data = loadConfigData(cfg);
    try {
      if (scheme && command === 'compare') {
        const { result, table } = await compareScheme(scheme, data, { resume: values.resume, force: values.force, file, signal: o.signal });
        console.log('');
        for (const line of formatTable(table)) console.log(line);
        const pts = (g: number) => `${g >= 0 ? '+' : ''}${g.toFixed(2)} points`;
        const vsKd = result.kd ? `, ${pts(result.kd_gain!)} against ${result.kd.row}` : '';
        console.log(`\n${result.result.row}: ${pts(result.gain)} against ${result.baseline.row}${vsKd}; ${path.join(cfg.output.dir, 'scheme.json')}`);
        console.log(JSON.stringify(result));
        return 0;
      }
      const r = await runStagedConfig(cfg, data, { resume: values.resume, force: values.force, file, signal: o.signal });
      if (!isWriterProcess()) return 0;
      console.log('');
      for (const line of formatTable(stagesTable(r))) console.log(line);
      console.log(`stages: ${path.join(cfg.output.dir, 'stages.json')}`);
      console.log(`report: ${writeReport(cfg.output.dir, { title: cfg.name, kind: 'stages' })}`);
      if (values.json) console.log(JSON.stringify(r.stages.map((x) => ({ stage: x.name, ran: x.ran, ...x.summary }))));
      return 0;
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  }
  const cfg = prepareConfig(file, sets);
  const role = (values.role ?? (command === 'distill' ? 'student' : 'teacher')) as 'teacher' | 'student';
  if (role !== 'teacher' && role !== 'student') throw new Error(`--role must be teacher or student, got '${role}'`);
  if (command === 'report') {
    console.log(`report: ${writeReport(cfg.output.dir, { title: cfg.name })}`);
    return 0;
  }
  if (command !== 'eval' && isWriterProcess()) claimOutputDir(cfg, { file, force: values.force });
  const data = loadConfigData(cfg);
  try {
    const flags = { resume: values.resume, force: values.force, file, signal: o.signal };
    if (command === 'compare' && values.seeds) {
      const seeds = parseSeeds(values.seeds);
      const { result, table, rowsTable } = await compareSeeds(cfg, seeds, data, flags);
      for (const s of seeds) writeReport(path.join(cfg.output.dir, `seed-${s}`), { title: `${cfg.name} (seed ${s})` });
      console.log('');
      console.log(setupLine(result.setup).replace(/; seed \d+$/, `; seeds ${seeds.join(', ')}`));
      console.log('');
      for (const line of formatTable(table)) console.log(line);
      console.log('');
      for (const line of formatTable(rowsTable)) console.log(line);
      console.log(`\n${result.note}`);
      console.log(`reports: ${path.join(cfg.output.dir, 'seed-*', 'report.html')}; all seeds: ${path.join(cfg.output.dir, 'seeds.json')}`);
      if (values.json) console.log(JSON.stringify({ seeds: result.seeds, mean: result.mean, std: result.std, significance: result.significance }));
      return 0;
    }
    if (command === 'compare') {
      const { result, table, setup, verdict } = await compareFromConfig(cfg, data, flags);
      console.log('');
      console.log(setupLine(setup));
      console.log('');
      for (const line of formatTable(table)) console.log(line);
      console.log('');
      for (const line of verdict) console.log(line);
      console.log(`report: ${writeReport(cfg.output.dir, { title: cfg.name })}`);
      if (values.json) console.log(JSON.stringify(result));
      return 0;
    }
    if (command === 'eval') {
      const r = await evaluateFromConfig(cfg, role, data, { file, weights: values.weights });
      console.log(`${r.model} (${r.weights}): test accuracy ${r.test_acc.toFixed(2)} % on ${r.images} images`);
      if (values.json) console.log(JSON.stringify({ model: r.model, weights: r.weights, test_acc: r.test_acc }));
      return 0;
    }
    const kind: RunKind = command === 'distill' ? 'distilled' : role;
    const summary = await runFromConfig(cfg, kind, data, flags);
    console.log(`${summary.name}: best test accuracy ${summary.best_test_acc.toFixed(2)} % (epoch ${summary.best_epoch}), weights in ${summary.out_dir}/best.safetensors`);
    if (values.json) console.log(JSON.stringify(summary));
    return 0;
  } finally {
    data.train.dispose();
    data.test.dispose();
  }
}

/** `--seeds N` (seeds 0..N-1) or `--seeds 0,3,7`. */
function parseSeeds(text: string): number[] {
  const seeds = /^\d+$/.test(text.trim()) ? Array.from({ length: Number(text) }, (_, i) => i) : text.split(',').map((x) => Number(x.trim()));
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0))
    throw new Error(`--seeds: expected a count (--seeds 3: seeds 0, 1, 2) or a comma-separated list of non-negative integers (--seeds 4,7), got '${text}'`);
  return seeds;
}
