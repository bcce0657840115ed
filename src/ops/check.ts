import { listBackups, type BackupEntry } from '../catalog/local-store.js';
import { BACKUP_TYPES, type BackupType } from '../catalog/sidecar.js';
import { describeInterrupted, type DrillRecord, readStatus, runKey, startedRunAlive, type RunRecord } from '../catalog/status.js';
import { exists } from '../fsutil.js';
import { readEnabled } from '../schedule/config.js';
import { formatAge } from '../human.js';
import { lagFromRecord, backupKey } from '../catalog/replication.js';

export const DEFAULT_MAX_AGE_MS = 26 * 3_600_000;
export const DEFAULT_MAX_DRILL_AGE_MS = 8 * 86_400_000;

export interface CheckOptions {
  backupDir: string;
  maxAgeMs: number;
  types: BackupType[];
  /** also require the last rotate and verify to have succeeded (off when one type is asked about) */
  includeOtherRuns?: boolean;
  /** the last restore drill must be younger than this (only once drills are set up: see drillSetUp) */
  maxDrillAgeMs?: number;
  /** BACKUP_DRILL_ENABLED=true: drills are expected even before the first one is recorded */
  drillExpected?: boolean;
  /** every remote with a record in status.json must be at most this far behind (none: reported, not judged) */
  maxReplicationLagMs?: number;
  now?: Date;
  /** a listing the caller already holds (serve's shared one), else the directory is listed */
  entries?: BackupEntry[];
}

export interface ReplicationCheck {
  remote: string;
  ok: boolean;
  lag_seconds: number;
  missing: number;
  newest_missing?: string;
  /** when the record was made (the last sync or listing): no remote is contacted by check */
  as_of: string;
  last_sync_ok?: boolean;
}

export interface TypeCheck {
  type: BackupType;
  ok: boolean;
  newest_id: string | null;
  newest_at: string | null;
  /** whole seconds since the newest ok backup was made (one key for age in every document: age_seconds) */
  age_seconds: number | null;
  /** why this type fails, one line */
  reason?: string;
}

export interface CheckResult {
  ok: boolean;
  checked_at: string;
  backup_dir: string;
  max_age_seconds: number;
  types: TypeCheck[];
  /** the recorded runs that were looked at (status.json) */
  runs: RunRecord[];
  /** the last restore drill, when drills are set up */
  drill?: { expected: boolean; max_age_seconds: number; last?: DrillRecord; age_seconds?: number; ok: boolean };
  /** per remote synced from here: how far behind it is, from status.json */
  replication?: ReplicationCheck[];
  /** every reason the check fails, one line each */
  reasons: string[];
}

/** The types to check when none is named: those whose BACKUP_<TYPE>_ENABLED is not false. */
export function enabledTypes(env: NodeJS.ProcessEnv): BackupType[] {
  return BACKUP_TYPES.filter((t) => readEnabled(env, t));
}

/**
 * Monitoring's question: is there a recent good backup of everything that should be backed up, and
 * did the last runs succeed? Cheap on purpose (sidecars and file sizes, no hashing), so it can run
 * every few minutes; `verify` is the deep check.
 */
