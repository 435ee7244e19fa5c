// TF.js teachers: a layers model or a graph model saved as `model.json` plus binary weight shards, run by
// @tensorflow/tfjs on its WebAssembly backend (or the pure-JavaScript CPU backend). Both are slow next to libtorch,
// which is why a TF.js teacher is meant to fill the teacher cache: with a deterministic data pipeline it runs once per
// sample.
//
// Loading reads model.json and every shard it lists from disk (no fetch, no tfjs-node), checks that the shards hold
// the bytes the weight manifest declares, and hands topology and weights to tfjs through an in-memory IO handler.
// Names: a layers model's outputs are its output layers' names and any layer name can be asked for (a sub-model is
// built for the layers asked); a graph model's outputs are its output node names and any node name can be asked for
// (GraphModel.executeAsync computes any node). Batches are converted to tfjs tensors (float32, or int32 for integer
// inputs such as token ids) and checked against the input's declared dtype and shape.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import { Tensor, dispose, tensor, tidy } from '../torch';
import { closest } from '../nn';
import type { Teacher } from './teacher';
import { fileInModelFolder, joinChunks, shapeText, unknownName } from './teacher';

export interface TfjsTeacherOptions {
  /** The model input fed with the batch (default: the only input). */
  input?: string;
  /** The output distilled as logits (default: the first output). */
  output?: string;
  /** Inputs per tfjs call (default: the whole batch). */
  batchSize?: number;
}

type Tfjs = typeof TF;
let tfModule: Tfjs | null = null;

/**
 * @tensorflow/tfjs, loaded on first use (the CLI does not pay for it otherwise), on the WebAssembly backend
 * (@tensorflow/tfjs-backend-wasm, about ten times faster than the pure-JavaScript one on a transformer) with the CPU
 * backend as the fallback when the wasm backend cannot start. TSDISTILL_TFJS_BACKEND=cpu|wasm picks one.
 */
export async function tfjs(): Promise<Tfjs> {
  if (tfModule) return tfModule;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tf = require('@tensorflow/tfjs') as Tfjs;
  const wanted = process.env.TSDISTILL_TFJS_BACKEND;
  if (wanted !== undefined && wanted !== 'cpu' && wanted !== 'wasm') throw new Error(`TSDISTILL_TFJS_BACKEND: expected 'cpu' or 'wasm', got '${wanted}'`);
  let backend = 'cpu';
  if (wanted !== 'cpu') {
    try {
      require('@tensorflow/tfjs-backend-wasm');
      if (await tf.setBackend('wasm')) backend = 'wasm';
    } catch (e) {
      if (wanted === 'wasm') throw new Error(`TSDISTILL_TFJS_BACKEND=wasm: the tfjs wasm backend cannot start: ${(e as Error).message}`);
    }
  }
  if (backend === 'cpu') {
    await tf.setBackend('cpu');
    // the CPU backend prints a banner recommending tfjs-node on first use under Node; this project runs tfjs on purpose
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  }
  await tf.ready();
  tfModule = tf;
  return tf;
}

interface WeightEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype?: string };
}
interface ModelJson {
  format?: string;
  modelTopology?: Record<string, unknown>;
  weightsManifest?: { paths: string[]; weights: WeightEntry[] }[];
  signature?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: unknown;
  trainingConfig?: unknown;
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2, complex64: 8 };

/** Bytes the manifest declares for its weights (null when a string weight makes the size data-dependent). */
function declaredBytes(weights: WeightEntry[]): number | null {
  let total = 0;
  for (const w of weights) {
    const dtype = w.quantization?.dtype ?? w.dtype;
    const size = BYTES[dtype];
    if (size === undefined) return null;
    total += w.shape.reduce((a, b) => a * b, 1) * size;
  }
  return total;
}

interface IoInfo {
  name: string;
  dtype: string;
  /** Declared shape with -1 for free dimensions; null when unknown. */
  shape: number[] | null;
}

type AnyModel = TF.LayersModel | TF.GraphModel;

/** A TF.js model loaded from disk, with a SHA-256 over model.json and its shards. */
export interface LoadedTfjsModel {
  tf: Tfjs;
  model: TF.LayersModel | TF.GraphModel;
  format: 'layers-model' | 'graph-model';
  topology: Record<string, unknown>;
  hash: string;
}

