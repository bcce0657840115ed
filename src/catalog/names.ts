import * as path from 'node:path';

/** The three kinds of backup the catalog holds (a directory each). */
export type BackupType = 'database' | 'storage' | 'full';

export const TYPE_DIR: Record<BackupType, string> = { database: 'database', storage: 'storage', full: 'full' };
export const PREFIX: Record<BackupType, string> = { database: 'db_backup_', storage: 'storage_backup_', full: 'full_backup_' };

const ID = String.raw`\d{8}_\d{6}(?:_\d+)?`;
export const ID_PATTERN = new RegExp(`^${ID}$`);
const TYPE_OF_PREFIX: Record<string, BackupType> = Object.fromEntries(Object.entries(PREFIX).map(([type, prefix]) => [prefix, type as BackupType]));
const NAME = new RegExp(`^(${Object.values(PREFIX).join('|')})(${ID})(\\..*)?$`);

/** Data is written as `<final name>.tmp` and renamed; small files use writeFileAtomic's `.tmp-` prefix. */
export const TEMP_SUFFIX = '.tmp';

export function timestampOf(date: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(date.getUTCFullYear(), 4)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}_${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}`;
}

/**
 * Older first: ids are UTC timestamps, `_N` suffixes counting within one second. Compared by hand, not
 * with a numeric localeCompare: the catalog sorts with it on every run, and the ICU collator it would
 * start costs more than the nightly run of an unchanged tree can spare.
 */
export function compareIds(a: string, b: string): number {
  const sa = a.slice(0, 15);
  const sb = b.slice(0, 15);
  if (sa !== sb) return sa < sb ? -1 : 1;
  const na = a.length > 16 ? Number(a.slice(16)) : 1;
  const nb = b.length > 16 ? Number(b.slice(16)) : 1;
  if (na !== nb && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The UTC time an id stands for. */
export function dateOfId(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})/.exec(id);
  if (!m) return new Date(Number.NaN);
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

export function typeDir(backupDir: string, type: BackupType): string {
  return path.join(backupDir, TYPE_DIR[type]);
}

export function baseName(type: BackupType, id: string): string {
  return PREFIX[type] + id;
}

export function sidecarPath(backupDir: string, type: BackupType, id: string): string {
  return path.join(typeDir(backupDir, type), `${baseName(type, id)}.json`);
}

export interface ParsedName {
  type: BackupType;
  id: string;
  rest: string; // what follows the id: '.json', '.db', '.tar.gz.part002', '.db.tmp'
  temp: boolean;
}

export function parseName(fileName: string): ParsedName | undefined {
  let name = fileName;
  let temp = false;
  if (name.startsWith('.tmp-')) {
    temp = true;
    name = name.slice(5).replace(/-\d+$/, '');
  }
  const m = NAME.exec(name);
  if (!m) return undefined;
  const rest = m[3] ?? '';
  if (rest.includes(TEMP_SUFFIX)) temp = true; // also SQLite's -wal/-journal beside a temp copy
  return { type: TYPE_OF_PREFIX[m[1]], id: m[2], rest, temp };
}
