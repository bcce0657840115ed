/**
 * Issue 26: `vertex-backup serve`, the built binary on a free port, driven with real HTTP (fetch and raw
 * sockets). The seed's five requests as written (with the authToken cookie), the JSON identical to
 * `--json`, the lock shared with the CLI, and the bad-input cases: tokens, bodies, paths, slow clients.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { holdLock } from '../helpers/lock-holder.js';
import { type Served, makeToken, serve, waitJob } from '../helpers/serve.js';

let app: AppFixture;
let server: Served;
let config: string;
const tokens: Record<string, string> = {};
let flags: string[];

beforeAll(async () => {
  app = makeApp({ randomBytes: 64 * 1024 });
  config = path.join(app.cwd, 'config.json');
  // the seed's layout: ./backups beside the application, paths in requests relative to it
  flags = ['--config', config, '--db-path', app.dbPath, '--storage-path', app.storagePath, '--backup-dir', 'backups'];
  for (const s of ['read', 'trigger', 'restore']) tokens[s] = await makeToken(app.cwd, config, s);
  tokens.expired = await makeToken(app.cwd, config, 'restore', ['--expires', '1s']);
  server = await serve(app.cwd, flags);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
});

const cookie = (t: string) => ({ cookie: `authToken=${t}` });
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('the seed admin panel requests, as written, with the authToken cookie', () => {
  it('/healthz is 503 while there is no backup, without a token', async () => {
    const r = await fetch(`${server.url}/healthz`);
    expect(r.status).toBe(503);
    expect(await r.text()).toContain('stale');
  });

  it('create, list, stats, restore and rotate work; JSON is what --json prints', async () => {
    const h = { ...cookie(tokens.restore), 'content-type': 'application/json' };
    const created = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: JSON.stringify({ type: 'full' }) });
    expect(created.status).toBe(202);
    const job = (await created.json()) as { job_id: string };
    const done = await waitJob(server.url, job.job_id, h);
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    const result = done.result as { id: string; type: string; status: string };
    expect(result).toMatchObject({ type: 'full', status: 'ok' });

    const list = await fetch(`${server.url}/backups/list?backup_type=all`, { headers: h });
    expect(list.status).toBe(200);
    const cli = await run([...flags, 'list', '--json'], { cwd: app.cwd });
    expect(cli.code, describeRun(cli)).toBe(0);
    // one serializer: the same bytes, but for each backup's age, which grew between the two requests
    const apiText = await list.text();
    const ages = (t: string) => [...t.matchAll(/"age_seconds": (\d+)/g)].map((m) => Number(m[1]));
    const sameTime = (t: string) => t.replace(/"age_seconds": \d+/g, '"age_seconds": 0');
    expect(`${sameTime(apiText)}\n`).toBe(sameTime(cli.stdout));
    expect(ages(apiText).length).toBeGreaterThan(0);
    ages(cli.stdout).forEach((a, i) => expect(a - ages(apiText)[i]!).toBeGreaterThanOrEqual(0));
    ages(cli.stdout).forEach((a, i) => expect(a - ages(apiText)[i]!).toBeLessThan(120));

    const stats = await fetch(`${server.url}/backups/stats`, { headers: h });
    expect(stats.status).toBe(200);
    const s = (await stats.json()) as Record<string, unknown>;
    const cliStats = JSON.parse((await run([...flags, 'stats', '--json'], { cwd: app.cwd })).stdout) as Record<string, unknown>;
    expect(Object.keys(s)).toEqual(Object.keys(cliStats));
    expect(s.total_count).toBe(cliStats.total_count);

    const restore = await fetch(`${server.url}/backups/restore`, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ backup_path: `backups/database/db_backup_${result.id}.db`, verify_checksum: true }),
    });
    expect(restore.status, await restore.clone().text()).toBe(202);
    const restored = await waitJob(server.url, ((await restore.json()) as { job_id: string }).job_id, h);
    expect(restored.state, JSON.stringify(restored)).toBe('succeeded');
    expect(restored.result).toMatchObject({ id: result.id, type: 'database', verified: true });

    const rotate = await fetch(`${server.url}/backups/rotate?max_backups=7`, { method: 'POST', headers: h });
    expect(rotate.status).toBe(200);
    expect(await rotate.json()).toMatchObject({ dry_run: false, policy: { keep_last: 7 } });

    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    // the runs are in backup.log like the CLI's
    const log = fs.readFileSync(path.join(app.cwd, 'backups', 'backup.log'), 'utf8');
    expect(log).toMatch(/"command":"create".*"via":"serve"/);
    expect(log).not.toContain(tokens.restore);
  }, 60_000);

  it('a backup made by the CLI in another process is in the next list and page (the shared listing sees it)', async () => {
    const h = bearer(tokens.read);
    // the database directory exists (its mtime is what moves), and the server's listing is warm and younger than its TTL
    const first = await run([...flags, 'create', '--type', 'database', '--json'], { cwd: app.cwd });
    expect(first.code, describeRun(first)).toBe(0);
    await fetch(`${server.url}/backups/list`, { headers: h });
    await fetch(`${server.url}/`, { headers: h });
    const made = await run([...flags, 'create', '--type', 'database', '--json'], { cwd: app.cwd });
    expect(made.code, describeRun(made)).toBe(0);
    const id = (JSON.parse(made.stdout) as { id: string }).id;
    const list = (await (await fetch(`${server.url}/backups/list?backup_type=database`, { headers: h })).json()) as { id: string }[];
    expect(list[0].id).toBe(id);
    expect(await (await fetch(`${server.url}/`, { headers: h })).text()).toContain(id);
  }, 60_000);
});

describe('auth', () => {
  it('refuses missing, wrong, expired and wrong-scope tokens', async () => {
    const post = (headers: Record<string, string>) =>
      fetch(`${server.url}/backups/create`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{"type":"database"}' });
    expect((await fetch(`${server.url}/backups/list`)).status).toBe(401);
    expect((await fetch(`${server.url}/backups/list`, { headers: bearer(`${tokens.read}x`) })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await fetch(`${server.url}/backups/list`, { headers: bearer(tokens.expired) });
    expect(expired.status).toBe(401);
    expect(await expired.text()).toContain('expired');
    expect((await fetch(`${server.url}/backups/list`, { headers: bearer(tokens.read) })).status).toBe(200);
    const readCreate = await post(bearer(tokens.read));
    expect(readCreate.status).toBe(403);
    const triggerRestore = await fetch(`${server.url}/backups/restore`, {
      method: 'POST',
      headers: bearer(tokens.trigger),
      body: '{"backup_path":"latest"}',
    });
    expect(triggerRestore.status).toBe(403);
    const body = await triggerRestore.text();
    expect(body).not.toContain(tokens.trigger);
    expect(server.stderr()).not.toContain(tokens.trigger);
  });

  it('refuses a cookie request from another origin (CSRF), not a bearer one', async () => {
    const r = await fetch(`${server.url}/backups/rotate?max_backups=7&dry_run=true`, { method: 'POST', headers: { ...cookie(tokens.restore), origin: 'http://evil.example' } });
    expect(r.status).toBe(403);
    expect(await r.text()).toContain('CSRF');
    const b = await fetch(`${server.url}/backups/rotate?max_backups=7&dry_run=true`, { method: 'POST', headers: { ...bearer(tokens.restore), origin: 'http://evil.example' } });
    expect(b.status).toBe(200);
  });

  it('the config file holds only hashes', () => {
    const text = fs.readFileSync(config, 'utf8');
    for (const t of Object.values(tokens)) expect(text).not.toContain(t);
    expect(fs.statSync(config).mode & 0o077).toBe(0);
  });
});

describe('bad input', () => {
  it('wrong-shape JSON is a 400 naming the field', async () => {
    const h = { ...bearer(tokens.restore), 'content-type': 'application/json' };
    const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"weekly"}' });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { field: string } }).error.field).toBe('type');
    const r2 = await fetch(`${server.url}/backups/restore`, { method: 'POST', headers: h, body: '{"backup_path":42}' });
    expect(r2.status).toBe(400);
    expect(((await r2.json()) as { error: { field: string } }).error.field).toBe('backup_path');
    const r3 = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":' });
    expect(r3.status).toBe(400);
    const r4 = await fetch(`${server.url}/backups/rotate?max_backups=0`, { method: 'POST', headers: h });
    expect(r4.status).toBe(400);
  });

  it('path traversal in backup_path is refused and restores nothing', async () => {
    const h = { ...bearer(tokens.restore), 'content-type': 'application/json' };
    const outside = path.join(app.cwd, 'outside.db');
    fs.copyFileSync(app.dbPath, outside);
    for (const p of ['../../../etc/passwd', outside, 'backups/../outside.db', 'backups/database/../../outside.db']) {
      const r = await fetch(`${server.url}/backups/restore`, { method: 'POST', headers: h, body: JSON.stringify({ backup_path: p, verify_checksum: true }) });
      expect(r.status, p).toBe(400);
      expect(((await r.json()) as { error: { field: string } }).error.field).toBe('backup_path');
    }
  });

  it('an oversized body is a 413', async () => {
    const r = await fetch(`${server.url}/backups/create`, {
      method: 'POST',
      headers: { ...bearer(tokens.restore), 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'full', pad: 'x'.repeat(200_000) }),
    });
    expect(r.status).toBe(413);
    // GET and HEAD are not limited: no route reads their body, and looking for one built a whole Request per page view
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}/backups/stats`, { method: 'GET', headers: { ...bearer(tokens.read), 'content-length': '200000' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('x'.repeat(200_000));
    });
    expect(got).toBe(200);
    expect((await fetch(`${server.url}/backups/stats`, { headers: bearer(tokens.read) })).status).toBe(200);
  });

  it('a create while another process holds the lock is a 409 naming it; two creates at once: one runs', async () => {
    const h = { ...bearer(tokens.trigger), 'content-type': 'application/json' };
    const holder = await holdLock(path.join(app.cwd, 'backups'), 'create --type full');
    try {
      const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"full"}' });
      expect(r.status).toBe(409);
      expect(await r.text()).toContain(`pid ${holder.pid}`);
    } finally {
      await holder.release();
    }
    const both = await Promise.all(
      [0, 1].map(() => fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"database"}' })),
    );
    expect(both.map((r) => r.status).sort()).toEqual([202, 409]);
    const ok = both.find((r) => r.status === 202)!;
    const job = await waitJob(server.url, ((await ok.json()) as { job_id: string }).job_id, h);
    expect(job.state).toBe('succeeded');
  }, 30_000);

  it('a client that disconnects mid-stream leaves the server serving; the stream reports the job', async () => {
    const h = { ...bearer(tokens.trigger), 'content-type': 'application/json' };
    const ctl = new AbortController();
    const events = await fetch(`${server.url}/events`, { headers: h, signal: ctl.signal });
    expect(events.headers.get('content-type')).toContain('text/event-stream');
    const reader = events.body!.getReader();
    const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"database"}' });
    const { job_id } = (await r.json()) as { job_id: string };
    let text = '';
    while (!text.includes(`event: done\ndata: {"id":"${job_id}"`)) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toContain(job_id);
    ctl.abort();
    // a second stream, cut before anything was sent
    const ctl2 = new AbortController();
    await fetch(`${server.url}/events`, { headers: h, signal: ctl2.signal });
    ctl2.abort();
    expect((await fetch(`${server.url}/backups/stats`, { headers: h })).status).toBe(200);
    const jobStream = await fetch(`${server.url}/jobs/${job_id}/events`, { headers: h });
    expect(await jobStream.text()).toContain('"state":"succeeded"');
  }, 30_000);

  it('a running job can be cancelled: it ends cancelled and leaves no partial files', async () => {
    const h = { ...bearer(tokens.trigger), 'content-type': 'application/json' };
    const big = path.join(app.storagePath, 'big.bin');
    const fd = fs.openSync(big, 'w');
    for (let i = 0; i < 48; i++) fs.writeSync(fd, crypto.randomBytes(1 << 20));
    fs.closeSync(fd);
    try {
      const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"storage"}' });
      const { job_id } = (await r.json()) as { job_id: string };
      const c = await fetch(`${server.url}/jobs/${job_id}/cancel`, { method: 'POST', headers: h });
      expect(c.status).toBe(202);
      const job = await waitJob(server.url, job_id, h);
      expect(job.state).toBe('cancelled');
      const left = fs.readdirSync(path.join(app.cwd, 'backups', 'storage')).filter((n) => n.includes('.tmp') || n.startsWith('.'));
      expect(left).toEqual([]);
      // the lock is free again
      const again = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"database"}' });
      expect(again.status).toBe(202);
      await waitJob(server.url, ((await again.json()) as { job_id: string }).job_id, h);
    } finally {
      fs.rmSync(big);
    }
  }, 60_000);

  it('too many failed attempts are rate-limited', async () => {
    // its own server: the limit is per client address, and every test here comes from 127.0.0.1
    const own = await serve(app.cwd, flags);
    try {
      const codes: number[] = [];
      for (let i = 0; i < 12; i++) codes.push((await fetch(`${own.url}/backups/list`, { headers: bearer(`wrong-${i}`) })).status);
      expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
      expect(codes.slice(10)).toEqual([429, 429]);
      // even the right token waits now
      const r = await fetch(`${own.url}/backups/list`, { headers: bearer(tokens.read) });
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await own.stop();
    }
  }, 30_000);

  it('a slow client (Slowloris) is cut off and the server keeps serving', async () => {
    const own = await serve(app.cwd, flags, ['--headers-timeout', '1']);
    try {
      const { port } = new URL(own.url);
      const sock = net.connect(Number(port), '127.0.0.1');
      sock.on('error', () => {}); // the server's reset is the expected end
      await new Promise((r) => sock.once('connect', r));
      sock.write('GET /backups/list HTTP/1.1\r\nHost: x\r\n');
      const t0 = Date.now();
      const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - t0)));
      const trickle = setInterval(() => sock.writable && sock.write('X-a: b\r\n'), 300);
      expect((await fetch(`${own.url}/healthz`)).status).toBeLessThan(600);
      const ms = await closed;
      clearInterval(trickle);
      expect(ms).toBeLessThan(5000);
      expect((await fetch(`${own.url}/backups/stats`, { headers: bearer(tokens.read) })).status).toBe(200);
    } finally {
      await own.stop();
    }
  }, 30_000);

  it('refuses a non-loopback address without TLS or --insecure-bind', async () => {
    const r = await run([...flags, 'serve', '--host', '0.0.0.0', '--port', '0'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain('without TLS');
  });
});
