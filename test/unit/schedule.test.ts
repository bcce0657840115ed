import { describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors.js';
import {
  DEFAULT_SCHEDULES,
  loadGraceMs,
  loadJobSpecs,
  memoryStateStore,
  nextRuns,
  parseDuration,
  previousRun,
  Scheduler,
  type JobRunner,
  type JobSpec,
  type SchedulerEvent,
} from '../../src/schedule/index.js';

function usage(fn: () => unknown): BackupError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).exitCode).toBe(2);
    return err as BackupError;
  }
  throw new Error('expected a usage error');
}

describe('job configuration', () => {
  it('has the defaults of the one schedule table (the crontab and the systemd timer agree)', () => {
    const jobs = loadJobSpecs({});
    expect(jobs.map((j) => [j.name, j.schedule, j.enabled, j.args.join(' ')])).toEqual([
      ['database', '0 */6 * * *', true, 'create --type database'],
      ['storage', '0 3 * * 0', true, 'create --type storage'],
      ['full', '0 2 * * *', true, 'create --type full'],
      ['rotation', '0 4 * * *', true, 'rotate'],
      // not in the seed: off unless BACKUP_DRILL_ENABLED=true
      ['drill', '30 5 * * 0', false, 'drill'],
      // continuous replication: off unless BACKUP_SYNC_ENABLED=true (it needs remotes)
      ['sync', '*/15 * * * *', false, 'sync'],
      // page deltas every 30 s (issue 28): off unless BACKUP_PIT_ENABLED=true
      ['pit', '*/30 * * * * *', false, 'create --type database --incremental'],
    ]);
    expect(loadJobSpecs({ BACKUP_DRILL_ENABLED: 'true' }).find((j) => j.name === 'drill')!.enabled).toBe(true);
    expect(loadJobSpecs({ BACKUP_SYNC_ENABLED: 'true' }).find((j) => j.name === 'sync')!.enabled).toBe(true);
    expect(loadJobSpecs({ BACKUP_PIT_ENABLED: 'true' }).find((j) => j.name === 'pit')!.enabled).toBe(true);
    expect(DEFAULT_SCHEDULES.full).toBe('0 2 * * *');
  });

  it('reads BACKUP_*_SCHEDULE and BACKUP_*_ENABLED', () => {
    const jobs = loadJobSpecs({
      BACKUP_DATABASE_SCHEDULE: '0 */6 * * *',
      BACKUP_STORAGE_ENABLED: 'false',
      BACKUP_FULL_ENABLED: '0',
      BACKUP_ROTATION_ENABLED: 'yes',
    });
    expect(jobs.find((j) => j.name === 'database')!.schedule).toBe('0 */6 * * *');
    expect(jobs.filter((j) => j.enabled).map((j) => j.name)).toEqual(['database', 'rotation']);
  });

  it('names the variable of an invalid cron expression', () => {
    for (const bad of ['every night', '0 2 * *', '61 2 * * *', '0 0 2 * * * 2030']) {
      const err = usage(() => loadJobSpecs({ BACKUP_STORAGE_SCHEDULE: bad }));
      expect(err.message).toContain('BACKUP_STORAGE_SCHEDULE');
      expect(err.message).toContain(bad);
    }
    // a disabled job's typo is reported too, the day it is written
    expect(usage(() => loadJobSpecs({ BACKUP_FULL_SCHEDULE: 'x', BACKUP_FULL_ENABLED: 'false' })).message).toContain('BACKUP_FULL_SCHEDULE');
    expect(usage(() => loadJobSpecs({ BACKUP_ROTATION_ENABLED: 'maybe' })).message).toContain('BACKUP_ROTATION_ENABLED');
  });

  it('reads the misfire grace time in seconds or as a duration', () => {
    expect(loadGraceMs({})).toBe(300_000);
    expect(loadGraceMs({ BACKUP_MISFIRE_GRACE: '60' })).toBe(60_000);
    expect(loadGraceMs({ BACKUP_MISFIRE_GRACE: '2m' })).toBe(120_000);
    expect(usage(() => loadGraceMs({ BACKUP_MISFIRE_GRACE: 'soon' })).message).toContain('BACKUP_MISFIRE_GRACE');
  });

  it('parses durations', () => {
    expect(parseDuration('26h', 'x')).toBe(26 * 3_600_000);
    expect(parseDuration('1d12h', 'x')).toBe(36 * 3_600_000);
    expect(parseDuration('90m', 'x')).toBe(5_400_000);
    expect(parseDuration('1.5h', 'x')).toBe(5_400_000);
    for (const bad of ['26', 'h', '26 hours', '-1h', '']) usage(() => parseDuration(bad, '--max-age'));
  });

  it('computes next and previous run times', () => {
    const from = new Date(2024, 0, 6, 12, 0, 0); // Saturday noon, local time
    expect(nextRuns('0 3 * * 0', 2, from).map((d) => [d.getDay(), d.getHours(), d.getDate()])).toEqual([
      [0, 3, 7],
      [0, 3, 14],
    ]);
    expect(previousRun('0 2 * * *', from)!.getTime()).toBe(new Date(2024, 0, 6, 2, 0, 0).getTime());
    // a run due this very second counts as the previous one
    expect(previousRun('0 2 * * *', new Date(2024, 0, 6, 2, 0, 0))!.getTime()).toBe(new Date(2024, 0, 6, 2, 0, 0).getTime());
  });
});

