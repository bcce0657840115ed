/**
 * `POST /backups/sync` runs the sync `vertex-backup sync` runs: to a remote configured to encrypt it sends
 * only ciphertext (the API used to upload plaintext archives there), it keeps the replication record in
 * status.json, and a remote that init marked but that lacks its marker (an unmounted disk) is refused with
 * nothing written. Through the built binary's `serve`, a file:// remote.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { type Served, makeToken, serve, waitJob } from '../helpers/serve.js';

let app: AppFixture;
let server: Served;
let h: Record<string, string>;
let vault: string;
let usb: string;

beforeAll(async () => {
  app = makeApp({ events: 20, minimalStorage: true });
  const key = path.join(app.cwd, 'key.txt');
  expect((await run(['keygen', '-o', key], { cwd: app.cwd })).code).toBe(0);
  const pub = /# public key: (age1\w+)/.exec(fs.readFileSync(key, 'utf8'))![1];
  vault = path.join(app.cwd, 'vault');
  usb = path.join(app.cwd, 'usb-not-mounted');
  const config = path.join(app.cwd, 'config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      remotes: {
        vault: { url: pathToFileURL(vault).href, encrypt: { recipients: [pub] } },
        // marked by init once; its disk is not mounted now
        usb: { url: pathToFileURL(usb).href, marker_id: 'r-0123456789abcdef' },
      },
    }),
    { mode: 0o600 },
  );
  const c = await run(['create', '--type', 'full', ...app.flags], { cwd: app.cwd });
  expect(c.code, describeRun(c)).toBe(0);
  const token = await makeToken(app.cwd, config, 'trigger');
  h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  server = await serve(app.cwd, ['--config', config, ...app.flags]);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
});

const sync = async (remote: string) => {
  const r = await fetch(`${server.url}/backups/sync`, { method: 'POST', headers: h, body: JSON.stringify({ remote }) });
  expect(r.status, await r.clone().text()).toBe(202);
  return waitJob(server.url, ((await r.json()) as { job_id: string }).job_id, h);
};

it('to an encrypting remote: only ciphertext and sealed sidecars, and the replication record is kept', async () => {
  const job = await sync('vault');
  expect(job.state, JSON.stringify(job)).toBe('succeeded');
  const files = fs.readdirSync(vault, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  const data = files.filter((e) => !e.name.endsWith('.json') && !e.name.startsWith('.'));
  expect(data.length).toBeGreaterThan(0);
  for (const f of data) expect(f.name, 'a plaintext file on an encrypting remote').toMatch(/\.age$/);
  // no table name or original path in any sidecar the remote holds
  for (const f of files.filter((e) => e.name.endsWith('.json'))) {
    const text = fs.readFileSync(path.join(f.parentPath, f.name), 'utf8');
    expect(text).not.toContain(app.storagePath);
    expect(text).not.toContain('table_rows');
  }
  const status = JSON.parse(fs.readFileSync(path.join(app.backupDir, 'status.json'), 'utf8'));
  expect(status.replication?.vault?.held?.length).toBeGreaterThan(0);
}, 60_000);

it('to a marked remote whose marker is gone: the job fails naming it, nothing written', async () => {
  const job = await sync('usb');
  expect(job.state, JSON.stringify(job)).toBe('failed');
  expect(JSON.stringify(job)).toMatch(/has no \.vertex-backup-remote/);
  expect(fs.existsSync(usb) ? fs.readdirSync(usb) : []).toEqual([]);
}, 60_000);
