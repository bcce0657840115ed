import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type BackupEntry, componentLookup } from '../catalog/local-store.js';
import { type Sidecar, artifactFiles } from '../catalog/sidecar.js';
import { pinsOf } from '../catalog/chain.js';
import { acquireLock } from '../catalog/lock.js';
import { forgetHeld } from '../catalog/replication.js';
import { PartWriter, checkParts } from '../archive/parts.js';
import { BackupError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { selectForVerify, type VerifySelection } from './verify.js';
import { buildHeader, MAX_HEADER_BYTES, parseHeader, unwrapFileKey } from '../crypto/age-header.js';
import { describeRecipient, type Identity, type Recipient } from '../crypto/age-keys.js';

export interface RekeyedFile {
  type: 'database' | 'storage';
  id: string;
  file: string;
  /** 'rekeyed', or why it was left alone */
  result: 'rekeyed' | 'not encrypted';
  recipients?: string[];
}

export interface RekeyOptions {
  identities: Identity[];
  recipients: Recipient[];
  lockWaitMs?: number;
  signal?: AbortSignal;
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(MAX_HEADER_BYTES + 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Re-wraps an encrypted file manifest (`….manifest.gz.age`, create --encrypt) for `recipients`: its
 * sidecar's `manifest` as it is after, or undefined when the manifest is not encrypted.
 */
async function rekeyManifest(entry: BackupEntry, opts: RekeyOptions): Promise<NonNullable<Sidecar['manifest']> | undefined> {
  const m = entry.sidecar!.manifest;
  if (!m?.encryption || !m.file.endsWith('.age')) return undefined;
  const dir = path.dirname(entry.sidecarPath!);
  const file = path.join(dir, m.file);
  const subject = `the file manifest of storage backup ${entry.id}`;
  const header = parseHeader(await readHead(file));
  if (!header) throw new BackupError('DAMAGED', `${subject}: the age header is not complete in ${m.file}`);
  const fileKey = await unwrapFileKey(header, opts.identities, { subject, knownRecipients: m.encryption.recipients });
  const newHeader = await buildHeader(fileKey, opts.recipients);
  const tmpName = `${m.file}.rekey.tmp`;
  const writer = new PartWriter(dir, tmpName);
  try {
    await pipeline(
      Readable.from(
        (async function* () {
          yield newHeader;
          yield* createReadStream(file, { start: header.length, highWaterMark: 1 << 20 });
        })(),
      ),
      writer,
      { signal: opts.signal },
    );
    const written = await writer.commit();
    await fsp.rename(written.files[0], file);
    return { ...m, size: written.size, checksum: written.checksum, encryption: { ...m.encryption, recipients: opts.recipients.map(describeRecipient) } };
  } finally {
    await writer.abort();
    await fsp.rm(path.join(dir, tmpName), { force: true });
  }
}

/**
 * Re-wraps one encrypted artifact's file key for `recipients`: a new header, the payload bytes as they
 * were. The first file (the whole artifact, or part 1) is rewritten to a temp name and renamed over
 * the old one; the sidecar follows with the new sizes and checksums.
 */
async function rekeyEntry(entry: BackupEntry, opts: RekeyOptions): Promise<RekeyedFile> {
  const s = entry.sidecar!;
  const dir = path.dirname(entry.sidecarPath!);
  const parts = artifactFiles(s);
  const first = path.join(dir, parts[0].file);
  const type = entry.type as 'database' | 'storage';
  if (!s.encryption) return { type, id: entry.id, file: first, result: 'not encrypted' };
  const subject = `${type} backup ${entry.id}`;
  const header = parseHeader(await readHead(first));
  if (!header) throw new BackupError('DAMAGED', `${subject}: the age header is not complete in ${parts[0].file}`);
  const fileKey = await unwrapFileKey(header, opts.identities, { subject, knownRecipients: s.encryption.recipients });
  const newHeader = await buildHeader(fileKey, opts.recipients);

  const tmpName = `${parts[0].file}.rekey.tmp`;
  const writer = new PartWriter(dir, tmpName);
  try {
    await pipeline(
      Readable.from(
        (async function* () {
          yield newHeader;
          yield* createReadStream(first, { start: header.length, highWaterMark: 1 << 20 });
        })(),
      ),
      writer,
      { signal: opts.signal },
    );
    const written = await writer.commit();
    const newParts = parts.map((p, i) => (i === 0 ? { file: p.file, size: written.size, checksum: written.checksum } : p));
    const whole = await checkParts(newParts, (p) =>
      createReadStream(p === newParts[0] ? written.files[0] : path.join(dir, p.file), { highWaterMark: 1 << 20 }),
    );
    await fsp.rename(written.files[0], first);
    const recipients = opts.recipients.map(describeRecipient);
    // the file list goes with the archive: the new key alone must read both
    const manifest = (await rekeyManifest(entry, opts)) ?? s.manifest;
    const next = {
      ...s,
      manifest,
      file_size: whole.size,
      checksum: whole.checksum,
      parts: s.parts?.length ? newParts : undefined,
      encryption: { ...s.encryption, recipients },
    };
    await writeFileAtomic(entry.sidecarPath!, `${JSON.stringify(next, null, 2)}\n`);
    return { type, id: entry.id, file: first, result: 'rekeyed', recipients };
  } finally {
    await writer.abort();
    await fsp.rm(path.join(dir, tmpName), { force: true });
  }
}

/** Rekeys the selected local backups (components of full backups included), under the lock. */
export async function rekeyBackups(backupDir: string, sel: VerifySelection, opts: RekeyOptions): Promise<RekeyedFile[]> {
  if (!sel.ref && !sel.all && !sel.latest) throw new BackupError('USAGE', 'rekey needs a backup id, latest, or --all');
  if (!opts.identities.length)
    throw new BackupError('USAGE', 'rekey needs the current identity to unwrap the file keys', {
      hint: 'give the current age identity (AGE_IDENTITY_FILE)',
      remedy: 'identity',
    });
  const lock = await acquireLock(backupDir, 'rekey', { waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    const lookup = componentLookup(backupDir);
    const seen = new Set<string>();
    const out: RekeyedFile[] = [];
    const changed = new Set<string>();
    for (const e of await selectForVerify(backupDir, sel)) {
      const before = out.length;
      const items =
        e.type === 'full' ? await Promise.all((['database', 'storage'] as const).map((t) => (e.sidecar?.[t] ? lookup(t, e.sidecar[t]!) : undefined))) : [e];
      // an incremental storage backup is restored from every archive its chain references: all of them
      // are re-wrapped, or the new key could not restore it
      const chained: (BackupEntry | undefined)[] = [];
      for (const item of items) {
        chained.push(item);
        if (item?.type === 'storage')
          for (const rid of pinsOf({ id: item.id, references: item.sidecar?.references })) chained.push(await lookup('storage', rid));
      }
      for (const item of chained) {
        if (!item?.sidecar || item.type === 'full' || seen.has(`${item.type}:${item.id}`)) continue;
        seen.add(`${item.type}:${item.id}`);
        opts.signal?.throwIfAborted();
        out.push(await rekeyEntry(item, opts));
      }
      if (out.slice(before).some((r) => r.result === 'rekeyed')) changed.add(`${e.type}:${e.id}`);
    }
    for (const r of out) if (r.result === 'rekeyed') changed.add(`${r.type}:${r.id}`);
    // the next sync sends the re-wrapped files: the remotes' copies are still on the old key
    await forgetHeld(backupDir, changed);
    return out;
  } finally {
    lock.release();
  }
}
