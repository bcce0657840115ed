import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip, createGzip, gunzipSync } from 'node:zlib';
import { type DecryptContext, decryptStage, needIdentity, plaintextProblem } from '../crypto/age-artifact.js';
import { BackupError } from '../errors.js';
import { createFresh, fsyncDir } from '../fsutil.js';
import { decodeName, nameBytes } from './bytenames.js';

/**
 * The file manifest of a storage backup: every path of the tree at that moment and the id of the
 * backup whose archive holds its entry.
 *
 * On disk (`storage_backup_<id>.manifest.gz`): gzip of records `<JSON>\t<path bytes>\0`. The path is
 * last and raw, so coreutils read it exactly whatever bytes a name holds (`zcat M | cut -z -f2-`); the
 * JSON never holds a raw tab. Records come in "group order": each directory (depth first, names sorted)
 * followed by the files and symlinks it holds; the archives list their entries in the same order, so
 * a restore pairs archive entries with records by a merge, never by a map of the whole tree.
 */
export type EntryType = 'd' | 'f' | 'l';

export interface ManifestRecord {
  /** the archive path: `<storage dir name>/<relative path>`, bytes that are not UTF-8 as U+DC80+byte */
  path: string;
  t: EntryType;
  /** content bytes (files) */
  s: number;
  m: number;
  u: number;
  g: number;
  /** mtime, ctime (ns) and inode as decimal strings: what change detection compares */
  mt: string;
  ct: string;
  i: string;
  /** SHA-256 hex of the content (files) */
  h?: string;
  /** id of the storage backup whose archive holds this entry */
  a: string;
  /** symlink target */
  l?: string;
  /**
   * 1 in a level N manifest: the path (of type `t`) is gone since the previous backup. Only `t` is
   * set beside it; views (readView) never yield one.
   */
  x?: 1;
  /**
   * A file whose content was already stored (renamed or copied): the path of that content in the
   * archive of backup `a`; `path` is where it is now.
   */
  o?: string;
  /**
   * The manual restore's copy step, after a level N manifest's records: `{"c":1}` then the path the
   * content is at before this backup, `{"c":2}` then the path it is copied to. Readers pass them over.
   */
  c?: 1 | 2;
}

export interface ManifestInfo {
  file: string;
  size: number;
  checksum: string;
  entries: number;
}

export const manifestFileName = (baseName: string) => `${baseName}.manifest.gz`;

const TAB = 0x09;
const NUL = 0x00;

export function encodeRecord(r: ManifestRecord): Buffer {
  const { path: p, ...rest } = r;
  // a deletion starts with {"x": so that `grep -z '^{"x"'` finds the deletions of a manifest
  const meta = r.c ? { c: r.c } : r.x ? { x: 1, t: r.t } : rest;
  return Buffer.concat([Buffer.from(JSON.stringify(meta), 'utf8'), Buffer.of(TAB), nameBytes(p), Buffer.of(NUL)]);
}

/** A manifest record longer than this (its JSON, path and NUL) is damage, not a file: a 4 KiB path and target fit many times */
export const MAX_RECORD = 256 * 1024;
/** the longest path or symlink target a record may hold (Linux allows 4,096 bytes per path) */
export const MAX_NAME = 64 * 1024;
const DECIMAL = /^-?\d{1,30}$/;
const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * One record, judged: the raw path after the tab is the path (a "path" key inside the JSON never
 * overrides it), the decimal fields are decimal, the numbers are counts. Anything else is DAMAGED (exit
 * 3) with the record named, never a crash of a reader further on ("Cannot convert abc to a BigInt").
 */
