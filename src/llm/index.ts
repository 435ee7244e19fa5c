// Teacher LLMs over HTTP: generating distillation data from any OpenAI-compatible Chat Completions endpoint.
export { generate, GenerationInterrupted, EndpointsUnavailable, type GenerateRuntime, type GenerateSummary, type RunStats, type RejectReason } from './generate';
export { generateConfigSchema, validateGenerateConfig, endpointKey, type GenerateConfig, type GenerateConfigInput } from './config';
export { readPrompts, sampleId, type ChatMessage, type PromptRecord, type ReadPromptsOptions } from './prompts';
export {
  chatCompletion, completeWithRetries, completionsUrl, backoffDelay, parseRetryAfter, redact, urlCredentials, RateLimiter, RequestError, RequestFailed, realClock,
  type ChoiceAnswer, type Clock, type Completion, type EndpointOptions, type TokenLogprob, type TopLogprob, type Usage,
} from './client';
export {
  registerVerifier, registerBuiltinVerifiers, getVerifier, verifierNames, extractFinalAnswer, sameAnswer, splitReasoning, assistantMessage, normalizeText,
  type Sample, type Verifier, type VerifierFactory, type VerifierOptions,
} from './curate';
export { EndpointPool, AllEndpointsDown, type EndpointReport, type PoolEndpoint, type PoolHooks, type PoolOptions } from './pool';
export { JsonlAppender, scanJsonl, writeLinesAtomic, type JsonlScan } from './store';
export {
  ByteTokenizer, BpeTokenizer, StreamDecoder, createTokenizer, tokenizerNames, checkSameVocabulary, encodeChat, chatPromptIds, EOT, type Tokenizer, type ChatTurn,
} from './tokenizer';
export {
  generateTokens, generateTokenSteps, sampleFromLogits, topIndices, chooseToken, checkGenerateRequest, TokenSampler,
  type SampleOptions, type GenerateOptions, type GenerateResult, type GeneratedToken, type StepDecoder, type BatchStepDecoder,
} from './decode';
export { DecodeBatcher, type BatcherOptions, type BatcherStats, type OnToken } from './batcher';
export { serve, promptLogprobs, DEFAULT_MAX_BODY_BYTES, type ServeOptions, type Server } from './serve';
export { scoreTokens, parseScores, checkScoreEndpoint, tokenIdOf, type ScoreEndpoint, type ScoredToken } from './score';
export {
  startFaultProxy, parseFaultSpec, checkFaultSpec, describeFaultSpec, faultPlan, FAULT_KINDS,
  type FaultSpec, type FaultKind, type FaultCounts, type FaultEvent, type FaultProxy, type FaultProxyOptions,
} from './faults';
export { saveDecoder, loadDecoder, readDecoderInfo, loadHfDecoder, isHfModelDir, type DecoderCheckpointInfo } from './decoder-checkpoint';
