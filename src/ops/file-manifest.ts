import * as path from 'node:path';
import { type ManifestFile, type ManifestKey, type ManifestRecord, readView } from '../archive/manifest.js';
import { manifestChain } from '../catalog/chain.js';
import { type BackupEntry, componentLookup, findBackup } from '../catalog/local-store.js';
import type { EncryptionInfo, Sidecar } from '../catalog/sidecar.js';
import { needIdentity } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
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
    throw new BackupError('USAGE', `storage backup ${entry.id} has no file manifest (made before incremental backups)`, {
      hint: 'list it with tar -tzf on its archive',
    });
  }
  return entry;
}

/**
/**
 * Reading an encrypted backup needs a key; no key at all is a setup problem (exit 2, as drill says it),
 * not a damaged backup. A wrong key fails when the file is read: damaged to us (exit 3), as restore.
 */
export function requireKey(identities: Identity[] | undefined, subject: string, info: EncryptionInfo): void {
  if (identities?.length) return;
  const e = needIdentity({ subject, info });
  throw new BackupError('USAGE', e.message, { hint: e.hint, remedy: e.remedy });
}

/**
 * How to read the manifest a sidecar names: an encrypted one (`create --encrypt`, or an encrypting
 * remote's copy: `….manifest.gz.age`) through age with `identities`; an older plaintext one as it is.
 */
export function manifestKey(s: Sidecar, identities: Identity[] | undefined): ManifestKey | undefined {
  const m = s.manifest;
  if (!m?.encryption || !m.file.endsWith('.age')) return undefined;
  return { info: m.encryption, identities: identities ?? [], subject: `the manifest of storage backup ${s.id}` };
}

/** The manifest file of a backup as the readers take it: path, checksum, and the key when it is encrypted. */
export function manifestFileOf(dir: string, s: Sidecar, identities: Identity[] | undefined): ManifestFile {
  return { file: path.join(dir, s.manifest!.file), checksum: s.manifest!.checksum, key: manifestKey(s, identities) };
}

/**
 * The manifests that make up a storage backup's file list (its chain, oldest first), each with the
 * checksum its own sidecar gives; `lookup` finds the other backups of the chain. An encrypted one is
 * read through age as it streams (never written out in plaintext); without any key that is said
 * before anything is read.
 */
export async function chainManifests(
  entry: BackupEntry,
  lookup: (id: string) => Promise<BackupEntry | undefined>,
  identities?: Identity[],
): Promise<ManifestFile[]> {
  const files: ManifestFile[] = [];
  for (const id of manifestChain(entry.id, entry.sidecar!)) {
    const e = id === entry.id ? entry : await lookup(id);
    const m = e?.sidecar?.manifest;
    if (!e?.sidecarPath || !m) {
      throw new BackupError(
        'DAMAGED',
        `storage backup ${entry.id} needs the manifest of storage backup ${id}, which is ${e ? `${e.status}${e.reason ? ` (${e.reason})` : ''}` : 'missing'}`,
      );
    }
    const file = manifestFileOf(path.dirname(e.sidecarPath), e.sidecar!, identities);
    if (file.key) requireKey(identities, file.key.subject, file.key.info);
    files.push(file);
  }
  return files;
}

/** Every path of the backup's tree (the merge of its chain's manifests), each manifest checked against its checksum once read to the end. */
export async function* manifestRecords(backupDir: string, entry: BackupEntry, identities?: Identity[]): AsyncGenerator<ManifestRecord> {
  const lookup = componentLookup(backupDir);
  yield* readView(await chainManifests(entry, (id) => lookup('storage', id), identities));
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
