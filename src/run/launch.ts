// Data-parallel launch: `tsdistill <command> ... --nproc N` starts N local ranks of the same command, each a process
// of its own that joins one c10d process group through torchrun's environment variables (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Several machines run the same command with --nnodes,
// --node-rank, --master-addr and --master-port; torchrun, Slurm or Kubernetes may instead set those variables and
// start the command themselves (without --nproc). Rank 0 prints and writes; the launcher passes its output through,
// prefixes the others' error output with their rank, and when one rank fails stops the rest, naming the one that
// failed.
import { type ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import { ProcessGroup, distAvailable, setDefaultProcessGroup } from '../torch';

export interface LaunchOptions {
  /** Ranks on this machine. */
  nproc: number;
  /** Machines (default 1). */
  nnodes?: number;
  /** This machine's index in [0, nnodes) (default 0). */
  nodeRank?: number;
  /** Where rank 0 serves the store (default 127.0.0.1, which only works with one machine). */
  masterAddr?: string;
  /** Default: a free port with one machine, else 29500. */
  masterPort?: number;
  /** The command's arguments for every rank (without the launch flags). */
  argv: string[];
  /** The script each rank runs (default: this CLI, the script Node was started with). */
  script?: string;
  /** Extra environment for the ranks. */
  env?: NodeJS.ProcessEnv;
  /** Where lines go (default: process.stderr). */
  log?: (line: string) => void;
  /** After one rank fails, how long the others get to stop by themselves before they are killed (default 10 000 ms). */
  graceMs?: number;
}

/** The launch flags and their values, removed from `argv`; null when --nproc is absent. */
export function takeLaunchFlags(argv: string[]): { opts: Omit<LaunchOptions, 'argv'>; rest: string[] } | null {
  const names = { '--nproc': 'nproc', '--nnodes': 'nnodes', '--node-rank': 'nodeRank', '--master-addr': 'masterAddr', '--master-port': 'masterPort' } as const;
  const found: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag in names) {
      const v = inline ?? argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
      found[names[flag as keyof typeof names]] = v;
    } else rest.push(a);
  }
  if (found.nproc === undefined) {
    const stray = Object.keys(found)[0];
    if (stray) throw new Error(`--${stray.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --nproc N (the ranks on this machine)`);
    return null;
  }
  const int = (k: string, min: number) => {
    const v = Number(found[k]);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} must be an integer ≥ ${min}, got '${found[k]}'`);
    return v;
  };
  const opts: Omit<LaunchOptions, 'argv'> = {
    nproc: int('nproc', 1),
    ...(found.nnodes !== undefined ? { nnodes: int('nnodes', 1) } : {}),
    ...(found.nodeRank !== undefined ? { nodeRank: int('nodeRank', 0) } : {}),
    ...(found.masterAddr !== undefined ? { masterAddr: found.masterAddr } : {}),
    ...(found.masterPort !== undefined ? { masterPort: int('masterPort', 1) } : {}),
  };
  return { opts, rest };
}

/**
 * The Node options of this process that the ranks take too (memory limits, --expose-gc, preloaded modules), without
 * those that run code or tools of their own (-e/-p and their code, --test, --watch, --inspect).
 */
function nodeFlags(execArgv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') {
      i++;
      continue;
    }
    if (/^--(eval|print|test|watch|inspect)/.test(a)) continue;
    out.push(a);
  }
  return out;
}

/** A TCP port that is free on this machine now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts the ranks of this machine and waits for them; resolves to the exit status (0 when every rank succeeded). */
export async function launch(o: LaunchOptions): Promise<number> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  // a rank never launches ranks of its own (a script that launches when run would otherwise multiply without end)
  if (process.env.TSDISTILL_LAUNCHED === '1') throw new Error('launch: this process is itself a rank started by a launch; it cannot start ranks');
  if (!distAvailable())
    throw new Error('--nproc: this build of the native addon has no process groups (c10d with Gloo). On Debian/Ubuntu: apt-get install libgloo-dev, then rebuild it (npm rebuild tsdistill).');
  if (nodeRank >= nnodes) throw new Error(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  if (nnodes > 1 && o.masterAddr === undefined) throw new Error(`--nnodes ${nnodes}: every machine needs --master-addr (the address of the machine with --node-rank 0)`);
  const world = nnodes * o.nproc;
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (nnodes === 1 ? await freePort() : 29500);
  const script = o.script ?? process.argv[1];
  if (!script) throw new Error('launch: no script to run in the ranks (pass `script`)');
  log(`launch: ${o.nproc} rank${o.nproc > 1 ? 's' : ''} here (ranks ${nodeRank * o.nproc}..${nodeRank * o.nproc + o.nproc - 1} of ${world}), store at ${masterAddr}:${masterPort}`);
  const children: { rank: number; child: ChildProcess; code: number | null; signal: NodeJS.Signals | null; done: Promise<void> }[] = [];
  for (let local = 0; local < o.nproc; local++) {
    const rank = nodeRank * o.nproc + local;
    const env = {
      ...process.env, ...o.env,
      RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(o.nproc),
      GROUP_RANK: String(nodeRank), MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort), TSDISTILL_LAUNCHED: '1',
    };
    const child = spawn(process.execPath, [...nodeFlags(process.execArgv), script, ...o.argv], { env, stdio: ['ignore', rank === 0 ? 'inherit' : 'ignore', 'pipe'] });
    let tail = '';
    child.stderr!.on('data', (d: Buffer) => {
      // rank 0's error output as it is, the others' line by line with their rank
      if (rank === 0) process.stderr.write(d);
      else {
        tail += d.toString();
        const lines = tail.split('\n');
        tail = lines.pop()!;
        for (const l of lines) log(`[rank ${rank}] ${l}`);
      }
    });
    const entry = { rank, child, code: null as number | null, signal: null as NodeJS.Signals | null, done: Promise.resolve() };
    entry.done = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        if (tail) log(`[rank ${rank}] ${tail}`);
        entry.code = code;
        entry.signal = signal;
        resolve();
      }),
    );
    children.push(entry);
  }
  // forward Ctrl-C / termination to the ranks
  const forward = (sig: NodeJS.Signals) => () => children.forEach((c) => c.child.exitCode === null && c.child.kill(sig));
  const onInt = forward('SIGINT'), onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  let failed: (typeof children)[number] | null = null;
  try {
    await new Promise<void>((resolve) => {
      let left = children.length;
      for (const c of children)
        c.done.then(() => {
          if (!failed && (c.code !== 0 || c.signal)) {
            failed = c;
            log(`launch: rank ${c.rank} (pid ${c.child.pid}) ${c.signal ? `was killed by ${c.signal}` : `exited with status ${c.code}`}; stopping the other ranks`);
            // the others fail by themselves at their next collective (naming themselves); those that do not are
            // stopped after the grace period
            const alive = (x: (typeof children)[number]) => x.child.exitCode === null && x.child.signalCode === null;
            setTimeout(() => {
              children.forEach((x) => alive(x) && x.child.kill('SIGTERM'));
              setTimeout(() => children.forEach((x) => alive(x) && x.child.kill('SIGKILL')), 5000).unref();
            }, o.graceMs ?? 10_000).unref();
          }
          if (--left === 0) resolve();
        });
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  const f = failed as (typeof children)[number] | null;
  return f ? (f.code && f.code > 0 ? f.code : 1) : 0;
}

/**
 * In a rank started by `launch` (or torchrun): joins the process group the environment describes and makes it the
 * default for training. Returns it, or null outside a multi-process run.
 */
export function joinProcessGroupFromEnv(env: NodeJS.ProcessEnv = process.env): ProcessGroup | null {
  const o = ProcessGroup.optionsFromEnv(env);
  if (!o || o.worldSize === 1) return null;
  const g = ProcessGroup.init(o);
  setDefaultProcessGroup(g);
  return g;
}
