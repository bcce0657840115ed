/**
 * Issue 2, item 1: what `create` writes is readable by the real tools (GNU tar, sqlite3, sha256sum)
 * and reproduces the source exactly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run, sh, type RunResult } from '../helpers/cli.js';
import { needs } from '../helpers/optional.js';
import { type AppFixture, makeApp, modesUnder, rmrf, sha256sum, snapshot, sqlite, tempDir } from '../helpers/fixtures.js';

interface CreatedJson {
  ok: boolean;
  type: string;
  id: string;
  status: string;
  backups: { type: string; id: string; sidecar_path: string; files: string[]; size_bytes: number; checksum?: string }[];
}

type Sidecar = Record<string, any>;

let app: AppFixture;
const scratch: string[] = [];
const scratchDir = () => {
  const d = tempDir('vb-e2e-x-');
  scratch.push(d);
  return d;
};

beforeAll(() => {
  // leaveWal: committed rows sit in the -wal file, as with a running application
  app = makeApp({ journalMode: 'wal', leaveWal: true, randomBytes: 3 * 1024 * 1024 });
});

afterAll(() => {
  rmrf(app?.cwd);
  for (const d of scratch) rmrf(d);
});

function extractWithTar(archive: string, flags = '-xf'): string {
  const out = scratchDir();
  sh('tar', [flags, archive, '-C', out]);
  return out;
}

/**
 * diff -r, then content, type, mode, file mtimes and link targets path by path. Directory mtimes are
 * checked on their own (one test below) so that one defect does not hide the others.
 */
function expectSameTree(source: string, copy: string, exclude?: (rel: string) => boolean): void {
  if (!exclude) {
    const d = sh('diff', ['-r', '--no-dereference', source, copy], { allowFail: true });
    expect(d.code, `diff -r ${source} ${copy}:\n${d.stdout}${d.stderr}`).toBe(0);
  }
  expect(snapshot(copy, { dirTimes: false })).toEqual(snapshot(source, { exclude, dirTimes: false }));
}

function dirTimes(root: string): Record<string, number | undefined> {
  return Object.fromEntries(
    Object.entries(snapshot(root))
      .filter(([, n]) => n.type === 'dir')
      .map(([rel, n]) => [rel, n.mtime]),
  );
}

