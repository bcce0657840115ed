import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { type BigIntStats, createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { usageError } from '../errors.js';
import { type ChangePlan, recordFor } from './changes.js';
import type { ManifestRecord } from './manifest.js';
import { decodeName, fsPath, gnuLongNameEntry, isByteName, nameBytes, paxEntry, showName } from './bytenames.js';
import {
  OPEN_FLAGS,
  READ_AHEAD,
  SMALL_FILE,
  type SkippedPath,
  type SmallFile,
  type WalkSinks,
  UNREADABLE,
  excluder,
  pathsInside,
  readOpen,
  readSmallFile,
  sameFile,
  walk,
} from './tree.js';

/**
 * The tar side of a storage backup: the tree that archive/tree.ts walks, packed as a stream that
 * plain GNU tar reads back.
 */

export interface PackProgress {
  files: number;
  bytes: number;
}

export interface PackResult {
  /** regular files archived */
  fileCount: number;
  /** every entry: files, directories, symlinks */
  entryCount: number;
  /** bytes of file content read */
  bytes: number;
  warnings: string[];
  /** paths that could not be read (permissions): left out, the rest archived */
  skipped: SkippedPath[];
  /** notes on what was left out on purpose (the backup directory inside the tree) */
  notes: string[];
}

export interface PackOptions {
  /** incremental backups: what to put in the archive, and the manifest being written (see changes.ts) */
  plan?: ChangePlan;
  exclude?: string[];
  /** patterns the tool leaves out on its own (a restore's leftovers): each path left out is noted */
  leftovers?: string[];
  /** absolute paths to leave out when they lie inside the tree: the backup directory itself */
  excludePaths?: string[];
  onProgress?: (p: PackProgress) => void;
  signal?: AbortSignal;
}

/**
 * An entry's sink also emits the error its callback receives (a full disk destroys the whole pipeline):
 * the callback reports it, so the event must not crash the process as an unhandled 'error'.
 */
function quiet(sink: { on?: (ev: string, fn: () => void) => unknown }): void {
  sink?.on?.('error', () => {});
}

type Added = { kind: 'dir' | 'skip' | 'ok'; size?: number; sha256?: string; linkname?: string };
const SKIP: Added = { kind: 'skip' };
// what tar-stream's header fields hold (see `extended`)
const MAX_HEADER_SECONDS = 2 ** 31 - 1;
const MAX_HEADER_ID = 0o777777;

/**
 * Synchronous on purpose: an unchanged tree is one lstat per path and nothing else, and a cached lstat
 * is a few microseconds, less than the thread-pool round trip of the async call.
 */
function statBig(abs: string, follow: boolean): BigIntStats | undefined {
  try {
    return (follow ? fs.statSync : fs.lstatSync)(fsPath(abs), { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** Reads exactly `size` bytes: a file that grew is cut at its size when archived, one that shrank is padded. */
function exactly(size: number, onShort: (got: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      const room = size - seen;
      if (room <= 0) return cb();
      const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
      seen += piece.length;
      cb(null, piece);
    },
    flush(cb) {
      if (seen < size) {
        onShort(seen);
        const pad = Buffer.alloc(Math.min(1 << 20, size - seen));
        while (seen < size) {
          const n = Math.min(pad.length, size - seen);
          this.push(n === pad.length ? pad : pad.subarray(0, n));
          seen += n;
        }
      }
      cb();
    },
  });
}

/**
 * What tar-stream cannot write, pushed as extension entries just before the entry's own header (the
 * pack is idle between entries: each is awaited). A name (or link target) that is not UTF-8 goes in a
 * GNU long-name entry holding its bytes, and the header gets a plain ASCII stand-in that no PAX record
 * would override. Numbers the header fields cannot hold go in PAX records: tar-stream writes times
 * through a 32-bit integer (a file dated before 1970 or after 2038 came back from GNU tar with a
 * wrapped date) and owners in 6 octal digits (uid 1234567, as LDAP and FreeIPA hand out, became
 * 262143, and a restore as root gave the files to that stranger).
 */
function extended<H extends Partial<tar.Header> & { name: string }>(pack: tar.Pack, header: H): H {
  const records: Record<string, string> = {};
  const seconds = header.mtime ? Math.floor(header.mtime.getTime() / 1000) : 0;
  if (seconds < 0 || seconds > MAX_HEADER_SECONDS) records.mtime = String(seconds);
  if ((header.uid ?? 0) > MAX_HEADER_ID) records.uid = String(header.uid);
  if ((header.gid ?? 0) > MAX_HEADER_ID) records.gid = String(header.gid);
  const bytes = isByteName(header.name) || (header.linkname ? isByteName(header.linkname) : false);
  const fits = Object.keys(records).length === 0;
  if (fits && !bytes) return header;
  const out = { ...header };
  if (records.mtime) out.mtime = new Date(Math.min(Math.max(seconds, 0), MAX_HEADER_SECONDS) * 1000);
  // UTF-8 names: tar-stream's own PAX header carries the records along with any long name
  if (!bytes) return { ...out, pax: records };
  const push = (pack as unknown as { push(b: Buffer): boolean }).push.bind(pack);
  if (!fits) push(paxEntry(records));
  const plain = (s: string) => /^[\x20-\x7e]{0,98}$/.test(s);
  const standIn = (s: string) =>
    showName(s)
      .replace(/[^\x20-\x7e]/g, '?')
      .slice(-98);
  if (!plain(header.name)) {
    push(gnuLongNameEntry(nameBytes(header.name), 'name'));
    out.name = standIn(header.name);
  }
  if (header.linkname && !plain(header.linkname)) {
    push(gnuLongNameEntry(nameBytes(header.linkname), 'link'));
    out.linkname = standIn(header.linkname);
  }
  return out;
}

type EntryHeader = Partial<tar.Header> & { name: string };
type FileHeader = EntryHeader & { size: number };

/** One pack run: the tree walked a directory group at a time, each path an entry (see packTree). */
class Packer {
  readonly pack = tar.pack();
  readonly res: PackResult = { fileCount: 0, entryCount: 0, bytes: 0, warnings: [], skipped: [], notes: [] };
  private readonly top: string;
  private readonly globs: (rel: string) => boolean;
  private readonly leftovers: (rel: string) => boolean;
  private inside = new Set<string>();
  private readonly sinks: WalkSinks;
  // Small files of a directory are read a few at a time ahead of the one being archived: one file at
  // a time leaves the disk and the thread pool idle between four round trips (open, fstat, read, close).
  private readonly prefetched = new Map<string, Promise<SmallFile | undefined>>();

  constructor(
    private readonly root: string,
    private readonly options: PackOptions,
  ) {
    this.top = path.basename(path.resolve(root));
    this.globs = excluder(options.exclude);
    this.leftovers = excluder(options.leftovers);
    this.sinks = { warnings: this.res.warnings, skipped: this.res.skipped, top: this.top };
  }

  private readonly isExcluded = (rel: string): boolean => {
    if (this.inside.has(rel) || this.globs(rel)) return true;
    if (!this.leftovers(rel)) return false;
    this.res.notes.push(`${showName(`${this.top}/${rel}`)} is what a restore left in the storage directory: left out of the archive`);
    return true;
  };

  private skip(name: string, err: unknown): Added {
    this.res.skipped.push({ path: showName(name), error: (err as NodeJS.ErrnoException).code ?? String(err) });
    return SKIP;
  }

  private vanished(name: string): Added {
    this.res.warnings.push(`vanished while archiving: ${showName(name)}`);
    return SKIP;
  }

  private addEntry(header: EntryHeader, body?: Readable): Promise<void> {
    return new Promise((resolve, reject) => {
      const sink = this.pack.entry(extended(this.pack, header) as tar.Header, (err) => (err ? reject(err) : resolve()));
      if (!body) quiet(sink);
      else pipeline(body, sink).catch(reject);
    });
  }

  private prefetch(abs: string): void {
    if (!this.prefetched.has(abs)) this.prefetched.set(abs, readSmallFile(abs));
  }

  private async emitSmall(header: FileHeader, file: SmallFile): Promise<string | undefined> {
    const { res, options } = this;
    if (file.got < file.buf.length) {
      file.buf.fill(0, file.got);
      res.warnings.push(`changed while archiving (shrank to ${file.got} of ${file.buf.length} bytes; padded): ${showName(header.name)}`);
    }
    const sha256 = options.plan ? createHash('sha256').update(file.buf).digest('hex') : undefined;
    res.bytes += file.buf.length;
    await new Promise<void>((resolve, reject) =>
      quiet(this.pack.entry(extended(this.pack, header) as tar.Header, file.buf, (err) => (err ? reject(err) : resolve()))),
    );
    res.entryCount++;
    res.fileCount++;
    options.onProgress?.({ files: res.fileCount, bytes: res.bytes });
    return sha256;
  }

  /** One path of the tree as one entry: a directory's header, a symlink, a file; what cannot be read is told, not thrown. */
  async addPath(abs: string, name: string, followLink = false): Promise<Added> {
    const pre = this.prefetched.get(abs);
    if (pre) {
      this.prefetched.delete(abs);
      const file = await pre;
      if (file) {
        const { lst, fst } = file;
        const sha256 = await this.emitSmall(
          { name, uid: lst.uid, gid: lst.gid, mode: fst.mode & 0o7777, mtime: fst.mtime, size: fst.size, type: 'file' },
          file,
        );
        return { kind: 'ok', size: fst.size, sha256 };
      }
      // not a small regular file after all (or gone): the ordinary path below says what it is
    }
    const p = fsPath(abs);
    let st: fs.Stats;
    try {
      st = followLink ? await fsp.stat(p) : await fsp.lstat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // ENOTDIR: a directory on its path was replaced by a file since the walk listed it
      if (code === 'ENOENT' || (code === 'ENOTDIR' && !followLink)) return this.vanished(name);
      if (UNREADABLE.has(code) && !followLink) return this.skip(name, err);
      throw err;
    }
    const base = { name, mode: st.mode & 0o7777, mtime: st.mtime, uid: st.uid, gid: st.gid };
    if (st.isDirectory()) {
      await this.addEntry({ ...base, type: 'directory' });
      this.res.entryCount++;
      return { kind: 'dir' };
    }
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(p, { encoding: 'buffer' }).catch(() => undefined);
      if (target === undefined) return this.vanished(name);
      const linkname = decodeName(target);
      await this.addEntry({ ...base, type: 'symlink', linkname });
      this.res.entryCount++;
      return { kind: 'ok', linkname };
    }
    if (!st.isFile()) {
      this.res.warnings.push(`skipped special file (socket, FIFO or device): ${showName(name)}`);
      return SKIP;
    }
    return this.addFile(p, name, st, base);
  }

  /** A regular file, opened once: what is archived is what that descriptor reads, at the size it had when opened. */
  private async addFile(p: string | Buffer, name: string, st: fs.Stats, base: EntryHeader): Promise<Added> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(p, OPEN_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENOENT' || code === 'ENOTDIR') return this.vanished(name);
      if (code === 'ELOOP') {
        this.res.warnings.push(`changed while archiving (replaced by a symlink; left out): ${showName(name)}`);
        return SKIP;
      }
      if (UNREADABLE.has(code)) return this.skip(name, err);
      throw err;
    }
    // the size in the header must be the size we stream: take it from the open file
    const fst = await fh.stat();
    if (!sameFile(st, fst)) {
      await fh.close();
      const what = fst.isDirectory() ? 'a directory' : fst.isFile() ? 'another file' : 'a special file (FIFO, socket, device)';
      this.res.warnings.push(`changed while archiving (replaced by ${what}; left out): ${showName(name)}`);
      return SKIP;
    }
    const header = { ...base, mode: fst.mode & 0o7777, mtime: fst.mtime, size: fst.size, type: 'file' as const };
    if (fst.size <= SMALL_FILE) {
      // most media trees are thousands of small files: one read and one entry each, no stream machinery
      let file: SmallFile;
      try {
        file = await readOpen(fh, st, fst);
      } finally {
        await fh.close();
      }
      return { kind: 'ok', size: fst.size, sha256: await this.emitSmall(header, file) };
    }
    return this.streamFile(header, fh);
  }

  /** A large file streamed into its entry, hashed on the way for the manifest. */
  private async streamFile(header: FileHeader, fh: fsp.FileHandle): Promise<Added> {
    const { res, options } = this;
    // 256 KiB reads: garbage chunks are external memory that V8 collects late; with 1 MiB reads the peak
    // grew with the data (153 MB at 2.5 GB of videos, 131 MB now)
    const source = createReadStream('', { fd: fh, highWaterMark: 1 << 18 });
    const body = source.pipe(
      exactly(header.size, (got) => res.warnings.push(`changed while archiving (shrank to ${got} of ${header.size} bytes; padded): ${showName(header.name)}`)),
    );
    const hash = options.plan ? createHash('sha256') : undefined;
    body.on('data', (c: Buffer) => {
      res.bytes += c.length;
      hash?.update(c);
      // a large video takes minutes: report inside it, not only when it is done
      options.onProgress?.({ files: res.fileCount, bytes: res.bytes });
    });
    // an abort (SIGTERM) must not wait for a big file to be read to its end
    const onAbort = () => body.destroy(options.signal?.reason ?? new Error('aborted'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.addEntry(header, body);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      // pipe() does not pass a destroyed body back to its source: an abort left the file open, and Node
      // closed it at garbage collection with a warning and DEP0137 on stderr after Ctrl-C
      if (!source.destroyed) source.destroy();
    }
    res.entryCount++;
    res.fileCount++;
    options.onProgress?.({ files: res.fileCount, bytes: res.bytes });
    return { kind: 'ok', size: header.size, sha256: hash?.digest('hex') };
  }

  /**
   * One directory group. Group order (see archive/manifest.ts): a directory's header, then its files and
   * symlinks by name, then each subdirectory the same way. Every directory's contents still follow its
   * header before anything outside it, so `tar -x` sets each directory's mtime after its last entry.
   */
  private async addDir(rel: string, follow = false): Promise<void> {
    const { root, top, options } = this;
    const abs = rel ? path.join(root, rel) : path.resolve(root);
    const name = rel ? `${top}/${rel}` : top;
    const plan = options.plan;
    const group = plan ? await plan.openGroup(name) : undefined;
    const dst = plan ? statBig(abs, follow) : undefined;
    let headed = false;
    // a directory that is not one any more (or vanished) holds nothing of what it held
    const gone = async () => plan?.writeGroup(group!, []);
    // an unchanged directory gets a header only when something inside it is archived again
    if (!plan || !(await plan.unchanged(group!.self, dst, abs))) {
      if ((await this.addPath(abs, name, follow)).kind !== 'dir') return gone();
      headed = true;
    }
    const { entries, stats, subdirs, todo, records } = await this.sortGroup(rel, group);
    if (plan && !headed && todo.length > 0) {
      if ((await this.addPath(abs, name, follow)).kind !== 'dir') return gone();
      headed = true;
    }
    for (let k = 0; k < todo.length; k++) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      for (let j = k + 1; j < Math.min(todo.length, k + 1 + READ_AHEAD); j++) this.prefetch(entries[todo[j]].abs);
      const e = entries[todo[k]];
      const st = stats[todo[k]];
      const entryName = `${top}/${e.rel}`;
      // content the chain already holds (a renamed or copied large file) is referenced, not stored
      const ref = plan && st ? await plan.reference(entryName, e.abs, st, group!.entries.get(entryName)) : undefined;
      if (ref) {
        records.push(ref);
        continue;
      }
      const added = await this.addPath(e.abs, entryName);
      if (!plan) {
        if (added.kind === 'dir') subdirs.push(e.rel);
        continue;
      }
      if (added.kind === 'dir') this.res.warnings.push(`changed while archiving (became a directory; its contents left out): ${showName(entryName)}`);
      else if (added.kind === 'ok' && st) records.push(recordFor(entryName, st, plan.archiveId, added));
    }
    if (plan) {
      const self = headed ? dst && recordFor(name, dst, plan.archiveId) : group!.self;
      records.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      await plan.writeGroup(group!, self ? [self, ...records] : records);
    }
    for (const sub of subdirs) await this.addDir(sub);
  }

  /**
   * A directory's entries sorted out: subdirectories (for later), what must be archived (`todo`, indexes
   * into `entries`), and for an incremental backup the records of what is unchanged.
   */
  private async sortGroup(rel: string, group: Awaited<ReturnType<ChangePlan['openGroup']>> | undefined) {
    const plan = this.options.plan;
    const entries: { rel: string; abs: string }[] = [];
    for await (const e of walk(this.root, this.isExcluded, this.sinks, rel)) entries.push(e);
    const stats = plan ? entries.map((e) => statBig(e.abs, false)) : [];
    const subdirs: string[] = [];
    const todo: number[] = [];
    const records: ManifestRecord[] = [];
    for (let i = 0; i < entries.length; i++) {
      const st = stats[i];
      if (plan && st?.isDirectory()) subdirs.push(entries[i].rel);
      else if (!plan) todo.push(i);
      else {
        const prev = group!.entries.get(`${this.top}/${entries[i].rel}`);
        if (await plan.unchanged(prev, st, entries[i].abs)) records.push(prev!);
        else todo.push(i);
      }
    }
    return { entries, stats, subdirs, todo, records };
  }

  /** The whole tree; the backup directory inside it is left out and said so. */
  async run(): Promise<PackResult> {
    const { root, top, res } = this;
    try {
      this.inside = new Set(await pathsInside(root, this.options.excludePaths));
      for (const rel of this.inside) {
        if (rel === '')
          throw usageError(
            `the backup directory is the storage directory ${root}`,
            'set the backup directory (BACKUP_DIR) to a directory outside the storage directory',
            'backup-dir-outside',
          );
        res.notes.push(`the backup directory ${showName(`${top}/${rel}`)} is inside the storage directory: left out of the archive`);
      }
      // the storage path itself may be a symlink to the real directory (a mounted volume): archive the
      // directory it leads to, as a directory, so the backup restores to a tree and not a dangling link
      await this.addDir('', true);
      // reported in path order, as a plain walk would meet them
      res.skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      this.pack.finalize();
      return res;
    } catch (err) {
      this.pack.destroy(err as Error);
      throw err;
    }
  }
}

/**
 * Streams a tar archive of `root`, its entries under root's base name (the seed's layout: `tar -xf`
 * in the parent directory recreates the directory). Files that change or vanish while being read are
 * reported as warnings, never as a crash: the application keeps running during the backup.
 */
export function packTree(root: string, options: PackOptions = {}): { stream: Readable; result: Promise<PackResult> } {
  const packer = new Packer(root, options);
  const result = packer.run();
  result.catch(() => {}); // the stream carries the error too; avoid an unhandled rejection
  return { stream: packer.pack as unknown as Readable, result };
}
