/**
 * Fault-injection helpers: real processes (the built binary), real files, real kills, real small
 * filesystems. Nothing here imports the product's code: the suite judges what a user would see.
 *
 * Trial counts: `trials(bounded, full)` picks the bounded count for `npm test` and the full count when
 * FAULT_TRIALS is set (`npm run test:faults`). FAULT_SEED fixes the random choices (printed on start).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BIN, baseEnv, REPO, type RunOptions, type RunResult, start } from './cli.js';

export { BIN, REPO };
export const FULL = !!process.env.FAULT_TRIALS;

export function trials(bounded: number, full: number): number {
  return FULL ? full : bounded;
}

/** A small seeded PRNG (mulberry32), so a failing trial can be replayed with FAULT_SEED. */
export function rng(label: string): { seed: number; next: () => number; int: (lo: number, hi: number) => number; pick: <T>(a: T[]) => T } {
  const seed = process.env.FAULT_SEED ? Number(process.env.FAULT_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0;
  // eslint-disable-next-line no-console
  console.log(`[faults] ${label}: FAULT_SEED=${seed}${FULL ? ' (full trials)' : ' (bounded trials)'}`);
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), pick: (arr) => arr[Math.floor(next() * arr.length)] };
}

export function tempDir(prefix = 'vb-faults-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmrf(p: string | undefined): void {
  if (p) fs.rmSync(p, { recursive: true, force: true });
}

export type { RunResult } from './cli.js';

/** A clean environment: nothing from the test runner leaks in (no BACKUP_*, CI, NO_COLOR). */
export const cleanEnv = baseEnv;

/** The e2e runner with a longer default limit: fault trials run on bigger data sets. */
export function startCli(args: string[], opts: RunOptions): { child: ChildProcess; done: Promise<RunResult> } {
  return start(args, { ...opts, timeoutMs: opts.timeoutMs ?? 120_000 });
}

export function cli(args: string[], opts: RunOptions): Promise<RunResult> {
  return startCli(args, opts).done;
}

export function show(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout\n${r.stdout.slice(0, 4000)}\n--- stderr\n${r.stderr.slice(0, 4000)}`;
}

export function json<T = any>(r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (err) {
    throw new Error(`stdout is not JSON (${(err as Error).message})\n${show(r)}`);
  }
}

export function sh(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer; allowFail?: boolean } = {}) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 256 << 20 });
  const out = { code: r.status, stdout: r.stdout?.toString('utf8') ?? '', stderr: r.stderr?.toString('utf8') ?? '' };
  if (!opts.allowFail && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${out.stderr}`);
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string, stepMs = 5): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------- data sets

/**
 * A SQLite database (made by python3's sqlite3, not by our code) with the counter the prefix check
 * reads: counter(n) holds 1..N, one row per committed transaction, and filler(n, j, data) holds the
 * rows a "large" transaction adds next to its counter row. `fillerMb` of random blobs make the copy
 * take a while.
 */
export function makeCounterDb(dbPath: string, opts: { journalMode: 'wal' | 'delete'; fillerMb?: number; counter?: number }): void {
  fs.mkdirSync(path.dirname(dbPath), { recursive: true });
  const py = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=${opts.journalMode === 'wal' ? 'WAL' : 'DELETE'}")
db.execute("CREATE TABLE counter(n INTEGER PRIMARY KEY, t REAL)")
db.execute("CREATE TABLE filler(n INTEGER, j INTEGER, data BLOB, PRIMARY KEY(n, j))")
db.execute("BEGIN")
db.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) INSERT INTO filler(n, j, data) SELECT 0, i, randomblob(1000) FROM c WHERE i <= ?", (${Math.round((opts.fillerMb ?? 0) * 1000)},) * 2)
db.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) INSERT INTO counter(n, t) SELECT i, 0 FROM c WHERE i <= ?", (${opts.counter ?? 0},) * 2)
db.execute("COMMIT")
db.close()
`;
  const r = spawnSync('python3', ['-c', py, dbPath], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 could not create ${dbPath}: ${r.stderr}`);
}

/**
 * The writer: commits to counter (and `bulk` filler rows of `blob` bytes) in a tight loop until
 * SIGTERM, then writes the last committed n to `<status>`; `<status>.started` appears after the
 * first commit. One row per transaction, n = last + 1: a consistent copy holds exactly 1..max(n).
 */
const WRITER_PY = `
import os, signal, sqlite3, sys, time
db_path, bulk, blob, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
db = sqlite3.connect(db_path, timeout=120, isolation_level=None)
db.execute("PRAGMA busy_timeout=120000")
n = db.execute("SELECT coalesce(max(n), 0) FROM counter").fetchone()[0]
first = True
while not stop:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO counter(n, t) VALUES(?, ?)", (n + 1, time.time()))
    for j in range(bulk):
        db.execute("INSERT INTO filler(n, j, data) VALUES(?, ?, randomblob(?))", (n + 1, j, blob))
    db.execute("COMMIT")
    n += 1
    if first:
        open(status + ".started", "w").write(str(n))
        first = False
db.close()
open(status, "w").write(str(n))
`;

