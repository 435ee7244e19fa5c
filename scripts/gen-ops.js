#!/usr/bin/env node
// Generates src/torch/ops.generated.ts from the operator schema registry of the libtorch the addon is linked
// against. One typed wrapper per supported aten overload; the overload is fixed here, never chosen at run time.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const native = require(path.join(root, 'build/Release/tsdistill_native.node'));
const outFile = path.join(root, 'src/torch/ops.generated.ts');

const RESERVED = new Set(
  ('break case catch class const continue debugger default delete do else enum export extends false finally for ' +
    'function if import in instanceof new null return super switch this throw true try typeof var void while with ' +
    'yield let static implements interface package private protected public await arguments eval').split(' '),
);
const ident = (s) => (RESERVED.has(s) ? s + '_' : s);

// TypeScript type of an argument, or null when the binding cannot pass it.
function argType(a, isSelf) {
  let t;
  switch (a.kind) {
    case 'Tensor': t = isSelf ? 'Tensor' : 'TensorLike'; break;
    case 'int': t = 'number'; break;
    case 'float': t = 'number'; break;
    case 'bool': t = 'boolean'; break;
    case 'Scalar': t = 'Scalar'; break;
    case 'str': t = 'string'; break;
    case 'Device': t = 'DeviceLike'; break;
    case 'ScalarType': t = 'DType'; break;
    case 'Layout': t = 'Layout'; break;
    case 'MemoryFormat': t = 'MemoryFormat'; break;
    case 'int[]': t = a.n ? 'number | number[]' : 'number[]'; break;
    case 'float[]': t = 'number[]'; break;
    case 'bool[]': t = 'boolean[]'; break;
    case 'Tensor[]': t = 'Tensor[]'; break;
    case 'Tensor?[]': t = '(Tensor | null)[]'; break;
    default: return null; // Generator and unsupported kinds
  }
  if (a.optional) t += ' | null';
  return t;
}

// How a JS value is handed to the addon.
function argExpr(a, v) {
  if (a.kind === 'Tensor') return `h(${v})`;
  if (a.kind === 'Tensor[]' || a.kind === 'Tensor?[]') return `hl(${v})`;
  return v;
}

function retType(r) {
  switch (r.type) {
    case 'Tensor': return 'Tensor';
    case 'Tensor[]': return 'Tensor[]';
    case 'int': case 'float': case 'Scalar': case 'SymInt': case 'SymFloat': return 'number';
    case 'bool': return 'boolean';
    case 'ScalarType': return 'number';
    case 'int[]': case 'float[]': case 'SymInt[]': return 'number[]';
    default: return null;
  }
}

function fnName(s) {
  const base = s.name.slice('aten::'.length);
  return ident(s.overload ? `${base}_${s.overload}` : base);
}

const schemas = native.schemas().filter((s) => s.name.startsWith('aten::') && !s.isVararg);
schemas.sort((a, b) => (a.name === b.name ? a.overload.localeCompare(b.overload) : a.name.localeCompare(b.name)));

