import { constants as fsConstants, readdirSync, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { usageError } from '../errors.js';
import { decodeName, fsPath, showName } from './bytenames.js';
import { type ExcludeMatcher, excludeMatcher } from './exclude.js';

/**
 * The media tree as the application left it: walked in name order with names as bytes, excludes
 * applied, small files read whole; archive/pack.ts turns what is read into a tar stream.
 */

/** Files up to this size are read in one call; bigger ones are streamed, so memory stays flat. */
export const SMALL_FILE = 1024 * 1024;

/** Files read ahead within a directory (at most READ_AHEAD × SMALL_FILE bytes held). */
export const READ_AHEAD = 8;

export interface SmallFile {
  lst: Stats;
  fst: Stats;
  buf: Buffer;
  got: number;
}

export async function readOpen(fh: fsp.FileHandle, lst: Stats, fst: Stats): Promise<SmallFile> {
  const buf = Buffer.allocUnsafe(fst.size);
  let got = 0;
  while (got < fst.size) {
    const { bytesRead } = await fh.read(buf, got, fst.size - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return { lst, fst, buf, got };
}

/**
 * Files are opened without following a symlink and without blocking: a file swapped for a symlink
 * (to a file the application must not publish) fails with ELOOP, one swapped for a FIFO opens at once
 * instead of waiting forever for a writer. What was opened is then compared with what the walk saw.
 */
export const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** Whether the open file is the regular file the walk's lstat saw (not a replacement). */
export const sameFile = (lst: Stats, fst: Stats): boolean => fst.isFile() && fst.ino === lst.ino && fst.dev === lst.dev;

/** Errors that mean "this path cannot be read by us": skipped and recorded, never fatal. */
export const UNREADABLE = new Set(['EACCES', 'EPERM']);

/** A small regular file read whole, or undefined for anything else (or any error: the caller retries). */
export async function readSmallFile(abs: string): Promise<SmallFile | undefined> {
  try {
    const lst = await fsp.lstat(fsPath(abs));
    if (!lst.isFile() || lst.size > SMALL_FILE) return undefined;
    const fh = await fsp.open(fsPath(abs), OPEN_FLAGS);
    try {
      const fst = await fh.stat();
      if (!sameFile(lst, fst) || fst.size > SMALL_FILE) return undefined;
      return await readOpen(fh, lst, fst);
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

export interface SkippedPath {
  /** relative to the storage directory's parent, as in the archive; bytes that are not UTF-8 as \xNN */
  path: string;
  /** the error code (EACCES…) */
  error: string;
}

export async function checkStorageDir(dir: string): Promise<void> {
  let st;
  try {
    st = await fsp.stat(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usageError(
      code === 'ENOENT' ? `storage directory not found: ${dir}` : `cannot read storage directory ${dir}: ${code}`,
      'set the storage path (STORAGE_PATH) to the media directory',
      'storage-path',
    );
  }
  if (!st.isDirectory())
    throw usageError(`storage path is not a directory: ${dir}`, 'set the storage path (STORAGE_PATH) to the media directory', 'storage-path');
  // a subdirectory we cannot read is skipped and reported; the storage directory itself is the backup
  try {
    await fsp.access(dir, fsConstants.R_OK | fsConstants.X_OK);
  } catch (err) {
    throw usageError(
      `cannot read storage directory ${dir}: ${(err as NodeJS.ErrnoException).code}`,
      'run the backup as a user that can read the media directory',
    );
  }
}

export function excluder(globs: string[] | ExcludeMatcher | undefined): (rel: string) => boolean {
  return typeof globs === 'function' ? globs : excludeMatcher(globs);
}

/**
 * The excluded absolute paths (the backup directory) that lie inside `root`, relative to it. Compared
 * by real path, so a symlinked storage or backup directory is recognised too.
 */
export async function pathsInside(root: string, paths: string[] | undefined): Promise<string[]> {
  if (!paths?.length) return [];
  const realRoot = await fsp.realpath(root).catch(() => path.resolve(root));
  const out: string[] = [];
  for (const p of paths) {
    const real = await fsp.realpath(p).catch(() => path.resolve(p));
    const rel = path.relative(realRoot, real);
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) out.push(rel);
  }
  return out;
}

export interface WalkSinks {
  warnings: string[];
  skipped: SkippedPath[];
  /** prefix of the names shown in warnings and skipped paths (the archive's top directory) */
  top?: string;
}

/**
 * Lists one directory in name order, skipping excluded paths; yields paths relative to root. Names are
 * read as bytes (see bytenames.ts), so a name that is not UTF-8 is archived, not lost.
 */
export async function* walk(root: string, isExcluded: (rel: string) => boolean, sinks: WalkSinks, rel = ''): AsyncGenerator<{ rel: string; abs: string }> {
  let names: string[];
  const shown = () => showName(sinks.top ? `${sinks.top}/${rel}` : rel);
  try {
    // synchronous: a cached directory lists in microseconds, a thread-pool round trip costs more (an
    // unchanged nightly run is mostly this walk)
    names = readdirSync(fsPath(path.join(root, rel)), { encoding: 'buffer' })
      .map(decodeName)
      .sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT' && rel) {
      sinks.warnings.push(`directory vanished while archiving: ${shown()}`);
      return;
    }
    if (code === 'ENOTDIR' && rel) {
      sinks.warnings.push(`directory replaced by a file while archiving (left out): ${shown()}`);
      return;
    }
    if (UNREADABLE.has(code) && rel) {
      sinks.skipped.push({ path: `${shown()}/`, error: code });
      return;
    }
    throw err;
  }
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    if (isExcluded(r)) continue;
    yield { rel: r, abs: path.join(root, r) };
  }
}

/** Bytes the tree holds (after excludes): the input of the free-space estimate. */
export async function treeSize(root: string, exclude?: string[] | ExcludeMatcher, excludePaths?: string[]): Promise<{ bytes: number; files: number }> {
  const inside = new Set(await pathsInside(root, excludePaths));
  const globs = excluder(exclude);
  const isExcluded = (rel: string) => inside.has(rel) || globs(rel);
  let bytes = 0;
  let files = 0;
  const stack = [''];
  // what cannot be read is only left out of the estimate here; the backup itself records it
  const sinks: WalkSinks = { warnings: [], skipped: [] };
  while (stack.length) {
    const rel = stack.pop()!;
    for await (const e of walk(root, isExcluded, sinks, rel)) {
      const st = await fsp.lstat(fsPath(e.abs)).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) stack.push(e.rel);
      else if (st.isFile()) {
        bytes += st.size;
        files++;
      }
    }
  }
  return { bytes, files };
}
