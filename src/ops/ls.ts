import type { EntryType } from '../archive/manifest.js';
import { showName } from '../archive/bytenames.js';
import { included } from '../archive/restore-chain.js';
import type { Identity } from '../crypto/age-keys.js';
import { type BackupEntry, componentLookup, findBackup } from '../catalog/local-store.js';
import { BackupError } from '../errors.js';
import { archivePath, manifestRecords, shownPath, storageWithManifest } from './file-manifest.js';

export interface ListedPath {
  /** relative to the storage directory; bytes that are not UTF-8 as \xNN */
  path: string;
  type: 'dir' | 'file' | 'symlink';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  sha256?: string;
  target?: string;
  /** the backup whose archive holds it */
  archive: string;
}

/** A database of a backup of sources (PostgreSQL): its tables and the rows counted in the dump's snapshot. */
export interface ListedDatabase {
  name: string;
  kind: string;
  file: string;
  size: number;
  server_version?: string;
  tables: { name: string; rows: number }[];
}

export interface LsResult {
  id: string;
  /** what was listed: a storage (or full) backup's files, or only a database backup's databases */
  holds: 'files' | 'databases';
  level?: number;
  entries: ListedPath[];
  /** a database backup of sources, or a full backup holding one: its databases (from the sidecar) */
  databases?: ListedDatabase[];
}

const TYPES: Record<EntryType, ListedPath['type']> = { d: 'dir', f: 'file', l: 'symlink' };

export const isoOfNs = (ns: string): string => {
  const n = BigInt(ns);
  const iso = new Date(Number(n / 1_000_000n)).toISOString();
  return `${iso.slice(0, 19)}.${(n % 1_000_000_000n).toString().padStart(9, '0')}Z`;
};

function databasesOf(entry: BackupEntry, only?: string): ListedDatabase[] {
  const data = (entry.sidecar?.components ?? []).filter((c) => c.role === 'data');
  if (only !== undefined && !data.some((c) => c.name === only))
    throw new BackupError('USAGE', `database backup ${entry.id} holds no database ${only}`, { hint: `it holds ${data.map((c) => c.name).join(', ')}` });
  return data
    .filter((c) => only === undefined || c.name === only)
    .map((c) => ({
      name: c.name,
      kind: c.kind,
      file: c.file,
      size: c.size,
      server_version: typeof c.info?.server_version === 'string' ? c.info.server_version : undefined,
      tables: Object.entries((c.info?.tables ?? {}) as Record<string, number>).map(([name, rows]) => ({ name, rows })),
    }));
}

/**
 * What a backup holds. A storage backup: from its manifest, everything or one path and what is under it.
 * A database backup of sources: its databases and their tables with the rows counted at dump time (from
 * the sidecar; `under` names one database). A full backup: both.
 */
export async function lsBackup(backupDir: string, ref: string, under?: string, options: { identities?: Identity[] } = {}): Promise<LsResult> {
  const named = await findBackup(backupDir, ref);
  const dbEntry =
    named?.type === 'database'
      ? named
      : named?.type === 'full' && named.sidecar?.database
        ? await componentLookup(backupDir)('database', named.sidecar.database)
        : undefined;
  if (named?.type === 'database' && dbEntry?.sidecar?.components)
    return { id: named.id, holds: 'databases', entries: [], databases: databasesOf(dbEntry, under) };
  const databases = named?.type === 'full' && dbEntry?.sidecar?.components ? databasesOf(dbEntry) : undefined;
  const entry = await storageWithManifest(backupDir, ref);
  const prefix = under ? [archivePath(entry, under)] : undefined;
  const entries: ListedPath[] = [];
  for await (const r of manifestRecords(backupDir, entry, options.identities)) {
    if (!included(r.path, prefix)) continue;
    entries.push({
      path: showName(shownPath(entry, r.path)),
      type: TYPES[r.t],
      size: r.s,
      mode: r.m,
      uid: r.u,
      gid: r.g,
      mtime: isoOfNs(r.mt),
      sha256: r.h,
      target: r.l === undefined ? undefined : showName(r.l),
      archive: r.a,
    });
  }
  return { id: entry.id, holds: 'files', level: entry.sidecar!.level, entries, databases };
}
