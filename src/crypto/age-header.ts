import { createCipheriv, createDecipheriv, createHmac, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { BackupError } from '../errors.js';
import { describeIdentity, type Identity, type Recipient, type X25519Identity, x25519PublicKeyObject } from './age-keys.js';

/**
 * The age v1 header (C2SP age): recipient stanzas wrapping a 16-byte file key, then a MAC over the
 * header. Only the format glue is ours; X25519, HKDF, scrypt, ChaCha20-Poly1305, HMAC are node:crypto.
 */
export const AGE_MAGIC = 'age-encryption.org/v1';
const X25519_INFO = 'age-encryption.org/v1/X25519';
const SCRYPT_SALT_LABEL = 'age-encryption.org/v1/scrypt';
const ZERO_NONCE = Buffer.alloc(12);
/** a header larger than this is not an age header we would write or accept */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface Stanza {
  type: string;
  args: string[];
  body: Buffer;
}

export interface ParsedHeader {
  stanzas: Stanza[];
  mac: Buffer;
  /** the header bytes the MAC covers: from the magic line through `---` */
  macInput: Buffer;
  /** total header length including the MAC line's newline; the payload nonce follows */
  length: number;
}

/** age's base64: standard alphabet, no padding, rejected if not canonical. */
export const b64encode = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
function b64decode(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) return undefined;
  const b = Buffer.from(s, 'base64');
  return b64encode(b) === s ? b : undefined;
}

const hkdf = (ikm: Buffer, salt: Buffer, info: string): Buffer => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

export function aeadSeal(key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  const out = c.update(plaintext);
  c.final();
  return Buffer.concat([out, c.getAuthTag()]);
}

export function aeadOpen(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < 16) return undefined;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const out = d.update(sealed.subarray(0, sealed.length - 16));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return out;
}

const scryptKey = (passphrase: string, salt: Buffer, logN: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const N = 2 ** logN;
    scrypt(passphrase, Buffer.concat([Buffer.from(SCRYPT_SALT_LABEL), salt]), 32, { N, r: 8, p: 1, maxmem: 128 * N * 8 + 4 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });

async function wrap(fileKey: Buffer, r: Recipient): Promise<Stanza> {
  if (r.type === 'X25519') {
    const eph = generateKeyPairSync('x25519');
    const share = Buffer.from((eph.publicKey.export({ format: 'der', type: 'spki' }) as Buffer).subarray(12));
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: r.keyObject });
    const key = hkdf(shared, Buffer.concat([share, r.publicKey]), X25519_INFO);
    return { type: 'X25519', args: [b64encode(share)], body: aeadSeal(key, ZERO_NONCE, fileKey) };
  }
  const salt = randomBytes(16);
  const key = await scryptKey(r.passphrase, salt, r.logN);
  return { type: 'scrypt', args: [b64encode(salt), String(r.logN)], body: aeadSeal(key, ZERO_NONCE, fileKey) };
}

function unwrapX25519(s: Stanza, id: X25519Identity): Buffer | undefined {
  const share = s.args.length === 1 ? b64decode(s.args[0]) : undefined;
  if (share?.length !== 32 || s.body.length !== 32) throw damaged('malformed X25519 recipient stanza');
  const shared = diffieHellman({ privateKey: id.privateKey, publicKey: x25519PublicKeyObject(share) });
  if (shared.every((b) => b === 0)) throw damaged('X25519 recipient stanza with a low-order share');
  return aeadOpen(hkdf(shared, Buffer.concat([share, id.publicKey]), X25519_INFO), ZERO_NONCE, s.body);
}

async function unwrapScrypt(s: Stanza, passphrase: string, maxLogN: number): Promise<Buffer | undefined> {
  const salt = s.args.length === 2 ? b64decode(s.args[0]) : undefined;
  if (salt?.length !== 16 || !/^[1-9]\d*$/.test(s.args[1]) || s.body.length !== 32) throw damaged('malformed scrypt recipient stanza');
  const logN = Number(s.args[1]);
  if (logN > maxLogN) throw damaged(`the scrypt work factor 2^${logN} is above the limit 2^${maxLogN}`);
  return aeadOpen(await scryptKey(passphrase, salt, logN), ZERO_NONCE, s.body);
}

const damaged = (msg: string) => new BackupError('DAMAGED', `not a valid age file: ${msg}`);

function headerMac(fileKey: Buffer, macInput: Buffer): Buffer {
  return createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(macInput)
    .digest();
}

function serializeStanzas(stanzas: Stanza[]): string {
  let out = `${AGE_MAGIC}\n`;
  for (const s of stanzas) {
    out += `-> ${[s.type, ...s.args].join(' ')}\n`;
    const b = b64encode(s.body);
    // wrapped at 64 columns; the last line is always shorter, so it may be empty
    for (let i = 0; i <= b.length; i += 64) out += `${b.slice(i, i + 64)}\n`;
  }
  return `${out}---`;
}

/** Builds a header for `fileKey` wrapped to every recipient: a passphrase must be the only one. */
export async function buildHeader(fileKey: Buffer, recipients: Recipient[]): Promise<Buffer> {
  if (!recipients.length) throw new BackupError('USAGE', 'no recipients to encrypt to');
  if (recipients.some((r) => r.type === 'scrypt') && recipients.length > 1) {
    throw new BackupError('USAGE', 'a passphrase cannot be combined with other recipients (the age format allows it only alone)');
  }
  const stanzas = await Promise.all(recipients.map((r) => wrap(fileKey, r)));
  const macInput = Buffer.from(serializeStanzas(stanzas), 'latin1');
  return Buffer.concat([macInput, Buffer.from(` ${b64encode(headerMac(fileKey, macInput))}\n`, 'latin1')]);
}

