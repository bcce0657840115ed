import { type BackupEntry, listBackups } from '../catalog/listing.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, listRemoteBackups } from '../remote/transfer.js';

export interface Missing {
  remote: string;
  /** complete local backups the remote does not hold complete, newest first */
  missing: BackupEntry[];
  /** age in seconds of the newest backup the remote lacks (0: nothing missing) */
  lagSeconds: number;
}

/**
 * What a remote lacks: every complete local backup (ok or partial) that the remote does not list as a
 * complete backup of the same type and id. The replication lag is the age of the newest of them.
 */
export async function missingOnRemote(remote: Remote, backupDir: string, options: TransferOptions & { type?: BackupType; now?: Date } = {}): Promise<Missing> {
  const [local, held] = await Promise.all([listBackups(backupDir, { type: options.type }), listRemoteBackups(remote, options)]);
  const there = new Set(held.filter((b) => b.status === 'ok' || b.status === 'partial').map((b) => `${b.type}:${b.id}`));
  const missing = local.filter((e) => (e.status === 'ok' || e.status === 'partial') && !there.has(`${e.type}:${e.id}`));
  const now = (options.now ?? new Date()).getTime();
  const newest = missing.reduce((t, e) => Math.max(t, e.createdAt.getTime()), 0);
  return { remote: remote.url, missing, lagSeconds: newest ? Math.max(0, Math.round((now - newest) / 1000)) : 0 };
}
