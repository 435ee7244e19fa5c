// Lifelong learning as stages of the engine: tasks arrive one after another (split MNIST: 5 tasks of 2 digits;
// permuted MNIST: 10 tasks, each the ten digits under its own pixel permutation), each a stage that trains the same
// model on the new task's data. Learning without Forgetting (Li & Hoiem 2016) adds a teacher to every stage after the
// first: the model as the previous stage left it, frozen, whose outputs on the new data the student keeps (KL at
// temperature T); fine-tuning is the same chain without it; joint training (the upper bound) trains stage k on the
// data of tasks 1..k together.
// Scenarios as van de Ven & Tolias (2019):
//   task    (Task-IL)   each task's classes have their own output units (a head); the task is known at test time
//   domain  (Domain-IL) one shared head of as many units as a task has classes; a sample's label is its class's place
//                       within its task (split MNIST: even digit 0, odd digit 1); the task is not known
//   class   (Class-IL)  one head over every class seen so far; the task is not known
// Losses:
//   ce_classes   cross-entropy where each sample's logits are restricted to the group of classes holding its label
//   kd_classes   KL(softmax(t/T) ‖ softmax(s/T))·T² on the logits of each group of `groups`, averaged over groups; with
//                `over`, the student's softmax is taken over those classes (a superset of each group) and the
//                teacher's is padded with zeros there, as van de Ven & Tolias's Class-IL LwF does
import { Tensor, noGrad, ops, tensor, tidy } from '../torch';
import { F, Module, loadWeights } from '../nn';
import { type BatchTransform, DataLoader, type ImageDataset, Rng } from '../data';
import type { LossDef } from './features';
import type { StageSpec } from './stages';
import type { BatchSource, EngineBatch, EngineOptions, OptimizerSpec } from './engine';

function classList(loss: string, v: unknown, name = 'classes'): number[] {
  if (!Array.isArray(v) || !v.length || v.some((c) => !Number.isInteger(c) || c < 0)) throw new Error(`${loss}: option ${name} must be a non-empty list of class indices, got ${JSON.stringify(v)}`);
  return v as number[];
}
function groupList(loss: string, v: unknown, name = 'groups'): number[][] {
  if (!Array.isArray(v) || !v.length) throw new Error(`${loss}: option ${name} must be a non-empty list of class lists, got ${JSON.stringify(v)}`);
  return v.map((g) => classList(loss, g, `${name}[]`));
}
function pick(loss: string, logits: Tensor, classes: number[]): Tensor {
  if (logits.ndim !== 2) throw new Error(`${loss}: expects logits [B, C], got [${logits.shape.join(', ')}]`);
  const bad = classes.find((c) => c >= logits.shape[1]);
  if (bad !== undefined) throw new Error(`${loss}: class ${bad} is outside the logits [${logits.shape.join(', ')}]`);
  return logits.indexSelect(1, tensor(classes, { dtype: 'int64', device: logits.device }));
}

/**
 * Cross-entropy where each sample's logits are restricted to the group of `groups` that holds its label (one group:
 * the active classes of a Class-IL stage; one group per task: Task-IL heads, each sample scored on its own task's
 * head). A label in no group is an error.
 */
export function ceOverGroups(logits: Tensor, labels: Tensor, groups: number[][]): Tensor {
  if (logits.ndim !== 2) throw new Error(`ce_classes: expects logits [B, C], got [${logits.shape.join(', ')}]`);
  const C = logits.shape[1];
  const bad = groups.flat().find((c) => c >= C);
  if (bad !== undefined) throw new Error(`ce_classes: class ${bad} is outside the logits [${logits.shape.join(', ')}]`);
  const groupOf = new Map<number, number>();
  groups.forEach((g, i) => g.forEach((c) => groupOf.set(c, i)));
  const y = labels.toArray();
  // 0 on the units of each sample's group, -inf elsewhere: the softmax runs over the group only
  const mask = new Float32Array(y.length * C).fill(-Infinity);
  y.forEach((c, b) => {
    const g = groupOf.get(c);
    if (g === undefined) throw new Error(`ce_classes: label ${c} is not one of the classes [${groups.flat().join(', ')}] (the batch holds another task's samples)`);
    for (const u of groups[g]) mask[b * C + u] = 0;
  });
  return tidy(() => F.crossEntropy(logits.add(tensor(mask, { shape: [y.length, C], device: logits.device })), labels));
}

/** Cross-entropy over the logits of `classes` only; each label must be one of them. */
export function ceOverClasses(logits: Tensor, labels: Tensor, classes: number[]): Tensor {
  return ceOverGroups(logits, labels, [classes]);
}

