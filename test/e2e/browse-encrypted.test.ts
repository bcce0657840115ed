/**
 * ls, diff and dump on encrypted backups, through the built binary: a level 0 and a level 1 made with
 * --encrypt, browsed with the identity (--identity or AGE_IDENTITY_FILE), without it (exit 2, nothing on
 * stdout) and with a wrong key (exit 3); then a copy of an encrypting remote used as the backup
 * directory, whose manifests are encrypted too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, tempDir } from '../helpers/fixtures.js';

interface Created {
  id: string;
}

const OLD_FILE = 'notes/unchanged.txt';
const OLD_TEXT = 'written before the level 0 — kept in its archive\n';
const NEW_FILE = 'notes/added.txt';
const NEW_TEXT = 'added for the level 1 ✓\n';

let keyFile: string;
let otherKey: string;
let recipient: string;
const dirs: string[] = [];

async function keygen(cwd: string, file: string): Promise<string> {
  const r = await run(['keygen', '-o', file, '--json'], { cwd });
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<{ recipient: string }>(r).recipient;
}

/** A level 0 and a level 1 of the app's storage; the level 1 adds NEW_FILE. */
async function twoLevels(app: AppFixture, extra: string[]): Promise<[string, string]> {
  fs.mkdirSync(path.join(app.storagePath, 'notes'), { recursive: true });
  fs.writeFileSync(path.join(app.storagePath, OLD_FILE), OLD_TEXT);
  const a = await run(['create', '--type', 'storage', '--json', ...extra, ...app.flags], { cwd: app.cwd });
  expect(a.code, describeRun(a)).toBe(0);
  fs.writeFileSync(path.join(app.storagePath, NEW_FILE), NEW_TEXT);
  const b = await run(['create', '--type', 'storage', '--json', ...extra, ...app.flags], { cwd: app.cwd });
  expect(b.code, describeRun(b)).toBe(0);
  return [parseJsonStdout<Created>(a).id, parseJsonStdout<Created>(b).id];
}

beforeAll(async () => {
  const keys = tempDir('vb-browse-keys-');
  dirs.push(keys);
  keyFile = path.join(keys, 'key.txt');
  otherKey = path.join(keys, 'other.txt');
  recipient = await keygen(keys, keyFile);
  await keygen(keys, otherKey);
});

afterAll(() => {
  for (const d of dirs) rmrf(d);
});

