// End-to-end: a small model trained on real MNIST data; reproducibility and checkpoints.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { manualSeed, nextTick, tidy, liveTensors } from '../src/torch';
import { F, Linear, loadWeights, saveWeights } from '../src/nn';
import { SGD } from '../src/optim';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5Half } from '../src/models';
import { checkLeaks } from './helpers';

async function run(seed: number, steps: number): Promise<{ losses: number[]; acc: number }> {
  manualSeed(seed);
  const train = loadMnist({ limit: 2048 });
  const model = new LeNet5Half();
  const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const loader = new DataLoader(train, { batchSize: 64, shuffle: true, seed, transforms: [normalize([0.1307], [0.3081])] });
  const losses: number[] = [];
  for (let epoch = 0; losses.length < steps; epoch++) {
    loader.setEpoch(epoch);
    for await (const b of loader) {
      losses.push(tidy(() => {
        const loss = F.crossEntropy(model.call(b.x), b.y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        return loss.item();
      }));
      b.x.dispose();
      b.y.dispose();
      if (losses.length === steps) break;
      await nextTick();
    }
  }
  const test = loadMnist({ split: 'test', limit: 1000 });
  const acc = tidy(() => {
    const b = new DataLoader(test, { batchSize: 1000, transforms: [normalize([0.1307], [0.3081])] }).batchAt(0);
    return model.call(b.x).argmax(1).eq(b.y).float().mean().item();
  });
  for (const x of [model, train, test]) x.dispose();
  opt.dispose();
  return { losses, acc };
}

describe('training on MNIST', () => {
  checkLeaks();
  it('learns, and the same seed gives the same loss trajectory', async () => {
    const before = liveTensors();
    const a = await run(7, 60);
    const b = await run(7, 60);
    const c = await run(8, 60);
    assert.deepEqual(a.losses, b.losses);
    assert.notDeepEqual(a.losses, c.losses);
    assert.ok(a.losses[59] < a.losses[0] * 0.5, `loss ${a.losses[0]} -> ${a.losses[59]}`);
    assert.ok(a.acc > 0.75, `test accuracy ${a.acc}`);
    assert.equal(liveTensors(), before);
  });
  it('saves and loads weights as safetensors; a mismatch names the file and keys', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ckpt-'));
    const file = path.join(dir, 'student.safetensors');
    const a = new LeNet5Half();
    saveWeights(a, file, { note: 'test' });
    const b = new LeNet5Half();
    assert.deepEqual(loadWeights(b, file), { format: 'pt', note: 'test' });
    tidy(() => assert.deepEqual(b.fc.weight.toArray(), a.fc.weight.toArray()));
    const wrong = new Linear(3, 2);
    assert.throws(() => loadWeights(wrong, file), (e: Error) =>
      e.message.startsWith(file) && /missing keys \(2\): weight, bias/.test(e.message) && /unexpected keys \(4\): conv\.bias, conv\.weight, fc\.bias, fc\.weight/.test(e.message));
    for (const m of [a, b, wrong]) m.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
