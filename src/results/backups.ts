import type { BackupEntry } from '../catalog/local-store.js';
import type { BackupType, Sidecar } from '../catalog/sidecar.js';

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
    // one key per concept in every document: size_bytes for a size, age_seconds for an age
    size_bytes: b.size,
    age_seconds: Math.max(0, Math.floor((Date.now() - b.createdAt.getTime()) / 1000)),
    file_count: b.fileCount ?? null,
    status: b.status,
    reason: b.reason ?? null,
    ...extra,
    ...(b.type === 'full' ? { database: b.sidecar?.database ?? null, storage: b.sidecar?.storage ?? null } : {}),
    // a backup of sources (PostgreSQL): each database (and the globals) by name
    ...(b.sidecar?.components
      ? { components: b.sidecar.components.map((c) => ({ kind: c.kind, name: c.name, role: c.role, size_bytes: c.size, file: c.file })) }
      : {}),
    // incremental storage backups: where it stands in its chain and which archives it needs
    ...(b.type === 'storage' && b.sidecar?.level !== undefined
      ? { level: b.sidecar.level, base: b.sidecar.base ?? null, references: b.sidecar.references ?? [] }
      : {}),
    // database page chains: the level, the state below it, and when its snapshot was taken
    ...(b.type === 'database' && b.sidecar?.level !== undefined
      ? { level: b.sidecar.level, base: b.sidecar.base ?? null, previous: b.sidecar.previous ?? null, snapshot_at: b.sidecar.snapshot_at ?? null }
      : {}),
  };
}

/** The document of `list --json` and `GET /backups/list`. */
export function listDocument(entries: BackupEntry[]): Record<string, unknown>[] {
  return entries.map((e) => backupJson(e, { sidecar: e.sidecarPath ?? null }));
}
