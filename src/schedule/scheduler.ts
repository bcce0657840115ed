import { Cron } from 'croner';
import { CRON_OPTIONS, type JobName, type JobSpec, previousRun } from './config.js';
import type { JobOutcome, JobRunner, RunningJob } from './runner.js';
import type { ScheduleState, StateStore } from './state.js';

export type JobResult = 'ok' | 'failed' | 'locked' | 'aborted';

export type SchedulerEvent =
  | { type: 'started'; jobs: { name: JobName; schedule: string; next: Date | null }[] }
  | { type: 'catch-up'; job: JobName; scheduledAt: Date; lateMs: number }
  | { type: 'job-start'; job: JobName; scheduledAt: Date; pid?: number }
  | { type: 'job-end'; job: JobName; scheduledAt: Date; result: JobResult; outcome: JobOutcome }
  | { type: 'job-skip'; job: JobName; scheduledAt: Date; reason: string }
  | { type: 'stopping'; running?: JobName; dropped: JobName[] }
  | { type: 'warning'; message: string };

export interface SchedulerOptions {
  jobs: JobSpec[];
  runner: JobRunner;
  /** A run missed by at most this much (the scheduler was down) is run right after start. */
  graceMs: number;
  state: StateStore;
  onEvent?: (event: SchedulerEvent) => void;
}

interface Item {
  job: JobSpec;
  scheduledAt: Date;
}

/** CLI exit code 4: another run holds the backup-directory lock. */
const EXIT_LOCKED = 4;

/**
 * Runs the enabled jobs on their cron schedules, one at a time. A job that comes due while another
 * runs waits in a queue (at most once per job), so the seed's default of storage and full both at
 * Sunday 03:00 runs both instead of one losing the lock race. Overlap with runs started outside the
 * scheduler is prevented by the lock the child takes; such a job ends with exit 4 and is reported as
 * skipped.
 */
export class Scheduler {
  private readonly opts: SchedulerOptions;
  private crons: Cron[] = [];
  private queue: Item[] = [];
  private running?: Item & { handle: RunningJob; signalled?: boolean };
  private draining?: Promise<void>;
  private state: ScheduleState = {};
  private stopping = false;

  constructor(opts: SchedulerOptions) {
    this.opts = opts;
  }

  get enabledJobs(): JobSpec[] {
    return this.opts.jobs.filter((j) => j.enabled);
  }

  async start(): Promise<void> {
    this.state = await this.opts.state.load();
    const now = new Date();
    for (const job of this.enabledJobs) {
      const cron = new Cron(job.schedule, { ...CRON_OPTIONS, catch: true }, () => {
        // the scheduled time, even when the timer fires a little late or early
        const at = previousRun(job.schedule, new Date(Date.now() + 500)) ?? new Date();
        this.enqueue(job, at);
      });
      this.crons.push(cron);
    }
    this.emit({
      type: 'started',
      jobs: this.enabledJobs.map((j, i) => ({ name: j.name, schedule: j.schedule, next: this.crons[i].nextRun() })),
    });
    // A job this scheduler has never handled has missed nothing: its first start (an empty backup
    // directory, a new job) sets the baseline instead of running a "missed" backup at once.
    let baseline = false;
    for (const job of this.enabledJobs) {
      if (this.state[job.name]) continue;
      const prev = previousRun(job.schedule, now);
      this.state[job.name] = { last_scheduled: (prev ?? now).toISOString(), last_exit_code: null, last_finished: null, first_start: now.toISOString() };
      baseline = true;
    }
    if (baseline) await this.saveState();
    for (const job of this.enabledJobs) {
      const prev = previousRun(job.schedule, now);
      if (!prev || now.getTime() - prev.getTime() > this.opts.graceMs || this.handled(job, prev)) continue;
      this.emit({ type: 'catch-up', job: job.name, scheduledAt: prev, lateMs: now.getTime() - prev.getTime() });
      this.enqueue(job, prev);
    }
  }

  /** Stops scheduling, drops queued jobs, sends `signal` to the running job and waits for it to end. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      for (const c of this.crons) c.stop();
      const dropped = this.queue.splice(0).map((i) => i.job.name);
      this.emit({ type: 'stopping', running: this.running?.job.name, dropped });
    }
    if (this.running) {
      this.running.signalled = true;
      this.running.handle.kill(signal);
    }
    await this.draining;
  }

  /** A second Ctrl-C: the running job is killed outright. */
  kill(): void {
    this.running?.handle.kill('SIGKILL');
  }

  /** Resolves when nothing runs and nothing waits (for tests and orderly shutdown). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  get busy(): JobName | undefined {
    return this.running?.job.name;
  }

  private handled(job: JobSpec, at: Date): boolean {
    const last = this.state[job.name]?.last_scheduled;
    return !!last && Date.parse(last) >= at.getTime();
  }

  private enqueue(job: JobSpec, scheduledAt: Date): void {
    if (this.stopping || this.handled(job, scheduledAt)) return;
    const same = (i?: Item) => i?.job.name === job.name;
    const waiting = this.queue.find(same);
    if (same(this.running) || waiting) {
      const other = waiting ?? this.running!;
      // the same scheduled time seen twice (catch-up and timer in the same second) is not news
      if (other.scheduledAt.getTime() !== scheduledAt.getTime()) {
        this.emit({
          type: 'job-skip',
          job: job.name,
          scheduledAt,
          reason: waiting ? 'the previous run of this job is still waiting' : 'the previous run of this job is still running',
        });
      }
      return;
    }
    this.queue.push({ job, scheduledAt });
    if (!this.draining) {
      this.draining = this.drain().finally(() => {
        this.draining = undefined;
      });
    }
  }

  private async drain(): Promise<void> {
    for (let item = this.queue.shift(); item && !this.stopping; item = this.queue.shift()) {
      await this.run(item);
    }
  }

  private async run(item: Item): Promise<void> {
    let handle: RunningJob;
    try {
      handle = this.opts.runner(item.job);
    } catch (err) {
      handle = { done: Promise.resolve({ exitCode: null, signal: null, durationMs: 0, error: (err as Error).message }), kill() {} };
    }
    this.running = { ...item, handle };
    this.emit({ type: 'job-start', job: item.job.name, scheduledAt: item.scheduledAt, pid: handle.pid });
    const outcome = await handle.done;
    const signalled = this.running.signalled === true;
    this.running = undefined;
    const result = classify(outcome, signalled);
    this.emit({ type: 'job-end', job: item.job.name, scheduledAt: item.scheduledAt, result, outcome });
    // an aborted run is left unrecorded, so a restart within the grace time runs it again
    if (result === 'aborted') return;
    this.state[item.job.name] = {
      last_scheduled: item.scheduledAt.toISOString(),
      last_exit_code: outcome.exitCode,
      last_finished: new Date().toISOString(),
    };
    await this.saveState();
  }

  private async saveState(): Promise<void> {
    try {
      await this.opts.state.save(this.state);
    } catch (err) {
      this.emit({ type: 'warning', message: `cannot save the scheduler state: ${(err as Error).message}` });
    }
  }

  private emit(event: SchedulerEvent): void {
    try {
      this.opts.onEvent?.(event);
    } catch {
      // a broken listener must not stop the scheduler
    }
  }
}

/** A job we signalled that did not finish cleanly was aborted, whatever exit code it chose for that. */
function classify(outcome: JobOutcome, signalled: boolean): JobResult {
  if (outcome.exitCode === 0) return 'ok';
  if (signalled) return 'aborted';
  if (outcome.exitCode === EXIT_LOCKED) return 'locked';
  return 'failed';
}
