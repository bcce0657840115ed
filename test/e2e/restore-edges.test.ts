/**
 * Issue 11: restore at the edges a real server meets, through the built binary and real files:
 * concurrent restores and the lock (restore --from too), a full restore refused half-way (nothing live
 * changed), storage that is a mount point, symlinks that lead out of the tree, owners, the copy aside
 * private from its first byte, `restore PATH` restoring exactly that file, sidecar paths confined, and
 * the raw errors that became one-line messages.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, REPO, run, type RunResult, start } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';

const ROOT = process.getuid?.() === 0;
const CAN_MOUNT = ROOT && spawnSync('mount', ['--version']).status === 0;
/** needs root (mount, chown): skipped by name outside CI when not root; under CI we are root */
const asRoot = ROOT || process.env.CI ? it : it.skip;

const apps: AppFixture[] = [];
const scratch: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  for (const a of apps) rmrf(a.cwd);
  for (const d of scratch) rmrf(d);
});

function newApp(opts: Parameters<typeof makeApp>[0] = {}): AppFixture {
  const app = makeApp({ journalMode: 'wal', events: 1500, randomBytes: 128 * 1024, ...opts });
  apps.push(app);
  return app;
}

const vb = (app: AppFixture, args: string[], extra: string[] = []) => run([...args, ...app.flags, ...extra], { cwd: app.cwd, timeoutMs: 120_000 });

async function createFull(app: AppFixture, type = 'full'): Promise<string> {
  const r = await vb(app, ['create', '--type', type, '--json']);
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<{ id: string }>(r).id;
}

const dump = (db: string) => sqlite(db, '.dump');
const oneLine = (r: RunResult) => {
  expect(r.stderr).not.toMatch(/^\s+at\s/m);
  expect(r.stderr).not.toMatch(/\bE[A-Z]{3,}\b.*(mkdir|readlink|rename)/);
};
/** Leftovers a restore must never leave: staging trees, journals, temporary copies. */
function leftovers(app: AppFixture): string[] {
  const out: string[] = [];
  for (const dir of [path.dirname(app.storagePath), path.dirname(app.dbPath), app.backupDir]) {
    if (!fs.existsSync(dir)) continue;
    for (const n of fs.readdirSync(dir)) if (/\.restore-|\.tmp$|restore-in-progress|^\.remote-restore-|\.vertex-restore-/.test(n)) out.push(path.join(dir, n));
  }
  if (fs.existsSync(app.storagePath)) for (const n of fs.readdirSync(app.storagePath)) if (n.startsWith('.vertex-restore-')) out.push(path.join(app.storagePath, n));
  return out;
}
const storageSnap = (p: string) => snapshot(p, { exclude: (rel) => rel.startsWith('.pre-restore-'), dirTimes: false });
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Rewrites a storage backup's archive with `tarGz` (sizes and checksum updated; counts dropped). */
function replaceStorageArchive(app: AppFixture, id: string, tarGz: Buffer): void {
  const dir = path.join(app.backupDir, 'storage');
  const sidecarFile = path.join(dir, `storage_backup_${id}.json`);
  const sc = JSON.parse(fs.readFileSync(sidecarFile, 'utf8'));
  fs.writeFileSync(path.join(dir, path.basename(sc.backup_path)), tarGz);
  sc.file_size = tarGz.length;
  sc.checksum = sha(tarGz);
  delete sc.parts;
  delete sc.file_count;
  delete sc.entry_count;
  delete sc.content_bytes;
  // a hand-made archive replaces the backup's content: it becomes a single-archive backup (as made before
  // incremental ones, and still restored), so these tests reach the tar extractor's edges. A manifest-driven
  // restore reads only the entries its manifest lists and checks each against it (test/e2e/incremental.test.ts).
  for (const k of ['manifest', 'references', 'referenced_bytes', 'level', 'base', 'tree_files', 'tree_bytes']) delete sc[k];
  fs.unlinkSync(path.join(dir, `storage_backup_${id}.manifest.gz`));
  fs.writeFileSync(sidecarFile, JSON.stringify(sc));
}

