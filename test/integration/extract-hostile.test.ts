import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors.js';
import { extractArchive } from '../../src/archive/extract.js';
import { bufferStream, gnuTar, makeSourceTree, packBuffer, packTreeWithTarStream, snapshot, tempDir } from '../helpers/extract-fixtures.js';

/**
 * Layout of every test:  base/outside/victim.txt   (must never change)
 *                        base/work/                (fixtures are built here)
 *                        base/target/              (the only place extraction may write)
 */
let base: string;
let outside: string;
let work: string;
let target: string;
/** an absolute path outside base that an attack tries to create */
let tmpVictim: string;

beforeEach(async () => {
  base = await tempDir('vb-hostile-');
  outside = path.join(base, 'outside');
  work = path.join(base, 'work');
  target = path.join(base, 'target');
  fs.mkdirSync(outside);
  fs.mkdirSync(work);
  // made up front: creating it would change the parent's mtime, which the checks compare
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(outside, 'victim.txt'), 'original\n');
  tmpVictim = path.join(os.tmpdir(), `vb-pwned-${randomBytes(6).toString('hex')}`);
});
afterEach(async () => {
  await fsp.rm(base, { recursive: true, force: true });
  await fsp.rm(tmpVictim, { recursive: true, force: true });
});

/** Everything around the target: the target's parent (with the sibling 'outside') and link counts. */
function surroundings(): unknown {
  const snap = snapshot(base, { exclude: [target, work] });
  const victim = fs.statSync(path.join(outside, 'victim.txt'));
  return { snap, nlink: victim.nlink, tmpVictim: fs.existsSync(tmpVictim) };
}

async function expectRefused(archive: string | Buffer, pattern: RegExp, options: { gunzip?: boolean; maxBytes?: number } = {}) {
  const file = typeof archive === 'string' ? archive : path.join(work, 'fixture.tar');
  if (typeof archive !== 'string') fs.writeFileSync(file, archive);
  const before = surroundings();
  const input = fs.createReadStream(file);
  const stream = options.gunzip ? input.pipe(createGunzip()) : input;
  input.on('error', (e) => stream.destroy(e));
  const err = await extractArchive(stream, target, { maxBytes: options.maxBytes }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'extraction should have been refused').toBeInstanceOf(BackupError);
  const be = err as BackupError;
  expect(be.code).toBe('DAMAGED');
  expect(be.message).toMatch(pattern);
  expect(be.message.split('\n')).toHaveLength(1);
  expect(surroundings()).toEqual(before);
  expect(fs.readFileSync(path.join(outside, 'victim.txt'), 'utf8')).toBe('original\n');
  return be;
}

describe('hostile archives built with GNU tar', () => {
  it('refuses an absolute name (tar --absolute-names)', async () => {
    const victim = path.join(outside, 'victim.txt');
    fs.writeFileSync(victim, 'evil\n');
    gnuTar(['-cf', path.join(work, 'abs.tar'), '--absolute-names', victim]);
    fs.writeFileSync(victim, 'original\n');
    await expectRefused(path.join(work, 'abs.tar'), /absolute name/);
  });

  it('refuses a ../ name (tar -P ../x)', async () => {
    fs.writeFileSync(path.join(outside, 'new.txt'), 'evil');
    gnuTar(['-cf', 'dotdot.tar', '-P', '../outside/new.txt'], work);
    fs.rmSync(path.join(outside, 'new.txt'));
    await expectRefused(path.join(work, 'dotdot.tar'), /"\.\.\/outside\/new\.txt".*'\.\.' component/);
  });

  it('refuses a symlink to outside followed by a file written through it (tar -r)', async () => {
    const a = path.join(work, 'a');
    const b = path.join(work, 'b');
    fs.mkdirSync(a);
    fs.mkdirSync(path.join(b, 'esc'), { recursive: true });
    fs.symlinkSync('../outside', path.join(a, 'esc'));
    fs.writeFileSync(path.join(b, 'esc', 'pwned'), 'evil');
    const tarFile = path.join(work, 'sym.tar');
    gnuTar(['-cf', tarFile, '-C', a, 'esc']);
    gnuTar(['-rf', tarFile, '-C', b, 'esc/pwned']);
    await expectRefused(tarFile, /"esc\/pwned".*through the symlink "esc"/);
    expect(fs.existsSync(path.join(outside, 'pwned'))).toBe(false);
  });

  it('refuses a FIFO', async () => {
    fs.mkdirSync(path.join(work, 'f'));
    execMkfifo(path.join(work, 'f', 'pipe'));
    gnuTar(['-cf', path.join(work, 'fifo.tar'), '-C', path.join(work, 'f'), 'pipe']);
    await expectRefused(path.join(work, 'fifo.tar'), /"pipe".*fifo/);
  });

  it('refuses a truncated archive: an entry declares more bytes than the stream holds', async () => {
    fs.mkdirSync(path.join(work, 't'));
    fs.writeFileSync(path.join(work, 't', 'big.bin'), randomBytes(3 * 1024 * 1024));
    const tarFile = path.join(work, 'trunc.tar');
    gnuTar(['-cf', tarFile, '-C', path.join(work, 't'), 'big.bin']);
    fs.truncateSync(tarFile, 1024 * 1024);
    await expectRefused(tarFile, /truncated: entry "big\.bin" declares more bytes than the stream holds/);
  });

  it('refuses a truncated gzip archive', async () => {
    fs.mkdirSync(path.join(work, 't'));
    fs.writeFileSync(path.join(work, 't', 'big.bin'), randomBytes(2 * 1024 * 1024));
    const tgz = path.join(work, 'trunc.tar.gz');
    gnuTar(['-czf', tgz, '-C', path.join(work, 't'), 'big.bin']);
    fs.truncateSync(tgz, fs.statSync(tgz).size - 5000);
    await expectRefused(tgz, /archive is (damaged|truncated)/, { gunzip: true });
  });

  it('refuses a gzip bomb with maxBytes before writing it', async () => {
    fs.mkdirSync(path.join(work, 'z'));
    const fd = fs.openSync(path.join(work, 'z', 'zeros'), 'w');
    fs.ftruncateSync(fd, 64 * 1024 * 1024); // 64 MB of zeros, a few KB once gzipped
    fs.closeSync(fd);
    const tgz = path.join(work, 'bomb.tar.gz');
    gnuTar(['-czf', tgz, '-C', path.join(work, 'z'), 'zeros']);
    expect(fs.statSync(tgz).size).toBeLessThan(200 * 1024);
    await expectRefused(tgz, /more than 8388608 bytes \(entry "zeros"\).*bomb/, { gunzip: true, maxBytes: 8 * 1024 * 1024 });
    expect(fs.existsSync(path.join(target, 'zeros'))).toBe(false);
  });
});

