import { Cron } from 'croner';
import type { BackupType } from '../catalog/sidecar.js';
import { usageError } from '../errors.js';
import { parseDuration } from './duration.js';
import { PIT_JOB, SCHEDULE_TABLE } from './table.js';

export type JobName = 'database' | 'storage' | 'full' | 'rotation' | 'drill' | 'sync' | 'pit';
export const JOB_NAMES: readonly JobName[] = ['database', 'storage', 'full', 'rotation', 'drill', 'sync', 'pit'];

export interface JobSpec {
  name: JobName;
  /** The environment variable the schedule came from, for messages: BACKUP_DATABASE_SCHEDULE. */
  scheduleVar: string;
  schedule: string;
  enabled: boolean;
  /** The CLI arguments the job runs with (global options are added by the runner). */
  args: string[];
}

/** From the one schedule table, which the crontab and the systemd timer follow too. */
export const DEFAULT_SCHEDULES: Record<JobName, string> = {
  database: SCHEDULE_TABLE.database.cron,
  storage: SCHEDULE_TABLE.storage.cron,
  full: SCHEDULE_TABLE.full.cron,
  rotation: SCHEDULE_TABLE.rotation.cron,
  drill: SCHEDULE_TABLE.drill.cron,
  sync: SCHEDULE_TABLE.sync.cron,
  pit: PIT_JOB.cron,
};

export const DEFAULT_GRACE_MS = 5 * 60_000;

const JOB_ARGS: Record<JobName, readonly string[]> = {
  database: SCHEDULE_TABLE.database.args,
  storage: SCHEDULE_TABLE.storage.args,
  full: SCHEDULE_TABLE.full.args,
  rotation: SCHEDULE_TABLE.rotation.args,
  drill: SCHEDULE_TABLE.drill.args,
  sync: SCHEDULE_TABLE.sync.args,
  pit: PIT_JOB.args,
};

/**
 * Five fields, or six with seconds first. Seven-field (year) patterns and Quartz weekday numbering
 * are refused: an operator copying a crontab line must get what cron would do.
 */
export const CRON_OPTIONS = { mode: '5-or-6-parts' as const };

export function envPrefix(name: JobName): string {
  return `BACKUP_${name.toUpperCase()}`;
}

/**
 * BACKUP_<TYPE>_ENABLED: unset means enabled, as in the seed; the drill, the sync (it needs remotes
 * configured) and the page deltas, which are not in the seed, are disabled unless set.
 */
export function readEnabled(env: NodeJS.ProcessEnv, name: JobName | BackupType): boolean {
  const v = `BACKUP_${name.toUpperCase()}_ENABLED`;
  const raw = env[v]?.trim().toLowerCase();
  if (!raw) return name !== 'drill' && name !== 'sync' && name !== 'pit';
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw usageError(`${v}: expected true or false, got "${env[v]}"`);
}

/** Throws a usage error (exit 2) naming the variable when a cron expression does not parse. */
export function validateCron(expr: string, variable: string): void {
  try {
    new Cron(expr, { ...CRON_OPTIONS, paused: true }).stop();
  } catch (err) {
    throw usageError(
      `${variable}: invalid cron expression "${expr}": ${(err as Error).message.replace(/^CronPattern: /, '')}`,
      'use five fields (minute hour day month weekday), e.g. "0 2 * * *", or six with seconds first',
    );
  }
}

export function loadJobSpecs(env: NodeJS.ProcessEnv): JobSpec[] {
  return JOB_NAMES.map((name) => {
    const scheduleVar = `${envPrefix(name)}_SCHEDULE`;
    const schedule = env[scheduleVar]?.trim() || DEFAULT_SCHEDULES[name];
    const enabled = readEnabled(env, name);
    // a disabled job's expression is still checked: a typo should surface the day it is written
    validateCron(schedule, scheduleVar);
    return { name, scheduleVar, schedule, enabled, args: [...JOB_ARGS[name]] };
  });
}

/** BACKUP_MISFIRE_GRACE: seconds (the seed's misfire_grace_time) or a duration such as "5m". */
export function loadGraceMs(env: NodeJS.ProcessEnv): number {
  const raw = env.BACKUP_MISFIRE_GRACE?.trim();
  return raw ? parseDuration(raw, 'BACKUP_MISFIRE_GRACE', 's') : DEFAULT_GRACE_MS;
}

/** The next `count` run times of a schedule after `from`. */
export function nextRuns(expr: string, count: number, from = new Date()): Date[] {
  const c = new Cron(expr, { ...CRON_OPTIONS, paused: true });
  try {
    return c.nextRuns(count, from);
  } finally {
    c.stop();
  }
}

/** The most recent scheduled time at or before `at`, if any. */
export function previousRun(expr: string, at = new Date()): Date | undefined {
  const c = new Cron(expr, { ...CRON_OPTIONS, paused: true });
  try {
    // previousRuns looks strictly before the reference; a run due this very millisecond counts too
    return c.previousRuns(1, new Date(at.getTime() + 1))[0];
  } finally {
    c.stop();
  }
}
