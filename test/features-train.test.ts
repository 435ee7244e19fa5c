// Feature matches inside the training loop: distill() with FitNets + AT + RKD matches on an MNIST subset, the loss
// terms logged per epoch, projections saved beside (not inside) the student, an interrupted run resumed to the same
// weights, and config matches checked before anything trains.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { loadSafetensors, manualSeed, dispose } from '../src/torch';
import { loadMnist, normalize } from '../src/data';
import { LeNet5, LeNet5Half, registerBuiltinModels } from '../src/models';
import { MatchSpec, TrainingInterrupted, distill } from '../src/distill';
import { checkMatches, loadConfig, validateConfig } from '../src/run';
import { checkLeaks, maxDiff } from './helpers';

const MATCHES: MatchSpec[] = [
  { teacher: 'conv1', student: 'conv', loss: 'at', weight: 100 }, // [6, 28, 28] vs [3, 24, 24]: resized
  { teacher: 'conv2', student: 'conv', loss: 'hint', weight: 0.1 }, // [16, 10, 10] vs [3, 24, 24]: 1x1 conv + BN + pool
  { teacher: 'fc2', student: 'logits', loss: 'rkd' },
];

describe('feature matches in training', () => {
  checkLeaks();
  const quiet = { progress: false, log: () => {} };
  const norm = [normalize([0.1307], [0.3081])];
  it('logs every term, keeps projections out of the student, and resumes an interrupted run to the same weights', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-feat-'));
    const train = loadMnist({ split: 'train', limit: 640 });
    const test = loadMnist({ split: 'test', limit: 200 });
    manualSeed(0);
    const teacher = new LeNet5();
    const run = async (out: string, student: LeNet5Half, extra: object = {}) =>
      distill({ teacher, student, data: { train, test }, outDir: path.join(dir, out), epochs: 2, alpha: 0.3, transforms: norm, matches: MATCHES, batchSize: 64, ...quiet, ...extra });
    manualSeed(5);
    const a = new LeNet5Half();
    const s = await run('a', a);
    assert.equal(s.teacher_cache, 'off', 'feature matches run the teacher live');
    const metrics = fs.readFileSync(path.join(dir, 'a', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(Object.keys(metrics[0].terms), ['at:conv', 'hint:conv', 'rkd:logits']);
    assert.ok(metrics.every((m) => Object.values(m.terms as Record<string, number>).every((v) => Number.isFinite(v) && v > 0)));
    const best = loadSafetensors(path.join(dir, 'a', 'best.safetensors'));
    assert.deepEqual(Object.keys(best.tensors).sort(), ['conv.bias', 'conv.weight', 'fc.bias', 'fc.weight']);
    dispose(best.tensors);
    const proj = loadSafetensors(path.join(dir, 'a', 'last.proj.safetensors'));
    assert.deepEqual(Object.keys(proj.tensors).sort(), ['1.bn.bias', '1.bn.num_batches_tracked', '1.bn.running_mean', '1.bn.running_var', '1.bn.weight', '1.conv.weight']);
    dispose(proj.tensors);

    // the same run stopped after its first step (the signal is already aborted), then resumed: same weights
    manualSeed(5);
    const b = new LeNet5Half();
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(run('b', b, { signal: ac.signal }), (e: Error) => e instanceof TrainingInterrupted && e.step === 1);
    const sb = await run('b', b, { resume: true });
    assert.equal(sb.epochs, 2);
    const wa = loadSafetensors(path.join(dir, 'a', 'last.safetensors')), wb = loadSafetensors(path.join(dir, 'b', 'last.safetensors'));
    for (const k of Object.keys(wa.tensors)) assert.equal(maxDiff(wa.tensors[k], wb.tensors[k]), 0, k);
    dispose([...Object.values(wa.tensors), ...Object.values(wb.tensors)]);
    const la = fs.readFileSync(path.join(dir, 'a', 'metrics.jsonl'), 'utf8').split('\n').map((l) => l && JSON.parse(l).terms);
    const lb = fs.readFileSync(path.join(dir, 'b', 'metrics.jsonl'), 'utf8').split('\n').map((l) => l && JSON.parse(l).terms);
    assert.deepEqual(lb, la);
    b.dispose();
    a.dispose();
    teacher.dispose();
    train.dispose();
    test.dispose();
    fs.rmSync(dir, { recursive: true });
  });
  it('config matches are checked before training: paths, loss names, impossible shapes', () => {
    registerBuiltinModels();
    const base = { data: { dataset: 'mnist' }, teacher: { model: 'lenet5' }, student: { model: 'lenet5-half' } };
    const cfg = (matches: unknown[]) => validateConfig({ ...base, distill: { matches } });
    assert.doesNotThrow(() => checkMatches(cfg([{ teacher: 'conv2', student: 'conv', loss: 'hint' }]), 'x.yaml'));
    assert.throws(() => checkMatches(cfg([{ teacher: 'conv3', student: 'conv', loss: 'hint' }]), 'x.yaml'),
      /x\.yaml: distill\.matches: matches\[0\]\.teacher: 'conv3' is not a module of the teacher \(LeNet5\)\. Closest: conv1, conv2/);
    assert.throws(() => checkMatches(cfg([{ teacher: 'conv2', student: 'conv', loss: 'fitnet' }]), 'x.yaml'), /unknown loss 'fitnet'/);
    assert.throws(() => checkMatches(cfg([{ teacher: 'fc1', student: 'conv', loss: 'hint' }]), 'x.yaml'), /differ in rank; no projection maps one onto the other/);
    assert.throws(() => cfg([{ teacher: 'fc1', student: 'conv', loss: 'hint', wieght: 2 }]), /distill\.matches\.0\.wieght: unknown key; did you mean 'distill\.matches\.0\.weight'\?/);
  });
});

describe('examples/features-mnist-lenet.yaml', () => {
  it('validates and its matches pass the pre-training checks', () => {
    registerBuiltinModels();
    const file = path.join(__dirname, '..', '..', 'examples', 'features-mnist-lenet.yaml');
    const cfg = loadConfig(file);
    assert.equal(cfg.distill.matches.length, 3);
    checkMatches(cfg, file);
  });
});
