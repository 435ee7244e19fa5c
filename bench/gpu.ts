// The CUDA path, checked and timed on a machine with a GPU (the addon built against a CUDA libtorch, e.g.
// LIBTORCH_USE_PYTORCH=1). Two parts:
//   1. agreement: resnet20 with the same weights on CPU and on the GPU, one forward, KD loss, backward and SGD step on
//      the same batch; prints the largest |difference| of logits, loss, gradients and updated weights (fp32 on both
//      sides; cuDNN may use TF32 for convolutions, as PyTorch does by default, so differences of ~1e-3 are expected).
//   2. step times on the GPU at CIFAR size: plain student step (resnet20, cross-entropy), KD step (resnet56 teacher
//      frozen, resnet20 student), and KD + 3 feature matches (FitNet hint, AT, RKD), each step ending in loss.item()
//      as the trainer's logging does. bench/gpu_step.py times the first two in PyTorch on the same GPU.
//   node dist/bench/gpu.js [--steps 100] [--rounds 3] [--batch 128] [--device cuda]
// Prints a table and a final JSON line.
import { Tensor, cuda, manualSeed, nextTick, noGrad, randint, randn, tidy, version } from '../src/torch';
import { F, Module } from '../src/nn';
import { SGD } from '../src/optim';
import { createModel, registerBuiltinModels } from '../src/models';
import { FeatureMatcher, MatchSpec, responseKD } from '../src/distill';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`gpu: --${name} must be a positive integer, got '${process.argv[i + 1]}'`);
  return v;
}
const steps = arg('steps', 100), rounds = arg('rounds', 3), batch = arg('batch', 128);
const di = process.argv.indexOf('--device');
const device = di >= 0 ? process.argv[di + 1] : 'cuda';
registerBuiltinModels();

const v = version();
console.log(`tsdistill ${v.tsdistill}, libtorch ${v.libtorch} (cuda build: ${v.cuda}), GPUs visible: ${cuda.deviceCount()}`);
if (device !== 'cpu' && !cuda.isAvailable()) {
  console.error(`gpu: device '${device}' asked for, but ${v.cuda ? 'no GPU is visible' : 'the addon is built against a CPU-only libtorch'}`);
  process.exit(2);
}

const kd = responseKD({ temperature: 4, alpha: 0.9 });
const param = (m: Module, n: string) => new Map(m.namedParameters()).get(n)!;
const buffer = (m: Module, n: string) => new Map(m.namedBuffers()).get(n)!;
const maxDiff = (a: Tensor, b: Tensor) => tidy(() => a.cpu().sub(b.cpu()).abs().max().item());

// ---------------------------------------------------------------------------------------------- 1. agreement
function agreement(): Record<string, number> {
  manualSeed(0);
  const cpuModel = createModel('resnet20');
  const teacherCpu = createModel('resnet20').eval();
  const devModel = createModel('resnet20');
  const teacherDev = createModel('resnet20').eval();
  noGrad(() => {
    devModel.loadStateDict(cpuModel.stateDict());
    teacherDev.loadStateDict(teacherCpu.stateDict());
  });
  devModel.to(device);
  teacherDev.to(device);
  const x = randn([16, 3, 32, 32]);
  const y = randint(0, 10, [16]);
  const step = (m: Module, t: Module, xx: Tensor, yy: Tensor) => {
    const opt = new SGD(m.parameters(), { lr: 0.1, momentum: 0.9 });
    const out = tidy(() => {
      const tl = noGrad(() => t.call(xx) as Tensor);
      const logits = m.call(xx) as Tensor;
      const loss = kd(logits, tl, yy).loss;
      opt.zeroGrad();
      loss.backward();
      const grads = [param(m, 'conv1.weight').grad!.clone(), param(m, 'fc.weight').grad!.clone()];
      opt.step();
      return { logits: logits.detach(), loss: loss.detach(), grads };
    });
    opt.dispose();
    return out;
  };
  const a = step(cpuModel, teacherCpu, x, y);
  const b = step(devModel, teacherDev, x.to(device), y.to(device));
  const r = {
    logits: maxDiff(a.logits, b.logits),
    loss: maxDiff(a.loss, b.loss),
    grad_conv1: maxDiff(a.grads[0], b.grads[0]),
    grad_fc: maxDiff(a.grads[1], b.grads[1]),
    weight_after_step: Math.max(...cpuModel.namedParameters().map(([n, p]) => maxDiff(p, param(devModel, n)))),
    running_mean_after_step: maxDiff(buffer(cpuModel, 'bn1.running_mean'), buffer(devModel, 'bn1.running_mean')),
  };
  for (const t of [a.logits, a.loss, ...a.grads, b.logits, b.loss, ...b.grads, x, y]) t.dispose();
  for (const m of [cpuModel, teacherCpu, devModel, teacherDev]) m.dispose();
  return r;
}

