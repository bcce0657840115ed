import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pinsOf } from '../catalog/chain.js';
import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { volumeBackupDirs } from '../catalog/volume-dirs.js';
import { lockAndHeal } from './restore-journal.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { BackupError, usageError } from '../errors.js';
import { type Remote, tempAgeMs } from '../remote/remote.js';
import { underPrefix } from '../remote/prefixed.js';
import { retrying } from '../remote/retry.js';
import { type TransferOptions, listRemoteBackups } from '../offsite/transfer.js';
import { fsyncDir } from '../fsutil.js';
import { planRetention, type RetentionItem, type RetentionPolicy } from './retention.js';
import { type CompactResult, compactPageChains, windowStates } from './pit-compact.js';
import { restorableStates } from './pit.js';
import type { Identity, Recipient } from '../crypto/age-keys.js';
import { loadIdentities, resolveRecipients } from '../crypto/age-settings.js';

export interface RotateOptions {
  policy: RetentionPolicy;
  dryRun?: boolean;
  type?: BackupType;
  lockWaitMs?: number;
  signal?: AbortSignal;
}

export interface RotateResult {
  dryRun: boolean;
  policy: RetentionPolicy;
  /** `pins`: the other storage backups whose archives this kept backup needs */
  /**
   * size_bytes: the backup's size as list, verify and stats give it (a full backup: its components);
   * disk_bytes: what its own files take on disk, which removing it frees (a full backup: its sidecar;
   * its components are backups of their own)
   */
  kept: { type: BackupType; id: string; reasons: string[]; size_bytes: number; disk_bytes: number; pins?: string[] }[];
  removed: { type: BackupType; id: string; reason: string; files: string[]; size_bytes: number; disk_bytes: number }[];
  freedBytes: number;
  /** page chains thinned in time (every state for 24 h, hourly for 7 days, then daily) before the rules */
  compacted?: CompactResult;
  /** each Docker volume's backup directory, rotated by the same rules (freedBytes above includes them) */
  volumes?: { volume: string; kept: RotateResult['kept']; removed: RotateResult['removed']; freedBytes: number }[];
}

export function toRetentionItem(e: BackupEntry): RetentionItem {
  return {
    id: e.id,
    type: e.type,
    time: e.createdAt,
    // a partial full backup is still a recovery point for the half it holds
    // rotate holds the lock, so nothing is in progress; were it, it must never be removed
    status: e.status === 'partial' || e.status === 'in-progress' ? 'ok' : e.status,
    components: e.type === 'full' ? { database: e.sidecar?.database ?? null, storage: e.sidecar?.storage ?? null } : undefined,
    references: e.type !== 'full' ? e.sidecar?.references : undefined,
  };
}

/** Bytes on disk of one path (a leftover temp directory counted in full); 0 when it is gone. */
async function pathBytes(p: string): Promise<number> {
  const st = await fsp.lstat(p).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let sum = 0;
  for (const name of await fsp.readdir(p).catch(() => [] as string[])) sum += await pathBytes(path.join(p, name));
  return sum;
}

/**
 * What removing a backup frees: the files it owns, measured the same way for a dry run and a real run.
 * Not `entry.size`, which for a full backup counts its components (removed, or kept, on their own)
 * and is 0 for an incomplete backup that still holds data.
 */
export async function backupBytes(entry: BackupEntry): Promise<number> {
  let sum = 0;
  for (const f of entry.files) sum += await pathBytes(f);
  return sum;
}

/** Removes one backup: the sidecar (its commit marker) first, so a half-removed backup is never 'ok'. */
export async function removeBackup(entry: BackupEntry): Promise<number> {
  let freed = 0;
  const ordered = [...entry.files].sort((a, b) => (a === entry.sidecarPath ? -1 : b === entry.sidecarPath ? 1 : 0));
  for (const f of ordered) {
    freed += await pathBytes(f);
    await fsp.rm(f, { force: true, recursive: true });
  }
  if (ordered[0]) await fsyncDir(ordered[0].slice(0, ordered[0].lastIndexOf('/')));
  return freed;
}

/**
 * The retention plan over a catalog (local or remote: the same policy keeps the same backups, the
 * components of kept full backups included). The plan always sees every type, since a full backup
 * protects its components across types; `type` limits what goes.
 */
