// Module replacement (BERT-of-Theseus, Xu et al. 2020): a trained predecessor is cut into groups of consecutive
// blocks, each with a compact successor block. During training every group runs its successor with probability p
// (drawn per group and forward from libtorch's generator) and the frozen predecessor blocks otherwise; p follows a
// schedule over the run. In evaluation mode the successors always run, so what is evaluated, saved and later
// fine-tuned alone is the successor model itself.
//
// `replaceModules(predecessor, successor, ...)` returns the successor model with each of its replaced blocks wrapped
// in a `Replaceable`. Its state_dict holds exactly the successor model's keys (the predecessor's blocks are held
// aside, frozen, in evaluation mode, and are not saved), so its checkpoints load into the plain successor
// architecture. The parts outside the groups (stem or embeddings, final norm, classifier) start from the
// predecessor's weights, each successor block from the first predecessor block of its group.
import { Tensor, ops } from '../torch';
import { Module, ModuleList, Sequential } from '../nn';
import { ResNetCifar } from './resnet';
import { TransformerClassifier } from './transformer';

/** The replacement probability: a constant, or linear from → to over the first `until` fraction of the run (default 1). */
export type ReplaceSchedule = number | { from: number; to: number; until?: number };

/** Where training is (the engine's progress). */
interface Progress {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  epochs: number;
}

export function replaceProbability(s: ReplaceSchedule, p: Progress): number {
  if (typeof s === 'number') return s;
  const done = (p.epoch + (p.stepsPerEpoch > 0 ? p.step / p.stepsPerEpoch : 0)) / Math.max(1, p.epochs);
  const frac = Math.min(1, done / (s.until ?? 1));
  return s.from + (s.to - s.from) * frac;
}

function checkSchedule(s: ReplaceSchedule): void {
  const ok = (v: unknown) => typeof v === 'number' && v >= 0 && v <= 1;
  if (typeof s === 'number' ? !ok(s) : !(ok(s.from) && ok(s.to) && (s.until === undefined || (s.until > 0 && s.until <= 1))))
    throw new Error(`replaceProb: expected a probability in [0, 1] or { from, to, until } with from, to in [0, 1] and until in (0, 1], got ${JSON.stringify(s)}`);
}

/**
 * One successor block standing in for a group of predecessor blocks. Its state_dict keys are the successor block's
 * own (its children are registered here under their names).
 */
export class Replaceable extends Module {
  /** The probability of running the successor in training mode (set before each step by `beforeStep`). */
  p: number;
  /** Successor forwards in training mode since construction (for tests and logs). */
  successorRuns = 0;
  predecessorRuns = 0;
  constructor(readonly successor: Module, private readonly predecessors: Module[], private readonly schedule: ReplaceSchedule) {
    super();
    checkSchedule(schedule);
    if (!predecessors.length) throw new Error('Replaceable: a group needs at least one predecessor block');
    this.p = replaceProbability(schedule, { epoch: 0, step: 0, stepsPerEpoch: 1, epochs: 1 });
    for (const [name, child] of successor.namedChildren()) this.registerModule(name, child);
    for (const [name, t] of successor.namedParameters()) if (!name.includes('.')) this.registerParameter(name, t);
    for (const [name, t] of successor.namedBuffers()) if (!name.includes('.')) this.registerBuffer(name, t);
    for (const m of predecessors) m.eval().requiresGrad_(false);
  }
  beforeStep(p: Progress): void {
    this.p = replaceProbability(this.schedule, p);
  }
  forward(x: Tensor, ...rest: unknown[]): Tensor {
    const succ = !this.training || this.p >= 1 || (this.p > 0 && ops.rand([1]).item() < this.p);
    if (succ) {
      if (this.training) this.successorRuns++;
      return (this.successor.forward as (...a: unknown[]) => Tensor)(x, ...rest);
    }
    this.predecessorRuns++;
    let h = x;
    for (const m of this.predecessors) {
      if (m.parameters()[0]?.device !== x.device) m.to(x.device);
      h = (m.forward as (...a: unknown[]) => Tensor)(h, ...rest);
    }
    return h;
  }
  override train(on = true): this {
    super.train(on);
    this.successor.training = on;
    return this;
  }
}

