// Shared test utilities: leak checks, float64 central-difference gradient checks, teacher agreement.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { afterEach, beforeEach } from 'node:test';
import { Tensor, dispose, liveTensors, noGrad, tidy, randn } from '../src/torch';
import type { Module } from '../src/nn';
import { type Teacher, runTeacher } from '../src/teachers';

/** Asserts after each test of the current suite that the live-tensor count is back to its value before the test. */
export function checkLeaks(): void {
  let base = 0;
  beforeEach(() => {
    base = liveTensors();
  });
  afterEach(() => {
    assert.equal(liveTensors(), base, `live tensors: ${liveTensors()} after the test, ${base} before`);
  });
}

/**
 * Compares autograd gradients of `fn()` with float64 central differences, for every element of every tensor in
 * `wrt` (leaf tensors that `fn` reads and that require grad; use float64). The scalar checked is
 * sum(fn() * w) for a fixed random w, so every output element contributes. Disposes everything it creates.
 */
export function gradcheck(
  fn: () => Tensor,
  wrt: Tensor[],
  opts: { eps?: number; atol?: number; rtol?: number; label?: string } = {},
): void {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-3;
  const label = opts.label ?? 'gradcheck';
  for (const t of wrt) {
    assert.equal(t.dtype, 'float64', `${label}: gradcheck needs float64 tensors, got ${t.dtype}`);
    assert.ok(t.requiresGrad, `${label}: every tensor checked must require grad`);
  }
  const w = tidy(() => {
    const out = noGrad(() => fn());
    return randn(out.shape, { dtype: 'float64' });
  });
  const objective = (): number =>
    tidy(() => noGrad(() => fn().mul(w).sum().item()));
  // analytic
  for (const t of wrt) t.grad = null;
  tidy(() => {
    fn().mul(w).sum().backward();
  });
  const analytic = wrt.map((t) => {
    const g = t.grad;
    if (g === null) return new Float64Array(t.numel());
    const d = g.data() as Float64Array;
    g.dispose();
    return d;
  });
  // numeric
  try {
    wrt.forEach((t, k) => {
      const n = t.numel();
      for (let i = 0; i < n; i++) {
        const bump = (delta: number) =>
          tidy(() => noGrad(() => { t.view(-1).select(0, i).add_(delta); }));
        bump(eps);
        const fp = objective();
        bump(-2 * eps);
        const fm = objective();
        bump(eps);
        const num = (fp - fm) / (2 * eps);
        const ana = analytic[k][i];
        const tol = atol + rtol * Math.abs(num);
        if (!(Math.abs(num - ana) <= tol)) {
          assert.fail(`${label}: tensor #${k} [${t.shape}] element ${i}: analytic ${ana} vs numeric ${num} (tolerance ${tol})`);
        }
      }
    });
  } finally {
    w.dispose();
    for (const t of wrt) t.grad = null;
  }
}

/** Max absolute difference between a tensor and expected numbers. */
export function maxAbsDiff(t: Tensor, expected: ArrayLike<number>): number {
  const d = t.toArray();
  assert.equal(d.length, expected.length, `length ${d.length} vs expected ${expected.length}`);
  let m = 0;
  for (let i = 0; i < d.length; i++) m = Math.max(m, Math.abs(d[i] - expected[i]));
  return m;
}

/** Max absolute difference between a tensor and a fixture's {shape, values} (in float64; the shape checked first). */
export function maxAbsDiffShaped(t: Tensor, ref: { shape: number[]; values: number[] }): number {
  assert.deepEqual(t.shape, ref.shape);
  const v = t.to('float64').data() as Float64Array;
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i] - ref.values[i]));
  return m;
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import { tensor as makeTensor } from '../src/torch';

export const FIXTURES = path.join(__dirname, '..', '..', 'test', 'fixtures');
/** A JSON fixture made by test/fixtures/make_fixtures.py (PyTorch 1.13). */
export function fixture(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
}
/** A fixture tensor `{shape, values}` as a float64 (or given dtype) Tensor. */
export function fx(t: { shape: number[]; values: number[] }, dtype: 'float64' | 'float32' | 'int64' = 'float64'): Tensor {
  return makeTensor(Float64Array.from(t.values), { shape: t.shape, dtype });
}
/** Max |a - b| over two tensors. */
export function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape, `shape ${JSON.stringify(a.shape)} vs ${JSON.stringify(b.shape)}`);
  return tidy(() => (a.numel() === 0 ? 0 : a.double().sub(b.double()).abs().max().item()));
}

/** Top-1 agreement (%) of `student` with an external `teacher` on the inputs `xs`. */
export async function teacherAgreement(teacher: Teacher, student: Module, xs: Tensor): Promise<number> {
  const t = await runTeacher(teacher, xs, ['logits']);
  try {
    return 100 * tidy(() => noGrad(() => (student.call(xs) as Tensor).argmax(1).eq(t.get('logits')!.argmax(1)).float().mean().item()));
  } finally {
    dispose([...t.values()]);
  }
}

/** The records of a JSONL file (none when it does not exist). */
export function readJsonl(file: string): any[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

/** A `generate` output directory: every expected sample id is in exactly one of its three files, and in it once. */
export function assertExactlyOnce(dir: string, ids: readonly string[]): { samples: any[]; rejected: any[]; failures: any[] } {
  const samples = readJsonl(path.join(dir, 'samples.jsonl'));
  const rejected = readJsonl(path.join(dir, 'rejected.jsonl'));
  const failures = readJsonl(path.join(dir, 'failures.jsonl'));
  const all = [...samples, ...rejected, ...failures].map((r) => r.id);
  assert.equal(new Set(all).size, all.length, 'no sample id appears twice');
  assert.deepEqual([...all].sort(), [...ids].sort(), 'every prompt × sample index is accounted for, nothing else');
  return { samples, rejected, failures };
}

/**
 * Starts `tsdistill serve` (the CLI at `cli`) as a child process and waits until its output matches `ready`, whose
 * first group is the base URL. `stop()` sends SIGINT and resolves with the exit code; `out` holds what it printed.
 */
export async function startServeProcess(cli: string, args: string[], ready: RegExp): Promise<{ url: string; out: { stdout: string; stderr: string }; stop(): Promise<number | null> }> {
  const srv = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  srv.stderr.on('data', (c) => (out.stderr += c));
  const exited = new Promise<number | null>((resolve) => srv.on('exit', (c) => resolve(c)));
  const url = await new Promise<string>((resolve, reject) => {
    srv.stdout.on('data', (c) => {
      out.stdout += c;
      const m = ready.exec(out.stdout);
      if (m) resolve(m[1]);
    });
    srv.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out.stderr}`)));
  });
  return {
    url,
    out,
    stop: () => {
      srv.kill('SIGINT');
      return exited;
    },
  };
}

/**
 * Runs `node ...args` and kills it (SIGKILL) as soon as `file` exists with content (e.g. a stage's first metrics line);
 * resolves true when the process died by that kill (false: it ended first).
 */
export function spawnKilledOnFile(args: string[], file: string): Promise<boolean> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise<boolean>((resolve) => {
    const poll = setInterval(() => {
      if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim()) {
        child.kill('SIGKILL');
        clearInterval(poll);
      }
    }, 2);
    child.on('exit', (_c, sig) => {
      clearInterval(poll);
      resolve(sig === 'SIGKILL');
    });
  });
}
