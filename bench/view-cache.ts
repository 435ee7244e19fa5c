// Augmented distillation on cached views against a live teacher, on CIFAR-10 with random crop (padding 4) and flip:
// a teacher is trained first, then per seed up to four students on the same schedule: alone (cross-entropy), alone on
// the teacher's augmentation (jitter), KD with the teacher run on every batch (live), KD on K cached views per image
// (top-k stored, distill.cache 'views'). Prints a
// table (mean epoch time, its ratio to the plain epoch, final accuracy per seed, mean ± std) and a final JSON line.
//   node dist/bench/view-cache.js [--n 5000] [--test 2000] [--teacher resnet56] [--student resnet20]
//     [--teacher-epochs 15] [--epochs 8] [--seeds 0,1,2] [--views 8] [--topk 10] [--threads 2] [--data cifar10]
//     [--pad 4] [--flip true] [--T 4] [--alpha 0.1] [--lr 0.05] [--timing-rounds 3]
//     [--teacher-options '{"dropout":0}'] [--teacher-file t.safetensors] [--student-aug true] [--wd 5e-4] [--batch 64] [--kinds plain,live,views]
//     [--teacher-n 10000]
// --teacher-n: the teacher trains on the first N of the same fixed random order of the training split (so on the
// students' n images and more), a teacher that knows more than a student can learn from n images alone; the students
// (and the view cache) still see only the n images.
// --kinds plain,live,views: the students trained per seed (e.g. plain alone while a teacher trains elsewhere); 'jitter'
// adds the student alone on augmented images whatever --student-aug says, to separate the effect of augmentation from
// that of the teacher when the other students are un-augmented.
// --teacher-file: weights read from the file when it exists (no teacher training), else the trained teacher is saved
// there. --student-aug false: the student alone and the live-KD student train on un-augmented images (Hinton's
// recipe: only the teacher is jittered); the cached-view student always trains on the stored views.
// Epoch times on a shared machine drift with its load, so besides each run's mean epoch the bench times `timing-rounds`
// rounds of one epoch each of the three students, interleaved (plain, live, views, plain, ...), and reports medians.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, setNumThreads } from '../src/torch';
import { Module, loadWeights, saveWeights } from '../src/nn';
import { DataLoader, ImageDataset, type ImageDatasetInfo, getDataset, normalize, randomCrop, randomHorizontalFlip, registerBuiltinDatasets } from '../src/data';
import { createModel, registerBuiltinModels } from '../src/models';
import { type TrainSummary, evaluate, trainModel } from '../src/distill';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const n = Number(arg('n', '5000')), nTest = Number(arg('test', '2000'));
const teacherN = Number(arg('teacher-n', String(n)));
const teacherName = arg('teacher', 'resnet56'), studentName = arg('student', 'resnet20');
const teacherEpochs = Number(arg('teacher-epochs', '15')), epochs = Number(arg('epochs', '8'));
const seeds = arg('seeds', '0,1,2').split(',').filter((x) => x !== '').map(Number);
const rounds = Number(arg('timing-rounds', '3'));
const teacherOptions = JSON.parse(arg('teacher-options', '{}')) as Record<string, unknown>;
const views = Number(arg('views', '8')), topk = Number(arg('topk', '10'));
const dataName = arg('data', 'cifar10');
const pad = Number(arg('pad', dataName === 'cifar10' ? '4' : '2'));
const flip = arg('flip', dataName === 'cifar10' ? 'true' : 'false') === 'true';
const T = Number(arg('T', '4')), alpha = Number(arg('alpha', '0.1')), lr = Number(arg('lr', '0.05'));
const teacherFile = arg('teacher-file', ''), studentAug = arg('student-aug', 'true') === 'true';
const wd = Number(arg('wd', '5e-4')), batch = Number(arg('batch', '64'));
type Kind = 'plain' | 'jitter' | 'live' | 'views';
const kinds = arg('kinds', 'plain,live,views').split(',').filter((x) => x !== '') as Kind[];
for (const k of kinds) if (!['plain', 'jitter', 'live', 'views'].includes(k)) throw new Error(`--kinds: unknown student '${k}' (expected plain, jitter, live or views)`);
setNumThreads(Number(arg('threads', '2')));

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));

