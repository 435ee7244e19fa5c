#!/usr/bin/env node
// Builds the native addon with node-gyp (npm's bundled copy). Uses the system Node headers when present so
// that no header download is needed, and reports where libtorch was looked for when it is missing.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { find } = require('./find-libtorch.js');

const lt = find(); // exits with the list of options when libtorch is missing
process.stdout.write(`tsdistill: building the native addon against libtorch (${lt.source}: ${lt.libdir})\n`);
const args = ['rebuild'];
if (!process.env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
const jobs = process.env.JOBS || '2';
args.push(`--jobs=${jobs}`);
// npm passes its bundled node-gyp in npm_config_node_gyp; outside npm, look next to the npm install.
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
].filter(Boolean);
const gypJs = candidates.find((p) => fs.existsSync(p));
const cmd = gypJs ? process.execPath : 'node-gyp';
const cmdArgs = gypJs ? [gypJs, ...args] : args;
const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', cwd: path.join(__dirname, '..') });
if (r.error) {
  process.stderr.write(`tsdistill: could not run node-gyp: ${r.error.message}\n`);
  process.exit(1);
}
process.exit(r.status ?? 1);
