// Labelling a transfer set with a teacher (Buciluǎ, Caruana & Niculescu-Mizil 2006, "model compression"): images or
// texts without labels, or with labels to be ignored, get the teacher's (or an ensemble's) predictions as labels. The
// teacher may be a module, an ensemble or any external teacher (ONNX, TorchScript, TF.js, a black-box function or
// endpoint, one taking raw samples). With `cacheDir` its logits go through the teacher cache: read from it when the
// set was labelled (or distilled on) before, so the teacher does not run again, and written under the labelled set's
// key so that distilling on the new set reads them instead of rerunning it.
import * as fs from 'node:fs';
import { Tensor, noGrad, ops, tidy } from '../torch';
import { Module } from '../nn';
import { BatchTransform, DataLoader, ImageDataset, TextDataset } from '../data';
import { type Teacher, isTeacher } from '../teachers';
import { computeTeacherLogits, teacherCacheFile, teacherLogits, writeTeacherCache } from './teacher-cache';

export interface PseudoLabelOptions {
  /** The deterministic transforms the student will train with (normalisation of images); they also key the cache. */
  transforms?: BatchTransform[];
  batchSize?: number;
  /** The teacher cache folder (the distillation run's): the teacher's logits are read from it or written to it. */
  cacheDir?: string;
  /** Name of the labelled set (default: `<name>-labelled`). */
  name?: string;
}

export interface PseudoLabelResult<D extends ImageDataset | TextDataset = ImageDataset | TextDataset> {
  /** The same samples with the teacher's top-1 predictions as labels. */
  dataset: D;
  /** Share (%) of the original labels the teacher agrees with (meaningful when the set had real labels). */
  agreement: number;
  /** Whether the teacher's logits came from the cache (no teacher pass). */
  fromCache: boolean;
  /** The labelled set's cache file, when `cacheDir` was given. */
  cacheFile?: string;
}

export async function pseudoLabel<D extends ImageDataset | TextDataset>(teacher: Module | Teacher, data: D, opts: PseudoLabelOptions = {}): Promise<PseudoLabelResult<D>> {
  if (!(data instanceof ImageDataset) && !(data instanceof TextDataset)) throw new Error('pseudoLabel: data must be an ImageDataset or a TextDataset');
  if (!(teacher instanceof Module) && !isTeacher(teacher)) throw new Error('pseudoLabel: teacher must be a Module or a Teacher (tsdistill/teachers)');
  const transforms = opts.transforms ?? [];
  if (data instanceof TextDataset && transforms.length) throw new Error('pseudoLabel: transforms apply to images; the data is text (token ids)');
  if (transforms.some((t) => t.random)) throw new Error(`pseudoLabel: transforms must be deterministic (got ${transforms.filter((t) => t.random).map((t) => t.name).join(', ')}); augment when training instead`);
  const loader = new DataLoader(data, { batchSize: opts.batchSize ?? 256, transforms });
  let logits: Tensor, fromCache = false;
  if (opts.cacheDir) {
    fs.mkdirSync(opts.cacheDir, { recursive: true });
    ({ logits, fromCache } = await teacherLogits(teacher, loader, opts.cacheDir));
  } else logits = await computeTeacherLogits(teacher, loader);
  try {
    const { labels, agreement } = tidy(() =>
      noGrad(() => {
        const pred = logits.argmax(1).cpu();
        const agree = pred.eq(data.labels).sum().item();
        return { labels: ops.clone(pred), agreement: (100 * agree) / Math.max(1, data.length) };
      }),
    );
    const name = opts.name ?? `${data.name}-labelled`;
    let dataset: ImageDataset | TextDataset;
    if (data instanceof TextDataset) dataset = new TextDataset(name, ops.clone(data.ids), labels, data.classes, data.texts, data.encoder);
    else {
      dataset = new ImageDataset(name, ops.clone(data.images), labels, data.classes);
      if (data.files) dataset.files = data.files;
    }
    let cacheFile: string | undefined;
    if (opts.cacheDir) {
      // rows are in data-set order, which the new set shares; the key is the new set's
      cacheFile = teacherCacheFile(teacher, new DataLoader(dataset, { batchSize: 1, transforms }), opts.cacheDir);
      writeTeacherCache(cacheFile, logits, teacher.constructor.name);
    }
    return { dataset: dataset as D, agreement, fromCache, ...(cacheFile ? { cacheFile } : {}) };
  } finally {
    logits.dispose();
  }
}
