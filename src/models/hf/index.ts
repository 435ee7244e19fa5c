// Models in the Hugging Face transformers layout: config.json + safetensors directories, the BERT, DistilBERT,
// GPT-2 and Llama / Qwen2 architectures with transformers' parameter names, tokenizer.json tokenizers and chat
// templates.
export { HfConfig, readJsonFile, type HfConfigObject } from './config';
export { HfPreTrainedModel, HfCausalLM, RMSNorm, Conv1D, additiveKeyMask, decoderPadding, FLOAT32_MIN, type DecoderCallOptions, type DecoderPadding } from './common';
export { hfRope, ropeContextLength, ROPE_TYPES, type HfRope } from './rope-config';
export {
  BertModel, BertForSequenceClassification, BertForMaskedLM, BertEmbeddings, BertSelfAttention, BertLayer, bertSettings,
  type BertSettings, type EncoderInputs,
} from './bert';
export {
  DistilBertModel, DistilBertForSequenceClassification, DistilBertForMaskedLM, MultiHeadSelfAttention, TransformerBlock, distilBertSettings,
  type DistilBertSettings,
} from './distilbert';
export { GPT2LMHeadModel, GPT2Model, GPT2Attention, GPT2Block, gpt2Settings, type Gpt2Settings } from './gpt2';
export { LlamaForCausalLM, Qwen2ForCausalLM, LlamaModel, LlamaAttention, LlamaDecoderLayer, LlamaMLP, llamaSettings, type LlamaSettings, type LlamaContext } from './llama';
export {
  loadHfModel, saveHfModel, loadHfWeights, createHfModel, hfArchitectures, hfWeightFiles, readGenerationConfig,
  CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE, GENERATION_CONFIG_FILE,
  type LoadedHfModel, type LoadWeightsOptions, type LoadWeightsResult, type SaveHfOptions, type HfGenerationConfig, type WeightFiles,
} from './checkpoint';
export {
  HfTokenizer, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, type ChatMessage, type EncodeOptions, type BatchEncoding,
} from './tokenizer';
