// examples/own-images.yaml and examples/own-text.yaml as written, on the data examples/own-data.ts makes: each trains
// its teacher and distils its student (one epoch each here).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfigData, prepareConfig, runFromConfig } from '../src/run';
import { makeOwnData } from '../examples/own-data';
import { checkLeaks } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-own-examples-'));
process.env.TSDISTILL_CACHE = path.join(root, 'cache');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const examples = path.join(__dirname, '..', '..', 'examples');

describe('examples on own data', () => {
  checkLeaks();
  makeOwnData(path.join(root, 'own-data'));

  for (const [name, kind] of [['own-images.yaml', 'image'], ['own-text.yaml', 'text']] as const)
    it(`${name}: trains the teacher and distils the student`, async () => {
      const file = path.join(root, name);
      fs.copyFileSync(path.join(examples, name), file);
      const cfg = prepareConfig(file, ['training.epochs=1', `output.dir=${path.join(root, 'runs', name)}`]);
      const data = loadConfigData(cfg);
      try {
        assert.equal(data.train.length, kind === 'image' ? 180 : 600);
        assert.equal(data.test.length, kind === 'image' ? 60 : 200);
        assert.equal(data.train.classes.length, kind === 'image' ? 3 : 2);
        const flags = { file, force: true, progress: false, log: () => {} };
        const t = await runFromConfig(cfg, 'teacher', data, flags);
        const s = await runFromConfig(cfg, 'distilled', data, flags);
        assert.deepEqual([t.epochs, s.epochs], [1, 1]);
        assert.ok(Number.isFinite(t.best_test_acc) && Number.isFinite(s.best_test_acc), `teacher ${t.best_test_acc} %, student ${s.best_test_acc} %`);
        assert.ok(fs.existsSync(path.join(root, 'runs', name, 'distilled', 'best.safetensors')));
      } finally {
        data.train.dispose();
        data.test.dispose();
      }
    });

  it('the command trains on own data (tsdistill train own-text.yaml --role student)', () => {
    const file = path.join(root, 'own-text.yaml');
    if (!fs.existsSync(file)) fs.copyFileSync(path.join(examples, 'own-text.yaml'), file);
    const out = path.join(root, 'runs', 'cli');
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'src', 'cli', 'main.js'), 'train', file, '--role', 'student', '--epochs', '1', '--out', out, '--json'], {
      encoding: 'utf8', env: { ...process.env, TSDISTILL_CACHE: path.join(root, 'cache') },
    });
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(summary.epochs, 1);
    assert.ok(fs.existsSync(path.join(out, 'student', 'best.safetensors')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).data.train, path.join(root, 'own-data', 'reviews', 'train.tsv'));
  });
});
