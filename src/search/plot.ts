// An SVG scatter plot for the search page: proxy accuracy against a cost (latency), one dot per candidate, the
// Pareto front joined and ringed, the chosen student marked. Plain SVG text, no script, so it opens anywhere.

export interface ScatterPoint {
  id: string;
  x: number;
  y: number;
  /** On the Pareto front. */
  front?: boolean;
  chosen?: boolean;
  /** Shown on hover. */
  title?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick values spanning [lo, hi]. */
function ticks(lo: number, hi: number, n = 5): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** The scatter plot as an SVG document (width × height px). */
export function scatterSvg(points: ScatterPoint[], o: { xLabel: string; yLabel: string; title?: string; width?: number; height?: number }): string {
  const W = o.width ?? 640, H = o.height ?? 400;
  // the legend is one row between the title and the plot, clear of the points
  const m = { l: 60, r: 20, t: o.title ? 50 : 30, b: 48 };
  const finite = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = finite.map((p) => p.x), ys = finite.map((p) => p.y);
  const pad = (lo: number, hi: number) => { const d = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1; return [lo - d, hi + d]; };
  const [x0, x1] = finite.length ? pad(Math.min(...xs), Math.max(...xs)) : [0, 1];
  const [y0, y1] = finite.length ? pad(Math.min(...ys), Math.max(...ys)) : [0, 1];
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  if (o.title) parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-weight="600" font-size="14">${esc(o.title)}</text>`);
  for (const t of ticks(x0, x1)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#eee"/><text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${t}</text>`);
  }
  for (const t of ticks(y0, y1)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#eee"/><text x="${m.l - 6}" y="${(Number(y) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  // the line joins the points that are non-dominated in this plane (lower x, higher y); the green dots are the
  // front over every objective, which may include points this plane alone would not
  const plane = finite.filter((p) => !finite.some((q) => q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y))).sort((a, b) => a.x - b.x);
  if (plane.length > 1) parts.push(`<polyline class="plane-front" fill="none" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="5 3" points="${plane.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
  const lx = m.l + 8, ly = m.t - 10;
  parts.push(`<g font-size="11"><circle cx="${lx}" cy="${ly}" r="5" fill="#2ca02c"/><text x="${lx + 10}" y="${ly + 4}">Pareto front (all objectives)</text>` +
    `<line x1="${lx + 178}" y1="${ly}" x2="${lx + 192}" y2="${ly}" stroke="#2ca02c" stroke-dasharray="5 3"/><text x="${lx + 198}" y="${ly + 4}">front in this plane</text>` +
    `<circle cx="${lx + 326}" cy="${ly}" r="7" fill="none" stroke="#d62728" stroke-width="2"/><text x="${lx + 338}" y="${ly + 4}">chosen</text></g>`);
  for (const p of finite) {
    const cx = sx(p.x).toFixed(1), cy = sy(p.y).toFixed(1);
    const fill = p.front ? '#2ca02c' : '#1f77b4';
    parts.push(`<g class="point${p.front ? ' front' : ''}${p.chosen ? ' chosen' : ''}"><title>${esc(p.title ?? p.id)}</title>` +
      `<circle cx="${cx}" cy="${cy}" r="${p.front ? 5 : 4}" fill="${fill}" fill-opacity="${p.front ? 0.9 : 0.6}"/>` +
      (p.chosen ? `<circle cx="${cx}" cy="${cy}" r="9" fill="none" stroke="#d62728" stroke-width="2"/>` : '') +
      `<text x="${(Number(cx) + 7).toFixed(1)}" y="${(Number(cy) - 6).toFixed(1)}" font-size="10" fill="#555">${esc(p.id)}</text></g>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}
