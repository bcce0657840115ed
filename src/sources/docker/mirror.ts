import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { decodeEntryNames, decodeName, fsPath, showName } from '../../archive/bytenames.js';
import { BackupError } from '../../errors.js';
import { tempNameBeside } from '../../fsutil.js';

/**
 * A local mirror of a volume that is read through the Docker daemon (a remote or rootless daemon, whose
 * mountpoints are not ours to read): the daemon's tar stream of the volume is applied to a directory that
 * the normal storage backup then reads. Why a mirror updated in place rather than a fresh extraction:
 * incremental change detection keys on inode and ctime (archive/changes.ts), so a file must keep its
 * inode while it is unchanged, or every run would store the whole volume again. Why content is compared
 * and not only size and mtime: the daemon's tar headers carry whole seconds, and a same-size write in the
 * same second must still reach the backup; the bytes arrive anyway, reading the old copy beside them is
 * the price of never missing one.
 */
export interface MirrorStats {
  entries: number;
  /** files written because their content, type or link target changed */
  written: number;
  /** bytes of file content that arrived */
  bytes: number;
  /** paths in the mirror that the volume no longer has */
  removed: number;
  /** devices, fifos and sockets: not mirrored (a storage backup skips them too) */
  skipped: string[];
}

interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

const asRoot = process.getuid?.() === 0;

/** `vb-volume/a/b` → `a/b`; refuses anything that could leave the mirror. */
function relativeName(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new BackupError('FAILED', `the Docker daemon's archive names a path outside the volume: ${showName(name)}`);
  return parts.slice(1).join('/');
}

async function lstatOrUndefined(p: string) {
  return fsp.lstat(fsPath(p)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

async function setMeta(p: string, m: Meta, symlink = false): Promise<void> {
  const fp = fsPath(p);
  if (asRoot) await fsp.lchown(fp, m.uid, m.gid);
  if (!symlink) await fsp.chmod(fp, m.mode);
  await fsp.lutimes(fp, m.mtime, m.mtime);
}

/** Only what differs, so an unchanged entry keeps its ctime (a chmod or utimes would count as a change). */
async function fixMeta(p: string, st: { mode: number; uid: number; gid: number; mtimeMs: number }, m: Meta, symlink = false): Promise<void> {
  const fp = fsPath(p);
  if (asRoot && (st.uid !== m.uid || st.gid !== m.gid)) await fsp.lchown(fp, m.uid, m.gid);
  if (!symlink && (st.mode & 0o7777) !== m.mode) await fsp.chmod(fp, m.mode);
  if (Math.floor(st.mtimeMs / 1000) !== Math.floor(m.mtime.getTime() / 1000)) await fsp.lutimes(fp, m.mtime, m.mtime);
}

/** Content from `entry`, compared with the file at `abs` as it arrives; the file is replaced only when it differs. */
async function syncFile(abs: string, size: number, entry: AsyncIterable<Buffer>, meta: Meta): Promise<{ written: boolean; bytes: number }> {
  let st = await lstatOrUndefined(abs);
  if (st && !st.isFile()) {
    await fsp.rm(fsPath(abs), { recursive: true, force: true });
    st = undefined;
  }
  const old = st && st.size === size ? await fsp.open(fsPath(abs), 'r') : undefined;
  let out: fsp.FileHandle | undefined;
  let tmp: string | undefined;
  let offset = 0;
  const startWriting = async () => {
    tmp = tempNameBeside(abs, '.vb-mirror-');
    out = await fsp.open(fsPath(tmp), 'wx', 0o600);
    // the bytes that matched so far are the old file's: copied from it, not kept in memory
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let at = 0; at < offset; ) {
      const { bytesRead } = await old!.read(buf, 0, Math.min(buf.length, offset - at), at);
      if (!bytesRead) throw new BackupError('FAILED', `mirror file ${showName(abs)} shrank while it was compared`);
      await out.write(buf, 0, bytesRead);
      at += bytesRead;
    }
  };
  try {
    if (!old) await startWriting();
    const cmp = Buffer.allocUnsafe(1 << 16);
    for await (const chunk of entry) {
      if (!out) {
        const view = chunk.length <= cmp.length ? cmp : Buffer.allocUnsafe(chunk.length);
        const { bytesRead } = await old!.read(view, 0, chunk.length, offset);
        if (bytesRead === chunk.length && view.subarray(0, bytesRead).equals(chunk)) {
          offset += chunk.length;
          continue;
        }
        await startWriting();
      }
      await out!.write(chunk);
      offset += chunk.length;
    }
    if (!out) {
      await fixMeta(abs, st!, meta);
      return { written: false, bytes: offset };
    }
    await out.close();
    out = undefined;
    await setMeta(tmp!, meta);
    await fsp.rename(fsPath(tmp!), fsPath(abs));
    tmp = undefined;
    return { written: true, bytes: offset };
  } finally {
    await old?.close();
    await out?.close();
    if (tmp) await fsp.rm(fsPath(tmp), { force: true });
  }
}

/**
 * Every directory above `rel` in the mirror must be a real directory, not a link: the stream comes
 * from a daemon that may be someone else's (a rootless daemon is its user's), and a symlink entry
 * `a -> /etc` followed by a file `a/passwd` would otherwise have root replace /etc/passwd. `known`
 * holds the directories already checked (or made) in this run, so the walk costs one lstat each.
 */
async function realParents(mirror: string, rel: string, known: Set<string>): Promise<void> {
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    if (known.has(dir)) continue;
    const st = await lstatOrUndefined(path.join(mirror, dir));
    if (!st?.isDirectory())
      throw new BackupError(
        'FAILED',
        `the Docker daemon's archive names ${showName(rel)}, but ${showName(dir)} is ${st ? 'not a directory' : 'missing'} in the volume's mirror`,
      );
    known.add(dir);
  }
}

