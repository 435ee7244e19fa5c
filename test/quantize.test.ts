// int8 export and quantization-aware training: the int8 arithmetic on hand-checked values, the straight-through
// gradient of the fake quantizers, a QDQ model that onnxruntime runs with its int8 kernels, post-training quantization
// of a LeNet-5 trained here on MNIST (accuracy within a point of fp32), and a quantization-aware fine-tune whose
// fake-quantized forward pass onnxruntime's int8 model reproduces.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { Tensor, manualSeed, nextTick, noGrad, ops, tensor, tidy } from '../src/torch';
import { F, Linear, Module, activationQParams, fakeQuantWeight, perChannelScales, quantizeValue } from '../src/nn';
import { SGD } from '../src/optim';
import { createModel, registerBuiltinModels } from '../src/models';
import { ImageDataset, loadMnist } from '../src/data';
import { planQuantization, buildOnnxGraph, prepareQuantAware, saveOnnx, saveOnnxInt8, setQuantObserving, toOnnxInt8 } from '../src/export';
import { checkLeaks } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-quant-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const normalized = (ds: ImageDataset, start: number, n: number): Tensor => tidy(() => ds.images.narrow(0, start, n).float().div(255).sub(0.1307).div(0.3081));

async function runOrt(file: string, x: Tensor, opts: ort.InferenceSession.SessionOptions = {}): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1, ...opts });
  try {
    const out = await s.run({ input: new ort.Tensor('float32', x.contiguous().data() as Float32Array, x.shape) });
    return out.logits.data as Float32Array;
  } finally {
    await s.release();
  }
}
function argmaxRows(v: Float32Array, classes: number): number[] {
  const r: number[] = [];
  for (let i = 0; i < v.length / classes; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (v[i * classes + c] > v[i * classes + best]) best = c;
    r.push(best);
  }
  return r;
}