async function main() {
  registerBuiltinDatasets();
  registerBuiltinModels();
  const info = getDataset(dataName) as ImageDatasetInfo;
  const train = info.load('train', n) as ImageDataset, test = info.load('test', nTest) as ImageDataset;
  if (!Number.isInteger(teacherN) || teacherN < n) throw new Error(`--teacher-n: ${arg('teacher-n', '')} must be an integer ≥ --n (${n}): the teacher's images include the students'`);
  const teacherTrain = teacherN === n ? train : (info.load('train', teacherN) as ImageDataset);
  const norm = [normalize(info.mean, info.std)];
  const [, h, w] = info.inputShape;
  const aug = () => [randomCrop(h === w ? h : [h, w], pad), ...(flip ? [randomHorizontalFlip()] : []), ...norm];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-bench-views-'));
  const sgd = { kind: 'sgd' as const, lr, momentum: 0.9, weightDecay: wd };
  const kd = { temperature: T, alpha, softLoss: 'kl' as const };
  const log = (l: string) => process.stderr.write(`${l}\n`);
  const run = async (name: string, model: Module, seed: number, e: number, extra: Partial<Parameters<typeof trainModel>[0]> = {}, augmented = true, data = train): Promise<TrainSummary> =>
    trainModel({
      name, model, train: new DataLoader(data, { batchSize: batch, shuffle: true, seed, transforms: augmented ? aug() : norm }), test, testTransforms: norm, epochs: e, seed,
      optimizer: sgd, schedule: 'cosine', warmupEpochs: 1, outDir: path.join(dir, name), progress: false, log, cacheDir: path.join(dir, 'cache'), ...extra,
    });

  // the teacher
  manualSeed(100);
  const teacher = createModel(teacherName, { numClasses: 10, ...teacherOptions });
  const t0 = Date.now();
  // (--teacher-epochs 0: an untrained teacher, for timing only)
  const fromFile = teacherFile !== '' && fs.existsSync(teacherFile);
  if (fromFile) loadWeights(teacher, teacherFile);
  const ts = !fromFile && teacherEpochs > 0 ? await run('teacher', teacher, 100, teacherEpochs, {}, true, teacherTrain) : null;
  const teacherS = (Date.now() - t0) / 1000;
  if (teacherTrain !== train) teacherTrain.dispose();
  if (teacherFile !== '' && !fromFile) saveWeights(teacher, teacherFile);
  log(`teacher: ${fromFile ? `read from ${teacherFile}` : `trained ${teacherEpochs} epochs on ${teacherN} images in ${teacherS.toFixed(0)} s`}`);
  teacher.eval();
  teacher.requiresGrad_(false);
  const teacherAcc = await evaluate(teacher, test, norm);

  const rows: Record<Kind, { acc: number[]; epochS: number[] }> = { plain: { acc: [], epochS: [] }, jitter: { acc: [], epochS: [] }, live: { acc: [], epochS: [] }, views: { acc: [], epochS: [] } };
  let buildS = 0;
  for (const seed of seeds) {
    for (const kind of kinds) {
      manualSeed(seed);
      const student = createModel(studentName, { numClasses: 10 });
      const tb = Date.now();
      const s = await run(`${kind}-${seed}`, student, seed, epochs, kind === 'plain' || kind === 'jitter' ? {} : {
        // un-augmented students: the teacher's logits per image are cached (computed in the first epoch)
        teacher, kd: { ...kd, cache: kind === 'views' ? 'views' : !studentAug, views, topk, viewSeed: 0 },
      }, kind === 'views' || kind === 'jitter' || studentAug);
      // the view cache is built once (views seeded by 0, shared by the seeds): its time is everything outside the epochs
      if (kind === 'views' && s.teacher_cache === 'built') buildS = (Date.now() - tb) / 1000 - s.mean_epoch_s * epochs;
      rows[kind].acc.push(s.final_test_acc);
      rows[kind].epochS.push(s.mean_epoch_s);
      student.dispose();
      log(`${kind} seed ${seed}: ${s.final_test_acc.toFixed(2)} %, ${s.mean_epoch_s.toFixed(2)} s/epoch`);
    }
  }
  // interleaved single epochs (the view cache is read from disk: built above, or now)
  const timed: Record<'plain' | 'live' | 'views', number[]> = { plain: [], live: [], views: [] };
  for (let r = 0; r < rounds; r++)
    for (const kind of ['plain', 'live', 'views'] as const) {
      manualSeed(r);
      const student = createModel(studentName, { numClasses: 10 });
      const s = await run(`time-${kind}-${r}`, student, r, 1, kind === 'plain' ? {} : { teacher, kd: { ...kd, cache: kind === 'views' ? 'views' : false, views, topk, viewSeed: 0 } }, kind === 'views' || studentAug);
      timed[kind].push(s.mean_epoch_s);
      student.dispose();
    }
  const median = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : NaN; };
  const plainS = seeds.length ? mean(rows.plain.epochS) : NaN;
  console.log(`${dataName} ${n} train / ${nTest} test images, ${teacherName} (${teacherN === n ? '' : `${teacherN} images, `}${teacherEpochs} epochs, ${teacherAcc.toFixed(2)} %) -> ${studentName}, ${epochs} epochs, crop pad ${pad}${flip ? ' + flip' : ''}${studentAug ? '' : ' (teacher and cached views only)'}, SGD ${lr} (weight decay ${wd}, 1 warm-up epoch, cosine), batch ${batch}, T ${T}, alpha ${alpha}, K ${views}, top-${topk}`);
  console.log('student                | epoch s | × plain | accuracy per seed        | mean ± std');
  console.log('-----------------------|---------|---------|--------------------------|-------------');
  const label = { plain: studentAug ? 'alone (CE)' : 'alone (CE), no jitter', jitter: 'alone (CE), augmented', live: studentAug ? 'KD, live teacher' : 'KD, no jitter', views: `KD, ${views} cached views` };
  for (const k of kinds) {
    const r = rows[k];
    console.log(`${label[k].padEnd(23)}| ${mean(r.epochS).toFixed(2).padStart(7)} | ${(Number.isNaN(plainS) ? '—' : (mean(r.epochS) / plainS).toFixed(2)).padStart(7)} | ${r.acc.map((a) => a.toFixed(2)).join(', ').padEnd(24)} | ${mean(r.acc).toFixed(2)} ± ${std(r.acc).toFixed(2)}`);
  }
  if (rounds) {
    console.log(`interleaved single epochs (${rounds} rounds), median s: plain ${median(timed.plain).toFixed(2)}, live ${median(timed.live).toFixed(2)} (× ${(median(timed.live) / median(timed.plain)).toFixed(2)}), cached views ${median(timed.views).toFixed(2)} (× ${(median(timed.views) / median(timed.plain)).toFixed(2)})`);
  }
  console.log(`view cache build (${views} teacher passes over ${n} images): ${buildS.toFixed(1)} s; teacher training ${teacherS.toFixed(0)} s`);
  console.log(JSON.stringify({
    data: dataName, n, teacher_n: teacherN, test: nTest, student_aug: studentAug, weight_decay: wd, batch, teacher_file: teacherFile || null, teacher_from_file: fromFile, teacher: teacherName, teacher_options: teacherOptions, student: studentName, pad, flip, T, alpha, lr, teacher_epochs: teacherEpochs, epochs, seeds, views, topk, teacher_acc: teacherAcc, teacher_best: ts?.best_test_acc ?? null,
    plain_epoch_s: plainS, live_epoch_s: mean(rows.live.epochS), views_epoch_s: mean(rows.views.epochS),
    views_over_plain: +(mean(rows.views.epochS) / plainS).toFixed(3), live_over_plain: +(mean(rows.live.epochS) / plainS).toFixed(3), view_cache_build_s: +buildS.toFixed(1),
    timed_epoch_s: timed, timed_views_over_plain: +(median(timed.views) / median(timed.plain)).toFixed(3), timed_live_over_plain: +(median(timed.live) / median(timed.plain)).toFixed(3),
    acc: { plain: rows.plain.acc, jitter: rows.jitter.acc, live: rows.live.acc, views: rows.views.acc },
    test_errors: Object.fromEntries(kinds.map((k) => [k, rows[k].acc.map((a) => Math.round(((100 - a) * test.length) / 100))])), views_minus_live: +(mean(rows.views.acc) - mean(rows.live.acc)).toFixed(2),
  }));
  teacher.dispose();
  train.dispose();
  test.dispose();
  fs.rmSync(dir, { recursive: true });
}
main().catch((e) => { console.error(e); process.exit(1); });
