import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ManifestRecord } from '../archive/manifest.js';
import { entryPath, openChainArchive } from '../archive/restore-chain.js';
import { componentLookup } from '../catalog/local-store.js';
import { BackupError } from '../errors.js';
import { showName } from '../archive/bytenames.js';
import type { Identity } from '../crypto/age-keys.js';
import { archivePath, manifestRecords, requireKey, storageWithManifest } from './file-manifest.js';

export interface Dumped {
  id: string;
  record: ManifestRecord;
  /** the file's content, checked against the manifest's SHA-256 as it streams (the stream fails on a mismatch) */
  content: Readable;
}

export interface DumpOptions {
  /** age identities, for an encrypted backup (its archive; a copy of an encrypting remote: its manifests too) */
  identities?: Identity[];
}

/** One file of a storage backup, read from the archive that holds it (nothing else is read). */
export async function dumpFile(backupDir: string, ref: string, file: string, options: DumpOptions = {}): Promise<Dumped> {
  const entry = await storageWithManifest(backupDir, ref);
  const want = archivePath(entry, file);
  let record: ManifestRecord | undefined;
  for await (const r of manifestRecords(backupDir, entry, options.identities)) {
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
  if (holder.sidecar.encryption) requireKey(options.identities, `storage backup ${holder.id}`, holder.sidecar.encryption);
  // an encrypted archive is not authenticated to its end: dump stops at the file, whose every chunk age
  // authenticated and whose size and SHA-256 the manifest checks
  const artifact = await openChainArchive({ dir: path.dirname(holder.sidecarPath!), sidecar: holder.sidecar }, holder.id, options.identities);
  const tarStream = artifact.stream;
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
      artifact.destroy();
      return;
    }
    throw new BackupError('DAMAGED', `the archive of storage backup ${holder.id} lacks ${shown}, which the manifest says it holds`);
  })().catch((err) => {
    artifact.destroy();
    out.destroy(err instanceof BackupError ? err : new BackupError('DAMAGED', `reading storage backup ${holder.id}: ${(err as Error).message}`));
  });
  return { id: entry.id, record, content: out };
}
