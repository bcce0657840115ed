/**
 * Promise: hostile archives are refused, end to end through `restore`. Each archive is built by the
 * test (tar-stream, and GNU tar where it can express the attack), planted as a storage backup with a
 * valid sidecar whose checksum matches (so verify passes and the extractor is what must refuse), then
 * restored onto the live storage path. Checked: exit code, a clear one-line message, and the whole
 * surrounding directory (and the absolute paths the archives aim at) unchanged.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, freeBytes, makeMedia, mountSmallFs, rmrf, sh, show, STACK, tempDir, treeDigest } from '../helpers/faults.js';

let cwd: string;
let victim: string; // an absolute directory outside everything the archives may touch
const tag = randomBytes(4).toString('hex');

beforeAll(() => {
  cwd = tempDir('vb-hostile-');
  victim = tempDir(`vb-victim-${tag}-`);
  fs.writeFileSync(path.join(victim, 'secret'), 'do not touch\n');
  makeMedia(path.join(cwd, 'storage'), { files: 5, bytes: 50_000 });
  fs.writeFileSync(path.join(cwd, 'app.db'), '');
});
afterAll(() => {
  rmrf(cwd);
  rmrf(victim);
});

type Entry = { header: Partial<tar.Header> & { name: string }; body?: Buffer | (() => Readable) };

async function tarStream(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    const body = e.body;
    if (typeof body === 'function') {
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry(e.header, (err) => (err ? reject(err) : resolve()));
        body().pipe(sink);
      });
    } else await new Promise<void>((resolve, reject) => pack.entry(e.header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const ok = (name: string, data = 'fine\n'): Entry => ({ header: { name, type: 'file', mode: 0o644, size: Buffer.byteLength(data) }, body: Buffer.from(data) });
const dir = (name: string): Entry => ({ header: { name, type: 'directory', mode: 0o755 } });

/** Plants a .tar.gz as storage backup `id` with a sidecar that matches it. */
function plant(backupDir: string, id: string, gz: Buffer): string {
  const d = path.join(backupDir, 'storage');
  fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  const name = `storage_backup_${id}.tar.gz`;
  fs.writeFileSync(path.join(d, name), gz, { mode: 0o600 });
  const sidecar = {
    format: 1,
    tool: { name: 'vertex-backup', version: '0.1.0' },
    id,
    type: 'storage',
    timestamp: id,
    created_at: new Date().toISOString(),
    duration_ms: 1,
    original_path: path.join(cwd, 'storage'),
    backup_path: name,
    file_size: gz.length,
    checksum: createHash('sha256').update(gz).digest('hex'),
    compression: 'gzip',
  };
  const sc = path.join(d, `storage_backup_${id}.json`);
  fs.writeFileSync(sc, JSON.stringify(sidecar, null, 2), { mode: 0o600 });
  return sc;
}

/** GNU tar with its options, run in `where`; returns the gzipped archive. */
function gnuTar(where: string, args: string[]): Buffer {
  const out = path.join(cwd, `gnu-${randomBytes(4).toString('hex')}.tar`);
  sh('tar', ['-cf', out, ...args], { cwd: where });
  const gz = zlib.gzipSync(fs.readFileSync(out));
  fs.rmSync(out);
  return gz;
}

interface Case {
  name: string;
  build: () => Promise<Buffer>;
  /** verify may legitimately refuse it first (the archive is not a readable tar) */
  verifyMayFail?: boolean;
  message: RegExp;
  /** paths that must not exist afterwards */
  aims?: string[];
}

