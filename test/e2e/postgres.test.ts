/**
 * Issue 23: PostgreSQL databases as sources, against a real server (test/helpers/postgres.ts). The
 * Dart-seed shape — two databases (`dart_cloud`, `functions_db`) and the globals — is backed up, listed,
 * verified, drilled and restored (beside with --target-db, and swapped in keeping `<db>_pre_restore_<id>`)
 * by the built binary; a writer runs during a dump; every bad input of the issue is one line, its exit
 * code, and nothing recorded.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { describeRun, parseJsonStdout, type RunResult, run, stderrLines } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { startRecorder } from '../helpers/http-recorder.js';
import { type PgServer, pgNeed, startPostgres } from '../helpers/postgres.js';

interface Component {
  kind: string;
  name: string;
  role: string;
  file: string;
  size: number;
  checksum: string;
  info?: { tables?: Record<string, number> };
}
interface Sidecar {
  id: string;
  components: Component[];
}

const SECRET = 'Pw-0f-the-app';

pgNeed.describe('PostgreSQL sources (real server)', () => {
  let pg: PgServer;
  let cwd: string;
  let backupDir: string;
  const env = (extra: Record<string, string | undefined> = {}) => ({
    DATABASE_URL: pg.url('postgres'),
    PG_DATABASES: 'dart_cloud,functions_db',
    BACKUP_DIR: backupDir,
    ...extra,
  });
  const vb = (args: string[], extra: Record<string, string | undefined> = {}, timeoutMs = 90_000) => run(args, { cwd, env: env(extra), timeoutMs });
  const sidecarOf = (id: string, dir = backupDir) => JSON.parse(fs.readFileSync(path.join(dir, 'database', `db_backup_${id}.json`), 'utf8')) as Sidecar;
  const databases = () => pg.psql('SELECT datname FROM pg_database ORDER BY 1').split('\n');
  const count = (db: string, table: string) => Number(pg.psql(`SELECT count(*) FROM ${table}`, db));
  /** what a failed run may leave in database/: nothing at all */
  const leftovers = (dir: string) => (fs.existsSync(path.join(dir, 'database')) ? fs.readdirSync(path.join(dir, 'database')) : []);

  beforeAll(async () => {
    pg = await startPostgres();
    cwd = tempDir('vb-pg-');
    backupDir = path.join(cwd, 'backups');
    pg.psql('CREATE DATABASE dart_cloud');
    pg.psql('CREATE DATABASE functions_db');
    // a role with a password: the globals carry it, and the masked-URL case logs in as it
    pg.psql(`CREATE ROLE app LOGIN SUPERUSER PASSWORD '${SECRET}'`);
    pg.psql(
      `CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, created timestamptz DEFAULT now());
       INSERT INTO users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
       CREATE TABLE sessions (id bigserial PRIMARY KEY, user_id int REFERENCES users(id), token text);
       INSERT INTO sessions (user_id, token) SELECT 1 + g % 2000, md5(g::text) FROM generate_series(1, 30000) g;
       CREATE SCHEMA "Billing";
       CREATE TABLE "Billing"."Invoice Lines" (id int, amount numeric);
       INSERT INTO "Billing"."Invoice Lines" VALUES (1, 9.99), (2, 19.99);
       CREATE TABLE events (id bigserial PRIMARY KEY, payload text);
       CREATE TABLE totals (n bigint NOT NULL);
       INSERT INTO totals VALUES (0);`,
      'dart_cloud',
    );
    pg.psql(
      `CREATE TABLE functions (id int PRIMARY KEY, name text, code bytea);
       INSERT INTO functions SELECT g, 'fn' || g, convert_to(repeat('void main() {} ', 50), 'UTF8') FROM generate_series(1, 500) g;
       CREATE TABLE deployments (id int, function_id int REFERENCES functions(id));
       INSERT INTO deployments SELECT g, 1 + g % 500 FROM generate_series(1, 1500) g;`,
      'functions_db',
    );
    // the masked-URL case logs in as `app` with its password (scram), everyone else as trusted postgres
    const hba = path.join(pg.dir, 'data', 'pg_hba.conf');
    fs.writeFileSync(hba, `host all app 127.0.0.1/32 scram-sha-256\n${fs.readFileSync(hba, 'utf8')}`);
    pg.psql('SELECT pg_reload_conf()');
  }, 120_000);
  afterAll(() => {
    pg?.stop();
    rmrf(cwd);
  });

  let firstId = '';

  pgNeed.it('create: one dump per database and the globals (0600), rows counted in the snapshot; list --json names them', async () => {
    const r = await vb(['create', '--type', 'database', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    firstId = parseJsonStdout<{ id: string }>(r).id;
    const sc = sidecarOf(firstId);
    expect(sc.components.map((c) => `${c.role}:${c.name}`)).toEqual(['data:dart_cloud', 'data:functions_db', 'globals:globals']);
    const dc = sc.components[0];
    expect(dc.info?.tables).toEqual({ 'Billing.Invoice Lines': 2, 'public.events': 0, 'public.sessions': 30000, 'public.totals': 1, 'public.users': 2000 });
    expect(sc.components[1].info?.tables).toEqual({ 'public.deployments': 1500, 'public.functions': 500 });
    for (const c of sc.components) {
      const file = path.join(backupDir, 'database', c.file);
      expect(fs.statSync(file).mode & 0o777, c.file).toBe(0o600);
      expect(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(c.checksum);
    }
    // the globals hold the role and its password hash
    expect(fs.readFileSync(path.join(backupDir, 'database', sc.components[2].file), 'utf8')).toMatch(/CREATE ROLE app;[\s\S]*SCRAM-SHA-256/);

    const list = await vb(['list', '--json']);
    expect(list.code, describeRun(list)).toBe(0);
    const listed = parseJsonStdout<{ id: string; status: string; components?: { name: string }[] }[]>(list);
    expect(listed[0].status).toBe('ok');
    expect(listed[0].components?.map((c) => c.name)).toEqual(['dart_cloud', 'functions_db', 'globals']);
    const human = await vb(['list']);
    expect(human.stdout).toContain('dart_cloud functions_db');
  });

  pgNeed.it('verify reads every dump whole; drill restores each database into vertex_drill_<id>, compares, drops it, RTO per database', async () => {
    const v = await vb(['verify', firstId]);
    expect(v.code, describeRun(v)).toBe(0);
    const d = await vb(['drill', '--type', 'database', '--json']);
    expect(d.code, describeRun(d)).toBe(0);
    const doc = parseJsonStdout<{ result: string; databases: { name: string; ok: boolean; rows: number; restore_ms: number }[] }>(d);
    expect(doc.result).toBe('passed');
    expect(doc.databases.map((x) => [x.name, x.ok, x.rows])).toEqual([
      ['dart_cloud', true, 32003],
      ['functions_db', true, 2000],
    ]);
    for (const x of doc.databases) expect(x.restore_ms).toBeGreaterThan(0);
    expect(databases().filter((n) => n.startsWith('vertex_drill_'))).toEqual([]);
    const text = await vb(['drill', '--type', 'database']);
    expect(text.code, describeRun(text)).toBe(0);
    expect(text.stdout).toMatch(/database dart_cloud: restored in .*, 5 tables, 32003 rows/);
    expect(text.stdout).toMatch(/database functions_db: restored in /);
  });

  pgNeed.it('ls, stats, metrics and notifications name each database', async () => {
    const ls = await vb(['ls', firstId, '--json']);
    expect(ls.code, describeRun(ls)).toBe(0);
    const listed = parseJsonStdout<{ databases: { name: string; kind: string; tables: { name: string; rows: number }[] }[] }>(ls).databases;
    expect(listed.map((d) => [d.name, d.kind])).toEqual([
      ['dart_cloud', 'postgres'],
      ['functions_db', 'postgres'],
    ]);
    expect(listed[1].tables).toEqual([
      { name: 'public.deployments', rows: 1500 },
      { name: 'public.functions', rows: 500 },
    ]);
    const one = await vb(['ls', firstId, 'functions_db']);
    expect(one.code, describeRun(one)).toBe(0);
    expect(one.stdout).toMatch(/^database functions_db \(postgres [\d.]+.*\): 2 tables, 2000 rows\n {2}public\.deployments +1500\n {2}public\.functions +500\n$/);
    const none = await vb(['ls', firstId, 'nope_db']);
    expect(none.code, describeRun(none)).toBe(2);
    expect(stderrLines(none)[0]).toMatch(/holds no database nope_db/);

    const stats = await vb(['stats', '--json']);
    expect(stats.code, describeRun(stats)).toBe(0);
    const dbs = parseJsonStdout<{ databases: { name: string; count: number; newest: { id: string } }[] }>(stats).databases;
    expect(dbs.map((d) => [d.name, d.count, d.newest.id])).toEqual([
      ['dart_cloud', 1, firstId],
      ['functions_db', 1, firstId],
    ]);
    expect((await vb(['stats'])).stdout).toMatch(/dart_cloud[\s│]+postgres[\s│]+1/);

    const recorder = await startRecorder();
    try {
      const metrics = path.join(cwd, 'metrics.prom');
      const dir = path.join(cwd, 'notify');
      const r = await vb(['create', '--type', 'database', '--metrics-file', metrics], {
        BACKUP_DIR: dir,
        NOTIFY_ON: 'always',
        TELEGRAM_BOT_TOKEN: '123:abc',
        TELEGRAM_CHAT_ID: '42',
        TELEGRAM_API_URL: recorder.url,
      });
      expect(r.code, describeRun(r)).toBe(0);
      const text = (recorder.requests.find((q) => q.url.endsWith('/sendMessage'))?.json as { text: string } | undefined)?.text;
      expect(text).toMatch(/create --type database succeeded\n.*\(databases dart_cloud, functions_db\)/);
      const prom = fs.readFileSync(metrics, 'utf8');
      expect(prom).toMatch(/^vertex_backup_database_last_rows\{database="dart_cloud",kind="postgres"\} 32003$/m);
      expect(prom).toMatch(/^vertex_backup_database_last_rows\{database="functions_db",kind="postgres"\} 2000$/m);
      expect(prom).toMatch(/^vertex_backup_database_last_success_timestamp_seconds\{database="functions_db",kind="postgres"\} \d+/m);
    } finally {
      await recorder.close();
    }
  });

  pgNeed.it('restore --target-db restores beside the live database; naming an existing database is refused and drops nothing', async () => {
    const r = await vb(['restore', firstId, '--database', 'dart_cloud', '--target-db', 'dart_cloud_copy', '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(count('dart_cloud_copy', 'users')).toBe(2000);
    expect(count('dart_cloud_copy', '"Billing"."Invoice Lines"')).toBe(2);

    pg.psql("INSERT INTO users (email) VALUES ('after@example.com')", 'dart_cloud');
    const clash = await vb(['restore', firstId, '--database', 'dart_cloud', '--target-db', 'dart_cloud', '--yes']);
    expect(clash.code, describeRun(clash)).toBe(2);
    expect(stderrLines(clash)[0]).toMatch(/dart_cloud, exists already/);
    // the live database is whole: its new row is still there
    expect(count('dart_cloud', 'users')).toBe(2001);
    pg.psql('DROP DATABASE dart_cloud_copy');
  });

  pgNeed.it('restore swaps each database in, keeping the previous one as <db>_pre_restore_<id> and saying how to drop it', async () => {
    expect(count('dart_cloud', 'users')).toBe(2001);
    pg.psql('DELETE FROM deployments', 'functions_db');
    const r = await vb(['restore', firstId, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ sources: { name: string; restored_as: string; kept_as: string; notes: string[] }[] }>(r);
    expect(doc.sources.map((s) => s.name)).toEqual(['dart_cloud', 'functions_db']);
    expect(count('dart_cloud', 'users')).toBe(2000);
    expect(count('functions_db', 'deployments')).toBe(1500);
    for (const s of doc.sources) {
      expect(s.kept_as).toMatch(new RegExp(`^${s.name}_pre_restore_\\d{8}_\\d{6}$`));
      expect(s.notes.join(' ')).toContain(`DROP DATABASE "${s.kept_as}"`);
    }
    expect(count(doc.sources[0].kept_as, 'users')).toBe(2001);
    expect(count(doc.sources[1].kept_as, 'deployments')).toBe(0);
    // no staging database is left behind
    expect(databases().filter((n) => n.includes('_restore_') && !n.includes('_pre_restore_'))).toEqual([]);
    for (const s of doc.sources) pg.psql(`DROP DATABASE "${s.kept_as}"`);
  });

  pgNeed.it('a writer during the dump: the recorded counts are one snapshot, and the restored copy equals it', async () => {
    const before = count('dart_cloud', 'events');
    // every transaction adds one event and bumps the total: in any snapshot, totals.n = count(events)
    const writer: ChildProcess = spawn(
      path.join(pg.bin, 'psql'),
      [
        '-X',
        '-q',
        '-h',
        '127.0.0.1',
        '-p',
        String(pg.port),
        '-U',
        'postgres',
        '-d',
        'dart_cloud',
        '-c',
        `DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
           WHILE clock_timestamp() < t0 + interval '8 seconds' LOOP
             INSERT INTO events (payload) VALUES (repeat('x', 200)); UPDATE totals SET n = n + 1; COMMIT;
           END LOOP; END $$;`,
      ],
      { stdio: 'ignore' },
    );
    const writerDone = new Promise((resolve) => writer.on('close', resolve));
    try {
      while (count('dart_cloud', 'events') === before) await new Promise((r) => setTimeout(r, 50));
      const r = await vb(['create', '--type', 'database', '--json']);
      expect(r.code, describeRun(r)).toBe(0);
      const id = parseJsonStdout<{ id: string }>(r).id;
      const afterDump = count('dart_cloud', 'events');
      const recorded = sidecarOf(id).components[0].info!.tables!['public.events'];
      expect(recorded).toBeGreaterThan(before);
      expect(recorded).toBeLessThan(afterDump);
      const back = await vb(['restore', id, '--database', 'dart_cloud', '--target-db', 'dart_cloud_w', '--yes']);
      expect(back.code, describeRun(back)).toBe(0);
      expect(count('dart_cloud_w', 'events')).toBe(recorded);
      expect(Number(pg.psql('SELECT n FROM totals', 'dart_cloud_w'))).toBe(recorded);
    } finally {
      await writerDone;
    }
    pg.psql('DROP DATABASE dart_cloud_w');
  });

  pgNeed.it('verify finds a dump truncated after its table of contents even when its checksum was rewritten to match (exit 3)', async () => {
    const dir = path.join(cwd, 'trunc');
    const r = await vb(['create', '--type', 'database', '--json'], { BACKUP_DIR: dir });
    expect(r.code, describeRun(r)).toBe(0);
    const id = parseJsonStdout<{ id: string }>(r).id;
    const scPath = path.join(dir, 'database', `db_backup_${id}.json`);
    const sc = JSON.parse(fs.readFileSync(scPath, 'utf8')) as Sidecar & { file_size: number };
    const c = sc.components[0];
    const file = path.join(dir, 'database', c.file);
    fs.truncateSync(file, Math.floor(c.size * 0.7));
    const data = fs.readFileSync(file);
    c.size = data.length;
    c.checksum = crypto.createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(scPath, JSON.stringify(sc, null, 2));
    const v = await vb(['verify', id], { BACKUP_DIR: dir });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toMatch(/dart_cloud cannot be read by pg_restore/);
    // restore checks only the checksums first (it reads the dump whole itself): the cut is found by
    // pg_restore in the new database, and the live one is not touched
    const liveUsers = count('dart_cloud', 'users');
    const back = await vb(['restore', id, '--database', 'dart_cloud', '--yes'], { BACKUP_DIR: dir });
    expect(back.code, describeRun(back)).toBe(1);
    expect(stderrLines(back)[0]).toMatch(/the live database dart_cloud was not touched/);
    expect(count('dart_cloud', 'users')).toBe(liveUsers);
    expect(databases().filter((n) => n.includes('_restore_'))).toEqual([]);

    // a flipped byte in the other dump, its checksum left alone: named by the checksum, both problems reported
    const other = path.join(dir, 'database', sc.components[1].file);
    const bytes = fs.readFileSync(other);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(other, bytes);
    const v2 = await vb(['verify', id, '--json'], { BACKUP_DIR: dir });
    expect(v2.code, describeRun(v2)).toBe(3);
    const problems = parseJsonStdout<{ results: { problems: string[] }[] }>(v2).results[0].problems.join('\n');
    expect(problems).toMatch(/dart_cloud cannot be read by pg_restore/);
    expect(problems).toMatch(/functions_db: .*checksum/i);
  });

  pgNeed.it('restore checks each dump\'s checksum while pg_restore reads it: a mismatch is exit 3 before any swap, the copy dropped', async () => {
    const dir = path.join(cwd, 'badsum');
    const r = await vb(['create', '--type', 'database', '--json'], { BACKUP_DIR: dir });
    expect(r.code, describeRun(r)).toBe(0);
    const id = parseJsonStdout<{ id: string }>(r).id;
    // the dump itself is whole (pg_restore reads it without a complaint): only the checksum can tell
    const scPath = path.join(dir, 'database', `db_backup_${id}.json`);
    const sc = JSON.parse(fs.readFileSync(scPath, 'utf8')) as Sidecar;
    sc.components[0].checksum = '0'.repeat(64);
    fs.writeFileSync(scPath, JSON.stringify(sc, null, 2));
    pg.psql("INSERT INTO users (email) VALUES ('before-badsum@example.com')", 'dart_cloud');
    const liveUsers = count('dart_cloud', 'users');
    for (const extra of [[], ['--target-db', 'dart_cloud_badsum']]) {
      const back = await vb(['restore', id, '--database', 'dart_cloud', '--yes', ...extra], { BACKUP_DIR: dir });
      expect(back.code, describeRun(back)).toBe(3);
      expect(stderrLines(back)[0]).toMatch(/failed verification: dart_cloud: .*checksum.*the live database dart_cloud was not touched/);
      expect(count('dart_cloud', 'users')).toBe(liveUsers);
      expect(databases().filter((n) => n.includes('_restore_') || n === 'dart_cloud_badsum')).toEqual([]);
    }
    pg.psql("DELETE FROM users WHERE email = 'before-badsum@example.com'", 'dart_cloud');
  });

  /**
   * PG_DUMP_CONTAINER: every client tool runs through `docker exec -i NAME tool …`. This is a stand-in
   * `docker` (no PostgreSQL image can be pulled here): it runs the tool on this host, and like a real
   * container it cannot see the host's files — an argument naming one is refused — so verify, drill and
   * restore must send the dump on stdin. PATH holds only it: no client tool is reachable directly.
   */
  pgNeed.it('PG_DUMP_CONTAINER: create, verify, drill and restore all run the client through docker exec, dumps on stdin', async () => {
    const dir = path.join(cwd, 'container');
    const bin = path.join(cwd, 'bin-docker');
    const log = path.join(cwd, 'docker.log');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'docker'),
      `#!/bin/sh
echo "$*" >> ${log}
[ "$1" = exec ] || exit 1
shift
while [ $# -gt 0 ]; do case "$1" in -i) shift ;; -e) shift 2 ;; *) break ;; esac; done
[ "$1" = app-db ] || { echo "Error: No such container: $1" >&2; exit 1; }
shift
for a in "$@"; do case "$a" in /*) [ -e "$a" ] && { echo "$a: No such file or directory (inside the container)" >&2; exit 1; } ;; esac; done
PATH=${pg.bin}:/usr/bin:/bin exec "$@"
`,
      { mode: 0o755 },
    );
    const cenv = { BACKUP_DIR: dir, PG_DUMP_CONTAINER: 'app-db', PATH: bin };
    const c = await vb(['create', '--type', 'database', '--json'], cenv);
    expect(c.code, describeRun(c)).toBe(0);
    const id = parseJsonStdout<{ id: string }>(c).id;
    const v = await vb(['verify', id], cenv);
    expect(v.code, describeRun(v)).toBe(0);
    const d = await vb(['drill', '--type', 'database', '--json'], cenv);
    expect(d.code, describeRun(d)).toBe(0);
    const r = await vb(['restore', id, '--database', 'functions_db', '--target-db', 'functions_ct', '--globals', '--yes', '--json'], cenv);
    expect(r.code, describeRun(r)).toBe(0);
    expect(count('functions_ct', 'deployments')).toBe(1500);
    const calls = fs.readFileSync(log, 'utf8');
    for (const tool of ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql']) expect(calls).toContain(` app-db ${tool} `);
    expect(calls).not.toMatch(/--jobs/);
    // the password travels as an environment variable name, never as an argument
    expect(calls).toContain('-e PGPASSWORD');
    pg.psql('DROP DATABASE functions_ct');

    const goneDir = path.join(cwd, 'container-gone');
    const gone = await vb(['create', '--type', 'database'], { ...cenv, BACKUP_DIR: goneDir, PG_DUMP_CONTAINER: 'no-such-db' });
    oneLine(gone, 2, /container no-such-db \(PG_DUMP_CONTAINER\) is not running/, goneDir);
  });

  // ---- bad input: one line, its exit code, nothing recorded -------------------------------------

  function oneLine(r: RunResult, code: number, pattern: RegExp, dir: string) {
    expect(r.code, describeRun(r)).toBe(code);
    const errors = stderrLines(r).filter((l) => l.startsWith('error:'));
    expect(errors, describeRun(r)).toHaveLength(1);
    expect(errors[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(leftovers(dir)).toEqual([]);
  }

  pgNeed.it('wrong password: exit 2, the hint names .pgpass, nothing written', async () => {
    const dir = path.join(cwd, 'bad-pw');
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, DATABASE_URL: `postgresql://app@127.0.0.1:${pg.port}/postgres`, PGPASSWORD: 'wrong' });
    oneLine(r, 2, /password authentication failed for user "app"/, dir);
    expect(r.stderr).toContain('.pgpass');
  });

  pgNeed.it('unreachable host: exit 1, nothing written', async () => {
    const dir = path.join(cwd, 'unreach');
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/postgres' });
    oneLine(r, 1, /cannot reach the PostgreSQL server/, dir);
  });

  pgNeed.it('a database that does not exist: exit 2, the existing ones named, nothing written', async () => {
    const dir = path.join(cwd, 'missing');
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, PG_DATABASES: 'dart_cloud,nope_db' });
    oneLine(r, 2, /database "nope_db" does not exist/, dir);
    expect(r.stderr).toContain('functions_db');
  });

  pgNeed.it('a user who may not read a table: exit 1, one line with the grant to give, nothing written', async () => {
    pg.psql('CREATE ROLE reader LOGIN');
    const dir = path.join(cwd, 'noselect');
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, DATABASE_URL: `postgresql://reader@127.0.0.1:${pg.port}/postgres` });
    oneLine(r, 1, /counting rows of dart_cloud: ERROR:  permission denied for (table|schema)/, dir);
    expect(r.stderr).toContain('GRANT SELECT');
  });

  /** A directory for PATH holding the real client tools except those left out, and fakes. */
  function binDir(name: string, leaveOut: string[], fakes: Record<string, string> = {}): string {
    const dir = path.join(cwd, name);
    fs.mkdirSync(dir, { recursive: true });
    for (const t of ['psql', 'pg_dump', 'pg_dumpall', 'pg_restore']) if (!leaveOut.includes(t)) fs.symlinkSync(path.join(pg.bin, t), path.join(dir, t));
    for (const [t, body] of Object.entries(fakes)) fs.writeFileSync(path.join(dir, t), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return dir;
  }

  pgNeed.it('no pg_dump on PATH: exit 2, the package named, nothing written', async () => {
    const dir = path.join(cwd, 'nodump');
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, PATH: `${binDir('bin-nodump', ['pg_dump'])}` });
    oneLine(r, 2, /pg_dump not found on PATH/, dir);
    expect(r.stderr).toContain('postgresql-client');
  });

  pgNeed.it('a server newer than pg_dump (a fake `pg_dump --version`): refused before anything is written, exit 2, the Debian package named', async () => {
    const dir = path.join(cwd, 'old');
    const fake = `if [ "$1" = --version ]; then echo 'pg_dump (PostgreSQL) 13.9'; exit 0; fi\nexec ${path.join(pg.bin, 'pg_dump')} "$@"`;
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, PATH: `${binDir('bin-old', ['pg_dump'], { pg_dump: fake })}` });
    const major = pg.psql('SHOW server_version_num').slice(0, 2);
    oneLine(r, 2, new RegExp(`pg_dump 13 is older than the PostgreSQL ${major} server`), dir);
    expect(r.stderr).toContain(`apt-get install postgresql-client-${major}`);
  });

  pgNeed.it('pg_dump exiting non-zero after writing a whole dump is never recorded ok (restic#4251)', async () => {
    const dir = path.join(cwd, 'dumpfail');
    const fake = `if [ "$1" = --version ]; then exec ${path.join(pg.bin, 'pg_dump')} --version; fi\n${path.join(pg.bin, 'pg_dump')} "$@"\necho 'pg_dump: error: simulated failure at the end' >&2\nexit 1`;
    const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir, PATH: `${binDir('bin-fail', ['pg_dump'], { pg_dump: fake })}` });
    oneLine(r, 1, /dumping database dart_cloud: .*simulated failure/, dir);
    const list = await vb(['list', '--json'], { BACKUP_DIR: dir });
    expect(parseJsonStdout<unknown[]>(list)).toEqual([]);
  });

  pgNeed.it('disk full while dumping: exit 5, one line, no partial file, nothing listed', async (ctx) => {
    const dir = path.join(cwd, 'small');
    fs.mkdirSync(dir);
    // a 256 KiB filesystem: the sidecar and the marker fit, the dump of dart_cloud does not
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
    if (m.status !== 0) {
      if (process.env.CI) throw new Error(`mount tmpfs: ${m.stderr}`);
      ctx.skip();
    }
    try {
      const r = await vb(['create', '--type', 'database'], { BACKUP_DIR: dir });
      oneLine(r, 5, /no space left|not enough (free )?space|ENOSPC/i, dir);
      const list = await vb(['list', '--json'], { BACKUP_DIR: dir });
      expect(parseJsonStdout<unknown[]>(list)).toEqual([]);
      // no pg_dump or psql of the run is left behind holding the snapshot
      expect(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vertex-backup'")).toBe('0');
    } finally {
      spawnSync('umount', ['-l', dir]);
    }
  });

  pgNeed.it('pg_dump killed mid-dump, or the server ending its session: never recorded ok, nothing left', async () => {
    for (const how of ['killed', 'terminated'] as const) {
      const dir = path.join(cwd, `cut-${how}`);
      const fake =
        how === 'killed'
          ? // writes part of a real dump, then dies by a signal
            `if [ "$1" = --version ]; then exec ${path.join(pg.bin, 'pg_dump')} --version; fi\n${path.join(pg.bin, 'pg_dump')} "$@" | head -c 20000\nkill -9 $$`
          : // the server ends the dump's session half-way (an administrator, a restart)
            `if [ "$1" = --version ]; then exec ${path.join(pg.bin, 'pg_dump')} --version; fi\n${path.join(pg.bin, 'psql')} -X -q -f ${path.join(cwd, 'cut.sql')} >/dev/null 2>&1 &\nexec ${path.join(pg.bin, 'pg_dump')} "$@"`;
      const slow = how === 'terminated' ? { PG_DATABASES: 'dart_cloud' } : {};
      if (how === 'terminated') {
        // a table big enough that its COPY is still running when the session is ended
        pg.psql("CREATE TABLE IF NOT EXISTS bulk AS SELECT g, repeat(md5(g::text), 30) AS t FROM generate_series(1, 400000) g", 'dart_cloud');
        fs.writeFileSync(
          path.join(cwd, 'cut.sql'),
          `DO $$ BEGIN
             FOR i IN 1..3000 LOOP
               IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY public.bulk %' AND pid <> pg_backend_pid()) THEN
                 PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY public.bulk %' AND pid <> pg_backend_pid();
                 RETURN;
               END IF;
               PERFORM pg_sleep(0.01);
               -- pg_stat_activity is read once per transaction unless told otherwise
               PERFORM pg_stat_clear_snapshot();
             END LOOP;
           END $$;`,
        );
      }
      const r = await vb(['create', '--type', 'database'], {
        BACKUP_DIR: dir,
        PATH: `${binDir(`bin-${how}`, ['pg_dump'], { pg_dump: fake })}`,
        PGHOST: '127.0.0.1',
        PGPORT: String(pg.port),
        PGUSER: 'postgres',
        ...slow,
      });
      oneLine(r, 1, how === 'killed' ? /dumping database dart_cloud: .*(killed by SIGKILL|exit code 137|failed)/ : /dumping database dart_cloud: .*(terminat|connection|server closed)/i, dir);
      const list = await vb(['list', '--json'], { BACKUP_DIR: dir });
      expect(parseJsonStdout<unknown[]>(list)).toEqual([]);
    }
    pg.psql('DROP TABLE bulk', 'dart_cloud');
  });

  pgNeed.it('a password in DATABASE_URL works, earns a warning, and is masked in every output, log and sidecar', async () => {
    const dir = path.join(cwd, 'pw-url');
    const url = `postgresql://app:${SECRET}@127.0.0.1:${pg.port}/postgres`;
    const outputs: RunResult[] = [];
    const step = async (args: string[], code = 0) => {
      const r = await vb(args, { BACKUP_DIR: dir, DATABASE_URL: url });
      expect(r.code, describeRun(r)).toBe(code);
      outputs.push(r);
      return r;
    };
    const c = await step(['create', '--type', 'database', '--json']);
    expect(c.stderr).toMatch(/DATABASE_URL holds a password: .*~\/.pgpass/);
    const id = parseJsonStdout<{ id: string }>(c).id;
    await step(['list', '--json']);
    await step(['verify', id]);
    await step(['drill', '--type', 'database', '--json']);
    await step(['restore', id, '--database', 'functions_db', '--target-db', 'functions_pw', '--yes', '--verbose']);
    await step(['restore', id, '--database', 'functions_db', '--target-db', 'functions_pw', '--yes', '--verbose'], 2);
    // a failure names the URL too: masked
    const bad = await vb(['create', '--type', 'database', '--verbose'], { BACKUP_DIR: dir, DATABASE_URL: url, PG_DATABASES: 'nope_db' });
    expect(bad.code, describeRun(bad)).toBe(2);
    expect(bad.stderr).toContain(`postgresql://app:***@127.0.0.1:${pg.port}/postgres`);
    outputs.push(bad);
    for (const r of outputs) expect(r.stdout + r.stderr, describeRun(r)).not.toContain(SECRET);
    const files = fs.readdirSync(path.join(dir, 'database')).map((f) => path.join(dir, 'database', f));
    for (const f of [...files.filter((f) => !f.endsWith('.dump')), path.join(dir, 'backup.log')].filter((f) => fs.existsSync(f)))
      expect(fs.readFileSync(f, 'utf8'), f).not.toContain(SECRET);
    pg.psql('DROP DATABASE functions_pw');
  });
});