export function planRotation(entries: BackupEntry[], policy: RetentionPolicy, type?: BackupType, now = new Date()) {
  const byKey = new Map(entries.map((e) => [`${e.type}:${e.id}`, e]));
  const entryOf = (item: RetentionItem) => byKey.get(`${item.type}:${item.id}`)!;
  // the restorable window of page chains first: --max-backups 7 must not cut a day of 30 s states to 7
  const window = { ids: windowStates(restorableStates(entries.filter((e) => e.sidecar?.level !== undefined)), now), reason: 'point-in-time window' };
  const plan = planRetention(entries.map(toRetentionItem), policy, window);
  const kept: { entry: BackupEntry; reasons: string[] }[] = [];
  const remove: { entry: BackupEntry; reason: string }[] = [];
  for (const k of plan.keep) if (!type || k.item.type === type) kept.push({ entry: entryOf(k.item), reasons: k.reasons });
  for (const r of plan.remove) {
    if (type && r.item.type !== type) kept.push({ entry: entryOf(r.item), reasons: ['other type'] });
    else remove.push({ entry: entryOf(r.item), reason: r.reason });
  }
  return { kept, remove };
}

/** The other backups a kept backup needs: a storage chain's archives, a page delta's states below it (undefined when none). */
function pinsOfEntry(entry: BackupEntry): string[] | undefined {
  const pins = entry.type !== 'full' ? pinsOf({ id: entry.id, references: entry.sidecar?.references }) : [];
  return pins.length ? pins : undefined;
}

/**
 * What merging an encrypted page chain takes: the key (AGE_IDENTITY_FILE / AGE_PASSPHRASE_FILE) and the
 * recipients (BACKUP_RECIPIENTS) from the configuration. A key that cannot be read only leaves
 * encrypted chains unmerged (compactPageChains says so): it is no reason to refuse the rotation.
 */
async function chainKeys(cfg: Config): Promise<{ identities?: Identity[]; recipients?: Recipient[] }> {
  try {
    return { identities: await loadIdentities({}, cfg.env), recipients: resolveRecipients({}, cfg.env) };
  } catch {
    return {};
  }
}

/** Applies the retention policy; the caller holds the lock. */
export async function runRotate(cfg: Config, opts: RotateOptions): Promise<RotateResult> {
  const compacted =
    opts.type === undefined || opts.type === 'database'
      ? await compactPageChains(cfg, { dryRun: opts.dryRun, signal: opts.signal, ...(await chainKeys(cfg)) })
      : undefined;
  const plan = planRotation(await listBackups(cfg.backupDir), opts.policy, opts.type);
  const result: RotateResult = { dryRun: !!opts.dryRun, policy: opts.policy, kept: [], removed: [], freedBytes: 0 };
  if (compacted && (compacted.merged.length || compacted.dropped.length || compacted.problems.length)) result.compacted = compacted;
  for (const { entry, reasons } of plan.kept)
    result.kept.push({ type: entry.type, id: entry.id, reasons, size_bytes: entry.size, disk_bytes: await backupBytes(entry), pins: pinsOfEntry(entry) });
  for (const { entry, reason } of plan.remove) {
    opts.signal?.throwIfAborted();
    const bytes = opts.dryRun ? await backupBytes(entry) : await removeBackup(entry);
    result.removed.push({ type: entry.type, id: entry.id, reason, files: entry.files, size_bytes: entry.size, disk_bytes: bytes });
    result.freedBytes += bytes;
  }
  // each Docker volume's backup directory (volumes/<name>/) under the same rules: its live and catch-up
  // passes are storage backups, and a nightly rotate must not let them fill the disk unsaid
  if (opts.type === undefined || opts.type === 'storage') {
    for (const v of await volumeBackupDirs(cfg.backupDir)) {
      const sub = await runRotate({ ...cfg, backupDir: v.dir }, { ...opts, type: 'storage' });
      result.volumes = result.volumes ?? [];
      result.volumes.push({ volume: v.name, kept: sub.kept, removed: sub.removed, freedBytes: sub.freedBytes });
      result.freedBytes += sub.freedBytes;
    }
  }
  return result;
}

