// Append-only JSONL files for generated data: lines are appended in batches, each batch written with one write and
// fsynced before the next (a group commit), so a crash loses at most the batch in flight. Reading an existing file
// drops a torn last line (a crash mid-write) by truncating it.
import * as fs from 'node:fs';
import * as path from 'node:path';

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some file systems cannot fsync a directory
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export interface JsonlContents {
  records: { line: number; value: any }[];
  /** Bytes cut from the end: an unterminated or unparsable last line. */
  truncatedBytes: number;
}

/**
 * Reads a JSONL file written by JsonlAppender (missing file: no records). An unterminated last line, or a last line
 * that is not JSON, is what a crash leaves: it is cut off the file. Any other bad line is an error naming it.
 */
export function readJsonlRecovering(file: string): JsonlContents {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], truncatedBytes: 0 };
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  let keep = buf.length;
  if (keep > 0 && buf[keep - 1] !== 0x0a) keep = buf.lastIndexOf(0x0a) + 1;
  const lines = buf.subarray(0, keep).toString('utf8').split('\n');
  lines.pop(); // after the final newline
  const records: { line: number; value: any }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      records.push({ line: i + 1, value: JSON.parse(lines[i]) });
    } catch (e) {
      if (i === lines.length - 1) {
        keep -= Buffer.byteLength(lines[i], 'utf8') + 1;
        break;
      }
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message}); only a torn last line is repaired automatically`);
    }
  }
  if (keep < buf.length) {
    fs.truncateSync(file, keep);
    const fd = fs.openSync(file, 'r+');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  return { records, truncatedBytes: buf.length - keep };
}

/** Appends JSON lines durably: `append` queues, a background loop writes and fsyncs; `flush` waits for the disk. */
export class JsonlAppender {
  private pending: string[] = [];
  private loop: Promise<void> | null = null;
  private failure: Error | null = null;
  private constructor(readonly file: string, private readonly fh: fs.promises.FileHandle) {}

  static async open(file: string): Promise<JsonlAppender> {
    const dir = path.dirname(path.resolve(file));
    fs.mkdirSync(dir, { recursive: true });
    const created = !fs.existsSync(file);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, 'a');
    } catch (e) {
      throw new Error(`${file}: cannot open for appending: ${(e as Error).message}`);
    }
    if (created) fsyncDir(dir);
    return new JsonlAppender(file, fh);
  }

  append(value: unknown): void {
    if (this.failure) throw this.failure;
    this.pending.push(JSON.stringify(value) + '\n');
    if (!this.loop) this.loop = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length) {
        const data = this.pending.join('');
        this.pending = [];
        await this.fh.write(data);
        await this.fh.sync();
      }
    } catch (e) {
      this.failure = new Error(`${this.file}: durable append failed: ${(e as Error).message}`);
    } finally {
      this.loop = null;
    }
  }

  /** Resolves when everything appended so far is on disk. */
  async flush(): Promise<void> {
    while (this.loop) await this.loop;
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}

function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const held = new Set<string>();

/**
 * Takes `dir/generate.lock` for this process and returns a release function. A lock left by a process that is gone
 * (or whose id this process now has) is taken over; one held by a running process, or by this process, is refused.
 */
export function lockDir(dir: string): () => void {
  const file = path.join(path.resolve(dir), 'generate.lock');
  if (held.has(file)) throw new Error(`${dir}: another generate run in this process is writing here`);
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      held.add(file);
      return () => {
        held.delete(file);
        fs.rmSync(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`${file}: cannot create the lock: ${(e as Error).message}`);
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processRunning(pid))
        throw new Error(`${dir}: another generate run (process ${pid}) is writing here; wait for it or stop it (remove ${file} if that process is not a generate run)`);
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`${file}: could not take the lock`);
}
