// Autograd mode, RNG, threads, devices and version.
import { native } from './handle';
import { LIBTORCH_VERSION } from './ops.generated';

/** Runs `fn` with gradient recording off (like `torch.no_grad()`), restoring the previous mode after. */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}
/** Runs `fn` with gradient recording on, restoring the previous mode after. */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}
/** Sets the global grad mode; returns the previous one. */
export function setGradEnabled(on: boolean): boolean {
  return native.setGradEnabled(on);
}

/** Seeds libtorch's default generators (CPU and CUDA). Data loaders take their own seed derived from the run's. */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`manualSeed: expected a non-negative integer, got ${seed}`);
  native.manualSeed(seed);
}

/** Sets intra-op threads for libtorch and for its BLAS (OpenBLAS ignores libtorch's setting on its own). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`setNumThreads: expected a positive integer, got ${n}`);
  native.setNumThreads(n);
}
export function getNumThreads(): { torch: number; interop: number; openblas: number | null } {
  return native.getNumThreads();
}

export const cuda = {
  isAvailable(): boolean {
    return native.version().cuda && native.cudaDeviceCount() > 0;
  },
  deviceCount(): number {
    return native.cudaDeviceCount();
  },
};

export function version(): { tsdistill: string; libtorch: string; built: string; generatedFrom: string; cuda: boolean; library?: string } {
  const v = native.version();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const pkg = require('../../../package.json');
  return { tsdistill: pkg.version, libtorch: v.runtime ?? v.built, built: v.built, generatedFrom: LIBTORCH_VERSION, cuda: v.cuda, library: v.library };
}

/** `device` when usable: 'cpu', or 'cuda[:N]' when this libtorch build has CUDA and a GPU is visible (an error naming `what` and saying what to do otherwise). */
export function checkDevice(device: string, what = 'device'): string {
  if (device === 'cpu') return device;
  if (device === 'cuda' || device.startsWith('cuda:')) {
    if (!cuda.isAvailable())
      throw new Error(
        `${what} '${device}': ${version().cuda ? 'no GPU is visible to this CUDA build of libtorch' : 'the addon is built against a CPU-only libtorch'}; ` +
          'build it against a CUDA libtorch (LIBTORCH=/path or LIBTORCH_USE_PYTORCH=1, then npm rebuild) or use --device cpu',
      );
    return device;
  }
  throw new Error(`${what} '${device}': expected cpu, cuda or cuda:N`);
}

/** One row of an op profile: calls of an operator (aten::addmm) or autograd node (AddmmBackward0) and their time. */
export interface OpStat {
  name: string;
  calls: number;
  /** Microseconds from entry to exit, summed over calls. */
  totalUs: number;
  /** totalUs less the recorded calls nested inside (on the same thread). */
  selfUs: number;
}

/**
 * Starts recording every libtorch operator call and autograd node, on every thread, through the RecordFunction hooks
 * that PyTorch's profiler uses (so counts compare with `torch.autograd.profiler.profile`). A diagnostic: each recorded
 * call costs about a microsecond more while it is on. `stopOpProfile` ends it.
 */
export function startOpProfile(): void {
  native.opProfile(true);
}
/** Stops the op profile and returns its rows, most self time first. */
export function stopOpProfile(): OpStat[] {
  const rows = native.opProfile(false) ?? [];
  return rows.map(([name, calls, totalUs, selfUs]) => ({ name, calls, totalUs, selfUs })).sort((a, b) => b.selfUs - a.selfUs);
}