export function decodeRecord(buf: Buffer, where: string): ManifestRecord {
  const tab = buf.indexOf(TAB);
  if (tab < 0) throw new BackupError('DAMAGED', `${where}: manifest record without a path`);
  if (buf.length - tab - 1 > MAX_NAME) throw new BackupError('DAMAGED', `${where}: manifest record with a path of ${buf.length - tab - 1} bytes`);
  let meta: Omit<ManifestRecord, 'path'> & { path?: unknown };
  try {
    meta = JSON.parse(buf.toString('utf8', 0, tab));
  } catch {
    throw new BackupError('DAMAGED', `${where}: manifest record is not valid JSON`);
  }
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) throw new BackupError('DAMAGED', `${where}: manifest record is not a JSON object`);
  delete meta.path;
  const p = decodeName(buf.subarray(tab + 1));
  if (meta.c === 1 || meta.c === 2) return { ...meta, path: p };
  if ((meta.t !== 'd' && meta.t !== 'f' && meta.t !== 'l') || (typeof meta.a !== 'string' && meta.x !== 1)) {
    throw new BackupError('DAMAGED', `${where}: manifest record lacks its type or archive id`);
  }
  if (meta.x !== 1) {
    const shown = JSON.stringify(p.slice(0, 200));
    for (const k of ['mt', 'ct', 'i'] as const) {
      if (meta[k] !== undefined && (typeof meta[k] !== 'string' || !DECIMAL.test(meta[k])))
        throw new BackupError('DAMAGED', `${where}: the record of ${shown} has a non-numeric "${k}" (${JSON.stringify(String(meta[k]).slice(0, 40))})`);
    }
    for (const k of ['s', 'm', 'u', 'g'] as const) {
      if (meta[k] !== undefined && !isCount(meta[k]))
        throw new BackupError('DAMAGED', `${where}: the record of ${shown} has an invalid "${k}" (${JSON.stringify(meta[k])?.slice(0, 40)})`);
    }
    for (const k of ['l', 'o', 'a', 'h'] as const) {
      if (meta[k] !== undefined && (typeof meta[k] !== 'string' || meta[k].length > MAX_NAME))
        throw new BackupError('DAMAGED', `${where}: the record of ${shown} has an invalid "${k}"`);
    }
  }
  return { ...meta, path: p };
}

/**
 * Path components compared one by one: the order of a depth-first walk over sorted names. A '/' ends
 * a component, so it sorts before any other character (one pass, no split: this runs per record).
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca === 0x2f) return -1;
    if (cb === 0x2f) return 1;
    return ca < cb ? -1 : 1;
  }
  return a.length - b.length;
}

/** The directory a record belongs to in group order: a directory heads its own group. */
export const groupOf = (r: { path: string; t: EntryType }): string => (r.t === 'd' ? r.path : r.path.slice(0, Math.max(0, r.path.lastIndexOf('/'))));

/**
 * Group order: groups by their directory depth first; inside a group the directory, then its entries
 * by name. A record sorts before another when its group comes first, or the same group and its name.
 */
export function compareRecords(a: { path: string; t: EntryType }, b: { path: string; t: EntryType }): number {
  const ga = groupOf(a);
  const gb = groupOf(b);
  if (ga !== gb) return comparePaths(ga, gb);
  if (a.t === 'd') return b.t === 'd' ? 0 : -1;
  if (b.t === 'd') return 1;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** Streams records into `<dir>/<name>.tmp`; `commit()` fsyncs and renames, `abort()` removes. */
export class ManifestWriter {
  private readonly gzip = createGzip({ level: 6 });
  private readonly hash = createHash('sha256');
  private readonly tmp: string;
  private size = 0;
  private entries = 0;
  private readonly done: Promise<void>;
  private fh?: fsp.FileHandle;

  constructor(
    private readonly dir: string,
    private readonly name: string,
  ) {
    const tmp = path.join(dir, `${name}.tmp`);
    this.tmp = tmp;
    this.done = (async () => {
      this.fh = await createFresh(tmp);
      for await (const chunk of this.gzip) {
        const c = chunk as Buffer;
        this.hash.update(c);
        this.size += c.length;
        let off = 0;
        while (off < c.length) off += (await this.fh.write(c, off, c.length - off)).bytesWritten;
      }
    })();
    this.done.catch(() => {});
  }

  /** records are handed to zlib in batches: one zlib job per record costs more than the walk itself */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  async write(r: ManifestRecord): Promise<void> {
    this.entries++;
    const b = encodeRecord(r);
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= 1 << 16) await this.flush();
  }

  private async flush(): Promise<void> {
    if (!this.pending.length) return;
    const chunk = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.gzip.write(chunk)) await new Promise<void>((resolve) => this.gzip.once('drain', resolve));
  }

  private copies: ManifestRecord[] = [];

  /** A copy step for the manual restore (see `c`), written after every record. */
  copy(from: string, to: string): void {
    this.copies.push({ path: from, c: 1 } as ManifestRecord, { path: to, c: 2 } as ManifestRecord);
  }

  async commit(): Promise<ManifestInfo> {
    for (const r of this.copies) {
      const b = encodeRecord(r);
      this.pending.push(b);
      this.pendingBytes += b.length;
    }
    await this.flush();
    this.gzip.end();
    await this.done;
    await this.fh!.sync();
    await this.fh!.close();
    await fsp.rename(this.tmp, path.join(this.dir, this.name));
    await fsyncDir(this.dir);
    return { file: this.name, size: this.size, checksum: this.hash.digest('hex'), entries: this.entries };
  }

  async abort(): Promise<void> {
    this.gzip.destroy();
    await this.done.catch(() => {});
    await this.fh?.close().catch(() => {});
    await fsp.rm(this.tmp, { force: true });
  }
}

