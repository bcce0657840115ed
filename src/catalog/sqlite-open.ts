import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';

const require = createRequire(import.meta.url);
let ctor: typeof Database | undefined;

/**
 * Opens a SQLite file with better-sqlite3, loaded by the first call rather than when this module is:
 * the lock files are checked by every command, but its native library is about 5 MB of RSS that an idle
 * `serve` (nothing locked yet, bench/serve.mjs) and `--help` do not need. A require, so callers stay synchronous.
 */
export function openDatabase(file: string, options?: Database.Options): Database.Database {
  ctor ??= require('better-sqlite3') as typeof Database;
  return new ctor(file, options);
}
