/**
 * Issue 17, item 1: `vertex-backup drill` restores the newest good backup into a scratch directory and
 * proves it. Run through the built binary on real SQLite databases and real archives; each planted
 * fault (a database copy with a dropped table, an archive missing a file, a bit flip in a part, a
 * remote object deleted) must fail the drill with exit 3 and a reason that names it.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';

type Doc = Record<string, any>;
const apps: AppFixture[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
  for (const d of dirs) rmrf(d);
});

function app(opts: Parameters<typeof makeApp>[0] = {}): AppFixture {
  const a = makeApp({ randomBytes: 1024 * 1024, ...opts });
  apps.push(a);
  return a;
}

async function create(a: AppFixture, type: string, ...extra: string[]): Promise<{ id: string; sidecarPath: string; sidecar: Doc }> {
  const r = await run(['create', '--type', type, '--json', ...extra, ...a.flags], { cwd: a.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  const id = parseJsonStdout<{ id: string }>(r).id;
  const prefix = { full: 'full_backup_', database: 'db_backup_', storage: 'storage_backup_' }[type]!;
  const sidecarPath = path.join(a.backupDir, type, `${prefix}${id}.json`);
  return { id, sidecarPath, sidecar: readJson<Doc>(sidecarPath) };
}

async function drill(a: AppFixture, args: string[] = [], env: Record<string, string> = {}) {
  const r = await run(['drill', '--json', ...args, ...a.flags], { cwd: a.cwd, env, timeoutMs: 120_000 });
  return { r, doc: parseJsonStdout<Doc>(r) };
}

const scratchLeft = (a: AppFixture) => fs.readdirSync(a.backupDir).filter((n) => n.startsWith('.drill-'));
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Rewrites a .tar.gz without one entry, every other entry (headers, order) as it was. */
async function dropFromTarGz(archive: string, name: string): Promise<void> {
  const extract = tar.extract();
  const pack = tar.pack();
  extract.on('entry', (header, stream, next) => {
    if (header.name === name) {
      stream.on('end', next);
      stream.resume();
    } else stream.pipe(pack.entry(header, next) as unknown as NodeJS.WritableStream);
  });
  extract.on('finish', () => pack.finalize());
  const out = `${archive}.new`;
  await Promise.all([
    pipeline(fs.createReadStream(archive), zlib.createGunzip(), extract as unknown as NodeJS.WritableStream),
    pipeline(pack as unknown as NodeJS.ReadableStream, zlib.createGzip(), fs.createWriteStream(out)),
  ]);
  fs.renameSync(out, archive);
}

/** The sidecar made to describe the file as it is now, so only the drill's own checks can see the fault. */
function resealSidecar(sidecarPath: string, data: string, extra: (s: Doc) => void = () => {}) {
  const s = readJson<Doc>(sidecarPath);
  s.checksum = sha256(data);
  s.file_size = fs.statSync(data).size;
  extra(s);
  fs.writeFileSync(sidecarPath, JSON.stringify(s, null, 2));
}