/** A deletion record for `r`: the path is gone in the backup whose manifest holds it. */
export const deletionOf = (r: { path: string; t: EntryType }): ManifestRecord => ({ path: r.path, t: r.t, x: 1 }) as ManifestRecord;

/** The records of a manifest file in their order; checks the file's SHA-256 when `checksum` is given. */
/** Manifests up to this size are read and unpacked in one go: a nightly one, or a tree of a few thousand files. */
const SMALL_MANIFEST = 1 << 20;
/** what such a manifest may unpack to in one buffer */
const SMALL_UNPACKED = 16 << 20;

/**
 * An encrypted manifest (`….manifest.gz.age`, `create --encrypt`): read through age with these
 * identities; the checksum given beside it is the ciphertext's.
 */
export type ManifestKey = DecryptContext;

/** The plaintext of an encrypted manifest, gunzipped: every age chunk is authenticated before it is passed on. */
async function* decryptedManifestBytes(file: string, hash: ReturnType<typeof createHash>, key: ManifestKey): AsyncGenerator<Buffer> {
  if (!key.identities.length) throw needIdentity(key);
  const raw = createReadStream(file);
  const dec = decryptStage(key);
  const gunzip = createGunzip();
  // errors attach before anything flows: a damaged header or a wrong key ends the read, never the process
  raw.on('data', (c) => hash.update(c as Buffer));
  raw.on('error', (e) => gunzip.destroy(e));
  dec.on('error', (e) => gunzip.destroy(e));
  raw.pipe(dec).pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
    const problem = plaintextProblem(dec, key.info);
    if (problem) throw new BackupError('DAMAGED', `${key.subject}: ${problem}`);
  } finally {
    raw.destroy();
    dec.destroy();
  }
}

/** The unpacked bytes of a manifest file, fed to `hash` as read. */
async function* manifestBytes(file: string, hash: ReturnType<typeof createHash>, key?: ManifestKey): AsyncGenerator<Buffer> {
  if (key) {
    yield* decryptedManifestBytes(file, hash, key);
    return;
  }
  if (statSync(file).size <= SMALL_MANIFEST) {
    const gz = readFileSync(file);
    hash.update(gz);
    // bounded: a small file may unpack to anything (a gzip bomb); past the bound it is streamed
    let whole: Buffer | undefined;
    try {
      whole = gunzipSync(gz, { maxOutputLength: SMALL_UNPACKED });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw err;
    }
    if (whole) {
      yield whole;
      return;
    }
    for await (const chunk of Readable.from([gz]).pipe(createGunzip())) yield chunk as Buffer;
    return;
  }
  const raw = createReadStream(file);
  raw.on('data', (c) => hash.update(c as Buffer));
  const gunzip = raw.pipe(createGunzip());
  raw.on('error', (e) => gunzip.destroy(e));
  for await (const chunk of gunzip) yield chunk as Buffer;
}

