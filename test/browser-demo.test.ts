// The browser demo end to end in headless Chromium: a LeNet-5 trained briefly on MNIST, exported to ONNX with a
// model card (normalisation, classes), served locally (examples/browser/serve.ts), run by onnxruntime-web. The page's
// logits must match libtorch's on the same pixels, for test images and for a stroke drawn on the canvas, and the
// screenshot must show the digit and the probability bars. Skips when Chromium is not installed.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { Tensor, manualSeed, noGrad, tensor, tidy } from '../src/torch';
import { F } from '../src/nn';
import { Adam } from '../src/optim';
import { DataLoader, loadMnist, normalize } from '../src/data';
import { LeNet5 } from '../src/models';
import { saveOnnx } from '../src/export';
import { startDemoServer } from '../examples/browser/serve';
import { checkLeaks } from './helpers';

const MEAN = 0.1307, STD = 0.3081;

function chromium(): string | null {
  for (const c of ['chromium', 'chromium-browser']) if (spawnSync('which', [c]).status === 0) return c;
  return null;
}

/** Chromium runs asynchronously: the demo server answers from this process's event loop. */
function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 90_000, maxBuffer: 1 << 26 }, (_e, stdout, stderr) => resolve({ stdout, stderr }));
  });
}

async function browse(browser: string, url: string, dir: string, what: 'dom' | 'screenshot'): Promise<string> {
  const shot = path.join(dir, `shot-${Math.random().toString(36).slice(2)}.png`);
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--hide-scrollbars', `--user-data-dir=${path.join(dir, 'profile')}`, '--window-size=900,600', '--virtual-time-budget=30000',
    what === 'dom' ? '--dump-dom' : `--screenshot=${shot}`, url];
  const r = await run(browser, args);
  if (what === 'screenshot') {
    assert.ok(fs.existsSync(shot), `chromium wrote no screenshot: ${r.stderr}`);
    return shot;
  }
  const m = /<pre id="result">([^<]*)<\/pre>/.exec(r.stdout);
  assert.ok(m && m[1], `the page wrote no result; status: ${/id="status">([^<]*)/.exec(r.stdout)?.[1]} ${r.stderr.slice(-500)}`);
  return m[1].replace(/&quot;/g, '"').replace(/&amp;/g, '&');
}

/** libtorch logits of LeNet on raw 28x28 grey pixels (0..255), normalised as the card says. */
function torchLogits(model: LeNet5, pixels: number[]): number[] {
  return tidy(() => noGrad(() => {
    const x = tensor(Float32Array.from(pixels, (v) => (v / 255 - MEAN) / STD), { shape: [1, 1, 28, 28] });
    return Array.from((model.call(x) as Tensor).data() as Float32Array);
  }));
}

describe('browser demo (onnxruntime-web in headless Chromium)', () => {
  checkLeaks();
  it('test images and a drawn stroke: same logits as libtorch (<= 1e-4), a trained model mostly right, bars drawn', async (t) => {
    const browser = chromium();
    if (!browser) return t.skip('chromium not installed: apt-get install chromium');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-browser-'));
    manualSeed(0);
    const model = new LeNet5(10);
    const train = loadMnist({ split: 'train', limit: 3000 });
    const opt = new Adam(model.parameters(), { lr: 2e-3 });
    try {
      for (const b of new DataLoader(train, { batchSize: 64, shuffle: true, seed: 1, transforms: [normalize([MEAN], [STD])] }))
        tidy(() => {
          const loss = F.crossEntropy(model.call(b.x) as Tensor, b.y);
          opt.zeroGrad();
          loss.backward();
          opt.step();
          b.dispose();
        });
      model.eval();
      const onnx = path.join(dir, 'student.onnx');
      saveOnnx(model, onnx, { inputShape: [1, 28, 28] });
      fs.writeFileSync(path.join(dir, 'model-card.json'), JSON.stringify({
        card_version: 1, name: 'lenet5 (test)', input: { name: 'input', shape: [1, 28, 28], dtype: 'float32', preprocessing: { scale: 1 / 255, mean: [MEAN], std: [STD] } },
        output: { name: 'logits', classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] }, data: { dataset: 'mnist' },
      }));
      const server = await startDemoServer({ model: onnx, port: 0, samples: 16 });
      try {
        const samples = JSON.parse(await (await fetch(server.url + 'samples.json')).text());
        const ks = [0, 1, 2, 3, 4, 5];
        const results = JSON.parse(await browse(browser, `${server.url}?sample=${ks.join(',')}`, dir, 'dom'));
        assert.equal(results.length, ks.length);
        let right = 0;
        for (const r of results) {
          const expected = torchLogits(model, samples.images[r.k].pixels);
          const diff = Math.max(...expected.map((v, i) => Math.abs(v - r.logits[i])));
          assert.ok(diff <= 1e-4, `sample ${r.k}: max |browser - libtorch| = ${diff}`);
          assert.equal(r.predicted, expected.indexOf(Math.max(...expected)));
          assert.equal(r.label, samples.images[r.k].label);
          if (r.predicted === r.label) right++;
        }
        assert.ok(right >= 4, `a LeNet-5 trained on 3,000 images should get most of ${ks.length} test digits right, got ${right}`);

        // the drawing path: the page's own 28x28 downscale of a vertical stroke, classified
        const drawn = JSON.parse(await browse(browser, `${server.url}?draw=1`, dir, 'dom'));
        assert.equal(drawn.pixels.length, 784);
        assert.ok(drawn.pixels[14 * 28 + 14] > 200 && drawn.pixels[0] === 0 && drawn.pixels[14 * 28 + 3] === 0, 'a white vertical stroke on black');
        const expected = torchLogits(model, drawn.pixels);
        assert.ok(Math.max(...expected.map((v, i) => Math.abs(v - drawn.logits[i]))) <= 1e-4);

        // the screenshot shows the digit (white pixels on the black pad) and the bars (blue, the top one red)
        const png = PNG.sync.read(fs.readFileSync(await browse(browser, `${server.url}?sample=0`, dir, 'screenshot')));
        const count = (r: number, g: number, b: number) => {
          let n = 0;
          for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === r && png.data[i + 1] === g && png.data[i + 2] === b) n++;
          return n;
        };
        assert.ok(count(255, 255, 255) > 1000 && count(0, 0, 0) > 20000, 'the digit is drawn on the pad');
        assert.ok(count(0xd6, 0x27, 0x28) > 20, 'the top class bar is drawn');
      } finally {
        await server.close();
      }
    } finally {
      opt.dispose();
      train.dispose();
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
