import { snakeKeys } from '../../results/json.js';
import type { Command } from 'commander';
import type { JobSpec, SchedulerEvent } from '../../schedule/index.js';
import { action, type Context } from '../run.js';
import type { Ui } from '../ui.js';
import { PIT_JOB, SCHEDULE_TABLE } from '../../schedule/table.js';
import { formatAge, formatDuration } from '../../human.js';

/** The defaults as the one schedule table has them (the crontab and the systemd timer agree). */
function jobHelp(): string {
  return Object.entries({ ...SCHEDULE_TABLE, pit: PIT_JOB })
    .map(([name, j]) => {
      const prefix = `BACKUP_${name.toUpperCase()}`;
      const line = `  ${name.padEnd(9)} ${`${prefix}_SCHEDULE`.padEnd(25)} default ${`"${j.cron}"`.padEnd(14)} (${j.when})`;
      return `${line.padEnd(80)} ${prefix}_ENABLED`;
    })
    .join('\n');
}

export function register(program: Command): void {
  program
    .command('schedule')
    .description('run the backups on their schedules in this process (for hosts without systemd timers or cron)')
    .option('--list', 'print each job and its next run times, then exit')
    .option('--count <n>', 'with --list: how many next run times per job', '3')
    .addHelpText(
      'after',
      `
Jobs and their settings (five-field cron expressions, or six with seconds first):
${jobHelp()}
Each job runs "vertex-backup create --type T" (rotation: "vertex-backup rotate") as a child process,
one at a time. A run missed while the scheduler was down is run at start when it is less than
BACKUP_MISFIRE_GRACE old (seconds or a duration, default 5m); the very first start misses nothing.
SIGINT/SIGTERM stop the scheduler (exit 130/143): the running job gets SIGTERM and is waited for (a
second signal kills it). Times are local (TZ). The crontab and systemd timer shipped follow the same table.

Examples:
  vertex-backup schedule --list
  BACKUP_DATABASE_SCHEDULE="0 */6 * * *" vertex-backup schedule --backup-dir /var/backups/app`,
    )
    .action(
      action('schedule', async (ctx, cmd) => {
        const o = cmd.opts() as { list?: boolean; count: string };
        const sched = await import('../../schedule/index.js');
        const { usageError } = await import('../../errors.js');
        const jobs = sched.loadJobSpecs(ctx.cfg.env);
        const graceMs = sched.loadGraceMs(ctx.cfg.env);
        if (o.list) {
          const count = Number(o.count);
          if (!Number.isInteger(count) || count < 1 || count > 100) throw usageError(`--count must be a whole number from 1 to 100, got '${o.count}'`);
          return listOutcome(jobs, count, graceMs);
        }
        if (!jobs.some((j) => j.enabled)) throw usageError('every job is disabled (BACKUP_<TYPE>_ENABLED=false): nothing to schedule');
        return runScheduler(ctx, jobs, graceMs, sched);
      }),
    );
}

function timeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
}

/** "2026-03-01 02:00:00 (in 3h 12m)" in local time, which is what cron expressions are read in. */
function localTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

async function listOutcome(jobs: JobSpec[], count: number, graceMs: number) {
  const { nextRuns } = await import('../../schedule/index.js');
  const now = new Date();
  const rows = jobs.map((j) => ({
    name: j.name,
    enabled: j.enabled,
    schedule: j.schedule,
    variable: j.scheduleVar,
    command: `vertex-backup ${j.args.join(' ')}`,
    next_runs: j.enabled ? nextRuns(j.schedule, count, now).map((d) => d.toISOString()) : [],
  }));
  return {
    json: { time_zone: timeZone(), misfire_grace_ms: graceMs, jobs: rows },
    human: (ui: Ui) => {
      ui.out(`Times in ${timeZone()}; missed runs are caught up within ${formatAge(graceMs)} of their time.`);
      ui.out(
        ui.table(
          ['job', 'schedule', 'command', 'next runs'],
          rows.map((r) => [
            r.name,
            r.enabled ? r.schedule : ui.c.dim(`${r.schedule} (disabled)`),
            r.command,
            r.enabled
              ? r.next_runs
                  .map((t, i) => (i === 0 ? `${localTime(new Date(t))} (in ${formatAge(Date.parse(t) - now.getTime())})` : localTime(new Date(t))))
                  .join('\n')
              : '-',
          ]),
          undefined,
          true,
        ),
      );
    },
  };
}

