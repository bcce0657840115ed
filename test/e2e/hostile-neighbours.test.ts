/**
 * Issue 30: an attacker who can write one place the tool reads (the backup directory on a NAS or a
 * mounted disk, the app user's own tree, a shared metrics directory) must not be able to make a run
 * delete, move, overwrite, leak or hang. Each test plants what such a neighbour can plant and runs the
 * built binary as an operator would.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, baseEnv, describeRun, parseJsonStdout, run, type RunResult, start } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, tempDir } from '../helpers/fixtures.js';

const ROOT = process.getuid?.() === 0;
/** needs root (files of another owner): skipped by name outside CI when not root; under CI we are root */
const asRoot = ROOT || process.env.CI ? it : it.skip;

const apps: AppFixture[] = [];
const scratch: string[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
  for (const d of scratch) rmrf(d);
});

function newApp(opts: Parameters<typeof makeApp>[0] = {}): AppFixture {
  const app = makeApp({ journalMode: 'delete', events: 200, randomBytes: 16 * 1024, ...opts });
  apps.push(app);
  return app;
}
const vb = (app: AppFixture, args: string[], extra: { env?: Record<string, string | undefined>; timeoutMs?: number } = {}) =>
  run([...args, ...app.flags], { cwd: app.cwd, timeoutMs: extra.timeoutMs ?? 60_000, env: extra.env });
const noStack = (r: RunResult) => expect(r.stderr, describeRun(r)).not.toMatch(/^\s+at\s/m);

async function createBackup(app: AppFixture, type = 'full'): Promise<string> {
  const r = await vb(app, ['create', '--type', type, '--json']);
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<{ id: string }>(r).id;
}

describe('1. a planted .restore-in-progress.json', () => {
  it('naming paths that are not the configured live ones is not acted on by any command (list included)', async () => {
    const app = newApp();
    fs.mkdirSync(app.backupDir, { recursive: true });
    const victim = tempDir('vb-victim-');
    scratch.push(victim);
    fs.writeFileSync(path.join(victim, 'secret'), 'root only\n');
    const victimFile = path.join(victim, 'precious.db');
    fs.writeFileSync(victimFile, 'precious\n');
    const attacker = tempDir('vb-attacker-');
    scratch.push(attacker);
    fs.writeFileSync(path.join(attacker, 'planted'), 'mine\n');
    const journal = path.join(app.backupDir, '.restore-in-progress.json');
    // phase storage: the old code renamed the victim aside and the attacker's tree into its place
    fs.writeFileSync(
      journal,
      JSON.stringify({
        id: 'x',
        pid: 1,
        started_at: new Date().toISOString(),
        phase: 'storage',
        storage: { dest: victim, mode: 'rename', staging: attacker, newTree: attacker, previous: `${victim}.gone` },
      }),
    );
    const r = await vb(app, ['list']);
    expect(r.code, describeRun(r)).toBe(0);
    noStack(r);
    expect(fs.readFileSync(path.join(victim, 'secret'), 'utf8')).toBe('root only\n');
    expect(fs.existsSync(`${victim}.gone`)).toBe(false);
    expect(fs.existsSync(path.join(attacker, 'planted'))).toBe(true);
    expect(r.stderr).toMatch(/ignored the journal of an interrupted restore/);
    expect(fs.existsSync(journal)).toBe(false);

    // phase staging: the old code removed whatever asideTemp and staging named
    fs.writeFileSync(
      journal,
      JSON.stringify({ id: 'x', pid: 1, started_at: '', phase: 'staging', database: { live: app.dbPath, asideTemp: victimFile } }),
    );
    const r2 = await vb(app, ['stats']);
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(fs.readFileSync(victimFile, 'utf8')).toBe('precious\n');

    // phase database without a copy aside: the old code deleted the "live" database it named
    fs.writeFileSync(journal, JSON.stringify({ id: 'x', pid: 1, started_at: '', phase: 'database', database: { live: victimFile } }));
    const r3 = await vb(app, ['list']);
    expect(r3.code, describeRun(r3)).toBe(0);
    expect(fs.readFileSync(victimFile, 'utf8')).toBe('precious\n');

    // the configured live database, but a traversing staging name
    fs.writeFileSync(
      journal,
      JSON.stringify({
        id: '../../x',
        pid: 1,
        started_at: '',
        phase: 'staging',
        storage: { dest: app.storagePath, mode: 'rename', staging: victim },
      }),
    );
    const r4 = await vb(app, ['list']);
    expect(r4.code, describeRun(r4)).toBe(0);
    expect(fs.readFileSync(path.join(victim, 'secret'), 'utf8')).toBe('root only\n');
  });
});

