/**
 * Issue 26: the seed's five requests as docs/serve.md writes them (curl with the authToken cookie),
 * run literally against the built binary's server. The only change: the seed's example id
 * 20240101_120000 becomes the id of the backup the first request made.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { type Served, makeToken, serve, waitJob } from '../helpers/serve.js';

let app: AppFixture;
let server: Served;
let token: string;

beforeAll(async () => {
  app = makeApp({ randomBytes: 32 * 1024 });
  const config = path.join(app.cwd, 'config.json');
  token = await makeToken(app.cwd, config, 'restore');
  server = await serve(app.cwd, ['--config', config, '--db-path', app.dbPath, '--storage-path', app.storagePath, '--backup-dir', 'backups']);
}, 60_000);
afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
});

function seedBlock(): string[] {
  const doc = fs.readFileSync(path.join(REPO, 'docs', 'serve.md'), 'utf8');
  const at = doc.indexOf('<!-- seed-requests');
  const block = /```bash\n([\s\S]*?)```/.exec(doc.slice(at))![1];
  // one command per request (a backslash continues it)
  return block
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.startsWith('curl '));
}

it("docs/serve.md's seed requests work as written", async () => {
  const cmds = seedBlock();
  expect(cmds).toHaveLength(5);
  const env = { ...process.env, VB: server.url, TOKEN: token };
  const sh = (cmd: string) => {
    const r = spawnSync('bash', ['-c', cmd], { cwd: app.cwd, env, encoding: 'utf8' });
    expect(r.status, `${cmd}\n${r.stdout}${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const created = sh(cmds[0]);
  const job = await waitJob(server.url, created.job_id as string, { authorization: `Bearer ${token}` });
  expect(job.state).toBe('succeeded');
  const id = (job.result as { id: string }).id;
  const list = sh(cmds[1]) as unknown as { id: string }[];
  expect(list.map((b) => b.id)).toContain(id);
  expect(sh(cmds[2]).total_count).toBe(3);
  const restore = sh(cmds[3].replace('20240101_120000', id));
  expect((await waitJob(server.url, restore.job_id as string, { authorization: `Bearer ${token}` })).state).toBe('succeeded');
  expect(sh(cmds[4]).dry_run).toBe(false);
}, 60_000);
