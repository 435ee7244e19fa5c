// Durable file writes: whole files by temp file + fsync + rename (+ fsync of the directory), line logs by
// append + fsync. Used for checkpoints, metrics logs and generated data.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Temp files are named `.<target name>.tmp-<pid>-<random>` in the target's directory. */
const TEMP_RE = /^\..+\.tmp-(\d+)-[0-9a-f]{8}$/;

/** fsync a directory (after a rename or create in it); a file system that cannot is ignored. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some file systems do not support fsync on directories; the rename itself has happened
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The temp file name `writeFileAtomic` uses for `file` (exported for tests and cleanup tools). */
export function tempPathFor(file: string): string {
  const abs = path.resolve(file);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

/**
 * Writes `data` to `file` so that readers see either the old or the new content, never a partial file: the bytes go
 * to a temp file in the same directory, which is fsynced and renamed over `file`; then the directory is fsynced.
 * Creates missing parent directories. On failure the temp file is removed and `file` is left as it was.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = tempPathFor(file);
  let step = 'create the directory';
  let fd: number | undefined;
  try {
    fs.mkdirSync(dir, { recursive: true });
    step = 'create the temp file';
    fd = fs.openSync(tmp, 'wx', 0o666);
    step = 'write';
    fs.writeFileSync(fd, data);
    step = 'fsync';
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    step = 'rename the temp file over it';
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    fs.rmSync(tmp, { force: true });
    throw new Error(`${file}: atomic write failed (${step}): ${(e as Error).message}`);
  }
  fsyncDir(dir);
}

/**
 * Appends one line (a newline is added unless `line` ends with one) and fsyncs, so a crash loses at most the line
 * being written. When the call creates the file, the directory is fsynced too.
 */
export function appendLineDurable(file: string, line: string): void {
  const dir = path.dirname(path.resolve(file));
  let fd: number | undefined;
  let created = false;
  try {
    fs.mkdirSync(dir, { recursive: true });
    created = !fs.existsSync(file);
    fd = fs.openSync(file, 'a');
    fs.writeSync(fd, line.endsWith('\n') ? line : line + '\n');
    fs.fsyncSync(fd);
  } catch (e) {
    throw new Error(`${file}: durable append failed: ${(e as Error).message}`);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  if (created) fsyncDir(dir);
}

/** Whether a process with this id is running (EPERM: it exists but belongs to someone else). */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temp files left in `dir` by interrupted `writeFileAtomic` calls and returns their names. A temp file is
 * stale when the process that wrote it is no longer running, or when it is older than `maxAgeMs` (default one hour,
 * which covers process ids reused after a crash). Files of running writers that are younger are kept.
 */
export function removeStaleTempFiles(dir: string, opts: { maxAgeMs?: number } = {}): string[] {
  const maxAge = opts.maxAgeMs ?? 3_600_000;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`${dir}: cannot list for stale temp files: ${(e as Error).message}`);
  }
  const removed: string[] = [];
  const now = Date.now();
  for (const n of names.sort()) {
    const m = TEMP_RE.exec(n);
    if (!m) continue;
    const p = path.join(dir, n);
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      continue; // removed meanwhile
    }
    if (!st.isFile()) continue;
    if (processRunning(Number(m[1])) && now - st.mtimeMs < maxAge) continue;
    fs.rmSync(p, { force: true });
    removed.push(n);
  }
  return removed;
}
