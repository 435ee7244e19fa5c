// The `tsdistill generate` configuration: data (YAML/JSON or an object from TypeScript) validated against one schema
// before any request is sent. Unknown keys are errors that suggest the closest valid key.
import { z } from 'zod';
import { levenshtein } from '../util/closest';
import { urlCredentials } from './client';

const inputSpec = z
  .object({
    /** Prompts: .jsonl ({"prompt"} or {"messages"}, optional "id"), .tsv (header line), or .txt (one per line). */
    file: z.string().min(1),
    /** Default: from the extension (.jsonl/.json → jsonl, .tsv → tsv, anything else → text). */
    format: z.enum(['jsonl', 'tsv', 'text']).optional(),
    /** The field (JSONL key or TSV column) holding the prompt text. */
    promptField: z.string().min(1).default('prompt'),
    /** The field holding a stable prompt id; without one, ids are hashes of the prompt. */
    idField: z.string().min(1).default('id'),
    /** Use only the first N prompts. */
    limit: z.number().int().positive().optional(),
  })
  .strict();

const outputSpec = z
  .object({
    dir: z.string().min(1),
    /** Also write plain.jsonl with {"prompt", "response"} lines (rewritten from samples.jsonl at the end of a run). */
    plain: z.boolean().default(false),
  })
  .strict();

/** A base URL without credentials in it (they would be written to logs, errors and generate.json). */
const baseUrl = z
  .string()
  .url()
  .superRefine((url, ctx) => {
    const found = urlCredentials(url);
    if (found)
      ctx.addIssue({
        code: 'custom',
        message: `holds credentials (${found}); a URL is written to logs, errors and the output directory, so put the key in an environment variable and name it in apiKeyEnv (sent as Authorization: Bearer)`,
      });
  });

/** Which request field carries the answer's length limit: the current one, or the one older servers know. */
const maxTokensField = z.enum(['max_completion_tokens', 'max_tokens']);

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name');

/** One endpoint of a pool: requests are spread over the endpoints in proportion to their weights. */
const endpointSpec = z
  .object({
    /** The endpoint's base URL, as teacher.baseUrl. */
    baseUrl,
    /** Its share of the requests, relative to the others' (any positive number). */
    weight: z.number().positive().finite().default(1),
    /** The model name this endpoint serves the teacher under; default teacher.model. */
    model: z.string().min(1).optional(),
    /** Default teacher.apiKeyEnv. */
    apiKeyEnv: envName.optional(),
    /** Requests in flight to this endpoint; default no limit but requests.concurrency. */
    concurrency: z.number().int().positive().optional(),
    /** This endpoint's requests and tokens per minute; default requests.rpm and requests.tpm. */
    rpm: z.number().positive().optional(),
    tpm: z.number().positive().optional(),
    /** Default teacher.maxTokensField. */
    maxTokensField: maxTokensField.optional(),
    /** Default teacher.streamOptions. */
    streamOptions: z.boolean().optional(),
  })
  .strict();

/** The key a base URL is compared by: its completions URL, without a trailing slash, lower-case scheme and host. */
export function endpointKey(baseUrl: string): string {
  const b = baseUrl.replace(/\/+$/, '');
  const full = /\/chat\/completions$/.test(b) ? b : `${b}/chat/completions`;
  try {
    const u = new URL(full);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return full;
  }
}

const teacherSpec = z
  .object({
    /** The endpoint's base URL, up to and including the version: http://127.0.0.1:8000/v1 (…/chat/completions is appended). */
    baseUrl: baseUrl.optional(),
    /** Several endpoints instead of one baseUrl, each with a weight (see docs/llm.md). */
    endpoints: z.array(endpointSpec).min(1, 'expected at least one endpoint').optional(),
    model: z.string().min(1),
    /** The name of an environment variable holding the API key (never the key itself). */
    apiKeyEnv: envName.optional(),
    temperature: z.number().min(0).max(2).optional(),
    topP: z.number().gt(0).max(1).optional(),
    maxTokens: z.number().int().positive().optional(),
    /**
     * The request field maxTokens is sent as: `max_completion_tokens` (the current name; OpenAI's reasoning models
     * refuse the other) or `max_tokens` (deprecated, for servers that only know it).
     */
    maxTokensField: maxTokensField.default('max_completion_tokens'),
    /** Samples per prompt. */
    n: z.number().int().positive().default(1),
    /**
     * Samples of one prompt asked for in one request (`n` in the body; the answers are told apart by
     * `choices[].index`). 1: one request per sample, for servers that ignore `n`.
     */
    samplesPerRequest: z.number().int().min(1).max(128).default(1),
    /** Prepended as a system message unless a prompt brings its own. */
    systemPrompt: z.string().optional(),
    stream: z.boolean().default(false),
    /** With stream: send `stream_options: {include_usage: true}` (false for servers that refuse the field). */
    streamOptions: z.boolean().default(true),
    /** Ask for the top-k log-probabilities of every generated token (`logprobs: true, top_logprobs: k`). */
    topLogprobs: z.number().int().min(0).max(20).optional(),
    /** Sample k of every prompt is requested with seed + k (for servers that honour `seed`). */
    seed: z.number().int().min(0).optional(),
    /** Further request body fields passed through unchanged (e.g. `{ stop: ["\n\n"] }`). */
    extraBody: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.baseUrl === undefined && t.endpoints === undefined) ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: 'required: a baseUrl, or a list of endpoints' });
    if (t.baseUrl !== undefined && t.endpoints !== undefined) ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'give either baseUrl or endpoints, not both' });
    if ('n' in t.extraBody)
      ctx.addIssue({ code: 'custom', path: ['extraBody', 'n'], message: 'samples per prompt are teacher.n, and how many of them one request asks for teacher.samplesPerRequest' });
    const seen = new Map<string, number>();
    t.endpoints?.forEach((e, i) => {
      const key = endpointKey(e.baseUrl);
      const first = seen.get(key);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'baseUrl'], message: `${urlCredentials(e.baseUrl) ? key : e.baseUrl} is teacher.endpoints.${first}.baseUrl again; each endpoint once` });
      else seen.set(key, i);
    });
  });

