import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { parseJsonStdout, run } from '../helpers/cli.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

it('list --remote NAME --missing: what the remote lacks, and since when it is behind', async () => {
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
  // behind since the newer set, made at 11:00 on 2024-01-01 (UTC)
  const expected = (Date.now() - Date.UTC(2024, 0, 1, 11)) / 1000;
  expect(Math.abs(doc.lag_seconds - expected)).toBeLessThan(120);
  const human = await run(['--backup-dir', backupDir, 'list', '--remote', 'nas', '--missing'], opts);
  expect(human.stdout).toMatch(/nas lacks 3 backups; it is .* behind/);
  const bad = await run(['--backup-dir', backupDir, 'list', '--missing'], opts);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--missing needs --remote NAME/);
});

it('check --max-replication-lag turns red when a remote lacks a backup older than the limit, and names it', async () => {
  const dir = tempDir('repl-lag');
  const backupDir = path.join(dir, 'backups');
  const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  const hoursAgo = (h: number) => stamp(new Date(Date.now() - h * 3_600_000));
  makeBackupSet(backupDir, hoursAgo(30), { dbBytes: 256, partBytes: [256] });
  const cfg = path.join(dir, 'remote_storage.json');
  fs.writeFileSync(cfg, JSON.stringify({ remotes: { nas: { url: `file://${path.join(dir, 'nas')}` }, usb: { url: `file://${path.join(dir, 'usb')}` } } }));
  const opts = { cwd: dir, env: { REMOTES_CONFIG: cfg } };
  expect((await run(['--backup-dir', backupDir, 'sync', '--remote', 'nas', '--retries', '0'], opts)).code).toBe(0);
  const newest = hoursAgo(1);
  makeBackupSet(backupDir, newest, { dbBytes: 256, partBytes: [256] });
  const r = await run(['--backup-dir', backupDir, '--json', 'check', '--max-age', '26h', '--max-replication-lag', '26h'], opts);
  expect(r.code).toBe(1);
  const doc = parseJsonStdout<{ ok: boolean; reasons: string[]; replication: { remote: string; ok: boolean; missing: number }[] }>(r);
  // nas lacks only the backup of an hour ago (1 h behind); usb lacks the one of 30 hours ago too (30 h behind)
  expect(doc.replication.map((x) => `${x.remote}:${x.ok}:${x.missing}`)).toEqual(['nas:true:3', 'usb:false:6']);
  expect(doc.reasons.join('\n')).toMatch(/^replication to usb is 1 ?d.* behind \(limit .*\): 6 backups missing there/m);
  const human = await run(['--backup-dir', backupDir, 'check', '--max-age', '26h', '--max-replication-lag', '26h', '--remote', 'nas'], opts);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/replication to nas: .* behind/);
});
