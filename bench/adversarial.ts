// Adversarial distillation on Fashion-MNIST (docs/adversarial.md): a LeNet-5 teacher, then the student `lenet5-half`
// trained alone, with KD, with KD + a discriminator, and with KD + boundary supporting samples, over seeds.
//   npm run build && node dist/bench/adversarial.js [--methods alone,kd,discriminator,bss] [--seeds 0,1,2]
//      [--teacher FILE] [--limit 10000] [--epochs 5] [--batch 64] [--lr 0.01] [--threads 1] [--out runs/adversarial]
//      [--disc-weight 0.1] [--disc-form bce|lsgan] [--conditional] [--disc-steps 1] [--bss-weight W]
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
import { DataLoader, type ImageDatasetInfo, getDataset, normalize, registerBuiltinDatasets } from '../src/data';
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
  const info = getDataset('fashion-mnist') as ImageDatasetInfo;
  const norm = [normalize(info.mean, info.std)];
  const range: [number, number] = [(0 - info.mean[0]) / info.std[0], (1 - info.mean[0]) / info.std[0]];
  const test = info.load('test');
  const out = values.out!;
  const methods = values.methods!.split(',').map((m) => m.trim()) as AdversarialMethod[];
  for (const m of methods) if (!(ADVERSARIAL_METHODS as readonly string[]).includes(m)) throw new Error(`--methods: unknown method '${m}' (${ADVERSARIAL_METHODS.join(', ')})`);
  const seeds = values.seeds!.split(',').map(Number);
  const epochs = Number(values.epochs), limit = Number(values.limit), batch = Number(values.batch), lr = Number(values.lr);

  // ---- the teacher
  const teacher = createModel('lenet5', {});
  let teacherFile = values.teacher;
  if (!teacherFile || !fs.existsSync(teacherFile)) {
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
      const student = createModel('lenet5-half', {});
      const s = await adversarial({
        method, teacher, student, classes: 10, epochs, seed, outDir: dir, test, testTransforms: norm, force: true, progress: false,
        train: new DataLoader(train, { batchSize: batch, shuffle: true, seed, transforms: norm }),
        studentOptimizer: { kind: 'sgd', lr, momentum: 0.9 }, alpha: 0.1, temperature: 4,
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
    `Fashion-MNIST, teacher lenet5 ${teacherAcc.toFixed(2)} %, student lenet5-half; ${limit} training images, ${epochs} epochs, batch ${batch}, SGD ${lr} momentum 0.9, α 0.1, T 4; seeds ${seeds.join(', ')}; ${settings}`,
    '',
    '| method | best test acc (%) | final test acc (%) | per seed (best) | s / epoch |',
    '|---|---:|---:|---|---:|',
    ...rows.map((r) => `| ${r.method} | ${f(r.best)} | ${f(r.final)} | ${r.per_seed.map((v) => v.toFixed(2)).join(', ')} | ${r.epoch_s.mean.toFixed(1)} |`),
  ].join('\n');
  console.log('\n' + md + '\n');
  const json = { teacher: teacherAcc, limit, epochs, batch, lr, seeds, settings, rows: rows.map((r) => ({ method: r.method, best_mean: r.best.mean, best_std: r.best.std, final_mean: r.final.mean, final_std: r.final.std, per_seed: r.per_seed, epoch_s: r.epoch_s.mean })) };
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
