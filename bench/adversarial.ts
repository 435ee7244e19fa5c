// Adversarial distillation on Fashion-MNIST (docs/adversarial.md): a LeNet-5 teacher, then the student `lenet5-half`
// trained alone, with KD, with KD + a discriminator, and with KD + boundary supporting samples, over seeds.
//   npm run build && node dist/bench/adversarial.js [--methods alone,kd,discriminator,bss] [--seeds 0,1,2]
//      [--teacher FILE] [--limit 10000] [--epochs 5] [--batch 64] [--lr 0.01] [--threads 1] [--out runs/adversarial]
//      [--disc-weight 0.1] [--disc-form bce|lsgan] [--conditional] [--disc-steps 1] [--bss-weight W]
//      [--data fashion-mnist|cifar10] [--teacher-model lenet5] [--student-model lenet5-half] [--test-limit N] [--aug]
//      [--wd 0] [--cosine]
// --data cifar10 --teacher-model resnet56 --student-model resnet20 --teacher FILE: a CIFAR-10 setting (the teacher
// must be given: e.g. the one bench/view-cache.js --teacher-file saves); --aug adds random crop (padding 4) and flip
// to the students' training images; --test-limit measures on a fixed random subset of the test split; --cosine: a
// cosine learning rate over the run (per step, one warm-up epoch).
// Without --teacher (or when the file is missing) the teacher is trained first (the zoo's lenet5, 5 epochs on the whole
// training split, SGD 0.01, momentum 0.9, batch 64) into <out>/teacher. Each student run is <out>/<method>-s<seed>; a
// finished run (its result.json) is not run again. Prints a markdown table (mean ± std over the seeds of the best and
// the final test accuracy on the 10,000 test images) and a final JSON line; writes both to <out>/adversarial.md and
// <out>/adversarial.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { manualSeed, setNumThreads, writeFileAtomic } from '../src/torch';
import { loadWeights } from '../src/nn';
import { DataLoader, type ImageDatasetInfo, getDataset, normalize, randomCrop, randomHorizontalFlip, registerBuiltinDatasets } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { ADVERSARIAL_METHODS, type AdversarialMethod, adversarial, evaluate, runEngine } from '../src/distill';

const { values } = parseArgs({
  options: {
    methods: { type: 'string', default: ADVERSARIAL_METHODS.join(',') }, seeds: { type: 'string', default: '0,1,2' },
    teacher: { type: 'string' }, limit: { type: 'string', default: '10000' }, epochs: { type: 'string', default: '5' },
    batch: { type: 'string', default: '64' }, lr: { type: 'string', default: '0.01' }, threads: { type: 'string', default: '1' },
    out: { type: 'string', default: 'runs/adversarial' }, 'disc-weight': { type: 'string', default: '0.1' },
    'disc-form': { type: 'string', default: 'bce' }, conditional: { type: 'boolean', default: false }, 'disc-steps': { type: 'string', default: '1' },
    'bss-weight': { type: 'string' },
    data: { type: 'string', default: 'fashion-mnist' }, 'teacher-model': { type: 'string', default: 'lenet5' }, 'student-model': { type: 'string', default: 'lenet5-half' },
    'test-limit': { type: 'string' }, aug: { type: 'boolean', default: false }, wd: { type: 'string', default: '0' }, cosine: { type: 'boolean', default: false },
  },
});

interface Run {
  method: string;
  seed: number;
  best: number;
  best_epoch: number;
  final: number;
  mean_epoch_s: number;
}

const stats = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean: m, std: sd };
};

