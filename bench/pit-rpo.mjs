// Achieved RPO of page deltas under the scheduler (issue 28): the shared writer at full speed on a copy
// of the shared data set's database, `vertex-backup schedule` with only the job 'pit' enabled (every
// 30 s) for --minutes, then the gaps between consecutive restorable states (their snapshot times, as
// drill reports them) and each run's duration from backup.log.
//   node bench/pit-rpo.mjs [--minutes 10] [--scale 1]
// Needs the built CLI (npm run build) and python3. Writes bench/pit-rpo-results.json.
import { execFileSync, spawn } from 'node:child_process';
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
const MINUTES = Number(arg('minutes', '10'));
const SCALE = arg('scale', '1');
const CACHE = process.env.BENCH_CACHE ?? path.join(os.tmpdir(), 'vb-bench-cache');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(s.length * p) - 1)] : 0;
};

const dataset = path.join(CACHE, `scale-${SCALE}`);
if (!fs.existsSync(path.join(dataset, 'app_data.db'))) {
  fs.mkdirSync(CACHE, { recursive: true });
  execFileSync('bash', [path.join(here, 'make-dataset.sh'), dataset, SCALE], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pit-rpo-'));
let writer;
let scheduler;
try {
  const db = path.join(work, 'app_data.db');
  for (const s of ['', '-wal']) if (fs.existsSync(path.join(dataset, `app_data.db${s}`))) fs.copyFileSync(path.join(dataset, `app_data.db${s}`), db + s);
  const backups = path.join(work, 'backups');
  const env = {
    ...process.env,
    DATABASE_PATH: db,
    BACKUP_DIR: backups,
    STORAGE_PATH: path.join(work, 'storage'),
    NO_COLOR: '1',
    BACKUP_PIT_ENABLED: 'true',
    // nothing else may run in the window
    BACKUP_FULL_ENABLED: 'false',
    BACKUP_DATABASE_ENABLED: 'false',
    BACKUP_STORAGE_ENABLED: 'false',
    BACKUP_ROTATION_ENABLED: 'false',
    BACKUP_CHECK_ENABLED: 'false',
  };
  const status = path.join(work, 'writer.status');
  writer = spawn('python3', [path.join(here, 'sqlite-writer.py'), db, '10', '0', status], { stdio: 'ignore' });
  while (!fs.existsSync(`${status}.started`)) await sleep(20);
  const loads = [];
  scheduler = spawn(process.execPath, [BIN, 'schedule'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let schedErr = '';
  scheduler.stderr.on('data', (d) => (schedErr += d));
  const started = Date.now();
  while (Date.now() - started < MINUTES * 60_000) {
    await sleep(30_000);
    loads.push(os.loadavg()[0]);
  }
  scheduler.kill('SIGTERM');
  await new Promise((r) => scheduler.once('exit', r));
  writer.kill('SIGTERM');
  await new Promise((r) => writer.once('exit', r));
  const [tx, , secs, txPerS] = fs.readFileSync(status, 'utf8').trim().split(' ').map(Number);

  const dir = path.join(backups, 'database');
  const states = fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .map((n) => JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')))
    .map((s) => ({ id: s.id, level: s.level ?? 0, at: Date.parse(s.snapshot_at ?? s.created_at), ms: s.duration_ms }))
    .sort((a, b) => a.at - b.at);
  const gaps = states.slice(1).map((s, i) => s.at - states[i].at);
  // the worst data loss at any moment of the window: from a state's snapshot until the next state is committed
  const exposure = states.slice(1).map((s, i) => s.at + s.ms - states[i].at);
  const result = {
    measured_at: new Date().toISOString(),
    minutes: MINUTES,
    load_1min_during: { min: Math.min(...loads), max: Math.max(...loads) },
    load_after: load(),
    writer: { tx, seconds: secs, tx_per_s: txPerS },
    states: states.length,
    level0: states.filter((s) => s.level === 0).length,
    gap_s: { median: pct(gaps, 0.5) / 1000, p99: pct(gaps, 0.99) / 1000, max: Math.max(...gaps) / 1000 },
    exposure_s: { p99: pct(exposure, 0.99) / 1000, max: Math.max(...exposure) / 1000 },
    run_s: { median: pct(states.map((s) => s.ms), 0.5) / 1000, p99: pct(states.map((s) => s.ms), 0.99) / 1000 },
    scheduler_stderr: schedErr.split('\n').filter((l) => /error|fail/i.test(l)).slice(0, 5),
  };
  console.log(JSON.stringify(result, null, 2));
  fs.writeFileSync(path.join(here, 'pit-rpo-results.json'), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  for (const p of [scheduler, writer]) if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}
