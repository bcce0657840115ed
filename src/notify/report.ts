import type { BackupType } from '../catalog/sidecar.js';
import { recordRun } from '../catalog/status.js';
import { EXIT_CODES } from '../errors.js';
import { hasChannels, resolveNotifyConfig } from './config.js';
import type { NotifyConfig, NotifyLogger } from './types.js';

/** Commands whose outcome `check` needs: recorded in <backup-dir>/status.json. */
export const RECORDED_COMMANDS: ReadonlySet<string> = new Set(['create', 'rotate', 'verify', 'drill', 'sync']);
/**
 * Commands whose result is sent by --notify / NOTIFY_ON. Not list/stats (read-only, and the shell
 * wrapper runs stats after every backup), not schedule (its jobs report themselves) and not notify.
 */
export const NOTIFIED_COMMANDS: ReadonlySet<string> = new Set(['create', 'rotate', 'verify', 'restore', 'check', 'drill', 'sync']);

export interface FinishedRun {
  /** the subcommand: 'create' */
  name: string;
  /** what the operator ran, for the message: 'create --type full' */
  label: string;
  type?: BackupType;
  ok: boolean;
  exitCode: number;
  durationMs: number;
  summary?: string;
  sizeBytes?: number;
  /** one line: the error message, or why a non-zero outcome failed */
  error?: string;
  backupId?: string;
  /** the command line itself was wrong (unknown id, bad value): not a failed run */
  argumentError?: boolean;
  /** the run's own output (last lines), for the healthcheck ping's body */
  log?: string;
  /** one UUID per run, shared by the start and the end ping */
  runId?: string;
}

/** The "/start" ping for commands that report their result; never throws. */
export async function reportStart(name: string, label: string, notify: NotifyConfig | undefined, log: NotifyLogger, runId?: string): Promise<void> {
  if (!notify || !NOTIFIED_COMMANDS.has(name) || notify.mode === 'never' || !notify.healthcheckUrl) return;
  // the channels (HTTP, retries) are loaded only by a run that has one: `serve` idles without them
  const { notifyStart } = await import('./index.js');
  await notifyStart(label, notify, log, runId).catch(() => {});
}

/**
 * After a command: records it in status.json and sends the notifications. Never throws and never
 * changes the run's exit code: a status file or a channel that fails is only logged.
 */
export async function reportRun(run: FinishedRun, opts: { backupDir?: string; notify?: NotifyConfig; log: NotifyLogger }): Promise<void> {
  // a run refused because another held the lock changed nothing: the holder's outcome is the one that
  // counts; a mistyped argument did nothing either. A configuration error is recorded: a nightly run that cannot start is a failed run.
  const happened = run.exitCode !== EXIT_CODES.LOCKED && !run.argumentError;
  if (opts.backupDir && happened && RECORDED_COMMANDS.has(run.name)) {
    try {
      await recordRun(opts.backupDir, {
        command: run.name,
        type: run.type,
        ok: run.ok,
        exit_code: run.exitCode,
        duration_ms: run.durationMs,
        summary: run.summary,
        error: run.ok ? undefined : run.error,
        backup_id: run.backupId,
        size_bytes: run.sizeBytes,
      });
    } catch (err) {
      opts.log('warn', `cannot record the run in status.json: ${(err as Error).message}`);
    }
  }
  if (opts.notify && NOTIFIED_COMMANDS.has(run.name) && opts.notify.mode !== 'never' && hasChannels(opts.notify)) {
    const { notifyResult } = await import('./index.js');
    await notifyResult(
      {
        command: run.label,
        ok: run.ok,
        summary: run.summary ?? '',
        sizeBytes: run.sizeBytes,
        durationMs: run.durationMs,
        error: run.ok ? undefined : run.error,
        exitCode: run.exitCode,
        log: run.log,
        runId: run.runId,
      },
      opts.notify,
      opts.log,
    ).catch(() => {});
  }
}

/**
 * The notification settings when the configuration itself could not be read (a broken config file
 * is exactly what the operator must hear about): from the process environment, or none.
 */
export function fallbackNotifyConfig(env: NodeJS.ProcessEnv, flag?: string | boolean): NotifyConfig | undefined {
  try {
    return resolveNotifyConfig(env, flag);
  } catch {
    return undefined;
  }
}
