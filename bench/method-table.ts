// The CIFAR-10 method table: one teacher, one student architecture, a row per distillation method, each row a fresh
// student trained on the same data with the same schedule. Loss weights follow RepDistiller (Tian et al. 2020) and
// mdistiller (DKD): cross-entropy weight 1 plus the method's own term, except KD (0.1·CE + 0.9·KD at T = 4).
//   npm run build && node dist/bench/method-table.js [--epochs 2] [--limit 5000] [--teacher resnet56] [--student resnet20]
//      [--methods plain,kd,fitnet,at,sp,rkd,pkt,dkd,cc,nst,fsp,irg,vid,ab,ft,ofd,reviewkd,crd,cc_repdistiller] [--teacher-weights FILE] [--teacher-epochs N]
//      [--schedule short|repdistiller] [--threads 2] [--batch 64] [--device cpu|cuda] [--out runs/method-table]
//      [--test-limit N] (evaluate on a fixed random N of the 10,000 test images: smoke runs only)
// 'short' (the default, for CPUs): cosine learning rate from 0.05 over --epochs. 'repdistiller': 240 epochs, lr 0.05
// dropped 10x at 150/180/210, batch 64, weight decay 5e-4 (the GPU schedule). Prints a markdown table and a JSON line,
// and writes both to <out>/method-table.md and <out>/method-table.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkDevice, getNumThreads, manualSeed, setNumThreads, writeFileAtomic } from '../src/torch';
import { Module, loadWeights } from '../src/nn';
import { DataLoader, Rng, getImageDataset, loadDataset, normalize, randomCrop, randomHorizontalFlip, registerBuiltinDatasets } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { MatchSpec, TrainSummary, distill, runEngine, trainModel } from '../src/distill';

