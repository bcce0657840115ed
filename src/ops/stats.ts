import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { BACKUP_TYPES, type BackupType } from '../catalog/sidecar.js';
import { freeSpace } from '../fsutil.js';

export interface TypeStats {
  type: BackupType;
  count: number;
  ok: number;
  notOk: number;
  /** the backups' sizes as `list` shows them (a full backup: its components) */
  sizeBytes: number;
  newest?: { id: string; createdAt: string; ageSeconds: number };
  oldest?: { id: string; createdAt: string; ageSeconds: number };
}

/** One database of the backups of sources (PostgreSQL): in how many ok backups, its bytes, its newest dump. */
export interface DatabaseStats {
  name: string;
  kind: string;
  /** ok database backups holding it */
  count: number;
  /** its dumps in those backups */
  sizeBytes: number;
  newest?: { id: string; createdAt: string; ageSeconds: number; sizeBytes: number };
}

export interface Stats {
  backupDir: string;
  types: TypeStats[];
  /** present when there are backups of sources: each database by name */
  databases?: DatabaseStats[];
  totalCount: number;
  /** every stored byte once: database and storage backups (a full backup's components are theirs) */
  totalBytes: number;
  freeBytes: number;
}

/** `entries`: a listing the caller already holds (serve's shared one), else the directory is listed. */
export async function getStats(backupDir: string, now = new Date(), entries?: BackupEntry[]): Promise<Stats> {
  entries ??= await listBackups(backupDir);
  const point = (e?: BackupEntry) =>
    e && { id: e.id, createdAt: e.createdAt.toISOString(), ageSeconds: Math.max(0, Math.round((now.getTime() - e.createdAt.getTime()) / 1000)) };
  const types = BACKUP_TYPES.map((type): TypeStats => {
    const of = entries.filter((e) => e.type === type);
    const good = of.filter((e) => e.status === 'ok');
    // one size per backup, the one `list`, `verify` and `rotate` show
    const sizeBytes = of.reduce((s, e) => s + e.size, 0);
    return {
      type,
      count: of.length,
      ok: good.length,
      notOk: of.length - good.length,
      sizeBytes,
      newest: point(good[0]),
      oldest: point(good[good.length - 1]),
    };
  });
  const databases = new Map<string, DatabaseStats>();
  // newest first: the first ok backup naming a database holds its newest dump
  for (const e of entries.filter((x) => x.type === 'database' && x.status === 'ok')) {
    for (const c of (e.sidecar?.components ?? []).filter((x) => x.role === 'data')) {
      const key = `${c.kind}\0${c.name}`;
      const d = databases.get(key) ?? { name: c.name, kind: c.kind, count: 0, sizeBytes: 0 };
      d.count++;
      d.sizeBytes += c.size;
      d.newest ??= { ...point(e)!, sizeBytes: c.size };
      databases.set(key, d);
    }
  }
  return {
    backupDir,
    types,
    databases: databases.size ? [...databases.values()].sort((a, b) => a.name.localeCompare(b.name)) : undefined,
    totalCount: entries.length,
    // full backups are made of database and storage backups: counting them again would double the total
    totalBytes: types.reduce((s, t) => s + (t.type === 'full' ? 0 : t.sizeBytes), 0),
    freeBytes: await freeSpace(backupDir),
  };
}
