// tsdistill: knowledge distillation for TypeScript on libtorch.
export * from './torch';
export * as nn from './nn';
export * as optim from './optim';
export * as data from './data';
export * as models from './models';
export * from './distill';
export * from './export';
export * from './teachers';
export * as report from './report';
export * as llm from './llm';
export * from './run';
export * as search from './search';
