// `tsdistill generate <config>`: teacher-generated data from an OpenAI-compatible endpoint (see src/llm).
import { generate, GenerationInterrupted, type GenerateSummary } from '../llm';
import { loadGenerateConfig } from '../run';

export interface GenerateFlags {
  sets: string[];
  force?: boolean;
  json?: boolean;
  signal?: AbortSignal;
}

/** Runs the command; returns the exit status (0 complete, 3 some samples failed, 130 interrupted). */
export async function runGenerate(file: string, flags: GenerateFlags): Promise<number> {
  const raw = loadGenerateConfig(file, flags.sets);
  let summary: GenerateSummary;
  try {
    summary = await generate(raw as any, { source: file, force: flags.force, signal: flags.signal, log: (l) => process.stderr.write(l + '\n') });
  } catch (e) {
    if (e instanceof GenerationInterrupted) {
      if (flags.json) console.log(JSON.stringify(e.summary));
      process.stderr.write(`tsdistill: ${e.message} (the same command continues)\n`);
      return 130;
    }
    throw e;
  }
  if (flags.json) console.log(JSON.stringify(summary));
  else console.log(`${summary.written} samples in ${summary.files.samples} (${summary.rejected} rejected, ${summary.failed} failed of ${summary.total}); summary in ${summary.files.summary}`);
  if (summary.failed) {
    process.stderr.write(`tsdistill: ${summary.failed} sample(s) failed (errors in ${summary.files.failures}); run the same command again to retry them\n`);
    return 3;
  }
  return summary.reconciled ? 0 : 1;
}
