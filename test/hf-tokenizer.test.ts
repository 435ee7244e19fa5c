// tokenizer.json tokenizers (WordPiece, byte-level BPE, Unigram) through @huggingface/tokenizers and chat templates
// through @huggingface/jinja. The fixtures (test/fixtures/make_hf_tokenizers.py) are tiny tokenizers of the three
// kinds and the ids that an independent Python implementation of the same algorithms gives on a fixed multilingual
// text set; a few cases are also written out by hand below.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { HfTokenizer, loadHfModel, saveHfModel } from '../src/models/hf';
import { createTokenizer, type Tokenizer } from '../src/llm/tokenizer';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'hf');
const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'tokenizers.json'), 'utf8'));
const wp = HfTokenizer.fromDir(path.join(FIX, 'tok-wordpiece'));
const bpe = HfTokenizer.fromDir(path.join(FIX, 'tok-bpe'));
const uni = HfTokenizer.fromDir(path.join(FIX, 'tok-unigram'));

describe('tokenizer.json: the multilingual text set equals the reference encodings', () => {
  for (const [kind, tok] of [['wordpiece', wp], ['bpe', bpe], ['unigram', uni]] as const)
    it(`${kind}: ${ref.texts.length} texts`, () => {
      const special = kind !== 'bpe';
      ref.texts.forEach((t: string, i: number) => {
        assert.deepEqual(tok.encode(t, { addSpecialTokens: special }), ref[kind][i], `${kind} on ${JSON.stringify(t)}`);
      });
    });
  it('wordpiece: pairs get token type ids 0 then 1', () => {
    ref.pairs.forEach(([a, b]: [string, string], i: number) => {
      const e = wp.encodeFull(a, { pair: b, addSpecialTokens: true });
      assert.deepEqual(e.ids, ref.wordpiece_pairs[i].ids);
      assert.deepEqual(e.tokenTypeIds, ref.wordpiece_pairs[i].token_type_ids);
    });
  });
});

describe('tokenizer.json: cases worked out by hand', () => {
  const tokens = (tok: HfTokenizer, text: string, special = false) => tok.encodeFull(text, { addSpecialTokens: special }).tokens;
  it('wordpiece: lowercase, accents stripped, punctuation split, CJK characters one by one, unknown words whole', () => {
    assert.deepEqual(tokens(wp, 'Hello, World!', true), ['[CLS]', 'hello', ',', 'world', '!', '[SEP]']);
    assert.deepEqual(tokens(wp, 'Unbelievable café'), ['un', '##believ', '##able', 'cafe']);
    assert.deepEqual(tokens(wp, 'cats'), ['cat', '##s']);
    assert.deepEqual(tokens(wp, '你好世界'), ['你', '好', '世', '界']);
    assert.deepEqual(tokens(wp, 'こんにちは ok'), ['[UNK]', 'o', '##k']);
    assert.deepEqual(wp.encode('the mat'), [wp.specialId('the'), wp.specialId('mat')]);
    assert.equal(wp.decode(wp.encode('Hello, world!', { addSpecialTokens: true }), { skipSpecialTokens: true }), 'hello, world!');
    assert.equal(wp.eosId, wp.specialId('[SEP]'));
    assert.equal(wp.padId, 0);
  });
  it('byte-level BPE: spaces become Ġ and stay with the next word, bytes of other scripts are single byte tokens', () => {
    // merges by rank: 'h e' (0), 'a t' (1), 't he' (2), ..., 'Ã Ł' (14), 'Ġ c' (16), 'Ġ hello' (17), 'S t' (21) ...
    assert.deepEqual(tokens(bpe, 'the cat'), ['the', 'Ġc', 'at'], "no merge of 'Ġc' with 'at'");
    assert.deepEqual(tokens(bpe, ' hello'), ['Ġhello']);
    assert.deepEqual(tokens(bpe, 'Straße'), ['StraÃŁe'], 'ß is the bytes C3 9F, mapped to Ã Ł and merged');
    assert.deepEqual(tokens(bpe, 'é'), ['Ã', '©']);
    assert.deepEqual(tokens(bpe, 'a  hello'), ['a', 'Ġ', 'Ġhello'], "pre-tokens 'a', ' ', ' hello'");
    for (const t of ref.texts) assert.equal(bpe.decode(bpe.encode(t)), t, 'byte-level BPE decodes back to the text');
    assert.deepEqual(bpe.encode('<|im_start|>user'), [bpe.specialId('<|im_start|>'), ...bpe.encode('user')], 'added tokens are matched in text');
  });
  it('unigram: NFKC, ▁ before every word, the most likely segmentation, unknown characters fused', () => {
    assert.deepEqual(tokens(uni, 'the cat', true), ['▁the', '▁cat', '</s>']);
    assert.deepEqual(tokens(uni, 'cats'), ['▁cat', 's']);
    assert.deepEqual(tokens(uni, '你好世界'), ['▁你好', '世界']);
    assert.deepEqual(tokens(uni, 'the ★★ cat').length, 4, 'the two unknown stars become one <unk>');
    assert.equal(uni.encode('★★')[1], 0);
    assert.equal(uni.decode(uni.encode('the cat sat')), 'the cat sat');
  });
});

