// Registers the losses of repdistiller-losses.ts (called by registerBuiltinLosses). Options of each, by loss name:
//   irg, irg_transform, cc_repdistiller, ft_factor   none
//   ab        margin (1)
//   vid       midChannels (the teacher's channels, as RepDistiller), initVariance (5)
//   ft        k (0.5), p1 (2), p2 (1), paraphraser: the safetensors file of the paraphraser stage (required)
//   ft_paraphraser   k (0.5): the paraphraser stage's reconstruction term (student side: any tap of the trained role)
//   ofd       bn: the teacher's batch norm before the tapped ReLU (module path; its γ, β give the margins), or
//             margins: [C] numbers; kernelSize (1)
//   reviewkd  none (taps: the student's stages shallow → deep, then its pooled embedding; the teacher's the same)
//   crd       featDim (128), negatives (4096), temperature (0.07), momentum (0.5), seed (0)
import * as fs from 'node:fs';
import { Tensor, dispose, loadSafetensors, noGrad, tensor } from '../torch';
import { BatchNorm2d, Module } from '../nn';
import type { LossContext, LossDef, LossModuleInfo } from './features';
import {
  CrdModule, FtModule, OfdModule, Paraphraser, ReviewKdModule, VidModule, abLoss, correlationRepDistiller, factorLoss, irgLoss,
  irgTransformLoss, ofdMargins,
} from './repdistiller-losses';

