/**
 * The one schedule: the `schedule` command's defaults, the shipped crontab (cron/vertex-backup.cron)
 * and the systemd timer (systemd/vertex-backup.timer) all say what this table says, and a test holds
 * the two files to it. Change a time here, then in those files.
 */
export interface ScheduledJob {
  /** five-field cron expression, local time */
  cron: string;
  /** the same in words, for --help */
  when: string;
  /** the vertex-backup arguments the job runs */
  args: string[];
}

export const SCHEDULE_TABLE = {
  full: { cron: '0 2 * * *', when: 'daily 02:00', args: ['create', '--type', 'full'] },
  database: { cron: '0 */6 * * *', when: 'every 6 hours', args: ['create', '--type', 'database'] },
  storage: { cron: '0 3 * * 0', when: 'Sunday 03:00', args: ['create', '--type', 'storage'] },
  rotation: { cron: '0 4 * * *', when: 'daily 04:00', args: ['rotate'] },
  drill: { cron: '30 5 * * 0', when: 'Sunday 05:30', args: ['drill'] },
  // continuous replication: cheap when nothing is new (status.json says what each remote holds)
  sync: { cron: '*/15 * * * *', when: 'every 15 minutes', args: ['sync'] },
} as const satisfies Record<string, ScheduledJob>;

/** Jobs only the crontab carries (the scheduler and the timer leave monitoring to the operator). */
export const CRON_ONLY_JOBS = {
  check: { cron: '0 5 * * *', when: 'daily 05:00', args: ['check', '--max-age', '26h', '--notify'] },
} as const satisfies Record<string, ScheduledJob>;

/**
 * The systemd timer runs the full backup with rotation in one unit: its OnCalendar is the full job's
 * time. (systemd's calendar syntax differs from cron's; the test compares the next run times.)
 */
/** The weekly restore drill: systemd/vertex-backup-drill.timer and .service. */
export const SYSTEMD_DRILL_TIMER = { onCalendar: 'Sun *-*-* 05:30:00', job: 'drill' as const, args: ['drill'] };

/** Continuous replication: systemd/vertex-backup-sync.timer and .service. */
export const SYSTEMD_SYNC_TIMER = { onCalendar: '*:0/15', job: 'sync' as const, args: ['sync', '--quiet'] };

export const SYSTEMD_TIMER = { onCalendar: '*-*-* 02:00:00', job: 'full' as const, args: ['create', '--type', 'full', '--rotate'] };

/**
 * Page deltas of the database (docs/point-in-time.md): every 30 seconds, off unless
 * BACKUP_PIT_ENABLED=true. Not in the crontab (cron cannot go below a minute): the systemd timer below
 * or the scheduler run it.
 */
export const PIT_JOB = {
  cron: '*/30 * * * * *',
  when: 'every 30 s; off unless enabled',
  args: ['create', '--type', 'database', '--incremental'],
} as const satisfies ScheduledJob;

/**
 * systemd/vertex-backup-db.timer: 30 s after the last run started, to the second (the default
 * AccuracySec of one minute alone would break a 60 s RPO).
 */
export const SYSTEMD_DB_TIMER = { onUnitActiveSec: '30s', accuracySec: '1s', args: ['create', '--type', 'database', '--incremental', '--quiet'] };
