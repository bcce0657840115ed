import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { BackupError } from '../errors.js';
import { createExclusive, fsyncDir } from '../fsutil.js';
import * as path from 'node:path';

/**
 * A SQLite page delta (`db_backup_<id>.pgdelta`): the pages of a database that differ from the state
 * before it, as one small immutable file with its own checksums (in the spirit of Litestream's LTX).
 * Big-endian throughout:
 *
 *   header   32 B   magic "VBPGDLT1", version u32, page_size u32, page_count u32 (the database's size
 *                   in pages after this delta), flags u32 (0), created_at ms f64
 *   records  n × (4 + page_size) B   page number u32, then the page, ascending page numbers
 *   index    n × 20 B   page number u32, the first 16 bytes of the page's SHA-256
 *   trailer  56 B   index offset u64, n u32, reserved u32, SHA-256 of every byte before the trailer,
 *                   magic "VBPGEND1"
 *
 * A reader needs only the trailer and the index to know which pages a delta holds and what they hash
 * to: the next delta run and a point-in-time rebuild never read a page they do not use.
 */
export const PAGE_DELTA_EXTENSION = '.pgdelta';
const MAGIC = Buffer.from('VBPGDLT1', 'latin1');
const END_MAGIC = Buffer.from('VBPGEND1', 'latin1');
const VERSION = 1;
export const HEADER_SIZE = 32;
export const INDEX_ENTRY_SIZE = 20;
export const TRAILER_SIZE = 56;
export const PAGE_HASH_SIZE = 16;
/** writes are gathered into chunks of about this size: a write call per 4 KiB page costs more than the page */
const CHUNK = 1 << 20;

/** The hash a delta's index records for a page (and a run compares pages by). */
export function pageHash(page: Uint8Array): Buffer {
  return createHash('sha256').update(page).digest().subarray(0, PAGE_HASH_SIZE);
}

export interface PageDeltaHeader {
  pageSize: number;
  pageCount: number;
  createdMs: number;
}

export interface PageDeltaEntry {
  pgno: number;
  hash: Buffer;
  /** where the page's bytes start in the file (after its page number) */
  offset: number;
}

export interface PageDeltaIndex extends PageDeltaHeader {
  entries: PageDeltaEntry[];
  /** SHA-256 (hex) of the bytes before the trailer, as the trailer records it */
  bodyChecksum: string;
  size: number;
}

const damaged = (file: string, why: string) =>
  new BackupError('DAMAGED', `page delta ${path.basename(file)} is damaged: ${why}`, { hint: 'restore to a moment before it, or run a new level 0' });

/** Writes a delta under `<file>.tmp`, renamed to `file` once complete and fsynced; pages must come in ascending order. */
export class PageDeltaWriter {
  private fh?: fsp.FileHandle;
  private readonly tmp: string;
  private readonly body: Hash = createHash('sha256');
  private readonly whole: Hash = createHash('sha256');
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private written = 0;
  private readonly index: Buffer[] = [];
  private lastPgno = 0;

  constructor(
    private readonly file: string,
    private readonly header: PageDeltaHeader,
  ) {
    this.tmp = `${file}.tmp`;
  }

  async open(): Promise<void> {
    await fsp.rm(this.tmp, { force: true });
    this.fh = await createExclusive(this.tmp);
    const h = Buffer.alloc(HEADER_SIZE);
    MAGIC.copy(h, 0);
    h.writeUInt32BE(VERSION, 8);
    h.writeUInt32BE(this.header.pageSize, 12);
    h.writeUInt32BE(this.header.pageCount, 16);
    h.writeUInt32BE(0, 20);
    h.writeDoubleBE(this.header.createdMs, 24);
    await this.push(h, true);
  }

  get pages(): number {
    return this.index.length;
  }

  /** Adds a page; `hash` when the caller has it already (pageHash otherwise). */
  async add(pgno: number, page: Buffer, hash = pageHash(page)): Promise<void> {
    if (page.length !== this.header.pageSize) throw new Error(`page ${pgno} has ${page.length} bytes, not ${this.header.pageSize}`);
    if (pgno <= this.lastPgno) throw new Error(`page ${pgno} after page ${this.lastPgno}: pages must ascend`);
    this.lastPgno = pgno;
    const n = Buffer.alloc(4);
    n.writeUInt32BE(pgno, 0);
    const e = Buffer.alloc(INDEX_ENTRY_SIZE);
    e.writeUInt32BE(pgno, 0);
    hash.copy(e, 4, 0, PAGE_HASH_SIZE);
    this.index.push(e);
    await this.push(n, true);
    // the caller may reuse its buffer for the next page
    await this.push(Buffer.from(page), true);
  }

  private async push(b: Buffer, body: boolean): Promise<void> {
    if (body) this.body.update(b);
    this.whole.update(b);
    this.chunks.push(b);
    this.chunkBytes += b.length;
    if (this.chunkBytes >= CHUNK) await this.flush();
  }

  private async flush(): Promise<void> {
    if (!this.chunkBytes) return;
    const data = Buffer.concat(this.chunks, this.chunkBytes);
    this.chunks = [];
    this.chunkBytes = 0;
    await this.fh!.write(data, 0, data.length, this.written);
    this.written += data.length;
  }

