import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startRecorder, type Recorder } from '../helpers/http-recorder.js';
import { needs } from '../helpers/optional.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(REPO, 'scripts', 'backup.sh');
const TOKEN = '987654321:AAFakeBotTokenForTests_0123456789';
const CHAT = '-1001234567890';

let tmp: string;
let srv: Recorder;
let fake: string;

/** A stand-in for vertex-backup: records its arguments, answers like the CLI, leaks the token on stderr. */
const FAKE_CLI = `#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_ARGV_LOG"
sub=""
for a in "$@"; do case "$a" in create|rotate|stats) sub="$a"; break ;; esac; done
case "$sub" in
  create)
    if [[ "\${FAKE_MODE:-ok}" == ok ]]; then
      printf '{\\n  "ok": true,\\n  "type": "full",\\n  "id": "20240101_020000",\\n  "status": "ok",\\n  "backups": [{"size_bytes": 7}],\\n  "size_bytes": 1572864\\n}\\n'
      exit 0
    fi
    echo "debug: using token $TELEGRAM_BOT_TOKEN" >&2
    echo "error: not enough disk space at /var/backups: need 2.0 GiB, 1.1 GiB free" >&2
    echo "hint: free space or rotate" >&2
    printf '{"ok": false, "error": {"code": "NO_SPACE", "exit_code": 5, "message": "not enough disk space at /var/backups: need 2.0 GiB, 1.1 GiB free"}}\\n'
    exit 5 ;;
  rotate)
    if [[ "\${FAKE_ROTATE:-ok}" == ok ]]; then echo "removed 2 backups"; exit 0; fi
    echo "error: cannot remove /b/x: permission denied" >&2
    exit 1 ;;
  stats) echo "total 3 backups, 1.5 MiB"; exit 0 ;;
esac
exit 2
`;