/** A process holding the backup-directory lock (through the library's own API) until killed. */
async function holdLock(backupDir: string): Promise<ChildProcess> {
  const code = `
const { acquireLock } = await import(${JSON.stringify(pathToFileURL(path.join(REPO, 'dist/catalog/lock.js')).href)});
await acquireLock(process.argv[1], 'create --type full');
process.stdout.write('locked\\n');
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, backupDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('locked') && resolve());
    child.on('exit', (c) => reject(new Error(`lock holder exited ${c}`)));
  });
  return child;
}

describe('item 1: one lock for every command that changes the live paths; restore --from included', () => {
  const setup = async () => {
    const app = newApp();
    const nas = tempDir('vb-nas-');
    scratch.push(nas);
    const remotes = path.join(app.cwd, 'remote_storage.json');
    fs.writeFileSync(remotes, JSON.stringify({ remotes: { nas: { url: pathToFileURL(nas).href } } }), { mode: 0o600 });
    const r = await vb(app, ['create', '--type', 'full', '--sync', 'nas', '--json'], ['--remotes-config', remotes]);
    expect(r.code, describeRun(r)).toBe(0);
    const id = parseJsonStdout<{ id: string }>(r).id;
    const backedUp = storageSnap(app.storagePath);
    fs.writeFileSync(path.join(app.storagePath, 'after.txt'), 'after the backup\n');
    return { app, remotes, id, backedUp };
  };

  it('restore --from while another run holds the lock: exit 4, nothing changed', async () => {
    const { app, remotes, id } = await setup();
    const before = storageSnap(app.storagePath);
    const holder = await holdLock(app.backupDir);
    try {
      const r = await vb(app, ['restore', id, '--from', 'nas', '--yes'], ['--remotes-config', remotes]);
      expect(r.code, describeRun(r)).toBe(4);
      expect(r.stderr).toMatch(/holds the lock/);
    } finally {
      holder.kill('SIGKILL');
    }
    expect(storageSnap(app.storagePath)).toEqual(before);
    expect(leftovers(app)).toEqual([]);
  });

  it('two restore --from of the same backup at once (--wait): both succeed one after the other, the live tree is exactly the backup', async () => {
    const { app, remotes, id, backedUp } = await setup();
    const args = ['restore', id, '--from', 'nas', '--yes', '--wait', '120', '--json', ...app.flags, '--remotes-config', remotes];
    const [a, b] = await Promise.all([start(args, { cwd: app.cwd, timeoutMs: 120_000 }).done, start(args, { cwd: app.cwd, timeoutMs: 120_000 }).done]);
    expect(a.code, describeRun(a)).toBe(0);
    expect(b.code, describeRun(b)).toBe(0);
    expect(storageSnap(app.storagePath)).toEqual(backedUp);
    expect(fs.existsSync(`${app.storagePath}.pre-restore-${id}`)).toBe(true);
    expect(fs.existsSync(`${app.storagePath}.pre-restore-${id}-2`)).toBe(true);
    expect(leftovers(app)).toEqual([]);
  });

  it('two restore --from at once without --wait: one restores (exit 0), the other exits 4; the live tree is exactly the backup', async () => {
    const { app, remotes, id, backedUp } = await setup();
    const args = ['restore', id, '--from', 'nas', '--yes', ...app.flags, '--remotes-config', remotes];
    // two processes started together may still not overlap (one can finish before the other starts):
    // the first stops itself inside its run (while staging, holding the lock) so the second surely meets it
    const first = start(args, { cwd: app.cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'staging' } });
    const stopped = () => fs.readFileSync(`/proc/${first.child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
    for (let i = 0; i < 600 && !stopped(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(stopped(), 'the first restore reached its staging phase').toBe(true);
    const second = await start(args, { cwd: app.cwd }).done;
    first.child.kill('SIGCONT');
    const firstResult = await first.done;
    expect([firstResult.code, second.code], [firstResult, second].map(describeRun).join('\n')).toEqual([0, 4]);
    expect(second.stderr).toMatch(/holds the lock/);
    expect(second.stderr).not.toMatch(/ENOTEMPTY|ENOENT/);
    expect(storageSnap(app.storagePath)).toEqual(backedUp);
    expect(leftovers(app)).toEqual([]);
  });
});

