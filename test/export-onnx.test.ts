// ONNX export checked against libtorch: every zoo architecture (small widths, eval mode, BatchNorm layers with
// perturbed affine parameters and running statistics) is exported, run in onnxruntime-node at batch 7 and batch 1
// on real MNIST / CIFAR-10 test images, and compared with the libtorch forward pass; a model built from every
// exportable layer kind likewise; unsupported modules fail before a file exists.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Tensor, manualSeed, noGrad, ops, randint, randn, tensor, tidy } from '../src/torch';
import {
  AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Dropout, Embedding, Flatten, GELU, Identity, LayerNorm, LeakyReLU, Linear,
  MaxPool2d, Module, OnnxExportError, ReLU, ReLU6, Sequential, SiLU, Sigmoid, Softmax, Tanh, F, init, registerOnnxSymbolic,
} from '../src/nn';
import { createDecoder, createModel, modelNames, registerBuiltinModels } from '../src/models';
import { loadCifar10, loadMnist, sharedDataDir } from '../src/data';
import { buildOnnxGraph, saveOnnx } from '../src/export';
import { checkLeaks } from './helpers';

const TOL = 1e-4;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-onnx-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** BatchNorm layers with γ, β, running mean and variance away from their initial 1, 0, 0, 1 (so folding is tested). */
function perturbBatchNorms(model: Module): number {
  let n = 0;
  noGrad(() => {
    for (const m of model.modules())
      if (m instanceof BatchNorm2d || m instanceof BatchNorm1d) {
        if (m.weight) init.uniform_(m.weight, 0.6, 1.4);
        if (m.bias) init.normal_(m.bias, 0, 0.1);
        init.normal_(m.runningMean!, 0, 0.1);
        init.uniform_(m.runningVar!, 0.6, 1.6);
        n++;
      }
  });
  return n;
}

/** Normalised test images [n, C, H, W] (float32) of MNIST or CIFAR-10; CIFAR-10 falls back to N(0, 1) without the shared data. */
function images(kind: 'mnist' | 'cifar', n: number): Tensor {
  if (kind === 'mnist') {
    const ds = loadMnist({ split: 'test', limit: n });
    try {
      return tidy(() => ds.images.float().div(255).sub(0.1307).div(0.3081));
    } finally {
      ds.dispose();
    }
  }
  if (!sharedDataDir()) return randn([n, 3, 32, 32]);
  const ds = loadCifar10('test');
  try {
    return tidy(() => {
      const x = ds.images.narrow(0, 0, n).float().div(255);
      const mean = tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1);
      const std = tensor([0.247, 0.2435, 0.2616]).view(1, 3, 1, 1);
      return x.sub(mean).div(std);
    });
  } finally {
    ds.dispose();
  }
}

async function runOnnx(file: string, x: Tensor): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const data = x.dtype === 'int64' ? (x.data() as BigInt64Array) : (x.data() as Float32Array);
    const input = new ort.Tensor(x.dtype === 'int64' ? 'int64' : 'float32', data, x.shape);
    const out = await session.run({ input });
    assert.deepEqual(Object.keys(out), ['logits']);
    return { data: out.logits.data as Float32Array, dims: out.logits.dims };
  } finally {
    await session.release();
  }
}

/** Exports `model`, runs the file on `x` (and on its first row alone), and returns max |ONNX − libtorch|. */
async function compare(model: Module, x: Tensor, file: string, inputShape: number[], inputDtype?: 'int64'): Promise<{ diff: number; info: ReturnType<typeof saveOnnx> }> {
  model.eval();
  const info = saveOnnx(model, file, { inputShape, inputDtype });
  let diff = 0;
  for (const batch of [x.shape[0], 1]) {
    const xb = x.narrow(0, 0, batch);
    const expected = tidy(() => noGrad(() => (model.call(xb) as Tensor).float()));
    try {
      const got = await runOnnx(file, xb);
      assert.deepEqual([...got.dims], expected.shape, `output shape at batch ${batch}`);
      const e = expected.data() as Float32Array;
      for (let i = 0; i < e.length; i++) diff = Math.max(diff, Math.abs(e[i] - got.data[i]));
      assert.ok(e.some((v) => v !== 0), 'the libtorch output is not all zeros');
    } finally {
      expected.dispose();
      xb.dispose();
    }
  }
  return { diff, info };
}

