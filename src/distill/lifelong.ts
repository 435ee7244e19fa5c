// Lifelong learning as stages of the engine: tasks arrive one after another (e.g. split MNIST, 5 tasks of 2 digits),
// each a stage that trains the same model on the new task's data. Learning without Forgetting (Li & Hoiem 2016) adds
// a teacher to every stage after the first: the model as the previous stage left it, frozen, whose outputs on the new
// data for the old tasks' classes the student keeps (KL at temperature T); fine-tuning is the same chain without it.
// Scenarios as van de Ven & Tolias (2019): task-incremental (each task's classes form a head; the task is known at
// test time) and class-incremental (one head over every class seen so far).
//   ce_classes   cross-entropy over the logits of `classes` only (labels outside them are an error)
//   kd_classes   KL(softmax(t/T) ‖ softmax(s/T))·T² on the logits of each group of `groups`, averaged over groups
import { Tensor, noGrad, ops, tensor, tidy } from '../torch';
import { F, Module, loadWeights } from '../nn';
import type { ImageDataset } from '../data';
import type { LossDef } from './features';
import type { StageSpec } from './stages';
import type { EngineOptions, OptimizerSpec } from './engine';
import { DataLoader } from '../data';

type Transforms = DataLoader['transforms'];

function classList(loss: string, v: unknown, name = 'classes'): number[] {
  if (!Array.isArray(v) || !v.length || v.some((c) => !Number.isInteger(c) || c < 0)) throw new Error(`${loss}: option ${name} must be a non-empty list of class indices, got ${JSON.stringify(v)}`);
  return v as number[];
}
function pick(loss: string, logits: Tensor, classes: number[]): Tensor {
  if (logits.ndim !== 2) throw new Error(`${loss}: expects logits [B, C], got [${logits.shape.join(', ')}]`);
  const bad = classes.find((c) => c >= logits.shape[1]);
  if (bad !== undefined) throw new Error(`${loss}: class ${bad} is outside the logits [${logits.shape.join(', ')}]`);
  return logits.indexSelect(1, tensor(classes, { dtype: 'int64', device: logits.device }));
}

/** Cross-entropy over the logits of `classes` only; each label must be one of them. */
export function ceOverClasses(logits: Tensor, labels: Tensor, classes: number[]): Tensor {
  return tidy(() => {
    const pos = new Map(classes.map((c, i) => [c, i]));
    const y = labels.toArray().map((c) => {
      const i = pos.get(c);
      if (i === undefined) throw new Error(`ce_classes: label ${c} is not one of the classes [${classes.join(', ')}] (the batch holds another task's samples)`);
      return i;
    });
    return F.crossEntropy(pick('ce_classes', logits, classes), tensor(y, { dtype: 'int64', device: logits.device }));
  });
}

/** LwF's distillation: per group of classes, KL(softmax(t/T) ‖ softmax(s/T))·T² (batch mean), averaged over the groups. */
export function kdOverClasses(student: Tensor, teacher: Tensor, groups: number[][], temperature = 2): Tensor {
  if (!(temperature > 0)) throw new Error(`kd_classes: temperature must be positive, got ${temperature}`);
  if (!groups.length) throw new Error('kd_classes: needs at least one group of classes');
  return tidy(() => {
    let acc: Tensor | null = null;
    for (const g of groups) {
      const s = pick('kd_classes', student, g), t = noGrad(() => pick('kd_classes', teacher, g));
      const l = F.klDiv(F.logSoftmax(s, 1, { temperature }), F.softmax(t, 1, { temperature }), { reduction: 'batchmean' }).mul(temperature * temperature);
      acc = acc ? acc.add(l) : l;
    }
    return acc!.div(groups.length);
  });
}

export function registerLifelongLosses(registerLoss: (name: string, def: LossDef) => void): void {
  registerLoss('ce_classes', { needs: 'batch', doc: 'cross-entropy over the logits of options.classes only (teacher side: labels)', fn: (s, t, _c, o) => ceOverClasses(s[0], t[0], classList('ce_classes', o.classes)) });
  registerLoss('kd_classes', {
    needs: 'batch', doc: "LwF: KL·T² on each group of options.groups of the old model's logits, averaged (option temperature, 2)",
    fn: (s, t, _c, o) => {
      if (!Array.isArray(o.groups)) throw new Error(`kd_classes: option groups must be a list of class lists, got ${JSON.stringify(o.groups)}`);
      return kdOverClasses(s[0], t[0], o.groups.map((g) => classList('kd_classes', g, 'groups[]')), (o.temperature as number | undefined) ?? 2);
    },
  });
}

