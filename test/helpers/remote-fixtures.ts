/**
 * Backups for the remote tests, written in the real on-disk layout (sidecars that pass the catalog's
 * validation, split parts with their own checksums), and the scenarios every remote scheme must pass.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import type { Sidecar } from '../../src/catalog/sidecar.js';
import { fetchRemoteBackup } from '../../src/ops/restore-fetch.js';
import { rotateRemote } from '../../src/ops/rotate.js';
import { verifyRemote } from '../../src/ops/verify.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { type Remote, isTempName } from '../../src/remote/remote.js';
import { type TransferEvent, listRemoteBackups } from '../../src/offsite/transfer.js';
import { tempDir } from './servers.js';

// every directory a scenario makes, removed when it ends: a contract file runs each scenario per
// scheme, and left to the run's root they were half of what a test run left behind
const made: string[] = [];
function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  made.push(dir);
  return dir;
}
function removeScratch(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function writeSidecar(file: string, s: Sidecar): void {
  fs.writeFileSync(file, JSON.stringify(s, null, 2), { mode: 0o600 });
}

function base(type: Sidecar['type'], id: string): Sidecar {
  return {
    format: 1,
    tool: { name: 'vertex-backup', version: 'test' },
    id,
    type,
    timestamp: id.slice(0, 15),
    created_at: new Date(Date.UTC(+id.slice(0, 4), +id.slice(4, 6) - 1, +id.slice(6, 8), +id.slice(9, 11), +id.slice(11, 13), +id.slice(13, 15))).toISOString(),
    duration_ms: 1,
  };
}

/** database + split storage + full sidecar, all with id `id`. Returns every relative path written. */
export function makeBackupSet(backupDir: string, id: string, opts: { dbBytes?: number; partBytes?: number[] } = {}): string[] {
  const dbBytes = opts.dbBytes ?? 64 * 1024;
  const partBytes = opts.partBytes ?? [256 * 1024, 256 * 1024, 100 * 1024];
  for (const d of ['database', 'storage', 'full']) fs.mkdirSync(path.join(backupDir, d), { recursive: true, mode: 0o700 });
  const rels: string[] = [];
  const db = randomBytes(dbBytes);
  const dbName = `db_backup_${id}.db`;
  fs.writeFileSync(path.join(backupDir, 'database', dbName), db, { mode: 0o600 });
  writeSidecar(path.join(backupDir, 'database', `db_backup_${id}.json`), {
    ...base('database', id),
    backup_path: dbName,
    file_size: db.length,
    checksum: sha(db),
  });
  rels.push(`database/${dbName}`, `database/db_backup_${id}.json`);
  const whole = createHash('sha256');
  const parts = partBytes.map((n, i) => {
    const data = randomBytes(n);
    whole.update(data);
    const file = `storage_backup_${id}.tar.gz.part${String(i + 1).padStart(3, '0')}`;
    fs.writeFileSync(path.join(backupDir, 'storage', file), data, { mode: 0o600 });
    rels.push(`storage/${file}`);
    return { file, size: n, checksum: sha(data) };
  });
  writeSidecar(path.join(backupDir, 'storage', `storage_backup_${id}.json`), {
    ...base('storage', id),
    backup_path: `storage_backup_${id}.tar.gz`,
    file_size: partBytes.reduce((a, b) => a + b, 0),
    checksum: whole.digest('hex'),
    compression: 'gzip',
    file_count: 3,
    parts,
  });
  rels.push(`storage/storage_backup_${id}.json`);
  writeSidecar(path.join(backupDir, 'full', `full_backup_${id}.json`), { ...base('full', id), database: id, storage: id, status: 'ok' });
  rels.push(`full/full_backup_${id}.json`);
  return rels;
}

export function ids(n: number, day = 1): string[] {
  return Array.from({ length: n }, (_, i) => `202401${String(day).padStart(2, '0')}_${String(10 + i).padStart(2, '0')}0000`);
}

const FAST_RETRY = { retries: 1, minTimeoutMs: 100 };

