// TinyBERT's task-data augmentation (data_augmentation.py of the authors' code): each sentence is rewritten
// `perSentence` times; in each rewrite every word is replaced with probability `p` (0.4) by one of `k` (15) candidates
// drawn uniformly:
//   a word that is one WordPiece token: the masked LM's top-k predictions for that position (the word masked in the
//     original sentence), whole-word tokens only
//   any other word: its nearest whole-word tokens by cosine similarity of the teacher's word embeddings (the authors
//     use GloVe vectors; here the mean of the word's pieces' input embeddings)
// The draws come from a generator seeded by (seed, sentence index), so the result is the same for the same inputs.
import { Tensor, cat, noGrad, tensor, tidy } from '../torch';
import { Rng, bertWords, mixSeed } from '../data';
import type { BertForMaskedLM, HfTokenizer } from '../models/hf';

export interface AugmentOptions {
  /** The teacher's masked LM (candidates for one-token words; its word embeddings for the others). */
  mlm: BertForMaskedLM;
  tokenizer: HfTokenizer;
  /** Rewrites per sentence (the authors: 20). */
  perSentence: number;
  seed: number;
  /** Probability of replacing each word (default 0.4). */
  p?: number;
  /** Candidates per word (default 15). */
  k?: number;
  /** Rows longer than this are cut (keeping [SEP]). */
  maxLength: number;
  /** Masked rows per forward pass (default 256). */
  batch?: number;
}

