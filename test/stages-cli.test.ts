// Staged configurations through the tsdistill command: deep mutual learning (two trained roles in one stage) and a
// teacher → assistant → student chain killed (kill -9) in the middle of its second stage, then resumed with --resume
// to the same weights as an uninterrupted run; refusals of configurations that cannot run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { spawnKilledOnFile } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const lines = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

describe('staged configurations (tsdistill distill)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-stages-'));
  it('two students learn from each other: both trained, evaluated and checkpointed', () => {
    const out = path.join(dir, 'dml');
    const r = run(['distill', path.join(root, 'examples', 'dml-mnist.yaml'), '--epochs', '2', '--set', 'data.limit=1500', '--threads', '1', '--out', out, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const stages = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.deepEqual(stages.map((s: { stage: string }) => s.stage), ['mutual']);
    assert.ok(stages[0].best_test_acc > 20 && stages[0].roles.b.final_test_acc > 20, JSON.stringify(stages[0]));
    const m = lines(path.join(out, 'mutual', 'metrics.jsonl'));
    assert.deepEqual(m.map((x) => x.epoch), [1, 2]);
    assert.deepEqual(Object.keys(m[1].terms), ['ce:a.logits', 'ce:b.logits', 'kl:a.logits', 'kl:b.logits']);
    assert.equal(m[1].lr, 0.01);
    for (const f of ['last.safetensors', 'last.b.safetensors', 'best.safetensors']) assert.ok(fs.existsSync(path.join(out, 'mutual', f)), f);
    assert.match(r.stdout, /mutual\s+yes\s+2\s+\d+\.\d+\s+\d+\.\d+\s+b \d+\.\d+/);
    // the report: a row per stage, and the stage's terms among the charted series
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    assert.match(html, /<table id="stages">[\s\S]*<th>mutual<\/th><td>2<\/td>/);
    const data = JSON.parse(/<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html)![1]);
    assert.deepEqual(data.terms['stage-0'], ['loss', 'ce:a.logits', 'ce:b.logits', 'kl:a.logits', 'kl:b.logits']);
  });

  it('a chain killed in its second stage resumes there and ends as the uninterrupted chain', async () => {
    const config = path.join(root, 'examples', 'ta-chain-mnist.yaml');
    const args = (out: string) => ['distill', config, '--epochs', '2', '--set', 'data.limit=4000', '--threads', '1', '--out', out];
    const a = path.join(dir, 'a'), b = path.join(dir, 'b');
    const whole = run(args(a));
    assert.equal(whole.status, 0, whole.stderr);
    assert.match(whole.stdout, /teacher\s+yes/);
    // kill -9 as soon as the assistant stage has committed its first epoch (of two)
    const killed = await spawnKilledOnFile([cli, ...args(b)], path.join(b, 'assistant', 'metrics.jsonl'));
    assert.ok(killed, 'the run was killed');
    assert.ok(!fs.existsSync(path.join(b, 'student')), 'killed before the student stage');
    const refused = run(args(b));
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /assistant holds another run \(state\.json present\): pass --resume/);
    const resumed = run([...args(b), '--resume']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, /teacher\s+no \(finished earlier\)/);
    assert.match(resumed.stdout, /resuming after epoch 1 of 2/);
    for (const f of ['teacher/last.safetensors', 'assistant/last.safetensors', 'student/last.safetensors', 'student/best.safetensors'])
      assert.ok(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), `${f}: byte for byte`);
    const report = JSON.parse(fs.readFileSync(path.join(b, 'stages.json'), 'utf8'));
    assert.deepEqual(report.map((s: { stage: string; epochs: number }) => [s.stage, s.epochs]), [['teacher', 2], ['assistant', 2], ['student', 2]]);
  });

  it('a teacher from elsewhere (TorchScript) as a frozen role; its logits are cached for the second epoch', () => {
    const cfg = path.join(dir, 'ts.yaml');
    const pt = path.join(root, 'test', 'fixtures', 'ts_lenet_half_traced.pt');
    fs.writeFileSync(cfg, [
      'data: { dataset: mnist, batchSize: 64, limit: 640 }',
      'training: { epochs: 2, lr: 0.02 }',
      'stages:',
      '  - name: kd',
      '    roles:',
      `      teacher: { model: torchscript, path: ${JSON.stringify(pt)} }`,
      '      student: { model: lenet5-half, train: true }',
      '    terms:',
      '      - { loss: ce, student: student.logits, teacher: labels, weight: 0.5 }',
      '      - { loss: kl, student: student.logits, teacher: teacher.logits, weight: 0.5, options: { temperature: 4 } }',
      `output: { dir: ${JSON.stringify(path.join(dir, 'ts'))} }`,
    ].join('\n'));
    const r = run(['distill', cfg, '--threads', '1', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const [st] = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(st.teacher_cache, 'built');
    assert.deepEqual(lines(path.join(dir, 'ts', 'kd', 'metrics.jsonl')).map((m) => m.teacher), ['live', 'cached']);
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('teacher: { model: torchscript,', 'teacher: { model: torchscript, train: true,'));
    assert.match(run(['distill', cfg]).stderr, /roles\.teacher: a torchscript teacher cannot be trained/);
  });

  it('refuses what cannot run, naming the key', () => {
    const cfg = path.join(dir, 'bad.yaml');
    const write = (stages: string) => fs.writeFileSync(cfg, `data: { dataset: mnist }\nstages:\n${stages}\n`);
    write('  - { name: s, roles: { a: { model: lenet5 } }, terms: [{ loss: ce, student: a.logits, teacher: labels }] }');
    assert.match(run(['distill', cfg]).stderr, /stages\[0\] \(s\): no role has train: true/);
    write('  - { name: s, roles: { a: { model: lenet5, train: true, from: t } }, terms: [{ loss: ce, student: a.logits, teacher: labels }] }');
    assert.match(run(['distill', cfg]).stderr, /stages\[0\] \(s\)\.roles\.a\.from: 't' is not an earlier stage \(earlier: none\)/);
    write('  - { name: s, roles: { a: { model: lenet5, tran: true } }, terms: [{ loss: ce, student: a.logits, teacher: labels }] }');
    assert.match(run(['distill', cfg]).stderr, /stages\.0\.roles\.a\.tran: unknown key; did you mean 'stages\.0\.roles\.a\.train'\?/);
    write('  - { name: s, roles: { a: { model: lenet5, train: true } }, terms: [{ loss: ce, student: a.logits, teacher: labels }] }');
    assert.match(run(['compare', cfg]).stderr, /a configuration of stages runs with tsdistill distill/);
    assert.match(run(['report', cfg, '--out', path.join(dir, 'none')]).stderr, /stages\.json: cannot read the stages summary/);
  });
  it('cleans up', () => fs.rmSync(dir, { recursive: true }));
});
