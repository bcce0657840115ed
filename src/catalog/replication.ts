import { createHash } from 'node:crypto';
import { exists } from '../fsutil.js';
import { redact } from '../secrets.js';
import type { BackupEntry } from './judge.js';
import { compareIds } from './names.js';
import { type ReplicationRecord, type StatusFile, changedStatus, updateStatus } from './status.js';

/**
 * What each remote holds, kept in status.json (`replication`), so the sync that the timer starts every
 * 15 minutes can tell "nothing new" without opening a connection, and `check`, the metrics file and
 * serve can say how far behind a remote is without listing it. The record is only as true as the last
 * sync or listing: `sync --refresh` / `check --refresh` list the remote again (after a copy was deleted
 * on the remote by hand, say).
 */

export const backupKey = (e: { type: string; id: string }) => `${e.type}:${e.id}`;
const isGood = (e: BackupEntry) => e.status === 'ok' || e.status === 'partial';

/** A remote's record is kept per name; pointing the name at another URL starts a new one. */
export function remoteFingerprint(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

export interface Lag {
  /** complete local backups the remote does not hold, newest first */
  missing: BackupEntry[];
  /**
   * How long the remote has been behind, in seconds (0: it holds the newest of every type): per type,
   * the age of the oldest local backup newer than the newest one the remote holds; the largest of them.
   * A backup older than that, never sent (from before the remote was added), is missing but does not
   * make the remote look days behind for ever.
   */
  lagSeconds: number;
}

export function replicationLag(local: BackupEntry[], held: ReadonlySet<string>, newestHeld: ReadonlyMap<string, number>, now: Date): Lag {
  const missing = local.filter((e) => isGood(e) && !held.has(backupKey(e)));
  let behindSince = Number.POSITIVE_INFINITY;
  for (const e of missing) {
    const t = e.createdAt.getTime();
    if (t > (newestHeld.get(e.type) ?? 0)) behindSince = Math.min(behindSince, t);
  }
  return { missing, lagSeconds: Number.isFinite(behindSince) ? Math.max(0, Math.round((now.getTime() - behindSince) / 1000)) : 0 };
}

function newestHeldOf(local: BackupEntry[], held: ReadonlySet<string>, recorded?: Record<string, string>): Map<string, number> {
  const newest = new Map<string, number>(Object.entries(recorded ?? {}).map(([t, iso]) => [t, Date.parse(iso) || 0]));
  for (const e of local) if (isGood(e) && held.has(backupKey(e))) newest.set(e.type, Math.max(newest.get(e.type) ?? 0, e.createdAt.getTime()));
  return newest;
}

/** The lag of a recorded remote now (the local directory moves on between syncs). */
export function lagFromRecord(local: BackupEntry[], record: ReplicationRecord, now = new Date()): Lag {
  const held = new Set(record.held);
  return replicationLag(local, held, newestHeldOf(local, held, record.newest_held), now);
}

/** The record of a remote, unless there is none or it was made for another URL. */
export function replicationRecord(status: StatusFile | null | undefined, name: string, url: string): ReplicationRecord | undefined {
  const r = status?.replication?.[name];
  return r && r.fingerprint === remoteFingerprint(url) ? r : undefined;
}

export interface ReplicationUpdate {
  /** the remote's URL (masked before it is written) */
  url: string;
  /** backups this run confirmed complete on the remote ('type:id') */
  confirmed: Iterable<string>;
  /** a full listing: `confirmed` is everything the remote holds, it replaces the record */
  listed?: boolean;
  /** from a listing: per type, the creation time of the newest backup the remote holds */
  newestHeld?: Record<string, string>;
  /** a sync's outcome */
  sync?: { ok: boolean; error?: string };
}

/**
 * Merges what a run learned into the remote's record, under the status lock: two syncs (or a sync and a
 * check) to the same remote both add what they confirmed, neither erases the other's. `local` is the
 * local listing, for the lag and to drop backups rotated away locally. Returns the new record, or
 * undefined when the backup directory does not exist. Throws on I/O errors; callers log and carry on.
 */
export async function recordReplication(
  backupDir: string,
  name: string,
  local: BackupEntry[],
  update: ReplicationUpdate,
  now = new Date(),
): Promise<ReplicationRecord | undefined> {
  if (!(await exists(backupDir))) return undefined;
  const fingerprint = remoteFingerprint(update.url);
  // per type, the oldest local backup: anything held older than it was rotated away here and no longer counts
  const oldest = new Map<string, string>();
  for (const e of local) if (!oldest.has(e.type) || compareIds(e.id, oldest.get(e.type)!) < 0) oldest.set(e.type, e.id);
  let record: ReplicationRecord | undefined;
  updateStatus(backupDir, (previous) => {
    const before = previous?.replication?.[name];
    const kept = before && before.fingerprint === fingerprint && !update.listed ? before : undefined;
    const held = new Set([...(kept?.held ?? []), ...update.confirmed]);
    // what leaves `held` this way is still on the remote: kept apart, so sync can say so
    const removedHere = new Set(kept?.removed_here ?? []);
    for (const k of held) {
      const [type, id] = [k.slice(0, k.indexOf(':')), k.slice(k.indexOf(':') + 1)];
      const first = oldest.get(type);
      if (first && compareIds(id, first) < 0) {
        held.delete(k);
        removedHere.add(k);
      }
    }
    const newest: Record<string, string> = { ...(kept?.newest_held ?? {}) };
    for (const [t, iso] of Object.entries(update.newestHeld ?? {})) if (!newest[t] || Date.parse(iso) > Date.parse(newest[t])) newest[t] = iso;
    for (const [t, ms] of newestHeldOf(local, held)) if (!newest[t] || ms > Date.parse(newest[t])) newest[t] = new Date(ms).toISOString();
    const lag = replicationLag(local, held, newestHeldOf(local, held, newest), now);
    record = {
      url: redact(update.url),
      fingerprint,
      as_of: now.toISOString(),
      listed_at: update.listed ? now.toISOString() : kept?.listed_at,
      held: [...held].sort(),
      newest_held: newest,
      removed_here: removedHere.size ? [...removedHere].sort() : undefined,
      lag_seconds: lag.lagSeconds,
      missing: lag.missing.length,
      newest_missing: lag.missing[0] ? backupKey(lag.missing[0]) : undefined,
      last_sync: update.sync
        ? { finished_at: now.toISOString(), ok: update.sync.ok, error: update.sync.error === undefined ? undefined : redact(update.sync.error).split('\n')[0] }
        : before?.last_sync,
    };
    return changedStatus(previous, now, { replication: { ...(previous?.replication ?? {}), [name]: record } });
  });
  return record;
}

/** After `rotate --remote` deleted copies: the record no longer says what the remote holds. */
export async function forgetReplication(backupDir: string, name: string, now = new Date()): Promise<void> {
  if (!(await exists(backupDir))) return;
  updateStatus(backupDir, (previous) => {
    if (!previous?.replication?.[name]) return undefined;
    const { [name]: _gone, ...rest } = previous.replication;
    return changedStatus(previous, now, { replication: rest });
  });
}

/**
 * After `rekey` rewrote backups' files: no remote holds them as they now are (its copies are on the old
 * key), so no record may count them as held, or sync would call the remote up to date without a look.
 */
export async function forgetHeld(backupDir: string, keys: Iterable<string>, now = new Date()): Promise<void> {
  const gone = new Set(keys);
  if (!gone.size || !(await exists(backupDir))) return;
  updateStatus(backupDir, (previous) => {
    const records = previous?.replication;
    if (!records || !Object.values(records).some((r) => r.held.some((k) => gone.has(k)))) return undefined;
    const next = Object.fromEntries(Object.entries(records).map(([name, r]) => [name, { ...r, held: r.held.filter((k) => !gone.has(k)) }]));
    return changedStatus(previous, now, { replication: next });
  });
}

/** A remote's lag now, from its record (undefined without one): what a failed sync still reports. */
export async function recordedLag(backupDir: string, name: string, url: string, now = new Date()): Promise<Lag | undefined> {
  const { readStatus } = await import('./status.js');
  const { listBackups } = await import('./local-store.js');
  const record = replicationRecord((await readStatus(backupDir)).status, name, url);
  return record ? lagFromRecord(await listBackups(backupDir), record, now) : undefined;
}