describe('drill: a good backup', () => {
  it('restores the newest full backup into a scratch directory, proves every table and file, reports RTO/RPO, and removes the copy', async () => {
    const a = app();
    const full = await create(a, 'full');
    // the sidecar records each table's rows at backup time (counted in the copy)
    const db = readJson<Doc>(path.join(a.backupDir, 'database', `db_backup_${full.sidecar.database}.json`));
    expect(db.sqlite.table_rows).toEqual(a.rows);
    const liveDb = sha256(a.dbPath);
    const liveTree = snapshot(a.storagePath);

    const { r, doc } = await drill(a);
    expect(r.code, describeRun(r)).toBe(0);
    expect(doc).toMatchObject({ ok: true, result: 'passed', source: 'local', problems: [], targets_missed: [], kept: false, backup: { type: 'full', id: full.id } });
    expect(doc.database.integrity).toBe('ok');
    expect(doc.database.row_counts_recorded).toBe(true);
    expect(Object.fromEntries(doc.database.tables.map((t: Doc) => [t.name, t.rows]))).toEqual(a.rows);
    expect(doc.storage).toMatchObject({ manifest_checked: true });
    expect(doc.storage.entries).toBeGreaterThan(10);
    expect(doc.live).toMatchObject({ changed: 0, missing: 0 });
    expect(doc.live.sampled).toBeGreaterThan(5);
    expect(doc.rto.measured_ms).toBe(doc.timings_ms.download + doc.timings_ms.verify + doc.timings_ms.restore);
    expect(doc.rto).toMatchObject({ target_ms: 3_600_000, ok: true });
    expect(doc.rpo).toMatchObject({ target_ms: 4 * 3_600_000, ok: true, judged_type: 'full' });
    expect(doc.rpo.types.map((t: Doc) => t.type).sort()).toEqual(['database', 'full', 'storage']);
    expect(doc.bytes.restored).toBeGreaterThan(1024 * 1024);
    // the live paths were never touched; the scratch copy is gone
    expect(sha256(a.dbPath)).toBe(liveDb);
    expect(snapshot(a.storagePath)).toEqual(liveTree);
    expect(scratchLeft(a)).toEqual([]);

    // the human report names the figures; a change in the live tree shows in the spot check
    fs.appendFileSync(path.join(a.storagePath, 'markers/marker.patt'), 'edited\n');
    const human = await run(['drill', ...a.flags], { cwd: a.cwd });
    expect(human.code, describeRun(human)).toBe(0);
    expect(human.stdout).toMatch(/drill of full backup .* PASSED/);
    expect(human.stdout).toMatch(/RTO .* target 1h 00m +ok/);
    expect(human.stdout).toMatch(/1 changed and 0 gone since the backup/);
    expect(human.stdout).toMatch(/markers\/marker\.patt: changed since the backup/);
  });

  it('--keep leaves the restored copy in the backup directory; RTO_TARGET/RPO_TARGET missed exit 1; an old sidecar without row counts checks tables only', async () => {
    const a = app({ minimalStorage: true });
    const dbb = await create(a, 'database');
    const kept = await drill(a, ['--keep', '--type', 'database']);
    expect(kept.r.code, describeRun(kept.r)).toBe(0);
    expect(kept.doc.kept).toBe(true);
    expect(kept.doc.scratch.startsWith(a.backupDir)).toBe(true);
    expect(sqlite(path.join(kept.doc.scratch, 'restore', 'app_data.db'), 'SELECT count(*) FROM scan_events')).toBe(String(a.rows.scan_events));
    // a kept copy is not a killed drill's leftover: the next drill leaves it alone
    const slow = await drill(a, ['--type', 'database'], { RTO_TARGET: '1ms' });
    expect(slow.r.code, describeRun(slow.r)).toBe(1);
    expect(slow.doc.result).toBe('target-missed');
    expect(slow.doc.targets_missed.join()).toMatch(/RTO: .* the target is 1 ms \(RTO_TARGET\)/);
    expect(fs.existsSync(kept.doc.scratch)).toBe(true);
    const stale = await drill(a, ['--type', 'database', '--rpo-target', '1ms']);
    expect(stale.r.code).toBe(1);
    expect(stale.doc.targets_missed.join()).toMatch(/RPO: the newest good database backup is .* old, the target is 1 ms/);
    const bad = await drill(a, [], { RPO_TARGET: 'soon' });
    expect(bad.r.code).toBe(2);
    expect(bad.doc.error.message).toMatch(/RPO_TARGET: cannot read "soon" as a duration/);

    const s = readJson<Doc>(dbb.sidecarPath);
    delete s.sqlite.table_rows;
    fs.writeFileSync(dbb.sidecarPath, JSON.stringify(s));
    const old = await drill(a, ['--type', 'database']);
    expect(old.r.code, describeRun(old.r)).toBe(0);
    expect(old.doc.database.row_counts_recorded).toBe(false);
    expect(old.doc.notes.join()).toMatch(/row counts were not recorded at backup time/);
  });

  it('an encrypted backup: without the key exit 2 naming --identity; with it the drill decrypts, restores and proves', async () => {
    const a = app();
    const keyFile = path.join(a.cwd, 'key.txt');
    const k = await run(['keygen', '-o', keyFile, '--json'], { cwd: a.cwd });
    expect(k.code, describeRun(k)).toBe(0);
    const recipient = parseJsonStdout<{ recipient: string }>(k).recipient;
    const c = await run(['create', '--type', 'full', ...a.flags], { cwd: a.cwd, env: { BACKUP_RECIPIENTS: recipient } });
    expect(c.code, describeRun(c)).toBe(0);
    const locked = await drill(a);
    expect(locked.r.code, describeRun(locked.r)).toBe(2);
    expect(locked.doc.error.message).toMatch(/backup \S+ is encrypted: the drill needs the key/);
    expect(locked.doc.error.hint).toMatch(/--identity FILE/);
    const { r, doc } = await drill(a, ['--identity', keyFile]);
    expect(r.code, describeRun(r)).toBe(0);
    expect(Object.fromEntries(doc.database.tables.map((t: Doc) => [t.name, t.rows]))).toEqual(a.rows);
    expect(doc.storage.manifest_checked).toBe(true);
    expect(scratchLeft(a)).toEqual([]);
  });

  it('no backup to drill is a usage error (exit 2)', async () => {
    const a = app({ minimalStorage: true });
    const { r, doc } = await drill(a);
    expect(r.code).toBe(2);
    expect(doc.error.message).toMatch(/no backup in .* to drill/);
  });
});

