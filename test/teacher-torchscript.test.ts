// TorchScript teachers: the fixture files (test/fixtures/make_torchscript_fixtures.py, PyTorch 1.13) hold one
// LeNet5Half traced, and scripted with tuple and dict outputs; the zoo's lenet5-half loaded with the same weights
// (ts_lenet_half.safetensors) must give the same logits and named intermediate outputs within 1e-4. Corrupt,
// truncated and empty files, wrong input shapes and unknown output names fail naming the file, the shapes and the
// closest names. distill() trains a student from a .pt teacher.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ScriptModule, Tensor, dispose, manualSeed, noGrad, ops, randn, tidy } from '../src/torch';
import { Module, loadWeights } from '../src/nn';
import { createModel, registerBuiltinModels } from '../src/models';
import { loadMnist, normalize } from '../src/data';
import { TorchScriptTeacher, runTeacher } from '../src/teachers';
import { distill } from '../src/distill';
import { FIXTURES, checkLeaks, maxDiff, teacherAgreement } from './helpers';

const TOL = 1e-4;
const fx = (name: string) => path.join(FIXTURES, name);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ts-teacher-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function mnistImages(split: 'test' | 'train', n: number): Tensor {
  const ds = loadMnist({ split, limit: n });
  try {
    return tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
  } finally {
    ds.dispose();
  }
}

describe('TorchScript teacher', () => {
  checkLeaks();
  let model: Module;
  let x: Tensor;
  before(() => {
    registerBuiltinModels();
    model = createModel('lenet5-half', { numClasses: 10 });
    loadWeights(model, fx('ts_lenet_half.safetensors'));
    model.eval();
    x = mnistImages('test', 16);
  });
  after(() => {
    model.dispose();
    x.dispose();
  });

  it('gives the libtorch module\'s logits within 1e-4 for traced, tuple and dict outputs', async () => {
    const expected = tidy(() => noGrad(() => model.call(x) as Tensor));
    const cases: [string, string[]][] = [
      ['ts_lenet_half_traced.pt', ['output']],
      ['ts_lenet_half_tuple.pt', ['output.0', 'output.1']],
      ['ts_lenet_half_dict.pt', ['logits', 'features', 'conv']],
    ];
    for (const [f, names] of cases) {
      const t = TorchScriptTeacher.load(fx(f));
      try {
        assert.deepEqual(t.valueNames(), [], 'names are known after the first batch');
        const out = await runTeacher(t, x, ['logits']);
        assert.deepEqual(t.outputNames(), names);
        const d = maxDiff(out.get('logits')!, expected);
        console.log(`  ${f}: max |torchscript - tsdistill| = ${d.toExponential(2)}`);
        assert.ok(d <= TOL, `${f}: ${d}`);
        dispose([...out.values()]);
      } finally {
        t.dispose();
      }
    }
    expected.dispose();
  });

  it('returns named intermediate outputs (tuple elements, dict keys) equal to libtorch\'s', async () => {
    const m = model as any;
    const [conv, pooled] = tidy(() => noGrad(() => {
      const c = m.conv.call(x).relu();
      return [c, ops.max_pool2d(c, 2)];
    }));
    const tuple = TorchScriptTeacher.load(fx('ts_lenet_half_tuple.pt'));
    const dict = TorchScriptTeacher.load(fx('ts_lenet_half_dict.pt'));
    try {
      const a = await tuple.run(x, ['output.1']);
      const b = await dict.run(x, ['features', 'conv']);
      assert.deepEqual(a['output.1'].shape, [16, 3, 12, 12]);
      const diffs = [maxDiff(a['output.1'], pooled), maxDiff(b.features, pooled), maxDiff(b.conv, conv)];
      console.log(`  intermediates: ${diffs.map((d) => d.toExponential(2)).join(', ')}`);
      assert.ok(diffs.every((d) => d <= TOL), String(diffs));
      dispose([...Object.values(a), ...Object.values(b)]);
      await assert.rejects(tuple.run(x, ['output.2']), (e: Error) => e.message.includes(fx('ts_lenet_half_tuple.pt')) && /no value named 'output\.2'\. Closest: output\.0, output\.1/.test(e.message));
      const trTeacher = TorchScriptTeacher.load(fx('ts_lenet_half_tuple.pt'), { output: 'output.1' });
      const r = await runTeacher(trTeacher, x, ['logits']);
      assert.deepEqual(r.get('logits')!.shape, [16, 3, 12, 12], 'output: picks the logits output');
      dispose([...r.values()]);
      trTeacher.dispose();
    } finally {
      tuple.dispose();
      dict.dispose();
      dispose([conv, pooled]);
    }
  });

  it('names the file and what failed for corrupt, truncated, empty and missing files', () => {
    const bytes = fs.readFileSync(fx('ts_lenet_half_traced.pt'));
    const truncated = path.join(dir, 'truncated.pt');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    assert.throws(() => TorchScriptTeacher.load(truncated), (e: Error) => e.message.startsWith(`${truncated}: cannot load the TorchScript module: `) && /zip archive|central directory/.test(e.message));
    const garbage = path.join(dir, 'garbage.pt');
    fs.writeFileSync(garbage, 'not a zip archive\n'.repeat(20));
    assert.throws(() => TorchScriptTeacher.load(garbage), (e: Error) => e.message.startsWith(`${garbage}: cannot load the TorchScript module: `));
    const empty = path.join(dir, 'empty.pt');
    fs.writeFileSync(empty, '');
    assert.throws(() => TorchScriptTeacher.load(empty), /empty\.pt: cannot load the TorchScript module: the file is empty/);
    assert.throws(() => ScriptModule.load(path.join(dir, 'missing.pt')), /missing\.pt: cannot read the TorchScript module/);
  });

  it('reports a batch the module cannot take with its shape and forward\'s schema', async () => {
    const t = TorchScriptTeacher.load(fx('ts_lenet_half_traced.pt'));
    const rgb = randn([4, 3, 28, 28]);
    try {
      await assert.rejects(t.run(rgb, ['logits']), (e: Error) =>
        e.message.startsWith(`${fx('ts_lenet_half_traced.pt')}: forward failed on input float32 [4, 3, 28, 28] (forward(__torch__.LeNetHalf self, Tensor x) -> Tensor)`) &&
        /expected input\[4, 3, 28, 28\] to have 1 channels, but got 3 channels/.test(e.message));
    } finally {
      rgb.dispose();
      t.dispose();
    }
  });
});

