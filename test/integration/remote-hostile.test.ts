/**
 * Issue 30, the remotes as hostile neighbours: a server (or whoever answers in its place) that
 * redirects to collect credentials, or accepts a connection and never answers. Real servers on
 * 127.0.0.1: plain `http`/`net` servers play the hostile part.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { retrying } from '../../src/remote/retry.js';
import { maskUrl, redact } from '../../src/secrets.js';
import { needs } from '../helpers/optional.js';
import { type SshServer, rcloneObscure, startSshd, startWebdav, tempDir, type WebdavServer } from '../helpers/servers.js';

const closers: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function listen(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        (server as http.Server).closeAllConnections?.();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

/** Accepts every connection and never sends a byte; the sockets are cut when the test ends. */
async function silentServer(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  const port = await listen(server);
  // pushed after listen's closer: run before it (closers run in reverse), or close() waits for them
  closers.push(() => {
    for (const s of sockets) s.destroy();
  });
  return port;
}

/** Rejects with 'still waiting' after `ms`: a call that hangs fails the test instead of the whole run. */
function bounded<T>(p: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  return Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);
}

/** A listing of an empty collection at `href`. */
const multistatus = (href = '/') => `<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:"><d:response><d:href>${href}</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>
</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>`;

/** The properties of one file of `size` bytes at `href`. */
const multistatusFile = (href: string, size: number) => `<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:"><d:response><d:href>${href}</d:href><d:propstat><d:prop><d:resourcetype/>
<d:getcontentlength>${size}</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>`;

describe('webdav:// never sends credentials to another origin', () => {
  it('a redirect to another port of the same host is refused before anything is sent there', async () => {
    const seen: { auth?: string; url?: string }[] = [];
    const collector = http.createServer((req, res) => {
      seen.push({ auth: req.headers.authorization, url: req.url });
      res.writeHead(207, { 'content-type': 'application/xml' }).end(multistatus(req.url));
    });
    const collectorPort = await listen(collector);
    const nas = http.createServer((req, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${collectorPort}${req.url}` }).end();
    });
    const nasPort = await listen(nas);
    for (const options of [{}, { token: 'y0_oauth-token-secret' }]) {
      const remote = retrying(
        await openRemoteDefinition({ name: 'dav', url: `webdav://alice:dav-password-1@127.0.0.1:${nasPort}/backups`, enabled: true, options }, {}),
        { retries: 0 },
      );
      const err = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
      await remote.close();
      expect(err).toBeInstanceOf(RemoteError);
      expect(err.kind).toBe('fatal');
      expect(err.message).toMatch(/another origin/);
      expect(err.message).not.toMatch(/dav-password-1|y0_oauth/);
    }
    expect(seen).toEqual([]);
  });

  it('a redirect within the same server is still followed', async () => {
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/backups/')) res.writeHead(301, { location: `/real/${req.url.slice('/backups/'.length)}` }).end();
      else if (req.headers.authorization !== `Basic ${Buffer.from('alice:pw').toString('base64')}`) res.writeHead(401).end();
      else res.writeHead(207, { 'content-type': 'application/xml' }).end(multistatusFile(req.url ?? '/', 5));
    });
    const port = await listen(server);
    const remote = retrying(await openRemoteDefinition({ name: 'dav', url: `webdav://alice:pw@127.0.0.1:${port}/backups`, enabled: true, options: {} }, {}), {
      retries: 0,
    });
    expect(await remote.stat('x')).toEqual({ path: 'x', size: 5 });
    await remote.close();
  });
});

describe('a server that accepts and never answers', () => {
  it('webdav://: the call fails after timeout_seconds of silence', async () => {
    const port = await silentServer();
    const remote = retrying(
      await openRemoteDefinition({ name: 'dav', url: `webdav://alice:pw@127.0.0.1:${port}/backups`, enabled: true, options: { timeout_seconds: 1 } }, {}),
      { retries: 0 },
    );
    const t0 = Date.now();
    const err = await bounded(
      remote.stat('x').catch((e: unknown) => e),
      15_000,
    );
    await remote.close();
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).kind).toBe('transient');
    expect((err as RemoteError).message).toMatch(/no answer for 1 s/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('webdav://: a download that stops halfway fails after timeout_seconds of silence', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(Buffer.alloc(100));
    });
    const port = await listen(server);
    const remote = retrying(
      await openRemoteDefinition({ name: 'dav', url: `webdav://alice:pw@127.0.0.1:${port}/backups`, enabled: true, options: { timeout_seconds: 1 } }, {}),
      { retries: 0 },
    );
    const stream = await remote.read('x');
    const consumed = (async () => {
      try {
        for await (const _ of stream);
        return 'ended';
      } catch (e) {
        return e;
      }
    })();
    const r = await bounded(consumed, 15_000);
    await remote.close();
    expect(r).toBeInstanceOf(Error);
  });

  it('webdav://: timeout_seconds that is not a positive number is a usage error', async () => {
    await expect(
      openRemoteDefinition({ name: 'dav', url: 'webdav://127.0.0.1:1/x', enabled: true, options: { timeout_seconds: 'soon' } }, {}),
    ).rejects.toMatchObject({ code: 'USAGE' });
  });
});

