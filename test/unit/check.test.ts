import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BackupType } from '../../src/catalog/sidecar.js';
import { readStatus, recordRun, STATUS_FILE } from '../../src/catalog/status.js';
import { BackupError } from '../../src/errors.js';
import { checkBackups, enabledTypes } from '../../src/ops/check.js';
import { registerSecret } from '../../src/secrets.js';

const H = 3_600_000;
const NOW = new Date('2024-03-10T06:00:00Z');
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-check-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const PREFIX: Record<BackupType, string> = { database: 'db_backup_', storage: 'storage_backup_', full: 'full_backup_' };
const idAt = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);

/** Writes a backup the way the tool does: data file(s), then the sidecar. */
function writeBackup(type: BackupType, ageHours: number, opts: { dropArtifact?: boolean; components?: { database?: string; storage?: string } } = {}): string {
  const created = new Date(NOW.getTime() - ageHours * H);
  const id = idAt(created);
  const tdir = path.join(dir, type);
  fs.mkdirSync(tdir, { recursive: true });
  const base = PREFIX[type] + id;
  const sidecar: Record<string, unknown> = { format: 1, tool: { name: 'vertex-backup', version: 't' }, id, type, timestamp: id, created_at: created.toISOString(), duration_ms: 5 };
  if (type === 'full') {
    Object.assign(sidecar, { status: 'ok', database: opts.components?.database ?? null, storage: opts.components?.storage ?? null });
  } else {
    const file = `${base}${type === 'database' ? '.db' : '.tar.gz'}`;
    const data = Buffer.alloc(100, 1);
    if (!opts.dropArtifact) fs.writeFileSync(path.join(tdir, file), data);
    Object.assign(sidecar, { backup_path: file, file_size: data.length, checksum: 'a'.repeat(64), compression: 'gzip' });
  }
  fs.writeFileSync(path.join(tdir, `${base}.json`), JSON.stringify(sidecar));
  return id;
}

function fullSet(ageHours: number): string {
  const database = writeBackup('database', ageHours);
  const storage = writeBackup('storage', ageHours);
  return writeBackup('full', ageHours, { components: { database, storage } });
}

const ALL: BackupType[] = ['full', 'database', 'storage'];

