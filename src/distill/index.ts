export { responseKD, hintonKD, softTargetLoss, softTerm, type ResponseKDOptions, type KDLossTerms, type SoftLoss } from './response';
export { teacherViews, viewCacheFile, readViewCache, writeViewCache, computeViewOutputs, drawAllViews, viewInput, viewsOf, ViewCacheBatches, softTopkLoss, type ViewCache, type ViewCacheOptions } from './view-cache';
export { teacherLogits, hashModule, hashDataset, teacherCacheFile, readTeacherCache, writeTeacherCache, computeTeacherLogits, type TeacherLogitsResult } from './teacher-cache';
export { trainModel, evaluate, deviceOf, TrainingInterrupted, type TrainOptions, type TrainSummary, type EpochMetrics } from './trainer';
export * from './losses';
export * from './schedules';
export { Ensemble, type EnsembleOptions } from './ensemble';
export { pseudoLabel, type PseudoLabelOptions, type PseudoLabelResult } from './transfer';
export { FeatureMatcher, Projection, planProjection, expandPattern, mapLayers, expandMatches, type LayerMap, registerLoss, registerBuiltinLosses, lossNames, getLoss, type LossDef, type LossNeeds, type LossContext, type MatchSpec } from './features';
export { distill, type DistillOptions, type ModelSpec } from './pipeline';
/** What `distill({ data })` takes: train/test splits, or a registered data set loaded by name. */
export { loadDataset, type DataSplits } from '../data';
export { prepareQat, type QatOptions } from './qat';
export { tokenKdLoss, topkForwardKl, TOKEN_KD_LOSSES, type TokenKdLoss, type TokenKdOptions } from './token-kd';
export {
  sft, evaluateNll, packChats, packTexts, readChatJsonl, windowStarts, type SftOptions, type SftKdOptions, type SftSummary, type ChatExample, type TokenStream,
} from './sft';
export {
  runEngine, EngineStep, makeOptimizer, makeLrSchedule, stepSeed, type EngineOptions, type StepSpec, type StepBatch, type StepResult, type RoleSpec, type TermSpec, type UpdateSpec, type OptimizerSpec, type LrScheduleSpec, type StepAware,
} from './engine';
export { RunDir, readRunJson, readRunState, type RunState } from './rundir';
export { weightedSum, lossTensor, lossValue, lossNumber, resolveOptions, type LossResult, type ScaledLoss, type WeightSpec } from './terms';
export { runStages, type StageSpec, type StageContext, type StagesResult } from './stages';
export {
  mutualTerms, kdTerms, ceTerms, selfDistillTerms, classWiseTerms, virtualTeacherTerms, fspTerms, PairedBatches, runPlans, mutualLearning, bornAgain,
  teacherAssistant, selfDistillation, exitAccuracies, classWiseSelfKD, teacherFreeKD, fspDistill, moduleReplacement, ensembleAccuracy,
  type MutualOptions, type SelfDistillOptions, type VirtualTeacherOptions, type SchemeRunOptions, type Peer,
} from './schemes';
export { peerMeanKl, classWiseKl, virtualTeacherKl, fspPooled } from './scheme-losses';
export { NoiseBatches, daflOneHot, daflActivation, daflEntropy, bnStats, tvPrior, l2Prior, adaptiveJs, dfadAdversarial, logitL1, type NoiseOptions } from './datafree';
export { dataFree, dataFreeSpec, batchNormTaps, DATA_FREE_METHODS, type DataFreeMethod, type DataFreeOptions, type DataFreeWeights } from './datafree-run';
export { advDiscriminatorLoss, advStudentLoss, bssKl, bssAttack, BssBatches, IGNORE_LABEL, type AdversarialForm, type BssAttackOptions, type BssBatchesOptions } from './adversarial';
export { adversarial, adversarialSpec, ADVERSARIAL_METHODS, type AdversarialMethod, type AdversarialOptions, type DiscriminatorSettings, type BssSettings } from './adversarial-run';
export { crossModalDigits, crossModalTerms, pairByClass, CrossModalBatches, registerCrossModalLosses, type CrossModalDigitsOptions, type CrossModalDigitsResult, type CrossModalBatchesOptions } from './cross-modal';
export {
  bertRecipeStages, bertConfig, newBert, PackedMaskedLM, baseOf, initFromTeacher, everyOtherLayer, tinybertLayerMap, theseusBert, DISTILBERT_LAYER_MAP, BERT_RECIPES,
  type BertRecipe, type BertRecipeOptions, type BertRecipeData, type BertSize, type BertArchitecture,
} from './bert-recipes';
export {
  registerBertRecipeLosses, mlmCrossEntropy, mlmKdLoss, maskedCosineLoss, maskedHiddenMseLoss, attentionScores, tinybertAttentionMse, maskedAttentionKl, maskedSelfRelation, maskedRelationKl,
} from './bert-recipes-losses';
