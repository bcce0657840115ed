/**
 * serve's shared listing (src/catalog/catalog-cache.ts) on a real backup directory: concurrent readers
 * share one listing, a backup renamed into place is seen at once, a change in place within the TTL,
 * a sidecar rewritten in place is read again, and invalidate() lists again.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CatalogCache } from '../../src/catalog/catalog-cache.js';
import { listBackups } from '../../src/catalog/local-store.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-catalog-cache-'));
  fs.mkdirSync(path.join(dir, 'database'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A database backup the way the tool writes one: the data file, then the sidecar renamed into place. */
function writeBackup(id: string, createdAt = '2024-03-10T06:00:00.000Z'): { data: string; sidecar: string } {
  const data = path.join(dir, 'database', `db_backup_${id}.db`);
  fs.writeFileSync(data, Buffer.alloc(100, 1));
  const sidecar = path.join(dir, 'database', `db_backup_${id}.json`);
  fs.writeFileSync(`${sidecar}.tmp`, sidecarText(id, createdAt));
  fs.renameSync(`${sidecar}.tmp`, sidecar);
  return { data, sidecar };
}

function sidecarText(id: string, createdAt: string): string {
  return JSON.stringify({
    format: 1,
    tool: { name: 'vertex-backup', version: 't' },
    id,
    type: 'database',
    timestamp: id,
    created_at: createdAt,
    duration_ms: 5,
    backup_path: `db_backup_${id}.db`,
    file_size: 100,
    checksum: 'a'.repeat(64),
  });
}

describe('CatalogCache', () => {
  it('gives concurrent readers one listing, the same as listBackups', async () => {
    for (let h = 10; h < 30; h++) writeBackup(`20240310_${h}0000`);
    const cache = new CatalogCache(dir, 60_000);
    const snaps = await Promise.all(Array.from({ length: 50 }, () => cache.get()));
    expect(new Set(snaps.map((s) => s.generation))).toEqual(new Set([1]));
    expect(new Set(snaps.map((s) => s.entries)).size).toBe(1);
    expect(snaps[0].entries).toEqual(await listBackups(dir));
  });

  it('sees a backup renamed into place at once, long before the TTL', async () => {
    writeBackup('20240310_100000');
    const cache = new CatalogCache(dir, 60_000);
    expect((await cache.get()).entries.map((e) => e.id)).toEqual(['20240310_100000']);
    writeBackup('20240310_110000');
    expect((await cache.get()).entries.map((e) => e.id)).toEqual(['20240310_110000', '20240310_100000']);
  });

  it('reuses a listing while nothing changed, and sees a file truncated in place once the TTL has passed', async () => {
    const { data } = writeBackup('20240310_100000');
    const cache = new CatalogCache(dir, 300);
    const first = await cache.get();
    expect(first.entries[0].status).toBe('ok');
    expect((await cache.get()).generation).toBe(first.generation);
    // damage in place: the directory's mtime does not move
    fs.truncateSync(data, 10);
    await sleep(350);
    const later = await cache.get();
    expect(later.entries[0].status).toBe('damaged');
    expect(later.entries[0].reason).toContain('10 bytes');
  });

  it('reads a sidecar rewritten in place again', async () => {
    const { sidecar } = writeBackup('20240310_100000');
    const cache = new CatalogCache(dir, 50);
    expect((await cache.get()).entries[0].createdAt.toISOString()).toBe('2024-03-10T06:00:00.000Z');
    fs.writeFileSync(sidecar, sidecarText('20240310_100000', '2024-03-10T07:00:00.000Z'));
    await sleep(80);
    expect((await cache.get()).entries[0].createdAt.toISOString()).toBe('2024-03-10T07:00:00.000Z');
  });

  it('lists again after invalidate(), and a reader after it never joins the listing before it', async () => {
    writeBackup('20240310_100000');
    const cache = new CatalogCache(dir, 60_000);
    const before = cache.get();
    cache.invalidate();
    const after = cache.get();
    const [a, b] = await Promise.all([before, after]);
    expect(b.generation).toBeGreaterThan(a.generation);
    expect((await cache.get()).generation).toBe(b.generation);
  });

  it('forgets sidecars that are gone', async () => {
    const { data, sidecar } = writeBackup('20240310_100000');
    writeBackup('20240310_110000');
    const cache = new CatalogCache(dir, 60_000);
    expect((await cache.get()).entries).toHaveLength(2);
    fs.rmSync(sidecar);
    fs.rmSync(data);
    expect((await cache.get()).entries.map((e) => e.id)).toEqual(['20240310_110000']);
  });
});
