import * as path from 'node:path';
import { readManifest, type ManifestRecord } from '../archive/manifest.js';
import { type BackupEntry, componentLookup, findBackup } from '../catalog/listing.js';
import { BackupError } from '../errors.js';

/**
 * The storage backup an id names (a full backup stands for its storage component), for the commands
 * that read a manifest: ls, diff, dump, restore --include.
 */
export async function storageWithManifest(backupDir: string, ref: string): Promise<BackupEntry> {
  let entry = await findBackup(backupDir, ref);
  if (entry?.type === 'full' && entry.sidecar?.storage) entry = await componentLookup(backupDir)('storage', entry.sidecar.storage);
  if (entry?.type !== 'storage') {
    throw new BackupError('USAGE', `no storage backup '${ref}' in ${backupDir}`, { hint: 'run vertex-backup list --type storage to see the ids' });
  }
  if (!entry.sidecar) throw new BackupError('DAMAGED', `storage backup ${entry.id} is ${entry.status}: ${entry.reason ?? 'no metadata'}`);
  if (!entry.sidecar.manifest) {
    throw new BackupError('USAGE', `storage backup ${entry.id} has no file manifest (made before incremental backups)`, { hint: 'list it with tar -tzf on its archive' });
  }
  return entry;
}

/** The manifest's records, checked against the sidecar's checksum once read to the end. */
export function manifestRecords(entry: BackupEntry): AsyncGenerator<ManifestRecord> {
  const m = entry.sidecar!.manifest!;
  return readManifest(path.join(path.dirname(entry.sidecarPath!), m.file), m.checksum);
}

/** A path as the user types it (relative to the storage directory) to the manifest's archive path. */
export function archivePath(entry: BackupEntry, rel: string): string {
  const top = path.basename(path.resolve(entry.sidecar!.original_path ?? 'storage'));
  const clean = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (clean.includes('..')) throw new BackupError('USAGE', `'${rel}': a path inside the backup cannot hold '..'`);
  if (clean[0] === top && clean.length > 0 && rel.startsWith(`${top}/`)) clean.shift();
  return [top, ...clean].join('/');
}

/** The archive path shown to the user: relative to the storage directory ('.' for the directory itself). */
export function shownPath(entry: BackupEntry, archive: string): string {
  const top = path.basename(path.resolve(entry.sidecar!.original_path ?? 'storage'));
  return archive === top ? '.' : archive.slice(top.length + 1);
}
