import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, noGrad, tidy } from '../src/torch';
import { Module } from '../src/nn';
import {
  CrdModule, OfdModule, ReviewKdModule, VidModule, abLoss, correlationRepDistiller, factorLoss, irgLoss, irgTransformLoss, ofdMargins,
} from '../src/distill/repdistiller-losses';
import { getLoss, registerBuiltinLosses } from '../src/distill';
import { checkLeaks, fixture, fx, maxDiff } from './helpers';

// Reference values: test/fixtures/make_repdistiller_losses_fixture.py (PyTorch 1.13, float64, the authors' modules and
// loss functions restated; module weights stored in the fixture under their PyTorch state_dict keys).
const K = fixture('repdistiller_losses.json');
type DT = 'float64' | 'float32';

function input(key: string, dtype: DT): Tensor {
  const v = K.inputs[key];
  return v.dtype === 'int64' ? fx(v, 'int64') : fx(v, dtype);
}
function withState<M extends Module>(m: M, c: any, dtype: DT): M {
  const sd: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(c.state)) sd[k] = fx(v as any, k.endsWith('num_batches_tracked') ? 'int64' : 'float64');
  const { missing } = m.loadStateDict(sd, { strict: false });
  for (const k of missing) assert.ok(['margin', 'contrast.draws'].includes(k), `${c.name}: state key '${k}' not in the fixture`);
  if (dtype === 'float64') m.to({ dtype: 'float64' });
  return m;
}

// every case: a function of the inputs (student inputs require grad), and the module it uses (for its state)
type Built = { value: Tensor; module?: Module };
const CASES: Record<string, (x: Tensor[], c: any, dtype: DT) => Built> = {
  irg: ([s, t]) => ({ value: irgLoss(s, t) }),
  irg_transform: ([s1, s2, t1, t2]) => ({ value: irgTransformLoss([s1, s2], [t1, t2]) }),
  cc_repdistiller: ([s, t]) => ({ value: correlationRepDistiller(s, t) }),
  ab: ([s, t], c) => ({ value: abLoss(s, t, c.opts) }),
  ft_factor: ([s, t]) => ({ value: factorLoss(s, t) }),
  vid: ([s, t], c, dt) => {
    const m = withState(new VidModule(s.shape[1], t.shape[1], t.shape[1]), c, dt);
    return { value: m.loss(s, t), module: m };
  },
  ofd: ([s, t], c, dt) => {
    const margin = ofdMargins(input('ofd_bn_weight', 'float64'), input('ofd_bn_bias', 'float64'));
    const m = withState(new OfdModule(s.shape[1], t.shape[1], margin), c, dt);
    margin.dispose();
    return { value: m.loss(s, t), module: m };
  },
  reviewkd: (x, c, dt) => {
    const s = x.slice(0, 4), t = x.slice(4);
    const m = withState(new ReviewKdModule(s.map((v) => v.shape[1]), t.map((v) => v.shape[1])), c, dt);
    return { value: m.loss(s, t), module: m };
  },
  crd: ([s, t], c, dt) => {
    const m = withState(new CrdModule(s.shape[1], t.shape[1], 20, { featDim: c.opts.feat_dim, negatives: c.opts.negatives, temperature: c.opts.temperature, momentum: c.opts.momentum }), c, dt);
    return { value: m.loss(s, t, input('crd_idx', dt), input('crd_contrast_idx', dt)), module: m };
  },
};

