export { Tensor, type IndexSpec } from './tensor';
export * from './types';
export * from './factory';
export * from './runtime';
export { ScriptModule } from './jit';
export { recordOps, isRecordingOps, handleOf, handleInfo, handleBytes, type OpCall, type OpSchema, type OpSchemaArg, type Handle } from './trace';
export { tidy, keep, dispose, chain, liveTensors, nextTick, memory } from './scope';
export * as ops from './ops.generated';
export { saveSafetensors, loadSafetensors, serializeSafetensors, parseSafetensors, readSafetensorsHeader, parseHeader,
  type SafetensorsHeader, type SafetensorsEntry, type SafetensorsContents } from './safetensors';
export { writeFileAtomic, appendLineDurable, removeStaleTempFiles, tempPathFor } from './atomic';
export { ProcessGroup, GradReducer, type GradReducerOptions, distAvailable, defaultProcessGroup, setDefaultProcessGroup, isWriterProcess, type ProcessGroupOptions } from './dist';
