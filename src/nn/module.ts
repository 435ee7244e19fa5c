// The Module contract: named parameters, buffers and child modules registered explicitly, so that paths and
// state_dict keys are exactly PyTorch's (`layer1.0.conv1.weight`, `bn1.running_mean`, `bn1.num_batches_tracked`).
//
// Calling convention and forward hooks
// ------------------------------------
// A subclass implements `forward(...)` as an ordinary method. The Module constructor replaces `forward` on each
// instance with a wrapper that runs the subclass's method and then the forward hooks registered on that module, so
// `model.forward(x)` and `model.call(x)` are the same thing (`call` is typed from `forward`'s signature), and a hook
// on any submodule path fires however the parent calls its child. Inside a subclass, `super.forward(...)` reaches the
// parent's plain method (hooks run once, for the outer call). The one way around the wrapper is to assign `forward`
// after construction (for example declaring it as an arrow-function class field); `registerForwardHook` detects this
// and says so.
//
// When a forward throws inside nested modules, the error message is prefixed once with the path of the failing
// submodule, relative to the outermost module being called: `in ResNetCifar at 'layer1.0.conv1' (Conv2d): ...`.
//
// Memory: a hook receives the module's output as the module returned it; if the caller later disposes that tensor
// (a parent's `tidy`, say), a hook that wants to keep it must take its own handle (`ops.alias(out)` and `keep`).
// `captureFeatures` does this for you: captured features stay valid however the model manages its intermediates, and
// belong to the scope that called `captureFeatures`, like the result of `fn`.
import { DType, DeviceLike, Tensor, isDType, isFloatingDType, keep, noGrad, ops } from '../torch';
import { native } from '../torch/handle';
import { track } from '../torch/scope';
import { closest } from '../util/closest';

/** Observes a module's output. Hooks cannot replace the output; the return value is ignored. */
export type ForwardHook = (module: Module, inputs: unknown[], output: any) => void;

export { closest };

const shapeStr = (s: number[]): string => `[${s.join(', ')}]`;
const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

// ---------------------------------------------------------------- forward wrapper

/** Modules whose forward is running, outermost first (used to name the failing submodule in errors). */
const callStack: Module[] = [];
const annotated = new WeakSet<object>();

/**
 * The path, relative to `root`, of the innermost module whose forward is running inside `root`'s forward, with that
 * module; null when `root`'s forward is not running. A module that is called but not registered where it is called
 * appears as `<unregistered Class>`. The ONNX tracer uses it to say which module called each op.
 */
export function runningModule(root: Module): { module: Module; path: string } | null {
  const start = callStack.lastIndexOf(root);
  if (start < 0) return null;
  const parts: string[] = [];
  for (let i = start + 1; i < callStack.length; i++)
    parts.push(nameIn(callStack[i - 1], callStack[i]) ?? `<unregistered ${callStack[i].constructor.name}>`);
  return { module: callStack[callStack.length - 1], path: parts.join('.') };
}

/** The path of `child` under `parent`: a child's name, or a deeper path when a container in between has no forward of its own (a ModuleList). */
function nameIn(parent: Module, child: Module): string | null {
  for (const [n, m] of parent.namedChildren()) if (m === child) return n;
  for (const [p, m] of parent.namedModules()) if (m === child && p !== '') return p;
  return null;
}

function annotate(e: unknown): void {
  if (!(e instanceof Error) || annotated.has(e)) return;
  annotated.add(e);
  if (callStack.length < 2) return; // the module called directly: its own message already applies
  const parts: string[] = [];
  for (let i = 1; i < callStack.length; i++) parts.push(nameIn(callStack[i - 1], callStack[i]) ?? `<unregistered ${callStack[i].constructor.name}>`);
  const leaf = callStack[callStack.length - 1];
  const prefix = `in ${callStack[0].constructor.name} at '${parts.join('.')}' (${leaf.constructor.name}): `;
  const old = e.message;
  e.message = prefix + old;
  if (typeof e.stack === 'string' && old) e.stack = e.stack.replace(old, e.message);
}