/**
 * Reads model.json and every weight shard it lists (paths relative to model.json, refused when they lead out of its
 * folder), checks the shards' sizes against
 * the weight manifest, and loads the layers or graph model through an in-memory IO handler. Errors name the file and
 * what failed: unreadable, not JSON, no topology or manifest, a missing or truncated shard, a topology tfjs refuses.
 */
export async function loadTfjsModel(file: string): Promise<LoadedTfjsModel> {
  let text: Buffer;
  try {
    text = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the TF.js model.json: ${(e as Error).message}`);
  }
  let json: ModelJson;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch (e) {
    throw new Error(`${file}: not a valid TF.js model.json (${text.length} bytes; corrupt or truncated?): ${(e as Error).message}`);
  }
  if (!json || typeof json !== 'object' || !json.modelTopology || typeof json.modelTopology !== 'object')
    throw new Error(`${file}: not a TF.js model.json: no 'modelTopology'`);
  if (!Array.isArray(json.weightsManifest)) throw new Error(`${file}: not a TF.js model.json: no 'weightsManifest'`);
  const topo = json.modelTopology as Record<string, unknown>;
  let format: 'layers-model' | 'graph-model';
  if (json.format === 'layers-model' || 'class_name' in topo || 'model_config' in topo) format = 'layers-model';
  else if (json.format === 'graph-model' || 'node' in topo) format = 'graph-model';
  else
    throw new Error(`${file}: cannot tell a layers model from a graph model (format '${json.format ?? ''}', topology keys ${Object.keys(topo).slice(0, 5).join(', ')})`);

  // the shards, in manifest order, concatenated; each group's bytes checked against its weights' declared sizes
  const hash = crypto.createHash('sha256').update(text);
  const buffers: Buffer[] = [];
  const weightSpecs: WeightEntry[] = [];
  for (const group of json.weightsManifest) {
    let got = 0;
    for (const p of group.paths ?? []) {
      const shard = fileInModelFolder(file, p, 'weight shard');
      let b: Buffer;
      try {
        b = fs.readFileSync(shard);
      } catch (e) {
        throw new Error(`${file}: cannot read weight shard ${shard}: ${(e as Error).message}`);
      }
      hash.update(b);
      buffers.push(b);
      got += b.length;
    }
    const want = declaredBytes(group.weights ?? []);
    if (want !== null && want !== got)
      throw new Error(`${file}: weight shards ${(group.paths ?? []).join(', ')} hold ${got} bytes, the manifest declares ${want} (corrupt or truncated shard?)`);
    weightSpecs.push(...(group.weights ?? []));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length) as ArrayBuffer;

  const tf = await tfjs();
  const artifacts: TF.io.ModelArtifacts = {
    modelTopology: json.modelTopology as TF.io.ModelArtifacts['modelTopology'],
    weightSpecs: weightSpecs as TF.io.WeightsManifestEntry[],
    weightData,
    format: format,
    signature: json.signature as TF.io.ModelArtifacts['signature'],
    userDefinedMetadata: json.userDefinedMetadata as TF.io.ModelArtifacts['userDefinedMetadata'],
    modelInitializer: json.modelInitializer as TF.io.ModelArtifacts['modelInitializer'],
  };
  const handler = tf.io.fromMemory(artifacts);
  let model: AnyModel;
  try {
    model = format === 'layers-model' ? await tf.loadLayersModel(handler) : await tf.loadGraphModel(handler);
  } catch (e) {
    throw new Error(`${file}: tfjs could not load the ${format}: ${(e as Error).message}`);
  }

  return { tf, model, format, topology: topo, hash: hash.digest('hex') };
}


export class TfjsTeacher implements Teacher {
  readonly kind = 'tfjs';
  readonly logits: string;
  readonly input: IoInfo;
  /** 'layers-model' or 'graph-model'. */
  readonly format: 'layers-model' | 'graph-model';
  private readonly outputs: string[];
  private readonly values: string[];
  private readonly batchSize: number | undefined;
  private subModels = new Map<string, TF.LayersModel>();

  private constructor(
    readonly file: string,
    private readonly tf: Tfjs,
    readonly model: AnyModel,
    private readonly hash: string,
    format: 'layers-model' | 'graph-model',
    input: IoInfo,
    outputs: string[],
    values: string[],
    output: string,
    o: TfjsTeacherOptions,
  ) {
    this.format = format;
    this.input = input;
    this.outputs = outputs;
    this.values = values;
    this.logits = output;
    this.batchSize = o.batchSize;
  }

  /** Loads model.json and its weight shards; errors name the file and what failed. */
  static async load(file: string, o: TfjsTeacherOptions = {}): Promise<TfjsTeacher> {
    const known = ['input', 'output', 'batchSize'];
    for (const k of Object.keys(o)) if (!known.includes(k)) throw new Error(`tfjs teacher: unknown option '${k}'${closest(k, known, 1).length ? ` (did you mean '${closest(k, known, 1)[0]}'?)` : ''}`);
    if (o.batchSize !== undefined && (!Number.isInteger(o.batchSize) || o.batchSize < 1)) throw new Error(`${file}: batchSize must be a positive integer, got ${o.batchSize}`);
    const { tf, model, format, topology: topo, hash } = await loadTfjsModel(file);
    let inputs: IoInfo[], outputs: string[], values: string[];
    if (format === 'layers-model') {
      const m = model as TF.LayersModel;
      // names of the layers behind the inputs and outputs (a Sequential model leaves inputNames/outputNames empty)
      inputs = m.inputs.map((t) => ({ name: t.sourceLayer.name, dtype: t.dtype, shape: t.shape.map((d) => d ?? -1) }));
      outputs = m.outputs.map((t) => t.sourceLayer.name);
      values = [...new Set([...outputs, ...m.layers.map((l) => l.name)])];
    } else {
      const g = model as TF.GraphModel;
      inputs = g.inputs.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape ? t.shape.map((d) => d ?? -1) : null }));
      outputs = g.outputNodes.slice();
      const nodes = ((topo.node as { name: string; op: string }[]) ?? []).filter((n) => n.op !== 'Const').map((n) => n.name);
      values = [...new Set([...outputs, ...nodes])];
    }
    const fail = (msg: string): never => {
      model.dispose();
      throw new Error(`${file}: ${msg}`);
    };
    let input: IoInfo | undefined;
    if (o.input !== undefined) input = inputs.find((i) => i.name === o.input) ?? fail(`the model has no input '${o.input}' (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    else if (inputs.length === 1) input = inputs[0];
    else fail(`the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); name the one fed with the data (input: ...)`);
    const others = inputs.filter((i) => i !== input);
    if (others.length) fail(`the model has further inputs (${others.map((i) => i.name).join(', ')}); only single-input teachers are supported (wrap the model in a black-box teacher to feed several)`);
    const output = o.output ?? outputs[0];
    if (!outputs.includes(output)) fail(`output '${output}' is not an output of the model (outputs: ${outputs.join(', ')})${values.includes(output) ? '' : `; closest names: ${closest(output, values, 5).join(', ')}`}`);
    const id = crypto.createHash('sha256').update(`${hash}\0${input!.name}\0${output}`).digest('hex');
    return new TfjsTeacher(file, tf, model, id, format, input!, outputs, values, output, o);
  }

  id(): string {
    return `tfjs:${this.hash}:${this.input.name}:${this.logits}`;
  }
  outputNames(): string[] {
    return this.outputs.slice();
  }
  valueNames(): string[] {
    return this.values.slice();
  }

  /** Checks a batch against the declared input; the message names both shapes (and dtypes). */
  checkInput(x: Tensor): void {
    const want = this.input;
    const decl = want.shape ? shapeText(want.shape.map((d) => (d < 0 ? '?' : d))) : '(any shape)';
    const bad = (why: string) => new Error(`${this.file}: input '${want.name}' expects ${want.dtype} ${decl}, got ${x.dtype} ${shapeText(x.shape)}: ${why}`);
    const integer = ['int32', 'int64', 'int16', 'int8', 'uint8'].includes(x.dtype);
    // integer batches (token ids) go to float inputs too, as Keras embedding models declare them; floats never go to ints
    if (want.dtype === 'float32' && !integer && !['float32', 'float64'].includes(x.dtype)) throw bad('the dtypes differ');
    if (want.dtype === 'int32' && !integer) throw bad('the dtypes differ (integer input, float batch)');
    if (!['float32', 'int32'].includes(want.dtype)) throw bad(`input dtype ${want.dtype} is not supported`);
    if (!want.shape) return;
    if (want.shape.length !== x.ndim) throw bad(`rank ${x.ndim} instead of ${want.shape.length}`);
    want.shape.forEach((d, i) => {
      if (i > 0 && d >= 0 && d !== x.shape[i]) throw bad(`dimension ${i} is ${x.shape[i]}, not ${d}`);
    });
  }

  /** A layers model answering `names` (outputs or layer names), built once per set of names. */
  private layersFor(names: string[]): TF.LayersModel {
    const m = this.model as TF.LayersModel;
    if (names.length === this.outputs.length && names.every((n, i) => n === this.outputs[i])) return m;
    const key = names.join('\0');
    let sub = this.subModels.get(key);
    if (!sub) {
      const outs = names.map((n) => {
        const i = this.outputs.indexOf(n);
        if (i >= 0) return m.outputs[i];
        const o = m.getLayer(n).output;
        if (Array.isArray(o)) throw new Error(`${this.file}: layer '${n}' has ${o.length} outputs; ask for a single-output layer`);
        return o;
      });
      sub = this.tf.model({ inputs: m.inputs, outputs: outs });
      this.subModels.set(key, sub);
    }
    return sub;
  }

  async run(x: Tensor, names: string[]): Promise<Record<string, Tensor>> {
    this.checkInput(x);
    const wanted = [...new Set(names)];
    for (const n of wanted) if (!this.values.includes(n)) throw unknownName(this.file, n, this.values);
    const tf = this.tf;
    const n = x.shape[0];
    const step = this.batchSize ?? n;
    const dtype = this.input.dtype === 'int32' ? 'int32' : 'float32';
    const host = tidy(() => x.to({ device: 'cpu', dtype }).contiguous());
    const parts: Record<string, Tensor[]> = Object.fromEntries(wanted.map((k) => [k, []]));
    try {
      const all = host.data() as Float32Array | Int32Array;
      const row = x.shape.slice(1).reduce((a, b) => a * b, 1);
      for (let i = 0; i < n; i += step) {
        const len = Math.min(step, n - i);
        const feed = tf.tensor(all.subarray(i * row, (i + len) * row), [len, ...x.shape.slice(1)], dtype);
        let outs: TF.Tensor[];
        try {
          if (this.format === 'layers-model') {
            const r = this.layersFor(wanted).predict(feed);
            outs = Array.isArray(r) ? r : [r];
          } else {
            const r = await (this.model as TF.GraphModel).executeAsync({ [this.input.name]: feed }, wanted);
            outs = Array.isArray(r) ? r : [r];
          }
        } catch (e) {
          throw new Error(`${this.file}: tfjs failed on input '${this.input.name}' ${x.dtype} ${shapeText([len, ...x.shape.slice(1)])}: ${(e as Error).message}`);
        } finally {
          feed.dispose();
        }
        try {
          wanted.forEach((k, j) => parts[k].push(fromTfjs(outs[j], k, this.file)));
        } finally {
          tf.dispose(outs);
        }
      }
    } catch (e) {
      for (const p of Object.values(parts)) dispose(p);
      throw e;
    } finally {
      if (host !== x) host.dispose();
    }
    return joinChunks(parts, wanted, x.device);
  }

  dispose(): void {
    // sub-models share the main model's layers and own no weights: dropping them is enough
    this.subModels.clear();
    this.model.dispose();
  }
}

function fromTfjs(t: TF.Tensor, name: string, file: string): Tensor {
  if (!t) throw new Error(`${file}: tfjs returned no value '${name}'`);
  if (t.dtype === 'string' || t.dtype === 'complex64') throw new Error(`${file}: value '${name}' has dtype ${t.dtype}, which teachers cannot use`);
  const data = t.dataSync();
  if (t.dtype === 'int32') return tensor(Int32Array.from(data as Int32Array), { shape: t.shape });
  if (t.dtype === 'bool') return tensor(Float32Array.from(data as Uint8Array), { shape: t.shape });
  return tensor(Float32Array.from(data as Float32Array), { shape: t.shape });
}
