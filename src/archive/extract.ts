import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { BackupError, toBackupError } from '../errors.js';
import { decodeEntryNames, fsPath } from './bytenames.js';

/**
 * Safe unpack of a tar stream (restore of a storage backup).
 *
 * The archive is treated as hostile: nothing may be written outside `targetDir`. Every name is
 * checked lexically, every parent directory is known to be a real directory (created by us or
 * lstat'ed, never a symlink), and files are opened with O_NOFOLLOW | O_EXCL. Symlinks are restored
 * verbatim, whatever they point to (an absolute path, `../shared`), as GNU tar does: they are created
 * last, after every other entry, so nothing is ever written through one; an entry whose path goes
 * through a symlink of the archive is refused. On failure the target holds a partial tree: the caller
 * discards it.
 *
 * The hot path uses synchronous fs calls on purpose: each one is a cheap syscall on the page cache,
 * while the async API would cost a thread-pool round trip per call (several per small file).
 * Decompression runs in the thread pool (zlib) or another process meanwhile, so the pipeline
 * stays parallel.
 */
export interface ExtractOptions {
  onEntry?: (name: string, bytes: number) => void;
  /** refuse when the total unpacked size passes this (gzip bomb / free-space guard) */
  maxBytes?: number;
  signal?: AbortSignal;
  /** fsync files and directories before returning (default true: restore is durable before the swap) */
  durable?: boolean;
  /** incremental restore: only entries this accepts are written (the others are read past) */
  select?: (rel: string, type: Header['type']) => boolean | Promise<boolean>;
  /** called with each written file's SHA-256, computed as it is written */
  onFile?: (rel: string, size: number, sha256: string) => void;
  /** give entries the owner and group the archive names (default: when running as root, as GNU tar does) */
  owners?: boolean;
}

export interface ExtractResult {
  entries: number;
  bytes: number;
  warnings: string[];
}

const MAX_NAME_BYTES = 4096;
/** Open files waiting for their fsync; a batch is flushed in the background when full. */
const FSYNC_BATCH = 128;
const MAX_WARNINGS = 50;
const OPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
/** permission bits plus sticky; setuid/setgid are dropped: a backup must not plant privileged binaries */
const MODE_MASK = 0o1777;

type Header = tar.Header;

export async function extractArchive(input: Readable, targetDir: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  await fsp.mkdir(targetDir, { recursive: true, mode: 0o700 });
  const root = await fsp.realpath(targetDir);
  const x = new Extractor(root, options);
  try {
    return await x.run(input);
  } catch (err) {
    input.destroy();
    await x.abandon();
    throw err;
  }
}

interface DirMeta {
  rel: string;
  mode: number;
  mtime: Date;
  owner?: Owner;
}

interface Owner {
  uid: number;
  gid: number;
}

interface PendingLink {
  name: string;
  target: string;
  mtime: Date;
  owner?: Owner;
}

class Extractor {
  private readonly durable: boolean;
  private readonly maxBytes: number;
  /** relative paths (``'' = root) known to be real directories: created by us or lstat'ed */
  private readonly dirs = new Set<string>(['']);
  private readonly dirMeta = new Map<string, DirMeta>();
  /** symlinks of the archive, by relative path, created at the very end (the last entry of a name wins) */
  private readonly symlinks = new Map<string, PendingLink>();
  private readonly owners: boolean;
  private readonly warnings: string[] = [];
  private droppedWarnings = 0;
  private strippedModes = 0;
  private entries = 0;
  private bytes = 0;
  private current: string | undefined;
  private batch: number[] = [];
  private readonly syncing: Promise<void>[] = [];
  private syncError: unknown;

  constructor(
    private readonly root: string,
    private readonly options: ExtractOptions,
  ) {
    this.durable = options.durable ?? true;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.owners = options.owners ?? process.getuid?.() === 0;
  }

