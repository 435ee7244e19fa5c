// Inputs that must not be used silently: model options unknown to the model or of the wrong type, a teacher cache
// overwritten with garbage, model files that refer outside their folder (TF.js shards, ONNX external data), broken
// state.json files, finished runs resumed (their summaries stay), weights holding NaN or Inf, and serve's request body
// limit and CORS. Each case gives the failing input and checks the message.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { dispose, manualSeed, saveSafetensors, tensor, tidy } from '../src/torch';
import { loadWeights } from '../src/nn';
import { LeNet5Half, createModel, registerBuiltinModels } from '../src/models';
import { GPT } from '../src/models/gpt';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { RunDir, teacherLogits } from '../src/distill';
import { OnnxTeacher } from '../src/teachers';
import { loadTfjsModel } from '../src/teachers/tfjs';
import { claimOutputDir, runFromConfig, validateConfig } from '../src/run';
import { ByteTokenizer } from '../src/llm/tokenizer';
import { serve } from '../src/llm/serve';
import { checkLeaks, maxDiff } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-hardening-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const baseConfig = (out: string, extra: Record<string, unknown> = {}) => ({
  name: 'h', seed: 0, data: { dataset: 'mnist', batchSize: 64 }, teacher: { model: 'lenet5' }, student: { model: 'lenet5-half' },
  training: { epochs: 2, lr: 0.05, threads: 1 }, output: { dir: out }, ...extra,
});

describe('model options', () => {
  it('createModel refuses unknown options (naming the closest) and values of the wrong type', () => {
    registerBuiltinModels();
    assert.throws(
      () => createModel('lenet5-half', { numClass: 3, outputRelu: 'yes' }),
      (e: Error) =>
        /lenet5-half: option 'outputRelu': expected boolean, got "yes"/.test(e.message) &&
        /lenet5-half: unknown option 'numClass'; did you mean 'numClasses'\? \(lenet5-half options: numClasses, outputRelu\)/.test(e.message),
    );
    // an option another model has: no far-fetched suggestion
    assert.throws(() => createModel('mlp-800', { numClasses: 10, dropout: 0.5 }), /^Error: mlp-800: unknown option 'dropout' \(mlp-800 options: numClasses\)$/);
    assert.throws(() => createModel('wrn-16-1', { dropout: 1.5 }), /wrn-16-1: option 'dropout': Too big: expected number to be <1, got 1\.5/);
    assert.throws(() => createModel('mlp', { widths: [784, 'x'] }), /mlp: option 'widths\.1': expected number, got "x"/);
    const ok = createModel('lenet5-half', { numClasses: 3, outputRelu: true });
    assert.equal(ok.numParameters(), 3 * 5 * 5 + 3 + 432 * 3 + 3);
    ok.dispose();
  });
  it('a configuration with a misspelled or mistyped model option is refused before anything trains, naming the section', () => {
    const cfg = baseConfig(path.join(tmp, 'opts'), { student: { model: 'lenet5-half', options: { numClass: 3, outputRelu: 'yes' } } });
    assert.throws(() => validateConfig(cfg, 'my.yaml'), /^Error: my\.yaml: student\.options: lenet5-half: option 'outputRelu': expected boolean, got "yes"; lenet5-half: unknown option 'numClass'; did you mean 'numClasses'\?/);
    const members = baseConfig(path.join(tmp, 'opts'), { teacher: { model: 'ensemble', members: [{ model: 'lenet5', options: { numclasses: 10 }, checkpoint: __filename }] } });
    assert.throws(() => validateConfig(members, 'e.yaml'), /e\.yaml: teacher\.members\[0\]\.options: lenet5: unknown option 'numclasses'; did you mean 'numClasses'\?/);
  });
});

