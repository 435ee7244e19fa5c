// External teachers from a configuration's `teacher` section (already validated by the config schema):
//   { model: onnx, path, input?, output?, batchSize?, providers? }
//   { model: torchscript, path, output? }
//   { model: tfjs, path (model.json), input?, output?, batchSize? }
//   { model: http, url, returns: logits | probs, batchSize?, retries?, timeoutMs? }
import type { Teacher } from './teacher';
import { OnnxTeacher } from './onnx';
import { TorchScriptTeacher } from './torchscript';
import { TfjsTeacher } from './tfjs';
import { httpTeacher } from './blackbox';

/** The teacher kinds a configuration can name instead of a zoo model. */
export const EXTERNAL_TEACHERS = ['onnx', 'torchscript', 'tfjs', 'http'] as const;
export type ExternalTeacherKind = (typeof EXTERNAL_TEACHERS)[number];

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
}

export function isExternalTeacherSpec(spec: { model: string } | undefined): boolean {
  return !!spec && (EXTERNAL_TEACHERS as readonly string[]).includes(spec.model);
}

/** Loads the teacher a `teacher:` section describes; `where` names the section in errors. */
export async function loadExternalTeacher(spec: ExternalTeacherSpec, where = 'teacher'): Promise<Teacher> {
  try {
    switch (spec.model) {
      case 'onnx':
        return await OnnxTeacher.load(spec.path!, { input: spec.input, output: spec.output, batchSize: spec.batchSize, executionProviders: spec.providers });
      case 'torchscript':
        return TorchScriptTeacher.load(spec.path!, { output: spec.output });
      case 'tfjs':
        return await TfjsTeacher.load(spec.path!, { input: spec.input, output: spec.output, batchSize: spec.batchSize });
      case 'http':
        return httpTeacher({ url: spec.url!, returns: spec.returns!, batchSize: spec.batchSize, retries: spec.retries, timeoutMs: spec.timeoutMs });
    }
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
  throw new Error(`${where}: model '${spec.model}' is not an external teacher (${EXTERNAL_TEACHERS.join(', ')})`);
}
