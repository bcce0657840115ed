/**
 * Secrets (tokens, passwords) are registered here when configuration is read, and every line that
 * leaves the process — terminal, backup.log, notifications, errors — passes through `redact`.
 */
const secrets = new Set<string>();

const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)/i;

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

export function registerSecret(value: unknown): void {
  // very short values would redact ordinary words; nobody uses a 3-character token
  if (typeof value === 'string' && value.length >= 4) secrets.add(value);
}

export function registerSecretsFromEnv(env: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(env)) if (isSecretName(name)) registerSecret(value);
}

// the password runs to the LAST @ before the host (`postgresql://u:p@ss@h` hides all of `p@ss`),
// never past a quote: a JSON line stays JSON
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/[^/\s:@"]+:)([^\s/"]+)@/gi;

export function redact(text: string): string {
  let out = text;
  // longest first so a secret containing another is replaced whole
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
  return out.replace(URL_USERINFO, '$1***@');
}

/** Deep-redacts every string inside a JSON-like value. */
export function redactValue<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map(redactValue) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = isSecretName(k) && typeof v === 'string' ? '***' : redactValue(v);
    return out as T;
  }
  return value;
}
