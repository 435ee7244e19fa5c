// The compare report: table and escaping in the HTML, and the charts rendering in headless Chromium (checked on a
// screenshot by counting pixels of each series' colour, against a page whose chart script is removed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { readReportData, renderReport, writeReport } from '../src/report';

function fixture(modelName = 'lenet5-half'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-report-'));
  const rep = (model: string, acc: number, agreement: number | null) => ({
    model, acc, errors: Math.round(100 * (100 - acc)), params: 4408, checkpoint_bytes: 18264, latency_b1_ms: 0.071, throughput_b256: 61234,
    agreement, ece: 1.23, epoch_s: 2.5,
  });
  fs.writeFileSync(
    path.join(dir, 'summary.json'),
    JSON.stringify({
      name: 'fixture-run', teacher_acc: 99.1, plain_acc: 88.3, kd_acc: 97.9, gap_closed: (97.9 - 88.3) / (99.1 - 88.3), teacher_epoch_s: 6.9,
      plain_epoch_s: 1.8, kd_epoch_s: 5.5, kd_cached_epoch_s: 1.9, kd_teacher_cache: 'built',
      reports: { teacher: rep('lenet5', 99.1, null), student: rep(modelName, 88.3, 88.9), distilled: rep(modelName, 97.9, 98.2) },
    }),
  );
  const runs: Record<string, (e: number) => object> = {
    teacher: (e) => ({ epoch: e, loss: 1 / e, train_acc: 90 + e, test_acc: 92 + e, lr: 0.01, epoch_s: 6.9, samples_per_s: 9000 }),
    student: (e) => ({ epoch: e, loss: 1.5 / e, train_acc: 70 + 3 * e, test_acc: 72 + 3 * e, lr: 0.01, epoch_s: 1.8, samples_per_s: 30000 }),
    distilled: (e) => ({ epoch: e, loss: 2 / e, hard: 0.9 / e, soft: 1.4 / e, train_acc: 80 + 3 * e, test_acc: 82 + 3 * e, lr: 0.01, epoch_s: 1.9, samples_per_s: 31000, teacher: e === 1 ? 'live' : 'cached' }),
  };
  for (const [k, f] of Object.entries(runs)) {
    fs.mkdirSync(path.join(dir, k));
    fs.writeFileSync(path.join(dir, k, 'metrics.jsonl'), [1, 2, 3, 4, 5].map((e) => JSON.stringify(f(e)) + '\n').join(''));
  }
  return dir;
}

function chromium(): string | null {
  for (const c of ['chromium', 'chromium-browser']) if (spawnSync('which', [c]).status === 0) return c;
  return null;
}

/** Loads `html` in headless Chromium; returns the screenshot and the DOM after scripts ran. */
function render(browser: string, html: string, dir: string): { png: PNG; dom: string } {
  const page = path.join(dir, `page-${Math.random().toString(36).slice(2)}.html`);
  fs.writeFileSync(page, html);
  const shot = page.replace(/\.html$/, '.png');
  const common = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--hide-scrollbars', `--user-data-dir=${path.join(dir, 'profile')}`, '--window-size=1200,1600'];
  const s = spawnSync(browser, [...common, `--screenshot=${shot}`, `file://${page}`], { encoding: 'utf8', timeout: 60_000 });
  assert.ok(fs.existsSync(shot), `chromium wrote no screenshot: ${s.stderr}`);
  const d = spawnSync(browser, [...common, '--dump-dom', `file://${page}`], { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 26 });
  return { png: PNG.sync.read(fs.readFileSync(shot)), dom: d.stdout };
}

function countColour(png: PNG, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === r && png.data[i + 1] === g && png.data[i + 2] === b) n++;
  return n;
}

describe('compare report', () => {
  it('holds the table, escapes names, embeds everything, names a missing summary', () => {
    const dir = fixture('<img src=x onerror=alert(1)>');
    const html = renderReport(readReportData(dir));
    assert.match(html, /<h1>fixture-run<\/h1>/);
    assert.match(html, /Teacher gap closed by distillation: <strong id="gap">88\.9 %<\/strong>/);
    assert.match(html, /<th>test accuracy \(%\)<\/th><td>99\.10<\/td><td>88\.30<\/td><td>97\.90<\/td>/);
    assert.match(html, /<th>KD epoch, live \/ cached teacher \(s\)<\/th><td>-<\/td><td>-<\/td><td>5\.50 \/ 1\.90<\/td>/);
    assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(!html.includes('<img src=x'), 'the model name is escaped');
    assert.ok(!/\b(src|href)=["']?https?:/i.test(html), 'no external resources');
    const data = JSON.parse(/<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html)![1]);
    assert.deepEqual(data.terms, { teacher: ['loss'], student: ['loss'], distilled: ['loss', 'hard', 'soft'] });
    const out = writeReport(dir);
    assert.equal(out, path.join(dir, 'report.html'));
    assert.equal(fs.readFileSync(out, 'utf8'), html);
    fs.rmSync(path.join(dir, 'summary.json'));
    assert.throws(() => writeReport(dir), (e: Error) => e.message.startsWith(path.join(dir, 'summary.json')) && /run `tsdistill compare` first/.test(e.message));
    fs.rmSync(dir, { recursive: true });
  });

  it('renders its charts in headless Chromium', (t) => {
    const browser = chromium();
    if (!browser) return t.skip('chromium not installed: apt-get install chromium');
    const dir = fixture();
    const html = renderReport(readReportData(dir));
    const drawn = render(browser, html, dir);
    assert.match(drawn.dom, /data-charts-ready="4"/, 'four charts drawn: accuracy and one loss chart per run');
    // the same page without its chart script draws nothing in these colours
    const bare = render(browser, html.replace(/<script>[\s\S]*?<\/script>\s*<script>[\s\S]*?<\/script>/, ''), dir);
    assert.doesNotMatch(bare.dom, /data-charts-ready/);
    for (const [what, colour] of [['teacher', '#1f77b4'], ['student alone', '#d62728'], ['student + KD', '#2ca02c'], ['loss term', '#9467bd']]) {
      const n = countColour(drawn.png, colour), none = countColour(bare.png, colour);
      assert.ok(n > 300, `${what} series: ${n} pixels of ${colour} in the screenshot`);
      assert.equal(none, 0, `${what}: ${none} pixels of ${colour} without charts`);
    }
    fs.rmSync(dir, { recursive: true });
  });
});