/** Waits until `pid` stops itself at a fault point (VERTEX_BACKUP_FAULT_POINT); false when it exited first. */
async function stoppedAtFaultPoint(pid: number, done: { exited: boolean }): Promise<boolean> {
  for (;;) {
    if (done.exited) return false;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return true;
    } catch {
      return false;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('5. the database copy is private while it is written', () => {
  it('from a shell with umask 022 the temp copy is 0600 from its first byte', async () => {
    const app = newApp({ events: 3000 });
    const old = process.umask(0o022);
    let child: ReturnType<typeof start>;
    try {
      child = start(['create', '--type', 'database', ...app.flags], { cwd: app.cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'database-copy' } });
    } finally {
      process.umask(old);
    }
    const done = { exited: false };
    child.child.on('exit', () => (done.exited = true));
    const stopped = await stoppedAtFaultPoint(child.child.pid!, done);
    const dir = path.join(app.backupDir, 'database');
    const temps = stopped ? fs.readdirSync(dir).filter((n) => n.includes('.tmp')) : [];
    const modes = temps.map((n) => `${n} ${(fs.statSync(path.join(dir, n)).mode & 0o777).toString(8)}`);
    child.child.kill('SIGKILL');
    const r = await child.done;
    expect(stopped, describeRun(r)).toBe(true);
    expect(temps.length).toBeGreaterThan(0);
    for (const m of modes) expect(m).toMatch(/ 600$/);
  });
});

/** Rewrites the manifest of storage backup `id` record by record (raw bytes between NULs), sidecar checksum updated. */
function rewriteManifest(app: AppFixture, id: string, edit: (records: Buffer[]) => Buffer[] | Buffer): void {
  const dir = path.join(app.backupDir, 'storage');
  const sidecarFile = path.join(dir, `storage_backup_${id}.json`);
  const sc = JSON.parse(fs.readFileSync(sidecarFile, 'utf8'));
  const file = path.join(dir, sc.manifest.file);
  const raw = zlib.gunzipSync(fs.readFileSync(file));
  const records: Buffer[] = [];
  for (let s = 0, i = raw.indexOf(0); i >= 0; s = i + 1, i = raw.indexOf(0, s)) records.push(raw.subarray(s, i));
  const out = edit(records);
  const gz = Buffer.isBuffer(out) ? out : zlib.gzipSync(Buffer.concat(out.flatMap((r) => [r, Buffer.of(0)])));
  fs.writeFileSync(file, gz);
  sc.manifest.checksum = createHash('sha256').update(gz).digest('hex');
  if ('size' in sc.manifest) sc.manifest.size = gz.length;
  fs.writeFileSync(sidecarFile, JSON.stringify(sc));
}
const recordOf = (r: Buffer) => ({ meta: JSON.parse(r.toString('utf8', 0, r.indexOf(9))) as Record<string, unknown>, path: r.subarray(r.indexOf(9) + 1).toString('utf8') });
const makeRecord = (meta: Record<string, unknown>, p: string) => Buffer.concat([Buffer.from(JSON.stringify(meta)), Buffer.of(9), Buffer.from(p)]);

describe('13-14. manifest records judged once, the same way by ls, verify and restore', () => {
  it('a non-numeric "mt" is damage (exit 3, one line), not a crash', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    rewriteManifest(app, id, (rs) => rs.map((r) => (recordOf(r).meta.t === 'f' ? makeRecord({ ...recordOf(r).meta, mt: 'abc' }, recordOf(r).path) : r)));
    const target = path.join(app.cwd, 'elsewhere');
    for (const args of [['ls', id], ['verify', id], ['restore', id, '--target', target, '--yes']]) {
      const r = await vb(app, args);
      expect(r.code, `${args[0]}: ${describeRun(r)}`).toBe(3);
      expect(r.stderr).not.toMatch(/BigInt/);
      expect(r.stdout + r.stderr).toMatch(/non-numeric "mt"/);
      noStack(r);
    }
  });

  it('a "path" key inside a record does not override the raw path after the tab', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    let victimPath = '';
    rewriteManifest(app, id, (rs) =>
      rs.map((r) => {
        const { meta, path: p } = recordOf(r);
        if (meta.t !== 'f' || victimPath) return r;
        victimPath = p;
        return makeRecord({ ...meta, path: 'storage/../../escaped' }, p);
      }),
    );
    const r = await vb(app, ['ls', id, '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).not.toMatch(/escaped/);
    expect(r.stdout).toContain(victimPath.split('/').pop());
  });
});

describe('13-14. a manifest that matches its checksum but cannot be read does not stop the next backups', () => {
  it('create warns and starts a new chain (level 0) that holds the whole tree', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    rewriteManifest(app, id, (rs) => rs.map((r) => (recordOf(r).meta.t === 'f' ? makeRecord({ ...recordOf(r).meta, mt: 'abc' }, recordOf(r).path) : r)));
    const r = await vb(app, ['create', '--type', 'storage', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout + r.stderr).toContain(`manifest chain of storage backup ${id} cannot be read`);
    expect(r.stdout + r.stderr).toMatch(/non-numeric .*new chain \(level 0\)/);
    const next = parseJsonStdout<{ id: string }>(r).id;
    const sc = JSON.parse(fs.readFileSync(path.join(app.backupDir, 'storage', `storage_backup_${next}.json`), 'utf8'));
    expect(sc.level).toBe(0);
    const target = path.join(app.cwd, 'elsewhere');
    const back = await vb(app, ['restore', next, '--target', target, '--yes']);
    expect(back.code, describeRun(back)).toBe(0);
    expect(fs.readdirSync(path.join(target, 'storage')).sort()).toEqual(fs.readdirSync(app.storagePath).sort());
  });
});

describe('15. restore --include of a path the backup does not hold', () => {
  it('exits 2 and restores nothing', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    const target = path.join(app.cwd, 'elsewhere');
    const r = await vb(app, ['restore', id, '--include', 'does/not/exist', '--target', target, '--yes']);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/holds nothing under ".*does\/not\/exist"/);
    expect(fs.existsSync(target) ? fs.readdirSync(target) : []).toEqual([]);
    noStack(r);
  });
});