export interface ScenarioTarget {
  open: () => Promise<Remote>;
  /** stop the server (or cut the transfer) while an upload is under way */
  interrupt: () => Promise<void>;
  resume: () => Promise<void>;
  /** sizes of the larger storage parts: S3 uses parts above its multipart threshold */
  partBytes?: number[];
}

export interface Measured {
  uploadMs: number;
  downloadMs: number;
  bytes: number;
}

/** sync → list → verify → restore download → a second sync that sends nothing. */
export async function roundTrip(t: ScenarioTarget): Promise<Measured> {
  const backupDir = scratch('rt-local');
  makeBackupSet(backupDir, ids(2)[0]!, { partBytes: t.partBytes });
  makeBackupSet(backupDir, ids(2)[1]!, { partBytes: t.partBytes });
  const remote = await t.open();
  try {
    const t0 = Date.now();
    const first = await syncToRemote(remote, backupDir, FAST_RETRY);
    const uploadMs = Date.now() - t0;
    expect(first.synced.length).toBe(2); // two full backups, components inside
    expect(first.notComplete).toEqual([]);
    const listed = await listRemoteBackups(remote);
    expect(listed.map((b) => `${b.type}:${b.id}:${b.status}`).sort()).toEqual(
      ids(2).flatMap((id) => [`database:${id}:ok`, `full:${id}:ok`, `storage:${id}:ok`]).sort(),
    );
    const v = await verifyRemote(remote, { all: true, ...FAST_RETRY });
    expect(v.ok).toBe(true);
    expect(v.results.length).toBe(6);
    const t1 = Date.now();
    const fetched = await fetchRemoteBackup(remote, ids(2)[1]!, scratch('rt-restore'), FAST_RETRY);
    const downloadMs = Date.now() - t1;
    expect(fetched.type).toBe('full');
    for (const rel of fs.readdirSync(path.join(fetched.dir, 'storage'))) {
      expect(fs.readFileSync(path.join(fetched.dir, 'storage', rel)).equals(fs.readFileSync(path.join(backupDir, 'storage', rel)))).toBe(true);
    }
    expect(fs.existsSync(path.join(fetched.dir, 'full', `full_backup_${ids(2)[1]}.json`))).toBe(true);
    expect(fs.existsSync(path.join(fetched.dir, 'database', `db_backup_${ids(2)[1]}.db`))).toBe(true);
    const events: TransferEvent[] = [];
    const second = await syncToRemote(remote, backupDir, { ...FAST_RETRY, onEvent: (e) => events.push(e) });
    expect(second.synced).toEqual([]);
    expect(events.filter((e) => e.kind === 'upload')).toEqual([]);
    return { uploadMs, downloadMs, bytes: first.bytes };
  } finally {
    await remote.close();
    removeScratch();
  }
}

/**
 * A sync cut off in the middle of the second storage part: nothing at a final name may be short, no
 * sidecar of the unfinished backup may exist; the next sync sends only what is missing.
 */