/** Applies the tar stream of a volume to `mirror`; afterwards the mirror holds exactly the volume's tree. */
export async function syncMirror(input: Readable, mirror: string, signal?: AbortSignal, linkFreeFrom = path.dirname(mirror)): Promise<MirrorStats> {
  await fsp.mkdir(mirror, { recursive: true, mode: 0o700 });
  // the mirror is emptied of what the volume lacks: a link planted at it (or at a directory this tool
  // made on the way to it, from `linkFreeFrom` down) would aim those deletes at wherever it leads
  const rel = path.relative(linkFreeFrom, mirror);
  for (let at = linkFreeFrom, i = 0, parts = rel.split(path.sep); i < parts.length; i++) {
    at = path.join(at, parts[i]);
    const st = await fsp.lstat(at);
    if (!st.isDirectory())
      throw new BackupError('FAILED', `refusing to mirror a volume into ${at}: it is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}`);
  }
  const stats: MirrorStats = { entries: 0, written: 0, bytes: 0, removed: 0, skipped: [] };
  const seen = new Set<string>(['']);
  const realDirs = new Set<string>(['']);
  const dirs: { abs: string; meta: Meta }[] = [];
  const ex = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  input.on('error', (err) => ex.destroy(err));
  input.pipe(ex);
  const onAbort = () =>
    ex.destroy(signal?.reason instanceof Error ? signal.reason : new BackupError('FAILED', 'interrupted while reading the volume from the Docker daemon'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const entry of ex) {
      decodeEntryNames(entry.header);
      const h = entry.header;
      const rel = relativeName(h.name);
      const abs = rel ? path.join(mirror, rel) : mirror;
      const meta: Meta = { mode: (h.mode ?? 0o644) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime: h.mtime ?? new Date(0) };
      stats.entries++;
      await realParents(mirror, rel, realDirs);
      if (h.type === 'link') await realParents(mirror, relativeName(h.linkname ?? ''), realDirs);
      // whatever this entry puts at `rel` (a file, a link) is no directory to write under
      if (h.type !== 'directory') realDirs.delete(rel);
      seen.add(rel);
      if (h.type === 'directory') {
        const st = await lstatOrUndefined(abs);
        if (st && !st.isDirectory()) await fsp.rm(fsPath(abs), { force: true });
        if (!st?.isDirectory()) await fsp.mkdir(fsPath(abs), { mode: 0o700 });
        realDirs.add(rel);
        dirs.push({ abs, meta });
      } else if (h.type === 'file' || h.type === 'contiguous-file') {
        const r = await syncFile(abs, h.size ?? 0, entry as AsyncIterable<Buffer>, meta);
        stats.bytes += r.bytes;
        if (r.written) stats.written++;
        continue;
      } else if (h.type === 'symlink') {
        const st = await lstatOrUndefined(abs);
        const same = st?.isSymbolicLink() && (await fsp.readlink(fsPath(abs))) === h.linkname;
        if (same) await fixMeta(abs, st!, meta, true);
        else {
          if (st) await fsp.rm(fsPath(abs), { recursive: true, force: true });
          await fsp.symlink(fsPath(h.linkname ?? ''), fsPath(abs));
          await setMeta(abs, meta, true);
          stats.written++;
        }
      } else if (h.type === 'link') {
        const target = path.join(mirror, relativeName(h.linkname ?? ''));
        const [st, tst] = [await lstatOrUndefined(abs), await lstatOrUndefined(target)];
        if (!tst) throw new BackupError('FAILED', `the Docker daemon's archive links ${showName(rel)} to a file it did not send first`);
        if (st?.ino !== tst.ino) {
          if (st) await fsp.rm(fsPath(abs), { recursive: true, force: true });
          await fsp.link(fsPath(target), fsPath(abs));
          stats.written++;
        }
      } else {
        stats.skipped.push(rel);
      }
      entry.resume();
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    input.unpipe(ex);
    ex.on('error', () => {});
  }
  stats.removed = await removeUnseen(mirror, '', seen);
  // deepest first: writing into a directory changes its mtime; an unchanged one is not touched (ctime)
  for (const d of dirs.reverse()) await fixMeta(d.abs, await fsp.lstat(fsPath(d.abs)), d.meta);
  return stats;
}

async function removeUnseen(mirror: string, rel: string, seen: Set<string>): Promise<number> {
  let n = 0;
  const dir = rel ? path.join(mirror, rel) : mirror;
  for (const e of await fsp.readdir(fsPath(dir), { withFileTypes: true, encoding: 'buffer' })) {
    const name = decodeName(e.name);
    const child = rel ? `${rel}/${name}` : name;
    if (!seen.has(child)) {
      await fsp.rm(fsPath(path.join(mirror, child)), { recursive: true, force: true });
      n++;
    } else if (e.isDirectory()) n += await removeUnseen(mirror, child, seen);
  }
  return n;
}
