// TorchScript modules (`.pt` files from torch.jit.trace / torch.jit.script) loaded with libtorch's torch::jit::load.
// Only inference: forward runs without recording gradients, and its result (a tensor, or tuples, lists and dicts of
// tensors) comes back flattened to named tensors: `output` for a lone tensor, `output.0`, `output.1`, ... for tuple and
// list elements, the keys for a dict (`key.0` for a list under a key).
import * as fs from 'node:fs';
import { ScriptHandle, native, wrap } from './handle';
import { Tensor } from './tensor';

export class ScriptModule {
  private handle: ScriptHandle | null;
  /** forward's schema, e.g. `forward(__torch__.Net self, Tensor x) -> Tensor`. */
  readonly schema: string;
  /** Number of parameter elements. */
  readonly parameters: number;

  private constructor(readonly file: string, handle: ScriptHandle) {
    this.handle = handle;
    const info = native.jitInfo(handle);
    this.schema = info.schema;
    this.parameters = info.parameters;
  }

  /** Loads a TorchScript file on the CPU in eval mode; errors name the file and what failed. */
  static load(file: string): ScriptModule {
    let size: number;
    try {
      size = fs.statSync(file).size;
    } catch (e) {
      throw new Error(`${file}: cannot read the TorchScript module: ${(e as Error).message}`);
    }
    if (size === 0) throw new Error(`${file}: cannot load the TorchScript module: the file is empty`);
    return new ScriptModule(file, native.jitLoad(file));
  }

  private live(): ScriptHandle {
    if (!this.handle) throw new Error(`${this.file}: TorchScript module used after dispose()`);
    return this.handle;
  }

  /** forward(...inputs) as named tensors (the caller owns them). */
  forward(...inputs: Tensor[]): Map<string, Tensor> {
    const pairs = native.jitForward(this.live(), inputs.map((t) => t._h));
    return new Map(pairs.map(([k, h]) => [k, wrap(h)]));
  }

  /** Moves parameters and buffers to `device` ('cpu', 'cuda', 'cuda:1'). */
  to(device: string): this {
    native.jitTo(this.live(), device);
    return this;
  }

  dispose(): void {
    if (this.handle) native.jitDispose(this.handle);
    this.handle = null;
  }
}
