import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors.js';
import {
  formatMessage,
  notifyResult,
  notifyStart,
  resolveNotifyConfig,
  type NotifyConfig,
  type RunResult,
} from '../../src/notify/index.js';
import { pingUrl } from '../../src/notify/healthcheck.js';
import { redact, registerSecret } from '../../src/secrets.js';
import { startRecorder, type Recorder } from '../helpers/http-recorder.js';

const TOKEN = '123456789:AAHsecretTOKENvalue_-xyz';

const failed: RunResult = {
  command: 'create --type full',
  ok: false,
  summary: 'full backup 20240101_020000: partial',
  durationMs: 65_000,
  error: 'not enough disk space at /var/backups: need 2.0 GiB, 1.1 GiB free\nstack line that must not appear',
  exitCode: 5,
};
const succeeded: RunResult = {
  command: 'create --type database',
  ok: true,
  summary: 'database backup 20240101_020000: ok',
  sizeBytes: 3 * 1024 * 1024,
  durationMs: 1234,
};

let srv: Recorder;
beforeEach(async () => {
  srv = await startRecorder();
});
afterEach(async () => {
  await srv.close();
});

function config(over: Partial<NodeJS.ProcessEnv> = {}, flag?: string | boolean): NotifyConfig {
  return resolveNotifyConfig(
    {
      NOTIFY_ON: 'always',
      TELEGRAM_BOT_TOKEN: TOKEN,
      TELEGRAM_CHAT_ID: '-100200300',
      TELEGRAM_API_URL: srv.url,
      NOTIFY_RETRY_DELAY_MS: '10',
      NOTIFY_TIMEOUT_MS: '2000',
      NOTIFY_HOSTNAME: 'web-1',
      ...over,
    },
    flag,
  );
}

describe('message text', () => {
  it('says what ran, where, the result, size and duration', () => {
    const text = formatMessage(succeeded, 'web-1');
    expect(text).toContain('create --type database succeeded');
    expect(text).toContain('web-1');
    expect(text).toContain('Size: 3.0 MiB');
    expect(text).toContain('Duration: 1.2 s');
    expect(text).not.toContain('Reason');
  });

  it('gives a one-line reason and the exit code on failure', () => {
    const text = formatMessage(failed, 'web-1');
    expect(text).toContain('create --type full FAILED (exit 5)');
    expect(text).toContain('Reason: not enough disk space at /var/backups: need 2.0 GiB, 1.1 GiB free stack line');
    expect(text.split('\n').filter((l) => l.startsWith('Reason:'))).toHaveLength(1);
    expect(text).toContain('Duration: 1m 05s');
  });
});

