export { Module, closest, type ForwardHook } from './module';
export * from './layers';
export * from './attention';
export * as init from './init';
export * as F from './functional';
export { saveWeights, loadWeights } from './checkpoint';
