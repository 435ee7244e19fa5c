// TorchScript teachers: a `.pt` file from torch.jit.trace or torch.jit.script, run by libtorch itself (the addon's
// torch::jit::load). forward takes the batch and may return a tensor, or tuples, lists and dicts of tensors; each
// tensor gets a name (`output`; `output.0`, `output.1`, ...; dict keys) usable in feature matches. The names are known
// after the first batch. The `logits` alias picks `output`, else `output.0`, unless `output` names another one.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { ScriptModule, Tensor, dispose } from '../torch';
import type { Teacher } from './teacher';
import { shapeText, unknownName } from './teacher';

export interface TorchScriptTeacherOptions {
  /** The named output distilled as logits (default: `output` for a lone tensor, else `output.0`, or a dict's `logits`). */
  output?: string;
}

export class TorchScriptTeacher implements Teacher {
  readonly kind = 'torchscript';
  readonly logits: string;
  private names: string[] = [];
  private device = 'cpu';
  private readonly hash: string;

  private constructor(readonly file: string, readonly module: ScriptModule, bytes: Buffer, o: TorchScriptTeacherOptions) {
    this.logits = o.output ?? 'logits';
    this.hash = crypto.createHash('sha256').update(bytes).digest('hex');
  }

  /** Loads the file (errors name the file and what failed: unreadable, empty, not a TorchScript archive, truncated). */
  static load(file: string, o: TorchScriptTeacherOptions = {}): TorchScriptTeacher {
    for (const k of Object.keys(o)) if (k !== 'output') throw new Error(`torchscript teacher: unknown option '${k}' (options: output)`);
    const module = ScriptModule.load(file);
    return new TorchScriptTeacher(file, module, fs.readFileSync(file), o);
  }

  id(): string {
    return `torchscript:${this.hash}:${this.logits}`;
  }
  outputNames(): string[] {
    return this.names.slice();
  }
  valueNames(): string[] {
    return this.names.slice();
  }

  /** The output the `logits` alias stands for, among `have`. */
  private logitsOf(have: string[]): string | undefined {
    if (this.logits !== 'logits' || have.includes('logits')) return this.logits;
    return ['output', 'output.0'].find((n) => have.includes(n));
  }

  async run(x: Tensor, names: string[]): Promise<Record<string, Tensor>> {
    if (x.device !== this.device) {
      this.module.to(x.device);
      this.device = x.device;
    }
    let out: Map<string, Tensor>;
    try {
      out = this.module.forward(x);
    } catch (e) {
      throw new Error(`${this.file}: forward failed on input ${x.dtype} ${shapeText(x.shape)} (${this.module.schema}): ${(e as Error).message}`);
    }
    const have = [...out.keys()];
    this.names = have;
    const result: Record<string, Tensor> = {};
    try {
      for (const n of names) {
        const key = n === 'logits' ? this.logitsOf(have) : n;
        const t = key === undefined ? undefined : out.get(key);
        if (!t) throw unknownName(`${this.file} (outputs of forward)`, key ?? n, have);
        if (result[n]) continue;
        out.delete(key!);
        result[n] = t;
      }
      return result;
    } catch (e) {
      dispose(Object.values(result));
      throw e;
    } finally {
      dispose([...out.values()]);
    }
  }

  dispose(): void {
    this.module.dispose();
  }
}
