/**
 * A tree owned by www-data under a directory owned by root (/var/www/app/storage), restored by the
 * www-data user: the storage directory cannot be renamed (its parent is not writable), so it is swapped
 * by contents, the old contents kept inside it, as for a mount point. Needs root to set up the owners.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { binaryUnreachableBy, describeRun, run } from '../helpers/cli.js';
import { rmrf, snapshot, tempDir } from '../helpers/fixtures.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmrf));
const UID = 33; // www-data on Debian

describe.runIf(process.getuid?.() === 0 || process.env.CI)('restore by the owner of the tree, not of its parent (as root, runs as uid 33)', () => {
  it('swaps the contents inside the storage directory and keeps the old ones in <storage>/.pre-restore-<id>', async (ctx) => {
    const unreachable = binaryUnreachableBy(UID);
    if (unreachable) return ctx.skip(unreachable);
    const root = tempDir('vb-owner-');
    dirs.push(root);
    fs.chmodSync(root, 0o755);
    const app = path.join(root, 'app'); // root's
    const storage = path.join(app, 'storage');
    const backups = path.join(root, 'backups');
    fs.mkdirSync(path.join(storage, 'photos'), { recursive: true });
    fs.writeFileSync(path.join(storage, 'photos', 'a.jpg'), 'the photo');
    fs.mkdirSync(backups);
    for (const p of [storage, path.join(storage, 'photos'), path.join(storage, 'photos', 'a.jpg'), backups]) fs.chownSync(p, UID, UID);
    const asOwner = (...args: string[]) => run([...args, '--storage-path', storage, '--backup-dir', backups], { cwd: root, uid: UID });

    const created = await asOwner('create', '--type', 'storage', '--json');
    expect(created.code, describeRun(created)).toBe(0);
    const id = JSON.parse(created.stdout).id as string;
    const backedUp = snapshot(storage);
    fs.writeFileSync(path.join(storage, 'photos', 'a.jpg'), 'overwritten by mistake');
    fs.writeFileSync(path.join(storage, 'stray.txt'), 'new');
    fs.chownSync(path.join(storage, 'stray.txt'), UID, UID);

    const restored = await asOwner('restore', 'latest', '--yes');
    expect(restored.code, describeRun(restored)).toBe(0);
    const kept = path.join(storage, `.pre-restore-${id}`);
    expect(restored.stdout + restored.stderr).toContain(kept);
    // the storage directory itself now holds the kept copy: its own mtime is the swap's
    const { '.': _now, ...restoredTree } = snapshot(storage, { exclude: (rel) => rel.startsWith('.pre-restore-') });
    const { '.': _then, ...backedUpTree } = backedUp;
    expect(restoredTree).toEqual(backedUpTree);
    expect(fs.readFileSync(path.join(kept, 'photos', 'a.jpg'), 'utf8')).toBe('overwritten by mistake');
    expect(fs.readFileSync(path.join(kept, 'stray.txt'), 'utf8')).toBe('new');
    expect(fs.statSync(storage).uid).toBe(UID);
    // nothing was left in root's directory, which the owner could not have written
    expect(fs.readdirSync(app)).toEqual(['storage']);
  });
});