describe('RepDistiller, mdistiller and IRG losses against the authors\' code', () => {
  checkLeaks();
  it('covers every loss of the fixture', () => {
    assert.deepEqual([...new Set(K.cases.map((c: any) => c.loss))].sort(), Object.keys(CASES).sort());
  });
  for (const c of K.cases) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${c.name} (${dtype}): value, student gradient${Object.keys(c.after).length ? ', memory after the step' : ''}`, () => {
        const tol = dtype === 'float64' ? 1e-9 : 2e-4;
        let module: Module | undefined;
        try {
          tidy(() => {
            const xs = c.inputs.map((k: string) => {
              const t = input(k, dtype);
              return k.startsWith('s_') ? t.requiresGrad_(true) : t;
            });
            const built = CASES[c.loss](xs, c, dtype);
            module = built.module;
            assert.deepEqual(built.value.shape, [], 'a scalar');
            const got = built.value.item();
            assert.ok(Math.abs(got - c.value) <= tol * Math.max(1, Math.abs(c.value)), `${c.name}: ${got} vs PyTorch ${c.value}`);
            built.value.backward();
            c.inputs.forEach((k: string, i: number) => {
              if (!k.startsWith('s_')) return;
              const want = fx(c.grad[k], 'float64');
              const scale = Math.max(1e-3, want.abs().max().item());
              const g = xs[i].grad;
              assert.ok(g, `${c.name}: no gradient for ${k}`);
              assert.ok(maxDiff(g!, want) <= tol * scale * 10, `${c.name}: gradient of ${k} differs by ${maxDiff(g!, want)} (scale ${scale})`);
            });
            if (module) {
              const sd = module.stateDict();
              for (const [k, v] of Object.entries(c.after)) {
                const want = fx(v as any, 'float64');
                assert.ok(maxDiff(sd[k], want) <= tol * 10, `${c.name}: ${k} after the step differs by ${maxDiff(sd[k], want)}`);
              }
            }
          });
        } finally {
          module?.dispose();
        }
      });
    }
  }
  it("OFD's margins from the teacher's batch norm: the truncated-normal mean, or −3s where Φ(−m/s) ≤ 0.001", () => {
    tidy(() => {
      const m = ofdMargins(input('ofd_bn_weight', 'float64'), input('ofd_bn_bias', 'float64'));
      assert.deepEqual(m.shape, [1, 4, 1, 1]);
      assert.ok(maxDiff(m.reshape([-1]), input('ofd_margin', 'float64')) < 1e-12);
    });
  });
  it('CRD draws its negatives from the bank reproducibly: the same draws after a restart from the saved state', () => {
    const a = new CrdModule(5, 9, 50, { featDim: 8, negatives: 6, seed: 3 });
    const b = new CrdModule(5, 9, 50, { featDim: 8, negatives: 6, seed: 3 });
    try {
      tidy(() => {
        const idx = input('crd_idx', 'float64');
        const first = a.contrast.drawIndices(idx);
        assert.deepEqual(first.select(1, 0).toArray(), idx.toArray(), 'the positives first');
        const second = a.contrast.drawIndices(idx);
        assert.notDeepEqual(second.toArray(), first.toArray(), 'a new draw each step');
        noGrad(() => b.loadStateDict(a.stateDict()));
        assert.deepEqual(b.contrast.drawIndices(idx).toArray(), a.contrast.drawIndices(idx).toArray(), 'resumed draws equal');
        const all = first.toArray();
        assert.ok(all.every((v) => v >= 0 && v < 50));
      });
    } finally {
      a.dispose();
      b.dispose();
    }
  });
  it('the losses are registered, and bad input names the loss and the shapes', () => {
    registerBuiltinLosses();
    for (const n of ['irg', 'irg_transform', 'cc_repdistiller', 'ab', 'vid', 'ft', 'ft_paraphraser', 'ft_factor', 'ofd', 'reviewkd', 'crd']) assert.ok(getLoss(n).doc, n);
    tidy(() => {
      const e = input('s_emb', 'float64'), m = input('t_map', 'float64');
      assert.throws(() => irgLoss(e, input('s_r1', 'float64')), /irg: student \[6, 5\] and teacher \[4, 2, 8, 8\] must share the batch dimension/);
      assert.throws(() => correlationRepDistiller(e, input('t_emb9', 'float64')), /cc_repdistiller: expects equal embeddings \[B ≥ 2, D\] on both sides, got student \[6, 5\] and teacher \[6, 9\]/);
      assert.throws(() => abLoss(input('s_map', 'float64'), m), /ab: student \[6, 3, 4, 4\] and teacher \[6, 4, 4, 4\] must have equal shapes/);
      assert.throws(() => factorLoss(e, m), /ft: the student factor must be a feature map \[B, C, H, W\], got \[6, 5\]/);
    });
    const vid = new VidModule(3, 4, 4);
    try {
      tidy(() => assert.throws(() => vid.loss(input('s_map8', 'float64').float(), input('t_map', 'float32')), /vid: built for 3 → 4 channels, got student \[6, 2, 8, 8\]/));
    } finally {
      vid.dispose();
    }
  });
});
