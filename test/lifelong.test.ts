// Lifelong learning as engine stages (src/distill/lifelong.ts): the class-restricted losses against hand-computed
// values, the scenarios' output units and labels (Domain-IL's shared head), permuted MNIST's seeded permutations, the
// batches of joint training, LwF's 1/k and (k−1)/k weights, and a two-task split-MNIST chain: LwF's frozen teacher is
// the first task's model and keeps that model's outputs on the first task's head closer than fine-tuning does.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { F, Module, loadWeights, saveWeights } from '../src/nn';
import { DataLoader, ImageDataset, loadMnist } from '../src/data';
import { Mlp } from '../src/models/mlp';
import { runStages } from '../src/distill';
import type { StageContext } from '../src/distill/stages';
import {
  TaskBatches, ceOverClasses, ceOverGroups, classSubset, kdOverClasses, lifelongAccuracy, lifelongStages, outputUnits, padPermute, permutedMnistTasks,
  pixelPermutation, splitMnistTasks, taskUnits,
} from '../src/distill/lifelong';
import { checkLeaks } from './helpers';

const S = [[1.0, -0.5, 0.25, 2.0], [0.3, 0.1, -1.2, 0.7]], T = [[2.0, 0.0, -1.0, 0.5], [-0.5, 1.5, 0.5, 0.1]];
const lse = (xs: number[]) => Math.log(xs.reduce((a, v) => a + Math.exp(v), 0));
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-5, `${what}: ${a} against ${b}`);

/** A tiny image set whose single pixel holds the label (so a model can read it back). */
function tinySet(labels: number[]): ImageDataset {
  return new ImageDataset('tiny', tensor(Uint8Array.from(labels), { shape: [labels.length, 1, 1, 1] }), tensor(labels, { dtype: 'int64' }), []);
}

