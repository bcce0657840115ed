import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { parseJsonStdout, run } from '../helpers/cli.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

it('list --remote NAME --missing: what the remote lacks, and the age of the newest of it', async () => {
  const dir = tempDir('repl-missing');
  const backupDir = path.join(dir, 'backups');
  const [older, newer] = ids(2);
  makeBackupSet(backupDir, older!, { dbBytes: 256, partBytes: [256] });
  const cfg = path.join(dir, 'remote_storage.json');
  fs.writeFileSync(cfg, JSON.stringify({ remotes: { nas: { url: `file://${path.join(dir, 'nas')}` } } }));
  const opts = { cwd: dir, env: { REMOTES_CONFIG: cfg } };
  expect((await run(['--backup-dir', backupDir, 'sync', '--retries', '0'], opts)).code).toBe(0);
  const none = parseJsonStdout<{ missing: unknown[]; lag_seconds: number }>(await run(['--backup-dir', backupDir, '--json', 'list', '--remote', 'nas', '--missing'], opts));
  expect(none).toMatchObject({ missing: [], lag_seconds: 0 });
  makeBackupSet(backupDir, newer!, { dbBytes: 256, partBytes: [256] });
  const r = await run(['--backup-dir', backupDir, '--json', 'list', '--remote', 'nas', '--missing'], opts);
  expect(r.code).toBe(0);
  const doc = parseJsonStdout<{ missing: { type: string; id: string }[]; lag_seconds: number }>(r);
  expect(doc.missing.map((b) => `${b.type}:${b.id}`).sort()).toEqual([`database:${newer}`, `full:${newer}`, `storage:${newer}`]);
  // the newer set was made at 11:00 on 2024-01-01 (UTC)
  const expected = (Date.now() - Date.UTC(2024, 0, 1, 11)) / 1000;
  expect(Math.abs(doc.lag_seconds - expected)).toBeLessThan(120);
  const human = await run(['--backup-dir', backupDir, 'list', '--remote', 'nas', '--missing'], opts);
  expect(human.stdout).toMatch(/nas lacks 3 backups; the newest is .* old/);
  const bad = await run(['--backup-dir', backupDir, 'list', '--missing'], opts);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--missing needs --remote NAME/);
});
