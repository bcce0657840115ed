/**
 * Where incremental chains, encryption, remotes and drills meet (issue 21): each case combines them,
 * through the built binary, and holds the tool to the truth: a backup it calls good restores with the
 * key that made it, a drill reads what a restore would read, and a failed drill reports no healthy figures.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run, start } from '../helpers/cli.js';
import type { BackupEntry } from '../../src/catalog/local-store.js';
import { recoveryPoints } from '../../src/ops/drill.js';
import { commitSample, planSample, type SampleFile } from '../../src/ops/sample.js';
import { type AppFixture, flipByte, makeApp, rmrf, snapshot, tempDir } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';
import { type S3Server, startS3 } from '../helpers/servers.js';

let app: AppFixture;
let oldKey: string;
let newKey: string;
let oldPub: string;
let newPub: string;
const scratch: string[] = [];
const scratchDir = () => {
  const d = tempDir('vb-chains-');
  scratch.push(d);
  return d;
};

interface Created {
  id: string;
  backups: { type: string; sidecar_path: string }[];
}

beforeAll(async () => {
  app = makeApp({ randomBytes: 200 * 1024 });
  fs.mkdirSync(path.join(app.cwd, 'keys'), { mode: 0o700 });
  oldKey = path.join(app.cwd, 'keys', 'old.txt');
  newKey = path.join(app.cwd, 'keys', 'new.txt');
  for (const k of [oldKey, newKey]) expect((await run(['keygen', '-o', k], { cwd: app.cwd })).code).toBe(0);
  const pub = (k: string) => /# public key: (age1\w+)/.exec(fs.readFileSync(k, 'utf8'))![1];
  oldPub = pub(oldKey);
  newPub = pub(newKey);
});

afterAll(() => {
  rmrf(app?.cwd);
  for (const d of scratch) rmrf(d);
});

/** A backup directory of its own for each case, sharing the app's database and storage tree. */
function dirFlags(name: string): string[] {
  return [...app.flags.slice(0, 4), '--backup-dir', path.join(app.cwd, name)];
}

async function storageBackup(flags: string[], env: Record<string, string | undefined> = {}): Promise<{ id: string; level: number; sidecar: Record<string, any> }> {
  const r = await run(['create', '--type', 'storage', '--json', ...flags], { cwd: app.cwd, env });
  expect(r.code, describeRun(r)).toBe(0);
  const c = parseJsonStdout<Created>(r);
  const sidecar = readJson<Record<string, any>>(c.backups[0].sidecar_path);
  return { id: c.id, level: sidecar.level, sidecar };
}

const touch = (name: string, text: string) => fs.writeFileSync(path.join(app.storagePath, name), text);