export interface ReplaceOptions {
  /** Successor block paths (inside a Sequential or ModuleList) and the predecessor block paths each replaces. */
  groups: { successor: string; predecessors: string[] }[];
  /** Module paths present in both models whose weights the successor takes from the predecessor. */
  shared: string[];
  replaceProb: ReplaceSchedule;
}

function copyWeights(from: Module, to: Module, what: string): void {
  try {
    to.loadStateDict(from.stateDict());
  } catch (e) {
    throw new Error(`module replacement: ${what}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Wraps the successor's grouped blocks in `Replaceable`s over the predecessor's blocks (see the file header). The
 * predecessor stays owned by the returned model: its `dispose()` frees both.
 */
export function replaceModules<M extends Module>(predecessor: Module, successor: M, o: ReplaceOptions): M {
  checkSchedule(o.replaceProb);
  for (const s of o.shared) copyWeights(predecessor.getSubmodule(s), successor.getSubmodule(s), `shared module '${s}'`);
  predecessor.eval().requiresGrad_(false);
  for (const g of o.groups) {
    const preds = g.predecessors.map((p) => predecessor.getSubmodule(p));
    const block = successor.getSubmodule(g.successor);
    copyWeights(preds[0], block, `successor '${g.successor}' from predecessor '${g.predecessors[0]}'`);
    const i = g.successor.lastIndexOf('.');
    const parent = successor.getSubmodule(i < 0 ? '' : g.successor.slice(0, i));
    const idx = Number(g.successor.slice(i + 1));
    if (!(parent instanceof Sequential || parent instanceof ModuleList) || !Number.isInteger(idx))
      throw new Error(`module replacement: '${g.successor}' is not an element of a Sequential or ModuleList`);
    parent.set(idx, new Replaceable(block, preds, o.replaceProb));
  }
  const dispose = successor.dispose.bind(successor);
  successor.dispose = () => {
    dispose();
    predecessor.dispose();
  };
  return successor;
}

/** Blocks grouped evenly: successor block j of `n` stands for predecessor blocks j·g .. j·g + g − 1 of `m` (g = m / n). */
function evenGroups(prefixS: string, prefixP: string, n: number, m: number, what: string): ReplaceOptions['groups'] {
  if (m % n !== 0) throw new Error(`module replacement: the predecessor's ${m} ${what} do not split evenly into the successor's ${n}`);
  const g = m / n;
  return Array.from({ length: n }, (_, j) => ({ successor: `${prefixS}.${j}`, predecessors: Array.from({ length: g }, (_, k) => `${prefixP}.${j * g + k}`) }));
}

/** CIFAR ResNets: each stage's blocks replaced group by group (e.g. resnet56 → resnet20: 9 blocks per stage → 3). */
export function theseusResnet(predecessor: ResNetCifar, successor: ResNetCifar, replaceProb: ReplaceSchedule): ResNetCifar {
  if (predecessor.widths.join() !== successor.widths.join()) throw new Error(`module replacement: the ResNets' widths differ ([${predecessor.widths}] vs [${successor.widths}])`);
  const groups = (['layer1', 'layer2', 'layer3'] as const).flatMap((l) => evenGroups(l, l, successor[l].length, predecessor[l].length, `blocks of ${l}`));
  return replaceModules(predecessor, successor, { groups, shared: ['conv1', 'bn1', 'fc'], replaceProb });
}

/** The Transformer classifier: encoder layers replaced group by group (e.g. 4 layers → 2); embeddings, final norm and head shared. */
export function theseusTransformer(predecessor: TransformerClassifier, successor: TransformerClassifier, replaceProb: ReplaceSchedule): TransformerClassifier {
  const groups = evenGroups('encoder.layers', 'encoder.layers', successor.encoder.layers.length, predecessor.encoder.layers.length, 'encoder layers');
  const shared = ['embed', 'pos', 'fc', ...(successor.encoder.norm ? ['encoder.norm'] : [])];
  return replaceModules(predecessor, successor, { groups, shared, replaceProb });
}
