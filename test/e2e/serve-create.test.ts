/**
 * Issue 26, create parity: `POST /backups/create` runs what `vertex-backup create` runs — the before and
 * after hooks around the backup (a failing before hook: no backup; a failing after hook: the backup is
 * kept, the job fails), their runs in the job's result and in backup.log — through the built binary's
 * `serve`. (Docker volumes through the API: test/e2e/docker-volumes.test.ts, it needs dockerd.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { type Served, makeToken, serve, waitJob } from '../helpers/serve.js';

let app: AppFixture;
let server: Served;
let marks: string;
let h: Record<string, string>;

beforeAll(async () => {
  app = makeApp({ events: 20, minimalStorage: true });
  marks = path.join(app.cwd, 'marks');
  fs.mkdirSync(marks);
  const config = path.join(app.cwd, 'config.json');
  // the hooks fail when a file says so: one server, every case
  fs.writeFileSync(
    config,
    JSON.stringify({
      hooks: {
        before: `test ! -e ${marks}/fail-before || { echo before refuses; exit 3; }; echo "before $VERTEX_BACKUP_TYPE" >> ${marks}/log`,
        after: `echo "after $VERTEX_BACKUP_RESULT $VERTEX_BACKUP_ID" >> ${marks}/log; test ! -e ${marks}/fail-after`,
        onError: `echo "onError $VERTEX_BACKUP_RESULT" >> ${marks}/log`,
      },
    }),
    { mode: 0o600 },
  );
  const token = await makeToken(app.cwd, config, 'trigger');
  h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  server = await serve(app.cwd, ['--config', config, ...app.flags]);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
});

const create = async (type: string) => {
  const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: JSON.stringify({ type }) });
  expect(r.status, await r.clone().text()).toBe(202);
  return waitJob(server.url, ((await r.json()) as { job_id: string }).job_id, h);
};
const marksLog = () => (fs.existsSync(path.join(marks, 'log')) ? fs.readFileSync(path.join(marks, 'log'), 'utf8').trim().split('\n').map((l) => l.trim()) : []);
const sidecars = (type: string) => (fs.existsSync(path.join(app.backupDir, type)) ? fs.readdirSync(path.join(app.backupDir, type)).filter((f) => f.endsWith('.json')) : []);
const lastLog = () => JSON.parse(fs.readFileSync(path.join(app.backupDir, 'backup.log'), 'utf8').trim().split('\n').at(-1)!) as Record<string, unknown>;

describe('POST /backups/create runs the hooks like create', () => {
  it('before and after run around the backup; their runs are in the result and in backup.log', async () => {
    const job = await create('storage');
    expect(job.state, JSON.stringify(job)).toBe('succeeded');
    const result = job.result as { id: string; hooks: { event: string; ok: boolean }[] };
    expect(result.hooks.map((x) => [x.event, x.ok])).toEqual([
      ['before', true],
      ['after', true],
    ]);
    expect(marksLog()).toEqual(['before storage', `after ok ${result.id}`]);
    const log = lastLog();
    expect(log).toMatchObject({ command: 'create', via: 'serve', id: result.id });
    expect((log.hooks as { event: string }[]).map((x) => x.event)).toEqual(['before', 'after']);
  }, 60_000);

  it('a failing before hook: no backup, the job fails naming the hook, after and onError still run', async () => {
    fs.rmSync(path.join(marks, 'log'), { force: true });
    fs.writeFileSync(path.join(marks, 'fail-before'), '');
    const before = sidecars('database');
    try {
      const job = await create('database');
      expect(job.state).toBe('failed');
      expect(job.exit_code).toBe(1);
      expect(JSON.stringify(job.error)).toMatch(/before hook/);
      expect(sidecars('database')).toEqual(before);
      expect(marksLog()).toEqual(['after failed', 'onError failed']);
    } finally {
      fs.rmSync(path.join(marks, 'fail-before'));
    }
  }, 60_000);

  it('a failing after hook: the backup is kept, the job fails with exit 1', async () => {
    fs.writeFileSync(path.join(marks, 'fail-after'), '');
    try {
      const job = await create('database');
      expect(job.state).toBe('failed');
      expect(job.exit_code).toBe(1);
      const result = job.result as { id: string; hooks: { event: string; ok: boolean }[] };
      expect(sidecars('database')).toContain(`db_backup_${result.id}.json`);
      expect(result.hooks.map((x) => [x.event, x.ok])).toEqual([
        ['before', true],
        ['after', false],
      ]);
    } finally {
      fs.rmSync(path.join(marks, 'fail-after'));
    }
  }, 60_000);

  it('type "volumes" without a volume named is a 400 naming the field', async () => {
    const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"volumes"}' });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { field: string } }).error.field).toBe('type');
  });
});
