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
    const name = typeof a === 'string' ? a : fn.name || 'anonymous';
    throw new Error(
      `tidy('${name}'): the callback returned a Promise. Scopes are synchronous: tensors created after an await ` +
        'would escape. Use tidy inside each synchronous step of an async loop instead.',
    );
  }
  // what the callback returns moves to the parent scope: one tensor, or the tensors inside arrays, Maps and objects
  let single: unknown = null;
  let returned: Set<Tensor> | null = null;
  if (result instanceof TensorClassRef) single = result;
  else if (result !== null && typeof result === 'object') {
    returned = new Set();
    collectTensors(result, returned, new Set(), TensorClassRef);
  }
  const parent = scopes.length ? scopes[scopes.length - 1] : null;
  // the scope's tensors are released in one call to the addon
  const dead: Handle[] = [];
  for (const t of mine) {
    if (t._kept) continue;
    if (t === single || (returned !== null && returned.has(t))) {
      if (parent) parent.push(t);
    } else dead.push(t._h);
  }
  if (dead.length !== 0) native.dispose(dead);
  return result;
}

/**
 * Applies `fns` to `x` in turn and returns the last result, releasing each intermediate result as soon as the next
 * function has returned, as C++ frees a temporary at the end of its statement: a layer-by-layer forward pass then
 * reuses warm memory instead of holding every activation until the enclosing scope ends (autograd keeps what the
 * backward pass needs). Only results made by the chain's own functions inside the current scope are released: never
 * `x`, a kept tensor (parameters, buffers), a result returned unchanged, or anything made outside a scope. A function
 * must therefore not hold on to its argument after it returns (take an alias, as `captureFeatures` does).
 */
export function chain<T = Tensor>(x: T, fns: readonly ((v: any) => any)[]): T {
  const scope = scopes.length !== 0 ? scopes[scopes.length - 1] : null;
  let v: any = x;
  let made = false; // v was made by the previous function, in this scope
  for (let i = 0; i < fns.length; i++) {
    const mark = scope !== null ? scope.length : 0;
    const n = fns[i](v);
    if (n === v) continue;
    if (made) (v as Tensor).dispose();
    made = scope !== null && n instanceof TensorClassRef && !(n as Tensor)._kept && madeSince(scope, mark, n as Tensor);
    v = n;
  }
  return v as T;
}

/** Whether `t` entered `scope` at or after index `mark` (made there since, or handed up by a nested scope). */
function madeSince(scope: Tensor[], mark: number, t: Tensor): boolean {
  for (let i = scope.length - 1; i >= mark; i--) if (scope[i] === t) return true;
  return false;
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
