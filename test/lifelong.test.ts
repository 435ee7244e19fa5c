// Lifelong learning as engine stages (src/distill/lifelong.ts): the class-restricted losses against their formulas,
// and a two-task split-MNIST chain: LwF's frozen teacher is the first task's model, LwF keeps that model's outputs
// on the first task's head closer than fine-tuning does, and in the class-incremental scenario both lose the first
// task (the known result: van de Ven & Tolias report LwF's class-IL accuracy near the last task's share).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Tensor, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { F, loadWeights } from '../src/nn';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { Mlp } from '../src/models/mlp';
import { runStages } from '../src/distill';
import { kdLoss } from '../src/distill/losses';
import { ceOverClasses, classSubset, kdOverClasses, lifelongAccuracy, lifelongStages } from '../src/distill/lifelong';
import { checkLeaks } from './helpers';

describe('lifelong learning (LwF) as stages', () => {
  checkLeaks();
  it('ce_classes and kd_classes restrict the logits to the classes given', () => {
    tidy(() => {
      const s = tensor([[1.0, -0.5, 0.25, 2.0], [0.3, 0.1, -1.2, 0.7]]), t = tensor([[2.0, 0.0, -1.0, 0.5], [-0.5, 1.5, 0.5, 0.1]]);
      const y = tensor([3, 1], { dtype: 'int64' });
      const want = F.crossEntropy(tensor([[-0.5, 2.0], [0.1, 0.7]]), tensor([1, 0], { dtype: 'int64' })).item();
      assert.ok(Math.abs(ceOverClasses(s, y, [1, 3]).item() - want) < 1e-6);
      assert.throws(() => ceOverClasses(s, tensor([0, 1], { dtype: 'int64' }), [1, 3]), /ce_classes: label 0 is not one of the classes \[1, 3\]/);
      const pick = (x: number[][], c: number[]) => tensor(x.map((r) => c.map((j) => r[j])));
      const S = [[1.0, -0.5, 0.25, 2.0], [0.3, 0.1, -1.2, 0.7]], T = [[2.0, 0.0, -1.0, 0.5], [-0.5, 1.5, 0.5, 0.1]];
      const two = (kdLoss(pick(S, [0, 1]), pick(T, [0, 1]), { temperature: 2 }).item() + kdLoss(pick(S, [2, 3]), pick(T, [2, 3]), { temperature: 2 }).item()) / 2;
      assert.ok(Math.abs(kdOverClasses(s, t, [[0, 1], [2, 3]], 2).item() - two) < 1e-6);
      assert.throws(() => kdOverClasses(s, t, [[0, 4]]), /kd_classes: class 4 is outside the logits \[2, 4\]/);
    });
  });

  it("split MNIST, two tasks: LwF keeps the first model's outputs on the old head closer than fine-tuning", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-lwf-'));
    const train = loadMnist({ split: 'train', limit: 3000 }), test = loadMnist({ split: 'test', limit: 1000 });
    const norm = [normalize([0.1307], [0.3081])];
    const split = [[0, 1], [2, 3]];
    const tasks = split.map((c) => ({ name: c.join(''), classes: c, train: classSubset(train, c) }));
    const tests = split.map((c) => ({ classes: c, test: classSubset(test, c) }));
    const acc: Record<string, { task: number[]; class: number[] }> = {};
    const drift: Record<string, number> = {};
    try {
      for (const method of ['finetune', 'lwf'] as const) {
        manualSeed(0);
        const run = lifelongStages({
          model: () => new Mlp({ widths: [784, 100, 100, 4] }), tasks, scenario: 'class', method, epochs: 2, batchSize: 64,
          optimizer: { kind: 'adam', lr: 1e-3 }, transforms: norm, seed: 0, log: () => {},
        });
        try {
          const r = await runStages({ outDir: path.join(dir, method), stages: run.stages, log: () => {} });
          assert.deepEqual(r.stages.map((s) => s.name), ['task1', 'task2']);
          acc[method] = { task: lifelongAccuracy(run.learner, tests, 'task', norm), class: lifelongAccuracy(run.learner, tests, 'class', norm) };
          // KL·T² on the first task's head between the model after task 1 and the final one, on task 1's test images
          const first = new Mlp({ widths: [784, 100, 100, 4] });
          loadWeights(first, path.join(dir, method, 'task1', 'last.safetensors'));
          first.eval();
          run.learner.eval();
          const b = new DataLoader(tests[0].test, { batchSize: tests[0].test.length, transforms: norm }).batchAt(0);
          drift[method] = tidy(() => noGrad(() => kdOverClasses(run.learner.call(b.x) as Tensor, first.call(b.x) as Tensor, [[0, 1]], 2).item()));
          b.dispose();
          first.dispose();
          const m = JSON.parse(fs.readFileSync(path.join(dir, method, 'task2', 'metrics.jsonl'), 'utf8').trim().split('\n').pop()!);
          assert.deepEqual(Object.keys(m.terms).sort(), method === 'lwf' ? ['current', 'old'] : ['current']);
        } finally {
          run.release();
        }
      }
      // the second task is learnt either way; with the first task's classes inactive in the new task's cross-entropy,
      // both lose the first task class-incrementally; LwF's old term keeps the first head's outputs
      for (const m of ['finetune', 'lwf']) assert.ok(acc[m].class[1] > 80 && acc[m].task[1] > 80, `${m}: task 2 ${JSON.stringify(acc[m])}`);
      assert.ok(acc.finetune.class[0] < 5, `fine-tuning keeps ${acc.finetune.class[0]} % of task 1 (class-IL)`);
      assert.ok(drift.lwf < drift.finetune / 2, `old-head drift: LwF ${drift.lwf}, fine-tuning ${drift.finetune}`);
    } finally {
      for (const t of tasks) t.train.dispose();
      for (const t of tests) t.test.dispose();
      train.dispose();
      test.dispose();
      fs.rmSync(dir, { recursive: true });
    }
  });
});
