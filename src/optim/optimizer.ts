// Optimizer base: parameter groups, per-parameter state, state save/load. Updates run under no-grad with the
// multi-tensor `_foreach_` kernels, so the JavaScript work per step is one loop over parameters to collect grads.
import { Tensor, noGrad, tidy, keep } from '../torch';

export interface ParamGroup<O> {
  params: Tensor[];
  options: O;
}
export type ParamsArg<O> = Tensor[] | ({ params: Tensor[] } & Partial<O>)[];

export interface OptimizerState {
  /** Per-parameter tensors: `state.<index>.<name>` (index over all groups in order, as PyTorch numbers them). */
  tensors: Record<string, Tensor>;
  /** JSON-serialisable: options of each group, their parameter indices and scalar state. */
  meta: { type: string; param_groups: Record<string, unknown>[]; state: Record<string, Record<string, number>> };
}

export abstract class Optimizer<O extends { lr: number }> {
  readonly paramGroups: ParamGroup<O>[];
  /** Tensor state per parameter (momentum buffers, moments). */
  protected readonly state = new Map<Tensor, Record<string, Tensor>>();
  /** Scalar state per parameter (step counts). */
  protected readonly scalarState = new Map<Tensor, Record<string, number>>();

  constructor(params: ParamsArg<O>, defaults: O, private readonly known: string[]) {
    const groups: ParamGroup<O>[] = [];
    if (params.length === 0) throw new Error(`${this.constructor.name}: got an empty parameter list`);
    if (params[0] instanceof Tensor) groups.push({ params: params as Tensor[], options: { ...defaults } });
    else
      for (const g of params as ({ params: Tensor[] } & Partial<O>)[]) {
        const { params: ps, ...rest } = g;
        this.checkOptions(rest);
        groups.push({ params: ps, options: { ...defaults, ...rest } as O });
      }
    const seen = new Set<Tensor>();
    for (const g of groups)
      for (const p of g.params) {
        if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one group`);
        seen.add(p);
      }
    this.paramGroups = groups;
    this.validate(defaults);
  }

  protected checkOptions(o: object): void {
    for (const k of Object.keys(o))
      if (!this.known.includes(k)) throw new Error(`${this.constructor.name}: unknown option '${k}' (known: ${this.known.join(', ')})`);
  }
  protected validate(o: O): void {
    if (!(o.lr >= 0)) throw new Error(`${this.constructor.name}: invalid learning rate ${o.lr}`);
  }

  /** Clears gradients; by default sets them to null like PyTorch's set_to_none=True. */
  zeroGrad(opts: { setToNone?: boolean } = {}): void {
    const none = opts.setToNone ?? true;
    for (const g of this.paramGroups)
      for (const p of g.params) {
        if (none) p.grad = null;
        else tidy(() => { const gr = p.grad; if (gr) noGrad(() => gr.zero_()); });
      }
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
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
          if (params.length) this.update(params, grads, g.options);
        });
      }
    });
  }

  /** Applies one update to `params` given their `grads` (both in the group's order). Runs inside tidy + no-grad. */
  protected abstract update(params: Tensor[], grads: Tensor[], o: O): void;

  protected stateOf(p: Tensor): Record<string, Tensor> {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = {}));
    return s;
  }
  protected setState(p: Tensor, name: string, t: Tensor): Tensor {
    this.stateOf(p)[name] = keep(t);
    return t;
  }

  private allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  stateDict(): OptimizerState {
    const tensors: Record<string, Tensor> = {};
    const state: Record<string, Record<string, number>> = {};
    this.allParams().forEach((p, i) => {
      const s = this.state.get(p);
      if (s) for (const [k, t] of Object.entries(s)) tensors[`state.${i}.${k}`] = t;
      const sc = this.scalarState.get(p);
      if (sc) state[i] = { ...sc };
    });
    let idx = 0;
    const param_groups = this.paramGroups.map((g) => ({ ...g.options, params: g.params.map(() => idx++) }));
    return { tensors, meta: { type: this.constructor.name, param_groups, state } };
  }

  /** Restores state saved by `stateDict()` into an optimizer over the same parameters (copies tensors). */
  loadStateDict(sd: OptimizerState): void {
    const name = this.constructor.name;
    if (sd.meta.type !== name) throw new Error(`${name}.loadStateDict: the state was saved by ${sd.meta.type}`);
    if (sd.meta.param_groups.length !== this.paramGroups.length)
      throw new Error(`${name}.loadStateDict: ${sd.meta.param_groups.length} parameter groups saved, the optimizer has ${this.paramGroups.length}`);
    sd.meta.param_groups.forEach((g, i) => {
      const n = (g.params as number[]).length;
      if (n !== this.paramGroups[i].params.length)
        throw new Error(`${name}.loadStateDict: group ${i} saved ${n} parameters, the optimizer has ${this.paramGroups[i].params.length}`);
    });
    const params = this.allParams();
    const problems: string[] = [];
    for (const [key, t] of Object.entries(sd.tensors)) {
      const m = /^state\.(\d+)\.(.+)$/.exec(key);
      if (!m) { problems.push(`unexpected key '${key}'`); continue; }
      const p = params[Number(m[1])];
      if (!p) { problems.push(`'${key}' refers to parameter ${m[1]}, the optimizer has ${params.length}`); continue; }
      const a = p.shape, b = t.shape;
      if (a.length !== b.length || a.some((x, j) => x !== b[j])) problems.push(`'${key}': parameter shape [${a}], state shape [${b}]`);
    }
    if (problems.length) throw new Error(`${name}.loadStateDict failed:\n  ${problems.join('\n  ')}`);
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
    this.scalarState.clear();
    for (const [key, t] of Object.entries(sd.tensors)) {
      const [, i, k] = /^state\.(\d+)\.(.+)$/.exec(key)!;
      this.setState(params[Number(i)], k, noGrad(() => t.clone()));
    }
    for (const [i, sc] of Object.entries(sd.meta.state)) this.scalarState.set(params[Number(i)], { ...sc });
    sd.meta.param_groups.forEach((g, i) => {
      const { params: _p, ...opts } = g;
      Object.assign(this.paramGroups[i].options, opts);
    });
  }

  /** Frees the optimizer's state tensors. */
  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
  }
}
