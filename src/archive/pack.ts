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
// what tar-stream's header fields hold (see `extended` in packTree)
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
 * Streams a tar archive of `root`, its entries under root's base name (the seed's layout: `tar -xf`
 * in the parent directory recreates the directory). Files that change or vanish while being read are
 * reported as warnings, never as a crash: the application keeps running during the backup.
 */
export function packTree(root: string, options: PackOptions = {}): { stream: Readable; result: Promise<PackResult> } {
  const pack = tar.pack();
  const top = path.basename(path.resolve(root));
  const globs = excluder(options.exclude);
  let inside = new Set<string>();
  const leftovers = excluder(options.leftovers);
  const res: PackResult = { fileCount: 0, entryCount: 0, bytes: 0, warnings: [], skipped: [], notes: [] };
  const isExcluded = (rel: string) => {
    if (inside.has(rel) || globs(rel)) return true;
    if (!leftovers(rel)) return false;
    res.notes.push(`${showName(`${top}/${rel}`)} is what a restore left in the storage directory: left out of the archive`);
    return true;
  };
  const sinks: WalkSinks = { warnings: res.warnings, skipped: res.skipped, top };
  const skip = (name: string, err: unknown): Added => {
    res.skipped.push({ path: showName(name), error: (err as NodeJS.ErrnoException).code ?? String(err) });
    return SKIP;
  };

  /**
   * What tar-stream cannot write, pushed as extension entries just before the entry's own header (the
   * pack is idle between entries: each is awaited). A name (or link target) that is not UTF-8 goes in a
   * GNU long-name entry holding its bytes, and the header gets a plain ASCII stand-in that no PAX record
   * would override. Numbers the header fields cannot hold go in PAX records: tar-stream writes times
   * through a 32-bit integer (a file dated before 1970 or after 2038 came back from GNU tar with a
   * wrapped date) and owners in 6 octal digits (uid 1234567, as LDAP and FreeIPA hand out, became
   * 262143, and a restore as root gave the files to that stranger).
   */
  const extended = <H extends Partial<tar.Header> & { name: string }>(header: H): H => {
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
  };

  const addEntry = (header: Partial<tar.Header> & { name: string }, body?: Readable): Promise<void> =>
    new Promise((resolve, reject) => {
      if (!body) {
        quiet(pack.entry(extended(header) as tar.Header, (err) => (err ? reject(err) : resolve())));
        return;
      }
      const sink = pack.entry(extended(header) as tar.Header, (err) => (err ? reject(err) : resolve()));
      pipeline(body, sink).catch(reject);
    });

  // Small files of a directory are read a few at a time ahead of the one being archived: one file at
  // a time leaves the disk and the thread pool idle between four round trips (open, fstat, read, close).
  const prefetched = new Map<string, Promise<SmallFile | undefined>>();
  const prefetch = (abs: string) => {
    if (!prefetched.has(abs)) prefetched.set(abs, readSmallFile(abs));
  };

  const emitSmall = async (header: Partial<tar.Header> & { name: string; size: number }, file: SmallFile): Promise<string | undefined> => {
    if (file.got < file.buf.length) {
      file.buf.fill(0, file.got);
      res.warnings.push(`changed while archiving (shrank to ${file.got} of ${file.buf.length} bytes; padded): ${showName(header.name)}`);
    }
    const sha256 = options.plan ? createHash('sha256').update(file.buf).digest('hex') : undefined;
    res.bytes += file.buf.length;
    await new Promise<void>((resolve, reject) => quiet(pack.entry(extended(header) as tar.Header, file.buf, (err) => (err ? reject(err) : resolve()))));
    res.entryCount++;
    res.fileCount++;
    options.onProgress?.({ files: res.fileCount, bytes: res.bytes });
    return sha256;
  };

  const addPath = async (abs: string, name: string, followLink = false): Promise<Added> => {
    const pre = prefetched.get(abs);
    if (pre) {
      prefetched.delete(abs);
      const file = await pre;
      if (file) {
        const { lst, fst } = file;
        const sha256 = await emitSmall({ name, uid: lst.uid, gid: lst.gid, mode: fst.mode & 0o7777, mtime: fst.mtime, size: fst.size, type: 'file' }, file);
        return { kind: 'ok', size: fst.size, sha256 };
      }
      // not a small regular file after all (or gone): the ordinary path below says what it is
    }
    const p = fsPath(abs);
    let st;
    try {
      st = followLink ? await fsp.stat(p) : await fsp.lstat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // ENOTDIR: a directory on its path was replaced by a file since the walk listed it
      if (code === 'ENOENT' || (code === 'ENOTDIR' && !followLink)) {
        res.warnings.push(`vanished while archiving: ${showName(name)}`);
        return SKIP;
      }
      if (UNREADABLE.has(code) && !followLink) return skip(name, err);
      throw err;
    }
    const base = { name, mode: st.mode & 0o7777, mtime: st.mtime, uid: st.uid, gid: st.gid };
    if (st.isDirectory()) {
      await addEntry({ ...base, type: 'directory' });
      res.entryCount++;
      return { kind: 'dir' };
    }
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(p, { encoding: 'buffer' }).catch(() => undefined);
      if (target === undefined) {
        res.warnings.push(`vanished while archiving: ${showName(name)}`);
        return SKIP;
      }
      const linkname = decodeName(target);
      await addEntry({ ...base, type: 'symlink', linkname });
      res.entryCount++;
      return { kind: 'ok', linkname };
    }
    if (!st.isFile()) {
      res.warnings.push(`skipped special file (socket, FIFO or device): ${showName(name)}`);
      return SKIP;
    }
    let fh;
    try {
      fh = await fsp.open(p, OPEN_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        res.warnings.push(`vanished while archiving: ${showName(name)}`);
        return SKIP;
      }
      if (code === 'ELOOP') {
        res.warnings.push(`changed while archiving (replaced by a symlink; left out): ${showName(name)}`);
        return SKIP;
      }
      if (UNREADABLE.has(code)) return skip(name, err);
      throw err;
    }
    // the size in the header must be the size we stream: take it from the open file
    const fst = await fh.stat();
    if (!sameFile(st, fst)) {
      await fh.close();
      const what = fst.isDirectory() ? 'a directory' : fst.isFile() ? 'another file' : 'a special file (FIFO, socket, device)';
      res.warnings.push(`changed while archiving (replaced by ${what}; left out): ${showName(name)}`);
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
      return { kind: 'ok', size: fst.size, sha256: await emitSmall(header, file) };
    }
    // 256 KiB reads: garbage chunks are external memory that V8 collects late; with 1 MiB reads the peak
    // grew with the data (153 MB at 2.5 GB of videos, 131 MB now)
    const source = createReadStream('', { fd: fh, highWaterMark: 1 << 18 });
    const body = source.pipe(
      exactly(fst.size, (got) => res.warnings.push(`changed while archiving (shrank to ${got} of ${fst.size} bytes; padded): ${showName(name)}`)),
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
      await addEntry(header, body);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      // pipe() does not pass a destroyed body back to its source: an abort left the file open, and Node
      // closed it at garbage collection with a warning and DEP0137 on stderr after Ctrl-C
      if (!source.destroyed) source.destroy();
    }
    res.entryCount++;
    res.fileCount++;
    options.onProgress?.({ files: res.fileCount, bytes: res.bytes });
    return { kind: 'ok', size: fst.size, sha256: hash?.digest('hex') };
  };

  const result = (async () => {
    try {
      inside = new Set(await pathsInside(root, options.excludePaths));
      for (const rel of inside) {
        if (rel === '')
          throw usageError(
            `the backup directory is the storage directory ${root}`,
            'set --backup-dir or BACKUP_DIR to a directory outside the storage directory',
          );
        res.notes.push(`the backup directory ${showName(`${top}/${rel}`)} is inside the storage directory: left out of the archive`);
      }
      // Group order (see archive/manifest.ts): a directory's header, then its files and symlinks by
      // name, then each subdirectory the same way. Every directory's contents still follow its header
      // before anything outside it, so `tar -x` sets each directory's mtime after its last entry.
      const addDir = async (rel: string, follow = false): Promise<void> => {
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
          if ((await addPath(abs, name, follow)).kind !== 'dir') return gone();
          headed = true;
        }
        const entries: { rel: string; abs: string }[] = [];
        for await (const e of walk(root, isExcluded, sinks, rel)) entries.push(e);
        const stats = plan ? entries.map((e) => statBig(e.abs, false)) : [];
        const subdirs: string[] = [];
        const todo: { i: number; prev?: ManifestRecord }[] = [];
        const records: ManifestRecord[] = [];
        for (let i = 0; i < entries.length; i++) {
          const st = stats[i];
          if (plan && st?.isDirectory()) subdirs.push(entries[i].rel);
          else if (!plan) todo.push({ i });
          else {
            const prev = group!.entries.get(`${top}/${entries[i].rel}`);
            if (await plan.unchanged(prev, st, entries[i].abs)) records.push(prev!);
            else todo.push({ i });
          }
        }
        if (plan && !headed && todo.length > 0) {
          if ((await addPath(abs, name, follow)).kind !== 'dir') return gone();
          headed = true;
        }
        for (let k = 0; k < todo.length; k++) {
          if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
          for (let j = k + 1; j < Math.min(todo.length, k + 1 + READ_AHEAD); j++) prefetch(entries[todo[j].i].abs);
          const e = entries[todo[k].i];
          // content the chain already holds (a renamed or copied large file) is referenced, not stored
          const ref =
            plan && stats[todo[k].i] ? await plan.reference(`${top}/${e.rel}`, e.abs, stats[todo[k].i]!, group!.entries.get(`${top}/${e.rel}`)) : undefined;
          if (ref) {
            records.push(ref);
            continue;
          }
          const added = await addPath(e.abs, `${top}/${e.rel}`);
          if (!plan) {
            if (added.kind === 'dir') subdirs.push(e.rel);
            continue;
          }
          const st = stats[todo[k].i];
          if (added.kind === 'dir') res.warnings.push(`changed while archiving (became a directory; its contents left out): ${showName(`${top}/${e.rel}`)}`);
          else if (added.kind === 'ok' && st) records.push(recordFor(`${top}/${e.rel}`, st, plan.archiveId, added));
        }
        if (plan) {
          const self = headed ? dst && recordFor(name, dst, plan.archiveId) : group!.self;
          records.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
          await plan.writeGroup(group!, self ? [self, ...records] : records);
        }
        for (const sub of subdirs) await addDir(sub);
      };
      // the storage path itself may be a symlink to the real directory (a mounted volume): archive the
      // directory it leads to, as a directory, so the backup restores to a tree and not a dangling link
      await addDir('', true);
      // reported in path order, as a plain walk would meet them
      res.skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      pack.finalize();
      return res;
    } catch (err) {
      pack.destroy(err as Error);
      throw err;
    }
  })();
  result.catch(() => {}); // the stream carries the error too; avoid an unhandled rejection
  return { stream: pack as unknown as Readable, result };
}
