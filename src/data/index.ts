export * from './idx';
export * from './dataset';
export * from './mnist';
export * from './dataloader';
export * from './transforms';
export * from './text';
export { Rng, mixSeed } from './rng';
export * from './imagefolder';
export * from './vocab';
