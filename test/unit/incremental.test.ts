/**
 * Issue 15, the pure parts of incremental storage backups: the manifest format and its order, when a
 * new chain starts, what a kept backup pins, and rotation keeping pinned archives.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compareRecords, decodeRecord, deletionOf, encodeRecord, type ManifestRecord, ManifestWriter, readManifest, readView } from '../../src/archive/manifest.js';
import { judgeChains, nextLevel, pinnedByKept } from '../../src/catalog/chain.js';
import { validateSidecar } from '../../src/catalog/sidecar.js';
import { planRetention, type RetentionItem } from '../../src/ops/retention.js';

const rec = (p: string, t: ManifestRecord['t'] = 'f', extra: Partial<ManifestRecord> = {}): ManifestRecord => ({ path: p, t, s: 1, m: 0o644, u: 0, g: 0, mt: '1', ct: '1', i: '1', a: 'A', ...extra });

describe('manifest records', () => {
  it('round-trip any name: tabs, newlines, bytes that are not UTF-8 (U+DC80+byte), and keep the path raw after the tab', () => {
    for (const name of ['storage/a.jpg', 'storage/tab\there\nnl', 'storage/caf\udce9.jpg', 'storage/😀/x']) {
      const buf = encodeRecord(rec(name, 'l', { l: '../caf\udce9' }));
      expect(buf.at(-1)).toBe(0);
      const tab = buf.indexOf(9);
      // the JSON part holds no raw tab, so `cut -f2-` gives the path's exact bytes
      expect(buf.subarray(0, tab).includes(9)).toBe(false);
      expect(decodeRecord(buf.subarray(0, buf.length - 1), 'm')).toEqual(rec(name, 'l', { l: '../caf\udce9' }));
    }
    expect(encodeRecord(rec('storage/caf\udce9')).includes(Buffer.from('caf\xe9', 'latin1'))).toBe(true);
  });

  it('group order: a directory, its files by name, then its subdirectories depth first', () => {
    const shuffled = [rec('s/b/x'), rec('s/a.d', 'd'), rec('s/z'), rec('s/b', 'd'), rec('s', 'd'), rec('s/a.d/f'), rec('s/b/a', 'd')];
    const sorted = [...shuffled].sort(compareRecords).map((r) => `${r.t} ${r.path}`);
    expect(sorted).toEqual(['d s', 'f s/z', 'd s/a.d', 'f s/a.d/f', 'd s/b', 'f s/b/x', 'd s/b/a']);
  });

  it('a written manifest reads back in order, and a changed byte fails its checksum', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-manifest-'));
    try {
      const w = new ManifestWriter(dir, 'm.gz');
      const records = Array.from({ length: 5000 }, (_, i) => rec(`storage/f${String(i).padStart(5, '0')}`, 'f', { h: 'ab'.repeat(32) }));
      for (const r of records) await w.write(r);
      const info = await w.commit();
      expect(info.entries).toBe(5000);
      const back: ManifestRecord[] = [];
      for await (const r of readManifest(path.join(dir, 'm.gz'), info.checksum)) back.push(r);
      expect(back).toEqual(records);
      await expect(async () => {
        for await (const _ of readManifest(path.join(dir, 'm.gz'), '0'.repeat(64))) void _;
      }).rejects.toThrow(/checksum mismatch/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the tree of a chain: level N manifests hold changes, merged oldest to newest (readView)', () => {
  it('the newest record of a path wins, a deletion drops it (a directory with what it held), a type change replaces it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-view-'));
    const write = async (name: string, records: ManifestRecord[]) => {
      const w = new ManifestWriter(dir, name);
      for (const r of records) await w.write(r);
      return { file: path.join(dir, name), checksum: (await w.commit()).checksum };
    };
    try {
      const m0 = await write('0.gz', [rec('s', 'd'), rec('s/a'), rec('s/b'), rec('s/x'), rec('s/d', 'd'), rec('s/d/in'), rec('s/d/sub', 'd'), rec('s/d/sub/deep')]);
      // level 1: a changed, b gone, c new, directory d gone with everything in it
      const m1 = await write('1.gz', [
        rec('s/a', 'f', { a: 'L1' }),
        deletionOf(rec('s/b')),
        rec('s/c', 'f', { a: 'L1' }),
        deletionOf(rec('s/d', 'd')),
        deletionOf(rec('s/d/in')),
        deletionOf(rec('s/d/sub', 'd')),
        deletionOf(rec('s/d/sub/deep')),
      ]);
      // level 2: nothing changed; level 3: x became a directory, d comes back as a file
      const m2 = await write('2.gz', []);
      const m3 = await write('3.gz', [rec('s/d', 'f', { a: 'L3' }), deletionOf(rec('s/x')), rec('s/x', 'd', { a: 'L3' })]);
      const view = async (chain: { file: string; checksum: string }[]) => {
        const out: string[] = [];
        for await (const r of readView(chain)) out.push(`${r.t} ${r.path} ${r.a}`);
        return out;
      };
      expect(await view([m0])).toEqual(['d s A', 'f s/a A', 'f s/b A', 'f s/x A', 'd s/d A', 'f s/d/in A', 'd s/d/sub A', 'f s/d/sub/deep A']);
      expect(await view([m0, m1, m2])).toEqual(['d s A', 'f s/a L1', 'f s/c L1', 'f s/x A']);
      expect(await view([m0, m1, m2, m3])).toEqual(['d s A', 'f s/a L1', 'f s/c L1', 'f s/d L3', 'd s/x L3']);
      // every manifest of the chain is checked against its checksum
      await expect(view([m0, { ...m1, checksum: '0'.repeat(64) }])).rejects.toThrow(/checksum mismatch/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('copy steps for the manual restore close the manifest and are passed over by readers', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-copies-'));
    try {
      const w = new ManifestWriter(dir, 'c.gz');
      await w.write(rec('s/new', 'f', { a: 'B', o: 's/old' }));
      w.copy('s/old', 's/new');
      const info = await w.commit();
      const back: ManifestRecord[] = [];
      for await (const r of readManifest(path.join(dir, 'c.gz'), info.checksum)) back.push(r);
      expect(back).toEqual([rec('s/new', 'f', { a: 'B', o: 's/old' })]);
      const raw = zlib.gunzipSync(fs.readFileSync(path.join(dir, 'c.gz'))).toString('latin1');
      expect(raw.endsWith('{"c":1}\ts/old\0{"c":2}\ts/new\0')).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a deletion record is {"x":1,"t":T} then the path: the manual restore finds deletions with grep -z', () => {
    const b = encodeRecord(deletionOf(rec('storage/gone dir', 'd')));
    expect(b.toString('latin1')).toBe('{"x":1,"t":"d"}\tstorage/gone dir\0');
    expect(decodeRecord(b.subarray(0, b.length - 1), 'm')).toEqual({ path: 'storage/gone dir', t: 'd', x: 1 });
  });
});

describe('when a new chain starts (nextLevel)', () => {
  const now = new Date('2026-01-10T02:00:00Z');
  const base = { id: 'B', created_at: '2026-01-08T02:00:00Z', level: 0, base: 'B', content_bytes: 1000, manifest: {}, references: ['B'], referenced_bytes: { B: 1000 } };
  const opts = { fullEveryMs: 7 * 86_400_000, maxWaste: 0.5, now };
  const find = (list: (typeof base)[]) => (id: string) => list.find((x) => x.id === id);

  it('level N+1 after a healthy chain; 0 when forced, without a previous manifest, or once the base is old', () => {
    const l1 = { ...base, id: 'L1', level: 1, content_bytes: 10, references: ['B', 'L1'], referenced_bytes: { B: 990, L1: 10 } };
    expect(nextLevel(l1, find([base, l1]), opts)).toEqual({ level: 2 });
    expect(nextLevel(l1, find([base, l1]), { ...opts, full: true }).level).toBe(0);
    expect(nextLevel(undefined, find([]), opts).level).toBe(0);
    expect(nextLevel({ ...l1, manifest: undefined }, find([base, l1]), opts).level).toBe(0);
    expect(nextLevel(l1, find([base, l1]), { ...opts, now: new Date('2026-01-15T02:00:01Z') })).toMatchObject({ level: 0, reason: expect.stringContaining('older than --full-every') });
    expect(nextLevel(l1, find([l1]), opts)).toMatchObject({ level: 0, reason: expect.stringContaining('gone') });
    // asked for or the ordinary renewal: no warning (issue 29 item 9); a lost base is worth one
    expect(nextLevel(l1, find([base, l1]), { ...opts, full: true }).routine).toBe(true);
    expect(nextLevel(l1, find([base, l1]), { ...opts, now: new Date('2026-01-15T02:00:01Z') }).routine).toBe(true);
    expect(nextLevel(l1, find([l1]), opts).routine).toBeUndefined();
  });

  it('0 once the chain stores more content no longer in the tree than half of its base', () => {
    // the tree replaced 600 of the base's 1000 bytes: 600 dead bytes in the base's archive
    const l1 = { ...base, id: 'L1', level: 1, content_bytes: 600, references: ['B', 'L1'], referenced_bytes: { B: 400, L1: 600 } };
    expect(nextLevel(l1, find([base, l1]), opts)).toMatchObject({ level: 0, reason: expect.stringContaining('no longer in the tree'), routine: true });
    // a size a person reads, not a raw byte count (issue 29 item 9)
    expect(nextLevel(l1, find([base, l1]), opts).reason).toMatch(/holds 600 B of content/);
    const l1small = { ...l1, content_bytes: 400, referenced_bytes: { B: 600, L1: 400 } };
    expect(nextLevel(l1small, find([base, l1small]), opts).level).toBe(2);
  });
});

describe('pins', () => {
  it('a kept backup pins its references, and what those need in turn', () => {
    const items = [
      { id: 'B', references: ['B'] },
      { id: 'L1', references: ['B', 'L1'] },
      { id: 'L2', references: ['B', 'L1', 'L2'] },
      { id: 'L3', references: ['L2', 'L3'] }, // made odd on purpose: L2 needs L1 and B
    ];
    const { pins, pinned } = pinnedByKept(items, ['L3']);
    expect(pins.get('L3')).toEqual(['L2', 'B', 'L1']);
    expect([...pinned.keys()].sort()).toEqual(['B', 'L1', 'L2']);
  });

  it('rotation keeps the storage backups a kept one needs, with the reason, and removes the others', () => {
    const day = (d: number) => new Date(Date.UTC(2026, 0, d, 2));
    const items: RetentionItem[] = [
      { id: 'B', type: 'storage', time: day(1), status: 'ok', references: ['B'] },
      { id: 'L1', type: 'storage', time: day(2), status: 'ok', references: ['B', 'L1'] },
      { id: 'L2', type: 'storage', time: day(3), status: 'ok', references: ['B', 'L2'] },
    ];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.keep.map((k) => [k.item.id, k.reasons])).toEqual([
      ['L2', ['last']],
      ['B', ['chain needed by storage L2']],
    ]);
    expect(plan.remove.map((r) => r.item.id)).toEqual(['L1']);
  });
});

describe('judging chains (local and remote catalogs alike)', () => {
  it('a backup is damaged when an archive it needs is missing or not ok, judged by that archive alone', () => {
    const e = (id: string, status: string, references?: string[]) => ({ type: 'storage', id, status, sidecar: { references } });
    const entries = [e('B', 'ok', ['B']), e('L1', 'ok', ['B', 'L1', 'X']), e('L2', 'ok', ['B', 'L2']), e('C', 'damaged', ['C']), e('L3', 'ok', ['C', 'L3'])];
    judgeChains(entries);
    expect(entries.map((x) => `${x.id} ${x.status}`)).toEqual(['B ok', 'L1 damaged', 'L2 ok', 'C damaged', 'L3 damaged']);
    expect((entries[1] as { reason?: string }).reason).toBe('needs the archive of storage backup X, which is missing');
    expect((entries[4] as { reason?: string }).reason).toBe('needs the archive of storage backup C, which is damaged');
  });
});

describe('sidecars of incremental backups', () => {
  it('a manifest named outside its own directory, or malformed references, make the sidecar unusable', () => {
    const base = { format: 1, type: 'storage', id: '20240101_120000', backup_path: 'storage_backup_20240101_120000.tar.gz', checksum: 'c', file_size: 1 };
    const manifest = (file: string) => ({ file, size: 1, checksum: 'c', entries: 1 });
    expect(validateSidecar({ ...base, manifest: manifest('storage_backup_20240101_120000.manifest.gz'), references: ['20240101_120000'] }, 'storage', base.id)).toBeUndefined();
    expect(validateSidecar({ ...base, manifest: manifest('../../etc/passwd') }, 'storage', base.id)).toMatch(/not a file in its own directory/);
    expect(validateSidecar({ ...base, manifest: { file: 'x' } }, 'storage', base.id)).toMatch(/malformed manifest/);
    expect(validateSidecar({ ...base, references: ['../x'] }, 'storage', base.id)).toMatch(/malformed references/);
  });
});
