// Data-free distillation on MNIST (docs/data-free.md): a LeNet-5 teacher trained with the zoo's `lenet5` on the
// training split, then students `lenet5-half` (no ReLU on the logits) distilled without a training image by each
// method, each for a wall-time budget; the test split only measures the students after every epoch.
//   npm run build && node dist/bench/data-free.js [--methods dafl,dfad,deepinversion,noise] [--minutes 30,10,10,5]
//      [--teacher FILE] [--width 32] [--batch 128] [--batches 120] [--threads 1] [--seed 0] [--out runs/data-free]
//      [--gen-lr 0.2] [--student-lr 2e-3] [--temperature 1] [--student-steps 1] [--latent 100] [--epochs N --cosine]
//      [--resume]   continue the listed methods' runs in <out> for their budgets again (the time axis continues too)
//      [--data mnist|cifar10] [--teacher-model lenet5] [--student-model lenet5-half] [--feature fc1] [--test-limit N]
// --data cifar10 --teacher-model resnet56 --student-model resnet20 --feature pool --teacher FILE: a CIFAR-10 setting
// (the teacher must be given, e.g. the one bench/view-cache.js --teacher-file saves; DeepInversion then has the
// teacher's BatchNorm statistics to match); --test-limit measures on a fixed random subset of the test split.
// Without --teacher (or when the file is missing) the teacher is trained first (5 epochs, SGD 0.01, momentum 0.9,
// batch 64) into <out>/teacher. Prints accuracy against wall time per method, a markdown table and a final JSON line;
// writes both to <out>/data-free.md and <out>/data-free.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { setNumThreads, writeFileAtomic } from '../src/torch';
import { loadWeights } from '../src/nn';
import { DataLoader, type ImageDatasetInfo, getDataset, normalize, registerBuiltinDatasets } from '../src/data';
import { DaflGenerator, createModel, registerBuiltinModels } from '../src/models';
import { type DataFreeMethod, TrainingInterrupted, dataFree, evaluate, runEngine } from '../src/distill';

const { values } = parseArgs({
  options: {
    methods: { type: 'string', default: 'dafl,dfad,deepinversion,noise' }, minutes: { type: 'string', default: '30,10,10,5' },
    teacher: { type: 'string' }, width: { type: 'string', default: '32' }, batch: { type: 'string', default: '128' }, batches: { type: 'string', default: '120' },
    threads: { type: 'string', default: '1' }, seed: { type: 'string', default: '0' }, out: { type: 'string', default: 'runs/data-free' },
    resume: { type: 'boolean', default: false },
    'gen-lr': { type: 'string' }, 'student-lr': { type: 'string' }, temperature: { type: 'string' }, 'student-steps': { type: 'string', default: '1' },
    epochs: { type: 'string', default: '1000' }, cosine: { type: 'boolean', default: false }, latent: { type: 'string', default: '100' },
    data: { type: 'string', default: 'mnist' }, 'teacher-model': { type: 'string', default: 'lenet5' }, 'student-model': { type: 'string', default: 'lenet5-half' },
    feature: { type: 'string', default: 'fc1' }, 'test-limit': { type: 'string' },
  },
});

interface Row {
  method: string;
  minutes: number;
  steps: number;
  best: number;
  final: number;
  /** Minutes until the test accuracy first reached 97 % (null: never). */
  to97: number | null;
  curve: { min: number; epoch: number; acc: number }[];
  samples: string;
}

