import type { BackupType, Sidecar } from '../catalog/sidecar.js';
import { formatBytes } from '../format.js';
import type { Ui } from './ui.js';

/** What `list` shows of a backup, local or remote. */
export interface ListedBackup {
  type: BackupType;
  id: string;
  createdAt: Date;
  size: number;
  fileCount?: number;
  status: string;
  reason?: string;
  sidecar?: Sidecar;
}

export function backupJson(b: ListedBackup, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: b.type,
    id: b.id,
    created_at: b.createdAt.toISOString(),
    size: b.size,
    file_count: b.fileCount ?? null,
    status: b.status,
    reason: b.reason ?? null,
    ...extra,
    ...(b.type === 'full' ? { database: b.sidecar?.database ?? null, storage: b.sidecar?.storage ?? null } : {}),
    // incremental storage backups: where it stands in its chain and which archives it needs
    ...(b.type === 'storage' && b.sidecar?.level !== undefined
      ? { level: b.sidecar.level, base: b.sidecar.base ?? null, references: b.sidecar.references ?? [] }
      : {}),
  };
}

export function printBackupTable(ui: Ui, list: ListedBackup[], emptyText: string): void {
  if (!list.length) {
    ui.out(emptyText);
    return;
  }
  const head = ['type', 'id', 'created (UTC)', 'size', 'files', 'status'];
  const align: ('left' | 'right')[] = ['left', 'left', 'left', 'right', 'right', 'left'];
  const base = list.map((b) => [
    b.type === 'storage' && b.sidecar?.level !== undefined ? `storage L${b.sidecar.level}` : b.type,
    b.id,
    b.createdAt
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z'),
    b.size ? formatBytes(b.size) : '-',
    b.fileCount ?? '-',
  ]);
  const inline = base.map((r, i) => [...r, ui.status(list[i].status) + (list[i].reason ? ui.c.dim(` (${list[i].reason})`) : '')]);
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
    notes.push(b.reason);
    return [...r, `${ui.status(b.status)} [${notes.length}]`];
  });
  ui.out(ui.table(head, rows, align));
  for (const [i, n] of notes.entries()) ui.out(ui.c.dim(`[${i + 1}] ${n}`));
}