describe('item 1: a change of recipients or of encryption on/off mid-chain', () => {
  it('starts a new level 0, so the new key alone restores the newest backup', async () => {
    const flags = dirFlags('recipients-change');
    const l0 = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    expect(l0.level).toBe(0);
    touch('chain-1.txt', 'one\n');
    const same = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    expect(same.level).toBe(1);
    touch('chain-2.txt', 'two\n');
    const rotated = await storageBackup(flags, { BACKUP_RECIPIENTS: newPub });
    expect(rotated.level, 'a new recipient must start a new chain').toBe(0);
    const target = scratchDir();
    const r = await run(['restore', 'latest', '--identity', newKey, '--target', target, '--yes', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));

    // encryption switched off: a plaintext backup must not lean on archives only a key opens
    touch('chain-3.txt', 'three\n');
    const off = await storageBackup(flags, { BACKUP_RECIPIENTS: undefined });
    expect(off.level).toBe(0);
    expect(off.sidecar.encryption).toBeUndefined();
    // and on again: not on top of the plaintext chain
    touch('chain-4.txt', 'four\n');
    const on = await storageBackup(flags, { BACKUP_RECIPIENTS: newPub });
    expect(on.level).toBe(0);
    touch('chain-5.txt', 'five\n');
    expect((await storageBackup(flags, { BACKUP_RECIPIENTS: newPub })).level).toBe(1);
  });

  it('rekey ID re-wraps every archive of the chain: the new key restores it and the chain goes on with it', async () => {
    const flags = dirFlags('rekey-chain');
    const l0 = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    touch('rekey-1.txt', 'one\n');
    const l1 = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    expect(l1.level).toBe(1);
    const r = await run(['rekey', l1.id, '--identity', oldKey, '--recipient', newPub, '--json', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const rekeyed = parseJsonStdout<{ files: { id: string; result: string }[] }>(r).files.filter((f) => f.result === 'rekeyed');
    expect(rekeyed.map((f) => f.id).sort()).toEqual([l0.id, l1.id].sort());
    const target = scratchDir();
    const ok = await run(['restore', l1.id, '--identity', newKey, '--target', target, '--yes', ...flags], { cwd: app.cwd });
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(snapshot(path.join(target, 'storage'))).toEqual(snapshot(app.storagePath));
    // the chain now holds only the new key: the next backup with it continues the chain
    touch('rekey-2.txt', 'two\n');
    expect((await storageBackup(flags, { BACKUP_RECIPIENTS: newPub })).level).toBe(2);
  });
});

describe('item 3: drill --from an encrypting remote (s3rver), an incremental chain', () => {
  let s3: S3Server;
  let remotesFile: string;
  let flags: string[];
  const vb = (args: string[], env: Record<string, string | undefined> = {}) =>
    run([...args, ...flags, '--remotes-config', remotesFile], { cwd: app.cwd, env, timeoutMs: 120_000 });

  beforeAll(async () => {
    s3 = await startS3();
    flags = dirFlags('offsite-drill');
    remotesFile = path.join(app.cwd, 'remotes-s3.json');
    const s3Options = { endpoint: s3.endpoint, force_path_style: true, access_key_id: 'S3RVER', secret_access_key: 'S3RVER' };
    fs.writeFileSync(remotesFile, JSON.stringify({ remotes: { offsite: { url: `s3://${s3.bucket}/vb`, ...s3Options, encrypt: { recipients: [oldPub] } } } }), {
      mode: 0o600,
    });
    expect((await vb(['create', '--type', 'full'])).code).toBe(0);
    touch('offsite-1.txt', 'after the level 0\n');
    const c = await vb(['create', '--type', 'full', '--sync', '--json']);
    expect(c.code, describeRun(c)).toBe(0);
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('a whole drill and a sampled one pass with the identity, as restore --from does', async () => {
    const whole = await vb(['drill', '--from', 'offsite', '--identity', oldKey, '--json']);
    expect(whole.code, describeRun(whole)).toBe(0);
    expect(parseJsonStdout<{ result: string }>(whole).result).toBe('passed');
    const sampled = await vb(['drill', '--from', 'offsite', '--sample', '50', '--identity', oldKey, '--json']);
    expect(sampled.code, describeRun(sampled)).toBe(0);
  });

  it('without a key it is a set-up problem (exit 2), not a damaged backup', async () => {
    const r = await vb(['drill', '--from', 'offsite']);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/--identity/);
  });
});

describe('item 4: a failed drill prints no healthy figures', () => {
  it('a corrupt middle archive of an encrypted chain: exit 3, no RTO, RPO not met, the failed backup not counted as good', async () => {
    const flags = dirFlags('failed-drill');
    const env = { BACKUP_RECIPIENTS: oldPub };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      touch(`failed-drill-${i}.txt`, `night ${i}\n`);
      const r = await run(['create', '--type', 'full', '--json', ...flags], { cwd: app.cwd, env });
      expect(r.code, describeRun(r)).toBe(0);
      ids.push(parseJsonStdout<Created>(r).id);
    }
    const dir = path.join(app.cwd, 'failed-drill', 'storage');
    const middle = readJson<Record<string, any>>(path.join(dir, `storage_backup_${ids[1]}.json`));
    expect(middle.level).toBe(1);
    flipByte(path.join(dir, middle.backup_path), Math.floor(middle.file_size / 2));
    const r = await run(['drill', '--identity', oldKey, '--json', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(3);
    const doc = parseJsonStdout<Record<string, any>>(r);
    expect(doc.backup.id).toBe(ids[2]);
    expect(doc.rto).toMatchObject({ measured_ms: null, ok: false });
    expect(doc.rpo.ok).toBe(false);
    expect(doc.rpo.types.find((t: { type: string }) => t.type === 'full').newest_id).not.toBe(ids[2]);
    const human = await run(['drill', '--identity', oldKey, ...flags], { cwd: app.cwd });
    expect(human.code).toBe(3);
    expect(human.stdout + human.stderr).not.toMatch(/RTO\s+\S+\s+target \S+\s+ok/);
    const status = readJson<Record<string, any>>(path.join(app.cwd, 'failed-drill', 'status.json'));
    expect(status.drill.result).toBe('failed');
    expect(status.drill.rto_ms).toBeUndefined();
  });

  it('a partial full backup is no recovery point', () => {
    const at = (id: string, status: string) =>
      ({ type: 'full', id, status, createdAt: new Date(`2026-01-0${id}T00:00:00Z`), size: 0, files: [] }) as unknown as BackupEntry;
    const points = recoveryPoints([at('1', 'ok'), at('2', 'partial')], new Date('2026-01-03T00:00:00Z'));
    expect(points[0]).toMatchObject({ type: 'full', newest_id: '1', good_backups_7d: 1 });
  });
});

describe('items 2 and 11: sampled drills and the live spot check read the chain, not the newest night', () => {
  let flags: string[];
  let liveFiles: number;
  const env: Record<string, string> = {};
  beforeAll(() => {
    env.BACKUP_RECIPIENTS = oldPub;
  });
  const files = (root: string): number =>
    fs.readdirSync(root, { withFileTypes: true }).reduce((n, d) => n + (d.isDirectory() ? files(path.join(root, d.name)) : d.isFile() ? 1 : 0), 0);

  beforeAll(async () => {
    flags = dirFlags('sampled-chain');
    for (let i = 0; i < 12; i++) touch(`sampled-${i}.bin`, `${'x'.repeat(2000)}${i}\n`);
    expect((await run(['create', '--type', 'full', ...flags], { cwd: app.cwd, env })).code).toBe(0);
    // the next night: two files deleted, one added (a level 1 of three records, two of them deletions)
    fs.rmSync(path.join(app.storagePath, 'sampled-0.bin'));
    fs.rmSync(path.join(app.storagePath, 'sampled-1.bin'));
    touch('sampled-new.bin', 'new\n');
    const r = await run(['create', '--type', 'full', '--json', ...flags], { cwd: app.cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    liveFiles = files(app.storagePath);
  });

  it('the tree share is drawn from the merged view: every live file counted, deletions not; the live check finds nothing gone', async () => {
    const r = await run(['drill', '--sample', '50', '--identity', oldKey, '--json', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<Record<string, any>>(r);
    expect(doc.sample.tree_files_total).toBe(liveFiles);
    expect(doc.sample.tree_files_restored).toBe(Math.ceil((liveFiles - doc.sample.tree_offset) / 2));
    expect(doc.live).toMatchObject({ missing: 0, changed: 0 });
    // extrapolated by what the share restored: at most the share's ratio, with room for timing noise
    expect(doc.rto.measured_ms).toBeLessThanOrEqual(Math.max(2000, doc.rto.sampled_ms * 4));
    const whole = await run(['drill', '--identity', oldKey, '--json', ...flags], { cwd: app.cwd });
    expect(whole.code, describeRun(whole)).toBe(0);
    expect(parseJsonStdout<Record<string, any>>(whole).live).toMatchObject({ missing: 0, changed: 0 });
  });

  it("a level 0 whose .age header is damaged fails the first sampled drill (the share reads the chain's archives)", async () => {
    const dir = path.join(app.cwd, 'sampled-chain', 'storage');
    const level0 = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()[0];
    const scFile = path.join(dir, level0);
    const sc = readJson<Record<string, any>>(scFile);
    expect(sc.level).toBe(0);
    expect(sc.backup_path).toMatch(/\.age$/);
    const archive = path.join(dir, sc.backup_path);
    // a byte of the recipient stanza changed, and the sidecar resealed: only decrypting finds it
    flipByte(archive, 40);
    sc.checksum = createHash('sha256').update(fs.readFileSync(archive)).digest('hex');
    fs.writeFileSync(scFile, JSON.stringify(sc, null, 2));
    const r = await run(['drill', '--sample', '50', '--identity', oldKey, '--json', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(3);
  });
});

describe('item 9: a damaged level 0 .age header, and plaintext temp files', () => {
  let flags: string[];
  let root: string;
  let fullId: string;
  const env: Record<string, string> = {};
  beforeAll(() => {
    env.BACKUP_RECIPIENTS = oldPub;
  });

  beforeAll(async () => {
    root = path.join(app.cwd, 'damaged-header');
    flags = dirFlags('damaged-header');
    expect((await run(['create', '--type', 'full', ...flags], { cwd: app.cwd, env })).code).toBe(0);
    touch('damaged-header.txt', 'level 1\n');
    const r = await run(['create', '--type', 'full', '--json', ...flags], { cwd: app.cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    fullId = parseJsonStdout<Created>(r).id;
  });

  it('a restore killed after decrypting the database leaves a plaintext copy only until the next command heals', async () => {
    const target = scratchDir();
    const { child, done } = start(['restore', fullId, '--identity', oldKey, '--target', target, '--yes', ...flags], {
      cwd: app.cwd,
      env: { VERTEX_BACKUP_FAULT_POINT: 'staged' },
    });
    const stopped = () => {
      try {
        return fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 600 && !stopped() && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    if (!stopped()) child.kill('SIGKILL');
    expect(stopped(), 'the restore reaches its staged point').toBe(true);
    const plaintext = () => fs.readdirSync(target).filter((n) => n.endsWith('.decrypted.tmp'));
    expect(plaintext(), JSON.stringify([fs.readdirSync(target), fs.readdirSync(path.join(root, 'database')), fullId])).toHaveLength(1);
    child.kill('SIGKILL');
    await done;
    const next = await run(['rotate', '--max-backups', '10', ...flags], { cwd: app.cwd });
    expect(next.code, describeRun(next)).toBe(0);
    expect(plaintext()).toEqual([]);
  });

  it('restore exits 3 with a one-line error, never an unhandled stream error, and leaves no plaintext behind', async () => {
    const dir = path.join(root, 'storage');
    const level0 = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()[0];
    const sc = readJson<Record<string, any>>(path.join(dir, level0));
    expect(sc.level).toBe(0);
    expect(sc.backup_path).toMatch(/\.age$/);
    // one base64 character of the X25519 stanza's body replaced by another: a well-formed header whose
    // stanza no longer opens with the right key
    const file = path.join(dir, sc.backup_path);
    const bytes = fs.readFileSync(file);
    const body = bytes.indexOf('\n', bytes.indexOf('-> X25519 ')) + 5;
    bytes[body] = bytes[body] === 0x41 ? 0x42 : 0x41;
    fs.writeFileSync(file, bytes);
    for (let i = 0; i < 3; i++) {
      const r = await run(['restore', fullId, '--identity', oldKey, '--yes', '--no-verify', ...flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(3);
      expect(r.stderr).not.toMatch(/Unhandled|\n\s+at /);
      // item 12: the key is the right one; the header is what is damaged
      expect(r.stderr).toMatch(/age header is damaged/);
      expect(fs.readdirSync(path.dirname(app.dbPath)).filter((n) => n.endsWith('.decrypted.tmp'))).toEqual([]);
    }
  });
});

describe('item 12: restore latest says which newer backups it passed over', () => {
  it('the newest full backup lost its storage archive: latest restores the one before, and says so on stderr', async () => {
    const flags = dirFlags('latest-skips');
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      touch(`latest-skips-${i}.txt`, `${i}\n`);
      const r = await run(['create', '--type', 'full', '--json', ...flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      ids.push(parseJsonStdout<Created>(r).id);
    }
    const dir = path.join(app.cwd, 'latest-skips', 'storage');
    const sc = readJson<Record<string, any>>(path.join(dir, `storage_backup_${ids[1]}.json`));
    fs.rmSync(path.join(dir, sc.backup_path));
    const target = scratchDir();
    const r = await run(['restore', 'latest', '--target', target, '--yes', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).toContain(`passed over the newer full backup ${ids[1]}`);
    expect(r.stderr).toContain(`restoring full backup ${ids[0]}`);
  });
});

describe("item 10: a restore's leftovers are left out at the storage root only, and said", () => {
  it('.pre-restore-1x and .vertex-restore-y deeper in the tree are backed up; at the root they are left out with a note', async () => {
    const flags = dirFlags('leftovers');
    const deep = path.join(app.storagePath, 'images', 'leftover-names');
    fs.mkdirSync(deep, { recursive: true });
    fs.writeFileSync(path.join(deep, '.pre-restore-1 user notes.txt'), 'mine\n');
    fs.writeFileSync(path.join(deep, '.vertex-restore-draft'), 'mine too\n');
    const top = path.join(app.storagePath, '.pre-restore-20260101_000000');
    fs.mkdirSync(top);
    fs.writeFileSync(path.join(top, 'old.txt'), 'a previous tree\n');
    try {
      const r = await run(['create', '--type', 'storage', '--full', '--json', ...flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      const ls = await run(['ls', 'latest', '--json', ...flags], { cwd: app.cwd });
      expect(ls.code, describeRun(ls)).toBe(0);
      expect(ls.stdout).toContain('.pre-restore-1 user notes.txt');
      expect(ls.stdout).toContain('.vertex-restore-draft');
      expect(ls.stdout).not.toContain('.pre-restore-20260101_000000');
      const notes = parseJsonStdout<{ notes: string[] }>(r).notes;
      expect(notes.join('\n')).toContain('.pre-restore-20260101_000000');
    } finally {
      fs.rmSync(deep, { recursive: true });
      fs.rmSync(top, { recursive: true });
    }
  });
});

describe('item 5: verify --sample reads the oldest first, whatever keeps arriving', () => {
  it('four new database backups a run cannot starve an older storage archive', async () => {
    const dir = scratchDir();
    const stored = (rel: string, id: string, size: number): SampleFile => ({ rel, id, size, checksum: 'x', type: rel.startsWith('database') ? 'database' : 'storage' });
    let files: SampleFile[] = [stored('storage/storage_backup_20260101_000000.tar.gz', '20260101_000000', 700_000)];
    let day = 2;
    const nextDb = () => {
      const id = `202601${String(Math.floor(day / 4) + 1).padStart(2, '0')}_${String((day % 4) * 6).padStart(2, '0')}0000`;
      day++;
      return stored(`database/db_backup_${id}.db`, id, 50_000);
    };
    for (let i = 0; i < 20; i++) files.push(nextDb());
    let storageRead = false;
    // a daily verify --sample 15 beside a database backup every 6 hours, rotation keeping the newest 20
    for (let run = 0; run < 8 && !storageRead; run++) {
      files.push(nextDb(), nextDb(), nextDb(), nextDb());
      const dbs = files.filter((f) => f.type === 'database');
      files = [files[0], ...dbs.slice(-20)].sort((a, b) => (a.rel < b.rel ? -1 : 1));
      const plan = await planSample(dir, 'verify', files, 15);
      storageRead = plan.chosen.some((f) => f.type === 'storage');
      await commitSample(dir, plan, plan.chosen);
    }
    expect(storageRead).toBe(true);
  });
});

describe('item 12: a drill without a key on a mixed plaintext/encrypted chain', () => {
  needs('age', 'age').it('is a set-up problem (exit 2) naming --identity, like any encrypted backup', async () => {
    const flags = dirFlags('mixed-chain');
    const l0 = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    touch('mixed-chain.txt', 'level 1\n');
    const l1 = await storageBackup(flags, { BACKUP_RECIPIENTS: oldPub });
    expect(l1.level).toBe(1);
    // the chain an older version made: its level 1 plaintext on top of an encrypted level 0
    const dir = path.join(app.cwd, 'mixed-chain', 'storage');
    const scFile = path.join(dir, `storage_backup_${l1.id}.json`);
    const sc = readJson<Record<string, any>>(scFile);
    const plainName = sc.backup_path.replace(/\.age$/, '');
    const x = spawnSync('age', ['-d', '-i', oldKey, '-o', path.join(dir, plainName), path.join(dir, sc.backup_path)]);
    expect(x.status, x.stderr.toString()).toBe(0);
    fs.rmSync(path.join(dir, sc.backup_path));
    const plain = fs.readFileSync(path.join(dir, plainName));
    const { encryption: _, ...rest } = sc;
    fs.writeFileSync(
      scFile,
      JSON.stringify({ ...rest, backup_path: plainName, file_size: plain.length, checksum: createHash('sha256').update(plain).digest('hex') }, null, 2),
    );
    expect(readJson<Record<string, any>>(path.join(dir, `storage_backup_${l0.id}.json`)).encryption).toBeDefined();
    const r = await run(['drill', '--type', 'storage', ...flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/--identity/);
  });
});
