import type { Command } from 'commander';
import { action } from '../run.js';

export function register(program: Command): void {
  program
    .command('diff')
    .argument('<from>', 'the earlier storage or full backup id')
    .argument('<to>', 'the later one')
    .description('what was added, removed and changed between two storage backups, from their manifests')
    .addHelpText('after', '\nExamples:\n  vertex-backup diff 20240101_020000 20240102_020000\n  vertex-backup diff 20240101_020000 latest --json')
    .action(
      action('diff', async (ctx, cmd) => {
        const [a, b] = cmd.args as string[];
        const { diffBackups } = await import('../../ops/diff.js');
        const r = await diffBackups(ctx.cfg.backupDir, a, b);
        return {
          json: r,
          human: (ui) => {
            for (const p of r.added) ui.out(`+ ${p}`);
            for (const p of r.removed) ui.out(`- ${p}`);
            for (const c of r.changed) ui.out(`M ${c.path}  (${c.what.join(', ')})`);
            ui.out(`${r.added.length} added, ${r.removed.length} removed, ${r.changed.length} changed (${r.from} -> ${r.to})`);
          },
        };
      }),
    );
}
