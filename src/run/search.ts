// Searching for the student (`tsdistill search`): a search configuration is a run configuration without a `student`
// section and with a `search:` section (src/search/schema.ts). Candidates of a zoo family are measured first (parameters,
// latency at batch 1, int8 size; those over the budget are discarded before training), then trained as short KD runs
// of the engine (trainModel with the frozen teacher, its logits from the shared teacher cache), each in its own run
// directory under <output.dir>/candidates/, and scored on training samples held out from the proxy runs. The state
// (search.json) is written atomically after every measurement and proxy run; a killed search resumed with `resume`
// replays the strategy from its seed, answering from the state what was done before (a proxy run that was killed
// mid-run resumes in its run directory). The Pareto front and the chosen student follow; the chosen student is then
// trained fully with KD (and alone, for the compare verdict) in <output.dir>/{distilled,student}.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualSeed, setNumThreads, tidy, writeFileAtomic } from '../torch';
import type { Module } from '../nn';
import { writeReport } from '../report';
import { DataLoader, type DataSplits, Rng, type TensorDataset, mixSeed } from '../data';
import { checkModelOptions, createModel, modelNames, registerBuiltinModels } from '../models';
import { type Teacher, isExternalTeacherSpec, isTeacher as isTeacherFromElsewhere, loadExternalTeacher } from '../teachers';
import { type TrainSummary, trainModel } from '../distill';
import { checkDevice } from '../distill/pipeline';
import {
  type Dims, type Point, type RungResult, type SearchSpec, type SpaceContext, candidateModel, checkRungs, dimsKey, enumerateSpace, int8Bytes, onnxLatencyMs, paretoFront,
  regularizedEvolution, resolveSpace, scatterSvg, searchSpecSchema, successiveHalving, FAMILIES,
} from '../search';
import { type RunConfig, applyOverrides, describe, readConfigMapping, validateConfig } from './config';
import { claimOutputDir, datasetOf, inputOf, loadConfigData, loadTeacher, modelOptions, runFromConfig, teacherWeights, transformsFor } from './runs';
import { compareFromConfig, formatTable, timeForward, type CompareResult, type ModelReport } from './compare';
import { z } from 'zod';

/** A search configuration, validated: the run configuration (its student a placeholder) and the search section. */
export interface LoadedSearch {
  cfg: RunConfig;
  search: SearchSpec;
  /** The configuration file (for messages). */
  file: string;
  /** The space's dimensions and their values. */
  space: Record<string, (number | string)[]>;
  ctx: SpaceContext;
}

/** True for a configuration with a `search` section. */
export function isSearchConfig(raw: Record<string, unknown>): boolean {
  return 'search' in raw;
}

const searchWrapper = z.object({ search: searchSpecSchema });

