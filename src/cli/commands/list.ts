import { type Command, Option } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { action } from '../run.js';
import { bytes } from '../format.js';

export function register(program: Command): void {
  program
    .command('list')
    .description('list backups, newest first, with their status (ok, partial, incomplete, damaged)')
    .addOption(new Option('-t, --type <type>', 'only this type').choices(['full', 'database', 'storage']))
    .option('--remote <name>', 'list the backups on this remote (name in the remotes config, or a URL)')
    .option('--remotes-config <file>', 'remotes config file (env REMOTES_CONFIG, default ./remote_storage.json)')
    .addHelpText('after', '\nExamples:\n  vertex-backup list\n  vertex-backup list --type database --json\n  vertex-backup list --remote yandex')
    .action(
      action('list', async (ctx, cmd) => {
        const { type, remote } = cmd.opts() as { type?: BackupType; remote?: string };
        if (remote) return (await import('../remote-outcomes.js')).remoteListOutcome(ctx, cmd, remote, type);
        const { listBackups } = await import('../../catalog/listing.js');
        const entries = await listBackups(ctx.cfg.backupDir, { type });
        return {
          json: entries.map((e) => ({
            type: e.type,
            id: e.id,
            created_at: e.createdAt.toISOString(),
            size: e.size,
            file_count: e.fileCount ?? null,
            status: e.status,
            reason: e.reason ?? null,
            sidecar: e.sidecarPath ?? null,
            ...(e.type === 'full' ? { database: e.sidecar?.database ?? null, storage: e.sidecar?.storage ?? null } : {}),
          })),
          human: (ui) => {
            if (!entries.length) {
              ui.out(`no backups in ${ctx.cfg.backupDir}`);
              return;
            }
            const rows = entries.map((e) => [
              e.type,
              e.id,
              e.createdAt.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
              e.size ? bytes(e.size) : '-',
              e.fileCount ?? '-',
              ui.status(e.status) + (e.reason ? ui.c.dim(` (${e.reason})`) : ''),
            ]);
            ui.out(ui.table(['type', 'id', 'created (UTC)', 'size', 'files', 'status'], rows, ['left', 'left', 'left', 'right', 'right', 'left']));
          },
        };
      }),
    );
}
