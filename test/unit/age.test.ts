import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { parseHeader } from '../../src/crypto/age-header.js';
import { generateIdentity, identityFileText, parseIdentityText, parseRecipient, parseRecipientsText, passphraseIdentity, passphraseRecipient } from '../../src/crypto/age-keys.js';
import { AgeEncryptStream, CHUNK, createDecryptStream, createEncryptStream } from '../../src/crypto/age-stream.js';
import type { Identity, Recipient } from '../../src/crypto/age-keys.js';
import { BackupError } from '../../src/errors.js';

async function collect(src: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(src, new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

/** Feeds `data` in pieces of `piece` bytes, so chunk boundaries fall everywhere. */
const pieces = (data: Buffer, piece: number) => Readable.from((function* () {
  for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
})());

async function encrypt(data: Buffer, recipients: Recipient[], piece = 7777): Promise<Buffer> {
  const enc = await createEncryptStream(recipients);
  return collect(pieces(data, piece).pipe(enc));
}

async function decrypt(data: Buffer, identities: Identity[], piece = 5000): Promise<Buffer> {
  const src = pieces(data, piece);
  const dec = createDecryptStream(identities);
  const out: Buffer[] = [];
  await pipeline(src, dec, new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

const key = () => {
  const k = generateIdentity();
  return { recipient: parseRecipient(k.recipient, 'test'), identity: parseIdentityText(identityFileText(k), 'key.txt')[0], k };
};

describe('age keys', () => {
  it('a generated identity file parses back to the recipient it prints', () => {
    const k = generateIdentity();
    expect(k.recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(k.secret).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    const text = identityFileText(k);
    expect(text).toContain(`# public key: ${k.recipient}`);
    expect(parseIdentityText(text, 'f')[0].recipient).toBe(k.recipient);
  });

  it('bad recipients and identities are usage errors that never echo a secret', () => {
    expect(() => parseRecipient('age1notakey', 'BACKUP_RECIPIENTS')).toThrow(/BACKUP_RECIPIENTS: not an age recipient/);
    expect(() => parseRecipient('ssh-ed25519 AAAA', 'x')).toThrow(/SSH public keys are not supported/);
    const k = generateIdentity();
    const broken = `${k.secret.slice(0, -1)}${k.secret.endsWith('Q') ? 'P' : 'Q'}`;
    try {
      parseIdentityText(`# c\n${broken}\n`, 'key.txt');
      expect.unreachable();
    } catch (err) {
      expect((err as BackupError).code).toBe('USAGE');
      expect((err as Error).message).toContain('key.txt line 2');
      expect((err as Error).message).not.toContain(broken);
    }
    expect(parseRecipientsText(`# team\n${k.recipient}\n\n`, 'r.txt').map((r) => r.text)).toEqual([k.recipient]);
  });
});

describe('age encrypt/decrypt stream', () => {
  const a = key();
  const b = key();
  for (const size of [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17]) {
    it(`round-trips ${size} bytes, fed in odd pieces`, async () => {
      const data = randomBytes(size);
      const sealed = await encrypt(data, [a.recipient]);
      // one final chunk even when the plaintext is an exact multiple: no trailing empty chunk
      const header = parseHeader(sealed)!;
      const chunks = Math.max(1, Math.ceil(size / CHUNK));
      expect(sealed.length).toBe(header.length + 16 + size + 16 * chunks);
      expect((await decrypt(sealed, [a.identity])).equals(data)).toBe(true);
    });
  }

  it('large input pieces (1 MiB) take the no-copy path and still round-trip', async () => {
    const data = randomBytes(5 * CHUNK + 3);
    const sealed = await encrypt(data, [a.recipient], 1 << 20);
    expect((await decrypt(sealed, [a.identity], 1 << 20)).equals(data)).toBe(true);
  });

  // issue 27: runs of 16 chunks after the first are sealed and opened in a worker thread; the bytes
  // must be exactly those of the calling thread, the plaintext digest too, wherever the input is cut
  for (const size of [16 * CHUNK - 1, 16 * CHUNK, 16 * CHUNK + 1, 32 * CHUNK, 50 * CHUNK + 123]) {
    it(`${size} bytes: the worker thread's output equals the calling thread's, both ways`, async () => {
      const data = randomBytes(size);
      const head = Buffer.from('test header\n');
      const k = randomBytes(32);
      const sealedBy = async (thread: boolean, piece: number) => {
        const enc = new AgeEncryptStream(head, k, { thread });
        const out = await collect(pieces(data, piece).pipe(enc));
        return { out, digest: enc.digest() };
      };
      const inline = await sealedBy(false, 7777);
      const threaded = await sealedBy(true, 1 << 20);
      expect(threaded.out.equals(inline.out)).toBe(true);
      expect(threaded.digest).toEqual(inline.digest);
      expect(inline.digest).toEqual({ size, sha256: createHash('sha256').update(data).digest('hex') });
      // and through the real header: decrypted with and without the thread
      const sealed = await encrypt(data, [a.recipient], 1 << 20);
      for (const thread of [true, false]) {
        const dec = createDecryptStream([a.identity], { thread });
        expect((await collect(pieces(sealed, thread ? 300_001 : 5000).pipe(dec))).equals(data)).toBe(true);
        expect(dec.digest()).toEqual(inline.digest);
      }
    });
  }

  it('several runs: a flipped byte in a later run or a cut at a run boundary fails, naming the chunk', async () => {
    const data = randomBytes(40 * CHUNK + 5);
    const sealed = await encrypt(data, [a.recipient], 1 << 20);
    const payload = parseHeader(sealed)!.length + 16;
    const bad = Buffer.from(sealed);
    bad[payload + 20 * (CHUNK + 16) + 7] ^= 0x01;
    await expect(decrypt(bad, [a.identity], 1 << 20)).rejects.toThrow(/authentication failed at chunk 20/);
    await expect(decrypt(sealed.subarray(0, payload + 32 * (CHUNK + 16)), [a.identity], 1 << 20)).rejects.toThrow(/altered or truncated/);
    await expect(decrypt(sealed.subarray(0, payload + 16 * (CHUNK + 16) + 10), [a.identity], 1 << 20)).rejects.toThrow(/truncated|altered/);
  });

  it('several recipients: each identity alone decrypts', async () => {
    const data = randomBytes(1000);
    const sealed = await encrypt(data, [a.recipient, b.recipient]);
    expect((await decrypt(sealed, [b.identity])).equals(data)).toBe(true);
    expect((await decrypt(sealed, [a.identity])).equals(data)).toBe(true);
  });

  it('a passphrase (scrypt) round-trips and must be alone', async () => {
    const data = randomBytes(3000);
    const sealed = await encrypt(data, [passphraseRecipient('correct horse', 10)]);
    expect((await decrypt(sealed, [passphraseIdentity('correct horse', 'AGE_PASSPHRASE_FILE')])).equals(data)).toBe(true);
    await expect(decrypt(sealed, [passphraseIdentity('wrong horse', 'AGE_PASSPHRASE_FILE')])).rejects.toThrow(/cannot be decrypted: it is encrypted to 1 scrypt/);
    await expect(createEncryptStream([passphraseRecipient('x'.repeat(8), 10), a.recipient])).rejects.toThrow(/cannot be combined/);
  });

  it('the wrong identity: DAMAGED, naming the stanzas and the identity tried (public key only)', async () => {
    const sealed = await encrypt(randomBytes(10), [a.recipient, b.recipient]);
    const c = key();
    const err = (await decrypt(sealed, [c.identity]).catch((e) => e)) as BackupError;
    expect(err.code).toBe('DAMAGED');
    expect(err.message).toContain('encrypted to 2 X25519');
    expect(err.message).toContain(c.k.recipient);
    expect(err.message).not.toContain(c.k.secret);
  });

  it('every flipped byte, truncation or appended byte fails authentication', async () => {
    const data = randomBytes(2 * CHUNK + 5);
    const sealed = await encrypt(data, [a.recipient]);
    const hl = parseHeader(sealed)!.length;
    const spots = [5, hl - 3, hl + 3, hl + 16 + 100, hl + 16 + CHUNK + 16 + 9, sealed.length - 1];
    for (const at of spots) {
      const bad = Buffer.from(sealed);
      bad[at] ^= 0x01;
      await expect(decrypt(bad, [a.identity]), `flip at ${at}`).rejects.toBeInstanceOf(BackupError);
    }
    for (const cut of [hl - 1, hl + 10, hl + 16 + CHUNK + 16, sealed.length - 1]) {
      await expect(decrypt(sealed.subarray(0, cut), [a.identity]), `cut at ${cut}`).rejects.toThrow(/truncated|altered|cut short|missing/);
    }
    await expect(decrypt(Buffer.concat([sealed, Buffer.from([0])]), [a.identity])).rejects.toThrow(/authentication failed/);
    await expect(decrypt(Buffer.from('not an age file at all'), [a.identity])).rejects.toThrow(/does not start with the age header/);
  });
});
