// `--plugin FILE`: the user's own losses, models, data sets and generation verifiers, registered from their code before
// the config is checked. A plugin is a CommonJS/ESM-compiled JavaScript file, or a TypeScript file when the `typescript`
// package can be resolved (it is transpiled in memory). It exports `register(api)` (or a default function) and calls
// `api.registerLoss(...)` / `api.registerModel(...)` / `api.registerDataset(...)` / `api.registerTeacherKind(...)` /
// `api.registerVerifier(...)`; it may
// also import tsdistill itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Module from 'node:module';
import { registerLoss, registerBuiltinLosses, lossNames } from '../distill';
import { registerModel, registerBuiltinModels, modelNames } from '../models';
import { registerDataset, registerBuiltinDatasets, datasetNames } from '../data';
import { registerVerifier, verifierNames } from '../llm';
import { registerTeacherKind, teacherKinds } from '../teachers';

export const pluginApi = { registerLoss, registerModel, registerDataset, registerTeacherKind, registerVerifier, lossNames, modelNames, datasetNames, teacherKinds, verifierNames };
export type PluginApi = typeof pluginApi;

function compileTs(file: string, source: string): string {
  let ts: typeof import('typescript');
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    ts = require(require.resolve('typescript', { paths: [path.dirname(file), process.cwd(), __dirname] }));
  } catch {
    throw new Error(`--plugin ${file}: a TypeScript plugin needs the 'typescript' package (npm i -D typescript), or give the compiled .js file`);
  }
  const out = ts.transpileModule(source, { fileName: file, reportDiagnostics: true, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) throw new Error(`--plugin ${file}: ${errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`);
  return out.outputText;
}

/** Loads each plugin file and calls its register function with the registry API. */
export function loadPlugins(files: string[]): void {
  registerBuiltinModels();
  registerBuiltinLosses();
  registerBuiltinDatasets();
  for (const f of files) {
    const file = path.resolve(f);
    if (!fs.existsSync(file)) throw new Error(`--plugin ${f}: file not found: ${file}`);
    let exported: any;
    try {
      if (/\.(m|c)?ts$/.test(file)) {
        const m = new Module(file, module) as any;
        m.filename = file;
        m.paths = (Module as any)._nodeModulePaths(path.dirname(file));
        m._compile(compileTs(file, fs.readFileSync(file, 'utf8')), file);
        exported = m.exports;
      } else exported = require(file);
    } catch (e) {
      throw new Error(`--plugin ${f}: ${(e as Error).message}`);
    }
    const register = typeof exported === 'function' ? exported : exported?.register ?? exported?.default;
    if (typeof register !== 'function') throw new Error(`--plugin ${f}: expected it to export a function register(api) (or a default function)`);
    try {
      register(pluginApi);
    } catch (e) {
      throw new Error(`--plugin ${f}: register() failed: ${(e as Error).message}`);
    }
  }
}
