// The boundary to the native addon. Loads it once (checking that the libtorch it runs against is the one it was
// built for) and holds the small helpers the generated op wrappers use to pass tensors in and wrap results.
import * as fs from 'fs';
import * as path from 'path';
import type { Tensor } from './tensor';

/** Opaque native tensor handle (an N-API external). */
export type Handle = { readonly __handle: unique symbol };

export interface NativeVersion {
  built: string;
  runtime: string | null;
  config: string;
  cuda: boolean;
  library?: string;
}

export interface Native {
  op(name: string, overload: string): number;
  call(id: number, ...args: unknown[]): any;
  schemas(): any[];
  fromBuffer(view: ArrayBufferView, shape: number[], dtype: string): Handle;
  toBuffer(h: Handle): ArrayBuffer;
  meta(h: Handle): [number[], string, string, boolean];
  shape(h: Handle): number[];
  dtype(h: Handle): string;
  /** Releases one handle, or many in one call. */
  dispose(h: Handle | Handle[]): void;
  isDisposed(h: Handle): boolean;
  liveTensors(): number;
  /** Reports the live tensors' bytes to V8 as external memory (batched; see addon.cc) and returns them. */
  syncExternalMemory(): number;
  setRequiresGrad(h: Handle, on: boolean): void;
  grad(h: Handle): Handle | null;
  setGrad(h: Handle, g: Handle | null): void;
  autogradInfo(h: Handle): [boolean, string | null];
  backward(h: Handle, grad: Handle | null, retainGraph: boolean | undefined, createGraph: boolean, inputs: Handle[] | null): void;
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  manualSeed(seed: number): void;
  setNumThreads(n: number): boolean;
  getNumThreads(): { torch: number; interop: number; openblas: number | null };
  version(): NativeVersion;
  cudaDeviceCount(): number;
  jitLoad(file: string): ScriptHandle;
  jitForward(m: ScriptHandle, inputs: Handle[]): [string, Handle][];
  jitTo(m: ScriptHandle, device: string): void;
  jitInfo(m: ScriptHandle): { schema: string; parameters: number };
  jitDispose(m: ScriptHandle): void;
  /** Starts (true) or stops (false) the op profile; stopping returns [name, calls, total µs, self µs] rows. */
  opProfile(on: boolean): [string, number, number, number][] | undefined;
  /** Whether the addon was built with c10d process groups (Gloo); the dist* functions exist only then. */
  distAvailable?: boolean;
  distInit?(o: { store: 'tcp' | 'file'; host?: string; port?: number; path?: string; rank: number; size: number; timeoutMs: number; iface?: string; bindHost?: string; prefix?: string }): GroupHandle;
  distAllReduce?(g: GroupHandle, ts: Handle[]): void;
  distBroadcast?(g: GroupHandle, ts: Handle[], root: number): void;
  distAllGather?(g: GroupHandle, t: Handle): Handle[];
  distBarrier?(g: GroupHandle): void;
  distStoreSet?(g: GroupHandle, key: string, value: string): void;
  distStoreGet?(g: GroupHandle, key: string): string;
  distDestroy?(g: GroupHandle): void;
  distReducer?(g: GroupHandle, params: Handle[], bucketBytes: number, firstBucketBytes: number, names: string[]): ReducerHandle;
  distReducerPrepare?(r: ReducerHandle, outputs: Handle[]): void;
  distReducerDestroy?(r: ReducerHandle): void;
  distSyncBatchNorm?(g: GroupHandle, x: Handle, w: Handle | null, b: Handle | null, rm: Handle | null, rv: Handle | null, momentum: number, eps: number): Handle;
  /** The interface version of the addon (see NATIVE_ABI). */
  abi?: number;
}

/** Opaque handle to a process group (an N-API external). */
export type GroupHandle = { readonly __group: unique symbol };
/** Opaque handle to a gradient reducer (c10d's Reducer; an N-API external). */
export type ReducerHandle = { readonly __reducer: unique symbol };

/** The addon interface this TypeScript expects (native/addon.cc exports it as `abi`). */
const NATIVE_ABI = 4;

