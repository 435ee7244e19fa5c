// External teachers: one `Teacher` interface (teacher.ts) for ONNX files, TorchScript files, TF.js models and black-box
// functions or HTTP endpoints; a Module trained here is used directly by the training loop (or adapted with
// moduleTeacher).
export { type Teacher, type TeacherInput, type BatchRows, isTeacher, moduleTeacher, rawSamplesFor, runTeacher, teacherName } from './teacher';
export { OnnxTeacher, type OnnxTeacherOptions } from './onnx';
export { TorchScriptTeacher, type TorchScriptTeacherOptions } from './torchscript';
export { BlackBoxTeacher, blackBoxTeacher, httpTeacher, type BlackBoxOptions, type BlackBoxOutput, type BlackBoxReturns, type BlackBoxRow, type LabelScores, type BlackBoxStats, type HttpTeacherOptions } from './blackbox';
export { registerTeacherKind, registerBuiltinTeachers, teacherKinds, getTeacherKind, isExternalTeacherSpec, loadExternalTeacher, type TeacherKind, type ExternalTeacherSpec } from './load';
export { TfjsTeacher, loadTfjsModel, tfjs, type LoadedTfjsModel, type TfjsTeacherOptions } from './tfjs';
