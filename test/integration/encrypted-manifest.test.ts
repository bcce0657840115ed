/**
 * Issue 21, item 6 (second half): a `create --encrypt` backup's file manifest is encrypted too
 * (`….manifest.gz.age`), in the backup directory and on every remote; ls, diff, dump, restore, verify and
 * drill read it with the identity; verify without one checks the ciphertext and says so. The next
 * incremental backup still compares with the previous tree, with only the public key at hand.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, snapshot, tempDir } from '../helpers/fixtures.js';

let app: AppFixture;
let key: string;
let pub: string;
let nas: string;
let remotesFile: string;
const scratch: string[] = [];
/** a name only the file lists hold: the sidecars of a tree without warnings name no file */
const SECRET = 'patient-jane-doe';

beforeAll(async () => {
  app = makeApp({ randomBytes: 200 * 1024 });
  fs.mkdirSync(path.join(app.storagePath, 'docs'));
  fs.writeFileSync(path.join(app.storagePath, 'docs', `${SECRET}-record.pdf`), 'a record\n');
  key = path.join(app.cwd, 'key.txt');
  expect((await run(['keygen', '-o', key], { cwd: app.cwd })).code).toBe(0);
  pub = /# public key: (age1\w+)/.exec(fs.readFileSync(key, 'utf8'))![1];
  nas = tempDir('vb-encmanifest-nas-');
  scratch.push(nas);
  remotesFile = path.join(app.cwd, 'remotes.json');
  fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { nas: { url: `file://${nas}` } } }), { mode: 0o600 });
});

afterAll(() => {
  rmrf(app?.cwd);
  for (const d of scratch) rmrf(d);
});

const vb = (args: string[], env: Record<string, string | undefined> = {}) =>
  run([...args, ...app.flags, '--remotes-config', remotesFile], { cwd: app.cwd, env, timeoutMs: 120_000 });

