export { responseKD, hintonKD, softTargetLoss, type ResponseKDOptions, type KDLossTerms, type SoftLoss } from './response';
export { teacherLogits, hashModule, hashDataset, type TeacherLogitsResult } from './teacher-cache';
export { trainModel, evaluate, type TrainOptions, type TrainSummary, type EpochMetrics } from './trainer';