const out = [];
const used = new Set();
const skipped = [];
for (const s of schemas) {
  let name = fnName(s);
  if (used.has(name)) name = `${s.name.slice(6)}$${s.overload}`;
  if (used.has(name)) { skipped.push(`${s.name}.${s.overload}: name clash`); continue; }

  const rets = s.returns.map(retType);
  if (rets.some((r) => r === null)) { skipped.push(`${s.schema}: return type`); continue; }

  const positional = [];
  const keyword = [];
  let ok = true;
  s.args.forEach((a, i) => {
    const t = argType(a, (i === 0 && a.name === 'self') || a.mutated);
    if (t === null) {
      if (!a.optional && !a.hasDefault) ok = false;
      return; // left to its default / None
    }
    (a.kwargOnly ? keyword : positional).push({ a, t, i });
  });
  if (!ok) { skipped.push(`${s.schema}: argument type`); continue; }

  const kwRequired = keyword.some(({ a }) => !a.hasDefault && !a.optional);
  const params = [];
  // Optional positionals before a required one (or before a required keyword object) must be passed explicitly.
  let lastRequired = -1;
  positional.forEach(({ a }, i) => { if (!(a.hasDefault || a.optional)) lastRequired = i; });
  if (kwRequired) lastRequired = positional.length;
  positional.forEach(({ a, t }, i) => {
    const opt = a.hasDefault || a.optional;
    if (!opt) params.push(`${ident(a.name)}: ${t}`);
    else if (i < lastRequired) params.push(`${ident(a.name)}: ${t} | undefined`);
    else params.push(`${ident(a.name)}?: ${t}`);
  });
  if (keyword.length) {
    const fields = keyword.map(({ a, t }) => `${JSON.stringify(a.name).slice(1, -1)}${a.hasDefault || a.optional ? '?' : ''}: ${t}`);
    params.push(`kw${kwRequired ? '' : '?'}: { ${fields.join('; ')} }`);
  }

  // Arguments in schema order; omitted trailing defaults are left for the addon to fill.
  const argExprs = [];
  s.args.forEach((a) => {
    const p = positional.find((x) => x.a === a);
    const k = keyword.find((x) => x.a === a);
    if (p) argExprs.push(argExpr(a, ident(a.name)));
    else if (k) argExprs.push(argExpr(a, kwRequired ? `kw.${a.name}` : `kw?.${a.name}`));
    else argExprs.push('undefined');
  });
  while (argExprs.length && argExprs[argExprs.length - 1] === 'undefined') argExprs.pop();

  // Returns that alias a mutated argument come back as that argument.
  const retExprs = s.returns.map((r, i) => {
    if (r.mutated) {
      const src = s.args.find((a) => a.mutated && a.alias === r.alias);
      if (!src) return null;
      return positional.find((x) => x.a === src) ? ident(src.name) : (kwRequired ? `kw.${src.name}` : `kw?.${src.name}`);
    }
    if (rets[i] === 'Tensor') return `wrap($r${s.returns.length > 1 ? `[${i}]` : ''})`;
    if (rets[i] === 'Tensor[]') return `wrapList($r${s.returns.length > 1 ? `[${i}]` : ''})`;
    return `$r${s.returns.length > 1 ? `[${i}]` : ''}`;
  });
  if (retExprs.some((r) => r === null)) { skipped.push(`${s.schema}: mutated return without source`); continue; }
  const mutatedRet = s.returns.map((r) => r.mutated);

  let tsRet;
  if (s.returns.length === 0) tsRet = 'void';
  else if (s.returns.length === 1) tsRet = mutatedRet[0] ? 'Tensor' : rets[0];
  else tsRet = `[${s.returns.map((r, i) => (r.mutated ? 'Tensor' : rets[i])).join(', ')}]`;

  const id = `$${name}`;
  const opName = s.name;
  const callExpr = `native.call(${id} >= 0 ? ${id} : (${id} = op(${JSON.stringify(opName)}, ${JSON.stringify(s.overload)}))${argExprs.length ? ', ' + argExprs.join(', ') : ''})`;
  let body;
  if (s.returns.length === 0) body = `  ${callExpr};`;
  else if (s.returns.length === 1 && mutatedRet[0]) body = `  ${callExpr};\n  return ${retExprs[0]} as Tensor;`;
  else if (s.returns.length === 1) body = `  const $r = ${callExpr};\n  return ${retExprs[0]};`;
  else body = `  const $r = ${callExpr};\n  return [${retExprs.join(', ')}];`;

  used.add(name);
  out.push(`let ${id} = -1;\n/** \`${s.schema.replace(/\*\//g, '* /')}\` */\nexport function ${name}(${params.join(', ')}): ${tsRet} {\n${body}\n}\n`);
}

const header = `// THIS FILE IS AUTOMATICALLY GENERATED by scripts/gen-ops.js from the operator schemas of libtorch ${native.version().runtime}.
// Do not edit. One function per aten overload: \`name\` for the default overload, \`name_overload\` otherwise.
/* eslint-disable */
import type { Tensor } from './tensor';
import type { DType, DeviceLike, Layout, MemoryFormat, Scalar, TensorLike } from './types';
import { native, op, h, hl, wrap, wrapList } from './handle';

export const LIBTORCH_VERSION = ${JSON.stringify(native.version().runtime)};
`;
const text = header + '\n' + out.join('\n');
const prev = fs.existsSync(outFile) ? fs.readFileSync(outFile, 'utf8') : null;
if (prev !== text) fs.writeFileSync(outFile, text);
process.stdout.write(`gen-ops: ${out.length} wrappers, ${skipped.length} overloads skipped -> ${path.relative(root, outFile)}${prev === text ? ' (unchanged)' : ''}\n`);
if (process.argv.includes('--list-skipped')) for (const s of skipped) process.stdout.write('  skipped ' + s + '\n');
