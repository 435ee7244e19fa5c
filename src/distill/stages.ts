// Runs in stages: a chain of engine runs whose checkpoints feed later ones (teacher → assistant → student, born-again
// generations, general → task distillation). Each stage runs in `<outDir>/<stage>` with its own RunDir; a finished
// stage (summary.json written after its last epoch) is not run again, so `resume` continues the stage that was
// running and then the ones after it. `stages.json` reports every stage.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isWriterProcess, manualSeed, writeFileAtomic } from '../torch';
import { type EngineOptions, type TrainSummary, runEngine } from './engine';

export interface StageContext {
  /** This stage's run directory. */
  dir: string;
  /**
   * The weights an earlier stage left for one of its roles: its primary role's best epoch (`best.safetensors`), any
   * other trainable role's last (`last.<role>.safetensors`); `which: 'last'` gives the primary role's last epoch too.
   * Throws naming the stage when it has not run.
   */
  checkpoint(stage: string, role?: string, which?: 'best' | 'last'): string;
}

export interface StageSpec {
  /** Letters, digits, _ and -: the stage's folder under the run directory. */
  name: string;
  /**
   * The stage's run (roles, terms, data, epochs, ...), built when the stage starts, so that its roles can load the
   * checkpoints of the stages before it. `outDir`, `resume` and `force` are set by the stage runner.
   */
  build(ctx: StageContext): Promise<Omit<EngineOptions, 'outDir' | 'resume' | 'force'>> | Omit<EngineOptions, 'outDir' | 'resume' | 'force'>;
  /** Called after the stage ran (or was found finished): release what `build` made. */
  release?(): void;
}

export interface StagesResult {
  stages: { name: string; summary: TrainSummary; ran: boolean }[];
}

export interface RunStagesOptions {
  outDir: string;
  stages: StageSpec[];
  resume?: boolean;
  force?: boolean;
  log?: (line: string) => void;
  /**
   * When set, the global generator is seeded with it before each stage's `build`, so the weights a stage draws when
   * it builds its models do not depend on which stages were built before it in the process (a run split over
   * processes, a resumed run, a different list of stages all build a stage the same way), and models of one
   * architecture built first in their stages start from the same weights (as the configurations' stages do). Unset:
   * the generator is left as it is.
   */
  seed?: number;
}

export async function runStages(o: RunStagesOptions): Promise<StagesResult> {
  // data-parallel runs: rank 0 logs and writes the summaries; every rank runs every stage
  const writer = isWriterProcess();
  const log = !writer ? () => {} : (o.log ?? ((l: string) => process.stdout.write(l + '\n')));
  const names = new Set<string>();
  for (const [i, s] of o.stages.entries()) {
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(s.name ?? '')) throw new Error(`stages[${i}].name '${s.name}' must be letters, digits, _ or -`);
    if (names.has(s.name)) throw new Error(`stages[${i}]: two stages are named '${s.name}'`);
    names.add(s.name);
  }
  if (!o.stages.length) throw new Error('runStages: no stages');
  const done = new Map<string, TrainSummary>();
  const result: StagesResult = { stages: [] };
  const ctxFor = (dir: string, index: number): StageContext => ({
    dir,
    checkpoint(stage, role, which = 'best') {
      const earlier = o.stages.slice(0, index).map((s) => s.name);
      if (!earlier.includes(stage)) throw new Error(`stage '${o.stages[index].name}': '${stage}' is not an earlier stage (earlier: ${earlier.join(', ') || 'none'})`);
      const primary = (done.get(stage) as (TrainSummary & { primary?: string }) | undefined)?.primary;
      const isPrimary = !role || role === primary;
      const file = path.join(o.outDir, stage, isPrimary ? (which === 'last' ? 'last.safetensors' : 'best.safetensors') : `last.${role}.safetensors`);
      if (!fs.existsSync(file)) throw new Error(`stage '${o.stages[index].name}': stage '${stage}' has no checkpoint${role ? ` for role '${role}'` : ''} (${file})`);
      const found = file;
      return found;
    },
  });
  for (const [i, stage] of o.stages.entries()) {
    const dir = path.join(o.outDir, stage.name);
    const summaryFile = path.join(dir, 'summary.json');
    if (o.seed !== undefined) manualSeed(o.seed);
    const spec = await stage.build(ctxFor(dir, i));
    try {
      let summary: TrainSummary | null = null;
      if (!o.force && fs.existsSync(summaryFile)) {
        const s = JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as TrainSummary;
        if (s.epochs === spec.epochs) summary = s;
      }
      const ran = !summary;
      if (!summary) {
        log(`stage ${i + 1}/${o.stages.length}: ${stage.name}`);
        summary = await runEngine({ ...spec, name: spec.name ?? stage.name, outDir: dir, resume: o.resume || (!o.force && fs.existsSync(summaryFile)), force: o.force });
        if (writer) writeFileAtomic(summaryFile, JSON.stringify({ ...summary, primary: spec.primary ?? spec.roles.find((r) => r.optimizer)?.name }, null, 2));
      } else log(`stage ${i + 1}/${o.stages.length}: ${stage.name} finished earlier (best ${summary.best_test_acc.toFixed(2)} %)`);
      done.set(stage.name, { ...summary, primary: spec.primary ?? spec.roles.find((r) => r.optimizer)?.name } as TrainSummary);
      result.stages.push({ name: stage.name, summary, ran });
    } finally {
      stage.release?.();
    }
  }
  if (writer) writeFileAtomic(path.join(o.outDir, 'stages.json'), JSON.stringify(result.stages.map((s) => ({ ...s.summary, stage: s.name })), null, 2));
  return result;
}
