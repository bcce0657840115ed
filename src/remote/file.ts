import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { usageError } from '../errors.js';
import { SchemeRemote, type RemoteEntry, RemoteError, type SpaceInfo, type ObjectOptions, downloadTo, joinRemote, registerScheme, tempName } from './remote.js';

/** file:///mnt/nas/backups — another disk or a mounted NAS. */
class FileRemote extends SchemeRemote {
  constructor(
    url: string,
    private readonly root: string,
  ) {
    super('file', url);
  }

  private rootChecked?: Promise<void>;

  /**
   * The root is the disk or the NAS share, or a directory right inside it. A disk that is not mounted
   * leaves its mount point (or nothing) in its place: creating the path there would fill the root
   * filesystem with backups that vanish when the disk comes back. So only the last component is ever
   * created, and only when its parent exists; a remote that `init` marked must also hold its marker
   * (offsite/remote-marker.ts), which catches the empty mount point too. Checked once per opened remote.
   */
  private ensureRoot(): Promise<void> {
    this.rootChecked ??= (async () => {
      const st = await fsp.stat(this.root).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw this.wrap(err, '');
      });
      if (st?.isDirectory()) return;
      if (st) throw new RemoteError('fatal', `${this.url}: ${this.root} is not a directory`);
      const parent = path.dirname(this.root);
      const up = await fsp.stat(parent).catch(() => undefined);
      if (!up?.isDirectory()) {
        throw new RemoteError('fatal', `${this.url}: ${this.root} does not exist, nor does ${parent}: is the disk or share mounted?`, {
          hint: `mount it (findmnt ${parent}); a new location: create it first (mkdir -p ${this.root}) — only the last directory of a remote's path is ever created`,
        });
      }
      await fsp.mkdir(this.root, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw this.wrap(err, '');
      });
    })();
    return this.rootChecked;
  }

  async createRoot(): Promise<{ created: boolean; path: string; onRootFilesystem: boolean }> {
    let created = false;
    try {
      // not recursive: a missing parent is a missing mount point, which init must not paper over
      await fsp.mkdir(this.root, { mode: 0o700 });
      created = true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new RemoteError('fatal', `cannot create ${this.root}: ${path.dirname(this.root)} does not exist`, {
          hint: `mount the disk or share first, or create the parent: mkdir -p ${path.dirname(this.root)}`,
        });
      }
      if (code !== 'EEXIST') throw this.wrap(err, '');
    }
    this.rootChecked = undefined;
    const [st, top] = await Promise.all([fsp.stat(this.root), fsp.stat('/')]);
    return { created, path: this.root, onRootFilesystem: st.dev === top.dev };
  }

  private abs(rel: string): string {
    return path.join(this.root, ...joinRemote('', rel).split('/'));
  }

  /**
   * The path of `rel`, once every directory between the root and it is a real directory, not a symlink:
   * whoever owns the NAS could otherwise aim a run's writes (as root) at local directories. The root
   * itself may be a link the operator chose.
   */
  private async confined(rel: string): Promise<string> {
    await this.ensureRoot();
    const parts = joinRemote('', rel).split('/');
    let dir = this.root;
    for (const part of parts.slice(0, -1)) {
      dir = path.join(dir, part);
      const st = await fsp.lstat(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw this.wrap(err, rel);
      });
      if (!st) break;
      if (!st.isDirectory())
        throw new RemoteError('fatal', `${rel}: ${dir} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'} on ${this.url}; refusing to follow it`, {
          hint: 'a file:// remote holds real directories only: remove the link on the remote',
        });
    }
    return this.abs(rel);
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    // opened first: a stream's open error emitted before downloadTo pipes it would go unhandled (and a
    // missing local file is no remote's "not found")
    const source = (await fsp.open(localFile, 'r')).createReadStream({ highWaterMark: 1 << 20 });
    try {
      await downloadTo(source, await this.confined(relPath), options, this.abs(tempName(relPath)));
    } catch (err) {
      source.destroy();
      throw this.wrap(err, relPath);
    }
  }

  async read(relPath: string) {
    const file = await this.confined(relPath);
    // open first so a missing file fails here, not as a stream error later
    const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((err) => {
      throw this.wrap(err, relPath);
    });
    return fh.createReadStream({ highWaterMark: 1 << 20 });
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    await this.ensureRoot();
    const out: RemoteEntry[] = [];
    const walk = async (rel: string) => {
      let entries;
      try {
        entries = await fsp.readdir(this.abs(rel), { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw this.wrap(err, rel);
      }
      for (const e of entries) {
        const child = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) await walk(child);
        else if (e.isFile()) {
          const st = await fsp.stat(this.abs(child));
          out.push({ path: child, size: st.size });
        }
      }
    };
    await walk(joinRemote('', prefix));
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    try {
      const st = await fsp.lstat(await this.confined(relPath));
      return st.isFile() ? { path: relPath, size: st.size } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.wrap(err, relPath);
    }
  }

  async delete(relPath: string): Promise<void> {
    await fsp.rm(await this.confined(relPath), { force: true });
  }

  async space(): Promise<SpaceInfo> {
    await this.ensureRoot();
    const s = await fsp.statfs(this.root);
    const free = Number(s.bavail) * Number(s.bsize);
    const total = Number(s.blocks) * Number(s.bsize);
    return { free, total, used: total - Number(s.bfree) * Number(s.bsize) };
  }

  private wrap(err: unknown, rel: string): unknown {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new RemoteError('missing', `${rel}: not found on ${this.url}`, { cause: err });
    if (code === 'EACCES' || code === 'EPERM') {
      return new RemoteError('auth', `${rel}: permission denied on ${this.url}`, { cause: err });
    }
    return err;
  }
}

registerScheme('file', async (spec) => {
  let root: string;
  try {
    root = fileURLToPath(spec.url);
  } catch (err) {
    throw usageError(`bad file URL ${spec.url}: ${(err as Error).message}`, 'use file:///absolute/path');
  }
  return new FileRemote(spec.url, root);
});
