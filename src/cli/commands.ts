// The commands of `tsdistill` and the options each one takes: the one table that parsing (node:util parseArgs, strict),
// `tsdistill --help`, `tsdistill <command> --help` and the "did you mean" messages for misspelled flags are made from.
import { parseArgs } from 'node:util';
import { closest, levenshtein } from '../util/closest';

interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** The value's placeholder in help (string options). */
  arg?: string;
  help: string;
}

/** Every option of every command, by name. */
const OPTIONS: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h', help: 'this help' },
  set: { type: 'string', multiple: true, arg: 'key.path=value', help: 'override a configuration value (repeatable), e.g. --set training.lr=0.05' },
  epochs: { type: 'string', arg: 'N', help: 'training.epochs' },
  threads: { type: 'string', arg: 'N', help: 'CPU threads (training.threads)' },
  seed: { type: 'string', arg: 'N', help: 'the seed of data order, initialisation and augmentation' },
  seeds: { type: 'string', arg: 'LIST|N', help: 'one compare per seed (in DIR/seed-N): a list such as 0,1,2 or a count N (seeds 0..N-1); mean ± std per row and a significance test of KD against the student alone' },
  out: { type: 'string', arg: 'DIR', help: 'the output directory (output.dir)' },
  device: { type: 'string', arg: 'cpu|cuda', help: 'where to train or run (cuda needs a CUDA build of libtorch)' },
  role: { type: 'string', arg: 'teacher|student', help: 'which model of the configuration' },
  weights: { type: 'string', arg: 'FILE', help: "the weights to evaluate (default: the run's best.safetensors)" },
  resume: { type: 'boolean', help: 'continue the run in the output directory (after Ctrl-C or a crash); a finished run keeps its summary' },
  force: { type: 'boolean', help: 'overwrite a finished or interrupted run' },
  nproc: { type: 'string', arg: 'N', help: 'data-parallel over N processes on this machine (c10d, Gloo); the batch size stays the global batch' },
  nnodes: { type: 'string', arg: 'M', help: 'data-parallel over M machines (with --nproc, --node-rank, --master-addr)' },
  'node-rank': { type: 'string', arg: 'I', help: "this machine's index in 0..M-1 (the store runs on machine 0)" },
  'master-addr': { type: 'string', arg: 'HOST', help: 'the address of machine 0 (default 127.0.0.1)' },
  'master-port': { type: 'string', arg: 'PORT', help: 'the port of the store on machine 0 (default: a free port on one machine, 29500 on several)' },
  json: { type: 'boolean', help: 'print the result as one JSON line at the end' },
  plugin: {
    type: 'string', multiple: true, arg: 'FILE',
    help: 'load your own losses/models/data sets/verifiers first: FILE exports register({ registerLoss, registerModel, registerDataset, registerVerifier }) (.js, or .ts when the typescript package is installed); repeatable',
  },
  format: { type: 'string', arg: 'onnx|onnx-int8|safetensors', help: 'the export format' },
  config: { type: 'string', arg: 'FILE', help: 'the configuration of a checkpoint that lies outside a run folder' },
  card: { type: 'string', arg: 'FILE', help: 'where to write model-card.json (default: beside the export)' },
  opset: { type: 'string', arg: 'N', help: 'ONNX opset (default 17)' },
  batch: { type: 'string', arg: 'N', help: 'export: a fixed batch size (default: dynamic); sft: sequences per step' },
  'calibration-batches': { type: 'string', arg: 'N', help: 'onnx-int8 without quantization-aware training: training batches that calibrate the ranges (default 16)' },
  concurrency: { type: 'string', arg: 'N', help: 'requests in flight' },
  limit: { type: 'string', arg: 'N', help: 'use only the first N prompts' },
  port: { type: 'string', arg: 'N', help: 'the port (default 8000)' },
  host: { type: 'string', arg: 'H', help: 'the address to listen on (default 127.0.0.1)' },
  'model-name': { type: 'string', arg: 'NAME', help: "the model's name in answers (default: the file name)" },
  'max-tokens': { type: 'string', arg: 'N', help: 'max_tokens for requests that give none (default 256)' },
  'max-batch': { type: 'string', arg: 'N', help: 'sequences decoded together in one forward (default 64)' },
  'max-body-bytes': { type: 'string', arg: 'N', help: 'the largest request body accepted; larger ones get 413 (default 1048576)' },
  cors: { type: 'string', arg: 'ORIGIN', help: "let web pages of ORIGIN ('*' for any) call the server; default: no cross-origin access" },
  'api-key': { type: 'string', arg: 'KEY', help: 'every request must bring Authorization: Bearer KEY (401 otherwise); --api-key-file keeps it out of the process list' },
  'api-key-file': { type: 'string', arg: 'FILE', help: 'as --api-key, the key being the first line of FILE' },
  quiet: { type: 'boolean', help: 'no line per request' },
  faults: { type: 'string', arg: 'SPEC', help: "a proxy on the port injects faults, e.g. '429:0.1,500:0.05,stall:0.05,drop:0.1,reset:0.02' (per-request probabilities), '500*2' (the first 2 requests), retry-after=S, stall-ms=MS, drop-after=BYTES" },
  'fault-seed': { type: 'string', arg: 'N', help: 'the seed of the injected faults' },
  init: { type: 'string', arg: 'FILE|DIR', help: 'the decoder to fine-tune: a decoder checkpoint or a Hugging Face model directory' },
  arch: { type: 'string', arg: 'JSON', help: `a new decoder, e.g. '{"contextLength":128,"dModel":64,"nLayer":2,"nHead":2}'` },
  tokenizer: { type: 'string', arg: 'NAME', help: 'bytes (default), gpt2, cl100k_base, ... (with --arch)' },
  steps: { type: 'string', arg: 'N', help: 'optimizer steps' },
  'seq-len': { type: 'string', arg: 'N', help: 'tokens per sequence' },
  'grad-accum': { type: 'string', arg: 'N', help: 'batches per optimizer step' },
  lr: { type: 'string', arg: 'X', help: 'learning rate' },
  warmup: { type: 'string', arg: 'N', help: 'warm-up steps' },
  teacher: { type: 'string', arg: 'FILE|DIR', help: 'the teacher decoder, a checkpoint or a Hugging Face directory (--kd forward_kl|reverse_kl|jsd)' },
  kd: { type: 'string', arg: 'LOSS', help: 'token-level KD: forward_kl, reverse_kl, jsd (with --teacher), or logprobs (the stored top-k)' },
  alpha: { type: 'string', arg: 'X', help: 'KD: weight of the hard-label loss' },
  beta: { type: 'string', arg: 'X', help: 'KD: the jsd mixture in [0, 1] (0 forward KL, 1 reverse KL)' },
  'on-policy': { type: 'string', arg: 'L', help: "GKD: the share λ of micro-batches that are the student's own answers, scored by --teacher or --teacher-url (default 0)" },
  'teacher-url': { type: 'string', arg: 'URL', help: "GKD with a remote teacher: an OpenAI-compatible base URL whose /completions scores token ids (echo + logprobs; tsdistill serve, vLLM); needs --on-policy" },
  'teacher-model': { type: 'string', arg: 'NAME', help: "the remote teacher's model name (--teacher-url)" },
  'teacher-key-env': { type: 'string', arg: 'VAR', help: "the environment variable holding the remote teacher's API key (--teacher-url)" },
  'teacher-token-ids': { type: 'boolean', help: "ask the remote teacher for tokens as token_id:<id> (vLLM's return_tokens_as_token_ids; tsdistill serve has it)" },
  temperature: { type: 'string', arg: 'X', help: 'KD temperature' },
  topk: { type: 'string', arg: 'N', help: '--kd logprobs: top-k entries used' },
};

