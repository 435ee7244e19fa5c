// sft over Hugging Face decoders: chat-template rendering cut into turns (the answers and their end-of-turn text are
// the trained tokens, a prompt's tokens are the ones `serve` gives it), token-level KD and GKD from a Hugging Face
// teacher, an exact resume, the run ending with a model directory that loads back to the same model, and
// `tsdistill sft --init DIR --teacher DIR` refusing a teacher whose vocabulary differs.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { manualSeed, noGrad, ops, tensor, tidy } from '../src/torch';
import { HfTokenizer, createHfModel, saveHfModel, type HfCausalLM } from '../src/models/hf';
import { chatPromptIds } from '../src/llm/tokenizer';
import { loadHfDecoder } from '../src/llm/decoder-checkpoint';
import { encodeTemplateChat, packChats, sft, type ChatExample } from '../src/distill/sft';
import { TrainingInterrupted } from '../src/distill/trainer';
import { runSft, vocabularyDifference } from '../src/cli/llm';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'hf');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-hf-sft-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tok = HfTokenizer.fromDir(path.join(FIX, 'tok-bpe'));
const quiet = () => {};
const qwen = (seed: number, hidden = 16) => {
  manualSeed(seed);
  return createHfModel({
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: hidden, intermediate_size: 24,
    num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true,
  }) as HfCausalLM;
};
const examples: ChatExample[] = [['hi', 'hello'], ['2+2?', 'four'], ['sky?', 'blue'], ['go', 'stop']].map(([q, a]) => ({
  messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }],
}));

describe('chat templates cut into turns', () => {
  it('marks each answer and its end-of-turn text; the prompt before the first answer is what serve sends', () => {
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi there' },
      { role: 'assistant' as const, content: 'Hello!' },
      { role: 'user' as const, content: 'And now?' },
      { role: 'assistant' as const, content: 'Still here.' },
    ];
    const enc = encodeTemplateChat(tok, messages);
    assert.equal(tok.decode(enc.ids), tok.applyChatTemplate(messages), 'the pieces spell the whole rendering');
    const trained = enc.ids.filter((_, i) => enc.mask[i] === 1);
    assert.equal(tok.decode(trained), 'Hello!<|im_end|>\nStill here.<|im_end|>\n');
    assert.equal(tok.decode(enc.ids.slice(enc.answer.start, enc.answer.end)), 'Still here.');
    const firstAnswer = enc.mask.indexOf(1);
    assert.deepEqual(enc.ids.slice(0, firstAnswer), chatPromptIds(tok, messages.slice(0, 2)));
    // a template whose shorter renderings are not prefixes of the whole cannot be cut
    const reversed = new HfTokenizer(tok.tokenizerJson, {
      ...tok.tokenizerConfig,
      chat_template: "{%- for message in messages|reverse %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    });
    assert.throws(() => encodeTemplateChat(reversed, messages), /message 2 \(assistant\) is not found where the template renders it/);
  });

  it('stored logprobs line up with the answer content under the template', () => {
    const answer = 'hello world';
    const ids = tok.encode(answer);
    const logprobs = ids.map((id) => ({ token: tok.decode([id]), logprob: -0.5, top_logprobs: [{ token: tok.decode([id]), logprob: -0.5 }] }));
    const s = packChats(tok, [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: answer }], logprobs }], { topk: 2 });
    assert.equal(s.unaligned, 0);
    const at = [...s.topk!.has.keys()].filter((i) => s.topk!.has[i] === 1);
    assert.deepEqual(at.map((i) => s.ids[i]), ids, 'targets sit on the content tokens');
    assert.deepEqual(at.map((i) => s.topk!.ids[i * 2]), ids);
  });
});

