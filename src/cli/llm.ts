// `tsdistill serve` and `tsdistill sft`: a decoder checkpoint behind the OpenAI Chat Completions protocol, and
// supervised fine-tuning / token-level KD of a decoder on chat JSONL.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualSeed, setNumThreads, checkDevice } from '../torch';
import { GPT, checkDecoderOptions, type DecoderOptions } from '../models/gpt';
import { createTokenizer, type Tokenizer } from '../llm/tokenizer';
import { HfCausalLM, readGenerationConfig } from '../models/hf';
import { isHfModelDir, loadDecoder, loadHfDecoder } from '../llm/decoder-checkpoint';
import { serve } from '../llm/serve';
import { FAULT_KINDS, describeFaultSpec, parseFaultSpec, startFaultProxy, type FaultProxy, type FaultSpec } from '../llm/faults';
import { sft, type SftKdOptions } from '../distill/sft';
import { TOKEN_KD_LOSSES, type TokenKdLoss } from '../distill/token-kd';

export interface LlmCliValues {
  [key: string]: string | boolean | string[] | undefined;
}

function int(v: unknown, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < min) throw new Error(`--${name} must be an integer >= ${min}, got '${String(v)}'`);
  return Number(v);
}
function float(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(x)) throw new Error(`--${name} must be a number, got '${String(v)}'`);
  return x;
}

/** --cors ORIGIN: '*' or an origin (scheme://host[:port]); anything else is refused rather than sent as a header. */
function cors(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (s !== '*' && !/^https?:\/\/[^\s/]+$/.test(s)) throw new Error(`--cors must be '*' or an origin such as http://localhost:5173, got '${s}'`);
  return s;
}

