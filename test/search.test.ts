import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { liveTensors } from '../src/torch';
import { Rng } from '../src/data';
import { type Dims, candidateModel, dimsKey, dominates, enumerateSpace, halvingKeep, mutate, paretoFront, regularizedEvolution, resolveSpace, scatterSvg, successiveHalving } from '../src/search';
import { TrainingInterrupted } from '../src/distill';
import { type SearchState, searchStudent, validateSearchConfig } from '../src/run';

/** Garbage collection, and the event-loop turns in which N-API finalizers release what it collected. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setImmediate(r));
  }
}
const tmp = (name: string) => fs.mkdtempSync(path.join(os.tmpdir(), `tsd-search-${name}-`));
const imageCtx = { kind: 'image' as const, inputShape: [1, 28, 28], numClasses: 10 };

describe('Pareto front', () => {
  it('keeps exactly the non-dominated points (worked by hand)', () => {
    // accuracy up, latency and size down
    const pts = [
      { id: 'a', acc: 90, costs: [1.0, 100] }, // front: the most accurate
      { id: 'b', acc: 85, costs: [0.5, 50] }, // front: faster and smaller than a
      { id: 'c', acc: 84, costs: [0.6, 60] }, // dominated by b (less accurate, slower, larger)
      { id: 'd', acc: 80, costs: [0.2, 80] }, // front: the fastest
      { id: 'e', acc: 80, costs: [0.3, 40] }, // front: the smallest (d is faster, e smaller)
      { id: 'f', acc: 79, costs: [0.3, 40] }, // dominated by e (same costs, less accurate)
      { id: 'g', acc: 90, costs: [1.0, 100] }, // equal to a: neither dominates, both kept
    ];
    assert.deepEqual(paretoFront(pts).map((p) => p.id), ['a', 'b', 'd', 'e', 'g']);
    assert.equal(dominates(pts[1], pts[2]), true);
    assert.equal(dominates(pts[0], pts[6]), false);
    assert.equal(dominates(pts[3], pts[4]), false);
    assert.equal(dominates(pts[4], pts[3]), false);
    assert.throws(() => dominates({ id: 'x', acc: 1, costs: [1] }, { id: 'y', acc: 1, costs: [1, 2] }), /points x and y have 1 and 2 costs/);
  });
});

describe('successive halving', () => {
  it('keeps the best ceil(n / eta) of a rung, ties to the earlier candidate', () => {
    const s = [{ id: 'a', acc: 50 }, { id: 'b', acc: 70 }, { id: 'c', acc: 60 }, { id: 'd', acc: 70 }, { id: 'e', acc: 10 }];
    assert.deepEqual(halvingKeep(s, 2), ['b', 'c', 'd']);
    assert.deepEqual(halvingKeep(s, 3), ['b', 'd']);
    assert.deepEqual(halvingKeep(s, 5), ['b']);
    assert.deepEqual(halvingKeep([{ id: 'x', acc: 1 }, { id: 'y', acc: 1 }], 3), ['x']);
    assert.throws(() => halvingKeep(s, 1), /eta must be an integer >= 2/);
  });

  it('trains rungs of increasing epochs on the survivors of fixed scores, and passes over candidates out of the budget', async () => {
    const all: Dims[] = Array.from({ length: 8 }, (_, i) => ({ width: i + 1 }));
    // the score grows with the width and with the epochs; widths 7 and 8 are over the budget
    const score = (w: number, e: number) => w * 10 + e;
    const ids = new Map<string, number>();
    const trained: [string, number][] = [];
    const measured: number[] = [];
    const r = await successiveHalving({
      all, n: 4, rungs: [1, 2, 4], eta: 2, rng: new Rng(3),
      admit: async (d) => {
        const w = d.width as number;
        measured.push(w);
        ids.set(`w${w}`, w);
        return { id: `w${w}`, ok: w <= 6 };
      },
      train: async (id, e) => {
        trained.push([id, e]);
        return score(ids.get(id)!, e);
      },
    });
    assert.equal(r.sampled.length, 4);
    assert.ok(r.sampled.every((id) => ids.get(id)! <= 6), 'only candidates within the budget are sampled');
    assert.ok(!trained.some(([id]) => ids.get(id)! > 6), 'candidates over the budget are never trained');
    const byWidth = [...r.sampled].sort((a, b) => ids.get(b)! - ids.get(a)!);
    assert.deepEqual(r.rungs.map((x) => x.epochs), [1, 2, 4]);
    assert.deepEqual(Object.keys(r.rungs[0].acc).sort(), [...r.sampled].sort());
    assert.deepEqual([...r.rungs[0].kept].sort(), byWidth.slice(0, 2).sort());
    assert.deepEqual(r.rungs[1].kept, [byWidth[0]]);
    assert.deepEqual(r.rungs[2].kept, [byWidth[0]]);
    assert.equal(r.rungs[2].acc[byWidth[0]], score(ids.get(byWidth[0])!, 4));
    assert.equal(trained.length, 4 + 2 + 1);
    // the same seed and answers give the same path (a resumed search replays it)
    const again = await successiveHalving({ all, n: 4, rungs: [1, 2, 4], eta: 2, rng: new Rng(3), admit: async (d) => ({ id: `w${d.width}`, ok: (d.width as number) <= 6 }), train: async (id, e) => score(Number(id.slice(1)), e) });
    assert.deepEqual(again.rungs, r.rungs);
    await assert.rejects(successiveHalving({ all, n: 2, rungs: [1], eta: 2, rng: new Rng(0), admit: async (d) => ({ id: String(d.width), ok: false }), train: async () => 0 }), /no candidate of the space is within the budget/);
    await assert.rejects(successiveHalving({ all, n: 2, rungs: [2, 2], eta: 2, rng: new Rng(0), admit: async () => ({ id: 'x', ok: true }), train: async () => 0 }), /rungs must increase/);
  });
});

describe('regularized evolution', () => {
  it('mutates one dimension of the best sampled member and removes the oldest', async () => {
    const space = { depth: [1, 2, 3], width: [8, 16, 32, 64] };
    const all = enumerateSpace('mlp', space, imageCtx);
    const acc = (d: Dims) => (d.depth as number) + Math.log2(d.width as number);
    const dimsOf = new Map<string, Dims>();
    const r = await regularizedEvolution({
      all, space, population: 3, sample: 2, cycles: 5, epochs: 1, rng: new Rng(1),
      admit: async (d) => {
        dimsOf.set(dimsKey(d), d);
        return { id: dimsKey(d), ok: (d.width as number) !== 64 };
      },
      train: async (id) => acc(dimsOf.get(id)!),
    });
    assert.equal(r.history.length, 3 + 5);
    assert.equal(r.population.length, 3);
    assert.deepEqual(r.population, r.history.slice(-3).map((h) => h.id), 'the population is the newest three');
    for (const h of r.history.slice(3)) {
      const p = dimsOf.get(h.parent!)!, c = dimsOf.get(h.id)!;
      assert.equal(Object.keys(space).filter((k) => p[k] !== c[k]).length, 1, `${h.parent} → ${h.id} changes one dimension`);
      assert.notEqual(c.width, 64, 'children over the budget are redrawn');
    }
  });

  it('mutate returns null when no other value is valid', () => {
    assert.equal(mutate({ depth: 1 }, { depth: [1] }, () => true, new Rng(0)), null);
    assert.equal(mutate({ depth: 1 }, { depth: [1, 2] }, () => false, new Rng(0)), null);
  });
});

describe('search space', () => {
  it('builds zoo models from dimensions and refuses what cannot be built', () => {
    assert.deepEqual(candidateModel('mlp', { depth: 2, width: 32 }, imageCtx, { dropout: 0.1 }), { model: 'mlp', options: { dropout: 0.1, widths: [784, 32, 32, 10] } });
    assert.deepEqual(candidateModel('mobilenetv2', { width: 0.5 }, imageCtx), { model: 'mobilenetv2', options: { inChannels: 1, smallInput: true, width: 0.5 } });
    assert.deepEqual(candidateModel('resnet', { depth: 8, width: 4 }, { ...imageCtx, inputShape: [3, 32, 32] }), { model: 'resnet8x4', options: {} });
    assert.throws(() => candidateModel('resnet', { depth: 8, width: 1 }, imageCtx), /take 3-channel images; the data has 1 channel/);
    assert.equal(enumerateSpace('transformer', { layers: [1], dModel: [30, 32], heads: [4] }, { kind: 'text', inputShape: [16], numClasses: 2 }).length, 1);
    assert.throws(() => resolveSpace('mlp', { layers: [1] }), /search\.space\.layers does not apply to family mlp \(its dimensions: depth, width\)/);
    assert.throws(() => resolveSpace('mlp', { depth: [1, 1] }), /search\.space\.depth: a value is repeated/);
  });

  it('plots one dot per candidate, the front in the plane joined, the chosen one ringed', () => {
    const svg = scatterSvg([{ id: 'a', x: 1, y: 90, front: true, chosen: true }, { id: 'b', x: 0.5, y: 85, front: true }, { id: 'c', x: 2, y: 80 }], { xLabel: 'latency (ms)', yLabel: 'accuracy (%)' });
    assert.equal((svg.match(/<g class="point/g) ?? []).length, 3);
    assert.equal((svg.match(/class="point front/g) ?? []).length, 2);
    assert.equal((svg.match(/class="point[^"]*chosen/g) ?? []).length, 1);
    // in this plane b (faster) and a (more accurate) are non-dominated, c is dominated by both
    assert.match(svg, /<polyline class="plane-front"[^>]* points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"\/>/);
  });
});

/** The teacher the first search trains, reused by the later ones (each trains its own when run alone). */
let trainedTeacher: string | null = null;
const tiny = (out: string, extra: Record<string, unknown> = {}) => ({
  name: 'tiny', seed: 0,
  data: { dataset: 'mnist', batchSize: 50, limit: 700 },
  teacher: { model: 'lenet5', ...(trainedTeacher && !extra.ownTeacher ? { checkpoint: trainedTeacher } : {}) },
  distill: { temperature: 4, alpha: 0.3 },
  training: { epochs: 1, lr: 0.05 },
  search: {
    family: 'mlp', space: { depth: [1, 2], width: [8, 16, 400] }, budget: { maxParams: 30000 }, candidates: 3, eta: 2,
    proxy: { epochs: [1, 2], trainSize: 300, valSize: 200 }, final: { train: false, alone: false },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'ownTeacher')),
  },
  output: { dir: out },
});

