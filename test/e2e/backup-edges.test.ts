/**
 * Issue 12: backups are never silently incomplete. Real trees with the awkward parts a production
 * media directory has (names that are not UTF-8, unreadable paths, files swapped under the walk by a
 * racing process), run through the built binary; archives read back with GNU tar.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { binaryUnreachableBy, describeRun, parseJsonStdout, run, sh, start } from '../helpers/cli.js';
import { makeDatabase, rmrf, tempDir } from '../helpers/fixtures.js';
import { startRecorder } from '../helpers/http-recorder.js';
import { holdLock } from '../helpers/lock-holder.js';
import { needs } from '../helpers/optional.js';

const NOBODY = 65534;
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

let cwd: string;
beforeAll(() => {
  cwd = tempDir('vb-edges-');
  fs.chmodSync(cwd, 0o755);
});
afterAll(() => rmrf(cwd));

const b = (s: string) => Buffer.from(s, 'latin1');

/** A fresh app: database and an empty storage directory, inside `cwd`. */
function app(name: string) {
  const root = path.join(cwd, name);
  fs.mkdirSync(path.join(root, 'storage'), { recursive: true });
  const dbPath = path.join(root, 'app.db');
  makeDatabase(dbPath, { events: 50 });
  const backupDir = path.join(root, 'backups');
  return { root, dbPath, storage: path.join(root, 'storage'), backupDir, flags: ['--db-path', dbPath, '--storage-path', path.join(root, 'storage'), '--backup-dir', backupDir] };
}

/** Every path under `dir`, as the bytes of its name relative to `dir`. */
function byteTree(dir: Buffer, rel: Buffer = Buffer.alloc(0)): string[] {
  const out: string[] = [];
  const here = rel.length ? Buffer.concat([dir, b('/'), rel]) : dir;
  for (const n of fs.readdirSync(here, { encoding: 'buffer' })) {
    const r = rel.length ? Buffer.concat([rel, b('/'), n]) : n;
    const st = fs.lstatSync(Buffer.concat([dir, b('/'), r]));
    out.push(`${r.toString('latin1')}${st.isDirectory() ? '/' : ''}`);
    if (st.isDirectory()) out.push(...byteTree(dir, r));
  }
  return out.sort();
}

/** The one storage archive of a backup directory, extracted with GNU tar into a fresh directory. */
function gnuExtract(backupDir: string, into: string, id?: string): string {
  const dir = path.join(backupDir, 'storage');
  const archive = fs.readdirSync(dir).filter((n) => /\.tar\.gz$/.test(n) && (!id || n.includes(id))).sort().pop()!;
  fs.mkdirSync(into, { recursive: true });
  sh('tar', ['-xzf', path.join(dir, archive), '-C', into]);
  return into;
}

