/**
 * Issue 21, item 6: an encrypting remote sees no file names, sizes or hashes. Backups with everything a
 * sidecar can say about the tree and the database (a special file skipped with a warning, an exclude
 * pattern, the original path, table names and row counts, an incremental chain with its manifests) are
 * synced through the built binary to a file:// remote and to S3 (s3rver on 127.0.0.1); then every byte
 * each remote received is searched for those names, for the plaintext's hashes and for the fields that
 * describe it. With the identity, list --remote and restore --from still read all of it.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, snapshot, tempDir } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';
import { type S3Server, startS3 } from '../helpers/servers.js';

let app: AppFixture;
let key: string;
let pub: string;
let s3: S3Server;
let nas: string;
let remotesFile: string;
const scratch: string[] = [];

/** Names and words no remote byte may hold: file names, the exclude pattern, table names, the original path. */
const NAMES = ['patient-jane-doe', 'patient-fifo', 'confidential-exclude', 'scan_events', 'portraits'];
/** Sidecar fields that describe the plaintext: on an encrypting remote they travel sealed only. */
const FIELDS = [
  'warnings',
  'skipped',
  'notes',
  'exclude',
  'original_path',
  'table_rows',
  'plaintext_checksum',
  'content_bytes',
  'tree_bytes',
  'tree_files',
  'referenced_bytes',
  'file_count',
  'entry_count',
  'sqlite',
];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function filesUnder(root: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(root, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out;
}

/** Every needle found in any file under `root` (file contents and names), as "needle in file". */
function leaks(root: string, needles: string[]): string[] {
  const found: string[] = [];
  for (const f of filesUnder(root)) {
    const bytes = fs.readFileSync(f);
    const rel = path.relative(root, f);
    for (const n of needles) if (bytes.includes(n) || rel.includes(n)) found.push(`${n} in ${rel}`);
  }
  return found;
}

beforeAll(async () => {
  app = makeApp({ randomBytes: 200 * 1024 });
  const docs = path.join(app.storagePath, 'docs');
  fs.mkdirSync(docs);
  fs.writeFileSync(path.join(docs, 'patient-jane-doe-record.pdf'), 'a record of Jane Doe\n');
  fs.writeFileSync(path.join(docs, 'notes.confidential-exclude'), 'left out on purpose\n');
  expect(spawnSync('mkfifo', [path.join(docs, 'patient-fifo')]).status).toBe(0);
  key = path.join(app.cwd, 'key.txt');
  expect((await run(['keygen', '-o', key], { cwd: app.cwd })).code).toBe(0);
  pub = /# public key: (age1\w+)/.exec(fs.readFileSync(key, 'utf8'))![1];
  s3 = await startS3();
  nas = tempDir('vb-privacy-nas-');
  scratch.push(nas);
  remotesFile = path.join(app.cwd, 'remotes.json');
  const s3Options = { endpoint: s3.endpoint, force_path_style: true, access_key_id: 'S3RVER', secret_access_key: 'S3RVER' };
  const encrypt = { recipients: [pub] };
  fs.writeFileSync(
    remotesFile,
    JSON.stringify({ remotes: { nas: { url: `file://${nas}`, encrypt }, offsite: { url: `s3://${s3.bucket}/vb`, ...s3Options, encrypt } } }),
    { mode: 0o600 },
  );
});

afterAll(async () => {
  await s3?.stop();
  rmrf(app?.cwd);
  for (const d of scratch) rmrf(d);
});

const vb = (args: string[]) => run([...args, ...app.flags, '--remotes-config', remotesFile], { cwd: app.cwd, timeoutMs: 120_000 });

describe('item 6: what an encrypting remote receives', () => {
  it('holds no names, table names, plaintext hashes or describing fields; with the identity everything reads back', async () => {
    const create = async () => {
      const r = await vb(['create', '--type', 'full', '--exclude', '*.confidential-exclude', '--json']);
      expect(r.code, describeRun(r)).toBe(0);
      return parseJsonStdout<{ id: string; backups: { type: string; sidecar_path: string }[] }>(r);
    };
    const first = await create();
    fs.writeFileSync(path.join(app.storagePath, 'docs', 'patient-jane-doe-followup.txt'), 'a later visit\n');
    const second = await create();
    // the sidecars do say these things locally: the scan below looks for what is really there
    const storageSidecar = readJson<Record<string, any>>(second.backups.find((b) => b.type === 'storage')!.sidecar_path);
    expect(JSON.stringify(storageSidecar.warnings)).toContain('patient-fifo');
    expect(storageSidecar.level).toBe(1);
    const dbSidecar = readJson<Record<string, any>>(second.backups.find((b) => b.type === 'database')!.sidecar_path);
    expect(Object.keys(dbSidecar.sqlite.table_rows)).toContain('scan_events');

    const skip = (rel: string) => rel.endsWith('.confidential-exclude') || rel.endsWith('patient-fifo');
    const wantSecond = snapshot(app.storagePath, { exclude: skip });
    // and one encrypted locally (create --encrypt: a new chain): uploaded as it is, its sidecar sealed too
    fs.writeFileSync(path.join(app.storagePath, 'docs', 'patient-jane-doe-third.txt'), 'encrypted here\n');
    const third = await vb(['create', '--type', 'full', '--exclude', '*.confidential-exclude', '--recipient', pub, '--json']);
    expect(third.code, describeRun(third)).toBe(0);
    const encryptedId = parseJsonStdout<{ id: string }>(third).id;
    const wantThird = snapshot(app.storagePath, { exclude: skip });

    for (const remote of ['nas', 'offsite']) {
      const r = await vb(['sync', '--remote', remote, '--json']);
      expect(r.code, describeRun(r)).toBe(0);
    }

    // what the plaintext hashes to: every file of the tree, every local archive, manifest and database copy
    const hashes = new Set<string>();
    for (const f of filesUnder(app.storagePath)) if (fs.statSync(f).isFile()) hashes.add(sha(fs.readFileSync(f)));
    // (of a backup encrypted locally, the sidecar's checksums are the ciphertext's: the remote holds that very file)
    for (const f of filesUnder(app.backupDir)) {
      if (f.endsWith('.json')) {
        const s = readJson<Record<string, any>>(f);
        const plain = [s.encryption?.plaintext_checksum, s.manifest?.encryption?.plaintext_checksum];
        if (!s.encryption) plain.push(s.checksum, s.manifest?.checksum, ...(s.parts ?? []).map((p: { checksum: string }) => p.checksum));
        for (const h of plain) if (h) hashes.add(h);
      } else if (!f.endsWith('.age')) hashes.add(sha(fs.readFileSync(f)));
    }
    const needles = [...NAMES, app.storagePath, app.dbPath, ...[...hashes], ...FIELDS.map((f) => `"${f}"`)];
    expect(leaks(nas, needles), 'what the file:// remote holds').toEqual([]);
    expect(leaks(s3.dataDir, needles), 'what the S3 server stored').toEqual([]);

    // without a key the remote still judges, lists and verifies its backups
    const list = await vb(['list', '--remote', 'nas', '--json']);
    expect(list.code, describeRun(list)).toBe(0);
    const listed = parseJsonStdout<{ id: string; type: string; status: string }[]>(list);
    expect(listed.filter((b) => b.type === 'full').map((b) => [b.id, b.status])).toEqual([
      [encryptedId, 'ok'],
      [second.id, 'ok'],
      [first.id, 'ok'],
    ]);
    const verify = await vb(['verify', '--remote', 'offsite', '--all']);
    expect(verify.code, describeRun(verify)).toBe(0);

    // a second sync sends nothing: the sealed sidecars are recognised as the same backups
    const again = await vb(['sync', '--remote', 'nas', '--json']);
    expect(again.code, describeRun(again)).toBe(0);
    const doc = parseJsonStdout<{ remotes: { result: { synced: { uploaded: string[] }[] } }[] }>(again);
    expect(doc.remotes[0].result.synced.flatMap((s) => s.uploaded)).toEqual([]);

    // with the identity: list --remote shows what the sidecars hold, restore --from brings the tree back
    const opened = await vb(['list', '--remote', 'offsite', '--identity', key, '--json']);
    expect(opened.code, describeRun(opened)).toBe(0);
    const storageRow = parseJsonStdout<{ id: string; type: string; file_count: number | null }[]>(opened).find((b) => b.type === 'storage' && b.id === storageSidecar.id);
    expect(storageRow?.file_count).toBe(storageSidecar.file_count);
    for (const [remote, id, want] of [
      ['nas', second.id, wantSecond],
      ['offsite', encryptedId, wantThird],
    ] as const) {
      const target = tempDir('vb-privacy-restore-');
      scratch.push(target);
      const r = await vb(['restore', id, '--from', remote, '--identity', key, '--target', target, '--yes']);
      expect(r.code, describeRun(r)).toBe(0);
      expect(snapshot(path.join(target, 'storage'))).toEqual(want);
    }
  });
});

describe('a sealed sidecar by hand (docs/remotes.md)', () => {
  needs('age', 'age').it('the age CLI opens it: the whole sidecar, warnings and all', () => {
    const page = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'remotes.md'), 'utf8');
    const line = /`(sed -n [^`]*storage_backup_<id>\.json \| base64 -d \| age -d -i key\.txt \| zcat)`/.exec(page)?.[1];
    expect(line, 'docs/remotes.md shows how to open a sealed sidecar').toBeTruthy();
    const sidecars = fs.readdirSync(path.join(nas, 'storage')).filter((n) => n.endsWith('.json'));
    expect(sidecars.length).toBeGreaterThan(0);
    const id = sidecars[0]!.slice('storage_backup_'.length, -'.json'.length);
    const r = spawnSync('bash', ['-o', 'pipefail', '-c', line!.replace('<id>', id).replace('key.txt', key)], { cwd: path.join(nas, 'storage') });
    expect(r.status, r.stderr.toString()).toBe(0);
    const whole = JSON.parse(r.stdout.toString());
    expect(whole).toMatchObject({ id, type: 'storage', original_path: app.storagePath });
    expect(JSON.stringify(whole.warnings)).toContain('patient-fifo');
  });
});