interface ShResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the wrapper asynchronously: the recorder lives in this process and must keep answering. */
function runScript(args: string[], env: Record<string, string | undefined>, script = SCRIPT): Promise<ShResult> {
  const fullEnv: NodeJS.ProcessEnv = {
    PATH: `${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    HOME: tmp,
    LANG: 'C.UTF-8',
    TZ: 'UTC',
    TELEGRAM_BOT_TOKEN: TOKEN,
    TELEGRAM_CHAT_ID: CHAT,
    TELEGRAM_API_URL: srv.url,
    BACKUP_MIN_FREE_MB: '1',
    FAKE_ARGV_LOG: path.join(tmp, 'argv.log'),
  };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete fullEnv[k];
    else fullEnv[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { cwd: tmp, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`backup.sh did not finish\n${stdout}\n${stderr}`));
    }, 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function telegramTexts(): string[] {
  return srv.requests.filter((r) => r.url.endsWith('/sendMessage')).map((r) => r.form?.text ?? '');
}

const argvLog = () => (fs.existsSync(path.join(tmp, 'argv.log')) ? fs.readFileSync(path.join(tmp, 'argv.log'), 'utf8').trim().split('\n') : []);

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-backupsh-'));
  fake = path.join(tmp, 'fake-vertex-backup');
  fs.writeFileSync(fake, FAKE_CLI, { mode: 0o755 });
  srv = await startRecorder();
});

afterEach(async () => {
  await srv.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('scripts/backup.sh', () => {
  needs('shellcheck', 'shellcheck').it('is shellcheck clean', () => {
    const r = spawnSync('shellcheck', ['--severity=style', SCRIPT], { encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('on success: runs create and rotate, logs, prints stats, sends the Telegram message', async () => {
    const backups = path.join(tmp, 'b');
    const r = await runScript(['--type', 'full', '--max-backups', '14', '--backup-dir', backups], { VERTEX_BACKUP_BIN: fake });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(argvLog()).toEqual([
      `--backup-dir ${backups} create --type full --json`,
      `--backup-dir ${backups} rotate --max-backups 14`,
      `--backup-dir ${backups} stats`,
    ]);
    expect(r.stdout).toMatch(/succeeded in \d+s/);
    expect(r.stdout).toContain('total 3 backups, 1.5 MiB');

    const reqs = srv.requests;
    expect(reqs).toHaveLength(1);
    expect(reqs[0].method).toBe('POST');
    expect(reqs[0].url).toBe(`/bot${TOKEN}/sendMessage`);
    expect(reqs[0].form?.chat_id).toBe(CHAT);
    const text = reqs[0].form!.text;
    expect(text).toContain('full backup succeeded');
    expect(text).toContain('Backup: 20240101_020000 (1.5 MiB)');
    expect(text).toMatch(/Duration: \d+s/);
    expect(text).toContain('Rotation: keep 14 per type');

    const log = fs.readFileSync(path.join(backups, 'backup-wrapper.log'), 'utf8');
    expect(log).toContain('[INFO] backup 20240101_020000 created (1.5 MiB)');
    expect(log).toContain('removed 2 backups');
    expect(log).toContain('Telegram message sent');
    expect(log).not.toContain(TOKEN);
    expect(fs.statSync(path.join(backups, 'backup-wrapper.log')).mode & 0o077).toBe(0);
  });

  it("on failure: exits with the CLI's code, sends the reason, keeps the token out of the log", async () => {
    const backups = path.join(tmp, 'b');
    const r = await runScript(['--type', 'database', '--backup-dir', backups], { VERTEX_BACKUP_BIN: fake, FAKE_MODE: 'fail' });
    expect(r.code, r.stdout + r.stderr).toBe(5);
    // no rotation after a failed backup
    expect(argvLog().filter((l) => l.includes('rotate'))).toEqual([]);
    const texts = telegramTexts();
    expect(texts).toHaveLength(1);
    expect(texts[0]).toContain('database backup FAILED (exit 5)');
    expect(texts[0]).toContain('Reason: not enough disk space at /var/backups: need 2.0 GiB, 1.1 GiB free');
    expect(texts[0]).toContain(`Log: ${backups}/backup-wrapper.log`);

    const log = fs.readFileSync(path.join(backups, 'backup-wrapper.log'), 'utf8');
    expect(log).toContain('debug: using token ***'); // the CLI's output is logged, redacted
    expect(log).toMatch(/\[ERROR\] === database backup FAILED \(exit 5\)/);
    expect(log).not.toContain(TOKEN);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });

  it('reports a failed rotation with its exit code', async () => {
    const r = await runScript(['--backup-dir', path.join(tmp, 'b')], { VERTEX_BACKUP_BIN: fake, FAKE_ROTATE: 'fail' });
    expect(r.code).toBe(1);
    expect(telegramTexts()[0]).toContain('Reason: the backup succeeded but the rotation failed: cannot remove /b/x: permission denied');
  });

  it('refuses to start without enough free space (exit 5) and says so', async () => {
    const r = await runScript(['--backup-dir', path.join(tmp, 'b')], { VERTEX_BACKUP_BIN: fake, BACKUP_MIN_FREE_MB: '999999999' });
    expect(r.code).toBe(5);
    expect(argvLog().filter((l) => l.includes('create'))).toEqual([]);
    expect(telegramTexts()[0]).toMatch(/Reason: only .* free at .*, need at least 999999999 MiB/);
  });

  it('rejects bad options with exit 2 before doing anything', async () => {
    for (const args of [['--type', 'everything'], ['--max-backups', '0'], ['--frobnicate'], ['--type']]) {
      const r = await runScript(args, { VERTEX_BACKUP_BIN: fake });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/backup\.sh: /);
    }
    expect(argvLog()).toEqual([]);
    expect(srv.requests).toHaveLength(0);
  });

  it('fails clearly when vertex-backup cannot be found', async () => {
    const lonely = path.join(tmp, 'alone', 'backup.sh');
    fs.mkdirSync(path.dirname(lonely));
    fs.copyFileSync(SCRIPT, lonely);
    const r = await runScript(['--backup-dir', path.join(tmp, 'b')], { VERTEX_BACKUP_BIN: undefined, PATH: '/usr/bin:/bin' }, lonely);
    expect(r.code).toBe(1);
    expect(telegramTexts()[0]).toContain('Reason: vertex-backup not found');
  });

  it('a Telegram outage never changes the result', async () => {
    srv.setHandler(() => ({ status: 500, body: { ok: false, description: 'Internal Server Error' } }));
    const backups = path.join(tmp, 'b');
    const r = await runScript(['--backup-dir', backups], { VERTEX_BACKUP_BIN: fake });
    expect(r.code).toBe(0);
    expect(srv.requests.length).toBeGreaterThanOrEqual(1);
    const log = fs.readFileSync(path.join(backups, 'backup-wrapper.log'), 'utf8');
    expect(log).toContain('Telegram message not sent (HTTP 500)');
    expect(log).not.toContain(TOKEN);
  });

  it('sends nothing when Telegram is not configured', async () => {
    const r = await runScript(['--backup-dir', path.join(tmp, 'b')], { VERTEX_BACKUP_BIN: fake, TELEGRAM_BOT_TOKEN: undefined });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Telegram not configured');
    expect(srv.requests).toHaveLength(0);
  });
});

describe('scripts/backup.sh with the real vertex-backup', () => {
  let data: string;
  beforeAll(() => {
    expect(fs.existsSync(path.join(REPO, 'dist', 'cli', 'main.js')), 'run `npm run build` first').toBe(true);
  });
  beforeEach(() => {
    data = path.join(tmp, 'app');
    fs.mkdirSync(path.join(data, 'storage', 'img'), { recursive: true });
    fs.writeFileSync(path.join(data, 'storage', 'img', 'a.jpg'), Buffer.alloc(20_000, 7));
    fs.writeFileSync(path.join(data, 'storage', 'b.txt'), 'hello');
    const db = new Database(path.join(data, 'app.db'));
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES (\'x\'), (\'y\');');
    db.close();
  });
  afterAll(() => {});

  // the wrapper finds bin/vertex-backup.js next to itself: PATH has no vertex-backup
  const env = () => ({ VERTEX_BACKUP_BIN: undefined, DATABASE_PATH: path.join(data, 'app.db'), STORAGE_PATH: path.join(data, 'storage') });

  it('creates a full backup, rotates and reports the real id', async () => {
    const backups = path.join(tmp, 'backups');
    const r = await runScript(['--type', 'full', '--max-backups', '3', '--backup-dir', backups], env());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const sidecars = fs.readdirSync(path.join(backups, 'full')).filter((f) => f.endsWith('.json'));
    expect(sidecars).toHaveLength(1);
    const id = /^full_backup_(.+)\.json$/.exec(sidecars[0])![1];
    const text = telegramTexts()[0];
    expect(text).toContain('full backup succeeded');
    expect(text).toContain(`Backup: ${id} (`);
    expect(fs.readFileSync(path.join(backups, 'backup-wrapper.log'), 'utf8')).not.toContain(TOKEN);
    // the text the operator gets, for the record
    console.info(`Telegram message sent by backup.sh:\n${text}`);
  });

  it('issue 13 item 5: without --backup-dir/--max-backups the configuration (.env) decides; messages show absolute paths and the CLI sizes', async () => {
    const target = path.join(tmp, 'from-dotenv');
    // the application's directory, as cron would see it: .env there says where the backups go
    fs.writeFileSync(path.join(tmp, '.env'), `BACKUP_DIR=${target}\nMAX_BACKUPS=1\n`, { mode: 0o600 });
    for (let i = 0; i < 2; i++) {
      const r = await runScript(['--type', 'database'], env());
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    expect(fs.existsSync(path.join(tmp, 'backups'))).toBe(false);
    // MAX_BACKUPS=1 from .env applied by rotate: one database backup left
    expect(fs.readdirSync(path.join(target, 'database')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    const log = fs.readFileSync(path.join(target, 'backup-wrapper.log'), 'utf8');
    expect(log).toContain(`backup dir ${target}, retention from the configuration`);
    expect(log).not.toMatch(/--max-backups|--backup-dir/);
    const list = spawnSync(process.execPath, [path.join(REPO, 'bin', 'vertex-backup.js'), 'list', '--json', '--backup-dir', target], { encoding: 'utf8' });
    const size = (JSON.parse(list.stdout) as { size_bytes: number }[])[0].size_bytes;
    const cliSize = spawnSync(process.execPath, ['-e', `import('${path.join(REPO, 'dist', 'human.js')}').then((m) => console.log(m.formatBytes(${size})))`], { encoding: 'utf8' }).stdout.trim();
    expect(telegramTexts().at(-1)).toContain(`(${cliSize})`);
    expect(telegramTexts().at(-1)).toContain(`Free at ${target}:`);
  });

  it('issue 29 item 4: TELEGRAM_* in the .env that vertex-backup reads are the wrapper\'s too (the environment still wins)', async () => {
    fs.writeFileSync(
      path.join(tmp, '.env'),
      `BACKUP_DIR=${path.join(tmp, 'b')}\nTELEGRAM_BOT_TOKEN="${TOKEN}"   # quoted, with a comment\nTELEGRAM_CHAT_ID=4242\nTELEGRAM_API_URL=${srv.url}\n`,
      { mode: 0o600 },
    );
    const r = await runScript(['--type', 'database'], { ...env(), TELEGRAM_BOT_TOKEN: undefined, TELEGRAM_CHAT_ID: undefined, TELEGRAM_API_URL: undefined });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('Telegram not configured');
    const sent = srv.requests.filter((q) => q.url.endsWith('/sendMessage'));
    expect(sent).toHaveLength(1);
    expect(sent[0].url).toContain(`/bot${TOKEN}/`);
    expect(sent[0].form?.chat_id).toBe('4242');
    expect(fs.readFileSync(path.join(tmp, 'b', 'backup-wrapper.log'), 'utf8')).not.toContain(TOKEN);
    // a chat id in the environment wins over the file's
    const again = await runScript(['--type', 'database'], { ...env(), TELEGRAM_BOT_TOKEN: undefined, TELEGRAM_CHAT_ID: '77', TELEGRAM_API_URL: undefined });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(srv.requests.filter((q) => q.url.endsWith('/sendMessage')).at(-1)?.form?.chat_id).toBe('77');
  });

  it("fails with the CLI's own exit code and reason", async () => {
    const backups = path.join(tmp, 'backups');
    const missing = { ...env(), DATABASE_PATH: path.join(data, 'missing.db') };
    const direct = spawnSync(process.execPath, [path.join(REPO, 'bin', 'vertex-backup.js'), '--backup-dir', backups, 'create', '--type', 'database'], {
      cwd: tmp,
      env: { PATH: process.env.PATH, HOME: tmp, ...missing, VERTEX_BACKUP_BIN: '' },
      encoding: 'utf8',
    });
    expect(direct.status).not.toBe(0);
    const r = await runScript(['--type', 'database', '--backup-dir', backups], missing);
    expect(r.code, r.stdout + r.stderr).toBe(direct.status);
    const text = telegramTexts()[0];
    expect(text).toContain(`database backup FAILED (exit ${direct.status})`);
    expect(text).toMatch(/Reason: .*missing\.db/);
  });
});