describe('drill: planted faults fail it with exit 3 and a clear reason', () => {
  it('a database copy with a dropped table (its sidecar resealed to match the bytes)', async () => {
    const a = app({ minimalStorage: true });
    const b = await create(a, 'database');
    const copy = path.join(a.backupDir, 'database', b.sidecar.backup_path);
    // the same number of tables, so only the row-count check can tell
    sqlite(copy, 'DROP TABLE portraits; CREATE TABLE junk(x); VACUUM;');
    resealSidecar(b.sidecarPath, copy);
    const verify = await run(['verify', '--latest', ...a.flags], { cwd: a.cwd });
    expect(verify.code, 'verify alone does not see it').toBe(0);
    const { r, doc } = await drill(a, ['--type', 'database']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(doc.result).toBe('failed');
    expect(doc.problems.join()).toMatch(/table "portraits" of the source is missing from the restored database/);
    expect(scratchLeft(a)).toEqual([]);
    const human = await run(['drill', '--type', 'database', ...a.flags], { cwd: a.cwd });
    expect(human.code).toBe(3);
    expect(human.stderr).toMatch(/portraits/);
  });

  it('a storage archive missing a file (archive and sidecar rewritten, so only the manifest check sees it)', async () => {
    const a = app();
    const b = await create(a, 'storage', '--compression', 'gzip');
    const archive = path.join(a.backupDir, 'storage', b.sidecar.backup_path);
    await dropFromTarGz(archive, 'storage/markers/marker.patt');
    resealSidecar(b.sidecarPath, archive, (s) => {
      s.file_count -= 1;
      s.entry_count -= 1;
    });
    const verify = await run(['verify', '--latest', ...a.flags], { cwd: a.cwd });
    expect(verify.code, `verify alone does not see it: ${describeRun(verify)}`).toBe(0);
    const { r, doc } = await drill(a, ['--type', 'storage']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(doc.problems.join()).toMatch(/lacks "storage\/markers\/marker\.patt", which the manifest says it holds/);
    expect(scratchLeft(a)).toEqual([]);
  });

  it('a bit flip in a part', async () => {
    const a = app();
    const b = await create(a, 'storage', '--split-size', '0.25');
    expect(b.sidecar.parts.length).toBeGreaterThan(2);
    flipByte(path.join(a.backupDir, 'storage', b.sidecar.parts[1].file));
    const { r, doc } = await drill(a, ['--type', 'storage']);
    expect(r.code, describeRun(r)).toBe(3);
    expect(doc.problems.join()).toMatch(new RegExp(`storage backup ${b.id} failed verification: .*${b.sidecar.parts[1].file.replace(/\./g, '\\.')}: checksum mismatch`));
  });

  it('a remote object deleted (drill --from a file:// remote)', async () => {
    const a = app();
    const full = await create(a, 'full');
    const remoteDir = tempDir('vb-drill-remote-');
    dirs.push(remoteDir);
    const url = pathToFileURL(remoteDir).href;
    const synced = await run(['sync', '--remote', url, ...a.flags], { cwd: a.cwd });
    expect(synced.code, describeRun(synced)).toBe(0);

    const good = await drill(a, ['--from', url]);
    expect(good.r.code, describeRun(good.r)).toBe(0);
    expect(good.doc).toMatchObject({ result: 'passed', source: url, backup: { type: 'full', id: full.id } });
    expect(good.doc.bytes.downloaded).toBeGreaterThan(1024 * 1024);
    expect(good.doc.timings_ms.download).toBeGreaterThanOrEqual(0);

    const dbFile = path.join(remoteDir, 'database', `db_backup_${full.sidecar.database}.db`);
    expect(fs.existsSync(dbFile)).toBe(true);
    fs.rmSync(dbFile);
    const { r, doc } = await drill(a, ['--from', url]);
    expect(r.code, describeRun(r)).toBe(3);
    expect(doc.result).toBe('failed');
    expect(doc.problems.join()).toMatch(new RegExp(`db_backup_${full.sidecar.database}\\.db`));
    expect(scratchLeft(a)).toEqual([]);
  });
});

describe('drill: free space', () => {
  it('too little free space for the scratch copy exits 5 before writing anything', async (ctx) => {
    const a = app();
    const mnt = path.join(a.cwd, 'small');
    fs.mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) return ctx.skip(`cannot mount a small tmpfs: ${m.stderr.trim()}`);
    try {
      const flags = ['--db-path', a.dbPath, '--storage-path', a.storagePath, '--backup-dir', path.join(mnt, 'backups')];
      const c = await run(['create', '--type', 'full', ...flags], { cwd: a.cwd });
      expect(c.code, describeRun(c)).toBe(0);
      const r = await run(['drill', '--json', ...flags], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(5);
      expect(parseJsonStdout<Doc>(r).error.message).toMatch(/not enough free space at .* for the drill's scratch copy/);
      expect(fs.readdirSync(path.join(mnt, 'backups')).filter((n) => n.startsWith('.drill-'))).toEqual([]);
    } finally {
      spawnSync('umount', ['-l', mnt]);
    }
  });
});
