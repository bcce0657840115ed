/**
 * docs/replication.md: each remote_storage.json example (the seed's four replication types) is synced,
 * listed and verified by the built binary as written; only its hosts, ports, paths and keys are pointed
 * at this test's servers (a temp directory, the sshd on 127.0.0.1, s3rver).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, describeRun, run } from '../helpers/cli.js';
import { needs } from '../helpers/optional.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { type S3Server, type SshServer, startS3, startSshd, tempDir } from '../helpers/servers.js';

const blocks = [...fs.readFileSync(path.join(REPO, 'docs/replication.md'), 'utf8').matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
const rsync = needs('rsync', 'rsync');
const sshd = needs('/usr/sbin/sshd', 'openssh-server');

function example(name: string): string {
  const b = blocks.find((t) => Object.keys((JSON.parse(t) as { remotes: object }).remotes).includes(name));
  if (!b) throw new Error(`docs/replication.md has no example remote "${name}"`);
  return b;
}

let dir: string;
let backupDir: string;
beforeAll(() => {
  dir = tempDir('repl-docs');
  backupDir = path.join(dir, 'backups');
  for (const id of ids(2)) makeBackupSet(backupDir, id, { dbBytes: 2048, partBytes: [4096, 1024] });
});

/** sync → list --remote → verify --remote --all, each exit 0; a second sync sends nothing. */
async function replicate(name: string, json: string, env: Record<string, string> = {}) {
  const cfg = path.join(dir, `remotes-${name}.json`);
  fs.writeFileSync(cfg, json, { mode: 0o600 });
  const opts = { cwd: dir, env: { REMOTES_CONFIG: cfg, XDG_STATE_HOME: path.join(dir, 'state'), ...env } };
  const sync = await run(['--backup-dir', backupDir, '--json', 'sync', '--remote', name, '--retries', '0'], opts);
  expect(sync.code, describeRun(sync)).toBe(0);
  const list = await run(['--backup-dir', backupDir, '--json', 'list', '--remote', name], opts);
  expect(list.code, describeRun(list)).toBe(0);
  expect((JSON.parse(list.stdout) as { status: string }[]).filter((b) => b.status === 'ok').length).toBe(6);
  const verify = await run(['--backup-dir', backupDir, 'verify', '--remote', name, '--all'], opts);
  expect(verify.code, describeRun(verify)).toBe(0);
  // "What a sync costs": an unchanged sync is answered from status.json, without a connection
  const again = await run(['--backup-dir', backupDir, '--json', 'sync', '--remote', name], opts);
  expect(JSON.parse(again.stdout).remotes[0].result).toMatchObject({ synced: [], cached: true, lag_seconds: 0 });
  // --refresh lists the remote again and still finds nothing to send
  const refreshed = await run(['--backup-dir', backupDir, '--json', 'sync', '--remote', name, '--refresh'], opts);
  expect(refreshed.code, describeRun(refreshed)).toBe(0);
  expect(JSON.parse(refreshed.stdout).remotes[0].result).toMatchObject({ synced: [], up_to_date: 2 });
  expect(JSON.parse(refreshed.stdout).remotes[0].result.cached).toBeUndefined();
  // "Replication lag": check answers from the record
  const check = await run(['--backup-dir', backupDir, '--json', 'check', '--max-age', '100000d', '--type', 'full', '--max-replication-lag', '26h', '--remote', name], opts);
  expect(check.code, describeRun(check)).toBe(0);
  expect(JSON.parse(check.stdout).replication).toEqual([expect.objectContaining({ remote: name, ok: true, lag_seconds: 0, listed: false })]);
}

describe('docs/replication.md examples', () => {
  it('local copy', async () => {
    await replicate('copy', example('copy').replace('/mnt/backup-copy', path.join(dir, 'copy')));
  });

  it('custom command', async () => {
    await replicate('custom', example('custom').replace('/srv/offsite', path.join(dir, 'offsite')));
  });

  describe('S3', () => {
    let s3: S3Server;
    beforeAll(async () => {
      s3 = await startS3('vertex-backups');
    });
    afterAll(async () => {
      await s3?.stop();
    });
    it('S3 (s3rver)', async () => {
      await replicate('s3', example('s3').replace('https://s3.example.com', s3.endpoint), { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
    });
  });

  (rsync.available ? sshd : rsync).describe('rsync over SSH', () => {
    let srv: SshServer;
    beforeAll(async () => {
      srv = await startSshd();
    });
    afterAll(async () => {
      await srv?.stop();
    });
    it('rsync over SSH (sshd on 127.0.0.1)', async () => {
      const doc = JSON.parse(
        example('offsite')
          .replace('backup@backup-host', `${srv.user}@127.0.0.1`)
          .replace('/srv/vertex-backups', path.join(srv.root, 'docs'))
          .replace('/root/.ssh/id_ed25519', srv.userKey)
          .replace('/root/.ssh/known_hosts', srv.knownHosts),
      );
      doc.remotes.offsite.port = srv.port;
      await replicate('offsite', JSON.stringify(doc));
    });
  });
});
