/**
 * Docker volumes are backup directories of their own (`volumes/<name>/` inside the backup directory): the
 * nightly `sync` and `rotate` of the backup directory must reach them too, or the offsite copy silently
 * lacks the volumes and their backups fill the disk. No dockerd is needed here: a volume's backup directory
 * is a storage backup directory, made with `create --type storage --backup-dir …/volumes/NAME`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { makeApp, rmrf, snapshot } from '../helpers/fixtures.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmrf));

it('sync sends each volume to volumes/NAME on the remote, rotate and rotate --remote apply the rules to it; each says so', async () => {
  const app = makeApp({ randomBytes: 32 * 1024, events: 20 });
  dirs.push(app.cwd);
  const nas = path.join(app.cwd, 'nas');
  const remotesFile = path.join(app.cwd, 'remotes.json');
  fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { nas: { url: pathToFileURL(nas).href } } }), { mode: 0o600 });
  const vb = (args: string[], flags = app.flags) => run([...args, ...flags, '--remotes-config', remotesFile], { cwd: app.cwd, timeoutMs: 60_000 });

  // a "volume": a tree backed up into backups/volumes/pgdata, three level 0s a second apart
  const tree = path.join(app.cwd, 'pgdata');
  fs.mkdirSync(tree);
  const volDir = path.join(app.backupDir, 'volumes', 'pgdata');
  const volFlags = ['--storage-path', tree, '--backup-dir', volDir, '--db-path', app.dbPath];
  for (let i = 0; i < 3; i++) {
    fs.writeFileSync(path.join(tree, `f${i}.dat`), `volume data ${i}\n`.repeat(500));
    const c = await vb(['create', '--type', 'storage', '--full'], volFlags);
    expect(c.code, describeRun(c)).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
  }
  // a dot-name under volumes/ is the tool's own (mirrors of volumes read through a daemon): never a volume
  fs.mkdirSync(path.join(app.backupDir, 'volumes', '.mirrors', 'pgdata'), { recursive: true });
  const main = await vb(['create', '--type', 'full']);
  expect(main.code, describeRun(main)).toBe(0);

  const s = await vb(['sync']);
  expect(s.code, describeRun(s)).toBe(0);
  expect(s.stdout).toMatch(/volume pgdata/);
  const onNas = fs.readdirSync(path.join(nas, 'volumes', 'pgdata', 'storage'));
  expect(onNas.filter((n) => n.endsWith('.json'))).toHaveLength(3);
  expect(fs.existsSync(path.join(nas, 'volumes', '.mirrors'))).toBe(false);
  // the main directory's backups are where they always were
  expect(fs.readdirSync(path.join(nas, 'full')).filter((n) => n.endsWith('.json'))).toHaveLength(1);

  // the second sync sends nothing, volumes included
  const again = parseJsonStdout<{ remotes: { result: { bytes: number; synced: unknown[]; volumes: { volume: string; up_to_date: number }[] } }[] }>(await vb(['sync', '--json']));
  expect(again.remotes[0]!.result.bytes).toBe(0);
  expect(again.remotes[0]!.result.synced).toEqual([]);
  expect(again.remotes[0]!.result.volumes).toEqual([expect.objectContaining({ volume: 'pgdata', up_to_date: 3 })]);

  // the copy under volumes/pgdata is a remote of its own: listed, verified and restored from like any
  const volRemote = pathToFileURL(path.join(nas, 'volumes', 'pgdata')).href;
  const listed = parseJsonStdout<{ type: string; status: string }[]>(await vb(['list', '--remote', volRemote, '--json'], volFlags));
  expect(listed.map((b) => `${b.type} ${b.status}`)).toEqual(['storage ok', 'storage ok', 'storage ok']);
  const target = path.join(app.cwd, 'restored');
  const r = await vb(['restore', 'latest', '--from', volRemote, '--target', target, '--yes'], volFlags);
  expect(r.code, describeRun(r)).toBe(0);
  // --target puts the tree under the name of the directory it was backed up from
  expect(snapshot(path.join(target, 'pgdata'))).toEqual(snapshot(tree));

  // rotate of the backup directory applies the same rules to the volume, and says so
  const rot = await vb(['rotate', '--max-backups', '1']);
  expect(rot.code, describeRun(rot)).toBe(0);
  expect(rot.stdout).toMatch(/volume pgdata: removed 2 backups/);
  expect(fs.readdirSync(path.join(volDir, 'storage')).filter((n) => n.endsWith('.json'))).toHaveLength(1);
  expect(fs.existsSync(path.join(app.backupDir, 'volumes', '.mirrors', 'pgdata'))).toBe(true);
  // rotate --remote applies the rules to the volumes' copies on the remote too
  const remoteRot = await vb(['rotate', '--remote', 'nas', '--max-backups', '1']);
  expect(remoteRot.code, describeRun(remoteRot)).toBe(0);
  expect(remoteRot.stdout).toMatch(/volume pgdata: removed 2 backups/);
  expect(fs.readdirSync(path.join(nas, 'volumes', 'pgdata', 'storage')).filter((n) => n.endsWith('.json'))).toHaveLength(1);
  expect(fs.readdirSync(path.join(nas, 'full')).filter((n) => n.endsWith('.json'))).toHaveLength(1);
  // --type database leaves the volumes alone
  const dbOnly = await vb(['rotate', '--max-backups', '1', '--type', 'database', '--json']);
  expect(dbOnly.code, describeRun(dbOnly)).toBe(0);
  expect(parseJsonStdout<{ volumes?: unknown }>(dbOnly).volumes).toBeUndefined();
}, 120_000);
