import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { usageError } from '../../errors.js';
import { action } from '../run.js';
import { remotesConfigOption, typeOption } from '../options.js';
import { printBackupTable } from '../backup-table.js';
import { listDocument } from '../../results/backups.js';

export function register(program: Command): void {
  program
    .command('list')
    .description('list backups, newest first, with their status (ok, partial, incomplete, damaged)')
    .addOption(typeOption())
    .option('--remote <name>', 'list the backups on this remote (name in the remotes config, or a URL)')
    .option('--missing', 'with --remote: the complete local backups the remote lacks, and how old the newest is')
    .addOption(remotesConfigOption())
    .option(
      '-i, --identity <file>',
      'with --remote: age identity file to open the sealed metadata of an encrypting remote (repeatable; env AGE_IDENTITY_FILE)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .addHelpText(
      'after',
      '\nExamples:\n  vertex-backup list\n  vertex-backup list --type database --json\n  vertex-backup list --remote yandex\n  vertex-backup list --remote offsite --missing',
    )
    .action(
      action('list', async (ctx, cmd) => {
        const { type, remote, missing } = cmd.opts() as { type?: BackupType; remote?: string; missing?: boolean };
        if (missing && !remote) throw usageError('--missing needs --remote NAME', 'e.g. vertex-backup list --remote offsite --missing');
        if (remote && missing) return (await import('../remote-outcomes.js')).remoteMissingOutcome(ctx, cmd, remote, type);
        if (remote) return (await import('../remote-outcomes.js')).remoteListOutcome(ctx, cmd, remote, type);
        const { listBackups } = await import('../../catalog/local-store.js');
        const entries = await listBackups(ctx.cfg.backupDir, { type });
        const { restorableStates, restorableWindow } = await import('../../ops/pit.js');
        const window = type === 'storage' ? undefined : restorableWindow(restorableStates(entries, ctx.cfg.dbPath));
        return {
          json: listDocument(entries),
          human: (ui) => {
            printBackupTable(ui, entries, `no backups in ${ctx.cfg.backupDir}`);
            // with page deltas the database can be restored to any of these states (restore --at)
            if (window?.deltas)
              ui.out(
                `database restorable from ${window.from.toISOString()} to ${window.to.toISOString()}: ${window.states} states (${window.deltas} page deltas); restore --at MOMENT picks the newest at or before it`,
              );
          },
        };
      }),
    );
}