describe('teacher cache checksum', () => {
  checkLeaks();
  it('a cache file overwritten with garbage of the same size is detected, reported and rebuilt, not trained on', async () => {
    manualSeed(0);
    const dir = path.join(tmp, 'cache');
    const data = loadMnist({ split: 'test', limit: 200 });
    const teacher = new LeNet5Half();
    const loader = new DataLoader(data, { batchSize: 64, transforms: [normalize([0.1307], [0.3081])] });
    const warnings: string[] = [];
    const a = await teacherLogits(teacher, loader, dir, (l) => warnings.push(l));
    const buf = fs.readFileSync(a.file);
    const body = 4 + buf.readUInt32LE(0);
    // the same size, the header intact: only the rows are garbage
    for (let i = body; i < buf.length; i++) buf[i] = (i * 7919) & 0xff;
    fs.writeFileSync(a.file, buf);
    const b = await teacherLogits(teacher, loader, dir, (l) => warnings.push(l));
    assert.equal(b.fromCache, false);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], new RegExp(`^teacher cache: ${a.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: corrupt: the logits' SHA-256 is [0-9a-f]{16}…, the header says [0-9a-f]{16}…; recomputing the teacher's outputs$`));
    assert.equal(maxDiff(a.logits, b.logits), 0);
    const c = await teacherLogits(teacher, loader, dir, (l) => warnings.push(l));
    assert.equal(c.fromCache, true);
    assert.equal(warnings.length, 1);
    // a header replaced by garbage is reported too
    fs.writeFileSync(a.file, Buffer.alloc(buf.length, 0xff));
    const d = await teacherLogits(teacher, loader, dir, (l) => warnings.push(l));
    assert.equal(d.fromCache, false);
    assert.match(warnings[1], /corrupt or truncated \(unreadable header\); recomputing/);
    dispose([a.logits, b.logits, c.logits, d.logits]);
    teacher.dispose();
    data.dispose();
  });
});

describe('model files that refer outside their folder', () => {
  it('TF.js: a weight shard path leading out of the model folder is refused (../, absolute, symbolic link)', async () => {
    const dir = path.join(tmp, 'tfjs', 'model');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(tmp, 'tfjs', 'secret.bin'), Buffer.alloc(16));
    fs.symlinkSync(path.join(tmp, 'tfjs', 'secret.bin'), path.join(dir, 'link.bin'));
    const file = path.join(dir, 'model.json');
    for (const p of ['../secret.bin', path.join(tmp, 'tfjs', 'secret.bin'), 'link.bin']) {
      fs.writeFileSync(file, JSON.stringify({ format: 'layers-model', modelTopology: { class_name: 'Sequential' }, weightsManifest: [{ paths: [p], weights: [{ name: 'w', shape: [4], dtype: 'float32' }] }] }));
      await assert.rejects(loadTfjsModel(file), (e: Error) => e.message.startsWith(`${file}: weight shard '${p}' lies outside the model's folder ${dir}; refused`));
    }
  });
  it("ONNX: external data is read from the model's folder; a location outside it is refused", async () => {
    const onnx = require('onnx-proto').onnx;
    const dir = path.join(tmp, 'onnx', 'model');
    fs.mkdirSync(dir, { recursive: true });
    const w = new Float32Array([1, 2, 3, 4, 5, 6]);
    fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.from(w.buffer));
    fs.writeFileSync(path.join(tmp, 'onnx', 'w.bin'), Buffer.from(w.buffer));
    const save = (file: string, location: string) => {
      const vi = (name: string, d: number) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, { dimValue: d }] } } } });
      const model = onnx.ModelProto.create({
        irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
        graph: {
          name: 'g', node: [{ opType: 'MatMul', input: ['x', 'W'], output: ['y'] }], input: [vi('x', 2)], output: [vi('y', 3)],
          initializer: [{ name: 'W', dims: [2, 3], dataType: 1, dataLocation: 1, externalData: [{ key: 'location', value: location }, { key: 'length', value: '24' }] }],
        },
      });
      fs.writeFileSync(file, onnx.ModelProto.encode(model).finish());
    };
    const good = path.join(dir, 'good.onnx');
    save(good, 'w.bin');
    const t = await OnnxTeacher.load(good, { threads: 1 });
    const x = tensor(new Float32Array([1, 0, 0, 1]), { shape: [2, 2] });
    const out = await t.run(x, ['y']);
    assert.deepEqual(out.y.toArray(), [1, 2, 3, 4, 5, 6]);
    dispose([x, out.y]);
    t.dispose();
    const bad = path.join(dir, 'bad.onnx');
    for (const loc of ['../w.bin', path.join(tmp, 'onnx', 'w.bin')]) {
      save(bad, loc);
      await assert.rejects(OnnxTeacher.load(bad), (e: Error) => e.message === `${bad}: external data of tensor 'W' '${loc}' lies outside the model's folder ${dir}; refused (model files may only refer to files beside or below them)`);
    }
  });
});

