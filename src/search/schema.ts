// The `search:` section of a search configuration: the family and its space, the budget, the strategy, the proxy
// schedule and how the student is picked. The rest of the configuration (data, teacher, distill, training, output)
// is an ordinary run configuration without a `student` section: the search chooses the student.
import { z } from 'zod';
import { SEARCH_FAMILIES } from './space';

const posInt = z.number().int().positive();
const values = z.array(z.union([z.number().positive(), z.string().min(1)])).min(1);

export const searchSpecSchema = z
  .object({
    /** The zoo family searched: mlp, lenet, resnet, wrn, mobilenetv2, transformer, fasttext, or zoo (a list of model names). */
    family: z.enum(SEARCH_FAMILIES),
    /** Each dimension's values (mlp: depth, width; resnet / wrn: depth, width; mobilenetv2: width; transformer: layers, dModel, heads, dimFeedforward; fasttext: dim; lenet / zoo: model). */
    space: z.record(z.string(), values).default({}),
    /** Options every candidate gets (e.g. dropout). */
    options: z.record(z.string(), z.unknown()).default({}),
    budget: z
      .object({
        /** Latency at batch 1 (ms, median of 200 calls), measured in `latencyEngine`. */
        maxLatencyMs: z.number().positive().optional(),
        latencyEngine: z.enum(['libtorch', 'onnxruntime']).default('libtorch'),
        maxParams: posInt.optional(),
        /** Bytes of the int8 QDQ ONNX model (images only). */
        maxInt8Bytes: posInt.optional(),
      })
      .strict()
      .default({ latencyEngine: 'libtorch' }),
    strategy: z.enum(['halving', 'evolution']).default('halving'),
    /** halving: candidates within the budget drawn at random. */
    candidates: posInt.default(8),
    /** halving: the best 1/eta of a rung go on to the next. */
    eta: z.number().int().min(2).default(2),
    /** evolution: the population, the members sampled per cycle, the cycles (one child each). */
    population: posInt.default(6),
    sample: posInt.default(3),
    cycles: z.number().int().min(0).default(6),
    proxy: z
      .object({
        /** halving: epochs at the end of each rung (increasing; a rung continues the previous one's run); evolution: the last value. */
        epochs: z.array(posInt).min(1).default([1, 2, 4]),
        /** Training samples of a proxy run (default: all that are not held out). */
        trainSize: posInt.optional(),
        /** Training samples held out to score the proxy runs (the test set is kept for the final student). */
        valSize: posInt.default(5000),
        optimizer: z.enum(['sgd', 'adam', 'adamw']).optional(),
        lr: z.number().positive().optional(),
      })
      .strict()
      .default({ epochs: [1, 2, 4], valSize: 5000 }),
    pick: z
      .object({
        /** Among the finalists within `tolerance` points of the best proxy accuracy: the most accurate, the fastest, the fewest parameters, the smallest int8 model. */
        by: z.enum(['accuracy', 'latency', 'params', 'int8']).default('accuracy'),
        tolerance: z.number().min(0).default(0),
      })
      .strict()
      .default({ by: 'accuracy', tolerance: 0 }),
    final: z
      .object({
        /** Train the chosen student fully with KD (training.epochs); false stops after the search. */
        train: z.boolean().default(true),
        /** Also train the same architecture alone, and measure both against the teacher (the compare verdict). */
        alone: z.boolean().default(true),
      })
      .strict()
      .default({ train: true, alone: true }),
    /** The search's seed (candidate draws, mutations, the held-out split); default the configuration's seed. */
    seed: z.number().int().min(0).optional(),
  })
  .strict();

export type SearchSpec = z.infer<typeof searchSpecSchema>;
