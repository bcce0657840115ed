/**
 * The scheduler running real child processes: a stand-in CLI (to observe signals and overlap
 * exactly) and the real `vertex-backup` binary (real backups, the real lock, SIGTERM mid-backup).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/catalog/lock.js';
import { cliRunner, defaultCliCommand, fileStateStore, loadJobSpecs, Scheduler, type SchedulerEvent } from '../../src/schedule/index.js';
import { BIN, run, start } from '../helpers/cli.js';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-sched-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await sleep(25);
  }
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/** A six-field expression that fires once a minute, `offset` seconds from now. */
function secondFromNow(offset: number): { expr: string; at: Date } {
  const at = new Date(Math.floor(Date.now() / 1000) * 1000 + offset * 1000);
  return { expr: `${at.getSeconds()} * * * * *`, at };
}

// ---- a stand-in CLI: records start/term/end with its pid -------------------------------------------

const FAKE = `
import fs from 'node:fs';
const w = (ev) => fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify({ pid: process.pid, ev, args: process.argv.slice(2).join(' '), t: Date.now() }) + '\\n');
w('start');
process.on('SIGTERM', () => { w('term'); setTimeout(() => { w('aborted'); process.exit(143); }, 300); });
setTimeout(() => { w('end'); process.exit(Number(process.env.FAKE_EXIT ?? 0)); }, Number(process.env.FAKE_SLEEP_MS ?? 100));
`;

interface FakeEvent {
  pid: number;
  ev: 'start' | 'term' | 'aborted' | 'end';
  args: string;
  t: number;
}

function fakeSetup(sleepMs: number) {
  const script = path.join(tmp, 'fake-cli.mjs');
  fs.writeFileSync(script, FAKE);
  const logFile = path.join(tmp, 'fake.log');
  const read = (): FakeEvent[] => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
  const runner = cliRunner({
    command: [process.execPath, script],
    globalArgs: ['--backup-dir', path.join(tmp, 'b')],
    env: { ...process.env, FAKE_LOG: logFile, FAKE_SLEEP_MS: String(sleepMs) },
    stdio: 'ignore',
  });
  return { runner, read };
}

describe('scheduler with child processes (stand-in CLI)', () => {
  it('forwards SIGTERM to the running job, waits for it, and a restart within the grace time runs it again', async () => {
    const { runner, read } = fakeSetup(60_000);
    const { expr } = secondFromNow(2);
    const jobs = loadJobSpecs({ BACKUP_FULL_SCHEDULE: expr, BACKUP_DATABASE_ENABLED: 'false', BACKUP_STORAGE_ENABLED: 'false', BACKUP_ROTATION_ENABLED: 'false' });
    const state = fileStateStore(path.join(tmp, 'b'));
    const events: SchedulerEvent[] = [];
    // the grace time must be shorter than a minute, or the previous minute's run is caught up too
    const s1 = new Scheduler({ jobs, runner, graceMs: 30_000, state, onEvent: (e) => events.push(e) });
    await s1.start();
    expect(events.filter((e) => e.type === 'catch-up')).toEqual([]);
    await until(() => read().some((e) => e.ev === 'start'), 10_000, 'the job starts');
    const child = read()[0];
    expect(child.args).toBe(`create --type full --backup-dir ${path.join(tmp, 'b')}`);
    await s1.stop('SIGTERM');
    // stop() returned only after the child had cleaned up and exited
    expect(read().map((e) => e.ev)).toEqual(['start', 'term', 'aborted']);
    expect(alive(child.pid)).toBe(false);
    expect(events.find((e) => e.type === 'job-end')).toMatchObject({ job: 'full', result: 'aborted' });

    // restart at once: the aborted run is within the grace time and was never completed
    const s2Events: SchedulerEvent[] = [];
    const quick = fakeSetup(50);
    const s2 = new Scheduler({ jobs, runner: quick.runner, graceMs: 30_000, state, onEvent: (e) => s2Events.push(e) });
    await s2.start();
    expect(s2Events.some((e) => e.type === 'catch-up' && e.job === 'full')).toBe(true);
    await until(() => read().filter((e) => e.ev === 'end').length === 1, 10_000, 'the caught-up run ends');
    await s2.idle();
    await s2.stop();
    expect(s2Events.find((e) => e.type === 'job-end')).toMatchObject({ result: 'ok' });

    // a third start: that run is done now, nothing is repeated
    const s3Events: SchedulerEvent[] = [];
    const s3 = new Scheduler({ jobs, runner: quick.runner, graceMs: 30_000, state, onEvent: (e) => s3Events.push(e) });
    await s3.start();
    await sleep(500);
    await s3.stop();
    expect(s3Events.filter((e) => e.type === 'catch-up' || e.type === 'job-start')).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(tmp, 'b', 'schedule-state.json'), 'utf8')).jobs.full.last_exit_code).toBe(0);
  });

  it('never overlaps two jobs', async () => {
    const { runner, read } = fakeSetup(1200);
    const jobs = loadJobSpecs({
      BACKUP_DATABASE_SCHEDULE: '* * * * * *',
      BACKUP_STORAGE_SCHEDULE: '*/2 * * * * *',
      BACKUP_FULL_ENABLED: 'false',
      BACKUP_ROTATION_ENABLED: 'false',
    });
    const s = new Scheduler({ jobs, runner, graceMs: 0, state: fileStateStore(path.join(tmp, 'b')) });
    await s.start();
    await until(() => read().filter((e) => e.ev === 'end').length >= 3, 20_000, 'three jobs end');
    await s.stop();
    const byPid = new Map<number, { start: number; end: number }>();
    for (const e of read()) {
      const r = byPid.get(e.pid) ?? { start: 0, end: Number.POSITIVE_INFINITY };
      if (e.ev === 'start') r.start = e.t;
      if (e.ev === 'end' || e.ev === 'aborted') r.end = e.t;
      byPid.set(e.pid, r);
    }
    const spans = [...byPid.values()].sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) expect(spans[i].start).toBeGreaterThanOrEqual(spans[i - 1].end);
    expect(new Set(read().map((e) => e.args.split(' ')[2]))).toEqual(new Set(['database', 'storage']));
  });
});

