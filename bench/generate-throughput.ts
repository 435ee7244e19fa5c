// Generation throughput against the fake OpenAI-compatible server with a fixed per-request latency: samples/s at
// concurrency 1, 4, 16, 64, for JSON answers and for streamed (SSE) ones, each sample fsynced into samples.jsonl.
// The server runs in its own process, so the client's costs are measured apart from the server's.
// Usage: node dist/bench/generate-throughput.js [--latency-ms 50] [--per-slot 20]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { generate } from '../src/llm';

/** Starts test/fake-openai.ts's server in a child process; resolves with its URL and a stop function. */
function startServerProcess(latencyMs: number): Promise<{ url: string; stop: () => void }> {
  const words = 'the quick brown fox jumps over the lazy dog '.repeat(6).trim(); // 54 tokens per answer
  const script = `require(${JSON.stringify(path.join(__dirname, '..', 'test', 'fake-openai.js'))})
    .startFakeServer({ latencyMs: ${latencyMs}, answer: (r) => ({ content: ${JSON.stringify(words)} + ' ' + r.prompt + ' ' + r.seed }) })
    .then((s) => { s.requests.push = () => 0; console.log(s.url); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve({ url: String(d).trim(), stop: () => child.kill() }));
    child.once('exit', (code) => reject(new Error(`the fake server exited with status ${code}`)));
  });
}

async function main() {
  const { values } = parseArgs({ options: { 'latency-ms': { type: 'string' }, 'per-slot': { type: 'string' } } });
  const latencyMs = Number(values['latency-ms'] ?? 50);
  const perSlot = Number(values['per-slot'] ?? 20);
  const levels = [1, 4, 16, 64];
  const server = await startServerProcess(latencyMs);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-gen-'));
  const rows: { concurrency: number; stream: boolean; samples: number; seconds: number; samples_per_s: number; ideal: number; efficiency: number }[] = [];
  try {
    for (const stream of [false, true]) {
      for (const c of levels) {
        const n = Math.max(40, perSlot * c);
        const input = path.join(tmp, `p-${c}-${stream}.txt`);
        fs.writeFileSync(input, Array.from({ length: n }, (_, i) => `prompt number ${i}`).join('\n') + '\n');
        const t0 = process.hrtime.bigint();
        const s = await generate(
          { input, output: path.join(tmp, `out-${c}-${stream}`), teacher: { baseUrl: server.url, model: 'bench', stream, seed: 0 }, requests: { concurrency: c } },
          { progress: false, log: () => {} },
        );
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        if (s.written !== n || !s.reconciled) throw new Error(`concurrency ${c}: ${s.written} of ${n} written`);
        const ideal = (1000 / latencyMs) * c;
        rows.push({ concurrency: c, stream, samples: n, seconds: Number(seconds.toFixed(3)), samples_per_s: Number((n / seconds).toFixed(1)), ideal, efficiency: Number((n / seconds / ideal).toFixed(3)) });
      }
    }
  } finally {
    server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`fake server (own process) latency ${latencyMs} ms per request; ${os.cpus().length} CPUs; Node ${process.version}`);
  console.log('| concurrency | transport | samples | seconds | samples/s | ideal (c / latency) | efficiency |');
  console.log('|---:|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.concurrency} | ${r.stream ? 'SSE' : 'JSON'} | ${r.samples} | ${r.seconds.toFixed(2)} | ${r.samples_per_s.toFixed(1)} | ${r.ideal.toFixed(0)} | ${(100 * r.efficiency).toFixed(0)} % |`);
  console.log(JSON.stringify({ latency_ms: latencyMs, rows }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
