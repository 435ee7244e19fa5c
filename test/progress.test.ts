// The progress display (src/distill/progress.ts): a terminal line never wider than the terminal, dropping the least
// important parts first, showing evaluation progress, and plain quarter-epoch lines when not a terminal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Progress, formatEta, progressLine } from '../src/distill/progress';

describe('progress line', () => {
  const parts = ['loss 0.4123', 'acc 91.20 %', 'ETA 1m05s', 'hard 0.1021 soft 0.8123', '20315 samples/s'];
  it('fits any width, keeping the counts and the most important parts', () => {
    for (let columns = 20; columns <= 200; columns++) {
      const line = progressLine({ label: 'seed-mnist-lenet/distilled 3/5', done: 470, total: 938, unit: 'batches', parts, columns });
      assert.ok(line.length <= columns - 1, `${columns}: ${line.length} '${line}'`);
    }
    assert.equal(progressLine({ label: 'run 1/5', done: 469, total: 938, unit: 'batches', parts, columns: 160 }),
      'run 1/5 [###############---------------] 469/938 batches | loss 0.4123 | acc 91.20 % | ETA 1m05s | hard 0.1021 soft 0.8123 | 20315 samples/s');
    // 100 columns: the bar shrinks to what is left once the terms and the rate are dropped
    const at100 = progressLine({ label: 'seed-mnist-lenet/distilled 3/5', done: 470, total: 938, unit: 'batches', parts, columns: 100 });
    assert.equal(at100, 'seed-mnist-lenet/distilled 3/5 [#####-----] 470/938 batches | loss 0.4123 | acc 91.20 % | ETA 1m05s');
    // 80 columns: no room for a bar, and the ETA goes too
    const at80 = progressLine({ label: 'seed-mnist-lenet/distilled 3/5', done: 470, total: 938, unit: 'batches', parts, columns: 80 });
    assert.equal(at80, 'seed-mnist-lenet/distilled 3/5 470/938 batches | loss 0.4123 | acc 91.20 %');
    const at40 = progressLine({ label: 'run 1/5', done: 938, total: 938, unit: 'batches', parts, columns: 40 });
    assert.equal(at40, 'run 1/5 938/938 batches | loss 0.4123');
  });
  it('formats the ETA', () => {
    assert.deepEqual([formatEta(42.4), formatEta(185), formatEta(3725), formatEta(NaN)], ['42s', '3m05s', '1h02m', '?']);
  });
  it('on a terminal redraws one line in place, then shows evaluation; elsewhere logs every quarter epoch', () => {
    const out: string[] = [];
    const tty = { isTTY: true, columns: 60, write: (s: string) => out.push(s) };
    const p = new Progress('run 1/2', 8, () => assert.fail('no log lines on a terminal'), 0, tty);
    p.update(8, { loss: 0.5, acc: 90, rate: 1000, terms: { hard: 0.1 } });
    p.evaluating(5000, 10000);
    p.evaluating(10000, 10000);
    p.stop();
    for (const s of out) assert.ok(s.replace(/\r|\x1b\[K/g, '').length <= 59, s);
    assert.equal(out[0], '\rrun 1/2 8/8 batches | loss 0.5000 | acc 90.00 % | ETA 0s\x1b[K');
    // redraws are throttled to ten a second; the last one of a phase is always drawn
    assert.equal(out[out.length - 2], '\rrun 1/2 [##############] 10000/10000 test samples evaluated\x1b[K');
    assert.equal(out[out.length - 1], '\r\x1b[K');
    const lines: string[] = [];
    const q = new Progress('run 1/2', 8, (l) => lines.push(l), 0, { isTTY: false, write: () => assert.fail('nothing written to a pipe') });
    for (let s = 1; s <= 8; s++) q.update(s, { loss: 1 / s, rate: 100 });
    q.evaluating(10, 10);
    q.stop();
    assert.deepEqual(lines, ['run 1/2  batch 2/8  loss 0.5000  100 samples/s', 'run 1/2  batch 4/8  loss 0.2500  100 samples/s', 'run 1/2  batch 6/8  loss 0.1667  100 samples/s']);
  });
});
