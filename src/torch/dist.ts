// Process groups: PyTorch's c10d collectives (Gloo on CPU) over a TCPStore served by rank 0 or a FileStore, for
// data-parallel training. The ranks find each other the way torchrun's do: RANK, WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT (or the same values passed in). Collectives work in place on contiguous CPU tensors and block until
// every rank has taken part or the timeout passes; a rank that dies makes the others' calls fail with an error that
// names the calling rank (the launcher names the one that died).
import { native, wrap, type GroupHandle, type ReducerHandle } from './handle';
import type { Tensor } from './tensor';

/** Whether this build of the addon has process groups (c10d with Gloo; see native/find-libtorch.js --c10d). */
export function distAvailable(): boolean {
  return native.distAvailable === true;
}

export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  /** 'tcp' (default): a TCPStore at masterAddr:masterPort, served by rank 0. 'file': a FileStore at storePath. */
  store?: 'tcp' | 'file';
  masterAddr?: string;
  masterPort?: number;
  storePath?: string;
  /**
   * For meeting at the store and for every collective (default 1 800 000 ms: 30 minutes, PyTorch's default process
   * group timeout; a rank that dies is noticed at once, the timeout only ends waits for a rank that hangs).
   */
  timeoutMs?: number;
  /** The network interface Gloo binds to (as GLOO_SOCKET_IFNAME); default: the address that reaches the master. */
  iface?: string;
  /** The address Gloo binds to (default: 127.0.0.1 when the master is on loopback, else this host's address). */
  bindHost?: string;
  /** Keys of this group in the store start with this (several groups may share one store). */
  prefix?: string;
}

const isLoopback = (h: string) => h === 'localhost' || /^127\./.test(h) || h === '::1';

function checkRank(o: ProcessGroupOptions): void {
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw new Error(`ProcessGroup: worldSize must be a positive integer, got ${o.worldSize}`);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new Error(`ProcessGroup: rank must be an integer in [0, ${o.worldSize}), got ${o.rank}`);
}

export class ProcessGroup {
  private h: GroupHandle | null;
  private constructor(
    h: GroupHandle,
    readonly rank: number,
    readonly worldSize: number,
    readonly timeoutMs: number,
  ) {
    this.h = h;
  }

  /** Joins a process group; blocks until every rank has joined (or the timeout passes). */
  static init(o: ProcessGroupOptions): ProcessGroup {
    if (!distAvailable())
      throw new Error('ProcessGroup: this build of the native addon has no process groups (c10d with Gloo). On Debian/Ubuntu: apt-get install libgloo-dev, then rebuild it (npm rebuild tsdistill).');
    checkRank(o);
    const store = o.store ?? 'tcp';
    const timeoutMs = o.timeoutMs ?? 1_800_000;
    if (!(timeoutMs > 0)) throw new Error(`ProcessGroup: timeoutMs must be positive, got ${timeoutMs}`);
    let host: string | undefined;
    let port: number | undefined;
    if (store === 'tcp') {
      host = o.masterAddr ?? '127.0.0.1';
      port = o.masterPort ?? 29500;
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`ProcessGroup: masterPort must be a port number, got ${port}`);
    } else if (!o.storePath) throw new Error("ProcessGroup: store 'file' needs storePath");
    const bindHost = o.bindHost ?? (o.iface ? undefined : host !== undefined && isLoopback(host) ? '127.0.0.1' : undefined);
    const h = native.distInit!({ store, host, port, path: o.storePath, rank: o.rank, size: o.worldSize, timeoutMs, iface: o.iface, bindHost, prefix: o.prefix });
    return new ProcessGroup(h, o.rank, o.worldSize, timeoutMs);
  }

  /**
   * The group described by torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
   * GLOO_SOCKET_IFNAME, TSDISTILL_DIST_TIMEOUT_MS optional), or null when WORLD_SIZE is unset.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): ProcessGroup | null {
    const o = ProcessGroup.optionsFromEnv(env);
    return o ? ProcessGroup.init(o) : null;
  }

  /** The options that `fromEnv` would use, or null (checked: names the variable at fault). */
  static optionsFromEnv(env: NodeJS.ProcessEnv = process.env): ProcessGroupOptions | null {
    if (env.WORLD_SIZE === undefined) return null;
    const int = (name: string, v: string | undefined) => {
      const n = Number(v);
      if (v === undefined || v === '' || !Number.isInteger(n)) throw new Error(`ProcessGroup: environment variable ${name} must be an integer, got ${v === undefined ? 'nothing' : `'${v}'`}`);
      return n;
    };
    const o: ProcessGroupOptions = {
      worldSize: int('WORLD_SIZE', env.WORLD_SIZE),
      rank: int('RANK', env.RANK),
      masterAddr: env.MASTER_ADDR ?? '127.0.0.1',
      masterPort: env.MASTER_PORT !== undefined ? int('MASTER_PORT', env.MASTER_PORT) : 29500,
      iface: env.GLOO_SOCKET_IFNAME || undefined,
      timeoutMs: env.TSDISTILL_DIST_TIMEOUT_MS !== undefined ? int('TSDISTILL_DIST_TIMEOUT_MS', env.TSDISTILL_DIST_TIMEOUT_MS) : undefined,
    };
    checkRank(o);
    return o;
  }

  private handle(): GroupHandle {
    if (!this.h) throw new Error(`ProcessGroup (rank ${this.rank}): used after destroy()`);
    return this.h;
  }

  /** Sums each tensor over the ranks, in place ('mean': then divides by the number of ranks). */
  allReduce(ts: Tensor[], op: 'sum' | 'mean' = 'sum'): void {
    native.distAllReduce!(this.handle(), ts.map((t) => t._h));
    if (op === 'mean' && this.worldSize > 1) for (const t of ts) t.div_(this.worldSize);
  }

  /** Overwrites each tensor with rank `root`'s, in place. */
  broadcast(ts: Tensor[], root = 0): void {
    native.distBroadcast!(this.handle(), ts.map((t) => t._h), root);
  }

  /** Every rank's `t`, in rank order (new tensors, owned by the caller). */
  allGather(t: Tensor): Tensor[] {
    return native.distAllGather!(this.handle(), t._h).map((h) => wrap(h));
  }

  /** Waits until every rank has reached the barrier. */
  barrier(): void {
    native.distBarrier!(this.handle());
  }

  /** Sets a key in the group's store (visible to every rank). */
  storeSet(key: string, value: string): void {
    native.distStoreSet!(this.handle(), key, value);
  }

  /** A key of the group's store, waiting for it up to the timeout. */
  storeGet(key: string): string {
    return native.distStoreGet!(this.handle(), key);
  }

  /**
   * Batch normalisation of `x` ([N, C, ...]) with the statistics of the whole global batch: every rank's per-channel
   * mean, variance and row count are gathered and combined, the running statistics are updated as one process with the
   * whole batch would update them, and the backward pass all-reduces the sums the input's gradient needs. Every rank
   * must call it at the same point of its forward pass (BatchNorm layers do, when synchronised: see syncBatchNorm).
   */
  syncBatchNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, runningMean: Tensor | null, runningVar: Tensor | null, momentum: number, eps: number): Tensor {
    return wrap(native.distSyncBatchNorm!(this.handle(), x._h, weight?._h ?? null, bias?._h ?? null, runningMean?._h ?? null, runningVar?._h ?? null, momentum, eps));
  }

  /** @internal the native handle, for the gradient reducer */
  get _handle(): GroupHandle {
    return this.handle();
  }

  /** Leaves the group (the store's server closes with rank 0's). */
  destroy(): void {
    if (this.h) native.distDestroy!(this.h);
    this.h = null;
  }
}

