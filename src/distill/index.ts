export { responseKD, hintonKD, softTargetLoss, type ResponseKDOptions, type KDLossTerms, type SoftLoss } from './response';
