import type { ListedBackup } from '../results/backups.js';
import { formatBytes } from '../human.js';
import { printableName, type Ui } from './ui.js';

export function printBackupTable(ui: Ui, list: ListedBackup[], emptyText: string): void {
  if (!list.length) {
    ui.out(emptyText);
    return;
  }
  const head = ['type', 'id', 'created (UTC)', 'size', 'files', 'status'];
  const align: ('left' | 'right')[] = ['left', 'left', 'left', 'right', 'right', 'left'];
  const base = list.map((b) => [
    b.sidecar?.level !== undefined && b.type !== 'full' ? `${b.type} L${b.sidecar.level}` : b.type,
    b.id,
    b.createdAt
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z'),
    b.size ? formatBytes(b.size) : '-',
    // a backup of PostgreSQL databases names them where a storage backup counts its files
    b.fileCount ??
      (b.sidecar?.components
        ?.filter((c) => c.role === 'data')
        .map((c) => printableName(c.name))
        .join(' ') ||
        '-'),
  ]);
  const inline = base.map((r, i) => [...r, ui.status(list[i].status) + (list[i].reason ? ui.c.dim(` (${printableName(list[i].reason!)})`) : '')]);
  const table = ui.table(head, inline, align);
  const width = ui.width();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the terminal's colour codes (ESC [ … m) to measure the text
  const widest = Math.max(...table.split('\n').map((l) => l.replace(/\x1b\[[0-9;]*m/g, '').length));
  if (widest <= width) {
    ui.out(table);
    return;
  }
  // a damaged backup's reason can be a long path: the table keeps to the terminal, the reasons follow it
  const notes: string[] = [];
  const rows = base.map((r, i) => {
    const b = list[i];
    if (!b.reason) return [...r, ui.status(b.status)];
    notes.push(printableName(b.reason));
    return [...r, `${ui.status(b.status)} [${notes.length}]`];
  });
  ui.out(ui.table(head, rows, align));
  for (const [i, n] of notes.entries()) ui.out(ui.c.dim(`[${i + 1}] ${n}`));
}
