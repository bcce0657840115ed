/**
 * Issue 13, item 4: every documented config-file key takes effect (one case per key), the `schedule`
 * and `notify` sections are read, and an unknown key names the nearest valid one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { resolveNotifyConfig } from '../../src/notify/config.js';
import { loadGraceMs, loadJobSpecs } from '../../src/schedule/config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-cfg-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function withConfig(obj: Record<string, unknown>) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(obj), { mode: 0o600 });
  const cfg = resolveConfig({ config: file }, {}, dir);
  return { cfg, notify: resolveNotifyConfig(cfg.env, true, cfg.file) };
}

describe('each documented top-level key', () => {
  const cases: [string, unknown, (r: ReturnType<typeof withConfig>) => unknown, unknown][] = [
    ['backupDir', '/b', (r) => r.cfg.backupDir, '/b'],
    ['databasePath', '/d.db', (r) => r.cfg.dbPath, '/d.db'],
    ['databaseUrl', 'sqlite:////u.db', (r) => r.cfg.dbPath, '/u.db'],
    ['storagePath', '/s', (r) => r.cfg.storagePath, '/s'],
    ['maxBackups', 3, (r) => [r.cfg.maxBackups, r.cfg.retention.keepLast], [3, 3]],
    ['keepDaily', 5, (r) => [r.cfg.retention.keepDaily, r.cfg.retention.keepLast], [5, undefined]],
    ['keepWeekly', 4, (r) => r.cfg.retention.keepWeekly, 4],
    ['keepMonthly', 12, (r) => r.cfg.retention.keepMonthly, 12],
    ['keepYearly', 2, (r) => r.cfg.retention.keepYearly, 2],
    ['compression', 'none', (r) => r.cfg.compression, 'none'],
    ['compressionLevel', 9, (r) => r.cfg.compressionLevel, 9],
    ['splitSizeMb', 2, (r) => r.cfg.splitSize, 2 * 1024 * 1024],
    ['exclude', ['*.tmp'], (r) => r.cfg.exclude, ['*.tmp']],
    ['telegramBotToken', '123:abcdef', (r) => r.notify.telegramProblem, 'TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_ID is not'],
    ['telegramChatId', '-100', (r) => r.notify.telegramProblem, 'TELEGRAM_CHAT_ID is set but TELEGRAM_BOT_TOKEN is not'],
    ['notifyOn', 'always', (r) => r.notify.mode, 'always'],
    ['notifyWebhookUrl', 'http://127.0.0.1:9/hook', (r) => r.notify.webhookUrl, 'http://127.0.0.1:9/hook'],
    ['healthcheckUrl', 'http://127.0.0.1:9/ping', (r) => r.notify.healthcheckUrl, 'http://127.0.0.1:9/ping'],
    ['remotesConfig', 'r.json', (r) => r.cfg.file.remotesConfig, 'r.json'],
  ];
  it.each(cases)('%s', (key, value, get, want) => {
    expect(get(withConfig({ [key]: value }))).toEqual(want);
  });

  it('telegramApiUrl (top level) is accepted and used', () => {
    const r = withConfig({ telegramBotToken: '123:abcdef', telegramChatId: '-1', telegramApiUrl: 'http://127.0.0.1:9' });
    expect(r.notify.telegram?.apiUrl).toBe('http://127.0.0.1:9');
  });
});

describe('the notify section', () => {
  it('every key maps to its variable', () => {
    const r = withConfig({
      notify: { on: 'always', telegramBotToken: '123:abcdef', telegramChatId: '-5', telegramApiUrl: 'http://127.0.0.1:7', webhookUrl: 'http://127.0.0.1:7/w', healthcheckUrl: 'http://127.0.0.1:7/h', timeoutMs: 1234, retries: 0, retryDelayMs: 5, hostname: 'box' },
    });
    expect(r.notify).toMatchObject({
      mode: 'always',
      telegram: { token: '123:abcdef', chatId: '-5', apiUrl: 'http://127.0.0.1:7' },
      webhookUrl: 'http://127.0.0.1:7/w',
      healthcheckUrl: 'http://127.0.0.1:7/h',
      timeoutMs: 1234,
      retries: 0,
      retryDelayMs: 5,
      host: 'box',
    });
  });
  it('the environment wins over the file', () => {
    const file = path.join(dir, 'env-wins.json');
    fs.writeFileSync(file, JSON.stringify({ notify: { on: 'always' } }), { mode: 0o600 });
    const cfg = resolveConfig({ config: file }, { NOTIFY_ON: 'never' }, dir);
    expect(resolveNotifyConfig(cfg.env, undefined, cfg.file).mode).toBe('never');
  });
});

describe('the schedule section', () => {
  it('schedules, enabled flags and the misfire grace take effect', () => {
    const { cfg } = withConfig({ schedule: { full: '0 2 * * *', storage: { schedule: '30 1 * * *', enabled: false }, misfireGrace: '10m' } });
    const jobs = Object.fromEntries(loadJobSpecs(cfg.env).map((j) => [j.name, j]));
    expect(jobs.full.schedule).toBe('0 2 * * *');
    expect(jobs.storage).toMatchObject({ schedule: '30 1 * * *', enabled: false });
    expect(loadGraceMs(cfg.env)).toBe(10 * 60_000);
  });
});

describe('unknown keys name the nearest valid one', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ maxBackup: 3 }, /unknown key 'maxBackup' \(did you mean 'maxBackups'\?\)/],
    [{ telegramApiURL: 'x' }, /did you mean 'telegramApiUrl'/],
    [{ notify: { webhookURL: 'x' } }, /unknown key 'notify\.webhookURL' \(did you mean 'notify\.webhookUrl'\?\)/],
    [{ schedule: { databse: '0 1 * * *' } }, /unknown key 'schedule\.databse' \(did you mean 'schedule\.database'\?\)/],    [{ schedule: { storage: { schedul: '0 1 * * *' } } }, /unknown key 'schedule\.storage\.schedul' \(did you mean 'schedule\.storage\.schedule'\?\)/],
    [{ schedule: { storage: 5 } }, /'schedule\.storage' must be a cron expression or \{ "schedule", "enabled" \}/],
    [{ notify: { retries: [3] } }, /'notify\.retries' must be a string, number or boolean/],
    [{ notify: 'yes' }, /'notify' must be an object/],
  ];
  it.each(cases)('%j', (obj, msg) => {
    expect(() => withConfig(obj)).toThrow(msg);
  });
});