/** The rows of `ds` whose label is one of `classes`, as a data set of its own. */
export function classSubset(ds: ImageDataset, classes: number[], name = `${ds.name}-${classes.join('')}`): ImageDataset {
  const want = new Set(classes);
  const idx = ds.labels.toArray().flatMap((c, i) => (want.has(c) ? [i] : []));
  if (!idx.length) throw new Error(`${ds.name}: no rows of classes [${classes.join(', ')}]`);
  return ds.subset(idx, name);
}

export type LifelongScenario = 'task' | 'class';
export type LifelongMethod = 'lwf' | 'finetune';

export interface LifelongOptions {
  /** A fresh model (called for the learner once and for every stage's frozen copy of it). */
  model: () => Module;
  /** The training data of each task (e.g. classSubset per pair of digits). */
  tasks: { name: string; classes: number[]; train: ImageDataset }[];
  scenario: LifelongScenario;
  method: LifelongMethod;
  epochs: number;
  batchSize?: number;
  optimizer: OptimizerSpec;
  transforms?: Transforms;
  seed: number;
  /** LwF's temperature (default 2, as van de Ven & Tolias). */
  temperature?: number;
  log?: (line: string) => void;
}

/**
 * The stages of a lifelong run: one per task, each training the learner (loaded from the previous stage's last
 * weights) on the task's data; with LwF, the previous stage's weights also become a frozen teacher. The current task
 * is weighted 1/k and the old tasks' distillation (k−1)/k at the k-th task, as van de Ven & Tolias weight current and
 * replayed data. Returns the stages and the learner (after runStages: the model after the last task).
 */
export function lifelongStages(o: LifelongOptions): { stages: StageSpec[]; learner: Module; release(): void } {
  if (!o.tasks.length) throw new Error('lifelong: no tasks');
  const learner = o.model();
  const made: Module[] = [];
  const seen = (k: number) => o.tasks.slice(0, k).flatMap((t) => t.classes);
  const stages = o.tasks.map((task, k): StageSpec => ({
    name: `task${k + 1}`,
    build: (ctx) => {
      if (k > 0) loadWeights(learner, ctx.checkpoint(`task${k}`, undefined, 'last'));
      const active = o.scenario === 'task' ? task.classes : seen(k + 1);
      const terms: EngineOptions['terms'] = [{ loss: 'ce_classes', name: 'current', student: 'learner.logits', teacher: 'labels', options: { classes: active }, weight: 1 / (k + 1) }];
      const roles: EngineOptions['roles'] = [{ name: 'learner', model: learner, optimizer: o.optimizer }];
      if (o.method === 'lwf' && k > 0) {
        const old = o.model();
        made.push(old);
        loadWeights(old, ctx.checkpoint(`task${k}`, undefined, 'last'));
        roles.push({ name: 'previous', model: old });
        const groups = o.scenario === 'task' ? o.tasks.slice(0, k).map((t) => t.classes) : [seen(k)];
        terms.push({ loss: 'kd_classes', name: 'old', student: 'learner.logits', teacher: 'previous.logits', options: { groups, temperature: o.temperature ?? 2 }, weight: k / (k + 1) });
      }
      return {
        roles, terms, epochs: o.epochs, seed: o.seed + k, progress: false, log: o.log,
        train: new DataLoader(task.train, { batchSize: o.batchSize ?? 128, shuffle: true, seed: o.seed + k, transforms: o.transforms ?? [] }),
      };
    },
  }));
  return { stages, learner, release: () => { for (const m of made) m.dispose(); learner.dispose(); } };
}

/**
 * Accuracy (%) on each task's test data: task-incremental, the argmax over the task's own classes; class-incremental,
 * over every class of the tasks.
 */
export function lifelongAccuracy(model: Module, tests: { classes: number[]; test: ImageDataset }[], scenario: LifelongScenario, transforms: Transforms = []): number[] {
  const all = tests.flatMap((t) => t.classes);
  const was = model.training;
  model.eval();
  try {
    return tests.map(({ classes, test }) => {
      const cls = scenario === 'task' ? classes : all;
      const loader = new DataLoader(test, { batchSize: 500, transforms });
      let correct = 0;
      for (let i = 0; i < loader.length; i++) {
        const b = loader.batchAt(i);
        try {
          correct += tidy(() => noGrad(() => {
            const logits = model.call(b.x) as Tensor;
            const best = pick('lifelong', logits, cls).argmax(1);
            const mapped = tensor(cls, { dtype: 'int64', device: logits.device }).indexSelect(0, best);
            return ops.eq_Tensor(mapped, b.y).sum().item();
          }));
        } finally {
          b.dispose();
        }
      }
      return (100 * correct) / test.length;
    });
  } finally {
    model.train(was);
  }
}