describe('create --type full: a round trip through the real tools', () => {
  let result: RunResult;
  let json: CreatedJson;
  const byType = (t: string) => json.backups.find((b) => b.type === t)!;
  const sidecarOf = (t: string): Sidecar => readJson(byType(t).sidecar_path);
  const artifactOf = (t: string) => {
    const sc = sidecarOf(t);
    return path.join(path.dirname(byType(t).sidecar_path), sc.backup_path);
  };

  beforeAll(async () => {
    result = await run(['create', '--type', 'full', '--json', ...app.flags], { cwd: app.cwd });
  });

  it('exits 0 and --json names the backups it made', () => {
    expect(result.code, describeRun(result)).toBe(0);
    json = parseJsonStdout<CreatedJson>(result);
    expect(json.ok).toBe(true);
    expect(json.type).toBe('full');
    expect(json.status).toBe('ok');
    expect(json.id).toMatch(/^\d{8}_\d{6}(_\d+)?$/);
    expect(json.backups.map((b) => b.type).sort()).toEqual(['database', 'full', 'storage']);
    for (const b of json.backups) {
      expect(b.id).toBe(json.id);
      expect(fs.existsSync(b.sidecar_path), b.sidecar_path).toBe(true);
      for (const f of b.files) expect(fs.existsSync(f), f).toBe(true);
    }
    // the seed's layout
    expect(path.relative(app.backupDir, byType('database').sidecar_path)).toBe(`database/db_backup_${json.id}.json`);
    expect(path.relative(app.backupDir, byType('storage').sidecar_path)).toBe(`storage/storage_backup_${json.id}.json`);
    expect(path.relative(app.backupDir, byType('full').sidecar_path)).toBe(`full/full_backup_${json.id}.json`);
    expect(fs.existsSync(path.join(app.backupDir, 'database', `db_backup_${json.id}.db`))).toBe(true);
    expect(fs.existsSync(path.join(app.backupDir, 'storage', `storage_backup_${json.id}.tar.gz`))).toBe(true);
  });

  it('GNU tar -xf extracts the storage archive identical to the source (content, links, modes, file mtimes)', () => {
    const out = extractWithTar(artifactOf('storage'));
    expect(fs.readdirSync(out)).toEqual(['storage']);
    expectSameTree(app.storagePath, path.join(out, 'storage'));
    // the awkward entries are really there
    expect(fs.readlinkSync(path.join(out, 'storage', 'link to photo'))).toBe('images/фото 1.jpg');
    expect(fs.readlinkSync(path.join(out, 'storage', 'dangling'))).toBe('does-not-exist');
    expect(fs.readdirSync(path.join(out, 'storage', 'empty dir'))).toEqual([]);
    expect(fs.statSync(path.join(out, 'storage', 'scripts/run.sh')).mode & 0o777).toBe(0o755);
    expect(fs.statSync(path.join(out, 'storage', 'images/фото 1.jpg')).mode & 0o777).toBe(0o640);
  });

  it('GNU tar -xf restores directory mtimes too (a directory\'s entries follow its header)', () => {
    const out = extractWithTar(artifactOf('storage'));
    expect(dirTimes(path.join(out, 'storage'))).toEqual(dirTimes(app.storagePath));
  });

  it('the database copy passes sqlite3 PRAGMA integrity_check and holds every row (those in the WAL too)', () => {
    const copy = path.join(scratchDir(), 'copy.db');
    fs.copyFileSync(artifactOf('database'), copy);
    expect(sqlite(copy, 'PRAGMA integrity_check')).toBe('ok');
    expect(sqlite(copy, "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type='table' ORDER BY name)")).toBe(
      'clients,portraits,scan_events',
    );
    for (const [table, n] of Object.entries(app.rows)) {
      expect(Number(sqlite(copy, `SELECT count(*) FROM ${table}`)), table).toBe(n);
      expect(Number(sqlite(app.dbPath, `SELECT count(*) FROM ${table}`)), `source ${table}`).toBe(n);
    }
    expect(sqlite(copy, 'SELECT name FROM clients WHERE id = 3')).toBe('Клиент 3');
    // a standalone file: it needs no -wal beside it
    expect(fs.existsSync(`${artifactOf('database')}-wal`)).toBe(false);
  });

  it('sha256sum of every artifact equals the checksum and size in its sidecar', () => {
    for (const t of ['database', 'storage']) {
      const sc = sidecarOf(t);
      const file = artifactOf(t);
      expect(sha256sum(file), t).toBe(sc.checksum);
      expect(fs.statSync(file).size, t).toBe(sc.file_size);
      expect(byType(t).checksum).toBe(sc.checksum);
    }
  });

  it('backup files are mode 0600 and directories 0700', () => {
    const entries = modesUnder(app.backupDir);
    expect(entries.length).toBeGreaterThan(6);
    const wrong = entries.filter((e) => e.mode !== (e.dir ? 0o700 : 0o600)).map((e) => `${e.path} ${e.mode.toString(8)}`);
    expect(wrong).toEqual([]);
  });

  it('sidecars carry every documented field', () => {
    const db = sidecarOf('database');
    const st = sidecarOf('storage');
    const full = sidecarOf('full');
    for (const sc of [db, st, full]) {
      expect(sc.format).toBe(1);
      expect(sc.tool).toMatchObject({ name: 'vertex-backup', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
      expect(sc.id).toBe(json.id);
      expect(sc.timestamp).toBe(json.id.slice(0, 15));
      expect(Number.isNaN(Date.parse(sc.created_at))).toBe(false);
      expect(sc.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/);
      expect(typeof sc.duration_ms).toBe('number');
    }
    expect(db.type).toBe('database');
    expect(st.type).toBe('storage');
    expect(full.type).toBe('full');
    for (const sc of [db, st]) {
      expect(typeof sc.original_path).toBe('string');
      expect(typeof sc.backup_path).toBe('string');
      expect(sc.file_size).toBeGreaterThan(0);
      expect(sc.checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(typeof sc.compression).toBe('string');
    }
    expect(db.original_path).toBe(app.dbPath);
    expect(st.original_path).toBe(app.storagePath);
    expect(db.backup_path).toBe(`db_backup_${json.id}.db`);
    expect(st.backup_path).toBe(`storage_backup_${json.id}.tar.gz`);
    expect(st.compression).toBe('gzip');
    // regular files in the fixture: 10
    expect(st.file_count).toBe(10);
    expect(db.sqlite).toMatchObject({ integrity: 'ok', journal_mode: 'wal' });
    expect(db.sqlite.page_size).toBe(Number(sqlite(app.dbPath, 'PRAGMA page_size')));
    expect(db.sqlite.page_count).toBe(fs.statSync(artifactOf('database')).size / db.sqlite.page_size);
    expect(full.database).toBe(json.id);
    expect(full.storage).toBe(json.id);
    expect(full.status).toBe('ok');
  });

  it('verify accepts what create wrote', async () => {
    const r = await run(['verify', json.id, '--backup-dir', app.backupDir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
  });
});

// zstd, xz and bzip2 are programs the user may not have: [codec, extension, magic, Debian package]
const CODECS: [string, string, (b: Buffer) => boolean, string?][] = [
  ['none', '.tar', (b) => b.subarray(257, 262).toString('latin1') === 'ustar'],
  ['gzip', '.tar.gz', (b) => b[0] === 0x1f && b[1] === 0x8b],
  ['zstd', '.tar.zst', (b) => b.readUInt32LE(0) === 0xfd2fb528, 'zstd'],
  ['xz', '.tar.xz', (b) => b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz-utils'],
  ['bzip2', '.tar.bz2', (b) => b.subarray(0, 3).toString('latin1') === 'BZh', 'bzip2'],
];

describe('every codec writes an archive plain `tar -xf` reads', () => {
  for (const [codec, ext, magic, pkg] of CODECS) {
    (pkg ? needs(codec, pkg).it : it)(`--compression ${codec} → ${ext}`, async () => {
      const backupDir = path.join(scratchDir(), 'backups');
      const r = await run(['create', '--type', 'storage', '--compression', codec, '--json', '--storage-path', app.storagePath, '--backup-dir', backupDir], {
        cwd: app.cwd,
      });
      expect(r.code, describeRun(r)).toBe(0);
      const json = parseJsonStdout<CreatedJson>(r);
      const archive = path.join(backupDir, 'storage', `storage_backup_${json.id}${ext}`);
      expect(fs.existsSync(archive), `${archive} exists`).toBe(true);
      const head = Buffer.alloc(512);
      const fd = fs.openSync(archive, 'r');
      fs.readSync(fd, head, 0, 512, 0);
      fs.closeSync(fd);
      expect(magic(head), `${codec} magic bytes`).toBe(true);
      const sc = readJson(path.join(backupDir, 'storage', `storage_backup_${json.id}.json`));
      expect(sc.compression).toBe(codec);
      expect(sha256sum(archive)).toBe(sc.checksum);
      const out = extractWithTar(archive);
      expectSameTree(app.storagePath, path.join(out, 'storage'));
    });
  }
});

describe('--exclude', () => {
  it('leaves matching files and directories out of the archive, and nothing else', async () => {
    const backupDir = path.join(scratchDir(), 'backups');
    const r = await run(
      ['create', '--type', 'storage', '--exclude', '*.tmp', '--exclude', 'cache', '--json', '--storage-path', app.storagePath, '--backup-dir', backupDir],
      { cwd: app.cwd },
    );
    expect(r.code, describeRun(r)).toBe(0);
    const json = parseJsonStdout<CreatedJson>(r);
    const out = extractWithTar(path.join(backupDir, 'storage', `storage_backup_${json.id}.tar.gz`));
    const excluded = (rel: string) => rel.endsWith('.tmp') || rel === 'cache' || rel.startsWith('cache/');
    expect(fs.existsSync(path.join(out, 'storage', 'notes.tmp'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'storage', 'cache'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'storage', 'videos', 'clip 01.mp4'))).toBe(true);
    expectSameTree(app.storagePath, path.join(out, 'storage'), excluded);
    const sc = readJson(path.join(backupDir, 'storage', `storage_backup_${json.id}.json`));
    expect(sc.file_count).toBe(8);
  });
});

describe('--split-size', () => {
  it('splits while writing into .part001…; cat of the parts is the archive tar -xzf - reads', async () => {
    const backupDir = path.join(scratchDir(), 'backups');
    const r = await run(['create', '--type', 'storage', '--split-size', '0.5', '--json', '--storage-path', app.storagePath, '--backup-dir', backupDir], {
      cwd: app.cwd,
    });
    expect(r.code, describeRun(r)).toBe(0);
    const json = parseJsonStdout<CreatedJson>(r);
    const dir = path.join(backupDir, 'storage');
    const base = `storage_backup_${json.id}.tar.gz`;
    const sc = readJson<Sidecar>(path.join(dir, `storage_backup_${json.id}.json`));
    const names = fs.readdirSync(dir).filter((n) => n.startsWith(base)).sort();
    const partSize = 512 * 1024;
    // about 3 MiB of random data: at least 6 parts of 0.5 MiB
    expect(names.length).toBeGreaterThanOrEqual(6);
    expect(names).toEqual(names.map((_, i) => `${base}.part${String(i + 1).padStart(3, '0')}`));
    expect(fs.existsSync(path.join(dir, base)), 'no unsplit copy beside the parts').toBe(false);
    expect(sc.backup_path).toBe(base);
    expect(sc.parts.map((p: { file: string }) => p.file)).toEqual(names);
    let total = 0;
    names.forEach((n, i) => {
      const file = path.join(dir, n);
      const size = fs.statSync(file).size;
      total += size;
      if (i < names.length - 1) expect(size, n).toBe(partSize);
      else expect(size).toBeLessThanOrEqual(partSize);
      expect(sc.parts[i].size).toBe(size);
      expect(sha256sum(file), n).toBe(sc.parts[i].checksum);
    });
    expect(sc.file_size).toBe(total);
    const whole = path.join(scratchDir(), 'joined.tar.gz');
    sh('sh', ['-c', 'cat "$@" > "$0"', whole, ...names.map((n) => path.join(dir, n))]);
    expect(fs.statSync(whole).size).toBe(total);
    expect(sha256sum(whole)).toBe(sc.checksum);
    // the documented manual restore: cat the parts into tar -xzf -
    const out = scratchDir();
    sh('sh', ['-c', `cat "${dir}/${base}".part* | tar -xzf - -C "${out}"`]);
    expectSameTree(app.storagePath, path.join(out, 'storage'));
    const v = await run(['verify', '--all', '--backup-dir', backupDir], { cwd: app.cwd });
    expect(v.code, describeRun(v)).toBe(0);
  });
});

describe('ids', () => {
  it('a second backup in the same second gets a _2 suffix and overwrites nothing', async () => {
    const backupDir = path.join(scratchDir(), 'backups');
    // two runs at one clock reading: a loaded machine cannot be relied on to start two runs in one second
    const { resolveConfig } = await import('../../src/config.js');
    const { createBackup } = await import('../../src/ops/create.js');
    const cfg = resolveConfig({ backupDir, dbPath: app.dbPath }, { ...process.env }, app.cwd);
    const now = () => new Date('2026-06-01T02:00:00.400Z');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createBackup(cfg, { type: 'database', now })).id);
    expect(ids).toEqual(['20260601_020000', '20260601_020000_2', '20260601_020000_3']);
    // the binary: a run at a later second takes its own id; every backup keeps its own files
    const r = await run(['create', '--type', 'database', '--json', '--db-path', app.dbPath, '--backup-dir', backupDir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    ids.push(parseJsonStdout<CreatedJson>(r).id);
    expect(ids[3]).toMatch(/^\d{8}_\d{6}$/);
    for (const id of ids) {
      expect(fs.existsSync(path.join(backupDir, 'database', `db_backup_${id}.db`)), id).toBe(true);
      expect(readJson(path.join(backupDir, 'database', `db_backup_${id}.json`)).id).toBe(id);
    }
    const v = await run(['verify', '--all', '--json', '--backup-dir', backupDir], { cwd: app.cwd });
    expect(v.code, describeRun(v)).toBe(0);
    expect(parseJsonStdout<{ results: unknown[] }>(v).results.length).toBe(ids.length);
  });
});

