// `tsdistill export` end to end: a short distillation run on 300 MNIST images, exported as ONNX and safetensors from
// its run folder; the ONNX file is run in onnxruntime-node against the checkpoint in libtorch, the safetensors file is
// read back, and the model card is checked against the run's config and summary.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Tensor, dispose, loadSafetensors, manualSeed, noGrad, tidy } from '../src/torch';
import { loadWeights, saveWeights } from '../src/nn';
import { createModel, registerBuiltinModels } from '../src/models';
import { loadMnist } from '../src/data';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const config = path.join(root, 'examples', 'seed-mnist-lenet.yaml');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('tsdistill export', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-export-'));
  const out = path.join(dir, 'run');
  const teacher = path.join(dir, 'ckpt', 'teacher.safetensors');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  before(() => {
    registerBuiltinModels();
    manualSeed(1);
    const t = createModel('lenet5');
    fs.mkdirSync(path.dirname(teacher));
    saveWeights(t, teacher);
    t.dispose();
    const d = run(['distill', config, '--epochs', '1', '--out', out, '--set', 'data.limit=300', '--set', `teacher.checkpoint=${teacher}`, '--threads', '1']);
    assert.equal(d.status, 0, d.stderr);
  });

  it('--format onnx from an output folder: the distilled student, equal to libtorch in onnxruntime', async () => {
    const file = path.join(dir, 'out', 'student.onnx');
    const r = run(['export', out, '--format', 'onnx', '--out', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /lenet5-half \(distilled, .*best\.safetensors\) -> .*student\.onnx \(onnx, \d+ bytes/);
    const model = createModel('lenet5-half', { outputRelu: true });
    const ds = loadMnist({ split: 'test', limit: 5 });
    const x = tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
    const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
    try {
      loadWeights(model, path.join(out, 'distilled', 'best.safetensors'));
      model.eval();
      const expected = tidy(() => noGrad(() => model.call(x) as Tensor));
      const got = (await session.run({ input: new ort.Tensor('float32', x.data() as Float32Array, x.shape) })).logits;
      assert.deepEqual([...got.dims], [5, 10]);
      const e = expected.data() as Float32Array;
      expected.dispose();
      let diff = 0;
      for (let i = 0; i < e.length; i++) diff = Math.max(diff, Math.abs(e[i] - (got.data as Float32Array)[i]));
      assert.ok(diff <= 1e-4, `max |diff| ${diff}`);
    } finally {
      await session.release();
      x.dispose();
      ds.dispose();
      model.dispose();
    }
  });

  it('--format safetensors from the run folder: PyTorch keys, the checkpoint values, a model card for both files', () => {
    const file = path.join(dir, 'out', 'student.safetensors');
    const r = run(['export', path.join(out, 'distilled'), '--format', 'safetensors', '--out', file]);
    assert.equal(r.status, 0, r.stderr);
    const a = loadSafetensors(file);
    const b = loadSafetensors(path.join(out, 'distilled', 'best.safetensors'));
    try {
      assert.deepEqual(Object.keys(a.tensors).sort(), ['conv.bias', 'conv.weight', 'fc.bias', 'fc.weight']);
      assert.equal(a.metadata.format, 'pt');
      for (const k of Object.keys(b.tensors)) assert.deepEqual(a.tensors[k].toArray(), b.tensors[k].toArray(), k);
    } finally {
      dispose(a.tensors);
      dispose(b.tensors);
    }
    const card = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'model-card.json'), 'utf8'));
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'distilled', 'summary.json'), 'utf8'));
    assert.deepEqual(card.files.map((f: { file: string; format: string }) => [f.file, f.format]), [['student.onnx', 'onnx'], ['student.safetensors', 'safetensors']]);
    assert.equal(card.files[1].bytes, fs.statSync(file).size);
    assert.deepEqual(card.architecture, { model: 'lenet5-half', class: 'LeNet5Half', options: { numClasses: 10, outputRelu: true }, parameters: 4408 });
    assert.deepEqual(card.input.preprocessing, { scale: 1 / 255, mean: [0.1307], std: [0.3081] });
    assert.deepEqual(card.input.shape, [1, 28, 28]);
    assert.equal(card.teacher.model, 'lenet5');
    assert.equal(card.teacher.checkpoint, teacher);
    assert.equal(card.recipe.kind, 'distillation');
    assert.equal(card.recipe.distill.alpha, 0.3);
    assert.equal(card.data.dataset, 'mnist');
    assert.equal(card.data.limit, 300);
    assert.equal(card.metrics.best_test_acc, summary.best_test_acc);
    assert.equal(card.source.run, 'distilled');
  });

  it('a checkpoint outside a run folder needs --config; errors say what to do', () => {
    const bare = run(['export', teacher, '--format', 'onnx', '--out', path.join(dir, 't.onnx')]);
    assert.equal(bare.status, 1);
    assert.match(bare.stderr, /no config\.json in .* or its parent, so the architecture of .*teacher\.safetensors is unknown; pass --config FILE/);
    const t = run(['export', teacher, '--format', 'onnx', '--out', path.join(dir, 't', 't.onnx'), '--config', config, '--role', 'teacher']);
    assert.equal(t.status, 0, t.stderr);
    const card = JSON.parse(fs.readFileSync(path.join(dir, 't', 'model-card.json'), 'utf8'));
    assert.equal(card.architecture.model, 'lenet5');
    assert.equal(card.teacher, null);
    assert.equal(card.metrics, null);
    const q = run(['export', out, '--format', 'onnx', '--calibration-batches', '2', '--out', path.join(dir, 'q.onnx')]);
    assert.equal(q.status, 1);
    assert.match(q.stderr, /--calibration-batches applies to --format onnx-int8 only/);
    assert.equal(fs.existsSync(path.join(dir, 'q.onnx')), false);
    const s = run(['export', out, '--format', 'onnx', '--out', path.join(dir, 's.onnx'), '--role', 'student']);
    assert.equal(s.status, 1);
    assert.match(s.stderr, /has no student run \(found: distilled\)/);
    const n = run(['export', path.join(dir, 'nowhere'), '--format', 'onnx', '--out', path.join(dir, 'n.onnx')]);
    assert.match(n.stderr, /nowhere does not exist/);
  });

  it('--format onnx-int8: post-training quantization calibrated on training batches, or the ranges of a quantization-aware run', async () => {
    const ds = loadMnist({ split: 'test', limit: 200 });
    const x = tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
    const runOrt = async (file: string) => {
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
      try {
        return (await session.run({ input: new ort.Tensor('float32', x.data() as Float32Array, x.shape) })).logits.data as Float32Array;
      } finally {
        await session.release();
      }
    };
    const argmax = (v: Float32Array) => Array.from({ length: v.length / 10 }, (_, i) => v.subarray(i * 10, i * 10 + 10).indexOf(Math.max(...v.subarray(i * 10, i * 10 + 10))));
    try {
      // post-training: the distilled run's weights, ranges from 4 training batches
      const ptq = path.join(dir, 'int8', 'student-int8.onnx');
      const r = run(['export', out, '--format', 'onnx-int8', '--calibration-batches', '4', '--out', ptq, '--json']);
      assert.equal(r.status, 0, r.stderr);
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
      assert.equal(res.int8.ranges, 'calibrated');
      assert.equal(res.int8.calibrationBatches, 4);
      const card = JSON.parse(fs.readFileSync(path.join(dir, 'int8', 'model-card.json'), 'utf8'));
      assert.equal(card.files[0].format, 'onnx-int8');
      assert.equal(card.recipe.int8.calibration_batches, 4);
      const fp32 = path.join(dir, 'int8', 'student.onnx');
      assert.equal(run(['export', out, '--format', 'onnx', '--out', fp32]).status, 0);
      const [a, b] = [argmax(await runOrt(fp32)), argmax(await runOrt(ptq))];
      assert.ok(a.filter((p, i) => p === b[i]).length >= 190, 'int8 and fp32 predictions differ on more than 5% of images');
      // quantization-aware distillation from the distilled student's checkpoint, then its ranges exported
      const qatOut = path.join(dir, 'qat');
      const student = path.join(out, 'distilled', 'best.safetensors');
      const d = run(['distill', config, '--epochs', '1', '--out', qatOut, '--set', 'data.limit=300', '--set', `teacher.checkpoint=${teacher}`, '--threads', '1',
        '--set', 'quantization.qat=true', '--set', 'quantization.calibrationBatches=2', '--set', `student.checkpoint=${student}`]);
      assert.equal(d.status, 0, d.stderr);
      const qfile = path.join(dir, 'qat-export', 'student-qat.onnx');
      const bad = run(['export', qatOut, '--format', 'onnx-int8', '--calibration-batches', '2', '--out', qfile]);
      assert.match(bad.stderr, /comes from quantization-aware training and carries its ranges; --calibration-batches does not apply/);
      const e = run(['export', qatOut, '--format', 'onnx-int8', '--out', qfile, '--json']);
      assert.equal(e.status, 0, e.stderr);
      assert.equal(JSON.parse(e.stdout.trim().split('\n').pop()!).int8.ranges, 'quantization-aware');
      // onnxruntime's int8 model computes what the fake-quantized student computes
      const { prepareQuantAware } = await import('../src/export');
      const model = createModel('lenet5-half', { outputRelu: true });
      try {
        prepareQuantAware(model, { inputShape: [1, 28, 28] });
        loadWeights(model, path.join(qatOut, 'distilled', 'best.safetensors'));
        model.eval();
        const fq = tidy(() => noGrad(() => model.call(x)).data() as Float32Array);
        const q8 = await runOrt(qfile);
        const maxAbs = fq.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const diff = fq.reduce((m, v, i) => Math.max(m, Math.abs(v - q8[i])), 0);
        assert.ok(maxAbs > 0 && diff < 0.05 * maxAbs, `max |fake-quant − onnxruntime| ${diff}, logits up to ${maxAbs}`);
      } finally {
        model.dispose();
      }
    } finally {
      x.dispose();
      ds.dispose();
    }
  });
});
