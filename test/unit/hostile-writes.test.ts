/**
 * Issue 30 items 3 and 5: small files written atomically (the metrics file in a shared textfile
 * directory, sidecars, journals, status) never write through a link a neighbour planted at the temp
 * name, and have their mode from creation. The old temp names were `<name>-<pid>`: guessable, and the
 * test plants links at exactly those names.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ManifestWriter } from '../../src/archive/manifest.js';
import { PartWriter } from '../../src/archive/parts.js';
import { appendLog } from '../../src/catalog/log.js';
import { decryptToFile, encryptFileInto } from '../../src/crypto/age-artifact.js';
import { generateIdentity, identityFileText, parseIdentityText, parseRecipient } from '../../src/crypto/age-keys.js';
import { createExclusive, writeFileAtomic, writeFresh } from '../../src/fsutil.js';
import { writeMetricsFile } from '../../src/notify/metrics.js';
import { syncMirror } from '../../src/sources/docker/mirror.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function shared(): { dir: string; victim: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-shared-'));
  dirs.push(dir);
  fs.chmodSync(dir, 0o1777);
  const victim = path.join(dir, 'root-only-secret');
  fs.writeFileSync(victim, 'secret\n', { mode: 0o600 });
  fs.chmodSync(victim, 0o600);
  return { dir, victim };
}
const modeOf = (p: string) => fs.statSync(p).mode & 0o777;

describe('atomic small-file writes in a directory others can write', () => {
  it('writeMetricsFile never writes through a link at its temp name, nor chmods what it leads to', async () => {
    const { dir, victim } = shared();
    const file = path.join(dir, 'vertex_backup.prom');
    fs.symlinkSync(victim, path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`));
    const backupDir = path.join(dir, 'backups');
    fs.mkdirSync(backupDir);
    await writeMetricsFile(file, backupDir);
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(modeOf(victim)).toBe(0o600);
    expect(fs.lstatSync(file).isFile()).toBe(true);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/vertex_backup_/);
    expect(modeOf(file)).toBe(0o644);
  });

  it('writeFileAtomic never writes through a link at its temp name; the file is 0600 whatever the umask', async () => {
    const { dir, victim } = shared();
    const file = path.join(dir, 'status.json');
    fs.symlinkSync(victim, path.join(dir, `.tmp-${path.basename(file)}-${process.pid}`));
    const old = process.umask(0);
    try {
      await writeFileAtomic(file, '{"ok":true}');
    } finally {
      process.umask(old);
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('{"ok":true}');
    expect(modeOf(file)).toBe(0o600);
  });

  it('createExclusive refuses a name that is a link (even a dangling one) or a file', async () => {
    const { dir, victim } = shared();
    const link = path.join(dir, 'link');
    fs.symlinkSync(victim, link);
    await expect(createExclusive(link)).rejects.toThrow(/EEXIST|ELOOP/);
    const dangling = path.join(dir, 'dangling');
    fs.symlinkSync(path.join(dir, 'nowhere'), dangling);
    await expect(createExclusive(dangling)).rejects.toThrow(/EEXIST|ELOOP/);
    expect(fs.existsSync(path.join(dir, 'nowhere'))).toBe(false);
  });
});

/**
 * Files written at names a neighbour can predict on the backup disk: `<final name>.tmp` (archives and
 * manifests, named after the backup id, a timestamp), `<sidecar>.upload.tmp`, `backup.log`, a
 * decrypted copy beside the live database. Each was opened without O_EXCL|O_NOFOLLOW, so a link planted
 * there had root write (or truncate) the file it leads to.
 */
