import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { manualSeed, tensor, tidy } from '../src/torch';
import { loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half } from '../src/models';
import { checkSchedule, distill, dynamicTemperature, kdLoss, kdLossPerSample, scheduleValue } from '../src/distill';
import { validateConfig } from '../src/run';
import { checkLeaks } from './helpers';

const at = (epoch: number, step = 0) => ({ epoch, step, stepsPerEpoch: 10, epochs: 4 });

describe('schedules', () => {
  checkLeaks();
  it('linear, cosine and warm-up values over training', () => {
    assert.equal(scheduleValue(3, at(2)), 3);
    const lin = { kind: 'linear', from: 8, to: 2 } as const;
    assert.deepEqual([0, 1, 2, 4].map((e) => scheduleValue(lin, at(e))), [8, 6.5, 5, 2]);
    assert.equal(scheduleValue(lin, at(1, 5)), 8 - 6 * (1.5 / 4));
    assert.equal(scheduleValue({ kind: 'linear', from: 1, to: 0, epochs: 2 }, at(3)), 0, 'held after its epochs');
    const cos = { kind: 'cosine', from: 4, to: 1 } as const;
    assert.equal(scheduleValue(cos, at(0)), 4);
    assert.ok(Math.abs(scheduleValue(cos, at(2)) - 2.5) < 1e-12);
    assert.equal(scheduleValue(cos, at(4)), 1);
    assert.equal(scheduleValue({ kind: 'warmup', value: 10, epochs: 2 }, at(0, 5)), 2.5);
    assert.equal(scheduleValue({ kind: 'warmup', value: 10, epochs: 2 }, at(3)), 10);
    assert.throws(() => checkSchedule({ kind: 'step' } as any, 'distill.alpha'), /distill\.alpha: unknown schedule kind 'step'/);
    assert.throws(() => checkSchedule({ kind: 'linear', from: 1 } as any, 'x'), /x\.to: expected a finite number/);
  });
  it('dynamic temperatures (flsw, cwsm) and the per-sample KD loss, against hand computation', () => {
    tidy(() => {
      const s = [[1, 2, 0.5], [0, -1, 3]], t = [[2, 1, 0], [0.5, 0.5, 2]];
      const S = tensor(s, { dtype: 'float64' }), Tt = tensor(t, { dtype: 'float64' });
      const norm = (v: number[]) => Math.sqrt(v.reduce((a, b) => a + b * b, 0));
      // flsw, beta 2, gamma 1.5
      const w = s.map((v, i) => {
        const cos = v.reduce((a, x, j) => a + (x / (norm(v) + 1e-4)) * (t[i][j] / (norm(t[i]) + 1e-4)), 0);
        return (1 - cos) ** 1.5;
      });
      const mw = (w[0] + w[1]) / 2;
      const flsw = dynamicTemperature({ kind: 'flsw', beta: 2, gamma: 1.5 }, S, Tt, 4).toArray();
      flsw.forEach((v, i) => assert.ok(Math.abs(v - (4 + 2 * (mw - w[i]))) < 1e-12, `flsw[${i}] ${v}`));
      // cwsm, beta 0.5
      const pmax = s.map((v) => Math.max(...v.map((x) => Math.exp(x))) / v.reduce((a, x) => a + Math.exp(x), 0));
      const wc = pmax.map((p) => 1 / (p + 1e-3));
      const cwsm = dynamicTemperature({ kind: 'cwsm', beta: 0.5 }, S, Tt, 3).toArray();
      cwsm.forEach((v, i) => assert.ok(Math.abs(v - (3 + 0.5 * ((wc[0] + wc[1]) / 2 - wc[i]))) < 1e-12, `cwsm[${i}] ${v}`));
      // with one temperature for every sample, the per-sample loss is the usual KD loss
      const same = kdLossPerSample(S, Tt, tensor([2.5, 2.5], { dtype: 'float64' })).item();
      assert.ok(Math.abs(same - kdLoss(S, Tt, { temperature: 2.5 }).item()) < 1e-12);
      // and it weights each sample by its own T^2 KL
      const kl = (i: number, T: number) => {
        const ps = s[i].map((x) => Math.exp(x / T)), pt = t[i].map((x) => Math.exp(x / T));
        const zs = ps.reduce((a, b) => a + b), zt = pt.reduce((a, b) => a + b);
        return pt.reduce((a, p, j) => a + (p / zt) * Math.log(p / zt / (ps[j] / zs)), 0);
      };
      const mixed = kdLossPerSample(S, Tt, tensor([1, 4], { dtype: 'float64' })).item();
      assert.ok(Math.abs(mixed - (1 * kl(0, 1) + 16 * kl(1, 4)) / 2) < 1e-12);
    });
  });
  it('a scheduled temperature and alpha drive training and are logged per epoch', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-sched-'));
    const train = loadMnist({ split: 'train', limit: 256 }), test = loadMnist({ split: 'test', limit: 100 });
    manualSeed(0);
    const teacher = new LeNet5(), student = new LeNet5Half();
    await distill({
      teacher, student, data: { train, test }, outDir: dir, epochs: 2, transforms: [normalize([0.1307], [0.3081])], progress: false, log: () => {},
      temperature: { kind: 'linear', from: 8, to: 2 }, alpha: { kind: 'warmup', value: 0.5, epochs: 2 }, dynamicTemperature: { kind: 'cwsm', beta: 0.1 },
    });
    const m = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(m.map((x) => [x.temperature, x.alpha]), [[5, 0.25], [2, 0.5]]);
    assert.ok(m.every((x) => Number.isFinite(x.soft) && x.soft > 0));
    teacher.dispose();
    student.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('configs take schedules and reject bad ones with the key named', () => {
    const base = { data: { dataset: 'mnist' }, teacher: { model: 'lenet5' }, student: { model: 'lenet5-half' } };
    const c = validateConfig({ ...base, distill: { temperature: { kind: 'cosine', from: 8, to: 2 }, matches: [{ teacher: 'conv2', student: 'conv', loss: 'hint', weight: { kind: 'linear', from: 1, to: 0 } }] } });
    assert.deepEqual(c.distill.temperature, { kind: 'cosine', from: 8, to: 2 });
    assert.throws(() => validateConfig({ ...base, distill: { temperature: { kind: 'exp', from: 8, to: 2 } } }), /distill\.temperature/);
    assert.throws(() => validateConfig({ ...base, distill: { dynamicTemperature: { kind: 'flsw', beta: 1 } } }), /distill\.dynamicTemperature\.gamma/);
  });
});
