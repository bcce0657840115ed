import { type BackupEntry, listBackups } from '../catalog/listing.js';
import { BACKUP_TYPES, type BackupType } from '../catalog/sidecar.js';
import { freeSpace } from '../fsutil.js';

export interface TypeStats {
  type: BackupType;
  count: number;
  ok: number;
  notOk: number;
  bytes: number;
  newest?: { id: string; createdAt: string; ageSeconds: number };
  oldest?: { id: string; createdAt: string; ageSeconds: number };
}

export interface Stats {
  backupDir: string;
  types: TypeStats[];
  totalCount: number;
  totalBytes: number;
  freeBytes: number;
}

export async function getStats(backupDir: string, now = new Date()): Promise<Stats> {
  const entries = await listBackups(backupDir);
  const point = (e?: BackupEntry) =>
    e && { id: e.id, createdAt: e.createdAt.toISOString(), ageSeconds: Math.max(0, Math.round((now.getTime() - e.createdAt.getTime()) / 1000)) };
  const types = BACKUP_TYPES.map((type): TypeStats => {
    const of = entries.filter((e) => e.type === type);
    const good = of.filter((e) => e.status === 'ok');
    return {
      type,
      count: of.length,
      ok: good.length,
      notOk: of.length - good.length,
      // full backups refer to database/storage files: counting them again would double the total
      bytes: type === 'full' ? 0 : of.reduce((s, e) => s + e.size, 0),
      newest: point(good[0]),
      oldest: point(good[good.length - 1]),
    };
  });
  return {
    backupDir,
    types,
    totalCount: entries.length,
    totalBytes: types.reduce((s, t) => s + t.bytes, 0),
    freeBytes: await freeSpace(backupDir),
  };
}