  async run(input: Readable): Promise<ExtractResult> {
    const { signal } = this.options;
    // names as bytes (one char each): decodeEntryNames turns them into names that may not be UTF-8
    const ex = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
    const tail = new TailTracker();

    // Pumped by hand rather than with pipeline(): the extractor is a streamx stream, and the tail
    // of the raw bytes is needed to tell a complete archive from one cut at an entry boundary.
    const onData = (chunk: Buffer) => {
      tail.push(chunk);
      if (!ex.write(chunk)) input.pause();
    };
    ex.on('drain', () => input.resume());
    // an input that failed before we were handed it (a decryption stage flows from its creation)
    if (input.errored) throw input.errored;
    input.on('data', onData);
    input.once('end', () => ex.end(undefined));
    const onInputError = (err: Error) => ex.destroy(err);
    const onInputClose = () => {
      if (!input.readableEnded) ex.destroy(input.errored ?? new Error('the archive stream closed before its end'));
    };
    input.once('error', onInputError);
    input.once('close', onInputClose);
    const onAbort = () => ex.destroy(abortError(signal));
    signal?.addEventListener('abort', onAbort, { once: true });

    try {
      throwIfAborted(signal);
      for await (const entry of ex) {
        throwIfAborted(signal);
        decodeEntryNames(entry.header);
        this.current = entry.header.name;
        await this.entry(entry.header, entry);
        this.current = undefined;
      }
    } catch (err) {
      throw this.translate(err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      input.off('data', onData);
      // once the loop is left (an abort, a damaged entry) nobody reads ex: an input closing later must not
      // destroy it with an error no listener hears (an uncaught exception); the error was already thrown
      ex.on('error', () => {});
    }

    if (!tail.endsWithEofMarker()) {
      throw new BackupError('DAMAGED', tail.total === 0 ? 'archive is empty' : 'archive ends without the tar end-of-archive marker: it is truncated');
    }
    await this.finish();
    if (this.strippedModes > 0) {
      this.warnings.unshift(`setuid/setgid bits removed from ${this.strippedModes} entr${this.strippedModes === 1 ? 'y' : 'ies'}`);
    }
    if (this.droppedWarnings > 0) this.warnings.push(`… and ${this.droppedWarnings} more warnings`);
    return { entries: this.entries, bytes: this.bytes, warnings: this.warnings };
  }

  /** Close what is still open after a failure. */
  async abandon(): Promise<void> {
    for (const fd of this.batch) closeQuietly(fd);
    this.batch = [];
    await Promise.allSettled(this.syncing);
  }

  private async entry(h: Header, stream: AsyncIterable<unknown>): Promise<void> {
    const rel = this.checkName(h.name, 'name');
    if (this.options.select && !(await this.options.select(rel, h.type))) {
      await drain(stream);
      return;
    }
    const mode = this.mode(h);
    const mtime = entryMtime(h);
    const owner = this.owners ? entryOwner(h) : undefined;
    switch (h.type) {
      case 'file':
      case 'contiguous-file': // POSIX: may be extracted as a regular file
        await this.file(rel, h, mode, mtime, stream, owner);
        break;
      case 'directory':
        await drain(stream);
        this.directory(rel, h.name, mode, mtime, owner);
        break;
      case 'symlink':
        await drain(stream);
        this.symlink(rel, h.name, h.linkname ?? '', mtime, owner);
        break;
      case 'link':
        await drain(stream);
        this.hardlink(rel, h.name, h.linkname ?? '');
        break;
      default:
        throw damaged(h.name, `is a ${h.type ?? 'unknown type of'} entry, which a backup never holds`);
    }
    this.entries++;
    this.options.onEntry?.(rel, h.type === 'file' || h.type === 'contiguous-file' ? h.size : 0);
  }

  /** Lexical checks: the result is a normalised relative path without '.', '..' or empty parts. */
  private checkName(name: string, what: 'name' | 'link target', entry = name): string {
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw damaged(entry, `has a ${what} longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (name.includes('\0')) throw damaged(entry, `has a NUL byte in its ${what}`);
    if (name.startsWith('/')) throw damaged(entry, `has an absolute ${what}`);
    const parts = name.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) throw damaged(entry, `has a '..' component in its ${what}`);
    return parts.join('/');
  }

  private mode(h: Header): number {
    const raw = h.mode ?? (h.type === 'directory' ? 0o755 : 0o644);
    if (raw & 0o6000) this.strippedModes++;
    return raw & MODE_MASK;
  }

  private abs(rel: string): string | Buffer {
    return fsPath(rel === '' ? this.root : path.join(this.root, rel));
  }

  /**
   * Make sure every parent of `rel` is a real directory inside the root: known, or lstat'ed and
   * created when missing. A symlink anywhere on the way is refused, so no write follows a link.
   */
  private parents(rel: string, entry: string, create = true): void {
    const slash = rel.lastIndexOf('/');
    if (slash < 0) return;
    const parent = rel.slice(0, slash);
    if (this.dirs.has(parent)) return;
    const parts = parent.split('/');
    let prefix = '';
    for (const part of parts) {
      prefix = prefix === '' ? part : `${prefix}/${part}`;
      if (this.dirs.has(prefix)) continue;
      if (this.symlinks.has(prefix)) throw damaged(entry, `would be written through the symlink ${quote(prefix)}`);
      const st = lstatOrNull(this.abs(prefix));
      if (st === null) {
        if (!create) throw damaged(entry, `names ${quote(prefix)}, which is not in the archive`);
        fs.mkdirSync(this.abs(prefix), 0o700);
      } else if (st.isSymbolicLink()) {
        throw damaged(entry, `would be written through the symlink ${quote(prefix)}`);
      } else if (!st.isDirectory()) {
        throw damaged(entry, `has a parent ${quote(prefix)} that is not a directory`);
      }
      this.dirs.add(prefix);
    }
  }

  /**
   * Clear the way for a new non-directory entry at `rel`. A later entry with the same name replaces
   * an earlier file or link (as tar does); a directory is never replaced, which keeps `dirs` true.
   */
  private replaceable(rel: string, entry: string): void {
    if (this.symlinks.delete(rel)) this.warn(`${quote(entry)} appears more than once; the last copy was kept`);
    const st = lstatOrNull(this.abs(rel));
    if (st === null) return;
    if (st.isDirectory()) throw damaged(entry, 'would replace a directory');
    fs.unlinkSync(this.abs(rel));
    this.warn(`${quote(entry)} appears more than once; the last copy was kept`);
  }

  private async file(rel: string, h: Header, mode: number, mtime: Date, stream: AsyncIterable<unknown>, owner?: Owner): Promise<void> {
    if (rel === '') throw damaged(h.name, 'names the target directory itself as a file');
    if (this.bytes + h.size > this.maxBytes) {
      throw new BackupError('DAMAGED', `archive unpacks to more than ${this.maxBytes} bytes (entry ${quote(h.name)}): refused as a possible archive bomb`, {
        hint: 'the archive holds more than its metadata says or the free space allows; free space if it is genuine, or restore another backup',
      });
    }
    this.parents(rel, h.name);
    if (this.symlinks.has(rel)) this.replaceable(rel, h.name);
    const file = this.abs(rel);
    let fd: number;
    try {
      fd = fs.openSync(file, OPEN_FLAGS, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      this.replaceable(rel, h.name);
      fd = fs.openSync(file, OPEN_FLAGS, 0o600);
    }
    let kept = false;
    const hash = this.options.onFile ? createHash('sha256') : undefined;
    try {
      const { signal } = this.options;
      for await (const chunk of stream) {
        const buf = chunk as Buffer;
        hash?.update(buf);
        let off = 0;
        while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
        if (signal?.aborted) throw abortError(signal);
      }
      this.bytes += h.size;
      if (hash) this.options.onFile!(rel, h.size, hash.digest('hex'));
      // chown first: it clears setuid/setgid, which are not restored anyway
      if (owner) fs.fchownSync(fd, owner.uid, owner.gid);
      fs.fchmodSync(fd, mode);
      fs.futimesSync(fd, mtime, mtime);
      if (this.durable) {
        this.batch.push(fd);
        kept = true;
        if (this.batch.length >= FSYNC_BATCH) await this.flushBatch();
      }
    } finally {
      if (!kept) fs.closeSync(fd);
    }
  }

  /**
   * fsync a batch of written files in the thread pool while extraction goes on. At most two batches
   * are in flight, which bounds the open descriptors and lets a slow disk hold extraction back.
   */
  private async flushBatch(): Promise<void> {
    const fds = this.batch;
    this.batch = [];
    while (this.syncing.length >= 2) await this.syncing.shift();
    const job = Promise.all(
      fds.map(
        (fd) =>
          new Promise<void>((resolve) => {
            fs.fsync(fd, (err) => {
              if (err && this.syncError === undefined) this.syncError = err;
              fs.close(fd, () => resolve());
            });
          }),
      ),
    ).then(() => undefined);
    this.syncing.push(job);
  }

  private directory(rel: string, name: string, mode: number, mtime: Date, owner?: Owner): void {
    if (!this.dirs.has(rel)) {
      this.parents(rel, name);
      // a symlink of the same name earlier in the archive gives way (tar does the same)
      if (this.symlinks.delete(rel)) this.warn(`${quote(name)} appears more than once; the last copy was kept`);
      const dir = this.abs(rel);
      try {
        fs.mkdirSync(dir, 0o700);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = fs.lstatSync(dir);
        if (!st.isDirectory()) {
          // an earlier file or symlink of the same name gives way (tar does the same)
          fs.unlinkSync(dir);
          fs.mkdirSync(dir, 0o700);
          this.warn(`${quote(name)} appears more than once; the last copy was kept`);
        }
      }
      this.dirs.add(rel);
    }
    // permissions and times are applied at the end: the directory must stay writable while its
    // contents arrive, and writing them would change its mtime again
    this.dirMeta.set(rel, { rel, mode, mtime, owner });
  }

  /**
   * Remembered, created at the end: the target is kept verbatim (absolute, `../shared`…), since a link
   * is only followed by whoever uses the restored tree, never by this extraction.
   */
  private symlink(rel: string, name: string, target: string, mtime: Date, owner?: Owner): void {
    if (rel === '') throw damaged(name, 'names the target directory itself as a symlink');
    if (target === '') throw damaged(name, 'is a symlink without a target');
    if (Buffer.byteLength(target) > MAX_NAME_BYTES) {
      throw damaged(name, `has a link target longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (target.includes('\0')) throw damaged(name, 'has a NUL byte in its link target');
    this.parents(rel, name);
    if (this.dirs.has(rel)) throw damaged(name, 'would replace a directory');
    const st = lstatOrNull(this.abs(rel));
    if (st?.isDirectory()) throw damaged(name, 'would replace a directory');
    if (st !== null) this.replaceable(rel, name);
    else if (this.symlinks.has(rel)) this.warn(`${quote(name)} appears more than once; the last copy was kept`);
    this.symlinks.delete(rel);
    this.symlinks.set(rel, { name, target, mtime, owner });
  }

  /** Creates the symlinks, last: no entry comes after them, so nothing can be written through one. */
  private createSymlinks(): void {
    for (const [rel, link] of this.symlinks) {
      this.parents(rel, link.name);
      const abs = this.abs(rel);
      fs.symlinkSync(fsPath(link.target), abs);
      if (link.owner) fs.lchownSync(abs, link.owner.uid, link.owner.gid);
      try {
        fs.lutimesSync(abs, link.mtime, link.mtime);
      } catch {
        // some filesystems cannot time a symlink; its target is what matters
      }
    }
  }

  private hardlink(rel: string, name: string, linkname: string): void {
    if (rel === '') throw damaged(name, 'names the target directory itself as a hard link');
    const target = this.checkName(linkname, 'link target', name);
    if (target === '') throw damaged(name, 'is a hard link to the target directory');
    // the target must already be a regular file in the extracted tree, reached without symlinks
    this.parents(target, name, false);
    const st = lstatOrNull(this.abs(target));
    if (st === null || !st.isFile()) {
      throw damaged(name, `is a hard link to ${quote(linkname)}, which is not a file extracted before it`);
    }
    this.parents(rel, name);
    if (this.symlinks.has(rel)) this.replaceable(rel, name);
    try {
      fs.linkSync(this.abs(target), this.abs(rel));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (rel === target) return; // a link to itself: the file is already there
      this.replaceable(rel, name);
      fs.linkSync(this.abs(target), this.abs(rel));
    }
  }

  private async finish(): Promise<void> {
    if (this.batch.length > 0) await this.flushBatch();
    await Promise.all(this.syncing);
    if (this.syncError !== undefined) throw toBackupError(this.syncError, 'fsync of restored files');

    this.createSymlinks();

    // deepest first, so setting a parent's mtime comes after its children changed it
    const metas = [...this.dirMeta.values()].sort((a, b) => depth(b.rel) - depth(a.rel));
    for (const m of metas) {
      // every path here is a directory made or checked by us: symlinks never replace one
      if (m.owner) fs.chownSync(this.abs(m.rel), m.owner.uid, m.owner.gid);
      fs.chmodSync(this.abs(m.rel), m.mode);
      fs.utimesSync(this.abs(m.rel), m.mtime, m.mtime);
    }
    if (this.durable) {
      const all = [...this.dirs].sort((a, b) => depth(b) - depth(a));
      await forEachLimit(all, 8, (rel) => fsyncPath(this.abs(rel)));
    }
  }

  private warn(message: string): void {
    if (this.warnings.length < MAX_WARNINGS) this.warnings.push(message);
    else this.droppedWarnings++;
  }

  /** Errors from tar-stream and zlib become one-line DAMAGED errors naming the entry. */
  private translate(err: unknown): BackupError {
    if (err instanceof BackupError) return err;
    const e = err as NodeJS.ErrnoException;
    const msg = String(e?.message ?? err);
    const where = this.current === undefined ? '' : ` in entry ${quote(this.current)}`;
    if (msg === 'Unexpected end of data') {
      return new BackupError(
        'DAMAGED',
        this.current === undefined
          ? 'archive is truncated: the stream ends inside a tar header'
          : `archive is truncated: entry ${quote(this.current)} declares more bytes than the stream holds`,
        { cause: err },
      );
    }
    if (msg.startsWith('Invalid tar header') || msg === 'Header exceeds max size') {
      return new BackupError('DAMAGED', `archive is damaged: ${msg.replace(/\. Maybe.*$/, '')}${this.afterCurrent()}`, {
        cause: err,
      });
    }
    if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
      return new BackupError('DAMAGED', `archive is damaged: ${msg}${where}`, { cause: err });
    }
    return toBackupError(err, this.current === undefined ? 'extracting archive' : `extracting ${quote(this.current)}`);
  }

  private afterCurrent(): string {
    return this.current === undefined ? '' : ` (at entry ${quote(this.current)})`;
  }
}

/** Remembers the last 1024 bytes: a complete tar archive ends with two zero blocks. */
class TailTracker {
  total = 0;
  private tail: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (chunk.length >= 1024) this.tail = chunk.subarray(chunk.length - 1024);
    else {
      const joined = Buffer.concat([this.tail, chunk]);
      this.tail = joined.subarray(Math.max(0, joined.length - 1024));
    }
  }

