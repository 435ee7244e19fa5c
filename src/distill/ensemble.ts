// Several teachers as one: an Ensemble module whose output is the members' weighted average, usable wherever a teacher
// is (response KD, the teacher cache, feature matches by path: `members.1.layer3` is layer3 of the second teacher).
import { Tensor, ops, tidy } from '../torch';
import { Module, ModuleList } from '../nn';

export interface EnsembleOptions {
  /** Non-negative weights, one per member (normalised to sum to 1); default equal. */
  weights?: number[];
  /**
   * 'logits' averages the members' logits. 'probs' averages their probabilities at `temperature`: the output is
   * T·log(Σ w_k softmax(z_k / T)), so softmax(output / T) is exactly the averaged soft target at that temperature
   * (use the distillation temperature).
   */
  mode?: 'logits' | 'probs';
  temperature?: number;
}

export class Ensemble extends Module {
  readonly members: ModuleList;
  readonly weights: number[];
  readonly mode: 'logits' | 'probs';
  readonly temperature: number;
  constructor(teachers: Module[], opts: EnsembleOptions = {}) {
    super();
    if (!Array.isArray(teachers) || teachers.length === 0 || !teachers.every((t) => t instanceof Module))
      throw new Error('Ensemble: expected a non-empty array of modules');
    const w = opts.weights ?? teachers.map(() => 1);
    if (w.length !== teachers.length) throw new Error(`Ensemble: ${w.length} weights for ${teachers.length} teachers`);
    if (w.some((x) => !(x >= 0) || !Number.isFinite(x)) || !w.some((x) => x > 0))
      throw new Error(`Ensemble: weights must be non-negative and not all zero, got [${w.join(', ')}]`);
    const total = w.reduce((a, b) => a + b, 0);
    this.weights = w.map((x) => x / total);
    this.mode = opts.mode ?? 'logits';
    if (this.mode !== 'logits' && this.mode !== 'probs') throw new Error(`Ensemble: mode must be 'logits' or 'probs', got '${this.mode as string}'`);
    this.temperature = opts.temperature ?? 1;
    if (!(this.temperature > 0)) throw new Error(`Ensemble: temperature must be positive, got ${this.temperature}`);
    this.members = this.registerModule('members', new ModuleList(teachers));
  }
  forward(x: Tensor): Tensor {
    const outs = [...this.members].map((m) => m.call(x) as Tensor);
    const shape = outs[0].shape.join(', ');
    outs.forEach((o, k) => {
      if (o.shape.join(', ') !== shape) throw new Error(`Ensemble: member ${k} returns [${o.shape.join(', ')}], member 0 returns [${shape}]`);
    });
    return tidy(() => {
      if (this.mode === 'logits') return outs.map((o, k) => o.mul(this.weights[k])).reduce((a, b) => a.add(b));
      const T = this.temperature;
      // log Σ_k w_k softmax(z_k/T) = logsumexp_k (log w_k + log_softmax(z_k/T)), times T
      const terms = outs.map((o, k) => o.div(T).logSoftmax(-1).add(Math.log(Math.max(this.weights[k], 1e-300))));
      return ops.logsumexp(ops.stack(terms, 0), [0], false).mul(T);
    });
  }
  override extraRepr(): string {
    return `mode=${this.mode}, weights=[${this.weights.map((w) => w.toFixed(3)).join(', ')}]${this.mode === 'probs' ? `, temperature=${this.temperature}` : ''}`;
  }
}
