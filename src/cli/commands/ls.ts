import type { Command } from 'commander';
import { countOf, formatBytes } from '../../human.js';
import { manifestCommand } from '../manifest-command.js';
import { nameArg } from '../name-args.js';
import { printableName } from '../ui.js';

export function register(program: Command): void {
  manifestCommand(
    program,
    {
      name: 'ls',
      args: [
        ['<backup>', 'storage, full or PostgreSQL database backup id (or "latest")'],
        ['[path]', 'only this path and what is under it, relative to the storage directory (a database backup: one database)'],
      ],
      description:
        'list the files a storage backup holds, from its manifest (nothing is unpacked); of PostgreSQL dumps, the databases and their tables with the rows counted at backup time',
      examples: ['ls latest', 'ls 20240101_120000 images/2024 --json', 'ls 20240101_020000 dart_cloud'],
    },
    async (ctx, [ref, under], identities) => {
      const { lsBackup } = await import('../../ops/ls.js');
      const r = await lsBackup(ctx.cfg.backupDir, ref, under === undefined ? undefined : nameArg(under), { identities });
      return {
        json: r,
        human: (ui) => {
          for (const d of r.databases ?? []) {
            const rows = d.tables.reduce((n, t) => n + t.rows, 0);
            ui.out(
              `database ${printableName(d.name)} (${d.kind}${d.server_version ? ` ${d.server_version.split(' ')[0]}` : ''}, ${formatBytes(d.size)}): ${countOf(d.tables.length, 'table')}, ${countOf(rows, 'row')}`,
            );
            const width = Math.max(0, ...d.tables.map((t) => t.name.length));
            for (const t of d.tables) ui.out(`  ${printableName(t.name).padEnd(width)}  ${String(t.rows).padStart(10)}`);
          }
          if (r.holds === 'databases') return;
          if (!r.entries.length) ui.out(`nothing under ${under} in storage backup ${r.id}`);
          for (const e of r.entries) {
            const kind = e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : '-';
            const size = e.type === 'file' ? formatBytes(e.size) : '';
            ui.out(
              `${kind}${e.mode.toString(8).padStart(4, '0')} ${`${e.uid}:${e.gid}`.padEnd(11)} ${size.padStart(10)}  ${e.mtime.slice(0, 19).replace('T', ' ')}  ${printableName(e.path)}${e.target !== undefined ? ` -> ${printableName(e.target)}` : ''}${e.type === 'dir' ? '/' : ''}`,
            );
          }
        },
      };
    },
  );
}