describe('16. ls shows control characters in names escaped', () => {
  it('ESC, BEL and newline in a name or a link target never reach the terminal raw', async () => {
    const app = newApp();
    fs.writeFileSync(path.join(app.storagePath, 'evil\x1b[2Jname\x07\nfake line'), 'x');
    fs.symlinkSync('target\x1b]0;title\x07', path.join(app.storagePath, 'link'));
    const id = await createBackup(app, 'storage');
    const r = await vb(app, ['ls', id]);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(r.stdout).toContain('evil\\x1b[2Jname\\x07\\nfake line');
    expect(r.stdout).toContain('-> target\\x1b]0;title\\x07');
  });
});

describe('16. list, verify, diff: control characters from the backup directory never reach the terminal raw', () => {
  const raw = /[\x00-\x08\x0b-\x1f\x7f]/;
  it('diff escapes names; a sidecar id with ESC, BEL and a newline is escaped in list and verify (one table row)', async () => {
    const app = newApp();
    const first = await createBackup(app, 'storage');
    fs.writeFileSync(path.join(app.storagePath, 'evil\x1b[2Jname\x07\nfake line'), 'x');
    await new Promise((r) => setTimeout(r, 1100));
    const second = await createBackup(app, 'storage');
    const d = await vb(app, ['diff', first, second]);
    expect(d.code, describeRun(d)).toBe(0);
    expect(d.stdout).not.toMatch(raw);
    expect(d.stdout).toContain('+ evil\\x1b[2Jname\\x07\\nfake line');
    expect(d.stdout.split('\n').filter((l) => l.startsWith('fake line'))).toEqual([]);

    const db = await createBackup(app, 'database');
    const sc = path.join(app.backupDir, 'database', `db_backup_${db}.json`);
    fs.writeFileSync(sc, JSON.stringify({ ...JSON.parse(fs.readFileSync(sc, 'utf8')), id: 'x\x1b]0;pwned\x07\nfake line' }));
    for (const args of [['list'], ['verify', '--all']]) {
      const r = await vb(app, args);
      expect(r.stdout + r.stderr, `${args[0]}: ${describeRun(r)}`).not.toMatch(raw);
      expect(r.stdout + r.stderr).toContain("x\\x1b]0;pwned\\x07\\nfake line'");
      noStack(r);
    }
  });
});

