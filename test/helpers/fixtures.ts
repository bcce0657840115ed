/**
 * A fixture "application" the way the tool meets it on a server: a SQLite database (made by python3's
 * sqlite3 module, not by our code) and a media tree with the awkward parts real trees have.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function tempDir(prefix = 'vb-e2e-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmrf(p: string | undefined): void {
  if (p) fs.rmSync(p, { recursive: true, force: true });
}

export interface AppFixture {
  /** the working directory the tool runs in */
  cwd: string;
  dbPath: string;
  storagePath: string;
  backupDir: string;
  rows: Record<string, number>;
  /** base flags: --db-path, --storage-path, --backup-dir */
  flags: string[];
}

export interface AppOptions {
  journalMode?: 'wal' | 'delete';
  /** rows in scan_events (about 200 bytes each) */
  events?: number;
  /** bytes of random (incompressible) data spread over the media files */
  randomBytes?: number;
  /**
   * WAL mode only: end the creating process without closing the database, so committed rows stay in
   * the -wal file (what a running application leaves on disk). A file copy would miss them.
   */
  leaveWal?: boolean;
  /** no media tree beyond a single small file */
  minimalStorage?: boolean;
}

const SCHEMA = `
CREATE TABLE clients(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE);
CREATE TABLE portraits(id INTEGER PRIMARY KEY, client_id INTEGER REFERENCES clients(id), image_path TEXT, marker_path TEXT, created_at TEXT);
CREATE TABLE scan_events(id INTEGER PRIMARY KEY, portrait_id INTEGER, client_id INTEGER, ts INTEGER, ip TEXT, user_agent TEXT, country TEXT, duration_ms INTEGER, referrer TEXT);
CREATE INDEX scan_events_ts ON scan_events(ts);
`;

