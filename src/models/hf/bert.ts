// BERT with transformers' parameter names and math (modeling_bert.py, eager attention): BertModel and its
// sequence-classification and masked-LM heads.
//
//   bert.embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}
//   bert.encoder.layer.{i}.attention.self.{query, key, value}   .attention.output.{dense, LayerNorm}
//   bert.encoder.layer.{i}.intermediate.dense   .output.{dense, LayerNorm}
//   bert.pooler.dense                              (tanh of the first token's state)
//   classifier                                     (BertForSequenceClassification, on the pooled output)
//   cls.predictions.transform.{dense, LayerNorm}   cls.predictions.bias   (BertForMaskedLM; the decoder weight is
//                                                   the word embedding, tied, unless tie_word_embeddings is false)
//
// Padding: `attentionMask` [B, S] (1 = token, 0 = padding) adds the most negative float to the padded keys' scores,
// as transformers does. The self-attention module returns [context, probabilities]; the probabilities [B, H, L, S]
// are computed only when a hook observes the module (`captureFeatures` stores them as `<path>#1`).
import { Tensor, arange, ops, zeros } from '../../torch';
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, scaledDotProductAttention } from '../../nn';
import type { HfConfig } from './config';
import { HfPreTrainedModel, additiveKeyMask, checkIds } from './common';

export interface EncoderInputs {
  /** [B, S], 1 for tokens and 0 for padding (default: all ones). */
  attentionMask?: Tensor | null;
  /** [B, S] segment ids (default: zeros). BERT only. */
  tokenTypeIds?: Tensor | null;
}

/** The settings of a BERT config.json this implementation reads. */
export interface BertSettings {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  eps: number;
  act: 'gelu' | 'gelu_new' | 'relu';
  hiddenDropout: number;
  attentionDropout: number;
  padTokenId: number;
  tieWordEmbeddings: boolean;
}

export function bertSettings(c: HfConfig): BertSettings {
  c.refuse('position_embedding_type', ['absolute'], 'only absolute position embeddings are implemented');
  c.refuse('is_decoder', [false], 'BERT as a decoder is not implemented');
  const s: BertSettings = {
    vocabSize: c.int('vocab_size'),
    hiddenSize: c.int('hidden_size', 768),
    numLayers: c.int('num_hidden_layers', 12),
    numHeads: c.int('num_attention_heads', 12),
    intermediateSize: c.int('intermediate_size', 3072),
    maxPositions: c.int('max_position_embeddings', 512),
    typeVocabSize: c.int('type_vocab_size', 2),
    eps: c.num('layer_norm_eps', 1e-12),
    act: c.str('hidden_act', 'gelu', ['gelu', 'gelu_new', 'relu']) as BertSettings['act'],
    hiddenDropout: dropoutOf(c, 'hidden_dropout_prob', 0.1),
    attentionDropout: dropoutOf(c, 'attention_probs_dropout_prob', 0.1),
    padTokenId: c.int('pad_token_id', 0, 0),
    tieWordEmbeddings: c.bool('tie_word_embeddings', true),
  };
  if (s.hiddenSize % s.numHeads !== 0) throw new Error(`${c.source}: hidden_size ${s.hiddenSize} is not a multiple of num_attention_heads ${s.numHeads}`);
  return s;
}

/** A dropout probability in [0, 1) (0 when the key is missing and no fallback is given). */
export function dropoutOf(c: HfConfig, key: string, fallback: number): number {
  const v = c.raw[key] ?? fallback;
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new Error(`${c.source}: '${key}' must be a number in [0, 1), got ${JSON.stringify(v)}`);
  return v;
}

export function activation(x: Tensor, act: 'gelu' | 'gelu_new' | 'relu'): Tensor {
  return act === 'gelu' ? x.gelu() : act === 'gelu_new' ? x.gelu('tanh') : x.relu();
}

export class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(readonly s: BertSettings) {
    super();
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(s.vocabSize, s.hiddenSize, { paddingIdx: s.padTokenId < s.vocabSize ? s.padTokenId : undefined }));
    this.position_embeddings = this.registerModule('position_embeddings', new Embedding(s.maxPositions, s.hiddenSize));
    this.token_type_embeddings = this.registerModule('token_type_embeddings', new Embedding(s.typeVocabSize, s.hiddenSize));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(s.hiddenSize, { eps: s.eps }));
    this.dropout = this.registerModule('dropout', new Dropout(s.hiddenDropout));
  }
  forward(ids: Tensor, tokenTypeIds: Tensor | null = null): Tensor {
    const [B, S] = ids.shape;
    const tt = tokenTypeIds ?? zeros([B, S], { dtype: 'int64', device: ids.device });
    if (tt.ndim !== 2 || tt.shape[0] !== B || tt.shape[1] !== S)
      throw new Error(`BertEmbeddings: tokenTypeIds must be [${B}, ${S}] like the input ids, got [${tt.shape.join(', ')}]`);
    const pos = arange(0, S, 1, { dtype: 'int64', device: ids.device }).view(1, S);
    const x = this.word_embeddings.call(ids).add(this.token_type_embeddings.call(tt)).add(this.position_embeddings.call(pos));
    return this.dropout.call(this.LayerNorm.call(x));
  }
}

