import { type BackupEntry, listBackups } from '../catalog/listing.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, listRemoteBackups } from '../offsite/transfer.js';

export interface Missing {
  remote: string;
  /** complete local backups the remote does not hold complete, newest first */
  missing: BackupEntry[];
  /**
   * How long the remote has been behind, in seconds (0: it holds the newest of every type): per type,
   * the age of the oldest local backup newer than the newest one the remote holds; the largest of them.
   */
  lagSeconds: number;
}

/**
 * What a remote lacks: every complete local backup (ok or partial) that the remote does not list as a
 * complete backup of the same type and id. The lag counts from the first backup the remote missed after
 * the newest it holds (a backup older than that, never sent, e.g. from before the remote was added, is
 * listed as missing but does not make the remote look days behind for ever).
 */
export async function missingOnRemote(remote: Remote, backupDir: string, options: TransferOptions & { type?: BackupType; now?: Date } = {}): Promise<Missing> {
  const [local, held] = await Promise.all([listBackups(backupDir, { type: options.type }), listRemoteBackups(remote, options)]);
  const there = new Set(held.filter((b) => b.status === 'ok' || b.status === 'partial').map((b) => `${b.type}:${b.id}`));
  const missing = local.filter((e) => (e.status === 'ok' || e.status === 'partial') && !there.has(`${e.type}:${e.id}`));
  const now = (options.now ?? new Date()).getTime();
  const heldNewest = new Map<string, number>();
  for (const b of held) {
    if (b.status !== 'ok' && b.status !== 'partial') continue;
    heldNewest.set(b.type, Math.max(heldNewest.get(b.type) ?? 0, b.createdAt.getTime()));
  }
  let behindSince = Number.POSITIVE_INFINITY;
  for (const e of missing) {
    const t = e.createdAt.getTime();
    if (t > (heldNewest.get(e.type) ?? 0)) behindSince = Math.min(behindSince, t);
  }
  return { remote: remote.url, missing, lagSeconds: Number.isFinite(behindSince) ? Math.max(0, Math.round((now - behindSince) / 1000)) : 0 };
}
