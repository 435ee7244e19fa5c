// Teachers on raw samples and black-box answers as label → probability maps: a JavaScript function over strings
// distils a fastText student on a small TSV made here; partial and top-k maps are checked against hand-computed
// log-probabilities (the missing mass spread evenly, a floor for the rest); sums slightly above 1 are accepted and
// clearly above refused with the sample and the sum; two closures over different state never share a cache identity;
// pseudoLabel takes a black-box teacher and reads its answers from the teacher cache instead of asking again.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { Tensor, dispose, tensor, zeros } from '../src/torch';
import { DataLoader, ImageDataset, type RawImage, TensorDataset, TextDataset, loadDataset, loadImageFolder, normalize, ownDataset } from '../src/data';
import { type LabelScores, blackBoxTeacher, loadExternalTeacher, runTeacher } from '../src/teachers';
import { validateConfig } from '../src/run';
import { distill, pseudoLabel, teacherCacheFile, teacherLogits } from '../src/distill';
import { checkLeaks } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-raw-teacher-'));
process.env.TSDISTILL_CACHE = path.join(root, 'cache');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const quiet = { progress: false, log: () => {} };

/** train.tsv and test.tsv of short film reviews (header text, label; labels neg and pos). */
function reviews(dir: string): { train: string; test: string } {
  fs.mkdirSync(dir, { recursive: true });
  const good = ['good', 'great', 'fine', 'lovely'], bad = ['bad', 'awful', 'dull', 'poor'];
  const rows = (n: number, from: number) =>
    ['text\tlabel', ...Array.from({ length: n }, (_, i) => {
      const k = i + from;
      return k % 2 ? `a ${good[k % 4]} film number ${k}\tpos` : `a ${bad[k % 4]} film number ${k}\tneg`;
    })].join('\n');
  fs.writeFileSync(path.join(dir, 'train.tsv'), rows(48, 0));
  fs.writeFileSync(path.join(dir, 'test.tsv'), rows(16, 100));
  return { train: path.join(dir, 'train.tsv'), test: path.join(dir, 'test.tsv') };
}

/** A sentiment "service": the texts it was asked about, and a partial answer per text (the other label gets the rest). */
function sentiment(): { asked: string[]; fn: (texts: string[]) => LabelScores[] } {
  const asked: string[] = [];
  return {
    asked,
    fn: (texts) => {
      asked.push(...texts);
      return texts.map((t) => (/good|great|fine|lovely/.test(t) ? { pos: 0.9 } : { neg: 0.8 }));
    },
  };
}

const L = Math.log;
const rowsOf = (t: Tensor) => t.tolist() as number[][];
const close = (a: number[][], b: number[][], tol = 1e-5) => {
  assert.equal(a.length, b.length);
  a.forEach((r, i) => r.forEach((v, j) => assert.ok(Math.abs(v - b[i][j]) <= tol * Math.max(1, Math.abs(b[i][j])), `row ${i}, column ${j}: ${v} vs ${b[i][j]}`)));
};

