import { usageError } from '../errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * "26h", "90m", "1d12h", "300s", "1.5h". A bare number is read in `bareUnit` (seconds for
 * BACKUP_MISFIRE_GRACE, as the seed's misfire_grace_time was), or refused when there is none,
 * since "26" alone could mean anything.
 */
export function parseDuration(text: string, name: string, bareUnit?: keyof typeof UNIT_MS): number {
  const s = text.trim().toLowerCase();
  if (bareUnit && /^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * UNIT_MS[bareUnit]);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;
  let total = 0;
  let consumed = 0;
  for (const m of s.matchAll(re)) {
    if (m.index !== consumed) break;
    total += Number(m[1]) * UNIT_MS[m[2]];
    consumed += m[0].length;
  }
  if (!s || consumed !== s.length) {
    throw usageError(`${name}: cannot read "${text}" as a duration`, 'write it like 26h, 90m, 1d12h or 300s');
  }
  return Math.round(total);
}
