import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';
import * as v from 'valibot';
import { exists, writeFileAtomicSync } from '../fsutil.js';
import { withFileLockSync } from './file-lock.js';
import { redact } from '../secrets.js';
import { ownIdentity, stillRunning } from './process-identity.js';
import type { BackupType } from './sidecar.js';

/**
 * `<backup-dir>/status.json` holds the outcome of the latest run of each command, so `check` (and any
 * monitoring that reads the file) can tell "the 02:00 backup failed" apart from "no backup was due".
 * It is small and rewritten whole, atomically, after every recorded run.
 */
export const STATUS_FILE = 'status.json';
export const STATUS_FORMAT = 1;
/**
 * Every change to status.json is a read-modify-write (a create, a sync from the timer and a drill may
 * finish in the same moment, each adding its part): they take this kernel lock around it, so none
 * overwrites what another just wrote. Never removed, like the run lock's file.
 */
export const STATUS_LOCK = '.vertex-backup.status.lock';

const BackupTypeSchema = v.picklist(['database', 'storage', 'full']);

const RunRecordSchema = v.object({
  command: v.string(), // 'create', 'rotate', 'verify', …
  type: v.optional(BackupTypeSchema), // create: the backup type
  ok: v.boolean(),
  exit_code: v.number(),
  started_at: v.string(),
  finished_at: v.string(),
  duration_ms: v.number(),
  summary: v.optional(v.string()),
  error: v.optional(v.string()), // one line, redacted
  backup_id: v.optional(v.string()),
  size_bytes: v.optional(v.number()),
  host: v.string(),
  pid: v.number(),
});
export type RunRecord = v.InferOutput<typeof RunRecordSchema>;

const StartedRecordSchema = v.object({
  command: v.string(),
  type: v.optional(BackupTypeSchema),
  started_at: v.string(),
  host: v.string(),
  pid: v.number(),
  // which process the pid was (see process-identity.ts); absent in files of older versions
  boot_id: v.optional(v.string()),
  start_ticks: v.optional(v.number()),
});
export type StartedRecord = v.InferOutput<typeof StartedRecordSchema>;

const InterruptedRunSchema = v.object({
  command: v.string(),
  pid: v.number(),
  hostname: v.string(),
  started_at: v.string(),
  /** when a later run found it */
  found_at: v.string(),
});
export type InterruptedRun = v.InferOutput<typeof InterruptedRunSchema>;

/** The last restore drill's figures (the run itself is in `runs.drill`): for `check` and the metrics file. */
const DrillRecordSchema = v.object({
  finished_at: v.string(),
  result: v.picklist(['passed', 'target-missed', 'failed']),
  source: v.string(),
  backup_type: v.optional(BackupTypeSchema),
  backup_id: v.optional(v.string()),
  /** absent when the drill failed: nothing was restored, so there is no recovery time */
  rto_ms: v.optional(v.number()),
  rto_target_ms: v.number(),
  rto_extrapolated: v.optional(v.boolean()),
  /** age of the drilled backup when the drill started */
  rpo_ms: v.optional(v.number()),
  rpo_target_ms: v.number(),
  bytes_restored: v.optional(v.number()),
  coverage_pct: v.optional(v.number()),
  problems: v.optional(v.array(v.string())),
});
export type DrillRecord = v.InferOutput<typeof DrillRecordSchema>;

/**
 * What one remote holds as of the last sync or listing (catalog/replication.ts): enough to answer "is
 * anything new to send?" and "how far behind is it?" without opening a connection.
 */
const ReplicationRecordSchema = v.object({
  /** the remote's URL, secrets masked (for messages) */
  url: v.string(),
  /** of the remote's URL: a remote pointed elsewhere under the same name starts from nothing */
  fingerprint: v.string(),
  /** when `held` was last brought up to date (a sync or a listing) */
  as_of: v.string(),
  /** the last full listing of the remote (sync --refresh, check --refresh, a first check) */
  listed_at: v.optional(v.string()),
  /** 'type:id' of the local backups the remote holds complete */
  held: v.array(v.string()),
  /** per type, the creation time of the newest backup the remote holds (it may be gone locally) */
  newest_held: v.optional(v.record(v.string(), v.string())),
  /**
   * 'type:id' the remote holds (as far as a sync or listing knows) that rotation removed here: what the
   * remote's own retention (rotate --remote) has not removed yet, said by sync
   */
  removed_here: v.optional(v.array(v.string())),
  /** as of `as_of`: how long the remote has been behind (see replicationLag), and what it lacks */
  lag_seconds: v.number(),
  missing: v.number(),
  newest_missing: v.optional(v.string()),
  last_sync: v.optional(v.object({ finished_at: v.string(), ok: v.boolean(), error: v.optional(v.string()) })),
});
export type ReplicationRecord = v.InferOutput<typeof ReplicationRecordSchema>;

