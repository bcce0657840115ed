import { randomBytes, createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BackupType } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import type { RestoreOptions, RestoreResult } from './restore.js';
import { BackupError, usageError } from '../errors.js';
import { FILE_MODE } from '../fsutil.js';
import { type Remote, RemoteError, type SpaceInfo, errorMessage, isTempName, readSmall, tempAgeMs } from '../remote/remote.js';
import { type RemoteBackup, type TransferOptions, dataFiles, downloadBackup, hashRemote, listRemoteBackups, sidecarRel, withRetry } from '../remote/transfer.js';
import { type RetentionItem, type RetentionPolicy, planRetention } from './retention.js';

// ---- remote test ------------------------------------------------------------------------------------

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
export async function testRemote(open: () => Promise<Remote>, name: string, probeBytes = 64 * 1024): Promise<RemoteTestResult> {
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
  const remote = await step('connect', open);
  if (!remote) return { remote: name, ok: false, steps, probeBytes };
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

// ---- remote info ------------------------------------------------------------------------------------

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

// ---- verify --remote ---------------------------------------------------------------------------------

export interface RemoteVerifyResult {
  type: BackupType;
  id: string;
  ok: boolean;
  problems: string[];
  checkedFiles: number;
  totalFiles: number;
  bytes: number;
}

export interface RemoteVerifyOptions extends TransferOptions {
  ref?: string; // an id, a sidecar name, or 'latest' (default)
  all?: boolean;
  type?: BackupType;
  /** hash only this percentage of each backup's files, chosen at random (at least one) */
  samplePercent?: number;
  random?: () => number;
}

function pickBackups(list: RemoteBackup[], ref: string | undefined, all: boolean): RemoteBackup[] {
  if (all) return list;
  if (!ref || ref === 'latest') {
    const latest = list.find((b) => b.type === 'full' && b.status !== 'incomplete') ?? list.find((b) => b.status !== 'incomplete');
    return latest ? [latest] : [];
  }
  const m = /^(?:db_backup_|storage_backup_|full_backup_)?(\d{8}_\d{6}(?:_\d+)?)(?:\.json)?$/.exec(path.basename(ref));
  const id = m?.[1] ?? ref;
  const typed = /^db_backup_/.test(ref) ? 'database' : /^storage_backup_/.test(ref) ? 'storage' : /^full_backup_/.test(ref) ? 'full' : undefined;
  const matches = list.filter((b) => b.id === id && (!typed || b.type === typed));
  const best = matches.find((b) => b.type === 'full') ?? matches[0];
  if (!best) throw usageError(`no backup "${ref}" on the remote`, 'see what it holds with: list --remote NAME');
  return [best];
}

function sample<T>(items: T[], percent: number | undefined, random: () => number): T[] {
  if (percent === undefined || percent >= 100 || items.length === 0) return items;
  const n = Math.max(1, Math.ceil((items.length * Math.max(0, percent)) / 100));
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, n);
}

/** Downloads and hashes the files of remote backups (all of them, or a random sample) against their sidecars. */
export async function verifyRemote(remote: Remote, options: RemoteVerifyOptions = {}): Promise<{ ok: boolean; results: RemoteVerifyResult[] }> {
  const list = await listRemoteBackups(remote, { ...options, type: options.type });
  const chosen = pickBackups(list, options.ref, !!options.all);
  const byKey = new Map(list.map((b) => [`${b.type}:${b.id}`, b]));
  const results: RemoteVerifyResult[] = [];
  const done = new Set<string>();
  const verifyOne = async (b: RemoteBackup): Promise<RemoteVerifyResult> => {
    const r: RemoteVerifyResult = { type: b.type, id: b.id, ok: true, problems: [], checkedFiles: 0, totalFiles: 0, bytes: 0 };
    if (!b.sidecar) {
      r.problems.push(b.reason ?? 'no metadata');
    } else if (b.type === 'full') {
      for (const t of ['database', 'storage'] as const) {
        const cid = b.sidecar[t];
        if (!cid) continue;
        const comp = byKey.get(`${t}:${cid}`);
        if (!comp) {
          r.problems.push(`${t} component ${cid} is missing`);
          continue;
        }
        const sub = await verifyOne(comp);
        done.add(`${t}:${cid}`);
        results.push(sub);
        if (!sub.ok) r.problems.push(`${t} component ${cid} is damaged`);
      }
    } else {
      const files = dataFiles(b.type, b.sidecar);
      r.totalFiles = files.length;
      for (const f of sample(files, options.samplePercent, options.random ?? Math.random)) {
        try {
          const got = await hashRemote(remote, f.rel, options);
          r.checkedFiles++;
          r.bytes += got.size;
          if (got.size !== f.size) r.problems.push(`${f.rel} is ${got.size} bytes, metadata says ${f.size}`);
          else if (f.checksum && got.checksum !== f.checksum) r.problems.push(`${f.rel}: checksum mismatch (the remote copy is corrupt)`);
        } catch (err) {
          if (err instanceof RemoteError && err.kind === 'missing') r.problems.push(`${f.rel} is missing`);
          else throw err;
        }
      }
    }
    r.ok = r.problems.length === 0;
    return r;
  };
  for (const b of chosen) {
    if (done.has(`${b.type}:${b.id}`)) continue;
    results.push(await verifyOne(b));
    done.add(`${b.type}:${b.id}`);
  }
  if (!chosen.length) throw usageError(`no backups on ${remote.url} to verify`);
  return { ok: results.every((r) => r.ok), results };
}