/** Validates a search configuration; errors name the file and the key. */
export function validateSearchConfig(raw: Record<string, unknown>, source = 'config'): LoadedSearch {
  registerBuiltinModels();
  const { search: rawSearch, ...rest } = raw;
  if (rawSearch === undefined) throw new Error(`${source}: a search configuration needs a 'search' section`);
  if (rest.student !== undefined) throw new Error(`${source}: student: a search configuration has no student section; the search chooses it (search.family and search.space)`);
  const r = searchWrapper.safeParse({ search: rawSearch });
  if (!r.success) throw new Error(describe(r.error.issues, source, searchWrapper));
  const search = r.data.search;
  // the student is chosen later: a placeholder lets the rest be checked as any run configuration
  const cfg = validateConfig({ ...rest, student: { model: 'mlp' } }, source);
  if (!cfg.teacher) throw new Error(`${source}: teacher: a search distils every candidate from a teacher; give a 'teacher' section`);
  if (cfg.distill.matches.length) throw new Error(`${source}: distill.matches: feature matches depend on the student's layers and do not apply to a search (response KD only)`);
  if (cfg.quantization) throw new Error(`${source}: quantization: quantization-aware training does not apply to a search (budget.maxInt8Bytes bounds the int8 model's size)`);
  if (cfg.teacher.members) throw new Error(`${source}: teacher: an ensemble teacher does not apply to a search; give one trained model`);
  const info = datasetOf(cfg);
  const input = inputOf(cfg);
  const ctx: SpaceContext = { kind: info.kind === 'image' ? 'image' : 'text', inputShape: input.shape, numClasses: info.classes.length };
  const fam = FAMILIES[search.family];
  if (fam.data !== 'any' && fam.data !== ctx.kind) throw new Error(`${source}: search.family: ${search.family} models take ${fam.data} data; ${info.name} is a ${ctx.kind} data set`);
  let space: Record<string, (number | string)[]>;
  try {
    space = resolveSpace(search.family, search.space);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
  }
  for (const [k, vs] of Object.entries(space))
    if (k === 'model' ? vs.some((v) => typeof v !== 'string') : vs.some((v) => typeof v !== 'number'))
      throw new Error(`${source}: search.space.${k}: expected ${k === 'model' ? 'zoo model names' : 'numbers'}, got [${vs.join(', ')}]`);
  if (space.model) {
    const unknown = (space.model as string[]).filter((m) => !modelNames().includes(m));
    if (unknown.length) throw new Error(`${source}: search.space.model: unknown model '${unknown[0]}' (known models: ${modelNames().join(', ')})`);
  }
  const all = enumerateSpace(search.family, space, ctx);
  if (!all.length) {
    const first = Object.fromEntries(Object.entries(space).map(([k, v]) => [k, v[0]]));
    let why = '';
    try {
      candidateModel(search.family, first, ctx);
    } catch (e) {
      why = `: ${(e as Error).message}`;
    }
    throw new Error(`${source}: search.space: no combination can be built${why}`);
  }
  for (const d of all) {
    const m = candidateModel(search.family, d, ctx, search.options);
    if (!modelNames().includes(m.model)) throw new Error(`${source}: search.space: ${dimsKey(d)} is model '${m.model}', which the zoo does not have (known models: ${modelNames().join(', ')})`);
    checkModelOptions(m.model, m.options, `${source}: search.options (candidate ${dimsKey(d)})`);
  }
  try {
    checkRungs(search.proxy.epochs);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
  }
  if (search.budget.maxInt8Bytes !== undefined && ctx.kind !== 'image')
    throw new Error(`${source}: search.budget.maxInt8Bytes: the int8 export calibrates float inputs; ${info.name} is a text data set`);
  if (search.pick.by === 'int8' && ctx.kind !== 'image') throw new Error(`${source}: search.pick.by: int8 sizes are measured for image models only`);
  return { cfg, search, file: source, space, ctx };
}

/** Reads a search configuration (YAML or JSON), applies `--set` overrides and validates it. */
export function loadSearchConfig(file: string, sets: string[] = []): LoadedSearch {
  return validateSearchConfig(applyOverrides(readConfigMapping(file), sets), file);
}

export interface CandidateRecord {
  id: string;
  dims: Dims;
  model: string;
  options: Record<string, unknown>;
  params: number;
  /** Latency at batch 1 in libtorch (ms). */
  latency_ms: number;
  /** Latency at batch 1 in onnxruntime (ms), when the budget measures it there. */
  ort_latency_ms: number | null;
  /** Bytes of the int8 QDQ ONNX model (images; null for text). */
  int8_bytes: number | null;
  within_budget: boolean;
  /** Why not, one entry per limit exceeded. */
  over_budget: string[];
  /** The proxy accuracy (%, on the held-out training samples) after each rung's epochs. */
  proxy: { epochs: number; acc: number; epoch_s: number }[];
}

