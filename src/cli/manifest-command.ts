import type { Command } from 'commander';
import type { Identity } from '../crypto/age-keys.js';
import { commandIdentities, identityOption } from './encryption-options.js';
import { type Context, type Outcome, action } from './run.js';

/**
 * ls, diff and dump: commands that read storage backups' file manifests, given as arguments; an
 * encrypted backup's manifest (create --encrypt) is read with --identity.
 */
export function manifestCommand(
  program: Command,
  spec: { name: string; args: [string, string][]; description: string; examples: string[] },
  run: (ctx: Context, args: string[], identities: Identity[]) => Promise<Outcome>,
): void {
  const command = program.command(spec.name);
  for (const [flags, help] of spec.args) command.argument(flags, help);
  identityOption(command)
    .description(spec.description)
    .addHelpText('after', `\nExamples:\n${spec.examples.map((e) => `  vertex-backup ${e}`).join('\n')}`)
    .action(action(spec.name, async (ctx, cmd) => run(ctx, cmd.args as string[], await commandIdentities(ctx, cmd))));
}
