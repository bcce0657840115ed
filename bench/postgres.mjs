#!/usr/bin/env node
// PostgreSQL (issue 23): our database backup against `pg_dump -Fc` to a file, and our restore against
// `createdb` + `pg_restore -j 2` into an empty database (beside with --target-db, and swapped in), medians of BENCH_RUNS (3) in the same run on the
// same server; peak RSS of our process. The server is a private one (initdb + pg_ctl into a temp
// directory on 127.0.0.1, as the `postgres` user when run as root), filled with a generated database of
// about PG_BENCH_MB megabytes (default 150; the figure is 500): several tables with indexes, text
// that compresses and bytea that does not.
// Usage: npm run build && node bench/postgres.mjs      (PG_BENCH_MB=500 BENCH_RUNS=3 for the full size)
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'bin', 'vertex-backup.js');
const MB = Number(process.env.PG_BENCH_MB ?? 150);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const log = (m) => process.stderr.write(`${m}\n`);
const BIN = ['17', '16', '15'].map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(path.join(d, 'initdb')));
if (!BIN) {
  log('bench/postgres.mjs: no PostgreSQL server (Debian package postgresql): skipped');
  process.exit(0);
}
const root = process.getuid?.() === 0;
const asPostgres = (args) => (root ? ['runuser', ['-u', 'postgres', '--', ...args]] : [args[0], args.slice(1)]);

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-bench-pg-'));
fs.chmodSync(work, 0o755);
const data = path.join(work, 'data');
const sock = path.join(work, 'sock');
fs.mkdirSync(data, { mode: 0o700 });
fs.mkdirSync(sock, { mode: 0o755 });
if (root) execFileSync('chown', ['postgres:postgres', data, sock]);
const port = await freePort();
const pgEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'postgres' };
const psql = (sql, db = 'postgres') => execFileSync(path.join(BIN, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', db, '-c', sql], { env: pgEnv, encoding: 'utf8' }).trim();

function stop() {
  const [c, a] = asPostgres([path.join(BIN, 'pg_ctl'), '-D', data, '-m', 'fast', '-w', 'stop']);
  spawnSync(c, a, { stdio: 'ignore' });
  fs.rmSync(work, { recursive: true, force: true });
}
process.on('exit', stop);
process.on('SIGINT', () => process.exit(130));

/** Wall seconds and peak RSS (MB) of one process under /usr/bin/time; the page cache flushed first. */
function timed(cmd, args, env = {}) {
  spawnSync('sync');
  const tf = path.join(work, 'time');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', tf, cmd, ...args], { env: { ...pgEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const [wall, rss] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { wall, rssMb: rss / 1024 };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- the server and the database -----------------------------------------------------------------
{
  const [c1, a1] = asPostgres([path.join(BIN, 'initdb'), '-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C']);
  execFileSync(c1, a1, { stdio: 'pipe' });
  const [c2, a2] = asPostgres([path.join(BIN, 'pg_ctl'), '-D', data, '-w', '-l', path.join(sock, 'log'), '-o', `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c max_wal_size=2GB`, 'start']);
  execFileSync(c2, a2, { stdio: 'pipe' });
}
const t0 = Date.now();
psql('CREATE DATABASE app');
// about 55% events (text, compressible), 35% attachments (random bytea), the rest users and indexes
const events = Math.round((MB * 0.55 * 1e6) / 330);
const attachments = Math.round((MB * 0.35 * 1e6) / 8300);
psql(
  `CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE, name text, created timestamptz DEFAULT now());
   INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User ' || md5(g::text) FROM generate_series(1, 50000) g;
   CREATE TABLE events (id bigserial PRIMARY KEY, user_id int REFERENCES users(id), kind text, payload text, created timestamptz);
   INSERT INTO events (user_id, kind, payload, created)
     SELECT 1 + g % 50000, (ARRAY['login','upload','deploy','invoke','error'])[1 + g % 5],
            'request ' || md5(g::text) || ' took ' || (g % 997) || ' ms; ' || repeat('status ok; ', 8) || md5((g * 7)::text) || md5((g * 13)::text),
            now() - (g || ' seconds')::interval
     FROM generate_series(1, ${events}) g;
   CREATE INDEX events_user ON events (user_id);
   CREATE INDEX events_created ON events (created);
   CREATE TABLE attachments (id serial PRIMARY KEY, event_id bigint, data bytea);
   INSERT INTO attachments (event_id, data)
     SELECT g, (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 512) i)
     FROM generate_series(1, ${attachments}) g;
   CREATE INDEX attachments_event ON attachments (event_id);`,
  'app',
);
psql('VACUUM ANALYZE', 'app');
const dbBytes = Number(psql("SELECT pg_database_size('app')"));
log(`database app: ${(dbBytes / 1e6).toFixed(0)} MB (${events} events, ${attachments} attachments) made in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

// ---- the runs --------------------------------------------------------------------------------------
const vbDir = path.join(work, 'vb');
const vbEnv = { DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/app`, BACKUP_DIR: vbDir };
const vb = (...a) => timed(process.execPath, [cli, ...a, '--json'], vbEnv);
const dumpFile = path.join(work, 'app.dump');
const rows = { create: [], pgdump: [], pgdumpNoSync: [], restore: [], restoreNoVerify: [], restoreSwap: [], pgrestore: [] };
let rss = 0;
let ourSize = 0;
let theirSize = 0;
for (let i = 0; i < RUNS; i++) {
  fs.rmSync(vbDir, { recursive: true, force: true });
  const c = vb('create', '--type', 'database');
  rows.create.push(c.wall);
  rss = Math.max(rss, c.rssMb);
  ourSize = fs.readdirSync(path.join(vbDir, 'database')).reduce((n, f) => n + fs.statSync(path.join(vbDir, 'database', f)).size, 0);
  fs.rmSync(dumpFile, { force: true });
  rows.pgdump.push(timed(path.join(BIN, 'pg_dump'), ['-Fc', '-f', dumpFile, 'app']).wall);
  theirSize = fs.statSync(dumpFile).size;
  // pg_dump fsyncs its file at the end (all of it at once); we flush while writing: both are durable,
  // the --no-sync figure shows what the final fsync costs pg_dump on this disk
  fs.rmSync(dumpFile, { force: true });
  rows.pgdumpNoSync.push(timed(path.join(BIN, 'pg_dump'), ['-Fc', '--no-sync', '-f', dumpFile, 'app']).wall);
}
for (let i = 0; i < RUNS; i++) {
  const r = vb('restore', 'latest', '--target-db', `ours_${i}`, '--yes');
  rows.restore.push(r.wall);
  rss = Math.max(rss, r.rssMb);
  psql(`DROP DATABASE ours_${i}`);
  const n = vb('restore', 'latest', '--target-db', `ours_nv_${i}`, '--yes', '--no-verify');
  rows.restoreNoVerify.push(n.wall);
  psql(`DROP DATABASE ours_nv_${i}`);
  // the restore as an operator runs it: into a new database, then swapped in (the old one kept, dropped here)
  const w = vb('restore', 'latest', '--yes');
  rows.restoreSwap.push(w.wall);
  rss = Math.max(rss, w.rssMb);
  for (const kept of psql("SELECT datname FROM pg_database WHERE datname LIKE 'app_pre_restore_%'").split('\n').filter(Boolean)) psql(`DROP DATABASE "${kept}"`);
  // the reference: an empty database and pg_restore -j 2 from the dump file, as one shell command
  rows.pgrestore.push(timed('sh', ['-c', `${BIN}/createdb theirs_${i} && ${BIN}/pg_restore -j 2 -d theirs_${i} ${dumpFile}`]).wall);
  psql(`DROP DATABASE theirs_${i}`);
}

const m = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, median(v)]));
const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const fmt = (s) => `${s.toFixed(2)} s`;
const table = [
  `PostgreSQL, database of ${(dbBytes / 1e6).toFixed(0)} MB, medians of ${RUNS}, load ${load}`,
  '',
  '| operation | vertex-backup | reference | ratio | target |',
  '| --- | --- | --- | --- | --- |',
  `| dump | ${fmt(m.create)} (${(ourSize / 1e6).toFixed(1)} MB with globals) | ${fmt(m.pgdump)} \`pg_dump -Fc\` (${(theirSize / 1e6).toFixed(1)} MB) | ${(m.create / m.pgdump).toFixed(2)}x | ≤ 1.1x |`,
  `| dump, against pg_dump without its final fsync | ${fmt(m.create)} | ${fmt(m.pgdumpNoSync)} \`pg_dump -Fc --no-sync\` | ${(m.create / m.pgdumpNoSync).toFixed(2)}x | |`,
  `| restore --target-db (checksum beside pg_restore, rows counted) | ${fmt(m.restore)} | ${fmt(m.pgrestore)} \`createdb\` + \`pg_restore -j 2\` | ${(m.restore / m.pgrestore).toFixed(2)}x | ≤ 1.2x |`,
  `| restore --no-verify (rows counted) | ${fmt(m.restoreNoVerify)} | ${fmt(m.pgrestore)} | ${(m.restoreNoVerify / m.pgrestore).toFixed(2)}x | |`,
  `| restore swapped in (checksum beside pg_restore, rows counted, renames) | ${fmt(m.restoreSwap)} | ${fmt(m.pgrestore)} | ${(m.restoreSwap / m.pgrestore).toFixed(2)}x | ≤ 1.2x |`,
  `| peak RSS of vertex-backup | ${rss.toFixed(0)} MB | | | < 150 MB |`,
];
process.stdout.write(`${table.join('\n')}\n`);
process.stdout.write(`${JSON.stringify({ mb: dbBytes / 1e6, runs: RUNS, load, medians_s: m, all_s: rows, peak_rss_mb: rss })}\n`);
