// int8 students: accuracy fp32 / int8 post-training (PTQ) / int8 quantization-aware distillation (QAD), ONNX file
// sizes and ONNX Runtime latency at batch 1 and 64, on MNIST and Fashion-MNIST.
//   npm run bench:quant -- [--datasets mnist,fashion-mnist] [--students lenet5-half,mlp] [--teacher-epochs 3]
//      [--student-epochs 3] [--qat-epochs 1] [--qat-lr 0.002] [--limit N] [--calibration-batches 16] [--runs 300]
//      [--threads 1] [--out runs/bench-quant]
// Per data set: a LeNet-5 teacher is trained, each student is distilled from it (Hinton KD, T = 4, α = 0.1, SGD lr
// 0.01), then exported three ways: fp32 ONNX, int8 QDQ calibrated on --calibration-batches training batches
// (min/max), and int8 QDQ after --qat-epochs of quantization-aware distillation that starts from the fp32 student
// (the same KD loss, lr --qat-lr). Accuracy is measured in onnxruntime on the 10,000 test images; latency is the
// median of --runs session runs (after 30 warm-up runs) with one intra-op thread. Students: 'lenet5-half' (conv
// 1→3 k5, max-pool, linear 432→10) and 'mlp' (784-256-10). Prints a markdown table and a JSON line.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tensor, dispose, manualSeed, setNumThreads, tidy } from '../src/torch';
import { loadWeights } from '../src/nn';
import { DataLoader, type DataSplits, type ImageDataset, getImageDataset, loadDataset, registerBuiltinDatasets } from '../src/data';
import { prepareQuantAware, toOnnx, toOnnxInt8 } from '../src/export';
import { RunConfig, buildModel, formatTable, runFromConfig, transformsFor, validateConfig } from '../src/run';

