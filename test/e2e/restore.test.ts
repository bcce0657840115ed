/**
 * Issue 3: `restore` against the built binary and real files. Round trips of database, storage and full
 * backups (live paths and --target; by id, `latest` and paths), a live WAL database held open by another
 * process, the copies kept aside, confirmation (no TTY, a real pty answering n / y), damaged backups.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, baseEnv, describeRun, parseJsonStdout, readJson, run, type RunResult } from '../helpers/cli.js';
import { findBackup } from '../../src/catalog/local-store.js';
import { verifyEntry } from '../../src/ops/verify.js';
import { type AppFixture, flipByte, makeApp, rmrf, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';

interface RestoreJson {
  type: string;
  id: string;
  verified: boolean;
  cancelled?: boolean;
  database?: { backup_id: string; to: string; saved_current_as?: string; integrity: string };
  storage?: { backup_id: string; to: string; previous_kept_as?: string; entries: number; bytes: number; warnings: string[] };
}

interface CreatedJson {
  id: string;
  backups: { type: string; id: string; sidecar_path: string; files: string[] }[];
}

const apps: AppFixture[] = [];
const scratch: string[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
  for (const d of scratch) rmrf(d);
});

/** A small application: WAL database, the awkward media tree with ~256 KiB of random data. */
function newApp(): AppFixture {
  const app = makeApp({ journalMode: 'wal', events: 2000, randomBytes: 256 * 1024 });
  apps.push(app);
  return app;
}

