// Scheme configurations through the tsdistill command: `compare` on a scheme prints every peer / generation / link and
// the baseline (and the offline-KD row) as a JSON line; a born-again chain killed (kill -9) in the middle of a
// generation, then of its offline-KD stage, resumes with --resume to the same weights as an uninterrupted run; every
// example scheme expands to valid stages; errors name the key.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { loadSchemeConfig } from '../src/run';
import { spawnKilledOnFile } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

describe('scheme configurations (tsdistill compare / distill)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-schemes-cli-'));

  it('compare on deep mutual learning: every peer and the baseline in one JSON line', () => {
    const r = run(['compare', path.join(root, 'examples', 'dml-scheme-fmnist.yaml'), '--epochs', '1', '--set', 'data.limit=640', '--threads', '1', '--out', path.join(dir, 'dml')]);
    assert.equal(r.status, 0, r.stderr);
    const j = lastJson(r.stdout);
    assert.equal(j.scheme, 'mutual');
    assert.deepEqual(j.rows.map((x: { row: string }) => x.row), ['peer a', 'peer b', 'alone (baseline)', 'offline KD']);
    for (const x of j.rows) assert.ok(x.acc > 10 && x.params === 61706 && x.latency_b1_ms > 0, JSON.stringify(x));
    assert.equal(j.baseline.row, 'alone (baseline)');
    assert.ok(Math.abs(j.gain - (j.result.acc - j.baseline.acc)) < 1e-9);
    assert.equal(j.kd.row, 'offline KD');
    assert.ok(Math.abs(j.kd_gain - (j.result.acc - j.kd.acc)) < 1e-9);
    assert.match(r.stdout, /points against alone \(baseline\), [+-]\d+\.\d\d points against offline KD/);
    const kdm = JSON.parse(fs.readFileSync(path.join(dir, 'dml', 'kd', 'metrics.jsonl'), 'utf8').trim());
    assert.deepEqual(Object.keys(kdm.terms), ['ce', 'kd']);
    assert.match(r.stdout, /peer a\s+mutual\s+lenet5/);
    const m = fs.readFileSync(path.join(dir, 'dml', 'mutual', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(Object.keys(m[0].terms), ['ce:a', 'kl:a<-b', 'ce:b', 'kl:b<-a']);
    // KDCL's target: the KL to the peers' averaged soft targets
    const k = run(['compare', path.join(root, 'examples', 'dml-scheme-fmnist.yaml'), '--epochs', '1', '--set', 'data.limit=320', '--set', 'scheme.target=mean', '--threads', '1', '--out', path.join(dir, 'kdcl')]);
    assert.equal(k.status, 0, k.stderr);
    const km = JSON.parse(fs.readFileSync(path.join(dir, 'kdcl', 'mutual', 'metrics.jsonl'), 'utf8').trim());
    assert.deepEqual(Object.keys(km.terms), ['ce:a', 'kl:a<-peers', 'ce:b', 'kl:b<-peers']);
  });

  it('compare on teacher assistants: each link, the direct teacher → student run and the student alone', () => {
    const r = run(['compare', path.join(root, 'examples', 'ta-scheme-mnist.yaml'), '--epochs', '1', '--set', 'data.limit=640', '--threads', '1', '--out', path.join(dir, 'ta')]);
    assert.equal(r.status, 0, r.stderr);
    const j = lastJson(r.stdout);
    assert.deepEqual(j.rows.map((x: { row: string }) => x.row), ['teacher', 'assistant1', 'student (TAKD)', 'student (direct KD)', 'alone (baseline)']);
    assert.equal(j.result.row, 'student (TAKD)');
    assert.equal(j.kd.row, 'student (direct KD)', 'the direct link is the offline-KD row');
  });

  it('a born-again chain killed in generation 2 and again in its offline-KD stage resumes there and ends as the uninterrupted chain', async () => {
    const config = path.join(root, 'examples', 'born-again-fmnist.yaml');
    const args = (out: string) => ['distill', config, '--epochs', '2', '--set', 'data.limit=3000', '--threads', '1', '--out', out];
    const a = path.join(dir, 'ban-a'), b = path.join(dir, 'ban-b');
    const whole = run(args(a));
    assert.equal(whole.status, 0, whole.stderr);
    // kill -9 once the stage has written its first epoch
    const killIn = (stageName: string, extra: string[] = []) => spawnKilledOnFile([cli, ...args(b), ...extra], path.join(b, stageName, 'metrics.jsonl'));
    assert.ok(await killIn('gen2'), 'the run was killed');
    assert.ok(!fs.existsSync(path.join(b, 'gen2', 'summary.json')), 'killed before generation 2 finished');
    assert.ok(await killIn('kd', ['--resume']), 'the resumed run was killed in the kd stage');
    assert.ok(fs.existsSync(path.join(b, 'gen2', 'summary.json')) && !fs.existsSync(path.join(b, 'kd', 'summary.json')), 'killed in the kd stage');
    const resumed = run([...args(b), '--resume']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, /gen0\s+no \(finished earlier\)/);
    assert.match(resumed.stdout, /gen2\s+no \(finished earlier\)/);
    assert.match(resumed.stdout, /kd\s+yes/);
    for (const f of ['gen0/last.safetensors', 'gen1/last.safetensors', 'gen2/last.safetensors', 'gen2/best.safetensors', 'kd/last.safetensors', 'kd/best.safetensors'])
      assert.ok(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), `${f}: byte for byte`);
    // compare on the finished chain trains nothing more: every generation, their ensemble and the offline-KD row
    const c = run(['compare', config, '--epochs', '2', '--set', 'data.limit=3000', '--threads', '1', '--out', b]);
    assert.equal(c.status, 0, c.stderr);
    const j = lastJson(c.stdout);
    assert.deepEqual(j.rows.map((x: { row: string }) => x.row), ['gen0', 'gen1', 'gen2', 'offline KD']);
    assert.ok(j.ensemble_acc > 10 && j.baseline.row === 'gen0' && j.kd.stage === 'kd', JSON.stringify(j));
    assert.doesNotMatch(c.stdout, /stage \d\/4: [\w-]+\n/);
  });

  it('every example scheme expands to valid stages', () => {
    const expected: Record<string, string[]> = {
      'dml-scheme-fmnist': ['mutual', 'alone', 'kd'], 'born-again-fmnist': ['gen0', 'gen1', 'gen2', 'kd'], 'ta-scheme-mnist': ['teacher', 'assistant1', 'student', 'direct', 'alone'],
      'byot-cifar10': ['self', 'alone', 'kd-teacher', 'kd'], 'cskd-fmnist': ['cskd', 'alone', 'kd'], 'tfkd-fmnist': ['virtual', 'alone', 'kd'],
      'fsp-cifar10': ['teacher', 'fsp-init', 'train', 'alone', 'kd'], 'theseus-cifar10': ['predecessor', 'replace', 'finetune', 'alone', 'kd'],
    };
    for (const [name, stages] of Object.entries(expected)) {
      const l = loadSchemeConfig(path.join(root, 'examples', `${name}.yaml`));
      assert.deepEqual(l.staged.stages.map((s) => s.name), stages, name);
    }
    const byot = loadSchemeConfig(path.join(root, 'examples', 'byot-cifar10.yaml')).staged.stages[0];
    assert.deepEqual(byot.terms.map((t) => t.name), ['ce:deepest', 'ce:exit0', 'kd:exit0', 'hint:exit0', 'ce:exit1', 'kd:exit1', 'hint:exit1']);
    assert.equal(loadSchemeConfig(path.join(root, 'examples', 'cskd-fmnist.yaml')).staged.stages[0].batches, 'pairs');
  });

  it('refuses what cannot run, naming the key', () => {
    const cfg = path.join(dir, 'bad.yaml');
    const write = (scheme: string) => fs.writeFileSync(cfg, `data: { dataset: mnist }\nscheme: ${scheme}\n`);
    write('{ kind: born-agian }');
    assert.match(run(['distill', cfg]).stderr, /scheme\.kind: expected one of mutual, born-again, .*; did you mean 'born-again'\?/);
    write('{ kind: born-again, model: { model: lenet5 }, generation: 2 }');
    assert.match(run(['distill', cfg]).stderr, /scheme\.generation: unknown key for scheme kind 'born-again'; did you mean 'scheme\.generations'\?/);
    write('{ kind: mutual, peers: { a: { model: lenet5, optoins: {} }, b: { model: lenet5 } } }');
    assert.match(run(['distill', cfg]).stderr, /scheme\.peers\.a\.optoins: unknown key; did you mean 'scheme\.peers\.a\.options'\?/);
    write('{ kind: mutual, peers: { a: { model: lenet5 } } }');
    assert.match(run(['distill', cfg]).stderr, /scheme\.peers: mutual learning needs at least two peers, got 1/);
    write('{ kind: byot, model: { model: lenet5 } }');
    assert.match(run(['distill', cfg]).stderr, /scheme\.model: MultiExit: exits attach to the CIFAR ResNets, Wide ResNets and VGGs/);
    write('{ kind: teacher-assistant, teacher: { model: lenet5, checkpoint: nowhere.safetensors }, assistants: [{ model: lenet5-half }], student: { model: mlp } }');
    assert.match(run(['distill', cfg]).stderr, /roles\.teacher\.checkpoint: file not found/);
  });
  it('cleans up', () => fs.rmSync(dir, { recursive: true }));
});
