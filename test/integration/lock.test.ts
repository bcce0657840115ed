/**
 * Issue 12, item 4: the kernel lock, in process. The e2e and fault suites race real processes; these
 * pin the rules: one holder at a time (also within one process), the holder file never decides.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireLock, isLockHeld, jobOf, LOCK_DB, LOCK_FILE } from '../../src/catalog/lock.js';
import { listBackups } from '../../src/catalog/local-store.js';
import { readStatus } from '../../src/catalog/status.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
const fresh = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-lock-'));
  dirs.push(d);
  return d;
};

describe('acquireLock', () => {
  it('a second acquire is refused while the first holds it, and succeeds after release', async () => {
    const dir = fresh();
    const a = await acquireLock(dir, 'create --type full');
    expect(isLockHeld(dir)).toBe(true);
    await expect(acquireLock(dir, 'rotate')).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringContaining(`pid ${process.pid}`) });
    // the refused attempt did not drop the holder's lock (closing a descriptor drops fcntl locks)
    expect(isLockHeld(dir)).toBe(true);
    a.release();
    expect(isLockHeld(dir)).toBe(false);
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect(fs.statSync(path.join(dir, LOCK_DB)).mode & 0o777).toBe(0o600);
    const b = await acquireLock(dir, 'rotate');
    expect(b.previous).toBeUndefined();
    b.release();
  });

  it('a holder file without a kernel lock behind it (pid 1, another host) never blocks; it is recorded as a run that died', async () => {
    const dir = fresh();
    const dead = { pid: 1, hostname: 'gone-container', started_at: '2026-01-01T02:00:00.000Z', command: 'create --type database' };
    fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(dead));
    const l = await acquireLock(dir, 'create --type database');
    expect(l.previous).toMatchObject(dead);
    l.release();
    const { status } = await readStatus(dir);
    expect(status?.interrupted?.['create:database']).toMatchObject({ pid: 1, hostname: 'gone-container', command: 'create --type database' });
  });

  it('--wait: waits for the holder and takes the lock once it is released', async () => {
    const dir = fresh();
    const a = await acquireLock(dir, 'create --type full');
    setTimeout(() => a.release(), 600);
    const b = await acquireLock(dir, 'rotate', { waitMs: 10_000 });
    expect(b.holder.command).toBe('rotate');
    b.release();
  });

  it('looking at the lock from the holding process (list, verify) never drops it: another process still finds it held', async () => {
    const dir = fresh();
    const a = await acquireLock(dir, 'create --type full');
    for (let i = 0; i < 3; i++) expect(isLockHeld(dir)).toBe(true);
    await listBackups(dir);
    const probe = `const { isLockHeld } = await import(${JSON.stringify(path.resolve('dist/catalog/lock.js'))}); process.stdout.write(String(isLockHeld(process.argv[1])));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe, dir], { encoding: 'utf8' });
    expect(r.stdout, r.stderr).toBe('true');
    a.release();
    const r2 = spawnSync(process.execPath, ['--input-type=module', '-e', probe, dir], { encoding: 'utf8' });
    expect(r2.stdout, r2.stderr).toBe('false');
  });

  it('names status.json jobs after the command', () => {
    expect(jobOf('create --type full')).toBe('create:full');
    expect(jobOf('rotate')).toBe('rotate');
    expect(jobOf('restore 20240101_120000')).toBe('restore');
  });
});
