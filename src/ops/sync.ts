import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import type { BackupType } from '../catalog/sidecar.js';
import { compareIds } from '../catalog/names.js';
import { BackupError } from '../errors.js';
import { FILE_MODE, exists } from '../fsutil.js';
import { type Remote, type SpaceInfo, errorMessage, isTempName, readSmall } from '../remote/remote.js';
import { underPrefix } from '../remote/prefixed.js';
import { retrying } from '../remote/retry.js';
import { volumeBackupDirs } from '../catalog/volume-dirs.js';
import { type RemoteBackup, type TransferOptions, type UploadResult, listRemoteBackups } from '../offsite/transfer.js';
import { uploadBackup } from '../offsite/upload.js';
import { checkRemoteMarker, readRemoteMarker } from '../offsite/remote-marker.js';

export interface SyncOptions extends TransferOptions {
  type?: BackupType;
  /** only the newest complete backup of each selected type */
  latest?: boolean;
  /** only these backup ids (create --sync sends the backup it just made) */
  ids?: string[];
  /** 'type:id' of backups known complete on the remote (status.json): counted as up to date without a request */
  held?: ReadonlySet<string>;
  /** each backup the remote now holds complete, as soon as it is known ('type:id', components included) */
  onConfirmed?: (keys: string[]) => void;
}

export interface SyncedBackup {
  type: BackupType;
  id: string;
  /** the Docker volume whose backup directory (volumes/<name>/) holds it */
  volume?: string;
  uploaded: string[];
  skipped: number;
  bytes: number;
}

