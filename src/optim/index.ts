export {
  Optimizer, type OptimizerStateDict, type OptimizerState, type OptimizerMeta, type ParamGroup, type ParamGroupInput, type ParamState, type ParamsArg,
} from './optimizer';
export { SGD, type SGDOptions } from './sgd';
export { Adam, AdamW, type AdamOptions } from './adam';
export {
  LRScheduler, StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, LambdaLR, SequentialLR, warmup, warmupCosine, type SchedulerState,
} from './lr_scheduler';
export { clipGradNorm, clipGradValue } from './clip';
