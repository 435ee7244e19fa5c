// A decoder checkpoint is one safetensors file: the weights under their state_dict keys, and in its metadata the
// architecture (`decoder`: the DecoderOptions as JSON) and the tokenizer's name (`tokenizer`), so `serve` and `sft`
// rebuild the model from the file alone. A Hugging Face model directory (config.json + safetensors + tokenizer.json)
// is the other form a decoder comes in: `loadHfDecoder`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, dispose } from '../torch';
import { GPT, checkDecoderOptions, type DecoderOptions } from '../models/gpt';
import { NonFiniteWeights, checkFinite } from '../nn';
import { createTokenizer, type Tokenizer } from './tokenizer';
import { HfCausalLM, HfTokenizer, loadHfModel } from '../models/hf';

export interface DecoderCheckpointInfo {
  options: DecoderOptions;
  tokenizer: string;
  metadata: Record<string, string>;
}

/** Writes `model` with its architecture and tokenizer name (atomically). `extra` adds metadata entries. */
export function saveDecoder(model: GPT, file: string, tokenizer: Tokenizer | string, extra: Record<string, string> = {}): void {
  const name = typeof tokenizer === 'string' ? tokenizer : tokenizer.name;
  const tok = typeof tokenizer === 'string' ? createTokenizer(tokenizer) : tokenizer;
  if (tok.vocabSize > model.vocabSize)
    throw new Error(`saveDecoder(${file}): the tokenizer '${name}' has ${tok.vocabSize} ids but the model's vocabulary only ${model.vocabSize}`);
  saveSafetensors(file, model.stateDict(), { ...extra, format: 'pt', decoder: JSON.stringify(model.options), tokenizer: name });
}

/** The architecture and tokenizer recorded in a decoder checkpoint (reads only the header). */
export function readDecoderInfo(file: string): DecoderCheckpointInfo {
  const { metadata } = readSafetensorsHeader(file);
  const md = metadata ?? {};
  if (typeof md.decoder !== 'string' || typeof md.tokenizer !== 'string')
    throw new Error(`${file}: not a decoder checkpoint (its metadata has no 'decoder' and 'tokenizer' entries; write it with saveDecoder)`);
  let options: DecoderOptions;
  try {
    options = JSON.parse(md.decoder);
  } catch (e) {
    throw new Error(`${file}: metadata 'decoder' is not JSON: ${(e as Error).message}`);
  }
  checkDecoderOptions(options, `${file}: metadata 'decoder'`);
  return { options, tokenizer: md.tokenizer, metadata: md };
}

/** Rebuilds the decoder and its tokenizer from a checkpoint written by `saveDecoder`. */
export function loadDecoder(file: string): { model: GPT; tokenizer: Tokenizer; info: DecoderCheckpointInfo } {
  const info = readDecoderInfo(file);
  const tokenizer = createTokenizer(info.tokenizer);
  const model = new GPT(info.options);
  const { tensors } = loadSafetensors(file);
  try {
    checkFinite(tensors, file);
    model.loadStateDict(tensors);
  } catch (e) {
    model.dispose();
    throw e instanceof NonFiniteWeights ? e : new Error(`${file}: ${(e as Error).message}`, { cause: e });
  } finally {
    dispose(tensors);
  }
  return { model, tokenizer, info };
}

/** True when `p` is a Hugging Face model directory (it holds config.json). */
export function isHfModelDir(p: string): boolean {
  return fs.existsSync(path.join(p, 'config.json')) && fs.statSync(p).isDirectory();
}

/**
 * A decoder from a Hugging Face directory (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM) with its
 * tokenizer.json tokenizer (`tokenizer` overrides: another directory's).
 */
export function loadHfDecoder(dir: string, tokenizerDir = dir): { model: HfCausalLM; tokenizer: HfTokenizer; stopTokens: number[] } {
  const { model, generation } = loadHfModel(dir);
  if (!(model instanceof HfCausalLM)) {
    model.dispose();
    throw new Error(`${dir}: ${model.architecture} is not a causal language model (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM)`);
  }
  let tokenizer: HfTokenizer;
  try {
    tokenizer = HfTokenizer.fromDir(tokenizerDir);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, tokenizer, stopTokens: generation?.eosTokenIds ?? [] };
}