export class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly dropout: Dropout;
  readonly headDim: number;
  constructor(readonly s: BertSettings) {
    super();
    this.headDim = s.hiddenSize / s.numHeads;
    this.query = this.registerModule('query', new Linear(s.hiddenSize, s.hiddenSize));
    this.key = this.registerModule('key', new Linear(s.hiddenSize, s.hiddenSize));
    this.value = this.registerModule('value', new Linear(s.hiddenSize, s.hiddenSize));
    this.dropout = this.registerModule('dropout', new Dropout(s.attentionDropout));
  }
  /** x [B, L, C], mask: the additive [B, 1, 1, L] mask or null. Returns [context [B, L, C], probabilities or null]. */
  forward(x: Tensor, mask: Tensor | null = null): [Tensor, Tensor | null] {
    const [B, L, C] = x.shape;
    const H = this.s.numHeads;
    const heads = (t: Tensor) => t.view(B, L, H, this.headDim).transpose(1, 2);
    const [ctx, probs] = scaledDotProductAttention(heads(this.query.call(x)), heads(this.key.call(x)), heads(this.value.call(x)), {
      mask: mask ?? undefined,
      dropout: this.training ? this.dropout.p : 0,
      needWeights: this.hasForwardHooks(),
    });
    return [ctx.transpose(1, 2).reshape(B, L, C), probs];
  }
}

/** dense, dropout, LayerNorm(· + residual): BertSelfOutput and BertOutput. */
export class BertResidualOutput extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(inFeatures: number, s: BertSettings) {
    super();
    this.dense = this.registerModule('dense', new Linear(inFeatures, s.hiddenSize));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(s.hiddenSize, { eps: s.eps }));
    this.dropout = this.registerModule('dropout', new Dropout(s.hiddenDropout));
  }
  forward(h: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.call(this.dropout.call(this.dense.call(h)).add(residual));
  }
}

export class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertResidualOutput;
  constructor(s: BertSettings) {
    super();
    this.self = this.registerModule('self', new BertSelfAttention(s));
    this.output = this.registerModule('output', new BertResidualOutput(s.hiddenSize, s));
  }
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    return this.output.call(this.self.call(x, mask)[0], x);
  }
}

export class BertIntermediate extends Module {
  readonly dense: Linear;
  constructor(readonly s: BertSettings) {
    super();
    this.dense = this.registerModule('dense', new Linear(s.hiddenSize, s.intermediateSize));
  }
  forward(x: Tensor): Tensor {
    return activation(this.dense.call(x), this.s.act);
  }
}

export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertResidualOutput;
  constructor(s: BertSettings) {
    super();
    this.attention = this.registerModule('attention', new BertAttention(s));
    this.intermediate = this.registerModule('intermediate', new BertIntermediate(s));
    this.output = this.registerModule('output', new BertResidualOutput(s.intermediateSize, s));
  }
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    const a = this.attention.call(x, mask);
    return this.output.call(this.intermediate.call(a), a);
  }
}

export class BertEncoder extends Module {
  readonly layer: ModuleList<BertLayer>;
  constructor(s: BertSettings) {
    super();
    this.layer = this.registerModule('layer', new ModuleList(Array.from({ length: s.numLayers }, () => new BertLayer(s))));
  }
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    for (const l of this.layer.children() as BertLayer[]) x = l.call(x, mask);
    return x;
  }
}

export class BertPooler extends Module {
  readonly dense: Linear;
  constructor(s: BertSettings) {
    super();
    this.dense = this.registerModule('dense', new Linear(s.hiddenSize, s.hiddenSize));
  }
  forward(h: Tensor): Tensor {
    return this.dense.call(h.select(1, 0)).tanh();
  }
}

