/**
 * Issue 21's combined cases with a real PostgreSQL server (slow tier: a server start and four dumps and
 * restores, ~30 s on two cores): PostgreSQL components (issue 23) synced to an encrypting remote, plain
 * and already encrypted by create --encrypt, then verified, drilled and restored from it. Before, sync
 * failed on them ("The \"path\" argument must be of type string"): the remote encryption read only
 * `backup_path`, which a backup of sources does not have.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { type PgServer, pgNeed, startPostgres } from '../helpers/postgres.js';

const scratch: string[] = [];
const scratchDir = (prefix: string) => {
  const d = tempDir(prefix);
  scratch.push(d);
  return d;
};

afterAll(() => {
  for (const d of scratch) rmrf(d);
});

async function keygen(cwd: string, file: string): Promise<string> {
  const r = await run(['keygen', '-o', file], { cwd });
  expect(r.code, describeRun(r)).toBe(0);
  return /# public key: (age1\w+)/.exec(fs.readFileSync(file, 'utf8'))![1];
}

pgNeed.describe('PostgreSQL components (issue 23) × encryption (local and the remote’s) × sync × verify --remote, drill --from, restore --from', () => {
  let pg: PgServer;
  let cwd: string;
  let remotesFile: string;
  const keys: Record<'local' | 'remote', { file: string; pub: string }> = {} as never;
  const vb = (args: string[], backupDir: string) =>
    run([...args, '--remotes-config', remotesFile], {
      cwd,
      env: { DATABASE_URL: pg.url('postgres'), PG_DATABASES: 'shop', BACKUP_DIR: backupDir },
      timeoutMs: 120_000,
    });

  beforeAll(async () => {
    pg = await startPostgres();
    cwd = scratchDir('vb-combined-pg-');
    pg.psql('CREATE DATABASE shop');
    pg.psql("CREATE TABLE orders (id serial PRIMARY KEY, item text); INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 500) g;", 'shop');
    for (const k of ['local', 'remote'] as const) {
      const file = path.join(cwd, `${k}.txt`);
      keys[k] = { file, pub: await keygen(cwd, file) };
    }
    remotesFile = path.join(cwd, 'remotes.json');
    fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { nas: { url: `file://${path.join(cwd, 'nas')}`, encrypt: { recipients: [keys.remote.pub] } } } }), {
      mode: 0o600,
    });
  }, 120_000);
  afterAll(() => pg?.stop());

  for (const [name, extra] of [
    ['plaintext locally, encrypted by the remote', [] as string[]],
    ['encrypted locally (create --encrypt), sealed by the remote', ['--recipient', '']],
  ] as const) {
    pgNeed.it(name, async () => {
      const dir = path.join(cwd, `backups-${extra.length ? 'enc' : 'plain'}`);
      const args = extra.length ? ['--recipient', keys.local.pub] : [];
      const c = await vb(['create', '--type', 'database', ...args], dir);
      expect(c.code, describeRun(c)).toBe(0);
      const s = await vb(['sync', '--remote', 'nas'], dir);
      expect(s.code, describeRun(s)).toBe(0);
      const v = await vb(['verify', '--remote', 'nas', '--all'], dir);
      expect(v.code, describeRun(v)).toBe(0);
      const ids = ['--identity', keys.remote.file, '--identity', keys.local.file];
      const d = await vb(['drill', '--type', 'database', '--from', 'nas', ...ids, '--json'], dir);
      expect(d.code, describeRun(d)).toBe(0);
      pg.psql('DELETE FROM orders WHERE id > 10', 'shop');
      const r = await vb(['restore', 'latest', '--from', 'nas', ...ids, '--yes'], dir);
      expect(r.code, describeRun(r)).toBe(0);
      expect(Number(pg.psql('SELECT count(*) FROM orders', 'shop'))).toBe(500);
      for (const n of pg.psql('SELECT datname FROM pg_database').split('\n')) if (n.startsWith('shop_pre_restore')) pg.psql(`DROP DATABASE "${n}"`);
    });
  }
});
