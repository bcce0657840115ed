import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors.js';
import { extractArchive } from '../../src/archive/extract.js';
import { bufferStream, makeSourceTree, packBuffer, packTreeWithTarStream, snapshot, tempDir } from '../helpers/extract-fixtures.js';

let base: string;
let target: string;

beforeEach(async () => {
  base = await tempDir();
  target = path.join(base, 'target');
});
afterEach(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const T = new Date(Date.UTC(2022, 0, 2, 3, 4, 5));

async function refused(buf: Buffer, pattern: RegExp, options = {}): Promise<BackupError> {
  const err = await extractArchive(bufferStream(buf), target, options).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackupError);
  const be = err as BackupError;
  expect(be.code).toBe('DAMAGED');
  expect(be.message).toMatch(pattern);
  expect(be.message).not.toContain('\n');
  return be;
}

describe('extractArchive: round trip of a tree packed with tar-stream', () => {
  it('restores content, types, link targets, hard links, modes and mtimes', async () => {
    const src = path.join(base, 'src');
    await makeSourceTree(src);
    const archive = path.join(base, 'x.tar');
    await packTreeWithTarStream(src, archive);
    const seen: string[] = [];
    const res = await extractArchive(fs.createReadStream(archive), target, { onEntry: (n) => seen.push(n) });
    expect(snapshot(target)).toEqual(snapshot(src));
    expect(res.entries).toBe(Object.keys(snapshot(src)).length);
    expect(res.bytes).toBe(3 * 1024 * 1024 + 77 + 12_345 + 1000 + 6 + Buffer.byteLength('こんにちは\n') + '#!/bin/sh\necho hi\n'.length);
    expect(seen).toContain('images/фото файл.jpg');
    expect(res.warnings).toEqual([]);
  });

  it('works with durable: false as well', async () => {
    const src = path.join(base, 'src');
    await makeSourceTree(src);
    const archive = path.join(base, 'x.tar');
    await packTreeWithTarStream(src, archive);
    await extractArchive(fs.createReadStream(archive), target, { durable: false });
    expect(snapshot(target)).toEqual(snapshot(src));
  });
});

describe('extractArchive: names and metadata', () => {
  it('normalises ./ and doubled slashes and creates missing parents', async () => {
    const buf = await packBuffer([
      { name: './a//b/./c.txt', body: 'c', mtime: T },
      { name: 'x/y/', type: 'directory', mtime: T },
    ]);
    const names: string[] = [];
    await extractArchive(bufferStream(buf), target, { onEntry: (n) => names.push(n) });
    expect(names).toEqual(['a/b/c.txt', 'x/y']);
    expect(fs.readFileSync(path.join(target, 'a/b/c.txt'), 'utf8')).toBe('c');
    expect(fs.statSync(path.join(target, 'x/y')).isDirectory()).toBe(true);
  });

  it('sets exact modes whatever the umask, and strips setuid/setgid with a warning', async () => {
    const buf = await packBuffer([
      { name: 'ro.txt', body: 'r', mode: 0o444, mtime: T },
      { name: 'open.txt', body: 'o', mode: 0o777, mtime: T },
      { name: 'suid', body: 's', mode: 0o4755, mtime: T },
      { name: 'sgid-dir', type: 'directory', mode: 0o2775, mtime: T },
      { name: 'sticky', type: 'directory', mode: 0o1777, mtime: T },
      { name: 'locked', type: 'directory', mode: 0o500, mtime: T },
      { name: 'locked/inside.txt', body: 'still written', mode: 0o600, mtime: T },
    ]);
    const old = process.umask(0o077);
    try {
      const res = await extractArchive(bufferStream(buf), target);
      expect(res.warnings).toEqual(['setuid/setgid bits removed from 2 entries']);
    } finally {
      process.umask(old);
    }
    const mode = (p: string) => fs.statSync(path.join(target, p)).mode & 0o7777;
    expect(mode('ro.txt')).toBe(0o444);
    expect(mode('open.txt')).toBe(0o777);
    expect(mode('suid')).toBe(0o755);
    expect(mode('sgid-dir')).toBe(0o775);
    expect(mode('sticky')).toBe(0o1777);
    expect(mode('locked')).toBe(0o500);
    expect(fs.readFileSync(path.join(target, 'locked/inside.txt'), 'utf8')).toBe('still written');
    fs.chmodSync(path.join(target, 'locked'), 0o700); // so cleanup can remove it
  });

  it('sets directory mtimes after their contents are written', async () => {
    const buf = await packBuffer([
      { name: 'd/', type: 'directory', mtime: T },
      { name: 'd/e/', type: 'directory', mtime: new Date(T.getTime() + 1000) },
      { name: 'd/e/f', body: 'f', mtime: new Date(T.getTime() + 2000) },
      { name: 'd/g', body: 'g', mtime: new Date(T.getTime() + 3000) },
    ]);
    await extractArchive(bufferStream(buf), target);
    const mt = (p: string) => fs.lstatSync(path.join(target, p)).mtimeMs;
    expect(mt('d')).toBe(T.getTime());
    expect(mt('d/e')).toBe(T.getTime() + 1000);
    expect(mt('d/e/f')).toBe(T.getTime() + 2000);
    expect(mt('d/g')).toBe(T.getTime() + 3000);
  });

  it('restores symlinks as links with their mtime', async () => {
    const buf = await packBuffer([
      { name: 'a.txt', body: 'a', mtime: T },
      { name: 'sub/l', type: 'symlink', linkname: '../a.txt', mtime: T },
      { name: 'self', type: 'symlink', linkname: '.', mtime: T },
    ]);
    await extractArchive(bufferStream(buf), target);
    expect(fs.readlinkSync(path.join(target, 'sub/l'))).toBe('../a.txt');
    expect(fs.readFileSync(path.join(target, 'sub/l'), 'utf8')).toBe('a');
    expect(fs.lstatSync(path.join(target, 'sub/l')).mtimeMs).toBe(T.getTime());
    expect(fs.readlinkSync(path.join(target, 'self'))).toBe('.');
  });

  it('treats contiguous files as regular files', async () => {
    const buf = await packBuffer([{ name: 'c', type: 'contiguous-file', body: 'data', mtime: T }]);
    await extractArchive(bufferStream(buf), target);
    expect(fs.readFileSync(path.join(target, 'c'), 'utf8')).toBe('data');
  });

  it('keeps the last of duplicate entries, with a warning', async () => {
    const buf = await packBuffer([
      { name: 'dup', body: 'first', mtime: T },
      { name: 'dup', body: 'second', mtime: T },
    ]);
    const res = await extractArchive(bufferStream(buf), target);
    expect(fs.readFileSync(path.join(target, 'dup'), 'utf8')).toBe('second');
    expect(res.warnings).toEqual(['"dup" appears more than once; the last copy was kept']);
  });

  it('extracts into an existing empty directory', async () => {
    fs.mkdirSync(target);
    const buf = await packBuffer([{ name: 'f', body: 'x' }]);
    const res = await extractArchive(bufferStream(buf), target);
    expect(res).toMatchObject({ entries: 1, bytes: 1 });
  });
});

