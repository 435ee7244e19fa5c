// Search strategies over a space of candidates, independent of how a candidate is measured or trained: both take
// callbacks (`admit`: measured and within the budget; `train`: the proxy accuracy after so many epochs), so the same
// code runs a real search and a test with fixed scores. Both are deterministic given the seed and the callbacks'
// answers: a resumed search replays them, and the callbacks answer from the saved state what was done before.
import { Rng } from '../data/rng';
import { type Dims, type Space, dimsKey, mutate } from './space';

/** A candidate's measured objectives: accuracy (higher is better) and any costs (lower is better). */
export interface Point {
  id: string;
  acc: number;
  costs: number[];
}

/** Whether `a` dominates `b`: at least as good in every objective and better in one. */
export function dominates(a: Point, b: Point): boolean {
  if (a.costs.length !== b.costs.length) throw new Error(`pareto: points ${a.id} and ${b.id} have ${a.costs.length} and ${b.costs.length} costs`);
  let better = a.acc > b.acc;
  if (a.acc < b.acc) return false;
  for (let i = 0; i < a.costs.length; i++) {
    if (a.costs[i] > b.costs[i]) return false;
    if (a.costs[i] < b.costs[i]) better = true;
  }
  return better;
}

/** The non-dominated points (the Pareto front), in the order given. Points with equal objectives are all kept. */
export function paretoFront(points: Point[]): Point[] {
  return points.filter((p) => !points.some((q) => q !== p && dominates(q, p)));
}

/**
 * The candidates kept after a rung of successive halving: the best ceil(n / eta) by accuracy; ties go to the earlier
 * candidate (the order given), so the choice does not depend on sorting.
 */
export function halvingKeep(scores: { id: string; acc: number }[], eta: number): string[] {
  if (!(Number.isInteger(eta) && eta >= 2)) throw new Error(`successive halving: eta must be an integer >= 2, got ${eta}`);
  const keep = Math.max(1, Math.ceil(scores.length / eta));
  return scores
    .map((s, i) => ({ ...s, i }))
    .sort((a, b) => b.acc - a.acc || a.i - b.i)
    .slice(0, keep)
    .sort((a, b) => a.i - b.i)
    .map((s) => s.id);
}

export interface StrategyCallbacks {
  /** Measures a candidate (once; cached by the caller) and says whether it is within the budget; returns its id. */
  admit: (d: Dims) => Promise<{ id: string; ok: boolean }>;
  /** The candidate's proxy accuracy after training to `epochs` epochs (continuing its earlier rungs). */
  train: (id: string, epochs: number) => Promise<number>;
  log?: (line: string) => void;
}

export interface RungResult {
  rung: number;
  epochs: number;
  /** Candidate id → proxy accuracy after this rung. */
  acc: Record<string, number>;
  /** The candidates that go on to the next rung (the last rung: the finalists). */
  kept: string[];
}

/**
 * Successive halving: `n` candidates within the budget are drawn in a random order from `all` (the ones over the budget
 * are measured, recorded and passed over), every candidate trains to `rungs[0]` epochs, the best 1/eta go on to
 * `rungs[1]` epochs, and so on; the last rung's candidates are the finalists.
 */
export async function successiveHalving(o: { all: Dims[]; n: number; rungs: number[]; eta: number; rng: Rng } & StrategyCallbacks): Promise<{ sampled: string[]; rungs: RungResult[] }> {
  checkRungs(o.rungs);
  const order = o.rng.permutation(o.all.length);
  const sampled: string[] = [];
  for (const i of order) {
    if (sampled.length === o.n) break;
    const a = await o.admit(o.all[i]);
    if (a.ok) sampled.push(a.id);
  }
  if (!sampled.length) throw new Error('search: no candidate of the space is within the budget');
  const rungs: RungResult[] = [];
  let alive = sampled;
  for (let r = 0; r < o.rungs.length; r++) {
    const acc: Record<string, number> = {};
    for (const id of alive) acc[id] = await o.train(id, o.rungs[r]);
    const kept = r === o.rungs.length - 1 ? alive : halvingKeep(alive.map((id) => ({ id, acc: acc[id] })), o.eta);
    rungs.push({ rung: r, epochs: o.rungs[r], acc, kept });
    o.log?.(`rung ${r} (${o.rungs[r]} epoch${o.rungs[r] === 1 ? '' : 's'}): ${alive.map((id) => `${id} ${acc[id].toFixed(2)}`).join(', ')}; ${r === o.rungs.length - 1 ? 'finalists' : 'kept'}: ${kept.join(', ')}`);
    alive = kept;
  }
  return { sampled, rungs };
}