/**
 * LwF's distillation: per group of classes, KL(softmax(t/T) ‖ softmax(s/T))·T² (batch mean), averaged over the groups.
 * With `over`, the student's softmax runs over `over` (which must hold every group's classes) and the teacher's
 * probabilities are zero on the classes of `over` outside the group: the student is also pushed to give those classes
 * no probability on the old model's behalf (van de Ven & Tolias's Class-IL LwF, where `over` is every class seen so far).
 */
export function kdOverClasses(student: Tensor, teacher: Tensor, groups: number[][], temperature = 2, over?: number[]): Tensor {
  if (!(temperature > 0)) throw new Error(`kd_classes: temperature must be positive, got ${temperature}`);
  if (!groups.length) throw new Error('kd_classes: needs at least one group of classes');
  const where = over ? new Map(over.map((c, i) => [c, i])) : null;
  return tidy(() => {
    const sOver = over ? F.logSoftmax(pick('kd_classes', student, over), 1, { temperature }) : null;
    let acc: Tensor | null = null;
    for (const g of groups) {
      let s: Tensor;
      if (sOver) {
        const pos = g.map((c) => {
          const i = where!.get(c);
          if (i === undefined) throw new Error(`kd_classes: class ${c} of a group is not in over [${over!.join(', ')}]`);
          return i;
        });
        s = sOver.indexSelect(1, tensor(pos, { dtype: 'int64', device: student.device }));
      } else s = F.logSoftmax(pick('kd_classes', student, g), 1, { temperature });
      const t = noGrad(() => F.softmax(pick('kd_classes', teacher, g), 1, { temperature }));
      const l = F.klDiv(s, t, { reduction: 'batchmean' }).mul(temperature * temperature);
      acc = acc ? acc.add(l) : l;
    }
    return acc!.div(groups.length);
  });
}

export function registerLifelongLosses(registerLoss: (name: string, def: LossDef) => void): void {
  registerLoss('ce_classes', {
    needs: 'batch', doc: 'cross-entropy over the logits of options.classes only, or of the group of options.groups holding each label (teacher side: labels)',
    fn: (s, t, _c, o) => {
      if (o.groups !== undefined && o.classes !== undefined) throw new Error('ce_classes: give options.classes or options.groups, not both');
      return ceOverGroups(s[0], t[0], o.groups !== undefined ? groupList('ce_classes', o.groups) : [classList('ce_classes', o.classes)]);
    },
  });
  registerLoss('kd_classes', {
    needs: 'batch', doc: "LwF: KL·T² on each group of options.groups of the old model's logits, averaged (options temperature, 2; over: the student's softmax classes)",
    fn: (s, t, _c, o) =>
      kdOverClasses(s[0], t[0], groupList('kd_classes', o.groups), (o.temperature as number | undefined) ?? 2, o.over === undefined ? undefined : classList('kd_classes', o.over, 'over')),
  });
}

/** The rows of `ds` whose label is one of `classes`, as a data set of its own. */
export function classSubset(ds: ImageDataset, classes: number[], name = `${ds.name}-${classes.join('')}`): ImageDataset {
  const want = new Set(classes);
  const idx = ds.labels.toArray().flatMap((c, i) => (want.has(c) ? [i] : []));
  if (!idx.length) throw new Error(`${ds.name}: no rows of classes [${classes.join(', ')}]`);
  return ds.subset(idx, name);
}

/** A seeded permutation of 0..n−1 (the pixel order of one permuted-MNIST task). */
export function pixelPermutation(n: number, seed: number): Int32Array {
  if (!Number.isInteger(n) || n < 1) throw new Error(`pixelPermutation: n must be a positive integer, got ${n}`);
  return new Rng(seed).permutation(n);
}

/**
 * Pads each image by `pad` zero pixels on every side, then reorders its pixels: output pixel i is input pixel
 * perm[i] (over the flattened H×W, the same for every channel), as van de Ven & Tolias's permuted MNIST (28×28
 * padded to 32×32, then permuted). `perm` null: padding only.
 */
