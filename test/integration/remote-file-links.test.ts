/**
 * Issue 30 item 4: a file:// remote (a NAS whose owner is not the operator) never follows a symlinked
 * subdirectory: writes, reads, stats and deletes through one are refused, and the local directory it
 * points at is untouched.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { tempDir } from '../helpers/servers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('file:// remote and symlinks planted on the NAS', () => {
  it('refuses to write, read, stat or delete through a symlinked subdirectory', async () => {
    const nas = tempDir('vb-nas-');
    const local = tempDir('vb-local-');
    dirs.push(nas, local);
    fs.writeFileSync(path.join(local, 'keep'), 'local\n');
    fs.symlinkSync(local, path.join(nas, 'storage'));
    const src = path.join(nas, '..', `${path.basename(nas)}-src`);
    dirs.push(src);
    fs.writeFileSync(src, 'from the backup\n');
    const remote = await openRemoteDefinition({ name: 'nas', url: pathToFileURL(nas).href, enabled: true, options: {} });
    await expect(remote.put('storage/planted', src)).rejects.toThrow(/symlink/);
    await expect(remote.put('storage/keep', src)).rejects.toThrow(/symlink/);
    await expect(remote.stat('storage/keep')).rejects.toThrow(/symlink/);
    await expect(remote.read('storage/keep')).rejects.toThrow(/symlink/);
    await expect(remote.delete('storage/keep')).rejects.toThrow(/symlink/);
    expect(fs.readdirSync(local)).toEqual(['keep']);
    expect(fs.readFileSync(path.join(local, 'keep'), 'utf8')).toBe('local\n');
    // a real subdirectory still works
    await remote.put('database/a.db', src);
    expect(fs.readFileSync(path.join(nas, 'database', 'a.db'), 'utf8')).toBe('from the backup\n');
  });
});
