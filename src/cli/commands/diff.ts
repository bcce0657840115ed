import type { Command } from 'commander';
import { manifestCommand } from '../manifest-command.js';
import { printableName } from '../ui.js';

export function register(program: Command): void {
  manifestCommand(
    program,
    {
      name: 'diff',
      args: [
        ['<from>', 'the earlier storage or full backup id'],
        ['<to>', 'the later one'],
      ],
      description: 'what was added, removed and changed between two storage backups, from their manifests',
      examples: ['diff 20240101_020000 20240102_020000', 'diff 20240101_020000 latest --json'],
    },
    async (ctx, [a, b], identities) => {
      const { diffBackups } = await import('../../ops/diff.js');
      const r = await diffBackups(ctx.cfg.backupDir, a, b, { identities });
      return {
        json: r,
        human: (ui) => {
          // names from the backups: a newline or ESC in one must not fake a line or drive the terminal
          for (const p of r.added) ui.out(`+ ${printableName(p)}`);
          for (const p of r.removed) ui.out(`- ${printableName(p)}`);
          for (const c of r.changed) ui.out(`M ${printableName(c.path)}  (${c.what.join(', ')})`);
          ui.out(`${r.added.length} added, ${r.removed.length} removed, ${r.changed.length} changed (${r.from} -> ${r.to})`);
        },
      };
    },
  );
}