describe('check', () => {
  it('fails when the backup directory does not exist', async () => {
    const r = await checkBackups({ backupDir: path.join(dir, 'nope'), maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.ok).toBe(false);
    expect(r.reasons[0]).toContain('does not exist');
  });

  it('passes with a fresh ok backup of every type', async () => {
    const id = fullSet(3);
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.reasons).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.types.map((t) => [t.type, t.newest_id, t.age_seconds])).toEqual([
      ['full', id, (3 * H) / 1000],
      ['database', id, (3 * H) / 1000],
      ['storage', id, (3 * H) / 1000],
    ]);
  });

  it('fails when the newest ok backup is older than the limit, naming type and age', async () => {
    fullSet(30);
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.ok).toBe(false);
    expect(r.reasons).toHaveLength(3);
    expect(r.reasons[0]).toMatch(/^newest ok full backup \d{8}_\d{6} is 1d 6h old \(limit 1d 2h\)$/);
    expect((await checkBackups({ backupDir: dir, maxAgeMs: 48 * H, types: ALL, now: NOW })).ok).toBe(true);
  });

  it('ignores a damaged newer backup and judges the newest ok one', async () => {
    writeBackup('database', 40);
    writeBackup('database', 1, { dropArtifact: true });
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ['database'], now: NOW });
    expect(r.ok).toBe(false);
    expect(r.types[0].age_seconds).toBe((40 * H) / 1000);
    // a full backup whose component is gone is not ok either
    const db = writeBackup('database', 2, { dropArtifact: true });
    writeBackup('full', 2, { components: { database: db } });
    const f = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ['full'], now: NOW });
    expect(f.ok).toBe(false);
    expect(f.reasons[0]).toContain('no ok full backup');
  });

  it('fails when the last recorded run failed, and passes again after a success', async () => {
    fullSet(1);
    await recordRun(dir, { command: 'create', type: 'full', ok: false, exit_code: 5, duration_ms: 1200, error: 'not enough disk space at /b' }, NOW);
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.ok).toBe(false);
    expect(r.reasons).toEqual([`last create --type full failed at ${NOW.toISOString()} (exit 5): not enough disk space at /b`]);

    await recordRun(dir, { command: 'create', type: 'full', ok: true, exit_code: 0, duration_ms: 900, backup_id: 'x' }, NOW);
    expect((await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW })).ok).toBe(true);
  });

  it('considers rotate and verify runs unless one type is asked about', async () => {
    fullSet(1);
    await recordRun(dir, { command: 'rotate', ok: false, exit_code: 1, duration_ms: 10, error: 'permission denied' }, NOW);
    expect((await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW })).reasons[0]).toContain('last rotate failed');
    expect((await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ['database'], includeOtherRuns: false, now: NOW })).ok).toBe(true);
  });

  it('reports an unreadable status file', async () => {
    fullSet(1);
    fs.writeFileSync(path.join(dir, STATUS_FILE), '{not json');
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.ok).toBe(false);
    expect(r.reasons[0]).toContain('not a valid status file');
  });

  it('reports a status file whose records are malformed, naming the field (not a crash later)', async () => {
    fullSet(1);
    await recordRun(dir, { command: 'rotate', ok: true, exit_code: 0, duration_ms: 5 }, NOW);
    const file = path.join(dir, STATUS_FILE);
    const data = JSON.parse(fs.readFileSync(file, 'utf8'));
    data.runs.rotate.ok = 'yes';
    fs.writeFileSync(file, JSON.stringify(data));
    const r = await checkBackups({ backupDir: dir, maxAgeMs: 26 * H, types: ALL, now: NOW });
    expect(r.ok).toBe(false);
    expect(r.reasons[0]).toMatch(/not a valid status file \(runs\.rotate\.ok: .*boolean/);
  });

  it('checks the enabled types', () => {
    expect(enabledTypes({})).toEqual(['full', 'database', 'storage']);
    expect(enabledTypes({ BACKUP_STORAGE_ENABLED: 'false', BACKUP_FULL_ENABLED: 'no' })).toEqual(['database']);
    expect(() => enabledTypes({ BACKUP_FULL_ENABLED: 'perhaps' })).toThrow(BackupError);
  });
});

describe('status.json', () => {
  it('records the last run per command, atomically and privately', async () => {
    await recordRun(dir, { command: 'create', type: 'database', ok: true, exit_code: 0, duration_ms: 1500, backup_id: 'a', size_bytes: 10 }, NOW);
    await recordRun(dir, { command: 'rotate', ok: true, exit_code: 0, duration_ms: 5 }, NOW);
    const { status } = await readStatus(dir);
    expect(Object.keys(status!.runs).sort()).toEqual(['create:database', 'rotate']);
    expect(status!.last_run!.command).toBe('rotate');
    expect(status!.runs['create:database']).toMatchObject({ ok: true, started_at: new Date(NOW.getTime() - 1500).toISOString(), finished_at: NOW.toISOString(), pid: process.pid });
    expect(fs.statSync(path.join(dir, STATUS_FILE)).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).filter((f) => f.includes('tmp'))).toEqual([]);
  });

  it('keeps secrets and stack lines out, and never creates a missing backup directory', async () => {
    registerSecret('s3cr3t-T0KEN-value');
    await recordRun(dir, { command: 'create', type: 'full', ok: false, exit_code: 1, duration_ms: 1, error: 'upload to https://x/s3cr3t-T0KEN-value failed\n    at foo (bar.js:1)' });
    const text = fs.readFileSync(path.join(dir, STATUS_FILE), 'utf8');
    expect(text).not.toContain('s3cr3t-T0KEN-value');
    expect(text).toContain('upload to https://x/*** failed');
    expect(text).not.toContain('bar.js');
    expect(await recordRun(path.join(dir, 'missing'), { command: 'rotate', ok: true, exit_code: 0, duration_ms: 1 })).toBeNull();
    expect(fs.existsSync(path.join(dir, 'missing'))).toBe(false);
  });

  it('replaces a corrupt status file', async () => {
    fs.writeFileSync(path.join(dir, STATUS_FILE), 'garbage');
    expect((await readStatus(dir)).error).toBeDefined();
    await recordRun(dir, { command: 'verify', ok: true, exit_code: 0, duration_ms: 1 });
    expect((await readStatus(dir)).status!.runs.verify.ok).toBe(true);
  });
});
