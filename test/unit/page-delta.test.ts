/**
 * Issue 28, the page delta format: a delta written and read back page for page, its index without its
 * pages, and every kind of damage (a flipped page byte, a truncated file, a wrong magic) named.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HEADER_SIZE,
  INDEX_ENTRY_SIZE,
  PageDeltaWriter,
  pageHash,
  readDeltaPage,
  readPageDeltaIndex,
  TRAILER_SIZE,
  verifyPageDelta,
} from '../../src/archive/page-delta.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pgdelta-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const page = (n: number, size = 4096) => Buffer.alloc(size, n % 251);

async function write(name: string, pgnos: number[], pageCount = 600, pageSize = 4096) {
  const file = path.join(dir, name);
  const w = new PageDeltaWriter(file, { pageSize, pageCount, createdMs: 1_700_000_000_123 });
  await w.open();
  for (const p of pgnos) await w.add(p, page(p, pageSize));
  return await w.commit();
}

describe('page delta', () => {
  it('round-trips header, index and pages; size is header + records + index + trailer', async () => {
    // more than one write chunk (1 MiB) of pages, so records span chunk boundaries when verified
    const pgnos = Array.from({ length: 400 }, (_, i) => i + 1 + (i > 200 ? 50 : 0));
    const w = await write('a.pgdelta', pgnos);
    expect(w.pages).toBe(400);
    expect(w.size).toBe(HEADER_SIZE + 400 * (4 + 4096) + 400 * INDEX_ENTRY_SIZE + TRAILER_SIZE);
    expect(fs.statSync(w.file).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(`${w.file}.tmp`)).toBe(false);
    const idx = await verifyPageDelta(w.file);
    expect(idx.pageSize).toBe(4096);
    expect(idx.pageCount).toBe(600);
    expect(idx.createdMs).toBe(1_700_000_000_123);
    expect(idx.entries.map((e) => e.pgno)).toEqual(pgnos);
    const fh = await fs.promises.open(w.file, 'r');
    try {
      for (const e of [idx.entries[0], idx.entries[250], idx.entries[399]]) {
        expect((await readDeltaPage(fh, w.file, e, 4096)).equals(page(e.pgno))).toBe(true);
        expect(e.hash.equals(pageHash(page(e.pgno)))).toBe(true);
      }
    } finally {
      await fh.close();
    }
  });

  it('an empty delta (nothing changed) is header + trailer: 88 bytes', async () => {
    const w = await write('empty.pgdelta', [], 10);
    expect(w.size).toBe(HEADER_SIZE + TRAILER_SIZE);
    expect((await verifyPageDelta(w.file)).entries).toEqual([]);
  });

  it('refuses pages out of order or of the wrong size, leaving no file', async () => {
    const file = path.join(dir, 'bad.pgdelta');
    const w = new PageDeltaWriter(file, { pageSize: 4096, pageCount: 10, createdMs: 0 });
    await w.open();
    await w.add(3, page(3));
    await expect(w.add(2, page(2))).rejects.toThrow(/ascend/);
    await expect(w.add(5, page(5, 1024))).rejects.toThrow(/bytes/);
    await w.abort();
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('bad'))).toEqual([]);
  });

  it('names a flipped page byte, a flipped index byte, a truncated file and a foreign file', async () => {
    const w = await write('b.pgdelta', [1, 2, 7], 8);
    const copy = (name: string, edit: (b: Buffer) => Buffer) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, edit(Buffer.from(fs.readFileSync(w.file))));
      return f;
    };
    const flipAt = (at: number) => (b: Buffer) => {
      b[at] ^= 0xff;
      return b;
    };
    // a byte inside the second page: the index still reads, the full check does not
    const pageFlip = copy('p.pgdelta', flipAt(HEADER_SIZE + (4 + 4096) + 4 + 100));
    await expect(readPageDeltaIndex(pageFlip)).resolves.toBeDefined();
    await expect(verifyPageDelta(pageFlip)).rejects.toThrow(/page 2 does not match its hash/);
    const fh = await fs.promises.open(pageFlip, 'r');
    const idx = await readPageDeltaIndex(pageFlip);
    await expect(readDeltaPage(fh, pageFlip, idx.entries[1], 4096)).rejects.toThrow(/page 2/);
    await fh.close();
    // a byte of an index hash
    const indexFlip = copy('i.pgdelta', flipAt(HEADER_SIZE + 3 * (4 + 4096) + 4 + INDEX_ENTRY_SIZE + 5));
    await expect(verifyPageDelta(indexFlip)).rejects.toThrow(/page 2 does not match its hash|checksum/);
    const truncated = copy('t.pgdelta', (b) => b.subarray(0, b.length - 100));
    await expect(readPageDeltaIndex(truncated)).rejects.toThrow(/damaged/);
    const foreign = copy('f.pgdelta', (b) => Buffer.concat([Buffer.from('SQLite format 3\0'), b.subarray(16)]));
    await expect(readPageDeltaIndex(foreign)).rejects.toThrow(/not a page delta/);
    await expect(readPageDeltaIndex(path.join(dir, 'none.pgdelta'))).rejects.toThrow(/missing/);
  });
});
