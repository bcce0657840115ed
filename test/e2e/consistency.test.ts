/**
 * Issue 2, item 2 (promise: consistent database copies): another process commits to the source
 * database the whole time `create --type database` runs; the copy must pass sqlite3's integrity_check.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { makeDatabase, rmrf, sqlite, tempDir } from '../helpers/fixtures.js';

const WRITER = '/work/shared/bench/sqlite-writer.py';
// our own copy of the same loop, used when the shared bench script is not there
const FALLBACK_WRITER = `
import sqlite3, sys, signal
db_path, rows, pause, status = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
stop = False
def on_term(*_):
    global stop; stop = True
signal.signal(signal.SIGTERM, on_term)
db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
db.execute("PRAGMA busy_timeout=30000")
tx = 0; ts = 1800000000
while not stop:
    db.execute("BEGIN IMMEDIATE")
    for _ in range(rows):
        ts += 1
        db.execute("INSERT INTO scan_events(portrait_id, client_id, ts, ip, user_agent, country, duration_ms, referrer) VALUES(1, 1, ?, '10.9.9.9', 'writer', 'DE', 1, 'qr')", (ts,))
    db.execute("COMMIT"); tx += 1
    if tx == 1: open(status + ".started", "w").write("1")
db.close()
open(status, "w").write("%d %d\\n" % (tx, tx * rows))
`;

const dirs: string[] = [];
const writers: ChildProcess[] = [];
afterEach(() => {
  for (const w of writers.splice(0)) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmrf(d);
});

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.each(['wal', 'delete'] as const)('create --type database while a writer commits all the time (journal_mode=%s)', (mode) => {
  it('finishes, and the copy passes integrity_check with every table', async () => {
    const cwd = tempDir();
    dirs.push(cwd);
    const db = path.join(cwd, 'app.db');
    const rows = makeDatabase(db, { journalMode: mode, events: 30_000 });
    expect(sqlite(db, 'PRAGMA journal_mode')).toBe(mode);
    const status = path.join(cwd, 'writer.status');
    const args = fs.existsSync(WRITER) ? [WRITER, db, '10', '0', status] : ['-c', FALLBACK_WRITER, db, '10', '0', status];
    const writer = spawn('python3', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    writers.push(writer);
    let writerErr = '';
    writer.stderr!.on('data', (d) => (writerErr += d));
    const writerExit = new Promise<number | null>((resolve) => writer.on('close', (code) => resolve(code)));
    await waitFor(() => fs.existsSync(`${status}.started`), 15_000, 'the writer to commit');

    const backupDir = path.join(cwd, 'backups');
    const r = await run(['create', '--type', 'database', '--json', '--db-path', db, '--backup-dir', backupDir], { cwd, timeoutMs: 60_000 });
    // the writer was still running when the backup ended: the writes really overlapped it
    const stillWriting = writer.exitCode === null;
    writer.kill('SIGTERM');
    const writerCode = await writerExit;
    expect(writerCode, `writer: ${writerErr}`).toBe(0);
    expect(stillWriting).toBe(true);

    expect(r.code, describeRun(r)).toBe(0);
    const json = parseJsonStdout<{ id: string }>(r);
    const copy = path.join(backupDir, 'database', `db_backup_${json.id}.db`);
    expect(sqlite(copy, 'PRAGMA integrity_check')).toBe('ok');
    expect(sqlite(copy, "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type IN ('table','index') AND name NOT LIKE 'sqlite_%' ORDER BY name)")).toBe(
      'clients,portraits,scan_events,scan_events_ts',
    );
    expect(Number(sqlite(copy, 'SELECT count(*) FROM clients'))).toBe(rows.clients);
    expect(Number(sqlite(copy, 'SELECT count(*) FROM portraits'))).toBe(rows.portraits);
    const [tx] = fs.readFileSync(status, 'utf8').trim().split(/\s+/).map(Number);
    const copied = Number(sqlite(copy, 'SELECT count(*) FROM scan_events'));
    const final = Number(sqlite(db, 'SELECT count(*) FROM scan_events'));
    // a point in time between the writer's first commit and its last one, never a torn transaction
    expect(copied).toBeGreaterThanOrEqual(rows.scan_events + 10);
    expect(copied).toBeLessThanOrEqual(final);
    expect((copied - rows.scan_events) % 10).toBe(0);
    expect(final).toBe(rows.scan_events + tx * 10);
    const sc = readJson<{ sqlite: { integrity: string; journal_mode: string } }>(path.join(backupDir, 'database', `db_backup_${json.id}.json`));
    expect(sc.sqlite.integrity).toBe('ok');
    expect(sc.sqlite.journal_mode).toBe(mode);
  });
});