describe('item 2: a full restore checks and stages everything before the live database is touched', () => {
  it('a FIFO in the storage archive: exit 3, the live database unchanged, the message says nothing was changed', async () => {
    const app = newApp();
    const id = await createFull(app);
    const work = tempDir('vb-fifo-');
    scratch.push(work);
    fs.mkdirSync(path.join(work, 'storage'));
    fs.writeFileSync(path.join(work, 'storage', 'a.txt'), 'a');
    spawnSync('mkfifo', [path.join(work, 'storage', 'pipe')]);
    const tgz = spawnSync('tar', ['-czf', '-', '-C', work, 'storage']).stdout;
    replaceStorageArchive(app, id, tgz);
    sqlite(app.dbPath, 'INSERT INTO clients(name) VALUES ("after the backup")');
    const dbBefore = dump(app.dbPath);
    const stBefore = storageSnap(app.storagePath);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stderr).toMatch(/fifo/);
    expect(r.stderr).toMatch(/nothing was changed/);
    expect(dump(app.dbPath)).toBe(dbBefore);
    expect(storageSnap(app.storagePath)).toEqual(stBefore);
    expect(fs.existsSync(`${app.dbPath}.pre-restore-${id}`)).toBe(false);
    expect(leftovers(app)).toEqual([]);
  });

  asRoot('not enough space for the storage (no content_bytes in the metadata): exit 5, the live database unchanged', async () => {
    const app = newApp({ randomBytes: 3 * 1024 * 1024 });
    const id = await createFull(app);
    const sc = path.join(app.backupDir, 'storage', `storage_backup_${id}.json`);
    const s = JSON.parse(fs.readFileSync(sc, 'utf8'));
    delete s.content_bytes;
    fs.writeFileSync(sc, JSON.stringify(s));
    // the storage on a small filesystem of its own
    const copy = tempDir('vb-copy-');
    scratch.push(copy);
    spawnSync('cp', ['-a', `${app.storagePath}/.`, copy]);
    fs.rmSync(app.storagePath, { recursive: true });
    fs.mkdirSync(app.storagePath);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', app.storagePath]).status).toBe(0);
    mounts.push(app.storagePath);
    spawnSync('cp', ['-a', `${copy}/.`, app.storagePath]);
    sqlite(app.dbPath, 'INSERT INTO clients(name) VALUES ("after the backup")');
    const dbBefore = dump(app.dbPath);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(5);
    expect(r.stderr).toMatch(/nothing was changed/);
    expect(dump(app.dbPath)).toBe(dbBefore);
    expect(leftovers(app)).toEqual([]);
  });
});

describe.runIf(CAN_MOUNT || process.env.CI)('item 3: storage that is a mount point (tmpfs, bind mount)', () => {
  for (const kind of ['tmpfs', 'bind'] as const) {
    it(`${kind}: a full restore swaps the contents, keeps the old ones in <storage>/.pre-restore-<id>, and the mount stays`, async () => {
      const app = newApp();
      const id = await createFull(app);
      const backedUp = storageSnap(app.storagePath);
      const copy = tempDir('vb-copy-');
      scratch.push(copy);
      spawnSync('cp', ['-a', `${app.storagePath}/.`, copy]);
      fs.rmSync(app.storagePath, { recursive: true });
      fs.mkdirSync(app.storagePath);
      const m = kind === 'tmpfs' ? spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', app.storagePath]) : spawnSync('mount', ['--bind', copy, app.storagePath]);
      expect(m.status, String(m.stderr)).toBe(0);
      mounts.push(app.storagePath);
      if (kind === 'tmpfs') spawnSync('cp', ['-a', `${copy}/.`, app.storagePath]);
      fs.writeFileSync(path.join(app.storagePath, 'after.txt'), 'after the backup\n');
      const oldTree = storageSnap(app.storagePath);
      sqlite(app.dbPath, 'INSERT INTO clients(name) VALUES ("after the backup")');
      const r = await vb(app, ['restore', id, '--yes', '--json']);
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<{ storage: { to: string; previous_kept_as: string } }>(r);
      expect(doc.storage.previous_kept_as).toBe(path.join(app.storagePath, `.pre-restore-${id}`));
      expect(storageSnap(app.storagePath)).toEqual(backedUp);
      const kept = snapshot(doc.storage.previous_kept_as, { dirTimes: false });
      delete kept['.'];
      const old = { ...oldTree };
      delete old['.'];
      expect(kept).toEqual(old);
      expect(spawnSync('mountpoint', ['-q', app.storagePath]).status).toBe(0);
      expect(sqlite(app.dbPath, 'SELECT count(*) FROM clients WHERE name = "after the backup"')).toBe('0');
      expect(leftovers(app)).toEqual([]);
      // the next backup leaves the kept copy out, so it is never restored into the tree again
      const next = await vb(app, ['create', '--type', 'storage', '--json']);
      expect(next.code, describeRun(next)).toBe(0);
      const list = spawnSync('tar', ['-tzf', parseJsonStdout<{ backups: { files: string[] }[] }>(next).backups[0].files.find((f) => f.endsWith('.tar.gz'))!]).stdout.toString();
      expect(list).not.toMatch(/\.pre-restore-/);
    });
  }
});