const HOOKED = Symbol('tsdistill.hookedForward');

function runForward(m: Module, raw: (...args: any[]) => any, args: any[]): any {
  callStack.push(m);
  try {
    const out = raw.apply(m, args);
    const hooks = m['_forwardHooks'];
    if (hooks !== null) for (const h of hooks.slice()) h(m, args, out);
    return out;
  } catch (e) {
    annotate(e);
    throw e;
  } finally {
    callStack.pop();
  }
}

export interface LoadStateDictResult {
  missing: string[];
  unexpected: string[];
}

export abstract class Module {
  /** Training mode (true) or evaluation mode (false); set with `train()` / `eval()`. */
  training = true;
  private readonly _parameters = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  private readonly _nonPersistent = new Set<string>();
  private readonly _modules = new Map<string, Module>();
  private _forwardHooks: ForwardHook[] | null = null;

  /** The computation. Called as `module.forward(...)` or `module.call(...)`; both run forward hooks. */
  abstract forward(...args: any[]): any;

  constructor() {
    const raw = (this as any).forward as ((...args: any[]) => any) | undefined;
    if (typeof raw === 'function') {
      const self = this;
      const wrapped = function forward(...args: any[]): any {
        return runForward(self, raw, args);
      };
      (wrapped as any)[HOOKED] = true;
      Object.defineProperty(this, 'forward', { value: wrapped, writable: true, configurable: true, enumerable: false });
    }
  }

  /** Runs `forward` (and this module's forward hooks); typed from the subclass's `forward`. */
  call(...args: Parameters<this['forward']>): ReturnType<this['forward']> {
    return this.forward(...args);
  }

  // ------------------------------------------------------------------ registration

  /**
   * Registers a parameter: a leaf tensor, set to require grad (use `requiresGrad_(false)` to freeze). The tensor is
   * exempted from scopes (`keep`) and belongs to the module: `dispose()` frees it. `null` registers an absent
   * parameter (as PyTorch's `register_parameter(name, None)`), which has no state_dict entry.
   */
  registerParameter(name: string, t: Tensor | null): Tensor {
    this.checkName(name, this._parameters, 'parameter');
    if (t !== null) {
      if (!(t instanceof Tensor)) throw new TypeError(`${this.constructor.name}.registerParameter('${name}'): expected a Tensor or null, got ${describe(t)}`);
      if (!t.isLeaf)
        throw new Error(`${this.constructor.name}.registerParameter('${name}'): the tensor has autograd history (grad_fn ${t.gradFn}); register a leaf, e.g. t.detach()`);
      keep(t);
      if (!t.requiresGrad && isFloatingDType(t.dtype)) t.requiresGrad_(true);
    }
    this._parameters.set(name, t);
    return t as Tensor;
  }

  /** Registers a buffer: state that is saved but not trained (BatchNorm running statistics). Exempted from scopes. */
  registerBuffer(name: string, t: Tensor | null, opts: { persistent?: boolean } = {}): Tensor {
    this.checkName(name, this._buffers, 'buffer');
    if (t !== null) {
      if (!(t instanceof Tensor)) throw new TypeError(`${this.constructor.name}.registerBuffer('${name}'): expected a Tensor or null, got ${describe(t)}`);
      keep(t);
    }
    this._buffers.set(name, t);
    if (opts.persistent === false) this._nonPersistent.add(name);
    else this._nonPersistent.delete(name);
    return t as Tensor;
  }

