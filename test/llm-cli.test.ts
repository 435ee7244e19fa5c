// `tsdistill sft` and `tsdistill serve` as processes: train a tiny decoder from chat JSONL, serve the checkpoint,
// ask it over HTTP, stop it with SIGINT.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { startServeProcess } from './helpers';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-llmcli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('tsdistill sft / serve', () => {
  it('sft trains a new decoder from chat JSONL; serve answers with it; SIGINT stops it', async () => {
    const data = path.join(tmp, 'chat.jsonl');
    const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `q${i}` }, { role: 'assistant', content: `answer ${i}` }] }));
    fs.writeFileSync(data, lines.join('\n') + '\n');
    const out = path.join(tmp, 'run');
    const arch = JSON.stringify({ contextLength: 32, dModel: 16, nLayer: 1, nHead: 2 });
    const r = spawnSync(process.execPath, [cli, 'sft', data, '--arch', arch, '--steps', '4', '--seq-len', '16', '--batch', '2', '--out', out, '--json', '--threads', '1'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(summary.steps, 4);
    const again = spawnSync(process.execPath, [cli, 'sft', data, '--arch', arch, '--steps', '4', '--out', out], { encoding: 'utf8' });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /holds a run at step 4 of 4/);
    const bad = spawnSync(process.execPath, [cli, 'sft', data, '--arch', arch, '--steps', '1', '--out', path.join(tmp, 'x'), '--kd', 'jsd'], { encoding: 'utf8' });
    assert.match(bad.stderr, /--kd jsd needs --teacher CHECKPOINT/);
    const dev = spawnSync(process.execPath, [cli, 'sft', data, '--arch', arch, '--steps', '1', '--out', path.join(tmp, 'y'), '--device', 'tpu'], { encoding: 'utf8' });
    assert.equal(dev.status, 1);
    assert.match(dev.stderr, /--device 'tpu': expected cpu, cuda or cuda:N/);
    assert.ok(!fs.existsSync(path.join(tmp, 'y', 'last.safetensors')));

    const ckpt = path.join(out, 'last.safetensors');
    const srv = await startServeProcess(cli, [ckpt, '--port', '0', '--model-name', 'tiny', '--threads', '1'], /at (http:\/\/127\.0\.0\.1:\d+\/v1)/);
    const url = srv.url;
    try {
      const res = await fetch(`${url}/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'q1' }], max_tokens: 5, seed: 1 }),
      });
      assert.equal(res.status, 200);
      const j: any = await res.json();
      assert.equal(j.model, 'tiny');
      assert.ok(j.usage.completion_tokens >= 1 && j.usage.completion_tokens <= 5);
    } finally {
      assert.equal(await srv.stop(), 0, srv.out.stderr);
    }
  });
});