// ---- rotate --remote --------------------------------------------------------------------------------

export interface RemoteRotateOptions extends TransferOptions {
  policy: RetentionPolicy; // the same rules as local rotation (keepLast = --max-backups)
  type?: BackupType; // only remove backups of this type
  dryRun?: boolean;
}

export interface RemoteRotateResult {
  remote: string;
  kept: { type: BackupType; id: string; reasons: string[] }[];
  deleted: { type: BackupType; id: string; status: string; reason: string; files: number; bytes: number }[];
  staleTemps: string[]; // temp objects of long-dead uploads, removed
  dryRun: boolean;
}

const STALE_TEMP_MS = 6 * 3_600_000;

/**
 * Applies the local retention planner to what the remote holds: the same policy keeps the same
 * backups, components of kept full backups included; incomplete leftovers of interrupted uploads older
 * than the newest good backup go too. Each deletion removes the sidecar first, so a backup stops being
 * listed as ok before any of its data goes.
 */
export async function rotateRemote(remote: Remote, options: RemoteRotateOptions): Promise<RemoteRotateResult> {
  const p = options.policy;
  for (const [k, v] of Object.entries(p)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw usageError(`retention ${k} must be a whole number, got ${v}`);
  }
  if (!Object.values(p).some((v) => v !== undefined && v > 0)) {
    throw usageError('remote rotation needs a policy that keeps something', 'give --max-backups N (N >= 1) or --keep-daily/weekly/monthly');
  }
  // every type, whatever --type says: a full backup protects its components across types
  const list = await listRemoteBackups(remote, { ...options, type: undefined });
  const byItem = new Map<RetentionItem, RemoteBackup>();
  const items = list.map((b) => {
    const item: RetentionItem = {
      id: b.id,
      type: b.type,
      time: b.createdAt,
      status: b.status === 'partial' ? 'ok' : b.status,
      components: b.type === 'full' ? { database: b.sidecar?.database ?? null, storage: b.sidecar?.storage ?? null } : undefined,
    };
    byItem.set(item, b);
    return item;
  });
  const plan = planRetention(items, p);
  const result: RemoteRotateResult = {
    remote: remote.url,
    kept: plan.keep.map((k) => ({ type: k.item.type, id: k.item.id, reasons: k.reasons })),
    deleted: [],
    staleTemps: [],
    dryRun: !!options.dryRun,
  };
  const objects = await remote.list('');
  const sizes = new Map(objects.map((e) => [e.path, e.size]));
  for (const { item, reason } of plan.remove) {
    if (options.type && item.type !== options.type) {
      result.kept.push({ type: item.type, id: item.id, reasons: [`not of type ${options.type}`] });
      continue;
    }
    const b = byItem.get(item)!;
    const bytes = b.files.reduce((n, f) => n + (sizes.get(f) ?? 0), 0);
    result.deleted.push({ type: b.type, id: b.id, status: b.status, reason, files: b.files.length, bytes });
    if (options.dryRun) continue;
    const sidecar = sidecarRel(b.type, b.id);
    const order = [...b.files.filter((f) => f === sidecar), ...b.files.filter((f) => f !== sidecar)];
    for (const f of order) await withRetry(f, () => remote.delete(f), options);
  }
  // temp objects of uploads cut off long ago; a younger one may belong to a sync running right now
  for (const o of objects) {
    const age = tempAgeMs(o.path);
    if (age === undefined || age < STALE_TEMP_MS) continue;
    result.staleTemps.push(o.path);
    if (!options.dryRun) await withRetry(o.path, () => remote.delete(o.path), options);
  }
  return result;
}