export async function interruptedSync(t: ScenarioTarget): Promise<void> {
  const backupDir = scratch('int-local');
  const [id] = ids(1, 2);
  const rels = makeBackupSet(backupDir, id!, { partBytes: t.partBytes ?? [512 * 1024, 4 * 1024 * 1024, 512 * 1024] });
  const localSize = (rel: string) => fs.statSync(path.join(backupDir, rel)).size;
  let remote = await t.open();
  const uploadedFirst: string[] = [];
  let interrupted = false;
  const target = `storage/storage_backup_${id}.tar.gz.part002`;
  const err = await syncToRemote(remote, backupDir, {
    retries: 0,
    onEvent: (e) => {
      if (e.kind === 'upload') uploadedFirst.push(e.rel);
      if (e.kind === 'progress' && e.rel === target && !interrupted && e.bytes >= e.size / 4) {
        interrupted = true;
        void t.interrupt();
      }
      if (e.kind === 'start' && e.rel === target && !e.reportsProgress && !interrupted) {
        interrupted = true;
        setTimeout(() => void t.interrupt(), 30);
      }
    },
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(interrupted).toBe(true);
  expect(err).toBeInstanceOf(Error);
  await remote.close().catch(() => {});
  await t.resume();
  remote = await t.open();
  try {
    const present = (await remote.list('')).filter((e) => !isTempName(e.path));
    for (const e of present) {
      expect(rels).toContain(e.path); // no stray object under a final-looking name
      expect(e.size).toBe(localSize(e.path)); // nothing short at a final name
    }
    const presentPaths = present.map((e) => e.path);
    expect(presentPaths).not.toContain(`storage/storage_backup_${id}.json`);
    expect(presentPaths).not.toContain(`full/full_backup_${id}.json`);
    expect(presentPaths).not.toContain(target);
    const events: TransferEvent[] = [];
    await syncToRemote(remote, backupDir, { ...FAST_RETRY, onEvent: (e) => events.push(e) });
    const uploadedSecond = events.filter((e) => e.kind === 'upload').map((e) => e.rel);
    expect([...uploadedSecond].sort()).toEqual(rels.filter((r) => !presentPaths.includes(r)).sort());
    for (const r of uploadedFirst) if (presentPaths.includes(r)) expect(uploadedSecond).not.toContain(r);
    expect(uploadedSecond.at(-1)).toBe(`full/full_backup_${id}.json`);
    expect((await verifyRemote(remote, { ref: id, ...FAST_RETRY })).ok).toBe(true);
  } finally {
    await remote.close();
    removeScratch();
  }
}

/** Flip one byte of a remote part (same size, so only hashing finds it): verify and restore must notice. */
export async function corruptedObject(t: ScenarioTarget): Promise<void> {
  const backupDir = scratch('cor-local');
  const [id] = ids(1, 3);
  makeBackupSet(backupDir, id!);
  const remote = await t.open();
  try {
    await syncToRemote(remote, backupDir, FAST_RETRY);
    const rel = `storage/storage_backup_${id}.tar.gz.part002`;
    const bad = path.join(scratch('cor-bad'), 'part');
    const data = fs.readFileSync(path.join(backupDir, rel));
    data[1000] = (data[1000] ?? 0) ^ 0xff;
    fs.writeFileSync(bad, data);
    await remote.put(rel, bad);
    const v = await verifyRemote(remote, { ref: id, ...FAST_RETRY });
    expect(v.ok).toBe(false);
    const storage = v.results.find((r) => r.type === 'storage')!;
    expect(storage.problems.join('\n')).toMatch(/part002: checksum mismatch/);
    const full = v.results.find((r) => r.type === 'full')!;
    expect(full.ok).toBe(false);
    // the full backup says why, in the same words as a local verify
    expect(full.problems.join('\n')).toMatch(/^storage component \d{8}_\d{6}: .*part002: checksum mismatch/m);
    // a 100% sample is the full check; a sample that happens to miss the part cannot find it, by design
    const sampled = await verifyRemote(remote, { ref: `storage_backup_${id}`, samplePercent: 100, ...FAST_RETRY });
    expect(sampled.ok).toBe(false);
    await expect(fetchRemoteBackup(remote, id!, scratch('cor-restore'), FAST_RETRY)).rejects.toMatchObject({ code: 'DAMAGED' });
  } finally {
    await remote.close();
    removeScratch();
  }
}

/** `sets` backup sets on the remote (default 4), rotate to 2: exactly the two newest of each type stay. */
export async function rotation(t: ScenarioTarget, sets = 4): Promise<void> {
  const backupDir = scratch('rot-local');
  const all = ids(sets, 4);
  for (const id of all) makeBackupSet(backupDir, id, { dbBytes: 1024, partBytes: [2048, 1024] });
  // an orphan part from an interrupted upload, older than the newest good backup: a leftover to remove
  const lone = '20240103_200000';
  const remote = await t.open();
  try {
    await syncToRemote(remote, backupDir, FAST_RETRY);
    const orphan = path.join(scratch('rot-orphan'), 'x');
    fs.writeFileSync(orphan, 'partial');
    await remote.put(`storage/storage_backup_${lone}.tar.gz.part001`, orphan);
    // temp objects of uploads cut off a day ago and a moment ago (that one may be a sync in progress)
    const stale = `storage/.partial-storage_backup_${lone}.tar.gz.part002-1-${(Date.now() - 86_400_000).toString(36)}`;
    const fresh = `storage/.partial-storage_backup_${lone}.tar.gz.part003-1-${Date.now().toString(36)}`;
    await remote.put(stale, orphan);
    await remote.put(fresh, orphan);
    const dry = await rotateRemote(remote, { policy: { keepLast: 2 }, dryRun: true, ...FAST_RETRY });
    expect(dry.deleted.length).toBe((sets - 2) * 3 + 1);
    expect((await listRemoteBackups(remote)).length).toBe(sets * 3 + 1);
    const r = await rotateRemote(remote, { policy: { keepLast: 2 }, ...FAST_RETRY });
    expect(r.deleted.find((d) => d.id === lone)?.status).toBe('incomplete');
    const left = await listRemoteBackups(remote);
    const kept = all.slice(sets - 2);
    expect(left.map((b) => `${b.type}:${b.id}:${b.status}`).sort()).toEqual(
      kept.flatMap((id) => [`database:${id}:ok`, `full:${id}:ok`, `storage:${id}:ok`]).sort(),
    );
    expect(r.deleted.map((d) => `${d.type}:${d.id}`).sort()).toEqual(
      [...all.slice(0, sets - 2).flatMap((id) => [`database:${id}`, `full:${id}`, `storage:${id}`]), `storage:${lone}`].sort(),
    );
    const objects = (await remote.list('')).map((e) => e.path);
    expect(r.staleTemps).toEqual([stale]);
    expect(objects).toContain(fresh);
    expect(objects).not.toContain(stale);
    for (const id of all.slice(0, sets - 2)) expect(objects.some((p) => p.includes(id))).toBe(false);
  } finally {
    await remote.close();
    removeScratch();
  }
}

export interface RemoteContract {
  /** how the store shows in the test names and the measured round trip */
  label: string;
  target: () => ScenarioTarget;
  /** when the store's interruptible form differs (rclone: the WebDAV backend, not the local disk) */
  interruptible?: () => ScenarioTarget;
  /** storage part sizes for the round trip and the interrupted sync (S3: above its multipart threshold) */
  roundTripParts?: number[];
  interruptedParts?: number[];
  rotationSets?: number;
  /** more checks on the store the round trip filled (remote test, remote info) */
  afterRoundTrip?: (t: ScenarioTarget) => Promise<void>;
}

/**
 * What every store must do, one `it` per scenario: a round trip, an interrupted sync that resumes with
 * only what is missing, a corrupted object found by verify and refused by restore, rotation. Each
 * backend's file only says how to reach its server.
 */
export function describeRemoteContract(c: RemoteContract): void {
  it(`${c.label}: round trip: sync, list, verify, download for restore, nothing re-sent`, async () => {
    const t = { ...c.target(), ...(c.roundTripParts ? { partBytes: c.roundTripParts } : {}) };
    console.info(report(c.label, await roundTrip(t)));
    await c.afterRoundTrip?.(t);
  });

  it(`${c.label}: an interrupted sync resumes with only what is missing`, async () => {
    const t = (c.interruptible ?? c.target)();
    await interruptedSync(c.interruptedParts ? { ...t, partBytes: c.interruptedParts } : t);
  });

  it(`${c.label}: verify finds a corrupted remote object`, async () => {
    await corruptedObject(c.target());
  });

  it(`${c.label}: rotation keeps exactly the newest N per type`, async () => {
    await rotation(c.target(), c.rotationSets);
  });
}

export function report(label: string, m: Measured): string {
  const mb = m.bytes / (1024 * 1024);
  return `${label}: ${mb.toFixed(2)} MiB up in ${m.uploadMs} ms (${(mb / (m.uploadMs / 1000)).toFixed(1)} MiB/s), restore download ${m.downloadMs} ms`;
}