const requestsSpec = z
  .object({
    concurrency: z.number().int().positive().default(8),
    /** Requests per minute (retries included); default unlimited. */
    rpm: z.number().positive().optional(),
    /** Tokens per minute, counting prompt (≈ characters / 4) plus max tokens up front, corrected by the reported usage. */
    tpm: z.number().positive().optional(),
    /** Per-request time limit, from sending the request to the last byte of the answer. */
    timeoutMs: z.number().int().positive().default(600_000),
    /** Retries after the first attempt, on 408/409/429/5xx, timeouts, dropped connections and malformed answers. */
    maxRetries: z.number().int().min(0).default(6),
    /** Exponential backoff: attempt a waits a random time in [½, 1] × min(maxBackoffMs, backoffMs · 2^a), or Retry-After. */
    backoffMs: z.number().int().min(0).default(1000),
    maxBackoffMs: z.number().int().min(0).default(60_000),
    /** With teacher.endpoints: an endpoint failing this many requests in a row is taken out for cooldownMs. */
    cooldownAfter: z.number().int().positive().default(3),
    cooldownMs: z.number().int().min(0).default(60_000),
    /**
     * With teacher.endpoints: a request past timeoutMs is retried on another endpoint but its answer is still awaited
     * this much longer; whichever answer comes first is kept, the other dropped and counted. 0: abandoned at timeoutMs.
     */
    lateAnswerMs: z.number().int().min(0).default(0),
  })
  .strict();

const curationSpec = z
  .object({
    /** Drop samples whose normalized text repeats one already kept for the same prompt ('prompt') or any prompt ('global'). */
    dedup: z.enum(['prompt', 'global', 'none']).default('prompt'),
    /** Length limits in characters of the assistant output as written (answer plus reasoning when kept). */
    minChars: z.number().int().min(0).default(1),
    maxChars: z.number().int().positive().optional(),
    /** Drop answers cut off by max tokens (finish_reason 'length'). */
    dropTruncated: z.boolean().default(true),
    /** `<think>…</think>` in the content or a reasoning_content field: keep inline, strip, or split into its own field. */
    reasoning: z.enum(['keep', 'strip', 'split']).default('keep'),
    /** A registered verifier ('exact-match', or one a --plugin registers): keep only samples it accepts. */
    verifier: z.string().min(1).optional(),
    /** exact-match: the prompt record's field holding the expected answer. */
    answerField: z.string().min(1).default('answer'),
  })
  .strict();

export const generateConfigSchema = z
  .object({
    name: z.string().default('generate'),
    input: z.union([z.string().min(1).transform((file) => ({ file })), inputSpec]).pipe(inputSpec),
    output: z.union([z.string().min(1).transform((dir) => ({ dir })), outputSpec]).pipe(outputSpec),
    teacher: teacherSpec,
    requests: requestsSpec.default(() => requestsSpec.parse({})),
    curation: curationSpec.default(() => curationSpec.parse({})),
  })
  .strict();

/** A validated generation configuration. */
export type GenerateConfig = z.infer<typeof generateConfigSchema>;
/** What a configuration may say before defaults are filled in. */
export type GenerateConfigInput = z.input<typeof generateConfigSchema>;

/** The candidate closest to `name` by edit distance, for "did you mean" messages. */
export function nearest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = levenshtein(name, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best;
}

const SECTIONS: Record<string, z.ZodObject<any>> = { input: inputSpec, output: outputSpec, teacher: teacherSpec, requests: requestsSpec, curation: curationSpec };

function describe(issues: z.core.$ZodIssue[], source: string): string {
  const lines = issues.flatMap((iss) => {
    const where = iss.path.length ? iss.path.join('.') : '(top level)';
    if (iss.code === 'unrecognized_keys') {
      const section =
        iss.path.length === 1 ? SECTIONS[String(iss.path[0])] : iss.path.length === 3 && iss.path[0] === 'teacher' && iss.path[1] === 'endpoints' ? endpointSpec : undefined;
      const valid = Object.keys(iss.path.length === 0 ? generateConfigSchema.shape : section?.shape ?? {});
      return iss.keys.map((k) => {
        const near = nearest(k, valid);
        return `  ${[...iss.path, k].join('.')}: unknown key${near ? `; did you mean '${[...iss.path, near].join('.')}'?` : ''} (valid here: ${valid.join(', ')})`;
      });
    }
    return [`  ${where}: ${iss.message}`];
  });
  return `${source}: invalid generate configuration:\n${lines.join('\n')}`;
}

/** Validates a raw generation configuration; `source` names it in errors. */
export function validateGenerateConfig(raw: unknown, source = 'generate config'): GenerateConfig {
  const r = generateConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(describe(r.error.issues, source));
  return r.data;
}
