// Black-box teachers: an HTTP endpoint on 127.0.0.1 (served by this test from a libtorch module) and async functions.
// Logits and probabilities come back equal to the module's logits / log-softmax within 1e-4; batches are split into
// requests of batchSize; 503 answers are retried with backoff, 400 answers are not; malformed replies are refused; and
// distillation through the teacher cache sends every training image to the endpoint exactly once, and a second run
// none at all.
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Tensor, dispose, manualSeed, noGrad, randn, tensor, tidy } from '../src/torch';
import { Module } from '../src/nn';
import { createModel, registerBuiltinModels } from '../src/models';
import { loadMnist, normalize } from '../src/data';
import { blackBoxTeacher, httpTeacher } from '../src/teachers';
import { distill } from '../src/distill';
import { checkLeaks, maxDiff } from './helpers';

const TOL = 1e-4;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bb-teacher-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Seen {
  requests: number;
  /** Inputs per answered request. */
  sizes: number[];
  /** How often each distinct input (hash of its numbers) was sent. */
  inputs: Map<string, number>;
}

/** An endpoint answering {inputs, shape} with the module's logits or probabilities; `fail` answers errors first. */
function serve(model: Module, returns: 'logits' | 'probs'): { url: Promise<string>; seen: Seen; fail: number[]; close: () => Promise<void> } {
  const seen: Seen = { requests: 0, sizes: [], inputs: new Map() };
  const fail: number[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.requests++;
      const status = fail.shift();
      if (status) {
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 400 ? 'bad request: inputs missing' : 'busy');
        return;
      }
      const { inputs, shape } = JSON.parse(body) as { inputs: number[][]; shape: number[] };
      for (const row of inputs) {
        const h = crypto.createHash('sha1').update(Float32Array.from(row)).digest('hex');
        seen.inputs.set(h, (seen.inputs.get(h) ?? 0) + 1);
      }
      seen.sizes.push(inputs.length);
      const outputs = tidy(() =>
        noGrad(() => {
          const x = tensor(Float32Array.from(inputs.flat()), { shape: [inputs.length, ...shape] });
          const y = model.call(x) as Tensor;
          return (returns === 'probs' ? y.softmax(1) : y).tolist() as number[][];
        }),
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ outputs }));
    });
  });
  const url = new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/predict`)));
  return { url, seen, fail, close: () => new Promise((r) => server.close(() => r())) };
}

describe('black-box teachers', () => {
  checkLeaks();
  let model: Module;
  let x: Tensor;
  let logitsSrv: ReturnType<typeof serve>;
  let probsSrv: ReturnType<typeof serve>;
  before(() => {
    registerBuiltinModels();
    manualSeed(7);
    model = createModel('lenet5-half', { numClasses: 10 });
    model.eval();
    x = randn([40, 1, 28, 28]);
    logitsSrv = serve(model, 'logits');
    probsSrv = serve(model, 'probs');
  });
  after(async () => {
    await logitsSrv.close();
    await probsSrv.close();
    model.dispose();
    x.dispose();
  });

  it('an HTTP endpoint returning logits or probabilities gives logits / log-probabilities within 1e-4, in requests of batchSize', async () => {
    const [logits, logp] = tidy(() => noGrad(() => {
      const y = model.call(x) as Tensor;
      return [y, y.logSoftmax(1)];
    }));
    const a = httpTeacher({ url: await logitsSrv.url, returns: 'logits', batchSize: 16 });
    const b = httpTeacher({ url: await probsSrv.url, returns: 'probs', batchSize: 64 });
    const ra = await a.run(x, ['output']);
    const rb = await b.run(x, ['output']);
    const da = maxDiff(ra.output, logits), db = maxDiff(rb.output, logp);
    console.log(`  http logits: max diff ${da.toExponential(2)}; http probs -> log: max diff to log_softmax ${db.toExponential(2)}`);
    assert.ok(da <= TOL && db <= TOL, `${da}, ${db}`);
    assert.deepEqual(logitsSrv.seen.sizes, [16, 16, 8]);
    assert.deepEqual(probsSrv.seen.sizes, [40]);
    assert.deepEqual(a.stats, { calls: 3, inputs: 40, retries: 0 });
    await assert.rejects(a.run(x, ['features']), /black box: outputs only\): no value named 'features'/);
    dispose([logits, logp, ...Object.values(ra), ...Object.values(rb)]);
  });

  it('retries 503 answers with backoff and fails at once on 400, naming the URL, status and body', async () => {
    const url = await logitsSrv.url;
    const t = httpTeacher({ url, returns: 'logits', retries: 3, backoffMs: 5 });
    logitsSrv.fail.push(503, 503);
    const r = await t.run(x, ['output']);
    assert.deepEqual(r.output.shape, [40, 10]);
    assert.deepEqual(t.stats, { calls: 1, inputs: 40, retries: 2 });
    r.output.dispose();
    logitsSrv.fail.push(400);
    const before = logitsSrv.seen.requests;
    await assert.rejects(t.run(x, ['output']), new RegExp(`http teacher ${url}: HTTP 400 Bad Request: bad request: inputs missing$`));
    assert.equal(logitsSrv.seen.requests, before + 1, 'a 400 answer is not retried');
    const once = httpTeacher({ url, returns: 'logits', retries: 1, backoffMs: 1 });
    logitsSrv.fail.push(503, 503);
    await assert.rejects(once.run(x, ['output']), /HTTP 503 Service Unavailable: busy \(after 2 attempts\)/);
    const down = httpTeacher({ url: 'http://127.0.0.1:9/none', returns: 'logits', retries: 0 });
    await assert.rejects(down.run(x, ['output']), /http teacher http:\/\/127\.0\.0\.1:9\/none: request failed: /);
    assert.throws(() => httpTeacher({ url: 'not a url', returns: 'logits' }), /'not a url' is not a valid URL/);
  });

  it('an async function: rows, typed arrays or tensors; probabilities are checked', async () => {
    const rows = blackBoxTeacher(async (b) => tidy(() => noGrad(() => (model.call(b) as Tensor).softmax(1).tolist())), { returns: 'probs', batchSize: 25, id: 'rows' });
    const r = await rows.run(x, ['output']);
    const ref = tidy(() => noGrad(() => (model.call(x) as Tensor).logSoftmax(1)));
    assert.ok(maxDiff(r.output, ref) <= TOL);
    assert.deepEqual(rows.stats, { calls: 2, inputs: 40, retries: 0 });
    dispose([r.output, ref]);
    const notProbs = blackBoxTeacher((b) => tidy(() => noGrad(() => model.call(b) as Tensor)), { returns: 'probs', retries: 2, backoffMs: 1 });
    await assert.rejects(notProbs.run(x, ['output']), /returns is 'probs' but the reply is not probabilities .*use returns: logits/);
    assert.equal(notProbs.stats.retries, 0, 'a malformed reply is not retried');
    const short = blackBoxTeacher(async () => [[1, 2]], { returns: 'logits' });
    await assert.rejects(short.run(x, ['output']), /returned 1 rows for 40 inputs/);
  });

  it('distillation queries each training image once through the teacher cache, and a second run not at all', async () => {
    const srv = serve(model, 'probs');
    const train = loadMnist({ split: 'train', limit: 300 });
    const test = loadMnist({ split: 'test', limit: 200 });
    try {
      const teacher = httpTeacher({ url: await srv.url, returns: 'probs', batchSize: 50 });
      const run = async (out: string) => {
        const student = createModel('lenet5-half', { numClasses: 10 });
        try {
          return await distill({
            teacher, student, data: { train, test }, outDir: path.join(dir, out), epochs: 2, batchSize: 64,
            transforms: [normalize([0.1307], [0.3081])], progress: false, log: () => {},
          });
        } finally {
          student.dispose();
        }
      };
      const first = await run('kd1');
      assert.equal(first.teacher_cache, 'built');
      const counts = [...srv.seen.inputs.values()];
      console.log(`  2 epochs on 300 images: ${srv.seen.requests} requests, ${counts.reduce((a, b) => a + b, 0)} inputs sent, ${counts.length} distinct`);
      assert.equal(counts.length, 300, 'every training image reached the endpoint');
      assert.ok(counts.every((c) => c === 1), 'no image was sent twice');
      assert.equal(teacher.stats.inputs, 300);
      const second = await run('kd2');
      assert.equal(second.teacher_cache, 'loaded');
      assert.equal(teacher.stats.inputs, 300, 'the second run read the cache');
      assert.equal(srv.seen.inputs.size, 300);
    } finally {
      train.dispose();
      test.dispose();
      await srv.close();
    }
  });
});
