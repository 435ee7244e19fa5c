// The command line itself: every command has its own --help listing exactly its options, --version prints the
// package's version, and a misspelled or misplaced flag is an error suggesting the closest option (or naming the
// command it belongs to) before anything loads or trains.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { COMMANDS, commandHelp, parseCommand } from '../src/cli/commands';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('tsdistill --help, --version and flags', () => {
  it('each command has its own --help with its options and no others', () => {
    for (const [name, spec] of Object.entries(COMMANDS)) {
      const r = run([name, '--help']);
      assert.equal(r.status, 0, r.stderr);
      assert.ok(r.stdout.startsWith(`usage: tsdistill ${name} ${spec.arg} [options]`), r.stdout);
      const listed = [...r.stdout.matchAll(/^ {2}(?:-\w, )?--([a-z-]+)/gm)].map((m) => m[1]);
      assert.deepEqual(listed.sort(), [...spec.options, 'help'].sort(), `${name} --help`);
    }
    assert.match(run(['serve', '--help']).stdout, /--max-body-bytes N +the largest request body accepted; larger ones get 413 \(default 1048576\)/);
    assert.match(run(['compare', '-h']).stdout, /--seeds LIST\|N/);
    // help wraps to the width it is given
    for (const line of commandHelp('sft', 70).split('\n')) assert.ok(line.length <= 70 || !line.trim().includes(" "), line);
  });
  it('tsdistill --help lists the commands; no command prints it with status 2', () => {
    const h = run(['--help']);
    assert.equal(h.status, 0);
    for (const name of Object.keys(COMMANDS)) assert.match(h.stdout, new RegExp(`^  ${name} +\\S`, 'm'));
    assert.match(h.stdout, /tsdistill <command> --help/);
    assert.equal(run([]).status, 2);
  });
  it('--version prints the package version and the libtorch', () => {
    const v = run(['--version']);
    assert.equal(v.status, 0, v.stderr);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    assert.match(v.stdout, new RegExp(`^tsdistill ${pkg.version.replace(/\./g, '\\.')} \\(libtorch \\d+\\.\\d+\\.\\d+, (CPU|CUDA) build\\)\\n$`));
  });
  it('a misspelled flag suggests the closest option of the command', () => {
    const r = run(['compare', 'x.yaml', '--epoch', '3']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "tsdistill: compare: unknown option '--epoch'; did you mean '--epochs'?\n(tsdistill compare --help lists its options)\n");
    assert.match(run(['serve', 'd.safetensors', '--max-body', '10']).stderr, /serve: unknown option '--max-body'; did you mean '--max-body-bytes'\?/);
    assert.match(run(['train', 'x.yaml', '--resum']).stderr, /train: unknown option '--resum'; did you mean '--resume'\?/);
  });
  it("a flag of another command names the command it belongs to; wrong values and extra arguments are errors", () => {
    assert.match(run(['distill', 'x.yaml', '--format', 'onnx']).stderr, /^tsdistill: distill: unknown option '--format' \(it is an option of export\)/);
    assert.match(run(['train', 'x.yaml', '--seeds', '0,1']).stderr, /train: unknown option '--seeds'; did you mean '--seed'\? \('--seeds': it is an option of compare\)/);
    assert.match(run(['train', 'x.yaml', '--epochs']).stderr, /train: --epochs needs a value \(N\)/);
    assert.match(run(['train', 'x.yaml', '--json=yes']).stderr, /train: --json takes no value/);
    assert.match(run(['train', 'a.yaml', 'b.yaml']).stderr, /train: one <config\.yaml\|json> expected, got 'a\.yaml' and 'b\.yaml'/);
    assert.match(run(['--epochs', '3', 'train']).stderr, /'--epochs' before the command: options follow it/);
  });
  it('parseCommand gives the values of the command\'s options', () => {
    const p = parseCommand('compare', ['c.yaml', '--seeds', '3', '--set', 'a=1', '--set', 'b=2', '--json']);
    assert.deepEqual(p.positionals, ['c.yaml']);
    assert.deepEqual({ ...p.values }, { seeds: '3', set: ['a=1', 'b=2'], json: true });
  });
});
