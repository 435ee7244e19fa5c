// Models by name: `createModel('resnet20', { numClasses: 10 })`. Unknown names list the known ones.
import { Module, closest } from '../nn';
import { schemeModels } from './scheme-models';
import { LeNet5, LeNet5Half } from './lenet';
import { Mlp } from './mlp';
import { MobileNetV2 } from './mobilenetv2';
import { ResNetCifar } from './resnet';
import { VGG_CONFIGS, Vgg } from './vgg';
import { WideResNet } from './wrn';
import { TransformerClassifier, type TransformerClassifierOptions } from './transformer';

export interface ModelOptions {
  numClasses?: number;
  [key: string]: unknown;
}
export type ModelFactory = (opts: ModelOptions) => Module;

const registry = new Map<string, ModelFactory>();

export function registerModel(name: string, factory: ModelFactory): void {
  if (registry.has(name)) throw new Error(`registerModel: a model named '${name}' is already registered`);
  registry.set(name, factory);
}
export function modelNames(): string[] {
  return [...registry.keys()].sort();
}
export function createModel(name: string, opts: ModelOptions = {}): Module {
  const f = registry.get(name);
  if (!f) {
    const known = modelNames();
    throw new Error(`unknown model '${name}'. Closest: ${closest(name, known, 3).join(', ')}. Known models: ${known.join(', ')}`);
  }
  return f(opts);
}

/** Registers the built-in zoo (call once; nothing registers on import). */
let builtinsRegistered = false;
export function registerBuiltinModels(): void {
  if (builtinsRegistered) return;
  builtinsRegistered = true;
  const nc = (o: ModelOptions) => o.numClasses ?? 10;
  registerModel('lenet5', (o) => new LeNet5(nc(o)));
  registerModel('lenet5-half', (o) => new LeNet5Half(nc(o), (o.outputRelu as boolean | undefined) ?? false));
  registerModel('mlp', (o) => new Mlp({ widths: (o.widths as number[]) ?? [784, 800, 800, nc(o)], dropout: o.dropout as number, inputDropout: o.inputDropout as number }));
  registerModel('mlp-1200', (o) => new Mlp({ widths: [784, 1200, 1200, nc(o)], dropout: (o.dropout as number) ?? 0.5, inputDropout: (o.inputDropout as number) ?? 0.2 }));
  registerModel('mlp-800', (o) => new Mlp({ widths: [784, 800, 800, nc(o)] }));
  for (const d of [8, 14, 20, 32, 44, 56, 110]) registerModel(`resnet${d}`, (o) => new ResNetCifar(d, [16, 16, 32, 64], nc(o)));
  registerModel('resnet8x4', (o) => new ResNetCifar(8, [32, 64, 128, 256], nc(o)));
  registerModel('resnet32x4', (o) => new ResNetCifar(32, [32, 64, 128, 256], nc(o)));
  for (const [d, w] of [[16, 2], [40, 1], [40, 2], [16, 1], [28, 10]]) registerModel(`wrn-${d}-${w}`, (o) => new WideResNet(d, w, nc(o), (o.dropout as number) ?? 0));
  for (const name of Object.keys(VGG_CONFIGS)) registerModel(name, (o) => new Vgg(VGG_CONFIGS[name], nc(o)));
  const mobilenet = (width: number) => (o: ModelOptions) =>
    new MobileNetV2({ width: (o.width as number) ?? width, numClasses: nc(o), inChannels: o.inChannels as number, smallInput: o.smallInput as boolean, dropout: o.dropout as number });
  registerModel('mobilenetv2', mobilenet(1));
  registerModel('mobilenetv2-0.5', mobilenet(0.5));
  for (const [name, f] of Object.entries(schemeModels(createModel))) registerModel(name, f);
  // text: int64 token ids [B, L]; options.vocabSize is required (the vocabulary's size)
  registerModel('transformer', (o) => {
    if (typeof o.vocabSize !== 'number') throw new Error("transformer: options.vocabSize is required (the size of the tokenizer's vocabulary)");
    return new TransformerClassifier({ ...(o as Partial<TransformerClassifierOptions>), vocabSize: o.vocabSize, numClasses: nc(o) });
  });
}
