// Data-parallel training on c10d process groups (Gloo over loopback): the collectives, the launcher, the engine's
// equivalence to one process with the same batch, a rank killed mid-epoch, a resume with another number of ranks, an
// unreachable store, two "machines" (two launches with --nnodes 2). Skipped where the addon has no process groups.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ProcessGroup, distAvailable, loadSafetensors, tidy } from '../src/torch';
import { DataLoader, TensorDataset } from '../src/data';
import { freePort, launch, takeLaunchFlags } from '../src/run';
import { ops, tensor } from '../src/torch';

// the ranks' scripts live outside test/ (the test runner would take them for test files)
const workers = path.join(__dirname, '..', 'test-workers');
const skip = distAvailable() ? false : 'the native addon was built without process groups (apt-get install libgloo-dev, then rebuild it)';

/** Runs `script` alone (no process group); resolves to its stdout. */
function runAlone(script: string, env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const k of ['WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'TSDISTILL_LAUNCHED']) delete e[k];
    const c = spawn(process.execPath, [path.join(workers, script)], { env: e });
    let out = '', err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (code) => resolve({ code, out, err }));
  });
}

/** Launches `script` on `nproc` ranks; resolves to the exit status and what the launcher logged. */
async function launchRanks(script: string, nproc: number, env: Record<string, string>, extra: Partial<Parameters<typeof launch>[0]> = {}) {
  const lines: string[] = [];
  const code = await launch({ nproc, argv: [], script: path.join(workers, script), env, log: (l) => lines.push(l), graceMs: 20_000, ...extra });
  return { code, log: lines.join('\n') };
}

function maxDiff(a: string, b: string): number {
  const x = loadSafetensors(a), y = loadSafetensors(b);
  try {
    return tidy(() => Math.max(...Object.keys(x.tensors).map((k) => x.tensors[k].sub(y.tensors[k]).abs().max().item())));
  } finally {
    for (const t of [...Object.values(x.tensors), ...Object.values(y.tensors)]) t.dispose();
  }
}

describe('DataLoader shards', () => {
  it('splits every batch into contiguous shares whose union is the whole batch, last batch included', () => {
    const ds = new TensorDataset(tensor(Float32Array.from({ length: 10 }, (_, i) => i), { shape: [10, 1] }), tensor(Float32Array.from({ length: 10 }, (_, i) => i)));
    const whole = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 1, scale: false });
    const shards = [0, 1, 2].map((rank) => new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 1, scale: false, shard: { rank, world: 3 } }));
    assert.equal(shards[0].length, whole.length);
    for (let b = 0; b < whole.length; b++) {
      const w = whole.batchAt(b);
      const parts = shards.map((s) => s.batchAt(b));
      assert.deepEqual(parts.flatMap((p) => [...p.indices!]), [...w.indices!], `batch ${b}`);
      assert.equal(whole.globalRows(b), w.indices!.length);
      w.dispose();
      parts.forEach((p) => p.dispose());
    }
    // the last batch holds 2 samples: one rank gets none
    assert.deepEqual(shards.map((s) => s.batchAt(2).indices!.length), [0, 1, 1]);
    assert.throws(() => new DataLoader(ds, { batchSize: 2, shard: { rank: 0, world: 3 } }), /3 processes cannot share batches of 2 samples/);
    assert.throws(() => whole.setShard(3, 3), /rank must be an integer in \[0, 3\)/);
    ds.tensors.forEach((t) => t.dispose());
  });
});