describe('chat templates and batches', () => {
  it('applyChatTemplate renders tokenizer_config.json chat_template with @huggingface/jinja', () => {
    const text = bpe.applyChatTemplate(
      [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }],
      { addGenerationPrompt: true },
    );
    assert.equal(text, '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
    const ids = bpe.encode(text);
    assert.equal(ids.filter((i) => i === bpe.specialId('<|im_start|>')).length, 3);
    assert.equal(bpe.eosId, bpe.specialId('<|im_end|>'));
    assert.throws(() => wp.applyChatTemplate([{ role: 'user', content: 'x' }]), /tokenizer\.json: tokenizer_config\.json has no chat_template/);
    assert.throws(() => bpe.applyChatTemplate([{ role: 'user' } as never]), /message 0 must be \{role: string, content: string\}/);
  });
  it('batch pads on the right, masks the padding and cuts long rows keeping the final [SEP]', () => {
    const b = wp.batch(['the cat', ['the mat', 'hello'], 'the cat sat on the mat'], { maxLength: 6 });
    const [CLS, SEP] = [wp.specialId('[CLS]')!, wp.specialId('[SEP]')!];
    const id = (t: string) => wp.specialId(t)!;
    assert.deepEqual(b.ids, [
      [CLS, id('the'), id('cat'), SEP, 0, 0],
      [CLS, id('the'), id('mat'), SEP, id('hello'), SEP],
      [CLS, id('the'), id('cat'), id('sat'), id('on'), SEP],
    ]);
    assert.deepEqual(b.attentionMask, [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]);
    assert.deepEqual(b.tokenTypeIds[1], [0, 0, 0, 0, 1, 1]);
  });
  it('errors name the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-tok-'));
    try {
      assert.throws(() => HfTokenizer.fromDir(dir), /no tokenizer\.json/);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "Mystery"}}');
      assert.throws(() => HfTokenizer.fromDir(dir), /tokenizer\.json: model\.type "Mystery" is not supported/);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
      assert.throws(() => HfTokenizer.fromDir(dir), /tokenizer\.json: invalid JSON/);
      fs.copyFileSync(path.join(FIX, 'tok-wordpiece', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '[NOPE]' }));
      assert.throws(() => HfTokenizer.fromDir(dir), /eos_token "\[NOPE\]" of tokenizer_config\.json is not in the vocabulary/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('a model saved with its tokenizer files loads both back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdistill-tok-'));
    const { model } = loadHfModel(path.join(FIX, 'qwen2'));
    try {
      saveHfModel(dir, model, { files: bpe.files() });
      const again = HfTokenizer.fromDir(dir);
      assert.deepEqual(again.encode(ref.texts[3]), bpe.encode(ref.texts[3]));
      assert.equal(again.chatTemplate(), bpe.chatTemplate());
    } finally {
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hf:DIR names a tokenizer.json directory for the decoder tools', () => {
  it('createTokenizer(hf:DIR) gives the HfTokenizer, whose name recreates it', () => {
    const t: Tokenizer = createTokenizer(`hf:${path.join(FIX, 'tok-bpe')}`);
    assert.ok(t instanceof HfTokenizer);
    assert.equal(t.name, `hf:${path.join(FIX, 'tok-bpe')}`);
    assert.deepEqual(t.encode(ref.texts[0]), ref.bpe[0]);
    assert.equal(createTokenizer(t.name).vocabSize, t.vocabSize);
    assert.equal(t.eosId, t.specialId('<|im_end|>'));
    assert.throws(() => createTokenizer('hf:/nonexistent/dir'), /\/nonexistent\/dir: no tokenizer\.json/);
  });
});