function filesUnder(root: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(root, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out;
}
const holding = (root: string, needle: string) => filesUnder(root).filter((f) => fs.readFileSync(f).includes(needle) || f.includes(needle));

async function create(env: Record<string, string | undefined> = { BACKUP_RECIPIENTS: pub }) {
  const r = await vb(['create', '--type', 'storage', '--json'], env);
  expect(r.code, describeRun(r)).toBe(0);
  const doc = parseJsonStdout<{ id: string; backups: { sidecar_path: string }[] }>(r);
  return { id: doc.id, sidecar: readJson<Record<string, any>>(doc.backups[0].sidecar_path), stderr: r.stderr };
}

describe('create --encrypt: the file manifest is encrypted too', () => {
  let l0: Awaited<ReturnType<typeof create>>;
  let l1: Awaited<ReturnType<typeof create>>;

  beforeAll(async () => {
    l0 = await create();
    fs.writeFileSync(path.join(app.storagePath, 'docs', `${SECRET}-followup.txt`), 'a later visit\n');
    l1 = await create();
  });

  it('writes ….manifest.gz.age, no plaintext file list anywhere in the backup directory, and still chains (level 1)', () => {
    expect(l0.sidecar.manifest).toMatchObject({ file: `storage_backup_${l0.id}.manifest.gz.age`, encryption: { format: 'age', recipients: [pub] } });
    expect(l1.sidecar.level).toBe(1);
    expect(l1.sidecar.manifest.file).toBe(`storage_backup_${l1.id}.manifest.gz.age`);
    expect(fs.readdirSync(path.join(app.backupDir, 'storage')).filter((n) => n.endsWith('.manifest.gz'))).toEqual([]);
    expect(holding(app.backupDir, SECRET)).toEqual([]);
  });

  it('ls, diff and dump read it with --identity; without a key: exit 2, one line naming --identity', async () => {
    const none = await vb(['ls', 'latest']);
    expect(none.code, describeRun(none)).toBe(2);
    expect(none.stderr).toMatch(/encrypted.*--identity/s);
    const ls = await vb(['ls', 'latest', 'docs', '--identity', key, '--json']);
    expect(ls.code, describeRun(ls)).toBe(0);
    expect(parseJsonStdout<{ entries: { path: string }[] }>(ls).entries.map((e) => e.path)).toEqual(
      expect.arrayContaining([`docs/${SECRET}-record.pdf`, `docs/${SECRET}-followup.txt`]),
    );
    const diff = await vb(['diff', l0.id, l1.id, '--identity', key, '--json']);
    expect(diff.code, describeRun(diff)).toBe(0);
    expect(JSON.stringify(parseJsonStdout(diff))).toContain(`${SECRET}-followup.txt`);
    const dump = await vb(['dump', 'latest', `docs/${SECRET}-record.pdf`, '--identity', key]);
    expect(dump.code, describeRun(dump)).toBe(0);
    expect(dump.stdout).toBe('a record\n');
  });

  it('verify without a key checks the ciphertext and says so; with the key it reads the file list too', async () => {
    const keyless = await vb(['verify', l1.id, '--json']);
    expect(keyless.code, describeRun(keyless)).toBe(0);
    expect(parseJsonStdout<{ results: { encryption?: string }[] }>(keyless).results[0].encryption).toBe('ciphertext');
    const deep = await vb(['verify', l1.id, '--json', '--identity', key]);
    expect(deep.code, describeRun(deep)).toBe(0);
    expect(parseJsonStdout<{ results: { encryption?: string }[] }>(deep).results[0].encryption).toBe('decrypted');
  });

  it('restore and drill with the identity bring the tree back', async () => {
    const target = tempDir('vb-encmanifest-restore-');
    scratch.push(target);
    const r = await vb(['restore', 'latest', '--identity', key, '--target', target, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
    const drill = await vb(['drill', '--type', 'storage', '--identity', key, '--json']);
    expect(drill.code, describeRun(drill)).toBe(0);
    const sampled = await vb(['drill', '--type', 'storage', '--sample', '50', '--identity', key, '--json']);
    expect(sampled.code, describeRun(sampled)).toBe(0);
  });

  it('a remote gets the encrypted manifest as it is, and restore --from reads it with the identity', async () => {
    const s = await vb(['sync', '--remote', 'nas']);
    expect(s.code, describeRun(s)).toBe(0);
    expect(fs.readdirSync(path.join(nas, 'storage')).filter((n) => n.includes('.manifest'))).toEqual(
      [l0.id, l1.id].map((id) => `storage_backup_${id}.manifest.gz.age`).sort(),
    );
    expect(holding(nas, SECRET)).toEqual([]);
    const target = tempDir('vb-encmanifest-from-');
    scratch.push(target);
    const r = await vb(['restore', l1.id, '--from', 'nas', '--identity', key, '--target', target, '--yes']);
    expect(r.code, describeRun(r)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
  });

  it('without the plaintext copy kept outside the backup directory: the identity lets the chain go on; with neither, a new level 0 says why', async () => {
    const state = path.join(app.cwd, 'state');
    const withKey = await create({ BACKUP_RECIPIENTS: pub, VERTEX_BACKUP_STATE_DIR: state, AGE_IDENTITY_FILE: key });
    expect(withKey.sidecar.level).toBe(2);
    rmrf(state);
    const without = await create({ BACKUP_RECIPIENTS: pub, VERTEX_BACKUP_STATE_DIR: state, AGE_IDENTITY_FILE: undefined });
    expect(without.sidecar.level).toBe(0);
    expect(without.sidecar.warnings.join('\n')).toMatch(/encrypted.*starting a new chain/);
    // under the shipped systemd units (ProtectHome=yes) the copy goes to StateDirectory=, and the chain goes on from it
    const systemdState = path.join(app.cwd, 'var-lib');
    const env = { BACKUP_RECIPIENTS: pub, STATE_DIRECTORY: systemdState };
    const first = await create(env);
    const kept = fs.readdirSync(systemdState, { recursive: true, encoding: 'utf8' });
    expect(kept.filter((n) => n.endsWith('.manifest.gz')).map((n) => path.basename(n))).toEqual([`storage_backup_${first.id}.manifest.gz`]);
    const next = await create(env);
    expect(next.sidecar.level).toBe(first.sidecar.level + 1);
  });
});
