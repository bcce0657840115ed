/**
 * Issue 23: a PostgreSQL restore killed (kill -9) at each of its steps — the copy half-restored, the
 * copy restored and checked, the live database closed to new connections, the renames done — and at a
 * random instant while pg_restore runs. The next command (a plain `list`) completes or rolls it back
 * and says which: the live database is wholly the old one or wholly the backup's, takes connections,
 * and no copy, mark or journal is left behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { cli, rng, type RunResult, show, sleep, startCli } from '../helpers/faults.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { type PgServer, pgNeed, startPostgres } from '../helpers/postgres.js';

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

pgNeed.describe('PostgreSQL restore killed at every step (real server)', () => {
  let pg: PgServer;
  let cwd: string;
  let backupDir: string;
  let id = '';
  const env = () => ({ DATABASE_URL: pg.url('postgres'), PG_DATABASES: 'app', BACKUP_DIR: backupDir });
  const users = (db = 'app') => Number(pg.psql('SELECT count(*) FROM users', db));
  const databases = () => pg.psql('SELECT datname FROM pg_database ORDER BY 1').split('\n');
  const allowsConnections = (db: string) => pg.psql(`SELECT datallowconn FROM pg_database WHERE datname = '${db}'`) === 't';
  const journal = () => path.join(backupDir, '.restore-in-progress.json');

  beforeAll(async () => {
    pg = await startPostgres();
    cwd = tempDir('vb-pgkill-');
    backupDir = path.join(cwd, 'backups');
    pg.psql('CREATE DATABASE app');
    pg.psql(
      `CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, bio text);
       INSERT INTO users (email, bio) SELECT 'u' || g, repeat(md5(g::text), 20) FROM generate_series(1, 60000) g;
       CREATE INDEX users_email ON users (email);`,
      'app',
    );
    const r = await cli(['create', '--type', 'database', '--json'], { cwd, env: env() });
    if (r.code !== 0) throw new Error(show(r));
    id = (JSON.parse(r.stdout) as { id: string }).id;
  }, 120_000);
  afterAll(() => {
    pg?.stop();
    rmrf(cwd);
  });

  /** Before each trial the live database is the "old" state: one user more than the backup holds. */
  function makeOld(): void {
    for (const d of databases()) if (d !== 'app' && /^app_/.test(d)) pg.psql(`DROP DATABASE "${d}"`);
    if (!databases().includes('app')) throw new Error('the live database is gone');
    if (users() === 60000) pg.psql("INSERT INTO users (email) VALUES ('old-state')", 'app');
    expect(users()).toBe(60001);
  }

  async function killedRestore(kill: { point: string } | { afterMs: number }): Promise<{ r: RunResult; killed: boolean }> {
    const fault = 'point' in kill ? { VERTEX_BACKUP_FAULT_POINT: kill.point } : {};
    const run = startCli(['restore', id, '--yes'], { cwd, env: { ...env(), ...fault } });
    const done = { exited: false };
    run.child.on('exit', () => {
      done.exited = true;
    });
    let killed = false;
    if ('point' in kill) {
      if (await stopped(run.child.pid!, done)) killed = run.child.kill('SIGKILL');
    } else {
      // from the moment the journal names the step (pg_restore is running then, or about to)
      while (!done.exited && !(fs.existsSync(journal()) && fs.readFileSync(journal(), 'utf8').includes('"step":"staging"'))) await sleep(1);
      await sleep(kill.afterMs);
      killed = run.child.kill('SIGKILL') && !done.exited;
    }
    return { r: await run.done, killed };
  }

  /** The next command heals, says which way, and leaves nothing of the restore behind. */
  async function healed(): Promise<string> {
    const r = await cli(['list'], { cwd, env: env() });
    expect(r.code, show(r)).toBe(0);
    expect(fs.existsSync(journal()), show(r)).toBe(false);
    const left = databases().filter((d) => d.includes('_restore_') && !d.includes('_pre_restore_'));
    expect(left, show(r)).toEqual([]);
    expect(allowsConnections('app')).toBe(true);
    expect(pg.psql("SELECT count(*) FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE 'vertex-backup:%'")).toBe('0');
    return r.stderr;
  }

  for (const point of ['postgres-restoring', 'postgres-restored', 'postgres-closed']) {
    pgNeed.it(`killed at ${point}: rolled back, the live database as it was`, async () => {
      makeOld();
      const { r, killed } = await killedRestore({ point });
      expect(killed, show(r)).toBe(true);
      const said = await healed();
      expect(said).toMatch(/rolled back the restore of app/);
      expect(users()).toBe(60001);
      expect(databases().filter((d) => d.includes('_pre_restore_'))).toEqual([]);
    });
  }

  pgNeed.it('killed at postgres-swapped: completed, the backup live and the previous database kept, taking connections', async () => {
    makeOld();
    const { r, killed } = await killedRestore({ point: 'postgres-swapped' });
    expect(killed, show(r)).toBe(true);
    const said = await healed();
    expect(said).toMatch(/completed the restore of app .*kept as app_pre_restore_/);
    expect(users()).toBe(60000);
    const kept = databases().filter((d) => d.startsWith('app_pre_restore_'));
    expect(kept).toHaveLength(1);
    expect(allowsConnections(kept[0])).toBe(true);
    expect(users(kept[0])).toBe(60001);
    pg.psql(`DROP DATABASE "${kept[0]}"`);
    pg.psql("INSERT INTO users (email) VALUES ('old-state')", 'app');
  });

  pgNeed.it('killed at random instants while pg_restore runs: rolled back every time', async () => {
    const r0 = rng('postgres restore kill');
    for (let i = 0; i < 3; i++) {
      makeOld();
      const { r, killed } = await killedRestore({ afterMs: r0.int(0, 600) });
      if (!killed) {
        // the restore finished first: then it is whole
        expect(r.code, show(r)).toBe(0);
        continue;
      }
      const said = await healed();
      expect(said).toMatch(/(rolled back|completed) the restore of app/);
      expect([60000, 60001]).toContain(users());
      if (/rolled back/.test(said)) expect(users()).toBe(60001);
    }
  });
});