function args(): Record<string, string> {
  const a: Record<string, string> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bench:quant: expected --name value pairs, got '${argv[i]}'`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  const known = ['datasets', 'students', 'teacher-epochs', 'student-epochs', 'qat-epochs', 'qat-lr', 'limit', 'calibration-batches', 'runs', 'threads', 'out'];
  for (const k of Object.keys(a)) if (!known.includes(k)) throw new Error(`bench:quant: unknown option --${k} (options: ${known.map((o) => `--${o}`).join(', ')})`);
  return a;
}

const STUDENTS: Record<string, { model: string; options: Record<string, unknown> }> = {
  'lenet5-half': { model: 'lenet5-half', options: {} },
  mlp: { model: 'mlp', options: { widths: [784, 256, 10] } },
};

async function session(bytes: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
}

/** Test accuracy (%) of an ONNX model in onnxruntime. */
async function accuracy(s: ort.InferenceSession, x: Tensor, labels: BigInt64Array): Promise<number> {
  let correct = 0;
  const n = x.shape[0];
  for (let i = 0; i < n; i += 1000) {
    const b = x.narrow(0, i, Math.min(1000, n - i)).contiguous();
    try {
      const out = (await s.run({ input: new ort.Tensor('float32', b.data() as Float32Array, b.shape) })).logits.data as Float32Array;
      for (let r = 0; r < b.shape[0]; r++) {
        let best = 0;
        for (let c = 1; c < 10; c++) if (out[r * 10 + c] > out[r * 10 + best]) best = c;
        if (BigInt(best) === labels[i + r]) correct++;
      }
    } finally {
      b.dispose();
    }
  }
  return (100 * correct) / n;
}

/** Median latency (ms) of one run at this batch size. */
async function latency(s: ort.InferenceSession, x: Tensor, batch: number, runs: number): Promise<number> {
  const b = x.narrow(0, 0, batch).contiguous();
  const feeds = { input: new ort.Tensor('float32', b.data() as Float32Array, b.shape) };
  b.dispose();
  for (let i = 0; i < 30; i++) await s.run(feeds);
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await s.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((p, q) => p - q);
  return t[Math.floor(t.length / 2)];
}

interface Row {
  dataset: string;
  student: string;
  teacher_acc: number;
  fp32_acc: number;
  ptq_acc: number;
  qad_acc: number;
  fp32_bytes: number;
  int8_bytes: number;
  fp32_ms_b1: number;
  int8_ms_b1: number;
  fp32_ms_b64: number;
  int8_ms_b64: number;
}

async function main(): Promise<void> {
  const a = args();
  const datasets = (a.datasets ?? 'mnist,fashion-mnist').split(',');
  const students = (a.students ?? 'lenet5-half,mlp').split(',');
  for (const s of students) if (!STUDENTS[s]) throw new Error(`bench:quant: unknown student '${s}' (${Object.keys(STUDENTS).join(', ')})`);
  for (const d of datasets) if (d !== 'mnist' && d !== 'fashion-mnist') throw new Error(`bench:quant: --datasets takes mnist and fashion-mnist, got '${d}'`);
  const num = (k: string, def: number) => (a[k] === undefined ? def : Number(a[k]));
  const [teacherEpochs, studentEpochs, qatEpochs, qatLr, calBatches, runs, threads] = [
    num('teacher-epochs', 3), num('student-epochs', 3), num('qat-epochs', 1), num('qat-lr', 0.002), num('calibration-batches', 16), num('runs', 300), num('threads', 1),
  ];
  const limit = a.limit === undefined ? undefined : Number(a.limit);
  const out = a.out ?? path.join(os.tmpdir(), `tsd-bench-quant-${process.pid}`);
  setNumThreads(threads);
  const log = (line: string) => console.error(line);
  const rows: Row[] = [];
  const t0 = Date.now();
  for (const dataset of datasets) {
    registerBuiltinDatasets();
    const info = getImageDataset(dataset);
    const data = loadDataset(dataset, limit) as DataSplits<ImageDataset>;
    const inputShape = [...info.inputShape];
    const testX = tidy(() => data.test.images.float().div(255).sub(info.mean[0]).div(info.std[0]));
    const labels = data.test.labels.data() as BigInt64Array;
    try {
      const base = (student: string, extra: Record<string, unknown> = {}): RunConfig =>
        validateConfig({
          name: `bench-quant-${dataset}-${student}`, seed: 0,
          data: { dataset, batchSize: 64, ...(limit ? { limit } : {}) },
          teacher: { model: 'lenet5', checkpoint: undefined },
          student: STUDENTS[student],
          training: { epochs: studentEpochs, optimizer: 'sgd', lr: 0.01, momentum: 0.9 },
          output: { dir: path.join(out, dataset, student) },
          ...extra,
        });
      // the teacher, trained once per data set
      const tcfg = validateConfig({ ...base(students[0]), training: { epochs: teacherEpochs, optimizer: 'sgd', lr: 0.01, momentum: 0.9 }, output: { dir: path.join(out, dataset, 'teacher') } });
      const teacherSummary = await runFromConfig(tcfg, 'teacher', data, { file: 'bench', progress: false, force: true, log });
      const teacherCkpt = path.join(out, dataset, 'teacher', 'teacher', 'best.safetensors');
      for (const student of students) {
        const cfg = base(student, { teacher: { model: 'lenet5', checkpoint: teacherCkpt } });
        await runFromConfig(cfg, 'distilled', data, { file: 'bench', progress: false, force: true, log });
        const fp32Ckpt = path.join(out, dataset, student, 'distilled', 'best.safetensors');
        const qcfg = base(student, {
          teacher: { model: 'lenet5', checkpoint: teacherCkpt },
          student: { ...STUDENTS[student], checkpoint: fp32Ckpt },
          training: { epochs: qatEpochs, optimizer: 'sgd', lr: qatLr, momentum: 0.9 },
          quantization: { qat: true },
          output: { dir: path.join(out, dataset, `${student}-qad`) },
        });
        await runFromConfig(qcfg, 'distilled', data, { file: 'bench', progress: false, force: true, log });
        // exports
        const fp32Model = buildModel(cfg, 'student');
        const qadModel = buildModel(cfg, 'student');
        const calibration: Tensor[] = [];
        try {
          loadWeights(fp32Model, fp32Ckpt);
          fp32Model.eval();
          prepareQuantAware(qadModel, { inputShape });
          loadWeights(qadModel, path.join(out, dataset, `${student}-qad`, 'distilled', 'best.safetensors'));
          qadModel.eval();
          const loader = new DataLoader(data.train, { batchSize: 64, shuffle: false, seed: 0, transforms: transformsFor(cfg).norm });
          for (const b of loader) {
            if (calibration.length === calBatches) {
              b.dispose();
              break;
            }
            calibration.push(b.x);
            b.y.dispose();
          }
          const fp32 = toOnnx(fp32Model, { inputShape }).bytes;
          const ptq = (await toOnnxInt8(fp32Model, { inputShape, calibration })).bytes;
          const qad = (await toOnnxInt8(qadModel, { inputShape })).bytes;
          for (const [name, bytes] of [['fp32', fp32], ['ptq', ptq], ['qad', qad]] as const) fs.writeFileSync(path.join(out, dataset, `${student}-${name}.onnx`), bytes);
          const [s32, sPtq, sQad] = [await session(fp32), await session(ptq), await session(qad)];
          const row: Row = {
            dataset, student, teacher_acc: teacherSummary.best_test_acc,
            fp32_acc: await accuracy(s32, testX, labels), ptq_acc: await accuracy(sPtq, testX, labels), qad_acc: await accuracy(sQad, testX, labels),
            fp32_bytes: fp32.byteLength, int8_bytes: ptq.byteLength,
            fp32_ms_b1: await latency(s32, testX, 1, runs), int8_ms_b1: await latency(sPtq, testX, 1, runs),
            fp32_ms_b64: await latency(s32, testX, 64, runs), int8_ms_b64: await latency(sPtq, testX, 64, runs),
          };
          for (const s of [s32, sPtq, sQad]) await s.release();
          rows.push(row);
          log(JSON.stringify(row));
        } finally {
          dispose(calibration);
          fp32Model.dispose();
          qadModel.dispose();
        }
      }
    } finally {
      testX.dispose();
      data.train.dispose();
      data.test.dispose();
    }
  }
  const f2 = (v: number) => v.toFixed(2);
  const f3 = (v: number) => v.toFixed(3);
  const table = formatTable([
    ['data set', 'student', 'teacher (%)', 'fp32 (%)', 'int8 PTQ (%)', 'int8 QAD (%)', 'fp32 / int8 ONNX (bytes)', 'batch 1 fp32 / int8 (ms)', 'batch 64 fp32 / int8 (ms)'],
    ...rows.map((r) => [
      r.dataset, r.student, f2(r.teacher_acc), f2(r.fp32_acc), f2(r.ptq_acc), f2(r.qad_acc), `${r.fp32_bytes.toLocaleString('en-US')} / ${r.int8_bytes.toLocaleString('en-US')}`,
      `${f3(r.fp32_ms_b1)} / ${f3(r.int8_ms_b1)}`, `${f3(r.fp32_ms_b64)} / ${f3(r.int8_ms_b64)}`,
    ]),
  ]);
  console.log(table.join('\n'));
  console.log(
    `settings: teacher lenet5 ${teacherEpochs} epochs, students distilled ${studentEpochs} epochs (KD T=4, α=0.1, SGD lr 0.01), QAD ${qatEpochs} epoch(s) at lr ${qatLr}, ` +
      `PTQ calibration ${calBatches} batches of 64 (min/max), ${limit ?? 'all'} training images, onnxruntime ${ort.env.versions.common} with 1 intra-op thread, median of ${runs} runs; ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
  console.log(JSON.stringify({ bench: 'quantize', teacherEpochs, studentEpochs, qatEpochs, qatLr, calibrationBatches: calBatches, limit: limit ?? null, runs, threads, rows }));
}

manualSeed(0);
main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
