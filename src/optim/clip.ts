import { Tensor, noGrad, ops, tidy } from '../torch';

/** Scales gradients so their global p-norm is at most maxNorm; returns the norm before clipping (as PyTorch). */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  return tidy(() =>
    noGrad(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return 0;
      let total: number;
      if (normType === Infinity) total = Math.max(...grads.map((g) => g.abs().max().item()));
      else {
        const norms = ops._foreach_norm_Scalar(grads, normType);
        total = ops.stack(norms).norm(normType).item();
      }
      const coef = maxNorm / (total + 1e-6);
      if (coef < 1) ops._foreach_mul__Scalar(grads, coef);
      return total;
    }),
  );
}
/** Clamps every gradient element into [-clipValue, clipValue]. */
export function clipGradValue(params: Tensor[], clipValue: number): void {
  tidy(() => noGrad(() => { for (const p of params) p.grad?.clamp_(-clipValue, clipValue); }));
}
