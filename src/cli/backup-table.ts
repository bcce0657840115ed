import type { BackupType, Sidecar } from '../catalog/sidecar.js';
import { bytes } from './format.js';
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
    ...(b.type === 'storage' && b.sidecar?.level !== undefined ? { level: b.sidecar.level, base: b.sidecar.base ?? null, references: b.sidecar.references ?? [] } : {}),
  };
}

export function printBackupTable(ui: Ui, list: ListedBackup[], emptyText: string): void {
  if (!list.length) {
    ui.out(emptyText);
    return;
  }
  const rows = list.map((b) => [
    b.type === 'storage' && b.sidecar?.level !== undefined ? `storage L${b.sidecar.level}` : b.type,
    b.id,
    b.createdAt.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    b.size ? bytes(b.size) : '-',
    b.fileCount ?? '-',
    ui.status(b.status) + (b.reason ? ui.c.dim(` (${b.reason})`) : ''),
  ]);
  ui.out(ui.table(['type', 'id', 'created (UTC)', 'size', 'files', 'status'], rows, ['left', 'left', 'left', 'right', 'right', 'left']));
}
