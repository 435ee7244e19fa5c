#!/usr/bin/env node
// The `tsdistill` command: parses arguments, calls the run layer (src/run) and prints. Train a teacher or a plain
// student, distill a student, compare, evaluate weights, export; generate, serve and sft for decoders.
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { setNumThreads } from '../torch';
import { closest } from '../nn';
import { loadDataset } from '../data';
import { TrainingInterrupted } from '../distill';
import { writeReport } from '../report';
import {
  RunKind, claimOutputDir, compareFromConfig, compareScheme, isSchemeConfig, loadSchemeConfig, compareSeeds, evaluateFromConfig, formatTable, isStagedConfig, loadPlugins, loadStagedConfig, prepareConfig, readConfigMapping, runExport,
  runFromConfig, runStagedConfig, stagesTable,
} from '../run';
import { runGenerate } from './generate';
import { runServe, runSft } from './llm';

const COMMANDS = ['train', 'distill', 'eval', 'compare', 'report', 'export', 'generate', 'serve', 'sft'];
const USAGE = `usage: tsdistill <command> <config.yaml|json> [options]
commands:
  train     train a model alone: --role teacher (default) or --role student
  distill   train the student against the frozen teacher (teacher.checkpoint, or the teacher run's best weights)
  compare   teacher vs plain student vs distilled student (trains what is missing): accuracy, size, speed,
            agreement, calibration and the share of the teacher gap closed
            and writes summary.json and report.html (charts per epoch and the table; opens offline); on a
            configuration with a scheme: every peer / exit / generation / link and the baseline, and a JSON line
  report    (re)write report.html for the compare run in the output directory
  eval      test accuracy of --weights FILE (default: the run's best weights) for --role teacher|student
  export    tsdistill export <run folder|checkpoint.safetensors> --format onnx|onnx-int8|safetensors --out FILE: the model for
            deployment, plus model-card.json beside it (architecture, input preprocessing, teacher, recipe, data,
            metrics); a folder holding several runs exports the distilled one unless --role teacher|student|distilled;
            a checkpoint outside a run folder needs --config FILE (and --role); ONNX: --opset N (default 17),
            --batch N (default: dynamic batch); --card FILE to put the card elsewhere; onnx-int8: QDQ model with the
            ranges of a quantization-aware run, else calibrated on --calibration-batches N training batches (default 16)
  generate  a data set from a teacher LLM behind an OpenAI-compatible endpoint (a generate config: input, output,
            teacher, requests, curation); running it again resumes; exit status 3 when samples failed (run again)
  serve     tsdistill serve <decoder.safetensors>: the decoder over the OpenAI Chat Completions protocol (JSON and
            SSE streaming, logprobs, n, stop) at http://127.0.0.1:8000/v1; --port N, --host H, --model-name NAME,
            --max-tokens N (default for requests without max_tokens), --max-batch N (sequences decoded together in
            one forward, default 64), --device cpu|cuda; --faults SPEC [--fault-seed N]: a proxy on the port injects
            faults into chat completions, e.g. '429:0.1,500:0.05,stall:0.05,drop:0.1,reset:0.02' (per-request
            probabilities), '500*2' (the first 2 requests), retry-after=S, stall-ms=MS, drop-after=BYTES
  sft       tsdistill sft <chat.jsonl> --out DIR --steps N (--init decoder.safetensors | --arch JSON [--tokenizer
            bytes|gpt2|cl100k_base|...]): fine-tune on answers; --seq-len N --batch N --grad-accum N --lr X
            --warmup N --seed N --device cpu|cuda --resume --force; token-level KD: --kd forward_kl|reverse_kl|jsd
            --teacher decoder.safetensors [--alpha X --beta X --temperature X], or --kd logprobs (the stored top-k)
            [--topk N]
options:
  --set key.path=value   override a config value (repeatable)
  --epochs N  --threads N  --seed N  --out DIR  --device cpu|cuda
  --seeds 0,1,2          compare: one run per seed (in DIR/seed-N), then mean ± std
  --resume               continue the run in the output directory (after Ctrl-C or a crash)
  --force                overwrite a finished or interrupted run
  --json                 print the run summary as one JSON line at the end
  --plugin FILE          load your own losses/models/data sets/verifiers first: FILE exports
                         register({ registerLoss, registerModel, registerDataset, registerVerifier })
                         (.js, or .ts when the typescript package is installed); repeatable
  --concurrency N  --limit N   generate: requests in flight; use only the first N prompts`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      set: { type: 'string', multiple: true }, epochs: { type: 'string' }, threads: { type: 'string' }, seed: { type: 'string' }, seeds: { type: 'string' },
      out: { type: 'string' }, device: { type: 'string' }, role: { type: 'string' }, weights: { type: 'string' },
      resume: { type: 'boolean' }, force: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      plugin: { type: 'string', multiple: true },
      format: { type: 'string' }, config: { type: 'string' }, card: { type: 'string' }, opset: { type: 'string' }, batch: { type: 'string' },
      concurrency: { type: 'string' }, limit: { type: 'string' },
      'calibration-batches': { type: 'string' },
      port: { type: 'string' }, host: { type: 'string' }, 'model-name': { type: 'string' }, 'max-tokens': { type: 'string' }, 'max-batch': { type: 'string' }, quiet: { type: 'boolean' },
      faults: { type: 'string' }, 'fault-seed': { type: 'string' },
      init: { type: 'string' }, arch: { type: 'string' }, tokenizer: { type: 'string' }, steps: { type: 'string' }, 'seq-len': { type: 'string' },
      'grad-accum': { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' }, teacher: { type: 'string' }, kd: { type: 'string' },
      alpha: { type: 'string' }, beta: { type: 'string' }, temperature: { type: 'string' }, topk: { type: 'string' },
    },
  });
  const [command, file] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (!COMMANDS.includes(command)) throw new Error(`unknown command '${command}'; did you mean '${closest(command, COMMANDS, 1)[0]}'?\n${USAGE}`);
  const what = command === 'export' ? 'a run folder or checkpoint' : command === 'serve' ? 'a decoder checkpoint' : command === 'sft' ? 'a chat JSONL file' : 'a config file';
  if (!file) throw new Error(`tsdistill ${command}: ${what} is required\n${USAGE}`);
  if (command === 'serve') {
    stopNote = 'stopping the server';
    return runServe(file, values, stop.signal);
  }
  if (command === 'sft') return runSft(file, values, stop.signal);
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
    stopNote = 'stopping: abandoning requests in flight and flushing the output (Ctrl-C again to quit at once; the output stays consistent)';
    return runGenerate(file, { sets, force: values.force, json: values.json, signal: stop.signal });
  }
  for (const opt of ['format', 'config', 'card', 'opset', 'batch', 'calibration-batches'] as const)
    if (values[opt] !== undefined) throw new Error(`tsdistill ${command}: --${opt} applies to export only`);
  const sets = [...(values.set ?? [])];
  if (values.epochs) sets.push(`training.epochs=${values.epochs}`);
  if (values.threads) sets.push(`training.threads=${values.threads}`);
  if (values.seed) sets.push(`seed=${values.seed}`);
  if (values.device) sets.push(`training.device=${values.device}`);
  if (values.out) sets.push(`output.dir=${values.out}`);
  if (values.plugin?.length) loadPlugins(values.plugin);
  const raw = readConfigMapping(file);
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
    claimOutputDir(cfg, { file, force: values.force });
    const data = loadDataset(cfg.data.dataset, cfg.data.limit);
    try {
      if (scheme && command === 'compare') {
        const { result, table } = await compareScheme(scheme, data, { resume: values.resume, force: values.force, file, signal: stop.signal });
        console.log('');
        for (const line of formatTable(table)) console.log(line);
        console.log(`\n${result.result.row}: ${result.gain >= 0 ? '+' : ''}${result.gain.toFixed(2)} points against ${result.baseline.row}; ${path.join(cfg.output.dir, 'scheme.json')}`);
        console.log(JSON.stringify(result));
        return 0;
      }
      const r = await runStagedConfig(cfg, data, { resume: values.resume, force: values.force, file, signal: stop.signal });
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
  if (command !== 'eval') claimOutputDir(cfg, { file, force: values.force });
  const data = loadDataset(cfg.data.dataset, cfg.data.limit);
  try {
    const flags = { resume: values.resume, force: values.force, file, signal: stop.signal };
    if (command === 'compare' && values.seeds) {
      const seeds = values.seeds.split(',').map((v) => Number(v.trim()));
      const { result, table } = await compareSeeds(cfg, seeds, data, flags);
      for (const s of seeds) writeReport(path.join(cfg.output.dir, `seed-${s}`), { title: `${cfg.name} (seed ${s})` });
      console.log('');
      for (const line of formatTable(table)) console.log(line);
      console.log(`reports: ${path.join(cfg.output.dir, 'seed-*', 'report.html')}`);
      if (values.json) console.log(JSON.stringify({ seeds: result.seeds, mean: result.mean, std: result.std }));
      return 0;
    }
    if (command === 'compare') {
      const { result, table } = await compareFromConfig(cfg, data, flags);
      console.log('');
      for (const line of formatTable(table)) console.log(line);
      console.log(
        result.gap_closed === null
          ? `\nteacher gap closed by distillation: n/a (the teacher, ${result.teacher_acc.toFixed(2)} %, is not more accurate than the student alone, ${result.plain_acc.toFixed(2)} %)`
          : `\nteacher gap closed by distillation: ${(100 * result.gap_closed).toFixed(1)} %`,
      );
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

// Ctrl-C: the first stops the run after the current step and saves a resumable state; a second exits at once.
const stop = new AbortController();
let stopNote = 'stopping after this step and saving (Ctrl-C again to quit at once)';
process.on('SIGINT', () => {
  if (stop.signal.aborted) process.exit(130);
  stop.abort();
  process.stderr.write(`\n${stopNote}\n`);
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof TrainingInterrupted) {
      process.stderr.write(`tsdistill: ${e.message.replace(/resume$/, '--resume')}\n`);
      process.exit(130);
    }
    process.stderr.write(`tsdistill: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
