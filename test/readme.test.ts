// The README's TypeScript examples run as written (with the package name mapped to this checkout).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as ts from 'typescript';

const root = path.join(__dirname, '..', '..');
const blocks = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README examples', () => {
  it('has examples', () => assert.ok(blocks.length > 0));
  blocks.forEach((src, i) => {
    it(`example ${i + 1} runs`, async () => {
      const code = src
        .replace(/^main\(\);$/m, 'exports.done = main();')
        .replace(/from 'tsdistill(\/[a-z]+)?'/g, (_m, sub) => `from ${JSON.stringify(path.join(root, 'dist', 'src', sub ? sub.slice(1) : ''))}`);
      const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
      const logs: unknown[] = [];
      const fakeConsole = { log: (...a: unknown[]) => logs.push(a) };
      const exp: { done?: Promise<void> } = {};
      new Function('require', 'console', 'exports', js)(require, fakeConsole, exp);
      await exp.done;
      assert.ok(logs.length > 0, 'the example prints something');
      assert.ok(!logs.flat(3).some((v) => typeof v === 'number' && !Number.isFinite(v)), 'printed numbers are finite');
    });
  });
});