export async function* readManifest(file: string, checksum?: string, key?: ManifestKey): AsyncGenerator<ManifestRecord> {
  const where = path.basename(file);
  const hash = createHash('sha256');
  // the start of a record that continues in the next chunk: each byte is scanned once (linear in a
  // record's length), and a record may not grow past MAX_RECORD
  const rest: Buffer[] = [];
  let restLength = 0;
  const tooLong = () => new BackupError('DAMAGED', `manifest ${where} holds a record longer than ${MAX_RECORD} bytes`);
  try {
    for await (const chunk of manifestBytes(file, hash, key)) {
      let start = 0;
      for (let nul = chunk.indexOf(NUL); nul >= 0; nul = chunk.indexOf(NUL, start)) {
        let record = chunk.subarray(start, nul);
        if (restLength) {
          if (restLength + record.length > MAX_RECORD) throw tooLong();
          record = Buffer.concat([...rest, record]);
          rest.length = 0;
          restLength = 0;
        }
        if (record.length > MAX_RECORD) throw tooLong();
        const r = decodeRecord(record, where);
        start = nul + 1;
        if (!r.c) yield r;
      }
      if (start < chunk.length) {
        restLength += chunk.length - start;
        if (restLength > MAX_RECORD) throw tooLong();
        rest.push(Buffer.from(chunk.subarray(start)));
      }
    }
  } catch (err) {
    if (err instanceof BackupError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BackupError('DAMAGED', `manifest ${where} is missing`);
    throw new BackupError('DAMAGED', `manifest ${where} cannot be read: ${(err as Error).message}`);
  }
  if (restLength) throw new BackupError('DAMAGED', `manifest ${where} is truncated`);
  if (checksum && hash.digest('hex') !== checksum) throw new BackupError('DAMAGED', `manifest ${where}: checksum mismatch`);
}

/** A cursor over a manifest: `next()` reads ahead one record, `skipBelow()` advances by group order. */
export class ManifestCursor {
  private it: AsyncGenerator<ManifestRecord>;
  private head?: ManifestRecord;
  private ended = false;
  private started = false;

  constructor(records: AsyncGenerator<ManifestRecord>) {
    this.it = records;
  }

  async peek(): Promise<ManifestRecord | undefined> {
    if (!this.started) {
      this.started = true;
      await this.advance();
    }
    return this.head;
  }

  async take(): Promise<ManifestRecord | undefined> {
    const r = await this.peek();
    await this.advance();
    return r;
  }

  private async advance(): Promise<void> {
    if (this.ended) {
      this.head = undefined;
      return;
    }
    const n = await this.it.next();
    if (n.done) {
      this.ended = true;
      this.head = undefined;
    } else this.head = n.value;
  }

  async close(): Promise<void> {
    await this.it.return(undefined);
  }
}

export interface ManifestFile {
  file: string;
  /** checked once the file was read to its end */
  checksum?: string;
  /** an encrypted manifest: how to read it */
  key?: ManifestKey;
}

/**
 * The tree a backup describes: the merge of its chain's manifests (the level 0's, then each level N's
 * changes and deletions, oldest first). All are in group order, so this is a sorted merge holding one
 * record per manifest: memory does not grow with the tree. For a path in several manifests the newest
 * record wins; a deletion drops the path.
 */
export async function* readView(chain: ManifestFile[]): AsyncGenerator<ManifestRecord> {
  if (chain.length === 1) {
    for await (const r of readManifest(chain[0].file, chain[0].checksum, chain[0].key)) if (!r.x) yield r;
    return;
  }
  const all = chain.map((m) => new ManifestCursor(readManifest(m.file, m.checksum, m.key)));
  // a manifest read to its end leaves the merge (most nightly ones are empty or nearly so)
  let cursors = all;
  const heads: (ManifestRecord | undefined)[] = [];
  try {
    for (;;) {
      let min: ManifestRecord | undefined;
      let ended = false;
      for (let i = 0; i < cursors.length; i++) {
        const h = await cursors[i].peek();
        heads[i] = h;
        if (!h) ended = true;
        else if (!min || compareRecords(h, min) < 0) min = h;
      }
      if (ended) {
        const live = cursors.filter((_, i) => heads[i] !== undefined);
        heads.splice(0, heads.length, ...heads.filter((h) => h !== undefined));
        cursors = live;
      }
      if (!min) return;
      if (cursors.length === 1) {
        // one manifest left: the rest of it is the view
        for (let r = await cursors[0].take(); r; r = await cursors[0].take()) if (!r.x) yield r;
        return;
      }
      let newest = min;
      for (let i = 0; i < cursors.length; i++) {
        const h = heads[i];
        if (h && compareRecords(h, min) === 0) {
          newest = h;
          await cursors[i].take();
        }
      }
      if (!newest.x) yield newest;
    }
  } finally {
    for (const c of all) await c.close();
  }
}
