// The tsdistill command end to end on a small MNIST subset: train a teacher, distill, evaluate; kill -9 during a run
// and resume to the same weights; refusals and errors.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const config = path.join(root, 'examples', 'seed-mnist-lenet.yaml');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const common = ['--set', 'data.limit=3000', '--set', 'distill.cache=false', '--threads', '1'];

describe('tsdistill CLI', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cli-'));
  it('trains a teacher, distills a student and evaluates it', () => {
    const t = run(['train', config, '--epochs', '1', '--out', out, ...common]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /teacher: best test accuracy \d+\.\d+ %/);
    const d = run(['distill', config, '--epochs', '3', '--out', out, '--json', ...common]);
    assert.equal(d.status, 0, d.stderr);
    const summary = JSON.parse(d.stdout.trim().split('\n').pop()!);
    assert.equal(summary.epochs, 3);
    assert.ok(summary.best_test_acc > 30, `distilled accuracy ${summary.best_test_acc}`);
    const metrics = fs.readFileSync(path.join(out, 'distilled', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(metrics.map((m) => m.epoch), [1, 2, 3]);
    assert.ok(metrics.every((m) => Number.isFinite(m.hard) && Number.isFinite(m.soft)));
    const e = run(['eval', config, '--out', out, '--role', 'student', '--weights', path.join(out, 'distilled', 'best.safetensors'), '--json']);
    assert.equal(e.status, 0, e.stderr);
    assert.equal(JSON.parse(e.stdout.trim().split('\n').pop()!).test_acc, summary.best_test_acc);
  });
  it('refuses to overwrite a run unless --resume or --force', () => {
    const r = run(['distill', config, '--epochs', '3', '--out', out, ...common]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds another run \(state\.json present\): pass --resume to continue it or --force to overwrite it/);
  });
  it('a run killed with SIGKILL and resumed ends with the same weights', async () => {
    const out2 = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cli-'));
    fs.cpSync(path.join(out, 'teacher'), path.join(out2, 'teacher'), { recursive: true });
    const args = ['distill', config, '--epochs', '3', '--out', out2, ...common];
    const child = spawn(process.execPath, [cli, ...args], { stdio: 'ignore' });
    const metrics = path.join(out2, 'distilled', 'metrics.jsonl');
    let killedAt = -1;
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const n = fs.existsSync(metrics) ? fs.readFileSync(metrics, 'utf8').trim().split('\n').filter(Boolean).length : 0;
        if (n >= 1) {
          child.kill('SIGKILL');
          killedAt = n;
          clearInterval(poll);
        }
      }, 5);
      child.on('exit', () => { clearInterval(poll); resolve(); });
    });
    assert.ok(killedAt >= 1 && killedAt < 3, `the run was killed after ${killedAt} epoch(s)`);
    const r = run([...args, '--resume']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /resuming after epoch \d of 3/);
    const a = fs.readFileSync(path.join(out, 'distilled', 'last.safetensors'));
    const b = fs.readFileSync(path.join(out2, 'distilled', 'last.safetensors'));
    assert.ok(a.equals(b), 'resumed weights equal the uninterrupted run byte for byte');
    const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch);
    assert.deepEqual(lines, [1, 2, 3]);
    fs.rmSync(out2, { recursive: true });
  });
  it('Ctrl-C saves mid-epoch, exits 130, and --resume ends with the same weights', async () => {
    const out3 = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cli-'));
    fs.cpSync(path.join(out, 'teacher'), path.join(out3, 'teacher'), { recursive: true });
    const args = ['distill', config, '--epochs', '3', '--out', out3, ...common];
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const metrics = path.join(out3, 'distilled', 'metrics.jsonl');
    const code = await new Promise<number | null>((resolve) => {
      let sent = false;
      const poll = setInterval(() => {
        if (!sent && fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').trim()) {
          // a few steps into the second epoch
          setTimeout(() => child.kill('SIGINT'), 40);
          sent = true;
        }
      }, 5);
      child.on('exit', (c) => { clearInterval(poll); resolve(c); });
    });
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted at epoch [23], step \d+: the model and optimizer state are saved in .*; continue with --resume/);
    const state = JSON.parse(fs.readFileSync(path.join(out3, 'distilled', 'state.json'), 'utf8'));
    const r = run([...args, '--resume']);
    assert.equal(r.status, 0, r.stderr);
    if (state.partial) assert.match(r.stdout, new RegExp(`resuming at epoch 2 of 3, step ${state.partial.step} of \\d+`));
    const a = fs.readFileSync(path.join(out, 'distilled', 'last.safetensors'));
    const b = fs.readFileSync(path.join(out3, 'distilled', 'last.safetensors'));
    assert.ok(a.equals(b), 'weights after Ctrl-C and --resume equal the uninterrupted run byte for byte');
    const m = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const ref = fs.readFileSync(path.join(out, 'distilled', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(m.map((x) => [x.epoch, x.loss, x.test_acc]), ref.map((x) => [x.epoch, x.loss, x.test_acc]));
    fs.rmSync(out3, { recursive: true });
  });
  it('refuses an output directory holding a run of another configuration', () => {
    const r = run(['distill', config, '--epochs', '3', '--out', out, '--resume', ...common, '--set', 'distill.temperature=2']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds a run of another configuration \(distill\.temperature: 4 there, 2 here\); choose another --out, or pass --force/);
  });
  it('compare trains what is missing and prints the verdict', () => {
    const r = run(['compare', config, '--epochs', '3', '--out', out, '--json', ...common]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /student alone/);
    assert.match(r.stdout, /top-1 agreement with teacher \(%\)/);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    for (const k of ['teacher_acc', 'plain_acc', 'kd_acc', 'gap_closed', 'teacher_epoch_s', 'plain_epoch_s', 'kd_epoch_s', 'kd_cached_epoch_s'])
      assert.ok(k in j, k);
    if (j.teacher_acc > j.plain_acc) {
      assert.match(r.stdout, /teacher gap closed by distillation: -?\d+\.\d %/);
      assert.ok(Math.abs(j.gap_closed - (j.kd_acc - j.plain_acc) / (j.teacher_acc - j.plain_acc)) < 1e-12);
    } else {
      assert.match(r.stdout, /teacher gap closed by distillation: n\/a \(the teacher/);
      assert.equal(j.gap_closed, null);
    }
    assert.ok(fs.existsSync(path.join(out, 'student', 'best.safetensors')));
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(saved.reports.student.params, 4408);
    assert.equal(saved.reports.teacher.params, 61706);
  });
  it('compare --seeds runs one comparison per seed and reports mean ± std', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-cli-'));
    const r = run(['compare', config, '--seeds', '0,1', '--epochs', '1', '--out', dir, '--json', ...common, '--set', 'data.limit=1000']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /mean ± std +\d+\.\d\d ± \d+\.\d\d/);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.deepEqual(j.seeds, [0, 1]);
    const per = [0, 1].map((s) => JSON.parse(fs.readFileSync(path.join(dir, `seed-${s}`, 'summary.json'), 'utf8')));
    assert.ok(Math.abs(j.mean.kd_acc - (per[0].kd_acc + per[1].kd_acc) / 2) < 1e-9);
    assert.ok(Math.abs(j.std.kd_acc - Math.abs(per[0].kd_acc - per[1].kd_acc) / Math.SQRT2) < 1e-9);
    for (const s of [0, 1]) assert.ok(fs.existsSync(path.join(dir, `seed-${s}`, 'report.html')), `seed-${s}/report.html`);
    fs.rmSync(dir, { recursive: true });
  });
  it('reports config and usage errors', () => {
    const bad = run(['distill', config, '--set', 'training.lrr=1']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /training\.lrr: unknown key; did you mean 'training\.lr'\?/);
    const cmd = run(['distil', config]);
    assert.match(cmd.stderr, /unknown command 'distil'; did you mean 'distill'\?/);
    const model = run(['train', config, '--set', 'teacher.model=lenet6', '--out', path.join(out, 'x')]);
    assert.match(model.stderr, /unknown model 'lenet6'\. Closest: lenet5/);
    fs.rmSync(out, { recursive: true });
  });
});
