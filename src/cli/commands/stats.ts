import type { Command } from 'commander';
import { action } from '../run.js';
import { countOf, formatAge, formatBytes } from '../../human.js';

export function register(program: Command): void {
  program
    .command('stats')
    .description('counts and sizes per type, newest and oldest backup, free space')
    .addHelpText('after', '\nExamples:\n  vertex-backup stats\n  vertex-backup stats --json')
    .action(
      action('stats', async (ctx) => {
        const { getStats } = await import('../../ops/stats.js');
        const s = await getStats(ctx.cfg.backupDir);
        return {
          json: s,
          human: (ui) => {
            const rows = s.types.map((t) => [
              t.type,
              t.count,
              t.notOk ? ui.c.yellow(String(t.notOk)) : '0',
              formatBytes(t.sizeBytes),
              t.newest ? `${t.newest.id} (${formatAge(t.newest.ageSeconds * 1000)} ago)` : '-',
              t.oldest ? `${t.oldest.id} (${formatAge(t.oldest.ageSeconds * 1000)} ago)` : '-',
            ]);
            ui.out(ui.table(['type', 'count', 'not ok', 'size', 'newest ok', 'oldest ok'], rows));
            if (s.databases) {
              const dbRows = s.databases.map((d) => [
                d.name,
                d.kind,
                d.count,
                formatBytes(d.sizeBytes),
                d.newest ? `${d.newest.id} (${formatAge(d.newest.ageSeconds * 1000)} ago, ${formatBytes(d.newest.sizeBytes)})` : '-',
              ]);
              ui.out(ui.table(['database', 'kind', 'backups', 'size', 'newest'], dbRows));
            }
            ui.out(
              `total ${countOf(s.totalCount, 'backup')}, ${formatBytes(s.totalBytes)} (a full backup's components counted once); free at ${s.backupDir}: ${formatBytes(s.freeBytes)}`,
            );
          },
        };
      }),
    );
}