const num = (o: Record<string, unknown>, k: string, loss: string): number | undefined => {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${loss}: option ${k} must be a number, got ${JSON.stringify(v)}`);
  return v;
};
function own<M extends Module>(ctx: LossContext, cls: new (...a: any[]) => M, loss: string): M {
  if (!(ctx.module instanceof cls)) throw new Error(`${loss}: its module was not built (the engine builds, trains and saves it: run the loss as a term of runEngine, trainModel or distill, not through FeatureMatcher.forward)`);
  return ctx.module;
}
const channels = (loss: string, side: string, shape: number[]) => {
  if (shape.length !== 4) throw new Error(`${loss}: the ${side} tap must be a feature map [B, C, H, W], got [${shape.join(', ')}]`);
  return shape[1];
};
const width = (shape: number[]) => shape.slice(1).reduce((a, b) => a * b, 1);

/** The teacher's batch norm named by `ofd`'s option `bn`, or the margins given as numbers. */
function ofdMarginsFor(info: LossModuleInfo, tC: number): Tensor {
  const o = info.options;
  if (Array.isArray(o.margins)) {
    if (o.margins.length !== tC || o.margins.some((v) => typeof v !== 'number')) throw new Error(`ofd: option margins must be ${tC} numbers (one per teacher channel)`);
    return tensor(o.margins as number[], { dtype: 'float32' }).view([1, -1, 1, 1]);
  }
  if (typeof o.bn !== 'string') throw new Error("ofd: needs option bn (the teacher's batch norm before the tapped ReLU, a module path) or margins");
  if (!info.teacherModel) throw new Error('ofd: option bn needs a teacher Module (an external teacher has no batch-norm parameters to read: give margins)');
  const bn = info.teacherModel.getSubmodule(o.bn);
  if (!(bn instanceof BatchNorm2d)) throw new Error(`ofd: option bn '${o.bn}' is a ${bn.constructor.name}, not a BatchNorm2d`);
  if (bn.weight!.shape[0] !== tC) throw new Error(`ofd: batch norm '${o.bn}' has ${bn.weight!.shape[0]} channels, the teacher tap ${tC}`);
  return ofdMargins(bn.weight!, bn.bias!).float();
}

/** Loads the paraphraser stage's weights (its run's projection file) into `p`. */
function loadParaphraser(p: Paraphraser, file: unknown): void {
  if (typeof file !== 'string') throw new Error("ft: needs option paraphraser, the weights the paraphraser stage left (its last.proj.safetensors)");
  if (!fs.existsSync(file)) throw new Error(`ft: paraphraser file ${file} does not exist (run the paraphraser stage first)`);
  const { tensors } = loadSafetensors(file);
  try {
    const prefixes = Object.keys(tensors).filter((k) => k.endsWith('encoder.0.weight') && !k.includes('translator')).map((k) => k.slice(0, -'encoder.0.weight'.length));
    if (prefixes.length !== 1) throw new Error(`ft: ${file} holds ${prefixes.length} paraphrasers (expected the one of the paraphraser stage)`);
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(tensors)) if (k.startsWith(prefixes[0])) sd[k.slice(prefixes[0].length)] = v;
    noGrad(() => p.loadStateDict(sd));
  } finally {
    dispose(Object.values(tensors));
  }
}

export function registerRepDistillerLosses(registerLoss: (name: string, def: LossDef) => void): void {
  registerLoss('irg', { needs: 'batch', doc: 'IRG vertex + edge terms (instance relationship graph)', fn: (s, t) => irgLoss(s[0], t[0]) });
  registerLoss('irg_transform', { needs: 'batch', arity: 2, doc: 'IRG transformation term between two layers per side', fn: (s, t) => irgTransformLoss([s[0], s[1]], [t[0], t[1]]) });
  registerLoss('cc_repdistiller', { needs: 'same', doc: "RepDistiller's Correlation: mean of Σ|s−t|ᵢ·|s−t|ᵢ₊₁ over consecutive samples (cc is CCKD's kernel form)", fn: (s, t) => correlationRepDistiller(s[0], t[0]) });
  registerLoss('ab', { needs: 'same', doc: 'activation boundaries (through a conv 1×1 + BN connector)', fn: (s, t, _c, o) => abLoss(s[0], t[0], { margin: num(o, 'margin', 'ab') }) });
  registerLoss('ft_factor', { needs: 'batch', doc: "factor transfer's loss on given factors (normalised mean-square maps, L1)", fn: (s, t, _c, o) => factorLoss(s[0], t[0], { p1: num(o, 'p1', 'ft'), p2: num(o, 'p2', 'ft') }) });
  registerLoss('vid', {
    needs: 'batch', doc: 'variational information distillation (regressor + learnable variance)',
    module: (i) => {
      const sC = channels('vid', 'student', i.student[0]), tC = channels('vid', 'teacher', i.teacher[0]);
      return new VidModule(sC, num(i.options, 'midChannels', 'vid') ?? tC, tC, num(i.options, 'initVariance', 'vid') ?? 5);
    },
    fn: (s, t, c) => own(c, VidModule, 'vid').loss(s[0], t[0]),
  });
  registerLoss('ft_paraphraser', {
    needs: 'batch', doc: "factor transfer's paraphraser stage: reconstruct the teacher's feature (the student tap only carries the role)",
    module: (i) => new Paraphraser(channels('ft_paraphraser', 'teacher', i.teacher[0]), num(i.options, 'k', 'ft_paraphraser') ?? 0.5),
    fn: (_s, t, c) => own(c, Paraphraser, 'ft_paraphraser').reconstructionLoss(t[0]),
  });
  registerLoss('ft', {
    needs: 'batch', doc: "factor transfer: the student's translator matches the teacher's paraphrased factor",
    module: (i) => {
      const m = new FtModule(channels('ft', 'student', i.student[0]), channels('ft', 'teacher', i.teacher[0]), num(i.options, 'k', 'ft') ?? 0.5);
      try {
        loadParaphraser(m.paraphraser, i.options.paraphraser);
      } catch (e) {
        m.dispose();
        throw e;
      }
      return m;
    },
    fn: (s, t, c, o) => own(c, FtModule, 'ft').loss(s[0], t[0], { p1: num(o, 'p1', 'ft'), p2: num(o, 'p2', 'ft') }),
  });
  registerLoss('ofd', {
    needs: 'batch', doc: 'overhaul of feature distillation (connector, margins from the teacher batch norm)',
    module: (i) => {
      const tC = channels('ofd', 'teacher', i.teacher[0]);
      return new OfdModule(channels('ofd', 'student', i.student[0]), tC, ofdMarginsFor(i, tC), num(i.options, 'kernelSize', 'ofd') ?? 1);
    },
    fn: (s, t, c) => own(c, OfdModule, 'ofd').loss(s[0], t[0]),
  });
  registerLoss('reviewkd', {
    needs: 'batch', arity: 'many', doc: 'knowledge review: ABF fusion of all student stages, hierarchical context loss',
    module: (i) => new ReviewKdModule(i.student.map((x) => x[1]), i.teacher.map((x) => x[1])),
    fn: (s, t, c) => own(c, ReviewKdModule, 'reviewkd').loss(s, t),
  });
  registerLoss('crd', {
    needs: 'batch', doc: 'contrastive representation distillation (embeddings, memory bank of the training set)',
    module: (i) => {
      const o = i.options;
      if (!i.rows) throw new Error('crd: the memory bank needs the training set size (train from a DataLoader over a data set)');
      return new CrdModule(width(i.student[0]), width(i.teacher[0]), i.rows, {
        featDim: num(o, 'featDim', 'crd'), negatives: num(o, 'negatives', 'crd'), temperature: num(o, 'temperature', 'crd'), momentum: num(o, 'momentum', 'crd'), seed: num(o, 'seed', 'crd'),
      });
    },
    fn: (s, t, c) => {
      if (!c.indices) throw new Error("crd: needs the batch's rows in the training set (batches from a DataLoader)");
      return own(c, CrdModule, 'crd').loss(s[0], t[0], tensor(c.indices, { dtype: 'int64' }));
    },
  });
}
