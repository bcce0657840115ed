import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { bech32 } from '@scure/base';
import { usageError } from '../errors.js';
import { registerSecret } from '../secrets.js';

/**
 * age keys: `age1…` X25519 recipients and `AGE-SECRET-KEY-1…` identities (Bech32, scure), scrypt
 * passphrases. The X25519 arithmetic is node:crypto's; raw 32-byte keys travel in fixed DER wrappers.
 */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

export interface X25519Recipient {
  type: 'X25519';
  publicKey: Buffer;
  keyObject: KeyObject;
  /** the `age1…` text: public, safe to print and to record in sidecars */
  text: string;
}

export interface ScryptRecipient {
  type: 'scrypt';
  passphrase: string;
  /** scrypt work factor: N = 2^logN (age's default is 18) */
  logN: number;
}

export type Recipient = X25519Recipient | ScryptRecipient;

export interface X25519Identity {
  type: 'X25519';
  privateKey: KeyObject;
  publicKey: Buffer;
  /** the matching recipient, the only part of an identity that may be printed */
  recipient: string;
  /** where it came from, for messages (a file name, never the key) */
  source: string;
}

export interface ScryptIdentity {
  type: 'scrypt';
  passphrase: string;
  /** refuse headers asking for more work than this (age's default limit is 22) */
  maxLogN: number;
  source: string;
}

export type Identity = X25519Identity | ScryptIdentity;

export const DEFAULT_SCRYPT_LOG_N = 18;

export function x25519PublicKeyObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}

function rawPublic(key: KeyObject): Buffer {
  return Buffer.from((createPublicKey(key).export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_X25519.length));
}

function rawPrivate(key: KeyObject): Buffer {
  return Buffer.from((key.export({ format: 'der', type: 'pkcs8' }) as Buffer).subarray(PKCS8_X25519.length));
}

const encodeRecipient = (raw: Buffer): string => bech32.encode('age', bech32.toWords(raw), 1023);
const encodeSecret = (raw: Buffer): string => bech32.encode('age-secret-key-', bech32.toWords(raw), 1023).toUpperCase();

function decodeBech32(text: string, prefix: string): Buffer | undefined {
  try {
    const { prefix: p, words } = bech32.decode(text as `${string}1${string}`, 1023);
    if (p.toLowerCase() !== prefix) return undefined;
    const raw = Buffer.from(bech32.fromWords(words));
    return raw.length === 32 ? raw : undefined;
  } catch {
    return undefined;
  }
}

/** Parses one `age1…` recipient; `where` names its origin for the error (a flag, a file and line). */
export function parseRecipient(text: string, where: string): X25519Recipient {
  const t = text.trim();
  if (/^ssh-(ed25519|rsa) /.test(t)) {
    throw usageError(
      `${where}: SSH public keys are not supported as recipients`,
      'make an age key with vertex-backup keygen (or age-keygen) and use its age1… recipient',
    );
  }
  const raw = t.startsWith('age1') && t === t.toLowerCase() ? decodeBech32(t, 'age') : undefined;
  if (!raw)
    throw usageError(`${where}: not an age recipient: '${t.slice(0, 80)}'`, 'recipients look like age1… (62 characters); vertex-backup keygen prints one');
  return { type: 'X25519', publicKey: raw, keyObject: x25519PublicKeyObject(raw), text: t };
}

/** Recipients file: one `age1…` per line, `#` comments and blank lines ignored (age -R's format). */
export function parseRecipientsText(text: string, source: string): X25519Recipient[] {
  const out: X25519Recipient[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    out.push(parseRecipient(t, `${source} line ${i + 1}`));
  }
  return out;
}

export function identityFromSecret(secret: string, source: string): X25519Identity {
  const raw = secret.startsWith('AGE-SECRET-KEY-1') ? decodeBech32(secret, 'age-secret-key-') : undefined;
  // never echo the line: it is, or is close to, a private key
  if (!raw) throw usageError(`${source}: not an age identity (expected AGE-SECRET-KEY-1…)`);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
  const publicKey = rawPublic(privateKey);
  return { type: 'X25519', privateKey, publicKey, recipient: encodeRecipient(publicKey), source };
}

/** An identity file as age-keygen writes it: `# created:`/`# public key:` comments and one key per line. */
export function parseIdentityText(text: string, source: string): X25519Identity[] {
  const out: X25519Identity[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    registerSecret(t);
    if (t.startsWith('-----BEGIN'))
      throw usageError(`${source}: SSH private keys are not supported as identities`, 'use an age identity file (vertex-backup keygen)');
    if (t.startsWith('age-encryption.org/'))
      throw usageError(`${source}: passphrase-protected identity files are not supported`, 'decrypt it first with age -d');
    out.push(identityFromSecret(t, `${source} line ${i + 1}`));
  }
  if (!out.length) throw usageError(`${source}: no identity in the file (expected a line AGE-SECRET-KEY-1…)`);
  return out;
}

export function passphraseIdentity(passphrase: string, source: string, maxLogN = 22): ScryptIdentity {
  registerSecret(passphrase);
  return { type: 'scrypt', passphrase, maxLogN, source };
}

export function passphraseRecipient(passphrase: string, logN = DEFAULT_SCRYPT_LOG_N): ScryptRecipient {
  if (!passphrase) throw usageError('the passphrase is empty');
  registerSecret(passphrase);
  return { type: 'scrypt', passphrase, logN };
}

export interface GeneratedKey {
  recipient: string;
  secret: string;
}

export function generateIdentity(): GeneratedKey {
  const { privateKey } = generateKeyPairSync('x25519');
  return { recipient: encodeRecipient(rawPublic(privateKey)), secret: encodeSecret(rawPrivate(privateKey)) };
}

/** The identity file age-keygen writes, byte for byte in shape. */
export function identityFileText(key: GeneratedKey, created = new Date()): string {
  return `# created: ${created.toISOString().replace(/\.\d{3}Z$/, 'Z')}\n# public key: ${key.recipient}\n${key.secret}\n`;
}

/** What a recipient is called in messages and sidecars: public keys as they are, never a passphrase. */
export const describeRecipient = (r: Recipient): string => (r.type === 'X25519' ? r.text : 'passphrase (scrypt)');
export const describeIdentity = (i: Identity): string => (i.type === 'X25519' ? `${i.recipient} (${i.source})` : `passphrase (${i.source})`);