async function main() {
  setNumThreads(Number(values.threads));
  registerBuiltinDatasets();
  registerBuiltinModels();
  const info = getDataset(values.data!) as ImageDatasetInfo;
  const norm = [normalize(info.mean, info.std)];
  // the valid input range per channel: normalised pixels 0 and 1
  const range: [number[], number[]] = [info.mean.map((m, c) => (0 - m) / info.std[c]), info.mean.map((m, c) => (1 - m) / info.std[c])];
  const test = info.load('test', values['test-limit'] ? Number(values['test-limit']) : undefined);
  const [, h, w] = info.inputShape;
  const trainTransforms = values.aug ? [randomCrop(h === w ? h : [h, w], 4), randomHorizontalFlip(), ...norm] : norm;
  const teacherModel = values['teacher-model']!, studentModel = values['student-model']!;
  const wd = Number(values.wd);
  const out = values.out!;
  const methods = values.methods!.split(',').map((m) => m.trim()) as AdversarialMethod[];
  for (const m of methods) if (!(ADVERSARIAL_METHODS as readonly string[]).includes(m)) throw new Error(`--methods: unknown method '${m}' (${ADVERSARIAL_METHODS.join(', ')})`);
  const seeds = values.seeds!.split(',').map(Number);
  const epochs = Number(values.epochs), limit = Number(values.limit), batch = Number(values.batch), lr = Number(values.lr);

  // ---- the teacher
  const teacher = createModel(teacherModel, {});
  let teacherFile = values.teacher;
  if (!teacherFile || !fs.existsSync(teacherFile)) {
    if (values.data !== 'fashion-mnist' || teacherModel !== 'lenet5') throw new Error(`--teacher: a ${teacherModel} teacher for ${values.data} must be given as a weights file (${teacherFile ?? 'none given'}); only the Fashion-MNIST lenet5 teacher is trained here`);
    const full = info.load('train');
    const dir = path.join(out, 'teacher');
    manualSeed(0);
    const fresh = createModel('lenet5', {});
    await runEngine({
      name: 'teacher', outDir: dir, resume: fs.existsSync(path.join(dir, 'state.json')), epochs: 5, seed: 0, test, testTransforms: norm, progress: false,
      train: new DataLoader(full, { batchSize: 64, shuffle: true, seed: 0, transforms: norm }),
      roles: [{ name: 'teacher', model: fresh, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9 } }],
      terms: [{ loss: 'ce', student: 'teacher.logits', teacher: 'labels' }],
    });
    fresh.dispose();
    full.dispose();
    teacherFile = path.join(dir, 'best.safetensors');
  }
  loadWeights(teacher, teacherFile);
  const teacherAcc = await evaluate(teacher, test, norm);
  console.log(`teacher: ${teacherFile}, ${teacherAcc.toFixed(2)} % on the test split`);

  const train = info.load('train', limit);
  const runs: Run[] = [];
  for (const method of methods)
    for (const seed of seeds) {
      const dir = path.join(out, `${method}-s${seed}`);
      const resultFile = path.join(dir, 'result.json');
      if (fs.existsSync(resultFile)) {
        runs.push(JSON.parse(fs.readFileSync(resultFile, 'utf8')));
        console.log(`${method} seed ${seed}: done before (${resultFile})`);
        continue;
      }
      manualSeed(seed);
      const student = createModel(studentModel, {});
      const s = await adversarial({
        method, teacher, student, classes: 10, epochs, seed, outDir: dir, test, testTransforms: norm, force: true, progress: false,
        train: new DataLoader(train, { batchSize: batch, shuffle: true, seed, transforms: trainTransforms }),
        studentOptimizer: { kind: 'sgd', lr, momentum: 0.9, weightDecay: wd }, alpha: 0.1, temperature: 4,
        ...(values.cosine ? { studentSchedule: { kind: 'cosine' as const, per: 'step' as const, warmupSteps: Math.ceil(train.length / batch), minLr: 0 } } : {}),
        discriminator: { weight: Number(values['disc-weight']), form: values['disc-form'] as 'bce' | 'lsgan', conditional: values.conditional, steps: Number(values['disc-steps']) },
        bss: { range, ...(values['bss-weight'] ? { weight: Number(values['bss-weight']) } : {}) },
      });
      student.dispose();
      const r: Run = { method, seed, best: s.best_test_acc, best_epoch: s.best_epoch, final: s.final_test_acc, mean_epoch_s: s.mean_epoch_s };
      writeFileAtomic(resultFile, JSON.stringify(r) + '\n');
      runs.push(r);
      console.log(`${method} seed ${seed}: best ${r.best.toFixed(2)} % (epoch ${r.best_epoch}), final ${r.final.toFixed(2)} %, ${r.mean_epoch_s.toFixed(1)} s/epoch`);
    }
  const rows = methods.map((method) => {
    const rs = runs.filter((r) => r.method === method);
    return { method, seeds: rs.map((r) => r.seed), best: stats(rs.map((r) => r.best)), final: stats(rs.map((r) => r.final)), epoch_s: stats(rs.map((r) => r.mean_epoch_s)), per_seed: rs.map((r) => r.best) };
  });
  const f = (s: { mean: number; std: number }) => `${s.mean.toFixed(2)} ± ${s.std.toFixed(2)}`;
  const settings = `discriminator: weight ${values['disc-weight']}, ${values['disc-form']}, ${values.conditional ? 'conditional' : 'unconditional'}, ${values['disc-steps']} step(s); bss: weight ${values['bss-weight'] ?? '0.45'} → 0 at 3/4 of the run`;
  const md = [
    `${info.name}, teacher ${teacherModel} ${teacherAcc.toFixed(2)} % (${test.length} test images), student ${studentModel}; ${limit} training images${values.aug ? ' (random crop 4 + flip)' : ''}, ${epochs} epochs, batch ${batch}, SGD ${lr} momentum 0.9${wd ? `, weight decay ${wd}` : ''}${values.cosine ? ', 1 warm-up epoch then cosine' : ''}, α 0.1, T 4; seeds ${seeds.join(', ')}; ${settings}`,
    '',
    '| method | best test acc (%) | final test acc (%) | per seed (best) | s / epoch |',
    '|---|---:|---:|---|---:|',
    ...rows.map((r) => `| ${r.method} | ${f(r.best)} | ${f(r.final)} | ${r.per_seed.map((v) => v.toFixed(2)).join(', ')} | ${r.epoch_s.mean.toFixed(1)} |`),
  ].join('\n');
  console.log('\n' + md + '\n');
  const json = { data: info.name, teacher_model: teacherModel, student_model: studentModel, test_images: test.length, aug: values.aug, weight_decay: wd, cosine: values.cosine, teacher: teacherAcc, limit, epochs, batch, lr, seeds, settings, rows: rows.map((r) => ({ method: r.method, best_mean: r.best.mean, best_std: r.best.std, final_mean: r.final.mean, final_std: r.final.std, per_seed: r.per_seed, epoch_s: r.epoch_s.mean })) };
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, 'adversarial.md'), md + '\n');
  writeFileAtomic(path.join(out, 'adversarial.json'), JSON.stringify(json) + '\n');
  console.log(JSON.stringify(json));
  train.dispose();
  test.dispose();
  teacher.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
