// Imports only point down: every relative import of every .ts file under src/ resolves to a top-level folder whose
// layer is at or below the importing file's own (see ARCHITECTURE.md).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as ts from 'typescript';

/**
 * The layer order, top first; folders on one line are peers (an import between them does not point up). Where the
 * middle folders sit was read off their imports: teachers/ and export/ use nn and torch, report/ torch, llm/ models,
 * data and util; distill/ uses all four (teacher kinds, QAT through export's fake quantizers, llm's tokenizers and
 * decoder checkpoints); util/ (edit distance) depends on nothing. There are no known exceptions.
 */
const LAYERS: string[][] = [
  ['cli'],
  ['run'],
  ['distill', 'search'],
  ['teachers', 'llm', 'export', 'report'],
  ['models'],
  ['data'],
  ['nn', 'optim'],
  ['torch'],
  ['util'],
];

/** src/index.ts, the package entry, re-exports every layer and sits above them all. */
const ENTRY = 'index.ts';

/**
 * Relative module specifiers of a source file, as TypeScript's scanner reads them (comments and strings skipped):
 * import and export ... from (types too), side-effect imports, import(), require(), import x = require().
 */
function relativeImports(source: string): string[] {
  const found = ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
  return [...new Set(found.filter((s) => s.startsWith('.')))];
}

/** The top-level folder of a file under `srcDir` (null for files directly in src/ or outside it). */
function folderOf(srcDir: string, file: string): string | null {
  const parts = path.relative(srcDir, file).split(path.sep);
  return parts[0] === '..' || parts.length < 2 ? null : parts[0];
}

/**
 * The top-level folder an import resolves to: `../models` (a folder's index) is models/; `..` or `../index` is the
 * package entry ('<entry>'); outside src/ is null.
 */
function targetOf(srcDir: string, target: string): string | null {
  const parts = path.relative(srcDir, target).split(path.sep);
  if (parts[0] === '..' || path.isAbsolute(parts[0])) return null;
  return parts[0] === '' || (parts.length === 1 && /^index(\.[jt]s)?$/.test(parts[0])) ? '<entry>' : parts[0];
}

/**
 * Imports that point up the layer order, as "file: import 'spec' (folder, layer n) points up from folder (layer m)",
 * plus files in folders that are in no layer. `files` maps paths relative to src/ to their source text.
 */
function layerViolations(files: Record<string, string>, layers = LAYERS): string[] {
  const srcDir = path.resolve('/src');
  const level = new Map<string, number>();
  layers.forEach((names, i) => names.forEach((n) => level.set(n, i)));
  const out: string[] = [];
  for (const [rel, source] of Object.entries(files)) {
    const file = path.join(srcDir, rel);
    const from = folderOf(srcDir, file);
    if (from === null) {
      if (rel !== ENTRY) out.push(`src/${rel}: a file directly in src/ other than ${ENTRY}; put it in a layer's folder`);
      continue;
    }
    const mine = level.get(from);
    if (mine === undefined) {
      out.push(`src/${rel}: folder ${from}/ is in no layer; add it to LAYERS in test/layers.test.ts`);
      continue;
    }
    for (const spec of relativeImports(source)) {
      const to = targetOf(srcDir, path.resolve(path.dirname(file), spec));
      if (to === null || to === from) continue;
      const theirs = level.get(to);
      if (to === '<entry>') out.push(`src/${rel}: import '${spec}' reaches the package entry src/${ENTRY}, above every layer`);
      else if (theirs === undefined) out.push(`src/${rel}: import '${spec}' reaches ${to}/, which is in no layer`);
      else if (theirs < mine) out.push(`src/${rel}: import '${spec}' (${to}/, layer ${theirs}) points up from ${from}/ (layer ${mine})`);
    }
  }
  return out;
}

function sourcesUnder(dir: string, base = dir, out: Record<string, string> = {}): Record<string, string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) sourcesUnder(p, base, out);
    else if (e.name.endsWith('.ts')) out[path.relative(base, p)] = fs.readFileSync(p, 'utf8');
  }
  return out;
}

describe('layers', () => {
  const src = path.join(__dirname, '..', '..', 'src');

  it('no file under src/ imports from a layer above its own', () => {
    const files = sourcesUnder(src);
    assert.ok(Object.keys(files).length > 50, `read ${Object.keys(files).length} files under ${src}`);
    const bad = layerViolations(files);
    assert.deepEqual(bad, [], `upward imports:\n${bad.join('\n')}`);
  });

  it('every top-level folder of src/ is in exactly one layer', () => {
    const folders = fs.readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    const listed = LAYERS.flat();
    assert.equal(new Set(listed).size, listed.length, 'a folder is listed twice');
    assert.deepEqual(folders, [...listed].sort());
  });

  it('finds upward imports of every form, and names the file and the import', () => {
    const bad = layerViolations({
      'distill/a.ts': "import type { RunConfig } from '../run/config';\n",
      'data/b.ts': "export { x } from '../models';\nconst y = require('../distill/trainer');\n",
      'nn/c.ts': "const m = await import('../data/rng');\n// import { z } from '../cli/main';\n",
      'models/d.ts': "import { Rng } from '../data/rng';\nimport { t } from './e';\nimport * as fs from 'node:fs';\nconst p = require('../../package.json');\n",
      'torch/f.ts': "import { x } from '..';\n",
      'extra/e.ts': '',
      'stray.ts': '',
    });
    assert.deepEqual(bad, [
      "src/distill/a.ts: import '../run/config' (run/, layer 1) points up from distill/ (layer 2)",
      "src/data/b.ts: import '../models' (models/, layer 4) points up from data/ (layer 5)",
      "src/data/b.ts: import '../distill/trainer' (distill/, layer 2) points up from data/ (layer 5)",
      "src/nn/c.ts: import '../data/rng' (data/, layer 5) points up from nn/ (layer 6)",
      "src/torch/f.ts: import '..' reaches the package entry src/index.ts, above every layer",
      'src/extra/e.ts: folder extra/ is in no layer; add it to LAYERS in test/layers.test.ts',
      'src/stray.ts: a file directly in src/ other than index.ts; put it in a layer\'s folder',
    ]);
  });
});
