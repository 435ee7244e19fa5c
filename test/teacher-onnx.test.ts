// ONNX teachers: a zoo model exported with the ONNX exporter and run by onnxruntime-node must give the libtorch
// module's outputs (and intermediate tensors, added as extra graph outputs by rewriting the model) within 1e-4; bad
// files, batches and names fail with messages naming the file, both shapes, or the closest value names; and the
// tsdistill command distills a student from the .onnx file of a teacher it trained.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Tensor, dispose, manualSeed, noGrad, ops, randn, tidy } from '../src/torch';
import { Module, loadWeights } from '../src/nn';
import { createModel, registerBuiltinModels } from '../src/models';
import { loadMnist } from '../src/data';
import { saveOnnx } from '../src/export';
import { OnnxTeacher, runTeacher } from '../src/teachers';
import { FeatureMatcher } from '../src/distill';
import { checkLeaks, maxDiff } from './helpers';

const TOL = 1e-4;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-onnx-teacher-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function mnistImages(n: number): Tensor {
  const ds = loadMnist({ split: 'test', limit: n });
  try {
    return tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
  } finally {
    ds.dispose();
  }
}

describe('ONNX teacher', () => {
  checkLeaks();
  let model: Module;
  let x: Tensor;
  const file = path.join(dir, 'lenet5.onnx');
  const fixedFile = path.join(dir, 'lenet5-b8.onnx');
  before(() => {
    registerBuiltinModels();
    manualSeed(3);
    model = createModel('lenet5', { numClasses: 10 });
    model.eval();
    saveOnnx(model, file, { inputShape: [1, 28, 28] });
    saveOnnx(model, fixedFile, { inputShape: [1, 28, 28], batchSize: 8 });
    x = mnistImages(20);
  });
  after(() => {
    model.dispose();
    x.dispose();
  });

  it('gives the libtorch module\'s logits within 1e-4 (dynamic batch, and a fixed batch of 8 run in padded chunks)', async () => {
    const expected = tidy(() => noGrad(() => model.call(x) as Tensor));
    for (const f of [file, fixedFile]) {
      const t = await OnnxTeacher.load(f);
      try {
        assert.equal(t.logits, 'logits');
        assert.deepEqual(t.outputNames(), ['logits']);
        const out = await t.run(x, ['logits']);
        const d = maxDiff(out.logits, expected);
        console.log(`  ${path.basename(f)}: max |onnx - libtorch| = ${d.toExponential(2)}`);
        assert.ok(d <= TOL, `${f}: max diff ${d}`);
        dispose(Object.values(out));
      } finally {
        t.dispose();
      }
    }
    expected.dispose();
  });

  it('returns intermediate tensors by value name, equal to libtorch\'s', async () => {
    const t = await OnnxTeacher.load(file);
    try {
      const names = t.valueNames();
      for (const n of ['input', 'conv1/Conv', 'Relu_1', 'fc1/Gemm', 'logits']) assert.ok(names.includes(n), `value names lack ${n}: ${names.join(', ')}`);
      const out = await t.run(x, ['Relu_1', 'fc1/Gemm', 'logits']);
      const ref = tidy(() =>
        noGrad(() => {
          const m = model as any;
          const c2 = m.conv2.call(ops.max_pool2d(m.conv1.call(x).relu(), 2)).relu();
          const f1 = m.fc1.call(ops.max_pool2d(c2, 2).flatten(1));
          return [c2, f1];
        }),
      );
      assert.deepEqual(out['Relu_1'].shape, [20, 16, 10, 10]);
      const d1 = maxDiff(out['Relu_1'], ref[0]), d2 = maxDiff(out['fc1/Gemm'], ref[1]);
      console.log(`  intermediates: Relu_1 ${d1.toExponential(2)}, fc1/Gemm ${d2.toExponential(2)}`);
      assert.ok(d1 <= TOL && d2 <= TOL, `intermediate diffs ${d1}, ${d2}`);
      dispose([...Object.values(out), ...ref]);
      // the rewritten session keeps serving earlier outputs and the logits alias
      const again = await runTeacher(t, x, ['logits', 'Relu_1']);
      assert.deepEqual([...again.keys()], ['logits', 'Relu_1']);
      dispose([...again.values()]);
    } finally {
      t.dispose();
    }
  });

  it('feeds feature matches on ONNX value names', async () => {
    const t = await OnnxTeacher.load(file);
    const student = createModel('lenet5-half', { numClasses: 10 });
    try {
      assert.throws(
        () => new FeatureMatcher(student, t, [{ teacher: 'Relu_7', student: 'conv', loss: 'at' }]),
        (e: Error) => /'Relu_7' is not a value of the onnx teacher\. Closest: Relu_1, Relu_2, Relu_3, Relu/.test(e.message),
      );
      const fm = new FeatureMatcher(student, t, [{ teacher: 'Relu_1', student: 'conv', loss: 'at' }]);
      assert.deepEqual(fm.teacherNames, ['logits', 'Relu_1']);
      const feats = await runTeacher(t, x, fm.teacherNames);
      tidy(() => {
        const r = fm.forward(x, undefined, undefined, feats);
        const v = r.terms.get('at:conv')!.item();
        assert.ok(Number.isFinite(v) && v > 0, `at loss ${v}`);
        assert.ok(maxDiff(r.teacherLogits, feats.get('logits')!) === 0);
      });
      dispose([...feats.values()]);
      fm.dispose();
    } finally {
      student.dispose();
      t.dispose();
    }
  });

  it('names the file for corrupt and truncated models', async () => {
    const bytes = fs.readFileSync(file);
    const truncated = path.join(dir, 'truncated.onnx');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await assert.rejects(OnnxTeacher.load(truncated), (e: Error) => e.message.startsWith(truncated) && /not a valid ONNX model .*corrupt or truncated/.test(e.message));
    const garbage = path.join(dir, 'garbage.onnx');
    fs.writeFileSync(garbage, Buffer.from('this is not a protobuf message at all, just text\n'.repeat(4)));
    await assert.rejects(OnnxTeacher.load(garbage), (e: Error) => e.message.startsWith(garbage) && /not a valid ONNX model/.test(e.message));
    await assert.rejects(OnnxTeacher.load(path.join(dir, 'missing.onnx')), /missing\.onnx: cannot read the ONNX teacher/);
    await assert.rejects(OnnxTeacher.load(file, { output: 'logitz' }), /output 'logitz' is not an output of the model \(outputs: logits\)/);
  });

  it('reports wrong input shapes and dtypes with both shapes, and unknown value names with the closest', async () => {
    const t = await OnnxTeacher.load(file);
    const rgb = randn([4, 3, 28, 28]);
    const small = randn([4, 1, 14, 14]);
    const dbl = randn([4, 1, 28, 28], { dtype: 'float64' });
    try {
      await assert.rejects(t.run(rgb, ['logits']), (e: Error) => e.message.includes(file) && e.message.includes("input 'input' expects float32 [batch, 1, 28, 28], got float32 [4, 3, 28, 28]") && /dimension 1 is 3, not 1/.test(e.message));
      await assert.rejects(t.run(small, ['logits']), /expects float32 \[batch, 1, 28, 28\], got float32 \[4, 1, 14, 14\]/);
      await assert.rejects(t.run(dbl, ['logits']), /expects float32 \[batch, 1, 28, 28\], got float64 \[4, 1, 28, 28\]: the dtypes differ/);
      await assert.rejects(t.run(x, ['fc1/gemm']), (e: Error) => /no value named 'fc1\/gemm'\. Closest: fc1\/Gemm/.test(e.message));
    } finally {
      dispose([rgb, small, dbl]);
      t.dispose();
    }
  });
});

