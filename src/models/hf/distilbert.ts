// DistilBERT with transformers' parameter names and math (modeling_distilbert.py):
//
//   distilbert.embeddings.{word_embeddings, position_embeddings, LayerNorm}     (no token types; LayerNorm eps 1e-12)
//   distilbert.transformer.layer.{i}.attention.{q_lin, k_lin, v_lin, out_lin}  .sa_layer_norm
//   distilbert.transformer.layer.{i}.ffn.{lin1, lin2}                          .output_layer_norm
//   pre_classifier, classifier                      (DistilBertForSequenceClassification: first token, ReLU)
//   vocab_transform, vocab_layer_norm, vocab_projector.bias  (DistilBertForMaskedLM; the projector's weight is the
//                                                    word embedding, tied)
//
// Padded keys (attentionMask 0) get the most negative float as their score, as transformers does. The attention
// module returns [output, probabilities]; probabilities are computed only when a hook observes it.
import { Tensor, arange, ops, zeros } from '../../torch';
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, scaledDotProductAttention } from '../../nn';
import type { HfConfig } from './config';
import { HfPreTrainedModel, additiveKeyMask, checkIds } from './common';
import { activation, dropoutOf, type EncoderInputs } from './bert';

export interface DistilBertSettings {
  vocabSize: number;
  dim: number;
  nLayers: number;
  nHeads: number;
  hiddenDim: number;
  maxPositions: number;
  act: 'gelu' | 'relu';
  dropout: number;
  attentionDropout: number;
  padTokenId: number;
}

export function distilBertSettings(c: HfConfig): DistilBertSettings {
  const s: DistilBertSettings = {
    vocabSize: c.int('vocab_size'),
    dim: c.int('dim', 768),
    nLayers: c.int('n_layers', 6),
    nHeads: c.int('n_heads', 12),
    hiddenDim: c.int('hidden_dim', 3072),
    maxPositions: c.int('max_position_embeddings', 512),
    act: c.str('activation', 'gelu', ['gelu', 'relu']) as 'gelu' | 'relu',
    dropout: dropoutOf(c, 'dropout', 0.1),
    attentionDropout: dropoutOf(c, 'attention_dropout', 0.1),
    padTokenId: c.int('pad_token_id', 0, 0),
  };
  if (s.dim % s.nHeads !== 0) throw new Error(`${c.source}: dim ${s.dim} is not a multiple of n_heads ${s.nHeads}`);
  return s;
}

export class DistilBertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(s: DistilBertSettings) {
    super();
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(s.vocabSize, s.dim, { paddingIdx: s.padTokenId < s.vocabSize ? s.padTokenId : undefined }));
    this.position_embeddings = this.registerModule('position_embeddings', new Embedding(s.maxPositions, s.dim));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(s.dim, { eps: 1e-12 }));
    this.dropout = this.registerModule('dropout', new Dropout(s.dropout));
  }
  forward(ids: Tensor): Tensor {
    const S = ids.shape[1];
    const pos = arange(0, S, 1, { dtype: 'int64', device: ids.device }).view(1, S);
    return this.dropout.call(this.LayerNorm.call(this.word_embeddings.call(ids).add(this.position_embeddings.call(pos))));
  }
}

export class MultiHeadSelfAttention extends Module {
  readonly q_lin: Linear;
  readonly k_lin: Linear;
  readonly v_lin: Linear;
  readonly out_lin: Linear;
  readonly dropout: Dropout;
  constructor(readonly s: DistilBertSettings) {
    super();
    this.q_lin = this.registerModule('q_lin', new Linear(s.dim, s.dim));
    this.k_lin = this.registerModule('k_lin', new Linear(s.dim, s.dim));
    this.v_lin = this.registerModule('v_lin', new Linear(s.dim, s.dim));
    this.out_lin = this.registerModule('out_lin', new Linear(s.dim, s.dim));
    this.dropout = this.registerModule('dropout', new Dropout(s.attentionDropout));
  }
  forward(x: Tensor, mask: Tensor | null = null): [Tensor, Tensor | null] {
    const [B, L, C] = x.shape;
    const H = this.s.nHeads;
    const heads = (t: Tensor) => t.view(B, L, H, C / H).transpose(1, 2);
    const [ctx, probs] = scaledDotProductAttention(heads(this.q_lin.call(x)), heads(this.k_lin.call(x)), heads(this.v_lin.call(x)), {
      mask: mask ?? undefined,
      dropout: this.training ? this.dropout.p : 0,
      needWeights: this.hasForwardHooks(),
    });
    return [this.out_lin.call(ctx.transpose(1, 2).reshape(B, L, C)), probs];
  }
}

export class FFN extends Module {
  readonly lin1: Linear;
  readonly lin2: Linear;
  readonly dropout: Dropout;
  constructor(readonly s: DistilBertSettings) {
    super();
    this.lin1 = this.registerModule('lin1', new Linear(s.dim, s.hiddenDim));
    this.lin2 = this.registerModule('lin2', new Linear(s.hiddenDim, s.dim));
    this.dropout = this.registerModule('dropout', new Dropout(s.dropout));
  }
  forward(x: Tensor): Tensor {
    return this.dropout.call(this.lin2.call(activation(this.lin1.call(x), this.s.act)));
  }
}

