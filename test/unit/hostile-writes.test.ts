/**
 * Issue 30 items 3 and 5: small files written atomically (the metrics file in a shared textfile
 * directory, sidecars, journals, status) never write through a link a neighbour planted at the temp
 * name, and have their mode from creation. The old temp names were `<name>-<pid>`: guessable, and the
 * test plants links at exactly those names.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createExclusive, writeFileAtomic } from '../../src/fsutil.js';
import { writeMetricsFile } from '../../src/notify/metrics.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function shared(): { dir: string; victim: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-shared-'));
  dirs.push(dir);
  fs.chmodSync(dir, 0o1777);
  const victim = path.join(dir, 'root-only-secret');
  fs.writeFileSync(victim, 'secret\n', { mode: 0o600 });
  fs.chmodSync(victim, 0o600);
  return { dir, victim };
}
const modeOf = (p: string) => fs.statSync(p).mode & 0o777;

describe('atomic small-file writes in a directory others can write', () => {
  it('writeMetricsFile never writes through a link at its temp name, nor chmods what it leads to', async () => {
    const { dir, victim } = shared();
    const file = path.join(dir, 'vertex_backup.prom');
    fs.symlinkSync(victim, path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`));
    const backupDir = path.join(dir, 'backups');
    fs.mkdirSync(backupDir);
    await writeMetricsFile(file, backupDir);
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(modeOf(victim)).toBe(0o600);
    expect(fs.lstatSync(file).isFile()).toBe(true);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/vertex_backup_/);
    expect(modeOf(file)).toBe(0o644);
  });

  it('writeFileAtomic never writes through a link at its temp name; the file is 0600 whatever the umask', async () => {
    const { dir, victim } = shared();
    const file = path.join(dir, 'status.json');
    fs.symlinkSync(victim, path.join(dir, `.tmp-${path.basename(file)}-${process.pid}`));
    const old = process.umask(0);
    try {
      await writeFileAtomic(file, '{"ok":true}');
    } finally {
      process.umask(old);
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('{"ok":true}');
    expect(modeOf(file)).toBe(0o600);
  });

  it('createExclusive refuses a name that is a link (even a dangling one) or a file', async () => {
    const { dir, victim } = shared();
    const link = path.join(dir, 'link');
    fs.symlinkSync(victim, link);
    await expect(createExclusive(link)).rejects.toThrow(/EEXIST|ELOOP/);
    const dangling = path.join(dir, 'dangling');
    fs.symlinkSync(path.join(dir, 'nowhere'), dangling);
    await expect(createExclusive(dangling)).rejects.toThrow(/EEXIST|ELOOP/);
    expect(fs.existsSync(path.join(dir, 'nowhere'))).toBe(false);
  });
});
