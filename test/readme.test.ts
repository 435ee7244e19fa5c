// The documentation holds up: the TypeScript examples of README.md and docs/*.md run as written (with the package
// name mapped to this checkout), README.md stays a landing page, and every relative link points to an existing file
// (and, for a link into a Markdown file, an existing heading).
//
// A ```ts block runs unless the line right before it says why not:
//   <!-- example: skip REASON -->          never run here (a fragment, or something a test cannot do), with the reason
//   <!-- example: needs shared-data -->    skipped when the shared data folder ($TSDISTILL_SHARED_DATA or
//                                          ../shared/data) is absent
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as ts from 'typescript';
import { sharedDataDir } from '../src/data';

const root = path.join(__dirname, '..', '..');
const README_MAX_LINES = 400;
const docFiles = [
  'README.md',
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

interface Example {
  line: number;
  src: string;
  /** Why the example does not run here, when it does not. */
  skip?: string;
}

/** The ```ts blocks of a Markdown text, with the marker before each applied. */
function examples(text: string, shared = () => sharedDataDir() !== null): Example[] {
  const out: Example[] = [];
  for (const m of text.matchAll(/^(?:<!--\s*example:\s*(.*?)\s*-->\n)?```ts\n([\s\S]*?)^```/gm)) {
    const line = text.slice(0, m.index).split('\n').length + (m[1] === undefined ? 0 : 1);
    const marker = m[1];
    let skip: string | undefined;
    if (marker !== undefined) {
      const s = /^skip\s+(\S.*)$/.exec(marker);
      if (s) skip = s[1];
      else if (marker === 'needs shared-data') {
        if (!shared()) skip = 'needs the shared data folder ($TSDISTILL_SHARED_DATA or ../shared/data), absent here';
      } else throw new Error(`line ${line}: unknown example marker '${marker}' (expected 'skip REASON' or 'needs shared-data')`);
    }
    out.push({ line, src: m[2], skip });
  }
  return out;
}

async function runExample(src: string): Promise<unknown[]> {
  const code = src
    .replace(/^main\(\);$/m, 'exports.done = main();')
    .replace(/from 'tsdistill(\/[a-z]+)?'/g, (_m, sub) => `from ${JSON.stringify(path.join(root, 'dist', 'src', sub ? sub.slice(1) : ''))}`);
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
  const logs: unknown[] = [];
  const fakeConsole = { log: (...a: unknown[]) => logs.push(a) };
  const exp: { done?: Promise<void> } = {};
  new Function('require', 'console', 'exports', js)(require, fakeConsole, exp);
  await exp.done;
  return logs;
}

/** Markdown text outside fenced code blocks, with inline code spans blanked (links inside code are not links). */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, (block) => block.replace(/[^\n]/g, ' ')).replace(/`[^`\n]*`/g, (span) => ' '.repeat(span.length));
}

/** GitHub's heading anchors: lower case, punctuation dropped, each space a hyphen; repeats get -1, -2, ... */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6}\s+(.*?)\s*#*\s*$/gm)) {
    const heading = text.slice(m.index! + m[0].indexOf(m[1]), m.index! + m[0].indexOf(m[1]) + m[1].length);
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative link targets of a Markdown text: [text](target), with their line numbers. */
function relativeLinks(text: string): { line: number; target: string }[] {
  const out: { line: number; target: string }[] = [];
  const p = prose(text);
  for (const m of p.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
    out.push({ line: p.slice(0, m.index).split('\n').length, target });
  }
  return out;
}

for (const file of docFiles) {
  const blocks = examples(read(file));
  if (blocks.length === 0) continue;
  describe(`${file} examples`, () => {
    blocks.forEach(({ line, src, skip }, i) => {
      it(`example ${i + 1} (line ${line}) runs`, { skip }, async () => {
        const logs = await runExample(src);
        assert.ok(logs.length > 0, 'the example prints something');
        assert.ok(!logs.flat(3).some((v) => typeof v === 'number' && !Number.isFinite(v)), 'printed numbers are finite');
      });
    });
  });
}

describe('documentation', () => {
  it('README.md has examples', () => assert.ok(examples(read('README.md')).length > 0));

  it(`README.md is a landing page of at most ${README_MAX_LINES} lines`, () => {
    const lines = read('README.md').replace(/\n$/, '').split('\n').length;
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; move the details into docs/`);
  });

  it('every relative link in README.md and docs/*.md points to an existing file and heading', () => {
    const broken: string[] = [];
    for (const file of docFiles) {
      for (const { line, target } of relativeLinks(read(file))) {
        const [rel, anchor] = target.split('#', 2) as [string, string | undefined];
        const dest = rel === '' ? file : path.posix.join(path.posix.dirname(file), decodeURIComponent(rel));
        if (!fs.existsSync(path.join(root, dest))) {
          broken.push(`${file}:${line}: ${target} (no file ${dest})`);
          continue;
        }
        if (anchor !== undefined && dest.endsWith('.md') && !anchors(read(dest)).has(anchor))
          broken.push(`${file}:${line}: ${target} (no heading #${anchor} in ${dest})`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('README.md links every page of docs/', () => {
    const linked = new Set(relativeLinks(read('README.md')).map((l) => l.target.split('#')[0]));
    assert.deepEqual(docFiles.filter((f) => f !== 'README.md' && !linked.has(f)), []);
  });

  it('the checks above catch what they should', () => {
    const md = '# A b\n\n## Using another libtorch (CUDA)\n\n## A b\n\n```sh\n[x](nowhere.md)\n```\n`[y](nor-here.md)` [z](x.md#a-b-1) [w](https://example.com)\n';
    assert.deepEqual([...anchors(md)], ['a-b', 'using-another-libtorch-cuda', 'a-b-1']);
    assert.deepEqual(relativeLinks(md), [{ line: 10, target: 'x.md#a-b-1' }]);
    const ex = examples('<!-- example: skip a fragment -->\n```ts\nfoo\n```\n\n<!-- example: needs shared-data -->\n```ts\nbar\n```\n```ts\nbaz\n```\n', () => false);
    assert.deepEqual(
      ex.map((e) => [e.line, e.src, e.skip]),
      [
        [2, 'foo\n', 'a fragment'],
        [7, 'bar\n', 'needs the shared data folder ($TSDISTILL_SHARED_DATA or ../shared/data), absent here'],
        [10, 'baz\n', undefined],
      ],
    );
    assert.throws(() => examples('<!-- example: maybe -->\n```ts\nx\n```\n'), /unknown example marker/);
  });
});