describe('predictable names on the backup disk', () => {
  it('backup.log planted as a link: the log line is not appended to its target', async () => {
    const { dir, victim } = shared();
    fs.symlinkSync(victim, path.join(dir, 'backup.log'));
    await appendLog(dir, { time: new Date().toISOString(), command: 'list', result: 'ok', duration_ms: 1 });
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
  });

  it('an archive part and a manifest written at <name>.tmp replace a planted link, not what it leads to', async () => {
    const { dir, victim } = shared();
    fs.symlinkSync(victim, path.join(dir, 'storage_backup_20260101_000000.tar.gz.tmp'));
    fs.symlinkSync(victim, path.join(dir, 'storage_backup_20260101_000000.manifest.gz.tmp'));
    const parts = new PartWriter(dir, 'storage_backup_20260101_000000.tar.gz');
    await new Promise<void>((resolve, reject) => parts.end(Buffer.from('archive bytes'), () => resolve()).on('error', reject));
    await parts.commit();
    const m = new ManifestWriter(dir, 'storage_backup_20260101_000000.manifest.gz');
    await m.write({ path: 'a', t: 'f', s: 1, m: 0o644, u: 0, g: 0, mt: '0', h: 'x'.repeat(64) } as never);
    await m.commit();
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(modeOf(victim)).toBe(0o600);
    expect(fs.readFileSync(path.join(dir, 'storage_backup_20260101_000000.tar.gz'), 'utf8')).toBe('archive bytes');
  });

  it('writeFresh (the sealed sidecar before upload) replaces a planted link at its name', async () => {
    const { dir, victim } = shared();
    const tmp = path.join(dir, 'db_backup_20260101_000000.json.upload.tmp');
    fs.symlinkSync(victim, tmp);
    await writeFresh(tmp, '{"sealed":true}\n');
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(fs.lstatSync(tmp).isFile()).toBe(true);
    expect(modeOf(tmp)).toBe(0o600);
  });

  it('decryptToFile never writes plaintext through a link at its destination', async () => {
    const { dir, victim } = shared();
    const k = generateIdentity();
    const identity = parseIdentityText(identityFileText(k), 'key.txt')[0];
    const plain = path.join(dir, 'plain');
    fs.writeFileSync(plain, 'plaintext\n');
    const chunks: Buffer[] = [];
    const sink = new (await import('node:stream')).Writable({
      write(c: Buffer, _e, done) {
        chunks.push(c);
        done();
      },
    });
    const info = await encryptFileInto(plain, sink, [parseRecipient(k.recipient, 'test')]);
    const dest = path.join(dir, '.app.db.restore-1-abcdef.decrypted.tmp');
    fs.symlinkSync(victim, dest);
    await expect(decryptToFile(Readable.from([Buffer.concat(chunks)]), dest, { identities: [identity], subject: 'test', info })).rejects.toThrow(/EEXIST|ELOOP/);
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
  });
});

/** A tar stream as a Docker daemon would send it for `docker cp`-style reads of a volume. */
function volumeStream(entries: { name: string; type: 'file' | 'directory' | 'symlink' | 'link'; body?: string; linkname?: string }[]): Readable {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'file') pack.entry({ name: e.name, type: 'file', mode: 0o644, mtime: new Date(0) }, e.body ?? '');
    else pack.entry({ name: e.name, type: e.type, mode: 0o755, linkname: e.linkname, mtime: new Date(0) });
  }
  pack.finalize();
  return Readable.from(pack as AsyncIterable<Buffer>);
}

describe('volume mirror fed by a daemon someone else runs (issue 30: writes outside)', () => {
  it('a symlink entry followed by a file under it is refused; the file the link leads to is untouched', async () => {
    const { dir, victim } = shared();
    const mirror = path.join(dir, 'mirror');
    const stream = volumeStream([
      { name: 'vb-volume', type: 'directory' },
      { name: 'vb-volume/a', type: 'symlink', linkname: dir },
      { name: `vb-volume/a/${path.basename(victim)}`, type: 'file', body: 'owned\n' },
    ]);
    await expect(syncMirror(stream, mirror)).rejects.toThrow(/not a directory/);
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
  });

  it('a hard link to a path under a mirrored symlink is refused (it would link a file outside into the mirror)', async () => {
    const { dir, victim } = shared();
    const mirror = path.join(dir, 'mirror');
    const stream = volumeStream([
      { name: 'vb-volume', type: 'directory' },
      { name: 'vb-volume/a', type: 'symlink', linkname: dir },
      { name: 'vb-volume/copy', type: 'link', linkname: `vb-volume/a/${path.basename(victim)}` },
    ]);
    await expect(syncMirror(stream, mirror)).rejects.toThrow(/not a directory/);
    expect(fs.existsSync(path.join(mirror, 'copy'))).toBe(false);
  });

  it('a mirror directory planted as a link is refused before anything in its target is removed', async () => {
    const { dir, victim } = shared();
    const mirror = path.join(dir, 'mirror');
    fs.symlinkSync(dir, mirror);
    const stream = volumeStream([{ name: 'vb-volume', type: 'directory' }]);
    await expect(syncMirror(stream, mirror)).rejects.toThrow(/symlink/);
    expect(fs.readFileSync(victim, 'utf8')).toBe('secret\n');
  });
});
