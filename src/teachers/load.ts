// Teacher kinds by name: what a configuration's `teacher:` section (or a staged configuration's role) may name
// instead of a zoo model. Each kind lists the section keys it takes, which of them are required, and how it loads.
// The built-in kinds (registered by `registerBuiltinTeachers`, nothing registers on import):
//   { model: onnx, path, input?, output?, batchSize?, providers? }
//   { model: torchscript, path, output? }
//   { model: tfjs, path (model.json), input?, output?, batchSize? }
//   { model: http, url, returns: logits | probs, batchSize?, retries?, timeoutMs?, input?: raw, labels?, floor?, tolerance?, id? }
import { closest } from '../nn';
import type { Teacher } from './teacher';
import { OnnxTeacher } from './onnx';
import { TorchScriptTeacher } from './torchscript';
import { TfjsTeacher } from './tfjs';
import { httpTeacher } from './blackbox';

export interface ExternalTeacherSpec {
  model: string;
  path?: string;
  input?: string;
  output?: string;
  batchSize?: number;
  providers?: string[];
  url?: string;
  returns?: 'logits' | 'probs';
  retries?: number;
  timeoutMs?: number;
  [key: string]: unknown;
}

export interface TeacherKind {
  /** The section keys this kind takes. */
  keys: string[];
  /** Keys that must be given, each with a line saying what it is. */
  required: Record<string, string>;
  /** A model file read from `path` (checked to exist, made absolute relative to the configuration file). */
  file?: string;
  load(spec: ExternalTeacherSpec): Promise<Teacher> | Teacher;
}

const kinds = new Map<string, TeacherKind>();

/** Adds a teacher kind that configurations can name (`model: <name>`). */
export function registerTeacherKind(name: string, kind: TeacherKind): void {
  if (!/^[a-z][a-z0-9_-]*$/.test(name)) throw new Error(`registerTeacherKind: '${name}' is not a valid kind name (lower-case letters, digits, _ -)`);
  if (kinds.has(name)) throw new Error(`registerTeacherKind: a teacher kind named '${name}' is already registered`);
  if (typeof kind?.load !== 'function' || !Array.isArray(kind.keys)) throw new Error(`registerTeacherKind('${name}'): expected { keys, required, load }`);
  for (const k of Object.keys(kind.required ?? {})) if (!kind.keys.includes(k)) throw new Error(`registerTeacherKind('${name}'): required key '${k}' is not among its keys`);
  kinds.set(name, kind);
}

/** The registered teacher kinds. */
export function teacherKinds(): string[] {
  registerBuiltinTeachers();
  return [...kinds.keys()];
}
export function getTeacherKind(name: string): TeacherKind {
  registerBuiltinTeachers();
  const k = kinds.get(name);
  if (!k) throw new Error(`unknown teacher kind '${name}'. Closest: ${closest(name, [...kinds.keys()], 3).join(', ')}`);
  return k;
}

let builtins = false;
export function registerBuiltinTeachers(): void {
  if (builtins) return;
  builtins = true;
  registerTeacherKind('onnx', {
    keys: ['path', 'input', 'output', 'batchSize', 'providers'], required: { path: 'the .onnx file' }, file: '.onnx',
    load: (s) => OnnxTeacher.load(s.path!, { input: s.input, output: s.output, batchSize: s.batchSize, executionProviders: s.providers }),
  });
  registerTeacherKind('torchscript', {
    keys: ['path', 'output'], required: { path: 'the .pt file' }, file: '.pt',
    load: (s) => TorchScriptTeacher.load(s.path!, { output: s.output }),
  });
  registerTeacherKind('tfjs', {
    keys: ['path', 'input', 'output', 'batchSize'], required: { path: 'the model.json file' }, file: 'model.json',
    load: (s) => TfjsTeacher.load(s.path!, { input: s.input, output: s.output, batchSize: s.batchSize }),
  });
  registerTeacherKind('http', {
    keys: ['url', 'returns', 'batchSize', 'retries', 'timeoutMs', 'input', 'labels', 'floor', 'tolerance', 'id'],
    required: { url: 'the endpoint', returns: "'logits' or 'probs' (what the endpoint returns per input)" },
    load: (s) => {
      // input: raw sends the batch's raw samples (texts, image files) instead of the student's tensor
      if (s.input !== undefined && s.input !== 'raw') throw new Error(`http teacher: input must be 'raw' (send the raw samples) or absent (send the student's tensor), got '${s.input}'`);
      return httpTeacher({
        url: s.url!, returns: s.returns!, batchSize: s.batchSize, retries: s.retries, timeoutMs: s.timeoutMs,
        ...(s.input ? { input: 'raw' as const } : {}), labels: s.labels as string[] | undefined, floor: s.floor as number | undefined,
        tolerance: s.tolerance as number | undefined, id: s.id as string | undefined,
      });
    },
  });
}

/** True when the section names a registered teacher kind rather than a zoo model. */
export function isExternalTeacherSpec(spec: { model: string } | undefined): boolean {
  registerBuiltinTeachers();
  return !!spec && kinds.has(spec.model);
}

/** Loads the teacher a section describes; `where` names the section in errors. */
export async function loadExternalTeacher(spec: ExternalTeacherSpec, where = 'teacher'): Promise<Teacher> {
  registerBuiltinTeachers();
  const kind = kinds.get(spec.model);
  if (!kind) throw new Error(`${where}: model '${spec.model}' is not an external teacher (${[...kinds.keys()].join(', ')})`);
  try {
    return await kind.load(spec);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
}
