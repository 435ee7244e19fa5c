// tsdistill/nn: the module system (Module, layers, attention), the decoding building blocks (key/value caches,
// rotary embeddings), parameter initialisation, the functional API and weight files.
export * from './module';
export * from './layers';
export * from './attention';
export * from './kv-cache';
export * from './rope';
export * from './onnx';
export * from './quant';
export * as init from './init';
export * as F from './functional';
export * from './functional';
// names that both the layers and the functional API export: the layer ones win here (the functional ones stay
// available as F.*)
export type { ConvOptions, BatchNormOptions, MaxPool2dOptions, AvgPool2dOptions } from './layers';
export { saveWeights, loadWeights, checkFinite, NonFiniteWeights } from './checkpoint';
