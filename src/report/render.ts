// A self-contained HTML report of a `tsdistill compare` run (the verdict table) or of a staged run (a row per stage)
// and, as charts, test/train accuracy per epoch for every run or stage and each one's loss terms per epoch. Chart.js is inlined, the data is embedded as JSON, and
// nothing is fetched, so the page opens offline. Once the charts are drawn, `document.body.dataset.chartsReady`
// holds their number.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../torch/atomic';

const RUNS = [
  { key: 'teacher', label: 'teacher', color: '#1f77b4' },
  { key: 'student', label: 'student alone', color: '#d62728' },
  { key: 'distilled', label: 'student + KD', color: '#2ca02c' },
] as const;
/** Colours of the loss-term series, in order of appearance. */
const TERM_COLORS = ['#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#7f7f7f'];
const NOT_TERMS = new Set(['epoch', 'train_acc', 'test_acc', 'lr', 'epoch_s', 'samples_per_s', 'step', 'tokens', 'tokens_per_s']);

export interface ReportRun {
  key: string;
  label: string;
  color: string;
  metrics: Record<string, unknown>[];
}
export interface ReportData {
  title: string;
  summary: Record<string, any>;
  runs: ReportRun[];
  /** A compare run (the default) or a staged run (`summary.stages`: each stage's summary). */
  kind?: 'compare' | 'stages';
}

/** Colours of the stages of a staged run, in order. */
const STAGE_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/** A metrics.jsonl file as objects, each line's `terms` spread into top-level keys (so they chart like `hard`/`soft`). */
function readMetrics(mf: string): Record<string, unknown>[] {
  return fs
    .readFileSync(mf, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(l);
      } catch {
        throw new Error(`${mf}: line ${i + 1} is not JSON`);
      }
      const { terms, roles: _r, ...rest } = m as { terms?: Record<string, number>; roles?: unknown };
      return { ...rest, ...(terms ?? {}) };
    });
}

/** Reads stages.json and each stage's metrics.jsonl from a staged run's output directory. */
export function readStagesReportData(outDir: string, title?: string): ReportData {
  const file = path.join(outDir, 'stages.json');
  let stages: Record<string, any>[];
  try {
    stages = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the stages summary (${(e as Error).message}); run \`tsdistill distill\` on the staged configuration first`);
  }
  if (!Array.isArray(stages)) throw new Error(`${file}: not a stages summary (expected a list)`);
  const runs: ReportRun[] = stages.map((st, i) => {
    const mf = path.join(outDir, String(st.stage), 'metrics.jsonl');
    return { key: `stage-${i}`, label: String(st.stage), color: STAGE_COLORS[i % STAGE_COLORS.length], metrics: fs.existsSync(mf) ? readMetrics(mf) : [] };
  });
  return { title: title ?? path.basename(path.resolve(outDir)), summary: { stages }, runs, kind: 'stages' };
}

function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Reads summary.json and each run's metrics.jsonl from a compare output directory. */
export function readReportData(outDir: string, title?: string): ReportData {
  const file = path.join(outDir, 'summary.json');
  let summary: Record<string, any>;
  try {
    summary = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the compare summary (${(e as Error).message}); run \`tsdistill compare\` first`);
  }
  if (!summary || typeof summary !== 'object' || !summary.reports || typeof summary.reports !== 'object')
    throw new Error(`${file}: not a compare summary (no 'reports' key)`);
  const runs: ReportRun[] = [];
  for (const r of RUNS) {
    const mf = path.join(outDir, r.key, 'metrics.jsonl');
    if (fs.existsSync(mf)) runs.push({ ...r, metrics: readMetrics(mf) });
  }
  return { title: title ?? summary.name ?? path.basename(path.resolve(outDir)), summary, runs };
}

function fmt(x: unknown, digits = 2): string {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '-';
}
function int(x: unknown): string {
  return typeof x === 'number' && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-';
}

