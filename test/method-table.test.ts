// A smoke run of the CIFAR-10 method table on a small subset: every method trains for one epoch and lands in the table.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { sharedDataDir } from '../src/data';

describe('bench/method-table (smoke)', () => {
  it('trains a teacher and one student per method on a CIFAR-10 subset and writes the table', (t) => {
    const shared = sharedDataDir();
    if (!shared || !fs.existsSync(path.join(shared, 'cifar10-jpeg.tar.gz'))) return t.skip('../shared/data/cifar10-jpeg.tar.gz is absent');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-methods-'));
    const script = path.join(__dirname, '..', 'bench', 'method-table.js');
    const r = spawnSync(process.execPath, [script, '--limit', '256', '--test-limit', '500', '--epochs', '1', '--teacher', 'resnet8', '--student', 'resnet8', '--methods', 'plain,kd,at,dkd,fsp', '--batch', '64', '--threads', '2', '--out', out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.deepEqual(j.rows.map((x: any) => x.method), ['plain', 'kd', 'at', 'dkd', 'fsp']);
    assert.equal(j.train_images, 256);
    assert.ok(j.rows.every((x: any) => x.acc >= 0 && x.acc <= 100 && x.epoch_s > 0));
    assert.match(fs.readFileSync(path.join(out, 'method-table.md'), 'utf8'), /\| at \| AT on the 3 stages, β = 1000 \|/);
    const terms = JSON.parse(fs.readFileSync(path.join(out, 'at', 'metrics.jsonl'), 'utf8').trim().split('\n')[0]).terms;
    assert.deepEqual(Object.keys(terms), ['at:layer1', 'at:layer2', 'at:layer3']);
    const fsp = JSON.parse(fs.readFileSync(path.join(out, 'fsp', 'metrics.jsonl'), 'utf8').trim().split('\n')[0]).terms;
    assert.deepEqual(Object.keys(fsp), ['fsp:layer1.0+layer1', 'fsp:layer2.0+layer2', 'fsp:layer3.0+layer3']);
    assert.ok(Object.values(fsp).every((v) => Number.isFinite(v as number) && (v as number) > 0), JSON.stringify(fsp));
    fs.rmSync(out, { recursive: true });
  });
});