  /** Registers a child module under `name` and returns it: `fc = this.registerModule('fc', new Linear(4, 2))`. */
  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name, this._modules, 'submodule');
    if (!(m instanceof Module)) throw new TypeError(`${this.constructor.name}.registerModule('${name}'): expected a Module, got ${describe(m)}`);
    if ((m as Module) === this || m.namedModules().some(([, d]) => d === this))
      throw new Error(`${this.constructor.name}.registerModule('${name}'): registering ${m.constructor.name} here would make a cycle`);
    this._modules.set(name, m);
    return m;
  }

  private checkName(name: string, own: Map<string, unknown>, kind: string): void {
    if (typeof name !== 'string' || name === '' || name.includes('.'))
      throw new Error(`${this.constructor.name}: invalid ${kind} name ${JSON.stringify(name)} (must be a non-empty string without '.')`);
    const taken: [Map<string, unknown>, string][] = [
      [this._parameters, 'parameter'],
      [this._buffers, 'buffer'],
      [this._modules, 'submodule'],
    ];
    for (const [map, what] of taken)
      if (map !== own && map.has(name)) throw new Error(`${this.constructor.name}: cannot register ${kind} '${name}': a ${what} of that name exists`);
  }

  // ------------------------------------------------------------------ traversal

  /** Direct children with their names, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this._modules.entries()];
  }
  children(): Module[] {
    return [...this._modules.values()];
  }
  /** This module ('') and every descendant with its dotted path, depth first; a shared module is listed once. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, path: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([path, m]);
      for (const [n, c] of m._modules) walk(c, path ? `${path}.${n}` : n);
    };
    walk(this, prefix);
    return out;
  }
  modules(): Module[] {
    return this.namedModules().map((x) => x[1]);
  }
  /** Parameters with their state_dict keys; a tensor shared by several modules is listed once. */
  namedParameters(): [string, Tensor][] {
    return this.collect('_parameters');
  }
  parameters(): Tensor[] {
    return this.namedParameters().map((x) => x[1]);
  }
  /** Buffers (persistent or not) with their keys. */
  namedBuffers(): [string, Tensor][] {
    return this.collect('_buffers');
  }
  buffers(): Tensor[] {
    return this.namedBuffers().map((x) => x[1]);
  }
  private collect(which: '_parameters' | '_buffers'): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [path, m] of this.namedModules())
      for (const [n, t] of m[which])
        if (t !== null && !seen.has(t)) {
          seen.add(t);
          out.push([path ? `${path}.${n}` : n, t]);
        }
    return out;
  }

  /** The submodule at a dotted path (`layer1.0.conv1`); '' is this module. An unknown path lists the closest ones. */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let cur: Module = this;
    for (const part of path.split('.')) {
      const next = cur._modules.get(part);
      if (next === undefined) {
        const all = this.namedModules().map((x) => x[0]).filter((x) => x !== '');
        const near = closest(path, all);
        throw new Error(
          `${this.constructor.name} has no submodule '${path}'. ` +
            (near.length ? `Closest paths: ${near.join(', ')}` : 'It has no submodules.'),
        );
      }
      cur = next;
    }
    return cur;
  }

  /** Number of parameter elements (shared tensors counted once); `trainableOnly` counts those that require grad. */
  numParameters(trainableOnly = false): number {
    let n = 0;
    for (const p of this.parameters()) if (!trainableOnly || p.requiresGrad) n += p.numel();
    return n;
  }

  // ------------------------------------------------------------------ modes

  /** Sets training mode on this module and, through their own `train`, on all children. */
  train(on = true): this {
    this.training = on;
    for (const m of this._modules.values()) m.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Unfreezes (true) or freezes (false) every parameter. */
  requiresGrad_(on = true): this {
    for (const p of this.parameters()) p.requiresGrad_(on);
    return this;
  }
  /** Clears gradients: removes them (default) or, with `setToNone: false`, fills them with zeros. */
  zeroGrad(opts: { setToNone?: boolean } = {}): void {
    for (const p of this.parameters()) {
      if (opts.setToNone ?? true) {
        p.grad = null;
        continue;
      }
      const g = p.grad;
      if (g !== null) {
        noGrad(() => g.zero_());
        g.dispose();
      }
    }
  }

  // ------------------------------------------------------------------ hooks

  /**
   * Registers `hook` on the submodule at `path` ('' for this module); it runs after each forward of that module
   * with (module, inputs, output). Returns a function that removes it (calling it again does nothing).
   */
  registerForwardHook(path: string, hook: ForwardHook): () => void {
    if (typeof hook !== 'function') throw new TypeError(`registerForwardHook('${path}'): the hook must be a function`);
    const m = this.getSubmodule(path);
    const f = (m as any).forward;
    if (typeof f !== 'function' || !f[HOOKED])
      throw new Error(
        `registerForwardHook('${path}'): ${m.constructor.name}.forward was replaced after construction (an arrow-function ` +
          'class field?), so hooks would never run. Declare forward as a method.',
      );
    (m._forwardHooks ??= []).push(hook);
    let removed = false;
    return () => {
      if (removed || m._forwardHooks === null) return;
      removed = true;
      const i = m._forwardHooks.indexOf(hook);
      if (i >= 0) m._forwardHooks.splice(i, 1);
      if (m._forwardHooks.length === 0) m._forwardHooks = null;
    };
  }
  /** True when forward hooks are registered on this module (layers use it to compute extras only when observed). */
  hasForwardHooks(): boolean {
    return this._forwardHooks !== null;
  }

  /**
   * Runs `fn` and captures the outputs of the submodules at `paths` (the last output when a module runs several
   * times). An output that is an array (MultiheadAttention returns [output, weights]) is captured element by element:
   * the first under `path`, the others under `path#1`, `path#2`, ... (null elements are skipped). Each captured tensor
   * is a new handle (an alias, so gradients flow through it) that belongs to the scope calling `captureFeatures`, like
   * `result`. A path whose module produced no output is an error unless `allowMissing`.
   */
  captureFeatures<T>(paths: string[], fn: () => T, opts: { allowMissing?: boolean } = {}): { result: T; features: Map<string, Tensor> } {
    const features = new Map<string, Tensor>();
    const fired = new Set<string>();
    const put = (key: string, t: Tensor) => {
      const prev = features.get(key);
      if (prev !== undefined) prev.dispose();
      features.set(key, keep(ops.alias(t)));
    };
    const removers: (() => void)[] = [];
    let ok = false;
    try {
      for (const p of new Set(paths))
        removers.push(
          this.registerForwardHook(p, (_m, _in, out) => {
            fired.add(p);
            if (out instanceof Tensor) put(p, out);
            else if (Array.isArray(out)) out.forEach((o, i) => { if (o instanceof Tensor) put(i === 0 ? p : `${p}#${i}`, o); });
          }),
        );
      const result = fn();
      const missing = paths.filter((p) => !fired.has(p));
      if (missing.length && !opts.allowMissing) {
        const names = missing.map((p) => `'${p}' (${this.getSubmodule(p).constructor.name})`);
        throw new Error(`captureFeatures: ${names.join(', ')} produced no output while fn ran; is it called by the forward pass?`);
      }
      ok = true;
      return { result, features };
    } finally {
      for (const r of removers) r();
      for (const t of features.values()) {
        if (ok) {
          t._kept = false;
          track(t);
        } else t.dispose();
      }
    }
  }

  // ------------------------------------------------------------------ state

  /**
   * Parameters and persistent buffers under PyTorch's state_dict keys, in PyTorch's order. The tensors are the
   * module's own (not copies): do not dispose them. A tensor shared by several modules appears under each key.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    const walk = (m: Module, pre: string) => {
      for (const [n, p] of m._parameters) if (p !== null) out[pre + n] = p;
      for (const [n, b] of m._buffers) if (b !== null && !m._nonPersistent.has(n)) out[pre + n] = b;
      for (const [n, c] of m._modules) walk(c, `${pre}${n}.`);
    };
    walk(this, '');
    return out;
  }

  /**
   * Copies values into the module's own tensors (under no-grad, converting dtype and device; parameters stay the
   * same leaf objects). Any shape mismatch, and with `strict` (the default) any missing or unexpected key, fails the
   * whole load before anything is copied, with one error listing every problem.
   */
  loadStateDict(dict: Record<string, Tensor> | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadStateDictResult {
    const strict = opts.strict ?? true;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const own = this.stateDict();
    const ownKeys = Object.keys(own);
    const missing = ownKeys.filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !Object.prototype.hasOwnProperty.call(own, k));
    const mismatched: string[] = [];
    const invalid: string[] = [];
    for (const k of ownKeys) {
      if (!entries.has(k)) continue;
      const v = entries.get(k);
      if (!(v instanceof Tensor)) invalid.push(`${k}: expected a Tensor, got ${describe(v)}`);
      else if (v.isDisposed) invalid.push(`${k}: the tensor was disposed`);
      else if (!sameShape(own[k].shape, v.shape)) mismatched.push(`${k}: expected ${shapeStr(own[k].shape)}, got ${shapeStr(v.shape)}`);
    }
    const problems: string[] = [];
    if (strict && missing.length) problems.push(`missing keys (${missing.length}): ${missing.join(', ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
    if (mismatched.length) problems.push(`shape mismatches (${mismatched.length}):\n    ${mismatched.join('\n    ')}`);
    if (invalid.length) problems.push(`invalid values (${invalid.length}):\n    ${invalid.join('\n    ')}`);
    if (problems.length) throw new Error(`${this.constructor.name}.loadStateDict: nothing was loaded:\n  ${problems.join('\n  ')}`);
    noGrad(() => {
      for (const k of ownKeys) if (entries.has(k)) ops.copy_(own[k], entries.get(k)!);
    });
    return { missing, unexpected };
  }

  /**
   * Converts floating-point parameters and buffers to `dtype`, or all of them to `device`, in place: the Tensor
   * objects stay the same (so optimizers holding them keep working), parameters stay leaves with their requiresGrad,
   * and existing gradients are converted too. Integer buffers (num_batches_tracked) keep their dtype.
   */
  to(target: DType | DeviceLike | { dtype?: DType; device?: DeviceLike }): this {
    const spec = typeof target === 'string' ? (isDType(target) ? { dtype: target } : { device: target }) : target;
    if (spec.dtype !== undefined && !isFloatingDType(spec.dtype))
      throw new Error(`${this.constructor.name}.to: modules convert to floating-point dtypes only, got ${spec.dtype}`);
    const convertOne = (t: Tensor): Tensor => {
      const dtype = spec.dtype !== undefined && isFloatingDType(t.dtype) ? spec.dtype : t.dtype;
      return spec.device !== undefined ? t.to({ device: spec.device, dtype }) : t.to({ dtype });
    };
    const swap = (t: Tensor) => {
      if (spec.device === undefined && (spec.dtype === t.dtype || !isFloatingDType(t.dtype))) return;
      const requires = t.requiresGrad;
      const n = keep(noGrad(() => convertOne(t)));
      const g = t.grad;
      native.dispose(t._h);
      t._h = n._h;
      if (requires !== t.requiresGrad) t.requiresGrad_(requires);
      if (g !== null) {
        const ng = noGrad(() => convertOne(g));
        t.grad = ng;
        ng.dispose();
        g.dispose();
      }
    };
    const done = new Set<Tensor>();
    for (const [, m] of this.namedModules())
      for (const t of [...m._parameters.values(), ...m._buffers.values()])
        if (t !== null && !done.has(t)) {
          done.add(t);
          swap(t);
        }
    return this;
  }

  /** Frees every parameter and buffer of this module and its descendants. The module is unusable afterwards. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const p of m._parameters.values()) p?.dispose();
      for (const b of m._buffers.values()) b?.dispose();
    }
  }

  /** A one-line-per-module summary like PyTorch's repr. */
  toString(): string {
    const lines: string[] = [];
    const walk = (m: Module, name: string, depth: number) => {
      lines.push(`${'  '.repeat(depth)}${name ? `(${name}): ` : ''}${m.constructor.name}(${m.extraRepr()})`);
      for (const [n, c] of m._modules) walk(c, n, depth + 1);
    };
    walk(this, '', 0);
    return lines.join('\n');
  }
  /** The constructor arguments shown by `toString()`. */
  extraRepr(): string {
    return '';
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'object'}`;
  return typeof v;
}
