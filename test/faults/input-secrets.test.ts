/**
 * Bad configuration gets exit 2 and one clear error line, nothing written; secrets from the
 * environment and the config file never appear in any output, log line or file the tool writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, makeCounterDb, makeMedia, rmrf, show, STACK, tempDir } from '../helpers/faults.js';

let cwd: string;
let base: string[];
const TOKEN = '987654:AAH-faults-secret-token-Zq9';
const AWS = 'aws/faults+secret/KEY0123456789';

beforeAll(() => {
  cwd = tempDir('vb-input-');
  makeCounterDb(path.join(cwd, 'app.db'), { journalMode: 'wal', counter: 5 });
  makeMedia(path.join(cwd, 'storage'), { files: 5, bytes: 20_000 });
  fs.writeFileSync(path.join(cwd, 'a-file'), 'x');
  base = ['--db-path', path.join(cwd, 'app.db'), '--storage-path', path.join(cwd, 'storage')];
});
afterAll(() => rmrf(cwd));

const bad: { name: string; args: string[]; env?: Record<string, string>; mentions: RegExp }[] = [
  { name: 'MAX_BACKUPS not a number', args: ['rotate'], env: { MAX_BACKUPS: 'seven' }, mentions: /MAX_BACKUPS/ },
  { name: 'MAX_BACKUPS out of range', args: ['rotate'], env: { MAX_BACKUPS: '0' }, mentions: /MAX_BACKUPS/ },
  { name: '--max-backups negative', args: ['rotate', '--max-backups', '-3'], mentions: /max-backups/ },
  { name: 'unknown compression flag', args: ['create', '--compression', 'lz77'], mentions: /compression/ },
  { name: 'unknown BACKUP_COMPRESSION', args: ['create'], env: { BACKUP_COMPRESSION: 'rar' }, mentions: /BACKUP_COMPRESSION/ },
  { name: 'BACKUP_SPLIT_SIZE_MB not a number', args: ['create'], env: { BACKUP_SPLIT_SIZE_MB: '10GB' }, mentions: /BACKUP_SPLIT_SIZE_MB/ },
  { name: 'BACKUP_COMPRESSION_LEVEL out of range', args: ['create'], env: { BACKUP_COMPRESSION_LEVEL: '42' }, mentions: /BACKUP_COMPRESSION_LEVEL/ },
  { name: 'missing database file', args: ['create', '--type', 'database', '--db-path', 'nope/none.db'], mentions: /none\.db/ },
  { name: 'database path is a directory', args: ['create', '--type', 'database', '--db-path', '.'], mentions: /not a file/ },
  { name: 'database file is not SQLite', args: ['create', '--type', 'database', '--db-path', 'a-file'], mentions: /not a SQLite/ },
  { name: 'DATABASE_URL of an unsupported database', args: ['create', '--type', 'database', '--db-path', ''], env: { DATABASE_URL: 'mysql://app:pgpassw0rd@db/app' }, mentions: /DATABASE_URL/ },
  { name: 'storage path is a file', args: ['create', '--type', 'storage', '--storage-path', 'a-file'], mentions: /a-file/ },
  { name: 'backup dir under a regular file', args: ['create', '--backup-dir', 'a-file/backups'], mentions: /a-file/ },
  { name: 'a backup id that does not exist', args: ['verify', '20000101_000000'], mentions: /20000101_000000/ },
  { name: 'restore of an id that does not exist', args: ['restore', '20000101_000000', '--yes'], mentions: /20000101_000000/ },
  { name: 'unknown config key', args: ['list', '--config', 'cfg-typo.json'], mentions: /maxBackup/ },
];

describe('bad configuration and input', () => {
  it.each(bad)('$name: exit 2, one error line naming it, no stack, nothing written', async (c) => {
    fs.writeFileSync(path.join(cwd, 'cfg-typo.json'), JSON.stringify({ maxBackup: 3 }));
    const bdir = path.join(cwd, `b-${bad.indexOf(c)}`);
    // later flags win in commander: the case's own flags go last; DATABASE_URL only counts without --db-path
    const common = c.env?.DATABASE_URL ? ['--storage-path', path.join(cwd, 'storage')] : base;
    const r = await cli([...common, '--backup-dir', bdir, ...c.args.filter((a, i, all) => !(a === '--db-path' && all[i + 1] === '') && a !== '')], { cwd, env: c.env });
    expect(r.code, show(r)).toBe(2);
    const errs = r.stderr.split('\n').filter((l) => /^error/.test(l));
    expect(errs.length, show(r)).toBe(1);
    expect(errs[0], show(r)).toMatch(c.mentions);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr + r.stdout).not.toContain('pgpassw0rd');
    const written = fs.existsSync(bdir) ? fs.readdirSync(bdir).filter((n) => n !== 'backup.log') : [];
    expect(written.filter((n) => !['database', 'storage', 'full'].includes(n)), show(r)).toEqual([]);
  });

  it('a backup directory on a read-only mount: exit 2 naming it', async () => {
    const ro = path.join(cwd, 'ro');
    fs.mkdirSync(ro);
    const { spawnSync } = await import('node:child_process');
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]).status !== 0) return;
    try {
      const r = await cli(['create', ...base, '--backup-dir', path.join(ro, 'b')], { cwd });
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr).toContain(ro);
      expect(r.stderr).not.toMatch(STACK);
    } finally {
      spawnSync('umount', [ro]);
    }
  });
});

describe('secrets never leave', () => {
  it('every command, success and failure, --verbose and --json: the token is in no output and no file', async () => {
    const bdir = path.join(cwd, 'sb');
    const cfg = path.join(cwd, 'secret.json');
    fs.writeFileSync(cfg, JSON.stringify({ telegramBotToken: TOKEN, telegramChatId: '-100123' }), { mode: 0o600 });
    fs.chmodSync(cfg, 0o600);
    const env = { TELEGRAM_BOT_TOKEN: TOKEN, AWS_SECRET_ACCESS_KEY: AWS, TELEGRAM_CHAT_ID: '-100123' };
    const runs: string[][] = [
      ['create'], ['create', '--type', 'database', '--json'], ['list'], ['list', '--json'], ['stats'], ['verify', '--all'], ['verify', '--all', '--json'],
      ['rotate', '--max-backups', '5'], ['restore', 'latest', '--yes', '--target', path.join(cwd, 'restored')],
      ['create', '--db-path', `missing-${TOKEN}.db`], ['verify', `no-such-${TOKEN}`], ['create', '--compression', TOKEN], ['restore', 'nope', '--yes'],
    ];
    for (const a of runs) {
      for (const extra of [[], ['--verbose'], ['--config', cfg]]) {
        const r = await cli([...base, '--backup-dir', bdir, ...a, ...extra], { cwd, env });
        const ctx = `${a.join(' ')} ${extra.join(' ')}\n${show(r)}`;
        expect(r.stdout + r.stderr, ctx).not.toContain(TOKEN);
        expect(r.stdout + r.stderr, ctx).not.toContain(AWS);
      }
    }
    const files: string[] = [];
    const walk = (d: string) => {
      for (const n of fs.readdirSync(d)) {
        const p = path.join(d, n);
        if (fs.lstatSync(p).isDirectory()) walk(p);
        else if (fs.statSync(p).size < 1 << 20) files.push(p);
      }
    };
    walk(bdir);
    for (const f of files) {
      const text = fs.readFileSync(f, 'latin1');
      expect(text, f).not.toContain(TOKEN);
      expect(text, f).not.toContain(AWS);
    }
  });

  it('a config file with a secret readable by group or others is refused, saying chmod 600', async () => {
    const cfg = path.join(cwd, 'open.json');
    fs.writeFileSync(cfg, JSON.stringify({ telegramBotToken: TOKEN }));
    for (const mode of [0o644, 0o640, 0o604]) {
      fs.chmodSync(cfg, mode);
      const r = await cli(['list', '--config', cfg, ...base, '--backup-dir', path.join(cwd, 'cb')], { cwd });
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr).toMatch(/chmod 600/);
      expect(r.stderr + r.stdout).not.toContain(TOKEN);
    }
  });
});