describe('local backups made with --encrypt (level 0 and level 1)', () => {
  let app: AppFixture;
  let l0: string;
  let l1: string;
  const vb = (args: string[], env: Record<string, string> = {}) => run([...args, '--backup-dir', app.backupDir], { cwd: app.cwd, env });

  beforeAll(async () => {
    app = makeApp();
    dirs.push(app.cwd);
    [l0, l1] = await twoLevels(app, ['--encrypt', '--recipient', recipient]);
    const sc = JSON.parse(fs.readFileSync(path.join(app.backupDir, 'storage', `storage_backup_${l1}.json`), 'utf8'));
    expect(sc.level).toBe(1);
    expect(sc.encryption?.recipients).toEqual([recipient]);
  });

  it('ls and diff read the encrypted manifest with the key (issue 21 item 6: the file list is encrypted too); without one: exit 2', async () => {
    const none = await vb(['ls', 'latest', 'notes', '--json']);
    expect(none.code, describeRun(none)).toBe(2);
    const ls = await vb(['ls', 'latest', 'notes', '--json', '--identity', keyFile]);
    expect(ls.code, describeRun(ls)).toBe(0);
    expect(parseJsonStdout<{ entries: { path: string }[] }>(ls).entries.map((e) => e.path)).toEqual(['notes', NEW_FILE, OLD_FILE]);
    const diff = await vb(['diff', l0, l1, '--json'], { AGE_IDENTITY_FILE: keyFile });
    expect(diff.code, describeRun(diff)).toBe(0);
    expect(parseJsonStdout<{ added: string[] }>(diff).added).toEqual([NEW_FILE]);
  });

  it('dump decrypts the archive that holds the file, with --identity or AGE_IDENTITY_FILE', async () => {
    const fromL1 = await vb(['dump', 'latest', NEW_FILE, '--identity', keyFile]);
    expect(fromL1.code, describeRun(fromL1)).toBe(0);
    expect(fromL1.stdout).toBe(NEW_TEXT);
    // unchanged since the level 0: read from the level 0's archive
    const fromL0 = await vb(['dump', 'latest', OLD_FILE], { AGE_IDENTITY_FILE: keyFile });
    expect(fromL0.code, describeRun(fromL0)).toBe(0);
    expect(fromL0.stdout).toBe(OLD_TEXT);
    expect((await vb(['ls', l1, '-i', keyFile])).code).toBe(0);
  });

  it('dump without a key: exit 2, one clear line naming the recipient and what to pass, nothing on stdout', async () => {
    const r = await vb(['dump', 'latest', NEW_FILE]);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`is encrypted (to ${recipient}) and cannot be read without a key`);
    expect(r.stderr).toMatch(/--identity FILE/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('dump with a wrong key: exit 3 (as restore), naming the recipient and the key tried, nothing on stdout', async () => {
    const r = await vb(['dump', 'latest', NEW_FILE, '--identity', otherKey]);
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(recipient);
    expect(r.stderr).toContain(otherKey);
  });
});

describe('a copy of an encrypting remote as the backup directory (its manifests are encrypted too)', () => {
  let app: AppFixture;
  let nas: string;
  let l0: string;
  let l1: string;
  let tmp: string;
  const vb = (args: string[], env: Record<string, string> = {}) => run([...args, '--backup-dir', nas], { cwd: app.cwd, env: { TMPDIR: tmp, ...env } });

  beforeAll(async () => {
    app = makeApp();
    dirs.push(app.cwd);
    nas = tempDir('vb-browse-nas-');
    tmp = tempDir('vb-browse-tmp-');
    dirs.push(nas, tmp);
    [l0, l1] = await twoLevels(app, []);
    const remotes = path.join(app.cwd, 'remotes.json');
    fs.writeFileSync(remotes, JSON.stringify({ remotes: { nas: { url: pathToFileURL(nas).href, encrypt: { recipients: [recipient] } } } }), { mode: 0o600 });
    const s = await run(['sync', '--remote', 'nas', ...app.flags, '--remotes-config', remotes], { cwd: app.cwd });
    expect(s.code, describeRun(s)).toBe(0);
    expect(fs.readdirSync(path.join(nas, 'storage')).filter((n) => n.endsWith('.manifest.gz.age'))).toHaveLength(2);
  });

  it('ls, diff and dump with the key', async () => {
    const ls = await vb(['ls', l1, 'notes', '--json', '--identity', keyFile]);
    expect(ls.code, describeRun(ls)).toBe(0);
    expect(parseJsonStdout<{ entries: { path: string }[] }>(ls).entries.map((e) => e.path)).toEqual(['notes', NEW_FILE, OLD_FILE]);
    const diff = await vb(['diff', l0, l1, '--json'], { AGE_IDENTITY_FILE: keyFile });
    expect(diff.code, describeRun(diff)).toBe(0);
    expect(parseJsonStdout<{ added: string[] }>(diff).added).toEqual([NEW_FILE]);
    const dump = await vb(['dump', l1, OLD_FILE, '--identity', keyFile]);
    expect(dump.code, describeRun(dump)).toBe(0);
    expect(dump.stdout).toBe(OLD_TEXT);
    // the decrypted manifests lived in a temporary directory, gone once read
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it('without a key: exit 2 for each; a wrong key: exit 3', async () => {
    for (const args of [['ls', l1], ['diff', l0, l1], ['dump', l1, OLD_FILE]]) {
      const none = await vb(args);
      expect(none.code, describeRun(none)).toBe(2);
      expect(none.stdout).toBe('');
      expect(none.stderr).toContain(`the manifest of storage backup ${l0} is encrypted (to ${recipient})`);
      const wrong = await vb([...args, '--identity', otherKey]);
      expect(wrong.code, describeRun(wrong)).toBe(3);
      expect(wrong.stdout).toBe('');
      expect(wrong.stderr).toContain(recipient);
    }
  });
});
