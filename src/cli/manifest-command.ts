import type { Command } from 'commander';
import type { Identity } from '../crypto/age-keys.js';
import { commandIdentities, identityOption, passphraseNeeded } from './encryption-options.js';
import { type Context, type Outcome, action } from './run.js';

/**
 * ls, diff and dump: commands that read storage backups' file manifests, given as arguments. They take
 * the keys restore takes (--identity, AGE_IDENTITY_FILE, AGE_PASSPHRASE_FILE): dump reads an encrypted
 * archive, and a copy of an encrypting remote has encrypted manifests too.
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
    .action(
      action(spec.name, async (ctx, cmd) => {
        const args = cmd.args as string[];
        // a passphrase is asked for (on a terminal) only when a backup named here is encrypted to one
        const backups = spec.name === 'diff' ? args : args.slice(0, 1);
        let needed = false;
        for (const ref of backups) if (await passphraseNeeded(ctx.cfg.backupDir, ref)) needed = true;
        return run(ctx, args, await commandIdentities(ctx, cmd, needed));
      }),
    );
}