interface Method {
  alpha: number;
  matches: MatchSpec[];
  note: string;
  /** FT: the teacher layer whose paraphraser a stage before the student's run trains (the file goes to the ft term). */
  paraphraser?: string;
}
/** The index of the last block of a stage of the teacher set by main() (its bn2 precedes the stage output's ReLU). */
let teacherBlocks: Record<string, number> = {};
const teacherLast = (stage: string) => {
  const n = teacherBlocks[stage];
  if (n === undefined) throw new Error(`method-table: the teacher has no stage '${stage}'`);
  return n - 1;
};
/** Matches for ResNet-CIFAR pairs (layer1..3 are the three stages; `pool` is the pooled [B, C] embedding). */
function methods(epochs: number): Record<string, Method | null> {
  return {
    plain: null,
    kd: { alpha: 0.1, matches: [], note: '0.1·CE + 0.9·KD, T = 4' },
    fitnet: { alpha: 1, matches: [{ teacher: 'layer2', student: 'layer2', loss: 'hint', weight: 100 }], note: 'hint on layer2, β = 100' },
    at: { alpha: 1, matches: ['layer1', 'layer2', 'layer3'].map((l) => ({ teacher: l, student: l, loss: 'at', weight: 1000 })), note: 'AT on the 3 stages, β = 1000' },
    sp: { alpha: 1, matches: [{ teacher: 'layer3', student: 'layer3', loss: 'sp', weight: 3000 }], note: 'SP on layer3, β = 3000' },
    rkd: { alpha: 1, matches: [{ teacher: 'pool', student: 'pool', loss: 'rkd', weight: 1 }], note: 'RKD (25·d + 50·a) on the pooled embedding' },
    pkt: { alpha: 1, matches: [{ teacher: 'pool', student: 'pool', loss: 'pkt', weight: 30000 }], note: 'PKT on the pooled embedding, β = 30000' },
    dkd: {
      alpha: 1,
      matches: [{ teacher: 'logits', student: 'logits', loss: 'dkd', weight: { kind: 'warmup', value: 1, epochs: Math.min(20, epochs) }, options: { alpha: 1, beta: 8, temperature: 4 } }],
      note: `DKD α = 1, β = 8, T = 4, weight warmed up over ${Math.min(20, epochs)} epochs`,
    },
    cc: { alpha: 1, matches: [{ teacher: 'pool', student: 'pool', loss: 'cc', weight: 0.02 }], note: 'CC on the pooled embedding, β = 0.02' },
    nst: { alpha: 1, matches: [{ teacher: 'layer3', student: 'layer3', loss: 'nst', weight: 50 }], note: 'NST on layer3, β = 50' },
    // the losses of repdistiller-losses.ts; CIFAR ResNets tap their stage outputs after the ReLU (RepDistiller and
    // mdistiller take AB's, OFD's and ReviewKD's features before it), `pool` is the 64-d embedding
    irg: {
      alpha: 1,
      matches: [{ teacher: 'pool', student: 'pool', loss: 'irg', weight: 1 }, { teacher: ['layer3', 'pool'], student: ['layer3', 'pool'], loss: 'irg_transform', weight: 1 }],
      note: 'IRG vertex + edge on the pooled embedding, transformation layer3 → pool, weights 1',
    },
    vid: { alpha: 1, matches: ['layer1', 'layer2', 'layer3'].map((l) => ({ teacher: l, student: l, loss: 'vid', weight: 1 })), note: 'VID on the 3 stages, β = 1' },
    ab: {
      alpha: 1,
      matches: ['layer1', 'layer2', 'layer3'].map((l, i) => ({ teacher: l, student: l, loss: 'ab', weight: 2 ** (i - 2) })),
      note: 'AB on the 3 stages (weights 1/4, 1/2, 1), trained jointly with CE',
    },
    ft: {
      alpha: 1, paraphraser: 'layer3',
      matches: [{ teacher: 'layer3', student: 'layer3', loss: 'ft', weight: 200 }],
      note: `FT on layer3, β = 200, after a paraphraser stage of ${epochs} epochs (Adam, lr 1e-3)`,
    },
    ofd: {
      alpha: 1,
      matches: ['layer1', 'layer2', 'layer3'].map((l, i) => ({ teacher: l, student: l, loss: 'ofd', weight: 0.001 / 2 ** (2 - i), options: { bn: `${l}.${teacherLast(l)}.bn2` } })),
      note: "OFD on the 3 stages, β = 0.001 (÷2 per stage down), margins from each stage's last bn2",
    },
    reviewkd: {
      alpha: 1,
      matches: [{
        teacher: ['layer1', 'layer2', 'layer3', 'pool'], student: ['layer1', 'layer2', 'layer3', 'pool'], loss: 'reviewkd',
        weight: { kind: 'warmup', value: 1, epochs: Math.min(20, epochs) },
      }],
      note: `ReviewKD (ABF + HCL) over the 3 stages and the pooled embedding, weight 1 warmed up over ${Math.min(20, epochs)} epochs`,
    },
    crd: {
      alpha: 1,
      matches: [{ teacher: 'pool', student: 'pool', loss: 'crd', weight: 0.8, options: { featDim: 128, negatives: 1024, temperature: 0.07, momentum: 0.5 } }],
      note: 'CRD on the pooled embedding, β = 0.8, 128-d, 1,024 negatives from the bank (RepDistiller: 16,384)',
    },
    cc_repdistiller: {
      alpha: 1,
      matches: [{ teacher: 'pool', student: 'pool', loss: 'cc_repdistiller', weight: 0.02 }],
      note: "RepDistiller's Correlation on the pooled embedding, β = 0.02",
    },
    fsp: {
      alpha: 1,
      // each stage's first block output and the stage output share their spatial size (the FSP pair)
      matches: ['layer1', 'layer2', 'layer3'].map((l) => ({ teacher: [`${l}.0`, l], student: [`${l}.0`, l], loss: 'fsp', weight: 50 })),
      note: 'FSP of (first block, stage output) in the 3 stages, β = 50, trained jointly with CE',
    },
  };
}

