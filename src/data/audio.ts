// Audio helpers: a RIFF/WAVE reader for 16-bit PCM, and spectrograms computed with libtorch's `stft`.
//
// WAV: the RIFF header, the `fmt ` chunk (format 1 = PCM, or 0xFFFE = WAVE_FORMAT_EXTENSIBLE whose sub-format is PCM),
// then the `data` chunk. Writers that stream to a pipe cannot know the length in advance and put a placeholder size
// in the RIFF and data headers (espeak-ng --stdout writes 0x7FFFF024 and 0x7FFFF000); a data chunk that claims more
// bytes than the buffer holds is read to the end of the buffer.
//
// Spectrograms: frames of `nFft` samples every `hop` samples, a periodic Hann window, no centring (frame t starts at
// sample t·hop), magnitude |X[k]| of the one-sided DFT (k = 0 .. nFft/2); log-mel features multiply the power |X|²
// by a triangular mel filter bank (HTK mel scale) and take log(· + floor).
import { Tensor, noGrad, ops, tensor, tidy } from '../torch';

export interface WavAudio {
  sampleRate: number;
  /** Channels interleaved in the file; `samples` holds the first (mono files: the only) channel. */
  channels: number;
  /** Samples of the first channel scaled to [-1, 1) (int16 / 32768). */
  samples: Float32Array;
}

/** Parses a 16-bit PCM WAV file's bytes; `name` (a file or command) is named in the errors. */
export function parseWav(buf: Uint8Array, name = 'WAV data'): WavAudio {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const tag = (at: number) => String.fromCharCode(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
  if (buf.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE')
    throw new Error(`${name}: not a RIFF/WAVE file (${buf.length < 12 ? `${buf.length} bytes` : `starts with '${tag(0)}', form '${tag(8)}'`})`);
  let fmt: { format: number; channels: number; rate: number; bits: number; align: number } | null = null;
  let at = 12;
  while (at + 8 <= buf.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > buf.length) throw new Error(`${name}: the 'fmt ' chunk at byte ${at} is ${size} bytes, needs at least 16`);
      let format = view.getUint16(body, true);
      // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the format code
      if (format === 0xfffe && size >= 40 && body + 26 <= buf.length) format = view.getUint16(body + 24, true);
      fmt = { format, channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), align: view.getUint16(body + 12, true), bits: view.getUint16(body + 14, true) };
    } else if (id === 'data') {
      if (!fmt) throw new Error(`${name}: the 'data' chunk at byte ${at} comes before any 'fmt ' chunk`);
      if (fmt.format !== 1) throw new Error(`${name}: audio format ${fmt.format} is not PCM (1); only 16-bit PCM is read`);
      if (fmt.bits !== 16) throw new Error(`${name}: ${fmt.bits}-bit samples; only 16-bit PCM is read`);
      if (fmt.channels < 1 || fmt.align !== 2 * fmt.channels) throw new Error(`${name}: ${fmt.channels} channel(s) with block align ${fmt.align} (expected ${2 * fmt.channels})`);
      if (!(fmt.rate > 0)) throw new Error(`${name}: sample rate ${fmt.rate}`);
      // a streamed file's placeholder size: read to the end of the buffer
      const bytes = Math.min(size, buf.length - body);
      const n = Math.floor(bytes / fmt.align);
      const samples = new Float32Array(n);
      for (let i = 0; i < n; i++) samples[i] = view.getInt16(body + i * fmt.align, true) / 32768;
      return { sampleRate: fmt.rate, channels: fmt.channels, samples };
    }
    at = body + size + (size & 1); // chunks are padded to even sizes
  }
  throw new Error(`${name}: no 'data' chunk${fmt ? '' : " (and no 'fmt ' chunk)"} in ${buf.length} bytes`);
}

/** A mono 16-bit PCM WAV file holding `samples` (clipped to [-1, 1]), for tests and tools. */
export function encodeWav(samples: ArrayLike<number>, sampleRate: number): Uint8Array {
  const n = samples.length;
  const buf = new Uint8Array(44 + 2 * n);
  const v = new DataView(buf.buffer);
  const put = (at: number, s: string) => { for (let i = 0; i < 4; i++) buf[at + i] = s.charCodeAt(i); };
  put(0, 'RIFF'); v.setUint32(4, 36 + 2 * n, true); put(8, 'WAVE');
  put(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, 2 * sampleRate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  put(36, 'data'); v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) v.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768))), true);
  return buf;
}

