// Labelling a transfer set with a teacher (Buciluǎ, Caruana & Niculescu-Mizil 2006, "model compression"): images
// without labels, or with labels to be ignored, get the teacher's (or an ensemble's) predictions as labels, and its
// logits are written to the teacher cache so that distilling on the new set reads them instead of rerunning it.
import * as fs from 'node:fs';
import { noGrad, ops, tidy } from '../torch';
import { Module } from '../nn';
import { BatchTransform, DataLoader, ImageDataset } from '../data';
import { computeTeacherLogits, teacherCacheFile, writeTeacherCache } from './teacher-cache';

export interface PseudoLabelOptions {
  /** The deterministic transforms the student will train with (normalisation); they also key the cache. */
  transforms?: BatchTransform[];
  batchSize?: number;
  /** Where to write the teacher's logits for the labelled set (the distillation run's cache folder). */
  cacheDir?: string;
  /** Name of the labelled set (default: `<name>-labelled`). */
  name?: string;
}

export interface PseudoLabelResult {
  /** The same images with the teacher's top-1 predictions as labels. */
  dataset: ImageDataset;
  /** Share (%) of the original labels the teacher agrees with (meaningful when the set had real labels). */
  agreement: number;
  /** The cache file written, when `cacheDir` was given. */
  cacheFile?: string;
}

export async function pseudoLabel(teacher: Module, data: ImageDataset, opts: PseudoLabelOptions = {}): Promise<PseudoLabelResult> {
  if (!(data instanceof ImageDataset)) throw new Error('pseudoLabel: data must be an ImageDataset');
  const transforms = opts.transforms ?? [];
  if (transforms.some((t) => t.random)) throw new Error(`pseudoLabel: transforms must be deterministic (got ${transforms.filter((t) => t.random).map((t) => t.name).join(', ')}); augment when training instead`);
  const loader = new DataLoader(data, { batchSize: opts.batchSize ?? 256, transforms });
  const logits = await computeTeacherLogits(teacher, loader);
  try {
    const { labels, agreement } = tidy(() =>
      noGrad(() => {
        const pred = logits.argmax(1);
        const agree = pred.eq(data.labels).sum().item();
        return { labels: ops.clone(pred), agreement: (100 * agree) / Math.max(1, data.length) };
      }),
    );
    const images = ops.clone(data.images);
    const dataset = new ImageDataset(opts.name ?? `${data.name}-labelled`, images, labels, data.classes);
    let cacheFile: string | undefined;
    if (opts.cacheDir) {
      fs.mkdirSync(opts.cacheDir, { recursive: true });
      // rows are in data-set order, which the new set shares; the key is the new set's
      cacheFile = teacherCacheFile(teacher, new DataLoader(dataset, { batchSize: 1, transforms }), opts.cacheDir);
      writeTeacherCache(cacheFile, logits, teacher.constructor.name);
    }
    return { dataset, agreement, ...(cacheFile ? { cacheFile } : {}) };
  } finally {
    logits.dispose();
  }
}