function args() {
  const a: Record<string, string> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`method-table: expected --name value pairs, got '${argv[i]}'`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  const known = ['epochs', 'limit', 'test-limit', 'teacher', 'student', 'methods', 'teacher-weights', 'teacher-epochs', 'schedule', 'threads', 'batch', 'device', 'out'];
  for (const k of Object.keys(a)) if (!known.includes(k)) throw new Error(`method-table: unknown option --${k} (known: ${known.map((x) => '--' + x).join(' ')})`);
  const int = (k: string, d: number | undefined) => {
    if (a[k] === undefined) return d;
    const v = Number(a[k]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`method-table: --${k} must be a positive integer, got '${a[k]}'`);
    return v;
  };
  const schedule = a.schedule ?? 'short';
  if (schedule !== 'short' && schedule !== 'repdistiller') throw new Error(`method-table: --schedule must be short or repdistiller, got '${schedule}'`);
  const epochs = int('epochs', schedule === 'repdistiller' ? 240 : 2)!;
  return {
    epochs, schedule, limit: int('limit', undefined), testLimit: int('test-limit', undefined), teacher: a.teacher ?? 'resnet56', student: a.student ?? 'resnet20',
    methods: (a.methods ?? 'plain,kd,fitnet,at,sp,rkd,pkt,dkd,cc,nst,fsp').split(','), teacherWeights: a['teacher-weights'],
    teacherEpochs: int('teacher-epochs', epochs)!, threads: int('threads', 2)!, batch: int('batch', 64)!, device: a.device ?? 'cpu', out: a.out ?? 'runs/method-table',
  };
}