export interface CommandSpec {
  /** The positional argument, as help shows it. */
  arg: string;
  /** One line for the list of commands. */
  summary: string;
  /** More, for the command's own help (optional). */
  about?: string;
  options: string[];
}

const RUN = ['set', 'epochs', 'threads', 'seed', 'out', 'device', 'resume', 'force', 'json', 'plugin'];
/** Data-parallel launch (train and distill); torchrun's variables start a rank without them. */
const LAUNCH = ['nproc', 'nnodes', 'node-rank', 'master-addr', 'master-port'];

export const COMMANDS: Record<string, CommandSpec> = {
  train: {
    arg: '<config.yaml|json>', summary: 'train a model alone: --role teacher (default) or --role student',
    about: 'A configuration of stages (roles and terms) runs its stages in order.', options: [...RUN, ...LAUNCH, 'role'],
  },
  distill: {
    arg: '<config.yaml|json>', summary: "train the student against the frozen teacher (teacher.checkpoint, or the teacher run's best weights)",
    about: 'A configuration of stages (roles and terms) runs its stages in order.', options: [...RUN, ...LAUNCH],
  },
  compare: {
    arg: '<config.yaml|json>',
    summary: 'teacher vs student alone vs student + KD (trains what is missing): the verdict',
    about:
      'Measures accuracy, size, speed, agreement and calibration, the share of the teacher gap closed, classes the students ' +
      'never predict and output units that are dead on every test input; writes summary.json and report.html (charts per ' +
      'epoch and the table; opens offline). On a configuration with a scheme: every peer / exit / generation / link against ' +
      'the same model trained alone, and a JSON line.',
    options: [...RUN, 'seeds'],
  },
  search: {
    arg: '<search.yaml|json>', summary: 'search a zoo family for the student within a budget (latency, parameters, int8 size): short KD runs as the proxy, the Pareto front, then the chosen student trained fully',
    about:
      'A search configuration has a search section (family, space, budget, strategy halving|evolution, proxy, pick) instead of a student. ' +
      'Writes search.json (every candidate), search.html and search.svg (the front), and the chosen student\'s runs and compare verdict; ends with a JSON line. ' +
      '--resume continues a killed search without retraining finished candidates.',
    options: ['set', 'epochs', 'threads', 'seed', 'out', 'device', 'resume', 'force', 'plugin'],
  },
  report: { arg: '<config.yaml|json>', summary: '(re)write report.html for the compare (or staged) run in the output directory', options: ['set', 'out', 'plugin'] },
  eval: {
    arg: '<config.yaml|json>', summary: "test accuracy of --weights FILE (default: the run's best weights) for --role teacher|student",
    options: ['set', 'threads', 'seed', 'out', 'device', 'role', 'weights', 'json', 'plugin'],
  },
  export: {
    arg: '<run folder|checkpoint.safetensors>', summary: 'the model for deployment (onnx, onnx-int8, safetensors) and its model card',
    about:
      'Writes the model to --out FILE plus model-card.json beside it (architecture, input preprocessing, teacher, recipe, data, ' +
      'metrics). A folder holding several runs exports the distilled one unless --role teacher|student|distilled; a checkpoint ' +
      'outside a run folder needs --config FILE (and --role). onnx-int8: a QDQ model with the ranges of a quantization-aware run, ' +
      'else calibrated on --calibration-batches N training batches.',
    options: ['format', 'out', 'role', 'config', 'card', 'opset', 'batch', 'calibration-batches', 'threads', 'json', 'plugin'],
  },
  generate: {
    arg: '<generate.yaml|json>', summary: 'a data set from a teacher LLM behind an OpenAI-compatible endpoint',
    about: 'A generate configuration names input, output, teacher, requests and curation; running it again resumes. Exit status 3 when samples failed (run again).',
    options: ['set', 'out', 'concurrency', 'limit', 'force', 'json', 'plugin'],
  },
  serve: {
    arg: '<decoder.safetensors|hf-dir>', summary: 'a decoder over the OpenAI Chat Completions protocol at http://127.0.0.1:8000/v1',
    about: 'JSON and SSE streaming, logprobs, n, stop. Without --api-key(-file) there is no authentication: keep the default host unless the network is trusted.',
    options: ['port', 'host', 'model-name', 'max-tokens', 'max-batch', 'max-body-bytes', 'cors', 'api-key', 'api-key-file', 'device', 'threads', 'quiet', 'faults', 'fault-seed'],
  },
  sft: {
    arg: '<chat.jsonl>', summary: 'fine-tune a decoder on chat answers, optionally with token-level KD',
    about: 'Needs --out DIR, --steps N and the student: --init decoder.safetensors or a Hugging Face directory, or --arch JSON. A Hugging Face student is also written as a model directory, OUT/model.',
    options: ['out', 'steps', 'init', 'arch', 'tokenizer', 'seq-len', 'batch', 'grad-accum', 'lr', 'warmup', 'seed', 'device', 'threads', 'resume', 'force', 'kd', 'teacher', 'alpha', 'beta', 'temperature', 'topk', 'on-policy', 'teacher-url', 'teacher-model', 'teacher-key-env', 'teacher-token-ids', 'json'],
  },
};