  endsWithEofMarker(): boolean {
    return this.tail.length === 1024 && this.tail.every((b) => b === 0);
  }
}

/** uid and gid, from PAX records when the header's fields were too small for them */
function entryOwner(h: Header): Owner | undefined {
  const pax = h.pax as Record<string, string> | null | undefined;
  const id = (fromPax: string | undefined, field: unknown) => (fromPax !== undefined && /^\d+$/.test(fromPax) ? Number(fromPax) : field);
  const uid = id(pax?.uid, h.uid);
  const gid = id(pax?.gid, h.gid);
  return Number.isInteger(uid) && Number.isInteger(gid) ? { uid: uid as number, gid: gid as number } : undefined;
}

function entryMtime(h: Header): Date {
  // pax headers (GNU tar --format=posix) carry sub-second times; the ustar field has seconds only
  const pax = h.pax as Record<string, string> | null | undefined;
  const precise = pax?.mtime === undefined ? Number.NaN : Number.parseFloat(pax.mtime);
  if (Number.isFinite(precise)) return new Date(precise * 1000);
  return h.mtime instanceof Date && !Number.isNaN(h.mtime.getTime()) ? h.mtime : new Date(0);
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // link and directory entries carry no data; anything there is skipped
  }
}

function lstatOrNull(p: fs.PathLike): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already failing; the first error is the one reported
  }
}

async function fsyncPath(p: fs.PathLike): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // some filesystems refuse fsync on directories; the data files were synced already
    if (code !== 'EINVAL' && code !== 'EISDIR') throw err;
  } finally {
    await fh?.close();
  }
}

async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) await fn(items[i++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function depth(rel: string): number {
  if (rel === '') return 0;
  let n = 1;
  for (let i = 0; i < rel.length; i++) if (rel.charCodeAt(i) === 47) n++;
  return n;
}

/** Names go into one-line messages: JSON quoting escapes newlines, and huge names are cut. */
function quote(name: string): string {
  const shown = name.length > 200 ? `${name.slice(0, 200)}…` : name;
  return JSON.stringify(shown);
}

function damaged(entry: string, what: string): BackupError {
  return new BackupError('DAMAGED', `refused archive entry ${quote(entry)}: it ${what}`, {
    hint: 'the archive is damaged or hostile; restore from another backup',
  });
}

function abortError(signal: AbortSignal | undefined): BackupError {
  const reason: unknown = signal?.reason;
  if (reason instanceof BackupError) return reason;
  return new BackupError('FAILED', 'extraction aborted', { cause: reason });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