export interface SpectrogramOptions {
  /** Samples per frame (the DFT size). */
  nFft: number;
  /** Samples between frame starts. */
  hop: number;
}

/** Frames of a signal of `length` samples: 1 + ⌊(length − nFft) / hop⌋. */
export function frameCount(length: number, o: SpectrogramOptions): number {
  if (length < o.nFft) throw new Error(`spectrogram: ${length} samples are fewer than one frame of nFft = ${o.nFft}`);
  return 1 + Math.floor((length - o.nFft) / o.hop);
}

/**
 * Magnitude spectrogram of signals [B, L] (float32): [B, nFft/2 + 1, frames], |Σ_n x[t·hop + n] w[n] e^{−2πikn/nFft}|
 * with w the periodic Hann window, through libtorch's `stft` (no centring, no normalisation).
 */
export function magnitudeSpectrogram(signals: Tensor, o: SpectrogramOptions): Tensor {
  if (signals.ndim !== 2) throw new Error(`magnitudeSpectrogram: signals must be [B, L], got [${signals.shape}]`);
  if (!Number.isInteger(o.nFft) || o.nFft < 2 || !Number.isInteger(o.hop) || o.hop < 1) throw new Error(`magnitudeSpectrogram: nFft ${o.nFft} and hop ${o.hop} must be positive integers (nFft >= 2)`);
  frameCount(signals.shape[1], o);
  return tidy(() =>
    noGrad(() => {
      const window = ops.hann_window_periodic(o.nFft, true, { dtype: 'float32', device: signals.device });
      const spec = ops.stft_center(signals.float(), o.nFft, o.hop, o.nFft, window, false, 'reflect', false, true, true);
      return ops.abs(spec);
    }),
  );
}

/** Hz → mel and back (HTK: 2595 · log10(1 + f / 700)). */
export const hzToMel = (f: number) => 2595 * Math.log10(1 + f / 700);
export const melToHz = (m: number) => 700 * (10 ** (m / 2595) - 1);

/**
 * A triangular mel filter bank [mels, nFft/2 + 1]: filter m rises from mel point m to m+1 and falls to m+2, the
 * `mels + 2` points evenly spaced in mel between `fMin` and `fMax` (default: the Nyquist frequency); unnormalised
 * (each filter's peak is 1), as torchaudio's `melscale_fbanks(norm=None, mel_scale='htk')`.
 */
export function melFilterBank(o: { nFft: number; sampleRate: number; mels: number; fMin?: number; fMax?: number }): Float32Array {
  const bins = Math.floor(o.nFft / 2) + 1;
  const fMin = o.fMin ?? 0, fMax = o.fMax ?? o.sampleRate / 2;
  if (!(fMax > fMin && fMin >= 0)) throw new Error(`melFilterBank: need 0 <= fMin < fMax, got ${fMin}, ${fMax}`);
  if (!Number.isInteger(o.mels) || o.mels < 1) throw new Error(`melFilterBank: mels must be a positive integer, got ${o.mels}`);
  const lo = hzToMel(fMin), hi = hzToMel(fMax);
  const pts = Array.from({ length: o.mels + 2 }, (_, i) => melToHz(lo + ((hi - lo) * i) / (o.mels + 1)));
  const fb = new Float32Array(o.mels * bins);
  for (let m = 0; m < o.mels; m++) {
    const [a, b, c] = [pts[m], pts[m + 1], pts[m + 2]];
    for (let k = 0; k < bins; k++) {
      const f = (k * o.sampleRate) / o.nFft;
      const w = Math.max(0, Math.min((f - a) / (b - a), (c - f) / (c - b)));
      fb[m * bins + k] = w;
    }
  }
  return fb;
}

export interface LogMelOptions extends SpectrogramOptions {
  sampleRate: number;
  mels: number;
  fMin?: number;
  fMax?: number;
  /** Added to the mel power before the log (default 1e-6). */
  floor?: number;
}

/** Log-mel spectrogram of signals [B, L]: [B, mels, frames], log(fb · |X|² + floor). */
export function logMelSpectrogram(signals: Tensor, o: LogMelOptions): Tensor {
  const bins = Math.floor(o.nFft / 2) + 1;
  return tidy(() =>
    noGrad(() => {
      const power = magnitudeSpectrogram(signals, o).pow(2); // [B, bins, T]
      const fb = tensor(melFilterBank(o), { shape: [o.mels, bins], device: signals.device });
      return fb.matmul(power).add(o.floor ?? 1e-6).log();
    }),
  );
}