interface ZooCase {
  name: string;
  options?: Record<string, unknown>;
  data: 'mnist' | 'cifar';
}
// one case per zoo architecture (class), with the variants that take other export paths
const ZOO: ZooCase[] = [
  { name: 'mlp', options: { widths: [784, 64, 32, 10], dropout: 0.5, inputDropout: 0.2 }, data: 'mnist' },
  { name: 'lenet5', data: 'mnist' },
  { name: 'lenet5-half', data: 'mnist' },
  { name: 'lenet5-half', options: { outputRelu: true }, data: 'mnist' },
  { name: 'lenet5-half-dafl', data: 'mnist' },
  { name: 'resnet8', data: 'cifar' },
  { name: 'resnet8x4', data: 'cifar' },
  { name: 'wrn-16-1', options: { dropout: 0.3 }, data: 'cifar' },
  { name: 'vgg8', data: 'cifar' },
  { name: 'mobilenetv2-0.5', options: { smallInput: true }, data: 'cifar' },
  { name: 'mobilenetv2', options: { width: 0.25 }, data: 'cifar' },
];

describe('ONNX export of the zoo matches libtorch in onnxruntime', () => {
  checkLeaks();
  registerBuiltinModels();
  const measured: string[] = [];
  after(() => {
    if (process.env.TSDISTILL_ONNX_REPORT) console.log(measured.join('\n'));
  });

  for (const c of ZOO) {
    const label = `${c.name}${c.options ? ' ' + JSON.stringify(c.options) : ''}`;
    it(`${label}: batch 7 and batch 1, max |diff| <= ${TOL}`, async () => {
      manualSeed(3);
      const model = createModel(c.name, { numClasses: 10, ...c.options });
      const x = images(c.data, 7);
      try {
        const bns = perturbBatchNorms(model);
        const file = path.join(dir, `${c.name}.onnx`);
        const { diff, info } = await compare(model, x, file, x.shape.slice(1));
        measured.push(`${label}: max |diff| ${diff.toExponential(2)}, ${info.bytes} bytes, ${JSON.stringify(info.ops)}, folded ${info.foldedBatchNorms} of ${bns} BN`);
        assert.ok(diff <= TOL, `${label}: max |ONNX - libtorch| = ${diff}`);
        assert.equal(info.bytes, fs.statSync(file).size);
        // every BatchNorm that directly follows a convolution is folded: only WRN's pre-activation ones remain
        const expectedLeft = c.name.startsWith('wrn') ? info.ops.BatchNormalization : 0;
        assert.equal(info.ops.BatchNormalization ?? 0, expectedLeft);
        assert.equal(info.foldedBatchNorms + (info.ops.BatchNormalization ?? 0), bns, 'each BatchNorm is folded or exported');
        if (c.name.startsWith('wrn')) assert.ok(info.foldedBatchNorms > 0 && info.ops.BatchNormalization > 0, JSON.stringify(info.ops));
        assert.equal(info.ops.Dropout, undefined, 'dropout is left out');
      } finally {
        x.dispose();
        model.dispose();
      }
    });
  }

  it('every registered zoo model is an architecture tested above, and builds a graph', () => {
    // the text classifiers are compared with onnxruntime in transformer.test.ts and fasttext.test.ts (token-id inputs)
    const tested = new Set([...ZOO.map((c) => createClassName(c.name, c.options)), 'TransformerClassifier', 'FastText']);
    for (const name of modelNames()) {
      if (/^(wrn-28-10|resnet110|vgg13|mobilenetv2)$/.test(name)) continue; // same classes as smaller ones, costly to build
      // built around other zoo models (a backbone with exits, a successor standing in for a trained predecessor), from
      // options naming them; their graphs are checked in schemes.test.ts
      if (name === 'multi-exit' || name === 'theseus') continue;
      // not classifiers: data-free distillation's generator (noise in, images out), tested in datafree.test.ts, and
      // adversarial distillation's discriminator (two sides' outputs in, one score per row), in adversarial.test.ts
      if (name === 'dafl-generator' || name === 'discriminator') continue;
      // spectrogram inputs [1, mels, frames]: exported and compared with onnxruntime in cross-modal.test.ts
      if (name === 'audio-cnn') continue;
      manualSeed(0);
      const text = name === 'transformer' || name === 'fasttext';
      const model = createModel(name, { numClasses: 10, ...(text ? { vocabSize: 50, maxLen: 16 } : {}) });
      try {
        assert.ok(tested.has(model.constructor.name), `${name} (${model.constructor.name}) has no ONNX test case`);
        const shape = text ? [16] : model.constructor.name.startsWith('LeNet') || model.constructor.name === 'Mlp' ? [1, 28, 28] : [3, 32, 32];
        const { graph } = buildOnnxGraph(model, { inputShape: shape, ...(text ? { inputDtype: 'int64' as const } : {}) });
        assert.deepEqual(graph.outputs.map((o) => [o.name, o.shape]), [['logits', ['batch', 10]]], name);
      } finally {
        model.dispose();
      }
    }
  });
});

