// tsdistill/run: configurations and what is done with them — the schema, config-driven runs, compare and its verdict,
// export of a configured model, plugins. The `tsdistill` command is a thin layer over this.
export {
  configSchema, parseConfig, validateConfig, loadConfig, applyOverrides, readConfigMapping, loadGenerateConfig, configDataset, ownDataSpec, type RunConfig,
} from './config';
export {
  prepareConfig, runFromConfig, checkMatches, claimOutputDir, loadTeacher, buildModel, transformsFor, runDir, teacherWeights, datasetOf, modelOptions, prepareQatCheckpoint,
  loadConfigData, inputOf,
  evaluateFromConfig, holdsRun, finishedRunSummary, withRunTimes, type RunKind, type RunFlags, type EvalResult,
} from './runs';
export { compareFromConfig, compareSeeds, measureModel, timeForward, formatTable, setupLine, verdictLines, type ModelReport, type CompareResult, type CompareSetup, type SeedsResult } from './compare';
export { welch, tTwoSided, incompleteBeta, type WelchResult } from './stats';
export { runExport, EXPORT_FORMATS, DEFAULT_CALIBRATION_BATCHES, type ExportArgs } from './export';
export { loadPlugins, pluginApi, type PluginApi } from './plugins';
export { stagedConfigSchema, isStagedConfig, validateStagedConfig, loadStagedConfig, runStagedConfig, stagesTable, type StagedConfig } from './stages';
export { launch, takeLaunchFlags, joinProcessGroupFromEnv, freePort, type LaunchOptions } from './launch';
export {
  schemeConfigSchema, isSchemeConfig, validateSchemeConfig, loadSchemeConfig, schemeStages, compareScheme, SCHEME_KINDS, type SchemeSpec, type SchemeConfig, type LoadedScheme,
  type SchemeRow, type SchemeCompareResult,
} from './schemes';
export { dataFreeConfigSchema, isDataFreeConfig, validateDataFreeConfig, loadDataFreeConfig, runDataFreeConfig, type DataFreeConfig } from './datafree';
export {
  isSearchConfig, validateSearchConfig, loadSearchConfig, searchStudent, searchTables, searchLines, type LoadedSearch, type CandidateRecord, type SearchState, type SearchOptions,
  type SearchResult, type FinalResult,
} from './search';
export {
  adversarialConfigSchema, isAdversarialConfig, validateAdversarialConfig, loadAdversarialConfig, runAdversarialConfig, compareAdversarial, adversarialTable,
  type AdversarialConfig, type AdversarialCompareResult, type AdversarialCompareRow,
} from './adversarial';
export { bertConfigSchema, isBertConfig, validateBertConfig, loadBertConfig, runBertConfig, bertTable, runBertSeeds, bertSeedsTable, type BertSeedsResult, type BertRunConfig, type BertRunResult, type BertRecipeRow } from './bert';
