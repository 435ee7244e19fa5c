// Durable file writes: whole files by temp file + fsync + rename, line logs by append + fsync.
import * as fs from 'node:fs';
import * as path from 'node:path';

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some file systems do not support fsync on directories
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Writes `data` to `file` so that readers see either the old or the new content, never a partial file. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw new Error(`${file}: write failed: ${(e as Error).message}`);
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}

/** Appends one line (a newline is added) and fsyncs, so a crash loses at most the line being written. */
export function appendLineDurable(file: string, line: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, line.endsWith('\n') ? line : line + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Removes temp files left by interrupted `writeFileAtomic` calls in `dir`; returns their names. */
export function removeStaleTempFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const stale = fs.readdirSync(dir).filter((n) => /^\..+\.tmp-\d+-\d+$/.test(n));
  for (const n of stale) fs.rmSync(path.join(dir, n), { force: true });
  return stale;
}
