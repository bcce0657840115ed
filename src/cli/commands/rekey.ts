import type { Command } from 'commander';
import { BackupError } from '../../errors.js';
import { commandIdentities, identityOption } from '../encryption-options.js';
import { action } from '../run.js';
import { waitOption } from '../options.js';

export const REVOKE_NOTE =
  'rekey cannot revoke a key that already read a file: whoever held a removed identity and a copy of these files can still decrypt that copy. To shut them out, make new backups and delete the old ones everywhere.';

export function register(program: Command): void {
  const command = program
    .command('rekey')
    .argument('[backup]', 'backup id, path, or "latest"')
    .description('re-wrap the file keys of encrypted local backups for a new set of recipients (payload unchanged)')
    .option('--all', 'every encrypted backup')
    .option('--recipient <age1…>', 'the new recipients (repeatable; default BACKUP_RECIPIENTS / BACKUP_RECIPIENTS_FILE)', (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .option('--recipients-file <file>', 'the new recipients, one per line')
    .addOption(waitOption())
    .addHelpText(
      'after',
      `
Only the age header of each file is rewritten (temp file + rename); the encrypted payload stays as
it is, and the sidecar gets the new checksum. Needs a current identity to unwrap the file keys.

${REVOKE_NOTE}

Examples:
  vertex-backup rekey --all --identity old-key.txt --recipient age1new… --recipient age1spare…`,
    );
  identityOption(command).action(
    action('rekey', async (ctx, cmd) => {
      const [ref] = cmd.args as string[];
      const o = cmd.opts() as { all?: boolean; recipient?: string[]; recipientsFile?: string; wait: string };
      const { resolveRecipients } = await import('../../crypto/age-settings.js');
      const recipients = resolveRecipients({ recipient: o.recipient, recipientsFile: o.recipientsFile }, ctx.cfg.env);
      if (!recipients)
        throw new BackupError('USAGE', 'rekey: no new recipients', {
          hint: 'pass --recipient age1… (repeatable) or --recipients-file, or set BACKUP_RECIPIENTS',
        });
      const identities = await commandIdentities(ctx, cmd);
      const { rekeyBackups } = await import('../../ops/rekey.js');
      const files = await rekeyBackups(ctx.cfg.backupDir, ref === 'latest' ? { latest: true } : { ref, all: o.all }, {
        identities,
        recipients,
        lockWaitMs: Number(o.wait) * 1000 || 0,
        signal: ctx.signal,
      });
      const done = files.filter((f) => f.result === 'rekeyed');
      return {
        json: { files, note: REVOKE_NOTE },
        summary: `rekeyed ${done.length} files`,
        log: { rekeyed: done.map((f) => `${f.type}:${f.id}`), recipients: done[0]?.recipients },
        human: (ui) => {
          for (const f of files) ui.out(`${f.result === 'rekeyed' ? ui.c.green('rekeyed') : ui.c.dim(f.result)}  ${f.type} ${f.id}  ${f.file}`);
          ui.out(`${done.length} file(s) now encrypted to: ${done[0]?.recipients?.join(', ') ?? '-'}`);
          ui.warn(REVOKE_NOTE);
        },
      };
    }),
  );
}