describe('run directories', () => {
  const splits = () => ({ train: loadMnist({ split: 'train', limit: 256 }), test: loadMnist({ split: 'test', limit: 200 }) });
  it('state.json errors name the file', () => {
    const dir = path.join(tmp, 'state');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, '{"epoch": "x"}');
    assert.throws(() => new RunDir(dir, { resume: true }).resumeState(), (e: Error) => e.message === `${file}: not a run state ('epoch' is "x", not an epoch number); pass --force to start over`);
    fs.writeFileSync(file, '{"epoch": 0, "best": {"acc": 1, "epoch": 1}}');
    assert.throws(() => new RunDir(dir, { resume: true }).resumeState(), (e: Error) => e.message === `${file}: not a run state ('scheduler' is missing); pass --force to start over`);
    fs.writeFileSync(file, 'garbage');
    assert.throws(() => new RunDir(dir, { resume: true }).resumeState(), (e: Error) => e.message.startsWith(`${file}: unreadable (`));
  });
  it('a configuration whose runs failed before training does not block the next one; a trained run still does', () => {
    const out = path.join(tmp, 'claim');
    const a = validateConfig(baseConfig(out), 'a.yaml');
    const b = validateConfig(baseConfig(out, { distill: { temperature: 2 } }), 'b.yaml');
    claimOutputDir(a, { file: 'a.yaml' });
    // nothing trained under `out`: b takes it
    claimOutputDir(b, { file: 'b.yaml' });
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).distill.temperature, 2);
    fs.mkdirSync(path.join(out, 'teacher'));
    fs.writeFileSync(path.join(out, 'teacher', 'state.json'), '{}');
    assert.throws(() => claimOutputDir(a, { file: 'a.yaml' }), /holds a run of another configuration \(distill\.temperature: 2 there, 4 here\)/);
  });
  it('resuming a finished run keeps its summary; more epochs continue it with the times of all epochs; fewer are refused', async () => {
    const out = path.join(tmp, 'finished');
    const cfg = validateConfig(baseConfig(out), 'f.yaml');
    const data = splits();
    const lines: string[] = [];
    const flags = { file: 'f.yaml', progress: false, log: (l: string) => lines.push(l) };
    try {
      const first = await runFromConfig(cfg, 'student', data, flags);
      assert.ok(first.mean_epoch_s > 0);
      const again = await runFromConfig(cfg, 'student', data, { ...flags, resume: true });
      assert.deepEqual(again, first);
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'student', 'summary.json'), 'utf8')), first);
      assert.match(lines[lines.length - 1], /^h\/student: finished already \(2 epochs, best test accuracy \d+\.\d\d % at epoch \d\); nothing to resume$/);
      const state = path.join(out, 'student', 'state.json');
      await assert.rejects(
        runFromConfig({ ...cfg, training: { ...cfg.training, epochs: 1 } }, 'student', data, { ...flags, resume: true }),
        (e: Error) => e.message === `${state}: ${path.join(out, 'student')} holds a finished run of 2 epochs, more than the 1 asked for; pass --epochs 2 to use it, or --force to train 1 epochs from the start`,
      );
      const more = await runFromConfig({ ...cfg, training: { ...cfg.training, epochs: 3 } }, 'student', data, { ...flags, resume: true });
      const times = fs.readFileSync(path.join(out, 'student', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch_s as number);
      assert.equal(times.length, 3);
      assert.equal(more.epochs, 3);
      assert.equal(more.resumed_from_epoch, 2);
      assert.ok(Math.abs(more.mean_epoch_s - (times[0] + times[1] + times[2]) / 3) < 1e-9, `${more.mean_epoch_s} vs ${times}`);
      // a summary as earlier versions rewrote it on resume (the times of no epochs) gets the times of its epochs back
      const file = path.join(out, 'student', 'summary.json');
      fs.writeFileSync(file, JSON.stringify({ ...more, mean_epoch_s: 0, resumed_from_epoch: 3 }));
      const repaired = await runFromConfig({ ...cfg, training: { ...cfg.training, epochs: 3 } }, 'student', data, { ...flags, resume: true });
      assert.equal(repaired.mean_epoch_s, more.mean_epoch_s);
    } finally {
      data.train.dispose();
      data.test.dispose();
    }
  });
});