async function runScheduler(ctx: Context, jobs: JobSpec[], graceMs: number, sched: typeof import('../../schedule/index.js')) {
  const { cfg, ui, global } = ctx;
  // children get the resolved paths, so a relative --backup-dir or .env read here means the same there
  const globalArgs = ['--backup-dir', cfg.backupDir, '--db-path', cfg.dbPath, '--storage-path', cfg.storagePath];
  if (global.config) globalArgs.push('--config', global.config);
  if (global.envFile) globalArgs.push('--env-file', global.envFile);
  if (global.notify) globalArgs.push('--notify');
  if (global.quiet) globalArgs.push('--quiet');
  if (global.verbose) globalArgs.push('--verbose');

  const log = eventLogger(ui, !!global.json);
  const scheduler = new sched.Scheduler({
    jobs,
    graceMs,
    runner: sched.cliRunner({ command: sched.defaultCliCommand(cfg.env), globalArgs }),
    state: sched.fileStateStore(cfg.backupDir),
    onEvent: log,
  });

  const stopped = new Promise<void>((resolve) => {
    const stop = () => void scheduler.stop('SIGTERM').then(resolve, resolve);
    if (ctx.signal.aborted) stop();
    else ctx.signal.addEventListener('abort', stop, { once: true });
  });
  // the run plumbing exits on a second signal: take the running job down with us, never orphan it
  const killChild = () => scheduler.kill();
  process.on('exit', killChild);
  try {
    await scheduler.start();
    await stopped;
  } finally {
    process.removeListener('exit', killChild);
  }
  return { json: { stopped: true }, exitCode: 0, summary: 'scheduler stopped' };
}

function eventLogger(ui: Ui, json: boolean): (e: SchedulerEvent) => void {
  return (e) => {
    if (json) {
      // a long-running process: one JSON object per event, a line each
      process.stdout.write(`${JSON.stringify(snakeKeys({ time: new Date().toISOString(), ...e }))}\n`);
      return;
    }
    const at = (d: Date) => localTime(d);
    switch (e.type) {
      case 'started':
        ui.out(`scheduler started (${timeZone()}), pid ${process.pid}`);
        for (const j of e.jobs) ui.out(`  ${j.name.padEnd(8)} ${j.schedule.padEnd(16)} next ${j.next ? at(j.next) : 'never'}`);
        break;
      case 'catch-up':
        ui.out(`${e.job}: running the ${at(e.scheduledAt)} run missed while stopped (${formatAge(e.lateMs)} late)`);
        break;
      case 'job-start':
        ui.out(`${e.job}: started (scheduled ${at(e.scheduledAt)}, pid ${e.pid ?? '?'})`);
        break;
      case 'job-end': {
        const o = e.outcome;
        const how = o.error ?? (o.signal ? `killed by ${o.signal}` : `exit ${o.exitCode}`);
        const took = formatDuration(o.durationMs);
        if (e.result === 'ok') ui.out(`${e.job}: finished ok in ${took}`);
        else if (e.result === 'locked') ui.warn(`${e.job}: skipped, another run holds the backup-directory lock (${how})`);
        else if (e.result === 'aborted') ui.warn(`${e.job}: aborted by the scheduler stopping (${how}); it runs again if restarted within the grace time`);
        else ui.warn(`${e.job}: FAILED after ${took} (${how})`);
        break;
      }
      case 'job-skip':
        ui.warn(`${e.job}: the ${at(e.scheduledAt)} run is skipped: ${e.reason}`);
        break;
      case 'stopping':
        ui.out(
          `scheduler stopping${e.running ? `: waiting for ${e.running} to end` : ''}${e.dropped.length ? `; dropped queued ${e.dropped.join(', ')}` : ''}`,
        );
        break;
      case 'warning':
        ui.warn(e.message);
        break;
    }
  };
}
