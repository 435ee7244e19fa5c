// Cross-modal distillation on spoken digits: a LeNet-5 trained on MNIST images teaches an audio CNN on spoken digits
// (espeak-ng, many voices) through pairs of an utterance and an MNIST image of the same digit; the audio student never
// sees a label. Baselines: the same student trained on the true labels, on the teacher's argmax (hard pseudo-labels),
// and chance (10 %). All students are evaluated on voices held out of training (docs/cross-modal.md).
//   npm run build && node dist/examples/cross-modal-digits.js [--seeds 0,1,2] [--epochs 20] [--teacher-epochs 1]
//     [--students teacher,labels,pseudo] [--width 8] [--train-repeats 4] [--test-repeats 4] [--threads 1] [--out runs/cross-modal-digits]
//     [--schedule cosine|constant] [--temperature 1] [--teacher-from DIR (DIR/seed-N/teacher/best.safetensors: a teacher trained before)]
//     [--resume]   (finished stages are read back, not run again: seeds run by separate processes are then tabulated)
// Prints one line per seed and student, the table (mean ± sd over seeds) and a final JSON line; writes
// <out>/cross-modal-digits.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setNumThreads, writeFileAtomic } from '../src/torch';
import { loadSpokenDigits } from '../src/data';
import { crossModalDigits } from '../src/distill';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? def : process.argv[i + 1];
}
const int = (name: string, def: string, min = 1) => {
  const v = Number(arg(name, def));
  if (!Number.isInteger(v) || v < min) throw new Error(`cross-modal-digits: --${name} must be an integer >= ${min}, got ${arg(name, def)}`);
  return v;
};

const LABEL: Record<string, string> = {
  teacher: `audio student from the image teacher (soft targets, T = ${arg('temperature', '1')}; no labels)`,
  pseudo: "audio student on the teacher's argmax (hard pseudo-labels; no labels)",
  labels: 'audio student on the true labels',
};

async function main(): Promise<void> {
  const seeds = arg('seeds', '0,1,2').split(',').map(Number);
  if (seeds.some((s) => !Number.isInteger(s))) throw new Error(`cross-modal-digits: --seeds must be integers, got ${arg('seeds', '')}`);
  const epochs = int('epochs', '20'), teacherEpochs = int('teacher-epochs', '1'), out = arg('out', 'runs/cross-modal-digits');
  const students = arg('students', 'teacher,labels,pseudo').split(',') as ('teacher' | 'labels' | 'pseudo')[];
  setNumThreads(int('threads', '1'));
  const t0 = Date.now();
  const corpus = loadSpokenDigits({ trainRepeats: int('train-repeats', '4'), testRepeats: int('test-repeats', '4'), log: (l) => process.stdout.write(l + '\n') });
  process.stdout.write(`corpus: ${corpus.train.length} training utterances (${corpus.voices.train.length} voices), ${corpus.test.length} test utterances (${corpus.voices.test.length} held-out voices: ${corpus.voices.test.join(', ')}), log-mel ${corpus.spec.mels}×${corpus.spec.frames}, ${corpus.fromCache ? 'from the cache' : `generated in ${((Date.now() - t0) / 1000).toFixed(0)} s`}\n`);
  const sizes = { train: corpus.train.length, test: corpus.test.length };
  const results: { seed: number; teacher_test_acc: number | null; paired_teacher_acc: number; students: Record<string, number>; seconds: number }[] = [];
  try {
    for (const seed of seeds) {
      const s0 = Date.now();
      const r = await crossModalDigits({
        outDir: path.join(out, `seed-${seed}`), seed, corpus, epochs, width: int('width', '8'), schedule: { kind: arg('schedule', 'cosine') as 'constant' | 'cosine' }, temperature: Number(arg('temperature', '1')),
        teacher: { epochs: teacherEpochs, ...(arg('teacher-from', '') ? { checkpoint: path.join(arg('teacher-from', ''), `seed-${seed}`, 'teacher', 'best.safetensors') } : {}) }, students, resume: process.argv.includes('--resume'),
        force: !process.argv.includes('--resume'), progress: false, log: (l) => process.stdout.write(`seed ${seed}: ${l}\n`),
      });
      const accs = Object.fromEntries(Object.entries(r.students).map(([k, s]) => [k, s!.final_test_acc]));
      // a teacher trained before: its run's summary
      const earlier = arg('teacher-from', '') ? path.join(arg('teacher-from', ''), `seed-${seed}`, 'teacher', 'summary.json') : '';
      const teacherAcc = r.teacher?.final_test_acc ?? (earlier && fs.existsSync(earlier) ? (JSON.parse(fs.readFileSync(earlier, 'utf8')) as { final_test_acc: number }).final_test_acc : null);
      results.push({ seed, teacher_test_acc: teacherAcc, paired_teacher_acc: r.pairedTeacherAcc, students: accs, seconds: (Date.now() - s0) / 1000 });
      process.stdout.write(`seed ${seed}: teacher (MNIST test) ${teacherAcc?.toFixed(2)} %, teacher on the paired images ${r.pairedTeacherAcc.toFixed(2)} %, ${Object.entries(accs).map(([k, v]) => `${k} ${v.toFixed(2)} %`).join(', ')} (${((Date.now() - s0) / 1000).toFixed(0)} s)\n`);
    }
  } finally {
    corpus.dispose();
  }
  const stat = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
    return { mean: m, sd, text: `${m.toFixed(2)} ± ${sd.toFixed(2)}` };
  };
  const rows = students.map((k) => ({ student: k, ...stat(results.map((r) => r.students[k])) }));
  const lines = [
    `held-out voices (${corpus.voices.test.length}), ${sizes.test} utterances; seeds ${seeds.join(',')}; students (audio-cnn width ${int('width', '8')}) ${epochs} epochs, Adam lr 0.001 (${arg('schedule', 'cosine')}), batch 64; teacher LeNet-5, ${teacherEpochs} MNIST epoch(s)`,
    '',
    '| student (audio-cnn) | test accuracy on held-out voices (%) |',
    '|---|---:|',
    ...rows.map((r) => `| ${LABEL[r.student]} | ${r.text} |`),
    '| chance | 10.00 |',
    `| (teacher on MNIST test images) | ${stat(results.map((r) => r.teacher_test_acc ?? NaN)).text} |`,
    `| (teacher's top class = the digit, on the paired training images) | ${stat(results.map((r) => r.paired_teacher_acc)).text} |`,
  ];
  fs.mkdirSync(out, { recursive: true });
  const summary = { corpus: { ...sizes, voices: corpus.voices, spec: corpus.spec }, epochs, teacherEpochs, seeds, results, rows };
  writeFileAtomic(path.join(out, 'cross-modal-digits.json'), JSON.stringify(summary, null, 2));
  process.stdout.write('\n' + lines.join('\n') + '\n' + JSON.stringify({ rows: rows.map(({ student, mean, sd }) => ({ student, mean, sd })), seeds }) + '\n');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