/** Opaque handle to a loaded TorchScript module (an N-API external). */
export type ScriptHandle = { readonly __script: unique symbol };

function findAddon(): string {
  const root = path.resolve(__dirname, '..', '..', '..');
  const candidates = [
    process.env.TSDISTILL_NATIVE,
    path.join(root, 'build', 'Release', 'tsdistill_native.node'),
    path.resolve(__dirname, '..', '..', 'build', 'Release', 'tsdistill_native.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(
      'tsdistill: the native addon is not built. Looked in:\n' +
        candidates.map((c) => '  - ' + c).join('\n') +
        '\nRun `npm install` (it builds the addon with node-gyp). libtorch is found through $LIBTORCH, ' +
        'LIBTORCH_USE_PYTORCH=1, or Debian\'s libtorch-dev (apt-get install libtorch-dev libopenblas0-pthread).',
    );
  }
  return found;
}

function load(): Native {
  const file = findAddon();
  // OpenMP's worker threads spin after every parallel region by default. A training loop in Node runs JavaScript and
  // V8's own threads between ops, so on a small machine the spinning workers take the cores those need: measured on
  // 2 cores, a LeNet KD step ran ~20 % faster with passive waiting (PyTorch in Python gains about as much). libgomp
  // reads the variable when libtorch loads it, so it is set here, unless the user chose a policy.
  if (process.env.OMP_WAIT_POLICY === undefined) process.env.OMP_WAIT_POLICY = 'PASSIVE';
  let mod: Native;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    mod = require(file) as Native;
  } catch (e) {
    throw new Error(
      `tsdistill: could not load the native addon ${file}: ${(e as Error).message}\n` +
        'If libtorch moved or was upgraded, rebuild with `npm rebuild tsdistill` (or `npm install` in this project).',
    );
  }
  if (mod.abi !== NATIVE_ABI)
    throw new Error(
      `tsdistill: the native addon ${file} was built from other sources (interface ${mod.abi ?? 1}, this code needs ${NATIVE_ABI}). ` +
        'Rebuild it: npm rebuild tsdistill (or node native/build.js in this project).',
    );
  const v = mod.version();
  if (v.runtime && v.runtime !== v.built) {
    throw new Error(
      `tsdistill: the native addon was built against libtorch ${v.built} but runs against ${v.runtime} ` +
        `(${v.library ?? 'unknown library'}). Rebuild it: npm rebuild tsdistill`,
    );
  }
  return mod;
}

export const native: Native = load();

/** Operator ids to their schema name and overload (filled as the generated wrappers resolve them). */
const opNames = new Map<number, [string, string]>();

/** Resolves an operator to a cached id; throws listing the overloads when it does not exist. */
export function op(name: string, overload: string): number {
  const id = native.op(name, overload);
  opNames.set(id, [name, overload]);
  return id;
}

/** The schema name and overload of an operator id returned by `op` (`['aten::add', 'Tensor']`). */
export function opName(id: number): [string, string] | undefined {
  return opNames.get(id);
}

let TensorCtor: new (h: Handle) => Tensor;
/** Called once by tensor.ts so that wrappers can build Tensors without an import cycle. */
export function setTensorClass(ctor: new (h: Handle) => Tensor): void {
  TensorCtor = ctor;
}

/** Tensor (or number, or null) to what the addon takes. */
export function h(x: any): any {
  // a non-Tensor object goes through as is, so the addon reports "expected a Tensor, got object" instead of a default
  return x === null || typeof x !== "object" ? x : (x._h ?? x);
}
export function hl(xs: any[] | undefined | null): any {
  if (xs === undefined || xs === null) return xs;
  const out = new Array(xs.length);
  for (let i = 0; i < xs.length; i++) out[i] = h(xs[i]);
  return out;
}
export function wrap(x: Handle | null): Tensor {
  return (x === null ? null : new TensorCtor(x)) as Tensor;
}
export function wrapList(xs: (Handle | null)[]): Tensor[] {
  return xs.map((x) => wrap(x));
}