async function main() {
  setNumThreads(Number(values.threads));
  registerBuiltinDatasets();
  registerBuiltinModels();
  const info = getDataset(values.data!) as ImageDatasetInfo;
  const norm = [normalize(info.mean, info.std)];
  const test = info.load('test', values['test-limit'] ? Number(values['test-limit']) : undefined);
  const shape = info.inputShape as [number, number, number];
  const teacherModel = values['teacher-model']!, studentModel = values['student-model']!, feature = values.feature!;
  // the zoo's lenet5-half ends in a ReLU by default (the seed recipe's); DAFL's student has none
  const studentOptions = studentModel === 'lenet5-half' ? { outputRelu: false } : {};
  const out = values.out!;
  const seed = Number(values.seed);
  // ---- the teacher (the one place the training split is read)
  const teacher = createModel(teacherModel, {});
  let teacherFile = values.teacher ?? path.join(out, 'teacher', 'best.safetensors');
  if (!fs.existsSync(teacherFile)) {
    if (values.data !== 'mnist' || teacherModel !== 'lenet5') throw new Error(`--teacher: a ${teacherModel} teacher for ${values.data} must be given as a weights file (${teacherFile} does not exist); only the MNIST lenet5 teacher is trained here`);
    const train = info.load('train');
    await runEngine({
      name: 'teacher', roles: [{ name: 'teacher', model: teacher, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9 } }],
      terms: [{ loss: 'ce', student: 'teacher.logits', teacher: 'labels' }],
      train: new DataLoader(train, { batchSize: 64, shuffle: true, seed, transforms: norm }), test, testTransforms: norm, epochs: 5, seed, outDir: path.join(out, 'teacher'), progress: false,
    });
    train.dispose();
    teacherFile = path.join(out, 'teacher', 'best.safetensors');
  }
  loadWeights(teacher, teacherFile);
  const teacherAcc = await evaluate(teacher, test, norm);
  console.log(`teacher ${teacherModel}: ${teacherAcc.toFixed(2)} % on ${test.length} test images (${teacherFile})`);

  const epochs = Number(values.epochs);
  // the methods' defaults unless a flag sets them; --cosine: both learning rates follow a cosine over the epochs, per step
  const cosine = values.cosine ? { kind: 'cosine' as const, per: 'step' as const, warmupSteps: 0, minLr: 0 } : undefined;
  const tuning = (method: DataFreeMethod) => ({
    studentOptimizer: values['student-lr'] ? { kind: method === 'dfad' ? 'sgd' as const : 'adam' as const, lr: Number(values['student-lr']), ...(method === 'dfad' ? { momentum: 0.9, weightDecay: 5e-4 } : {}) } : undefined,
    generatorOptimizer: values['gen-lr'] ? { kind: 'adam' as const, lr: Number(values['gen-lr']) } : undefined,
    temperature: values.temperature ? Number(values.temperature) : undefined,
    studentSteps: method === 'noise' ? undefined : Number(values['student-steps']),
    studentSchedule: cosine, generatorSchedule: method === 'noise' ? undefined : cosine,
  });
  const methods = values.methods!.split(',') as DataFreeMethod[];
  const minutes = values.minutes!.split(',').map(Number);
  const jsonFile = path.join(out, 'data-free.json');
  const earlier: Row[] = values.resume && fs.existsSync(jsonFile) ? (JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as { rows: Row[] }).rows : [];
  const rows: Row[] = earlier.filter((r) => !methods.includes(r.method as DataFreeMethod));
  for (const [i, method] of methods.entries()) {
    const budget = minutes[Math.min(i, minutes.length - 1)];
    const before = values.resume ? earlier.find((r) => r.method === method) : undefined;
    const offset = before ? before.curve[before.curve.length - 1].min : 0;
    const student = createModel(studentModel, studentOptions);
    const generator = new DaflGenerator({ imageShape: shape, width: Number(values.width), latentDim: Number(values.latent) });
    const ctl = new AbortController();
    const start = Date.now();
    const timer = setTimeout(() => ctl.abort(), budget * 60_000);
    const marks: number[] = [];
    const dir = path.join(out, method);
    const log = (line: string) => {
      if (/ epoch \d+\/\d+ /.test(line)) marks.push(offset + (Date.now() - start) / 60_000);
      console.log(`[${((Date.now() - start) / 60_000).toFixed(1)} min] ${line}`);
    };
    let samples = '';
    try {
      const r = await dataFree({
        method, teacher, student, generator, imageShape: shape, classes: 10, feature, batchSize: Number(values.batch), batchesPerEpoch: Number(values.batches),
        ...tuning(method), epochs, seed, outDir: dir, force: !before, resume: !!before, test, testTransforms: norm, log, progress: false, signal: ctl.signal,
      });
      samples = r.samples;
    } catch (e) {
      if (!(e instanceof TrainingInterrupted)) throw e;
      const { writeSamples, dataFreeSpec } = await import('../src/distill/datafree-run');
      samples = writeSamples({ generator, method, outDir: dir, seed }, dataFreeSpec({ method, teacher, student, generator, imageShape: shape, classes: 10, feature, batchSize: 1, batchesPerEpoch: 1, epochs: 1, seed, outDir: dir }).noiseShape);
    } finally {
      clearTimeout(timer);
    }
    const metrics = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { epoch: number; test_acc: number });
    const marksAll = [...(before?.curve.map((c) => c.min) ?? []), ...marks];
    const curve = metrics.map((m, k) => ({ min: marksAll[k], epoch: m.epoch, acc: m.test_acc }));
    const reach = curve.find((c) => c.acc >= 97);
    rows.push({
      method, minutes: Math.round((budget + (before?.minutes ?? 0)) * 10) / 10, steps: metrics.length * Number(values.batches), best: Math.max(...curve.map((c) => c.acc)), final: curve[curve.length - 1]?.acc ?? NaN,
      to97: reach ? reach.min : null, curve, samples,
    });
    console.log(`${method}: best ${rows[rows.length - 1].best.toFixed(2)} %, ${curve.length} epochs in ${budget} min; samples ${samples}`);
    student.dispose();
    generator.dispose();
  }
  const schedule = `batch ${values.batch}, ${values.batches} steps per epoch, generator width ${values.width}, latent ${values.latent}, student steps per generator step ${values['student-steps']}` +
    `${values['gen-lr'] ? `, generator lr ${values['gen-lr']}` : ''}${values['student-lr'] ? `, student lr ${values['student-lr']}` : ''}${values.temperature ? `, T ${values.temperature}` : ''}` +
    `${values.cosine ? `, cosine over ${epochs} epochs` : ''}, ${values.threads} thread(s), seed ${seed}`;
  const lines = [
    `${info.name}: teacher ${teacherModel} ${teacherAcc.toFixed(2)} % on ${test.length} test images. Students ${studentModel}${studentModel === 'lenet5-half' ? ' (no output ReLU)' : ''}; ${schedule}.`,
    '',
    '| method | budget (min) | epochs × steps | best test acc (%) | final (%) | minutes to 97 % |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.method} | ${r.minutes} | ${r.curve.length} × ${values.batches} | ${r.best.toFixed(2)} | ${r.final.toFixed(2)} | ${r.to97 === null ? 'not reached' : r.to97.toFixed(1)} |`),
    '',
    'Accuracy against wall time (minutes: test accuracy %):',
    ...rows.map((r) => `- ${r.method}: ${r.curve.filter((_, k) => k % Math.max(1, Math.ceil(r.curve.length / 12)) === 0 || k === r.curve.length - 1).map((c) => `${c.min.toFixed(1)}: ${c.acc.toFixed(2)}`).join(', ')}`),
  ];
  for (const l of lines) console.log(l);
  const json = { data: info.name, teacher_model: teacherModel, student_model: studentModel, test_images: test.length, teacher: teacherAcc, schedule, rows };
  writeFileAtomic(path.join(out, 'data-free.md'), lines.join('\n') + '\n');
  writeFileAtomic(jsonFile, JSON.stringify(json, null, 2));
  console.log(JSON.stringify(json));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