describe('int8 arithmetic', () => {
  checkLeaks();
  it('per-channel symmetric scales and int8 values of a small weight, by hand', () => {
    // rows are output channels: max |w| = 2 and 0.3
    const w = Float32Array.of(1, -2, 0.5, 0.1, 0.2, -0.3);
    const s = perChannelScales(w, [2, 3], 0);
    assert.deepEqual(Array.from(s), [Math.fround(2 / 127), Math.fround(0.3 / 127)]);
    const q = Array.from(w, (v, i) => quantizeValue(v, s[Math.floor(i / 3)], 0, -127, 127));
    // 1·127/2 = 63.5 → 64 (half to even), 0.5·127/2 = 31.75 → 32, 0.1·127/0.3 = 42.33 → 42, 0.2·127/0.3 = 84.67 → 85
    assert.deepEqual(q, [64, -127, 32, 42, 85, -127]);
    // along axis 1 (a MatMul weight [in, out]): the columns are the channels
    assert.deepEqual(Array.from(perChannelScales(w, [3, 2], 1)), [Math.fround(1 / 127), Math.fround(2 / 127)]); // columns (1, 0.5, 0.2), (−2, 0.1, −0.3)
    // libtorch's fake quantization of the same weight gives q · s
    const fq = tidy(() => fakeQuantWeight(tensor([[1, -2, 0.5], [0.1, 0.2, -0.3]])).data() as Float32Array);
    fq.forEach((v, i) => assert.ok(Math.abs(v - q[i] * s[Math.floor(i / 3)]) < 1e-7, `element ${i}: ${v} vs ${q[i] * s[Math.floor(i / 3)]}`));
  });

  it('uint8 activation parameters: the range widened to hold 0, zero point rounded', () => {
    assert.deepEqual(activationQParams(-1, 3), { scale: Math.fround(4 / 255), zeroPoint: 64 }); // 255/4 = 63.75
    assert.deepEqual(activationQParams(0, 6), { scale: Math.fround(6 / 255), zeroPoint: 0 });
    assert.deepEqual(activationQParams(0.5, 2), { scale: Math.fround(2 / 255), zeroPoint: 0 });
    assert.deepEqual(activationQParams(-4, -1), { scale: Math.fround(4 / 255), zeroPoint: 255 });
    assert.equal(activationQParams(0, 0).zeroPoint, 0);
    assert.throws(() => activationQParams(2, 1), /\[2, 1\] is not a finite range/);
  });

  it('straight-through gradient: identity inside the range, zero outside, for activations and weights', () => {
    tidy(() => {
      manualSeed(1);
      const lin = new Linear(3, 2);
      const xs = [-3, -0.5, 0.2, 0.9, 5, 0.3];
      const x = tensor([xs.slice(0, 3), xs.slice(3)], { requiresGrad: true });
      try {
        prepareQuantAware(lin, { inputShape: [3], observer: { method: 'minmax' } });
        // fix the input range at [-1, 1]
        const inQ = lin.quant!.input!;
        inQ.observer.state.set([-1, 1, 1]);
        noGrad(() => ops.copy_(inQ.buffer, tensor([-1, 1, 1], { dtype: 'float64' })));
        lin.eval();
        const y = lin.call(x);
        y.sum().backward();
        const gx = x.grad!.data() as Float32Array;
        const colSum = noGrad(() => lin.weight.sum(0).data() as Float32Array);
        // d(sum y)/dx = column sums of the fake-quantized weight inside [-1, 1] (with the zero point's rounding), 0 outside
        const q = inQ.qparams()!;
        const lo = (0 - q.zeroPoint) * q.scale, hi = (255 - q.zeroPoint) * q.scale;
        xs.forEach((v, i) => {
          if (v < lo || v > hi) assert.ok(gx[i] === 0, `x = ${v} is outside [${lo}, ${hi}] but has gradient ${gx[i]}`);
          else assert.ok(Math.abs(gx[i] - colSum[i % 3]) < 0.02, `x = ${v}: gradient ${gx[i]} vs ${colSum[i % 3]}`);
        });
        // the weight gradient passes straight through its quantizer: x summed over the batch, as without quantization
        const gw = lin.weight.grad!.data() as Float32Array;
        const xq = noGrad(() => ops.fake_quantize_per_tensor_affine(x, q.scale, q.zeroPoint, 0, 255).sum(0).data() as Float32Array);
        gw.forEach((g, i) => assert.ok(Math.abs(g - xq[i % 3]) < 1e-6, `weight grad ${i}: ${g} vs ${xq[i % 3]}`));
        assert.ok(gw.some((g) => g !== 0));
      } finally {
        x.grad?.dispose();
        lin.weight.grad?.dispose();
        lin.bias!.grad?.dispose();
        lin.dispose();
      }
    });
  });
});

