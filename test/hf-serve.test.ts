// `serve` over a Hugging Face directory: a Qwen2 decoder saved with a tokenizer.json tokenizer and its ChatML chat
// template answers on the OpenAI protocol; the prompt is the chat template's rendering, and the answer is the one
// `generateTokens` gives for it.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { manualSeed } from '../src/torch';
import { HfTokenizer, createHfModel, saveHfModel, type HfCausalLM } from '../src/models/hf';
import { serve } from '../src/llm/serve';
import { chatPromptIds } from '../src/llm/tokenizer';
import { isHfModelDir, loadHfDecoder } from '../src/llm/decoder-checkpoint';
import { generateTokens } from '../src/llm/decode';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'hf');

describe('serve with a Hugging Face directory', () => {
  it('renders the chat template, answers with the tokens generateTokens gives, stops at eos', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-hf-serve-'));
    const tok = HfTokenizer.fromDir(path.join(FIX, 'tok-bpe'));
    manualSeed(3);
    const fresh = createHfModel({
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 16, intermediate_size: 24,
      num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true,
    });
    saveHfModel(dir, fresh, { files: tok.files(), generationConfig: { eos_token_id: tok.eosId } });
    fresh.dispose();
    assert.ok(isHfModelDir(dir));
    const { model, tokenizer } = loadHfDecoder(dir);
    const server = await serve({ model, tokenizer, modelName: 'qwen2-tiny' });
    try {
      const messages = [{ role: 'user', content: 'Hello world' }];
      const prompt = chatPromptIds(tokenizer, messages);
      assert.deepEqual(prompt, tokenizer.encode('<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n'));
      const res = await fetch(`${server.url}/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'qwen2-tiny', messages, max_tokens: 10, temperature: 0 }),
      });
      const body = await res.json() as { choices: { message: { content: string } }[]; usage: { prompt_tokens: number; completion_tokens: number } };
      assert.equal(res.status, 200, JSON.stringify(body));
      const want = generateTokens(model as HfCausalLM, prompt, { maxNewTokens: 10, temperature: 0, stopTokens: [tokenizer.eosId] });
      assert.equal(body.usage.prompt_tokens, prompt.length);
      assert.equal(body.usage.completion_tokens, want.tokens.length);
      assert.equal(body.choices[0].message.content, tokenizer.decode(want.tokens));
      // generation_config.json's other eos ids end answers too: the first greedy token, made a stop token
      assert.ok(want.tokens.length > 0 && want.tokens[0] !== tokenizer.eosId);
      const other = await serve({ model, tokenizer, modelName: 'qwen2-tiny', stopTokens: [want.tokens[0]] });
      try {
        const r2 = await fetch(`${other.url}/chat/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'qwen2-tiny', messages, max_tokens: 10, temperature: 0 }),
        });
        const b2 = await r2.json() as { choices: { message: { content: string }; finish_reason: string }[] };
        assert.equal(r2.status, 200, JSON.stringify(b2));
        assert.equal(b2.choices[0].message.content, '');
        assert.equal(b2.choices[0].finish_reason, 'stop');
      } finally {
        await other.close();
      }
      await assert.rejects(serve({ model, tokenizer, stopTokens: [1e6] }), /stop token 1000000 is outside the model's vocabulary/);
    } finally {
      await server.close();
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('loadHfDecoder refuses an encoder', () => {
    assert.throws(() => loadHfDecoder(path.join(FIX, 'bert-mlm')), /BertForMaskedLM is not a causal language model/);
  });
});