/** Parses a header at the start of `buf`; undefined when more bytes are needed. */
export function parseHeader(buf: Buffer): ParsedHeader | undefined {
  const magic = Buffer.from(`${AGE_MAGIC}\n`);
  const head = buf.subarray(0, Math.min(buf.length, magic.length));
  if (!magic.subarray(0, head.length).equals(head)) throw damaged('it does not start with the age header (age-encryption.org/v1)');
  const end = buf.indexOf('\n--- ');
  if (end < 0) {
    if (buf.length > MAX_HEADER_BYTES) throw damaged('header too long');
    return undefined;
  }
  const eol = buf.indexOf('\n', end + 1);
  if (eol < 0) {
    if (buf.length > MAX_HEADER_BYTES) throw damaged('header too long');
    return undefined;
  }
  // the whole header is bounded, however much of it arrived in one read (stanzas and the MAC line too)
  if (eol + 1 > MAX_HEADER_BYTES) throw damaged('header too long');
  const macInput = buf.subarray(0, end + 4);
  const mac = b64decode(buf.subarray(end + 5, eol).toString('latin1'));
  if (mac?.length !== 32) throw damaged('malformed header MAC');
  const lines = buf
    .subarray(magic.length, end + 1)
    .toString('latin1')
    .split('\n');
  lines.pop(); // the newline before ---
  const stanzas: Stanza[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i++];
    if (!line.startsWith('-> ')) throw damaged(`unexpected header line ${i + 1}`);
    const [type, ...args] = line.slice(3).split(' ');
    if (!type || [type, ...args].some((a) => !/^[\x21-\x7e]+$/.test(a))) throw damaged('malformed stanza');
    let b64 = '';
    for (;;) {
      if (i >= lines.length) throw damaged('stanza body not terminated');
      const l = lines[i++];
      if (l.length > 64) throw damaged('stanza body line longer than 64 columns');
      b64 += l;
      if (l.length < 64) break;
    }
    const body = b64decode(b64);
    if (!body) throw damaged('stanza body is not valid base64');
    stanzas.push({ type, args, body });
  }
  if (!stanzas.length) throw damaged('no recipient stanzas');
  return { stanzas, mac, macInput: Buffer.from(macInput), length: eol + 1 };
}

/** What the stanzas say about the recipients: `2 X25519, 1 scrypt` (X25519 stanzas name no key). */
export function describeStanzas(stanzas: Stanza[]): string {
  const counts = new Map<string, number>();
  for (const s of stanzas) counts.set(s.type, (counts.get(s.type) ?? 0) + 1);
  return [...counts].map(([t, n]) => `${n} ${t}`).join(', ');
}

export interface UnwrapContext {
  /** the recipients the file is known to be encrypted to (from its sidecar), for the error message */
  knownRecipients?: string[];
  /** what is being decrypted, for messages */
  subject?: string;
}

/** Finds the file key with one of `identities` and checks the header MAC. Throws DAMAGED (exit 3). */
export async function unwrapFileKey(header: ParsedHeader, identities: Identity[], ctx: UnwrapContext = {}): Promise<Buffer> {
  const scryptStanzas = header.stanzas.filter((s) => s.type === 'scrypt');
  if (scryptStanzas.length && header.stanzas.length > 1) throw damaged('a scrypt stanza must be the only one');
  let fileKey: Buffer | undefined;
  for (const id of identities) {
    for (const s of header.stanzas) {
      if (id.type === 'X25519' && s.type === 'X25519') fileKey = unwrapX25519(s, id);
      else if (id.type === 'scrypt' && s.type === 'scrypt') fileKey = await unwrapScrypt(s, id.passphrase, id.maxLogN);
      if (fileKey) break;
    }
    if (fileKey) break;
  }
  const what = ctx.subject ? `${ctx.subject}: ` : '';
  if (fileKey?.length !== 16) {
    // the metadata says the file is encrypted to one of these identities, yet its stanza does not open:
    // the header was damaged, it is not a wrong key
    const known = identities.find((i) => i.type === 'X25519' && ctx.knownRecipients?.includes(i.recipient));
    if (known && known.type === 'X25519' && header.stanzas.some((st) => st.type === 'X25519'))
      throw new BackupError(
        'DAMAGED',
        `${what}the age header is damaged: the stanza for ${known.recipient} does not open with its identity (${known.source})`,
        {
          hint: 'the file was altered after it was written; restore an older backup or another copy of this one',
        },
      );
    const to = ctx.knownRecipients?.length ? ctx.knownRecipients.join(', ') : describeStanzas(header.stanzas);
    const tried = identities.length ? identities.map(describeIdentity).join(', ') : 'none given';
    throw new BackupError('DAMAGED', `${what}cannot be decrypted: it is encrypted to ${to}; identities tried: ${tried}`, {
      hint: identities.length
        ? 'pass the identity file of one of those recipients with --identity FILE (or AGE_IDENTITY_FILE)'
        : 'pass an identity with --identity FILE, AGE_IDENTITY_FILE or AGE_PASSPHRASE_FILE',
    });
  }
  const want = headerMac(fileKey, header.macInput);
  if (!timingSafeEqual(want, header.mac)) throw new BackupError('DAMAGED', `${what}the age header was altered (MAC mismatch)`);
  return fileKey;
}

export const payloadKey = (fileKey: Buffer, nonce: Buffer): Buffer => hkdf(fileKey, nonce, 'payload');
