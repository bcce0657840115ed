import { type BackupEntry, listBackups } from '../catalog/listing.js';
import type { BackupType } from '../catalog/sidecar.js';
import { BackupError } from '../errors.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, uploadBackup } from '../remote/transfer.js';

export interface SyncOptions extends TransferOptions {
  type?: BackupType;
  /** only the newest complete backup of each selected type */
  latest?: boolean;
  /** only these backup ids (create --sync sends the backup it just made) */
  ids?: string[];
}

export interface SyncedBackup {
  type: BackupType;
  id: string;
  uploaded: string[];
  skipped: number;
  bytes: number;
}

export interface SyncResult {
  remote: string;
  synced: SyncedBackup[]; // backups that needed at least one upload
  upToDate: number; // backups the remote already had
  notComplete: { type: BackupType; id: string; reason: string }[]; // local backups left alone
  bytes: number;
  ms: number;
}

function selectBackups(entries: BackupEntry[], options: SyncOptions): { pick: BackupEntry[]; notComplete: SyncResult['notComplete'] } {
  const notComplete: SyncResult['notComplete'] = [];
  const good: BackupEntry[] = [];
  for (const e of entries) {
    if (e.status === 'ok' || e.status === 'partial') good.push(e);
    else notComplete.push({ type: e.type, id: e.id, reason: `${e.status}${e.reason ? `: ${e.reason}` : ''}` });
  }
  if (!options.latest) return { pick: good, notComplete };
  const seen = new Set<BackupType>();
  return { pick: good.filter((e) => !seen.has(e.type) && seen.add(e.type)), notComplete };
}

/**
 * Uploads every complete local backup the remote lacks, newest first (the most valuable copy gets out
 * first if the link is slow). Files already on the remote with the right size are skipped, so a sync
 * that was cut off resumes where it stopped; each backup's sidecar goes last as the remote commit marker.
 */
export async function syncToRemote(remote: Remote, backupDir: string, options: SyncOptions = {}): Promise<SyncResult> {
  const started = Date.now();
  const listed = await listBackups(backupDir, { type: options.type });
  const entries = options.ids ? listed.filter((e) => options.ids!.includes(e.id)) : listed;
  const { pick, notComplete } = selectBackups(entries, options);
  // components of a full backup being sent travel with it, so they are not separate entries
  const components = new Set<string>();
  for (const e of pick) {
    if (e.type === 'full') for (const t of ['database', 'storage'] as const) if (e.sidecar?.[t]) components.add(`${t}:${e.sidecar[t]}`);
  }
  const result: SyncResult = { remote: remote.url, synced: [], upToDate: 0, notComplete, bytes: 0, ms: 0 };
  const done = new Set<string>();
  for (const e of pick) {
    if (done.has(`${e.type}:${e.id}`) || components.has(`${e.type}:${e.id}`)) continue;
    if (options.signal?.aborted) throw options.signal.reason ?? new BackupError('FAILED', 'sync interrupted');
    const r = await uploadBackup(remote, backupDir, e.type, e.id, options);
    done.add(`${e.type}:${e.id}`);
    if (e.type === 'full') for (const t of ['database', 'storage'] as const) if (e.sidecar?.[t]) done.add(`${t}:${e.sidecar[t]}`);
    if (r.uploaded.length) result.synced.push({ type: e.type, id: e.id, uploaded: r.uploaded, skipped: r.skipped.length, bytes: r.bytes });
    else result.upToDate++;
    result.bytes += r.bytes;
  }
  result.ms = Date.now() - started;
  return result;
}
