/**
 * Issue 2, item 4 (promise: damage is found): each kind of damage makes `verify` exit 3 naming the
 * backup and the reason, and `list` reports it instead of crashing or calling it ok.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, sh } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf } from '../helpers/fixtures.js';

interface ListEntry {
  type: string;
  id: string;
  status: string;
  reason: string | null;
}
interface VerifyReport {
  ok: boolean;
  results: { type: string; id: string; ok: boolean; problems: string[] }[];
}

let app: AppFixture;
let pristine: string;
let fullId: string;
let splitId: string;
let n = 0;

beforeAll(async () => {
  app = makeApp({ randomBytes: 1024 * 1024 });
  pristine = path.join(app.cwd, 'pristine');
  const base = ['--db-path', app.dbPath, '--storage-path', app.storagePath, '--backup-dir', pristine];
  const f = await run(['create', '--type', 'full', '--json', ...base], { cwd: app.cwd });
  expect(f.code, describeRun(f)).toBe(0);
  fullId = parseJsonStdout<{ id: string }>(f).id;
  const s = await run(['create', '--type', 'storage', '--full', '--split-size', '0.25', '--json', ...base], { cwd: app.cwd });
  expect(s.code, describeRun(s)).toBe(0);
  splitId = parseJsonStdout<{ id: string }>(s).id;
  const v = await run(['verify', '--all', '--backup-dir', pristine], { cwd: app.cwd });
  expect(v.code, `the undamaged backups verify: ${describeRun(v)}`).toBe(0);
});
afterAll(() => rmrf(app?.cwd));

/** A copy of the pristine backup directory for one case. */
function copyOfBackups(): string {
  const dir = path.join(app.cwd, `case-${++n}`);
  sh('cp', ['-a', pristine, dir]);
  return dir;
}

const p = {
  db: (dir: string, id: string) => path.join(dir, 'database', `db_backup_${id}.db`),
  dbJson: (dir: string, id: string) => path.join(dir, 'database', `db_backup_${id}.json`),
  archive: (dir: string, id: string) => path.join(dir, 'storage', `storage_backup_${id}.tar.gz`),
  storageJson: (dir: string, id: string) => path.join(dir, 'storage', `storage_backup_${id}.json`),
  part: (dir: string, id: string, k: number) => path.join(dir, 'storage', `storage_backup_${id}.tar.gz.part${String(k).padStart(3, '0')}`),
};