async function create(app: AppFixture, type: 'full' | 'database' | 'storage'): Promise<CreatedJson> {
  const r = await run(['create', '--type', type, '--json', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<CreatedJson>(r);
}

const restore = (app: AppFixture, args: string[]) => run(['restore', ...args, ...app.flags], { cwd: app.cwd });

/** The whole database as SQL text: schema and every row, independent of page layout. */
const dump = (db: string) => sqlite(db, '.dump');
const count = (db: string, table = 'scan_events') => Number(sqlite(db, `SELECT count(*) FROM ${table}`));
const integrity = (db: string) => sqlite(db, 'PRAGMA integrity_check');

/** Changes the application's data after a backup: rows added, changed and removed; files added, changed, removed, re-moded. */
function changeData(app: AppFixture): void {
  sqlite(
    app.dbPath,
    `BEGIN;
     INSERT INTO scan_events(portrait_id, client_id, ts, ip, user_agent, country, duration_ms, referrer)
       SELECT portrait_id, client_id, ts + 1000000, ip, 'after-backup', 'FR', 1, 'changed' FROM scan_events LIMIT 345;
     UPDATE clients SET name = 'renamed after backup' WHERE id = 3;
     DELETE FROM portraits WHERE id > 250;
     CREATE TABLE added_after_backup(x);
     COMMIT;`,
  );
  const s = app.storagePath;
  fs.writeFileSync(path.join(s, 'added after backup.txt'), 'new\n');
  fs.writeFileSync(path.join(s, 'markers/marker.patt'), 'changed content\n');
  fs.rmSync(path.join(s, 'scripts/run.sh'));
  fs.rmSync(path.join(s, 'empty dir'), { recursive: true });
  fs.chmodSync(path.join(s, 'zero-length.dat'), 0o600);
  fs.rmSync(path.join(s, 'link to photo'));
  fs.symlinkSync('videos/clip 01.mp4', path.join(s, 'link to photo'));
}

/** Everything of the application on disk (database files, storage, siblings), backups excluded. */
const liveState = (app: AppFixture) => snapshot(app.cwd, { exclude: (rel) => rel === 'backups' || rel.startsWith('backups/') });
/** The backup directory, without the log and the lock (which a refused run may legitimately touch). */
const backupState = (app: AppFixture) => snapshot(app.backupDir, { exclude: (rel) => rel === 'backup.log' || /\.lock(\.db)?$/.test(rel), dirTimes: false });

/** What a restore left beside the live paths: pre-restore copies, staging directories, swap markers. */
const siblings = (dir: string) => fs.readdirSync(dir).sort();

/**
 * Runs the binary under a pseudo-terminal (python3's pty module, like runTty) and types `answer` + Enter
 * once the prompt "Proceed?" has appeared. Returns what the terminal showed and the exit code.
 */
function runTtyAnswering(args: string[], cwd: string, answer: string): { code: number | null; output: string } {
  const py = `
import os, pty, sys, time, select, fcntl, termios, struct
answer = sys.argv[1].encode() + b'\\r'
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    os.execvp(sys.argv[2], sys.argv[2:])
out = b''
sent = False
deadline = time.time() + 50
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if fd in r:
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    if not sent and b'Proceed?' in out:
        os.write(fd, answer)
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(st))
`;
  const r = spawnSync('python3', ['-c', py, answer, process.execPath, BIN, ...args], {
    cwd,
    env: baseEnv(cwd),
    encoding: 'utf8',
    timeout: 60_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { code: r.status, output: (r.stdout ?? '') + (r.stderr ?? '') };
}

// ---------------------------------------------------------------------------------------------------

describe('full backup: restore <id> --yes into the live paths', () => {
  let app: AppFixture;
  let id: string;
  let dumpAtBackup: string;
  let treeAtBackup: ReturnType<typeof snapshot>;
  let dumpBeforeRestore: string;
  let treeBeforeRestore: ReturnType<typeof snapshot>;
  let result: RunResult;
  let modeBefore: number;

  beforeAll(async () => {
    app = newApp();
    dumpAtBackup = dump(app.dbPath);
    treeAtBackup = snapshot(app.storagePath);
    id = (await create(app, 'full')).id;
    changeData(app);
    dumpBeforeRestore = dump(app.dbPath);
    treeBeforeRestore = snapshot(app.storagePath);
    modeBefore = fs.statSync(app.dbPath).mode & 0o777;
    expect(dumpBeforeRestore).not.toBe(dumpAtBackup);
    expect(treeBeforeRestore).not.toEqual(treeAtBackup);
    result = await restore(app, [id, '--yes']);
  });

  it('exits 0', () => {
    expect(result.code, describeRun(result)).toBe(0);
  });

  it('the database holds exactly the rows and schema of the backup, and passes integrity_check', () => {
    expect(count(app.dbPath)).toBe(2000);
    expect(sqlite(app.dbPath, "SELECT name FROM clients WHERE id = 3")).toBe('Клиент 3');
    expect(dump(app.dbPath)).toBe(dumpAtBackup);
    expect(integrity(app.dbPath)).toBe('ok');
  });

  it('the live database keeps its journal mode (wal) and its file mode', () => {
    expect(sqlite(app.dbPath, 'PRAGMA journal_mode')).toBe('wal');
    expect(fs.statSync(app.dbPath).mode & 0o777).toBe(modeBefore);
  });

  it('the storage tree is identical to the backed-up one (content, empty dirs, symlinks, modes, non-ASCII names, file mtimes)', () => {
    expect(snapshot(app.storagePath, { dirTimes: false })).toEqual(snapshot_noDirTimes(treeAtBackup));
  });

  it('directory mtimes of the restored tree are those of the backed-up tree', () => {
    const dirs = (s: ReturnType<typeof snapshot>) => Object.fromEntries(Object.entries(s).filter(([, n]) => n.type === 'dir').map(([k, n]) => [k, n.mtime]));
    expect(dirs(snapshot(app.storagePath))).toEqual(dirs(treeAtBackup));
  });

  it('the replaced database is kept as <db>.pre-restore-<id> with the data changed after the backup', () => {
    const aside = `${app.dbPath}.pre-restore-${id}`;
    expect(fs.existsSync(aside), siblings(path.dirname(app.dbPath)).join(', ')).toBe(true);
    expect(integrity(aside)).toBe('ok');
    expect(count(aside)).toBe(2345);
    expect(dump(aside)).toBe(dumpBeforeRestore);
  });

  it('the replaced storage tree is kept as <storage>.pre-restore-<id>, unchanged', () => {
    const kept = `${app.storagePath}.pre-restore-${id}`;
    expect(fs.existsSync(kept), siblings(app.cwd).join(', ')).toBe(true);
    expect(snapshot(kept)).toEqual(treeBeforeRestore);
  });

  it('leaves no staging directory or swap marker beside the storage', () => {
    expect(siblings(app.cwd).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('the human output says what was restored and names both copies kept aside', () => {
    const out = result.stdout;
    expect(out).toContain(id);
    expect(out).toContain(`${app.dbPath}.pre-restore-${id}`);
    expect(out).toContain(`${app.storagePath}.pre-restore-${id}`);
    expect(out).toMatch(/integrity_check: ok/);
    // for the report: what an operator sees
    console.log(`--- restore ${id} --yes (stdout)\n${result.stdout}--- stderr\n${result.stderr}`);
  });
});

function snapshot_noDirTimes(s: ReturnType<typeof snapshot>): ReturnType<typeof snapshot> {
  return Object.fromEntries(Object.entries(s).map(([k, n]) => [k, n.type === 'dir' ? { ...n, mtime: undefined } : n])) as ReturnType<typeof snapshot>;
}

describe('database and storage backups restored by path, --json', () => {
  let app: AppFixture;
  let db: CreatedJson;
  let st: CreatedJson;
  let dumpAtBackup: string;
  let treeAtBackup: ReturnType<typeof snapshot>;

  beforeAll(async () => {
    app = newApp();
    dumpAtBackup = dump(app.dbPath);
    treeAtBackup = snapshot(app.storagePath);
    db = await create(app, 'database');
    st = await create(app, 'storage');
    changeData(app);
  });

  it('restore <path to the .db artifact> --json restores only the database; saved_current_as holds the old rows', async () => {
    const treeBefore = snapshot(app.storagePath);
    const artifact = db.backups[0].files.find((f) => f.endsWith('.db'))!;
    expect(artifact, JSON.stringify(db)).toBeTruthy();
    const r = await restore(app, [artifact, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RestoreJson>(r);
    expect(j.type).toBe('database');
    expect(j.id).toBe(db.id);
    expect(j.storage).toBeUndefined();
    expect(j.database?.to).toBe(app.dbPath);
    expect(j.database?.integrity).toBe('ok');
    expect(j.database?.saved_current_as).toBe(`${app.dbPath}.pre-restore-${db.id}`);
    expect(count(j.database!.saved_current_as!)).toBe(2345);
    expect(dump(app.dbPath)).toBe(dumpAtBackup);
    expect(integrity(app.dbPath)).toBe('ok');
    expect(snapshot(app.storagePath)).toEqual(treeBefore); // storage untouched
  });

  it('restore <path to the storage sidecar> --json restores only the storage; previous_kept_as holds the old tree', async () => {
    const dbBefore = dump(app.dbPath);
    const treeBefore = snapshot(app.storagePath);
    const sidecar = st.backups[0].sidecar_path;
    expect(sidecar.endsWith('.json')).toBe(true);
    const r = await restore(app, [sidecar, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RestoreJson>(r);
    expect(j.type).toBe('storage');
    expect(j.id).toBe(st.id);
    expect(j.database).toBeUndefined();
    expect(j.storage?.to).toBe(app.storagePath);
    expect(j.storage?.previous_kept_as).toBe(`${app.storagePath}.pre-restore-${st.id}`);
    expect(snapshot(j.storage!.previous_kept_as!)).toEqual(treeBefore);
    expect(snapshot(app.storagePath, { dirTimes: false })).toEqual(snapshot_noDirTimes(treeAtBackup));
    expect(j.storage?.entries).toBe(readJson<{ entry_count: number }>(sidecar).entry_count);
    expect(dump(app.dbPath)).toBe(dbBefore); // database untouched
  });

  it('a second restore of the same backup keeps the first copy aside and adds another (never overwrites one)', async () => {
    const firstAside = `${app.dbPath}.pre-restore-${db.id}`;
    const firstAsideDump = dump(firstAside);
    sqlite(app.dbPath, "INSERT INTO clients(name, email) VALUES('second change', 'x@y')");
    const changed = dump(app.dbPath);
    const r = await restore(app, [db.id, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RestoreJson>(r);
    // the id alone also names the database backup (there is no full backup of that id)
    expect(j.type).toBe('database');
    expect(j.database?.saved_current_as).toBeTruthy();
    expect(j.database!.saved_current_as).not.toBe(firstAside);
    expect(dump(firstAside)).toBe(firstAsideDump);
    expect(dump(j.database!.saved_current_as!)).toBe(changed);
    expect(dump(app.dbPath)).toBe(dumpAtBackup);
  });
});

describe('restore latest --target DIR', () => {
  let app: AppFixture;
  let id: string;
  let dumpAtBackup: string;
  let treeAtBackup: ReturnType<typeof snapshot>;

  beforeAll(async () => {
    app = newApp();
    dumpAtBackup = dump(app.dbPath);
    treeAtBackup = snapshot(app.storagePath);
    await create(app, 'database'); // an older database-only backup: latest must still pick the full one
    id = (await create(app, 'full')).id;
    changeData(app);
  });

  it('restores the newest full backup into DIR and leaves the live database and storage untouched', async () => {
    const before = liveState(app);
    const target = tempDir('vb-e2e-target-');
    scratch.push(target);
    const r = await restore(app, ['latest', '--target', target, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RestoreJson>(r);
    expect(j.type).toBe('full');
    expect(j.id).toBe(id);
    const db = path.join(target, path.basename(app.dbPath));
    const st = path.join(target, path.basename(app.storagePath));
    expect(j.database?.to).toBe(db);
    expect(j.storage?.to).toBe(st);
    expect(dump(db)).toBe(dumpAtBackup);
    expect(integrity(db)).toBe('ok');
    expect(snapshot(st, { dirTimes: false })).toEqual(snapshot_noDirTimes(treeAtBackup));
    // nothing to keep aside in an empty target, and nothing else there
    expect(j.database?.saved_current_as).toBeUndefined();
    expect(j.storage?.previous_kept_as).toBeUndefined();
    expect(fs.readdirSync(target).filter((n) => !/-(wal|shm)$/.test(n)).sort()).toEqual([path.basename(app.dbPath), path.basename(app.storagePath)].sort());
    expect(liveState(app)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------------

/** The "application": python3's sqlite3 holding one connection open in WAL mode, driven line by line over stdin. */
class Holder {
  private child: ChildProcess;
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];
  stderr = '';

  constructor(db: string) {
    const py = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == 'count':
            print(db.execute("SELECT count(*) FROM " + cmd[1]).fetchone()[0], flush=True)
        elif cmd[0] == 'add':
            db.execute("BEGIN")
            for i in range(int(cmd[1])):
                db.execute("INSERT INTO scan_events(portrait_id, client_id, ts, ip, user_agent, country, duration_ms, referrer) VALUES(1, 1, ?, 'h', 'holder', 'NL', 0, 'holder')", (i,))
            db.execute("COMMIT")
            print("added", flush=True)
        elif cmd[0] == 'mode':
            print(db.execute("PRAGMA journal_mode").fetchone()[0], flush=True)
        elif cmd[0] == 'begin':
            db.execute("BEGIN")
            print(db.execute("SELECT count(*) FROM scan_events").fetchone()[0], flush=True)
        elif cmd[0] == 'commit':
            db.execute("COMMIT")
            print("committed", flush=True)
        elif cmd[0] == 'integrity':
            print(db.execute("PRAGMA integrity_check").fetchone()[0], flush=True)
        elif cmd[0] == 'quit':
            break
    except Exception as e:
        print("ERROR %s: %s" % (type(e).__name__, e), flush=True)
`;
    this.child = spawn('python3', ['-c', py, db], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
  }

  next(timeoutMs = 20_000): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`holder did not answer within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
    });
  }

  async ask(cmd: string): Promise<string> {
    this.child.stdin!.write(`${cmd}\n`);
    return this.next();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin!.end('quit\n');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

describe('restore while the application holds the database open in WAL mode', () => {
  let app: AppFixture;
  let holder: Holder;
  let id: string;
  let result: RunResult;
  let holderCountBefore: number;

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 2000, minimalStorage: true });
    apps.push(app);
    id = (await create(app, 'database')).id; // 2000 scan events in the backup
    holder = new Holder(app.dbPath);
    expect(await holder.next()).toBe('ready');
    expect(await holder.ask('add 777')).toBe('added'); // committed, but only in the -wal (no checkpoint)
    holderCountBefore = Number(await holder.ask('count scan_events'));
    result = await restore(app, [id, '--yes']);
  });

  afterAll(async () => {
    await holder?.stop();
  });

  it('before the restore the rows written after the backup are committed in the -wal file, not the main file', () => {
    expect(holderCountBefore).toBe(2777);
    expect(fs.statSync(`${app.dbPath}-wal`).size).toBeGreaterThan(0);
  });

  it('restore --yes exits 0 while the database is held open', () => {
    expect(result.code, describeRun(result)).toBe(0);
  });

  it('the process that held the database open all along now reads the restored rows (2000, not its own 2777)', async () => {
    expect(await holder.ask('count scan_events')).toBe('2000');
    expect(await holder.ask('mode')).toBe('wal');
    expect(await holder.ask('integrity')).toBe('ok');
  });

  it('a new process reads the restored rows too and integrity_check says ok', () => {
    expect(count(app.dbPath)).toBe(2000);
    expect(integrity(app.dbPath)).toBe('ok');
    expect(sqlite(app.dbPath, 'PRAGMA journal_mode')).toBe('wal');
  });

  it('the application keeps working on the restored database: its next writes are seen by others and stay consistent', async () => {
    expect(await holder.ask('add 5')).toBe('added');
    expect(await holder.ask('count scan_events')).toBe('2005');
    expect(count(app.dbPath)).toBe(2005);
    expect(integrity(app.dbPath)).toBe('ok');
  });

  it('the copy aside holds the rows that were only in the -wal when the restore began', () => {
    const aside = `${app.dbPath}.pre-restore-${id}`;
    expect(fs.existsSync(aside), siblings(path.dirname(app.dbPath)).join(', ')).toBe(true);
    expect(count(aside)).toBe(2777);
    expect(integrity(aside)).toBe('ok');
  });

  it('after the application closes, a fresh open still sees the restored data plus its later writes', async () => {
    await holder.stop();
    expect(count(app.dbPath)).toBe(2005);
    expect(integrity(app.dbPath)).toBe('ok');
  });
});

// ---------------------------------------------------------------------------------------------------

describe('confirmation', () => {
  let app: AppFixture;
  let id: string;
  let dumpAtBackup: string;

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 300, randomBytes: 64 * 1024 });
    apps.push(app);
    dumpAtBackup = dump(app.dbPath);
    id = (await create(app, 'full')).id;
    changeData(app);
  });

  it('without a terminal and without --yes: exit 2, a message saying --yes, nothing changed', async () => {
    const live = liveState(app);
    const backups = backupState(app);
    const r = await restore(app, [id]);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/--yes/);
    expect(liveState(app)).toEqual(live);
    expect(backupState(app)).toEqual(backups);
  });

  it("on a terminal, answering 'n': the plan is shown, exit 1, nothing changed", () => {
    const live = liveState(app);
    const r = runTtyAnswering(['restore', id, ...app.flags], app.cwd, 'n');
    expect(r.output).toContain('Proceed?');
    expect(r.output).toContain(id);
    expect(r.output).toContain(app.dbPath);
    expect(r.output).toContain(app.storagePath);
    expect(r.output).toMatch(/cancelled/);
    expect(r.code, r.output).toBe(1);
    expect(liveState(app)).toEqual(live);
  });

  it("on a terminal, answering 'y': restored, exit 0", () => {
    const r = runTtyAnswering(['restore', id, ...app.flags], app.cwd, 'y');
    expect(r.code, r.output).toBe(0);
    expect(dump(app.dbPath)).toBe(dumpAtBackup);
    expect(fs.existsSync(`${app.dbPath}.pre-restore-${id}`)).toBe(true);
    expect(fs.existsSync(`${app.storagePath}.pre-restore-${id}`)).toBe(true);
  });
});

describe('a damaged backup is refused', () => {
  let app: AppFixture;
  let full: CreatedJson;
  let db: CreatedJson;

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 300, randomBytes: 64 * 1024 });
    apps.push(app);
    full = await create(app, 'full');
    db = await create(app, 'database');
    changeData(app);
  });

  it('a flipped byte in the storage archive of a full backup: exit 3, the message names the backup, nothing changed', async () => {
    const archive = full.backups.find((b) => b.type === 'storage')!.files.find((f) => /\.tar/.test(f))!;
    const live = liveState(app);
    flipByte(archive);
    try {
      const r = await restore(app, [full.id, '--yes']);
      expect(r.code, describeRun(r)).toBe(3);
      expect(r.stderr).toContain(full.id);
      expect(liveState(app)).toEqual(live);
    } finally {
      flipByte(archive); // flip it back for the next test
    }
  });

  it('damage only unpacking finds (the sidecar checksum rewritten to match): verify --restoring checks the checksum alone, restore still exits 3 and changes nothing', async () => {
    // issue 27: a restore's verification no longer decompresses and parses the archive before the
    // restore unpacks it again; the unpacking into staging (every file against the manifest) is the check
    const created = full.backups.find((b) => b.type === 'storage')!;
    const archive = created.files.find((f) => /\.tar/.test(f))!;
    const sidecar = created.sidecar_path;
    const saved = { archive: fs.readFileSync(archive), sidecar: fs.readFileSync(sidecar, 'utf8') };
    const live = liveState(app);
    flipByte(archive);
    const doc = JSON.parse(saved.sidecar);
    doc.checksum = createHash('sha256').update(fs.readFileSync(archive)).digest('hex');
    fs.writeFileSync(sidecar, JSON.stringify(doc));
    try {
      const entry = await findBackup(app.backupDir, created.id, 'storage');
      const deep = await verifyEntry(app.backupDir, entry!);
      expect(deep.ok, JSON.stringify(deep)).toBe(false);
      const quick = await verifyEntry(app.backupDir, entry!, { restoring: true });
      expect(quick.problems).toEqual([]);
      expect(quick.checked).toBeGreaterThanOrEqual(fs.statSync(archive).size);
      const r = await restore(app, [created.id, '--yes']);
      expect(r.code, describeRun(r)).toBe(3);
      expect(r.stderr).toContain(created.id);
      expect(r.stderr).toMatch(/nothing was changed/);
      // the staging directory was made and removed beside the storage: only the parent's mtime differs
      const { '.': _after, ...after } = liveState(app);
      const { '.': _before, ...before } = live;
      expect(after).toEqual(before);
    } finally {
      fs.writeFileSync(archive, saved.archive);
      fs.writeFileSync(sidecar, saved.sidecar);
    }
  });

  it('a flipped byte in a database copy: exit 3 (also with --json), the message names the backup, nothing changed', async () => {
    const file = db.backups[0].files.find((f) => f.endsWith('.db'))!;
    flipByte(file);
    const live = liveState(app);
    const r = await restore(app, [db.id, '--yes']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stderr).toContain(db.id);
    expect(r.stderr).toMatch(/database/);
    const rj = await restore(app, [file, '--yes', '--json']);
    expect(rj.code, describeRun(rj)).toBe(3);
    expect(liveState(app)).toEqual(live);
  });
});

describe('restore while the application is in the middle of a read transaction (WAL)', () => {
  let app: AppFixture;
  let holder: Holder;
  let id: string;

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 1000, minimalStorage: true });
    apps.push(app);
    id = (await create(app, 'database')).id;
    holder = new Holder(app.dbPath);
    expect(await holder.next()).toBe('ready');
    expect(await holder.ask('add 250')).toBe('added');
  });

  afterAll(async () => {
    await holder?.stop();
  });

  it('the restore completes; the open read keeps its snapshot, the next transaction sees the restored rows', async () => {
    expect(await holder.ask('begin')).toBe('1250'); // a read transaction stays open during the restore
    const r = await restore(app, [id, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(await holder.ask('count scan_events')).toBe('1250'); // same snapshot: SQLite's isolation
    expect(await holder.ask('commit')).toBe('committed');
    expect(await holder.ask('count scan_events')).toBe('1000');
    expect(await holder.ask('integrity')).toBe('ok');
    expect(count(app.dbPath)).toBe(1000);
    expect(integrity(app.dbPath)).toBe('ok');
    expect(count(`${app.dbPath}.pre-restore-${id}`)).toBe(1250);
  });
});

describe('restore of a backup whose page size differs from the live WAL database', () => {
  // The application changed its page size after the backup (PRAGMA page_size + VACUUM, e.g. during a
  // migration). SQLite's backup API cannot write into a WAL database of another page size.
  it("restores the backup into the live database: exit 0, the backup's rows, integrity ok", async () => {
    const cwd = tempDir();
    scratch.push(cwd);
    const db = path.join(cwd, 'app.db');
    const storage = path.join(cwd, 'storage');
    fs.mkdirSync(storage);
    fs.writeFileSync(path.join(storage, 'one.txt'), 'one\n');
    sqlite(db, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000) INSERT INTO t SELECT i FROM c;");
    const flags = ['--db-path', db, '--storage-path', storage, '--backup-dir', path.join(cwd, 'backups')];
    const c = await run(['create', '--type', 'database', '--json', ...flags], { cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const id = parseJsonStdout<CreatedJson>(c).id;
    sqlite(db, 'PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; VACUUM; PRAGMA journal_mode=WAL; INSERT INTO t VALUES(-1);');
    expect(sqlite(db, 'PRAGMA page_size')).toBe('4096');
    const r = await run(['restore', id, '--yes', ...flags], { cwd });
    // never a half-restored database, whatever happened
    expect(integrity(db)).toBe('ok');
    expect(r.code, describeRun(r)).toBe(0);
    expect(Number(sqlite(db, 'SELECT count(*) FROM t'))).toBe(3000);
  });
});

describe('storage path that is a symlink to a directory (e.g. /srv/app/storage -> /mnt/volume/storage)', () => {
  it('a storage backup of it restores: the tree behind the path is the backed-up one', async () => {
    const cwd = tempDir();
    scratch.push(cwd);
    const db = path.join(cwd, 'app.db');
    sqlite(db, 'CREATE TABLE t(x); INSERT INTO t VALUES(1);');
    const real = path.join(cwd, 'volume', 'storage');
    fs.mkdirSync(path.join(real, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(real, 'sub', 'photo.jpg'), 'backed up\n');
    const storage = path.join(cwd, 'storage');
    fs.symlinkSync(real, storage);
    const flags = ['--db-path', db, '--storage-path', storage, '--backup-dir', path.join(cwd, 'backups')];
    const c = await run(['create', '--type', 'storage', '--json', ...flags], { cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const id = parseJsonStdout<CreatedJson>(c).id;
    fs.writeFileSync(path.join(real, 'sub', 'photo.jpg'), 'changed after the backup\n');
    const r = await run(['restore', id, '--yes', ...flags], { cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.readFileSync(path.join(storage, 'sub', 'photo.jpg'), 'utf8')).toBe('backed up\n');
  });
});