describe('extractArchive: refusals (unit level, tar-stream fixtures)', () => {
  it('refuses an absolute name', async () => {
    await refused(await packBuffer([{ name: '/etc/evil', body: 'x' }]), /"\/etc\/evil".*absolute name/);
  });

  it('refuses a .. component, even one that stays inside lexically', async () => {
    await refused(await packBuffer([{ name: 'a/../../b', body: 'x' }]), /'\.\.' component/);
    await refused(await packBuffer([{ name: 'a/../b', body: 'x' }]), /'\.\.' component/);
  });

  it.each(['character-device', 'block-device', 'fifo'] as const)('refuses a %s entry', async (type) => {
    await refused(await packBuffer([{ name: 'node', type, devmajor: 1, devminor: 3 }]), new RegExp(`"node".*${type}`));
    expect(fs.readdirSync(target)).toEqual([]);
  });

  it('refuses a directory replaced by a symlink', async () => {
    const buf = await packBuffer([
      { name: 'd/', type: 'directory' },
      { name: 'd', type: 'symlink', linkname: '.' },
    ]);
    await refused(buf, /"d".*replace a directory/);
  });

  it('refuses writing through a symlink, even one that points inside', async () => {
    const buf = await packBuffer([
      { name: 'a', type: 'symlink', linkname: '.' },
      { name: 'a/x', body: 'x' },
    ]);
    await refused(buf, /"a\/x".*through the symlink "a"/);
    expect(fs.existsSync(path.join(target, 'x'))).toBe(false);
  });

  it('refuses a hard link to something not extracted before, or to a symlink', async () => {
    await refused(await packBuffer([{ name: 'h', type: 'link', linkname: 'nothere' }]), /not a file extracted before/);
    await fsp.rm(target, { recursive: true, force: true });
    await refused(
      await packBuffer([
        { name: 's', type: 'symlink', linkname: 'x' },
        { name: 'h', type: 'link', linkname: 's' },
      ]),
      /"h".*not a file extracted before/,
    );
  });

  it('refuses an archive bigger than maxBytes, before writing the entry that passes it', async () => {
    const buf = await packBuffer([
      { name: 'a', body: Buffer.alloc(600) },
      { name: 'b', body: Buffer.alloc(600) },
    ]);
    await refused(buf, /more than 1000 bytes \(entry "b"\)/, { maxBytes: 1000 });
    expect(fs.existsSync(path.join(target, 'b'))).toBe(false);
    await fsp.rm(target, { recursive: true, force: true });
    await expect(extractArchive(bufferStream(buf), target, { maxBytes: 1200 })).resolves.toMatchObject({ bytes: 1200 });
  });

  it('refuses an empty stream and one cut at an entry boundary', async () => {
    await refused(Buffer.alloc(0), /archive is empty/);
    const whole = await packBuffer([{ name: 'a', body: Buffer.alloc(512, 1) }]);
    await fsp.rm(target, { recursive: true, force: true });
    await refused(whole.subarray(0, 1024), /without the tar end-of-archive marker/);
  });

  it('refuses a corrupt header', async () => {
    const buf = await packBuffer([
      { name: 'a', body: Buffer.alloc(512, 1) },
      { name: 'b', body: 'b' },
    ]);
    buf[1024 + 10] ^= 0xff; // inside the name field of the second header: checksum mismatch
    await refused(buf, /archive is damaged: Invalid tar header/);
  });

  it('stops when the signal aborts', async () => {
    const buf = await packBuffer([{ name: 'a', body: 'a' }]);
    const ac = new AbortController();
    ac.abort();
    await expect(extractArchive(bufferStream(buf), target, { signal: ac.signal })).rejects.toThrow(/aborted/);
  });
});

