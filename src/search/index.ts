// Searching for the student: the space of a zoo family, the strategies (successive halving, regularized evolution),
// the Pareto front, the deployment costs measured before training, the plot. The configuration-driven search that
// trains candidates with the engine is `searchStudent` in run/search.ts.
export { SEARCH_FAMILIES, FAMILIES, familyDimensions, resolveSpace, dimsKey, enumerateSpace, candidateModel, mutate, type SearchFamily, type Dims, type Space, type SpaceContext } from './space';
export { dominates, paretoFront, halvingKeep, successiveHalving, regularizedEvolution, checkRungs, type Point, type RungResult, type StrategyCallbacks, type EvolutionResult } from './strategy';
export { searchSpecSchema, type SearchSpec } from './schema';
export { int8Bytes, onnxLatencyMs } from './measure';
export { scatterSvg, type ScatterPoint } from './plot';
