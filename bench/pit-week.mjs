// A week of page deltas at 30 s, simulated with the real code (issue 28: "a week of deltas ≤ 3× the
// database after retention"): a small database changed between runs (K rows rewritten in place, 80% of
// them in a hot tenth, and a few rows appended), 20,160 runs of create --incremental in this process on
// a clock that starts seven days ago, rotate's merging at each simulated midnight, then a real rotate
// (time retention and the configured rules) at the end. Reports the bytes of the database directory
// against the database's size, and how many level 0s the 50% rule started.
//   node bench/pit-week.mjs [--rows-per-run 8] [--days 7] [--rows 4000]
// Needs the built code (npm run build). Writes bench/pit-week-results-<K>.json.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = (m) => import(path.join(here, '..', 'dist', m));
const { resolveConfig } = await dist('config.js');
const { backupDatabaseIncremental } = await dist('ops/db-delta.js');
const { compactPageChains } = await dist('ops/pit-compact.js');
const { runRotate } = await dist('ops/rotate.js');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return Number(i > 0 ? process.argv[i + 1] : dflt);
};
const K = arg('rows-per-run', '8');
const DAYS = arg('days', '7');
const ROWS = arg('rows', '4000');
const STEP = 30_000;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pit-week-'));
const idOf = (d) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
const dirBytes = (dir) => fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
try {
  const dbPath = path.join(work, 'app.db');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) ins.run(randomBytes(900));
  })();
  const upd = db.prepare('UPDATE t SET v = ? WHERE id = ?');
  let rows = ROWS;
  const change = () =>
    db.transaction(() => {
      for (let i = 0; i < K; i++) {
        const hot = Math.random() < 0.8;
        const id = 1 + Math.floor(Math.random() * (hot ? rows / 10 : rows));
        upd.run(randomBytes(900), id);
      }
      // the database grows a little: one row every other run
      if (Math.random() < 0.5) {
        ins.run(randomBytes(900));
        rows++;
      }
    })();
  const cfg = resolveConfig({}, { DATABASE_PATH: dbPath, BACKUP_DIR: path.join(work, 'backups'), STORAGE_PATH: path.join(work, 'storage'), HOME: work }, work);
  const dir = path.join(cfg.backupDir, 'database');
  const start = Math.floor((Date.now() - DAYS * 86_400_000) / STEP) * STEP;
  const runs = (DAYS * 86_400_000) / STEP;
  let level0 = 0;
  let peak = 0;
  const t0 = Date.now();
  for (let i = 0; i < runs; i++) {
    const at = new Date(start + i * STEP);
    change();
    const b = await backupDatabaseIncremental(cfg, idOf(at), at, { incremental: true });
    if (b.level === 0) level0++;
    // the snapshot stands for the simulated moment
    const sc = JSON.parse(fs.readFileSync(b.sidecarPath, 'utf8'));
    sc.snapshot_at = at.toISOString();
    fs.writeFileSync(b.sidecarPath, `${JSON.stringify(sc)}\n`);
    if ((i + 1) % 2880 === 0) {
      // the nightly rotate's merging, at the simulated midnight
      await compactPageChains(cfg, { now: new Date(at.getTime() + STEP) });
      peak = Math.max(peak, dirBytes(dir));
      console.error(`day ${(i + 1) / 2880}: ${(dirBytes(dir) / 1e6).toFixed(1)} MB, ${level0} level 0s, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  db.close();
  const before = dirBytes(dir);
  const rot = await runRotate(cfg, { policy: cfg.retention });
  const after = dirBytes(dir);
  const dbBytes = fs.statSync(dbPath).size;
  const states = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).length;
  const result = {
    measured_at: new Date().toISOString(),
    load_after: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    days: DAYS,
    runs,
    rows_rewritten_per_run: K,
    database_bytes: dbBytes,
    level0_started: level0,
    before_final_rotate_bytes: before,
    after_retention_bytes: after,
    ratio_after_retention: Number((after / dbBytes).toFixed(2)),
    states_kept: states,
    merged_final: rot.compacted?.merged.length ?? 0,
    removed_by_rules: rot.removed.length,
    policy: cfg.retention,
    sim_seconds: Math.round((Date.now() - t0) / 1000),
  };
  console.log(JSON.stringify(result, null, 2));
  fs.writeFileSync(path.join(here, `pit-week-results-${K}.json`), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