const cases: Case[] = [
  {
    name: 'tar-stream: ../ entry names',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok('storage/a.txt'), ok(`storage/../../escape-${tag}.txt`), ok(`../escape2-${tag}.txt`)])),
    message: /\.\./,
  },
  {
    name: 'tar-stream: absolute entry name',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok('storage/a.txt'), ok(`${victim}/abs-${tag}.txt`)])),
    message: /absolute/,
    aims: [`abs-${tag}.txt`],
  },
  {
    name: 'tar-stream: symlink pointing outside, then an entry written through it',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok('storage/a.txt'), { header: { name: 'storage/out', type: 'symlink', linkname: victim } }, ok('storage/out/through-link.txt')])),
    message: /symlink|absolute/,
    aims: ['through-link.txt'],
  },
  {
    name: 'tar-stream: relative symlink climbing out, then an entry written through it',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), { header: { name: 'storage/up', type: 'symlink', linkname: '../../..' } }, ok('storage/up/x.txt')])),
    message: /outside|symlink/,
  },
  {
    name: 'tar-stream: hard link to a file outside (absolute and ../)',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok('storage/a.txt'), { header: { name: 'storage/hl', type: 'link', linkname: path.join(victim, 'secret') } }])),
    message: /absolute|link/,
  },
  {
    name: 'tar-stream: hard link with ../ target',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), { header: { name: 'storage/hl', type: 'link', linkname: '../../etc/passwd' } }])),
    message: /\.\.|link/,
  },
  {
    name: 'tar-stream: character device, block device, FIFO',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok('storage/a.txt'), { header: { name: 'storage/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 } }])),
    message: /character-device/,
  },
  {
    name: 'tar-stream: block device',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), { header: { name: 'storage/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 } }])),
    message: /block-device/,
  },
  {
    name: 'tar-stream: FIFO',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), { header: { name: 'storage/pipe', type: 'fifo', mode: 0o644 } }])),
    message: /fifo/,
  },
  {
    name: 'tar-stream: a name over 4 KB',
    build: async () => zlib.gzipSync(await tarStream([dir('storage'), ok(`storage/${'n'.repeat(200)}/${'x'.repeat(4100)}`)])),
    message: /longer than 4096/,
  },
  {
    name: 'tar-stream: an entry claiming more bytes than the stream holds',
    build: async () => {
      const t = await tarStream([dir('storage'), ok('storage/a.txt'), { header: { name: 'storage/big.bin', type: 'file', size: 200_000, mode: 0o644 }, body: randomBytes(200_000) }]);
      return zlib.gzipSync(t.subarray(0, 512 * 3 + 50_000)); // cut inside big.bin's data
    },
    verifyMayFail: true,
    message: /truncated|declares more bytes/,
  },
  {
    name: 'GNU tar: ../ names (-P)',
    build: async () => {
      const base = path.join(cwd, 'gnu-dotdot', 'storage');
      fs.mkdirSync(base, { recursive: true });
      fs.writeFileSync(path.join(cwd, 'gnu-dotdot', `evil-${tag}.txt`), 'evil\n');
      fs.writeFileSync(path.join(base, 'a.txt'), 'a\n');
      return gnuTar(base, ['-P', 'a.txt', `../evil-${tag}.txt`]);
    },
    message: /\.\./,
  },
  {
    name: 'GNU tar: absolute names (-P)',
    build: async () => {
      const src = tempDir(`vb-abs-src-${tag}-`);
      fs.writeFileSync(path.join(src, 'abs.txt'), 'evil\n');
      const gz = gnuTar(cwd, ['-P', path.join(src, 'abs.txt')]);
      rmrf(src);
      return gz;
    },
    message: /absolute/,
  },
  {
    name: 'GNU tar: symlink to outside, then a file written through it (--transform)',
    build: async () => {
      const base = path.join(cwd, 'gnu-link');
      fs.mkdirSync(path.join(base, 'storage'), { recursive: true });
      fs.mkdirSync(path.join(base, 'other'), { recursive: true });
      fs.symlinkSync(victim, path.join(base, 'storage', 'out'));
      fs.writeFileSync(path.join(base, 'other', 'gnu-through.txt'), 'evil\n');
      return gnuTar(base, ['storage', 'other/gnu-through.txt', '--transform', 's,^other,storage/out,']);
    },
    message: /symlink|absolute/,
    aims: ['gnu-through.txt'],
  },
  {
    name: 'GNU tar: FIFO and character device',
    build: async () => {
      const base = path.join(cwd, 'gnu-dev');
      fs.mkdirSync(path.join(base, 'storage'), { recursive: true });
      sh('mkfifo', [path.join(base, 'storage', 'fifo')]);
      sh('mknod', [path.join(base, 'storage', 'null'), 'c', '1', '3'], { allowFail: true });
      return gnuTar(base, ['storage']);
    },
    message: /fifo|character-device/,
  },
];

