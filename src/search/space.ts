// The search space of a student search: a zoo family and the values each of its dimensions may take (depth, width,
// a Transformer's layers / hidden size / heads, ...). A candidate is one value per dimension; it becomes a zoo model
// name and options (`candidateModel`), so that a chosen student is an ordinary zoo model of a configuration.
import { Rng } from '../data/rng';

export const SEARCH_FAMILIES = ['mlp', 'lenet', 'resnet', 'wrn', 'mobilenetv2', 'transformer', 'fasttext', 'zoo'] as const;
export type SearchFamily = (typeof SEARCH_FAMILIES)[number];

/** One value per dimension, e.g. { depth: 2, width: 128 } or { model: 'lenet5' }. */
export type Dims = Record<string, number | string>;
/** Each dimension's values, in the order given. */
export type Space = Record<string, (number | string)[]>;

/** What the models are built for: the data's input and classes. */
export interface SpaceContext {
  kind: 'image' | 'text';
  /** [C, H, W] for images; [L] (row length) for text. */
  inputShape: number[];
  numClasses: number;
}

interface FamilyDef {
  /** The dimensions the family has, with the values searched when the configuration gives none. */
  defaults: Space;
  /** Text or image data. */
  data: 'image' | 'text' | 'any';
  /** Why a combination cannot be built (null when it can). */
  invalid?: (d: Dims, ctx: SpaceContext) => string | null;
  model: (d: Dims, ctx: SpaceContext, fixed: Record<string, unknown>) => { model: string; options: Record<string, unknown> };
}

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

export const FAMILIES: Record<SearchFamily, FamilyDef> = {
  mlp: {
    defaults: { depth: [1, 2], width: [64, 128, 256, 512] },
    data: 'image',
    invalid: (d) => (Number.isInteger(d.width) ? null : `mlp: width must be a whole number of units, got ${d.width}`),
    model: (d, ctx, fixed) => ({
      model: 'mlp',
      options: { ...fixed, widths: [prod(ctx.inputShape), ...new Array(d.depth as number).fill(d.width), ctx.numClasses] },
    }),
  },
  lenet: {
    defaults: { model: ['lenet5', 'lenet5-half'] },
    data: 'image',
    invalid: (d) => (d.model === 'lenet5' || d.model === 'lenet5-half' ? null : `lenet: model must be lenet5 or lenet5-half, got '${d.model}' (use family zoo for other names)`),
    model: (d, _ctx, fixed) => ({ model: String(d.model), options: { ...fixed } }),
  },
  // the zoo's CIFAR ResNets: depth 6n+2, width 1 (16-16-32-64 channels) or 4 (the x4 variants)
  resnet: {
    defaults: { depth: [8, 14, 20], width: [1] },
    data: 'image',
    invalid: (d, ctx) =>
      ctx.inputShape[0] !== 3 ? `resnet: the zoo's CIFAR ResNets take 3-channel images; the data has ${ctx.inputShape[0]} channel(s)`
        : d.width !== 1 && d.width !== 4 ? `resnet: width must be 1 or 4 (resnetN / resnetNx4), got ${d.width}` : null,
    model: (d, _ctx, fixed) => ({ model: `resnet${d.depth}${d.width === 4 ? 'x4' : ''}`, options: { ...fixed } }),
  },
  wrn: {
    defaults: { depth: [16, 40], width: [1, 2] },
    data: 'image',
    invalid: (_d, ctx) => (ctx.inputShape[0] !== 3 ? `wrn: the zoo's wide ResNets take 3-channel images; the data has ${ctx.inputShape[0]} channel(s)` : null),
    model: (d, _ctx, fixed) => ({ model: `wrn-${d.depth}-${d.width}`, options: { ...fixed } }),
  },
  mobilenetv2: {
    defaults: { width: [0.25, 0.5, 0.75, 1] },
    data: 'image',
    // the input's channels follow the data; small images keep stride 1 in the stem and second stage
    model: (d, ctx, fixed) => ({ model: 'mobilenetv2', options: { inChannels: ctx.inputShape[0], smallInput: ctx.inputShape[1] <= 32, ...fixed, width: d.width } }),
  },
  transformer: {
    defaults: { layers: [1, 2], dModel: [32, 64], heads: [2] },
    data: 'text',
    invalid: (d) => (d.dModel !== undefined && d.heads !== undefined && (d.dModel as number) % (d.heads as number) !== 0 ? `transformer: dModel ${d.dModel} is not divisible by heads ${d.heads}` : null),
    model: (d, _ctx, fixed) => ({ model: 'transformer', options: { ...fixed, ...d } }),
  },
  fasttext: {
    defaults: { dim: [16, 32, 64] },
    data: 'text',
    model: (d, _ctx, fixed) => ({ model: 'fasttext', options: { ...fixed, dim: d.dim } }),
  },
  zoo: {
    defaults: {},
    data: 'any',
    model: (d, _ctx, fixed) => ({ model: String(d.model), options: { ...fixed } }),
  },
};

