/**
 * Encrypted local backups, run through the built binary: keygen, create with only a public key,
 * verify with and without the identity, restore, the manual restore of docs/restore-by-hand.md with the age CLI, and
 * the safe failures (wrong key, altered or truncated file: exit 3, nothing restored).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run, sh } from '../helpers/cli.js';
import { startRecorder, type Recorder } from '../helpers/http-recorder.js';
import { type AppFixture, flipByte, makeApp, rmrf, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';
import { ciMode, needs } from '../helpers/optional.js';

/** Local skip rule (see age-interop.test.ts): skipped only when `age` is missing and CI is unset. */
const needsAge = needs('age', 'age');
/** parts of a test that read our files with the age CLI: skipped only where needs() would skip (CI unset) */
const skipWithoutAge = !needsAge.available && !ciMode();

let app: AppFixture;
let keyFile: string;
let recipient: string;
let otherKey: string;
const scratch: string[] = [];
const scratchDir = () => {
  const d = tempDir('vb-age-x-');
  scratch.push(d);
  return d;
};

interface Created {
  id: string;
  backups: { type: string; files: string[]; sidecar_path: string }[];
}

beforeAll(async () => {
  app = makeApp({ randomBytes: 300 * 1024 });
  keyFile = path.join(app.cwd, 'keys', 'key.txt');
  fs.mkdirSync(path.dirname(keyFile), { mode: 0o700 });
  const r = await run(['keygen', '-o', keyFile, '--json'], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  recipient = parseJsonStdout<{ recipient: string }>(r).recipient;
  otherKey = path.join(app.cwd, 'keys', 'other.txt');
  expect((await run(['keygen', '-o', otherKey], { cwd: app.cwd })).code).toBe(0);
});

afterAll(() => {
  rmrf(app?.cwd);
  for (const d of scratch) rmrf(d);
});

describe('keygen', () => {
  it('writes a 0600 identity file in age-keygen format and prints only the recipient', async () => {
    const file = path.join(app.cwd, 'keys', 'k2.txt');
    const r = await run(['keygen', '-o', file], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(file, 'utf8');
    const secret = /^AGE-SECRET-KEY-1\w+$/m.exec(text)![0];
    const pub = /# public key: (age1\w+)/.exec(text)![1];
    expect(r.stdout).toContain(`Public key: ${pub}`);
    expect(r.stdout + r.stderr).not.toContain(secret);
    if (!skipWithoutAge) expect(sh('age-keygen', ['-y', file]).stdout.trim()).toBe(pub);
  });

  it('refuses to overwrite an existing file (exit 2) and leaves it as it was', async () => {
    const before = fs.readFileSync(keyFile, 'utf8');
    const r = await run(['keygen', '-o', keyFile], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/refusing to overwrite/);
    expect(fs.readFileSync(keyFile, 'utf8')).toBe(before);
  });
});

describe('encrypted create / verify / restore', () => {
  let created: Created;
  const storageSidecar = () => readJson<Record<string, any>>(created.backups.find((b) => b.type === 'storage')!.sidecar_path);
  const storageFile = () => created.backups.find((b) => b.type === 'storage')!.files[0];
  const dbFile = () => created.backups.find((b) => b.type === 'database')!.files[0];

  beforeAll(async () => {
    // the nightly run: a public key in the environment, no private key anywhere near it
    const r = await run(['create', '--json', ...app.flags], { cwd: app.cwd, env: { BACKUP_RECIPIENTS: recipient } });
    expect(r.code, describeRun(r)).toBe(0);
    created = parseJsonStdout<Created>(r);
  });

  it('writes ….tar.gz.age and ….db.age with ciphertext and plaintext checksums in the sidecar, no plaintext left', () => {
    expect(path.basename(storageFile())).toBe(`storage_backup_${created.id}.tar.gz.age`);
    expect(path.basename(dbFile())).toBe(`db_backup_${created.id}.db.age`);
    const s = storageSidecar();
    expect(s.backup_path).toBe(`storage_backup_${created.id}.tar.gz.age`);
    expect(s.file_size).toBe(fs.statSync(storageFile()).size);
    expect(s.encryption).toMatchObject({ format: 'age', recipients: [recipient] });
    expect(s.encryption.plaintext_size).toBeGreaterThan(0);
    expect(s.encryption.plaintext_checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.readFileSync(storageFile()).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    expect(fs.readdirSync(path.join(app.backupDir, 'database'))).toEqual([`db_backup_${created.id}.db.age`, `db_backup_${created.id}.json`]);
    expect(fs.statSync(dbFile()).mode & 0o777).toBe(0o600);
  });

  needsAge.it("docs/restore-by-hand.md's manual restore works: age -d -i key.txt storage_backup_ID.tar.gz.age | tar -xz", () => {
    const out = scratchDir();
    fs.copyFileSync(keyFile, path.join(out, 'key.txt'));
    fs.copyFileSync(storageFile(), path.join(out, path.basename(storageFile())));
    const r = spawnSync('sh', ['-c', `age -d -i key.txt storage_backup_${created.id}.tar.gz.age | tar -xz`], { cwd: out });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(snapshot(path.join(out, 'storage'))).toEqual(snapshot(app.storagePath));
    sh('sh', ['-c', `age -d -i key.txt -o app.db ${dbFile()}`], { cwd: out });
    expect(sqlite(path.join(out, 'app.db'), 'PRAGMA integrity_check')).toBe('ok');
    expect(Number(sqlite(path.join(out, 'app.db'), 'SELECT count(*) FROM clients'))).toBe(app.rows.clients);
  });

  it('verify without a key checks the ciphertext and says so; with the key it decrypts and checks the contents', async () => {
    const keyless = await run(['verify', created.id, '--json', ...app.flags], { cwd: app.cwd });
    expect(keyless.code, describeRun(keyless)).toBe(0);
    const kj = parseJsonStdout<{ results: { type: string; encryption?: string }[] }>(keyless);
    expect(kj.results.map((x) => x.encryption)).toEqual([undefined]); // the full backup entry
    const deep = await run(['verify', '--all', '--json', '--identity', keyFile, ...app.flags], { cwd: app.cwd });
    expect(deep.code, describeRun(deep)).toBe(0);
    const dj = parseJsonStdout<{ results: { type: string; encryption?: string }[] }>(deep);
    expect(dj.results.filter((x) => x.type !== 'full').map((x) => x.encryption)).toEqual(['decrypted', 'decrypted']);
    const human = await run(['verify', '--all', ...app.flags], { cwd: app.cwd });
    expect(human.stdout).toMatch(/encrypted: bytes only, no key given/);
  });

  it('restore with the identity (AGE_IDENTITY_FILE) brings back database and storage exactly', async () => {
    const target = scratchDir();
    const r = await run(['restore', created.id, '--yes', '--target', target, ...app.flags], { cwd: app.cwd, env: { AGE_IDENTITY_FILE: keyFile } });
    expect(r.code, describeRun(r)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
    expect(Number(sqlite(path.join(target, 'app_data.db'), 'SELECT count(*) FROM scan_events'))).toBe(app.rows.scan_events);
    expect(fs.readdirSync(target).sort()).toEqual(['app_data.db', 'storage']);
  });

  it('restore without a key or with the wrong key: exit 3 naming the recipient and the key tried, nothing restored', async () => {
    const target = scratchDir();
    const none = await run(['restore', created.id, '--yes', '--target', target, ...app.flags], { cwd: app.cwd });
    expect(none.code, describeRun(none)).toBe(3);
    expect(none.stderr).toContain(recipient);
    const otherPub = /# public key: (age1\w+)/.exec(fs.readFileSync(otherKey, 'utf8'))![1];
    const wrong = await run(['restore', created.id, '--yes', '--target', target, '--identity', otherKey, ...app.flags], { cwd: app.cwd });
    expect(wrong.code, describeRun(wrong)).toBe(3);
    expect(wrong.stderr).toContain(`encrypted to ${recipient}`);
    expect(wrong.stderr).toContain(otherPub);
    const secret = /^AGE-SECRET-KEY-1\w+$/m.exec(fs.readFileSync(otherKey, 'utf8'))![0];
    expect(wrong.stderr + wrong.stdout).not.toContain(secret);
    expect(fs.readdirSync(target)).toEqual([]);
  });

  for (const compression of ['gzip', 'none']) it(`an altered or truncated .age file (${compression}): verify exits 3 with and without key; restore --no-verify restores nothing`, async () => {
    // a level 0 (--full): its archive holds every file, so the restore must read (and authenticate) it; a
    // level N of this unchanged tree would hold nothing its manifest references, and is not read at all
    const r = await run(['create', '--type', 'storage', '--full', '--json', '--compression', compression, '--recipient', recipient, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const c = parseJsonStdout<Created>(r);
    const file = c.backups[0].files[0];
    const original = fs.readFileSync(file);
    // flip a byte the keyless verify would miss only if it did not hash: it catches it; the key catches it too
    flipByte(file, original.length - 100);
    for (const extra of [[], ['--identity', keyFile]]) {
      const v = await run(['verify', c.id, '--type', 'storage', ...extra, ...app.flags], { cwd: app.cwd });
      expect(v.code, describeRun(v)).toBe(3);
    }
    // the sidecar updated to match the altered bytes: only authentication can find it now
    const sc = c.backups[0].sidecar_path;
    const meta = readJson<Record<string, any>>(sc);
    const live = fs.readdirSync(app.storagePath).sort();
    for (const [name, bytes] of [['flipped', fs.readFileSync(file)], ['truncated', original.subarray(0, original.length - 30)]] as [string, Buffer][]) {
      fs.writeFileSync(file, bytes);
      const sum = sh('sha256sum', [file]).stdout.split(' ')[0];
      fs.writeFileSync(sc, JSON.stringify({ ...meta, file_size: bytes.length, checksum: sum }));
      const target = scratchDir();
      const res = await run(['restore', sc, '--yes', '--no-verify', '--identity', keyFile, ...app.flags], { cwd: app.cwd });
      expect(res.code, `${name}: ${describeRun(res)}`).toBe(3);
      expect(res.stderr).toMatch(/authentication failed|truncated/);
      const deep = await run(['verify', sc, '--identity', keyFile, ...app.flags], { cwd: app.cwd });
      expect(deep.code, `${name}: ${describeRun(deep)}`).toBe(3);
      expect(fs.readdirSync(target)).toEqual([]);
      // the live storage is untouched and no staging directory is left behind
      expect(fs.readdirSync(app.storagePath).sort()).toEqual(live);
      expect(fs.readdirSync(app.cwd).filter((n) => n.includes('restore'))).toEqual([]);
    }
  });

  it('create --encrypt without any recipient is a usage error (exit 2) that writes nothing', async () => {
    const before = fs.readdirSync(path.join(app.backupDir, 'storage')).length;
    const r = await run(['create', '--encrypt', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/no recipients/);
    const bad = await run(['create', ...app.flags], { cwd: app.cwd, env: { BACKUP_RECIPIENTS: 'age1nope' } });
    expect(bad.code, describeRun(bad)).toBe(2);
    expect(bad.stderr).toMatch(/BACKUP_RECIPIENTS: not an age recipient/);
    expect(fs.readdirSync(path.join(app.backupDir, 'storage')).length).toBe(before);
  });
});

describe('secrets: keys and passphrases never leave', () => {
  const PASS = 'Tr0ub4dor-and-a-long-PASSPHRASE-value';
  let srv: Recorder;
  beforeAll(async () => {
    srv = await startRecorder();
  });
  afterAll(() => srv?.close());

  it('identities and passphrases appear in no output, log line, sidecar or notification, on success and failure', async () => {
    const secrets = [PASS, /^AGE-SECRET-KEY-1\w+$/m.exec(fs.readFileSync(keyFile, 'utf8'))![0], /^AGE-SECRET-KEY-1\w+$/m.exec(fs.readFileSync(otherKey, 'utf8'))![0]];
    const passFile = path.join(app.cwd, 'keys', 'pass.txt');
    fs.writeFileSync(passFile, `${PASS}\n`, { mode: 0o600 });
    const wrongPass = path.join(app.cwd, 'keys', 'wrong.txt');
    fs.writeFileSync(wrongPass, 'not-the-passphrase\n', { mode: 0o600 });
    const backupDir = path.join(app.cwd, 'secret-backups');
    const flags = [...app.flags.slice(0, 4), '--backup-dir', backupDir];
    const notify = { NOTIFY_WEBHOOK_URL: `${srv.url}/hook`, NOTIFY_ON: 'always' };
    const runs = [
      await run(['create', '--type', 'database', '--json', '--notify', ...flags], { cwd: app.cwd, env: { ...notify, BACKUP_PASSPHRASE_FILE: passFile } }),
      await run(['verify', '--all', '--verbose', '--notify', ...flags], { cwd: app.cwd, env: { ...notify, AGE_PASSPHRASE_FILE: wrongPass } }),
      await run(['verify', '--all', '--json', '--notify', ...flags], { cwd: app.cwd, env: { ...notify, AGE_PASSPHRASE_FILE: passFile } }),
      await run(['restore', 'latest', '--yes', '--verbose', '--notify', '--target', scratchDir(), '--identity', otherKey, ...flags], { cwd: app.cwd, env: notify }),
      await run(['restore', 'latest', '--yes', '--json', '--notify', '--target', scratchDir(), ...flags], { cwd: app.cwd, env: { ...notify, AGE_PASSPHRASE_FILE: passFile } }),
    ];
    expect(runs.map((r) => r.code)).toEqual([0, 3, 0, 3, 0]);
    expect(runs[1].stdout).toMatch(/identities tried: passphrase/);
    const texts = [
      ...runs.flatMap((r) => [r.stdout, r.stderr]),
      fs.readFileSync(path.join(backupDir, 'backup.log'), 'utf8'),
      ...fs.readdirSync(backupDir, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.json')).map((n) => fs.readFileSync(path.join(backupDir, n), 'utf8')),
      ...srv.requests.map((q) => q.body),
    ];
    expect(srv.requests.length).toBeGreaterThanOrEqual(5);
    for (const t of texts) for (const s of secrets) expect(t.includes(s), `leaked in:\n${t}`).toBe(false);
  });

  it('an identity file readable by others is refused (exit 2), and a broken key line is not echoed', async () => {
    const loose = path.join(app.cwd, 'keys', 'loose.txt');
    fs.copyFileSync(keyFile, loose);
    fs.chmodSync(loose, 0o644);
    const r = await run(['verify', '--all', '--identity', loose, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/chmod 600/);
    const broken = path.join(app.cwd, 'keys', 'broken.txt');
    const line = `AGE-SECRET-KEY-1${'Q'.repeat(58)}`;
    fs.writeFileSync(broken, `# public key: x\n${line}\n`, { mode: 0o600 });
    const b = await run(['verify', '--all', '--identity', broken, ...app.flags], { cwd: app.cwd });
    expect(b.code, describeRun(b)).toBe(2);
    expect(b.stderr).toMatch(/broken.txt line 2: not an age identity/);
    expect(b.stderr + b.stdout).not.toContain(line);
  });
});

describe('an encrypting remote ("encrypt": {"recipients": [...]} in the remotes file)', () => {
  let nas: string;
  let remotesFile: string;
  let id: string;
  const vb = (args: string[], env: Record<string, string> = {}) => run([...args, ...app.flags, '--remotes-config', remotesFile], { cwd: app.cwd, env });

  beforeAll(async () => {
    nas = scratchDir();
    remotesFile = path.join(app.cwd, 'remote_storage.json');
    fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { nas: { url: pathToFileURL(nas).href, encrypt: { recipients: [recipient] } } } }), { mode: 0o600 });
    // a plaintext local backup, split into parts: the remote gets one encrypted file of the whole
    // a level 0 (--full): its archive alone is the tree, as the manual decrypt below reads it
    const r = await vb(['create', '--json', '--full', '--split-size', '0.25']);
    expect(r.code, describeRun(r)).toBe(0);
    id = parseJsonStdout<Created>(r).id;
  });

  it('sync uploads ….age files and sidecars describing them; the local backup stays plaintext', async () => {
    const r = await vb(['sync', '--remote', 'nas']);
    expect(r.code, describeRun(r)).toBe(0);
    const st = fs.readdirSync(path.join(nas, 'storage')).filter((n) => n.includes(id));
    // the file manifest of a storage backup is encrypted like its archive
    expect(st.sort()).toEqual([`storage_backup_${id}.json`, `storage_backup_${id}.manifest.gz.age`, `storage_backup_${id}.tar.gz.age`]);
    expect(fs.readdirSync(path.join(nas, 'database')).filter((n) => n.includes(id)).sort()).toEqual([`db_backup_${id}.db.age`, `db_backup_${id}.json`]);
    const rs = readJson<Record<string, any>>(path.join(nas, 'storage', `storage_backup_${id}.json`));
    const ls = readJson<Record<string, any>>(path.join(app.backupDir, 'storage', `storage_backup_${id}.json`));
    expect(rs.encryption).toMatchObject({ recipients: [recipient], plaintext_size: ls.file_size });
    // the plaintext's checksum, counts and paths travel sealed (issue 21 item 6, test/integration/remote-privacy.test.ts)
    expect(rs.encryption.plaintext_checksum).toBeUndefined();
    expect(rs.original_path).toBeUndefined();
    expect(rs.sealed).toMatchObject({ format: 'age', recipients: [recipient] });
    expect(rs.file_size).toBe(fs.statSync(path.join(nas, 'storage', rs.backup_path)).size);
    expect(ls.encryption).toBeUndefined();
    expect(fs.readdirSync(path.join(app.backupDir, 'storage')).filter((n) => n.includes(id) && n.includes('.age'))).toEqual([]);
    if (!skipWithoutAge) {
      const out = scratchDir();
      const x = spawnSync('sh', ['-c', `age -d -i ${keyFile} ${path.join(nas, 'storage', rs.backup_path)} | tar -xz`], { cwd: out });
      expect(x.status, x.stderr.toString()).toBe(0);
      expect(snapshot(path.join(out, 'storage'))).toEqual(snapshot(app.storagePath));
    }
  });

  it('a second sync finds it up to date (nothing re-encrypted or re-sent)', async () => {
    const r = await vb(['sync', '--remote', 'nas', '--json']);
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ remotes: { result: { synced: unknown[] } }[] }>(r);
    expect(doc.remotes[0].result.synced).toEqual([]);
  });

  it('verify --remote checks the ciphertext; restore --from decrypts with the identity, and refuses without it', async () => {
    const v = await vb(['verify', '--remote', 'nas', '--all']);
    expect(v.code, describeRun(v)).toBe(0);
    const target = scratchDir();
    const none = await vb(['restore', id, '--from', 'nas', '--yes', '--target', target]);
    expect(none.code, describeRun(none)).toBe(3);
    expect(none.stderr).toContain(recipient);
    expect(fs.readdirSync(target)).toEqual([]);
    const ok = await vb(['restore', id, '--from', 'nas', '--yes', '--target', target, '--identity', keyFile]);
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
    expect(Number(sqlite(path.join(target, 'app_data.db'), 'SELECT count(*) FROM clients'))).toBe(app.rows.clients);
  });

  it('a level N backup goes with its chain and its manifests, encrypted: listed ok on the remote, restored whole with the identity', async () => {
    fs.writeFileSync(path.join(app.storagePath, 'added after the level 0.txt'), 'new\n');
    const c = await vb(['create', '--type', 'storage', '--json']);
    expect(c.code, describeRun(c)).toBe(0);
    const nid = parseJsonStdout<Created>(c).id;
    const local = readJson<Record<string, any>>(path.join(app.backupDir, 'storage', `storage_backup_${nid}.json`));
    expect(local.level).toBeGreaterThan(0);
    const s = await vb(['sync', '--remote', 'nas']);
    expect(s.code, describeRun(s)).toBe(0);
    for (const rid of local.references as string[]) {
      const names = fs.readdirSync(path.join(nas, 'storage')).filter((n) => n.includes(rid));
      expect(names.sort(), rid).toEqual([`storage_backup_${rid}.json`, `storage_backup_${rid}.manifest.gz.age`, `storage_backup_${rid}.tar.gz.age`]);
      // the remote sees no file names, sizes or hashes: the manifest is ciphertext, its sidecar says so
      const m = path.join(nas, 'storage', `storage_backup_${rid}.manifest.gz.age`);
      const remoteSc = readJson<Record<string, any>>(path.join(nas, 'storage', `storage_backup_${rid}.json`));
      expect(remoteSc.manifest).toMatchObject({ file: path.basename(m), encryption: { format: 'age', recipients: [recipient] } });
      expect(fs.readFileSync(m).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    }
    // and a real age CLI decrypts it to the plaintext manifest, which lists the new file
    if (!skipWithoutAge) {
      const m = path.join(nas, 'storage', `storage_backup_${nid}.manifest.gz.age`);
      const d = spawnSync('bash', ['-c', `age -d -i '${keyFile}' '${m}' | zcat | cut -z -f2- | tr '\\0' '\\n'`], { encoding: 'utf8' });
      expect(d.status, d.stderr).toBe(0);
      expect(d.stdout).toContain('storage/added after the level 0.txt');
    }
    // a second sync sends nothing again (the encrypted manifest is recognised by its plaintext checksum)
    const again = await vb(['sync', '--remote', 'nas', '--json']);
    expect(again.code, describeRun(again)).toBe(0);
    expect(parseJsonStdout<{ remotes: { result: { synced: unknown[] } }[] }>(again).remotes[0].result.synced).toEqual([]);
    // the identity is needed to read the manifest back: without it, restore --from refuses (exit 3)
    const none = await vb(['restore', `storage_backup_${nid}.json`, '--from', 'nas', '--yes', '--target', scratchDir()]);
    expect(none.code, describeRun(none)).toBe(3);
    expect(none.stderr).toContain(recipient);
    const l = await vb(['list', '--remote', 'nas', '--type', 'storage', '--json']);
    expect(l.code, describeRun(l)).toBe(0);
    expect(parseJsonStdout<{ id: string; status: string }[]>(l).find((b) => b.id === nid)?.status).toBe('ok');
    const target = scratchDir();
    const ok = await vb(['restore', `storage_backup_${nid}.json`, '--from', 'nas', '--yes', '--target', target, '--identity', keyFile]);
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
    fs.rmSync(path.join(app.storagePath, 'added after the level 0.txt'));
  });
});

describe('rekey', () => {
  it('re-wraps the file key for new recipients: payload bytes unchanged, sidecar updated, old key out, new key in, atomically', async () => {
    const dir = path.join(app.cwd, 'rekey-backups');
    const flags = [...app.flags.slice(0, 4), '--backup-dir', dir];
    const c = await run(['create', '--json', '--recipient', recipient, '--split-size', '0.25', ...flags], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const id = parseJsonStdout<Created>(c).id;
    const sc = path.join(dir, 'storage', `storage_backup_${id}.json`);
    const before = readJson<Record<string, any>>(sc);
    expect(before.parts.length).toBeGreaterThan(1);
    const part1 = path.join(dir, 'storage', before.parts[0].file);
    const oldBytes = fs.readFileSync(part1);
    const oldHeaderLen = oldBytes.indexOf('\n--- ') + 48;

    const newPub = /# public key: (age1\w+)/.exec(fs.readFileSync(otherKey, 'utf8'))![1];
    const wrongId = await run(['rekey', id, '--identity', otherKey, '--recipient', newPub, ...flags], { cwd: app.cwd });
    expect(wrongId.code, describeRun(wrongId)).toBe(3);

    const r = await run(['rekey', id, '--identity', keyFile, '--recipient', newPub, ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).toMatch(/cannot revoke a key that already read a file/);
    const after = readJson<Record<string, any>>(sc);
    expect(after.encryption.recipients).toEqual([newPub]);
    expect(after.checksum).not.toBe(before.checksum);
    const newBytes = fs.readFileSync(part1);
    const newHeaderLen = newBytes.indexOf('\n--- ') + 48;
    // the payload (nonce and every sealed chunk) is byte for byte what it was
    expect(newBytes.subarray(newHeaderLen).equals(oldBytes.subarray(oldHeaderLen))).toBe(true);
    expect(fs.readdirSync(path.join(dir, 'storage')).filter((n) => n.includes('rekey'))).toEqual([]);
    // keyless verify proves the new bytes; the new key reads them, the old one no longer can
    expect((await run(['verify', '--all', ...flags], { cwd: app.cwd })).code).toBe(0);
    expect((await run(['verify', '--all', '--identity', otherKey, ...flags], { cwd: app.cwd })).code).toBe(0);
    const old = await run(['verify', '--all', '--identity', keyFile, ...flags], { cwd: app.cwd });
    expect(old.code, describeRun(old)).toBe(3);
    if (!skipWithoutAge) {
      const out = scratchDir();
      const x = spawnSync('sh', ['-c', `cat ${path.join(dir, 'storage')}/storage_backup_${id}.tar.gz.age.part* | age -d -i ${otherKey} | tar -xz`], { cwd: out });
      expect(x.status, x.stderr.toString()).toBe(0);
      expect(snapshot(path.join(out, 'storage'))).toEqual(snapshot(app.storagePath));
    }
  });
});
