/**
 * The one serializer of results: what `--json` prints and what `serve` answers are the same document,
 * made here. One key casing for every document: snake_case, the casing of the sidecars, status.json and
 * backup.log. The library returns camelCase objects; they are converted here, once, on the way out.
 * Only identifier-like keys change: a key holding data (a path, a remote name with a dot) stays as it is.
 */
import { redact } from '../secrets.js';

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

/** A result as the JSON text `--json` prints (without the final newline) and the API sends. */
export function jsonText(value: unknown): string {
  return redact(JSON.stringify(snakeKeys(value), null, 2));
}

/** A result as one line of JSON (a Server-Sent Events `data:` field, a log line). */
export function jsonLine(value: unknown): string {
  return redact(JSON.stringify(snakeKeys(value)));
}

/** The error document of a failed command (`--json`) or request (the API). */
export function errorDocument(error: { code: string; message: string; hint?: string }, exitCode: number): unknown {
  return { ok: false, error: { code: error.code, exit_code: exitCode, message: redact(error.message), hint: error.hint } };
}
