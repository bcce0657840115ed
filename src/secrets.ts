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
// hides all of `p@ss`), never past a quote or a blank, so a JSON line stays JSON. Found by a scan that is
// linear in the text: the regular expression it replaces, /([a-z][a-z0-9+.-]*:\/\/[^/\s:@"]*:)([^\s/"]+)@/gi,
// took seconds on a long run of letters (an 80,000-character symlink target in a manifest, an id in a sidecar)
const isSchemeChar = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 43 || c === 46 || c === 45; // a-z A-Z 0-9 + . -
const isLetter = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
const isBlank = (c: number) =>
  c === 32 ||
  (c >= 9 && c <= 13) ||
  c === 0xa0 ||
  c === 0x2028 ||
  c === 0x2029 ||
  c === 0xfeff ||
  c === 0x1680 ||
  (c >= 0x2000 && c <= 0x200a) ||
  c === 0x202f ||
  c === 0x205f ||
  c === 0x3000;

/** [start, end) of the password of every `scheme://user:password@` in `text`, left to right. */
function urlPasswordSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  let from = 0; // a match never starts before the end of the previous one
  for (let at = text.indexOf('://', from); at !== -1; at = text.indexOf('://', Math.max(at + 1, from))) {
    let s = at;
    while (s > from && isSchemeChar(text.charCodeAt(s - 1))) s--;
    while (s < at && !isLetter(text.charCodeAt(s))) s++;
    if (s === at) continue;
    let i = at + 3;
    for (let c = text.charCodeAt(i); i < text.length && c !== 47 && c !== 58 && c !== 64 && c !== 34 && !isBlank(c); c = text.charCodeAt(++i));
    if (text.charCodeAt(i) !== 58) continue; // no ':' after the user
    const pw = i + 1;
    let lastAt = -1;
    for (let c = text.charCodeAt(i + 1); ++i < text.length && c !== 47 && c !== 34 && !isBlank(c); c = text.charCodeAt(i + 1)) if (c === 64) lastAt = i;
    if (lastAt <= pw) continue;
    spans.push([pw, lastAt]);
    from = lastAt + 1;
  }
  return spans;
}

// the parameters of an rclone connection string (`rclone::s3,secret_access_key=…:bucket`) that hold a
// secret: the usual names, and rclone's own short ones (`pass`, b2's `key`, sftp's `key_pem`)
const RCLONE_SECRET_PARAM = /^(pass|key|key_pem|sas_url|service_account_credentials|[a-z_]*_(pass|key))$/i;
const isParamNameChar = (c: number) => isSchemeChar(c) || c === 95; // letters, digits, + . - _

/**
 * [start, end) of the value of every secret `,name=value` parameter of an rclone connection string:
 * unquoted up to `,` `:` or a blank, or quoted with `"` or `'` (a doubled quote inside), as rclone
 * reads it. One pass over the text, each character looked at a bounded number of times.
 */
export function connectionStringSecretSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  for (let at = text.indexOf(','); at !== -1; at = text.indexOf(',', at + 1)) {
    let i = at + 1;
    while (i < text.length && isParamNameChar(text.charCodeAt(i))) i++;
    if (i === at + 1 || text.charCodeAt(i) !== 61) continue; // '='
    const name = text.slice(at + 1, i);
    if (!isSecretName(name) && !RCLONE_SECRET_PARAM.test(name)) continue;
    const start = i + 1;
    const q = text.charCodeAt(start);
    let end = start;
    if (q === 34 || q === 39) {
      for (end = start + 1; end < text.length; end++) {
        if (text.charCodeAt(end) !== q) continue;
        if (text.charCodeAt(end + 1) === q) end++;
        else {
          end++;
          break;
        }
      }
    } else {
      for (let c = text.charCodeAt(end); end < text.length && c !== 44 && c !== 58 && c !== 34 && !isBlank(c); c = text.charCodeAt(++end));
    }
    if (end > start) spans.push([start, end]);
    at = Math.max(at, end - 1);
  }
  return spans;
}

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
      for (const password of [...urlPasswords(v), ...connectionStringSecrets(v)]) {
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

/**
 * Hides the password part of every URL's userinfo (`sftp://u:pw@h` → `sftp://u:***@h`) and the secret
 * parameters of rclone connection strings (`:s3,secret_access_key=***:bucket`).
 */
export function maskUrl(text: string): string {
  const spans = [...(text.includes('://') ? urlPasswordSpans(text) : []), ...(text.includes('=') ? connectionStringSecretSpans(text) : [])].sort(
    (a, b) => a[0] - b[0],
  );
  if (!spans.length) return text;
  let out = '';
  let last = 0;
  for (const [s, e] of spans) {
    if (s < last) continue; // inside a span already masked
    out += text.slice(last, s) + MASK;
    last = e;
  }
  return out + text.slice(last);
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
  return urlPasswordSpans(text).map(([s, e]) => text.slice(s, e));
}

/** The secret values of an rclone connection string, unquoted as rclone reads them. */
function connectionStringSecrets(text: string): string[] {
  return connectionStringSecretSpans(text).map(([s, e]) => {
    const v = text.slice(s, e);
    const q = v[0];
    return (q === '"' || q === "'") && v.length >= 2 && v.endsWith(q)
      ? v
          .slice(1, -1)
          .split(q + q)
          .join(q)
      : v;
  });
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