function table(summary: Record<string, any>): string {
  const reps = ['teacher', 'student', 'distilled'].map((k) => summary.reports[k] ?? {});
  const rows: [string, string[]][] = [
    ['model', reps.map((r) => String(r.model ?? '-'))],
    ['test accuracy (%)', reps.map((r) => fmt(r.acc))],
    ['test errors', reps.map((r) => int(r.errors))],
    ['parameters', reps.map((r) => int(r.params))],
    ['checkpoint (bytes)', reps.map((r) => int(r.checkpoint_bytes))],
    ['CPU latency, batch 1 (ms)', reps.map((r) => fmt(r.latency_b1_ms, 3))],
    ['throughput, batch 256 (img/s)', reps.map((r) => int(r.throughput_b256))],
    ['top-1 agreement with teacher (%)', reps.map((r) => fmt(r.agreement))],
    ['expected calibration error (%)', reps.map((r) => fmt(r.ece))],
    ['mean epoch time (s)', reps.map((r) => fmt(r.epoch_s))],
    ['KD epoch, live / cached teacher (s)', ['-', '-', `${fmt(summary.kd_epoch_s)} / ${fmt(summary.kd_cached_epoch_s)}`]],
    ['classes never predicted', reps.map((r) => (Array.isArray(r.never_predicted) ? r.never_predicted.join(', ') || '-' : '-'))],
    ['dead output units', reps.map((r) => (Array.isArray(r.dead_outputs) ? r.dead_outputs.map((d: { class: string }) => d.class).join(', ') || '-' : '-'))],
  ];
  const head = `<tr><th></th>${RUNS.map((r) => `<th>${escapeHtml(r.label)}</th>`).join('')}</tr>`;
  const body = rows.map(([name, cells]) => `<tr><th>${escapeHtml(name)}</th>${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table id="verdict">\n${head}\n${body}\n</table>`;
}

/** Labels of the setup a compare summary records (the data, T, α, epochs, the schedule), in display order. */
const SETUP_ROWS: [string, string][] = [
  ['dataset', 'data set'], ['train_size', 'training images'], ['test_size', 'test images'], ['classes', 'classes'], ['temperature', 'temperature T'],
  ['alpha', 'hard-label weight α'], ['soft_loss', 'soft loss'], ['epochs', 'epochs'], ['batch_size', 'batch size'], ['optimizer', 'optimizer'],
  ['lr', 'learning rate'], ['schedule', 'learning-rate schedule'], ['milestones', 'milestones'], ['warmup_epochs', 'warm-up epochs'], ['augment', 'augmentation'], ['seed', 'seed'],
];

/** The setup of a compare run as a table; empty for summaries written before it was recorded. */
function setupTable(setup: Record<string, unknown> | undefined): string {
  if (!setup || typeof setup !== 'object') return '';
  const show = (v: unknown) => (typeof v === 'number' ? v.toLocaleString('en-US') : typeof v === 'string' ? v : v === null ? 'none' : JSON.stringify(v));
  const rows = SETUP_ROWS.filter(([k]) => setup[k] !== undefined).map(([k, label]) => `<tr><th>${escapeHtml(label)}</th><td>${escapeHtml(show(setup[k]))}</td></tr>`);
  return `<h2>Setup</h2>\n<table id="setup">\n${rows.join('\n')}\n</table>`;
}

/** The verdict's sentences (classes never predicted, dead output units, whether the teacher beats the student alone). */
function verdictNotes(lines: unknown): string {
  if (!Array.isArray(lines) || !lines.length) return '';
  return `<ul id="verdict-notes">\n${lines.map((l) => `<li>${escapeHtml(l)}</li>`).join('\n')}\n</ul>`;
}

function stagesTable(stages: Record<string, any>[]): string {
  const head = `<tr>${['stage', 'epochs', 'best test (%)', 'final test (%)', 'other roles, final test (%)', 'mean epoch (s)', 'teacher cache'].map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = stages
    .map((st) => {
      const others = st.roles ? Object.entries(st.roles as Record<string, { final_test_acc: number }>).map(([k, v]) => `${k} ${fmt(v.final_test_acc)}`).join(', ') : '-';
      const cells = [String(st.stage), String(st.epochs), fmt(st.best_test_acc), fmt(st.final_test_acc), others, fmt(st.mean_epoch_s), String(st.teacher_cache ?? '-')];
      return `<tr><th>${escapeHtml(cells[0])}</th>${cells.slice(1).map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`;
    })
    .join('\n');
  return `<table id="stages">\n${head}\n${body}\n</table>`;
}

function chartLibrary(): string {
  // the package exports only its module entry points; the UMD bundle sits next to them in dist/
  const file = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
  return fs.readFileSync(file, 'utf8');
}

/** Embeds text in a <script> element safely. */
function scriptSafe(text: string): string {
  return text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/** The report page as a string (pure apart from reading the inlined chart library). */
export function renderReport(data: ReportData): string {
  const s = data.summary;
  const gap = typeof s.gap_closed === 'number' && Number.isFinite(s.gap_closed) ? `${(100 * s.gap_closed).toFixed(1)} %` : '-';
  const charts = data.runs.map((r) => {
    const terms: string[] = [];
    for (const m of r.metrics) for (const [k, v] of Object.entries(m)) if (!NOT_TERMS.has(k) && typeof v === 'number' && !terms.includes(k)) terms.push(k);
    return { key: r.key, label: r.label, color: r.color, terms };
  });
  const payload = {
    runs: data.runs.map((r) => ({ key: r.key, label: r.label, color: r.color, metrics: r.metrics })),
    terms: Object.fromEntries(charts.map((c) => [c.key, c.terms])),
    termColors: TERM_COLORS,
  };
  const lossCanvases = charts
    .map((c) => `<figure><figcaption>${escapeHtml(c.label)}: loss terms per epoch</figcaption><canvas id="loss-${escapeHtml(c.key)}" width="560" height="280"></canvas></figure>`)
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(data.title)} — tsdistill report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child { text-align: left; }
figure { display: inline-block; margin: 8px 16px 8px 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.verdict { font-size: 16px; }
</style>
</head>
<body>
<h1>${escapeHtml(data.title)}</h1>
${data.kind === 'stages'
    ? `<p class="verdict">${escapeHtml(String(s.stages.length))} stage(s), each trained in its own folder; the accuracy is the stage's primary role's.</p>\n${stagesTable(s.stages)}`
    : `<p class="verdict">Teacher gap closed by distillation: <strong id="gap">${escapeHtml(gap)}</strong>
(teacher ${escapeHtml(fmt(s.teacher_acc))} %, student alone ${escapeHtml(fmt(s.plain_acc))} %, student + KD ${escapeHtml(fmt(s.kd_acc))} %).</p>\n${verdictNotes(s.verdict)}\n${table(s)}\n${setupTable(s.setup)}`}
<h2>Accuracy per epoch</h2>
<figure><figcaption>test accuracy (solid) and train accuracy (dashed), %</figcaption><canvas id="accuracy" width="760" height="320"></canvas></figure>
<h2>Loss terms per epoch</h2>
${lossCanvases}
<script type="application/json" id="report-data">${scriptSafe(JSON.stringify(payload))}</script>
<script>${scriptSafe(chartLibrary())}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  Chart.defaults.animation = false;
  Chart.defaults.responsive = false;
  var drawn = 0;
  var xy = function (metrics, key) { return metrics.filter(function (m) { return typeof m[key] === 'number'; }).map(function (m) { return { x: m.epoch, y: m[key] }; }); };
  var sets = [];
  data.runs.forEach(function (r) {
    sets.push({ label: r.label + ' test', data: xy(r.metrics, 'test_acc'), borderColor: r.color, backgroundColor: r.color, borderWidth: 3, pointRadius: 3 });
    sets.push({ label: r.label + ' train', data: xy(r.metrics, 'train_acc'), borderColor: r.color, backgroundColor: r.color, borderDash: [6, 4], borderWidth: 2, pointRadius: 0 });
  });
  new Chart(document.getElementById('accuracy'), { type: 'line', data: { datasets: sets },
    options: { parsing: false, scales: { x: { type: 'linear', title: { display: true, text: 'epoch' }, ticks: { stepSize: 1 } }, y: { title: { display: true, text: '%' } } } } });
  drawn++;
  data.runs.forEach(function (r) {
    var terms = data.terms[r.key] || [];
    var ds = terms.map(function (t, i) { var c = data.termColors[i % data.termColors.length]; return { label: t, data: xy(r.metrics, t), borderColor: c, backgroundColor: c, borderWidth: 3, pointRadius: 3 }; });
    new Chart(document.getElementById('loss-' + r.key), { type: 'line', data: { datasets: ds },
      options: { parsing: false, scales: { x: { type: 'linear', title: { display: true, text: 'epoch' }, ticks: { stepSize: 1 } }, y: { title: { display: true, text: 'loss' } } } } });
    drawn++;
  });
  document.body.dataset.chartsReady = String(drawn);
})();
</script>
</body>
</html>
`;
}

/**
 * Writes `outDir/report.html` (atomically) for the compare run in `outDir`, or for the staged run there (stages.json
 * and no compare summary); returns its path.
 */
export function writeReport(outDir: string, opts: { title?: string; kind?: 'compare' | 'stages' } = {}): string {
  const staged = opts.kind ? opts.kind === 'stages' : fs.existsSync(path.join(outDir, 'stages.json')) && !fs.existsSync(path.join(outDir, 'summary.json'));
  const html = renderReport(staged ? readStagesReportData(outDir, opts.title) : readReportData(outDir, opts.title));
  const file = path.join(outDir, 'report.html');
  writeFileAtomic(file, html);
  return file;
}
