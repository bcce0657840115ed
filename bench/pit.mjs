// Point-in-time bench (issue 28): page deltas of the shared data set's database under the writer.
//   node bench/pit.mjs [--interval 30] [--runs 3] [--scale 1] [--grow-mb 1024] [--no-restore]
// --grow-mb: a table of random blobs added to the copy until the database is about that size (the 1 GB
// case: the writer's table stays the data set's); --no-restore: skip the restore comparison.
// Needs the built CLI (npm run build), python3 and GNU time. The data set comes from BENCH_CACHE
// (default $TMPDIR/vb-bench-cache/scale-<scale>, built with make-dataset.sh when missing) and is
// copied first: the writer never touches the cached one. Prints a table and writes bench/pit-results.json.
// Figures: per delta run (medians): wall time, peak RSS, bytes written against the bytes of the pages
// that changed; a run with nothing changed; restore to the newest point against restoring the level 0.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(here, '..', 'bin', 'vertex-backup.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const INTERVAL_S = Number(arg('interval', '30'));
const RUNS = Number(arg('runs', '3'));
const SCALE = arg('scale', '1');
const GROW_MB = Number(arg('grow-mb', '0'));
const RESTORE = !process.argv.includes('--no-restore');
const CACHE = process.env.BENCH_CACHE ?? path.join(os.tmpdir(), 'vb-bench-cache');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

