import type { Identity } from '../crypto/age-keys.js';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ManifestRecord } from '../archive/manifest.js';
import { archiveTarStream, entryPath } from '../archive/restore-chain.js';
import { componentLookup } from '../catalog/listing.js';
import { BackupError } from '../errors.js';
import { readParts } from '../archive/parts.js';
import { type Sidecar, artifactFiles } from '../catalog/sidecar.js';
import { codecForFile, getCodec } from '../codec/registry.js';
import { decryptStage, needIdentity } from '../crypto/age-artifact.js';
import { showName } from '../archive/bytenames.js';
import { archivePath, manifestRecords, storageWithManifest } from './manifest-of.js';

export interface Dumped {
  id: string;
  record: ManifestRecord;
  /** the file's content, checked against the manifest's SHA-256 as it streams (the stream fails on a mismatch) */
  content: Readable;
}

/**
 * An encrypted archive's tar stream: parts, then age (every chunk authenticated before it is passed
 * on), then the codec. Errors end the stream; they never reach the process.
 */
async function decryptedTarStream(dir: string, s: Sidecar, id: string, identities: Identity[]): Promise<Readable> {
  const codec = s.compression ? getCodec(s.compression) : codecForFile((s.backup_path ?? '').replace(/\.age$/, ''));
  if (!codec) throw new BackupError('DAMAGED', `unknown compression '${s.compression}' in storage backup ${id}`);
  await codec.checkAvailable();
  const raw = readParts(artifactFiles(s).map((p) => path.join(dir, p.file)));
  const dec = decryptStage({ identities, subject: `storage backup ${id}`, info: s.encryption! });
  const tarStream = codec.decompressor();
  raw.on('error', (e) => tarStream.destroy(e));
  dec.on('error', (e) => tarStream.destroy(e));
  tarStream.on('error', () => {});
  tarStream.on('close', () => {
    raw.destroy();
    dec.destroy();
  });
  raw.pipe(dec).pipe(tarStream);
  return tarStream as unknown as Readable;
}

/** One file of a storage backup, read from the archive that holds it (nothing else is read). */
export async function dumpFile(backupDir: string, ref: string, file: string, identities?: Identity[]): Promise<Dumped> {
  const entry = await storageWithManifest(backupDir, ref);
  const want = archivePath(entry, file);
  let record: ManifestRecord | undefined;
  for await (const r of manifestRecords(backupDir, entry, identities)) {
    if (r.path === want) {
      record = r;
      break;
    }
  }
  const shown = JSON.stringify(showName(file));
  if (!record) throw new BackupError('USAGE', `storage backup ${entry.id} has no ${shown}`, { hint: `see what it holds with: vertex-backup ls ${entry.id}` });
  if (record.t !== 'f')
    throw new BackupError(
      'USAGE',
      `${shown} is a ${record.t === 'd' ? 'directory' : `symlink to ${JSON.stringify(showName(record.l ?? ''))}`} in storage backup ${entry.id}, not a file`,
    );
  const holder = record.a === entry.id ? entry : await componentLookup(backupDir)('storage', record.a);
  if (!holder?.sidecar) throw new BackupError('DAMAGED', `storage backup ${record.a}, whose archive holds ${shown}, is missing`);
  if (holder.sidecar.encryption && !identities?.length)
    throw needIdentity({ subject: `the archive of storage backup ${holder.id}`, info: holder.sidecar.encryption });
  const input = holder.sidecar.encryption
    ? await decryptedTarStream(path.dirname(holder.sidecarPath!), holder.sidecar, holder.id, identities!)
    : await archiveTarStream({ dir: path.dirname(holder.sidecarPath!), sidecar: holder.sidecar }, holder.id);
  const tarStream = input;
  const ex = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  tarStream.pipe(ex as unknown as NodeJS.WritableStream);
  tarStream.on('error', (e) => ex.destroy(e));
  const out = new PassThrough();
  const rec = record;
  // a renamed or copied file: its content is under the path it was first stored at
  const inArchive = record.o ?? want;
  (async () => {
    for await (const e of ex) {
      const name = entryPath(e.header);
      if (name !== inArchive || e.header.type !== 'file') {
        e.resume();
        continue;
      }
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of e) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
      }
      if (size !== rec.s || (rec.h && hash.digest('hex') !== rec.h))
        throw new BackupError('DAMAGED', `${shown} in the archive of storage backup ${holder.id} does not match the manifest`);
      out.end();
      ex.destroy();
      input.destroy();
      return;
    }
    throw new BackupError('DAMAGED', `the archive of storage backup ${holder.id} lacks ${shown}, which the manifest says it holds`);
  })().catch((err) => {
    input.destroy();
    out.destroy(err instanceof BackupError ? err : new BackupError('DAMAGED', `reading storage backup ${holder.id}: ${(err as Error).message}`));
  });
  return { id: entry.id, record, content: out };
}
