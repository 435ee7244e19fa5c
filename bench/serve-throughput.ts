// `generate` against `serve` (in one process, 127.0.0.1) as concurrency grows: completion tokens/s and samples/s.
// Two servers side by side: one decoding every sequence in flight in one batched forward (the default), one with
// --max-batch 1 (requests interleaved token by token, one sequence per forward), so the rows show what batching buys
// as concurrency grows, and what the HTTP/SSE path costs against the model alone.
//
// node dist/bench/serve-throughput.js [--checkpoint decoder.safetensors] [--requests N] [--max-tokens N] [--threads N] [--device cpu|cuda]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, checkDevice } from '../src/torch';
import { GPT } from '../src/models/gpt';
import { ByteTokenizer, type Tokenizer } from '../src/llm/tokenizer';
import { loadDecoder } from '../src/llm/decoder-checkpoint';
import { serve } from '../src/llm/serve';
import { generate, generateTokens } from '../src/llm';

const { values } = parseArgs({ options: { checkpoint: { type: 'string' }, requests: { type: 'string' }, 'max-tokens': { type: 'string' }, threads: { type: 'string' }, device: { type: 'string' } } });
setNumThreads(Number(values.threads ?? 2));
const perLevel = Number(values.requests ?? 64);
const maxTokens = Number(values['max-tokens'] ?? 64);

async function main() {
  let model: GPT;
  let tokenizer: Tokenizer;
  if (values.checkpoint) ({ model, tokenizer } = loadDecoder(values.checkpoint));
  else {
    tokenizer = new ByteTokenizer();
    manualSeed(0);
    model = new GPT({ vocabSize: tokenizer.vocabSize, contextLength: 192, dModel: 96, nLayer: 4, nHead: 4 });
  }
  const device = checkDevice(values.device ?? 'cpu', '--device');
  if (device !== 'cpu') model.to(device);
  const servers = { batched: await serve({ model, tokenizer, modelName: 'bench' }), unbatched: await serve({ model, tokenizer, modelName: 'bench', maxBatch: 1 }) };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-serve-bench-'));
  const rows: Record<string, unknown>[] = [];
  try {
    // the model alone, one sequence, no HTTP
    const directRate = () => {
      const t0 = Date.now();
      let n = 0;
      for (let i = 0; i < 16; i++) n += generateTokens(model, [258, 10, 65, 10, 259, 10], { maxNewTokens: maxTokens, seed: i }).tokens.length;
      return n / ((Date.now() - t0) / 1000);
    };
    for (let w = 0; w < 4; w++) directRate(); // warm-up: the first thousands of steps run slower
    const directTps = directRate();
    const modes = [
      { mode: 'unbatched', stream: true },
      { mode: 'batched', stream: true },
      { mode: 'batched', stream: false },
    ] as const;
    for (const { mode, stream } of modes)
      for (const concurrency of [1, 4, 16, 64]) {
        const server = servers[mode];
        const steps0 = server.batch.steps;
        const rowSteps0 = server.batch.rowSteps;
        const input = path.join(tmp, 'prompts.jsonl');
        fs.writeFileSync(input, Array.from({ length: perLevel }, (_, i) => JSON.stringify({ prompt: `Prompt number ${i}.` })).join('\n') + '\n');
        const before = server.stats.completionTokens;
        const t = Date.now();
        const s = await generate(
          {
            input, output: { dir: path.join(tmp, `out-${mode}-${stream}-${concurrency}`) },
            // temperature 1 from an untrained model: answers run to max_tokens, so every request costs the same
            teacher: { baseUrl: server.url, model: 'bench', maxTokens, temperature: 1, seed: 0, stream },
            requests: { concurrency, timeoutMs: 600000 },
            curation: { minChars: 0, dropTruncated: false, dedup: 'none' },
          },
          { progress: false, log: () => {} },
        );
        const secs = (Date.now() - t) / 1000;
        const tokens = server.stats.completionTokens - before;
        const meanBatch = (server.batch.rowSteps - rowSteps0) / Math.max(1, server.batch.steps - steps0);
        rows.push({ mode, concurrency, stream, mean_batch: +meanBatch.toFixed(1), samples: s.written + s.rejected, seconds: +secs.toFixed(2), tokens, tokens_per_s: +(tokens / secs).toFixed(0), samples_per_s: +((s.written + s.rejected) / secs).toFixed(2), vs_direct: +(tokens / secs / directTps).toFixed(2) });
        console.log(JSON.stringify(rows.at(-1)));
      }
    const directAfter = directRate();
    console.log(`\nmodel: ${model.numParameters()} parameters on ${device}; one sequence without HTTP: ${directTps.toFixed(0)} tokens/s before, ${directAfter.toFixed(0)} after`);
    console.log('| decoding | concurrency | transport | mean batch | samples | seconds | tokens/s | samples/s | vs. model alone |\n|---|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.mode} | ${r.concurrency} | ${r.stream ? 'SSE' : 'JSON'} | ${r.mean_batch} | ${r.samples} | ${r.seconds} | ${r.tokens_per_s} | ${r.samples_per_s} | ${r.vs_direct} |`);
    console.log(JSON.stringify({ direct_tokens_per_s: directTps, direct_after: directAfter, rows }));
  } finally {
    await servers.batched.close();
    await servers.unbatched.close();
    model.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
