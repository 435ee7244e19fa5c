export { Optimizer, type OptimizerState, type ParamGroup, type ParamsArg } from './optimizer';
export { SGD, type SGDOptions } from './sgd';
export { Adam, AdamW, type AdamOptions } from './adam';
export * from './lr_scheduler';
export { clipGradNorm, clipGradValue } from './clip';
