// The Module contract. A module holds named parameters, buffers and child modules, registered explicitly, so that
// paths and state_dict keys are exactly PyTorch's (`layer1.0.conv1.weight`).
//
// Calling convention: `module.call(...args)` runs `forward(...args)` and then any forward hooks registered on that
// module. Parents call their children with `.call(...)`, so a hook on any submodule path sees its output; calling
// `forward` directly skips the module's own hooks (but not its children's). With no hook set, `call` costs one
// extra function call.
import { DType, DeviceLike, Tensor, isDType, keep, noGrad, ops } from '../torch';
import { native } from '../torch/handle';

export type ForwardHook = (module: Module, inputs: unknown[], output: unknown) => void;

function levenshtein(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

/** The candidates closest to `name` (edit distance), for "did you mean" messages. */
export function closest(name: string, candidates: string[], n = 5): string[] {
  return candidates
    .map((c) => [c, levenshtein(name, c)] as const)
    .sort((x, y) => x[1] - y[1])
    .slice(0, n)
    .map((x) => x[0]);
}

export abstract class Module {
  training = true;
  protected readonly _parameters = new Map<string, Tensor | null>();
  protected readonly _buffers = new Map<string, Tensor | null>();
  protected readonly _nonPersistent = new Set<string>();
  protected readonly _modules = new Map<string, Module>();
  private _hooks: ForwardHook[] | null = null;

  abstract forward(...args: any[]): any;

  /** Runs `forward` and this module's forward hooks. */
  call(...args: any[]): any {
    const out = this.forward(...args);
    const hooks = this._hooks;
    if (hooks !== null) for (let i = 0; i < hooks.length; i++) hooks[i](this, args, out);
    return out;
  }

  // ------------------------------------------------------------------ registration

  /** Registers a parameter (a leaf tensor that requires grad unless frozen). The tensor is exempt from scopes. */
  registerParameter(name: string, t: Tensor | null): Tensor {
    this.checkName(name);
    if (t !== null) {
      keep(t);
      if (!t.requiresGrad) t.requiresGrad_(true);
    }
    this._parameters.set(name, t);
    return t as Tensor;
  }
  /** Registers a buffer (state that is not trained, e.g. BatchNorm running statistics). */
  registerBuffer(name: string, t: Tensor | null, persistent = true): Tensor {
    this.checkName(name);
    if (t !== null) keep(t);
    this._buffers.set(name, t);
    if (!persistent) this._nonPersistent.add(name);
    return t as Tensor;
  }
  /** Registers a child module under `name`; returns it, so fields can be declared as `fc = this.registerModule('fc', new Linear(4, 2))`. */
  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this._modules.set(name, m);
    return m;
  }
  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new Error(`${this.constructor.name}: invalid name '${name}' (must be non-empty without '.')`);
  }

  // ------------------------------------------------------------------ traversal

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this._modules) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }
  *children(): Generator<Module> {
    yield* this._modules.values();
  }
  namedChildren(): [string, Module][] {
    return [...this._modules.entries()];
  }
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [path, m] of this.namedModules())
      for (const [n, p] of m._parameters)
        if (p !== null && !seen.has(p)) {
          seen.add(p);
          out.push([path ? `${path}.${n}` : n, p]);
        }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map((x) => x[1]);
  }
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules())
      for (const [n, b] of m._buffers) if (b !== null) out.push([path ? `${path}.${n}` : n, b]);
    return out;
  }
  buffers(): Tensor[] {
    return this.namedBuffers().map((x) => x[1]);
  }
  /** The submodule at a dotted path (`layer1.0.conv1`); '' is this module. */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let cur: Module = this;
    for (const part of path.split('.')) {
      const next = cur._modules.get(part);
      if (!next) {
        const all = [...this.namedModules()].map((x) => x[0]).filter((x) => x !== '');
        throw new Error(
          `${this.constructor.name} has no submodule '${path}'. Closest paths: ${closest(path, all).join(', ') || '(none)'}`,
        );
      }
      cur = next;
    }
    return cur;
  }
  numParameters(trainableOnly = false): number {
    return this.parameters()
      .filter((p) => !trainableOnly || p.requiresGrad)
      .reduce((a, p) => a + p.numel(), 0);
  }

  // ------------------------------------------------------------------ modes

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Freezes (false) or unfreezes (true) every parameter. */
  requiresGrad_(on = true): this {
    for (const p of this.parameters()) p.requiresGrad_(on);
    return this;
  }
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  // ------------------------------------------------------------------ hooks

  /** Registers `hook` on the submodule at `path` ('' for this module); returns a function that removes it. */
  registerForwardHook(path: string, hook: ForwardHook): () => void {
    const m = this.getSubmodule(path);
    (m._hooks ??= []).push(hook);
    return () => {
      if (!m._hooks) return;
      const i = m._hooks.indexOf(hook);
      if (i >= 0) m._hooks.splice(i, 1);
      if (m._hooks.length === 0) m._hooks = null;
    };
  }
  /** True when forward hooks are registered on this module (layers use it to compute extras only when observed). */
  hasForwardHooks(): boolean {
    return this._hooks !== null;
  }
  /**
   * Runs `fn` and captures the outputs of the submodules at `paths`. A module whose output is an array (e.g.
   * MultiheadAttention returning [output, weights]) is captured as its first element under `path` and the rest as
   * `path#1`, `path#2`. Captured tensors belong to the caller's scope like any tensor created in `fn`.
   */
  captureFeatures<T>(paths: string[], fn: () => T): { result: T; features: Map<string, Tensor> } {
    const features = new Map<string, Tensor>();
    const removers = paths.map((p) =>
      this.registerForwardHook(p, (_m, _in, out) => {
        if (out instanceof Tensor) features.set(p, out);
        else if (Array.isArray(out)) out.forEach((o, i) => { if (o instanceof Tensor) features.set(i === 0 ? p : `${p}#${i}`, o); });
      }),
    );
    try {
      return { result: fn(), features };
    } finally {
      for (const r of removers) r();
    }
  }

  // ------------------------------------------------------------------ state

  /** Parameters and persistent buffers under PyTorch's state_dict keys. The tensors are the module's own (not copies). */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [path, m] of this.namedModules()) {
      const pre = path ? path + '.' : '';
      for (const [n, p] of m._parameters) if (p !== null) out[pre + n] = p;
      for (const [n, b] of m._buffers) if (b !== null && !m._nonPersistent.has(n)) out[pre + n] = b;
    }
    return out;
  }
  /**
   * Copies values into the module's tensors (under no-grad, converting dtype). With `strict` (the default) any
   * missing key, unexpected key or shape mismatch fails the whole load with one error that lists all of them.
   */
  loadStateDict(dict: Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const missing = Object.keys(own).filter((k) => !(k in dict));
    const unexpected = Object.keys(dict).filter((k) => !(k in own));
    const mismatched: string[] = [];
    for (const k of Object.keys(own)) {
      if (!(k in dict)) continue;
      const a = own[k].shape;
      const b = dict[k].shape;
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) mismatched.push(`${k}: expected [${a.join(', ')}], got [${b.join(', ')}]`);
    }
    const problems: string[] = [];
    if (mismatched.length) problems.push(`shape mismatch (${mismatched.length}):\n    ${mismatched.join('\n    ')}`);
    if (strict && missing.length) problems.push(`missing keys (${missing.length}): ${missing.join(', ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
    if (problems.length) throw new Error(`${this.constructor.name}.loadStateDict failed:\n  ${problems.join('\n  ')}`);
    noGrad(() => {
      for (const k of Object.keys(own)) if (k in dict) ops.copy_(own[k], dict[k]);
    });
    return { missing, unexpected };
  }

  /** Converts parameters and buffers in place (same Tensor objects, new storage): `to('float64')`, `to('cuda')`. */
  to(target: DType | DeviceLike): this {
    const spec = isDType(target) ? { dtype: target } : { device: target };
    const convert = (t: Tensor, isParam: boolean) => {
      // integer buffers (num_batches_tracked) keep their dtype
      if (spec.dtype && !['float32', 'float64', 'float16', 'bfloat16'].includes(t.dtype)) return;
      const requires = t.requiresGrad;
      const n = noGrad(() => t.to({ ...spec, copy: true }));
      keep(n);
      native.dispose(t._h);
      t._h = n._h;
      if (isParam && requires) t.requiresGrad_(true);
    };
    for (const [, m] of this.namedModules()) {
      for (const p of m._parameters.values()) if (p) convert(p, true);
      for (const b of m._buffers.values()) if (b) convert(b, false);
    }
    return this;
  }

  /** Frees every parameter and buffer. */
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
      const extra = m.extraRepr();
      lines.push(`${'  '.repeat(depth)}${name ? `(${name}): ` : ''}${m.constructor.name}(${extra})`);
      for (const [n, c] of m._modules) walk(c, n, depth + 1);
    };
    walk(this, '', 0);
    return lines.join('\n');
  }
  extraRepr(): string {
    return '';
  }
}
