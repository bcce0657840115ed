import type { Command } from 'commander';
import { type Context, type Outcome, action } from './run.js';

/** ls, diff and dump: commands that read storage backups' file manifests, given as arguments. */
export function manifestCommand(
  program: Command,
  spec: { name: string; args: [string, string][]; description: string; examples: string[] },
  run: (ctx: Context, args: string[]) => Promise<Outcome>,
): void {
  const command = program.command(spec.name);
  for (const [flags, help] of spec.args) command.argument(flags, help);
  command
    .description(spec.description)
    .addHelpText('after', `\nExamples:\n${spec.examples.map((e) => `  vertex-backup ${e}`).join('\n')}`)
    .action(action(spec.name, async (ctx, cmd) => run(ctx, cmd.args as string[])));
}
