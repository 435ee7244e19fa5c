// A smoke run of bench/view-cache on a small MNIST subset: a teacher saved by --teacher-file is read back by the next
// run (same weights, same accuracy, no training), --kinds picks the students (the jittered student alone among them)
// and --student-aug false is recorded.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

const script = path.join(__dirname, '..', 'bench', 'view-cache.js');
const bench = (args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '1' } });

describe('bench/view-cache (smoke)', () => {
  it('saves the trained teacher, reads it back, and trains only the students asked for', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-views-bench-'));
    const file = path.join(dir, 'teacher.safetensors');
    const common = ['--data', 'mnist', '--n', '200', '--test', '100', '--teacher', 'mlp', '--student', 'mlp', '--teacher-epochs', '1', '--epochs', '1', '--views', '2', '--T', '20',
      '--batch', '50', '--wd', '0', '--timing-rounds', '0', '--threads', '1', '--teacher-file', file, '--student-aug', 'false'];
    try {
      const a = bench([...common, '--seeds', '0', '--kinds', 'plain']);
      assert.equal(a.status, 0, a.stderr);
      const ja = JSON.parse(a.stdout.trim().split('\n').pop()!);
      assert.equal(ja.teacher_from_file, false);
      assert.ok(fs.existsSync(file));
      assert.equal(ja.student_aug, false);
      assert.equal(ja.acc.plain.length, 1);
      assert.deepEqual([ja.acc.live.length, ja.acc.views.length], [0, 0]);
      assert.match(a.stdout, /alone \(CE\), no jitter/);
      const b = bench([...common, '--seeds', '0', '--kinds', 'live,views']);
      assert.equal(b.status, 0, b.stderr);
      const jb = JSON.parse(b.stdout.trim().split('\n').pop()!);
      assert.equal(jb.teacher_from_file, true);
      assert.match(b.stderr, /teacher: read from .*teacher\.safetensors/);
      assert.doesNotMatch(b.stderr, /teacher epoch 1\/1/);
      assert.equal(jb.teacher_acc, ja.teacher_acc);
      assert.deepEqual([jb.acc.plain.length, jb.acc.live.length, jb.acc.views.length], [0, 1, 1]);
      assert.doesNotMatch(b.stdout, /NaN/); // no plain row: the ratio column reads '—'
      // 'jitter': the student alone on the teacher's augmentation while --student-aug false keeps 'plain' un-augmented
      const c = bench([...common, '--seeds', '0', '--kinds', 'plain,jitter']);
      assert.equal(c.status, 0, c.stderr);
      const jc = JSON.parse(c.stdout.trim().split('\n').pop()!);
      assert.deepEqual([jc.acc.plain.length, jc.acc.jitter.length, jc.acc.live.length, jc.acc.views.length], [1, 1, 0, 0]);
      assert.equal(jc.acc.plain[0], ja.acc.plain[0]);
      assert.match(c.stdout, /alone \(CE\), no jitter/);
      assert.match(c.stdout, /alone \(CE\), augmented/);
      assert.deepEqual(Object.keys(jc.test_errors), ['plain', 'jitter']);
      assert.equal(jc.test_errors.jitter[0], Math.round(100 - jc.acc.jitter[0]));
      const bad = bench([...common, '--seeds', '0', '--kinds', 'plain,cached']);
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /--kinds: unknown student 'cached'/);
      // --teacher-n: the teacher trains on more images than the students see
      const i = common.indexOf('--teacher-file');
      const d = bench([...common.slice(0, i), ...common.slice(i + 2), '--teacher-n', '400', '--seeds', '0', '--kinds', 'plain']);
      assert.equal(d.status, 0, d.stderr);
      const jd = JSON.parse(d.stdout.trim().split('\n').pop()!);
      assert.deepEqual([jd.n, jd.teacher_n, jd.teacher_from_file], [200, 400, false]);
      assert.match(d.stderr, /teacher: trained 1 epochs on 400 images/);
      assert.match(d.stdout, /mlp \(400 images, 1 epochs/);
      const fewer = bench([...common, '--seeds', '0', '--kinds', 'plain', '--teacher-n', '100']);
      assert.notEqual(fewer.status, 0);
      assert.match(fewer.stderr, /--teacher-n: 100 must be an integer ≥ --n \(200\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