export function padPermute(pad: number, perm: Int32Array | null, name = perm ? 'permuted' : 'identity'): BatchTransform {
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`padPermute: pad must be a non-negative integer, got ${pad}`);
  if (perm) {
    const seen = new Uint8Array(perm.length);
    for (const p of perm) {
      if (!(p >= 0 && p < perm.length) || seen[p]) throw new Error(`padPermute: perm is not a permutation of 0..${perm.length - 1} (${p})`);
      seen[p] = 1;
    }
  }
  return {
    name: `padPermute(pad=${pad}, ${name})`,
    random: false,
    perSample: true,
    apply(x) {
      if (x.ndim !== 4) throw new Error(`padPermute: expected an image batch [B, C, H, W], got [${x.shape}]`);
      const [b, c, h, w] = x.shape, H = h + 2 * pad, W = w + 2 * pad;
      if (perm && perm.length !== H * W) throw new Error(`padPermute: a permutation of ${perm.length} pixels for padded images of ${H}×${W} = ${H * W}`);
      return tidy(() => {
        const padded = pad ? F.pad(x, [pad, pad, pad, pad]) : x.clone();
        if (!perm) return padded;
        return padded.reshape([b, c, H * W]).indexSelect(2, tensor(perm, { dtype: 'int64', device: x.device })).reshape([b, c, H, W]);
      });
    },
  };
}

export type LifelongScenario = 'task' | 'domain' | 'class';
export type LifelongMethod = 'lwf' | 'finetune' | 'joint';

/** One task: its classes as its data sets label them, its data, and the transforms that make its inputs. */
export interface LifelongTask {
  name: string;
  /** The task's classes as the data sets label them (split MNIST: two digits; permuted MNIST: the ten digits). */
  classes: number[];
  train: ImageDataset;
  test?: ImageDataset;
  /** Applied to this task's batches before the run's common transforms (permuted MNIST: its pixel permutation). */
  transforms?: BatchTransform[];
}

/** Split MNIST: one task per group of digits (default 0/1, 2/3, 4/5, 6/7, 8/9), the rows of those digits. */
export function splitMnistTasks(train: ImageDataset, test: ImageDataset | null, split: number[][] = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]): LifelongTask[] {
  return split.map((c) => ({ name: c.join(''), classes: c, train: classSubset(train, c), ...(test ? { test: classSubset(test, c) } : {}) }));
}

/**
 * Permuted MNIST: `tasks` tasks over the same images (28×28 padded to 32×32), task k's pixels in the order of
 * pixelPermutation(1024, seed·1000 + k); with `firstIdentity` (default) the first task keeps the original order, as
 * van de Ven & Tolias's code does for its seed 0. The data sets are shared by every task: dispose them once.
 */
export function permutedMnistTasks(train: ImageDataset, test: ImageDataset | null, o: { tasks?: number; seed: number; firstIdentity?: boolean }): LifelongTask[] {
  const n = o.tasks ?? 10;
  if (!Number.isInteger(n) || n < 1) throw new Error(`permutedMnistTasks: tasks must be a positive integer, got ${n}`);
  const [, , h, w] = train.images.shape;
  return Array.from({ length: n }, (_, k) => {
    const perm = k === 0 && (o.firstIdentity ?? true) ? null : pixelPermutation((h + 4) * (w + 4), o.seed * 1000 + k);
    return {
      name: `p${k + 1}`, classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], train, ...(test ? { test } : {}),
      transforms: [padPermute(2, perm, perm ? `seed=${o.seed * 1000 + k}` : 'identity')],
    };
  });
}

/**
 * The output units of each task's classes: Domain-IL, the shared head (unit j is each task's j-th class; every task
 * must have as many classes); Task-IL and Class-IL, one unit per class of every task, task after task.
 */
export function taskUnits(tasks: { classes: number[] }[], scenario: LifelongScenario): number[][] {
  if (scenario === 'domain') {
    const n = tasks[0]?.classes.length;
    const odd = tasks.find((t) => t.classes.length !== n);
    if (odd) throw new Error(`lifelong: Domain-IL shares one head, so every task needs ${n} classes; a task has [${odd.classes.join(', ')}]`);
    return tasks.map((t) => t.classes.map((_, j) => j));
  }
  let next = 0;
  return tasks.map((t) => t.classes.map(() => next++));
}

/** Output units the model needs: Domain-IL, the classes of one task; otherwise the classes of all tasks. */
export function outputUnits(tasks: { classes: number[] }[], scenario: LifelongScenario): number {
  return Math.max(...taskUnits(tasks, scenario).flat()) + 1;
}

/** A lookup tensor from the task's data-set labels to its output units (−1 for labels not in the task). */
function labelTable(task: LifelongTask, units: number[]): Tensor {
  const lut = new Array<number>(Math.max(...task.classes) + 1).fill(-1);
  task.classes.forEach((c, j) => (lut[c] = units[j]));
  return tensor(lut, { dtype: 'int64' });
}