describe('tsdistill distill from an ONNX teacher', () => {
  const root = path.join(__dirname, '..', '..');
  const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const out = path.join(dir, 'runs');

  it('trains a lenet5 teacher, exports it to ONNX and distills a student from the file (cache, then matches)', () => {
    const seed = path.join(root, 'examples', 'seed-mnist-lenet.yaml');
    const t = run(['train', seed, '--epochs', '1', '--out', out, '--set', 'data.limit=3000', '--set', 'training.lr=0.05', '--threads', '1']);
    assert.equal(t.status, 0, t.stderr);
    registerBuiltinModels();
    const teacher = createModel('lenet5', { numClasses: 10 });
    loadWeights(teacher, path.join(out, 'teacher', 'best.safetensors'));
    const onnxFile = path.join(dir, 'teacher.onnx');
    saveOnnx(teacher, onnxFile, { inputShape: [1, 28, 28] });
    teacher.dispose();
    const teacherAcc = JSON.parse(fs.readFileSync(path.join(out, 'teacher', 'summary.json'), 'utf8')).best_test_acc;

    const cfg = {
      name: 'onnx-teacher', seed: 0, data: { dataset: 'mnist', batchSize: 64, limit: 3000 },
      teacher: { model: 'onnx', path: 'teacher.onnx', input: 'input', output: 'logits' },
      student: { model: 'lenet5-half' }, distill: { temperature: 4, alpha: 0.3 },
      training: { epochs: 2, threads: 1 }, output: { dir: path.join(dir, 'kd') },
    };
    const cfgFile = path.join(dir, 'onnx-teacher.json');
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const d = run(['distill', cfgFile, '--json']);
    assert.equal(d.status, 0, d.stderr);
    const summary = JSON.parse(d.stdout.trim().split('\n').pop()!);
    console.log(`  teacher (1 epoch, 3000 images) ${teacherAcc.toFixed(2)} %, student distilled from the .onnx file ${summary.best_test_acc.toFixed(2)} %`);
    assert.ok(summary.best_test_acc > 50, `distilled accuracy ${summary.best_test_acc}`);
    assert.equal(summary.teacher_cache, 'built');
    const metrics = fs.readFileSync(path.join(dir, 'kd', 'distilled', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.teacher), ['live', 'cached']);

    // feature matches on the file's intermediate tensors; a misspelt value name is refused before training
    const withMatches = { ...cfg, training: { epochs: 1, threads: 1 }, output: { dir: path.join(dir, 'kd-matches') },
      distill: { temperature: 4, alpha: 0.3, matches: [{ teacher: 'Relu', student: 'conv', loss: 'at', weight: 10 }] } };
    fs.writeFileSync(cfgFile, JSON.stringify(withMatches));
    const m = run(['distill', cfgFile, '--json']);
    assert.equal(m.status, 0, m.stderr);
    const mm = JSON.parse(fs.readFileSync(path.join(dir, 'kd-matches', 'distilled', 'metrics.jsonl'), 'utf8').trim());
    assert.ok(Number.isFinite(mm.terms['at:conv']) && mm.terms['at:conv'] > 0, JSON.stringify(mm.terms));
    withMatches.distill.matches[0].teacher = 'Relu_9';
    withMatches.output.dir = path.join(dir, 'kd-bad');
    fs.writeFileSync(cfgFile, JSON.stringify(withMatches));
    const bad = run(['distill', cfgFile]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /'Relu_9' is not a value of the onnx teacher\. Closest: Relu_1/);
  });

  it('validates the teacher section per kind', () => {
    const base = { data: { dataset: 'mnist' }, student: { model: 'lenet5-half' }, output: { dir: path.join(dir, 'x') } };
    const cases: [object, RegExp][] = [
      [{ model: 'onnx' }, /teacher\.path is required for model onnx/],
      [{ model: 'onnx', path: 'nope.onnx' }, /teacher\.path: file not found: .*nope\.onnx/],
      [{ model: 'onnx', path: 'teacher.onnx', url: 'http://127.0.0.1:1/' }, /teacher\.url does not apply to model onnx/],
      [{ model: 'lenet5', path: 'teacher.onnx' }, /teacher\.path applies to teachers from elsewhere/],
      [{ model: 'http', url: 'http://127.0.0.1:1/' }, /teacher\.returns is required for model http/],
      [{ model: 'http', url: 'http://127.0.0.1:1/', returns: 'probabilities' }, /teacher\.returns: /],
      [{ model: 'onnx', pth: 'teacher.onnx' }, /teacher\.pth: unknown key; did you mean 'teacher\.path'\?/],
    ];
    for (const [teacher, re] of cases) {
      const f = path.join(dir, 'bad-teacher.json');
      fs.writeFileSync(f, JSON.stringify({ ...base, teacher }));
      const r = run(['distill', f]);
      assert.equal(r.status, 1, JSON.stringify(teacher));
      assert.match(r.stderr, re, JSON.stringify(teacher));
    }
  });
});