// ---- the real CLI --------------------------------------------------------------------------------

function makeApp(storageBytes = 0) {
  const app = path.join(tmp, 'app');
  fs.mkdirSync(path.join(app, 'storage', 'media'), { recursive: true });
  fs.writeFileSync(path.join(app, 'storage', 'note.txt'), 'hello');
  // incompressible data makes a storage backup take a while: time to send SIGTERM in the middle
  for (let i = 0, left = storageBytes; left > 0; i++, left -= 16 << 20) {
    fs.writeFileSync(path.join(app, 'storage', 'media', `video${i}.bin`), randomBytes(Math.min(left, 16 << 20)));
  }
  const db = new Database(path.join(app, 'app.db'));
  db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items (name) VALUES ('a'), ('b');");
  db.close();
  return { db: path.join(app, 'app.db'), storage: path.join(app, 'storage'), backups: path.join(tmp, 'backups') };
}

function sidecars(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^\w+_backup_.*\.json$/.test(f)) : [];
}

describe('scheduler running the real vertex-backup', () => {
  it('creates real backups from a seconds-level schedule', async () => {
    const app = makeApp();
    const jobs = loadJobSpecs({ BACKUP_DATABASE_SCHEDULE: '*/2 * * * * *', BACKUP_STORAGE_ENABLED: 'false', BACKUP_FULL_ENABLED: 'false', BACKUP_ROTATION_ENABLED: 'false' });
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({
      jobs,
      graceMs: 0,
      runner: cliRunner({
        command: defaultCliCommand({}),
        globalArgs: ['--backup-dir', app.backups, '--db-path', app.db, '--storage-path', app.storage, '--quiet'],
        env: { PATH: process.env.PATH, HOME: tmp, TZ: 'UTC' },
        stdio: 'ignore',
      }),
      state: fileStateStore(app.backups),
      onEvent: (e) => events.push(e),
    });
    expect(defaultCliCommand({})).toEqual([process.execPath, BIN]);
    await s.start();
    await until(() => sidecars(path.join(app.backups, 'database')).length >= 2, 30_000, 'two database backups');
    await s.stop();
    const ends = events.filter((e) => e.type === 'job-end') as Extract<SchedulerEvent, { type: 'job-end' }>[];
    expect(ends.length).toBeGreaterThanOrEqual(2);
    expect(ends.filter((e) => e.result !== 'aborted').every((e) => e.result === 'ok')).toBe(true);
    const list = await run(['--backup-dir', app.backups, 'list', '--json'], { cwd: tmp });
    const entries = JSON.parse(list.stdout) as { type: string; status: string }[];
    expect(entries.filter((e) => e.type === 'database' && e.status === 'ok').length).toBeGreaterThanOrEqual(2);
  });

  it('logs and skips a job that finds the backup-directory lock held (exit 4)', async () => {
    const app = makeApp();
    fs.mkdirSync(app.backups, { recursive: true });
    // a live holder: this test process takes the kernel lock
    const lock = await acquireLock(app.backups, 'test');
    const jobs = loadJobSpecs({ BACKUP_DATABASE_SCHEDULE: '* * * * * *', BACKUP_STORAGE_ENABLED: 'false', BACKUP_FULL_ENABLED: 'false', BACKUP_ROTATION_ENABLED: 'false' });
    const events: SchedulerEvent[] = [];
    const s = new Scheduler({
      jobs,
      graceMs: 0,
      runner: cliRunner({ command: defaultCliCommand({}), globalArgs: ['--backup-dir', app.backups, '--db-path', app.db, '--quiet'], env: { PATH: process.env.PATH, HOME: tmp }, stdio: 'ignore' }),
      state: fileStateStore(app.backups),
      onEvent: (e) => events.push(e),
    });
    try {
      await s.start();
      await until(() => events.some((e) => e.type === 'job-end'), 20_000, 'a job ends');
      await s.stop();
    } finally {
      lock.release();
    }
    const end = events.find((e) => e.type === 'job-end') as Extract<SchedulerEvent, { type: 'job-end' }>;
    expect(end.outcome.exitCode).toBe(4);
    expect(end.result).toBe('locked');
    expect(sidecars(path.join(app.backups, 'database'))).toEqual([]);
  });
});