describe('distill() from a TorchScript teacher', () => {
  it('trains a student to agree with the .pt teacher (soft targets only; the teacher runs once per image)', async () => {
    registerBuiltinModels();
    const train = loadMnist({ split: 'train', limit: 2000 });
    const test = loadMnist({ split: 'test', limit: 1000 });
    const teacher = TorchScriptTeacher.load(fx('ts_lenet_half_dict.pt'));
    manualSeed(1);
    const student = createModel('lenet5-half', { numClasses: 10 });
    const xs = tidy(() => test.images.float().div(255).sub(0.1307).div(0.3081));
    const agreement = () => teacherAgreement(teacher, student, xs);
    try {
      const before = await agreement();
      const summary = await distill({
        teacher, student, data: { train, test }, outDir: path.join(dir, 'kd'), epochs: 2, batchSize: 64, alpha: 0, temperature: 1,
        transforms: [normalize([0.1307], [0.3081])], optimizer: { lr: 0.05 }, progress: false, log: () => {},
      });
      const afterKd = await agreement();
      console.log(`  top-1 agreement with the TorchScript teacher: ${before.toFixed(1)} % before, ${afterKd.toFixed(1)} % after distillation`);
      assert.equal(summary.teacher_cache, 'built');
      const metrics = fs.readFileSync(path.join(dir, 'kd', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(metrics.map((m) => m.teacher), ['live', 'cached']);
      assert.ok(afterKd > 70 && afterKd > before + 30, `agreement ${before} -> ${afterKd}`);
    } finally {
      dispose([xs]);
      student.dispose();
      teacher.dispose();
      train.dispose();
      test.dispose();
    }
  });
});
