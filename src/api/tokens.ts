import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import { BackupError, usageError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';

/** What a token may do; each scope includes the ones before it (restore can trigger, trigger can read). */
export const SCOPES = ['read', 'trigger', 'restore'] as const;
export type Scope = (typeof SCOPES)[number];

/** One token as the config file keeps it: its SHA-256, never the token itself. */
export interface StoredToken {
  id: string;
  scope: Scope;
  sha256: string;
  created_at: string;
  expires_at?: string;
  name?: string;
}

export const allows = (have: Scope, need: Scope) => SCOPES.indexOf(have) >= SCOPES.indexOf(need);

const hashOf = (token: string) => createHash('sha256').update(token, 'utf8').digest();

/**
 * Tokens are 32 random bytes, so a plain SHA-256 is enough to store them (a slow password hash protects
 * guessable passwords, which these are not). The comparison of the hashes is constant-time.
 */
export function matchToken(tokens: StoredToken[], presented: string, now = Date.now()): { token?: StoredToken; expired?: boolean } {
  const h = hashOf(presented);
  let found: StoredToken | undefined;
  for (const t of tokens) {
    const stored = Buffer.from(t.sha256, 'hex');
    // every stored token is compared, whichever matches: the time taken says nothing about which one
    if (stored.length === h.length && timingSafeEqual(stored, h)) found = t;
  }
  if (!found) return {};
  if (found.expires_at && Date.parse(found.expires_at) <= now) return { expired: true };
  return { token: found };
}

function readConfigObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw usageError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const obj = text.trim() ? JSON.parse(text) : {};
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('not a JSON object');
    return obj as Record<string, unknown>;
  } catch (err) {
    throw usageError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The tokens of the config file's `serve.tokens` (entries of the wrong shape are ignored). */
export function readTokens(file: string | undefined): StoredToken[] {
  if (!file) return [];
  const serve = readConfigObject(file).serve as { tokens?: unknown } | undefined;
  const list = Array.isArray(serve?.tokens) ? serve.tokens : [];
  return list.filter(
    (t): t is StoredToken => !!t && typeof t.id === 'string' && SCOPES.includes(t.scope) && typeof t.sha256 === 'string' && /^[0-9a-f]{64}$/.test(t.sha256),
  );
}

/** Creates a token, stores its hash in the config file (0600), and returns the token: the only time it is seen. */
export async function createToken(file: string, scope: Scope, options: { expiresInMs?: number; name?: string; now?: Date } = {}) {
  if (!SCOPES.includes(scope)) throw new BackupError('USAGE', `--scope must be one of ${SCOPES.join(', ')}, got '${scope}'`, { argument: true });
  const now = options.now ?? new Date();
  const obj = readConfigObject(file);
  const serve = (obj.serve && typeof obj.serve === 'object' ? obj.serve : {}) as { tokens?: StoredToken[] };
  const token = `vbt_${randomBytes(32).toString('base64url')}`;
  const id = randomBytes(4).toString('hex');
  const stored: StoredToken = {
    id,
    scope,
    sha256: hashOf(token).toString('hex'),
    created_at: now.toISOString(),
    ...(options.expiresInMs ? { expires_at: new Date(now.getTime() + options.expiresInMs).toISOString() } : {}),
    ...(options.name ? { name: options.name } : {}),
  };
  serve.tokens = [...(Array.isArray(serve.tokens) ? serve.tokens : []), stored];
  obj.serve = serve;
  await writeFileAtomic(file, `${JSON.stringify(obj, null, 2)}\n`, 0o600);
  return { token, stored };
}