describe('configuration', () => {
  it('is opt-in: nothing without --notify or NOTIFY_ON', () => {
    expect(resolveNotifyConfig({ TELEGRAM_BOT_TOKEN: TOKEN, TELEGRAM_CHAT_ID: '1' }).mode).toBe('never');
  });

  it('reads --notify and NOTIFY_ON', () => {
    expect(resolveNotifyConfig({}, true).mode).toBe('failure');
    expect(resolveNotifyConfig({ NOTIFY_ON: 'always' }, true).mode).toBe('always');
    expect(resolveNotifyConfig({ NOTIFY_ON: 'never' }, true).mode).toBe('failure');
    expect(resolveNotifyConfig({ NOTIFY_ON: 'Failure' }).mode).toBe('failure');
    expect(resolveNotifyConfig({ NOTIFY_ON: 'always' }, 'never').mode).toBe('never');
  });

  it('refuses an unknown mode as a usage error naming the variable', () => {
    let err: unknown;
    try {
      resolveNotifyConfig({ NOTIFY_ON: 'sometimes' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).exitCode).toBe(2);
    expect((err as BackupError).message).toContain('NOTIFY_ON');
  });

  it('takes values from the config file, the environment winning', () => {
    const cfg = resolveNotifyConfig({ TELEGRAM_CHAT_ID: 'env-chat' }, undefined, {
      notifyOn: 'always',
      telegramBotToken: TOKEN,
      telegramChatId: 'file-chat',
    });
    expect(cfg.mode).toBe('always');
    expect(cfg.telegram).toMatchObject({ token: TOKEN, chatId: 'env-chat' });
    expect(cfg.secrets).toContain(TOKEN);
  });
});

describe('sending', () => {
  it('sends Telegram sendMessage, the webhook JSON and the healthcheck ping', async () => {
    const cfg = config({ NOTIFY_WEBHOOK_URL: `${srv.url}/hook/secret-path-123`, HEALTHCHECK_URL: `${srv.url}/ping/abcdef-uuid` });
    const report = await notifyResult(failed, cfg);
    expect(report.outcomes.map((o) => [o.channel, o.ok])).toEqual([
      ['telegram', true],
      ['webhook', true],
      ['healthcheck', true],
    ]);
    const tg = srv.requests.find((r) => r.url.includes('sendMessage'))!;
    expect(tg.method).toBe('POST');
    expect(tg.url).toBe(`/bot${TOKEN}/sendMessage`);
    const body = tg.json as { chat_id: string; text: string };
    expect(body.chat_id).toBe('-100200300');
    expect(body.text).toBe(formatMessage(failed, 'web-1'));

    const hook = srv.requests.find((r) => r.url === '/hook/secret-path-123')!;
    expect(hook.json).toMatchObject({
      event: 'vertex-backup.result',
      host: 'web-1',
      command: 'create --type full',
      ok: false,
      exit_code: 5,
      duration_ms: 65_000,
      text: body.text,
    });
    expect((hook.json as { error: string }).error).toContain('not enough disk space');

    const ping = srv.requests.find((r) => r.url.startsWith('/ping/'))!;
    // the exit status as /{code} (issue 17)
    expect(ping.url).toBe('/ping/abcdef-uuid/5');
    expect(ping.body).toContain('FAILED');
  });

  it('pings the base URL on success and /start at the beginning', async () => {
    const cfg = config({ NOTIFY_ON: 'failure', HEALTHCHECK_URL: `${srv.url}/ping/abcdef-uuid?create=1` });
    await notifyStart('create --type database', cfg);
    const report = await notifyResult(succeeded, cfg);
    // failure mode: a success goes to the ping only, Telegram stays quiet
    expect(report.outcomes.map((o) => o.channel)).toEqual(['healthcheck']);
    expect(srv.requests.map((r) => r.url)).toEqual(['/ping/abcdef-uuid/start?create=1', '/ping/abcdef-uuid?create=1']);
    expect(pingUrl('https://hc-ping.com/u-u-i-d/', 'fail')).toBe('https://hc-ping.com/u-u-i-d/fail');
  });

  it('sends nothing in mode never', async () => {
    const report = await notifyResult(failed, config({ NOTIFY_ON: 'never', HEALTHCHECK_URL: `${srv.url}/p/123456` }));
    expect(report).toEqual({ attempted: false, outcomes: [] });
    expect(srv.requests).toHaveLength(0);
  });

  it('retries 5xx and network trouble, then succeeds', async () => {
    srv.setHandler((_r, i) => (i < 2 ? { status: 502, body: 'bad gateway' } : undefined));
    const report = await notifyResult(failed, config({ NOTIFY_RETRIES: '3' }));
    expect(report.outcomes[0]).toMatchObject({ channel: 'telegram', ok: true, attempts: 3 });
    expect(srv.requests).toHaveLength(3);
  });

  it('honours Telegram 429 retry_after', async () => {
    srv.setHandler((_r, i) =>
      i === 0 ? { status: 429, body: { ok: false, error_code: 429, description: 'Too Many Requests: retry after 1', parameters: { retry_after: 1 } } } : undefined,
    );
    const report = await notifyResult(failed, config());
    expect(report.outcomes[0]).toMatchObject({ ok: true, attempts: 2 });
    expect(srv.requests[1].at - srv.requests[0].at).toBeGreaterThanOrEqual(900);
  });

  it('does not retry a refused request, and keeps the token out of the error', async () => {
    // a server that echoes the URL back (some proxies do) must not leak the token into our log
    srv.setHandler((r) => ({ status: 401, body: { ok: false, error_code: 401, description: `Unauthorized for ${r.url}` } }));
    const logged: string[] = [];
    const report = await notifyResult(failed, config(), (_l, m) => logged.push(m));
    const o = report.outcomes[0];
    expect(o).toMatchObject({ channel: 'telegram', ok: false, attempts: 1 });
    expect(o.error).toContain('HTTP 401');
    expect(o.error).toContain('Unauthorized');
    expect(JSON.stringify(report)).not.toContain(TOKEN);
    expect(JSON.stringify(report)).not.toContain(TOKEN.split(':')[1]);
    expect(logged.join('\n')).toContain('notification via telegram failed');
    expect(logged.join('\n')).not.toContain(TOKEN);
  });

  it('treats {"ok":false} with status 200 as a failure', async () => {
    srv.setHandler(() => ({ status: 200, body: { ok: false, description: 'Bad Request: chat not found' } }));
    const report = await notifyResult(failed, config());
    expect(report.outcomes[0].ok).toBe(false);
    expect(report.outcomes[0].error).toContain('chat not found');
  });

  it('gives up after the timeout and the retries, without throwing', async () => {
    srv.setHandler(() => ({ hang: true }));
    const t0 = Date.now();
    const report = await notifyResult(failed, config({ NOTIFY_TIMEOUT_MS: '300', NOTIFY_RETRIES: '1' }));
    expect(report.outcomes[0]).toMatchObject({ ok: false, attempts: 2 });
    expect(report.outcomes[0].error).toMatch(/no answer within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('reports an unreachable server with the URL secrets redacted', async () => {
    const closed = await startRecorder();
    const url = closed.url;
    await closed.close();
    const cfg = config({ TELEGRAM_API_URL: url, NOTIFY_WEBHOOK_URL: `${url}/hooks/T000/B000/XXXXsecret`, NOTIFY_RETRIES: '0' });
    const report = await notifyResult(failed, cfg);
    expect(report.outcomes).toHaveLength(2);
    for (const o of report.outcomes) {
      expect(o.ok).toBe(false);
      expect(o.error).toMatch(/ECONNREFUSED|fetch failed/);
    }
    expect(JSON.stringify(report)).not.toContain('XXXXsecret');
    expect(JSON.stringify(report)).not.toContain(TOKEN);
  });

  it('reports a half-configured Telegram as a failed channel', async () => {
    const cfg = resolveNotifyConfig({ NOTIFY_ON: 'always', TELEGRAM_BOT_TOKEN: TOKEN });
    const report = await notifyResult(failed, cfg);
    expect(report.outcomes).toEqual([{ channel: 'telegram', ok: false, attempts: 0, error: 'TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_ID is not' }]);
  });
});

describe('redaction', () => {
  it('removes tokens, their URL-encoded form and secret URL paths', () => {
    registerSecret(TOKEN);
    registerSecret('https://hc-ping.com/0f3e-secret-uuid');
    const r = redact;
    expect(r(`GET https://api.telegram.org/bot${TOKEN}/sendMessage`)).toBe('GET https://api.telegram.org/bot***/sendMessage');
    expect(r(`x=${encodeURIComponent(TOKEN)}`)).toBe('x=***');
    expect(r('ping https://hc-ping.com/0f3e-secret-uuid/fail')).toBe('ping ***/fail');
    expect(r('path /0f3e-secret-uuid')).toBe('path ***');
  });

  it('the webhook and healthcheck URLs are secrets from the moment the config is read', () => {
    resolveNotifyConfig({ NOTIFY_WEBHOOK_URL: 'https://hooks.example/T1/B2/webhook-secret-path', HEALTHCHECK_URL: 'https://hc.example/ping-uuid-4242' });
    expect(redact('POST https://hooks.example/T1/B2/webhook-secret-path failed')).toBe('POST *** failed');
    expect(redact('GET /ping-uuid-4242/start: 404')).toBe('GET ***/start: 404');
  });
});

describe('message text, edge cases', () => {
  it('does not repeat a summary that is the reason, and omits an unknown duration', () => {
    const text = formatMessage({ command: 'check', ok: false, summary: 'newest ok full backup is 2d old', error: 'newest ok full backup is 2d old', durationMs: -1, exitCode: 1 }, 'h');
    expect(text).toBe('❌ vertex-backup on h: check FAILED (exit 1)\nReason: newest ok full backup is 2d old');
  });
});