export async function checkBackups(opts: CheckOptions): Promise<CheckResult> {
  const now = opts.now ?? new Date();
  const reasons: string[] = [];
  const types: TypeCheck[] = [];

  const dirExists = await exists(opts.backupDir);
  const entries: BackupEntry[] = dirExists ? (opts.entries ?? (await listBackups(opts.backupDir))) : [];
  for (const type of opts.types) {
    const newest = entries.find((e) => e.type === type && e.status === 'ok');
    const t: TypeCheck = { type, ok: true, newest_id: null, newest_at: null, age_seconds: null };
    if (!newest) {
      t.ok = false;
      t.reason = dirExists ? `no ok ${type} backup in ${opts.backupDir}` : `backup directory ${opts.backupDir} does not exist`;
    } else {
      // a clock that went backwards makes a backup look "from the future": count it as new
      const age = Math.max(0, now.getTime() - newest.createdAt.getTime());
      Object.assign(t, { newest_id: newest.id, newest_at: newest.createdAt.toISOString(), age_seconds: seconds(age) });
      if (age > opts.maxAgeMs) {
        t.ok = false;
        t.reason = `newest ok ${type} backup ${newest.id} is ${formatAge(age)} old (limit ${formatAge(opts.maxAgeMs)})`;
      }
    }
    if (t.reason) reasons.push(t.reason);
    types.push(t);
  }

  const runs: RunRecord[] = [];
  const { status, error } = dirExists ? await readStatus(opts.backupDir) : { status: null, error: undefined };
  if (error) reasons.push(error);
  if (status) {
    const keys = opts.types.map((t) => runKey('create', t));
    if (opts.includeOtherRuns !== false) keys.push('rotate', 'verify');
    // drills count once they are set up: a drill was recorded, or BACKUP_DRILL_ENABLED=true says one is expected
    if (opts.includeOtherRuns !== false && (status.runs.drill || status.drill || opts.drillExpected)) keys.push('drill');
    for (const key of keys) {
      const begun = status.started?.[key];
      if (begun && !startedRunAlive(begun)) {
        const what = begun.type ? `${begun.command} --type ${begun.type}` : begun.command;
        reasons.push(`last ${what} started at ${begun.started_at} (pid ${begun.pid}) and never finished: it was killed or crashed`);
      }
      const run = status.runs[key];
      if (!run) continue;
      runs.push(run);
      if (!run.ok) {
        const what = run.type ? `${run.command} --type ${run.type}` : run.command;
        reasons.push(`last ${what} failed at ${run.finished_at} (exit ${run.exit_code})${run.error ? `: ${run.error}` : ''}`);
      }
    }
    for (const key of keys) {
      const dead = status.interrupted?.[key];
      // the same killed run may be known both by its start marker and by the lock it left: say it once
      const begun = status.started?.[key];
      if (dead && !(begun && begun.pid === dead.pid && !startedRunAlive(begun))) reasons.push(describeInterrupted(dead));
    }
  }

  let drill: CheckResult['drill'];
  if (opts.includeOtherRuns !== false && (status?.runs.drill || status?.drill || opts.drillExpected)) {
    const maxAge = opts.maxDrillAgeMs ?? DEFAULT_MAX_DRILL_AGE_MS;
    const last = status?.runs.drill;
    drill = { expected: true, max_age_seconds: seconds(maxAge), last: status?.drill, ok: true };
    if (!last) {
      drill.ok = false;
      reasons.push(`no restore drill recorded in ${opts.backupDir} (BACKUP_DRILL_ENABLED=true): run vertex-backup drill`);
    } else {
      const age = Math.max(0, now.getTime() - Date.parse(last.finished_at));
      drill.age_seconds = seconds(age);
      if (age > maxAge) {
        drill.ok = false;
        reasons.push(`the last restore drill finished ${formatAge(age)} ago (limit ${formatAge(maxAge)}): run vertex-backup drill`);
      }
      if (!last.ok) drill.ok = false;
    }
  }

  let replication: ReplicationCheck[] | undefined;
  if (status?.replication && Object.keys(status.replication).length) {
    // by name: status.json keeps the order remotes were first recorded, which differs between hosts
    const records = Object.entries(status.replication).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    replication = records.map(([remote, record]) => {
      const lag = lagFromRecord(entries, record, now);
      const ok = opts.maxReplicationLagMs === undefined || lag.lagSeconds * 1000 <= opts.maxReplicationLagMs;
      if (!ok)
        reasons.push(
          `replication to ${remote} is ${formatAge(lag.lagSeconds * 1000)} behind (limit ${formatAge(opts.maxReplicationLagMs!)}): ${lag.missing.length} backups missing there, the newest ${lag.missing[0]?.type} ${lag.missing[0]?.id}`,
        );
      return {
        remote,
        ok,
        lag_seconds: lag.lagSeconds,
        missing: lag.missing.length,
        newest_missing: lag.missing[0] ? backupKey(lag.missing[0]) : undefined,
        as_of: record.as_of,
        last_sync_ok: record.last_sync?.ok,
      };
    });
  }

  return {
    ok: reasons.length === 0,
    checked_at: now.toISOString(),
    backup_dir: opts.backupDir,
    max_age_seconds: seconds(opts.maxAgeMs),
    types,
    runs,
    drill,
    replication,
    reasons,
  };
}

const seconds = (ms: number): number => Math.floor(ms / 1000);