const StatusFileSchema = v.object({
  format: v.number(),
  updated_at: v.string(),
  last_run: v.nullable(RunRecordSchema),
  /** keyed by runKey(): 'create:full', 'create:database', 'rotate', 'verify' */
  runs: v.record(v.string(), RunRecordSchema),
  /**
   * Runs that died holding the lock (found by the next run that took it), keyed like `runs`; an entry
   * stays until that job next succeeds, so `check` keeps reporting it.
   */
  interrupted: v.optional(v.record(v.string(), InterruptedRunSchema)),
  /**
   * Runs that started and have not recorded an outcome yet, by runKey(). An entry whose process is
   * gone is a run that was killed (SIGKILL, OOM, power loss): `check` reports it.
   */
  started: v.optional(v.record(v.string(), StartedRecordSchema)),
  drill: v.optional(DrillRecordSchema),
  /** per remote name (or URL, for a remote given as one) */
  replication: v.optional(v.record(v.string(), ReplicationRecordSchema)),
});
export type StatusFile = v.InferOutput<typeof StatusFileSchema>;

export type RunInput = Omit<RunRecord, 'host' | 'pid' | 'finished_at' | 'started_at'> & {
  started_at?: string;
  finished_at?: string;
};

export function runKey(command: string, type?: string): string {
  return type ? `${command}:${type}` : command;
}

export type StatusRead = { status: StatusFile | null; error?: string };

/** Reads status.json: `status` null when there is none yet; `error` when it exists but is unusable. */
export async function readStatus(backupDir: string): Promise<StatusRead> {
  const file = path.join(backupDir, STATUS_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { status: null } : { status: null, error: `cannot read ${file}: ${code}` };
  }
  return parseStatus(text, file);
}

function readStatusSync(backupDir: string): StatusRead {
  const file = path.join(backupDir, STATUS_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { status: null } : { status: null, error: `cannot read ${file}: ${code}` };
  }
  return parseStatus(text, file);
}

function parseStatus(text: string, file: string): StatusRead {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { status: null, error: `${file} is not a valid status file (not JSON)` };
  }
  const parsed = v.safeParse(StatusFileSchema, data, { abortEarly: true });
  if (!parsed.success) {
    const issue = parsed.issues[0];
    return { status: null, error: `${file} is not a valid status file (${v.getDotPath(issue) ?? 'the file'}: ${issue.message})` };
  }
  // the parsed input, not the output: fields a newer version added are kept when the file is rewritten
  return { status: data as StatusFile };
}

/**
 * The one way status.json changes: under STATUS_LOCK, `change` gets the file as it is now (null when
 * missing or unusable: the newest outcome matters more than old ones) and returns the new content, or
 * undefined to leave it. Synchronous inside the lock on purpose (see withFileLockSync). Throws on I/O
 * errors; callers log and carry on.
 */
export function updateStatus(backupDir: string, change: (previous: StatusFile | null) => StatusFile | undefined): StatusFile | undefined {
  return withFileLockSync(path.join(backupDir, STATUS_LOCK), () => {
    const next = change(readStatusSync(backupDir).status);
    if (next) writeFileAtomicSync(path.join(backupDir, STATUS_FILE), `${JSON.stringify(next, null, 2)}\n`);
    return next;
  });
}

/**
 * Records one run. Does nothing when the backup directory does not exist (a run that failed on a
 * mistyped --backup-dir must not create it). Throws on I/O errors: the caller logs and carries on,
 * a status file that cannot be written never changes a run's result.
 */