describe('10. manifests are read in bounded memory and linear time', () => {
  it('a gzip bomb of a manifest (small file, hundreds of MB unpacked) is damage, read in bounded memory', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    // one endless record: no NUL in 400 MB of 'a'
    rewriteManifest(app, id, () => zlib.gzipSync(Buffer.alloc(400 << 20, 'a'), { level: 9 }));
    const r = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, BIN, 'ls', id, ...app.flags], {
      cwd: app.cwd,
      env: baseEnv(app.cwd),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/longer than/);
    const kb = Number(/maxrss=(\d+)/.exec(r.stderr)?.[1]);
    expect(kb).toBeLessThan(200 * 1024);
  });
});

describe('13. verify says ok only to what restore accepts', () => {
  for (const [what, edit] of [
    ['a "../" path', (p: string) => p.replace(/\/[^/]+$/, '/../../escaped')],
    ['an absolute path', () => '/etc/escaped'],
    ['a NUL in a path', (p: string) => `${p}\0x`],
  ] as const) {
    it(`a manifest naming ${what}: verify exits 3 as restore does`, async () => {
      const app = newApp();
      const id = await createBackup(app, 'storage');
      let done = false;
      rewriteManifest(app, id, (rs) =>
        rs.map((r) => {
          const { meta, path: p } = recordOf(r);
          if (meta.t !== 'f' || done) return r;
          done = true;
          return makeRecord(meta, edit(p));
        }),
      );
      const v = await vb(app, ['verify', id]);
      const target = path.join(app.cwd, 'elsewhere');
      const r = await vb(app, ['restore', id, '--target', target, '--yes', '--no-verify']);
      expect(r.code, describeRun(r)).toBe(3);
      expect(v.code, describeRun(v)).toBe(3);
      noStack(v);
    });
  }
});

describe('2. symlinks the app user plants at the live paths', () => {
  asRoot('a restore as root refuses a storage path or database that another user replaced with a link to what is not theirs', async () => {
    const app = newApp();
    const id = await createBackup(app, 'full');
    const rootOnly = tempDir('vb-root-only-');
    scratch.push(rootOnly);
    fs.chmodSync(rootOnly, 0o700);
    fs.writeFileSync(path.join(rootOnly, 'secret'), 'root\n');
    const rootDb = path.join(rootOnly, 'root.db');
    fs.copyFileSync(app.dbPath, rootDb);
    const rootDbBytes = fs.readFileSync(rootDb);
    // www-data (uid 33) owns the app tree and plants links at both live paths
    fs.rmSync(app.storagePath, { recursive: true });
    fs.symlinkSync(rootOnly, app.storagePath);
    fs.lchownSync(app.storagePath, 33, 33);
    fs.rmSync(app.dbPath);
    fs.symlinkSync(rootDb, app.dbPath);
    fs.lchownSync(app.dbPath, 33, 33);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/refusing to restore the database through .* symlink owned by uid 33/);
    noStack(r);
    // the database link removed: the storage link is refused too
    fs.rmSync(app.dbPath);
    const r2 = await vb(app, ['restore', id, '--yes']);
    expect(r2.code, describeRun(r2)).toBe(2);
    expect(r2.stderr).toMatch(/refusing to restore the storage through .* symlink owned by uid 33/);
    expect(fs.readdirSync(rootOnly).sort()).toEqual(['root.db', 'secret']);
    expect(fs.readFileSync(rootDb).equals(rootDbBytes)).toBe(true);
    expect(fs.readdirSync(path.dirname(rootOnly)).filter((n) => n.startsWith(`${path.basename(rootOnly)}.pre-restore`))).toEqual([]);
  });
});