/** Creates the database with python3's sqlite3 module. */
export function makeDatabase(dbPath: string, opts: AppOptions = {}): Record<string, number> {
  const events = opts.events ?? 2000;
  const rows = { clients: 25, portraits: 300, scan_events: events };
  const py = `
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=${opts.journalMode === 'delete' ? 'DELETE' : 'WAL'}")
db.execute("PRAGMA wal_autocheckpoint=0")
db.executescript(${JSON.stringify(SCHEMA)})
db.execute("BEGIN")
for i in range(1, ${rows.clients} + 1):
    db.execute("INSERT INTO clients(id, name, email) VALUES(?, ?, ?)", (i, "Клиент %d" % i, "c%d@example.org" % i))
for i in range(1, ${rows.portraits} + 1):
    db.execute("INSERT INTO portraits(id, client_id, image_path, marker_path, created_at) VALUES(?, ?, ?, ?, ?)",
               (i, 1 + i % ${rows.clients}, "images/фото %d.jpg" % i, "markers/%d.patt" % i, "2024-01-01T00:00:00Z"))
db.execute("COMMIT")
ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
n = ${events}
done = 0
while done < n:
    db.execute("BEGIN")
    for j in range(min(5000, n - done)):
        k = done + j
        db.execute("INSERT INTO scan_events(portrait_id, client_id, ts, ip, user_agent, country, duration_ms, referrer) VALUES(?,?,?,?,?,?,?,?)",
                   (1 + k % ${rows.portraits}, 1 + k % ${rows.clients}, 1700000000 + k, "10.0.%d.%d" % (k // 256 % 256, k % 256), ua, "DE", k % 90000, "qr"))
    db.execute("COMMIT")
    done += min(5000, n - done)
if ${opts.leaveWal ? 'True' : 'False'}:
    os._exit(0)  # no close, no checkpoint: the rows stay in the -wal file
db.close()
`;
  const r = spawnSync('python3', ['-c', py, dbPath], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 could not create ${dbPath}: ${r.stderr}`);
  return rows;
}

const MTIME_BASE = Date.UTC(2023, 4, 6, 7, 8, 9) / 1000;

/** The media tree: nested and empty directories, symlinks, spaces and non-ASCII names, modes, random data. */
export function makeStorage(root: string, opts: AppOptions = {}): void {
  const total = opts.randomBytes ?? 3 * 1024 * 1024;
  fs.mkdirSync(root, { recursive: true });
  if (opts.minimalStorage) {
    fs.writeFileSync(path.join(root, 'one.txt'), 'one\n');
    return;
  }
  const files: [string, Buffer | string, number][] = [
    ['images/фото 1.jpg', randomBytes(Math.floor(total * 0.3)), 0o640],
    ['images/фото 2.jpg', randomBytes(Math.floor(total * 0.1)), 0o640],
    ['images/nested/deeper/file with spaces.bin', randomBytes(Math.floor(total * 0.15)), 0o644],
    ['videos/clip 01.mp4', randomBytes(Math.floor(total * 0.45)), 0o600],
    ['markers/marker.patt', 'pattern data\n'.repeat(2000), 0o644],
    ['scripts/run.sh', '#!/bin/sh\necho hello\n', 0o755],
    ['日本語/ñandú ü.txt', 'non-ascii name\n', 0o644],
    ['cache/thumb.tmp', randomBytes(4096), 0o644],
    ['notes.tmp', 'temporary\n', 0o644],
    ['zero-length.dat', '', 0o644],
  ];
  for (const [rel, data, mode] of files) {
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, data);
    fs.chmodSync(abs, mode);
  }
  fs.mkdirSync(path.join(root, 'empty dir'));
  fs.mkdirSync(path.join(root, 'images/nested/empty'), { recursive: true });
  fs.symlinkSync('images/фото 1.jpg', path.join(root, 'link to photo'));
  fs.symlinkSync('../videos', path.join(root, 'images/videos-link'));
  fs.symlinkSync('does-not-exist', path.join(root, 'dangling'));
  fs.chmodSync(path.join(root, 'scripts'), 0o755);
  fs.chmodSync(path.join(root, 'videos'), 0o750);
  fs.chmodSync(root, 0o750);
  // fixed mtimes, deepest first, so a directory's time is not changed by writing into it afterwards
  const all = listTree(root).sort((a, b) => b.split('/').length - a.split('/').length);
  all.forEach((rel, i) => {
    const abs = path.join(root, rel);
    const t = MTIME_BASE + i * 61;
    if (fs.lstatSync(abs).isSymbolicLink()) fs.lutimesSync(abs, t, t);
    else fs.utimesSync(abs, t, t);
  });
  fs.utimesSync(root, MTIME_BASE - 3600, MTIME_BASE - 3600);
}

function listTree(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(root, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    out.push(r);
    const st = fs.lstatSync(path.join(root, r));
    if (st.isDirectory()) out.push(...listTree(root, r));
  }
  return out;
}

export function makeApp(opts: AppOptions = {}): AppFixture {
  const cwd = tempDir();
  const dbPath = path.join(cwd, 'app_data', 'app_data.db');
  fs.mkdirSync(path.dirname(dbPath), { recursive: true });
  const rows = makeDatabase(dbPath, opts);
  const storagePath = path.join(cwd, 'storage');
  makeStorage(storagePath, opts);
  const backupDir = path.join(cwd, 'backups');
  return { cwd, dbPath, storagePath, backupDir, rows, flags: ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', backupDir] };
}

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  mtime?: number;
  size?: number;
  sha256?: string;
  target?: string;
}

/** Every path under root with what a restore must reproduce: type, content, mode, mtime (s), link target. */
export function snapshot(root: string, options: { exclude?: (rel: string) => boolean; dirTimes?: boolean } = {}): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  const add = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs);
    const key = rel || '.';
    if (st.isSymbolicLink()) {
      out[key] = { type: 'symlink', mode: 0, target: fs.readlinkSync(abs) };
    } else if (st.isDirectory()) {
      out[key] = { type: 'dir', mode: st.mode & 0o7777 };
      if (options.dirTimes !== false) out[key].mtime = Math.floor(st.mtimeMs / 1000);
      for (const name of fs.readdirSync(abs)) {
        const r = rel ? `${rel}/${name}` : name;
        if (!options.exclude?.(r)) add(r);
      }
    } else if (st.isFile()) {
      out[key] = {
        type: 'file',
        mode: st.mode & 0o7777,
        mtime: Math.floor(st.mtimeMs / 1000),
        size: st.size,
        sha256: createHash('sha256').update(fs.readFileSync(abs)).digest('hex'),
      };
    } else out[key] = { type: 'other', mode: st.mode & 0o7777 };
  };
  add('');
  return out;
}

/** Every file and directory under root (not following symlinks) with its permission bits. */
export function modesUnder(root: string): { path: string; dir: boolean; mode: number }[] {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  const walk = (abs: string) => {
    const st = fs.lstatSync(abs);
    out.push({ path: abs, dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) for (const n of fs.readdirSync(abs)) walk(path.join(abs, n));
  };
  walk(root);
  return out;
}

/** Every path under root, relative, sorted. */
export function filesUnder(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return listTree(root).sort();
}

export function sha256sum(file: string): string {
  const r = spawnSync('sha256sum', ['--', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sha256sum ${file}: ${r.stderr}`);
  return r.stdout.split(/\s+/)[0];
}

/** sqlite3 CLI: one query, output trimmed. */
export function sqlite(db: string, sql: string): string {
  const r = spawnSync('sqlite3', ['-batch', db, sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 ${db} '${sql}' exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

export function flipByte(file: string, offset?: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const size = fs.fstatSync(fd).size;
    const at = offset ?? Math.floor(size / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** A pid that is certainly not running: a child that has exited and been reaped. */
export function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}
