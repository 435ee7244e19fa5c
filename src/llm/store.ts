// Append-only JSONL files for generated data: lines are appended in batches, each batch written with one write and
// fsynced before the next (a group commit), so a crash loses at most the batch in flight. Reading an existing file
// drops a torn last line (a crash mid-write) by truncating it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, processRunning, tempPathFor } from '../torch/atomic';

export interface JsonlScan {
  /** Records read (non-empty, valid lines). */
  records: number;
  /** Bytes cut from the end: an unterminated or unparsable last line. */
  truncatedBytes: number;
}

/**
 * Reads a JSONL file written by JsonlAppender record by record, in chunks (files larger than memory are fine), and
 * calls `onRecord` for each. A missing file has no records. An unterminated last line, or a last line that is not
 * JSON, is what a crash leaves: it is cut off the file. Any other bad line is an error naming it.
 */
export function scanJsonl(file: string, onRecord: (value: any, line: number) => void): JsonlScan {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: 0, truncatedBytes: 0 };
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const chunk = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer = Buffer.alloc(0);
    let offset = 0; // file offset of carry[0]
    let lineNo = 0;
    let records = 0;
    let bad: { line: number; start: number; message: string } | null = null;
    const onLine = (bytes: Buffer, start: number) => {
      lineNo++;
      if (bad) throw new Error(`${file}:${bad.line}: not valid JSON (${bad.message}); only a torn last line is repaired automatically`);
      const text = bytes.toString('utf8');
      if (!text.trim()) return;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        bad = { line: lineNo, start, message: (e as Error).message };
        return;
      }
      records++;
      onRecord(value, lineNo);
    };
    for (let pos = 0; pos < size; ) {
      const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
      if (n <= 0) break;
      pos += n;
      const data = carry.length ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let from = 0;
      for (let nl = data.indexOf(0x0a, from); nl >= 0; nl = data.indexOf(0x0a, from)) {
        onLine(data.subarray(from, nl), offset + from);
        from = nl + 1;
      }
      carry = Buffer.from(data.subarray(from));
      offset += from;
    }
    const cut: number | null = bad ? (bad as { start: number }).start : carry.length ? offset : null;
    if (cut === null) return { records, truncatedBytes: 0 };
    fs.ftruncateSync(fd, cut);
    fs.fsyncSync(fd);
    return { records, truncatedBytes: size - cut };
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `file` atomically from lines produced one at a time (temp file, fsync, rename, fsync of the directory). */
export function writeLinesAtomic(file: string, produce: (write: (line: string) => void) => void): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempPathFor(file);
  const fd = fs.openSync(tmp, 'wx');
  try {
    let buf: string[] = [];
    let bytes = 0;
    const flush = () => {
      if (buf.length) fs.writeSync(fd, buf.join(''));
      buf = [];
      bytes = 0;
    };
    produce((line) => {
      buf.push(line.endsWith('\n') ? line : line + '\n');
      bytes += line.length;
      if (bytes > 1 << 20) flush();
    });
    flush();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    throw new Error(`${file}: atomic write failed: ${(e as Error).message}`);
  }
  fsyncDir(dir);
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
