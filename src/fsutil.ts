import {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  fchmodSync,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
  type WriteStream,
  writeFileSync,
} from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createHash, randomInt } from 'node:crypto';
import * as path from 'node:path';

/** Backups hold user data: files are 0600 and directories 0700. */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;
/** open(2) flags of a new file that must not exist yet, nor be a link */
const EXCLUSIVE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** A write stream into a new file (see createExclusive): never through a link planted at its name. */
export function exclusiveWriteStream(file: string, mode = FILE_MODE): WriteStream {
  // fs.open takes numeric flags; @types/node declares only the string form
  return createWriteStream(file, { flags: EXCLUSIVE_FLAGS as unknown as string, mode, highWaterMark: 1 << 20 });
}

export async function ensureDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
}

/** fsync a directory so a rename inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY);
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic there
  } finally {
    await fh?.close();
  }
}

export async function fsyncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates `file` for writing, failing when anything (a file, a planted symlink) already has its name:
 * O_EXCL and O_NOFOLLOW, so a run as root never writes through a link a neighbour left in a shared
 * directory. `mode` is given at creation and set again on the descriptor (the umask may have narrowed it).
 */
export async function createExclusive(file: string, mode = FILE_MODE): Promise<fsp.FileHandle> {
  const fh = await fsp.open(file, EXCLUSIVE_FLAGS, mode);
  try {
    await fh.chmod(mode);
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.rm(file, { force: true });
    throw err;
  }
  return fh;
}

/**
 * createExclusive at a name this tool owns by convention (`<final name>.tmp`, `….upload.tmp`): whatever
 * has the name already, a crash's leftover or a link someone planted on the backup disk, is removed
 * first (rm takes the link itself, never what it leads to), and the name is then created exclusively,
 * so a link planted again in between fails the run instead of receiving the write.
 */
export async function createFresh(file: string, mode = FILE_MODE): Promise<fsp.FileHandle> {
  await fsp.rm(file, { force: true });
  return createExclusive(file, mode);
}

/** Writes `data` into a new file at `file` (see createFresh): for temp copies a later step reads or renames. */
export async function writeFresh(file: string, data: string | Uint8Array, mode = FILE_MODE): Promise<void> {
  const fh = await createFresh(file, mode);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
}

/**
 * A temporary name beside `file` that nobody can guess: `<prefix><name>-<pid><random digits><suffix>`
 * (digits only, so the `.tmp-NAME-<digits>` leftovers stay recognisable).
 */
export function tempNameBeside(file: string, prefix = '.tmp-', suffix = ''): string {
  return path.join(path.dirname(file), `${prefix}${path.basename(file)}-${process.pid}${randomInt(1e9, 1e10)}${suffix}`);
}

/**
 * Write a small file atomically: an unguessable temp name created exclusively (never through a link),
 * fsync, rename, fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = FILE_MODE, tmp = tempNameBeside(file)): Promise<void> {
  const dir = path.dirname(file);
  const fh = await createExclusive(tmp, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** writeFileAtomic without an await, for a critical section under withFileLockSync (small files only). */
export function writeFileAtomicSync(file: string, data: string, mode = FILE_MODE, tmp = tempNameBeside(file)): void {
  const fd = openSync(tmp, EXCLUSIVE_FLAGS, mode);
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = openSync(path.dirname(file), constants.O_RDONLY);
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic there
  }
}

export async function sha256File(file: string): Promise<{ checksum: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { checksum: hash.digest('hex'), size };
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Free bytes available to this user at `dir` (or its nearest existing parent). */
export async function freeSpace(dir: string): Promise<number> {
  let d = path.resolve(dir);
  for (;;) {
    try {
      const s = await fsp.statfs(d);
      return Number(s.bavail) * Number(s.bsize);
    } catch (err) {
      const parent = path.dirname(d);
      if (parent === d) throw err;
      d = parent;
    }
  }
}

/** Text of a file an operator edited, without the byte-order mark Windows editors put first (it would become part of the first key). */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