describe('hostile archives built with tar-stream', () => {
  it("refuses 'link' -> absolute outside path then 'link/pwned'", async () => {
    const buf = await packBuffer([
      { name: 'link', type: 'symlink', linkname: tmpVictim },
      { name: 'link/pwned', body: 'evil' },
    ]);
    await expectRefused(buf, /"link\/pwned".*through the symlink "link"/);
  });

  it("refuses 'link' -> ../outside then 'link/pwned'", async () => {
    const buf = await packBuffer([
      { name: 'link', type: 'symlink', linkname: '../outside' },
      { name: 'link/pwned', body: 'evil' },
    ]);
    await expectRefused(buf, /"link\/pwned".*through the symlink "link"/);
  });

  // Issue 11: links are restored verbatim, whatever they lead to (as GNU tar does); only writes through
  // a link are refused, and none can happen since links are created after every other entry.
  it('restores a chain of links that together lead outside verbatim, and writes nothing outside', async () => {
    const buf = await packBuffer([
      { name: 'x/', type: 'directory' },
      { name: 'x/y', type: 'symlink', linkname: '..' },
      { name: 'l', type: 'symlink', linkname: 'x/y/..' },
    ]);
    const before = surroundings();
    await extractArchive(bufferStream(buf), target);
    expect(fs.readlinkSync(path.join(target, 'x/y'))).toBe('..');
    expect(fs.readlinkSync(path.join(target, 'l'))).toBe('x/y/..');
    expect(surroundings()).toEqual(before);
  });

  it('restores links to an absolute path and to ../outside verbatim, and writes nothing outside', async () => {
    const buf = await packBuffer([
      { name: 'abs', type: 'symlink', linkname: tmpVictim },
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'l', type: 'symlink', linkname: 'x/y/../outside' },
      { name: 'x/', type: 'directory' },
      { name: 'x/y', type: 'symlink', linkname: '..' },
    ]);
    const before = surroundings();
    await extractArchive(bufferStream(buf), target);
    expect(fs.readlinkSync(path.join(target, 'abs'))).toBe(tmpVictim);
    expect(fs.readlinkSync(path.join(target, 'up'))).toBe('../outside');
    expect(fs.readlinkSync(path.join(target, 'l'))).toBe('x/y/../outside');
    expect(surroundings()).toEqual(before);
  });

  it('refuses an entry written through an inside symlink pointing at an outside one', async () => {
    const buf = await packBuffer([
      { name: 'ok', type: 'symlink', linkname: 'sub' },
      { name: 'ok/pwned', body: 'evil' },
    ]);
    await expectRefused(buf, /"ok\/pwned".*through the symlink "ok"/);
  });

  it.each([
    ['../../etc/passwd', /'\.\.' component in its link target/],
    ['/etc/passwd', /absolute link target/],
    ['../outside/victim.txt', /'\.\.' component in its link target/],
    [null, /absolute link target/],
  ])('refuses a hard link to %s', async (linkname, pattern) => {
    const buf = await packBuffer([{ name: 'hl', type: 'link', linkname: linkname ?? path.join(outside, 'victim.txt') }]);
    await expectRefused(buf, pattern);
  });

  it.each(['character-device', 'block-device', 'fifo'] as const)('refuses a %s node', async (type) => {
    const buf = await packBuffer([{ name: 'dev/null2', type, devmajor: 1, devminor: 3 }]);
    await expectRefused(buf, new RegExp(`"dev/null2".*${type}`));
  });

  it('refuses a name longer than 4 KB', async () => {
    const long = `${'d'.repeat(200)}/`.repeat(21) + 'f';
    expect(Buffer.byteLength(long)).toBeGreaterThan(4096);
    const buf = await packBuffer([{ name: long, body: 'x' }]);
    const err = await expectRefused(buf, /longer than 4096 bytes/);
    expect(err.message.length).toBeLessThan(400);
  });

  it('refuses a pax size larger than the stream', async () => {
    const buf = await packBuffer([{ name: 'f', body: Buffer.alloc(2048, 7) }]);
    // keep the header and one block of data: the entry claims 2048 bytes
    await expectRefused(buf.subarray(0, 1024), /truncated: entry "f" declares more bytes/);
  });
});

