/**
 * Issue 13, items 4 and 6 through the binary: the config file's schedule section reaches `schedule
 * --list`; the application's own `.env` (SECRET_KEY=…, mode 0644) only earns a warning, while a
 * readable `.env` holding a secret this tool uses is refused, naming the variable and the fix.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

let cwd: string;
beforeAll(() => {
  cwd = tempDir();
});
afterAll(() => rmrf(cwd));

describe('config file sections take effect', () => {
  it('schedule --list shows the schedule from the config file', async () => {
    fs.writeFileSync(path.join(cwd, 'vb.json'), JSON.stringify({ schedule: { full: '15 1 * * *', storage: { enabled: false } } }));
    const r = await run(['schedule', '--list', '--json', '--config', 'vb.json'], { cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const jobs = parseJsonStdout<{ jobs: { name: string; schedule: string; enabled: boolean }[] }>(r).jobs;
    expect(jobs.find((j) => j.name === 'full')?.schedule).toBe('15 1 * * *');
    expect(jobs.find((j) => j.name === 'storage')?.enabled).toBe(false);
  });

  it('an unknown key names the nearest valid one', async () => {
    fs.writeFileSync(path.join(cwd, 'typo.json'), JSON.stringify({ maxBakups: 3 }));
    const r = await run(['list', '--config', 'typo.json'], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown key 'maxBakups' \(did you mean 'maxBackups'\?\)/);
  });
});

describe("the application's .env", () => {
  it('SECRET_KEY in a 0644 .env: list works, one warning names the variable', async () => {
    const dir = path.join(cwd, 'app');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '.env'), 'SECRET_KEY=django-insecure-abcdef\nDEBUG=0\n', { mode: 0o644 });
    fs.chmodSync(path.join(dir, '.env'), 0o644);
    const r = await run(['list'], { cwd: dir });
    expect(r.code, describeRun(r)).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/SECRET_KEY/);
    expect(warnings[0]).toMatch(/chmod 600/);
    expect(r.stderr).not.toContain('django-insecure-abcdef');
  });

  it('TELEGRAM_BOT_TOKEN in a 0644 .env: refused, naming the variable and chmod 600', async () => {
    const dir = path.join(cwd, 'app2');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '.env'), 'TELEGRAM_BOT_TOKEN=123456:secret-token-value\nSECRET_KEY=x1234\n');
    fs.chmodSync(path.join(dir, '.env'), 0o644);
    const r = await run(['list'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/TELEGRAM_BOT_TOKEN/);
    expect(r.stderr).toMatch(/chmod 600 .*\.env/);
    expect(r.stderr).not.toMatch(/SECRET_KEY/);
    expect(r.stderr).not.toContain('secret-token-value');
  });
});

describe('files saved by a Windows editor (a byte-order mark first, CRLF line ends)', () => {
  it('.env, the config file and the remotes file are read as if the mark were not there', async () => {
    const dir = path.join(cwd, 'bom');
    fs.mkdirSync(path.join(dir, 'media'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'media', 'a.jpg'), 'a');
    const bom = '\ufeff';
    // the first key of each file is the one the mark would swallow
    fs.writeFileSync(path.join(dir, '.env'), `${bom}STORAGE_PATH=${path.join(dir, 'media')}\r\nBACKUP_DIR=${path.join(dir, 'backups')}\r\n`);
    fs.writeFileSync(path.join(dir, 'vb.json'), `${bom}${JSON.stringify({ compression: 'none' })}\r\n`);
    fs.writeFileSync(path.join(dir, 'remotes.json'), `${bom}${JSON.stringify({ remotes: { usb: { url: `file://${path.join(dir, 'usb')}` } } })}`, { mode: 0o600 });
    const r = await run(['create', '--type', 'storage', '--json', '--config', 'vb.json'], { cwd: dir });
    expect(r.code, describeRun(r)).toBe(0);
    expect(parseJsonStdout<{ backups: string[] }>(r).backups).toBeDefined();
    expect(fs.readdirSync(path.join(dir, 'backups', 'storage')).some((n) => n.endsWith('.tar'))).toBe(true);
    const remotes = await run(['remote', 'list', '--json', '--remotes-config', 'remotes.json'], { cwd: dir });
    expect(remotes.code, describeRun(remotes)).toBe(0);
    expect(remotes.stdout).toContain('usb');
  });
});