describe('sft with Hugging Face decoders', () => {
  it('token KD and GKD from a Qwen2 teacher; a stopped and resumed run ends with the same weights; the model directory loads back', async () => {
    const teacher = qwen(1, 32);
    const kd = { teacher, loss: 'jsd' as const, beta: 0.5, alpha: 0.8, onPolicy: 0.5, maxNewTokens: 6 };
    const opts = (outDir: string, model: HfCausalLM) => ({
      model, tokenizer: tok, data: examples, outDir, steps: 6, seqLen: 24, batchSize: 2, lr: 3e-3, checkpointEvery: 100, logEvery: 1, kd, log: quiet,
      generationConfig: { eos_token_id: tok.eosId },
    });
    const a = qwen(5);
    const s = await sft(opts(path.join(tmp, 'straight'), a));
    assert.ok(s.onPolicy!.batches > 0 && s.onPolicy!.batches < 6, `${s.onPolicy!.batches} of 6 micro-batches on-policy at λ = 0.5`);
    assert.equal(s.modelDir, path.join(tmp, 'straight', 'model'));
    const b = qwen(5);
    const ac = new AbortController();
    await assert.rejects(
      sft({ ...opts(path.join(tmp, 'resumed'), b), signal: ac.signal, log: (l) => l.includes('step 3/') && ac.abort() }),
      (e: unknown) => e instanceof TrainingInterrupted && e.step === 3,
    );
    b.dispose();
    const c = qwen(77);
    await sft({ ...opts(path.join(tmp, 'resumed'), c), resume: true });
    const sa = a.stateDict();
    const sc = c.stateDict();
    for (const k of Object.keys(sa)) assert.ok(ops.equal(sa[k], sc[k]), k);
    // the written directory is the trained model, with the tokenizer and generation config
    const back = loadHfDecoder(s.modelDir!);
    assert.equal(back.tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]), tok.applyChatTemplate([{ role: 'user', content: 'x' }]));
    assert.deepEqual(back.stopTokens, [tok.eosId]);
    const ids = [tok.encode('hello there')];
    const same = tidy(() => noGrad(() => {
      a.eval();
      back.model.eval();
      return ops.equal(a.call(tensor(ids, { dtype: 'int64' })), back.model.call(tensor(ids, { dtype: 'int64' })));
    }));
    assert.ok(same, 'the directory holds the trained weights');
    // training moved the student: its weights differ from the initial ones
    const init = qwen(5);
    assert.ok(!ops.equal(init.stateDict()['model.embed_tokens.weight'], sa['model.embed_tokens.weight']));
    for (const m of [a, c, back.model, init, teacher]) m.dispose();
  });

  it('tsdistill sft --init DIR --teacher DIR writes a model directory; a teacher with another vocabulary is refused', async () => {
    const sdir = path.join(tmp, 'student-dir');
    const tdir = path.join(tmp, 'teacher-dir');
    const s0 = qwen(2);
    const t0 = qwen(3, 32);
    saveHfModel(sdir, s0, { files: tok.files(), generationConfig: { eos_token_id: tok.eosId } });
    saveHfModel(tdir, t0, { files: tok.files() });
    s0.dispose();
    t0.dispose();
    const data = path.join(tmp, 'chat.jsonl');
    fs.writeFileSync(data, examples.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const printed: string[] = [];
    const log = console.log;
    console.log = (l: string) => printed.push(l);
    try {
      const v = { init: sdir, teacher: tdir, kd: 'forward_kl', alpha: '0.5', steps: '2', 'seq-len': '24', batch: '2', out: path.join(tmp, 'cli'), json: true };
      assert.equal(await runSft(data, v, new AbortController().signal), 0);
      // another vocabulary: the unigram fixture's tokenizer
      const other = path.join(tmp, 'other-teacher');
      const uni = HfTokenizer.fromDir(path.join(FIX, 'tok-unigram'));
      manualSeed(4);
      const t1 = createHfModel({
        architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: uni.vocabSize, hidden_size: 16, intermediate_size: 24,
        num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true,
      });
      saveHfModel(other, t1, { files: uni.files() });
      t1.dispose();
      await assert.rejects(runSft(data, { ...v, teacher: other, out: path.join(tmp, 'cli-bad') }, new AbortController().signal), /the teacher's tokenizer .* is not the student's/);
      await assert.rejects(runSft(data, { ...v, tokenizer: 'bytes', out: path.join(tmp, 'cli-bad2') }, new AbortController().signal), /is a Hugging Face directory with its own tokenizer\.json; --tokenizer does not apply/);
    } finally {
      console.log = log;
    }
    const summary = JSON.parse(printed.at(-1)!);
    assert.equal(summary.modelDir, path.join(tmp, 'cli', 'model'));
    const back = loadHfDecoder(summary.modelDir);
    assert.deepEqual(back.stopTokens, [tok.eosId], 'the student directory\'s generation config is carried over');
    back.model.dispose();
  });

  it('vocabularyDifference names the first id that differs', () => {
    const uni = HfTokenizer.fromDir(path.join(FIX, 'tok-unigram'));
    assert.equal(vocabularyDifference(tok, tok), null);
    assert.match(vocabularyDifference(tok, uni)!, /ids against|id \d+ is/);
  });
});