export function checkRungs(rungs: number[]): void {
  if (!rungs.length) throw new Error('search.proxy.epochs: give at least one rung');
  for (let i = 0; i < rungs.length; i++) {
    if (!(Number.isInteger(rungs[i]) && rungs[i] > 0)) throw new Error(`search.proxy.epochs: rung ${i} must be a positive integer, got ${rungs[i]}`);
    if (i && rungs[i] <= rungs[i - 1]) throw new Error(`search.proxy.epochs: rungs must increase, got [${rungs.join(', ')}]`);
  }
}

export interface EvolutionResult {
  /** Every candidate trained, in order (the initial population, then one child per cycle). */
  history: { id: string; acc: number; parent: string | null }[];
  /** The population after the last cycle (ids, oldest first). */
  population: string[];
}

/**
 * Regularized evolution (Real et al., 2019): a population of `population` candidates within the budget, drawn at
 * random; each cycle samples `sample` members, mutates one dimension of the best of them (a child over the budget is
 * recorded and redrawn, up to 20 times), trains the child to `epochs`, adds it and removes the oldest member. A child
 * whose architecture was trained before keeps its earlier accuracy (it is the same proxy run).
 */
export async function regularizedEvolution(
  o: { all: Dims[]; space: Space; population: number; sample: number; cycles: number; epochs: number; rng: Rng } & StrategyCallbacks,
): Promise<EvolutionResult> {
  const order = o.rng.permutation(o.all.length);
  const pop: { id: string; acc: number; dims: Dims }[] = [];
  const history: EvolutionResult['history'] = [];
  for (const i of order) {
    if (pop.length === o.population) break;
    const a = await o.admit(o.all[i]);
    if (!a.ok) continue;
    const acc = await o.train(a.id, o.epochs);
    pop.push({ id: a.id, acc, dims: o.all[i] });
    history.push({ id: a.id, acc, parent: null });
  }
  if (!pop.length) throw new Error('search: no candidate of the space is within the budget');
  const buildable = new Set(o.all.map(dimsKey));
  for (let c = 0; c < o.cycles; c++) {
    const picks = Array.from({ length: Math.min(o.sample, pop.length) }, () => pop[o.rng.int(pop.length)]);
    const parent = picks.reduce((best, p) => (p.acc > best.acc ? p : best));
    let child: { id: string; dims: Dims } | null = null;
    for (let attempt = 0; attempt < 20 && !child; attempt++) {
      const d = mutate(parent.dims, o.space, (x) => buildable.has(dimsKey(x)), o.rng);
      if (!d) break;
      const a = await o.admit(d);
      if (a.ok) child = { id: a.id, dims: d };
    }
    if (!child) {
      o.log?.(`cycle ${c + 1}: no mutation of ${parent.id} is within the budget; the cycle is skipped`);
      continue;
    }
    const acc = await o.train(child.id, o.epochs);
    pop.push({ ...child, acc });
    const dead = pop.shift()!;
    history.push({ id: child.id, acc, parent: parent.id });
    o.log?.(`cycle ${c + 1}: ${parent.id} (${parent.acc.toFixed(2)}) → ${child.id} ${acc.toFixed(2)}; ${dead.id} leaves the population`);
  }
  return { history, population: pop.map((p) => p.id) };
}
