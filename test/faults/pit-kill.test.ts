/**
 * Issue 28, the fault trial: a delta run, a point-in-time restore and a merge by rotate, each killed
 * (SIGKILL) at every fault point they pass; the next command heals, nothing is left behind, and every
 * state `list` shows restores with integrity_check ok and exactly the content it had.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDatabase, sqlite } from '../helpers/fixtures.js';
import { cli, json, rmrf, type RunResult, show, sleep, startCli, tempDir, tempFilesIn } from '../helpers/faults.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmrf(d);
});

async function stopped(pid: number, done: { exited: boolean }): Promise<boolean> {
  for (;;) {
    if (done.exited) return false;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return true;
    } catch {
      return false;
    }
    await sleep(2);
  }
}

/** Runs `args`, stopped at `point` and killed there; returns whether the kill landed. */
async function killedAt(point: string, args: string[], cwd: string, env: Record<string, string>): Promise<{ killed: boolean; r: RunResult }> {
  const run = startCli(args, { cwd, env: { ...env, VERTEX_BACKUP_FAULT_POINT: point } });
  const done = { exited: false };
  run.child.on('exit', () => (done.exited = true));
  let killed = false;
  if (await stopped(run.child.pid!, done)) {
    run.child.kill('SIGKILL');
    killed = true;
  }
  return { killed, r: await run.done };
}

interface Fixture {
  cwd: string;
  db: string;
  env: Record<string, string>;
  /** state id -> client 1's name in it */
  states: Map<string, string>;
}

let step = 0;
async function delta(f: Fixture): Promise<string> {
  step++;
  sqlite(f.db, `UPDATE clients SET name = 'step ${step}' WHERE id = 1; INSERT INTO scan_events(ts) VALUES(${step});`);
  // ids are seconds
  await sleep(1000);
  const r = await cli(['create', '--type', 'database', '--incremental', '--json'], { cwd: f.cwd, env: f.env });
  expect(r.code, show(r)).toBe(0);
  const id = json<{ id: string }>(r).id;
  f.states.set(id, `step ${step}`);
  return id;
}

async function setup(): Promise<Fixture> {
  const cwd = tempDir('vb-pit-kill-');
  dirs.push(cwd);
  const db = path.join(cwd, 'app.db');
  makeDatabase(db, { events: 4000 });
  const f: Fixture = { cwd, db, env: { DATABASE_PATH: db, BACKUP_DIR: path.join(cwd, 'backups'), STORAGE_PATH: path.join(cwd, 'storage') }, states: new Map() };
  for (let i = 0; i < 3; i++) await delta(f);
  return f;
}

/**
 * Every state list shows as ok restores beside the live database, with its own content. A kill between
 * a delta's data and its sidecar leaves an incomplete backup (never ok): rotation removes it first.
 */
async function everyStateRestores(f: Fixture): Promise<void> {
  const rot = await cli(['rotate'], { cwd: f.cwd, env: f.env });
  expect(rot.code, show(rot)).toBe(0);
  const l = await cli(['list', '--type', 'database', '--json'], { cwd: f.cwd, env: f.env });
  expect(l.code, show(l)).toBe(0);
  const listed = json<{ id: string; status: string }[]>(l);
  expect(listed.filter((e) => e.status !== 'ok'), show(l)).toEqual([]);
  expect(tempFilesIn(f.env.BACKUP_DIR)).toEqual([]);
  for (const e of listed) {
    const target = path.join(f.cwd, `check-${e.id}-${Date.now()}`);
    const r = await cli(['restore', e.id, '--target', target, '--yes'], { cwd: f.cwd, env: f.env });
    expect(r.code, show(r)).toBe(0);
    const file = path.join(target, 'app.db');
    expect(sqlite(file, 'PRAGMA integrity_check')).toBe('ok');
    expect(sqlite(file, 'SELECT name FROM clients WHERE id = 1'), e.id).toBe(f.states.get(e.id));
    rmrf(target);
  }
}

describe('kill -9 during page deltas (issue 28)', () => {
  it.each(['database-copy', 'delta-written'])('a delta run killed at %s: the next run heals, every state restores', async (point) => {
    const f = await setup();
    step++;
    sqlite(f.db, `UPDATE clients SET name = 'step ${step}' WHERE id = 1`);
    await sleep(1000);
    const k = await killedAt(point, ['create', '--type', 'database', '--incremental'], f.cwd, f.env);
    expect(k.killed, show(k.r)).toBe(true);
    // the timer's next tick
    await delta(f);
    await everyStateRestores(f);
  }, 180_000);

  it.each(['pit-base', 'pit-rebuilt', 'staged', 'database'])('restore --at killed at %s: the next command heals, the live database is whole', async (point) => {
    const f = await setup();
    const ids = [...f.states.keys()];
    // a delta's state, older than the live database
    const target = ids[1];
    const before = sqlite(f.db, 'SELECT name FROM clients WHERE id = 1');
    const k = await killedAt(point, ['restore', target, '--yes'], f.cwd, f.env);
    expect(k.killed, show(k.r)).toBe(true);
    // the next command heals (completes or rolls back the restore)
    const h = await cli(['list'], { cwd: f.cwd, env: f.env });
    expect(h.code, show(h)).toBe(0);
    expect(sqlite(f.db, 'PRAGMA integrity_check')).toBe('ok');
    // the live database is the one before the restore or the restored state, never a mix
    expect([before, f.states.get(target)]).toContain(sqlite(f.db, 'SELECT name FROM clients WHERE id = 1'));
    for (const n of fs.readdirSync(f.cwd)) expect(n).not.toMatch(/\.restore-|\.tmp/);
    await delta(f);
    await everyStateRestores(f);
  }, 180_000);

  it.each(['compact-written', 'compact-committed'])('rotate killed mid-merge at %s: valid chains, the next rotate finishes', async (point) => {
    const f = await setup();
    await delta(f);
    const ids = [...f.states.keys()];
    // three days back, one hour: the deltas below the newest of the hour are merged into it
    const day = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
    for (const [i, id] of ids.entries()) {
      const file = path.join(f.env.BACKUP_DIR, 'database', `db_backup_${id}.json`);
      const sc = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      sc.created_at = `${day}T10:${String(10 * i).padStart(2, '0')}:00.000Z`;
      if (sc.snapshot_at) sc.snapshot_at = sc.created_at;
      fs.writeFileSync(file, JSON.stringify(sc));
    }
    const k = await killedAt(point, ['rotate'], f.cwd, f.env);
    expect(k.killed, show(k.r)).toBe(true);
    // whatever is listed after the kill restores
    const after = json<{ id: string; status: string }[]>(await cli(['list', '--type', 'database', '--json'], { cwd: f.cwd, env: f.env }));
    expect(after.filter((e) => e.status !== 'ok')).toEqual([]);
    const r = await cli(['rotate'], { cwd: f.cwd, env: f.env });
    expect(r.code, show(r)).toBe(0);
    const names = fs.readdirSync(path.join(f.env.BACKUP_DIR, 'database'));
    expect(names.filter((n) => n.endsWith('.pgdelta')).length).toBe(1);
    for (const id of ids.slice(1, -1)) f.states.delete(id);
    await everyStateRestores(f);
  }, 180_000);
});
