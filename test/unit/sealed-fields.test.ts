/**
 * Sealed sidecars (issue 21, item 6): the plaintext part of a remote sidecar keeps only what judging,
 * verifying and restoring the ciphertext needs; the whole sidecar comes back with the identity, and
 * only when the sealed part agrees with the plaintext one.
 */
import { describe, expect, it } from 'vitest';
import type { Sidecar } from '../../src/catalog/sidecar.js';
import { generateIdentity, identityFromSecret, parseRecipient } from '../../src/crypto/age-keys.js';
import { BackupError } from '../../src/errors.js';
import { isSealed, publicPart, sealSidecar, unsealSidecar } from '../../src/offsite/sealed-fields.js';

const key = generateIdentity();
const other = generateIdentity();
const recipient = parseRecipient(key.recipient, 'test');
const identity = identityFromSecret(key.secret, 'test');

const sidecar: Sidecar = {
  format: 1,
  id: '20240101_120000',
  type: 'storage',
  created_at: '2024-01-01T12:00:00.000Z',
  original_path: '/srv/app/storage',
  backup_path: 'storage_backup_20240101_120000.tar.gz.age',
  file_size: 1234,
  checksum: 'c'.repeat(64),
  compression: 'gzip',
  file_count: 7,
  content_bytes: 999,
  exclude: ['*.secret'],
  warnings: ['skipped special file storage/docs/patient.fifo'],
  skipped: [{ path: 'storage/private', error: 'EACCES' }],
  encryption: { format: 'age', recipients: [key.recipient], plaintext_size: 1000, plaintext_checksum: 'p'.repeat(64) },
  level: 0,
  chain: ['20240101_120000'],
  references: ['20240101_120000'],
  manifest: { file: 'storage_backup_20240101_120000.manifest.gz.age', size: 300, checksum: 'm'.repeat(64), entries: 12 },
};

describe('sealed sidecars', () => {
  it('the plaintext part keeps ids, chain and the ciphertext; names, counts and plaintext checksums are gone', async () => {
    const sealed = await sealSidecar(sidecar, [recipient]);
    const text = JSON.stringify({ ...sealed, sealed: undefined });
    for (const gone of ['/srv/app', 'patient', 'secret', 'private', 'p'.repeat(64), '"file_count"', '"content_bytes"']) expect(text).not.toContain(gone);
    expect(sealed).toMatchObject({ id: sidecar.id, level: 0, chain: sidecar.chain, checksum: sidecar.checksum, file_size: 1234, manifest: { file: sidecar.manifest!.file } });
    expect(isSealed(sealed)).toBe(true);
  });

  it('the identity brings back the whole sidecar; another key cannot', async () => {
    const sealed = await sealSidecar(sidecar, [recipient]);
    expect(await unsealSidecar(sealed, [identity])).toEqual(sidecar);
    await expect(unsealSidecar(sealed, [identityFromSecret(other.secret, 'other')])).rejects.toBeInstanceOf(BackupError);
  });

  it('a sealed part that says something else of the files than the plaintext part is refused', async () => {
    const sealed = await sealSidecar({ ...sidecar, checksum: 'd'.repeat(64) }, [recipient]);
    const swapped = { ...publicPart(sidecar), sealed: sealed.sealed };
    await expect(unsealSidecar(swapped, [identity])).rejects.toThrow(/does not match/);
  });
});