describe('int8 ONNX export on MNIST', () => {
  let model: Module;
  let train: ImageDataset;
  let test: ImageDataset;
  let testX: Tensor;
  let labels: number[];
  let fp32Acc = 0;
  const N_TEST = 2000;
  const accuracy = (logits: Float32Array) => (100 * argmaxRows(logits, 10).filter((p, i) => p === labels[i]).length) / labels.length;

  before(async () => {
    registerBuiltinModels();
    manualSeed(0);
    train = loadMnist({ split: 'train', limit: 19200 });
    test = loadMnist({ split: 'test', limit: N_TEST });
    testX = normalized(test, 0, N_TEST);
    labels = Array.from(test.labels.data() as BigInt64Array, Number);
    model = createModel('lenet5', { numClasses: 10 });
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    model.train();
    for (let step = 0; step < 300; step++) {
      tidy(() => {
        const x = normalized(train, step * 64, 64);
        const y = train.labels.narrow(0, step * 64, 64);
        opt.zeroGrad();
        F.crossEntropy(model.call(x), y).backward();
        opt.step();
      });
      await nextTick();
    }
    model.eval();
    fp32Acc = tidy(() => 100 * (noGrad(() => model.call(testX)).argmax(1).eq(test.labels).sum().item() as number) / N_TEST);
  });
  after(() => {
    model.dispose();
    testX.dispose();
    train.dispose();
    test.dispose();
  });

  it('post-training quantization: a QDQ model onnxruntime runs with int8 kernels, within 1 point of fp32 accuracy', async () => {
    assert.ok(fp32Acc > 90, `the fp32 LeNet-5 trained here reaches ${fp32Acc}%`);
    const calibration = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => normalized(train, 19200 - 64 * (i + 1), 64));
    const file8 = path.join(dir, 'lenet5-int8.onnx');
    const file32 = path.join(dir, 'lenet5.onnx');
    try {
      const info = await saveOnnxInt8(model, file8, { inputShape: [1, 28, 28], calibration });
      const info32 = saveOnnx(model, file32, { inputShape: [1, 28, 28] });
      assert.equal(info.quantizedLayers, 5);
      assert.equal(info.calibrationBatches, 8);
      assert.deepEqual([info.ops.Conv, info.ops.Gemm, info.ops.Relu], [2, 3, undefined]); // ReLUs folded into the quantizers
      assert.ok(info.bytes < info32.bytes / 3, `int8 ${info.bytes} bytes vs fp32 ${info32.bytes}`);
      // weights are int8 initializers with per-channel scales
      const m = onnx.ModelProto.decode(fs.readFileSync(file8));
      const w = m.graph!.initializer!.find((t) => t.name === 'conv2.weight_quantized')!;
      assert.equal(w.dataType, onnx.TensorProto.DataType.INT8);
      assert.deepEqual(m.graph!.initializer!.find((t) => t.name === 'conv2.weight_scale')!.dims!.map(Number), [16]);
      // onnxruntime fuses the QDQ groups into its int8 operators
      const optimized = path.join(dir, 'lenet5-int8.opt.onnx');
      const logits8 = await runOrt(file8, testX, { optimizedModelFilePath: optimized, graphOptimizationLevel: 'extended' });
      const fused = onnx.ModelProto.decode(fs.readFileSync(optimized)).graph!.node!.map((n) => n.opType);
      assert.ok(fused.includes('QLinearConv') && fused.some((o) => o === 'QGemm' || o === 'QLinearMatMul'), `optimized ops: ${fused.join(' ')}`);
      const acc8 = accuracy(logits8);
      const acc32 = accuracy(await runOrt(file32, testX));
      assert.ok(Math.abs(acc32 - fp32Acc) < 0.1, `fp32 ONNX ${acc32}% vs libtorch ${fp32Acc}%`);
      assert.ok(acc8 >= fp32Acc - 1, `int8 ${acc8}% vs fp32 ${fp32Acc}%`);
    } finally {
      calibration.forEach((t) => t.dispose());
    }
  });

  it('quantization-aware fine-tuning: onnxruntime int8 output matches the fake-quantized forward pass', async () => {
    registerBuiltinModels();
    manualSeed(0);
    const student = createModel('lenet5', { numClasses: 10 });
    try {
      noGrad(() => student.loadStateDict(model.stateDict()));
      const prep = prepareQuantAware(student, { inputShape: [1, 28, 28] });
      // input, and the outputs of conv1, conv2, fc1, fc2 (fc3's logits stay float)
      assert.deepEqual(prep, { layers: 5, quantizers: 5 });
      assert.ok(student.stateDict()['conv1.input_range'] && student.stateDict()['fc2.output_range']);
      // calibrate the ranges in eval mode, then fine-tune with moving-average ranges
      student.eval();
      setQuantObserving(student, 'always');
      for (let i = 0; i < 4; i++) tidy(() => noGrad(() => student.call(normalized(train, 64 * i, 64))));
      setQuantObserving(student, 'train');
      const opt = new SGD(student.parameters(), { lr: 0.005, momentum: 0.9 });
      student.train();
      for (let step = 0; step < 60; step++) {
        tidy(() => {
          const x = normalized(train, 64 * (step + 100), 64);
          opt.zeroGrad();
          F.crossEntropy(student.call(x), train.labels.narrow(0, 64 * (step + 100), 64)).backward();
          opt.step();
        });
        await nextTick();
      }
      student.eval();
      const fq = tidy(() => noGrad(() => student.call(testX)).data() as Float32Array);
      const { bytes, info } = await toOnnxInt8(student, { inputShape: [1, 28, 28] });
      assert.equal(info.ranges, 'quantization-aware');
      const file = path.join(dir, 'lenet5-qat.onnx');
      fs.writeFileSync(file, bytes);
      const q8 = await runOrt(file, testX);
      let maxDiff = 0, sumDiff = 0, maxAbs = 0;
      fq.forEach((v, i) => {
        const d = Math.abs(v - q8[i]);
        maxDiff = Math.max(maxDiff, d);
        sumDiff += d;
        maxAbs = Math.max(maxAbs, Math.abs(v));
      });
      const agree = argmaxRows(fq, 10).filter((p, i) => p === argmaxRows(q8, 10)[i]).length / N_TEST;
      // the two differ only by rounding at requantization and the int32 bias: well under one output step
      assert.ok(sumDiff / fq.length < 0.01 * maxAbs, `mean |fake-quant − onnxruntime| ${sumDiff / fq.length} (logits up to ${maxAbs})`);
      assert.ok(maxDiff < 0.1 * maxAbs, `max |fake-quant − onnxruntime| ${maxDiff} (logits up to ${maxAbs})`);
      assert.ok(agree >= 0.995, `argmax agreement ${agree}`);
      // the float forward of the same weights is measurably different (the quantizers do something)
      const floatOut = tidy(() => {
        for (const m of student.modules()) if ((m as any).quant) (m as any).quant.weight = false;
        return noGrad(() => student.call(testX)).data() as Float32Array;
      });
      assert.ok(floatOut.some((v, i) => Math.abs(v - fq[i]) > maxDiff), 'weight quantization changed nothing');
      assert.ok(accuracy(q8) >= fp32Acc - 1, `QAT int8 ${accuracy(q8)}% vs fp32 ${fp32Acc}%`);
    } finally {
      student.dispose();
    }
  });

  it('plans quantization on the graph and refuses what it cannot do, naming the module', async () => {
    registerBuiltinModels();
    const mlp = createModel('mlp', { widths: [784, 32, 10] });
    const resnet = createModel('resnet8', { numClasses: 10 });
    try {
      const plan = planQuantization(buildOnnxGraph(mlp, { inputShape: [1, 28, 28] }).graph);
      assert.deepEqual(plan.layers.map((l) => [l.modulePath, l.node.op, l.relu !== null, l.quantizeOutput]), [['layers.0', 'Gemm', true, true], ['layers.1', 'Gemm', false, false]]);
      assert.equal(plan.points[0], 'input'); // the source of layers.0's input through the Flatten
      await assert.rejects(toOnnxInt8(mlp, { inputShape: [1, 28, 28] }), /give calibration batches/);
      assert.throws(() => prepareQuantAware(resnet, { inputShape: [3, 32, 32] }), /Conv2d at 'conv1' is followed by a BatchNorm \('bn1'\)/);
      // post-training quantization handles the folded BatchNorms and residual Adds
      const x = tidy(() => ops.randn([16, 3, 32, 32]));
      try {
        resnet.eval();
        const { info } = await toOnnxInt8(resnet, { inputShape: [3, 32, 32], calibration: [x] });
        assert.ok(info.foldedBatchNorms > 0 && info.quantizedLayers >= 7);
        const file = path.join(dir, 'resnet8-int8.onnx');
        fs.writeFileSync(file, (await toOnnxInt8(resnet, { inputShape: [3, 32, 32], calibration: [x] })).bytes);
        const out = await runOrt(file, x);
        const ref = tidy(() => noGrad(() => resnet.call(x)).data() as Float32Array);
        const scale = ref.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        const err = out.reduce((a, v, i) => Math.max(a, Math.abs(v - ref[i])), 0);
        assert.ok(err < 0.25 * scale + 1e-3, `resnet8 int8 max error ${err} for logits up to ${scale}`);
      } finally {
        x.dispose();
      }
    } finally {
      mlp.dispose();
      resnet.dispose();
    }
  });
});