/**
 * Training batches by iteration, as van de Ven & Tolias count training: batch i of a task's loader cycles through its
 * epochs (each reshuffled, the last incomplete batch dropped). With several tasks (joint training), each batch holds
 * ⌈batchSize / tasks⌉ samples of every task. Labels become output units (see taskUnits).
 */
export class TaskBatches implements BatchSource {
  private readonly parts: { loader: DataLoader; lut: Tensor; name: string }[];
  constructor(parts: { task: LifelongTask; units: number[]; seed: number }[], readonly length: number, batchSize: number, transforms: BatchTransform[] = []) {
    if (!parts.length) throw new Error('TaskBatches: no tasks');
    if (!Number.isInteger(length) || length < 1) throw new Error(`TaskBatches: iterations must be a positive integer, got ${length}`);
    const per = Math.ceil(batchSize / parts.length);
    this.parts = parts.map(({ task, units, seed }) => {
      if (task.train.length < per) throw new Error(`TaskBatches: task ${task.name} has ${task.train.length} training rows, fewer than a batch of ${per}`);
      const loader = new DataLoader(task.train, { batchSize: per, shuffle: true, seed, dropLast: true, transforms: [...(task.transforms ?? []), ...transforms] });
      return { loader, lut: labelTable(task, units).keep(), name: task.name };
    });
  }
  /** Batch i is the same whatever the epoch: a stage is one pass of `length` iterations. */
  setEpoch(): void {}
  batchAt(i: number): EngineBatch {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new Error(`TaskBatches: batch ${i} out of range (${this.length} iterations)`);
    const { x, y } = tidy(() => {
      const xs: Tensor[] = [], ys: Tensor[] = [];
      for (const p of this.parts) {
        const n = p.loader.length;
        p.loader.setEpoch(Math.floor(i / n));
        const b = p.loader.batchAt(i % n);
        const u = p.lut.indexSelect(0, b.y);
        if (u.min().item() < 0) throw new Error(`TaskBatches: task ${p.name} has a row whose label is not one of its classes`);
        xs.push(b.x);
        ys.push(u);
      }
      return xs.length === 1 ? { x: xs[0], y: ys[0] } : { x: ops.cat(xs, 0), y: ops.cat(ys, 0) };
    });
    return { x, y, dispose: () => { x.dispose(); y.dispose(); } };
  }
  dispose(): void {
    for (const p of this.parts) p.lut.dispose();
  }
}

export interface LifelongOptions {
  /** A fresh model with outputUnits(tasks, scenario) outputs (called for the learner and every stage's frozen copy). */
  model: () => Module;
  tasks: LifelongTask[];
  scenario: LifelongScenario;
  method: LifelongMethod;
  /** Optimizer steps (batches) per task; van de Ven & Tolias train 2,000 (split MNIST) or 5,000 (permuted MNIST). */
  iters: number;
  batchSize?: number;
  optimizer: OptimizerSpec;
  /** Applied to every batch after the task's own transforms. */
  transforms?: BatchTransform[];
  seed: number;
  /** LwF's temperature (default 2, as van de Ven & Tolias). */
  temperature?: number;
  /**
   * Class-IL LwF: the student's softmax in the distillation runs over every class seen so far, the old model's
   * probabilities padded with zeros on the new task's classes ('all', default, as van de Ven & Tolias's code), or over
   * the old classes only ('old').
   */
  classKd?: 'all' | 'old';
  /** Commit a resumable state every N steps inside a task (default: at each task's end). */
  checkpointEverySteps?: number;
  log?: (line: string) => void;
}

/**
 * The stages of a lifelong run: one per task, each training the learner (loaded from the previous stage's last
 * weights) for `iters` steps. Fine-tuning: the task's data alone. LwF: also the previous stage's weights as a frozen
 * teacher, the current task weighted 1/k and the old model's distillation (k−1)/k at the k-th task, as van de Ven &
 * Tolias weight current and replayed data. Joint: the data of tasks 1..k together (their "offline" upper bound).
 * Returns the stages and the learner (after runStages: the model after the last task).
 */