describe('teachers on raw samples', () => {
  checkLeaks();

  it('a black-box function over strings distils a text student; each text is asked once through the cache', async () => {
    const dir = path.join(root, 'distill');
    const files = reviews(dir);
    const service = sentiment();
    const teacher = blackBoxTeacher(service.fn, { input: 'raw', returns: 'probs', labels: ['neg', 'pos'], id: 'sentiment-v1' });
    const data = { ...files, tokenizer: 'words' as const };
    const summary = await distill({ teacher, student: { model: 'fasttext' }, data, outDir: path.join(dir, 'run'), epochs: 8, batchSize: 8, optimizer: { kind: 'adam', lr: 0.05 }, alpha: 0, temperature: 1, ...quiet });
    const trainTexts = fs.readFileSync(files.train, 'utf8').split('\n').slice(1).map((l) => l.split('\t')[0]);
    assert.deepEqual([...service.asked].sort(), [...trainTexts].sort(), 'the teacher received each training text (the raw string), once');
    assert.equal(summary.teacher_cache, 'built');
    assert.ok(summary.final_test_acc >= 90, `the student follows the teacher on held-out texts (${summary.final_test_acc} %)`);
    const again = await distill({ teacher, student: { model: 'fasttext' }, data, outDir: path.join(dir, 'run2'), epochs: 1, batchSize: 8, ...quiet });
    assert.equal(again.teacher_cache, 'loaded');
    assert.equal(service.asked.length, trainTexts.length, 'a second run asks nothing');
  });

  it('image sets hand out files and untransformed pixels; a set without raw samples is refused by name', async () => {
    const dir = path.join(root, 'images');
    for (const [c, v] of [['dark', 20], ['light', 220]] as const) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      for (let i = 0; i < 3; i++) {
        const p = new PNG({ width: 4, height: 4 });
        p.data.fill(v + i);
        for (let k = 3; k < p.data.length; k += 4) p.data[k] = 255;
        fs.writeFileSync(path.join(dir, c, `${i}.png`), PNG.sync.write(p));
      }
    }
    const ds = loadImageFolder(dir, { cache: false });
    const seen: RawImage[] = [];
    const byFile = blackBoxTeacher((imgs: RawImage[]) => {
      seen.push(...imgs);
      return imgs.map((im) => (im.file!.includes(`${path.sep}light${path.sep}`) ? { light: 1 } : { dark: 1 }));
    }, { input: 'raw', returns: 'probs', labels: ['dark', 'light'], floor: 1e-6 });
    const loader = new DataLoader(ds, { batchSize: 4, transforms: [normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])] });
    const r = await pseudoLabel(byFile, ds, { transforms: loader.transforms });
    try {
      assert.equal(r.agreement, 100, 'labels from the files agree with the folders');
      assert.equal(seen.length, 6);
      const first = seen.find((s) => s.file === path.join(dir, 'light', '1.png'))!;
      assert.deepEqual(first.shape, [3, 4, 4]);
      assert.ok(first.pixels.every((v) => v === 221), 'pixels as decoded, before normalisation');
      const sub = ds.subset([5, 0]);
      assert.deepEqual(sub.rawSamples([0, 1]).map((s) => s.file), [path.join(dir, 'light', '2.png'), path.join(dir, 'dark', '0.png')]);
      sub.dispose();
      const plain = new TensorDataset(zeros([4, 3]), tensor(new BigInt64Array(4)));
      const b = new DataLoader(plain, { batchSize: 4 }).batchAt(0);
      await assert.rejects(runTeacher(byFile, b.x, ['logits'], { dataset: plain, indices: b.indices }), /takes raw samples, but the data set \(TensorDataset\) keeps none; a TextDataset keeps its texts/);
      await assert.rejects(runTeacher(byFile, b.x, ['logits']), /takes raw samples, but the batches come from no data set/);
      b.dispose();
      plain.dispose();
    } finally {
      r.dataset.dispose();
      ds.dispose();
    }
  });
});