describe('hostile archives through `restore`', () => {
  it.each(cases)('$name: refused, nothing written outside', async (c) => {
    const work = path.join(cwd, `case-${cases.indexOf(c)}`);
    fs.mkdirSync(work);
    fs.cpSync(path.join(cwd, 'storage'), path.join(work, 'storage'), { recursive: true, verbatimSymlinks: true });
    fs.writeFileSync(path.join(work, 'app.db'), '');
    const backupDir = path.join(work, 'backups');
    const id = '20240101_000000';
    const sc = plant(backupDir, id, await c.build());
    const flags = ['--db-path', path.join(work, 'app.db'), '--storage-path', path.join(work, 'storage'), '--backup-dir', backupDir];
    const v = await cli(['verify', sc, ...flags], { cwd: work });
    if (!c.verifyMayFail) expect(v.code, `the planted archive must pass verify, so the extractor is what refuses\n${show(v)}`).toBe(0);

    const skip = (rel: string) => rel === 'backups';
    const before = { here: treeDigest(work, { skip }), parent: fs.readdirSync(cwd).sort(), victim: treeDigest(victim) };
    const r = await cli(['restore', sc, '--yes', '--no-verify', ...flags], { cwd: work });
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toMatch(c.message);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('error:')).length).toBe(1);
    expect(treeDigest(work, { skip }), 'the directory around the storage path changed').toEqual(before.here);
    expect(fs.readdirSync(cwd).sort(), 'something was written beside the case directory').toEqual(before.parent);
    expect(treeDigest(victim), 'the victim directory changed').toEqual(before.victim);
    for (const a of c.aims ?? []) expect(fs.existsSync(path.join(victim, a)), a).toBe(false);
    for (const n of fs.readdirSync('/tmp')) expect(n.includes(tag) && (n.startsWith('escape') || n.startsWith('evil')), `/tmp/${n}`).toBe(false);
    // the same with verification (the default): refused too, by verify or by the extractor
    const r2 = await cli(['restore', sc, '--yes', ...flags], { cwd: work });
    expect(r2.code, show(r2)).toBe(3);
    expect(treeDigest(work, { skip })).toEqual(before.here);
  });

  it('a gzip bomb (small archive, unpacks far beyond the free space): refused before it fills the disk', async (ctx) => {
    const root = path.join(cwd, 'smallfs');
    const fsm = mountSmallFs(root, 160);
    if (!fsm) {
      ctx.skip('cannot mount a small filesystem (tmpfs or a loop image: needs root)');
      return;
    }
    try {
      // method: tmpfs (or an ext4 loop image) of 160 MiB holding the live storage; the bomb unpacks to 400 MiB
      fs.cpSync(path.join(cwd, 'storage'), path.join(root, 'storage'), { recursive: true, verbatimSymlinks: true });
      fs.writeFileSync(path.join(root, 'app.db'), '');
      const zeros = () => Readable.from((function* () {
        for (let i = 0; i < 400; i++) yield Buffer.alloc(1 << 20);
      })());
      const t = await tarStream([dir('storage'), { header: { name: 'storage/bomb.bin', type: 'file', size: 400 << 20, mode: 0o644 }, body: zeros }]);
      const gz = zlib.gzipSync(t, { level: 9 });
      expect(gz.length).toBeLessThan(2 << 20);
      const backupDir = path.join(cwd, 'bomb-backups');
      const sc = plant(backupDir, '20240101_000001', gz);
      const flags = ['--db-path', path.join(root, 'app.db'), '--storage-path', path.join(root, 'storage'), '--backup-dir', backupDir];
      const before = treeDigest(root);
      const free = freeBytes(root);
      const r = await cli(['restore', sc, '--yes', ...flags], { cwd });
      expect([3, 5], show(r)).toContain(r.code);
      expect(r.stderr).toMatch(/bomb|space|more than/i);
      expect(r.stderr).not.toMatch(STACK);
      expect(treeDigest(root)).toEqual(before);
      expect(freeBytes(root)).toBeGreaterThanOrEqual(free - (1 << 20));
    } finally {
      fsm.unmount();
    }
  });
});
