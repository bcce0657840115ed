/**
 * An operator at 02:00 with one archive copied to a USB disk: since storage backups are incremental, the
 * newest archive usually holds only what changed since the night before. Restored alone it would put a
 * nearly empty tree in place of the media. Named by path while the backup directory knows it as level > 0,
 * it is refused with the command that restores the whole backup; nothing live changes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { makeApp, rmrf, snapshot } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

describe('restore PATH of a copied storage archive', () => {
  it('a level 1 archive is refused (exit 2, live tree unchanged) and named by id it restores; a level 0 copy restores with a warning', async () => {
    const app = makeApp();
    apps.push(app.cwd);
    const create = async () => {
      const r = await run(['create', '--type', 'storage', '--json', ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      return parseJsonStdout<{ id: string }>(r).id;
    };
    const id0 = await create();
    fs.writeFileSync(path.join(app.storagePath, 'tonight.jpg'), 'new upload');
    const id1 = await create();
    const usb = path.join(app.cwd, 'usb');
    fs.mkdirSync(usb);
    for (const id of [id0, id1]) fs.copyFileSync(path.join(app.backupDir, 'storage', `storage_backup_${id}.tar.gz`), path.join(usb, `storage_backup_${id}.tar.gz`));
    const live = snapshot(app.storagePath);

    const refused = await run(['restore', path.join(usb, `storage_backup_${id1}.tar.gz`), '--yes', ...app.flags], { cwd: app.cwd });
    expect(refused.code, describeRun(refused)).toBe(2);
    expect(refused.stderr).toContain(`is the archive of incremental storage backup ${id1} (level 1): it holds only what changed`);
    expect(refused.stderr).toContain(`vertex-backup restore ${id1}`);
    expect(snapshot(app.storagePath)).toEqual(live);

    // what the hint says restores the whole tree
    const byId = await run(['restore', id1, '--target', path.join(app.cwd, 'by-id'), '--yes', ...app.flags], { cwd: app.cwd });
    expect(byId.code, describeRun(byId)).toBe(0);
    expect(snapshot(path.join(app.cwd, 'by-id', 'storage'))).toEqual(live);

    // a level 0 copy is the whole tree of its night
    const level0 = await run(['restore', path.join(usb, `storage_backup_${id0}.tar.gz`), '--target', path.join(app.cwd, 'from-usb'), '--yes', ...app.flags], { cwd: app.cwd });
    expect(level0.code, describeRun(level0)).toBe(0);
    expect(level0.stderr).toMatch(/no checksum was available .*incremental \(level > 0\)/);
    expect(fs.existsSync(path.join(app.cwd, 'from-usb', 'storage', 'tonight.jpg'))).toBe(false);
    expect(fs.readdirSync(path.join(app.cwd, 'from-usb', 'storage')).length).toBeGreaterThan(1);
  });
});
