// Two builds of tsdistill in one process, epoch against epoch: trainModel on the seed recipe (Fashion-MNIST, batch 64,
// 2 threads) with build A's modules and with build B's, alternating in pairs (the order flips every pair) so that
// the drift of a shared machine hits both alike. Prints, per kind, best and median epoch seconds of each build and the
// median of the per-pair B/A ratios. Each build's first epoch is an untimed warm-up (it also builds what the loader
// builds once, such as the resident float copy). Both builds must load the same native addon.
//   npm run build && node dist/bench/ab-epochs.js OLD_BUILD_DIR [NEW_BUILD_DIR=dist] [--pairs 6] [--kinds plain,kd_cached,kd]
// where a build dir is a `tsc --outDir` output of the checkout to compare, e.g.
//   git worktree add /tmp/base <commit> && cd /tmp/base && npx tsc -p . --outDir /tmp/base/.build
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

type Kind = 'plain' | 'kd_cached' | 'kd';

function parse(argv: string[]) {
  const pos: string[] = [];
  const o = { pairs: 6, kinds: 'plain,kd_cached,kd', threads: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--pairs' || a === '--threads') (o as any)[a.slice(2)] = Number(argv[++i]);
    else if (a === '--kinds') o.kinds = argv[++i];
    else pos.push(a);
  }
  if (!pos[0]) throw new Error('ab-epochs: pass the build directory to compare against (see the header)');
  return { a: path.resolve(pos[0]), b: path.resolve(pos[1] ?? path.join(__dirname, '..')), ...o };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const o = parse(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-ab-'));
  const sides = ['A', 'B'] as const;
  const env: Record<string, any> = {};
  for (const s of sides) {
    const req = (m: string) => require(path.join(s === 'A' ? o.a : o.b, 'src', m));
    const torch = req('torch'), data = req('data'), models = req('models'), distill = req('distill');
    torch.setNumThreads(o.threads);
    const train = data.loadFashionMnist({ split: 'train' }), test = data.loadFashionMnist({ split: 'test', limit: 1000 });
    const stats = data.FASHION_MNIST_STATS;
    const loader = new data.DataLoader(train, { batchSize: 64, shuffle: true, seed: 0, transforms: [data.normalize([...stats.mean], [...stats.std])] });
    torch.manualSeed(0);
    const teacher = new models.LeNet5(10);
    env[s] = { torch, models, distill, train, test, loader, teacher, cache: path.join(dir, `cache-${s}`) };
  }
  const epoch = async (s: string, kind: Kind): Promise<number> => {
    const e = env[s];
    e.torch.manualSeed(0);
    const m = new e.models.LeNet5Half(10, true);
    const out = fs.mkdtempSync(path.join(dir, `${s}-${kind}-`));
    try {
      const r = await e.distill.trainModel({
        name: kind, model: m, train: e.loader, test: e.test, testTransforms: e.loader.transforms, epochs: 1, seed: 0,
        optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0 }, schedule: 'constant', outDir: out, cacheDir: e.cache,
        progress: false, log: () => {}, checkpointEvery: 0,
        ...(kind === 'plain' ? {} : { teacher: e.teacher, kd: { temperature: 4, alpha: 0.3, softLoss: 'kl', cache: kind === 'kd_cached' } }),
      });
      return r.mean_epoch_s;
    } finally {
      m.dispose();
      fs.rmSync(out, { recursive: true, force: true });
    }
  };
  try {
    for (const s of sides) {
      (await env[s].distill.teacherLogits(env[s].teacher, env[s].loader, env[s].cache)).logits.dispose();
      await epoch(s, 'plain');
    }
    process.stdout.write(`A = ${o.a}\nB = ${o.b}\n\n| kind | A epoch (s) | B epoch (s) | B / A, median of pairs | pairs |\n|---|---:|---:|---:|---|\n`);
    for (const kind of o.kinds.split(',') as Kind[]) {
      const t: Record<string, number[]> = { A: [], B: [] };
      const ratios: number[] = [];
      for (let i = 0; i < o.pairs; i++) {
        for (const s of i % 2 ? ['B', 'A'] : ['A', 'B']) t[s].push(await epoch(s, kind));
        ratios.push(t.B[i] / t.A[i]);
        process.stderr.write(`${kind} pair ${i + 1}/${o.pairs}: A ${t.A[i].toFixed(2)} s, B ${t.B[i].toFixed(2)} s, B/A ${ratios[i].toFixed(3)}\n`);
      }
      const f = (xs: number[]) => `${Math.min(...xs).toFixed(2)} (${median(xs).toFixed(2)})`;
      process.stdout.write(`| ${kind} | ${f(t.A)} | ${f(t.B)} | ${median(ratios).toFixed(3)} | ${ratios.map((r) => r.toFixed(3)).join(', ')} |\n`);
    }
  } finally {
    for (const s of sides) {
      env[s].teacher.dispose();
      env[s].train.dispose();
      env[s].test.dispose();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