  /** Index and trailer written, fsynced and renamed: returns the file's size and SHA-256. */
  async commit(): Promise<{ file: string; size: number; checksum: string; pages: number }> {
    const indexOffset = HEADER_SIZE + this.index.length * (4 + this.header.pageSize);
    for (const e of this.index) await this.push(e, true);
    const t = Buffer.alloc(TRAILER_SIZE);
    t.writeBigUInt64BE(BigInt(indexOffset), 0);
    t.writeUInt32BE(this.index.length, 8);
    t.writeUInt32BE(0, 12);
    this.body.digest().copy(t, 16);
    END_MAGIC.copy(t, 48);
    await this.push(t, false);
    await this.flush();
    await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;
    await fsp.rename(this.tmp, this.file);
    await fsyncDir(path.dirname(this.file));
    return { file: this.file, size: this.written, checksum: this.whole.digest('hex'), pages: this.index.length };
  }

  async abort(): Promise<void> {
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
    await fsp.rm(this.tmp, { force: true });
  }
}

async function readAt(fh: fsp.FileHandle, length: number, position: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(b, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? b : b.subarray(0, got);
}

/** Header, trailer and index of a delta, each checked against the others (the pages are not read). */
export async function readPageDeltaIndex(file: string): Promise<PageDeltaIndex> {
  const fh = await fsp.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw damaged(file, err.code === 'ENOENT' ? 'missing' : `cannot be read (${err.code})`);
  });
  try {
    const { size } = await fh.stat();
    if (size < HEADER_SIZE + TRAILER_SIZE) throw damaged(file, `${size} bytes is too short`);
    const h = await readAt(fh, HEADER_SIZE, 0);
    const t = await readAt(fh, TRAILER_SIZE, size - TRAILER_SIZE);
    if (!h.subarray(0, 8).equals(MAGIC) || !t.subarray(48).equals(END_MAGIC)) throw damaged(file, 'not a page delta (magic)');
    if (h.readUInt32BE(8) !== VERSION) throw damaged(file, `unknown version ${h.readUInt32BE(8)}`);
    const pageSize = h.readUInt32BE(12);
    const pageCount = h.readUInt32BE(16);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw damaged(file, `page size ${pageSize}`);
    const indexOffset = Number(t.readBigUInt64BE(0));
    const n = t.readUInt32BE(8);
    if (indexOffset !== HEADER_SIZE + n * (4 + pageSize) || indexOffset + n * INDEX_ENTRY_SIZE + TRAILER_SIZE !== size)
      throw damaged(file, 'its size does not match its index (truncated or extended)');
    const raw = await readAt(fh, n * INDEX_ENTRY_SIZE, indexOffset);
    const entries: PageDeltaEntry[] = [];
    let last = 0;
    for (let i = 0; i < n; i++) {
      const pgno = raw.readUInt32BE(i * INDEX_ENTRY_SIZE);
      if (pgno <= last || pgno > pageCount) throw damaged(file, `index entry ${i} names page ${pgno}`);
      last = pgno;
      entries.push({ pgno, hash: raw.subarray(i * INDEX_ENTRY_SIZE + 4, (i + 1) * INDEX_ENTRY_SIZE), offset: HEADER_SIZE + i * (4 + pageSize) + 4 });
    }
    return { pageSize, pageCount, createdMs: h.readDoubleBE(24), entries, bodyChecksum: t.subarray(16, 48).toString('hex'), size };
  } finally {
    await fh.close();
  }
}

/**
 * Reads the whole delta once: the trailer's checksum over every byte before it, and each page against
 * its page number and index hash. Returns the index; throws DAMAGED naming the first fault.
 */
export async function verifyPageDelta(file: string): Promise<PageDeltaIndex> {
  const index = await readPageDeltaIndex(file);
  const body = createHash('sha256');
  const bodyEnd = index.size - TRAILER_SIZE;
  const recordSize = 4 + index.pageSize;
  const n = index.entries.length;
  // bytes not yet checked, and the file offset of their first byte: at most one record spans two chunks
  let pending: Buffer = Buffer.alloc(0);
  let pendingStart = 0;
  let record = 0;
  for await (const chunk of fs.createReadStream(file, { end: bodyEnd - 1, highWaterMark: CHUNK })) {
    const c = chunk as Buffer;
    body.update(c);
    if (record === n) continue;
    pending = pending.length ? Buffer.concat([pending, c]) : c;
    while (record < n) {
      const at = HEADER_SIZE + record * recordSize - pendingStart;
      if (at + recordSize > pending.length) break;
      const e = index.entries[record];
      if (pending.readUInt32BE(at) !== e.pgno) throw damaged(file, `record ${record} is not page ${e.pgno}`);
      if (!pageHash(pending.subarray(at + 4, at + recordSize)).equals(e.hash)) throw damaged(file, `page ${e.pgno} does not match its hash`);
      record++;
    }
    const consumed = Math.min(pending.length, Math.max(0, HEADER_SIZE + record * recordSize - pendingStart));
    pending = pending.subarray(consumed);
    pendingStart += consumed;
  }
  if (record !== index.entries.length) throw damaged(file, 'it ends before its last page');
  if (body.digest('hex') !== index.bodyChecksum) throw damaged(file, 'its checksum does not match its content');
  return index;
}

/** Reads one page of an open delta and checks it against its index hash. */
export async function readDeltaPage(fh: fsp.FileHandle, file: string, entry: PageDeltaEntry, pageSize: number): Promise<Buffer> {
  const page = await readAt(fh, pageSize, entry.offset);
  if (page.length !== pageSize || !pageHash(page).equals(entry.hash)) throw damaged(file, `page ${entry.pgno} does not match its hash`);
  return page;
}
