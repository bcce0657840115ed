/**
 * The media disk did not mount at boot: the storage path is then the empty mount point on the root
 * filesystem. Backing that up as "every file deleted" for a week would let rotation remove the last
 * backups that hold the media, so an empty storage directory whose last backup held files is refused
 * (exit 2, nothing written) unless --allow-empty says it is meant. A real tmpfs mount where we can
 * mount (root; CI), and an emptied directory standing for it everywhere.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const CAN_MOUNT = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
const apps: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  apps.forEach(rmrf);
});

const backupFiles = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).length : 0);

async function unmountedNight(unmount: (storage: string) => void, mount?: (storage: string) => void) {
  const app = makeApp();
  apps.push(app.cwd);
  mount?.(app.storagePath);
  const first = await run(['create', '--type', 'full', ...app.flags], { cwd: app.cwd });
  expect(first.code, describeRun(first)).toBe(0);
  unmount(app.storagePath);
  expect(fs.readdirSync(app.storagePath)).toEqual([]);
  const before = backupFiles(app.backupDir);

  const r = await run(['create', '--type', 'full', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(2);
  expect(r.stderr).toMatch(/storage directory .* is empty, but storage backup \d{8}_\d{6} of it held \d+ files: is its disk mounted\?/);
  expect(r.stderr).toContain('--allow-empty');
  // nothing written: no backup of the empty tree, nothing for rotation to count
  expect(backupFiles(app.backupDir) - before).toBeLessThanOrEqual(1); // status.json may be new
  const list = parseJsonStdout<{ type: string }[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd }));
  expect(list.filter((b) => b.type === 'storage')).toHaveLength(1);

  // asked for: an empty tree is backed up
  const allowed = await run(['create', '--type', 'storage', '--allow-empty', '--json', ...app.flags], { cwd: app.cwd });
  expect(allowed.code, describeRun(allowed)).toBe(0);
  expect(parseJsonStdout<{ status: string }>(allowed).status).toBe('ok');
}

describe('a storage directory that is empty where the last backup held files', () => {
  it('an emptied directory (the unmounted mount point): exit 2, nothing written; --allow-empty backs it up', async () => {
    await unmountedNight((storage) => {
      fs.renameSync(storage, `${storage}.disk`);
      fs.mkdirSync(storage);
    });
  });

  it.runIf(CAN_MOUNT || process.env.CI)('a real tmpfs mount that is gone by the next night (as root)', async () => {
    await unmountedNight(
      (storage) => {
        expect(spawnSync('umount', [storage]).status).toBe(0);
        mounts.pop();
      },
      (storage) => {
        // the media live on the mount, backed up the first night; the directory underneath is empty
        fs.renameSync(storage, `${storage}.src`);
        fs.mkdirSync(storage);
        expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', storage]).status).toBe(0);
        mounts.push(storage);
        fs.cpSync(`${storage}.src`, storage, { recursive: true });
        expect(spawnSync('mountpoint', ['-q', storage]).status).toBe(0);
      },
    );
  });

  it('a storage directory that was always empty is backed up (a new installation)', async () => {
    const app = makeApp();
    apps.push(app.cwd);
    fs.rmSync(app.storagePath, { recursive: true });
    fs.mkdirSync(app.storagePath);
    for (let i = 0; i < 2; i++) {
      const r = await run(['create', '--type', 'full', ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
    }
  });
});