// ---- the scheduler with an in-process stand-in for the child processes --------------------------

interface FakeRun {
  job: string;
  start: number;
  end?: number;
  killedWith?: NodeJS.Signals;
}

function fakeRunner(durationMs: number, exitCode = 0) {
  const runs: FakeRun[] = [];
  let active = 0;
  let maxActive = 0;
  const runner: JobRunner = (job) => {
    const run: FakeRun = { job: job.name, start: Date.now() };
    runs.push(run);
    active++;
    maxActive = Math.max(maxActive, active);
    let finish!: (code: number | null, signal: NodeJS.Signals | null) => void;
    const done = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; durationMs: number }>((resolve) => {
      let finished = false;
      finish = (code, signal) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        active--;
        run.end = Date.now();
        resolve({ exitCode: code, signal, durationMs: run.end - run.start });
      };
    });
    const timer = setTimeout(() => finish(exitCode, null), durationMs);
    return {
      pid: 4242,
      done,
      kill(signal) {
        run.killedWith = signal;
        // a real child needs a moment to clean up before it exits
        setTimeout(() => finish(143, null), 100);
      },
    };
  };
  return { runner, runs, maxActive: () => maxActive };
}

const spec = (name: JobSpec['name'], schedule: string): JobSpec => ({ name, scheduleVar: 'X', schedule, enabled: true, args: [] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** A six-field expression that fires once a minute, `offset` seconds from now (negative: in the past). */
function secondFromNow(offset: number): { expr: string; at: Date } {
  const at = new Date(Math.floor(Date.now() / 1000) * 1000 + offset * 1000);
  return { expr: `${at.getSeconds()} * * * * *`, at };
}

describe('Scheduler', () => {
  it('runs jobs from second-level cron expressions', async () => {
    const f = fakeRunner(30);
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({ jobs: [spec('database', '* * * * * *')], runner: f.runner, graceMs: 0, state: memoryStateStore(), onEvent: (e) => events.push(e) });
    await s.start();
    await until(() => f.runs.filter((r) => r.end).length >= 2);
    await s.stop();
    expect(events[0].type).toBe('started');
    expect(events.filter((e) => e.type === 'job-end' && e.result === 'ok').length).toBeGreaterThanOrEqual(2);
  });

  it('never runs two jobs at once, and queues a job at most once', async () => {
    const f = fakeRunner(1500);
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({
      jobs: [spec('database', '* * * * * *'), spec('storage', '* * * * * *')],
      runner: f.runner,
      graceMs: 0,
      state: memoryStateStore(),
      onEvent: (e) => events.push(e),
    });
    await s.start();
    await until(() => f.runs.filter((r) => r.end).length >= 3);
    await s.stop();
    expect(f.maxActive()).toBe(1);
    const done = f.runs.filter((r) => r.end);
    for (let i = 1; i < done.length; i++) expect(done[i].start).toBeGreaterThanOrEqual(done[i - 1].end!);
    // both jobs got their turn although each takes longer than the interval
    expect(new Set(done.map((r) => r.job))).toEqual(new Set(['database', 'storage']));
    expect(events.some((e) => e.type === 'job-skip')).toBe(true);
  });

  it('catches up a run missed within the grace time, once', async () => {
    const { expr, at } = secondFromNow(-3);
    // the scheduler ran before (it handled the previous run): this one it really missed
    const state = memoryStateStore({ full: { last_scheduled: new Date(at.getTime() - 60_000).toISOString(), last_exit_code: 0, last_finished: new Date(at.getTime() - 50_000).toISOString() } });
    const f = fakeRunner(20);
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({ jobs: [spec('full', expr)], runner: f.runner, graceMs: 60_000, state, onEvent: (e) => events.push(e) });
    await s.start();
    await until(() => f.runs.some((r) => r.end));
    await s.idle();
    await s.stop();
    const catchUp = events.find((e) => e.type === 'catch-up');
    expect(catchUp).toMatchObject({ job: 'full', scheduledAt: at });
    expect(state.state.full.last_scheduled).toBe(at.toISOString());

    // a restart right after: that run was handled, nothing runs again
    const f2 = fakeRunner(20);
    const s2 = new Scheduler({ jobs: [spec('full', expr)], runner: f2.runner, graceMs: 60_000, state });
    await s2.start();
    await sleep(300);
    await s2.stop();
    expect(f2.runs).toHaveLength(0);
  });

  it('the first start (no state) runs nothing "missed" and records the baseline', async () => {
    const { expr, at } = secondFromNow(-3);
    const state = memoryStateStore();
    const f = fakeRunner(20);
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({ jobs: [spec('full', expr)], runner: f.runner, graceMs: 60_000, state, onEvent: (e) => events.push(e) });
    await s.start();
    await sleep(300);
    await s.stop();
    expect(f.runs).toHaveLength(0);
    expect(events.filter((e) => e.type === 'catch-up')).toEqual([]);
    expect(state.state.full).toMatchObject({ last_scheduled: at.toISOString(), last_exit_code: null });
    expect(state.state.full.first_start).toBeTruthy();
  });

  it('does not catch up a run missed by more than the grace time', async () => {
    const { expr } = secondFromNow(-3);
    const f = fakeRunner(20);
    const s = new Scheduler({ jobs: [spec('full', expr)], runner: f.runner, graceMs: 1000, state: memoryStateStore() });
    await s.start();
    await sleep(300);
    await s.stop();
    expect(f.runs).toHaveLength(0);
  });

  it('stop() signals the running job, waits for it, drops the queue and leaves the run unrecorded', async () => {
    const f = fakeRunner(60_000);
    const state = memoryStateStore();
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({
      jobs: [spec('storage', '* * * * * *'), spec('database', '* * * * * *')],
      runner: f.runner,
      graceMs: 0,
      state,
      onEvent: (e) => events.push(e),
    });
    await s.start();
    await until(() => f.runs.length === 1 && events.some((e) => e.type === 'job-skip' || e.type === 'job-start'));
    await sleep(1200); // the other job is queued behind it by now
    const t0 = Date.now();
    await s.stop('SIGTERM');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90); // waited for the job's cleanup
    expect(f.runs).toHaveLength(1);
    expect(f.runs[0].killedWith).toBe('SIGTERM');
    expect(f.runs[0].end).toBeDefined();
    const end = events.find((e) => e.type === 'job-end');
    expect(end).toMatchObject({ result: 'aborted' });
    const stopping = events.find((e) => e.type === 'stopping') as Extract<SchedulerEvent, { type: 'stopping' }>;
    expect(stopping.running).toBe(f.runs[0].job);
    expect(stopping.dropped.length).toBe(1);
    // nothing but the first-start baselines: the aborted run is not recorded
    expect(Object.values(state.state).every((j) => j.first_start && j.last_exit_code === null)).toBe(true);
  });

  it('reports a job that found the lock held (exit 4) as skipped, not failed', async () => {
    const f = fakeRunner(10, 4);
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({ jobs: [spec('rotation', '* * * * * *')], runner: f.runner, graceMs: 0, state: memoryStateStore(), onEvent: (e) => events.push(e) });
    await s.start();
    await until(() => events.some((e) => e.type === 'job-end'));
    await s.stop();
    expect(events.find((e) => e.type === 'job-end')).toMatchObject({ result: 'locked' });
  });
});
