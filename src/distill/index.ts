export { responseKD, hintonKD, softTargetLoss, type ResponseKDOptions, type KDLossTerms, type SoftLoss } from './response';
export { teacherLogits, hashModule, hashDataset, type TeacherLogitsResult } from './teacher-cache';
