// Writes the small data sets that examples/own-images.yaml and examples/own-text.yaml train on, so that they run
// without downloads:
//
//   <dir>/shapes/{train,test}/<circle|square|triangle>/<n>.png   16x16 RGB shapes of random size, place and colour
//   <dir>/reviews/{train,test}.tsv                                 `text<TAB>label` short reviews, positive / negative
//
// Usage: node dist/examples/own-data.js [dir]   (default: examples/own-data next to the YAML files)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { Rng } from '../src/data';

const SHAPES = ['circle', 'square', 'triangle'] as const;

/** One 16x16 RGBA image of `shape` on a noisy background. */
function drawShape(shape: (typeof SHAPES)[number], rng: Rng): Buffer {
  const S = 16;
  const png = new PNG({ width: S, height: S });
  const r = 3 + rng.int(3); // half size 3..5
  const cx = r + rng.int(S - 2 * r), cy = r + rng.int(S - 2 * r);
  const colour = [50 + rng.int(206), 50 + rng.int(206), 50 + rng.int(206)];
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const dx = x - cx, dy = y - cy;
      const inside =
        shape === 'circle' ? dx * dx + dy * dy <= r * r : shape === 'square' ? Math.abs(dx) <= r && Math.abs(dy) <= r : dy <= r && dy >= -r && Math.abs(dx) <= (dy + r) / 2;
      const noise = rng.int(80);
      // a noisy background and a few stray bright pixels
      const stray = rng.random() < 0.03;
      const px = inside ? colour.map((c) => Math.max(0, Math.min(255, c + noise - 40))) : stray ? [255, 255, 255] : [noise, noise, noise];
      png.data.set([...px, 255], 4 * (y * S + x));
    }
  return PNG.sync.write(png);
}

const GOOD = ['good', 'great', 'lovely', 'excellent', 'superb', 'charming', 'moving', 'funny', 'clever', 'beautiful'];
const BAD = ['bad', 'awful', 'dull', 'boring', 'poor', 'weak', 'tedious', 'clumsy', 'bland', 'messy'];
const SUBJECTS = ['the film', 'this movie', 'the plot', 'the acting', 'the script', 'the ending', 'the music', 'the cast'];
const NOT = ['not', 'never', 'hardly'];

/** A review and its label; a negation flips the word's meaning ("not good" is negative). */
function review(rng: Rng): { text: string; label: 'positive' | 'negative' } {
  const positive = rng.random() < 0.5;
  const negate = rng.random() < 0.25;
  const word = (positive !== negate ? GOOD : BAD)[rng.int(10)];
  const subject = SUBJECTS[rng.int(SUBJECTS.length)];
  const text = negate ? `${subject} was ${NOT[rng.int(3)]} ${word}` : rng.random() < 0.5 ? `${subject} was ${word}` : `a ${word} film , ${subject} too`;
  return { text, label: positive ? 'positive' : 'negative' };
}

/** Writes both data sets under `dir` (the same files for the same seed); returns `dir`. */
export function makeOwnData(dir: string, seed = 0): string {
  const rng = new Rng(seed);
  for (const [split, n] of [['train', 60], ['test', 20]] as const)
    for (const shape of SHAPES) {
      const d = path.join(dir, 'shapes', split, shape);
      fs.mkdirSync(d, { recursive: true });
      for (let i = 0; i < n; i++) fs.writeFileSync(path.join(d, `${i}.png`), drawShape(shape, rng));
    }
  fs.mkdirSync(path.join(dir, 'reviews'), { recursive: true });
  for (const [split, n] of [['train', 600], ['test', 200]] as const) {
    const rows = Array.from({ length: n }, () => review(rng));
    fs.writeFileSync(path.join(dir, 'reviews', `${split}.tsv`), ['text\tlabel', ...rows.map((r) => `${r.text}\t${r.label}`)].join('\n') + '\n');
  }
  return dir;
}

if (require.main === module) {
  const dir = process.argv[2] ?? path.join(__dirname, '..', '..', 'examples', 'own-data');
  console.log(`data written to ${makeOwnData(dir)}`);
}
