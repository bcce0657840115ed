/**
 * Issue 28 (quick tier): page deltas without a writer. A delta restores by --at and by its id; a
 * flipped byte in a delta is named by verify (exit 3) and refused by restore --at (exit 3, the live
 * database untouched); a lost level 0 makes every delta above it damaged in list; bad --at is exit 2;
 * rotate thins a chain in time (older than a day: one state an hour) by merging deltas.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { makeDatabase, rmrf, sha256sum, sqlite, tempDir } from '../helpers/fixtures.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmrf(d);
});

async function setup(runs = 3) {
  const cwd = tempDir('vb-pitd-');
  dirs.push(cwd);
  const db = path.join(cwd, 'app.db');
  makeDatabase(db, { events: 3000 });
  const env = { DATABASE_PATH: db, BACKUP_DIR: path.join(cwd, 'backups'), STORAGE_PATH: path.join(cwd, 'storage') };
  const ids: string[] = [];
  for (let i = 0; i < runs; i++) {
    // each state is told apart by client 1's name
    sqlite(db, `UPDATE clients SET name = 'state ${i}' WHERE id = 1; INSERT INTO scan_events(ts) VALUES(${i});`);
    const r = await run(['create', '--type', 'database', '--incremental', '--json'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    ids.push(parseJsonStdout<{ id: string }>(r).id);
    // ids are seconds: the next run must be named after this one
    await new Promise((res) => setTimeout(res, 1000));
  }
  const sidecar = (id: string) => readJson<{ snapshot_at?: string; created_at: string; level: number; backup_path: string }>(path.join(env.BACKUP_DIR, 'database', `db_backup_${id}.json`));
  return { cwd, db, env, ids, sidecar };
}

describe('page deltas (issue 28)', () => {
  it('restore --at and restore DELTA-ID give the state of that moment', async () => {
    const { cwd, env, ids, sidecar } = await setup();
    expect(ids.map((id) => sidecar(id).level)).toEqual([0, 1, 2]);
    expect(sidecar(ids[1]).backup_path).toMatch(/\.pgdelta$/);
    const t1 = path.join(cwd, 't1');
    const r = await run(['restore', '--at', sidecar(ids[1]).snapshot_at!, '--target', t1, '--yes'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toMatch(/level 0 \+ 1 delta/);
    expect(sqlite(path.join(t1, 'app.db'), 'SELECT name FROM clients WHERE id = 1')).toBe('state 1');
    const t2 = path.join(cwd, 't2');
    const r2 = await run(['restore', ids[2], '--target', t2, '--yes'], { cwd, env });
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(sqlite(path.join(t2, 'app.db'), 'SELECT name FROM clients WHERE id = 1')).toBe('state 2');
    expect(sqlite(path.join(t2, 'app.db'), 'PRAGMA integrity_check')).toBe('ok');
    const bad = await run(['restore', '--at', 'tomorrowish', '--yes'], { cwd, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/cannot read "tomorrowish" as a moment/);
    const early = await run(['restore', '--at', '2001-01-01 00:00', '--yes'], { cwd, env });
    expect(early.code).toBe(2);
    expect(early.stderr).toMatch(/no database state at or before 2001-01-01T00:00:00.000Z: the oldest is/);
  }, 60_000);

  it('a flipped byte in a delta: verify exit 3, restore --at exit 3 and the live database unchanged', async () => {
    const { cwd, db, env, ids, sidecar } = await setup();
    const delta = path.join(env.BACKUP_DIR, 'database', sidecar(ids[1]).backup_path);
    const buf = fs.readFileSync(delta);
    buf[32 + 4 + 100] ^= 0xff;
    fs.writeFileSync(delta, buf);
    const v = await run(['verify', ids[1]], { cwd, env });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toMatch(/checksum|does not match its hash/);
    const before = sha256sum(db);
    const r = await run(['restore', '--at', sidecar(ids[2]).snapshot_at!, '--yes'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stderr).toMatch(/damaged/);
    expect(sha256sum(db)).toBe(before);
    expect(fs.readdirSync(cwd).filter((f) => f.includes('pre-restore'))).toEqual([]);
    expect(fs.readdirSync(path.join(env.BACKUP_DIR, 'database')).filter((f) => f.includes('.tmp'))).toEqual([]);
  }, 60_000);

  it('without its level 0, every delta is damaged and list says why', async () => {
    const { cwd, env, ids } = await setup();
    fs.rmSync(path.join(env.BACKUP_DIR, 'database', `db_backup_${ids[0]}.db`));
    const r = await run(['list', '--type', 'database', '--json'], { cwd, env });
    const list = parseJsonStdout<{ id: string; status: string; reason: string | null }[]>(r);
    expect(list.map((e) => e.status)).toEqual(['damaged', 'damaged', 'damaged']);
    expect(list.find((e) => e.id === ids[1])?.reason).toMatch(new RegExp(`needs database backup ${ids[0]}`));
    // the next run starts a new chain instead of adding to a broken one
    const c = await run(['create', '--type', 'database', '--incremental', '--json'], { cwd, env });
    expect(c.code, describeRun(c)).toBe(0);
    expect(c.stdout).toMatch(/"level": 0/);
  }, 60_000);

  it('a run plans from its cache only while the directory matches it: after a link cut short it follows the newest good state; after a plain backup it starts a level 0', async () => {
    const { cwd, env, ids, sidecar } = await setup(4);
    const create = async (args: string[] = []) => {
      const r = await run(['create', '--type', 'database', ...args, '--json'], { cwd, env });
      expect(r.code, describeRun(r)).toBe(0);
      await new Promise((res) => setTimeout(res, 1000));
      return parseJsonStdout<{ id: string; backups: { level: number }[]; notes?: string[] }>(r);
    };
    // the cache is right: the chain goes on
    expect((await create(['--incremental'])).backups[0].level).toBe(4);
    // a delta below the newest cut short (same name, fewer bytes): no delta on top of a chain no restore
    // can rebuild; the run follows the newest good state (ids[1]) instead
    const middle = path.join(env.BACKUP_DIR, 'database', sidecar(ids[2]).backup_path);
    fs.truncateSync(middle, fs.statSync(middle).size - 10);
    const after = await create(['--incremental']);
    expect(after.backups[0].level).toBe(2);
    expect(readJson<{ previous: string }>(path.join(env.BACKUP_DIR, 'database', `db_backup_${after.id}.json`)).previous).toBe(ids[1]);
    const t = path.join(cwd, 'branch');
    const r = await run(['restore', after.id, '--target', t, '--yes'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    expect(sqlite(path.join(t, 'app.db'), 'SELECT name FROM clients WHERE id = 1')).toBe('state 3');
    // a plain database backup is the newest: the next incremental run follows it (a new chain)
    await create();
    expect((await create(['--incremental'])).backups[0].level).toBe(0);
  }, 90_000);

  it('rotate keeps every state of the last day whatever --max-backups says, older chains too', async () => {
    const { cwd, env, ids } = await setup(3);
    // a second chain: the first is no longer pinned by the newest state
    const more: string[] = [];
    for (const args of [['--full'], []]) {
      const r = await run(['create', '--type', 'database', '--incremental', ...args, '--json'], { cwd, env });
      expect(r.code, describeRun(r)).toBe(0);
      more.push(parseJsonStdout<{ id: string }>(r).id);
      await new Promise((res) => setTimeout(res, 1000));
    }
    const r = await run(['rotate', '--max-backups', '1', '--json'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    const listed = parseJsonStdout<{ id: string }[]>(await run(['list', '--type', 'database', '--json'], { cwd, env }));
    expect(listed.map((e) => e.id).sort()).toEqual([...ids, ...more].sort());
    const t = path.join(cwd, 'old-chain');
    const res = await run(['restore', ids[1], '--target', t, '--yes'], { cwd, env });
    expect(res.code, describeRun(res)).toBe(0);
    expect(sqlite(path.join(t, 'app.db'), 'SELECT name FROM clients WHERE id = 1')).toBe('state 1');
  }, 90_000);

  it('rotate merges the deltas of an hour older than a day into its newest state, which still restores exactly', async () => {
    const { cwd, env, ids, sidecar } = await setup(5);
    // the run times moved three days back: 09:50 (level 0), 10:00, 10:20, 10:40, 11:10
    const day = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
    const times = ['09:50', '10:00', '10:20', '10:40', '11:10'].map((t) => `${day}T${t}:00.000Z`);
    for (const [i, id] of ids.entries()) {
      const file = path.join(env.BACKUP_DIR, 'database', `db_backup_${id}.json`);
      const sc = readJson<Record<string, unknown>>(file);
      sc.created_at = times[i];
      if (sc.snapshot_at) sc.snapshot_at = times[i];
      fs.writeFileSync(file, `${JSON.stringify(sc, null, 2)}\n`);
    }
    const r = await run(['rotate'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toMatch(/database page chains: 2 deltas merged into 1 kept state/);
    const names = fs.readdirSync(path.join(env.BACKUP_DIR, 'database'));
    for (const gone of [ids[1], ids[2]]) expect(names.filter((n) => n.includes(gone))).toEqual([]);
    const merged = readJson<{ previous: string; merged: string[]; backup_path: string }>(path.join(env.BACKUP_DIR, 'database', `db_backup_${ids[3]}.json`));
    expect(merged.previous).toBe(ids[0]);
    expect(merged.merged).toEqual([ids[1], ids[2]]);
    // the file the state had before the merge is gone, its new one is there
    expect(names.filter((n) => n.includes(ids[3]) && n.endsWith('.pgdelta'))).toEqual([merged.backup_path]);
    const v = await run(['verify', ids[3]], { cwd, env });
    expect(v.code, describeRun(v)).toBe(0);
    for (const [at, want] of [
      [`${day} 10:40:00`, 'state 3'],
      [`${day} 10:25:00`, 'state 0'],
      [`${day} 11:10:00`, 'state 4'],
    ]) {
      const t = path.join(cwd, `at-${want.replace(' ', '')}`);
      const res = await run(['restore', '--at', at, '--target', t, '--yes'], { cwd, env });
      expect(res.code, describeRun(res)).toBe(0);
      expect(sqlite(path.join(t, 'app.db'), 'SELECT name FROM clients WHERE id = 1')).toBe(want);
    }
    // a second rotate has nothing left to merge
    const again = await run(['rotate'], { cwd, env });
    expect(again.stdout).not.toMatch(/merged/);
    expect(sidecar(ids[4]).level).toBe(4);
  }, 90_000);
});
