/**
 * Issue 2, item 3 and issue 12, item 4 (promise: one run at a time): a kernel lock that dies with its
 * process. A live holder gives exit 4 naming it, --wait waits; a holder file left by a run that died
 * (a reused pid, another hostname, kill -9) never blocks, and the death is recorded for `check`.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run, start } from '../helpers/cli.js';
import { type AppFixture, filesUnder, makeApp, rmrf } from '../helpers/fixtures.js';
import { holdLock } from '../helpers/lock-holder.js';

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

async function liveHolder(backupDir: string) {
  const h = await holdLock(backupDir);
  children.push(h.child);
  return h;
}

/** A holder file as a run that died leaves it: nobody holds the kernel lock. */
function writeHolderFile(backupDir: string, holder: Record<string, unknown>): void {
  fs.writeFileSync(path.join(backupDir, LOCK), JSON.stringify(holder), { mode: 0o600 });
}

const backupsIn = (backupDir: string) => filesUnder(backupDir).filter((f) => /(^|\/)(db|storage|full)_backup_[^/]*\.(db|json|tar\.gz)$/.test(f));

describe('the lock on the backup directory', () => {
  it('a live holder: create exits 4, names the pid, writes nothing and leaves the holder file alone', async () => {
    const backupDir = freshBackupDir();
    const holder = await liveHolder(backupDir);
    const content = fs.readFileSync(path.join(backupDir, LOCK), 'utf8');
    const r = await run(['create', '--type', 'full', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(4);
    expect(r.stderr).toContain(`pid ${holder.pid}`);
    expect(r.stderr).toMatch(/^error: .*lock/im);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(fs.readFileSync(path.join(backupDir, LOCK), 'utf8')).toBe(content);
    expect(backupsIn(backupDir)).toEqual([]);
  });

  it('--json: exit 4 with the error as one JSON document', async () => {
    const backupDir = freshBackupDir();
    const holder = await liveHolder(backupDir);
    const r = await run(['create', '--json', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(4);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { exit_code: number; message: string } };
    expect(doc.ok).toBe(false);
    expect(doc.error.exit_code).toBe(4);
    expect(doc.error.message).toContain(String(holder.pid));
  });

  for (const [what, holder] of [
    ['a reused pid (pid 1, alive)', { pid: 1, hostname: os.hostname(), started_at: '2026-01-01T02:00:00.000Z', command: 'create --type full' }],
    ['another hostname (a re-created container)', { pid: 4242, hostname: 'old-container-3f2a', started_at: '2026-01-01T02:00:00.000Z', command: 'create --type full' }],
  ] as const) {
    it(`a holder file of a run that died, naming ${what}, does not block; the death is recorded and check reports it until the next success`, async () => {
      const backupDir = freshBackupDir();
      writeHolderFile(backupDir, holder);
      const r = await run(['create', '--type', 'database', '--json', ...flagsFor(small, backupDir)], { cwd: small.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      expect(fs.existsSync(path.join(backupDir, LOCK)), 'the holder file is gone after the run').toBe(false);
      const status = JSON.parse(fs.readFileSync(path.join(backupDir, 'status.json'), 'utf8'));
      expect(status.interrupted['create:full']).toMatchObject({ command: 'create --type full', pid: holder.pid, started_at: holder.started_at });
      const c = await run(['check', '--type', 'full', '--backup-dir', backupDir], { cwd: small.cwd });
      expect(c.code, describeRun(c)).not.toBe(0);
      expect(c.stdout + c.stderr).toContain(`the previous run 'create --type full' (pid ${holder.pid} on ${holder.hostname}, started ${holder.started_at}) died without finishing`);
      // the job that died runs again and succeeds: check stops reporting it
      const again = await run(['create', '--type', 'full', ...flagsFor(small, backupDir)], { cwd: small.cwd });
      expect(again.code, describeRun(again)).toBe(0);
      const c2 = await run(['check', '--type', 'full', '--backup-dir', backupDir], { cwd: small.cwd });
      expect(c2.code, describeRun(c2)).toBe(0);
      expect(c2.stdout + c2.stderr).not.toContain('died without finishing');
    });
  }

  it('kill -9 of the holder frees the lock at once', async () => {
    const backupDir = freshBackupDir();
    const holder = await liveHolder(backupDir);
    const locked = await run(['create', '--type', 'database', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(locked.code, describeRun(locked)).toBe(4);
    holder.child.kill('SIGKILL');
    await new Promise((r) => holder.child.once('exit', r));
    const r = await run(['create', '--type', 'database', ...flagsFor(small, backupDir)], { cwd: small.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).not.toMatch(/lock/i);
  });

  it('create --wait 30 waits for the holder to finish, then runs', async () => {
    const backupDir = freshBackupDir();
    const holder = await liveHolder(backupDir);
    const t0 = Date.now();
    const { done } = start(['create', '--type', 'database', '--wait', '30', ...flagsFor(small, backupDir)], { cwd: small.cwd, timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 2000));
    expect(backupsIn(backupDir), 'nothing written while the lock is held').toEqual([]);
    await holder.release();
    const r = await done;
    expect(r.code, describeRun(r)).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(backupsIn(backupDir).length).toBe(2);
    // an ordinary release is no death
    expect(fs.readFileSync(path.join(backupDir, 'status.json'), 'utf8')).not.toContain('interrupted');
  });

  it('create --wait also runs when the holder is killed while it waits', async () => {
    const backupDir = freshBackupDir();
    const holder = await liveHolder(backupDir);
    const { done } = start(['create', '--type', 'database', '--wait', '30', ...flagsFor(small, backupDir)], { cwd: small.cwd, timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1500));
    holder.child.kill('SIGKILL');
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