async function listJson(dir: string): Promise<ListEntry[]> {
  const r = await run(['list', '--json', '--backup-dir', dir], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<ListEntry[]>(r);
}

async function expectListShows(dir: string, type: string, id: string, status: string, reason?: RegExp): Promise<void> {
  const entries = await listJson(dir);
  const e = entries.find((x) => x.type === type && x.id === id);
  expect(e, `list has ${type} ${id}: ${JSON.stringify(entries)}`).toBeDefined();
  expect(e!.status, JSON.stringify(e)).toBe(status);
  if (reason) expect(e!.reason ?? '').toMatch(reason);
  // and the human table does not crash either
  const h = await run(['list', '--backup-dir', dir], { cwd: app.cwd });
  expect(h.code, describeRun(h)).toBe(0);
  expect(h.stdout).toContain(id);
  expect(h.stdout).toContain(status);
  expect(h.stderr).not.toMatch(/^\s+at /m);
}

async function expectVerifyFails(dir: string, ref: string, reason: RegExp): Promise<void> {
  const r = await run(['verify', ref, '--backup-dir', dir], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(3);
  const all = r.stdout + r.stderr;
  expect(all).toContain(ref);
  expect(all).toMatch(reason);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const j = await run(['verify', '--all', '--json', '--backup-dir', dir], { cwd: app.cwd });
  expect(j.code, describeRun(j)).toBe(3);
  const report = parseJsonStdout<VerifyReport>(j);
  expect(report.ok).toBe(false);
  const bad = report.results.filter((x) => !x.ok);
  expect(bad.some((x) => x.id === ref && x.problems.some((pr) => reason.test(pr))), JSON.stringify(report.results)).toBe(true);
}

describe('verify finds damage and exits 3; list reports it', () => {
  it('a flipped byte in a database copy', async () => {
    const dir = copyOfBackups();
    flipByte(p.db(dir, fullId));
    await expectVerifyFails(dir, fullId, /checksum/i);
    const r = await run(['verify', '--type', 'database', '--all', '--json', '--backup-dir', dir], { cwd: app.cwd });
    expect(r.code).toBe(3);
    expect(parseJsonStdout<VerifyReport>(r).results.find((x) => x.id === fullId)?.ok).toBe(false);
  });

  it('a flipped byte in an archive', async () => {
    const dir = copyOfBackups();
    flipByte(p.archive(dir, fullId));
    await expectVerifyFails(dir, fullId, /checksum|cannot be read|archive/i);
  });

  it('a truncated archive', async () => {
    const dir = copyOfBackups();
    const file = p.archive(dir, fullId);
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    await expectVerifyFails(dir, fullId, /size|truncat|cannot be read/i);
    await expectListShows(dir, 'storage', fullId, 'damaged', /bytes|size/);
    await expectListShows(dir, 'full', fullId, 'damaged', /storage/);
  });

  it('a missing part of a split archive', async () => {
    const dir = copyOfBackups();
    expect(fs.existsSync(p.part(dir, splitId, 3))).toBe(true);
    fs.rmSync(p.part(dir, splitId, 2));
    await expectVerifyFails(dir, splitId, /missing.*part002/);
    await expectListShows(dir, 'storage', splitId, 'damaged', /part002/);
  });

  it('a truncated part of a split archive', async () => {
    const dir = copyOfBackups();
    fs.truncateSync(p.part(dir, splitId, 1), 1000);
    await expectVerifyFails(dir, splitId, /part001/);
    await expectListShows(dir, 'storage', splitId, 'damaged', /part001/);
  });

  it('a flipped byte in one part of a split archive', async () => {
    const dir = copyOfBackups();
    flipByte(p.part(dir, splitId, 2));
    await expectVerifyFails(dir, splitId, /part002.*checksum|checksum/);
  });

  it('a corrupt sidecar (not JSON)', async () => {
    const dir = copyOfBackups();
    const sc = p.storageJson(dir, splitId);
    fs.writeFileSync(sc, fs.readFileSync(sc, 'utf8').slice(0, 40));
    await expectVerifyFails(dir, splitId, /JSON|metadata/i);
    await expectListShows(dir, 'storage', splitId, 'damaged', /JSON/);
  });

  it('a sidecar whose checksum was altered', async () => {
    const dir = copyOfBackups();
    const sc = p.dbJson(dir, fullId);
    const data = JSON.parse(fs.readFileSync(sc, 'utf8'));
    data.checksum = data.checksum.replace(/^./, (c: string) => (c === '0' ? '1' : '0'));
    fs.writeFileSync(sc, JSON.stringify(data));
    await expectVerifyFails(dir, fullId, /checksum/i);
  });

  it('a full backup with a component removed', async () => {
    const dir = copyOfBackups();
    fs.rmSync(p.db(dir, fullId));
    fs.rmSync(p.dbJson(dir, fullId));
    await expectVerifyFails(dir, fullId, /database component.*missing|missing/i);
    await expectListShows(dir, 'full', fullId, 'damaged', /database/);
  });

  it('a data file without its sidecar (a killed run) is incomplete, never ok', async () => {
    const dir = copyOfBackups();
    const orphanId = '20990101_000000';
    fs.copyFileSync(p.db(dir, fullId), p.db(dir, orphanId));
    fs.copyFileSync(p.archive(dir, fullId), p.archive(dir, orphanId));
    // the seed's tar name, with a partial write
    fs.writeFileSync(path.join(dir, 'storage', 'storage_backup_20990101_000001.tar.gz'), Buffer.alloc(1000, 7));
    const entries = await listJson(dir);
    for (const [type, id] of [
      ['database', orphanId],
      ['storage', orphanId],
      ['storage', '20990101_000001'],
    ]) {
      const e = entries.find((x) => x.type === type && x.id === id);
      expect(e, `${type} ${id} listed`).toBeDefined();
      expect(e!.status, `${type} ${id}`).toBe('incomplete');
    }
    await expectListShows(dir, 'database', orphanId, 'incomplete');
    const r = await run(['verify', '--all', '--backup-dir', dir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(3);
    expect(r.stdout + r.stderr).toContain(orphanId);
    const s = await run(['stats', '--json', '--backup-dir', dir], { cwd: app.cwd });
    expect(s.code, describeRun(s)).toBe(0);
    const stats = parseJsonStdout<{ types: { type: string; newest?: { id: string } }[] }>(s);
    // an incomplete backup is never "the newest good one"
    for (const t of stats.types) expect(t.newest?.id ?? '').not.toMatch(/^2099/);
  });
});