describe('item 4: symlinks that lead out of the tree are restored verbatim', () => {
  it('a tree with links to an absolute path and to ../shared backs up, verifies and restores, the links as they were', async () => {
    const app = newApp();
    fs.mkdirSync(path.join(app.cwd, 'shared'));
    fs.symlinkSync('/srv/assets/logo.png', path.join(app.storagePath, 'logo-link'));
    fs.symlinkSync('../shared', path.join(app.storagePath, 'shared-link'));
    const id = await createFull(app, 'storage');
    const backedUp = storageSnap(app.storagePath);
    expect((await vb(app, ['verify', id])).code).toBe(0);
    fs.rmSync(path.join(app.storagePath, 'logo-link'));
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(storageSnap(app.storagePath)).toEqual(backedUp);
    expect(fs.readlinkSync(path.join(app.storagePath, 'logo-link'))).toBe('/srv/assets/logo.png');
    expect(fs.readlinkSync(path.join(app.storagePath, 'shared-link'))).toBe('../shared');
  });
});

describe('item 5: owners', () => {
  asRoot('restored as root, files owned by 33:33 and nobody come back with their owners, modes and mtimes', async () => {
    const app = newApp();
    const up = path.join(app.storagePath, 'uploads');
    fs.mkdirSync(up);
    fs.writeFileSync(path.join(up, 'a.jpg'), 'a');
    fs.writeFileSync(path.join(app.storagePath, 'nobody.txt'), 'n');
    fs.chownSync(up, 33, 33);
    fs.chownSync(path.join(up, 'a.jpg'), 33, 33);
    fs.chownSync(path.join(app.storagePath, 'nobody.txt'), 65534, 65534);
    fs.chownSync(app.storagePath, 33, 33);
    const id = await createFull(app, 'storage');
    const own = (p: string) => `${fs.lstatSync(p).uid}:${fs.lstatSync(p).gid}`;
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(own(up)).toBe('33:33');
    expect(own(path.join(up, 'a.jpg'))).toBe('33:33');
    expect(own(path.join(app.storagePath, 'nobody.txt'))).toBe('65534:65534');
    expect(own(app.storagePath)).toBe('33:33');
  });
});

describe('item 6: the copy of the current database is private from its first byte', () => {
  it('watched while it is written: every file of the copy aside is 0600, and the final name appears only complete', async () => {
    const app = newApp({ journalMode: 'delete', events: 150_000 });
    const id = await createFull(app, 'database');
    const oldUmask = process.umask(0o022);
    process.umask(oldUmask);
    const dir = path.dirname(app.dbPath);
    const finalName = `${path.basename(app.dbPath)}.pre-restore-${id}`;
    const seen = new Map<string, Set<string>>();
    const child = start(['restore', id, '--yes', ...app.flags], { cwd: app.cwd, env: {} });
    let running = true;
    child.done.finally(() => (running = false));
    const finalSize = () => fs.statSync(path.join(dir, finalName)).size;
    const sizes: number[] = [];
    while (running) {
      for (const n of fs.readdirSync(dir)) {
        if (!n.includes('pre-restore')) continue;
        try {
          const st = fs.statSync(path.join(dir, n));
          if (!seen.has(n)) seen.set(n, new Set());
          seen.get(n)!.add((st.mode & 0o777).toString(8));
          if (n === finalName) sizes.push(st.size);
        } catch {
          /* gone meanwhile */
        }
      }
      await new Promise((r) => setImmediate(r));
    }
    const r = await child.done;
    expect(r.code, describeRun(r)).toBe(0);
    expect(seen.size).toBeGreaterThan(0);
    for (const [name, modes] of seen) expect([...modes], name).toEqual(['600']);
    expect(new Set(sizes)).toEqual(new Set([finalSize()]));
  });
});

