import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { applyOverrides, loadConfig, validateConfig } from '../src/run';

const examples = path.join(__dirname, '..', '..', 'examples');
const base = { data: { dataset: 'mnist' }, student: { model: 'lenet5-half' } };

describe('run configuration', () => {
  it('loads the seed recipe with defaults filled in', () => {
    const c = loadConfig(path.join(examples, 'seed-mnist-lenet.yaml'));
    assert.equal(c.distill.alpha, 0.3);
    assert.equal(c.training.epochs, 5);
    assert.equal(c.student.options.outputRelu, true);
    assert.equal(c.data.normalize, true);
    assert.equal(c.training.weightDecay, 0);
    assert.equal(c.output.checkpointEvery, 1);
  });
  it('applies --set overrides with typed values', () => {
    const c = loadConfig(path.join(examples, 'seed-mnist-lenet.yaml'), ['training.lr=0.05', 'distill.softLoss=soft_ce', 'data.limit=1000', 'output.dir=/tmp/x']);
    assert.equal(c.training.lr, 0.05);
    assert.equal(c.distill.softLoss, 'soft_ce');
    assert.equal(c.data.limit, 1000);
    assert.equal(c.output.dir, '/tmp/x');
    assert.throws(() => applyOverrides({}, ['training.lr']), /expected key\.path=value/);
  });
  it('names unknown keys with the closest valid one', () => {
    assert.throws(
      () => validateConfig({ ...base, training: { lrr: 0.1, epochs: 2 }, distil: {} }, 'x.yaml'),
      (e: Error) => /x\.yaml: invalid configuration/.test(e.message) &&
        /training\.lrr: unknown key; did you mean 'training\.lr'\?/.test(e.message) &&
        /distil: unknown key; did you mean 'distill'\?/.test(e.message),
    );
  });
  it('checks types, ranges and enums', () => {
    assert.throws(() => validateConfig({ ...base, distill: { alpha: 1.5 } }), /distill\.alpha: .*(<=|less than or equal).*1/i);
    assert.throws(() => validateConfig({ ...base, training: { epochs: 2.5 } }), /training\.epochs: .*int/i);
    assert.throws(() => validateConfig({ ...base, data: { dataset: 'cifar' } }), /data\.dataset: .*(mnist|expected one of)/i);
    assert.throws(() => validateConfig({ data: { dataset: 'mnist' } }), /student: /);
  });
  it('checks referenced files before anything runs', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cfg-'));
    const f = path.join(dir, 'c.yaml');
    fs.writeFileSync(f, 'data: {dataset: mnist}\nstudent: {model: lenet5-half}\nteacher: {model: lenet5, checkpoint: teacher.safetensors}\n');
    assert.throws(() => loadConfig(f), new RegExp(`teacher\\.checkpoint: file not found: ${path.join(dir, 'teacher.safetensors').replace(/[.]/g, '\\.')}`));
    fs.writeFileSync(path.join(dir, 'teacher.safetensors'), '');
    assert.equal(loadConfig(f).teacher!.checkpoint, path.join(dir, 'teacher.safetensors'));
    fs.writeFileSync(f, 'data: [unclosed');
    assert.throws(() => loadConfig(f), /c\.yaml: not valid YAML/);
    fs.rmSync(dir, { recursive: true });
  });
});