describe('black-box answers as label → probability maps', () => {
  checkLeaks();
  const labels = ['a', 'b', 'c', 'd'];
  /** Runs a raw teacher answering `answers` (one per sample) and returns its log-probabilities. */
  async function answer(answers: unknown[], opts: { floor?: number; tolerance?: number; returns?: 'probs' | 'logits' } = {}): Promise<number[][]> {
    const t = blackBoxTeacher((texts: string[]) => texts.map((s) => answers[Number(s)]) as LabelScores[], { input: 'raw', returns: opts.returns ?? 'probs', labels, floor: opts.floor, tolerance: opts.tolerance, retries: 0 });
    const x = zeros([answers.length, 1]);
    try {
      const { output } = await t.run(x, ['output'], answers.map((_, i) => String(i)));
      try {
        return rowsOf(output);
      } finally {
        output.dispose();
      }
    } finally {
      x.dispose();
    }
  }

  it('partial and top-k maps: the missing mass spread evenly over the missing labels, a floor below it', async () => {
    const got = await answer([
      { a: 0.7, b: 0.2 }, // 0.1 missing: c and d get 0.05 each
      [{ label: 'c', score: 0.6 }, { label: 'a', score: 0.4 }], // top-2 holding all the mass: b and d get the floor
      { d: 1 }, // top-1
      { a: 0.25, b: 0.25, c: 0.25, d: 0.25 },
      {}, // nothing known: uniform
    ]);
    const f = 1e-12, tot = 1 + 2 * f, tot3 = 1 + 3 * f;
    close(got, [
      [L(0.7), L(0.2), L(0.05), L(0.05)],
      [L(0.4 / tot), L(f / tot), L(0.6 / tot), L(f / tot)],
      [L(f / tot3), L(f / tot3), L(f / tot3), L(1 / tot3)],
      [L(0.25), L(0.25), L(0.25), L(0.25)],
      [L(0.25), L(0.25), L(0.25), L(0.25)],
    ]);
    // a larger floor: b and d at 1e-3 each, then the row divided by 1.002
    const floored = await answer([[{ label: 'c', score: 0.6 }, { label: 'a', score: 0.4 }]], { floor: 1e-3 });
    close(floored, [[L(0.4 / 1.002), L(0.001 / 1.002), L(0.6 / 1.002), L(0.001 / 1.002)]]);
  });

  it('sums slightly above 1 are renormalised; clearly above, unknown labels and maps as logits are refused', async () => {
    const s = 1.0004;
    close(await answer([{ a: 0.5004, b: 0.2, c: 0.2, d: 0.1 }, { a: 0.8004, b: 0.2 }]), [
      [L(0.5004 / s), L(0.2 / s), L(0.2 / s), L(0.1 / s)],
      [L(0.8004 / s / (1 + 2e-12)), L(0.2 / s / (1 + 2e-12)), L(1e-12), L(1e-12)],
    ]);
    await assert.rejects(answer([{ a: 0.5 }, { a: 0.9, b: 0.2 }]), /black-box teacher .*: sample 1 of the batch \("1"\): the probabilities sum to 1\.1\d*, above 1 \+ tolerance 0\.001/);
    assert.equal((await answer([{ a: 0.9, b: 0.2 }], { tolerance: 0.2 }))[0].length, 4, 'a wider tolerance accepts it');
    await assert.rejects(answer([{ a: 0.5, e: 0.5 }]), /sample 0 of the batch \("0"\): label 'e' is not in the declared label set \(closest: a/);
    await assert.rejects(answer([{ a: 0.5 }], { returns: 'logits' }), /label → probability maps, which hold probabilities; use returns: 'probs'/);
    await assert.rejects(answer([{ a: -0.1 }]), /the probability of 'a' is -0\.1; expected a number in \[0, 1\]/);
    // rows of probabilities: slightly above 1 renormalised, clearly above refused with the sample and the sum
    close(await answer([[0.6004, 0.4, 0, 0]]), [[L(0.6004 / 1.0004), L(0.4 / 1.0004), L(1e-12 / 1.0004), L(1e-12 / 1.0004)]]);
    await assert.rejects(answer([[0.25, 0.25, 0.25, 0.25], [0.7, 0.4, 0, 0]]), /sample 1 of the batch \("1"\): the probabilities sum to 1\.1\d*, above 1 \+ tolerance 0\.001/);
    await assert.rejects(answer([[0.2, 0.2, 0, 0]]), /sample 0 .*sum to 0\.4\d*, below 1 − tolerance 0\.001; send a partial or top-k answer as a label → probability map/);
  });

  it('misspelled options and duplicate labels are named', () => {
    assert.throws(() => blackBoxTeacher(() => [[1]], { returns: 'probs', lables: ['a'] } as never), /unknown option 'lables'; did you mean 'labels'\?/);
    assert.throws(() => blackBoxTeacher(() => [[1]], { returns: 'probs', labels: ['a', 'b', 'a'] }), /label 'a' appears twice in labels/);
  });
});

describe('black-box cache identities', () => {
  checkLeaks();

  it('two closures over different state never share an identity; a named teacher keeps its answers across instances', async () => {
    const dir = path.join(root, 'ids');
    const info = ownDataset({ ...reviews(dir), tokenizer: 'words' });
    const { train, test } = loadDataset(info.name);
    const cacheDir = path.join(dir, 'cache');
    const calls = { n: 0 };
    // the same source, different state (the weight of 'pos')
    const make = (w: number, id?: string) =>
      blackBoxTeacher((texts: string[]) => {
        calls.n += texts.length;
        return texts.map(() => ({ pos: w }));
      }, { input: 'raw', returns: 'probs', labels: ['neg', 'pos'], ...(id ? { id } : {}) });
    const loader = new DataLoader(train, { batchSize: 16 });
    try {
      const a = make(0.9), b = make(0.1);
      assert.notEqual(a.id(), b.id(), 'unnamed closures over different state get different identities');
      assert.notEqual(teacherCacheFile(a, loader, cacheDir), teacherCacheFile(b, loader, cacheDir));
      const ra = await teacherLogits(a, loader, cacheDir);
      const rb = await teacherLogits(b, loader, cacheDir);
      assert.equal(rb.fromCache, false, 'b is asked, not served a\'s answers');
      close(rowsOf(rb.logits).slice(0, 1), [[L(0.9), L(0.1)]]);
      close(rowsOf(ra.logits).slice(0, 1), [[L(0.1), L(0.9)]]);
      dispose([ra.logits, rb.logits]);

      assert.notEqual(make(0.9, 'v1').id(), make(0.1, 'v2').id(), 'a new id for new state');
      assert.equal(make(0.9, 'v1').id(), make(0.9, 'v1').id());
      const named = await teacherLogits(make(0.9, 'v1'), loader, cacheDir);
      const before = calls.n;
      const reused = await teacherLogits(make(0.9, 'v1'), loader, cacheDir);
      assert.equal(reused.fromCache, true, 'a named teacher made again reads its answers from the cache');
      assert.equal(calls.n, before);
      dispose([named.logits, reused.logits]);
      // the identity follows the source too: a different function with the same id is another teacher
      const other = blackBoxTeacher((texts: string[]) => texts.map(() => ({ neg: 1 })), { input: 'raw', returns: 'probs', labels: ['neg', 'pos'], id: 'v1' });
      assert.notEqual(other.id(), make(0.9, 'v1').id());
    } finally {
      train.dispose();
      test.dispose();
    }
  });
});

describe('pseudoLabel with any teacher', () => {
  checkLeaks();

  it('labels a text set with a black-box teacher, and the teacher cache spares the second pass and the distillation', async () => {
    const dir = path.join(root, 'pseudo');
    const info = ownDataset({ ...reviews(dir), tokenizer: 'words' });
    const { train, test } = loadDataset(info.name);
    const service = sentiment();
    const teacher = blackBoxTeacher(service.fn, { input: 'raw', returns: 'probs', labels: ['neg', 'pos'], id: 'sentiment-v1' });
    const cacheDir = path.join(dir, '.teacher-cache');
    let labelled: TextDataset | null = null;
    try {
      const first = await pseudoLabel(teacher, train as TextDataset, { cacheDir, batchSize: 16 });
      labelled = first.dataset;
      assert.equal(first.fromCache, false);
      assert.equal(service.asked.length, train.length, 'one pass over the set');
      assert.equal(first.agreement, 100);
      assert.ok(labelled instanceof TextDataset);
      assert.deepEqual(labelled.texts, (train as TextDataset).texts);
      const second = await pseudoLabel(teacher, train as TextDataset, { cacheDir });
      second.dataset.dispose();
      assert.equal(second.fromCache, true);
      assert.equal(service.asked.length, train.length, 'labelling again asks nothing');
      const summary = await distill({ teacher, student: { model: 'fasttext' }, data: { train: labelled, test }, outDir: path.join(dir, 'run'), epochs: 1, batchSize: 8, ...quiet });
      assert.equal(summary.teacher_cache, 'loaded', 'distilling on the labelled set reads the logits pseudoLabel wrote');
      assert.equal(service.asked.length, train.length);
    } finally {
      labelled?.dispose();
      train.dispose();
      test.dispose();
    }
  });
});


describe('an http teacher from a configuration', () => {
  it('takes input: raw, labels, floor, tolerance and id; other inputs and bad values are named', async () => {
    const base = { data: { dataset: 'mnist' }, student: { model: 'lenet5-half' } };
    const teacher = { model: 'http', url: 'http://127.0.0.1:9/predict', returns: 'probs', input: 'raw', labels: ['neg', 'pos'], floor: 1e-9, tolerance: 0.01, id: 'svc-v2' };
    const cfg = validateConfig({ ...base, teacher }, 'x.yaml');
    const t = await loadExternalTeacher(cfg.teacher as never);
    assert.equal(t.takesRaw, true);
    // the identity follows the configured id: another id, another teacher for the cache
    const other = await loadExternalTeacher(validateConfig({ ...base, teacher: { ...teacher, id: 'svc-v3' } }, 'x.yaml').teacher as never);
    assert.notEqual(t.id(), other.id());
    await assert.rejects(loadExternalTeacher(validateConfig({ ...base, teacher: { ...teacher, input: 'pixels' } }, 'x.yaml').teacher as never), /http teacher: input must be 'raw'.*got 'pixels'/);
    assert.throws(() => validateConfig({ ...base, teacher: { ...teacher, floor: 2 } }, 'x.yaml'), /teacher\.floor/);
    assert.throws(() => validateConfig({ ...base, teacher: { ...teacher, labels: ['only'] } }, 'x.yaml'), /teacher\.labels/);
    assert.throws(() => validateConfig({ ...base, teacher: { model: 'lenet5', id: 'x' } }, 'x.yaml'), /teacher\.id applies to teachers from elsewhere/);
  });
});
