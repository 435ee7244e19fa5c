import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, dispose, manualSeed, randint, randn, tidy } from '../src/torch';
import { F } from '../src/nn';
import { SGD } from '../src/optim';
import { createModel, registerBuiltinModels } from '../src/models';
import { FeatureMatcher, Projection, expandPattern, getLoss, lossNames, mapLayers, registerLoss } from '../src/distill';
import { checkLeaks } from './helpers';

registerBuiltinModels();

describe('feature matching', () => {
  checkLeaks();
  it('probes shapes and inserts projections only where a loss needs equal shapes', () => {
    manualSeed(0);
    const teacher = createModel('resnet8x4'), student = createModel('resnet8');
    const fm = new FeatureMatcher(student, teacher, [
      { teacher: 'layer3', student: 'layer3', loss: 'hint' }, // [B,256,8,8] vs [B,64,8,8]: 1x1 conv + BN
      { teacher: 'layer2', student: 'layer3', loss: 'at', weight: 1000 }, // 16x16 vs 8x8: resize only, channels free
      { teacher: 'layer3', student: 'layer3', loss: 'sp' }, // relation: nothing
      { teacher: 'logits', student: 'logits', loss: 'kd', options: { temperature: 4 } },
    ]);
    const x = randn([4, 3, 32, 32]);
    fm.probe(x);
    const projs = fm.matches.map((m) => m.proj && m.proj.extraRepr());
    assert.deepEqual(projs, ['[64, 8, 8] -> [256, 8, 8]', '[64, 8, 8] -> [128, 16, 16]', null, null]);
    assert.equal(fm.projections.numParameters(), 64 * 256 + 2 * 256);
    assert.deepEqual(Object.keys(student.stateDict()).filter((k) => /proj|conv\.weight$/.test(k) && !k.startsWith('layer') && k !== 'conv1.weight'), []);
    assert.deepEqual(fm.termNames, ['hint:layer3', 'at:layer3', 'sp:layer3', 'kd:logits']);
    tidy(() => {
      const { logits, terms } = fm.forward(x, randint(0, 10, [4], { dtype: 'int64' }));
      assert.deepEqual(logits.shape, [4, 10]);
      for (const [k, v] of terms) assert.ok(v.shape.length === 0 && Number.isFinite(v.item()), k);
    });
    x.dispose();
    fm.dispose();
    teacher.dispose();
    student.dispose();
  });
  it('training the student with its projections lowers the matched losses', async () => {
    manualSeed(1);
    const teacher = createModel('mlp', { widths: [20, 32, 16, 5] }).eval();
    const student = createModel('mlp', { widths: [20, 8, 5] });
    const fm = new FeatureMatcher(student, teacher, [
      { teacher: 'layers.0', student: 'layers.0', loss: 'hint' }, // [B,32] vs [B,8]: linear 8 -> 32
      { teacher: 'logits', student: 'logits', loss: 'kd' },
    ]);
    const x = randn([16, 20]), y = randint(0, 5, [16], { dtype: 'int64' });
    fm.probe(x);
    const opt = new SGD([...student.parameters(), ...fm.parameters()], { lr: 0.1, momentum: 0.9 });
    const first: number[] = [], last: number[] = [];
    for (let step = 0; step < 60; step++) {
      const vals = tidy(() => {
        const { logits, terms } = fm.forward(x, y);
        const loss = [...terms.values()].reduce((a, b) => a.add(b), F.crossEntropy(logits, y).mul(0.1));
        opt.zeroGrad();
        loss.backward();
        opt.step();
        return [...terms.values()].map((t) => t.item());
      });
      if (step === 0) first.push(...vals);
      last.splice(0, last.length, ...vals);
      await new Promise<void>((r) => setImmediate(r));
    }
    assert.ok(last[0] < first[0] * 0.5 && last[1] < first[1] * 0.5, `hint ${first[0]} -> ${last[0]}, kd ${first[1]} -> ${last[1]}`);
    tidy(() => assert.ok(fm.parameters().every((p) => p.grad !== null && p.grad.abs().sum().item() > 0), 'projection parameters get gradients'));
    dispose([x, y]);
    opt.dispose();
    fm.dispose();
    teacher.dispose();
    student.dispose();
  });
  it('errors name the path, the closest module paths, and impossible shapes before training', () => {
    const teacher = createModel('resnet8x4'), student = createModel('resnet8');
    assert.throws(() => new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'layer4', loss: 'hint' }]),
      /matches\[0\]\.student: 'layer4' is not a module of the student \(ResNetCifar\)\. Closest: layer1, layer2, layer3/);
    assert.throws(() => new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'layer3', loss: 'hnt' }]), /unknown loss 'hnt'\. Closest: hint/);
    assert.throws(() => new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'layer3', loss: 'fsp' }]), /loss 'fsp' takes 2 layer\(s\) per side/);
    const fm = new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'fc', loss: 'hint' }]);
    const x = randn([2, 3, 32, 32]);
    assert.throws(() => fm.probe(x), /match 'hint': student \[2, 10\] and teacher \[2, 256, 8, 8\] differ in rank; no projection maps one onto the other/);
    const none = new FeatureMatcher(student, teacher, [{ teacher: 'layer3', student: 'layer3', loss: 'hint', proj: 'none' }]);
    assert.throws(() => none.probe(x), /shapes differ \(student \[2, 64, 8, 8\], teacher \[2, 256, 8, 8\]\) and proj is 'none'/);
    x.dispose();
    teacher.dispose();
    student.dispose();
  });
  it('layer patterns and mappings: uniform (TinyBERT), last_k, explicit', () => {
    const t = ['t1', 't2', 't3', 't4', 't5', 't6'], s = ['s1', 's2', 's3'];
    assert.deepEqual(mapLayers(t, s, 'uniform'), [['t2', 's1'], ['t4', 's2'], ['t6', 's3']]);
    assert.deepEqual(mapLayers(t, s, 'last_k'), [['t4', 's1'], ['t5', 's2'], ['t6', 's3']]);
    assert.deepEqual(mapLayers(['a', 'b'], ['x', 'y'], 'explicit'), [['a', 'x'], ['b', 'y']]);
    assert.throws(() => mapLayers(['a', 'b', 'c', 'd'], s, 'uniform'), /multiple of the student's \(3\)/);
    assert.throws(() => mapLayers(['a'], s, 'last_k'), /at least as many teacher layers \(1\) as student layers \(3\)/);
    const teacher = createModel('resnet20'), student = createModel('resnet8');
    assert.deepEqual(expandPattern(teacher, 'layer3.*'), ['layer3.0', 'layer3.1', 'layer3.2']);
    assert.throws(() => expandPattern(student, 'layer4.*'), /'layer4\.\*' matches no module of ResNetCifar\. Closest:/);
    const fm = new FeatureMatcher(student, teacher, [{ teacher: 'layer*', student: 'layer*', loss: 'hint', map: 'explicit' }, { teacher: 'layer2.*', student: 'layer2.*', loss: 'at', map: 'last_k' }]);
    assert.deepEqual(fm.matches.map((m) => [m.t[0], m.s[0]]), [['layer1', 'layer1'], ['layer2', 'layer2'], ['layer3', 'layer3'], ['layer2.2', 'layer2.0']]);
    fm.dispose();
    teacher.dispose();
    student.dispose();
  });
  it('user losses register by name and run through the same path', () => {
    registerLoss('l1_feat', { needs: 'same', fn: ([s], [t]) => F.l1Loss(s, t) });
    assert.ok(lossNames().includes('l1_feat') && lossNames().includes('dkd'));
    assert.throws(() => registerLoss('l1_feat', { needs: 'same', fn: ([s]) => s }), /already registered/);
    assert.equal(getLoss('l1_feat').needs, 'same');
    const p = new Projection([2, 3], [2, 5]);
    assert.ok(p.linear && !p.bn);
    p.dispose();
  });
});
