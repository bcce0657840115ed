/**
 * One key casing for every --json document: snake_case, the casing of the sidecars, status.json and
 * backup.log. The library returns camelCase objects; the CLI converts them here, once, on the way out.
 * Only identifier-like keys change: a key holding data (a path, a remote name with a dot) stays as it is.
 */
const CAMEL = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$/;

export function snakeKey(key: string): string {
  return CAMEL.test(key) ? key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : key;
}

export function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value instanceof Date) return value.toISOString();
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out[snakeKey(k)] = snakeKeys(v);
  }
  return out;
}
