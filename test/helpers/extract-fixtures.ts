import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';

export async function tempDir(prefix = 'vb-extract-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** What a tree holds, path by path: type, content hash, link target, mode, mtime to the second. */
export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  mtime: number;
  size?: number;
  sha256?: string;
  target?: string;
  /** files sharing an inode get the same group (the first path of the group) */
  hardlinkGroup?: string;
}

export function snapshot(root: string, options: { exclude?: string[]; times?: boolean } = {}): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<string, string>();
  const exclude = new Set((options.exclude ?? []).map((p) => path.resolve(p)));
  const walk = (rel: string) => {
    const abs = rel === '' ? root : path.join(root, rel);
    if (exclude.has(path.resolve(abs))) return;
    const st = fs.lstatSync(abs);
    const key = rel === '' ? '.' : rel;
    const info: NodeInfo = {
      type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: st.mode & 0o7777,
      mtime: Math.floor(st.mtimeMs / 1000),
    };
    if (st.isFile()) {
      info.size = st.size;
      info.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      if (st.nlink > 1) {
        const ino = `${st.dev}:${st.ino}`;
        if (!inodes.has(ino)) inodes.set(ino, key);
        info.hardlinkGroup = inodes.get(ino);
      }
    }
    if (st.isSymbolicLink()) {
      info.target = fs.readlinkSync(abs);
      info.mode = 0; // symlink permission bits mean nothing on Linux
    }
    if (options.times === false) info.mtime = 0;
    out[key] = info;
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) walk(rel === '' ? name : `${rel}/${name}`);
    }
  };
  walk('');
  return out;
}

/**
 * A source tree with everything a round trip must keep: nested and empty directories, a relative
 * symlink, a hard link, modes 0755/0640/0600, set mtimes, spaces and non-ASCII names, a few MB of
 * random bytes.
 */
export async function makeSourceTree(root: string): Promise<void> {
  const w = (rel: string, data: string | Buffer, mode = 0o644) => {
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, data);
    fs.chmodSync(abs, mode);
  };
  fs.mkdirSync(root, { recursive: true });
  w('README.txt', 'hello\n');
  w('images/фото файл.jpg', randomBytes(12_345));
  w('images/日本.txt', 'こんにちは\n', 0o640);
  w('images/with space/deep/nested/file.bin', randomBytes(1000), 0o600);
  w('videos/big.mp4', randomBytes(3 * 1024 * 1024 + 77));
  w('bin/run.sh', '#!/bin/sh\necho hi\n', 0o755);
  w('empty-file', '');
  fs.mkdirSync(path.join(root, 'empty dir'), { recursive: true });
  fs.mkdirSync(path.join(root, 'markers/empty/inner'), { recursive: true });
  fs.symlinkSync('../images/日本.txt', path.join(root, 'bin/link to jp'));
  fs.symlinkSync('videos', path.join(root, 'videos-link'));
  fs.symlinkSync('does-not-exist', path.join(root, 'dangling'));
  fs.linkSync(path.join(root, 'README.txt'), path.join(root, 'images/README hard'));
  fs.chmodSync(path.join(root, 'markers'), 0o750);
  fs.chmodSync(path.join(root, 'bin'), 0o755);
  // distinct mtimes, set deepest first so directories keep theirs
  let t = Date.UTC(2023, 4, 17, 10, 11, 12) / 1000;
  const all = listDeepFirst(root);
  for (const rel of all) {
    const abs = rel === '' ? root : path.join(root, rel);
    t -= 3600;
    fs.lutimesSync(abs, t, t);
  }
}

function listDeepFirst(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = rel === '' ? root : path.join(root, rel);
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(rel === '' ? n : `${rel}/${n}`);
    out.push(rel);
  };
  walk('');
  return out;
}

export type PackEntry = tar.Header extends infer H ? Partial<H> & { name: string; body?: Buffer | string } : never;

/** Packs entries with tar-stream into one buffer (small hostile fixtures). */
export async function packBuffer(entries: PackEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body !== undefined) pack.entry(header, body, cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Packs a real directory tree with tar-stream, streaming file contents (hard links detected by inode). */
export async function packTreeWithTarStream(root: string, out: string): Promise<void> {
  const pack = tar.pack();
  const sink = fs.createWriteStream(out);
  const written = new Promise<void>((resolve, reject) => {
    sink.on('finish', () => resolve());
    sink.on('error', reject);
  });
  pack.on('data', (c: unknown) => {
    if (!sink.write(c as Buffer)) pack.pause();
  });
  sink.on('drain', () => pack.resume());
  pack.on('end', () => sink.end());
  const seen = new Map<string, string>();
  const walk = async (rel: string) => {
    const abs = rel === '' ? root : path.join(root, rel);
    const st = fs.lstatSync(abs);
    const name = rel === '' ? './' : `./${rel}`;
    const base = { name, mode: st.mode & 0o7777, mtime: st.mtime };
    if (st.isDirectory()) {
      await entry({ ...base, type: 'directory' });
      for (const n of fs.readdirSync(abs).sort()) await walk(rel === '' ? n : `${rel}/${n}`);
    } else if (st.isSymbolicLink()) {
      await entry({ ...base, type: 'symlink', linkname: fs.readlinkSync(abs) });
    } else if (st.isFile()) {
      const ino = `${st.dev}:${st.ino}`;
      const first = seen.get(ino);
      if (first !== undefined) {
        await entry({ ...base, type: 'link', linkname: first });
        return;
      }
      seen.set(ino, name);
      await new Promise<void>((resolve, reject) => {
        const dest = pack.entry({ ...base, type: 'file', size: st.size }, (err) => (err ? reject(err) : resolve()));
        fs.createReadStream(abs).pipe(dest as unknown as NodeJS.WritableStream);
      });
    }
  };
  const entry = (h: tar.Header extends infer H ? Partial<H> & { name: string } : never) =>
    new Promise<void>((resolve, reject) => pack.entry(h, (err) => (err ? reject(err) : resolve())));
  await walk('');
  pack.finalize();
  await written;
}

export function gnuTar(args: string[], cwd?: string): void {
  execFileSync('tar', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function bufferStream(buf: Buffer, chunk = 64 * 1024): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) this.push(null);
      else {
        this.push(buf.subarray(off, off + chunk));
        off += chunk;
      }
    },
  });
}