describe('vertex-backup schedule (the command)', () => {
  it('--list prints the next run times, as JSON too', async () => {
    const env = { BACKUP_DATABASE_SCHEDULE: '0 */6 * * *', BACKUP_STORAGE_ENABLED: 'false' };
    const r = await run(['schedule', '--list', '--json', '--count', '2'], { cwd: tmp, env });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { jobs: { name: string; enabled: boolean; schedule: string; next_runs: string[] }[] };
    const db = doc.jobs.find((j) => j.name === 'database')!;
    expect(db.schedule).toBe('0 */6 * * *');
    expect(db.next_runs).toHaveLength(2);
    expect(Date.parse(db.next_runs[1]) - Date.parse(db.next_runs[0])).toBe(6 * 3_600_000);
    expect(doc.jobs.find((j) => j.name === 'storage')).toMatchObject({ enabled: false, next_runs: [] });

    const human = await run(['schedule', '--list'], { cwd: tmp, env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('database');
    expect(human.stdout).toContain('vertex-backup create --type full');
  });

  it('refuses an invalid cron expression with exit 2, naming the variable', async () => {
    const r = await run(['schedule'], { cwd: tmp, env: { BACKUP_ROTATION_SCHEDULE: '0 4 * *' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('BACKUP_ROTATION_SCHEDULE');
    expect(r.stderr).toContain('0 4 * *');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('stops on SIGTERM in the middle of a backup, then a restart within the grace time runs it', async () => {
    const app = makeApp(160 << 20);
    const { expr } = secondFromNow(4);
    const env = {
      BACKUP_STORAGE_SCHEDULE: expr,
      BACKUP_DATABASE_ENABLED: 'false',
      BACKUP_FULL_ENABLED: 'false',
      BACKUP_ROTATION_ENABLED: 'false',
      BACKUP_COMPRESSION: 'gzip',
      BACKUP_COMPRESSION_LEVEL: '9',
      // shorter than a minute: only the run we abort is caught up, not the previous minute's
      BACKUP_MISFIRE_GRACE: '30',
    };
    const args = ['--backup-dir', app.backups, '--db-path', app.db, '--storage-path', app.storage, 'schedule'];
    const first = start(args, { cwd: tmp, env, timeoutMs: 120_000 });
    let out = '';
    first.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => /storage: started \(.*pid (\d+)\)/.test(out), 30_000, 'the storage job starts');
    expect(out).not.toMatch(/missed while stopped/);
    const childPid = Number(/storage: started \(.*pid (\d+)\)/.exec(out)![1]);
    first.child.kill('SIGTERM');
    const r1 = await first.done;
    expect(r1.code, r1.stdout + r1.stderr).toBe(143);
    expect(r1.stderr).toMatch(/storage: aborted by the scheduler stopping/);
    expect(alive(childPid)).toBe(false);
    // nothing the aborted run left behind counts as a backup
    const list1 = JSON.parse((await run(['--backup-dir', app.backups, 'list', '--json'], { cwd: tmp })).stdout) as { status: string }[];
    expect(list1.filter((e) => e.status === 'ok')).toEqual([]);

    // restart: the run was missed seconds ago, within the default 5-minute grace time
    const second = start(args, { cwd: tmp, env, timeoutMs: 180_000 });
    let out2 = '';
    second.child.stdout!.on('data', (d: Buffer) => (out2 += d.toString()));
    await until(() => /storage: finished ok/.test(out2), 150_000, 'the caught-up storage job finishes');
    expect(out2).toMatch(/storage: running the .* run missed while stopped/);
    second.child.kill('SIGTERM');
    const r2 = await second.done;
    expect(r2.code, r2.stdout + r2.stderr).toBe(143);
    const list2 = JSON.parse((await run(['--backup-dir', app.backups, 'list', '--json'], { cwd: tmp })).stdout) as { type: string; status: string }[];
    expect(list2.filter((e) => e.type === 'storage' && e.status === 'ok')).toHaveLength(1);
  });
});
