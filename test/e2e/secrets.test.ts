/**
 * Issue 2, item 7 (promise: secrets never leave): tokens from the environment or a config file appear
 * in no output and not in backup.log, on success and on failure, with --verbose and --json; a config
 * file holding a secret that others can read is refused.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run, type RunResult } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { holdLock } from '../helpers/lock-holder.js';

const ENV_TOKEN = '123456:SECRETTOKENVALUE';
const FILE_TOKEN = '654321:CONFIGFILETOKENVALUE';
// the distinctive parts: a partial leak is a leak too
const LEAKS = [ENV_TOKEN, 'SECRETTOKENVALUE', FILE_TOKEN, 'CONFIGFILETOKENVALUE'];

let app: AppFixture;
let config: string;

beforeAll(() => {
  app = makeApp({ randomBytes: 128 * 1024, events: 100 });
  config = path.join(app.cwd, 'vertex.json');
  fs.writeFileSync(config, JSON.stringify({ telegramBotToken: FILE_TOKEN, telegramChatId: '42' }));
  fs.chmodSync(config, 0o600);
});
afterAll(() => rmrf(app?.cwd));

function expectNoLeak(r: RunResult, what: string): void {
  for (const s of LEAKS) {
    expect(r.stdout.includes(s), `${what}: stdout holds '${s}'\n${describeRun(r)}`).toBe(false);
    expect(r.stderr.includes(s), `${what}: stderr holds '${s}'\n${describeRun(r)}`).toBe(false);
  }
}

function expectNoLeakOnDisk(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const log = path.join(dir, 'backup.log');
  const files = [log, ...fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.json')).map((n) => path.join(dir, n))];
  for (const f of files) {
    if (!fs.existsSync(f)) continue;
    const text = fs.readFileSync(f, 'utf8');
    for (const s of LEAKS) expect(text.includes(s), `${f} holds '${s}'`).toBe(false);
  }
}

const env = { TELEGRAM_BOT_TOKEN: ENV_TOKEN, TELEGRAM_CHAT_ID: '42' };

describe('a config file that holds a secret', () => {
  it('is refused at mode 0644 with exit 2 and a chmod 600 hint, without printing the secret', async () => {
    const loose = path.join(app.cwd, 'loose.json');
    fs.writeFileSync(loose, JSON.stringify({ telegramBotToken: FILE_TOKEN }));
    fs.chmodSync(loose, 0o644);
    const backupDir = path.join(app.cwd, 'refused-backups');
    for (const json of [false, true]) {
      const r = await run(['create', '--config', loose, ...(json ? ['--json'] : []), ...app.flags.slice(0, 4), '--backup-dir', backupDir], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(2);
      expect(r.stderr).toContain('chmod 600');
      expect(r.stderr).toContain('loose.json');
      expectNoLeak(r, 'refused config');
    }
    expect(fs.existsSync(backupDir)).toBe(false);
  });

  it('is refused at mode 0640 (group-readable) too', async () => {
    const loose = path.join(app.cwd, 'group.json');
    fs.writeFileSync(loose, JSON.stringify({ telegramBotToken: FILE_TOKEN }));
    fs.chmodSync(loose, 0o640);
    const r = await run(['create', '--config', loose, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain('chmod 600');
  });

  it('is accepted at mode 0600', async () => {
    const backupDir = path.join(app.cwd, 'accepted-backups');
    const r = await run(['create', '--type', 'database', '--config', config, ...app.flags.slice(0, 2), '--backup-dir', backupDir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expectNoLeak(r, 'accepted config');
    expectNoLeakOnDisk(backupDir);
  });

  it('an --env-file holding TELEGRAM_BOT_TOKEN at mode 0644 is refused the same way', async () => {
    const envFile = path.join(app.cwd, 'loose.env');
    fs.writeFileSync(envFile, `TELEGRAM_BOT_TOKEN=${ENV_TOKEN}\n`);
    fs.chmodSync(envFile, 0o644);
    const r = await run(['create', '--env-file', envFile, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain('chmod 600');
    expectNoLeak(r, 'refused env file');
  });

  it('the default ./.env holding a token at mode 0644 is refused too (it is a config file like any other)', async () => {
    const cwd = fs.mkdtempSync(path.join(app.cwd, 'dotenv-'));
    fs.writeFileSync(path.join(cwd, '.env'), `TELEGRAM_BOT_TOKEN=${ENV_TOKEN}\nDATABASE_PATH=${app.dbPath}\n`);
    fs.chmodSync(path.join(cwd, '.env'), 0o644);
    const r = await run(['create', '--type', 'database'], { cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toContain('chmod 600');
    expectNoLeak(r, 'default .env');
  });
});

describe('tokens appear in no output and not in backup.log', () => {
  it('a successful create, human, --verbose and --json', async () => {
    const backupDir = path.join(app.cwd, 'ok-backups');
    for (const mode of [[], ['--verbose'], ['--json'], ['--json', '--verbose']]) {
      const r = await run(['create', '--config', config, ...mode, ...app.flags.slice(0, 4), '--backup-dir', backupDir], { cwd: app.cwd, env });
      expect(r.code, `create ${mode.join(' ')}: ${describeRun(r)}`).toBe(0);
      expectNoLeak(r, `create ${mode.join(' ')}`);
    }
    for (const cmd of [['list'], ['stats'], ['verify', '--all']]) {
      for (const mode of [['--verbose'], ['--json']]) {
        const r = await run([...cmd, ...mode, '--config', config, '--backup-dir', backupDir], { cwd: app.cwd, env });
        expect(r.code, describeRun(r)).toBe(0);
        expectNoLeak(r, cmd.join(' '));
      }
    }
    expect(fs.readFileSync(path.join(backupDir, 'backup.log'), 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(4);
    expectNoLeakOnDisk(backupDir);
  });

  it('a failing create whose error message would contain the token (a path holding it), with --verbose stack traces', async () => {
    const backupDir = path.join(app.cwd, 'fail-backups');
    const dbPath = path.join(app.cwd, `db-${ENV_TOKEN}.db`);
    for (const mode of [['--verbose'], ['--json', '--verbose'], []]) {
      const r = await run(['create', '--type', 'database', ...mode, '--db-path', dbPath, '--backup-dir', backupDir], { cwd: app.cwd, env });
      expect(r.code, describeRun(r)).toBe(2);
      expect(r.stderr).toMatch(/error: .*db-/);
      expectNoLeak(r, `failing create ${mode.join(' ')}`);
    }
    expectNoLeakOnDisk(backupDir);
  });

  it('a create refused by the lock (an error that is logged), whose message would contain the token', async () => {
    const backupDir = path.join(app.cwd, 'locked-backups');
    fs.mkdirSync(backupDir, { mode: 0o700 });
    // a live holder whose command line held the secrets (the holder file names it)
    const holder = await holdLock(backupDir, `create --notify-token ${ENV_TOKEN} --cfg ${FILE_TOKEN}`);
    const pid = holder.pid;
    try {
      for (const mode of [['--verbose'], ['--json', '--verbose']]) {
        const r = await run(['create', '--config', config, ...mode, ...app.flags.slice(0, 4), '--backup-dir', backupDir], { cwd: app.cwd, env });
        expect(r.code, describeRun(r)).toBe(4);
        expect(r.stderr).toContain(String(pid));
        expectNoLeak(r, `locked create ${mode.join(' ')}`);
      }
      const log = fs.readFileSync(path.join(backupDir, 'backup.log'), 'utf8');
      expect(log).toContain(String(pid));
      expectNoLeakOnDisk(backupDir);
    } finally {
      holder.child.kill('SIGKILL');
    }
  });

  it('a warning about a file whose name holds the token (a FIFO in the media tree) is redacted', async () => {
    const storage = fs.mkdtempSync(path.join(app.cwd, 'fifo-storage-'));
    fs.writeFileSync(path.join(storage, 'ok.txt'), 'ok\n');
    const fifo = spawnSync('mkfifo', [path.join(storage, `pipe-${ENV_TOKEN}`)]);
    expect(fifo.status).toBe(0);
    const backupDir = path.join(app.cwd, 'fifo-backups');
    for (const mode of [['--verbose'], ['--json']]) {
      const r = await run(['create', '--type', 'storage', ...mode, '--storage-path', storage, '--backup-dir', backupDir], { cwd: app.cwd, env });
      expect(r.code, `${mode.join(' ')}: ${describeRun(r)}`).toBe(0);
      if (mode[0] === '--verbose') expect(r.stderr).toMatch(/warning: .*pipe-/);
      expectNoLeak(r, `fifo warning ${mode.join(' ')}`);
    }
    const log = fs.readFileSync(path.join(backupDir, 'backup.log'), 'utf8');
    for (const s of LEAKS) expect(log.includes(s), `backup.log holds ${s}`).toBe(false);
  });
});
