// `tsdistill search <config>`: searches the configured space for the student (run/search.ts), prints every candidate,
// the Pareto front and the chosen student's full-training result, and ends with one JSON line.
import * as path from 'node:path';
import { formatTable, loadPlugins, searchLines, searchStudent } from '../run';
import type { Values } from './execute';

export async function runSearchCommand(file: string, values: Values, signal: AbortSignal): Promise<number> {
  const sets = [...(values.set ?? [])];
  if (values.epochs) sets.push(`training.epochs=${values.epochs}`);
  if (values.seed) sets.push(`seed=${values.seed}`);
  if (values.device) sets.push(`training.device=${values.device}`);
  if (values.out) sets.push(`output.dir=${values.out}`);
  if (values.threads !== undefined && !/^[1-9]\d*$/.test(values.threads)) throw new Error(`search: --threads must be a positive integer, got '${values.threads}'`);
  if (values.plugin?.length) loadPlugins(values.plugin);
  const r = await searchStudent(file, { sets, resume: values.resume, force: values.force, threads: values.threads ? Number(values.threads) : undefined, signal });
  console.log('');
  for (const line of searchLines(r)) console.log(line);
  const f = r.state.final;
  console.log(`\nchosen: ${r.chosen.id} (${r.chosen.model} ${JSON.stringify(r.chosen.dims)}, ${r.chosen.params.toLocaleString('en-US')} parameters)`);
  if (f?.compare) {
    console.log('');
    for (const line of formatTable(f.compare.table)) console.log(line);
    for (const line of f.compare.verdict) console.log(line);
  } else if (f) console.log(`student + KD: best test accuracy ${f.distilled.best_test_acc.toFixed(2)} %${f.alone ? `; student alone ${f.alone.best_test_acc.toFixed(2)} %` : ''}`);
  console.log(`search: ${r.files.state}; page: ${r.files.page}${r.files.report ? `; report: ${r.files.report}` : ''}`);
  console.log(`wall time: teacher ${r.state.teacher_s.toFixed(0)} s, search ${r.state.search_s.toFixed(0)} s, final training ${r.state.final_s.toFixed(0)} s (${path.resolve(r.out_dir)})`);
  console.log(JSON.stringify({
    name: r.name, out_dir: r.out_dir, candidates: r.state.candidates.length, trained: r.state.candidates.filter((c) => c.proxy.length).length,
    front: r.front.map((c) => ({ id: c.id, dims: c.dims, params: c.params, latency_ms: c.latency_ms, ort_latency_ms: c.ort_latency_ms, int8_bytes: c.int8_bytes, acc: c.proxy.find((p) => p.epochs === r.state.front_epochs)?.acc })),
    chosen: { id: r.chosen.id, model: r.chosen.model, options: r.chosen.options, params: r.chosen.params, latency_ms: r.chosen.latency_ms, ort_latency_ms: r.chosen.ort_latency_ms, int8_bytes: r.chosen.int8_bytes },
    final: f ? { kd_acc: f.distilled.best_test_acc, alone_acc: f.alone?.best_test_acc ?? null, teacher_acc: f.compare?.result.teacher_acc ?? null } : null,
    teacher_s: r.state.teacher_s, search_s: r.state.search_s, final_s: r.state.final_s,
  }));
  return 0;
}