export class TransformerBlock extends Module {
  readonly attention: MultiHeadSelfAttention;
  readonly sa_layer_norm: LayerNorm;
  readonly ffn: FFN;
  readonly output_layer_norm: LayerNorm;
  constructor(s: DistilBertSettings) {
    super();
    this.attention = this.registerModule('attention', new MultiHeadSelfAttention(s));
    this.sa_layer_norm = this.registerModule('sa_layer_norm', new LayerNorm(s.dim, { eps: 1e-12 }));
    this.ffn = this.registerModule('ffn', new FFN(s));
    this.output_layer_norm = this.registerModule('output_layer_norm', new LayerNorm(s.dim, { eps: 1e-12 }));
  }
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    const sa = this.sa_layer_norm.call(this.attention.call(x, mask)[0].add(x));
    return this.output_layer_norm.call(this.ffn.call(sa).add(sa));
  }
}

export class DistilBertTransformer extends Module {
  readonly layer: ModuleList<TransformerBlock>;
  constructor(s: DistilBertSettings) {
    super();
    this.layer = this.registerModule('layer', new ModuleList(Array.from({ length: s.nLayers }, () => new TransformerBlock(s))));
  }
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    for (const l of this.layer.children() as TransformerBlock[]) x = l.call(x, mask);
    return x;
  }
}

/** The encoder: `call(ids, { attentionMask })` gives the last hidden state [B, S, dim]. */
export class DistilBertModel extends HfPreTrainedModel {
  readonly architecture: string = 'DistilBertModel';
  readonly basePrefix: string = '';
  readonly modelType = 'distilbert';
  readonly settings: DistilBertSettings;
  readonly embeddings: DistilBertEmbeddings;
  readonly transformer: DistilBertTransformer;
  constructor(config: HfConfig) {
    super(config);
    const s = (this.settings = distilBertSettings(config));
    this.embeddings = this.registerModule('embeddings', new DistilBertEmbeddings(s));
    this.transformer = this.registerModule('transformer', new DistilBertTransformer(s));
    this.ignoredKeys.push(/^embeddings\.position_ids$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    checkIds(ids, this.settings.maxPositions, 'DistilBertModel');
    if (inputs.tokenTypeIds != null) throw new Error('DistilBertModel: DistilBERT has no token types (tokenTypeIds)');
    const [B, S] = ids.shape;
    return this.transformer.call(this.embeddings.call(ids), additiveKeyMask(inputs.attentionMask, B, S, 'DistilBertModel'));
  }
}

/** `call(ids, { attentionMask })` gives logits [B, num_labels] from the first token (pre_classifier, ReLU). */
export class DistilBertForSequenceClassification extends HfPreTrainedModel {
  readonly architecture = 'DistilBertForSequenceClassification';
  readonly basePrefix = 'distilbert';
  readonly modelType = 'distilbert';
  readonly distilbert: DistilBertModel;
  readonly pre_classifier: Linear;
  readonly classifier: Linear;
  readonly dropout: Dropout;
  readonly numLabels: number;
  constructor(config: HfConfig) {
    super(config);
    this.distilbert = this.registerModule('distilbert', new DistilBertModel(config));
    const d = this.distilbert.settings.dim;
    this.numLabels = config.numLabels();
    this.pre_classifier = this.registerModule('pre_classifier', new Linear(d, d));
    this.classifier = this.registerModule('classifier', new Linear(d, this.numLabels));
    this.dropout = this.registerModule('dropout', new Dropout(dropoutOf(config, 'seq_classif_dropout', 0.2)));
    this.ignoredKeys.push(/^distilbert\.embeddings\.position_ids$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    const h = this.distilbert.call(ids, inputs).select(1, 0);
    return this.classifier.call(this.dropout.call(this.pre_classifier.call(h).relu()));
  }
}

/** `call(ids, { attentionMask })` gives token logits [B, S, vocab]. */
export class DistilBertForMaskedLM extends HfPreTrainedModel {
  readonly architecture = 'DistilBertForMaskedLM';
  readonly basePrefix = 'distilbert';
  readonly modelType = 'distilbert';
  readonly distilbert: DistilBertModel;
  readonly vocab_transform: Linear;
  readonly vocab_layer_norm: LayerNorm;
  /** The projector's bias; its weight is the word embedding (tied), as `vocab_projector.weight` in transformers. */
  readonly vocab_projector: Module & { bias: Tensor };
  constructor(config: HfConfig) {
    super(config);
    this.distilbert = this.registerModule('distilbert', new DistilBertModel(config));
    const s = this.distilbert.settings;
    this.vocab_transform = this.registerModule('vocab_transform', new Linear(s.dim, s.dim));
    this.vocab_layer_norm = this.registerModule('vocab_layer_norm', new LayerNorm(s.dim, { eps: 1e-12 }));
    this.vocab_projector = this.registerModule('vocab_projector', new TiedProjector(this.distilbert.embeddings.word_embeddings, s.vocabSize));
    this.ignoredKeys.push(/^distilbert\.embeddings\.position_ids$/, /^vocab_projector\.weight$/);
  }
  forward(ids: Tensor, inputs: EncoderInputs = {}): Tensor {
    const h = this.vocab_layer_norm.call(activation(this.vocab_transform.call(this.distilbert.call(ids, inputs)), this.distilbert.settings.act));
    return this.vocab_projector.call(h);
  }
}

/** A linear projection onto the vocabulary whose weight is an embedding's (tied); only the bias is its own. */
export class TiedProjector extends Module {
  readonly bias: Tensor;
  constructor(private readonly tiedTo: Embedding, vocabSize: number) {
    super();
    this.bias = this.registerParameter('bias', zeros([vocabSize]));
  }
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.tiedTo.weight, this.bias);
  }
}
