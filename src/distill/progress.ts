// The progress display of a training run: on a terminal one line, redrawn in place, that always fits the terminal's
// width (process.stdout.columns, read at every redraw so a resize is followed) and shows evaluation as well as training;
// elsewhere (a pipe, a log file) a plain line every quarter epoch. What does not fit is dropped in a fixed order —
// the bar first shrinks to nothing, then the rate, the loss terms, the ETA — so the counts and the accuracy stay.

/** What a training step reports to the display. */
export interface ProgressFields {
  loss: number;
  metrics?: Record<string, number>;
  acc?: number;
  /** Samples per second. */
  rate: number;
  terms?: Record<string, number>;
}

/** Seconds as 1h02m, 3m05s or 42s. */
export function formatEta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const r = Math.round(s);
  if (r >= 3600) return `${Math.floor(r / 3600)}h${String(Math.floor((r % 3600) / 60)).padStart(2, '0')}m`;
  if (r >= 60) return `${Math.floor(r / 60)}m${String(r % 60).padStart(2, '0')}s`;
  return `${r}s`;
}

/**
 * One progress line of at most `columns - 1` characters (the last column stays free so the cursor never wraps):
 * `label [bar] done/total unit | parts...`. `parts` are in order of importance; the bar takes the room left over
 * (up to 30 characters) and is dropped below 5; then parts are dropped from the end; the label is cut last.
 */
export function progressLine(o: { label: string; done: number; total: number; unit: string; parts: string[]; columns: number }): string {
  const width = Math.max(20, o.columns) - 1;
  const count = `${o.done}/${o.total} ${o.unit}`;
  const parts = [...o.parts];
  const text = () => [count, ...parts].join(' | ');
  while (parts.length && o.label.length + 1 + text().length > width) parts.pop();
  const rest = text();
  const room = width - o.label.length - rest.length - 4; // ' [' + '] '
  if (room >= 5) {
    const size = Math.min(30, room);
    const filled = o.total > 0 ? Math.round((size * Math.min(o.done, o.total)) / o.total) : 0;
    return `${o.label} [${'#'.repeat(filled)}${'-'.repeat(size - filled)}] ${rest}`;
  }
  const line = `${o.label} ${rest}`;
  return line.length <= width ? line : line.slice(0, width);
}

interface Stream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

/** A progress display per epoch: the training steps, then the evaluation of the test set. */
export class Progress {
  private nextLine: number;
  private readonly t0 = Date.now();
  private readonly startStep: number;
  private drawn = false;
  private lastDraw = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly log: (l: string) => void,
    start = 0,
    private readonly stream: Stream = process.stdout,
  ) {
    this.startStep = start;
    this.nextLine = Math.ceil(total / 4);
    while (this.nextLine <= start) this.nextLine += Math.ceil(total / 4);
  }

  private get tty(): boolean {
    return !!this.stream.isTTY;
  }

  private draw(line: string, force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return; // at most ten redraws a second
    this.lastDraw = now;
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  update(step: number, m: ProgressFields): void {
    const metrics = Object.entries(m.metrics ?? {}).map(([k, v]) => ` ${k} ${v.toFixed(4)}`).join('');
    const extra = m.terms ? Object.entries(m.terms).map(([k, v]) => ` ${k} ${v.toFixed(4)}`).join('') : '';
    const acc = m.acc === undefined ? '' : `acc ${m.acc.toFixed(2)} %`;
    if (this.tty) {
      const elapsed = (Date.now() - this.t0) / 1000;
      const done = step - this.startStep;
      const eta = done > 0 ? formatEta((elapsed / done) * (this.total - step)) : '?';
      const parts = [`loss ${m.loss.toFixed(4)}`, acc, `ETA ${eta}`, `${metrics}${extra}`.trim(), `${m.rate.toFixed(0)} samples/s`].filter(Boolean);
      this.draw(progressLine({ label: this.label, done: step, total: this.total, unit: 'batches', parts, columns: this.stream.columns ?? 80 }), step >= this.total);
    } else if (step >= this.nextLine && step < this.total) {
      this.log(`${this.label}  batch ${step}/${this.total}  loss ${m.loss.toFixed(4)}${metrics}${extra}${acc ? `  ${acc}` : ''}  ${m.rate.toFixed(0)} samples/s`);
      this.nextLine += Math.ceil(this.total / 4);
    }
  }

  /** Evaluation of the test set after the epoch's steps: `done` of `total` samples. */
  evaluating(done: number, total: number): void {
    if (this.tty) this.draw(progressLine({ label: this.label, done, total, unit: 'test samples evaluated', parts: [], columns: this.stream.columns ?? 80 }), done >= total);
  }

  /** Clears the line (a terminal) so the epoch's summary line takes its place. */
  stop(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