/** The dimensions a family may search (the keys of its defaults; `zoo` searches `model`). */
export function familyDimensions(family: SearchFamily): string[] {
  return family === 'zoo' ? ['model'] : Object.keys(FAMILIES[family].defaults);
}

/**
 * The space of a family: the configured values of each dimension, the family's defaults for the others. Errors name
 * `where` (e.g. `search.space`) and the dimension.
 */
export function resolveSpace(family: SearchFamily, given: Space, where = 'search.space'): Space {
  const dims = familyDimensions(family);
  for (const k of Object.keys(given))
    if (!dims.includes(k)) throw new Error(`${where}.${k} does not apply to family ${family} (its dimensions: ${dims.join(', ')})`);
  const space: Space = {};
  for (const k of dims) {
    const values = given[k] ?? FAMILIES[family].defaults[k];
    if (!values || !values.length) throw new Error(`${where}.${k}: family ${family} needs a list of values for '${k}'`);
    if (new Set(values).size !== values.length) throw new Error(`${where}.${k}: a value is repeated in [${values.join(', ')}]`);
    space[k] = values;
  }
  return space;
}

/** A canonical string of a candidate's dimensions (its identity in the search state). */
export function dimsKey(d: Dims): string {
  return Object.keys(d).sort().map((k) => `${k}=${d[k]}`).join(',');
}

/** Every combination of the space, in order (the last dimension varies fastest), without the ones that cannot be built. */
export function enumerateSpace(family: SearchFamily, space: Space, ctx: SpaceContext): Dims[] {
  const keys = Object.keys(space);
  let out: Dims[] = [{}];
  for (const k of keys) out = out.flatMap((d) => space[k].map((v) => ({ ...d, [k]: v })));
  const invalid = FAMILIES[family].invalid;
  return invalid ? out.filter((d) => invalid(d, ctx) === null) : out;
}

/** The zoo model name and options of a candidate; `fixed` are the options every candidate gets (search.options). */
export function candidateModel(family: SearchFamily, d: Dims, ctx: SpaceContext, fixed: Record<string, unknown> = {}): { model: string; options: Record<string, unknown> } {
  const why = FAMILIES[family].invalid?.(d, ctx);
  if (why) throw new Error(why);
  return FAMILIES[family].model(d, ctx, fixed);
}

/**
 * A mutation of one dimension (regularized evolution): a dimension with more than one value, chosen at random, takes
 * another of its values at random; combinations outside `valid` are redrawn (null when no mutation is valid).
 */
export function mutate(parent: Dims, space: Space, valid: (d: Dims) => boolean, rng: Rng): Dims | null {
  const options: Dims[] = [];
  for (const k of Object.keys(space)) for (const v of space[k]) if (v !== parent[k]) options.push({ ...parent, [k]: v });
  const ok = options.filter(valid);
  if (!ok.length) return null;
  // first a dimension, then a value: each dimension is equally likely to change whatever its number of values
  const byDim = new Map<string, Dims[]>();
  for (const d of ok) {
    const k = Object.keys(space).find((x) => d[x] !== parent[x])!;
    byDim.set(k, [...(byDim.get(k) ?? []), d]);
  }
  const dims = [...byDim.keys()];
  const pick = byDim.get(dims[rng.int(dims.length)])!;
  return pick[rng.int(pick.length)];
}
