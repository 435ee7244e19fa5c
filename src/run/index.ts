// tsdistill/run: configurations and what is done with them — the schema, config-driven runs, compare and its verdict,
// export of a configured model, plugins. The `tsdistill` command is a thin layer over this.
export {
  configSchema, parseConfig, validateConfig, loadConfig, applyOverrides, readConfigMapping, loadGenerateConfig, type RunConfig,
} from './config';
export {
  prepareConfig, runFromConfig, checkMatches, claimOutputDir, loadTeacher, buildModel, transformsFor, runDir, teacherWeights, datasetOf, modelOptions, prepareQatCheckpoint,
  evaluateFromConfig, type RunKind, type RunFlags, type EvalResult,
} from './runs';
export { compareFromConfig, compareSeeds, measureModel, formatTable, type ModelReport, type CompareResult, type SeedsResult } from './compare';
export { runExport, EXPORT_FORMATS, DEFAULT_CALIBRATION_BATCHES, type ExportArgs } from './export';
export { loadPlugins, pluginApi, type PluginApi } from './plugins';
export { stagedConfigSchema, isStagedConfig, validateStagedConfig, loadStagedConfig, runStagedConfig, stagesTable, type StagedConfig } from './stages';
export {
  schemeConfigSchema, isSchemeConfig, validateSchemeConfig, loadSchemeConfig, schemeStages, compareScheme, SCHEME_KINDS, type SchemeSpec, type SchemeConfig, type LoadedScheme,
  type SchemeRow, type SchemeCompareResult,
} from './schemes';