export async function rotateBackups(cfg: Config, opts: RotateOptions): Promise<RotateResult> {
  // an interrupted restore is completed or rolled back first: its copies aside are not ours to judge
  const { lock } = await lockAndHeal(cfg.backupDir, 'rotate', {
    waitMs: opts.lockWaitMs,
    signal: opts.signal,
    live: { dbPath: cfg.dbPath, storagePath: cfg.storagePath, config: cfg },
  });
  try {
    return await runRotate(cfg, opts);
  } finally {
    lock.release();
  }
}

// rotate --remote: the same plan applied to what a remote holds

export interface RemoteRotateOptions extends TransferOptions {
  policy: RetentionPolicy; // the same rules as local rotation (keepLast = --max-backups)
  type?: BackupType; // only remove backups of this type
  dryRun?: boolean;
}

export interface RemoteRotateResult {
  remote: string;
  /** `pins`: the other storage backups whose archives this kept backup needs */
  kept: { type: BackupType; id: string; reasons: string[]; pins?: string[] }[];
  deleted: { type: BackupType; id: string; status: string; reason: string; files: number; bytes: number }[];
  staleTemps: string[]; // temp objects of long-dead uploads, removed
  dryRun: boolean;
  /** each Docker volume's copy (volumes/<name>/ on the remote, as sync puts it), by the same rules */
  volumes?: { volume: string; kept: RemoteRotateResult['kept']; deleted: RemoteRotateResult['deleted'] }[];
}

const STALE_TEMP_MS = 6 * 3_600_000;

/**
 * Applies the local retention planner to what the remote holds: the same policy keeps the same
 * backups, components of kept full backups included; incomplete leftovers of interrupted uploads older
 * than the newest good backup go too. Each deletion removes the sidecar first, so a backup stops being
 * listed as ok before any of its data goes.
 */
export async function rotateRemote(remote: Remote, options: RemoteRotateOptions, nested = false): Promise<RemoteRotateResult> {
  const p = options.policy;
  for (const [k, v] of Object.entries(p)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw usageError(`retention ${k} must be a whole number, got ${v}`);
  }
  if (!Object.values(p).some((v) => v !== undefined && v > 0)) {
    throw new BackupError('USAGE', 'remote rotation needs a policy that keeps something', {
      hint: 'keep N >= 1 backups per type, or some daily/weekly/monthly ones',
      remedy: 'remote-policy',
    });
  }
  const r = retrying(remote, options);
  const plan = planRotation(await listRemoteBackups(r, { ...options, type: undefined }), p, options.type);
  const result: RemoteRotateResult = {
    remote: remote.url,
    kept: plan.kept.map(({ entry, reasons }) => ({ type: entry.type, id: entry.id, reasons, pins: pinsOfEntry(entry) })),
    deleted: [],
    staleTemps: [],
    dryRun: !!options.dryRun,
  };
  const objects = await r.list('');
  const sizes = new Map(objects.map((e) => [e.path, e.size]));
  for (const { entry: b, reason } of plan.remove) {
    const bytes = b.files.reduce((n, f) => n + (sizes.get(f) ?? 0), 0);
    result.deleted.push({ type: b.type, id: b.id, status: b.status, reason, files: b.files.length, bytes });
    if (options.dryRun) continue;
    const order = [...b.files.filter((f) => f === b.sidecarPath), ...b.files.filter((f) => f !== b.sidecarPath)];
    for (const f of order) await r.delete(f);
  }
  if (nested) return result;
  // the volumes' copies: sync sends each volume's backup directory to volumes/<name>/ (dot-names are not volumes)
  if (options.type === undefined || options.type === 'storage') {
    const names = [...new Set(objects.map((o) => /^volumes\/([^/.][^/]*)\//.exec(o.path)?.[1]).filter((n): n is string => !!n))].sort();
    for (const v of names) {
      const sub = await rotateRemote(underPrefix(remote, `volumes/${v}`), { ...options, type: 'storage' }, true);
      result.volumes = result.volumes ?? [];
      result.volumes.push({ volume: v, kept: sub.kept, deleted: sub.deleted });
    }
  }
  // temp objects of uploads cut off long ago; a younger one may belong to a sync running right now
  for (const o of objects) {
    const age = tempAgeMs(o.path);
    if (age === undefined || age < STALE_TEMP_MS) continue;
    result.staleTemps.push(o.path);
    if (!options.dryRun) await r.delete(o.path);
  }
  return result;
}