/** --api-key KEY or --api-key-file FILE (its first line): the key every request to `serve` must bring. */
export function serveApiKey(v: LlmCliValues): string | undefined {
  if (v['api-key'] !== undefined && v['api-key-file'] !== undefined) throw new Error('give --api-key or --api-key-file, not both');
  let key: string;
  let from: string;
  if (v['api-key'] !== undefined) [key, from] = [String(v['api-key']), '--api-key'];
  else if (v['api-key-file'] !== undefined) {
    const file = String(v['api-key-file']);
    try {
      key = fs.readFileSync(file, 'utf8').split(/\r?\n/)[0].trim();
    } catch (e) {
      throw new Error(`--api-key-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
    }
    from = `--api-key-file ${file}`;
  } else return undefined;
  if (key === '' || /\s/.test(key)) throw new Error(`${from}: the key must be one word without white space${key === '' ? ', got an empty one' : ''}`);
  return key;
}

/**
 * Serves a decoder checkpoint until `signal` aborts; prints the URL. With --faults SPEC the server listens on an
 * internal loopback port and a fault-injecting proxy (../llm/faults.ts) takes the public one.
 */
export async function runServe(file: string, v: LlmCliValues, signal: AbortSignal): Promise<number> {
  let faults: FaultSpec | undefined;
  if (v.faults !== undefined) {
    try {
      faults = parseFaultSpec(String(v.faults));
    } catch (e) {
      throw new Error(`--faults: ${(e as Error).message}`);
    }
  } else if (v['fault-seed'] !== undefined) throw new Error('--fault-seed goes with --faults SPEC');
  const faultSeed = int(v['fault-seed'], 'fault-seed') ?? 0;
  const apiKey = serveApiKey(v);
  if (v.threads) setNumThreads(int(v.threads, 'threads', 1)!);
  const device = checkDevice((v.device as string | undefined) ?? 'cpu', '--device');
  const { model, tokenizer, stopTokens } = isHfModelDir(file) ? loadHfDecoder(file) : { ...loadDecoder(file), stopTokens: [] as number[] };
  if (device !== 'cpu') model.to(device);
  const host = (v.host as string | undefined) ?? '127.0.0.1';
  const port = int(v.port, 'port') ?? 8000;
  const server = await serve({
    model, tokenizer, stopTokens, ...(faults ? { host: '127.0.0.1', port: 0 } : { host, port }),
    modelName: (v['model-name'] as string | undefined) ?? path.basename(file).replace(/\.safetensors$/, ''),
    defaultMaxTokens: int(v['max-tokens'], 'max-tokens', 1),
    maxBatch: int(v['max-batch'], 'max-batch', 1),
    maxBodyBytes: int(v['max-body-bytes'], 'max-body-bytes', 1),
    cors: cors(v.cors),
    ...(apiKey !== undefined ? { apiKey } : {}),
    log: v.quiet ? undefined : (l) => console.log(l),
  });
  let proxy: FaultProxy | undefined;
  try {
    if (faults) proxy = await startFaultProxy({ target: server.url, faults, seed: faultSeed, host, port });
  } catch (e) {
    await server.close();
    model.dispose();
    throw e;
  }
  const url = proxy?.url ?? server.url;
  console.log(`serving ${file} (${model.numParameters()} parameters, tokenizer ${tokenizer.name}, ${device}) at ${url} — POST ${url}/chat/completions${apiKey ? ' with Authorization: Bearer KEY (requests must bring the API key)' : ''}; Ctrl-C stops`);
  if (faults) console.log(`injecting faults at ${url} (seed ${faultSeed}): ${describeFaultSpec(faults)}; the server itself is at ${server.url}`);
  if (!['127.0.0.1', 'localhost', '::1'].includes(host))
    console.log(`note: listening on ${host}, reachable from other machines; ${apiKey ? 'requests must bring the API key' : 'there is no authentication (--api-key-file FILE adds it)'}`);
  if (v.cors !== undefined) console.log(`note: web pages of ${v.cors === '*' ? 'any origin' : v.cors} may call this server (--cors)`);
  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
  if (proxy) {
    const c = proxy.counts;
    const injected = FAULT_KINDS.filter((k) => c[k]).map((k) => `${k} ×${c[k]}`);
    console.log(`faults injected: ${injected.length ? injected.join(', ') : 'none'}; ${c.none} request${c.none === 1 ? '' : 's'} passed`);
    await proxy.close();
  }
  await server.close();
  model.dispose();
  return 0;
}

/** Fine-tunes a decoder on chat JSONL; see `tsdistill --help`. */
export async function runSft(data: string, v: LlmCliValues, signal: AbortSignal): Promise<number> {
  if (!fs.existsSync(data)) throw new Error(`sft: data file ${data} does not exist`);
  const out = v.out as string | undefined;
  if (!out) throw new Error('sft: --out DIR is required');
  const steps = int(v.steps, 'steps', 1);
  if (steps === undefined) throw new Error('sft: --steps N is required');
  if (v.threads) setNumThreads(int(v.threads, 'threads', 1)!);
  const device = checkDevice((v.device as string | undefined) ?? 'cpu', '--device');
  const seed = int(v.seed, 'seed') ?? 0;
  let model: GPT | HfCausalLM;
  let tokenizer: Tokenizer;
  let stopTokens: number[] = [];
  let generationConfig: Record<string, unknown> | undefined;
  if (v.init) {
    if (v.arch) throw new Error('sft: give --init CHECKPOINT or --arch JSON, not both');
    const init = v.init as string;
    if (isHfModelDir(init)) {
      const loaded = loadHfDecoder(init);
      model = loaded.model;
      tokenizer = loaded.tokenizer;
      stopTokens = loaded.stopTokens;
      const gen = path.join(init, 'generation_config.json');
      generationConfig = fs.existsSync(gen) ? readGenerationConfig(gen).raw : undefined;
      if (v.tokenizer) throw new Error(`sft: --init ${init} is a Hugging Face directory with its own tokenizer.json; --tokenizer does not apply`);
    } else {
      const loaded = loadDecoder(init);
      model = loaded.model;
      tokenizer = createTokenizer(loaded.tokenizer.name);
      if (v.tokenizer && v.tokenizer !== tokenizer.name) throw new Error(`sft: --tokenizer ${v.tokenizer} differs from the checkpoint's '${tokenizer.name}'`);
    }
  } else if (v.arch) {
    const tokenizerName = (v.tokenizer as string | undefined) ?? 'bytes';
    let arch: Partial<DecoderOptions>;
    try {
      arch = JSON.parse(v.arch as string);
    } catch (e) {
      throw new Error(`sft: --arch must be JSON such as '{"contextLength":128,"dModel":64,"nLayer":2,"nHead":2}': ${(e as Error).message}`);
    }
    tokenizer = createTokenizer(tokenizerName);
    const opts = checkDecoderOptions({ vocabSize: tokenizer.vocabSize, ...arch } as DecoderOptions, 'sft: --arch');
    manualSeed(seed);
    model = new GPT(opts);
  } else throw new Error('sft: give the student as --init CHECKPOINT|DIR (a decoder checkpoint or a Hugging Face directory) or --arch JSON (a new decoder)');
  let teacher: GPT | HfCausalLM | undefined;
  let kd: SftKdOptions | undefined;
  const kdName = v.kd as string | undefined;
  if (v['teacher-url'] !== undefined) {
    if (v.teacher) throw new Error('sft: give --teacher (a local decoder) or --teacher-url (a server), not both');
    if (kdName !== undefined && kdName !== 'logprobs' && kdName !== 'forward_kl')
      throw new Error(`sft: a remote teacher gives top-k log-probabilities, so its loss is forward KL: --kd ${kdName} does not go with --teacher-url`);
    const onPolicy = float(v['on-policy'], 'on-policy');
    if (!(onPolicy! > 0)) throw new Error("sft: --teacher-url scores the student's own answers: give --on-policy L above 0");
    if (typeof v['teacher-model'] !== 'string') throw new Error("sft: --teacher-url needs --teacher-model NAME (the server's model name)");
    const keyEnv = v['teacher-key-env'] as string | undefined;
    if (keyEnv !== undefined && !process.env[keyEnv]) throw new Error(`sft: --teacher-key-env ${keyEnv}: the environment variable is not set`);
    kd = {
      source: 'logprobs', alpha: float(v.alpha, 'alpha'), topk: int(v.topk, 'topk', 1), onPolicy,
      endpoint: { baseUrl: v['teacher-url'] as string, model: v['teacher-model'] as string, ...(keyEnv ? { apiKey: process.env[keyEnv] } : {}), ...(v['teacher-token-ids'] ? { tokenIds: true } : {}) },
    };
  } else if (kdName !== undefined) {
    const alpha = float(v.alpha, 'alpha');
    const beta = float(v.beta, 'beta');
    const temperature = float(v.temperature, 'temperature');
    if (kdName === 'logprobs') kd = { source: 'logprobs', alpha, topk: int(v.topk, 'topk', 1) };
    else {
      if (!TOKEN_KD_LOSSES.includes(kdName as TokenKdLoss)) throw new Error(`sft: --kd must be ${[...TOKEN_KD_LOSSES, 'logprobs'].join(', ')}, got '${kdName}'`);
      if (!v.teacher) throw new Error(`sft: --kd ${kdName} needs --teacher CHECKPOINT|DIR (a decoder checkpoint or a Hugging Face directory)`);
      const tdir = v.teacher as string;
      let tTok: Tokenizer;
      if (isHfModelDir(tdir)) {
        const t = loadHfDecoder(tdir);
        teacher = t.model;
        tTok = t.tokenizer;
      } else {
        const t = loadDecoder(tdir);
        teacher = t.model;
        tTok = createTokenizer(t.tokenizer.name);
      }
      const why = vocabularyDifference(tTok, tokenizer);
      if (why !== null) {
        teacher.dispose();
        model.dispose();
        throw new Error(`sft: the teacher's tokenizer '${tTok.name}' (${tTok.vocabSize} tokens) is not the student's '${tokenizer.name}' (${tokenizer.vocabSize} tokens): ${why}`);
      }
      const onPolicy = float(v['on-policy'], 'on-policy');
      kd = { source: 'teacher', teacher, loss: kdName as TokenKdLoss, alpha, beta, temperature, ...(onPolicy !== undefined ? { onPolicy } : {}) };
    }
  } else if (v.teacher) throw new Error('sft: --teacher is used with --kd forward_kl|reverse_kl|jsd');
  if (v['on-policy'] !== undefined && kd?.source !== 'teacher' && !kd?.endpoint) throw new Error('sft: --on-policy needs --kd forward_kl|reverse_kl|jsd with --teacher, or --teacher-url');
  if (device !== 'cpu') {
    model.to(device);
    teacher?.to(device);
  }
  try {
    const s = await sft({
      model, tokenizer, data, outDir: out, steps, seed, signal, kd, stopTokens, ...(generationConfig ? { generationConfig } : {}),
      seqLen: int(v['seq-len'], 'seq-len', 1), batchSize: int(v.batch, 'batch', 1), gradAccum: int(v['grad-accum'], 'grad-accum', 1),
      lr: float(v.lr, 'lr'), warmupSteps: int(v.warmup, 'warmup'), resume: v.resume === true, force: v.force === true,
    });
    console.log(`sft: ${s.steps} steps, ${s.tokens} tokens, ${s.tokensPerSecond.toFixed(0)} tok/s, final loss ${s.finalLoss.toFixed(4)}; ${s.modelDir ? `model directory ${s.modelDir}` : `decoder checkpoint ${s.checkpoint}`}`);
    if (v.json) console.log(JSON.stringify(s));
    return 0;
  } finally {
    model.dispose();
    teacher?.dispose();
  }
}

/**
 * Null when two tokenizers give every id the same token (token-level KD needs one vocabulary), else what differs:
 * the sizes, or the first id whose text differs.
 */
export function vocabularyDifference(a: Tokenizer, b: Tokenizer): string | null {
  if (a.vocabSize !== b.vocabSize) return `${a.vocabSize} ids against ${b.vocabSize}`;
  if (a.name === b.name) return null;
  for (let i = 0; i < a.vocabSize; i++) {
    const x = a.decode([i]);
    const y = b.decode([i]);
    if (x !== y) return `id ${i} is ${JSON.stringify(x)} against ${JSON.stringify(y)}`;
  }
  return null;
}