/** The rewritten sentences' token rows (with [CLS] … [SEP]) and labels (the original's); see the file header. */
export function augmentTask(texts: readonly string[], labels: readonly number[], o: AugmentOptions): { rows: number[][]; labels: number[]; texts: string[] } {
  if (texts.length !== labels.length) throw new Error(`augmentTask: ${texts.length} texts but ${labels.length} labels`);
  if (!Number.isInteger(o.perSentence) || o.perSentence < 1) throw new Error(`augmentTask: perSentence must be a positive integer, got ${o.perSentence}`);
  const p = o.p ?? 0.4, k = o.k ?? 15, tok = o.tokenizer;
  const cls = tok.specialId('[CLS]'), sep = tok.specialId('[SEP]'), mask = tok.specialId('[MASK]'), unk = tok.specialId('[UNK]');
  if (cls === null || sep === null || mask === null) throw new Error(`augmentTask: the tokenizer ${tok.name} lacks [CLS], [SEP] or [MASK]`);
  // whole-word tokens: candidates must be words (no ## pieces, no special tokens)
  const vocab: string[] = [];
  const json = tok.tokenizerJson as { model: { vocab: Record<string, number> } };
  for (const [t, id] of Object.entries(json.model.vocab)) vocab[id] = t;
  const isWord = vocab.map((t, id) => !!t && !t.startsWith('##') && !tok.isSpecial(id) && /[a-z0-9]/i.test(t));
  const wordIds = Int32Array.from(vocab.keys()).filter((id) => isWord[id]);
  const words = texts.map((t) => bertWords(t));
  const pieces = new Map<string, number[]>();
  const piecesOf = (w: string) => {
    let ps = pieces.get(w);
    if (!ps) pieces.set(w, (ps = tok.encode(w)));
    return ps;
  };
  const single = (w: string) => {
    const ps = piecesOf(w);
    return ps.length === 1 && ps[0] !== unk && isWord[ps[0]];
  };
  const model = o.mlm;
  const was = model.training;
  model.eval();
  const candidates: (number[] | null)[][] = words.map((ws) => ws.map(() => null));
  try {
    // masked-LM candidates: one row per (sentence, one-token word), that word masked
    const jobs: { s: number; w: number; ids: number[]; at: number }[] = [];
    words.forEach((ws, s) => {
      const ids = [cls], starts: number[] = [];
      for (const w of ws) {
        starts.push(ids.length);
        ids.push(...piecesOf(w));
      }
      ids.push(sep);
      if (ids.length > o.maxLength) return; // long sentences: embedding neighbours only
      ws.forEach((w, i) => {
        if (single(w)) {
          const row = ids.slice();
          row[starts[i]] = mask;
          jobs.push({ s, w: i, ids: row, at: starts[i] });
        }
      });
    });
    const B = o.batch ?? 256;
    const allowed = tidy(() => tensor(Float32Array.from(isWord.map((b) => (b ? 0 : -1e9))))).keep();
    try {
      for (let i = 0; i < jobs.length; i += B) {
        const part = jobs.slice(i, i + B);
        const top = noGrad(() =>
          tidy(() => {
            const S = Math.max(...part.map((j) => j.ids.length));
            const flat = new BigInt64Array(part.length * S);
            part.forEach((j, r) => j.ids.forEach((v, c) => { flat[r * S + c] = BigInt(v); }));
            const ids = tensor(flat, { dtype: 'int64' }).view(part.length, S);
            const h = model.bert.call(ids) as Tensor; // [n, S, H]; ids 0 are masked as padding
            const at = tensor(BigInt64Array.from(part.map((j, r) => BigInt(r * S + j.at))), { dtype: 'int64' });
            const logits = model.cls.call(h.reshape([-1, h.shape[2]]).indexSelect(0, at)) as Tensor; // [n, V]
            return logits.add(allowed).topk(k + 1, -1)[1].tolist() as number[][];
          }),
        );
        part.forEach((j, r) => {
          const own = piecesOf(words[j.s][j.w])[0];
          candidates[j.s][j.w] = top[r].filter((id) => id !== own).slice(0, k);
        });
      }
    } finally {
      allowed.dispose();
    }
    // embedding neighbours for the other words (once per distinct word)
    const others = [...new Set(words.flatMap((ws) => ws.filter((w) => !single(w))))];
    const neighbours = new Map<string, number[]>();
    if (others.length)
      noGrad(() =>
        tidy(() => {
          const E = model.bert.embeddings.word_embeddings.weight;
          const idx = tensor(BigInt64Array.from([...wordIds].map(BigInt)), { dtype: 'int64' });
          const W = E.indexSelect(0, idx);
          const Wn = W.div(W.pow(2).sum(-1, true).sqrt().clamp(1e-12));
          for (let i = 0; i < others.length; i += 512) {
            const part = others.slice(i, i + 512);
            const q = part.map((w) => {
              const ps = piecesOf(w).filter((id) => id !== unk);
              return ps.length ? ps : [unk ?? 0];
            });
            const rows = tidy(() => {
              const qv = q.map((ps) => E.indexSelect(0, tensor(BigInt64Array.from(ps.map(BigInt)), { dtype: 'int64' })).mean(0, true));
              const Q = cat(qv, 0);
              const Qn = Q.div(Q.pow(2).sum(-1, true).sqrt().clamp(1e-12));
              return Qn.matmul(Wn.t()).topk(k, -1)[1].tolist() as number[][];
            });
            part.forEach((w, r) => neighbours.set(w, rows[r].map((j) => wordIds[j])));
          }
        }),
      );
    words.forEach((ws, s) => ws.forEach((w, i) => { if (!candidates[s][i]) candidates[s][i] = neighbours.get(w) ?? null; }));
  } finally {
    model.train(was);
  }
  const outTexts: string[] = [], outLabels: number[] = [];
  words.forEach((ws, s) => {
    const rng = new Rng(mixSeed(o.seed, s));
    for (let n = 0; n < o.perSentence; n++) {
      const out = ws.map((w, i) => {
        const c = candidates[s][i];
        if (rng.random() >= p || !c || !c.length) return w;
        return vocab[c[rng.int(c.length)]];
      });
      outTexts.push(out.join(' '));
      outLabels.push(labels[s]);
    }
  });
  const rows = tok.batch(outTexts, { maxLength: o.maxLength }).ids.map((r) => r.filter((id, j) => j === 0 || id !== tok.padId));
  return { rows, labels: outLabels, texts: outTexts };
}