export interface GradReducerOptions {
  /** Size of a gradient bucket in MiB (default 25, as DDP's bucket_cap_mb). */
  bucketCapMB?: number;
  /** Size of the first bucket in MiB (default 1, as DDP): the last layers' gradients, ready first in the backward pass. */
  firstBucketMB?: number;
  /** The parameters' names, for c10d's error messages. */
  names?: string[];
}

/**
 * c10d's Reducer, the gradient engine of PyTorch's DistributedDataParallel: the parameters' gradients are grouped in
 * buckets (in reverse order of the parameters, the order in which the backward pass produces them) and each bucket is
 * all-reduced on Gloo's thread as soon as its last gradient is ready, while autograd computes the earlier layers'.
 * After `prepare(outputs)`, the next backward pass from `outputs` ends with every parameter's gradient replaced by its
 * mean over the ranks (parameters that the pass does not reach count as zeros; their gradient stays unset where no
 * rank has one). Backward passes without `prepare` leave the gradients local (DDP's no_sync).
 */
export class GradReducer {
  private h: ReducerHandle | null;
  private constructor(h: ReducerHandle, readonly params: Tensor[]) {
    this.h = h;
  }
  static create(group: ProcessGroup, params: Tensor[], o: GradReducerOptions = {}): GradReducer {
    if (!native.distReducer) throw new Error('GradReducer: this build of the native addon has no process groups (c10d with Gloo)');
    if (!params.length) throw new Error('GradReducer: no parameters');
    const mb = (v: number | undefined, d: number, name: string) => {
      const x = v ?? d;
      if (!(x > 0)) throw new Error(`GradReducer: ${name} must be positive, got ${x}`);
      return Math.round(x * 1024 * 1024);
    };
    const h = native.distReducer(group._handle, params.map((p) => p._h), mb(o.bucketCapMB, 25, 'bucketCapMB'), mb(o.firstBucketMB, 1, 'firstBucketMB'), o.names ?? []);
    return new GradReducer(h, params);
  }
  /** The next backward pass from `outputs` all-reduces the gradients. */
  prepare(outputs: Tensor[]): void {
    if (!this.h) throw new Error('GradReducer: used after destroy()');
    native.distReducerPrepare!(this.h, outputs.map((t) => t._h));
  }
  /** Removes the reducer's autograd hooks. */
  destroy(): void {
    if (this.h) native.distReducerDestroy!(this.h);
    this.h = null;
  }
}

let current: ProcessGroup | null = null;

/**
 * The process group that training joins when it is not given one (null: a single process). The CLI sets it in each
 * process it starts with --nproc (or under torchrun); a library user may set it once after ProcessGroup.init.
 */
export function defaultProcessGroup(): ProcessGroup | null {
  return current;
}
export function setDefaultProcessGroup(g: ProcessGroup | null): void {
  current = g;
}

/** Whether this process writes a run's files and prints its reports: rank 0 of the default group, or a lone process. */
export function isWriterProcess(): boolean {
  return (current?.rank ?? 0) === 0;
}
