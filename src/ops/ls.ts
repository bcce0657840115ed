import type { EntryType } from '../archive/manifest.js';
import { showName } from '../archive/bytenames.js';
import { included } from '../archive/restore-chain.js';
import type { Identity } from '../crypto/age-keys.js';
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

export interface LsResult {
  id: string;
  level?: number;
  entries: ListedPath[];
}

const TYPES: Record<EntryType, ListedPath['type']> = { d: 'dir', f: 'file', l: 'symlink' };

export const isoOfNs = (ns: string): string => {
  const n = BigInt(ns);
  const iso = new Date(Number(n / 1_000_000n)).toISOString();
  return `${iso.slice(0, 19)}.${(n % 1_000_000_000n).toString().padStart(9, '0')}Z`;
};

/** What a storage backup holds, from its manifest: everything, or one path and what is under it. */
export async function lsBackup(backupDir: string, ref: string, under?: string, options: { identities?: Identity[] } = {}): Promise<LsResult> {
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
  return { id: entry.id, level: entry.sidecar!.level, entries };
}
