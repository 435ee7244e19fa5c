import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { checkMatches, loadPlugins, validateConfig } from '../src/run';
import { getLoss } from '../src/distill';
import { createModel, modelNames } from '../src/models';
import { checkLeaks } from './helpers';

describe('--plugin', () => {
  checkLeaks();
  it('a TypeScript plugin registers a loss and a model that configs then name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-plugin-'));
    const file = path.join(dir, 'my-plugin.ts');
    fs.writeFileSync(file, `
import { F, Linear, Module, type Tensor } from ${JSON.stringify(path.join(__dirname, '..', 'src', 'nn'))}; // the compiled tsdistill/nn
class Tiny extends Module {
  fc = this.registerModule('fc', new Linear(784, 10));
  forward(x: Tensor): Tensor { return this.fc.call(x.flatten(1)); }
}
export function register(api: any): void {
  api.registerLoss('l1_logits', { needs: 'same', fn: ([s]: Tensor[], [t]: Tensor[]) => F.l1Loss(s, t) });
  api.registerModel('tiny-linear', () => new Tiny());
}
`);
    loadPlugins([file]);
    assert.ok(modelNames().includes('tiny-linear'));
    assert.equal(getLoss('l1_logits').needs, 'same');
    const m = createModel('tiny-linear');
    assert.equal(m.numParameters(), 7850);
    m.dispose();
    const cfg = validateConfig({ data: { dataset: 'mnist' }, teacher: { model: 'lenet5' }, student: { model: 'tiny-linear' }, distill: { matches: [{ teacher: 'logits', student: 'logits', loss: 'l1_logits' }] } });
    checkMatches(cfg, 'x.yaml');
    fs.rmSync(dir, { recursive: true });
  });
  it('errors name the plugin file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-plugin-'));
    assert.throws(() => loadPlugins([path.join(dir, 'none.js')]), /--plugin .*none\.js: file not found/);
    fs.writeFileSync(path.join(dir, 'bad.js'), 'module.exports = { x: 1 };');
    assert.throws(() => loadPlugins([path.join(dir, 'bad.js')]), /bad\.js: expected it to export a function register\(api\)/);
    fs.writeFileSync(path.join(dir, 'throws.js'), "exports.register = (api) => api.registerLoss('kd', { needs: 'same', fn: () => null });");
    assert.throws(() => loadPlugins([path.join(dir, 'throws.js')]), /throws\.js: register\(\) failed: registerLoss: a loss named 'kd' is already registered/);
    fs.writeFileSync(path.join(dir, 'syntax.ts'), 'export const x: number = ;');
    assert.throws(() => loadPlugins([path.join(dir, 'syntax.ts')]), /syntax\.ts: Expression expected/);
    fs.rmSync(dir, { recursive: true });
  });
});