describe('s3:// against a server that accepts and never answers', () => {
  it('the call fails after timeout_seconds of silence', async () => {
    const port = await silentServer();
    const remote = retrying(
      await openRemoteDefinition(
        {
          name: 's3',
          url: 's3://backups/x',
          enabled: true,
          options: { endpoint: `http://127.0.0.1:${port}`, force_path_style: true, access_key_id: 'K', secret_access_key: 'S', max_attempts: 1, timeout_seconds: 1 },
        },
        {},
      ),
      { retries: 0 },
    );
    const t0 = Date.now();
    const err = await bounded(
      remote.stat('x').catch((e: unknown) => e),
      15_000,
    );
    await remote.close();
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).kind).toBe('transient');
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('a download that stops halfway fails after timeout_seconds of silence', async () => {
    const server = http.createServer((req, res) => {
      if (req.method === 'HEAD') res.writeHead(200, { 'content-length': '1000' }).end();
      else {
        res.writeHead(200, { 'content-length': '1000' });
        res.write(Buffer.alloc(100));
      }
    });
    const port = await listen(server);
    const remote = retrying(
      await openRemoteDefinition(
        {
          name: 's3',
          url: 's3://backups/x',
          enabled: true,
          options: { endpoint: `http://127.0.0.1:${port}`, force_path_style: true, access_key_id: 'K', secret_access_key: 'S', max_attempts: 1, timeout_seconds: 1 },
        },
        {},
      ),
      { retries: 0 },
    );
    const consumed = (async () => {
      try {
        for await (const _ of await remote.read('x'));
        return 'ended';
      } catch (e) {
        return e;
      }
    })();
    const r = await bounded(consumed, 15_000);
    await remote.close();
    expect(r).toBeInstanceOf(Error);
  });
});

needs('/usr/sbin/sshd', 'openssh-server').describe('sftp:// a host known under another key type', () => {
  let srv: SshServer;
  afterAll(async () => {
    await srv?.stop();
  });

  it('is a changed host, not an unknown one: refused even with accept_unknown_host, nothing appended', async () => {
    srv = await startSshd(); // offers only its ed25519 key
    const dir = tempDir('kh-types');
    const kh = path.join(dir, 'known_hosts');
    const ecdsa = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 }).public.trim().split(/\s+/).slice(0, 2).join(' ');
    const known = `[127.0.0.1]:${srv.port} ${ecdsa}\n`;
    fs.writeFileSync(kh, known, { mode: 0o600 });
    const err = (await openRemoteDefinition(
      {
        name: 'box',
        url: `sftp://${srv.user}@127.0.0.1:${srv.port}/${srv.root}/x`,
        enabled: true,
        options: { private_key: srv.userKey, known_hosts: kh, accept_unknown_host: true },
      },
      {},
    )
      .then((r) => retrying(r, { retries: 0 }).list(''))
      .catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/does not match/);
    expect(fs.readFileSync(kh, 'utf8')).toBe(known);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

needs('rclone', 'rclone').describe('rclone: credentials in a connection string', () => {
  let dav: WebdavServer;
  afterAll(async () => {
    await dav?.stop();
  });

  it('reach rclone through its environment, never its argv, and are masked wherever the URL is shown', async () => {
    dav = await startWebdav({ user: 'carol', pass: 'dav-secret-77' });
    const dir = tempDir('rclone-argv');
    const argvLog = path.join(dir, 'argv');
    const wrapper = path.join(dir, 'rclone-wrapper');
    fs.writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$@" >> '${argvLog}'\nexec rclone "$@"\n`, { mode: 0o755 });
    const env = { ...process.env, XDG_CACHE_HOME: dir, RCLONE_CONFIG: path.join(dir, 'rclone.conf') };
    const obscured = rcloneObscure('dav-secret-77');
    const url = `rclone::webdav,url="http://127.0.0.1:${dav.port}",vendor=other,user=carol,pass=${obscured}:backups`;
    const remote = retrying(await openRemoteDefinition({ name: 'otf', url, enabled: true, options: { binary: wrapper } }, env), { retries: 0 });
    const file = path.join(dir, 'probe.bin');
    fs.writeFileSync(file, 'probe\n');
    await remote.put('probe.bin', file);
    expect(await remote.list('')).toEqual([{ path: 'probe.bin', size: 6 }]);
    await remote.close();
    expect(fs.readFileSync(path.join(dav.dataDir, 'backups', 'probe.bin'), 'utf8')).toBe('probe\n');
    expect(fs.readFileSync(argvLog, 'utf8')).not.toContain(obscured);
    expect(remote.url).not.toContain(obscured);
    expect(maskUrl(url)).not.toContain(obscured);
    expect(redact(`error: rclone failed for ${url}`)).not.toContain(obscured);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
