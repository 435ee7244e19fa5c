// A run directory: every file a run writes, and the order that makes it resumable. Checkpoints (safetensors) are
// written atomically first, then state.json (the commit point: what `resume` continues from), then one durable line of
// metrics.jsonl. A directory holding another run is refused unless the caller resumes it or forces a fresh start.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appendLineDurable, dispose, loadSafetensors, removeStaleTempFiles, saveSafetensors, writeFileAtomic } from '../torch';
import { type Module, checkFinite } from '../nn';
import type { Optimizer, SchedulerState } from '../optim';

export interface RunState {
  /** The last finished epoch (0-based; −1 when none has finished). */
  epoch: number;
  best: { acc: number; epoch: number };
  /** The primary role's learning-rate schedule. */
  scheduler: SchedulerState;
  /** The other trainable roles' schedules, by role name. */
  schedulers?: Record<string, SchedulerState>;
  /** Set when the run stopped inside an epoch (what the loop needs to continue at the next step). */
  partial?: unknown;
  [extra: string]: unknown;
}

/** A JSON file of a run directory; a file that is not JSON is an error naming it and the way out (--force). */
export function readRunJson<T>(file: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new Error(`${file}: unreadable (${(e as Error).message}); pass --force to start over`, { cause: e });
  }
}

/**
 * A run directory's committed state (its state.json), or null when there is none. A file that is not JSON or not a
 * run state is an error naming the file and what is wrong.
 */
export function readRunState(file: string): RunState | null {
  if (!fs.existsSync(file)) return null;
  const st = readRunJson<RunState>(file);
  const problem =
    !st || typeof st !== 'object' || Array.isArray(st) ? 'not a JSON object'
    : !Number.isInteger(st.epoch) || st.epoch < -1 ? `'epoch' is ${JSON.stringify(st.epoch)}, not an epoch number`
    : !st.best || typeof st.best !== 'object' || typeof st.best.acc !== 'number' || !Number.isInteger(st.best.epoch) ? "'best' is not { acc, epoch }"
    : !st.scheduler || typeof st.scheduler !== 'object' ? "'scheduler' is missing"
    : null;
  if (problem) throw new Error(`${file}: not a run state (${problem}); pass --force to start over`);
  return st;
}

export class RunDir {
  readonly state: string;
  readonly metrics: string;
  private readonly name: string;
  private readonly resume: boolean;
  private readonly force: boolean;
  private readonly log: (line: string) => void;

  constructor(readonly dir: string, opts: { name?: string; resume?: boolean; force?: boolean; log?: (line: string) => void } = {}) {
    this.state = path.join(dir, 'state.json');
    this.metrics = path.join(dir, 'metrics.jsonl');
    this.name = opts.name ?? 'run';
    this.resume = !!opts.resume;
    this.force = !!opts.force;
    this.log = opts.log ?? (() => {});
  }

  path(file: string): string {
    return path.join(this.dir, file);
  }

  /**
   * Takes the directory for this run: refuses one holding another run (state.json present) unless resuming or forced;
   * a forced fresh start removes the earlier run's state, metrics, summary and checkpoints.
   */
  claim(): void {
    if (fs.existsSync(this.state) && !this.resume && !this.force)
      throw new Error(`${this.dir} holds another run (state.json present): pass --resume to continue it or --force to overwrite it`);
    if (this.force && !this.resume)
      for (const f of fs.existsSync(this.dir) ? fs.readdirSync(this.dir) : [])
        if (f === 'state.json' || f === 'metrics.jsonl' || f === 'summary.json' || f.endsWith('.safetensors')) fs.rmSync(path.join(this.dir, f), { force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    removeStaleTempFiles(this.dir);
  }

  /** The committed state to resume from, or null (logging when resume was asked for and there is nothing). */
  resumeState(): RunState | null {
    if (!this.resume) return null;
    if (!fs.existsSync(this.state)) {
      this.log(`${this.name}: nothing to resume in ${this.dir}; starting`);
      return null;
    }
    return readRunState(this.state)!;
  }

  saveModule(file: string, m: Module, meta?: Record<string, string>): void {
    saveSafetensors(this.path(file), m.stateDict(), meta);
  }
  loadModule(file: string, m: Module): void {
    const w = loadSafetensors(this.path(file));
    try {
      checkFinite(w.tensors, this.path(file));
      m.loadStateDict(w.tensors);
    } finally {
      dispose(w.tensors);
    }
  }
  saveOptimizer(file: string, opt: Optimizer<any>): void {
    const sd = opt.stateDict();
    saveSafetensors(this.path(file), sd.tensors, { meta: JSON.stringify(sd.meta) });
  }
  loadOptimizer(file: string, opt: Optimizer<any>): void {
    const s = loadSafetensors(this.path(file));
    try {
      opt.loadStateDict({ tensors: s.tensors, meta: JSON.parse(s.metadata.meta) });
    } finally {
      dispose(s.tensors);
    }
  }

  /** Writes state.json atomically: the commit point. */
  commit(state: RunState): void {
    writeFileAtomic(this.state, JSON.stringify(state));
  }

  /** Appends one metrics line durably (after the commit). */
  appendMetrics(m: unknown): void {
    appendLineDurable(this.metrics, JSON.stringify(m));
  }

  /** Keeps the metrics lines `keep` accepts: the others belong to an attempt that did not commit. */
  truncateMetrics(keep: (line: Record<string, any>) => boolean): void {
    if (!fs.existsSync(this.metrics)) return;
    const lines = fs.readFileSync(this.metrics, 'utf8').split('\n').filter((l) => l && keep(JSON.parse(l)));
    writeFileAtomic(this.metrics, lines.map((l) => l + '\n').join(''));
  }

  /** Writes summary.json atomically. */
  writeSummary(summary: unknown): void {
    writeFileAtomic(this.path('summary.json'), JSON.stringify(summary, null, 2));
  }
}
