/**
 * Issue 28, done when: page deltas taken every second or so while a real writer commits in a tight
 * loop (WAL, its own wal_checkpoint(TRUNCATE) every 500 transactions), then `restore --at` to three
 * moments: each restored database is exactly the state after the transactions the writer had committed
 * at that moment (by its log), passes sqlite3's integrity_check, and the live restore keeps the
 * previous database aside. SLOW tier (about a minute).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect } from 'vitest';
import { describeRun, parseJsonStdout, readJson, REPO, run } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';

const WRITER = path.join(REPO, 'test', 'helpers', 'pit-writer.py');
const dirs: string[] = [];
const writers: ChildProcess[] = [];
afterEach(() => {
  for (const w of writers.splice(0)) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmrf(d);
});

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Aggregates {
  events: number;
  maxId: number;
  sumV: number;
  mixV: number;
  counters: number;
  mixCounters: number;
}

/** The state after transactions 1..k of pit-writer.py, computed without SQLite. */
function expectedState(k: number): Aggregates {
  const v = new Array<number>(k + 1).fill(0);
  const counters = new Array<number>(97).fill(0);
  for (let i = 1; i <= k; i++) {
    v[i] = (i * 31) % 1000003;
    // Python's (i * 2654435761 // 7) % i, exact beyond 2^53
    const target = 1 + Number(((BigInt(i) * 2654435761n) / 7n) % BigInt(i));
    v[target] += i;
    counters[i % 97] += i;
  }
  let sumV = 0;
  let mixV = 0;
  for (let i = 1; i <= k; i++) {
    sumV += v[i];
    mixV = (mixV + ((v[i] * i) % 1000003)) % 1000003;
  }
  let mixCounters = 0;
  for (let i = 0; i < 97; i++) mixCounters += counters[i] * (i + 1);
  return { events: k, maxId: k, sumV, mixV, counters: counters.reduce((a, b) => a + b, 0), mixCounters };
}

function actualState(file: string): Aggregates {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const e = db.prepare('SELECT count(*) AS n, coalesce(max(id), 0) AS m, coalesce(sum(v), 0) AS s FROM events').get() as { n: number; m: number; s: number };
    let mixV = 0;
    for (const r of db.prepare('SELECT id, v FROM events ORDER BY id').iterate() as Iterable<{ id: number; v: number }>) mixV = (mixV + ((r.v * r.id) % 1000003)) % 1000003;
    const c = db.prepare('SELECT sum(v) AS s, sum(v * (id + 1)) AS m FROM counters').get() as { s: number; m: number };
    return { events: e.n, maxId: e.m, sumV: e.s, mixV, counters: c.s, mixCounters: c.m };
  } finally {
    db.close();
  }
}

needs('sqlite3', 'sqlite3').describe('point-in-time restore under a writer (issue 28)', () => {
  needs('python3', 'python3').it('restores three moments, each equal to the writer’s state then', async () => {
    const cwd = tempDir('vb-pit-');
    dirs.push(cwd);
    const db = path.join(cwd, 'app.db');
    const log = path.join(cwd, 'writer.log');
    const backups = path.join(cwd, 'backups');
    const env = { DATABASE_PATH: db, BACKUP_DIR: backups, STORAGE_PATH: path.join(cwd, 'storage') };
    const writer = spawn('python3', [WRITER, db, log, '16'], { stdio: ['ignore', 'ignore', 'pipe'] });
    writers.push(writer);
    let writerErr = '';
    writer.stderr!.on('data', (d: Buffer) => (writerErr += d.toString()));
    await waitFor(() => fs.existsSync(`${log}.started`), 60_000, 'the writer to start');

    const runs: { id: string; level: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await run(['create', '--type', 'database', '--incremental', '--json'], { cwd, env });
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<{ id: string; backups: { level: number }[] }>(r);
      runs.push({ id: doc.id, level: doc.backups[0].level });
      await new Promise((res) => setTimeout(res, 700));
    }
    writer.kill('SIGTERM');
    await new Promise((res) => writer.once('exit', res));
    expect(writerErr).toBe('');
    expect(runs[0].level).toBe(0);
    expect(runs.filter((r) => r.level > 0).length).toBeGreaterThanOrEqual(5);

    const commits = new Map<number, number>();
    for (const line of fs.readFileSync(log, 'utf8').trim().split('\n')) {
      const [k, t] = line.split(' ').map(Number);
      commits.set(k, t);
    }
    const listed = await run(['list', '--type', 'database'], { cwd, env });
    expect(listed.code, describeRun(listed)).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`database restorable from \\S+ to \\S+: 8 states \\(${runs.filter((r) => r.level > 0).length} page deltas\\)`));

    // three moments: an early delta, a middle one, the newest; one restored into the live database
    const deltas = runs.filter((r) => r.level > 0);
    const picks = [deltas[0], deltas[Math.floor(deltas.length / 2)], deltas.at(-1)!];
    for (const [i, pick] of picks.entries()) {
      const sidecar = readJson<{ created_at: string; snapshot_at: string }>(path.join(backups, 'database', `db_backup_${pick.id}.json`));
      const live = i === 2;
      const target = path.join(cwd, `restored-${i}`);
      const r = await run(['restore', '--at', sidecar.snapshot_at, ...(live ? [] : ['--target', target]), '--yes', '--json'], { cwd, env, timeoutMs: 120_000 });
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<{ id: string; database: { integrity: string; saved_current_as?: string } }>(r);
      expect(doc.id).toBe(pick.id);
      const file = live ? db : path.join(target, 'app.db');
      if (live) expect(fs.existsSync(doc.database.saved_current_as!)).toBe(true);
      const check = spawn('sqlite3', [file, 'PRAGMA integrity_check;'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      check.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((res) => check.once('exit', res));
      expect(out.trim()).toBe('ok');
      const got = actualState(file);
      const k = got.maxId;
      // the snapshot holds transaction k and not k+1: k committed by the time the snapshot was taken
      // (logged just after its COMMIT returned), k+1 after the run began
      expect(commits.get(k), `transaction ${k} in the log`).toBeDefined();
      expect(commits.get(k)!).toBeLessThanOrEqual(Date.parse(sidecar.snapshot_at) + 250);
      if (commits.has(k + 1)) expect(commits.get(k + 1)!).toBeGreaterThanOrEqual(Date.parse(sidecar.created_at));
      expect(got).toEqual(expectedState(k));
    }
  }, 300_000);
});
