import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { Sidecar } from '../catalog/sidecar.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError } from '../errors.js';
import tar from 'tar-stream';
import { decodeEntryNames, fsPath, nameBytes, showName } from './bytenames.js';
import { compareIds } from '../catalog/names.js';
import { extractArchive } from './extract.js';
import { openArtifact } from './open-artifact.js';
import { compareRecords, ManifestCursor, type ManifestFile, type ManifestRecord, readView } from './manifest.js';

/**
 * Restore of an incremental storage backup from its manifests: directories come from the manifest,
 * files and symlinks from the archives it names, each read once, each entry written once (an entry
 * that a later backup holds again is read past in the older archive). Every file is hashed as it is
 * written and compared with the manifest.
 */

export interface ChainArchive {
  /** the directory holding the backup's files */
  dir: string;
  sidecar: Sidecar;
}

export interface ChainRestoreOptions {
  maxBytes?: number;
  signal?: AbortSignal;
  onEntry?: (name: string, bytes: number) => void;
  /** what will be written (files and symlinks, content bytes), known from the manifest before the first archive */
  onTotals?: (entries: number, bytes: number) => void;
  /** only these archive paths (and what is under them), for `restore --include` */
  include?: string[];
  /** age identities: encrypted archives are decrypted on the way, and each authenticated in full before the next one */
  identities?: Identity[];
}

export interface ChainRestoreResult {
  entries: number;
  bytes: number;
  warnings: string[];
  /** the backups whose archives were read */
  archivesRead: string[];
}