export function startCounterWriter(dbPath: string, statusFile: string, opts: { bulk: number; blob?: number }): { child: ChildProcess; stop: () => Promise<number> } {
  const child = spawn('python3', ['-c', WRITER_PY, dbPath, String(opts.bulk), String(opts.blob ?? 1000), statusFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    child,
    stop: async () => {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`counter writer exited ${code}: ${err}`);
      return Number(fs.readFileSync(statusFile, 'utf8'));
    },
  };
}

/** integrity_check and the counter of a database, by the sqlite3 CLI. */
export function counterState(dbPath: string): { integrity: string; count: number; min: number; max: number; fillerBad: number } {
  const q = (sql: string) => sh('sqlite3', ['-batch', '-cmd', '.timeout 30000', dbPath, sql]).stdout.trim();
  const integrity = q('PRAGMA integrity_check');
  const [count, min, max] = q('SELECT count(*), coalesce(min(n),0), coalesce(max(n),0) FROM counter').split('|').map(Number);
  // every transaction's filler rows are there together with its counter row, or not at all
  const fillerBad = Number(q('SELECT count(*) FROM (SELECT n, count(*) AS k FROM filler WHERE n > 0 GROUP BY n) f LEFT JOIN counter c USING(n) WHERE c.n IS NULL'));
  return { integrity, count, min, max, fillerBad };
}

/** `files` random (incompressible) files totalling about `bytes`, in nested directories. */
export function makeMedia(root: string, opts: { files: number; bytes: number; seed?: number }): void {
  fs.mkdirSync(root, { recursive: true });
  const avg = opts.bytes / opts.files;
  let x = (opts.seed ?? 12345) >>> 0;
  const r = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 4294967296);
  for (let i = 0; i < opts.files; i++) {
    const dir = path.join(root, `d${i % 7}`, `e${i % 3}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `f${String(i).padStart(4, '0')}.bin`), randomBytes(Math.max(1, Math.floor(avg * (0.2 + 1.6 * r())))));
  }
  fs.writeFileSync(path.join(root, 'readme.txt'), 'media\n');
  fs.symlinkSync('readme.txt', path.join(root, 'link'));
}

export interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size?: number;
  hash?: string;
  target?: string;
}

/** Every path under root with type, size and (for files) a content hash. */
export function treeDigest(root: string, opts: { skip?: (rel: string) => boolean; hash?: boolean } = {}): Record<string, Node> {
  const out: Record<string, Node> = {};
  const walk = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs);
    const key = rel || '.';
    if (st.isSymbolicLink()) out[key] = { type: 'symlink', target: fs.readlinkSync(abs) };
    else if (st.isDirectory()) {
      out[key] = { type: 'dir' };
      for (const n of fs.readdirSync(abs).sort()) {
        const r = rel ? `${rel}/${n}` : n;
        if (!opts.skip?.(r)) walk(r);
      }
    } else if (st.isFile()) {
      out[key] = { type: 'file', size: st.size, hash: opts.hash === false ? undefined : createHash('sha1').update(fs.readFileSync(abs)).digest('hex') };
    } else out[key] = { type: 'other' };
  };
  if (fs.existsSync(root)) walk('');
  return out;
}

export function fileHash(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every file under the backup directory whose name marks it as temporary. */
export function tempFilesIn(backupDir: string): string[] {
  const out: string[] = [];
  for (const t of ['database', 'storage', 'full']) {
    const d = path.join(backupDir, t);
    if (!fs.existsSync(d)) continue;
    for (const n of fs.readdirSync(d)) if (n.startsWith('.tmp-') || /\.tmp(\b|-|$)/.test(n)) out.push(path.join(d, n));
  }
  return out;
}

// ---------------------------------------------------------------- small filesystems

/**
 * A small filesystem at `dir`. We run as root: first `mount -t tmpfs -o size=…`; where that is refused
 * (no CAP_SYS_ADMIN), a sparse image made with `truncate` + `mkfs.ext4` mounted with `-o loop`.
 * Returns undefined when neither works (the caller skips, saying so).
 */
export function mountSmallFs(dir: string, sizeMb: number): { method: string; unmount: () => void } | undefined {
  fs.mkdirSync(dir, { recursive: true });
  const t = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (t.status === 0) return { method: 'tmpfs', unmount: () => umount(dir) };
  const img = `${dir}.img`;
  const ok =
    spawnSync('truncate', ['-s', `${sizeMb}M`, img]).status === 0 &&
    spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', img]).status === 0 &&
    spawnSync('mount', ['-o', 'loop', img, dir]).status === 0;
  if (ok) {
    return {
      method: 'ext4 loop image',
      unmount: () => {
        umount(dir);
        fs.rmSync(img, { force: true });
      },
    };
  }
  fs.rmSync(img, { force: true });
  return undefined;
}

function umount(dir: string): void {
  for (let i = 0; i < 20; i++) {
    if (spawnSync('umount', [dir]).status === 0) return;
    spawnSync('sleep', ['0.2']);
  }
  spawnSync('umount', ['-l', dir]);
}

export function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** A stack trace in output: node's `    at fn (file:line:col)` lines. */
export const STACK = /^\s+at\s.+[:(]/m;