describe('weights holding NaN or Inf', () => {
  checkLeaks();
  it('loading them is an error naming the file, the tensor and the count', () => {
    const m = new LeNet5Half();
    const file = path.join(tmp, 'nan.safetensors');
    const sd = m.stateDict();
    const bias = tensor([0, NaN, 0, Infinity, -Infinity, 0, 0, 0, 0, 0]);
    saveSafetensors(file, { ...sd, 'fc.bias': bias });
    bias.dispose();
    assert.throws(() => loadWeights(m, file), (e: Error) => e.message === `${file}: tensor 'fc.bias' [10] holds 1 NaN and 2 infinite values; the weights are unusable (a diverged run, or a damaged file)`);
    const w = tidy(() => sd['conv.weight'].clone().fill_(NaN));
    saveSafetensors(file, { ...sd, 'conv.weight': w });
    w.dispose();
    assert.throws(() => loadWeights(m, file), /tensor 'conv\.weight' \[3, 1, 5, 5\] holds 75 NaN values/);
    m.dispose();
  });
});

describe('serve: request body limit and CORS', () => {
  it('answers 413 past the body limit, sends no CORS headers unless asked, and answers preflights only with cors', async () => {
    manualSeed(0);
    const tok = new ByteTokenizer();
    const model = new GPT({ vocabSize: tok.vocabSize, contextLength: 32, dModel: 8, nLayer: 1, nHead: 2 });
    const server = await serve({ model, tokenizer: tok, maxBodyBytes: 400 });
    const open = await serve({ model, tokenizer: tok, cors: 'http://localhost:5173' });
    try {
      const body = (content: string) => JSON.stringify({ messages: [{ role: 'user', content }], max_tokens: 2 });
      const post = (s: typeof server, b: string) => fetch(`${s.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: b });
      const big = await post(server, body('x'.repeat(500)));
      assert.equal(big.status, 413);
      assert.equal(((await big.json()) as { error: { message: string } }).error.message, "the request body is larger than this server's limit of 400 bytes (--max-body-bytes)");
      const small = await post(server, body('hi'));
      assert.equal(small.status, 200);
      assert.equal(small.headers.get('access-control-allow-origin'), null);
      await small.text();
      const pre = await fetch(`${server.url}/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
      assert.equal(pre.status, 405);
      assert.equal(pre.headers.get('access-control-allow-origin'), null);
      await pre.text();
      const allowed = await post(open, body('hi'));
      assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://localhost:5173');
      await allowed.text();
      const pre2 = await fetch(`${open.url}/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' } });
      assert.equal(pre2.status, 204);
      assert.match(pre2.headers.get('access-control-allow-methods') ?? '', /POST/);
      // the default limit is 1 MiB
      const huge = await post(open, body('x'.repeat((1 << 20) + 10)));
      assert.equal(huge.status, 413);
    } finally {
      await server.close();
      await open.close();
      model.dispose();
    }
  });
});