/** An entry's path as manifests write it: its bytes decoded (see archive/bytenames.ts), without `./` or empty parts. */
export function entryPath(header: tar.Header): string {
  decodeEntryNames(header);
  return header.name
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

/**
 * What a restore refuses in a record of the tree (decodeRecord already judged its fields): an unsafe
 * path, or an unsafe path of the content it refers to. `verify` judges every record with this too, so
 * it never calls ok a backup that restore refuses.
 */
export function judgeRecord(r: ManifestRecord): void {
  safeRel(r.path);
  if (r.t === 'f' && r.o !== undefined) safeRel(r.o);
}

function safeRel(p: string): string {
  const parts = p.split('/');
  if (p.startsWith('/') || parts.some((x) => x === '' || x === '.' || x === '..') || p.includes('\0')) {
    throw new BackupError('DAMAGED', `manifest names the unsafe path ${JSON.stringify(showName(p))}`);
  }
  return p;
}

/** Whether `p` is one of `include` or lies under one (an empty list includes everything). */
export function included(p: string, include: string[] | undefined): boolean {
  if (!include?.length) return true;
  return include.some((i) => p === i || p.startsWith(`${i}/`));
}

/** Whether a directory must exist for the included paths: it is included, or lies on the way to one. */
const onTheWay = (dir: string, include: string[] | undefined) => included(dir, include) || !!include?.some((i) => i.startsWith(`${dir}/`));

/** A storage backup's archive, opened by the one read path (open-artifact.ts). */
export const openChainArchive = (archive: ChainArchive, id: string, identities?: Identity[]) =>
  openArtifact(archive.dir, archive.sidecar, { subject: `storage backup ${id}`, identities });

const nsToSeconds = (ns: string) => Number(BigInt(ns) / 1000n) / 1e6;

export async function extractChain(
  /** the manifests of the backup's chain, oldest first (see readView) */
  manifests: ManifestFile[],
  archives: (id: string) => ChainArchive | undefined,
  staging: string,
  options: ChainRestoreOptions = {},
): Promise<ChainRestoreResult> {
  await fsp.mkdir(staging, { recursive: true, mode: 0o700 });
  const root = await fsp.realpath(staging);
  const want = (r: ManifestRecord) => (r.t === 'd' ? onTheWay(r.path, options.include) : included(r.path, options.include));
  // pass 1: the directories, and which archives hold what we need
  const needed = new Map<string, number>();
  // files stored by reference (renamed or copied): archive id -> path in that archive -> records to write
  const refs = new Map<string, Map<string, ManifestRecord[]>>();
  let entries = 0;
  // each --include must name something the backup holds: the directories on the way to it do not count
  const unmatched = new Set(options.include ?? []);
  let toWrite = 0;
  let toWriteBytes = 0;
  for await (const r of readView(manifests)) {
    judgeRecord(r);
    if (!want(r)) continue;
    entries++;
    if (unmatched.size) for (const i of unmatched) if (r.path === i || r.path.startsWith(`${i}/`)) unmatched.delete(i);
    if (r.t === 'd') await fsp.mkdir(fsPath(path.join(root, r.path)), { recursive: true, mode: 0o700 });
    else if (r.t === 'f' && r.o !== undefined) {
      const byPath = refs.get(r.a) ?? new Map<string, ManifestRecord[]>();
      refs.set(r.a, byPath);
      byPath.set(r.o, [...(byPath.get(r.o) ?? []), r]);
      toWrite++;
      toWriteBytes += r.s;
    } else {
      needed.set(r.a, (needed.get(r.a) ?? 0) + 1);
      toWrite++;
      if (r.t === 'f') toWriteBytes += r.s;
    }
  }
  options.onTotals?.(toWrite, toWriteBytes);
  if (unmatched.size) {
    throw new BackupError('USAGE', `the backup holds nothing under ${[...unmatched].map((i) => JSON.stringify(showName(i))).join(', ')}`, {
      hint: 'see what it holds with: vertex-backup ls ID',
    });
  }
  // pass 2: files and symlinks, archive by archive, oldest first
  let bytes = 0;
  const warnings: string[] = [];
  const ids = [...needed.keys()].sort(compareIds);
  for (const id of ids) {
    const archive = archives(id);
    if (!archive) throw new BackupError('DAMAGED', `storage backup ${id}, whose archive the manifest needs, is missing or damaged`);
    const artifact = await openChainArchive(archive, id, options.identities);
    const tarStream = artifact.stream;
    const cursor = new ManifestCursor(readView(manifests.map((m) => ({ file: m.file, key: m.key }))));
    const nextWanted = async (): Promise<ManifestRecord | undefined> => {
      for (let r = await cursor.peek(); r; r = await cursor.peek()) {
        if (r.t !== 'd' && r.a === id && r.o === undefined && want(r)) return r;
        await cursor.take();
      }
      return undefined;
    };
    const expected = new Map<string, ManifestRecord>();
    const lacks = (r: ManifestRecord) =>
      new BackupError('DAMAGED', `the archive of storage backup ${id} lacks ${JSON.stringify(showName(r.path))}, which the manifest says it holds`);
    try {
      const got = await extractArchive(tarStream, root, {
        maxBytes: options.maxBytes === undefined ? undefined : options.maxBytes - bytes,
        signal: options.signal,
        onEntry: options.onEntry,
        select: async (rel, type) => {
          if (type === 'directory') return false;
          const key = { path: rel, t: type === 'symlink' ? ('l' as const) : ('f' as const) };
          const r = await nextWanted();
          if (!r) return false;
          const c = compareRecords(r, key);
          if (c > 0) return false;
          if (c < 0) throw lacks(r);
          await cursor.take();
          if (r.t !== key.t)
            throw new BackupError(
              'DAMAGED',
              `${JSON.stringify(showName(rel))} in the archive of storage backup ${id} is not the ${r.t === 'f' ? 'file' : 'symlink'} the manifest names`,
            );
          if (r.t === 'f') expected.set(rel, r);
          return true;
        },
        onFile: (rel, size, sha256) => {
          const r = expected.get(rel);
          expected.delete(rel);
          if (!r || r.s !== size || (r.h && r.h !== sha256)) {
            throw new BackupError(
              'DAMAGED',
              `restored ${JSON.stringify(showName(rel))} does not match the manifest (${r && r.s !== size ? `size ${size}, expected ${r.s}` : 'SHA-256 differs'})`,
            );
          }
        },
      });
      const left = await nextWanted();
      if (left) throw lacks(left);
      await artifact.authenticate();
      bytes += got.bytes;
      warnings.push(...got.warnings);
    } catch (err) {
      throw namingBackup(err, id);
    } finally {
      artifact.destroy();
      await cursor.close();
    }
  }
  // pass 2b: files stored by reference, from the archives that hold their content
  for (const id of [...refs.keys()].sort(compareIds)) {
    const archive = archives(id);
    if (!archive) throw new BackupError('DAMAGED', `storage backup ${id}, whose archive the manifest needs, is missing or damaged`);
    const artifact = await openChainArchive(archive, id, options.identities);
    let written: [string, number][];
    try {
      written = await copyReferenced(artifact.stream, root, refs.get(id)!, id);
      await artifact.authenticate();
    } catch (err) {
      throw namingBackup(err, id);
    } finally {
      artifact.destroy();
    }
    for (const [name, size] of written) {
      bytes += size;
      options.onEntry?.(name, size);
    }
    if (!ids.includes(id)) ids.push(id);
  }
  // pass 3: directory owners (as root, as GNU tar does), modes and times, once nothing more is written into them
  const asRoot = process.getuid?.() === 0;
  for await (const r of readView(manifests.map((m) => ({ file: m.file, key: m.key })))) {
    if (r.t !== 'd' || !want(r)) continue;
    const p = fsPath(path.join(root, r.path));
    if (asRoot) await fsp.lchown(p, r.u, r.g);
    await fsp.chmod(p, r.m & 0o1777);
    const t = nsToSeconds(r.mt);
    await fsp.utimes(p, t, t);
  }
  return { entries, bytes, warnings, archivesRead: ids };
}

/**
 * Damage found while unpacking names the backup whose archive it is: a restore's verification checks
 * only the checksums first (ops/verify.ts, `restoring`), so this is where a damaged archive of a chain
 * is reported, and the operator must know which backup to pass over.
 */
function namingBackup(err: unknown, id: string): unknown {
  if (!(err instanceof BackupError) || err.code !== 'DAMAGED' || err.message.includes(id)) return err;
  return new BackupError('DAMAGED', `storage backup ${id}: ${err.message}`, {
    cause: err,
    hint: err.hint ?? 'restore another backup (vertex-backup list shows them)',
  });
}

/**
 * Reads one archive to its end and writes each referenced file from the entry holding its content:
 * the first copy is hashed as written and must match the manifest; further copies are copied from it.
 */
async function copyReferenced(tarStream: Readable, root: string, byPath: Map<string, ManifestRecord[]>, id: string): Promise<[string, number][]> {
  const ex = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  if (tarStream.errored) throw tarStream.errored;
  tarStream.pipe(ex as unknown as NodeJS.WritableStream);
  tarStream.on('error', (e) => ex.destroy(e));
  const written: [string, number][] = [];
  const asRoot = process.getuid?.() === 0;
  const place = async (r: ManifestRecord, from?: string): Promise<string> => {
    const dest = path.join(root, r.path);
    // nothing is written through a symlink: the parent must be the directory the manifest names
    const real = await fsp.realpath(fsPath(path.dirname(dest)), { encoding: 'buffer' });
    if (!real.equals(nameBytes(path.join(root, path.dirname(r.path))))) {
      throw new BackupError('DAMAGED', `${JSON.stringify(showName(r.path))}: its directory is not a directory of the restored tree`);
    }
    if (from) await fsp.copyFile(fsPath(from), fsPath(dest), fsConstants.COPYFILE_EXCL);
    return dest;
  };
  const finish = async (r: ManifestRecord, dest: string) => {
    if (asRoot) await fsp.lchown(fsPath(dest), r.u, r.g);
    await fsp.chmod(fsPath(dest), r.m & 0o7777);
    const t = nsToSeconds(r.mt);
    await fsp.utimes(fsPath(dest), t, t);
    written.push([r.path, r.s]);
  };
  try {
    for await (const e of ex) {
      const name = entryPath(e.header);
      const want = e.header.type === 'file' ? byPath.get(name) : undefined;
      if (!want) {
        e.resume();
        continue;
      }
      byPath.delete(name);
      const first = await place(want[0]);
      const fh = await fsp.open(fsPath(first), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
      const hash = createHash('sha256');
      let size = 0;
      try {
        for await (const chunk of e) {
          hash.update(chunk as Buffer);
          size += (chunk as Buffer).length;
          await fh.write(chunk as Buffer);
        }
      } finally {
        await fh.close();
      }
      if (size !== want[0].s || hash.digest('hex') !== want[0].h) {
        throw new BackupError(
          'DAMAGED',
          `restored ${JSON.stringify(showName(want[0].path))} (from ${JSON.stringify(showName(name))} in the archive of storage backup ${id}) does not match the manifest`,
        );
      }
      for (const r of want.slice(1)) await finish(r, await place(r, first));
      await finish(want[0], first);
    }
  } finally {
    tarStream.destroy();
  }
  const lost = byPath.keys().next();
  if (!lost.done)
    throw new BackupError('DAMAGED', `the archive of storage backup ${id} lacks ${JSON.stringify(showName(lost.value))}, which the manifest says it holds`);
  return written;
}
