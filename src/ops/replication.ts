import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { backupKey, lagFromRecord, recordReplication, replicationLag, replicationRecord } from '../catalog/replication.js';
import type { BackupType } from '../catalog/sidecar.js';
import { readStatus } from '../catalog/status.js';
import type { Remote } from '../remote/remote.js';
import { type TransferOptions, listRemoteBackups } from '../offsite/transfer.js';

export interface Missing {
  remote: string;
  /** complete local backups the remote does not hold complete, newest first */
  missing: BackupEntry[];
  /** how long the remote has been behind, in seconds (see catalog/replication.ts replicationLag) */
  lagSeconds: number;
  /** 'type:id' of everything the remote holds complete, and per type the creation time of the newest */
  held: string[];
  newestHeld: Record<string, string>;
}

/**
 * What a remote lacks, from a full listing: every complete local backup (ok or partial) that the
 * remote does not list as a complete backup of the same type and id.
 */
export async function missingOnRemote(remote: Remote, backupDir: string, options: TransferOptions & { type?: BackupType; now?: Date } = {}): Promise<Missing> {
  const [local, listed] = await Promise.all([listBackups(backupDir, { type: options.type }), listRemoteBackups(remote, options)]);
  const complete = listed.filter((b) => b.status === 'ok' || b.status === 'partial');
  const held = complete.map(backupKey);
  const newest = new Map<string, number>();
  for (const b of complete) newest.set(b.type, Math.max(newest.get(b.type) ?? 0, b.createdAt.getTime()));
  const lag = replicationLag(local, new Set(held), newest, options.now ?? new Date());
  return {
    remote: remote.url,
    ...lag,
    held,
    newestHeld: Object.fromEntries([...newest].map(([t, ms]) => [t, new Date(ms).toISOString()])),
  };
}

export interface ReplicationState {
  name: string;
  lagSeconds: number;
  missing: number;
  /** 'type:id' of the newest complete local backup the remote lacks */
  newestMissing?: string;
  /** the figures come from a listing made now (else from what status.json recorded at `asOf`) */
  listed: boolean;
  asOf: string;
}

/**
 * How far behind a remote is: from its record in status.json, with no connection, when there is one
 * for this URL; else (or with `refresh`) from a full listing, which is then recorded.
 */
export async function replicationState(
  open: () => Promise<Remote>,
  where: { name: string; url: string },
  backupDir: string,
  options: TransferOptions & { refresh?: boolean; now?: Date } = {},
): Promise<ReplicationState> {
  const now = options.now ?? new Date();
  const { status } = await readStatus(backupDir);
  const record = options.refresh ? undefined : replicationRecord(status, where.name, where.url);
  if (record) {
    const lag = lagFromRecord(await listBackups(backupDir), record, now);
    return {
      name: where.name,
      lagSeconds: lag.lagSeconds,
      missing: lag.missing.length,
      newestMissing: lag.missing[0] ? backupKey(lag.missing[0]) : undefined,
      listed: false,
      asOf: record.as_of,
    };
  }
  const remote = await open();
  let m: Missing;
  try {
    m = await missingOnRemote(remote, backupDir, { ...options, now });
  } finally {
    await remote.close();
  }
  await recordReplication(
    backupDir,
    where.name,
    await listBackups(backupDir),
    { url: where.url, confirmed: m.held, listed: true, newestHeld: m.newestHeld },
    now,
  );
  return {
    name: where.name,
    lagSeconds: m.lagSeconds,
    missing: m.missing.length,
    newestMissing: m.missing[0] ? backupKey(m.missing[0]) : undefined,
    listed: true,
    asOf: now.toISOString(),
  };
}
