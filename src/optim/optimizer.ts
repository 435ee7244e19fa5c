// Optimizer base: parameter groups with their own options, per-parameter state, and a state dict that can be saved
// as a safetensors file (the tensors) plus JSON (everything else). Updates run under no-grad inside a tidy scope
// with libtorch's multi-tensor `_foreach_` kernels, so the JavaScript work per step is one pass over the parameters
// to collect their gradients.
import { Tensor, enableGrad, isFloatingDType, keep, noGrad, ops, tidy } from '../torch';

/** A parameter group as given to a constructor: its tensors and any options that differ from the defaults. */
export type ParamGroupInput<O> = { params: Iterable<Tensor> } & Partial<O>;
/** Parameters (one group with the default options) or parameter groups, as in PyTorch. */
export type ParamsArg<O> = Iterable<Tensor> | ParamGroupInput<O>[];

export interface ParamGroup<O> {
  readonly params: Tensor[];
  /** The group's options (mutable: schedulers write `options.lr`). */
  options: O;
  /** The learning rate before any scheduler changed it (PyTorch's `initial_lr`); set by the first scheduler. */
  initialLr?: number;
}

/** Tensor and scalar state of one parameter. */
export interface ParamState {
  tensors: Record<string, Tensor>;
  scalars: Record<string, number>;
}

/** JSON part of a state dict. */
export interface OptimizerMeta {
  /** The optimizer class that saved it (`SGD`, `Adam`, `AdamW`). */
  type: string;
  /** Options of each group, with `params`: the indices of its parameters (counting over all groups in order). */
  param_groups: ({ params: number[]; initial_lr?: number } & Record<string, unknown>)[];
  /** Scalar state per parameter index, e.g. `{ "0": { "step": 3 } }` (PyTorch's `state.0.step`). */
  state: Record<string, Record<string, number>>;
}

/**
 * An optimizer's state: `tensors` holds `state.<index>.<name>` (`momentum_buffer`, `exp_avg`, `exp_avg_sq`,
 * `max_exp_avg_sq`), ready for `saveSafetensors`; `meta` is JSON-serialisable. The tensors returned by
 * `stateDict()` are the optimizer's own: do not dispose them, and clone them to keep a snapshot across steps.
 */
export interface OptimizerStateDict {
  tensors: Record<string, Tensor>;
  meta: OptimizerMeta;
}
/** @deprecated name kept for existing callers; use OptimizerStateDict. */
export type OptimizerState = OptimizerStateDict;

const STATE_KEY = /^state\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)$/;

function describeValue(v: unknown): string {
  return Array.isArray(v) ? `[${v.join(', ')}]` : JSON.stringify(v);
}

export abstract class Optimizer<O extends { lr: number }> {
  readonly paramGroups: ParamGroup<O>[] = [];
  /** Per-parameter state, created at a parameter's first update. */
  protected readonly state = new Map<Tensor, ParamState>();
  private readonly defaults: O;
  private readonly optionNames: readonly string[];
  /** typeof each option's built-in default ('number', 'boolean', 'object'; 'undefined' when it has none) */
  private readonly optionTypes: Record<string, string>;

  /**
   * @param params parameters or parameter groups
   * @param builtin the optimizer's own defaults (an option without one, e.g. SGD's lr, is `undefined`)
   * @param opts the caller's options, which override `builtin` for every group that does not set its own
   * @param optionNames every option the optimizer accepts (anything else is an error that names it)
   */
  protected constructor(params: ParamsArg<O>, builtin: O, opts: Partial<O>, optionNames: readonly string[]) {
    this.optionNames = optionNames;
    this.optionTypes = Object.fromEntries(optionNames.map((k) => [k, typeof (builtin as Record<string, unknown>)[k]]));
    this.checkOptionNames(opts, 'options');
    const defaults = { ...builtin } as O;
    for (const [k, v] of Object.entries(opts)) if (v !== undefined) (defaults as Record<string, unknown>)[k] = v;
    this.defaults = defaults;
    const list = Array.from(params as Iterable<Tensor | ParamGroupInput<O>>);
    if (list.length === 0) throw new Error(`${this.constructor.name}: got an empty parameter list`);
    if (list.every((x) => x instanceof Tensor)) this.addParamGroup({ params: list as Tensor[] } as unknown as ParamGroupInput<O>);
    else if (list.every((x) => !(x instanceof Tensor) && typeof x === 'object' && x !== null && 'params' in x))
      for (const g of list as ParamGroupInput<O>[]) this.addParamGroup(g);
    else
      throw new Error(`${this.constructor.name}: expected an array of tensors or an array of { params, ...options } groups, not a mix`);
  }

