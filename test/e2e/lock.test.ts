/**
 * Issue 2, item 3 (promise: one run at a time): the lock file names its holder; a live holder gives
 * exit 4, a dead one is taken over, --wait waits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run, start } from '../helpers/cli.js';
import { type AppFixture, deadPid, filesUnder, makeApp, rmrf } from '../helpers/fixtures.js';

const LOCK = '.vertex-backup.lock';
let small: AppFixture;
const children: ChildProcess[] = [];

beforeAll(() => {
  small = makeApp({ randomBytes: 256 * 1024 });
});
afterAll(() => rmrf(small?.cwd));
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function freshBackupDir(): string {
  const dir = fs.mkdtempSync(path.join(small.cwd, 'backups-'));
  return dir;
}

function flagsFor(app: AppFixture, backupDir: string): string[] {
  return ['--db-path', app.dbPath, '--storage-path', app.storagePath, '--backup-dir', backupDir];
}

function liveHolder(): ChildProcess {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  return c;
}

function writeLock(backupDir: string, pid: number, command = 'create --type full'): string {
  const file = path.join(backupDir, LOCK);
  const holder = { pid, hostname: os.hostname(), started_at: new Date(Date.now() - 5000).toISOString(), command };
  fs.writeFileSync(file, JSON.stringify(holder), { mode: 0o600 });
  return JSON.stringify(holder);
}

const backupsIn = (backupDir: string) => filesUnder(backupDir).filter((f) => /(^|\/)(db|storage|full)_backup_[^/]*\.(db|json|tar\.gz)$/.test(f));

describe('the lock on the backup directory', () => {
  it('a lock naming a live process: create exits 4, names the pid, writes nothing and leaves the lock alone', async () => {
    const backupDir = freshBackupDir();
    const holder = liveHolder();
    const content = writeLock(backupDir, holder.pid!);
    const r = await run(['create', '--type', 'full', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(4);
    expect(r.stderr).toContain(String(holder.pid));
    expect(r.stderr).toMatch(/^error: .*lock/im);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(fs.readFileSync(path.join(backupDir, LOCK), 'utf8')).toBe(content);
    expect(backupsIn(backupDir)).toEqual([]);
  });

  it('--json: exit 4 with the error as one JSON document', async () => {
    const backupDir = freshBackupDir();
    const holder = liveHolder();
    writeLock(backupDir, holder.pid!);
    const r = await run(['create', '--json', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(4);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { exit_code: number; message: string } };
    expect(doc.ok).toBe(false);
    expect(doc.error.exit_code).toBe(4);
    expect(doc.error.message).toContain(String(holder.pid));
  });

  it('a lock naming a dead process is taken over: exit 0, and the lock is gone afterwards', async () => {
    const backupDir = freshBackupDir();
    const pid = deadPid();
    expect(() => process.kill(pid, 0)).toThrow();
    writeLock(backupDir, pid);
    const r = await run(['create', '--type', 'full', '--json', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.existsSync(path.join(backupDir, LOCK))).toBe(false);
    expect(fs.readdirSync(backupDir).filter((n) => n.startsWith(LOCK))).toEqual([]);
    const v = await run(['verify', '--backup-dir', backupDir], { cwd: small.cwd });
    expect(v.code, describeRun(v)).toBe(0);
  });

  it('create --wait 30 waits for the holder to finish, then runs', async () => {
    const backupDir = freshBackupDir();
    const holder = liveHolder();
    writeLock(backupDir, holder.pid!);
    const t0 = Date.now();
    const { done } = start(['create', '--type', 'database', '--wait', '30', ...flagsFor(small, backupDir)], { cwd: small.cwd, timeoutMs: 60_000 });
    // the holder finishes after 2 s: it removes its lock and exits
    await new Promise((r) => setTimeout(r, 2000));
    expect(backupsIn(backupDir), 'nothing written while the lock is held').toEqual([]);
    fs.rmSync(path.join(backupDir, LOCK));
    holder.kill('SIGKILL');
    const r = await done;
    expect(r.code, describeRun(r)).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(backupsIn(backupDir).length).toBe(2);
  });

  it('create --wait also takes over when the holder dies while it waits', async () => {
    const backupDir = freshBackupDir();
    const holder = liveHolder();
    writeLock(backupDir, holder.pid!);
    const { done } = start(['create', '--type', 'database', '--wait', '30', ...flagsFor(small, backupDir)], { cwd: small.cwd, timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1500));
    holder.kill('SIGKILL');
    const r = await done;
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.existsSync(path.join(backupDir, LOCK))).toBe(false);
  });
});

describe('two create runs at once on the same backup directory', () => {
  let big: AppFixture;
  beforeAll(() => {
    big = makeApp({ randomBytes: 24 * 1024 * 1024, events: 20_000 });
  });
  afterAll(() => rmrf(big?.cwd));

  it('one runs; the other exits 4 naming the holder (or both 0 when timing serialised them); never anything else', async () => {
    const outcomes: number[] = [];
    // a few rounds: one with a real overlap is enough to see exit 4
    for (let round = 0; round < 3; round++) {
      const backupDir = path.join(big.cwd, `backups-${round}`);
      const a = start(['create', '--type', 'full', ...flagsFor(big, backupDir)], { cwd: big.cwd, timeoutMs: 90_000 });
      const b = start(['create', '--type', 'full', ...flagsFor(big, backupDir)], { cwd: big.cwd, timeoutMs: 90_000 });
      const [ra, rb] = await Promise.all([a.done, b.done]);
      for (const [r, other] of [
        [ra, b],
        [rb, a],
      ] as const) {
        expect([0, 4], describeRun(r)).toContain(r.code);
        if (r.code === 4) {
          expect(r.stderr).toContain(`pid ${other.child.pid}`);
          expect(r.stderr).not.toMatch(/^\s+at /m);
        }
      }
      expect([ra.code, rb.code]).toContain(0);
      outcomes.push(ra.code!, rb.code!);
      // what was written is whole: every backup verifies, and the lock is released
      const v = await run(['verify', '--all', '--backup-dir', backupDir], { cwd: big.cwd });
      expect(v.code, describeRun(v)).toBe(0);
      expect(fs.existsSync(path.join(backupDir, LOCK))).toBe(false);
      if (outcomes.includes(4)) break;
    }
    // 24 MiB of incompressible media: two runs started together overlap
    expect(outcomes, 'at least one round saw the lock refuse the second run').toContain(4);
  });
});
