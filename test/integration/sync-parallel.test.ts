import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { parseJsonStdout, run } from '../helpers/cli.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

/**
 * Two put-only exec remotes whose put waits (up to 5 s) until the other remote's put has started: they
 * succeed only when the destinations really run at the same time. A third remote always fails.
 */
function setup() {
  const dir = tempDir('sync-par');
  const backupDir = path.join(dir, 'backups');
  const [id] = ids(1);
  makeBackupSet(backupDir, id!, { dbBytes: 512, partBytes: [512] });
  const flags = path.join(dir, 'flags');
  fs.mkdirSync(flags);
  const waiting = (me: string, other: string) => ({
    url: `exec:${path.join(dir, me)}`,
    put: [
      'sh',
      '-c',
      'touch "$3/$4"; i=0; while [ ! -e "$3/$5" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ -e "$3/$5" ] || exit 7; mkdir -p "$(dirname "$2")" && cp "$1" "$2"',
      'put',
      '{src}',
      '{remote_path}',
      flags,
      me,
      other,
    ],
  });
  const cfg = path.join(dir, 'remote_storage.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({ remotes: { left: waiting('left', 'right'), right: waiting('right', 'left'), broken: { url: 'exec:/nowhere', put: ['false'] } } }),
    { mode: 0o600 },
  );
  return { dir, backupDir, cfg, id: id! };
}

it('sync runs destinations at once; one failing does not stop the others, and the exit code and summary name it', async () => {
  const s = setup();
  const env = { REMOTES_CONFIG: s.cfg, XDG_STATE_HOME: path.join(s.dir, 'state') };
  const r = await run(['--backup-dir', s.backupDir, '--json', 'sync', '--retries', '0'], { cwd: s.dir, env });
  expect(r.code).toBe(1);
  const doc = parseJsonStdout<{ ok: boolean; remotes: { remote: string; ok: boolean; error?: string }[] }>(r);
  expect(doc.remotes.map((x) => `${x.remote}:${x.ok}`)).toEqual(['left:true', 'right:true', 'broken:false']);
  expect(doc.remotes[2]!.error).toMatch(/exec remote "broken": the put command .* failed \(exit code 1\)/);
  for (const side of ['left', 'right']) expect(fs.existsSync(path.join(s.dir, side, 'full', `full_backup_${s.id}.json`))).toBe(true);
  const human = await run(['--backup-dir', s.backupDir, 'sync', '--remote', 'broken', '--remote', 'left', '--retries', '0'], { cwd: s.dir, env });
  expect(human.code).toBe(1);
  expect(human.stdout + human.stderr).toMatch(/FAILED broken: exec remote "broken"/);
  expect(human.stderr).toMatch(/warning: sync to broken failed/);
});

it('--parallel 1 sends one destination after the other (so the waiting pair fails)', async () => {
  const s = setup();
  const env = { REMOTES_CONFIG: s.cfg, XDG_STATE_HOME: path.join(s.dir, 'state') };
  const r = await run(['--backup-dir', s.backupDir, '--json', 'sync', '--remote', 'left', '--remote', 'right', '--parallel', '1', '--retries', '0'], {
    cwd: s.dir,
    env,
  });
  expect(r.code).toBe(1);
  const doc = parseJsonStdout<{ remotes: { remote: string; ok: boolean }[] }>(r);
  expect(doc.remotes.find((x) => x.remote === 'left')?.ok).toBe(false);
  const bad = await run(['--backup-dir', s.backupDir, 'sync', '--parallel', '0'], { cwd: s.dir, env });
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--parallel must be a whole number from 1 to 64/);
});