export async function main(): Promise<void> {
  const o = args();
  setNumThreads(o.threads);
  registerBuiltinModels();
  const device = checkDevice(o.device, '--device');
  const probeTeacher = createModel(o.teacher);
  teacherBlocks = Object.fromEntries(['layer1', 'layer2', 'layer3'].map((l) => [l, (probeTeacher.getSubmodule(l) as Module).children().length]));
  probeTeacher.dispose();
  const table = methods(o.epochs);
  for (const m of o.methods) if (!(m in table)) throw new Error(`method-table: unknown method '${m}' (known: ${Object.keys(table).join(', ')})`);
  registerBuiltinDatasets();
  const info = getImageDataset('cifar10');
  const data = loadDataset('cifar10', o.limit);
  if (o.testLimit !== undefined && o.testLimit < data.test.length) {
    // the test archive is sorted by class too: a fixed random subset (for smoke runs; tables use the full test set)
    const full = data.test;
    data.test = full.subset(new Rng(7).permutation(full.length).slice(0, o.testLimit).sort(), `${full.name}-${o.testLimit}`);
    full.dispose();
  }
  const nTrain = data.train.length, nTest = data.test.length;
  const norm = [normalize(info.mean, info.std)];
  const aug = [randomCrop(32, 4), randomHorizontalFlip()];
  const optimizer = { kind: 'sgd' as const, lr: 0.05, momentum: 0.9, weightDecay: 5e-4 };
  const sched = o.schedule === 'repdistiller' ? { schedule: 'multistep' as const, milestones: [150, 180, 210] } : { schedule: 'cosine' as const };
  const quiet = { progress: process.stdout.isTTY, log: (l: string) => process.stdout.write(l + '\n') };
  fs.mkdirSync(o.out, { recursive: true });
  process.stdout.write(`CIFAR-10 (${nTrain} train / ${nTest} test), ${o.teacher} -> ${o.student}, ${o.epochs} epochs (${o.schedule}), batch ${o.batch}, ${getNumThreads().torch} threads, ${device}\n`);

  // the teacher: given weights, or trained here with the same data and schedule
  manualSeed(0);
  const teacher = createModel(o.teacher);
  let teacherAcc = NaN, teacherEpochS = NaN;
  const rows: { method: string; note: string; acc: number; epochs: number; epoch_s: number }[] = [];
  try {
    if (device !== 'cpu') teacher.to(device);
    if (o.teacherWeights) loadWeights(teacher, o.teacherWeights);
    else {
      const s = await trainModel({
        name: `teacher ${o.teacher}`, model: teacher, train: new DataLoader(data.train, { batchSize: o.batch, shuffle: true, seed: 0, transforms: [...aug, ...norm], device }),
        test: data.test, testTransforms: norm, epochs: o.teacherEpochs, seed: 0, optimizer, ...sched, outDir: path.join(o.out, 'teacher'), force: true, checkpointEvery: 0, ...quiet,
      });
      loadWeights(teacher, path.join(o.out, 'teacher', 'best.safetensors'));
      teacherAcc = s.best_test_acc;
      teacherEpochS = s.mean_epoch_s;
    }
    for (const name of o.methods) {
      manualSeed(1);
      const student: Module = createModel(o.student);
      if (device !== 'cpu') student.to(device);
      const m = table[name];
      let s: TrainSummary;
      try {
        if (!m)
          s = await trainModel({
            name: `${name} ${o.student}`, model: student, train: new DataLoader(data.train, { batchSize: o.batch, shuffle: true, seed: 1, transforms: [...aug, ...norm], device }),
            test: data.test, testTransforms: norm, epochs: o.epochs, seed: 1, optimizer, ...sched, outDir: path.join(o.out, name), force: true, checkpointEvery: 0, ...quiet,
          });
        else {
          let matches = m.matches;
          if (m.paraphraser) {
            // FT's first stage: the paraphraser learns to reconstruct the teacher's feature (RepDistiller's init), the
            // student role only carrying the optimizer; then the ft term reads the paraphraser from that stage's file
            const dir = path.join(o.out, `${name}-paraphraser`);
            const probeStudent = createModel(o.student);
            try {
              await runEngine({
                name: `${name} paraphraser`, outDir: dir, force: true, seed: 1, epochs: o.epochs, ...quiet,
                train: new DataLoader(data.train, { batchSize: o.batch, shuffle: true, seed: 1, transforms: [...aug, ...norm], device }),
                roles: [{ name: 'student', model: probeStudent, optimizer: { kind: 'adam', lr: 1e-3 } }, { name: 'teacher', model: teacher }],
                terms: [{ loss: 'ft_paraphraser', student: `student.${m.paraphraser}`, teacher: `teacher.${m.paraphraser}` }],
              });
            } finally {
              probeStudent.dispose();
            }
            matches = matches.map((x) => ({ ...x, options: { ...x.options, paraphraser: path.join(dir, 'last.proj.safetensors') } }));
          }
          s = await distill({
            name: `${name} ${o.student}`, teacher, student, data: { train: data.train, test: data.test }, outDir: path.join(o.out, name), force: true, seed: 1,
            epochs: o.epochs, batchSize: o.batch, transforms: [...aug, ...norm], testTransforms: norm, temperature: 4, alpha: m.alpha,
            softLoss: 'kl', cache: false, matches: matches.length ? matches : undefined, optimizer, ...sched, device, ...quiet,
          });
        }
      } finally {
        student.dispose();
      }
      rows.push({ method: name, note: m?.note ?? 'cross-entropy only', acc: s.best_test_acc, epochs: o.epochs, epoch_s: s.mean_epoch_s });
      process.stdout.write(`${name}: best test accuracy ${s.best_test_acc.toFixed(2)} %, ${s.mean_epoch_s.toFixed(1)} s per epoch\n`);
    }
  } finally {
    teacher.dispose();
    data.train.dispose();
    data.test.dispose();
  }
  const lines = [
    `CIFAR-10, ${nTrain} training images, ${o.teacher} (teacher${Number.isFinite(teacherAcc) ? ` ${teacherAcc.toFixed(2)} %, ${o.teacherEpochs} epochs, ${teacherEpochS.toFixed(1)} s/epoch` : `, weights ${o.teacherWeights}`}) -> ${o.student}, schedule ${o.schedule}`,
    '',
    '| method | setting | best test acc (%) | epochs | epoch (s) |',
    '|---|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.method} | ${r.note} | ${r.acc.toFixed(2)} | ${r.epochs} | ${r.epoch_s.toFixed(1)} |`),
  ];
  const json = { dataset: 'cifar10', train_images: nTrain, teacher: o.teacher, student: o.student, teacher_acc: teacherAcc, schedule: o.schedule, epochs: o.epochs, rows };
  writeFileAtomic(path.join(o.out, 'method-table.md'), lines.join('\n') + '\n');
  writeFileAtomic(path.join(o.out, 'method-table.json'), JSON.stringify(json, null, 2));
  process.stdout.write('\n' + lines.join('\n') + '\n' + JSON.stringify(json) + '\n');
}

if (require.main === module)
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
