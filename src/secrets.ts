import * as fs from 'node:fs';
import { usageError } from './errors.js';
/**
 * Every secret the process knows (tokens and passwords from the environment, the config file, the
 * remotes file, notification URLs) is registered here when it is read, and every line that leaves the
 * process — terminal, backup.log, status.json, notifications, errors — passes through `redact`.
 */
export const MASK = '***';

// names of variables and config keys whose value is a secret; `private_key` is the SFTP option that
// names a key file, a path and not the key itself
const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|^PASS$|PASSPHRASE|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)/i;
const NOT_SECRET_NAME = /^private_key$/i;

// very short values would redact ordinary words; nobody uses a 3-character token
const MIN_LENGTH = 4;

// `scheme://user:password@host`: the password runs to the LAST @ before the host (`postgresql://u:p@ss@h`
// hides all of `p@ss`), never past a quote or a blank, so a JSON line stays JSON
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^/\s:@"]*:)([^\s/"]+)@/gi;

const secrets = new Set<string>();
let ordered: string[] = [];

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !NOT_SECRET_NAME.test(name);
}

/**
 * Registers a secret, with the forms it takes on the wire: URL-encoded, and for a URL secret (a
 * webhook, a healthcheck ping URL) the part after the origin, which an error may show without it.
 */
export function registerSecret(value: unknown): void {
  if (typeof value !== 'string' || value.length < MIN_LENGTH) return;
  const before = secrets.size;
  secrets.add(value);
  secrets.add(encodeURIComponent(value));
  const rest = urlPath(value);
  if (rest && rest.length >= MIN_LENGTH) secrets.add(rest);
  // longest first, so a secret containing another (a URL and its path) is replaced whole
  if (secrets.size !== before) ordered = [...secrets].sort((a, b) => b.length - a.length);
}

export function registerSecretsFromEnv(env: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(env)) if (isSecretName(name)) registerSecret(value);
}

/**
 * Registers every secret inside a JSON-like value (secret-named keys, passwords in URLs) and says
 * whether there was one, so the file it came from can be required to be private.
 */
export function registerSecretsIn(value: unknown): boolean {
  let found = false;
  const walk = (v: unknown, key?: string): void => {
    if (typeof v === 'string') {
      if (key !== undefined && isSecretName(key) && v !== '') {
        found = true;
        registerSecret(v);
      }
      for (const password of urlPasswords(v)) {
        found = true;
        registerSecret(password);
        registerSecret(safeDecode(password));
      }
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, Array.isArray(v) ? key : k);
    }
  };
  walk(value);
  return found;
}

export function redact(text: string): string {
  let out = text;
  for (const s of ordered) if (out.includes(s)) out = out.split(s).join(MASK);
  return maskUrl(out);
}

/** Hides the password part of every URL's userinfo (`sftp://u:pw@h` → `sftp://u:***@h`). */
export function maskUrl(text: string): string {
  return text.replace(URL_PASSWORD, `$1${MASK}@`);
}

/** Deep-redacts every string inside a JSON-like value; a secret-named key shows only the mask. */
export function redactValue<T>(value: T): T {
  return mapStrings(value, redact);
}

/** For showing configuration: secret-named values masked, URL passwords masked, nothing else touched. */
export function maskSecrets<T>(value: T): T {
  return mapStrings(value, maskUrl);
}

function mapStrings<T>(value: T, map: (s: string) => string): T {
  const walk = (v: unknown, key?: string): unknown => {
    if (key !== undefined && isSecretName(key) && v !== null && v !== undefined && v !== '') return MASK;
    if (typeof v === 'string') return map(v);
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
      return out;
    }
    return v;
  };
  return walk(value) as T;
}

function urlPasswords(text: string): string[] {
  return [...text.matchAll(URL_PASSWORD)].map((m) => m[2]!);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** For a URL secret, the part after the origin: the bit that is actually secret. */
function urlPath(s: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return undefined;
  try {
    const rest = s.slice(new URL(s).origin.length);
    return rest.length > 1 ? rest : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A file holding a secret must be private: a token readable by every local user is a leaked token.
 * `secrets` names what it holds, so the message says which variable is exposed.
 */
export function checkSecretFileMode(file: string, secrets: boolean | string[]): void {
  const names = Array.isArray(secrets) ? secrets : [];
  if ((Array.isArray(secrets) ? !secrets.length : !secrets) || process.platform === 'win32') return;
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    const what = names.length ? `${names.join(', ')}, a secret vertex-backup uses,` : 'secrets';
    throw usageError(`${file} holds ${what} but is readable by group or others (mode ${mode.toString(8).padStart(4, '0')})`, `run: chmod 600 ${file}`);
  }
}
