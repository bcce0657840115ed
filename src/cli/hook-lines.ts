import type { HookRun } from '../ops/hooks.js';
import type { Ui } from './ui.js';

/** A hook's line as it ends, its output under it: on the terminal, in the transcript notifications carry. */
export function reportHook(ui: Ui, line: string, run: HookRun): void {
  if (run.ok) {
    ui.info(line);
    for (const l of run.output) ui.info(`  | ${l}`);
  } else {
    ui.warn(line);
    for (const l of run.output) ui.warn(`  | ${l}`);
  }
}
