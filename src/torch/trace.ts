// Recording the ops a computation calls. Every generated op wrapper reaches libtorch through the one function
// `native.call`, so wrapping that function while `fn` runs sees each aten call the JavaScript code makes, with its
// schema name, its arguments by name (defaults filled in) and its results. Ops that a kernel calls inside libtorch are
// not seen: the record holds the top-level ops, which is what the ONNX exporter's symbolic functions map (nn/onnx.ts).
//
// Tensors appear as their native handles, whose identity is stable for the life of a Tensor wrapper; `handleInfo` and
// `handleData` read them. Nothing is recorded, and nothing costs anything, outside `recordOps`.
import { Handle, native, opName } from './handle';
import type { Tensor } from './tensor';
import type { DType } from './types';

export type { Handle };

/** One argument of an operator schema, as the addon describes it. */
export interface OpSchemaArg {
  name: string;
  /** 'Tensor', 'int', 'int[]', 'float', 'bool', 'Scalar', 'str', 'ScalarType', 'Tensor[]', 'Tensor?[]', ... */
  kind: string;
  optional: boolean;
  hasDefault: boolean;
  default?: unknown;
  /** `int[2]`: a single int stands for the list repeated. */
  n?: number;
  mutated: boolean;
  alias?: string;
}
export interface OpSchema {
  name: string;
  overload: string;
  schema: string;
  args: OpSchemaArg[];
  returns: { type: string; mutated: boolean; alias?: string }[];
}

/**
 * One recorded call. `args` maps each schema argument to its value: a Tensor argument is its Handle (or a number, a
 * wrapped scalar; or null), a tensor list an array of Handles; omitted arguments hold the schema's default (null for
 * an optional one); an `int[n]` given as one int is expanded to the list. `outputs` holds the tensor results in
 * order, a Tensor[] result flattened (`outputGroups` keeps their grouping); an in-place op's output is the handle of
 * the argument it wrote.
 */
export interface OpCall {
  /** 'aten::conv2d' */
  name: string;
  /** '' for the default overload */
  overload: string;
  schema: OpSchema;
  args: Record<string, unknown>;
  outputs: Handle[];
  /** Per schema return: how many entries of `outputs` it holds (0 for a non-tensor result). */
  outputGroups: number[];
  /** True when the op writes into one of its arguments. */
  inplace: boolean;
}

let schemaIndex: Map<string, OpSchema> | null = null;
function schemaOf(name: string, overload: string): OpSchema {
  if (schemaIndex === null) {
    schemaIndex = new Map();
    for (const s of native.schemas() as OpSchema[]) schemaIndex.set(`${s.name}.${s.overload}`, s);
  }
  const s = schemaIndex.get(`${name}.${overload}`);
  if (!s) throw new Error(`recordOps: no schema for ${name}.${overload}`);
  return s;
}

function normalizeArgs(schema: OpSchema, raw: unknown[]): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  schema.args.forEach((a, i) => {
    let v = raw[i];
    if (v === undefined) v = a.hasDefault ? a.default : null;
    if (a.n !== undefined && a.kind === 'int[]' && typeof v === 'number') v = Array(a.n).fill(v);
    args[a.name] = v;
  });
  return args;
}

function decodeCall(id: number, raw: unknown[], result: unknown): OpCall | null {
  const names = opName(id);
  if (!names) return null;
  const schema = schemaOf(names[0], names[1]);
  const args = normalizeArgs(schema, raw);
  const outputs: Handle[] = [];
  const outputGroups: number[] = [];
  let inplace = false;
  const rets = schema.returns;
  rets.forEach((r, i) => {
    const value = rets.length === 1 ? result : (result as unknown[] | undefined)?.[i];
    if (r.mutated) {
      const src = schema.args.find((a) => a.mutated && a.alias === r.alias);
      const h = src ? (args[src.name] as Handle | null) : null;
      inplace = true;
      if (h && typeof h === 'object') {
        outputs.push(h);
        outputGroups.push(1);
      } else outputGroups.push(0);
    } else if (r.type === 'Tensor') {
      outputs.push(value as Handle);
      outputGroups.push(1);
    } else if (r.type === 'Tensor[]') {
      const list = value as Handle[];
      outputs.push(...list);
      outputGroups.push(list.length);
    } else outputGroups.push(0);
  });
  return { name: names[0], overload: names[1], schema, args, outputs, outputGroups, inplace };
}

let recording = false;

/** Whether `recordOps` is recording (code with a faster decomposition of an op keeps the op itself while it is). */
export function isRecordingOps(): boolean {
  return recording;
}

/**
 * Runs `fn` and calls `onCall` after each op it calls, synchronously, before the op's caller sees the result (so
 * `onCall` can read tensors that the caller disposes right away). Ops that `onCall` itself calls are not recorded.
 * Recordings do not nest.
 */
export function recordOps<T>(fn: () => T, onCall: (call: OpCall) => void): T {
  if (recording) throw new Error('recordOps: already recording (recordings do not nest)');
  const direct = native.call;
  let inHook = false;
  native.call = function recordedCall(id: number, ...raw: unknown[]): unknown {
    const result = Reflect.apply(direct, native, [id, ...raw]);
    if (!inHook) {
      inHook = true;
      try {
        const c = decodeCall(id, raw, result);
        if (c) onCall(c);
      } finally {
        inHook = false;
      }
    }
    return result;
  };
  recording = true;
  try {
    return fn();
  } finally {
    native.call = direct;
    recording = false;
  }
}

/** The native handle of a tensor (its identity in an `OpCall`). */
export function handleOf(t: Tensor): Handle {
  return t._h;
}
/** Shape and dtype of a handle's tensor. */
export function handleInfo(h: Handle): { shape: number[]; dtype: DType } {
  return { shape: native.shape(h), dtype: native.dtype(h) as DType };
}
/** A copy of a handle's elements (contiguous, on the CPU) as raw bytes. */
export function handleBytes(h: Handle): ArrayBuffer {
  return native.toBuffer(h);
}
