import type { Command } from 'commander';
import type { Config, ConfigFlags } from '../config.js';
import { BackupError, EXIT_CODES, EXIT_SKIPPED } from '../errors.js';
import { redact } from '../secrets.js';
import { errorDocument } from '../results/json.js';
import type { Ui } from './ui.js';

export interface GlobalOptions extends ConfigFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  color?: boolean;
  notify?: boolean;
  progressInterval?: string;
  metricsFile?: string;
}

export interface Context {
  cfg: Config;
  ui: Ui;
  signal: AbortSignal;
  global: GlobalOptions;
  /** renders the core's progress callbacks (spinner on a terminal, a plain line every N s elsewhere) */
  progress: import('./progress.js').ProgressView;
}

/** What a command hands back: the JSON document, the human rendering, the exit code, the log line. */
export interface Outcome {
  json: unknown;
  human?: (ui: Ui) => void;
  exitCode?: number;
  /** fields for backup.log; a command without it writes no log line (list, stats) */
  log?: Record<string, unknown>;
  /** for notifications: a one-line summary and the size involved */
  summary?: string;
  sizeBytes?: number;
}

/** Commands that do not use the backup directory (init makes it): they run when its disk is away. */
const OUTSIDE_BACKUP_DIR: ReadonlySet<string> = new Set(['init', 'keygen', 'completion', 'remote list', 'remote test', 'remote info', 'token']);

export type Action = (ctx: Context, command: Command) => Promise<Outcome>;

/**
 * The one place commands meet the process: configuration, signals, output, logging, exit codes.
 * Everything below this returns values or throws BackupError.
 */