export async function recordRun(backupDir: string, input: RunInput, now = new Date()): Promise<StatusFile | null> {
  if (!(await exists(backupDir))) return null;
  const finished = input.finished_at ?? now.toISOString();
  const record: RunRecord = {
    ...input,
    started_at: input.started_at ?? new Date(Date.parse(finished) - input.duration_ms).toISOString(),
    finished_at: finished,
    duration_ms: Math.round(input.duration_ms),
    summary: input.summary === undefined ? undefined : redact(input.summary),
    error: input.error === undefined ? undefined : redact(input.error).split('\n')[0],
    host: hostname(),
    pid: process.pid,
  };
  const key = runKey(record.command, record.type);
  return (
    updateStatus(backupDir, (previous) => {
      const status: StatusFile = {
        format: STATUS_FORMAT,
        updated_at: finished,
        last_run: record,
        runs: { ...(previous?.runs ?? {}), [key]: record },
        started: withoutOwnStart(previous?.started, key),
        // the last drill's figures are written by the drill itself and stay, and so does what the remotes hold
        drill: previous?.drill,
        replication: previous?.replication,
      };
      const interrupted = { ...(previous?.interrupted ?? {}) };
      if (record.ok) delete interrupted[runKey(record.command, record.type)];
      if (Object.keys(interrupted).length) status.interrupted = interrupted;
      return status;
    }) ?? null
  );
}

/** The previous file with `fields` changed (a missing or unusable one starts empty). */
export function changedStatus(previous: StatusFile | null | undefined, now: Date, fields: Partial<StatusFile>): StatusFile {
  return {
    ...previous,
    format: STATUS_FORMAT,
    updated_at: now.toISOString(),
    last_run: previous?.last_run ?? null,
    runs: previous?.runs ?? {},
    ...fields,
  };
}

/** Records the figures of a finished drill (its outcome as a run is recorded by recordRun). Same contract as recordRun. */
export async function recordDrill(backupDir: string, drill: DrillRecord, now = new Date()): Promise<void> {
  if (!(await exists(backupDir))) return;
  updateStatus(backupDir, (previous) => changedStatus(previous, now, { drill: { ...drill, problems: drill.problems?.map((p) => redact(p).split('\n')[0]) } }));
}

/** Records that a run died holding the lock (see acquireLock); does not touch the runs' outcomes. */
export async function recordInterrupted(
  backupDir: string,
  run: { job: string; command: string; pid: number; hostname: string; started_at: string },
  now = new Date(),
): Promise<void> {
  updateStatus(backupDir, (previous) =>
    changedStatus(previous, now, {
      interrupted: {
        ...(previous?.interrupted ?? {}),
        [run.job]: { command: redact(run.command), pid: run.pid, hostname: run.hostname, started_at: run.started_at, found_at: now.toISOString() },
      },
    }),
  );
}

function withoutOwnStart(started: Record<string, StartedRecord> | undefined, key: string): Record<string, StartedRecord> | undefined {
  if (!started?.[key] || started[key].pid !== process.pid || started[key].host !== hostname()) return started;
  const { [key]: _mine, ...rest } = started;
  return Object.keys(rest).length ? rest : undefined;
}

/** False only when the recorded process is known to be gone: same host, and another boot, no such pid, or another process under it. */
export function startedRunAlive(s: StartedRecord): boolean {
  return s.host !== hostname() || stillRunning(s.pid, s);
}

/**
 * Marks a run as started before it does any work, so a run that never finishes is visible. A live
 * run's marker is left alone: a second run refused by the lock must not hide the first one.
 * Same contract as recordRun: nothing when the directory does not exist, throws on I/O errors.
 */
export async function recordStart(backupDir: string, command: string, type?: BackupType, now = new Date()): Promise<void> {
  if (!(await exists(backupDir))) return;
  const key = runKey(command, type);
  updateStatus(backupDir, (previous) => {
    const current = previous?.started?.[key];
    if (current && (current.pid !== process.pid || current.host !== hostname()) && startedRunAlive(current)) return undefined;
    return changedStatus(previous, now, {
      started: { ...(previous?.started ?? {}), [key]: { command, type, started_at: now.toISOString(), host: hostname(), pid: process.pid, ...ownIdentity() } },
    });
  });
}

/** The one line `check` and the notifications show for a run that died. */
export function describeInterrupted(run: InterruptedRun): string {
  return `the previous run '${run.command}' (pid ${run.pid} on ${run.hostname}, started ${run.started_at}) died without finishing`;
}

/** Removes this process's start marker without recording an outcome (a run that changed nothing). */
export async function clearStart(backupDir: string, command: string, type?: BackupType): Promise<void> {
  if (!(await exists(backupDir))) return;
  const key = runKey(command, type);
  // fast path without the lock: most runs recorded an outcome, which already removed their marker
  const { status: seen } = await readStatus(backupDir);
  if (!seen || withoutOwnStart(seen.started, key) === seen.started) return;
  updateStatus(backupDir, (previous) => {
    if (!previous) return undefined;
    const started = withoutOwnStart(previous.started, key);
    return started === previous.started ? undefined : { ...previous, started };
  });
}