export interface SearchState {
  version: 1;
  name: string;
  /** The configuration that made the state (a resumed search must have the same). */
  identity: string;
  strategy: 'halving' | 'evolution';
  candidates: CandidateRecord[];
  rungs?: RungResult[];
  evolution?: { history: { id: string; acc: number; parent: string | null }[]; population: string[] };
  /** The candidates the front and the pick are over, and the objectives (accuracy at `front_epochs` epochs; costs). */
  front_epochs?: number;
  front?: string[];
  finalists?: string[];
  chosen?: string;
  final?: FinalResult;
  /** Seconds of training the teacher, of search (measurement and proxy runs) and of final training, summed over the processes that ran them. */
  teacher_s: number;
  search_s: number;
  final_s: number;
}

export interface FinalResult {
  model: string;
  options: Record<string, unknown>;
  distilled: TrainSummary;
  alone?: TrainSummary;
  /** The compare verdict of the chosen student (a zoo teacher and final.alone). */
  compare?: { result: CompareResult; reports: Record<string, ModelReport>; table: string[][]; verdict: string[] };
}

export interface SearchOptions {
  /** `--set` overrides (a configuration file). */
  sets?: string[];
  /** Continue the search in the output directory. */
  resume?: boolean;
  /** Start over: the search's state, proxy runs and final runs are replaced. */
  force?: boolean;
  /** libtorch and OpenBLAS threads (default training.threads). */
  threads?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** The data (default: loaded from the configuration; the caller disposes data it passes). */
  data?: DataSplits;
}

export interface SearchResult {
  name: string;
  out_dir: string;
  state: SearchState;
  /** The Pareto front's candidates. */
  front: CandidateRecord[];
  chosen: CandidateRecord;
  /** Text tables: every candidate, and the front. */
  tables: { candidates: string[][]; front: string[][] };
  files: { state: string; page: string; plot: string; report?: string };
}

function identityOf(l: LoadedSearch): string {
  const { output: _o, training, ...rest } = l.cfg;
  const { threads: _t, ...train } = training;
  const { student: _s, ...others } = rest;
  return JSON.stringify({ ...others, training: train, search: l.search });
}

function readState(file: string): SearchState | null {
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as SearchState;
  } catch (e) {
    throw new Error(`${file}: unreadable search state (${(e as Error).message}); pass --force to start over`, { cause: e });
  }
}

/** The keys (dotted) whose values differ between two JSON identities. */
function differingKeys(a: string, b: string): string[] {
  const flat = (v: unknown, p = '', out: Record<string, string> = {}) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) flat(x, p ? `${p}.${k}` : k, out);
    else out[p] = JSON.stringify(v);
    return out;
  };
  const x = flat(JSON.parse(a)), y = flat(JSON.parse(b));
  return [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((k) => x[k] !== y[k]);
}

/** The test accuracy a run's metrics.jsonl records for epoch `epoch` (1-based). */
function accAtEpoch(runDir: string, epoch: number): { acc: number; epoch_s: number } {
  const file = path.join(runDir, 'metrics.jsonl');
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
  const m = lines.filter((x) => x.epoch === epoch && typeof x.test_acc === 'number' && x.step === undefined).pop();
  if (!m) throw new Error(`${file}: no test accuracy for epoch ${epoch}`);
  return { acc: m.test_acc as number, epoch_s: typeof m.epoch_s === 'number' ? m.epoch_s : NaN };
}

const fmtBytes = (b: number | null) => (b === null ? '-' : b.toLocaleString('en-US'));

/**
 * Searches the configured space for the student (see the file's comment): `config` is a configuration file or a raw
 * configuration object. Returns the state, the front, the chosen student and the files written.
 */