export function action(name: string, fn: Action) {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const global = command.optsWithGlobals() as GlobalOptions;
    const { Ui } = await import('./ui.js');
    const ui = new Ui({ json: !!global.json, quiet: !!global.quiet, verbose: !!global.verbose, color: global.color !== false });
    const controller = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
      ui.info(`${sig}: stopping, removing partial files…`);
      controller.abort(new BackupError('FAILED', `interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const started = Date.now();
    const { randomUUID } = await import('node:crypto');
    const runId = randomUUID();
    let notifyCfg: import('../notify/types.js').NotifyConfig | undefined;
    const notifyLog = (level: 'info' | 'warn', msg: string) => (level === 'warn' ? ui.warn(msg) : ui.debug(msg));
    const cmdType = (command.opts() as { type?: string }).type;
    const label = name === 'create' && cmdType ? `create --type ${cmdType}` : name;
    let cfg: Config | undefined;
    let exitCode = 0;
    let outcome: Outcome | undefined;
    let error: BackupError | undefined;
    let progress: import('./progress.js').ProgressView | undefined;
    let dirRefused = false;
    try {
      const { resolveConfig } = await import('../config.js');
      cfg = resolveConfig(global);
      for (const w of cfg.warnings) ui.warn(w);
      const { resolveNotifyConfig } = await import('../notify/config.js');
      notifyCfg = resolveNotifyConfig(cfg.env, global.notify, cfg.file);
      const { reportStart } = await import('../notify/report.js');
      await reportStart(name, label, notifyCfg, notifyLog, runId);
      if (!OUTSIDE_BACKUP_DIR.has(name)) {
        // before anything below creates the directory: an unmounted disk must not become a new one
        const { checkBackupDir } = await import('../catalog/marker.js');
        const { warning } = await checkBackupDir(cfg.backupDir, cfg.backupDirId).catch((err) => {
          // nothing of this run may land there either: no log line, no status.json
          dirRefused = true;
          throw err;
        });
        // once a night in the cron mail, where the directory is written, not on every list
        if (warning && name === 'create') ui.warn(warning);
      }
      // every command first completes or rolls back a restore that was killed, and says so
      const { healIfInterrupted } = await import('../ops/restore-journal.js');
      // a journal is trusted only when it names this run's live paths (or those under restore --target)
      const target = name === 'restore' ? (command.opts() as { target?: string }).target : undefined;
      const healed = await healIfInterrupted(cfg.backupDir, name, { dbPath: cfg.dbPath, storagePath: cfg.storagePath, target, config: cfg });
      if (healed) ui.warn(healed);
      const { RECORDED_COMMANDS } = await import('../notify/report.js');
      if (RECORDED_COMMANDS.has(name)) {
        const { recordStart } = await import('../catalog/status.js');
        await recordStart(cfg.backupDir, name, name === 'create' ? (cmdType as import('../catalog/sidecar.js').BackupType | undefined) : undefined).catch(
          (err) => ui.warn(`cannot record the start of the run in status.json: ${(err as Error).message}`),
        );
      }
      const { ProgressView, DEFAULT_PROGRESS_INTERVAL_S } = await import('./progress.js');
      const intervalS = global.progressInterval === undefined ? DEFAULT_PROGRESS_INTERVAL_S : Number(global.progressInterval);
      if (!Number.isFinite(intervalS) || intervalS < 0) {
        throw new BackupError('USAGE', `--progress-interval must be a number of seconds, got '${global.progressInterval}'`, { argument: true });
      }
      progress = new ProgressView(ui, intervalS * 1000);
      outcome = await fn({ cfg, ui, signal: controller.signal, global, progress }, command);
      progress.stop();
      exitCode = outcome.exitCode ?? 0;
      // a command that stops cleanly on a signal (the scheduler) still ends the way a signal ends a run
      if (controller.signal.aborted) exitCode = 128 + (String(controller.signal.reason?.message).includes('SIGINT') ? 2 : 15);
      await ui.settle();
      if (ui.opts.json) ui.json(outcome.json);
      else outcome.human?.(ui);
    } catch (err) {
      await ui.settle();
      error = err instanceof BackupError ? err : new BackupError('FAILED', (err as Error)?.message ?? String(err), { cause: err });
      // "The operation was aborted" from deep in a pipeline says less than what happened
      if (controller.signal.aborted && controller.signal.reason instanceof BackupError) error = controller.signal.reason;
      exitCode = error.exitCode;
      if (controller.signal.aborted) exitCode = 128 + (String(controller.signal.reason?.message).includes('SIGINT') ? 2 : 15);
      const { cliHint } = await import('./remedies.js');
      const hint = cliHint(error);
      if (ui.opts.json) ui.json(errorDocument({ code: error.code, message: error.message, hint }, exitCode));
      ui.error(error.message, hint);
      const cause = (error.cause as Error | undefined) ?? error;
      if (global.verbose && cause.stack) process.stderr.write(`${redact(cause.stack)}\n`);
    } finally {
      progress?.stop();
    }
    // usage errors change nothing, so they leave no log line
    if (cfg && !dirRefused && (outcome?.log || (error && error.code !== 'USAGE'))) {
      const { appendLog } = await import('../catalog/log.js');
      await appendLog(cfg.backupDir, {
        time: new Date(started).toISOString(),
        command: name,
        result: error ? 'error' : exitCode === 0 ? 'ok' : 'warning',
        duration_ms: Date.now() - started,
        exit_code: exitCode,
        ...(outcome?.log ?? {}),
        ...(error ? { error: error.message } : {}),
      });
    }
    const { reportRun, fallbackNotifyConfig } = await import('../notify/report.js');
    await reportRun(
      {
        name,
        label,
        type: name === 'create' ? (cmdType as import('../catalog/sidecar.js').BackupType | undefined) : undefined,
        ok: !error && exitCode === 0,
        exitCode,
        durationMs: Date.now() - started,
        summary: outcome?.summary,
        sizeBytes: outcome?.sizeBytes,
        error: error ? redact(error.message) : exitCode !== 0 ? outcome?.summary : undefined,
        backupId: typeof outcome?.log?.id === 'string' ? outcome.log.id : undefined,
        argumentError: error?.argument,
        log: ui.transcript(),
        runId,
      },
      { backupDir: dirRefused ? undefined : cfg?.backupDir, notify: notifyCfg ?? fallbackNotifyConfig(process.env, global.notify), log: notifyLog },
    );
    // a run that recorded no outcome (argument error, lock refused) leaves no "started" marker behind
    if (cfg && !dirRefused) {
      const { clearStart } = await import('../catalog/status.js');
      await clearStart(cfg.backupDir, name, name === 'create' ? (cmdType as import('../catalog/sidecar.js').BackupType | undefined) : undefined).catch(
        () => {},
      );
    }
    // the scheduler's jobs are runs of their own and write the file themselves
    const metricsFile = global.metricsFile ?? cfg?.env.METRICS_FILE ?? (typeof cfg?.file.metricsFile === 'string' ? cfg.file.metricsFile : undefined);
    if (cfg && !dirRefused && metricsFile && name !== 'schedule') {
      const { writeMetricsFile } = await import('../notify/metrics.js');
      await writeMetricsFile(metricsFile, cfg.backupDir).catch((err) => ui.warn(`cannot write the metrics file ${metricsFile}: ${(err as Error).message}`));
    }
    // the handlers stay until here: a signal during the log or the notification used to kill the process
    // by the signal's default action, so cron saw a signal death for a backup that had been made
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.exitCode = exitCode;
  };
}

export const EXIT_CODE_HELP = `
Exit codes:
  0  success
  ${EXIT_CODES.FAILED}  the operation failed
  ${EXIT_CODES.USAGE}  bad usage or configuration
  ${EXIT_CODES.DAMAGED}  verification found a damaged or incomplete backup
  ${EXIT_CODES.LOCKED}  another run holds the lock on the backup directory
  ${EXIT_CODES.NO_SPACE}  not enough disk space
  ${EXIT_SKIPPED}  backup made, but some paths could not be read and are not in it`;
