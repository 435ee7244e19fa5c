// Preloaded (node -r) by the data-free tests: appends the path of every file this process opens for reading to the
// file named by FS_SPY_LOG, one a line, so that a test can tell which data files a run read.
import fs = require('node:fs');

const log = process.env.FS_SPY_LOG;
if (log) {
  const note = (p: unknown) => {
    if (typeof p === 'string' || p instanceof URL || Buffer.isBuffer(p)) fs.appendFileSync(log, `${String(p)}\n`);
  };
  const wrap = <K extends 'openSync' | 'readFileSync' | 'open' | 'readFile' | 'createReadStream'>(k: K) => {
    const orig = fs[k] as (...a: unknown[]) => unknown;
    (fs as unknown as Record<string, unknown>)[k] = function (this: unknown, ...a: unknown[]) {
      note(a[0]);
      return orig.apply(this, a);
    };
  };
  for (const k of ['openSync', 'readFileSync', 'open', 'readFile', 'createReadStream'] as const) wrap(k);
  const p = fs.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const k of ['open', 'readFile']) {
    const orig = p[k];
    p[k] = (...a: unknown[]) => {
      note(a[0]);
      return orig(...a);
    };
  }
}