function timed(args, env) {
  const tf = path.join(os.tmpdir(), `vb-pit-time-${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', tf, process.execPath, BIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  const [wall, rss] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  fs.rmSync(tf, { force: true });
  if (r.status !== 0) throw new Error(`vertex-backup ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return { wall, rssMb: rss / 1024, stdout: r.stdout };
}

const dataset = path.join(CACHE, `scale-${SCALE}`);
if (!fs.existsSync(path.join(dataset, 'app_data.db'))) {
  fs.mkdirSync(CACHE, { recursive: true });
  execFileSync('bash', [path.join(here, 'make-dataset.sh'), dataset, SCALE], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pit-bench-'));
let writer;
try {
  const db = path.join(work, 'app_data.db');
  for (const s of ['', '-wal']) if (fs.existsSync(path.join(dataset, `app_data.db${s}`))) fs.copyFileSync(path.join(dataset, `app_data.db${s}`), db + s);
  if (GROW_MB > 0) {
    const have = fs.statSync(db).size / 1048576;
    const rows = Math.max(0, Math.ceil(((GROW_MB - have) * 1048576) / 4000));
    // pages the writer never touches: what a big database mostly is
    execFileSync('sqlite3', [db, `CREATE TABLE IF NOT EXISTS filler(b BLOB); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${rows}) INSERT INTO filler SELECT randomblob(3900) FROM c;`]);
  }
  const env = { DATABASE_PATH: db, BACKUP_DIR: path.join(work, 'backups'), STORAGE_PATH: path.join(work, 'storage'), NO_COLOR: '1' };
  const dbMb = fs.statSync(db).size / 1e6;
  const sidecar = (id) => JSON.parse(fs.readFileSync(path.join(env.BACKUP_DIR, 'database', `db_backup_${id}.json`), 'utf8'));
  const idOf = (stdout) => JSON.parse(stdout).id;

  const status = path.join(work, 'writer.status');
  writer = spawn('python3', [path.join(here, 'sqlite-writer.py'), db, '10', '0', status], { stdio: 'ignore' });
  while (!fs.existsSync(`${status}.started`)) await sleep(20);
  const level0 = timed(['create', '--type', 'database', '--incremental', '--json'], env);
  const l0 = idOf(level0.stdout);
  const deltas = [];
  for (let i = 0; i < RUNS; i++) {
    await sleep(INTERVAL_S * 1000);
    const t = timed(['create', '--type', 'database', '--incremental', '--json'], env);
    const s = sidecar(idOf(t.stdout));
    const pageBytes = (s.pages ?? 0) * s.sqlite.page_size;
    deltas.push({ id: s.id, level: s.level, wall: t.wall, rssMb: t.rssMb, bytes: s.file_size, pageBytes, pages: s.pages, sidecarBytes: fs.statSync(path.join(env.BACKUP_DIR, 'database', `db_backup_${s.id}.json`)).size, load: load() });
  }
  writer.kill('SIGTERM');
  await new Promise((r) => writer.once('exit', r));
  const [tx, , secs, txPerS] = fs.readFileSync(status, 'utf8').trim().split(' ').map(Number);

  // nothing changed since the last run (the writer is stopped)
  timed(['create', '--type', 'database', '--incremental', '--json'], env);
  const idle = timed(['create', '--type', 'database', '--incremental', '--json'], env);
  const idleSc = sidecar(idOf(idle.stdout));
  const idleBytes = idleSc.file_size + fs.statSync(path.join(env.BACKUP_DIR, 'database', `db_backup_${idleSc.id}.json`)).size;

  const restoreL0 = [];
  const restorePit = [];
  // the newest delta state (a run may have started a new level 0: its deltas passed 50% of the copy)
  const newest = deltas.filter((d) => d.level > 0).at(-1);
  const levels = deltas.map((d) => d.level);
  const only = deltas.filter((d) => d.level > 0);
  for (let i = 0; i < (RESTORE ? 3 : 0); i++) {
    restoreL0.push(timed(['restore', l0, '--target', path.join(work, `r0-${i}`), '--yes'], env).wall);
    restorePit.push(timed(['restore', '--at', sidecar(newest.id).snapshot_at, '--target', path.join(work, `rp-${i}`), '--yes'], env).wall);
  }

  const result = {
    measured_at: new Date().toISOString(),
    load_after: load(),
    database_mb: Number(dbMb.toFixed(1)),
    interval_s: INTERVAL_S,
    writer: { tx, seconds: secs, tx_per_s: txPerS },
    level0: { wall_s: level0.wall, rss_mb: Number(level0.rssMb.toFixed(1)) },
    delta_runs: deltas,
    levels,
    delta_median: {
      wall_s: median(only.map((d) => d.wall)),
      rss_mb: Number(median(only.map((d) => d.rssMb)).toFixed(1)),
      bytes_over_changed_pages: Number(median(only.map((d) => d.bytes / Math.max(1, d.pageBytes))).toFixed(4)),
      overhead_bytes: median(only.map((d) => d.bytes - d.pageBytes)),
      changed_mb: Number((median(only.map((d) => d.pageBytes)) / 1e6).toFixed(1)),
    },
    nothing_changed: { wall_s: idle.wall, bytes_added: idleBytes },
    restore: RESTORE
      ? { level0_median_s: median(restoreL0), point_median_s: median(restorePit), ratio: Number((median(restorePit) / median(restoreL0)).toFixed(2)) }
      : undefined,
  };
  console.log(`database ${result.database_mb} MB, writer ${txPerS} tx/s, a run every ${INTERVAL_S} s, levels ${levels.join(' ')}; load after: ${result.load_after}`);
  console.log(`level 0: ${level0.wall} s, ${result.level0.rss_mb} MB RSS; changed pages per delta (median): ${result.delta_median.changed_mb} MB`);
  console.log('| measure | value | target |');
  console.log('| --- | ---: | --- |');
  console.log(`| delta run, wall (median of ${only.length}) | ${result.delta_median.wall_s} s | ≤ 1 s |`);
  console.log(`| delta run, peak RSS | ${result.delta_median.rss_mb} MB | < 150 MB |`);
  console.log(`| bytes written / bytes of changed pages | ${result.delta_median.bytes_over_changed_pages} (+${result.delta_median.overhead_bytes} B) | ≤ 1.2 (+ < 4 KB) |`);
  console.log(`| run with nothing changed | ${idle.wall} s, ${idleBytes} B added | ≤ 1 KB |`);
  if (result.restore)
    console.log(`| restore to a point / restore of the level 0 | ${result.restore.point_median_s} s / ${result.restore.level0_median_s} s = ${result.restore.ratio} | ≤ 2 |`);
  fs.writeFileSync(path.join(here, GROW_MB ? `pit-results-${GROW_MB}mb.json` : 'pit-results.json'), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  // a failed run must not leave the writer going
  if (writer && writer.exitCode === null && writer.signalCode === null) writer.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}
