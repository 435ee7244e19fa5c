// A reproducible spoken-digit corpus: the words "zero" … "nine" synthesised by espeak-ng (Debian's `espeak-ng`) in
// many voices, the synthesis settings drawn from a seeded generator, turned into log-mel spectrograms.
//
// Voices: an accent (espeak-ng's English voices en, en-us, en-gb-scotland, ...) with a variant (+m1 … +m7, +f1 … +f4:
// espeak-ng's formant variants, male and female). The split is by voice: every voice with a variant in `testVariants`
// (default m7 and f4, in every accent) is in the test split and never heard in training.
//
// Each utterance: espeak-ng -v <accent>+<variant> -s <speed> -p <pitch> -a <amplitude> --stdout <word>; the WAV
// (16-bit PCM mono, 22050 Hz) is parsed, trimmed to the span above -35 dB of its peak, placed at a random offset in a
// silent window of nFft + (frames − 1)·hop samples (the middle kept when longer), white noise at a random SNR added, and
// the log-mel spectrogram [mels, frames] computed with libtorch's stft (see audio.ts). Speed, pitch, amplitude, offset,
// SNR and the noise come from Rng(seed, voice, digit, repeat), so the same options give the same corpus, byte for byte
// (as long as espeak-ng's version is the same: it is part of the cache key).
//
// Cache: one file per corpus under <cache>/spoken-digits/ (the cache is $TSDISTILL_CACHE, else
// $XDG_CACHE_HOME/tsdistill, else ~/.cache/tsdistill), written atomically: 8-byte magic "TSDSPK01", uint32 length of
// a UTF-8 JSON header (options, espeak-ng version, every utterance's settings and the SHA-256 of its WAV bytes), the
// header, then float32 log-mel features [N, mels, frames] (train utterances, then test), unnormalised.
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { noGrad, tensor, tidy } from '../torch';
import { writeFileAtomic } from '../torch/atomic';
import { TensorDataset } from './dataset';
import { defaultCacheDir } from './imagefolder';
import { Rng, mixSeed } from './rng';
import { type LogMelOptions, logMelSpectrogram, parseWav } from './audio';

export const DIGIT_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'] as const;
/** espeak-ng's English accents (voices gmw/en*). */
export const ESPEAK_ACCENTS = ['en', 'en-us', 'en-gb-scotland', 'en-gb-x-rp', 'en-gb-x-gbclan', 'en-gb-x-gbcwmd', 'en-029'];
/** espeak-ng's voice variants used as speakers: seven male, four female. */
export const ESPEAK_VARIANTS = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'f1', 'f2', 'f3', 'f4'];

const MAGIC = 'TSDSPK01';
const FORMAT_VERSION = 1;
const SAMPLE_RATE = 22050;

export interface SpokenDigitsOptions {
  /** Draws every utterance's settings and noise (default 0). */
  seed?: number;
  accents?: string[];
  variants?: string[];
  /** Voices with these variants (in every accent) form the test split (default m7, f4). */
  testVariants?: string[];
  /** Utterances per training voice and digit (default 4) and per test voice and digit (default 4). */
  trainRepeats?: number;
  testRepeats?: number;
  /** Ranges the settings are drawn from, uniformly: words per minute (default 120–220), pitch 0–99 (20–80), amplitude (60–160), SNR in dB of added white noise (15–35). */
  speed?: [number, number];
  pitch?: [number, number];
  amplitude?: [number, number];
  snrDb?: [number, number];
  /** Features: mel bands (default 40), frames (default 64), DFT size (512) and hop (256) at 22050 Hz. */
  mels?: number;
  frames?: number;
  nFft?: number;
  hop?: number;
  /** Folder of the cache files (default <cache>/spoken-digits); `cache: false` neither reads nor writes one. */
  cacheDir?: string;
  cache?: boolean;
  /** The espeak-ng program (default `espeak-ng`). */
  command?: string;
  log?: (line: string) => void;
}

export interface Utterance {
  digit: number;
  /** `<accent>+<variant>` */
  voice: string;
  split: 'train' | 'test';
  speed: number;
  pitch: number;
  amplitude: number;
  snrDb: number;
  /** Where the trimmed word starts in the window (negative: the word was longer and its middle kept). */
  offset: number;
  /** Samples of the trimmed word. */
  length: number;
  /** SHA-256 (hex) of espeak-ng's WAV output. */
  wavSha256: string;
}

