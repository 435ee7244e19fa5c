// Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (PyTorch 1.13).
import { Tensor, noGrad, ops, tidy } from '../torch';
import { mulScalar_ } from './foreach';

function gradsOf(params: Tensor | Iterable<Tensor>): Tensor[] {
  const list = params instanceof Tensor ? [params] : Array.from(params);
  const grads: Tensor[] = [];
  for (const p of list) {
    const g = p.grad;
    if (g !== null) grads.push(g);
  }
  return grads;
}

/**
 * Scales the gradients in place so that their global `normType`-norm (over all of them, as if concatenated) is at
 * most `maxNorm`, and returns that norm before clipping. Parameters without a gradient are ignored (none at all: 0).
 * As in PyTorch, the scale is `min(1, maxNorm / (norm + 1e-6))`, computed in the gradients' dtype.
 * `normType` may be `Infinity` (largest absolute value). With `errorIfNonfinite`, a NaN or infinite norm throws
 * instead of being applied.
 */
export function clipGradNorm(
  params: Tensor | Iterable<Tensor>,
  maxNorm: number,
  normType = 2,
  opts: { errorIfNonfinite?: boolean } = {},
): number {
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm)) throw new Error(`clipGradNorm: maxNorm must be a number, got ${String(maxNorm)}`);
  if (typeof normType !== 'number' || Number.isNaN(normType)) throw new Error(`clipGradNorm: normType must be a number, got ${String(normType)}`);
  return tidy(() =>
    noGrad(() => {
      const grads = gradsOf(params);
      if (grads.length === 0) return 0;
      const norms = ops._foreach_norm_Scalar(grads, normType);
      const totalT = ops.linalg_vector_norm(ops.stack(norms), normType);
      const total = totalT.item();
      if (opts.errorIfNonfinite && !Number.isFinite(total))
        throw new Error(`clipGradNorm: the total norm of order ${normType} of the gradients is ${total}, so they cannot be clipped ` +
          '(pass errorIfNonfinite: false to scale them anyway)');
      // clip_coef = max_norm / (total + 1e-6), clamped to 1, in the norm's dtype (float32 for float32 gradients)
      const coef = ops.clamp(ops.mul_Tensor(ops.reciprocal(ops.add_Scalar(totalT, 1e-6)), maxNorm), null, 1).item();
      // (the coefficient holds a value of the gradients' dtype, so multiplying by the number is PyTorch's product)
      if (coef !== 1) mulScalar_(grads, coef);
      return total;
    }),
  );
}

/** Clamps every gradient element into [-clipValue, clipValue] in place (parameters without a gradient are skipped). */
export function clipGradValue(params: Tensor | Iterable<Tensor>, clipValue: number): void {
  if (typeof clipValue !== 'number' || Number.isNaN(clipValue)) throw new Error(`clipGradValue: clipValue must be a number, got ${String(clipValue)}`);
  tidy(() =>
    noGrad(() => {
      for (const g of gradsOf(params)) ops.clamp_(g, -clipValue, clipValue);
    }),
  );
}