export function lifelongStages(o: LifelongOptions): { stages: StageSpec[]; learner: Module; release(): void } {
  if (!o.tasks.length) throw new Error('lifelong: no tasks');
  if (!['task', 'domain', 'class'].includes(o.scenario)) throw new Error(`lifelong: scenario must be task, domain or class, got '${o.scenario}'`);
  if (!['lwf', 'finetune', 'joint'].includes(o.method)) throw new Error(`lifelong: method must be lwf, finetune or joint, got '${o.method}'`);
  if (!Number.isInteger(o.iters) || o.iters < 1) throw new Error(`lifelong: iters must be a positive integer, got ${o.iters}`);
  const units = taskUnits(o.tasks, o.scenario);
  const learner = o.model();
  const batchSize = o.batchSize ?? 128;
  // the classes a sample of one of tasks 1..k is scored over: its task's head (Task-IL) or every class seen so far
  const ceGroups = (k: number): number[][] => (o.scenario === 'task' ? units.slice(0, k) : [[...new Set(units.slice(0, k).flat())]]);
  const stages = o.tasks.map((task, k): StageSpec => {
    let source: TaskBatches | null = null;
    let old: Module | null = null;
    return {
      name: `task${k + 1}`,
      build: (ctx) => {
        if (k > 0) loadWeights(learner, ctx.checkpoint(`task${k}`, undefined, 'last'));
        const lwf = o.method === 'lwf' && k > 0;
        const joint = o.method === 'joint';
        const groups = joint ? ceGroups(k + 1) : o.scenario === 'task' ? [units[k]] : ceGroups(k + 1);
        const terms: EngineOptions['terms'] = [{ loss: 'ce_classes', name: 'current', student: 'learner.logits', teacher: 'labels', options: { groups }, weight: lwf ? 1 / (k + 1) : 1 }];
        const roles: EngineOptions['roles'] = [{ name: 'learner', model: learner, optimizer: o.optimizer }];
        if (lwf) {
          old = o.model();
          loadWeights(old, ctx.checkpoint(`task${k}`, undefined, 'last'));
          roles.push({ name: 'previous', model: old });
          const seen = ceGroups(k)[0];
          const kd =
            o.scenario === 'task' ? { groups: units.slice(0, k) }
            : o.scenario === 'domain' ? { groups: [units[0]] }
            : (o.classKd ?? 'all') === 'all' ? { groups: [seen], over: ceGroups(k + 1)[0] } : { groups: [seen] };
          terms.push({ loss: 'kd_classes', name: 'old', student: 'learner.logits', teacher: 'previous.logits', options: { ...kd, temperature: o.temperature ?? 2 }, weight: k / (k + 1) });
        }
        const parts = (joint ? o.tasks.slice(0, k + 1) : [task]).map((t) => {
          const ti = o.tasks.indexOf(t);
          return { task: t, units: units[ti], seed: o.seed * 1009 + 31 * k + ti };
        });
        source = new TaskBatches(parts, o.iters, batchSize, o.transforms);
        return {
          roles, terms, epochs: 1, seed: o.seed + k, progress: false, log: o.log, train: source,
          ...(o.checkpointEverySteps ? { checkpointEverySteps: o.checkpointEverySteps } : {}),
        };
      },
      release: () => {
        source?.dispose();
        old?.dispose();
        source = old = null;
      },
    };
  });
  return { stages, learner, release: () => learner.dispose() };
}

/**
 * Accuracy (%) on each task's test data, as the scenario scores it: Task-IL, the argmax over the task's own units;
 * Domain-IL, over the shared head; Class-IL, over the units of every task given.
 */
export function lifelongAccuracy(model: Module, tasks: LifelongTask[], scenario: LifelongScenario, transforms: BatchTransform[] = []): number[] {
  const units = taskUnits(tasks, scenario);
  const all = [...new Set(units.flat())];
  const was = model.training;
  model.eval();
  try {
    return tasks.map((task, ti) => {
      if (!task.test) throw new Error(`lifelongAccuracy: task ${task.name} has no test data`);
      const cls = scenario === 'task' ? units[ti] : all;
      const lut = labelTable(task, units[ti]);
      const loader = new DataLoader(task.test, { batchSize: 1000, transforms: [...(task.transforms ?? []), ...transforms] });
      let correct = 0;
      try {
        for (let i = 0; i < loader.length; i++) {
          const b = loader.batchAt(i);
          try {
            correct += tidy(() => noGrad(() => {
              const logits = model.call(b.x) as Tensor;
              const best = pick('lifelong', logits, cls).argmax(1);
              const predicted = tensor(cls, { dtype: 'int64', device: logits.device }).indexSelect(0, best);
              return ops.eq_Tensor(predicted, lut.indexSelect(0, b.y).to({ device: logits.device })).sum().item();
            }));
          } finally {
            b.dispose();
          }
        }
      } finally {
        lut.dispose();
      }
      return (100 * correct) / task.test.length;
    });
  } finally {
    model.train(was);
  }
}
