/**
 * Issue 2, item 6 (promise: bad input gets a clear one-line error): exit 2, one `error:` line (and at
 * most one `hint:` line) naming the input, no stack trace without --verbose, and nothing written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, stderrLines } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

let app: AppFixture;
let existingId: string;
let existingDir: string;

beforeAll(async () => {
  app = makeApp({ minimalStorage: true, events: 50 });
  fs.writeFileSync(path.join(app.cwd, 'not-a-db.db'), 'this is a text file, not SQLite\n'.repeat(10));
  fs.writeFileSync(path.join(app.cwd, 'a-file'), 'just a file\n');
  fs.writeFileSync(path.join(app.cwd, 'bad.json'), '{ "backupDir": "x", ');
  fs.writeFileSync(path.join(app.cwd, 'unknown-key.json'), JSON.stringify({ backupDir: './b', retentionDayz: 3 }));
  existingDir = path.join(app.cwd, 'existing-backups');
  const r = await run(['create', '--type', 'database', '--json', '--db-path', app.dbPath, '--backup-dir', existingDir], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  existingId = parseJsonStdout<{ id: string }>(r).id;
});
afterAll(() => rmrf(app?.cwd));

interface Case {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** what the error line must name */
  names: (string | RegExp)[];
  /** not to appear anywhere in the output */
  never?: string[];
}

const NEW_DIR = 'new-backups';
// resolved when the test runs (the fixture does not exist while tests are collected)
const src = () => ['--db-path', '@DB', '--storage-path', '@STORAGE'];
const resolveArg = (a: string) => (a === '@DB' ? app.dbPath : a === '@STORAGE' ? app.storagePath : a);

const cases = (): Case[] => [
  { name: 'unknown --type', args: ['create', '--type', 'everything', ...src()], names: ['--type', 'everything'] },
  { name: '--compression bogus', args: ['create', '--compression', 'bogus', ...src()], names: ['bogus', /compression/i] },
  { name: 'BACKUP_COMPRESSION=bogus', args: ['create', ...src()], env: { BACKUP_COMPRESSION: 'bogus' }, names: ['BACKUP_COMPRESSION', 'bogus'] },
  { name: 'MAX_BACKUPS=abc', args: ['create', '--rotate', ...src()], env: { MAX_BACKUPS: 'abc' }, names: ['MAX_BACKUPS', 'abc'] },
  { name: 'BACKUP_SPLIT_SIZE_MB=-1', args: ['create', ...src()], env: { BACKUP_SPLIT_SIZE_MB: '-1' }, names: ['BACKUP_SPLIT_SIZE_MB', '-1'] },
  {
    name: 'a missing database file',
    args: ['create', '--db-path', 'app_data/missing.db', '--storage-path', '@STORAGE'],
    names: ['missing.db'],
  },
  { name: 'a database path that is not SQLite', args: ['create', '--type', 'database', '--db-path', 'not-a-db.db'], names: ['not-a-db.db', /SQLite/i] },
  { name: 'a storage path that is a file', args: ['create', '--type', 'storage', '--storage-path', 'a-file'], names: ['a-file', /director/i] },
  {
    name: 'DATABASE_URL=mysql://u:p@h/db',
    args: ['create', '--type', 'database'],
    env: { DATABASE_URL: 'mysql://u:p@h/db' },
    names: ['DATABASE_URL', /mysql/],
    never: ['u:p@'],
  },
  { name: 'a config file that is not JSON', args: ['create', '--config', 'bad.json', ...src()], names: ['bad.json', /JSON/] },
  { name: 'an unknown config key', args: ['create', '--config', 'unknown-key.json', ...src()], names: ['unknown-key.json', 'retentionDayz'] },
  // with no backup directory at all, that is what the error names (a mistyped --backup-dir)
  { name: 'verify with an unknown backup id (no backup directory)', args: ['verify', '20000101_000000'], names: [/backup directory not found/] },
];

describe('bad input: exit 2, one clear error line, nothing written', () => {
  it.each(cases().map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const caseDir = fs.mkdtempSync(path.join(app.cwd, 'case-'));
    // relative names in the case are relative to the app directory: copy them in
    for (const f of ['not-a-db.db', 'a-file', 'bad.json', 'unknown-key.json']) fs.copyFileSync(path.join(app.cwd, f), path.join(caseDir, f));
    fs.mkdirSync(path.join(caseDir, 'app_data'));
    const before = fs.readdirSync(caseDir).sort();
    const r = await run([...c.args.map(resolveArg), '--backup-dir', NEW_DIR], { cwd: caseDir, env: c.env });
    expect(r.code, describeRun(r)).toBe(2);
    const lines = stderrLines(r);
    expect(lines.length, describeRun(r)).toBeGreaterThanOrEqual(1);
    expect(lines[0], describeRun(r)).toMatch(/^error: /);
    expect(lines.length, `one error line and at most one hint line:\n${r.stderr}`).toBeLessThanOrEqual(2);
    if (lines.length === 2) expect(lines[1]).toMatch(/^hint: /);
    for (const n of c.names) {
      if (typeof n === 'string') expect(lines[0], `the error names '${n}'`).toContain(n);
      else expect(lines[0]).toMatch(n);
    }
    for (const s of c.never ?? []) expect(r.stdout + r.stderr).not.toContain(s);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stdout).toBe('');
    // nothing written: no backup directory, no new file at all
    expect(fs.existsSync(path.join(caseDir, NEW_DIR)), `${NEW_DIR} was created`).toBe(false);
    expect(fs.readdirSync(caseDir).sort()).toEqual(before);
  });

  it('verify with an unknown backup id in an existing backup directory: exit 2, nothing written', async () => {
    const before = fs.readdirSync(existingDir).sort();
    const log = fs.readFileSync(path.join(existingDir, 'backup.log'), 'utf8');
    const r = await run(['verify', '20000101_000000', '--backup-dir', existingDir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    const lines = stderrLines(r);
    expect(lines[0]).toMatch(/^error: .*20000101_000000/);
    expect(lines.length).toBeLessThanOrEqual(2);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(fs.readdirSync(existingDir).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(existingDir, 'backup.log'), 'utf8')).toBe(log);
    // the real id still verifies: the error was about the input only
    const ok = await run(['verify', existingId, '--backup-dir', existingDir], { cwd: app.cwd });
    expect(ok.code, describeRun(ok)).toBe(0);
  });

  it('--verbose adds the stack trace (to stderr), the exit code stays 2', async () => {
    const r = await run(['create', '--verbose', '--db-path', 'missing.db', '--backup-dir', 'verbose-backups'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/^error: .*missing\.db/m);
    expect(r.stderr).toMatch(/^\s+at /m);
  });

  it('--json: a usage error is one JSON document on stdout with exit_code 2', async () => {
    const r = await run(['create', '--json', '--compression', 'bogus', '--backup-dir', 'json-backups'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    const doc = parseJsonStdout<{ ok: boolean; error: { exit_code: number; message: string } }>(r);
    expect(doc.ok).toBe(false);
    expect(doc.error.exit_code).toBe(2);
    expect(doc.error.message).toContain('bogus');
    expect(fs.existsSync(path.join(app.cwd, 'json-backups'))).toBe(false);
  });
});
