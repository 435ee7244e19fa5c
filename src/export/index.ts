// tsdistill/export: students out of the toolkit — ONNX (fp32), safetensors with a model card.
export * from './onnx';
export * from './card';
export * from './quantize';
