/**
 * check, status.json and notifications through the built binary, as cron and systemd run them.
 * Telegram is a real HTTP server on 127.0.0.1 (TELEGRAM_API_URL).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { startRecorder, type Recorder } from '../helpers/http-recorder.js';

const TOKEN = '555000111:AAMonitoringTestToken-abcdefghijk';
let tmp: string;
let srv: Recorder;
let env: Record<string, string>;

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-mon-'));
  fs.mkdirSync(path.join(tmp, 'storage'));
  fs.writeFileSync(path.join(tmp, 'storage', 'a.txt'), 'media');
  const db = new Database(path.join(tmp, 'app.db'));
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('x');");
  db.close();
  srv = await startRecorder();
  env = {
    BACKUP_DIR: path.join(tmp, 'backups'),
    DATABASE_PATH: path.join(tmp, 'app.db'),
    STORAGE_PATH: path.join(tmp, 'storage'),
    TELEGRAM_BOT_TOKEN: TOKEN,
    TELEGRAM_CHAT_ID: '42',
    TELEGRAM_API_URL: srv.url,
    NOTIFY_RETRY_DELAY_MS: '10',
  };
});
afterEach(async () => {
  await srv.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const texts = () => srv.requests.filter((r) => r.url.endsWith('/sendMessage')).map((r) => (r.json as { text: string }).text);

describe('check', () => {
  it('exits 0 with fresh backups, 1 when they are too old, 2 on a bad limit', async () => {
    const c = await run(['create', '--type', 'full'], { cwd: tmp, env });
    expect(c.code, describeRun(c)).toBe(0);
    const ok = await run(['check', '--json'], { cwd: tmp, env });
    expect(ok.code, describeRun(ok)).toBe(0);
    const doc = JSON.parse(ok.stdout) as { ok: boolean; types: { type: string; ok: boolean }[] };
    expect(doc.ok).toBe(true);
    expect(doc.types.map((t) => t.type).sort()).toEqual(['database', 'full', 'storage']);

    await new Promise((r) => setTimeout(r, 1500));
    const old = await run(['check', '--max-age', '1s', '--type', 'database'], { cwd: tmp, env });
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/newest ok database backup \d{8}_\d{6}(_\d+)? is \d+s old \(limit 1s\)/);

    const bad = await run(['check', '--max-age', 'soon'], { cwd: tmp, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--max-age');
  });

  it('fails after a failed run, with its reason, and --notify sends the alert', async () => {
    expect((await run(['create', '--type', 'full'], { cwd: tmp, env })).code).toBe(0);
    const failed = await run(['create', '--type', 'database'], { cwd: tmp, env: { ...env, DATABASE_PATH: path.join(tmp, 'gone.db') } });
    expect(failed.code).not.toBe(0);
    const status = JSON.parse(fs.readFileSync(path.join(env.BACKUP_DIR, 'status.json'), 'utf8'));
    expect(status.runs['create:database']).toMatchObject({ ok: false, exit_code: failed.code });
    expect(status.runs['create:full']).toMatchObject({ ok: true, exit_code: 0 });

    const r = await run(['check', '--notify'], { cwd: tmp, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/last create --type database failed .*gone\.db/);
    const t = texts();
    expect(t).toHaveLength(1);
    expect(t[0]).toContain('check FAILED (exit 1)');
    expect(t[0]).toMatch(/Reason: last create --type database failed/);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });
});

describe('notifications from commands', () => {
  it('--notify sends a failure with the reason; a success only with NOTIFY_ON=always', async () => {
    const f = await run(['create', '--type', 'database', '--notify'], { cwd: tmp, env: { ...env, DATABASE_PATH: path.join(tmp, 'gone.db') } });
    expect(texts()).toHaveLength(1);
    expect(texts()[0]).toContain(`create --type database FAILED (exit ${f.code})`);
    expect(texts()[0]).toMatch(/Reason: .*gone\.db/);

    expect((await run(['create', '--type', 'database', '--notify'], { cwd: tmp, env })).code).toBe(0);
    expect(texts()).toHaveLength(1); // failure mode: quiet on success

    const ok = await run(['create', '--type', 'database'], { cwd: tmp, env: { ...env, NOTIFY_ON: 'always' } });
    expect(ok.code).toBe(0);
    expect(texts()).toHaveLength(2);
    expect(texts()[1]).toContain('create --type database succeeded');
    expect(texts()[1]).toMatch(/Size: .*B, Duration: /);
  });

  it('a notification that fails never changes the exit code', async () => {
    srv.setHandler(() => ({ status: 500 }));
    const ok = await run(['create', '--type', 'database'], { cwd: tmp, env: { ...env, NOTIFY_ON: 'always', NOTIFY_RETRIES: '1' } });
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(ok.stderr).toMatch(/notification via telegram failed after 2 attempt\(s\): HTTP 500/);
    expect(ok.stderr).not.toContain(TOKEN);
  });

  it('an invalid NOTIFY_ON is a usage error', async () => {
    const r = await run(['create', '--type', 'database'], { cwd: tmp, env: { ...env, NOTIFY_ON: 'loudly' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('NOTIFY_ON');
  });

  it('notify --failed-unit (the OnFailure= unit) reports the recorded reason', async () => {
    // a server that has run before: the backup directory exists (bad input never creates it)
    expect((await run(['create', '--type', 'database'], { cwd: tmp, env })).code).toBe(0);
    await run(['create', '--type', 'full'], { cwd: tmp, env: { ...env, STORAGE_PATH: path.join(tmp, 'no-storage') } });
    const r = await run(['notify', '--failed-unit', 'vertex-backup.service'], { cwd: tmp, env });
    expect(r.code, describeRun(r)).toBe(0);
    const t = texts();
    expect(t).toHaveLength(1);
    expect(t[0]).toContain('systemd unit vertex-backup.service FAILED');
    expect(t[0]).toMatch(/Reason: create --type full failed: .*no-storage/);
    expect(t[0]).toContain('journalctl -u vertex-backup.service');

    const none = await run(['notify', '--failed-unit', 'x.service'], { cwd: tmp, env: { BACKUP_DIR: env.BACKUP_DIR } });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no notification channel');
  });
});
