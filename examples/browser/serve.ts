// Serves the browser demo (examples/browser/index.html + app.js) with an exported ONNX student, onnxruntime-web's
// files from node_modules, and test images from the model's data set — everything local, so the page works offline.
//   npx tsdistill export runs/seed-mnist-lenet --format onnx --out deploy/student.onnx
//   node dist/examples/browser/serve.js --model deploy/student.onnx [--port 8080] [--host 127.0.0.1] [--samples 64]
// The model card written beside the .onnx file (model-card.json) gives the preprocessing, the class names and the
// data set; --data mnist|fashion-mnist overrides the data set.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { AddressInfo } from 'node:net';
import { loadFashionMnist, loadMnist, Rng } from '../../src/data';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const STATIC = path.join(ROOT, 'examples', 'browser');
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.onnx': 'application/octet-stream', '.css': 'text/css',
};

export interface DemoServerOptions {
  /** The exported ONNX file; its model-card.json is read from the same folder when present. */
  model: string;
  port?: number;
  host?: string;
  /** 'mnist' or 'fashion-mnist' (default: the card's data set, else mnist). */
  data?: string;
  /** Test images offered by "random test image" (default 64). */
  samples?: number;
}

function ortDir(): string {
  let main: string;
  try {
    main = require.resolve('onnxruntime-web');
  } catch {
    throw new Error('browser demo: the npm package onnxruntime-web is not installed (npm install onnxruntime-web)');
  }
  const dir = path.dirname(main);
  if (!fs.existsSync(path.join(dir, 'ort.wasm.min.js'))) throw new Error(`browser demo: ${dir} holds no ort.wasm.min.js (an unexpected onnxruntime-web layout)`);
  return dir;
}

/** The card beside `model` (model-card.json), or null. */
function readCard(model: string): Record<string, any> | null {
  const f = path.join(path.dirname(model), 'model-card.json');
  if (!fs.existsSync(f)) return null;
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (e) {
    throw new Error(`browser demo: ${f}: ${(e as Error).message}`);
  }
}

/** A fixed random draw of test images as plain arrays (uint8 pixels, label). */
function samples(data: string, n: number): { classes: string[]; images: { pixels: number[]; label: number; index: number }[] } {
  if (data !== 'mnist' && data !== 'fashion-mnist') throw new Error(`browser demo: --data must be mnist or fashion-mnist, got '${data}'`);
  const ds = data === 'mnist' ? loadMnist({ split: 'test' }) : loadFashionMnist({ split: 'test' });
  try {
    const pick = new Rng(7).permutation(ds.length).slice(0, n);
    const px = ds.images.data() as Uint8Array;
    const labels = ds.labels.data() as BigInt64Array;
    const size = px.length / ds.length;
    return { classes: ds.classes, images: Array.from(pick, (i) => ({ pixels: Array.from(px.subarray(i * size, (i + 1) * size)), label: Number(labels[i]), index: i })) };
  } finally {
    ds.dispose();
  }
}

/** Starts the demo server; resolves with its URL and a close function. */
export async function startDemoServer(o: DemoServerOptions): Promise<{ url: string; close: () => Promise<void> }> {
  const model = path.resolve(o.model);
  if (!fs.existsSync(model)) throw new Error(`browser demo: ${model} does not exist (export one with: tsdistill export <run> --format onnx --out FILE)`);
  const card = readCard(model);
  const data = o.data ?? (card?.data?.dataset as string | undefined) ?? 'mnist';
  const set = samples(data, o.samples ?? 64);
  const config = JSON.stringify({
    model: 'model.onnx',
    name: card?.name ?? path.basename(model),
    inputName: card?.input?.name ?? 'input',
    outputName: card?.output?.name ?? 'logits',
    shape: card?.input?.shape ?? [1, 28, 28],
    preprocessing: card?.input?.preprocessing ?? { scale: 1 / 255 },
    classes: card?.output?.classes ?? set.classes,
    data,
  });
  const ort = ortDir();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (status: number, body: string | Buffer, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const file = (f: string) => {
      if (!fs.existsSync(f) || !fs.statSync(f).isFile()) return send(404, `not found: ${url.pathname}`);
      send(200, fs.readFileSync(f), MIME[path.extname(f)] ?? 'application/octet-stream');
    };
    const p = url.pathname;
    if (p === '/' || p === '/index.html') return file(path.join(STATIC, 'index.html'));
    if (p === '/app.js') return file(path.join(STATIC, 'app.js'));
    if (p === '/model.onnx') return file(model);
    if (p === '/config.json') return send(200, config, MIME['.json']);
    if (p === '/samples.json') return send(200, JSON.stringify(set), MIME['.json']);
    if (p.startsWith('/ort/')) {
      const name = path.basename(p);
      if (!/^[\w.-]+$/.test(name)) return send(400, 'bad name');
      return file(path.join(ort, name));
    }
    send(404, `not found: ${p}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;
  return { url: `http://${a.address}:${a.port}/`, close: () => new Promise((r) => server.close(() => r())) };
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const model = arg('model');
  if (!model) {
    console.error('usage: node dist/examples/browser/serve.js --model FILE.onnx [--port 8080] [--host 127.0.0.1] [--data mnist|fashion-mnist] [--samples 64]');
    process.exit(2);
  }
  startDemoServer({ model, port: Number(arg('port') ?? 8080), host: arg('host'), data: arg('data'), samples: arg('samples') ? Number(arg('samples')) : undefined })
    .then((s) => console.log(`browser demo: ${s.url} (Ctrl-C to stop)`))
    .catch((e) => {
      console.error((e as Error).message);
      process.exit(1);
    });
}
