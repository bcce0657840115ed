/**
 * Issue 17, item 5: the healthchecks.io protocol in full (`/start?rid=`, success, `/fail`, `/{exit
 * code}`, the run's last output lines as the body, first 100 kB, retries) and an Uptime Kuma push URL,
 * against a recording HTTP server on 127.0.0.1; then end to end through the built binary, with the
 * drill's RTO/RPO in the Telegram message and the webhook payload.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kumaUrl, MAX_PING_BODY, pingBody, pingUrl } from '../../src/notify/healthcheck.js';
import { notifyResult, notifyStart, resolveNotifyConfig, type NotifyConfig, type RunResult } from '../../src/notify/index.js';
import { describeRun, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';
import { startRecorder, type Recorder } from '../helpers/http-recorder.js';

const RID = '0f9c1e7a-3c1e-4f7b-9a41-4a8f2d7c1b11';
let srv: Recorder;
beforeEach(async () => {
  srv = await startRecorder();
});
afterEach(async () => {
  await srv.close();
});

const config = (over: NodeJS.ProcessEnv = {}): NotifyConfig =>
  resolveNotifyConfig({ NOTIFY_ON: 'failure', NOTIFY_RETRY_DELAY_MS: '10', NOTIFY_TIMEOUT_MS: '2000', NOTIFY_HOSTNAME: 'web-1', ...over });

const failed: RunResult = { command: 'drill', ok: false, summary: 'drill FAILED', error: 'table "portraits" is missing', durationMs: 4321, exitCode: 3, runId: RID, log: 'line one\nline two\nerror: table "portraits" is missing' };
const succeeded: RunResult = { command: 'create --type full', ok: true, summary: 'full backup 20240101_020000', durationMs: 1234, runId: RID, log: 'created full backup 20240101_020000' };

describe('healthchecks.io protocol', () => {
  it('URLs: /start, success, /fail, /{code}, each with ?rid= (existing query kept)', () => {
    const base = 'https://hc-ping.com/8f1e0c2a-uuid?create=1';
    expect(pingUrl(base, 'start', RID)).toBe(`https://hc-ping.com/8f1e0c2a-uuid/start?create=1&rid=${RID}`);
    expect(pingUrl(base, 'success', RID)).toBe(`https://hc-ping.com/8f1e0c2a-uuid?create=1&rid=${RID}`);
    expect(pingUrl(base, 'fail', RID)).toBe(`https://hc-ping.com/8f1e0c2a-uuid/fail?create=1&rid=${RID}`);
    expect(pingUrl('https://hc-ping.com/slug/', 3, RID)).toBe(`https://hc-ping.com/slug/3?rid=${RID}`);
  });

  it('start and end of a run share the rid; a failure sends its exit code and the run\'s last lines as the body', async () => {
    const cfg = config({ HEALTHCHECK_URL: `${srv.url}/ping/abc` });
    await notifyStart('drill', cfg, undefined, RID);
    await notifyResult(failed, cfg);
    expect(srv.requests.map((r) => [r.method, r.url])).toEqual([
      ['POST', `/ping/abc/start?rid=${RID}`],
      ['POST', `/ping/abc/3?rid=${RID}`],
    ]);
    const body = srv.requests[1].body;
    expect(body).toMatch(/^❌ vertex-backup on web-1: drill FAILED \(exit 3\)/);
    expect(body).toMatch(/--- the run's output \(last lines\) ---\nline one\nline two\nerror: table "portraits" is missing$/);
    await notifyResult({ ...failed, exitCode: undefined }, cfg);
    expect(srv.requests[2].url).toBe(`/ping/abc/fail?rid=${RID}`);
    await notifyResult(succeeded, cfg);
    expect(srv.requests[3].url).toBe(`/ping/abc?rid=${RID}`);
    expect(srv.requests[3].body).toContain('created full backup 20240101_020000');
  });

  it('the body is at most 100 kB: the newest lines kept, the oldest dropped', () => {
    const log = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'x'.repeat(40)}`).join('\n');
    const body = pingBody('head', log);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_PING_BODY);
    expect(Buffer.byteLength(body)).toBeGreaterThan(MAX_PING_BODY - 100);
    expect(body.startsWith('head\n')).toBe(true);
    expect(body.endsWith(`line 4999 ${'x'.repeat(40)}`)).toBe(true);
    expect(body).not.toContain('\nline 0 ');
  });

  it('retries a 5xx answer with the notify retry helper', async () => {
    srv.setHandler((_r, i) => (i < 2 ? { status: 503, body: 'busy' } : undefined));
    const report = await notifyResult(failed, config({ HEALTHCHECK_URL: `${srv.url}/ping/abc`, NOTIFY_RETRIES: '3' }));
    expect(report.outcomes).toEqual([{ channel: 'healthcheck', ok: true, attempts: 3 }]);
    expect(srv.requests.map((r) => r.url)).toEqual(Array(3).fill(`/ping/abc/3?rid=${RID}`));
  });
});

describe('Uptime Kuma push URL', () => {
  it('GET with status=up|down, msg and ping (ms); the URL is a secret', async () => {
    expect(kumaUrl('https://kuma.example/api/push/Tok3n?status=up&msg=OK&ping=', false, 'x', 12.4)).toBe('https://kuma.example/api/push/Tok3n?status=down&msg=x&ping=12');
    const cfg = config({ UPTIME_KUMA_URL: `${srv.url}/api/push/KumaToken42?status=up&msg=OK&ping=` });
    expect(cfg.secrets).toContain(`${srv.url}/api/push/KumaToken42?status=up&msg=OK&ping=`);
    // failure mode: a success still reaches the push monitor (it alerts when pushes stop)
    const ok = await notifyResult(succeeded, cfg);
    expect(ok.outcomes).toEqual([{ channel: 'uptime-kuma', ok: true, attempts: 1 }]);
    await notifyResult(failed, cfg);
    const [up, down] = srv.requests.map((r) => new URL(r.url, 'http://x'));
    expect(srv.requests.map((r) => r.method)).toEqual(['GET', 'GET']);
    expect(up.pathname).toBe('/api/push/KumaToken42');
    expect(Object.fromEntries(up.searchParams)).toEqual({ status: 'up', msg: 'create --type full: full backup 20240101_020000', ping: '1234' });
    expect(Object.fromEntries(down.searchParams)).toEqual({ status: 'down', msg: 'drill FAILED: table "portraits" is missing', ping: '4321' });
  });
});

describe('end to end: the built binary', () => {
  it('a drill run pings /start and the end with the same rid, the body holds its output; Telegram and the webhook carry RTO/RPO', async () => {
    const a = makeApp({ minimalStorage: true });
    try {
      expect((await run(['create', '--type', 'full', ...a.flags], { cwd: a.cwd })).code).toBe(0);
      const env = {
        HEALTHCHECK_URL: `${srv.url}/ping/drill-check`,
        UPTIME_KUMA_URL: `${srv.url}/api/push/kuma1?status=up&msg=OK&ping=`,
        TELEGRAM_BOT_TOKEN: '123456:AAtokenvalue',
        TELEGRAM_CHAT_ID: '-100',
        TELEGRAM_API_URL: srv.url,
        NOTIFY_WEBHOOK_URL: `${srv.url}/hook/xyz`,
        NOTIFY_ON: 'always',
        NOTIFY_RETRY_DELAY_MS: '10',
      };
      const r = await run(['drill', '--notify', ...a.flags], { cwd: a.cwd, env });
      expect(r.code, describeRun(r)).toBe(0);
      const pings = srv.requests.filter((x) => x.url.startsWith('/ping/'));
      expect(pings.length).toBe(2);
      const start = new URL(pings[0].url, 'http://x');
      const end = new URL(pings[1].url, 'http://x');
      expect(start.pathname).toBe('/ping/drill-check/start');
      expect(end.pathname).toBe('/ping/drill-check');
      expect(start.searchParams.get('rid')).toMatch(/^[0-9a-f-]{36}$/);
      expect(end.searchParams.get('rid')).toBe(start.searchParams.get('rid'));
      expect(pings[1].body).toMatch(/drill of full backup .* PASSED/);
      expect(pings[1].body).toMatch(/RTO .* target 1h 00m/);
      const tg = srv.requests.find((x) => x.url.includes('sendMessage'))!;
      expect((tg.json as { text: string }).text).toMatch(/drill succeeded\ndrill passed: full backup \S+ restored and proved; RTO .* \(target 1h 00m\), RPO .* \(target 4h 00m\)/);
      const hook = srv.requests.find((x) => x.url === '/hook/xyz')!;
      expect((hook.json as { summary: string }).summary).toMatch(/RTO .*RPO/);
      const kuma = srv.requests.find((x) => x.url.startsWith('/api/push/kuma1'))!;
      expect(new URL(kuma.url, 'http://x').searchParams.get('status')).toBe('up');
      // the secrets never show in the output
      expect(r.stdout + r.stderr).not.toContain('AAtokenvalue');
    } finally {
      rmrf(a.cwd);
    }
  });
});

