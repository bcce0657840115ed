import { createRequire } from 'node:module';
import * as path from 'node:path';

// loaded only when there are patterns: an unchanged nightly run without any spends its time elsewhere
const loadPicomatch = (): typeof import('picomatch') => createRequire(import.meta.url)('picomatch');

/**
 * `--exclude` patterns, matched against paths relative to the storage root:
 * - `*.tmp` (no slash): any file or directory with that name, at any depth;
 * - `cache/**` (a slash inside): from the storage root;
 * - `/cache` (a leading slash): anchored at the storage root, as rsync and restic read it.
 * A matched directory is left out whole. Each pattern counts what it matched, for `create --dry-run`.
 */
export interface ExcludeMatcher {
  (rel: string): boolean;
  /** per pattern, in the order given: how many paths it left out (a left-out directory counts once) */
  readonly counts: { pattern: string; matched: number }[];
}

export function excludeMatcher(globs: string[] | undefined): ExcludeMatcher {
  const counts = (globs ?? []).map((pattern) => ({ pattern, matched: 0 }));
  const picomatch = globs?.length ? loadPicomatch() : undefined;
  const tests = (globs ?? []).map((g) => {
    const anchored = g.startsWith('/');
    const body = anchored ? g.replace(/^\/+/, '') : g;
    return picomatch!(body, { dot: true, basename: !anchored });
  });
  const match = ((rel: string) => {
    for (let i = 0; i < tests.length; i++) {
      if (tests[i](rel)) {
        counts[i].matched++;
        return true;
      }
    }
    return false;
  }) as ExcludeMatcher;
  Object.defineProperty(match, 'counts', { value: counts });
  return match;
}

/**
 * Why a pattern that matched nothing probably did: a pattern written from the parent of the storage
 * directory (`storage/cache/**`) instead of from inside it.
 */
export function unmatchedHint(pattern: string, storagePath: string): string | undefined {
  const base = path.basename(storagePath);
  const first = pattern.replace(/^\/+/, '').split('/')[0];
  if (first === base && pattern.includes('/')) {
    const rest = pattern.replace(/^\/+/, '').slice(base.length + 1);
    return `paths are relative to the storage directory ${storagePath}: write '${rest}' or '/${rest}'`;
  }
  return undefined;
}
