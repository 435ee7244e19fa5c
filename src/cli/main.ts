#!/usr/bin/env node
// The `tsdistill` command: parses arguments (commands.ts) and runs the command (execute.ts). Train a teacher or a plain
// student, distill a student, compare, evaluate weights, export; generate, serve and sft for decoders. Help, --version
// and flag errors answer before libtorch loads.
import { closest } from '../util/closest';
import { COMMANDS, commandHelp, generalHelp, helpWidth, parseCommand } from './commands';
import type { Values } from './execute';

/** `tsdistill --version`: the package's version, and the libtorch it runs on. */
async function versionLine(): Promise<string> {
  const v = (await import('../torch')).version();
  return `tsdistill ${v.tsdistill} (libtorch ${v.libtorch}, ${v.cuda ? 'CUDA build' : 'CPU build'})`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    const sub = command === 'help' ? rest[0] : undefined;
    console.log(sub && COMMANDS[sub] ? commandHelp(sub, helpWidth()) : generalHelp(helpWidth()));
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') {
    console.log(await versionLine());
    return 0;
  }
  if (!COMMANDS[command]) {
    const names = Object.keys(COMMANDS);
    throw new Error(command.startsWith('-') ? `'${command}' before the command: options follow it (tsdistill <command> <file> [options])\n${generalHelp(helpWidth())}`
      : `unknown command '${command}'; did you mean '${closest(command, names, 1)[0]}'?\n${generalHelp(helpWidth())}`);
  }
  const { values: v, positionals } = parseCommand(command, rest);
  if (v.help) {
    console.log(commandHelp(command, helpWidth()));
    return 0;
  }
  const values = v as Values;
  const [file, extra] = positionals;
  if (extra !== undefined) throw new Error(`${command}: one ${COMMANDS[command].arg} expected, got '${file}' and '${extra}' (options start with --)`);
  if (values.nproc !== undefined) {
    // data-parallel: start --nproc ranks of this same command (without the launch flags); each joins the group
    const { launch, takeLaunchFlags } = await import('../run');
    const l = takeLaunchFlags(argv)!;
    return launch({ ...l.opts, argv: l.rest });
  }
  for (const f of ['nnodes', 'node-rank', 'master-addr', 'master-port'])
    if (values[f] !== undefined) throw new Error(`${command}: --${f} needs --nproc N (the processes on this machine)`);
  if (command === 'search') {
    if (!file) throw new Error(`search: a config file is required\n${commandHelp('search', helpWidth())}`);
    const { runSearchCommand } = await import('./search');
    return runSearchCommand(file, values, stop.signal);
  }
  const { execute } = await import('./execute');
  return execute(command, file, values, { signal: stop.signal, setStopNote: (note) => (stopNote = note) });
}

// Ctrl-C: the first stops the run after the current step and saves a resumable state; a second exits at once.
const stop = new AbortController();
let stopNote = 'stopping after this step and saving (Ctrl-C again to quit at once)';
process.on('SIGINT', () => {
  // a rank of a data-parallel run stops at once (its peers would wait for it at the next collective)
  if (stop.signal.aborted || Number(process.env.WORLD_SIZE ?? 1) > 1) process.exit(130);
  stop.abort();
  process.stderr.write(`\n${stopNote}\n`);
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof Error && e.name === 'TrainingInterrupted') {
      process.stderr.write(`tsdistill: ${e.message.replace(/resume$/, '--resume')}\n`);
      process.exit(130);
    }
    process.stderr.write(`tsdistill: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
