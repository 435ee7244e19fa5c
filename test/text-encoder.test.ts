// Texts to token ids (src/data/text-encoder.ts): padding id 0 never stands for a real token (bytes, words,
// tokenizer.json), hashed n-grams, padded rows, and TextDataset.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { TextDataset, TextIdEncoder } from '../src/data';
import { checkLeaks } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-textenc-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('TextIdEncoder', () => {
  checkLeaks();

  it('bytes: byte b is id b + 1, so the NUL byte is not padding', () => {
    const e = TextIdEncoder.create({ tokenizer: 'bytes', maxLen: 4 });
    assert.equal(e.padId, 0);
    assert.equal(e.vocabSize, 257);
    assert.deepEqual(e.encode('A\0é'), [66, 1, 0xc3 + 1, 0xa9 + 1]);
    assert.deepEqual(e.encode('abcdef'), [98, 99, 100, 101], 'cut to maxLen tokens');
    const t = e.encodeBatch(['\0', 'ab']);
    assert.deepEqual(t.tolist(), [[1, 0], [98, 99]]);
    t.dispose();
  });

  it('words: a vocabulary of the training texts, 0 padding and 1 unknown', () => {
    const e = TextIdEncoder.create({ tokenizer: 'words' }, ['good film', 'good day', 'bad film']);
    assert.deepEqual(e.encode('Good film, bad!'), [2, 3, 1, 5, 1]);
    assert.equal(e.vocabSize, 6);
  });

  it('n-grams are hashed into buckets after the tokens, the same way every time', () => {
    const e = TextIdEncoder.create({ tokenizer: 'bytes', maxLen: 5, ngrams: 3, buckets: 10 });
    assert.equal(e.vocabSize, 257 + 10);
    assert.equal(e.rowLength, 5 + 4 + 3);
    const ids = e.encode('hello');
    assert.equal(ids.length, 12);
    assert.deepEqual(ids.slice(0, 5), [105, 102, 109, 109, 112]);
    assert.ok(ids.slice(5).every((i) => i >= 257 && i < 267), `${ids}`);
    assert.deepEqual(TextIdEncoder.create({ tokenizer: 'bytes', maxLen: 5, ngrams: 3, buckets: 10 }).encode('hello'), ids);
    // "ll" occurs once as a bigram: the bigram ids of "hello" and "hella" differ only where the text does
    const other = e.encode('hella');
    assert.deepEqual(other.slice(5, 8), ids.slice(5, 8));
    assert.throws(() => TextIdEncoder.create({ tokenizer: 'bytes', ngrams: 0 }), /text encoder: ngrams must be an integer >= 1, got 0/);
    assert.throws(() => TextIdEncoder.create({ tokenizer: 'bpe' }), /tokenizer must be 'bytes', 'words' or the path of a tokenizer\.json, got 'bpe'/);
  });

  it('tokenizer.json: WordPiece with its [PAD] at 0 keeps its ids; WordLevel without one is shifted by one', () => {
    const wp = path.join(dir, 'wordpiece.json');
    fs.writeFileSync(wp, JSON.stringify({
      normalizer: { type: 'BertNormalizer', lowercase: true },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', vocab: { '[PAD]': 0, '[UNK]': 1, un: 2, '##aff': 3, '##able': 4, hello: 5, '!': 6 } },
    }));
    const a = TextIdEncoder.create({ tokenizer: wp });
    assert.deepEqual(a.encode('Unaffable hello! xyz'), [2, 3, 4, 5, 6, 1]);
    assert.equal(a.vocabSize, 7);
    const wl = path.join(dir, 'wordlevel.json');
    fs.writeFileSync(wl, JSON.stringify({ model: { type: 'WordLevel', unk_token: '<unk>', vocab: { a: 0, b: 1, '<unk>': 2 } } }));
    const b = TextIdEncoder.create({ tokenizer: wl });
    assert.deepEqual(b.encode('a b c'), [1, 2, 3]);
    assert.equal(b.vocabSize, 4);
    const bpe = path.join(dir, 'bpe.json');
    fs.writeFileSync(bpe, JSON.stringify({ model: { type: 'BPE', vocab: {}, merges: [] } }));
    assert.throws(() => TextIdEncoder.create({ tokenizer: bpe }), /bpe\.json: model\.type 'BPE' is not supported \(supported: WordLevel, WordPiece/);
  });

  it('TextDataset: padded int64 rows, labels, raw texts; subsets keep them aligned', () => {
    const e = TextIdEncoder.create({ tokenizer: 'bytes', maxLen: 3 });
    const ds = TextDataset.fromExamples('t', [{ text: 'ab', label: 1 }, { text: 'xyz!', label: 0 }, { text: '', label: 1 }], ['neg', 'pos'], e);
    assert.deepEqual(ds.ids.tolist(), [[98, 99, 0], [121, 122, 123], [0, 0, 0]]);
    assert.deepEqual(ds.labels.toArray(), [1, 0, 1]);
    const sub = ds.subset([2, 0]);
    assert.deepEqual(sub.texts, ['', 'ab']);
    assert.deepEqual(sub.labels.toArray(), [1, 1]);
    sub.dispose();
    ds.dispose();
    assert.throws(() => TextDataset.fromExamples('t', [{ text: 'a', label: 2 }], ['neg', 'pos'], e), /t: example 0 has label 2, not a class index \(2 classes\)/);
  });
});