describe('launch flags', () => {
  it('takes --nproc and the machine flags out of the arguments, and checks them', () => {
    assert.equal(takeLaunchFlags(['distill', 'a.yaml', '--epochs', '2']), null);
    assert.deepEqual(takeLaunchFlags(['distill', 'a.yaml', '--nproc', '2', '--nnodes=2', '--node-rank', '1', '--master-addr', '10.0.0.1', '--master-port', '29400', '--json']), {
      opts: { nproc: 2, nnodes: 2, nodeRank: 1, masterAddr: '10.0.0.1', masterPort: 29400 },
      rest: ['distill', 'a.yaml', '--json'],
    });
    assert.throws(() => takeLaunchFlags(['train', '--nproc', 'two']), /--nproc must be an integer ≥ 1, got 'two'/);
    assert.throws(() => takeLaunchFlags(['train', '--nnodes', '2']), /--nnodes needs --nproc N/);
    assert.throws(() => ProcessGroup.optionsFromEnv({ WORLD_SIZE: '2', RANK: 'x' }), /RANK must be an integer, got 'x'/);
    assert.throws(() => ProcessGroup.optionsFromEnv({ WORLD_SIZE: '2', RANK: '2' }), /rank must be an integer in \[0, 2\), got 2/);
  });
});

describe('process groups', { skip }, () => {
  it('all-reduce, mean, broadcast, all-gather and barrier over 3 ranks', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const { code, log } = await launchRanks('dist-collectives.js', 3, { OUT_DIR: dir });
    assert.equal(code, 0, log);
    for (const rank of [0, 1, 2]) {
      const got = JSON.parse(fs.readFileSync(path.join(dir, `rank-${rank}.json`), 'utf8'));
      assert.deepEqual(got, { rank, sum: [6, 60], mean: 2, bcast: [7, 3], gathered: [[0, 0], [1, 1], [2, 4]] });
    }
    fs.rmSync(dir, { recursive: true });
  });

  it('two ranks with a share of each batch end an epoch with the weights of one process (max |Δ| ≤ 1e-5); three ranks too', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const one = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'one') });
    assert.equal(one.code, 0, one.err);
    const two = await launchRanks('dist-kd.js', 2, { OUT_DIR: path.join(dir, 'two') });
    assert.equal(two.code, 0, two.log);
    const d2 = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'two', 'last.safetensors'));
    assert.ok(d2 <= 1e-5, `2 ranks: max |Δ| ${d2}`);
    const three = await launchRanks('dist-kd.js', 3, { OUT_DIR: path.join(dir, 'three') });
    assert.equal(three.code, 0, three.log);
    const d3 = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'three', 'last.safetensors'));
    assert.ok(d3 <= 1e-5, `3 ranks: max |Δ| ${d3}`);
    // rank 0 alone wrote the run: same metrics lines as one process, test accuracy included
    const lines = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const [m1, m2] = [lines(path.join(dir, 'one', 'metrics.jsonl')), lines(path.join(dir, 'two', 'metrics.jsonl'))];
    assert.equal(m2.length, m1.length);
    assert.equal(m2[0].test_acc, m1[0].test_acc);
    assert.ok(Math.abs(m2[0].train_acc - m1[0].train_acc) < 1e-9 && Math.abs(m2[0].loss - m1[0].loss) < 1e-4, `train metrics over all ranks: ${JSON.stringify([m1[0], m2[0]])}`);
    fs.rmSync(dir, { recursive: true });
  });

  it('the gradients all-reduced during the backward pass (c10d Reducer) or after it give the same weights', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const one = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'one'), EPOCHS: '2' });
    assert.equal(one.code, 0, one.err);
    for (const overlap of ['1', '0']) {
      const two = await launchRanks('dist-kd.js', 2, { OUT_DIR: path.join(dir, `two-${overlap}`), EPOCHS: '2', OVERLAP: overlap });
      assert.equal(two.code, 0, two.log);
      const d = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, `two-${overlap}`, 'last.safetensors'));
      assert.ok(d <= 1e-5, `overlap ${overlap}: max |Δ| ${d}`);
    }
    fs.rmSync(dir, { recursive: true });
  });

  it('synchronised BatchNorm: two ranks normalise and keep running statistics as one process with the whole batch', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const env = { STUDENT: 'bn', EPOCHS: '1' };
    const one = await runAlone('dist-kd.js', { ...env, OUT_DIR: path.join(dir, 'one') });
    assert.equal(one.code, 0, one.err);
    const synced = await launchRanks('dist-kd.js', 2, { ...env, OUT_DIR: path.join(dir, 'sync'), SYNC_BN: '1' });
    assert.equal(synced.code, 0, synced.log);
    // weights and BatchNorm buffers (running mean and variance) both
    const d = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'sync', 'last.safetensors'));
    assert.ok(d <= 1e-5, `sync batch norm: max |Δ| ${d}`);
    // without synchronisation each rank normalises its own half batch: the weights differ
    const local = await launchRanks('dist-kd.js', 2, { ...env, OUT_DIR: path.join(dir, 'local') });
    assert.equal(local.code, 0, local.log);
    const dl = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'local', 'last.safetensors'));
    assert.ok(dl > 1e-3, `per-rank batch norm should differ from one process: max |Δ| ${dl}`);
    fs.rmSync(dir, { recursive: true });
  });

  it('KD on cached teacher views: rank 0 builds the views, two ranks end as one process does', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const one = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'one'), VIEWS: '1' });
    assert.equal(one.code, 0, one.err);
    const two = await launchRanks('dist-kd.js', 2, { OUT_DIR: path.join(dir, 'two'), VIEWS: '1' });
    assert.equal(two.code, 0, two.log);
    // the views were computed before training and stored in the run's cache folder
    assert.deepEqual(fs.readdirSync(path.join(dir, 'two-cache')).filter((f) => f.startsWith('teacher-views-')).length, 1);
    const d = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'two', 'last.safetensors'));
    assert.ok(d <= 1e-5, `max |Δ| ${d}`);
    fs.rmSync(dir, { recursive: true });
  });

  it('a rank killed mid-epoch stops the others with its name; --resume on one rank finishes the run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const env = { OUT_DIR: path.join(dir, 'run'), EPOCHS: '2', STEP_DELAY_MS: '150' };
    const started = Date.now();
    const p = launchRanks('dist-kd.js', 2, env);
    // kill rank 1 once the run has committed a step
    const state = path.join(dir, 'run', 'state.json');
    while (!fs.existsSync(state) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.existsSync(state), 'the run committed a step');
    const pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        const e = fs.readFileSync(`/proc/${d}/environ`, 'utf8');
        return e.includes(`OUT_DIR=${env.OUT_DIR}\0`) && e.includes('RANK=1\0');
      } catch {
        return false;
      }
    });
    assert.equal(pids.length, 1, 'rank 1 found');
    process.kill(Number(pids[0]), 'SIGKILL');
    const r = await p;
    assert.notEqual(r.code, 0);
    assert.match(r.log, /rank 1 \(pid \d+\) was killed by SIGKILL/);
    assert.ok(Date.now() - started < 60_000, 'stopped within the timeout');
    // resume with one process; the run ends as one uninterrupted process would end it
    const resumed = await runAlone('dist-kd.js', { ...env, STEP_DELAY_MS: '0', RESUME: '1' });
    assert.equal(resumed.code, 0, resumed.err);
    const straight = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'straight'), EPOCHS: '2' });
    assert.equal(straight.code, 0, straight.err);
    const d = maxDiff(path.join(dir, 'run', 'last.safetensors'), path.join(dir, 'straight', 'last.safetensors'));
    assert.ok(d <= 1e-5, `resumed vs uninterrupted: max |Δ| ${d}`);
    fs.rmSync(dir, { recursive: true });
  });

  it('a rank that cannot reach the store fails with a clear error', async () => {
    const port = await freePort();
    const c = spawn(process.execPath, [path.join(workers, 'dist-collectives.js')], {
      env: { ...process.env, WORLD_SIZE: '2', RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), TSDISTILL_DIST_TIMEOUT_MS: '2000' },
    });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((res) => c.on('exit', res));
    assert.notEqual(code, 0);
    assert.match(err, new RegExp(`rank 1 of 2: could not reach the tcp store at 127\\.0\\.0\\.1:${port} within 2 s`));
  });

  it('two machines: --nnodes 2 with a launch per node, the store on node 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    const port = await freePort();
    const node = (nodeRank: number) => launchRanks('dist-kd.js', 1, { OUT_DIR: path.join(dir, 'run') }, { nnodes: 2, nodeRank, masterAddr: '127.0.0.1', masterPort: port });
    const [a, b] = await Promise.all([node(0), node(1)]);
    assert.equal(a.code, 0, a.log);
    assert.equal(b.code, 0, b.log);
    const one = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'one') });
    assert.equal(one.code, 0, one.err);
    const d = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'run', 'last.safetensors'));
    assert.ok(d <= 1e-5, `max |Δ| ${d}`);
    fs.rmSync(dir, { recursive: true });
  });

  it('two machines in two network namespaces joined by a veth pair: --nnodes 2 over their own addresses', async (t) => {
    const why = netnsUnavailable();
    if (why) return t.skip(why);
    const id = `${process.pid % 100000}`;
    const ns = [`tsd-a${id}`, `tsd-b${id}`], dev = [`tsdva${id}`, `tsdvb${id}`];
    const net = `10.${200 + (process.pid % 50)}.${process.pid % 250}`;
    const addr = [`${net}.1`, `${net}.2`];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-dist-'));
    try {
      for (const n of ns) ip('netns', 'add', n);
      ip('link', 'add', dev[0], 'type', 'veth', 'peer', 'name', dev[1]);
      for (const i of [0, 1]) {
        ip('link', 'set', dev[i], 'netns', ns[i]);
        ip('-n', ns[i], 'addr', 'add', `${addr[i]}/24`, 'dev', dev[i]);
        ip('-n', ns[i], 'link', 'set', dev[i], 'up');
        ip('-n', ns[i], 'link', 'set', 'lo', 'up');
      }
      // each machine sees only its namespace's interfaces: rank 0's store at machine A's address, Gloo on the veth
      const machine = (i: number) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const e: NodeJS.ProcessEnv = { ...process.env, OUT_DIR: path.join(dir, 'run'), GLOO_SOCKET_IFNAME: dev[i] };
          for (const k of ['WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'TSDISTILL_LAUNCHED']) delete e[k];
          const args = ['netns', 'exec', ns[i], process.execPath, path.join(workers, 'launch-node.js'), '--nproc', '1', '--nnodes', '2', '--node-rank', String(i), '--master-addr', addr[0], '--master-port', '29517'];
          const c = spawn('ip', args, { env: e });
          let out = '';
          c.stdout.on('data', (d) => (out += d));
          c.stderr.on('data', (d) => (out += d));
          c.on('exit', (code) => resolve({ code, out }));
        });
      const [a, b] = await Promise.all([machine(0), machine(1)]);
      assert.equal(a.code, 0, a.out);
      assert.equal(b.code, 0, b.out);
      assert.match(a.out, new RegExp(`store at ${addr[0].replace(/\./g, '\\.')}:29517`));
      const one = await runAlone('dist-kd.js', { OUT_DIR: path.join(dir, 'one') });
      assert.equal(one.code, 0, one.err);
      const d = maxDiff(path.join(dir, 'one', 'last.safetensors'), path.join(dir, 'run', 'last.safetensors'));
      assert.ok(d <= 1e-5, `max |Δ| ${d}`);
    } finally {
      for (const n of ns) spawnSync('ip', ['netns', 'del', n]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Runs `ip` with `args`; throws with its error output when it fails. */
function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
}

/** Why network namespaces cannot be made here (not root, no `ip`), or null. */
function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `no usable 'ip' command (iproute2): ${r.error?.message ?? r.stderr.trim()}`;
  return null;
}
