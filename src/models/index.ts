export { LeNet5, LeNet5Half, LeNet5HalfDafl } from './lenet';
export { Mlp, type MlpOptions } from './mlp';
export { ResNetCifar, BasicBlock } from './resnet';
export { WideResNet } from './wrn';
export { Vgg, VGG_CONFIGS } from './vgg';
export { MobileNetV2, InvertedResidual, makeDivisible, type MobileNetV2Options } from './mobilenetv2';
export { TransformerClassifier, MaskedMeanPool, type TransformerClassifierOptions } from './transformer';
export { DaflGenerator, type DaflGeneratorOptions } from './generator';
export { Discriminator, type DiscriminatorOptions } from './discriminator';
export { FastText, BagMean, type FastTextOptions } from './fasttext';
export { AudioCnn, type AudioCnnOptions } from './audio';
export { createModel, registerModel, registerBuiltinModels, modelNames, modelOptionNames, checkModelOptions, type ModelFactory, type ModelOptions } from './registry';
export { type ModelOptionShape } from './options';
export {
  GPT, createDecoder, checkDecoderOptions, applyRope, KVCache, CausalSelfAttention, DecoderBlock, DecoderMLP,
  type DecoderOptions,
} from './gpt';
export { MultiExit, ExitHead } from './exits';
export { Replaceable, replaceModules, theseusResnet, theseusTransformer, replaceProbability, type ReplaceOptions, type ReplaceSchedule } from './theseus';
export * as hf from './hf';
export { loadHfModel, saveHfModel, createHfModel, HfTokenizer, HfCausalLM, HfPreTrainedModel } from './hf';