export async function searchStudent(config: string | Record<string, unknown>, o: SearchOptions = {}): Promise<SearchResult> {
  const loaded = typeof config === 'string' ? loadSearchConfig(config, o.sets) : validateSearchConfig(applyOverrides(config, o.sets ?? []), 'config');
  const { cfg, search, file, space, ctx } = loaded;
  const log = o.log ?? ((l: string) => console.log(l));
  const threads = o.threads ?? cfg.training.threads;
  if (threads) setNumThreads(threads);
  const out = cfg.output.dir;
  const stateFile = path.join(out, 'search.json');
  const identity = identityOf(loaded);
  let state = o.force ? null : readState(stateFile);
  if (state && !o.resume) throw new Error(`${out} holds a search (search.json); pass --resume to continue it, or --force to start over`);
  if (state && state.identity !== identity) {
    const diff = differingKeys(state.identity, identity);
    throw new Error(`${out} holds a search of another configuration (differing: ${diff.join(', ')}); choose another --out, or pass --force to start over`);
  }
  if (o.force) for (const f of ['search.json', 'search.html', 'search.svg', 'candidates']) fs.rmSync(path.join(out, f), { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const st: SearchState = state ?? { version: 1, name: cfg.name, identity, strategy: search.strategy, candidates: [], teacher_s: 0, search_s: 0, final_s: 0 };
  state = st;
  let tMark = Date.now();
  const save = (phase: 'teacher_s' | 'search_s' | 'final_s' = 'search_s') => {
    const now = Date.now();
    st[phase] = (st[phase] ?? 0) + (now - tMark) / 1000;
    tMark = now;
    writeFileAtomic(stateFile, JSON.stringify(st, null, 2));
  };
  const seed = search.seed ?? cfg.seed;
  const flags = { file, resume: !o.force, force: o.force, signal: o.signal, log, progress: false };
  const data = o.data ?? loadConfigData(cfg);
  const owned: { dispose(): void }[] = [];
  let teacher: Module | Teacher | undefined;
  try {
    // the teacher: a zoo model trained here when it has no checkpoint (in <out>/teacher, resumable)
    const external = isExternalTeacherSpec(cfg.teacher);
    let teacherSpec = cfg.teacher!;
    if (!external && !teacherSpec.checkpoint) {
      await runFromConfig(cfg, 'teacher', data, flags);
      teacherSpec = { ...teacherSpec, checkpoint: teacherWeights(cfg) };
    }
    save('teacher_s');
    const withTeacher: RunConfig = { ...cfg, teacher: teacherSpec };
    teacher = external ? await loadExternalTeacher(teacherSpec as Parameters<typeof loadExternalTeacher>[0], `${file}: teacher`) : loadTeacher(withTeacher, file);
    // proxy runs train where the configuration says; candidates are measured on the CPU (deployment at batch 1)
    const device = checkDevice(cfg.training.device);
    if (device !== 'cpu' && !isTeacherFromElsewhere(teacher)) teacher.to(device);

    // proxy data: `valSize` training samples held out to score the candidates, the proxy runs train on others
    const n = data.train.length;
    if (search.proxy.valSize >= n) throw new Error(`${file}: search.proxy.valSize is ${search.proxy.valSize}, but the training split has only ${n} samples`);
    const perm = new Rng(mixSeed(seed, 0x5ea)).permutation(n);
    const trainCount = Math.min(search.proxy.trainSize ?? n, n - search.proxy.valSize);
    const val = data.train.subset(perm.slice(0, search.proxy.valSize)) as TensorDataset;
    owned.push(val);
    const proxyTrain = data.train.subset(perm.slice(search.proxy.valSize, search.proxy.valSize + trainCount)) as TensorDataset;
    owned.push(proxyTrain);
    const { norm, aug } = transformsFor(cfg, 'student');

    // one input for latency, a batch for int8 calibration (preprocessed as for testing)
    const prep = (count: number) => tidy(() => {
      const rows = val.tensors[0].narrow(0, 0, Math.min(count, val.length));
      let x = rows.dtype === 'uint8' ? rows.float().div(255) : rows;
      for (const t of norm) x = t.apply(x, new Rng(0));
      return x;
    });
    const one = prep(1).keep();
    owned.push(one);
    const calib = ctx.kind === 'image' ? prep(64).keep() : null;
    if (calib) owned.push(calib);
    const b = search.budget;

    const build = (rec: { model: string; options: Record<string, unknown> }) => {
      manualSeed(seed);
      return createModel(rec.model, modelOptions(cfg, { options: rec.options }));
    };
    const admit = async (d: Dims) => {
      const key = dimsKey(d);
      let rec = st.candidates.find((c) => dimsKey(c.dims) === key);
      if (!rec) {
        const m = candidateModel(search.family, d, ctx, search.options);
        const model = build(m);
        try {
          const params = model.numParameters();
          const latency = timeForward(model, one).latency;
          const i8 = calib ? await int8Bytes(model, ctx.inputShape, calib) : null;
          const ort = b.latencyEngine === 'onnxruntime'
            ? await onnxLatencyMs(model, { shape: ctx.inputShape, dtype: one.dtype === 'int64' ? 'int64' : 'float32', data: one.dtype === 'int64' ? BigInt64Array.from(one.toArray() as number[], BigInt) : Float32Array.from(one.toArray() as number[]) })
            : null;
          const over: string[] = [];
          const lat = b.latencyEngine === 'onnxruntime' ? ort! : latency;
          if (b.maxLatencyMs !== undefined && lat > b.maxLatencyMs) over.push(`latency ${lat.toFixed(3)} ms > ${b.maxLatencyMs} ms (${b.latencyEngine})`);
          if (b.maxParams !== undefined && params > b.maxParams) over.push(`${params.toLocaleString('en-US')} parameters > ${b.maxParams.toLocaleString('en-US')}`);
          if (b.maxInt8Bytes !== undefined && i8 !== null && i8 > b.maxInt8Bytes) over.push(`int8 model ${i8.toLocaleString('en-US')} bytes > ${b.maxInt8Bytes.toLocaleString('en-US')}`);
          rec = {
            id: `c${String(st.candidates.length).padStart(3, '0')}`, dims: d, model: m.model, options: m.options, params, latency_ms: latency, ort_latency_ms: ort,
            int8_bytes: i8, within_budget: over.length === 0, over_budget: over, proxy: [],
          };
        } finally {
          model.dispose();
        }
        st.candidates.push(rec);
        save();
        log(`${rec.id} ${key}: ${rec.params.toLocaleString('en-US')} parameters, ${rec.latency_ms.toFixed(3)} ms${rec.ort_latency_ms !== null ? ` (onnxruntime ${rec.ort_latency_ms.toFixed(3)} ms)` : ''}, int8 ${fmtBytes(rec.int8_bytes)} bytes${rec.within_budget ? '' : `; over the budget: ${rec.over_budget.join('; ')}`}`);
      }
      return { id: rec.id, ok: rec.within_budget };
    };
    const proxyOpt = { kind: search.proxy.optimizer ?? cfg.training.optimizer, lr: search.proxy.lr ?? cfg.training.lr, momentum: cfg.training.momentum, weightDecay: cfg.training.weightDecay };
    const cacheDir = path.join(out, '.teacher-cache');
    const train = async (id: string, epochs: number) => {
      const rec = st.candidates.find((c) => c.id === id)!;
      const done = rec.proxy.find((p) => p.epochs === epochs);
      if (done) return done.acc;
      const runOut = path.join(out, 'candidates', id);
      const model = build(rec);
      if (device !== 'cpu') model.to(device);
      try {
        // a later rung continues the candidate's run (constant learning rate, so its schedule does not depend on the rung)
        await trainModel({
          name: `${cfg.name}/${id}`, model, train: new DataLoader(proxyTrain, { batchSize: cfg.data.batchSize, shuffle: true, seed, transforms: [...aug, ...norm], device }),
          test: val, testTransforms: norm, epochs, seed, optimizer: proxyOpt, schedule: 'constant', outDir: runOut, resume: true, teacher,
          kd: cfg.distill, cacheDir, signal: o.signal, progress: false, log,
        });
      } finally {
        model.dispose();
      }
      const r = accAtEpoch(runOut, epochs);
      rec.proxy.push({ epochs, acc: r.acc, epoch_s: r.epoch_s });
      save();
      return r.acc;
    };

    // the strategy, replayed from the seed on resume
    const all = enumerateSpace(search.family, space, ctx);
    const rng = new Rng(seed);
    let finalists: string[];
    let frontEpochs: number;
    if (search.strategy === 'halving') {
      const r = await successiveHalving({ all, n: search.candidates, rungs: search.proxy.epochs, eta: search.eta, rng, admit, train, log });
      st.rungs = r.rungs;
      finalists = r.rungs[r.rungs.length - 1].kept;
      frontEpochs = search.proxy.epochs[0];
    } else {
      const epochs = search.proxy.epochs[search.proxy.epochs.length - 1];
      const r = await regularizedEvolution({ all, space, population: search.population, sample: search.sample, cycles: search.cycles, epochs, rng, admit, train, log });
      st.evolution = r;
      finalists = [...new Set(r.history.map((h) => h.id))];
      frontEpochs = epochs;
    }
    // the front: every candidate trained to `frontEpochs` (all of them for halving's first rung); accuracy against
    // latency (in the budget's engine) and size (int8 bytes for images, parameters for text)
    const recs = st.candidates.filter((c) => c.proxy.some((p) => p.epochs === frontEpochs));
    const accAt = (c: CandidateRecord, e: number) => c.proxy.find((p) => p.epochs === e)!.acc;
    const lat = (c: CandidateRecord) => (b.latencyEngine === 'onnxruntime' ? c.ort_latency_ms! : c.latency_ms);
    const size = (c: CandidateRecord) => c.int8_bytes ?? c.params;
    const points: Point[] = recs.map((c) => ({ id: c.id, acc: accAt(c, frontEpochs), costs: [lat(c), size(c)] }));
    st.front_epochs = frontEpochs;
    st.front = paretoFront(points).map((p) => p.id);
    st.finalists = finalists;
    // the pick: among the finalists (scored at the last rung) within `tolerance` points of the best, by the rule
    const lastEpochs = search.strategy === 'halving' ? search.proxy.epochs[search.proxy.epochs.length - 1] : frontEpochs;
    const fin = finalists.map((id) => st.candidates.find((c) => c.id === id)!);
    const best = Math.max(...fin.map((c) => accAt(c, lastEpochs)));
    const near = fin.filter((c) => accAt(c, lastEpochs) >= best - search.pick.tolerance);
    const key = (c: CandidateRecord) => (search.pick.by === 'latency' ? lat(c) : search.pick.by === 'params' ? c.params : search.pick.by === 'int8' ? c.int8_bytes! : -accAt(c, lastEpochs));
    const chosen = near.reduce((a, c) => (key(c) < key(a) || (key(c) === key(a) && accAt(c, lastEpochs) > accAt(a, lastEpochs)) ? c : a));
    st.chosen = chosen.id;
    save();
    log(`chosen: ${chosen.id} (${chosen.model} ${JSON.stringify(chosen.dims)}), proxy accuracy ${accAt(chosen, lastEpochs).toFixed(2)} % after ${lastEpochs} epoch(s), pick by ${search.pick.by}`);
    for (const x of owned.splice(0)) x.dispose();
    teacher.dispose();
    teacher = undefined;

    // the chosen student, trained fully: with KD, and alone for the compare verdict
    // (a resumed search whose final runs finished keeps their result: nothing is trained or measured again)
    const finished = st.final && st.final.model === chosen.model && JSON.stringify(st.final.options) === JSON.stringify(chosen.options);
    if (search.final.train && !finished) {
      const chosenCfg: RunConfig = { ...withTeacher, student: { model: chosen.model, options: chosen.options } };
      claimOutputDir(chosenCfg, { file, force: true });
      tMark = Date.now();
      let final: FinalResult;
      if (!external && search.final.alone) {
        const c = await compareFromConfig(chosenCfg, data, flags);
        const read = (k: string) => JSON.parse(fs.readFileSync(path.join(out, k, 'summary.json'), 'utf8')) as TrainSummary;
        final = { model: chosen.model, options: chosen.options, distilled: read('distilled'), alone: read('student'), compare: { result: c.result, reports: c.reports, table: c.table, verdict: c.verdict } };
        writeReport(out, { title: `${cfg.name}: the chosen student ${chosen.id}` });
      } else {
        const distilled = await runFromConfig(chosenCfg, 'distilled', data, flags);
        const alone = search.final.alone ? await runFromConfig(chosenCfg, 'student', data, flags) : undefined;
        final = { model: chosen.model, options: chosen.options, distilled, ...(alone ? { alone } : {}) };
      }
      st.final = final;
      save('final_s');
    }
    const files = writeSearchPage(out, st, b.latencyEngine, lat, size, ctx.kind === 'image' ? 'int8 model (bytes)' : 'parameters');
    const tables = searchTables(st, b.latencyEngine);
    return {
      name: cfg.name, out_dir: out, state: st, front: st.front.map((id) => st.candidates.find((c) => c.id === id)!), chosen, tables,
      files: { state: stateFile, ...files, ...(fs.existsSync(path.join(out, 'report.html')) ? { report: path.join(out, 'report.html') } : {}) },
    };
  } finally {
    for (const x of owned) x.dispose();
    teacher?.dispose();
    if (!o.data) {
      data.train.dispose();
      data.test.dispose();
    }
  }
}

/** Text tables: every candidate (measurements, budget, proxy accuracy per rung) and the Pareto front. */
export function searchTables(st: SearchState, engine: 'libtorch' | 'onnxruntime' = 'libtorch'): { candidates: string[][]; front: string[][] } {
  const lat = (c: CandidateRecord) => (engine === 'onnxruntime' ? c.ort_latency_ms ?? NaN : c.latency_ms);
  const latHead = `latency, ${engine} (ms)`;
  const epochs = [...new Set(st.candidates.flatMap((c) => c.proxy.map((p) => p.epochs)))].sort((a, b) => a - b);
  const dims = (c: CandidateRecord) => Object.entries(c.dims).map(([k, v]) => `${k} ${v}`).join(', ');
  const mark = (c: CandidateRecord) => [st.front?.includes(c.id) ? 'front' : '', st.chosen === c.id ? 'chosen' : ''].filter(Boolean).join(', ') || (c.within_budget ? '' : 'over budget');
  const candidates = [
    ['id', 'architecture', 'model', 'parameters', latHead, 'int8 (bytes)', ...epochs.map((e) => `acc @${e} ep (%)`), ''],
    ...st.candidates.map((c) => [
      c.id, dims(c), c.model, c.params.toLocaleString('en-US'), lat(c).toFixed(3), fmtBytes(c.int8_bytes),
      ...epochs.map((e) => c.proxy.find((p) => p.epochs === e)?.acc.toFixed(2) ?? '-'), mark(c),
    ]),
  ];
  const front = [
    ['id', 'architecture', 'parameters', latHead, 'int8 (bytes)', `acc @${st.front_epochs ?? '-'} ep (%)`],
    ...(st.front ?? []).map((id) => st.candidates.find((c) => c.id === id)!).sort((a, b) => lat(a) - lat(b)).map((c) => [
      c.id, dims(c), c.params.toLocaleString('en-US'), lat(c).toFixed(3), fmtBytes(c.int8_bytes), c.proxy.find((p) => p.epochs === st.front_epochs)!.acc.toFixed(2),
    ]),
  ];
  return { candidates, front };
}

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
function htmlTable(rows: string[][]): string {
  return `<table>\n<tr>${rows[0].map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>\n${rows.slice(1).map((r) => `<tr>${r.map((v) => `<td>${escapeHtml(v)}</td>`).join('')}</tr>`).join('\n')}\n</table>`;
}

/** search.svg (accuracy against latency, and against size) and search.html (the plots, the front, every candidate, the final runs). */
function writeSearchPage(out: string, st: SearchState, engine: 'libtorch' | 'onnxruntime', lat: (c: CandidateRecord) => number, size: (c: CandidateRecord) => number, sizeLabel: string): { page: string; plot: string } {
  const recs = st.candidates.filter((c) => c.proxy.some((p) => p.epochs === st.front_epochs));
  const pts = (x: (c: CandidateRecord) => number) => recs.map((c) => ({
    id: c.id, x: x(c), y: c.proxy.find((p) => p.epochs === st.front_epochs)!.acc, front: st.front?.includes(c.id), chosen: st.chosen === c.id,
    title: `${c.id} ${c.model} ${JSON.stringify(c.dims)}: ${c.params} parameters`,
  }));
  const yLabel = `proxy accuracy after ${st.front_epochs} epoch(s) (%)`;
  const svgLat = scatterSvg(pts(lat), { xLabel: `latency at batch 1, ${engine} (ms)`, yLabel, title: 'accuracy vs latency' });
  const svgSize = scatterSvg(pts(size), { xLabel: sizeLabel, yLabel, title: `accuracy vs ${sizeLabel.replace(/ \(.*/, '')}` });
  const plot = path.join(out, 'search.svg');
  writeFileAtomic(plot, svgLat);
  const t = searchTables(st, engine);
  const f = st.final;
  const finalHtml = f
    ? `<h2>The chosen student, trained fully</h2>\n<p>${escapeHtml(`${st.chosen}: ${f.model} ${JSON.stringify(f.options)}`)}</p>\n` +
      (f.compare ? `${htmlTable(f.compare.table)}\n<ul>${f.compare.verdict.map((v) => `<li>${escapeHtml(v)}</li>`).join('')}</ul>\n<p><a href="report.html">report.html</a>: accuracy and loss terms per epoch.</p>`
        : htmlTable([['run', 'best test accuracy (%)', 'epochs'], ['student + KD', f.distilled.best_test_acc.toFixed(2), String(f.distilled.epochs)], ...(f.alone ? [['student alone', f.alone.best_test_acc.toFixed(2), String(f.alone.epochs)]] : [])]))
    : '<p>The chosen student was not trained (search.final.train is false).</p>';
  const page = path.join(out, 'search.html');
  writeFileAtomic(page, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(st.name)} — tsdistill search</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 8px 16px 8px 0; }
</style>
</head>
<body>
<h1>${escapeHtml(st.name)}: student search (${escapeHtml(st.strategy)})</h1>
<p>${st.candidates.length} candidates measured, ${st.candidates.filter((c) => !c.within_budget).length} over the budget, ${st.candidates.filter((c) => c.proxy.length).length} trained; the Pareto front (green) is over the proxy accuracy after ${st.front_epochs} epoch(s), the latency and the size; the chosen student is ringed in red. Teacher ${st.teacher_s.toFixed(0)} s, search ${st.search_s.toFixed(0)} s, final training ${st.final_s.toFixed(0)} s.</p>
<figure>${svgLat}</figure>
<figure>${svgSize}</figure>
<h2>Pareto front</h2>
${htmlTable(t.front)}
<h2>Every candidate</h2>
${htmlTable(t.candidates)}
${finalHtml}
</body>
</html>
`);
  return { page, plot };
}

/** The search tables as aligned text (for the command). */
export function searchLines(r: SearchResult): string[] {
  return [...formatTable(r.tables.candidates), '', 'Pareto front:', ...formatTable(r.tables.front)];
}