/** The encoder: `call(ids, { attentionMask, tokenTypeIds })` gives the last hidden state [B, S, hidden]. */
export class BertModel extends HfPreTrainedModel {
  readonly architecture: string = 'BertModel';
  readonly basePrefix: string = '';
  readonly modelType = 'bert';
  readonly settings: BertSettings;
  readonly embeddings: BertEmbeddings;
  readonly encoder: BertEncoder;
  readonly pooler: BertPooler | null;
  /**
   * When no `attentionMask` is given, treat the ids equal to pad_token_id as padding (the project's text batches: id 0
   * pads). Off by default, as in transformers, where a missing mask attends to every position.
   */
  maskPaddingIds = false;
  constructor(config: HfConfig, opts: { pooler?: boolean } = {}) {
    super(config);
    const s = (this.settings = bertSettings(config));
    this.embeddings = this.registerModule('embeddings', new BertEmbeddings(s));
    this.encoder = this.registerModule('encoder', new BertEncoder(s));
    this.pooler = opts.pooler === false ? null : this.registerModule('pooler', new BertPooler(s));
    this.ignoredKeys.push(/^embeddings\.position_ids$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    checkIds(ids, this.settings.maxPositions, 'BertModel');
    const [B, S] = ids.shape;
    const given = inputs.attentionMask ?? (this.maskPaddingIds ? ids.ne(this.settings.padTokenId) : null);
    const mask = additiveKeyMask(given, B, S, 'BertModel');
    return this.encoder.call(this.embeddings.call(ids, inputs.tokenTypeIds ?? null), mask);
  }
}

/** `call(ids, inputs)` gives logits [B, num_labels] from the pooled first token. */
export class BertForSequenceClassification extends HfPreTrainedModel {
  readonly architecture = 'BertForSequenceClassification';
  readonly basePrefix = 'bert';
  readonly modelType = 'bert';
  readonly bert: BertModel;
  readonly dropout: Dropout;
  readonly classifier: Linear;
  readonly numLabels: number;
  constructor(config: HfConfig) {
    super(config);
    this.bert = this.registerModule('bert', new BertModel(config));
    this.numLabels = config.numLabels();
    const p = config.has('classifier_dropout') ? dropoutOf(config, 'classifier_dropout', 0) : this.bert.settings.hiddenDropout;
    this.dropout = this.registerModule('dropout', new Dropout(p));
    this.classifier = this.registerModule('classifier', new Linear(this.bert.settings.hiddenSize, this.numLabels));
    this.ignoredKeys.push(/^bert\.embeddings\.position_ids$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    const h = this.bert.call(ids, inputs);
    return this.classifier.call(this.dropout.call(this.bert.pooler!.call(h)));
  }
}

export class BertPredictionHeadTransform extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  constructor(readonly s: BertSettings) {
    super();
    this.dense = this.registerModule('dense', new Linear(s.hiddenSize, s.hiddenSize));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(s.hiddenSize, { eps: s.eps }));
  }
  forward(x: Tensor): Tensor {
    return this.LayerNorm.call(activation(this.dense.call(x), this.s.act));
  }
}

/** transform, then the decoder: the word embedding (tied) or its own `decoder` weight, plus `bias`. */
export class BertLMPredictionHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly decoder: Linear | null;
  readonly bias: Tensor;
  constructor(s: BertSettings, private readonly tiedTo: Embedding) {
    super();
    this.transform = this.registerModule('transform', new BertPredictionHeadTransform(s));
    this.decoder = s.tieWordEmbeddings ? null : this.registerModule('decoder', new Linear(s.hiddenSize, s.vocabSize, { bias: false }));
    this.bias = this.registerParameter('bias', zeros([s.vocabSize]));
  }
  forward(x: Tensor): Tensor {
    return ops.linear(this.transform.call(x), (this.decoder ?? this.tiedTo).weight, this.bias);
  }
}

export class BertOnlyMLMHead extends Module {
  readonly predictions: BertLMPredictionHead;
  constructor(s: BertSettings, tiedTo: Embedding) {
    super();
    this.predictions = this.registerModule('predictions', new BertLMPredictionHead(s, tiedTo));
  }
  forward(x: Tensor): Tensor {
    return this.predictions.call(x);
  }
}

/** `call(ids, inputs)` gives token logits [B, S, vocab]. */
export class BertForMaskedLM extends HfPreTrainedModel {
  readonly architecture = 'BertForMaskedLM';
  readonly basePrefix = 'bert';
  readonly modelType = 'bert';
  readonly bert: BertModel;
  readonly cls: BertOnlyMLMHead;
  constructor(config: HfConfig) {
    super(config);
    this.bert = this.registerModule('bert', new BertModel(config, { pooler: false }));
    this.cls = this.registerModule('cls', new BertOnlyMLMHead(this.bert.settings, this.bert.embeddings.word_embeddings));
    // the decoder's weight and bias are the tied word embedding and cls.predictions.bias; checkpoints written by the
    // original BERT code also hold the pooler and the next-sentence head
    this.ignoredKeys.push(/^bert\.embeddings\.position_ids$/, /^cls\.predictions\.decoder\.bias$/);
    if (this.bert.settings.tieWordEmbeddings) this.ignoredKeys.push(/^cls\.predictions\.decoder\.weight$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    return this.cls.call(this.bert.call(ids, inputs));
  }
}
