// The zoo entries of the distillation schemes: `multi-exit` (a backbone with early exits, for self-distillation) and
// `theseus` (a successor whose blocks stand in for a trained predecessor's, for module replacement).
import { Module, loadWeights } from '../nn';
import { MultiExit } from './exits';
import { ResNetCifar } from './resnet';
import { TransformerClassifier } from './transformer';
import { type ReplaceSchedule, theseusResnet, theseusTransformer } from './theseus';
import type { ModelFactory, ModelOptions } from './registry';

const str = (o: ModelOptions, k: string, model: string): string => {
  if (typeof o[k] !== 'string' || !o[k]) throw new Error(`${model}: options.${k} is required (a zoo model name${k === 'checkpoint' ? ' — here, a weights file' : ''})`);
  return o[k] as string;
};
const obj = (o: ModelOptions, k: string): Record<string, unknown> => (o[k] && typeof o[k] === 'object' ? (o[k] as Record<string, unknown>) : {});

/** Factories by name; `create` is the zoo's createModel (the backbones are zoo models). */
export function schemeModels(create: (name: string, opts: ModelOptions) => Module): Record<string, ModelFactory> {
  return {
    // options: backbone (resnet*, wrn-*, vgg*), backboneOptions
    'multi-exit': (o) => {
      const backbone = create(str(o, 'backbone', 'multi-exit'), { numClasses: o.numClasses, ...obj(o, 'backboneOptions') });
      try {
        return new MultiExit(backbone);
      } catch (e) {
        backbone.dispose();
        throw e;
      }
    },
    // options: predecessor, successor (zoo names), checkpoint (the predecessor's weights), replaceProb, predecessorOptions,
    // successorOptions
    theseus: (o) => {
      const common = { numClasses: o.numClasses };
      const pred = create(str(o, 'predecessor', 'theseus'), { ...common, ...obj(o, 'predecessorOptions') });
      const succ = create(str(o, 'successor', 'theseus'), { ...common, ...obj(o, 'successorOptions') });
      try {
        if (typeof o.checkpoint === 'string') loadWeights(pred, o.checkpoint);
        else throw new Error('theseus: options.checkpoint is required (the trained predecessor\'s weights)');
        const p = (o.replaceProb ?? { from: 0.5, to: 1 }) as ReplaceSchedule;
        if (pred instanceof ResNetCifar && succ instanceof ResNetCifar) return theseusResnet(pred, succ, p);
        if (pred instanceof TransformerClassifier && succ instanceof TransformerClassifier) return theseusTransformer(pred, succ, p);
        throw new Error(`theseus: module replacement between ${pred.constructor.name} and ${succ.constructor.name} is not defined (CIFAR ResNets, or Transformer classifiers)`);
      } catch (e) {
        pred.dispose();
        succ.dispose();
        throw e;
      }
    },
  };
}