describe('names that are not valid UTF-8 (item 1)', () => {
  it('caf\\xe9.jpg and dir-\\xff\\xfe/ are archived byte for byte: GNU tar and restore give back the exact names', async () => {
    const a = app('bytes');
    const s = b(a.storage);
    fs.writeFileSync(Buffer.concat([s, b('/caf\xe9.jpg')]), 'jpeg bytes');
    fs.mkdirSync(Buffer.concat([s, b('/dir-\xff\xfe/sub')]), { recursive: true });
    fs.writeFileSync(Buffer.concat([s, b('/dir-\xff\xfe/a.txt')]), 'a');
    fs.writeFileSync(Buffer.concat([s, b('/dir-\xff\xfe/sub/'), Buffer.alloc(120, 0xe9)]), 'long name, past the 100 bytes of a ustar name');
    fs.writeFileSync(path.join(a.storage, 'café-utf8.txt'), 'valid UTF-8 stays as it was');
    fs.symlinkSync(b('caf\xe9.jpg'), Buffer.concat([s, b('/link-\xe9')]));
    const want = byteTree(s);

    const r = await run(['create', '--type', 'storage', '--json', ...a.flags], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).not.toMatch(/vanished/);
    const doc = parseJsonStdout<{ warnings: string[]; backups: { file_count?: number }[] }>(r);
    expect(doc.warnings).toEqual([]);
    expect(doc.backups[0].file_count).toBe(4);

    // plain GNU tar recreates the exact bytes
    const gnu = gnuExtract(a.backupDir, path.join(a.root, 'gnu'));
    expect(byteTree(b(path.join(gnu, 'storage')))).toEqual(want);
    expect(fs.readlinkSync(b(path.join(gnu, 'storage/link-\xe9')), { encoding: 'buffer' }).toString('latin1')).toBe('caf\xe9.jpg');

    const v = await run(['verify', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(0);

    // and so does restore
    const target = path.join(a.root, 'restored');
    const rr = await run(['restore', 'latest', '--target', target, '--yes', ...a.flags], { cwd: a.root });
    expect(rr.code, describeRun(rr)).toBe(0);
    const back = b(path.join(target, 'storage'));
    expect(byteTree(back)).toEqual(want);
    expect(fs.readFileSync(Buffer.concat([back, b('/caf\xe9.jpg')]), 'utf8')).toBe('jpeg bytes');
    expect(fs.readlinkSync(Buffer.concat([back, b('/link-\xe9')]), { encoding: 'buffer' }).toString('latin1')).toBe('caf\xe9.jpg');
  });
});

describe('unreadable paths (item 2)', () => {
  it('are skipped, recorded in the sidecar, reported with exit 6 naming them (escaped), in the notification and by check; the rest is backed up', async (ctx) => {
    // run as the unprivileged user nobody: as root, permissions would be bypassed
    const unreachable = binaryUnreachableBy(NOBODY);
    if (unreachable) return ctx.skip(unreachable);
    const a = app('unreadable');
    fs.writeFileSync(path.join(a.storage, 'ok.txt'), 'readable');
    fs.mkdirSync(path.join(a.storage, 'private/inner'), { recursive: true });
    fs.writeFileSync(path.join(a.storage, 'private/inner/x.bin'), 'x');
    fs.writeFileSync(path.join(a.storage, 'secret.bin'), 'no');
    fs.writeFileSync(Buffer.concat([b(a.storage), b('/locked-\xe9.jpg')]), 'no');
    sh('chown', ['-R', `${NOBODY}:${NOBODY}`, a.root]);
    fs.chmodSync(path.join(a.storage, 'private'), 0o000);
    fs.chmodSync(path.join(a.storage, 'secret.bin'), 0o000);
    fs.chmodSync(Buffer.concat([b(a.storage), b('/locked-\xe9.jpg')]), 0o000);
    const hook = await startRecorder();
    try {
      const env = { NOTIFY_ON: 'failure', NOTIFY_WEBHOOK_URL: `${hook.url}/hook`, NOTIFY_RETRIES: '0' };
      const r = await run(['create', '--type', 'full', ...a.flags], { cwd: a.root, env, uid: NOBODY });
      expect(r.code, describeRun(r)).toBe(6);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).toMatch(/3 paths could not be read and are NOT in this backup/);
      for (const p of ['storage/private/: EACCES', 'storage/secret.bin: EACCES', 'storage/locked-\\xe9.jpg: EACCES']) expect(r.stderr).toContain(p);

      // both halves were made: the database, and the storage archive with what could be read
      const list = parseJsonStdout<{ type: string; status: string }[]>(await run(['list', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
      expect(list.map((e) => `${e.type} ${e.status}`).sort()).toEqual(['database ok', 'full ok', 'storage ok']);
      const sidecarFile = fs.readdirSync(path.join(a.backupDir, 'storage')).find((n) => n.endsWith('.json'))!;
      const sidecar = JSON.parse(fs.readFileSync(path.join(a.backupDir, 'storage', sidecarFile), 'utf8'));
      expect(sidecar.skipped).toEqual([
        { path: 'storage/locked-\\xe9.jpg', error: 'EACCES' },
        { path: 'storage/private/', error: 'EACCES' },
        { path: 'storage/secret.bin', error: 'EACCES' },
      ]);
      const gnu = gnuExtract(a.backupDir, path.join(a.root, 'gnu'));
      expect(fs.readFileSync(path.join(gnu, 'storage/ok.txt'), 'utf8')).toBe('readable');

      const [note] = await hook.waitFor(1, 10_000);
      expect(note.body).toContain('storage/secret.bin');
      expect(note.body).toContain('storage/private/');

      const c = await run(['check', '--type', 'full', '--backup-dir', a.backupDir], { cwd: a.root });
      expect(c.code, describeRun(c)).not.toBe(0);
      expect(c.stdout + c.stderr).toMatch(/exit 6.*storage\/private\//);
    } finally {
      await hook.close();
      fs.chmodSync(path.join(a.storage, 'private'), 0o755);
    }
  });
});

/**
 * A real racing process: for each name, `.alt-NAME` is a symlink to `target` or a FIFO, and the two are
 * exchanged atomically (renameat2 RENAME_EXCHANGE) in a tight loop, tens of thousands of times a second.
 */
function racer(dir: string, names: string[], kind: 'symlink' | 'fifo', target = ''): ChildProcess {
  for (const n of names) {
    const alt = path.join(dir, `.alt-${n}`);
    if (kind === 'symlink') fs.symlinkSync(target, alt);
    else sh('mkfifo', [alt]);
  }
  const py = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(sys.argv[1])
names = [n.encode() for n in sys.argv[2:]]
end = time.time() + 150
while time.time() < end:
    for n in names:
        if libc.renameat2(-100, n, -100, b'.alt-' + n, 2) != 0:
            raise OSError(ctypes.get_errno(), 'renameat2')
`;
  const c = spawn('python3', ['-c', py, dir, ...names], { stdio: 'ignore' });
  children.push(c);
  return c;
}

describe('races with the tree (item 3)', () => {
  it('files swapped for a symlink to a root-only 0600 file by a racing process: the secret never enters an archive', async () => {
    const a = app('symlink-race');
    const secret = path.join(a.root, 'root-only.txt');
    fs.writeFileSync(secret, 'TOP-SECRET-ROOT-ONLY\n', { mode: 0o600 });
    const names = Array.from({ length: 20 }, (_, i) => `f${String(i).padStart(2, '0')}.txt`);
    for (const n of names) fs.writeFileSync(path.join(a.storage, n), 'plain file content\n');
    racer(a.storage, names, 'symlink', secret);
    let changed = 0;
    for (let i = 0; i < 8; i++) {
      const r = await run(['create', '--type', 'storage', '--json', ...a.flags], { cwd: a.root, timeoutMs: 60_000 });
      expect(r.code, describeRun(r)).toBe(0);
      changed += (parseJsonStdout<{ warnings: string[] }>(r).warnings ?? []).filter((w) => /changed while archiving/.test(w)).length;
    }
    for (const c of children) c.kill('SIGKILL');
    for (const archive of fs.readdirSync(path.join(a.backupDir, 'storage')).filter((n) => n.endsWith('.tar.gz'))) {
      const listing = sh('tar', ['-xzOf', path.join(a.backupDir, 'storage', archive)]).stdout;
      expect(listing, `${archive} holds the root-only file's content`).not.toContain('TOP-SECRET');
    }
    expect(changed, 'the racer was seen at least once').toBeGreaterThan(0);
  }, 180_000);

  it('files swapped for FIFOs by a racing process: create finishes (no hang), the FIFOs are left out, SIGTERM ends a run', async () => {
    const a = app('fifo-race');
    const names = Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, '0')}.bin`);
    for (const n of names) fs.writeFileSync(path.join(a.storage, n), 'plain file content\n');
    racer(a.storage, names, 'fifo');
    let changed = 0;
    for (let i = 0; i < 6; i++) {
      const r = await run(['create', '--type', 'storage', '--json', ...a.flags], { cwd: a.root, timeoutMs: 60_000 });
      expect(r.code, describeRun(r)).toBe(0);
      changed += (parseJsonStdout<{ warnings: string[] }>(r).warnings ?? []).filter((w) => /changed while archiving \(replaced by a special file/.test(w)).length;
    }
    expect(changed, 'the racer was seen at least once').toBeGreaterThan(0);
    // SIGTERM while the racer runs: the process ends (a create stuck opening a FIFO never did)
    const last = start(['create', '--type', 'storage', ...a.flags], { cwd: a.root, timeoutMs: 60_000 });
    // SIGTERM once the run holds its lock (working, handlers installed): on a loaded machine 2 s may not
    // be enough for Node to start, and a SIGTERM then ends it by the default action (no code)
    let exited = false;
    void last.done.then(() => {
      exited = true;
    });
    const lockFile = path.join(a.backupDir, '.vertex-backup.lock');
    for (const until = Date.now() + 30_000; !exited && !fs.existsSync(lockFile) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 5));
    last.child.kill('SIGTERM');
    const t0 = Date.now();
    const lr = await last.done;
    expect([0, 143], describeRun(lr)).toContain(lr.code);
    expect(Date.now() - t0, 'ended soon after SIGTERM').toBeLessThan(15_000);
    expect(fs.existsSync(path.join(a.backupDir, '.vertex-backup.lock'))).toBe(false);
    for (const c of children) c.kill('SIGKILL');
    for (const archive of fs.readdirSync(path.join(a.backupDir, 'storage')).filter((n) => n.endsWith('.tar.gz'))) {
      const listing = sh('tar', ['-tvzf', path.join(a.backupDir, 'storage', archive)]).stdout;
      expect(listing.split('\n').filter((l) => l.startsWith('p')), `${archive} holds a FIFO`).toEqual([]);
    }
  }, 180_000);

  needs('xz', 'xz-utils').it('SIGTERM during a long storage backup ends the process within seconds: lock released, partial files removed', async () => {
    const a = app('sigterm');
    // incompressible data through xz -9: the storage phase lasts long enough to be interrupted
    const big = fs.openSync(path.join(a.storage, 'video.mp4'), 'w');
    for (let i = 0; i < 48; i++) fs.writeSync(big, spawnSync('head', ['-c', String(1 << 20), '/dev/urandom']).stdout);
    fs.closeSync(big);
    const c = start(['create', '--type', 'storage', '--compression', 'xz', '--compression-level', '9', ...a.flags], { cwd: a.root, timeoutMs: 120_000 });
    const storageDir = path.join(a.backupDir, 'storage');
    const holderFile = path.join(a.backupDir, '.vertex-backup.lock');
    for (let i = 0; i < 400 && !fs.existsSync(holderFile); i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(holderFile), 'the run took the lock').toBe(true);
    // well inside the storage phase: xz -9 over 48 MiB of random data takes far longer than this
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    c.child.kill('SIGTERM');
    const r = await c.done;
    const took = Date.now() - t0;
    expect(r.code, describeRun(r)).toBe(143);
    expect(took, 'the process ended soon after SIGTERM').toBeLessThan(15_000);
    expect(fs.existsSync(path.join(a.backupDir, '.vertex-backup.lock')), 'holder file removed').toBe(false);
    expect(fs.readdirSync(storageDir), 'no partial archive left').toEqual([]);
    // and the next run takes the lock at once
    const next = await run(['create', '--type', 'database', ...a.flags], { cwd: a.root });
    expect(next.code, describeRun(next)).toBe(0);
  }, 180_000);
});

describe('verify while a create runs (item 5)', () => {
  it('reports the files of the run holding the lock as in progress, exits 0 and records no failure', async () => {
    const a = app('inprogress');
    fs.writeFileSync(path.join(a.storage, 'a.txt'), 'a');
    const first = await run(['create', '--type', 'full', ...a.flags], { cwd: a.root });
    expect(first.code, describeRun(first)).toBe(0);
    // a live create holds the lock and has written part of its archive and its database copy, no sidecar yet
    const holder = await holdLock(a.backupDir, 'create --type full');
    children.push(holder.child);
    // the id a run allocates after taking the lock (`_9`: never the id of the backup made just before)
    const id = `${new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15)}_9`;
    fs.writeFileSync(path.join(a.backupDir, 'storage', `storage_backup_${id}.tar.gz.tmp`), 'half an archive');
    fs.writeFileSync(path.join(a.backupDir, 'database', `db_backup_${id}.db`), 'a database copy, sidecar not yet written');
    const v = await run(['verify', '--all', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(0);
    expect(v.stdout).toMatch(/in progress/);
    expect(v.stdout).toContain(`being written by the running 'create --type full' (pid ${holder.pid})`);
    const l = parseJsonStdout<{ id: string; type: string; status: string }[]>(await run(['list', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    expect(l.filter((e) => e.id === id).map((e) => `${e.type} ${e.status}`)).toEqual(['database in-progress', 'storage in-progress']);
    const status = JSON.parse(fs.readFileSync(path.join(a.backupDir, 'status.json'), 'utf8'));
    expect(status.runs.verify.ok).toBe(true);
    const c = await run(['check', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(c.code, describeRun(c)).toBe(0);
    // once that run is gone (killed), what it left without metadata is an interrupted backup
    holder.child.kill('SIGKILL');
    await new Promise((r) => holder.child.once('exit', r));
    const after = await run(['verify', '--all', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(after.code, describeRun(after)).toBe(3);
    expect(after.stdout).toMatch(/no metadata \(interrupted run\)/);
  });
});

describe('one odd sidecar (item 6)', () => {
  it('a sidecar with compression "lz4" marks that backup damaged (exit 3); the others verify and restore', async () => {
    const a = app('lz4');
    fs.writeFileSync(path.join(a.storage, 'a.txt'), 'a');
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      // two level 0 backups: a level 1 would need the odd one's archive and be damaged with it
      const r = await run(['create', '--type', 'storage', '--full', '--json', ...a.flags], { cwd: a.root });
      expect(r.code, describeRun(r)).toBe(0);
      ids.push(parseJsonStdout<{ id: string }>(r).id);
    }
    const odd = path.join(a.backupDir, 'storage', `storage_backup_${ids[0]}.json`);
    fs.writeFileSync(odd, fs.readFileSync(odd, 'utf8').replace('"compression": "gzip"', '"compression": "lz4"'));
    const v = await run(['verify', '--all', '--json', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
    const results = parseJsonStdout<{ results: { id: string; ok: boolean; problems: string[] }[] }>(v).results;
    expect(results.find((x) => x.id === ids[0])).toMatchObject({ ok: false, problems: [expect.stringContaining("unknown compression \"lz4\"")] });
    expect(results.find((x) => x.id === ids[1])?.ok).toBe(true);
    const good = await run(['restore', ids[1], '--target', path.join(a.root, 'r1'), '--yes', ...a.flags], { cwd: a.root });
    expect(good.code, describeRun(good)).toBe(0);
    const bad = await run(['restore', ids[0], '--target', path.join(a.root, 'r0'), '--yes', ...a.flags], { cwd: a.root });
    expect(bad.code, describeRun(bad)).toBe(3);
    expect(bad.stderr).toContain('lz4');
  });
});

describe('a backup directory inside the storage directory (item 7)', () => {
  it('is left out of every archive, and the run says so', async () => {
    const a = app('inside');
    fs.writeFileSync(path.join(a.storage, 'photo.jpg'), 'jpg');
    const backupDir = path.join(a.storage, 'backups');
    const flags = ['--db-path', a.dbPath, '--storage-path', a.storage, '--backup-dir', backupDir];
    for (let i = 0; i < 2; i++) {
      const r = await run(['create', '--type', 'full', ...flags], { cwd: a.root });
      expect(r.code, describeRun(r)).toBe(0);
      expect(r.stderr).toContain(`the backup directory storage/backups is inside the storage directory: left out of the archive`);
    }
    const archives = fs.readdirSync(path.join(backupDir, 'storage')).filter((n) => n.endsWith('.tar.gz')).sort();
    for (const [i, archive] of archives.entries()) {
      const names = sh('tar', ['-tzf', path.join(backupDir, 'storage', archive)]).stdout.trim().split('\n').filter(Boolean);
      // the second run is a level 1: it holds only what changed (the storage directory's own entry)
      if (i === 0) expect(names.sort()).toEqual(['storage', 'storage/photo.jpg']);
      else expect(names.every((n) => n === 'storage' || n === 'storage/photo.jpg'), names.join(',')).toBe(true);
    }
    const sidecar = JSON.parse(fs.readFileSync(path.join(backupDir, 'storage', fs.readdirSync(path.join(backupDir, 'storage')).find((n) => n.endsWith('.json'))!), 'utf8'));
    expect(sidecar.notes[0]).toMatch(/left out/);
  });

  it('the storage directory itself as the backup directory is refused with exit 2, no backup written', async () => {
    const a = app('same');
    fs.writeFileSync(path.join(a.storage, 'photo.jpg'), 'jpg');
    const r = await run(['create', '--type', 'full', '--db-path', a.dbPath, '--storage-path', a.storage, '--backup-dir', a.storage], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain(`error: the backup directory ${a.storage} is the storage directory`);
    // (the failed run is recorded in status.json, under its lock file, as every run that cannot start is)
    expect(fs.readdirSync(a.storage).filter((n) => n !== 'status.json' && n !== '.vertex-backup.status.lock')).toEqual(['photo.jpg']);
  });
});

describe('raw errors (item 8)', () => {
  it('--backup-dir naming a file: list, verify and create say so with exit 2', async () => {
    const a = app('notadir');
    const file = path.join(a.root, 'backups-file');
    fs.writeFileSync(file, 'not a directory');
    for (const args of [['list'], ['verify'], ['create', '--type', 'database', '--db-path', a.dbPath]]) {
      const r = await run([...args, '--backup-dir', file], { cwd: a.root });
      expect(r.code, describeRun(r)).toBe(2);
      expect(r.stderr).toContain(`error: backup directory ${file} (--backup-dir) is not a directory`);
      expect(r.stderr).not.toMatch(/ENOTDIR|EEXIST|scandir/);
    }
  });

  it('a password holding @ is masked whole: postgresql://u:p@ss@h', async () => {
    const a = app('pgurl');
    const r = await run(['create', '--type', 'database', '--backup-dir', a.backupDir], { cwd: a.root, env: { DATABASE_URL: 'postgresql://u:p@ss@h/db' } });
    // PostgreSQL is a source now: a host that does not resolve is a failed run (1), not bad usage
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stderr).toContain('postgresql://u:***@h/db');
    expect(r.stderr).not.toContain('ss@h');
    expect(r.stderr).not.toContain('p@ss');
  });

  it('a --config file at mode 0644 holding a URL with a password is refused like the remotes file', async () => {
    const a = app('cfgmode');
    const cfg = path.join(a.root, 'vertex.json');
    fs.writeFileSync(cfg, JSON.stringify({ notifyWebhookUrl: 'https://hookuser:hunter2@hooks.invalid/x' }), { mode: 0o644 });
    fs.chmodSync(cfg, 0o644);
    const r = await run(['list', '--config', cfg, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain(`${cfg} holds secrets but is readable by group or others (mode 0644)`);
    expect(r.stderr).not.toContain('hunter2');
    fs.chmodSync(cfg, 0o600);
    const ok = await run(['list', '--config', cfg, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(ok.code, describeRun(ok)).toBe(0);
  });
});