describe('lifelong learning (LwF) as stages', () => {
  checkLeaks();
  it('ce_classes and kd_classes against hand-computed values', () => {
    tidy(() => {
      const s = tensor(S), t = tensor(T);
      // one group: the softmax over classes 1 and 3 only
      const y = tensor([3, 1], { dtype: 'int64' });
      const one = ((lse([-0.5, 2.0]) - 2.0) + (lse([0.1, 0.7]) - 0.1)) / 2;
      close(ceOverClasses(s, y, [1, 3]).item(), one, 'ce over [1, 3]');
      assert.throws(() => ceOverClasses(s, tensor([0, 1], { dtype: 'int64' }), [1, 3]), /ce_classes: label 0 is not one of the classes \[1, 3\]/);
      // Task-IL heads: sample 0 (label 2) over [2, 3], sample 1 (label 1) over [0, 1]
      const heads = ((lse([0.25, 2.0]) - 0.25) + (lse([0.3, 0.1]) - 0.1)) / 2;
      close(ceOverGroups(s, tensor([2, 1], { dtype: 'int64' }), [[0, 1], [2, 3]]).item(), heads, 'ce over heads');
      // kd per group, averaged: KL(p_t ‖ p_s)·T² with softmaxes over each group at T = 2
      const kl = (sv: number[], tv: number[], temp: number) => {
        const ls = sv.map((v) => v / temp - lse(sv.map((u) => u / temp))), lt = tv.map((v) => v / temp - lse(tv.map((u) => u / temp)));
        return lt.reduce((a, l, i) => a + Math.exp(l) * (l - ls[i]), 0) * temp * temp;
      };
      const g = (rows: number[][], c: number[]) => rows.map((r) => c.map((j) => r[j]));
      const mean = (f: (i: number) => number) => (f(0) + f(1)) / 2;
      const two = (mean((i) => kl(g(S, [0, 1])[i], g(T, [0, 1])[i], 2)) + mean((i) => kl(g(S, [2, 3])[i], g(T, [2, 3])[i], 2))) / 2;
      close(kdOverClasses(s, t, [[0, 1], [2, 3]], 2).item(), two, 'kd over two groups');
      // Class-IL as van de Ven & Tolias: the student's softmax over [0, 1, 2], the teacher's over [0, 1] padded with 0
      const padded = mean((i) => {
        const ls = [0, 1, 2].map((j) => S[i][j] / 2 - lse([0, 1, 2].map((u) => S[i][u] / 2)));
        const lt = [0, 1].map((j) => T[i][j] / 2 - lse([0, 1].map((u) => T[i][u] / 2)));
        return lt.reduce((a, l, j) => a + Math.exp(l) * (l - ls[j]), 0) * 4;
      });
      close(kdOverClasses(s, t, [[0, 1]], 2, [0, 1, 2]).item(), padded, 'kd padded over [0, 1, 2]');
      assert.ok(padded > mean((i) => kl(g(S, [0, 1])[i], g(T, [0, 1])[i], 2)), 'the new class takes probability, which the padded target charges for');
      assert.throws(() => kdOverClasses(s, t, [[0, 4]]), /kd_classes: class 4 is outside the logits \[2, 4\]/);
      assert.throws(() => kdOverClasses(s, t, [[0, 3]], 2, [0, 1, 2]), /kd_classes: class 3 of a group is not in over \[0, 1, 2\]/);
    });
  });

  it('Domain-IL shares one head: labels become the place of the class within its task', () => {
    const split = [[0, 1], [2, 3], [4, 5]];
    assert.deepEqual(taskUnits(split.map((c) => ({ classes: c })), 'domain'), [[0, 1], [0, 1], [0, 1]]);
    assert.deepEqual(taskUnits(split.map((c) => ({ classes: c })), 'class'), [[0, 1], [2, 3], [4, 5]]);
    assert.equal(outputUnits(split.map((c) => ({ classes: c })), 'domain'), 2);
    assert.equal(outputUnits([{ classes: [0, 1, 2] }, { classes: [0, 1, 2] }], 'task'), 6);
    assert.throws(() => taskUnits([{ classes: [0, 1] }, { classes: [2, 3, 4] }], 'domain'), /every task needs 2 classes; a task has \[2, 3, 4\]/);
    const all = tinySet([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    const tasks = splitMnistTasks(all, all, split);
    try {
      // the batches of task 3 (digits 4, 5) carry labels 0 and 1 in Domain-IL, 4 and 5 in Class-IL
      for (const [scenario, want] of [['domain', [0, 1]], ['class', [4, 5]]] as const) {
        const src = new TaskBatches([{ task: tasks[2], units: taskUnits(tasks, scenario)[2], seed: 0 }], 3, 2);
        for (let i = 0; i < 3; i++) {
          const b = src.batchAt(i);
          const px = tidy(() => b.x.mul(255).round().flatten().toArray()), y = b.y.toArray();
          assert.deepEqual(y, px.map((d) => want[d - 4]), `${scenario}: batch ${i} labels ${y} for digits ${px}`);
          b.dispose();
        }
        src.dispose();
      }
      // a model answering the parity of the digit on a 2-unit head is right on every task in Domain-IL
      class Parity extends Module {
        forward(x: Tensor): Tensor {
          return tidy(() => {
            const odd = x.flatten(1).mul(255).round().remainder(2);
            return ops2(odd);
          });
        }
      }
      const ops2 = (odd: Tensor) => F.oneHot(odd.squeeze(1).long(), 2).float();
      const m = new Parity();
      assert.deepEqual(lifelongAccuracy(m, tasks, 'domain'), [100, 100, 100]);
      // in Class-IL the same 2 outputs only name classes 0 and 1
      assert.throws(() => lifelongAccuracy(m, tasks, 'class'), /lifelong: class 2 is outside the logits/);
    } finally {
      for (const t of tasks) {
        t.train.dispose();
        t.test!.dispose();
      }
      all.dispose();
    }
  });

  it('permuted MNIST: a seeded bijection of the padded pixels per task, the first task unpermuted', () => {
    const p = pixelPermutation(1024, 7);
    assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1024 }, (_, i) => i));
    assert.deepEqual(pixelPermutation(1024, 7), p);
    assert.notDeepEqual(pixelPermutation(1024, 8), p);
    assert.throws(() => padPermute(0, Int32Array.from([0, 0, 1])), /padPermute: perm is not a permutation of 0..2/);
    const imgs = tensor(Uint8Array.from({ length: 2 * 784 }, (_, i) => (i * 7) % 251), { shape: [2, 1, 28, 28] });
    const ds = new ImageDataset('digits', imgs, tensor([3, 8], { dtype: 'int64' }), []);
    const tasks = permutedMnistTasks(ds, null, { tasks: 3, seed: 5 });
    try {
      assert.equal(tasks.length, 3);
      assert.deepEqual(tasks.map((t) => t.classes), [0, 1, 2].map(() => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
      const x = tidy(() => ds.images.float().div(255));
      const outs = tasks.map((t) => tidy(() => t.transforms![0].apply(x, null as never)));
      const padded = tidy(() => F.pad(x, [2, 2, 2, 2]));
      try {
        for (const o of outs) assert.deepEqual(o.shape, [2, 1, 32, 32]);
        assert.deepEqual(outs[0].toArray(), padded.toArray(), 'task 1 is only padded');
        const flat = tidy(() => padded.reshape([2, 1024]).toArray());
        for (const k of [1, 2]) {
          const perm = pixelPermutation(1024, 5 * 1000 + k);
          const want = [0, 1].flatMap((b) => [...perm].map((j) => flat[b * 1024 + j]));
          assert.deepEqual(outs[k].toArray(), want, `task ${k + 1}: output pixel i is padded pixel perm[i]`);
        }
        assert.notDeepEqual(outs[1].toArray(), outs[2].toArray());
        // with firstIdentity false every task is permuted (van de Ven & Tolias's seeds other than 0)
        const again = permutedMnistTasks(ds, null, { tasks: 2, seed: 5, firstIdentity: false });
        assert.match(again[0].transforms![0].name, /seed=5000/);
      } finally {
        for (const o of outs) o.dispose();
        padded.dispose();
        x.dispose();
      }
    } finally {
      ds.dispose();
    }
  });

  it('stages: LwF weighs the current task 1/k and the old model (k−1)/k; joint training sees every task so far', async () => {
    const all = tinySet([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    const tasks = splitMnistTasks(all, null, [[0, 1], [2, 3], [4, 5]]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-lwf-w-'));
    const file = path.join(dir, 'w.safetensors');
    const model = () => new Mlp({ widths: [1, 4, 6] });
    const tmp = model();
    saveWeights(tmp, file);
    tmp.dispose();
    const ctx: StageContext = { dir, checkpoint: () => file };
    try {
      for (const method of ['lwf', 'finetune', 'joint'] as const)
        for (const scenario of ['task', 'class'] as const) {
          const run = lifelongStages({ model, tasks, scenario, method, iters: 4, batchSize: 6, optimizer: { kind: 'adam', lr: 1e-3 }, seed: 0 });
          try {
            for (const [k, stage] of run.stages.entries()) {
              const spec = await stage.build(ctx);
              const byName = Object.fromEntries(spec.terms.map((t) => [t.name, t]));
              if (method === 'lwf' && k > 0) {
                assert.deepEqual(Object.keys(byName), ['current', 'old']);
                close(byName.current.weight as number, 1 / (k + 1), `${scenario} task ${k + 1}: current`);
                close(byName.old.weight as number, k / (k + 1), `${scenario} task ${k + 1}: old`);
                assert.deepEqual(spec.roles.map((r) => r.name), ['learner', 'previous']);
                const o = byName.old.options as { groups: number[][]; over?: number[] };
                if (scenario === 'task') assert.deepEqual(o, { groups: [[0, 1], [2, 3]].slice(0, k), temperature: 2 });
                else assert.deepEqual(o, { groups: [[0, 1, 2, 3].slice(0, 2 * k)], over: [0, 1, 2, 3, 4, 5].slice(0, 2 * k + 2), temperature: 2 });
              } else {
                assert.deepEqual(Object.keys(byName), ['current']);
                assert.equal(byName.current.weight, 1);
              }
              // the classes each batch holds: the current task's, or (joint) every task's so far
              const seen = new Set<number>();
              for (let i = 0; i < spec.train.length; i++) {
                const b = await spec.train.batchAt(i);
                for (const c of b.y.toArray()) seen.add(c);
                b.dispose();
              }
              const want = method === 'joint' ? [0, 1, 2, 3, 4, 5].slice(0, 2 * k + 2) : [2 * k, 2 * k + 1];
              assert.deepEqual([...seen].sort(), want, `${method} ${scenario} task ${k + 1}`);
              const groups = (byName.current.options as { groups: number[][] }).groups;
              if (scenario === 'task') assert.deepEqual(groups, method === 'joint' ? [[0, 1], [2, 3], [4, 5]].slice(0, k + 1) : [[2 * k, 2 * k + 1]]);
              else assert.deepEqual(groups, [[0, 1, 2, 3, 4, 5].slice(0, 2 * k + 2)]);
              stage.release?.();
            }
          } finally {
            run.release();
          }
        }
    } finally {
      for (const t of tasks) t.train.dispose();
      all.dispose();
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('a chain stopped after its first task resumes to the same bytes as one run straight through', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-lwf-r-'));
    const train = loadMnist({ split: 'train', limit: 1000 });
    const tasks = splitMnistTasks(train, null, [[0, 1], [2, 3]]);
    const chain = () => {
      manualSeed(3);
      return lifelongStages({
        model: () => new Mlp({ widths: [784, 32, 4] }), tasks, scenario: 'class', method: 'lwf', iters: 6, batchSize: 32,
        optimizer: { kind: 'adam', lr: 1e-3 }, seed: 3, log: () => {},
      });
    };
    try {
      const whole = chain();
      await runStages({ outDir: path.join(dir, 'whole'), stages: whole.stages, log: () => {} });
      whole.release();
      const first = chain();
      await runStages({ outDir: path.join(dir, 'parts'), stages: first.stages.slice(0, 1), log: () => {} });
      first.release();
      const rest = chain();
      const r = await runStages({ outDir: path.join(dir, 'parts'), stages: rest.stages, resume: true, log: () => {} });
      rest.release();
      assert.deepEqual(r.stages.map((s) => s.ran), [false, true]);
      for (const f of ['task1/last.safetensors', 'task2/last.safetensors'])
        assert.ok(fs.readFileSync(path.join(dir, 'whole', f)).equals(fs.readFileSync(path.join(dir, 'parts', f))), `${f} differs`);
    } finally {
      for (const t of tasks) t.train.dispose();
      train.dispose();
      fs.rmSync(dir, { recursive: true });
    }
  });

  it("split MNIST, two tasks: LwF keeps the first model's outputs on the old head closer than fine-tuning", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-lwf-'));
    const train = loadMnist({ split: 'train', limit: 3000 }), test = loadMnist({ split: 'test', limit: 1000 });
    const tasks = splitMnistTasks(train, test, [[0, 1], [2, 3]]);
    const acc: Record<string, { task: number[]; class: number[] }> = {};
    const drift: Record<string, number> = {};
    try {
      for (const method of ['finetune', 'lwf'] as const) {
        manualSeed(0);
        const run = lifelongStages({
          model: () => new Mlp({ widths: [784, 100, 100, 4] }), tasks, scenario: 'class', method, iters: 20, batchSize: 64,
          optimizer: { kind: 'adam', lr: 1e-3 }, seed: 0, classKd: 'old', log: () => {},
        });
        try {
          const r = await runStages({ outDir: path.join(dir, method), stages: run.stages, log: () => {} });
          assert.deepEqual(r.stages.map((s) => s.name), ['task1', 'task2']);
          acc[method] = { task: lifelongAccuracy(run.learner, tasks, 'task'), class: lifelongAccuracy(run.learner, tasks, 'class') };
          // KL·T² on the first task's head between the model after task 1 and the final one, on task 1's test images
          const first = new Mlp({ widths: [784, 100, 100, 4] });
          loadWeights(first, path.join(dir, method, 'task1', 'last.safetensors'));
          first.eval();
          run.learner.eval();
          const b = new DataLoader(tasks[0].test!, { batchSize: tasks[0].test!.length }).batchAt(0);
          drift[method] = tidy(() => noGrad(() => kdOverClasses(run.learner.call(b.x) as Tensor, first.call(b.x) as Tensor, [[0, 1]], 2).item()));
          b.dispose();
          first.dispose();
          const m = JSON.parse(fs.readFileSync(path.join(dir, method, 'task2', 'metrics.jsonl'), 'utf8').trim().split('\n').pop()!);
          assert.deepEqual(Object.keys(m.terms).sort(), method === 'lwf' ? ['current', 'old'] : ['current']);
        } finally {
          run.release();
        }
      }
      // the second task is learnt either way; fine-tuning loses the first task class-incrementally; LwF's old term
      // keeps the first head's outputs
      for (const m of ['finetune', 'lwf']) assert.ok(acc[m].class[1] > 80 && acc[m].task[1] > 80, `${m}: task 2 ${JSON.stringify(acc[m])}`);
      assert.ok(acc.finetune.class[0] < 5, `fine-tuning keeps ${acc.finetune.class[0]} % of task 1 (class-IL)`);
      assert.ok(drift.lwf < drift.finetune / 2, `old-head drift: LwF ${drift.lwf}, fine-tuning ${drift.finetune}`);
    } finally {
      for (const t of tasks) {
        t.train.dispose();
        t.test!.dispose();
      }
      train.dispose();
      test.dispose();
      fs.rmSync(dir, { recursive: true });
    }
  });
});