describe('item 7: a crash between the two storage renames is healed by the next command', () => {
  it('killed between the renames (no storage directory at all): the next create completes the restore, says so, and backs up', async () => {
    const app = newApp();
    const id = await createFull(app);
    const backedUp = storageSnap(app.storagePath);
    fs.writeFileSync(path.join(app.storagePath, 'after.txt'), 'x');
    const child = start(['restore', id, '--yes', ...app.flags], { cwd: app.cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'swap-between-renames' } });
    await waitStopped(child.child);
    child.child.kill('SIGKILL');
    await child.done;
    expect(fs.existsSync(app.storagePath)).toBe(false);
    const r = await vb(app, ['create', '--type', 'full']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`completed the restore of ${id}`));
    expect(storageSnap(app.storagePath)).toEqual(backedUp);
    expect(leftovers(app)).toEqual([]);
  });
});

/** Waits until the process stopped itself at its fault point (state T in /proc). */
export async function waitStopped(child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`process ${child.pid} never reached its fault point`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('item 8: restore PATH restores exactly the file named', () => {
  it('a storage archive elsewhere, named like a backup of the backup directory: that file is restored (no checksum: a warning)', async () => {
    const app = newApp();
    const id = await createFull(app, 'storage');
    const elsewhere = tempDir('vb-elsewhere-');
    scratch.push(elsewhere);
    fs.mkdirSync(path.join(elsewhere, 'storage'));
    fs.writeFileSync(path.join(elsewhere, 'storage', 'other.txt'), 'another tree\n');
    const file = path.join(elsewhere, `storage_backup_${id}.tar.gz`);
    fs.writeFileSync(file, spawnSync('tar', ['-czf', '-', '-C', elsewhere, 'storage']).stdout);
    const r = await vb(app, ['restore', file, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.readdirSync(app.storagePath)).toEqual(['other.txt']);
    expect(r.stderr).toMatch(/no checksum was available/);
  });

  it('a copy with its own sidecar beside it is verified against that sidecar (a flipped byte: exit 3)', async () => {
    const app = newApp();
    const id = await createFull(app, 'database');
    const elsewhere = tempDir('vb-elsewhere-');
    scratch.push(elsewhere);
    for (const n of [`db_backup_${id}.db`, `db_backup_${id}.json`]) fs.copyFileSync(path.join(app.backupDir, 'database', n), path.join(elsewhere, n));
    const file = path.join(elsewhere, `db_backup_${id}.db`);
    sqlite(app.dbPath, 'INSERT INTO clients(name) VALUES ("after the backup")');
    const ok = await vb(app, ['restore', file, '--yes']);
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(ok.stderr).not.toMatch(/no checksum/);
    expect(sqlite(app.dbPath, 'SELECT count(*) FROM clients WHERE name = "after the backup"')).toBe('0');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0x55]), 0, 1, 5000);
    fs.closeSync(fd);
    const bad = await vb(app, ['restore', file, '--yes']);
    expect(bad.code, describeRun(bad)).toBe(3);
  });

  it('a database copied by hand under any name is typed by its content and restored, with the no-checksum warning', async () => {
    const app = newApp();
    const elsewhere = tempDir('vb-elsewhere-');
    scratch.push(elsewhere);
    const file = path.join(elsewhere, 'nightly-copy.bak');
    fs.copyFileSync(app.dbPath, file);
    sqlite(file, 'PRAGMA journal_mode=DELETE');
    sqlite(file, 'DELETE FROM scan_events');
    const r = await vb(app, ['restore', file, '--yes', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(parseJsonStdout<{ type: string }>(r).type).toBe('database');
    expect(sqlite(app.dbPath, 'SELECT count(*) FROM scan_events')).toBe('0');
  });
});

describe('item 9: paths from a sidecar stay in the backup directory', () => {
  it('parts[].file = ../../outside/other.db: verify and restore refuse it (exit 3), the live database unchanged', async () => {
    const app = newApp();
    const id = await createFull(app, 'database');
    const outside = path.join(app.cwd, 'outside');
    fs.mkdirSync(outside);
    const other = path.join(outside, 'other.db');
    sqlite(other, 'CREATE TABLE evil(x); INSERT INTO evil VALUES (1);');
    const bytes = fs.readFileSync(other);
    const sc = path.join(app.backupDir, 'database', `db_backup_${id}.json`);
    const s = JSON.parse(fs.readFileSync(sc, 'utf8'));
    s.parts = [{ file: '../../outside/other.db', size: bytes.length, checksum: sha(bytes) }];
    s.file_size = bytes.length;
    s.checksum = sha(bytes);
    fs.writeFileSync(sc, JSON.stringify(s));
    const before = dump(app.dbPath);
    const v = await vb(app, ['verify', id]);
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toMatch(/outside\/other\.db.*not a file in its own directory/);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(dump(app.dbPath)).toBe(before);
    expect(sqlite(app.dbPath, "SELECT count(*) FROM sqlite_master WHERE name = 'evil'")).toBe('0');
  });
});

describe('item 10: one-line errors instead of raw ones', () => {
  it('--target naming a file: exit 2, a message saying it must be a directory', async () => {
    const app = newApp();
    const id = await createFull(app);
    const file = path.join(app.cwd, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const r = await vb(app, ['restore', id, '--target', file, '--yes']);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/--target must name a directory/);
    oneLine(r);
  });

  it('--no-verify on a junk database: exit 3, the message names the file', async () => {
    const app = newApp();
    const id = await createFull(app, 'database');
    const file = path.join(app.backupDir, 'database', `db_backup_${id}.db`);
    fs.writeFileSync(file, randomBytes(8192));
    const before = dump(app.dbPath);
    const r = await vb(app, ['restore', id, '--no-verify', '--yes']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(/nothing was changed/);
    expect(dump(app.dbPath)).toBe(before);
    oneLine(r);
  });

  it('an archive where a symlink is later replaced by a directory of the same name restores (the directory wins)', async () => {
    const app = newApp();
    const id = await createFull(app, 'storage');
    const work = tempDir('vb-symdir-');
    scratch.push(work);
    fs.mkdirSync(path.join(work, 'a', 'storage'), { recursive: true });
    fs.symlinkSync('elsewhere', path.join(work, 'a', 'storage', 'x'));
    fs.mkdirSync(path.join(work, 'b', 'storage', 'x'), { recursive: true });
    fs.writeFileSync(path.join(work, 'b', 'storage', 'x', 'f'), 'f');
    const tar = path.join(work, 't.tar');
    spawnSync('tar', ['-cf', tar, '-C', path.join(work, 'a'), 'storage']);
    spawnSync('tar', ['-rf', tar, '-C', path.join(work, 'b'), 'storage/x', 'storage/x/f']);
    replaceStorageArchive(app, id, spawnSync('gzip', ['-c', tar]).stdout);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.readFileSync(path.join(app.storagePath, 'x', 'f'), 'utf8')).toBe('f');
    oneLine(r);
  });

  it('an archive bigger than its metadata says: exit 3, and the hint does not send the operator to a limit that does not exist', async () => {
    const app = newApp({ randomBytes: 3 * 1024 * 1024 });
    const id = await createFull(app, 'storage');
    const sc = path.join(app.backupDir, 'storage', `storage_backup_${id}.json`);
    const s = JSON.parse(fs.readFileSync(sc, 'utf8'));
    s.content_bytes = 10;
    // an incremental storage backup declares the size of its whole tree
    s.tree_bytes = 10;
    fs.writeFileSync(sc, JSON.stringify(s));
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stderr).toMatch(/archive bomb/);
    expect(r.stderr).not.toMatch(/raise the limit/);
  });
});

void os;
