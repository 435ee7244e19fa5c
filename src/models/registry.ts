// Models by name: `createModel('resnet20', { numClasses: 10 })`. Unknown names list the known ones.
import { Module, closest } from '../nn';
import { schemeModels } from './scheme-models';
import { LeNet5, LeNet5Half, LeNet5HalfDafl } from './lenet';
import { Mlp } from './mlp';
import { MobileNetV2 } from './mobilenetv2';
import { ResNetCifar } from './resnet';
import { VGG_CONFIGS, Vgg } from './vgg';
import { WideResNet } from './wrn';
import { TRANSFORMER_OPTIONS, TransformerClassifier, type TransformerClassifierOptions } from './transformer';
import { FASTTEXT_OPTIONS, FastText, type FastTextOptions } from './fasttext';
import { LENET5_HALF_DAFL_OPTIONS, LENET5_HALF_OPTIONS, LENET5_OPTIONS } from './lenet';
import { AUDIO_CNN_OPTIONS, AudioCnn } from './audio';
import { MLP_1200_OPTIONS, MLP_800_OPTIONS, MLP_OPTIONS } from './mlp';
import { MOBILENETV2_OPTIONS } from './mobilenetv2';
import { RESNET_OPTIONS } from './resnet';
import { VGG_OPTIONS } from './vgg';
import { WRN_OPTIONS } from './wrn';
import { type ModelOptionShape, optionProblems } from './options';
import { DAFL_GENERATOR_OPTIONS, DaflGenerator, type DaflGeneratorOptions } from './generator';
import { DISCRIMINATOR_OPTIONS, Discriminator, type DiscriminatorOptions } from './discriminator';

export interface ModelOptions {
  numClasses?: number;
  [key: string]: unknown;
}
export type ModelFactory = (opts: ModelOptions) => Module;

const registry = new Map<string, ModelFactory>();

const optionShapes = new Map<string, ModelOptionShape>();

/**
 * Registers a model by name. `options` declares the options it accepts (name → zod schema); createModel then refuses
 * others, naming the closest declared one. Without it, options are passed through unchecked.
 */
export function registerModel(name: string, factory: ModelFactory, options?: ModelOptionShape): void {
  if (registry.has(name)) throw new Error(`registerModel: a model named '${name}' is already registered`);
  registry.set(name, factory);
  if (options) optionShapes.set(name, options);
}
/** The options a registered model declares (null when it declares none, or is not registered). */
export function modelOptionNames(name: string): string[] | null {
  const shape = optionShapes.get(name);
  return shape ? Object.keys(shape) : null;
}
/**
 * Checks options against the model's declaration; one error lists every problem, each naming the model and the option
 * (`where` prefixes the message, e.g. the configuration section). Models without a declaration accept anything.
 */
export function checkModelOptions(name: string, opts: Record<string, unknown>, where?: string): void {
  const shape = optionShapes.get(name);
  const problems = shape ? optionProblems(name, shape, opts) : [];
  if (problems.length) throw new Error(`${where ? `${where}: ` : ''}${problems.join('; ')}`);
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
  checkModelOptions(name, opts);
  return f(opts);
}

/** The CIFAR ResNet depths and the wide ResNets (depth, widen factor) of the zoo. */
const RESNET_DEPTHS = [8, 14, 20, 32, 44, 56, 110];
const WRN_SIZES = [[16, 2], [40, 1], [40, 2], [16, 1], [28, 10]];

/** The options each built-in model declares (in the model's file). */
function declareBuiltinOptions(): void {
  const declared: [string[], ModelOptionShape][] = [
    [['lenet5'], LENET5_OPTIONS], [['lenet5-half'], LENET5_HALF_OPTIONS], [['lenet5-half-dafl'], LENET5_HALF_DAFL_OPTIONS],
    [['mlp'], MLP_OPTIONS], [['mlp-1200'], MLP_1200_OPTIONS], [['mlp-800'], MLP_800_OPTIONS],
    [RESNET_DEPTHS.map((d) => `resnet${d}`).concat('resnet8x4', 'resnet32x4'), RESNET_OPTIONS],
    [WRN_SIZES.map(([d, w]) => `wrn-${d}-${w}`), WRN_OPTIONS],
    [Object.keys(VGG_CONFIGS), VGG_OPTIONS], [['mobilenetv2', 'mobilenetv2-0.5'], MOBILENETV2_OPTIONS], [['transformer'], TRANSFORMER_OPTIONS], [['fasttext'], FASTTEXT_OPTIONS],
    [['dafl-generator'], DAFL_GENERATOR_OPTIONS], [['discriminator'], DISCRIMINATOR_OPTIONS], [['audio-cnn'], AUDIO_CNN_OPTIONS],
  ];
  for (const [names, shape] of declared) for (const n of names) optionShapes.set(n, shape);
}

/** Registers the built-in zoo (call once; nothing registers on import). */
let builtinsRegistered = false;
export function registerBuiltinModels(): void {
  if (builtinsRegistered) return;
  builtinsRegistered = true;
  declareBuiltinOptions();
  const nc = (o: ModelOptions) => o.numClasses ?? 10;
  registerModel('lenet5', (o) => new LeNet5(nc(o)));
  registerModel('dafl-generator', (o) => new DaflGenerator(o as DaflGeneratorOptions));
  registerModel('discriminator', ({ numClasses, ...o }) => new Discriminator({ ...(o as Partial<DiscriminatorOptions>), inputDim: (o.inputDim as number | undefined) ?? numClasses ?? 10 }));
  // spectrograms [B, 1, mels, frames] (spoken digits: docs/cross-modal.md)
  registerModel('audio-cnn', (o) => new AudioCnn({ numClasses: nc(o), width: o.width as number, inChannels: o.inChannels as number }));
  registerModel('lenet5-half', (o) => new LeNet5Half(nc(o), (o.outputRelu as boolean | undefined) ?? false));
  registerModel('lenet5-half-dafl', (o) => new LeNet5HalfDafl(nc(o)));
  registerModel('mlp', (o) => new Mlp({ widths: (o.widths as number[]) ?? [784, 800, 800, nc(o)], dropout: o.dropout as number, inputDropout: o.inputDropout as number }));
  registerModel('mlp-1200', (o) => new Mlp({ widths: [784, 1200, 1200, nc(o)], dropout: (o.dropout as number) ?? 0.5, inputDropout: (o.inputDropout as number) ?? 0.2 }));
  registerModel('mlp-800', (o) => new Mlp({ widths: [784, 800, 800, nc(o)] }));
  for (const d of RESNET_DEPTHS) registerModel(`resnet${d}`, (o) => new ResNetCifar(d, [16, 16, 32, 64], nc(o)));
  registerModel('resnet8x4', (o) => new ResNetCifar(8, [32, 64, 128, 256], nc(o)));
  registerModel('resnet32x4', (o) => new ResNetCifar(32, [32, 64, 128, 256], nc(o)));
  for (const [d, w] of WRN_SIZES) registerModel(`wrn-${d}-${w}`, (o) => new WideResNet(d, w, nc(o), (o.dropout as number) ?? 0));
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
  // text: a bag of token and hashed n-gram ids [B, L] -> mean embedding -> linear; options.vocabSize is required
  registerModel('fasttext', (o) => {
    if (typeof o.vocabSize !== 'number') throw new Error("fasttext: options.vocabSize is required (the data's vocabulary: tokens and n-gram buckets)");
    return new FastText({ ...(o as Partial<FastTextOptions>), vocabSize: o.vocabSize, numClasses: nc(o) });
  });
}
