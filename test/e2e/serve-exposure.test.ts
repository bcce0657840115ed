/**
 * Issue 26, exposure: `serve` over TLS (a certificate made by openssl for 127.0.0.1) and on a Unix
 * socket, driven by real clients; the bind rules themselves (a non-loopback address needs TLS or
 * --insecure-bind) checked on checkBind, since tests listen on 127.0.0.1 only.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBind } from '../../src/api/server.js';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';
import { makeToken, serve } from '../helpers/serve.js';

const openssl = needs('openssl', 'openssl');
let app: AppFixture;
let flags: string[];
let token: string;

beforeAll(async () => {
  app = makeApp({ randomBytes: 1024 });
  const config = path.join(app.cwd, 'config.json');
  flags = ['--config', config, ...app.flags];
  token = await makeToken(app.cwd, config, 'read');
}, 60_000);

afterAll(() => rmrf(app?.cwd));

function request(
  url: string,
  options: https.RequestOptions & { socketPath?: string },
  client: typeof http | typeof https = http,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = client.request(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

openssl.describe('over TLS', () => {
  openssl.it(
    'serves HTTPS with the given certificate and key; a client that does not trust it is refused; plain HTTP gets nothing',
    async () => {
      const cert = path.join(app.cwd, 'cert.pem');
      const key = path.join(app.cwd, 'key.pem');
      const made = spawnSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        { encoding: 'utf8' },
      );
      expect(made.status, made.stderr).toBe(0);
      const s = await serve(app.cwd, flags, ['--tls-cert', cert, '--tls-key', key]);
      try {
        expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
        const ca = fs.readFileSync(cert);
        const ok = await request(`${s.url}/backups/list`, { headers: { authorization: `Bearer ${token}` }, ca }, https);
        expect(ok.status, ok.body).toBe(200);
        expect(JSON.parse(ok.body)).toEqual([]);
        await expect(request(`${s.url}/backups/list`, { headers: { authorization: `Bearer ${token}` } }, https)).rejects.toThrow(/self.signed|certificate/i);
        const plain = request(`${s.url.replace('https:', 'http:')}/healthz`, {});
        await expect(plain).rejects.toThrow();
        expect(s.stderr()).not.toContain(token);
      } finally {
        await s.stop();
      }
    },
    60_000,
  );
});

describe('on a Unix socket', () => {
  it('listens on the socket (mode 0660) and answers there, tokens as on TCP', async () => {
    const socketPath = path.join(app.cwd, 'api.sock');
    const s = await serve(app.cwd, flags, ['--socket', socketPath]);
    try {
      expect(s.url).toBe(`unix:${socketPath}`);
      expect(fs.statSync(socketPath).isSocket()).toBe(true);
      expect(fs.statSync(socketPath).mode & 0o777).toBe(0o660);
      const ok = await request('http://localhost/backups/stats', { socketPath, headers: { authorization: `Bearer ${token}` } });
      expect(ok.status, ok.body).toBe(200);
      const refused = await request('http://localhost/backups/stats', { socketPath });
      expect(refused.status).toBe(401);
    } finally {
      await s.stop();
    }
  }, 60_000);
});

describe('bind rules', () => {
  it('loopback and a socket need nothing; any other address needs TLS or --insecure-bind', () => {
    expect(() => checkBind({})).not.toThrow();
    expect(() => checkBind({ host: '127.0.0.1' })).not.toThrow();
    expect(() => checkBind({ host: '::1' })).not.toThrow();
    expect(() => checkBind({ host: '0.0.0.0', socket: '/run/x.sock' })).not.toThrow();
    expect(() => checkBind({ host: '0.0.0.0' })).toThrow(/without TLS/);
    expect(() => checkBind({ host: '192.168.1.5' })).toThrow(/without TLS/);
    expect(() => checkBind({ host: '::' })).toThrow(/without TLS/);
    expect(() => checkBind({ host: '0.0.0.0', tlsCert: 'c.pem', tlsKey: 'k.pem' })).not.toThrow();
    expect(() => checkBind({ host: '0.0.0.0', insecureBind: true })).not.toThrow();
    expect(() => checkBind({ host: 'example.com', insecureBind: true })).toThrow(/IP address/);
    expect(() => checkBind({ host: '0.0.0.0', tlsCert: 'c.pem' })).toThrow(/go together/);
  });

  it('a certificate without its key is a usage error (exit 2), nothing listens', async () => {
    const r = await run([...flags, 'serve', '--port', '0', '--tls-cert', path.join(app.cwd, 'nothing.pem')], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain('--tls-cert and --tls-key go together');
    expect(r.stderr).not.toContain('listening');
  });
});