export interface SpokenDigits {
  /** Log-mel features [N, 1, mels, frames] normalised with the training split's mean and std, labels int64 [N]. */
  train: TensorDataset;
  test: TensorDataset;
  trainUtterances: Utterance[];
  testUtterances: Utterance[];
  voices: { train: string[]; test: string[] };
  /** Mean and standard deviation of the training split's log-mel values (what normalised both splits). */
  stats: { mean: number; std: number };
  /** The options as used (defaults filled in) and the espeak-ng version. */
  spec: Required<Omit<SpokenDigitsOptions, 'cacheDir' | 'cache' | 'command' | 'log'>> & { espeak: string };
  /** The cache file (null with cache: false), and whether the corpus was read from it. */
  cacheFile: string | null;
  fromCache: boolean;
  dispose(): void;
}

/** espeak-ng's version line, or null when the program is not found. */
export function espeakVersion(command = 'espeak-ng'): string | null {
  const r = spawnSync(command, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim().replace(/\s+Data at:.*$/, '');
}

/** One word spoken by espeak-ng: the WAV bytes it writes to stdout. */
export function synthesize(word: string, voice: string, s: { speed: number; pitch: number; amplitude: number }, command = 'espeak-ng'): Uint8Array {
  const args = ['-v', voice, '-s', String(s.speed), '-p', String(s.pitch), '-a', String(s.amplitude), '--stdout', word];
  const r = spawnSync(command, args, { maxBuffer: 64 << 20 });
  const cmd = `${command} ${args.join(' ')}`;
  if (r.error) throw new Error(`${cmd}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? `${command} not found; install it with \`apt-get install espeak-ng\`` : r.error.message}`, { cause: r.error });
  if (r.status !== 0) throw new Error(`${cmd}: exit status ${r.status}: ${r.stderr.toString().trim()}`);
  const err = r.stderr.toString().trim();
  // an unknown voice is reported on stderr, and espeak-ng still exits 0 with the default voice
  if (err) throw new Error(`${cmd}: ${err}`);
  return new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength);
}

/** The first and one past the last sample whose magnitude reaches `db` dB below the peak. */
export function trimSilence(x: Float32Array, db = -35): [number, number] {
  let peak = 0;
  for (let i = 0; i < x.length; i++) peak = Math.max(peak, Math.abs(x[i]));
  if (peak === 0) return [0, 0];
  const th = peak * 10 ** (db / 20);
  let a = 0, b = x.length;
  while (a < b && Math.abs(x[a]) < th) a++;
  while (b > a && Math.abs(x[b - 1]) < th) b--;
  return [a, b];
}

type Spec = SpokenDigits['spec'];

function fill(o: SpokenDigitsOptions, espeak: string): Spec {
  const d: Spec = {
    seed: o.seed ?? 0, accents: o.accents ?? ESPEAK_ACCENTS, variants: o.variants ?? ESPEAK_VARIANTS, testVariants: o.testVariants ?? ['m7', 'f4'],
    trainRepeats: o.trainRepeats ?? 4, testRepeats: o.testRepeats ?? 4,
    speed: o.speed ?? [120, 220], pitch: o.pitch ?? [20, 80], amplitude: o.amplitude ?? [60, 160], snrDb: o.snrDb ?? [15, 35],
    mels: o.mels ?? 40, frames: o.frames ?? 64, nFft: o.nFft ?? 512, hop: o.hop ?? 256, espeak,
  };
  const who = 'spoken digits';
  for (const k of ['trainRepeats', 'testRepeats', 'mels', 'frames', 'nFft', 'hop'] as const)
    if (!Number.isInteger(d[k]) || d[k] < (k === 'trainRepeats' || k === 'testRepeats' ? 0 : 1)) throw new Error(`${who}: option '${k}' must be a ${k.endsWith('Repeats') ? 'non-negative' : 'positive'} integer, got ${d[k]}`);
  for (const k of ['speed', 'pitch', 'amplitude', 'snrDb'] as const)
    if (!Array.isArray(d[k]) || d[k].length !== 2 || !(d[k][0] <= d[k][1])) throw new Error(`${who}: option '${k}' must be a range [low, high], got ${JSON.stringify(d[k])}`);
  for (const v of d.testVariants) if (!d.variants.includes(v)) throw new Error(`${who}: test variant '${v}' is not among the variants (${d.variants.join(', ')})`);
  if (d.testVariants.length === d.variants.length) throw new Error(`${who}: every variant is a test variant; none is left for training`);
  if (!d.accents.length) throw new Error(`${who}: no accents`);
  return d;
}

/** Samples in a feature window: nFft + (frames − 1)·hop. */
const windowLength = (s: Spec) => s.nFft + (s.frames - 1) * s.hop;

/** The utterances a spec asks for, in order (train voices, then test voices; voice, digit, repeat), settings not drawn yet. */
function plan(s: Spec): { voice: string; voiceIndex: number; digit: number; repeat: number; split: 'train' | 'test' }[] {
  const out: ReturnType<typeof plan> = [];
  const voices = s.accents.flatMap((a) => s.variants.map((v) => ({ voice: `${a}+${v}`, test: s.testVariants.includes(v) })));
  for (const split of ['train', 'test'] as const)
    voices.forEach((v, voiceIndex) => {
      if (v.test !== (split === 'test')) return;
      const repeats = split === 'train' ? s.trainRepeats : s.testRepeats;
      for (let digit = 0; digit < 10; digit++) for (let repeat = 0; repeat < repeats; repeat++) out.push({ voice: v.voice, voiceIndex, digit, repeat, split });
    });
  return out;
}

/** Synthesises one utterance and places it in its window (with noise): the utterance's record and the window. */
function render(s: Spec, p: ReturnType<typeof plan>[number], command: string): { u: Utterance; window: Float32Array } {
  const rng = new Rng(mixSeed(mixSeed(s.seed, p.voiceIndex), p.digit * 1000 + p.repeat));
  const uniform = ([a, b]: [number, number]) => a + (b - a) * rng.random();
  const speed = Math.round(uniform(s.speed)), pitch = Math.round(uniform(s.pitch)), amplitude = Math.round(uniform(s.amplitude));
  const snrDb = Math.round(uniform(s.snrDb) * 10) / 10;
  const wav = synthesize(DIGIT_WORDS[p.digit], p.voice, { speed, pitch, amplitude }, command);
  const audio = parseWav(wav, `espeak-ng -v ${p.voice} ${DIGIT_WORDS[p.digit]}`);
  if (audio.sampleRate !== SAMPLE_RATE) throw new Error(`espeak-ng -v ${p.voice}: sample rate ${audio.sampleRate}, expected ${SAMPLE_RATE}`);
  const [a, b] = trimSilence(audio.samples);
  if (b <= a) throw new Error(`espeak-ng -v ${p.voice} ${DIGIT_WORDS[p.digit]}: the output is silent`);
  const L = windowLength(s), len = b - a;
  const window = new Float32Array(L);
  const offset = len <= L ? rng.int(L - len + 1) : -Math.floor((len - L) / 2);
  let power = 0;
  for (let i = 0; i < len; i++) {
    const j = offset + i;
    const v = audio.samples[a + i];
    power += v * v;
    if (j >= 0 && j < L) window[j] = v;
  }
  // white noise at the drawn SNR relative to the word's power (Box–Muller from the utterance's generator)
  const sigma = Math.sqrt(power / len / 10 ** (snrDb / 10));
  for (let i = 0; i < L; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rng.random())), th = 2 * Math.PI * rng.random();
    window[i] += sigma * r * Math.cos(th);
    if (i + 1 < L) window[i + 1] += sigma * r * Math.sin(th);
  }
  const wavSha256 = crypto.createHash('sha256').update(wav).digest('hex');
  return { u: { digit: p.digit, voice: p.voice, split: p.split, speed, pitch, amplitude, snrDb, offset, length: len, wavSha256 }, window };
}

/** The cache key: a hash of the spec (espeak-ng's version included) and the format version. */
export function spokenDigitsKey(spec: Spec): string {
  return crypto.createHash('sha256').update(JSON.stringify({ v: FORMAT_VERSION, spec })).digest('hex').slice(0, 16);
}

function readCache(file: string, key: string, n: number, per: number): { utterances: Utterance[]; features: Float32Array } | null {
  if (!fs.existsSync(file)) return null;
  const buf = fs.readFileSync(file);
  const bad = (why: string) => new Error(`${file}: ${why}; delete the file to generate the corpus again`);
  if (buf.length < 12 || buf.subarray(0, 8).toString('latin1') !== MAGIC) throw bad(`not a spoken-digit cache (magic ${JSON.stringify(buf.subarray(0, 8).toString('latin1'))})`);
  const hl = buf.readUInt32LE(8);
  const header = JSON.parse(buf.subarray(12, 12 + hl).toString('utf8')) as { key: string; utterances: Utterance[] };
  if (header.key !== key) throw bad(`key ${header.key}, expected ${key}`);
  if (header.utterances.length !== n) throw bad(`${header.utterances.length} utterances, expected ${n}`);
  const body = buf.subarray(12 + hl);
  if (body.length !== n * per * 4) throw bad(`${body.length} bytes of features, expected ${n * per * 4}`);
  const features = new Float32Array(n * per);
  Buffer.from(features.buffer).set(body);
  return { utterances: header.utterances, features };
}

/**
 * The spoken-digit corpus: generated with espeak-ng on first use (about 35 ms per utterance), then read from the
 * cache. Throws naming espeak-ng when it is missing.
 */
export function loadSpokenDigits(o: SpokenDigitsOptions = {}): SpokenDigits {
  const command = o.command ?? 'espeak-ng';
  const log = o.log ?? (() => {});
  const espeak = espeakVersion(command);
  if (!espeak) throw new Error(`spoken digits: ${command} not found; install it with \`apt-get install espeak-ng\``);
  const spec = fill(o, espeak);
  const key = spokenDigitsKey(spec);
  const useCache = o.cache !== false;
  const cacheFile = useCache ? path.join(o.cacheDir ?? path.join(defaultCacheDir(), 'spoken-digits'), `spoken-digits-${key}.bin`) : null;
  const todo = plan(spec);
  const per = spec.mels * spec.frames;
  let cached = cacheFile ? readCache(cacheFile, key, todo.length, per) : null;
  const fromCache = !!cached;
  if (!cached) {
    log(`spoken digits: synthesising ${todo.length} utterances with ${espeak}`);
    const L = windowLength(spec);
    const features = new Float32Array(todo.length * per);
    const utterances: Utterance[] = [];
    const chunk = 128;
    const mel: LogMelOptions = { nFft: spec.nFft, hop: spec.hop, sampleRate: SAMPLE_RATE, mels: spec.mels };
    for (let c = 0; c < todo.length; c += chunk) {
      const part = todo.slice(c, c + chunk).map((p) => render(spec, p, command));
      const signals = new Float32Array(part.length * L);
      part.forEach((r, i) => signals.set(r.window, i * L));
      const f = tidy(() => logMelSpectrogram(tensor(signals, { shape: [part.length, L] }), mel).contiguous().data() as Float32Array);
      features.set(f, c * per);
      utterances.push(...part.map((r) => r.u));
    }
    cached = { utterances, features };
    if (cacheFile) {
      const header = Buffer.from(JSON.stringify({ key, spec, sampleRate: SAMPLE_RATE, utterances }), 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(header.length);
      writeFileAtomic(cacheFile, Buffer.concat([Buffer.from(MAGIC, 'latin1'), len, header, Buffer.from(features.buffer, features.byteOffset, features.byteLength)]));
      log(`spoken digits: cached in ${cacheFile}`);
    }
  }
  const { utterances, features } = cached;
  const nTrain = utterances.filter((u) => u.split === 'train').length;
  // the training split's statistics normalise both splits
  let sum = 0, sq = 0;
  for (let i = 0; i < nTrain * per; i++) { sum += features[i]; sq += features[i] * features[i]; }
  const count = Math.max(1, nTrain * per);
  const mean = sum / count, std = Math.sqrt(Math.max(1e-12, sq / count - mean * mean));
  const split = (from: number, to: number) =>
    tidy(() =>
      noGrad(() => {
        const x = tensor(features.subarray(from * per, to * per), { shape: [to - from, 1, spec.mels, spec.frames] }).sub(mean).div(std);
        const y = tensor(Int32Array.from(utterances.slice(from, to), (u) => u.digit), { dtype: 'int64' });
        return new TensorDataset(x, y);
      }),
    );
  const train = split(0, nTrain), test = split(nTrain, utterances.length);
  const voicesOf = (s: 'train' | 'test') => [...new Set(utterances.filter((u) => u.split === s).map((u) => u.voice))];
  return {
    train, test, trainUtterances: utterances.slice(0, nTrain), testUtterances: utterances.slice(nTrain),
    voices: { train: voicesOf('train'), test: voicesOf('test') }, stats: { mean, std }, spec, cacheFile, fromCache,
    dispose() {
      train.dispose();
      test.dispose();
    },
  };
}