describe('search configuration', () => {
  it('names bad keys and values', () => {
    const out = tmp('cfg');
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, strategi: 'halving' } }, 's.yaml'),
      /s\.yaml: invalid configuration:[\s\S]*search\.strategi: unknown key; did you mean 'search\.strategy'\?/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, budget: { maxLatency: 1 } } }, 's.yaml'),
      /search\.budget\.maxLatency: unknown key; did you mean 'search\.budget\.maxLatencyMs'\?/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, family: 'mlpp' } }, 's.yaml'), /search\.family: /);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, space: { layers: [1] } } }, 's.yaml'),
      /s\.yaml: search\.space\.layers does not apply to family mlp/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, options: { dropot: 0.1 } } }, 's.yaml'),
      /s\.yaml: search\.options \(candidate depth=1,width=8\): mlp: unknown option 'dropot'; did you mean 'dropout'\?/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, proxy: { epochs: [2, 1] } } }, 's.yaml'), /search\.proxy\.epochs: rungs must increase/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), student: { model: 'mlp' } }, 's.yaml'), /s\.yaml: student: a search configuration has no student section/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, family: 'transformer' } }, 's.yaml'), /search\.family: transformer models take text data; mnist is a image data set/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), search: { ...tiny(out).search, family: 'resnet' } }, 's.yaml'), /no combination can be built: resnet: the zoo's CIFAR ResNets take 3-channel images/);
    assert.throws(() => validateSearchConfig({ ...tiny(out), trainin: {} }, 's.yaml'), /trainin: unknown key; did you mean 'training'\?/);
  });
  it('tsdistill search names the file and the key of a bad configuration', () => {
    const dir = tmp('cli');
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'data: { dataset: mnist }\nteacher: { model: lenet5 }\nsearch: { family: mlp, budget: { maxParam: 10 } }\n');
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'src', 'cli', 'main.js'), 'search', file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${file.replace(/[.\\/]/g, '\\$&')}: invalid configuration:\\n  search\\.budget\\.maxParam: unknown key; did you mean 'search\\.budget\\.maxParams'\\?`));
  });
  it('other commands point a search configuration to tsdistill search', () => {
    const file = path.join(__dirname, '..', '..', 'examples', 'search-fmnist.yaml');
    for (const command of ['distill', 'compare']) {
      const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'src', 'cli', 'main.js'), command, file], { encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`search-fmnist\\.yaml: a configuration with a 'search' section runs with tsdistill search \\(not tsdistill ${command}\\)`));
    }
  });
});

describe('searchStudent', () => {
  it('measures, discards candidates over the budget before training, trains the rest as engine runs, and resumes without retraining', async () => {
    const out = tmp('e2e');
    const tinyOwn = (o: string, extra: Record<string, unknown> = {}) => tiny(o, { ownTeacher: true, ...extra });
    const before = liveTensors();
    // interrupted: stop during the second proxy run
    const stop = new AbortController();
    let runs = 0;
    const logs: string[] = [];
    await assert.rejects(
      searchStudent(tinyOwn(out), {
        signal: stop.signal, threads: 1,
        log: (l) => {
          logs.push(l);
          if (/nothing to resume in .*candidates/.test(l) && ++runs === 2) stop.abort();
        },
      }),
      (e: Error) => e instanceof TrainingInterrupted,
    );
    const partial = JSON.parse(fs.readFileSync(path.join(out, 'search.json'), 'utf8')) as SearchState;
    const firstDone = partial.candidates.filter((c) => c.proxy.length);
    assert.equal(firstDone.length, 1, 'one proxy run finished before the interruption');
    const doneDir = path.join(out, 'candidates', firstDone[0].id);
    const stamp = fs.statSync(path.join(doneDir, 'state.json')).mtimeMs;
    const weights = fs.readFileSync(path.join(doneDir, 'last.safetensors'));
    // refused without --resume
    await assert.rejects(searchStudent(tinyOwn(out), { log: () => {} }), /holds a search \(search\.json\); pass --resume/);
    // a changed configuration is refused on resume, naming the key
    await assert.rejects(searchStudent(tinyOwn(out, { eta: 3 }), { resume: true, log: () => {} }), /another configuration \(differing: search\.eta\)/);
    const resumed: string[] = [];
    const r = await searchStudent(tinyOwn(out), { resume: true, threads: 1, log: (l) => resumed.push(l) });
    // (an engine run stopped by its signal leaves one handle that only the garbage collector frees, the loader's
    // batch prefetched when the step loop throws; the search itself leaves none, see the next test)
    await settle();
    assert.equal(liveTensors(), before, 'no tensor is left alive');
    // the finished candidate was not trained again at rung 0: its run was only continued for rung 1, if it survived
    assert.ok(!resumed.some((l) => l.includes(`tiny/${firstDone[0].id}: nothing to resume`)), 'the finished candidate is not started again');
    assert.ok(!resumed.some((l) => new RegExp(`tiny/${firstDone[0].id} epoch 1/`).test(l)), 'its first epoch is not trained again');
    const survived = r.state.rungs![0].kept.includes(firstDone[0].id);
    if (!survived) {
      assert.equal(fs.statSync(path.join(doneDir, 'state.json')).mtimeMs, stamp);
      assert.deepEqual(fs.readFileSync(path.join(doneDir, 'last.safetensors')), weights);
    }
    // the interrupted candidate continued in its run directory
    assert.ok(resumed.some((l) => /tiny\/c\d+: resuming/.test(l)), 'the interrupted proxy run resumes');
    const st = r.state;
    const over = st.candidates.filter((c) => !c.within_budget);
    assert.ok(over.length >= 1, 'width 400 is over the parameter budget');
    for (const c of over) {
      assert.match(c.over_budget.join(), /parameters > 30,000/);
      assert.equal(c.proxy.length, 0);
      assert.equal(fs.existsSync(path.join(out, 'candidates', c.id)), false, 'no run directory for a candidate over the budget');
    }
    const trained = st.candidates.filter((c) => c.proxy.length);
    assert.equal(trained.length, 3);
    for (const c of trained) {
      assert.ok(c.params <= 30000 && c.latency_ms > 0 && c.int8_bytes! > 0);
      assert.ok(fs.existsSync(path.join(out, 'candidates', c.id, 'metrics.jsonl')), 'each proxy run is a run directory of the engine');
      assert.ok(c.proxy[0].acc >= 0 && c.proxy[0].acc <= 100);
    }
    assert.deepEqual(st.rungs!.map((x) => Object.keys(x.acc).length), [3, 2]);
    assert.deepEqual(st.finalists, st.rungs![1].kept);
    assert.ok(st.finalists!.includes(st.chosen!));
    const best = Math.max(...st.finalists!.map((id) => st.candidates.find((c) => c.id === id)!.proxy.find((p) => p.epochs === 2)!.acc));
    assert.equal(r.chosen.proxy.find((p) => p.epochs === 2)!.acc, best, 'pick by accuracy takes the best finalist');
    // the front is the non-dominated set of the rung-0 scores
    const pts = trained.map((c) => ({ id: c.id, acc: c.proxy[0].acc, costs: [c.latency_ms, c.int8_bytes!] }));
    assert.deepEqual(st.front, paretoFront(pts).map((p) => p.id));
    assert.ok(fs.readFileSync(r.files.page, 'utf8').includes('<svg'));
    // the teacher was trained once, in the search's folder, and its logits cached for the proxy runs
    assert.ok(fs.existsSync(path.join(out, 'teacher', 'best.safetensors')));
    trainedTeacher = path.join(out, 'teacher', 'best.safetensors');
    assert.ok(fs.readdirSync(path.join(out, '.teacher-cache')).length >= 1);
    // a finished search resumed again trains nothing
    const again: string[] = [];
    await searchStudent(tinyOwn(out), { resume: true, threads: 1, log: (l) => again.push(l) });
    assert.ok(!again.some((l) => /epoch \d+\/\d+/.test(l)), `nothing is trained again: ${again.filter((l) => /epoch/.test(l)).join(' | ')}`);
  });

  it('trains the chosen student fully with KD and alone (the compare verdict)', async () => {
    const out = tmp('final');
    await settle();
    const before = liveTensors();
    const finalCfg = tiny(out, { space: { depth: [1], width: [8, 16] }, candidates: 2, proxy: { epochs: [1], trainSize: 200, valSize: 100 }, final: { train: true, alone: true } });
    const r = await searchStudent(finalCfg, { threads: 1, log: () => {} });
    assert.equal(liveTensors(), before, 'no tensor is left alive');
    const f = r.state.final!;
    assert.equal(f.model, 'mlp');
    assert.deepEqual(f.options, r.chosen.options);
    assert.equal(f.distilled.epochs, 1);
    assert.ok(f.alone && f.compare);
    assert.equal(f.compare!.result.kd_acc, f.compare!.reports.distilled.acc);
    assert.ok(fs.existsSync(path.join(out, 'distilled', 'best.safetensors')) && fs.existsSync(path.join(out, 'student', 'best.safetensors')));
    assert.ok(fs.existsSync(path.join(out, 'report.html')) && fs.existsSync(path.join(out, 'config.json')));
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.deepEqual(cfg.student, { model: 'mlp', options: r.chosen.options }, 'config.json names the chosen student, so export works on the folder');
    // resumed once finished: the final runs are neither trained nor measured again
    const lines: string[] = [];
    const again = await searchStudent(finalCfg, { resume: true, threads: 1, log: (l) => lines.push(l) });
    assert.deepEqual(again.state.final, JSON.parse(JSON.stringify(r.state.final)), "the final result as search.json holds it");
    assert.equal(again.state.final_s, r.state.final_s);
    assert.ok(!lines.some((l) => /tiny\/(student|distilled)/.test(l)), lines.join(' | '));
  });
});