describe('11. SIGTERM ends a run that waits on a remote which never answers', () => {
  it('sync to an S3 endpoint that accepts and never answers: exit 143 within seconds of SIGTERM', async () => {
    const app = newApp();
    await createBackup(app, 'database');
    const sockets = new Set<import('node:net').Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const url = `s3://backups/x?endpoint=${encodeURIComponent(`http://127.0.0.1:${port}`)}&force_path_style=true`;
      const { child, done } = start(['sync', '--remote', url, ...app.flags], {
        cwd: app.cwd,
        timeoutMs: 60_000,
        env: { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE1', AWS_SECRET_ACCESS_KEY: 'secret-example-1' },
      });
      // wait until the request hangs on the silent server
      for (let i = 0; i < 200 && sockets.size === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(sockets.size).toBeGreaterThan(0);
      const sent = Date.now();
      child.kill('SIGTERM');
      const r = await done;
      expect(r.code, describeRun(r)).toBe(143);
      expect(Date.now() - sent).toBeLessThan(15_000);
      noStack(r);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});

describe('2. a link planted at a live path while the restore verifies', () => {
  /** waits until the process stopped itself at its fault point (state T in /proc) */
  async function stopped(pid: number): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('the restore never reached its fault point');
  }

  asRoot('the database is checked again at write time: a link planted after the first check is refused', async () => {
    const app = newApp();
    const id = await createBackup(app, 'database');
    const rootOnly = tempDir('vb-root-only-');
    scratch.push(rootOnly);
    fs.chmodSync(rootOnly, 0o700);
    const rootDb = path.join(rootOnly, 'root.db');
    fs.copyFileSync(app.dbPath, rootDb);
    // root's database differs from the backup: a restore through the link would change it
    expect(spawnSync('sqlite3', [rootDb, "CREATE TABLE root_only(x); INSERT INTO root_only VALUES ('root');"]).status).toBe(0);
    const rootDbBytes = fs.readFileSync(rootDb);
    const { child, done } = start(['restore', id, '--yes', ...app.flags], { cwd: app.cwd, timeoutMs: 60_000, env: { VERTEX_BACKUP_FAULT_POINT: 'database' } });
    await stopped(child.pid!);
    // www-data (uid 33) swaps app.db for a link to root's database between the checks and the write
    fs.rmSync(app.dbPath);
    fs.symlinkSync(rootDb, app.dbPath);
    fs.lchownSync(app.dbPath, 33, 33);
    child.kill('SIGCONT');
    const r = await done;
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/refusing to restore the database through .* symlink owned by uid 33/);
    expect(fs.readFileSync(rootDb).equals(rootDbBytes)).toBe(true);
    noStack(r);
  });
});

describe('2. a chain of links: root\'s own link leading through one the app user owns', () => {
  asRoot('restore as root refuses the storage when a link on the way belongs to another user and leads to what is not theirs', async () => {
    const app = newApp();
    const id = await createBackup(app, 'storage');
    const rootOnly = tempDir('vb-root-only-');
    const appHome = tempDir('vb-app-home-');
    scratch.push(rootOnly, appHome);
    fs.chmodSync(rootOnly, 0o700);
    fs.writeFileSync(path.join(rootOnly, 'secret'), 'root\n');
    // root set storage up as a link into the app user's home (an operator's own link: followed)
    fs.rmSync(app.storagePath, { recursive: true });
    fs.symlinkSync(path.join(appHome, 'storage'), app.storagePath);
    // the app user (uid 33) owns its home and makes `storage` there a link to root's directory
    fs.chownSync(appHome, 33, 33);
    fs.symlinkSync(rootOnly, path.join(appHome, 'storage'));
    fs.lchownSync(path.join(appHome, 'storage'), 33, 33);
    const r = await vb(app, ['restore', id, '--yes']);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/refusing to restore the storage through .* on the way is a symlink owned by uid 33/);
    expect(fs.readdirSync(rootOnly)).toEqual(['secret']);
    expect(fs.readdirSync(path.dirname(rootOnly)).filter((n) => n.startsWith(`${path.basename(rootOnly)}.pre-restore`))).toEqual([]);
    noStack(r);
  });
});