export interface SyncResult {
  remote: string;
  synced: SyncedBackup[]; // backups that needed at least one upload
  upToDate: number; // backups the remote already had
  /** nothing new to send, known from status.json without opening a connection */
  cached?: boolean;
  /** after the sync: how far behind the remote is and how many complete local backups it lacks */
  lagSeconds?: number;
  missing?: number;
  /** 'type:id' of backups the remote still holds that rotation removed here (a full backup's components left out) */
  removedHere?: string[];
  notComplete: { type: BackupType; id: string; reason: string; volume?: string }[]; // local backups left alone
  bytes: number;
  ms: number;
  /** per Docker volume backup directory (volumes/<name>/), synced to the same path on the remote */
  volumes?: { volume: string; synced: number; upToDate: number; bytes: number; lagSeconds?: number; missing?: number }[];
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

function componentKeys(e: BackupEntry): string[] {
  if (e.type !== 'full') return [];
  return (['database', 'storage'] as const).filter((t) => e.sidecar?.[t]).map((t) => `${t}:${e.sidecar![t]}`);
}

function componentsOf(pick: BackupEntry[]): Set<string> {
  return new Set(pick.flatMap(componentKeys));
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
  const components = componentsOf(pick);
  const result: SyncResult = { remote: remote.url, synced: [], upToDate: 0, notComplete, bytes: 0, ms: 0 };
  const done = new Set<string>();
  options = { ...options, checked: options.checked ?? new Set() };
  for (const e of pick) {
    if (done.has(`${e.type}:${e.id}`) || components.has(`${e.type}:${e.id}`)) continue;
    if (options.held?.has(`${e.type}:${e.id}`)) {
      result.upToDate++;
      continue;
    }
    if (options.signal?.aborted) throw options.signal.reason ?? new BackupError('FAILED', 'sync interrupted');
    let r: UploadResult;
    try {
      r = await uploadBackup(remote, backupDir, e.type, e.id, options);
    } catch (err) {
      // sync takes no lock (an upload may outlast the night's create and rotate, which must not wait for
      // it): a backup that a rotation removed meanwhile is passed over; the remote's rotation removes
      // what was sent of it, as of any upload without its sidecar
      if (options.signal?.aborted || !e.sidecarPath || (await exists(e.sidecarPath))) throw err;
      result.notComplete.push({ type: e.type, id: e.id, reason: 'removed from the backup directory during the sync' });
      continue;
    }
    const confirmed = [`${e.type}:${e.id}`, ...componentKeys(e)];
    for (const k of confirmed) done.add(k);
    options.onConfirmed?.(confirmed);
    if (r.uploaded.length) result.synced.push({ type: e.type, id: e.id, uploaded: r.uploaded, skipped: r.skipped.length, bytes: r.bytes });
    else result.upToDate++;
    result.bytes += r.bytes;
  }
  result.ms = Date.now() - started;
  return result;
}

export interface RemoteWhere {
  /** the remote's name in the config (or the URL given in its place): its key in status.json */
  name: string;
  url: string;
}

/**
 * syncToRemote with the remote's record in status.json (catalog/replication.ts): when the record says
 * the remote holds every selected backup, nothing is opened, listed or sent (the timer's sync every
 * 15 minutes costs no request); otherwise only the backups the record does not name are looked at on
 * the remote. `refresh` lists the remote first and trusts that listing instead. What the run confirmed
 * is recorded even when it fails halfway.
 */
export async function syncRemote(
  open: () => Promise<Remote>,
  where: RemoteWhere,
  backupDir: string,
  options: SyncOptions & { refresh?: boolean } = {},
): Promise<SyncResult> {
  const result = await syncBackupDir(open, where, backupDir, options);
  if (options.type === 'database') return result;
  // each Docker volume is a backup directory of its own under volumes/: it goes to the same path on the
  // remote, with its own replication record, so a nightly sync never leaves the volumes behind unsaid
  for (const v of await volumeBackupDirs(backupDir)) {
    const rel = `volumes/${v.name}`;
    const sub = await syncBackupDir(async () => underPrefix(await open(), rel), { name: where.name, url: `${where.url.replace(/\/+$/, '')}/${rel}` }, v.dir, {
      ...options,
      // `ids` name backups of the main directory (create --sync): a volume sends what the remote lacks
      ids: undefined,
      type: undefined,
    });
    result.synced.push(...sub.synced.map((b) => ({ ...b, volume: v.name })));
    result.upToDate += sub.upToDate;
    result.notComplete.push(...sub.notComplete.map((b) => ({ ...b, volume: v.name })));
    result.bytes += sub.bytes;
    if (!sub.cached) result.cached = false;
    if (sub.missing) {
      result.missing = (result.missing ?? 0) + sub.missing;
      result.lagSeconds = Math.max(result.lagSeconds ?? 0, sub.lagSeconds ?? 0);
    }
    result.volumes = result.volumes ?? [];
    result.volumes.push({
      volume: v.name,
      synced: sub.synced.length,
      upToDate: sub.upToDate,
      bytes: sub.bytes,
      lagSeconds: sub.lagSeconds,
      missing: sub.missing,
    });
  }
  return result;
}

async function syncBackupDir(
  open: () => Promise<Remote>,
  where: RemoteWhere,
  backupDir: string,
  options: SyncOptions & { refresh?: boolean },
): Promise<SyncResult> {
  const started = Date.now();
  const { readStatus } = await import('../catalog/status.js');
  const { backupKey, lagFromRecord, recordReplication, replicationRecord } = await import('../catalog/replication.js');
  const local = await listBackups(backupDir);
  const record = options.refresh ? undefined : replicationRecord((await readStatus(backupDir)).status, where.name, where.url);
  if (record) {
    const selected = local.filter((e) => (!options.type || e.type === options.type) && (!options.ids || options.ids.includes(e.id)));
    const { pick, notComplete } = selectBackups(selected, options);
    const held = new Set(record.held);
    if (pick.every((e) => held.has(backupKey(e)))) {
      const lag = lagFromRecord(local, record);
      const components = componentsOf(pick);
      return {
        remote: where.url,
        synced: [],
        upToDate: pick.filter((e) => !components.has(backupKey(e))).length,
        notComplete,
        bytes: 0,
        ms: Date.now() - started,
        cached: true,
        lagSeconds: lag.lagSeconds,
        missing: lag.missing.length,
        removedHere: withoutComponents(record.removed_here),
      };
    }
  }
  const confirmed: string[] = [];
  let listing: { held: string[]; newestHeld: Record<string, string> } | undefined;
  const remember = async (sync: { ok: boolean; error?: string }) =>
    recordReplication(backupDir, where.name, await listBackups(backupDir), {
      url: where.url,
      confirmed: [...(listing?.held ?? []), ...confirmed],
      listed: !!listing,
      newestHeld: listing?.newestHeld,
      sync,
    });
  const remote = await open();
  let result: SyncResult;
  try {
    if (options.refresh) {
      const { missingOnRemote } = await import('./replication.js');
      listing = await missingOnRemote(remote, backupDir, options);
    }
    const held = new Set(listing?.held ?? record?.held ?? []);
    result = await syncToRemote(remote, backupDir, { ...options, held, onConfirmed: (keys) => confirmed.push(...keys) });
  } catch (err) {
    // what was confirmed before the failure stays known; a status file that cannot be written changes nothing
    await remember({ ok: false, error: (err as Error).message }).catch(() => {});
    throw err;
  } finally {
    await remote.close();
  }
  const after = await remember({ ok: true }).catch(() => undefined);
  result.lagSeconds = after?.lag_seconds;
  result.missing = after?.missing;
  result.removedHere = withoutComponents(after?.removed_here);
  result.ms = Date.now() - started;
  return result;
}

/** Backups as a person counts them: a full backup's database and storage parts are not three backups. */
function withoutComponents(keys: string[] | undefined): string[] | undefined {
  if (!keys?.length) return undefined;
  const fulls = new Set(keys.filter((k) => k.startsWith('full:')).map((k) => k.slice('full:'.length)));
  // newest first, as list shows them
  return keys
    .filter((k) => k.startsWith('full:') || !fulls.has(k.slice(k.indexOf(':') + 1)))
    .sort((a, b) => compareIds(b.slice(b.indexOf(':') + 1), a.slice(a.indexOf(':') + 1)));
}

// remote test and remote info: what `remote test|info` report about a remote

export interface RemoteTestStep {
  step: 'connect' | 'write' | 'stat' | 'read' | 'delete';
  ok: boolean;
  ms: number;
  error?: string;
}

export interface RemoteTestResult {
  remote: string;
  ok: boolean;
  steps: RemoteTestStep[];
  probeBytes: number;
}

/**
 * connect → write a probe object → stat it → read it back and compare → delete it. Stops at the first
 * failing step, and always tries to remove the probe. `open` is passed in so a failed connection is a
 * reported step, not an exception.
 */
export async function testRemote(
  open: () => Promise<Remote>,
  name: string,
  probeBytes = 64 * 1024,
  options: { markerId?: string } = {},
): Promise<RemoteTestResult> {
  const steps: RemoteTestStep[] = [];
  const step = async <T>(s: RemoteTestStep['step'], fn: () => Promise<T>): Promise<T | undefined> => {
    const t = Date.now();
    try {
      const v = await fn();
      steps.push({ step: s, ok: true, ms: Date.now() - t });
      return v;
    } catch (err) {
      steps.push({ step: s, ok: false, ms: Date.now() - t, error: errorMessage(err) + ((err as BackupError).hint ? ` (${(err as BackupError).hint})` : '') });
      return undefined;
    }
  };
  // "connect" passes only once the server answered: opening a client sends nothing (S3, WebDAV), so a
  // look for the remote's marker is the round trip, and a marked remote must still hold its marker
  const opened = await step('connect', async () => {
    const r = await open();
    try {
      // the first failure, not the last of several retries (an unreachable host would take 16 s)
      const once = retrying(r, { retries: 0 });
      await checkRemoteMarker(once, name, options.markerId);
      if (!options.markerId) await readRemoteMarker(once);
    } catch (err) {
      await r.close().catch(() => {});
      throw err;
    }
    return r;
  });
  if (!opened) return { remote: name, ok: false, steps, probeBytes };
  // a test reports the first failure of each step, not the last of several retries
  const remote = retrying(opened, { retries: 0 });
  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vertex-probe-'));
  const probeRel = `.vertex-backup-probe-${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const data = randomBytes(probeBytes);
    const local = path.join(tmpDir, 'probe');
    await fsp.writeFile(local, data, { mode: FILE_MODE });
    const wrote = await step('write', () => remote.put(probeRel, local));
    if (wrote === undefined && !steps.at(-1)?.ok) return { remote: remote.url, ok: false, steps, probeBytes };
    await step('stat', async () => {
      const st = await remote.stat(probeRel);
      if (!st) throw new Error('the probe object is not listed after writing it');
      if (st.size !== probeBytes) throw new Error(`the probe object is ${st.size} bytes, ${probeBytes} were written`);
    });
    if (steps.at(-1)?.ok) {
      await step('read', async () => {
        const back = await readSmall(remote, probeRel, probeBytes + 1);
        if (!createHash('sha256').update(back).digest().equals(createHash('sha256').update(data).digest())) {
          throw new Error('the probe read back differs from what was written');
        }
      });
    }
    await step('delete', async () => {
      await remote.delete(probeRel);
      if (await remote.stat(probeRel)) throw new Error('the probe object is still there after deleting it');
    });
  } finally {
    await remote.close().catch(() => {});
    await fsp.rm(tmpDir, { recursive: true, force: true });
  }
  return { remote: remote.url, ok: steps.every((s) => s.ok), steps, probeBytes };
}

export interface RemoteInfo {
  remote: string;
  space: SpaceInfo;
  objects: number;
  storedBytes: number; // sum of the objects under the remote root
  backups: { ok: number; incomplete: number; damaged: number };
}

export async function remoteInfo(remote: Remote, options: TransferOptions = {}): Promise<RemoteInfo> {
  const [space, objects, backups] = await Promise.all([remote.space(), remote.list(''), listRemoteBackups(remote, options)]);
  const count = (pred: (b: RemoteBackup) => boolean) => backups.filter(pred).length;
  return {
    remote: remote.url,
    space,
    objects: objects.filter((o) => !isTempName(o.path)).length,
    storedBytes: objects.reduce((n, o) => n + o.size, 0),
    backups: {
      ok: count((b) => b.status === 'ok' || b.status === 'partial'),
      incomplete: count((b) => b.status === 'incomplete'),
      damaged: count((b) => b.status === 'damaged'),
    },
  };
}