  /** Adds a group of parameters with its own options (unset ones take the constructor's). */
  addParamGroup(group: ParamGroupInput<O>): void {
    const name = this.constructor.name;
    const gi = this.paramGroups.length;
    const { params, ...rest } = group;
    if (params instanceof Tensor)
      throw new Error(`${name}: group ${gi}: 'params' must be an array of tensors, not a single tensor`);
    this.checkOptionNames(rest, `group ${gi}`);
    const ps = Array.from(params);
    const seen = new Set<Tensor>(this.paramGroups.flatMap((g) => g.params));
    ps.forEach((p, j) => {
      const where = `parameter ${j} of group ${gi}`;
      if (!(p instanceof Tensor)) throw new Error(`${name}: ${where} is not a Tensor (got ${typeof p})`);
      if (p.isDisposed) throw new Error(`${name}: ${where} is disposed`);
      if (!p.isLeaf)
        throw new Error(`${name}: ${where} (shape [${p.shape.join(', ')}]) is not a leaf tensor and cannot be optimized; ` +
          'create parameters as leaves (convert them with .to() under noGrad)');
      if (seen.has(p)) throw new Error(`${name}: ${where} (shape [${p.shape.join(', ')}]) appears more than once among the parameters`);
      seen.add(p);
    });
    const options = { ...this.defaults } as O;
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) (options as Record<string, unknown>)[k] = v;
    this.validateOptions(options, `group ${gi}`);
    this.paramGroups.push({ params: ps, options });
  }

  private checkOptionNames(o: object, where: string): void {
    for (const k of Object.keys(o))
      if (!this.optionNames.includes(k))
        throw new Error(`${this.constructor.name}: ${where}: unknown option '${k}' (known: ${this.optionNames.join(', ')})`);
  }

  /** Checks a group's options; subclasses extend it. Throws naming the option and `where`. */
  protected validateOptions(o: O, where: string): void {
    const name = this.constructor.name;
    if (typeof o.lr !== 'number' || !(o.lr >= 0) || !Number.isFinite(o.lr))
      throw new Error(`${name}: ${where}: invalid learning rate ${describeValue(o.lr)} (expected a finite number >= 0)`);
    for (const k of this.optionNames) {
      const d = this.optionTypes[k];
      const v = (o as Record<string, unknown>)[k];
      if (d === 'boolean' && typeof v !== 'boolean') throw new Error(`${name}: ${where}: option '${k}' must be true or false, got ${describeValue(v)}`);
      if (d === 'number' && (typeof v !== 'number' || Number.isNaN(v))) throw new Error(`${name}: ${where}: option '${k}' must be a number, got ${describeValue(v)}`);
    }
  }

  /** The state names each parameter has once updated under options `o` (all or none of them are present). */
  protected abstract stateNames(o: O): { tensors: string[]; scalars: string[] };

  /**
   * Updates `params` given their gradients (same order; only parameters that have one). Runs under no-grad inside
   * a tidy scope: temporaries are freed on return; state tensors must be registered with `initState`.
   */
  protected abstract update(params: Tensor[], grads: Tensor[], o: O): void;

  /** Clears the gradients: to null (default, like `set_to_none=True`), or to zeros in place. */
  zeroGrad(opts: { setToNone?: boolean } = {}): void {
    const none = opts.setToNone ?? true;
    if (none) {
      for (const g of this.paramGroups) for (const p of g.params) p.grad = null;
      return;
    }
    tidy(() =>
      noGrad(() => {
        const grads: Tensor[] = [];
        for (const g of this.paramGroups)
          for (const p of g.params) {
            const gr = p.grad;
            if (gr === null) continue;
            if (gr.gradFn !== null) gr.detach_();
            else if (gr.requiresGrad) gr.requiresGrad = false;
            grads.push(gr);
          }
        if (grads.length) ops._foreach_zero_(grads);
      }),
    );
  }

  /**
   * One update of every parameter that has a gradient (parameters without one are skipped, as in PyTorch).
   * With `closure`, it is run first with gradients enabled and its result is returned.
   */
  step(closure?: () => number): number | undefined {
    const loss = closure ? enableGrad(closure) : undefined;
    noGrad(() => {
      for (const g of this.paramGroups) {
        tidy(() => {
          const params: Tensor[] = [];
          const grads: Tensor[] = [];
          for (const p of g.params) {
            const gr = p.grad;
            if (gr === null) continue;
            params.push(p);
            grads.push(gr);
          }
          if (params.length !== 0) this.update(params, grads, g.options);
        });
      }
    });
    return loss;
  }

  /** The state of `p`, or undefined before its first update. */
  protected stateOf(p: Tensor): ParamState | undefined {
    return this.state.get(p);
  }
  /** Registers `t` (created inside `update`) as state `name` of `p`; it lives until the optimizer is disposed. */
  protected initState(p: Tensor, name: string, t: Tensor): Tensor {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = { tensors: {}, scalars: {} }));
    s.tensors[name]?.dispose();
    s.tensors[name] = keep(t);
    return t;
  }
  /** The scalar-state record of `p`, created empty when missing. */
  protected scalarsOf(p: Tensor): Record<string, number> {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = { tensors: {}, scalars: {} }));
    return s.scalars;
  }

  /** All parameters, in the order state dicts number them. */
  params(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** The state as tensors (`state.<i>.<name>`, the optimizer's own, not copies) and JSON metadata. */
  stateDict(): OptimizerStateDict {
    const tensors: Record<string, Tensor> = {};
    const state: Record<string, Record<string, number>> = {};
    let idx = 0;
    const param_groups = this.paramGroups.map((g) => {
      const indices: number[] = [];
      for (const p of g.params) {
        const i = idx++;
        indices.push(i);
        const s = this.state.get(p);
        if (!s) continue;
        for (const [k, t] of Object.entries(s.tensors)) tensors[`state.${i}.${k}`] = t;
        if (Object.keys(s.scalars).length) state[i] = { ...s.scalars };
      }
      const opts: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(g.options)) opts[k] = Array.isArray(v) ? [...v] : v;
      return { ...opts, ...(g.initialLr !== undefined ? { initial_lr: g.initialLr } : {}), params: indices };
    });
    return { tensors, meta: { type: this.constructor.name, param_groups, state } };
  }

  /**
   * Restores a state saved by `stateDict()` (possibly through a safetensors file and JSON) into an optimizer over
   * parameters of the same shapes, grouped the same way. Group options come from the saved state, as in PyTorch.
   * State tensors are copied (cast to each parameter's dtype and device), so the caller keeps ownership of `sd`.
   * Everything is checked before anything changes; the error lists every problem found.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const name = this.constructor.name;
    const fail = (problems: string[]): never => {
      throw new Error(`${name}.loadStateDict: the saved state does not fit this optimizer:\n  ${problems.join('\n  ')}`);
    };
    if (!sd || typeof sd !== 'object' || !sd.meta || typeof sd.meta !== 'object' || !sd.tensors || typeof sd.tensors !== 'object')
      fail(['expected { tensors, meta } as returned by stateDict()']);
    const { meta } = sd;
    if (meta.type !== name) fail([`the state was saved by ${String(meta.type)}, this optimizer is ${name}`]);
    if (!Array.isArray(meta.param_groups)) fail(['meta.param_groups is missing']);
    if (meta.param_groups.length !== this.paramGroups.length)
      fail([`${meta.param_groups.length} parameter groups saved, the optimizer has ${this.paramGroups.length}`]);

    const problems: string[] = [];
    const idMap = new Map<number, Tensor>();
    const newOptions: O[] = [];
    meta.param_groups.forEach((saved, gi) => {
      const own = this.paramGroups[gi];
      const ids = saved.params;
      if (!Array.isArray(ids)) { problems.push(`group ${gi}: 'params' is missing`); return; }
      if (ids.length !== own.params.length) problems.push(`group ${gi}: ${ids.length} parameters saved, the optimizer has ${own.params.length}`);
      else ids.forEach((id, j) => idMap.set(id, own.params[j]));
      const opts = { ...own.options } as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved)) {
        if (k === 'params' || k === 'initial_lr') continue;
        if (!this.optionNames.includes(k)) { problems.push(`group ${gi}: unknown option '${k}' (known: ${this.optionNames.join(', ')})`); continue; }
        opts[k] = Array.isArray(v) ? [...v] : v;
      }
      if (saved.initial_lr !== undefined && typeof saved.initial_lr !== 'number') problems.push(`group ${gi}: initial_lr must be a number`);
      try {
        this.validateOptions(opts as O, `group ${gi}`);
      } catch (e) {
        problems.push((e as Error).message.replace(`${name}: `, ''));
      }
      newOptions.push(opts as O);
    });
    if (problems.length) fail(problems);

    // per-parameter state: tensors from sd.tensors, scalars from meta.state
    const loaded = new Map<Tensor, ParamState>();
    const owner = new Map<Tensor, number>();
    const slot = (id: number, key: string): ParamState | null => {
      const p = idMap.get(id);
      if (!p) { problems.push(`'${key}' refers to parameter ${id}, which no group lists (${idMap.size} parameters)`); return null; }
      let s = loaded.get(p);
      if (!s) { loaded.set(p, (s = { tensors: {}, scalars: {} })); owner.set(p, id); }
      return s;
    };
    const groupOf = new Map<Tensor, number>();
    this.paramGroups.forEach((g, gi) => g.params.forEach((p) => groupOf.set(p, gi)));
    for (const [key, t] of Object.entries(sd.tensors)) {
      const m = STATE_KEY.exec(key);
      if (!m) { problems.push(`unexpected tensor key '${key}' (expected state.<index>.<name>)`); continue; }
      if (!(t instanceof Tensor) || t.isDisposed) { problems.push(`'${key}' is not a live Tensor`); continue; }
      const s = slot(Number(m[1]), key);
      if (!s) continue;
      const p = idMap.get(Number(m[1]))!;
      // a scalar saved as a one-element tensor (PyTorch keeps Adam's step as one)
      if (this.stateNames(newOptions[groupOf.get(p)!]).scalars.includes(m[2]) && t.numel() === 1) {
        s.scalars[m[2]] = t.item();
        continue;
      }
      const a = p.shape, b = t.shape;
      if (a.length !== b.length || a.some((x, j) => x !== b[j]))
        problems.push(`'${key}': the parameter has shape [${a.join(', ')}], the saved state has shape [${b.join(', ')}]`);
      s.tensors[m[2]] = t;
    }
    for (const [id, sc] of Object.entries(meta.state ?? {})) {
      if (!/^\d+$/.test(id) || !sc || typeof sc !== 'object') { problems.push(`meta.state: unexpected entry '${id}'`); continue; }
      const s = slot(Number(id), `state.${id}`);
      if (!s) continue;
      for (const [k, v] of Object.entries(sc)) {
        if (typeof v !== 'number' || !Number.isFinite(v)) problems.push(`'state.${id}.${k}' must be a finite number, got ${describeValue(v)}`);
        else s.scalars[k] = v;
      }
    }
    // every parameter's state is complete for its group's options, and holds nothing else
    this.paramGroups.forEach((g, gi) => {
      const want = this.stateNames(newOptions[gi]);
      for (const p of g.params) {
        const s = loaded.get(p);
        if (!s) continue;
        const id = owner.get(p)!;
        const have = [...Object.keys(s.tensors), ...Object.keys(s.scalars)];
        const expected = [...want.tensors, ...want.scalars];
        for (const k of have)
          if (!expected.includes(k)) problems.push(`'state.${id}.${k}' is not state of ${name} with group ${gi}'s options (expected: ${expected.join(', ') || 'no state'})`);
        for (const k of expected) if (!have.includes(k)) problems.push(`'state.${id}.${k}' is missing (parameter ${id} has ${have.join(', ')})`);
      }
    });
    if (problems.length) fail(problems);

    // commit: copy the tensors first (the only step that can still fail), then swap the state in
    const made: Tensor[] = [];
    let copies: (readonly [Tensor, ParamState])[];
    try {
      copies = noGrad(() =>
        Array.from(loaded, ([p, s]) => {
          const tensors: Record<string, Tensor> = {};
          const dtype = isFloatingDType(p.dtype) ? p.dtype : undefined;
          for (const [k, t] of Object.entries(s.tensors)) {
            tensors[k] = keep(ops.to_device(t, p.device, dtype ?? t.dtype, false, true));
            made.push(tensors[k]);
          }
          return [p, { tensors, scalars: { ...s.scalars } }] as const;
        }),
      );
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
    this.disposeState();
    for (const [p, s] of copies) this.state.set(p, s);
    meta.param_groups.forEach((saved, gi) => {
      this.paramGroups[gi].options = newOptions[gi];
      if (saved.initial_lr !== undefined) this.paramGroups[gi].initialLr = saved.initial_lr;
    });
  }

  private disposeState(): void {
    for (const s of this.state.values()) for (const t of Object.values(s.tensors)) t.dispose();
    this.state.clear();
  }

  /** Frees the optimizer's state tensors (momentum buffers, moments). The optimizer can keep stepping afterwards. */
  dispose(): void {
    this.disposeState();
  }
}
