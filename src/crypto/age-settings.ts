import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkSecretFileMode } from '../secrets.js';
import { usageError } from '../errors.js';
import { type Identity, parseIdentityText, parseRecipient, parseRecipientsText, passphraseIdentity, passphraseRecipient, type Recipient } from './age-keys.js';

/**
 * Where keys come from. Encrypting needs only public recipients (flags, BACKUP_RECIPIENTS,
 * BACKUP_RECIPIENTS_FILE) or a passphrase file; decrypting needs identities (--identity,
 * AGE_IDENTITY_FILE, AGE_PASSPHRASE_FILE, or a prompt that the CLI supplies).
 */
export interface RecipientFlags {
  recipient?: string[];
  recipientsFile?: string;
  passphraseFile?: string;
}

function readSmallFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The first line of a passphrase file, without its newline; the file must be private. */
export function readPassphraseFile(file: string, what: string): string {
  const text = readSmallFile(file, what);
  checkSecretFileMode(file, true);
  const pass = text.split(/\r?\n/)[0];
  if (!pass) throw usageError(`${what} ${file} is empty`);
  return pass;
}

/** Recipients from flags, else from the environment; undefined when nothing asks for encryption. */
export function resolveRecipients(flags: RecipientFlags, env: Record<string, string | undefined>, cwd = process.cwd()): Recipient[] | undefined {
  const out: Recipient[] = [];
  const fromFlags = !!(flags.recipient?.length || flags.recipientsFile || flags.passphraseFile);
  const list = fromFlags
    ? (flags.recipient ?? [])
    : (env.BACKUP_RECIPIENTS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
  const listFrom = fromFlags ? '--recipient' : 'BACKUP_RECIPIENTS';
  for (const r of list) out.push(parseRecipient(r, listFrom));
  const rfile = fromFlags ? flags.recipientsFile : env.BACKUP_RECIPIENTS_FILE;
  if (rfile) {
    const f = path.resolve(cwd, rfile);
    const rs = parseRecipientsText(readSmallFile(f, 'recipients file'), f);
    if (!rs.length) throw usageError(`recipients file ${f} names no recipient`, 'put one age1… recipient per line');
    out.push(...rs);
  }
  const pfile = fromFlags ? flags.passphraseFile : env.BACKUP_PASSPHRASE_FILE;
  if (pfile) out.push(passphraseRecipient(readPassphraseFile(path.resolve(cwd, pfile), 'passphrase file')));
  if (out.some((r) => r.type === 'scrypt') && out.length > 1) {
    throw usageError(
      'a passphrase cannot be combined with recipients (the age format allows a passphrase only alone)',
      'use either age1… recipients or one passphrase file',
    );
  }
  return out.length ? out : undefined;
}

/** Recipients as given in a remotes file entry: `age1…` strings. */
export function recipientsFromList(list: unknown, where: string): Recipient[] {
  if (!Array.isArray(list) || !list.length || list.some((r) => typeof r !== 'string')) {
    throw usageError(`${where}: "recipients" must be a non-empty list of age1… strings`);
  }
  return (list as string[]).map((r, i) => parseRecipient(r, `${where} recipient ${i + 1}`));
}

export interface IdentityFlags {
  identity?: string[];
  passphraseFile?: string;
}

/**
 * Identities from --identity files (else AGE_IDENTITY_FILE) and a passphrase (AGE_PASSPHRASE_FILE, or
 * `prompt` when given). An empty result means "no key": encrypted backups are then checked by their
 * ciphertext only.
 */
export async function loadIdentities(
  flags: IdentityFlags,
  env: Record<string, string | undefined>,
  cwd = process.cwd(),
  prompt?: () => Promise<string>,
): Promise<Identity[]> {
  const files = flags.identity?.length ? flags.identity : env.AGE_IDENTITY_FILE ? [env.AGE_IDENTITY_FILE] : [];
  const out: Identity[] = [];
  for (const f of files) {
    const file = path.resolve(cwd, f);
    const text = readSmallFile(file, 'identity file');
    checkSecretFileMode(file, true);
    out.push(...parseIdentityText(text, file));
  }
  const pfile = flags.passphraseFile ?? env.AGE_PASSPHRASE_FILE;
  if (pfile) {
    const f = path.resolve(cwd, pfile);
    out.push(passphraseIdentity(readPassphraseFile(f, 'passphrase file'), f));
  } else if (prompt) {
    const pass = await prompt();
    if (pass) out.push(passphraseIdentity(pass, 'prompt'));
  }
  return out;
}
