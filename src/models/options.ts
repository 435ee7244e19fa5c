// The options a zoo model accepts, declared next to the model as zod shapes (one per option) and checked by
// createModel before the model is built: an unknown option names the closest valid one, a value of the wrong type or
// range names the option and the value. Configurations check the same declarations before anything trains.
import { z } from 'zod';
import { closest, levenshtein } from '../util/closest';

/** A model's options: option name → the zod schema of its value (every option is optional unless its schema says not). */
export type ModelOptionShape = Record<string, z.ZodType>;

/** The option every classifier of the zoo takes. */
export const numClasses = z.number().int().positive();
/** A dropout probability. */
export const probability = z.number().min(0).lt(1);

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The problems of `opts` against a model's declared options, one line each (empty when none): unknown options with
 * the closest declared one, values that do not fit their option's schema.
 */
export function optionProblems(model: string, shape: ModelOptionShape, opts: Record<string, unknown>): string[] {
  const names = Object.keys(shape);
  const r = z.object(Object.fromEntries(names.map((k) => [k, shape[k].optional()]))).strict().safeParse(opts);
  if (r.success) return [];
  return r.error.issues.flatMap((iss) => {
    if (iss.code === 'unrecognized_keys')
      return iss.keys.map((k) => {
        // a suggestion only when it is near enough to be the intended name
        const near = closest(k, names, 1).find((n) => levenshtein(k.toLowerCase(), n.toLowerCase()) <= Math.max(2, Math.ceil(k.length / 3)));
        return `${model}: unknown option '${k}'${near ? `; did you mean '${near}'?` : ''} (${model} options: ${names.join(', ') || 'none'})`;
      });
    let value: unknown = opts;
    for (const p of iss.path) value = (value as Record<PropertyKey, unknown>)?.[p as PropertyKey];
    const what = iss.message.replace(/^Invalid input: /, '').replace(/, received \w+$/, '');
    return [`${model}: option '${iss.path.map(String).join('.')}': ${what}, got ${show(value)}`];
  });
}