// ---------------------------------------------------------------------------------------------- 2. step times
const MATCHES: MatchSpec[] = [
  { teacher: 'layer2', student: 'layer2', loss: 'hint', weight: 1 },
  { teacher: 'layer3', student: 'layer3', loss: 'at', weight: 1000 },
  { teacher: 'pool', student: 'pool', loss: 'rkd', weight: 1 },
];
type Kind = 'plain' | 'kd' | 'kd+3';
const KINDS: Kind[] = ['plain', 'kd', 'kd+3'];

async function timeSteps(kind: Kind, teacher: Module, x: Tensor, y: Tensor): Promise<number[]> {
  manualSeed(1);
  const student = createModel('resnet20').to(device);
  const fm = kind === 'kd+3' ? new FeatureMatcher(student, teacher, MATCHES) : null;
  fm?.probe(x);
  const opt = new SGD(fm ? [...student.parameters(), ...fm.parameters()] : student.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
  const out: number[] = [];
  const warm = 10;
  try {
    for (let s = 0; s < steps + warm; s++) {
      const t0 = process.hrtime.bigint();
      tidy(() => {
        let loss: Tensor;
        if (fm) {
          const f = fm.forward(x, y);
          loss = kd(f.logits, f.teacherLogits, y).loss;
          for (const t of f.terms.values()) loss = loss.add(t);
        } else if (kind === 'kd') {
          const t = tidy(() => noGrad(() => teacher.call(x) as Tensor));
          loss = kd(student.call(x) as Tensor, t, y).loss;
        } else loss = F.crossEntropy(student.call(x) as Tensor, y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        loss.item();
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (s >= warm) out.push(ms);
      await nextTick();
    }
  } finally {
    opt.dispose();
    fm?.dispose();
    student.dispose();
  }
  return out;
}

const median = (a: number[]) => {
  const s = [...a].sort((p, q) => p - q);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const agree = agreement();
  console.log(`\nagreement CPU vs ${device} (resnet20, batch 16, one KD step):`);
  for (const [k, val] of Object.entries(agree)) console.log(`  max |diff| ${k.padEnd(24)} ${val.toExponential(2)}`);

  manualSeed(0);
  const teacher = createModel('resnet56').to(device).eval();
  teacher.requiresGrad_(false);
  const x = randn([batch, 3, 32, 32], { device });
  const y = randint(0, 10, [batch], { device });
  const times: Record<Kind, number[]> = { plain: [], kd: [], 'kd+3': [] };
  for (let r = 0; r < rounds; r++)
    for (const k of KINDS) {
      const t = await timeSteps(k, teacher, x, y);
      times[k].push(median(t));
    }
  console.log(`\nstep times on ${device}, batch ${batch}, median of ${steps} steps, best of ${rounds} rounds (ms):`);
  console.log('| step | ms | ratio to plain |\n|---|---:|---:|');
  const best = (k: Kind) => Math.min(...times[k]);
  for (const k of KINDS) console.log(`| ${k} | ${best(k).toFixed(2)} | ${(best(k) / best('plain')).toFixed(2)} |`);
  console.log(JSON.stringify({ device, batch, steps, rounds, agreement: agree, step_ms: Object.fromEntries(KINDS.map((k) => [k, best(k)])) }));
  teacher.dispose();
  x.dispose();
  y.dispose();
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
