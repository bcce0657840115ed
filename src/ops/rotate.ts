import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, listBackups } from '../catalog/listing.js';
import { lockAndHeal } from './restore-journal.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { fsyncDir } from '../fsutil.js';
import { planRetention, type RetentionItem, type RetentionPolicy } from './retention.js';

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
  kept: { type: BackupType; id: string; reasons: string[]; bytes: number }[];
  removed: { type: BackupType; id: string; reason: string; files: string[]; bytes: number }[];
  freedBytes: number;
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

/** Applies the retention policy; the caller holds the lock. */
export async function runRotate(cfg: Config, opts: RotateOptions): Promise<RotateResult> {
  // components are protected across types, so the plan always sees every type
  const entries = await listBackups(cfg.backupDir);
  const byKey = new Map(entries.map((e) => [`${e.type}:${e.id}`, e]));
  const plan = planRetention(entries.map(toRetentionItem), opts.policy);
  const result: RotateResult = { dryRun: !!opts.dryRun, policy: opts.policy, kept: [], removed: [], freedBytes: 0 };
  for (const k of plan.keep) {
    if (opts.type && k.item.type !== opts.type) continue;
    result.kept.push({ type: k.item.type, id: k.item.id, reasons: k.reasons, bytes: await backupBytes(byKey.get(`${k.item.type}:${k.item.id}`)!) });
  }
  for (const r of plan.remove) {
    if (opts.type && r.item.type !== opts.type) {
      result.kept.push({ type: r.item.type, id: r.item.id, reasons: ['other type'], bytes: await backupBytes(byKey.get(`${r.item.type}:${r.item.id}`)!) });
      continue;
    }
    opts.signal?.throwIfAborted();
    const entry = byKey.get(`${r.item.type}:${r.item.id}`)!;
    const bytes = opts.dryRun ? await backupBytes(entry) : await removeBackup(entry);
    result.removed.push({ type: entry.type, id: entry.id, reason: r.reason, files: entry.files, bytes });
    result.freedBytes += bytes;
  }
  return result;
}

export async function rotateBackups(cfg: Config, opts: RotateOptions): Promise<RotateResult> {
  // an interrupted restore is completed or rolled back first: its copies aside are not ours to judge
  const { lock } = await lockAndHeal(cfg.backupDir, 'rotate', { waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    return await runRotate(cfg, opts);
  } finally {
    lock.release();
  }
}
