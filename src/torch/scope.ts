// Deterministic release of native tensors: `tidy` scopes, `keep`, `dispose`. The GC finalizer on each handle is
// only a backstop. Scopes are synchronous; a callback that returns a Promise is an error, because tensors created
// after its first `await` would escape the scope.
import { type Handle, native } from './handle';
import type { Tensor } from './tensor';

const scopes: Tensor[][] = [];

/** Records a new tensor in the innermost open scope (called by the Tensor constructor). */
export function track(t: Tensor): void {
  const n = scopes.length;
  if (n !== 0) scopes[n - 1].push(t);
}

/** Number of native tensor handles alive (created and neither disposed nor garbage-collected). */
export function liveTensors(): number {
  return native.liveTensors();
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return !!x && (typeof x === 'object' || typeof x === 'function') && typeof (x as any).then === 'function';
}

function collectTensors(x: unknown, into: Set<Tensor>, seen: Set<unknown>, TensorClass: Function): void {
  if (x === null || typeof x !== 'object' || seen.has(x)) return;
  seen.add(x);
  if (x instanceof TensorClass) {
    into.add(x as Tensor);
    return;
  }
  if (Array.isArray(x)) for (const e of x) collectTensors(e, into, seen, TensorClass);
  else if (x instanceof Map) for (const e of x.values()) collectTensors(e, into, seen, TensorClass);
  else if (Object.getPrototypeOf(x) === Object.prototype) for (const e of Object.values(x)) collectTensors(e, into, seen, TensorClass);
}

let TensorClassRef: Function = Object;
export function setScopeTensorClass(c: Function): void {
  TensorClassRef = c;
}

/**
 * Runs `fn` and disposes every tensor it created, except those it returns (directly, or inside arrays, Maps and
 * plain objects) and those passed to `keep`. Returned tensors move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T;
export function tidy<T>(name: string, fn: () => T): T;
export function tidy<T>(a: string | (() => T), b?: () => T): T {
  const fn = typeof a === 'function' ? a : b!;
  const name = typeof a === 'string' ? a : fn.name || 'anonymous';
  const mine: Tensor[] = [];
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of mine) if (!t._kept) t.dispose();
    throw e;
  }
  scopes.pop();
  if (isThenable(result)) {
    for (const t of mine) if (!t._kept) t.dispose();
    // Swallow the abandoned promise's rejection; the error below is what the caller needs to see.
    (result as PromiseLike<unknown>).then(undefined, () => undefined);
    throw new Error(
      `tidy('${name}'): the callback returned a Promise. Scopes are synchronous: tensors created after an await ` +
        'would escape. Use tidy inside each synchronous step of an async loop instead.',
    );
  }
  let returned: Set<Tensor> | null = null;
  if (result !== null && typeof result === 'object') {
    returned = new Set();
    collectTensors(result, returned, new Set(), TensorClassRef);
  }
  const parent = scopes.length ? scopes[scopes.length - 1] : null;
  // the scope's tensors are released in one call to the addon
  const dead: Handle[] = [];
  for (const t of mine) {
    if (t._kept) continue;
    if (returned !== null && returned.has(t)) {
      if (parent) parent.push(t);
    } else dead.push(t._h);
  }
  if (dead.length !== 0) native.dispose(dead);
  return result;
}

/** Exempts a tensor from every scope: it lives until `dispose()` (or garbage collection). */
export function keep<T extends Tensor>(t: T): T {
  t._kept = true;
  return t;
}

/** Disposes tensors found in `x` (a Tensor, or arrays/Maps/plain objects holding them). */
export function dispose(x: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(x, found, new Set(), TensorClassRef);
  for (const t of found) t.dispose();
}

/**
 * Resolves on the next turn of the event loop. Training loops await it every step so finalizers can run; it also
 * reports the live tensors' bytes to V8 (the garbage collector's backstop for undisposed tensors sees them here).
 */
export function nextTick(): Promise<void> {
  native.syncExternalMemory();
  return new Promise((resolve) => setImmediate(resolve));
}

export function memory(): { liveTensors: number; tensorMB: number; rssMB: number; externalMB: number } {
  const tensorBytes = native.syncExternalMemory();
  const m = process.memoryUsage();
  return { liveTensors: native.liveTensors(), tensorMB: tensorBytes / 2 ** 20, rssMB: m.rss / 2 ** 20, externalMB: m.external / 2 ** 20 };
}