// Issue 11: symlinks verbatim and created last; owners as root; a symlink replaced by a directory.
describe('extractArchive: symlinks restored verbatim, owners, names reused', () => {
  it('restores a symlink to an absolute path and one to ../shared verbatim (as GNU tar does)', async () => {
    const buf = await packBuffer([
      { name: 'media/', type: 'directory' },
      { name: 'media/volume', type: 'symlink', linkname: '/srv/shared-assets' },
      { name: 'media/shared', type: 'symlink', linkname: '../../shared' },
      { name: 'media/a.txt', body: 'a' },
    ]);
    const res = await extractArchive(bufferStream(buf), target);
    expect(fs.readlinkSync(path.join(target, 'media/volume'))).toBe('/srv/shared-assets');
    expect(fs.readlinkSync(path.join(target, 'media/shared'))).toBe('../../shared');
    expect(res.entries).toBe(4);
  });

  it('creates symlinks after every other entry: a later hard link or file cannot reach through one', async () => {
    const outside = path.join(base, 'outside');
    fs.mkdirSync(outside);
    const buf = await packBuffer([
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/x', body: 'evil' },
    ]);
    await refused(buf, /"l\/x".*through the symlink "l"/);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('a symlink followed by a directory of the same name: the directory wins, with a warning (no raw EINVAL)', async () => {
    const buf = await packBuffer([
      { name: 'x', type: 'symlink', linkname: 'elsewhere' },
      { name: 'x/', type: 'directory' },
      { name: 'x/f', body: 'f' },
    ]);
    const res = await extractArchive(bufferStream(buf), target);
    expect(fs.lstatSync(path.join(target, 'x')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(target, 'x/f'), 'utf8')).toBe('f');
    expect(res.warnings).toEqual(['"x/" appears more than once; the last copy was kept']);
  });

  it('a symlink followed by a file of the same name: the file wins', async () => {
    const buf = await packBuffer([
      { name: 'x', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'x', body: 'plain' },
    ]);
    await extractArchive(bufferStream(buf), target);
    expect(fs.lstatSync(path.join(target, 'x')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(target, 'x'), 'utf8')).toBe('plain');
  });

  const root = process.getuid?.() === 0;
  it.skipIf(!root && !process.env.CI)('as root: owners and groups of files, directories and symlinks come back (33:33, 65534)', async () => {
    const buf = await packBuffer([
      { name: 'up/', type: 'directory', uid: 33, gid: 33, mode: 0o750 },
      { name: 'up/photo.jpg', body: 'jpg', uid: 33, gid: 33, mode: 0o640 },
      { name: 'up/nobody.txt', body: 'n', uid: 65534, gid: 65534 },
      { name: 'up/l', type: 'symlink', linkname: 'photo.jpg', uid: 33, gid: 34 },
    ]);
    await extractArchive(bufferStream(buf), target);
    const own = (rel: string) => {
      const st = fs.lstatSync(path.join(target, rel));
      return `${st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
    };
    expect(own('up')).toBe('33:33:750');
    expect(own('up/photo.jpg')).toBe('33:33:640');
    expect(own('up/nobody.txt').split(':').slice(0, 2).join(':')).toBe('65534:65534');
    expect(own('up/l').split(':').slice(0, 2).join(':')).toBe('33:34');
  });

  it('owners: false keeps the extracting user as owner', async () => {
    const buf = await packBuffer([{ name: 'f', body: 'x', uid: 33, gid: 33 }]);
    await extractArchive(bufferStream(buf), target, { owners: false });
    expect(fs.statSync(path.join(target, 'f')).uid).toBe(process.getuid?.());
  });
});