// ---- restore --from ---------------------------------------------------------------------------------

export interface FetchedBackup {
  /** a backup directory layout holding just this backup (and its components); remove it when done */
  dir: string;
  type: BackupType;
  id: string;
  sidecarPath: string;
  bytes: number;
  ms: number;
}

/**
 * Downloads a remote backup into a fresh temporary directory beside the backup directory (same
 * filesystem, so the restore's renames stay cheap), verifying every file against its sidecar on the way.
 */
export async function fetchRemoteBackup(remote: Remote, ref: string, backupDir: string, options: TransferOptions & { type?: BackupType } = {}): Promise<FetchedBackup> {
  const started = Date.now();
  const list = await listRemoteBackups(remote, { ...options, type: options.type });
  const [b] = pickBackups(
    list.filter((x) => x.status === 'ok' || x.status === 'partial'),
    ref,
    false,
  );
  if (!b) throw usageError(`no complete backup "${ref}" on ${remote.url}`, 'see what it holds with: list --remote NAME');
  await fsp.mkdir(backupDir, { recursive: true, mode: 0o700 });
  const dir = await fsp.mkdtemp(path.join(backupDir, `.remote-restore-${b.id}-`));
  let bytes = 0;
  try {
    const sidecarPath = await downloadBackup(remote, b.type, b.id, dir, {
      ...options,
      onEvent: (e) => {
        if (e.kind === 'download') bytes += e.size;
        options.onEvent?.(e);
      },
    });
    return { dir, type: b.type, id: b.id, sidecarPath, bytes, ms: Date.now() - started };
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    if (err instanceof BackupError && err.code === 'DAMAGED') {
      throw new BackupError('DAMAGED', `${err.message}: refusing to restore from it`, { hint: 'try an older backup: list --remote NAME', cause: err });
    }
    throw err;
  }
}

/**
 * `restore --from REMOTE ID`: under the backup-directory lock (like every command that changes the live
 * paths), download and verify into a temporary directory, then the normal safe restore from there (it
 * verifies again and copies the live data aside). The download is removed afterwards whatever happens.
 */
export async function restoreFromRemote(
  cfg: Config,
  remote: Remote,
  ref: string,
  opts: RestoreOptions & { transfer?: TransferOptions } = {},
): Promise<RestoreResult & { fetched: FetchedBackup }> {
  const started = Date.now();
  if (opts.target) {
    const st = await fsp.stat(path.resolve(opts.target)).catch(() => undefined);
    if (st && !st.isDirectory()) throw new BackupError('USAGE', `--target must name a directory, and ${path.resolve(opts.target)} is a file`, { hint: 'give a new or existing directory to restore into' });
  }
  const { lockAndHeal } = await import('./restore-journal.js');
  const { lock, healed } = await lockAndHeal(cfg.backupDir, `restore ${ref} --from ${remote.url}`, { waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    const fetched = await fetchRemoteBackup(remote, ref, cfg.backupDir, { signal: opts.signal, ...opts.transfer });
    try {
      const { restoreLocked } = await import('./restore.js');
      const { findBackup } = await import('../catalog/listing.js');
      const entry = await findBackup(fetched.dir, sidecarRel(fetched.type, fetched.id).split('/').pop()!, fetched.type);
      if (!entry) throw new BackupError('FAILED', `the downloaded backup ${fetched.id} is not where it was written (${fetched.dir})`);
      const result = await restoreLocked(cfg, { sourceDir: fetched.dir, entry }, opts, started);
      return { ...result, healed, fetched };
    } finally {
      await fsp.rm(fetched.dir, { recursive: true, force: true });
    }
  } finally {
    lock.release();
  }
}