describe('round trips against the source tree', () => {
  let src: string;
  beforeEach(async () => {
    src = path.join(work, 'src');
    await makeSourceTree(src);
  });

  it('extracts a GNU tar (gnu format) archive exactly', async () => {
    const tarFile = path.join(work, 'gnu.tar');
    gnuTar(['-cf', tarFile, '-C', src, '.']);
    const res = await extractArchive(fs.createReadStream(tarFile), target);
    expect(res.warnings).toEqual([]);
    expect(snapshot(target)).toEqual(snapshot(src));
  });

  it('extracts a GNU tar pax archive (sub-second mtimes) exactly', async () => {
    const tarFile = path.join(work, 'pax.tar');
    const f = path.join(src, 'images/日本.txt');
    fs.utimesSync(f, 1_600_000_000.25, 1_600_000_000.75);
    gnuTar(['-cf', tarFile, '--format=posix', '-C', src, '.']);
    await extractArchive(fs.createReadStream(tarFile), target);
    expect(snapshot(target)).toEqual(snapshot(src));
    expect(fs.statSync(path.join(target, 'images/日本.txt')).mtimeMs).toBe(1_600_000_000_750);
  });

  it('extracts a tar -czf archive through gunzip, and the result matches tar -xzf', async () => {
    const tgz = path.join(work, 'x.tar.gz');
    gnuTar(['-czf', tgz, '-C', src, '.']);
    const input = fs.createReadStream(tgz);
    const gunzip = createGunzip();
    const piping = pipeline(input, gunzip).catch(() => {});
    await extractArchive(gunzip, target);
    await piping;
    const byTar = path.join(work, 'by-tar');
    fs.mkdirSync(byTar);
    gnuTar(['-xzf', tgz, '-C', byTar]);
    expect(snapshot(target)).toEqual(snapshot(src));
    expect(snapshot(target)).toEqual(snapshot(byTar));
  });

  it('extracts a tar-stream archive that GNU tar also reads identically', async () => {
    const tarFile = path.join(work, 'ts.tar');
    await packTreeWithTarStream(src, tarFile);
    await extractArchive(fs.createReadStream(tarFile), target);
    const byTar = path.join(work, 'by-tar');
    fs.mkdirSync(byTar);
    gnuTar(['-xf', tarFile, '-C', byTar]);
    expect(snapshot(target)).toEqual(snapshot(src));
    expect(snapshot(byTar)).toEqual(snapshot(src));
  });

  it('extracts a GNU tar archive of named members without a ./ prefix', async () => {
    const tarFile = path.join(work, 'members.tar');
    gnuTar(['-cf', tarFile, '-C', src, 'images', 'empty dir']);
    await extractArchive(fs.createReadStream(tarFile), target);
    const want = snapshot(src);
    const got = snapshot(target);
    // the hard link's other name (README.txt) is not among the members: GNU tar stores it as a file
    delete want['images/README hard']?.hardlinkGroup;
    for (const key of Object.keys(want)) {
      if (key.startsWith('images') || key.startsWith('empty dir')) expect(got[key], key).toEqual(want[key]);
    }
    expect(got['README.txt']).toBeUndefined();
  });
});

function execMkfifo(p: string): void {
  execFileSync('mkfifo', [p]);
}
