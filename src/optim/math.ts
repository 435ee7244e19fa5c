// Scalar arithmetic that has to agree bit for bit with PyTorch's Python side.
//
// Adam's bias corrections (`1 - beta ** step`) and the decay factors of the step schedules are computed by Python
// with C's pow(), which glibc rounds correctly in practice; V8's `**` is often one unit in the last place away
// (0.9 ** 4 is 0.6561000000000001 in V8, 0.6561 in C). `powi` computes integer powers in double-double arithmetic
// (about 104 bits) and rounds once, so it returns the correctly rounded value except within ~1e-30 (relative) of a
// rounding tie.

const SPLIT = 134217729; // 2^27 + 1 (Veltkamp splitting)
let hi = 0;
let lo = 0;

/** (hi, lo) ← (ah, al)·(bh, bl) in double-double arithmetic. */
function ddMul(ah: number, al: number, bh: number, bl: number): void {
  const p = ah * bh;
  let t = SPLIT * ah;
  const a1 = t - (t - ah);
  const a2 = ah - a1;
  t = SPLIT * bh;
  const b1 = t - (t - bh);
  const b2 = bh - b1;
  let e = a1 * b1 - p + a1 * b2 + a2 * b1 + a2 * b2; // exact error of p (Dekker's two-product)
  e += ah * bl + al * bh;
  hi = p + e;
  lo = e - (hi - p);
}

/** `base ** n` for an integer n >= 0, correctly rounded (as C's pow()); other arguments fall back to `**`. */
export function powi(base: number, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1 || !Number.isFinite(base) || base === 0) return base ** n;
  if (n === 0) return 1;
  const mag = Math.abs(base);
  if (mag > 2 ** 500 || mag < 2 ** -500) return base ** n; // the splitting would overflow or lose the low part
  let rh = 1, rl = 0, xh = base, xl = 0;
  let k = n;
  for (;;) {
    if (k & 1) {
      ddMul(rh, rl, xh, xl);
      rh = hi;
      rl = lo;
    }
    k >>>= 1;
    if (k === 0) break;
    ddMul(xh, xl, xh, xl);
    xh = hi;
    xl = lo;
    if (!Number.isFinite(xh) || Math.abs(xh) < 2 ** -800 || Math.abs(xh) > 2 ** 800) return base ** n;
  }
  const r = rh + rl;
  return Number.isFinite(r) && Math.abs(r) >= 2 ** -800 ? r : base ** n;
}