function createClassName(name: string, options?: Record<string, unknown>): string {
  const m = createModel(name, { numClasses: 10, ...options });
  try {
    return m.constructor.name;
  } finally {
    m.dispose();
  }
}

/** [B, L, C] -> [B, C, L] (a user-defined layer: its forward is all the export needs). */
class ToChannels extends Module {
  forward(x: Tensor): Tensor {
    return x.transpose(1, 2);
  }
}
/** Calls an aten op that has no ONNX symbolic function. */
class Unsupported extends Module {
  forward(x: Tensor): Tensor {
    return ops.erfinv(x.tanh());
  }
}

describe('ONNX export of every layer kind', () => {
  checkLeaks();

  it('image layers: grouped, strided, dilated and same-padded convolutions, BatchNorm folded and not, activations, pooling', async () => {
    manualSeed(5);
    const model = new Sequential(
      new Conv2d(1, 8, 3, { padding: 1 }), new BatchNorm2d(8), new ReLU6(),
      new Conv2d(8, 8, 3, { stride: 2, padding: 1, groups: 4, bias: false }), new BatchNorm2d(8), new GELU(),
      new Conv2d(8, 12, 3, { dilation: 2, padding: 'same' }), new SiLU(), new BatchNorm2d(12),
      new MaxPool2d(3, { stride: 2, padding: 1 }), new Tanh(),
      new Conv2d(12, 16, 1), new LeakyReLU(0.2), new AvgPool2d(2, { stride: 1 }), new GELU('tanh'),
      new AdaptiveAvgPool2d(2), new Sigmoid(), new Dropout(0.5), new Identity(), new Flatten(),
      new Linear(64, 32), new LayerNorm(32), new ReLU(), new Linear(32, 10), new Softmax(1),
    );
    const x = images('mnist', 7);
    try {
      perturbBatchNorms(model);
      const { diff, info } = await compare(model, x, path.join(dir, 'layers.onnx'), [1, 28, 28]);
      assert.ok(diff <= TOL, `max |diff| ${diff}`);
      assert.equal(info.foldedBatchNorms, 2, 'the two BatchNorms right after a convolution are folded');
      assert.equal(info.ops.BatchNormalization, 1, 'the BatchNorm after SiLU stays');
      for (const op of ['Clip', 'Erf', 'Sigmoid', 'MaxPool', 'Tanh', 'LeakyRelu', 'AveragePool', 'Flatten', 'Gemm', 'LayerNormalization', 'Softmax'])
        assert.ok(info.ops[op] > 0, `${op} in ${JSON.stringify(info.ops)}`);
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  it('sequence layers: Embedding (Gather), Linear on 3-D input, Conv1d + BatchNorm1d, int64 input', async () => {
    manualSeed(6);
    const model = new Sequential(
      new Embedding(50, 16), new LayerNorm(16), new Linear(16, 16), new GELU(), new ToChannels(),
      new Conv1d(16, 8, 3, { padding: 1 }), new BatchNorm1d(8), new ReLU(), new Flatten(), new Linear(48, 5),
    );
    const x = randint(0, 50, [7, 6]);
    try {
      perturbBatchNorms(model);
      const { diff, info } = await compare(model, x, path.join(dir, 'seq.onnx'), [6], 'int64');
      assert.ok(diff <= TOL, `max |diff| ${diff}`);
      assert.equal(info.foldedBatchNorms, 1);
      for (const op of ['Gather', 'MatMul', 'Add', 'Transpose', 'Conv']) assert.ok(info.ops[op] > 0, `${op} in ${JSON.stringify(info.ops)}`);
    } finally {
      x.dispose();
      model.dispose();
    }
  });
});

/** A custom activation written with tensor ops: x · sigmoid(βx), clamped. */
class ScaledSwish extends Module {
  constructor(readonly beta: number) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.mul(x.mul(this.beta).sigmoid()).clamp(-4, 4);
  }
}
/** conv-BN-activation-conv with an identity shortcut, averaged. */
class ResidualBlock extends Module {
  conv1 = this.registerModule('conv1', new Conv2d(8, 8, 3, { padding: 1, bias: false }));
  bn1 = this.registerModule('bn1', new BatchNorm2d(8));
  act = this.registerModule('act', new ScaledSwish(1.7));
  conv2 = this.registerModule('conv2', new Conv2d(8, 8, 3, { padding: 1 }));
  forward(x: Tensor): Tensor {
    const h = this.act.call(this.bn1.call(this.conv1.call(x)));
    return this.conv2.call(h).add(x).div(2);
  }
}
/** A user's own network: layers, F. functions, tensor methods and shapes computed from the input. */
class TinyNet extends Module {
  stem = this.registerModule('stem', new Conv2d(1, 8, 3, { stride: 2, padding: 1 }));
  block = this.registerModule('block', new ResidualBlock());
  head = this.registerModule('head', new Linear(8 * 7 * 7 + 8, 10));
  forward(x: Tensor): Tensor {
    let h = F.relu(this.stem.call(x)); // [B, 8, 14, 14]
    h = F.maxPool2d(this.block.call(h), 2); // [B, 8, 7, 7]
    const pooled = h.mean([2, 3]); // [B, 8]
    const flat = h.view(h.shape[0], -1); // the batch size read from the input shape
    return F.logSoftmax(this.head.call(ops.cat([flat, pooled], 1)), 1);
  }
}

describe("a user's own module exports from its forward alone", () => {
  checkLeaks();

  it('a custom CNN with a residual add and a custom activation: onnxruntime equals libtorch, state_dict names kept', async () => {
    manualSeed(7);
    const model = new TinyNet();
    const x = images('mnist', 7);
    try {
      perturbBatchNorms(model);
      const { diff, info } = await compare(model, x, path.join(dir, 'tinynet.onnx'), [1, 28, 28]);
      assert.ok(diff <= TOL, `max |diff| ${diff}`);
      assert.equal(info.foldedBatchNorms, 1, 'block.bn1 is folded into block.conv1');
      const { graph } = buildOnnxGraph(model, { inputShape: [1, 28, 28] });
      const inits = [...graph.initializers.keys()];
      for (const k of ['stem.weight', 'stem.bias', 'block.conv1.weight', 'block.conv1.bias', 'block.conv2.weight', 'head.weight', 'head.bias'])
        assert.ok(inits.includes(k), `${k} in ${inits.join(', ')}`);
      const nodes = graph.nodes.map((n) => n.name);
      for (const n of ['stem/Conv', 'Relu', 'block.conv1/Conv', 'block.act/Sigmoid', 'block.act/Clip', 'block/Add', 'MaxPool', 'ReduceMean', 'Reshape', 'Concat', 'head/Gemm', 'LogSoftmax'])
        assert.ok(nodes.includes(n), `${n} in ${nodes.join(', ')}`);
      assert.equal(graph.nodes.filter((n) => n.op === 'Identity').length, 0, 'no Identity nodes');
      // the view(B, -1) is a Reshape to [-1, 392]: no shape computation in the graph
      assert.equal(graph.nodes.filter((n) => n.op === 'Shape').length, 0);
      assert.deepEqual(graph.outputs.map((o) => o.shape), [['batch', 10]]);
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  it('the GPT decoder (learned and rotary positions, causal mask, tied head) exports without export code of its own', async () => {
    for (const positional of ['learned', 'rope'] as const) {
      manualSeed(8);
      const model = createDecoder({ vocabSize: 40, contextLength: 16, dModel: 32, nLayer: 2, nHead: 4, positional });
      const x = randint(0, 40, [5, 12]);
      try {
        const { diff, info } = await compare(model, x, path.join(dir, `gpt-${positional}.onnx`), [12], 'int64');
        assert.ok(diff <= TOL, `${positional}: max |diff| ${diff}`);
        assert.deepEqual([info.ops.Softmax, info.ops.LayerNormalization], [2, 5], JSON.stringify(info.ops));
      } finally {
        x.dispose();
        model.dispose();
      }
    }
  });

  it('the symbolic table beyond the zoo: arithmetic, comparisons, selection, indexing, reductions, shapes, made tensors', async () => {
    /** Computes many ops on x [B, 4, 6] and concatenates them as [B, N]. */
    class OpTour extends Module {
      forward(x: Tensor): Tensor {
        const B = x.shape[0];
        const parts: Tensor[] = [];
        const put = (t: Tensor) => parts.push(t.reshape(B, -1).float());
        put(x.sub(x.mul(0.5), 2));
        put(ops.rsub_Scalar(x, 1.5, 3));
        put(x.div(0.7, 'floor'));
        put(x.abs().add(0.1).pow(1.5));
        put(x.gt(0));
        put(x.le(0.2).logicalNot());
        put(x.ne(x.mul(2).round().div(2)));
        put(ops.where_self(x.gt(0), x, x.mul(-2)));
        put(x.maskedFill(x.lt(-0.5), 3));
        put(F.softplus(x, { beta: 2 }));
        put(F.elu(x, 0.5));
        put(ops.hardsigmoid(x));
        put(F.logSigmoid(x));
        put(F.mish(x));
        put(F.hardswish(x));
        put(x.clamp(-0.3, null));
        put(x.exp().add(x.abs().add(1).log()).add(x.abs().sqrt()).add(x.abs().add(1).rsqrt()).add(x.square()).add(x.abs().log1p()));
        const [a, b] = x.chunk(2, 2); // [B, 4, 3] each
        put(ops.cat([b, a], 2));
        put(ops.stack([a, b], 1));
        put(ops.unbind_int(x, 1)[2]);
        put(x.select(1, -1));
        put(x.slice(2, 1, 5, 2));
        put(x.narrow(1, 1, 2));
        put(x.indexSelect(2, tensor([0, 5, 2], { dtype: 'int64' })));
        // an index made in JavaScript and expanded to the batch: an Expand with a computed shape
        put(x.gather(2, tensor([[[1, 0], [5, 5], [2, 3], [4, 0]]], { dtype: 'int64' }).expand(B, 4, 2)));
        put(ops.triu(x, 1));
        put(F.pad(x, [1, 2], { value: 0.5 }));
        put(F.pad(x, [1, 1], { mode: 'reflect' }));
        put(x.sum(2));
        put(x.mean(1, true));
        put(ops.amax(x, [2], false));
        const [mv, mi] = x.max(2);
        put(mv);
        put(mi);
        put(x.argmax(1));
        put(x.logsumexp(2));
        put(x.norm(2, 2));
        put(ops.cumsum(x, 2));
        put(x.permute(0, 2, 1));
        put(x.unsqueeze(1).expand(B, 3, 4, 6));
        put(x.repeat(1, 2, 1));
        put(x.unsqueeze(2).squeeze(2));
        put(ops.ones_like(x).mul(x.mean()));
        put(F.softmax(x, 1));
        put(F.logSoftmax(x, 2));
        put(x.flatten(1).t().t());
        return ops.cat(parts, 1);
      }
    }
    const model = new OpTour();
    const x = tidy(() => { manualSeed(9); return randn([7, 4, 6]); });
    try {
      const { diff, info } = await compare(model, x, path.join(dir, 'ops.onnx'), [4, 6]);
      assert.ok(diff <= TOL, `max |diff| ${diff}`);
      assert.equal(info.ops.Identity, undefined, JSON.stringify(info.ops));
      if (process.env.TSDISTILL_ONNX_REPORT) console.log(JSON.stringify(info.ops));
    } finally {
      x.dispose();
    }
  });

  it('a size that depends on the batch in another way is refused with a dynamic batch, and exports with a fixed one', async () => {
    class DropLast extends Module {
      fc = this.registerModule('fc', new Linear(4, 3));
      forward(x: Tensor): Tensor {
        return this.fc.call(x.narrow(0, 0, x.shape[0] - 1));
      }
    }
    const model = new DropLast();
    try {
      assert.throws(() => buildOnnxGraph(model, { inputShape: [4] }), /aten::narrow in DropLast at the root: the slice end depends on the batch size \(1 and 2\); export with a fixed batchSize/);
      const { graph } = buildOnnxGraph(model, { inputShape: [4], batchSize: 5 });
      assert.deepEqual(graph.outputs.map((o) => o.shape), [[4, 3]]);
    } finally {
      model.dispose();
    }
  });

  it('registerOnnxSymbolic adds an op; shape computations that depend on the batch become graph ops', async () => {
    registerOnnxSymbolic('aten::exp2', (g) => g.node('Pow', [g.scalar(2, g.out().dtype, 'two'), g.input('self')]));
    class Exp2 extends Module {
      forward(x: Tensor): Tensor {
        // [B, 6] -> [B, B, 6] (two batch-dependent sizes: computed from the input's shape) -> mean [B, 6] -> [2B, 3] -> exp2
        const [b] = x.shape;
        return ops.exp2(x.unsqueeze(1).expand(b, b, 6).mean(1).reshape(2 * b, 3).tanh()).reshape(b, 6);
      }
    }
    const model = new Exp2();
    const x = tidy(() => randn([7, 6]));
    try {
      const { diff, info } = await compare(model, x, path.join(dir, 'exp2.onnx'), [6]);
      assert.ok(diff <= TOL, `max |diff| ${diff}`);
      assert.equal(info.ops.Pow, 1);
      assert.deepEqual([info.ops.Shape, info.ops.Expand], [1, 1]);
    } finally {
      x.dispose();
    }
  });
});

describe('ONNX export refuses what it cannot write, before writing', () => {
  checkLeaks();

  it('an unsupported op names the aten op, the module path and class, and the supported ops; no file is written', () => {
    const model = new Sequential(new Conv2d(1, 2, 3), new Sequential(new ReLU(), new Unsupported()), new Flatten());
    const file = path.join(dir, 'unsupported.onnx');
    try {
      assert.throws(() => saveOnnx(model, file, { inputShape: [1, 8, 8] }), (e: Error) => {
        assert.match(e.message, /^ONNX export: aten::erfinv in Unsupported at '1\.1': no ONNX symbolic function for this op\. Supported \(and their in-place forms\): .*aten::conv2d, .*aten::tanh, /);
        assert.match(e.message, /registerOnnxSymbolic\('aten::erfinv', fn\)/);
        assert.ok(e instanceof OnnxExportError && e.modulePath === '1.1' && e.moduleClass === 'Unsupported' && e.op === 'aten::erfinv');
        return true;
      });
      assert.equal(fs.existsSync(file), false);
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('unsupported')), [], 'no temp file either');
    } finally {
      model.dispose();
    }
  });

  it('an existing file is left as it was', () => {
    const model = new Sequential(new Conv2d(1, 2, 3), new Unsupported());
    const file = path.join(dir, 'kept.onnx');
    fs.writeFileSync(file, 'old');
    try {
      assert.throws(() => saveOnnx(model, file, { inputShape: [1, 8, 8] }), /at '1'/);
      assert.equal(fs.readFileSync(file, 'utf8'), 'old');
    } finally {
      model.dispose();
    }
  });

  it('uneven adaptive pooling, batch-statistics BatchNorm and bad options name the module, the op and the shape', () => {
    const a = new Sequential(new Conv2d(1, 2, 3), new AdaptiveAvgPool2d(4));
    const b = new Sequential(new Conv2d(1, 2, 3), new BatchNorm2d(2, { trackRunningStats: false }));
    try {
      assert.throws(() => buildOnnxGraph(a, { inputShape: [1, 28, 28] }), /aten::adaptive_avg_pool2d in AdaptiveAvgPool2d at '1': adaptive pooling of 26×26 to 4×4 has uneven windows .*\[batch, 2, 26, 26\]/);
      assert.throws(() => buildOnnxGraph(b, { inputShape: [1, 28, 28] }), /aten::batch_norm in BatchNorm2d at '1': batch normalisation with batch statistics .*trackRunningStats false/);
      // the forward itself fails on the example input: its own error, naming the module
      assert.throws(() => buildOnnxGraph(a, { inputShape: [3, 28, 28] }), /the forward pass of Sequential failed on the example input float32\[2, 3, 28, 28\]: in Sequential at '0' \(Conv2d\).*expected input\[2, 3, 28, 28\] to have 1 channels/);
      assert.throws(() => buildOnnxGraph(a, { inputShape: [1, 28, 28], opset: 11 }), /opset must be an integer from 13 to 21, got 11/);
      assert.throws(() => buildOnnxGraph(a, { inputShape: [1, 28, 28], inputshape: [1] } as never), /unknown option 'inputshape'/);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