/** The width help is wrapped to: the terminal's, within 60..120 columns (100 when not a terminal). */
export const helpWidth = (): number => Math.max(60, Math.min(120, process.stdout.columns || 100));

/** Wraps `text` to lines of at most `width` characters, the first after `first`, the others indented by `indent`. */
function wrap(text: string, width: number, indent: number, first = indent): string[] {
  const lines: string[] = [];
  let cur = '';
  let room = width - first;
  for (const w of text.split(/\s+/).filter(Boolean)) {
    if (cur && cur.length + 1 + w.length > room) {
      lines.push(cur);
      cur = w;
      room = width - indent;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  return lines;
}

const optionLabel = (name: string) => {
  const o = OPTIONS[name];
  return `${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`;
};

/** `tsdistill --help`: the commands, one line each. */
export function generalHelp(width = 100): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = ['usage: tsdistill <command> <file> [options]', '       tsdistill <command> --help   (the options of one command)', '       tsdistill --version', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) {
    const body = wrap(c.summary, width, w + 4);
    lines.push(`  ${name.padEnd(w)}  ${body[0]}`, ...body.slice(1).map((l) => `${' '.repeat(w + 4)}${l}`));
  }
  return lines.join('\n');
}

/** `tsdistill <command> --help`: what the command does and each of its options. */
export function commandHelp(command: string, width = 100): string {
  const c = COMMANDS[command];
  const opts = [...c.options, 'help'];
  const w = Math.min(34, Math.max(...opts.map((o) => optionLabel(o).length)));
  const lines = [`usage: tsdistill ${command} ${c.arg} [options]`, '', ...wrap(c.summary + (c.about ? `. ${c.about}` : ''), width, 0), '', 'options:'];
  for (const o of opts) {
    const label = optionLabel(o);
    const help = wrap(OPTIONS[o].help, width, w + 4);
    if (label.length > w) lines.push(`  ${label}`, ...help.map((l) => `${' '.repeat(w + 4)}${l}`));
    else lines.push(`  ${label.padEnd(w)}  ${help[0]}`, ...help.slice(1).map((l) => `${' '.repeat(w + 4)}${l}`));
  }
  return lines.join('\n');
}

export type ParsedValues = Record<string, string | boolean | string[] | undefined>;

/**
 * The command line of one command: its options, strictly (an option of no command, or of another command, is an error
 * that suggests the closest option of this one), and its positionals.
 */
export function parseCommand(command: string, args: string[]): { values: ParsedValues; positionals: string[] } {
  const c = COMMANDS[command];
  const names = [...c.options, 'help'];
  const options = Object.fromEntries(names.map((n) => {
    const { type, multiple, short } = OPTIONS[n];
    return [n, { type, ...(multiple ? { multiple } : {}), ...(short ? { short } : {}) }];
  }));
  try {
    return parseArgs({ args, allowPositionals: true, strict: true, options }) as { values: ParsedValues; positionals: string[] };
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && err.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw e;
    const flag = /'(-{1,2}[^'\s=]+)/.exec(err.message)?.[1] ?? '';
    const name = flag.replace(/^-+/, '');
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const spec = OPTIONS[name];
      throw new Error(`${command}: ${spec?.type === 'boolean' ? `--${name} takes no value` : `--${name} needs a value (${spec?.arg ?? 'VALUE'})`}`);
    }
    const others = Object.entries(COMMANDS).filter(([k, s]) => k !== command && s.options.includes(name)).map(([k]) => k);
    // near by edit distance, or the only option that the flag begins (an abbreviation)
    const prefixed = names.filter((n) => name.length >= 3 && n.startsWith(name));
    const near = closest(name, names, 1).find((n) => levenshtein(name, n) <= Math.max(2, Math.ceil(name.length / 3))) ?? (prefixed.length === 1 ? prefixed[0] : undefined);
    const belongs = others.length ? `it is an option of ${others.join(', ')}` : '';
    const hint = near ? `; did you mean '--${near}'?${belongs ? ` ('${flag}': ${belongs})` : ''}` : belongs ? ` (${belongs})` : '';
    throw new Error(`${command}: unknown option '${flag}'${hint}\n(tsdistill ${command} --help lists its options)`);
  }
}
