import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { usageError } from './errors.js';
import { maskUrl, registerSecret } from './secrets.js';

/** Where and how to reach PostgreSQL: everything libpq needs, passed to the client tools as PG* variables. */
export interface PostgresSettings {
  /** the URL as configured, password masked: what messages and sidecars show */
  display: string;
  host?: string;
  port?: string;
  user?: string;
  /** the database named in the URL: the maintenance connection (counts of `all`, CREATE/ALTER DATABASE) */
  database: string;
  /** from the URL (discouraged) or PGPASSWORD; never printed, never on a command line */
  password?: string;
  /** explicit list, or 'all' = every non-template database */
  databases: string[] | 'all';
  /** PG_BIN_DIR / pgBinDir: the directory of pg_dump, pg_restore, psql */
  binDir?: string;
  /** PG_DUMP_CONTAINER: run the client tools inside this Docker container */
  container?: string;
  warnings: string[];
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(url);
}

/**
 * Parses `postgresql://user[:password]@host:port/db?host=/socket/dir` (and `postgres://`). A password
 * in the URL works but is registered as a secret (masked everywhere) and earns a warning.
 */
export function parsePostgresUrl(
  url: string,
  opts: { from?: string; databases?: string | string[]; binDir?: string; container?: string; env?: Record<string, string | undefined> } = {},
): PostgresSettings {
  const from = opts.from ?? 'DATABASE_URL';
  const env = opts.env ?? {};
  let u: URL;
  try {
    // `user@/db?host=/run/postgresql`: a socket connection has no host part, which URL does not accept
    u = new URL(url.replace(/@\//, '@_socket_/'));
  } catch {
    throw usageError(`${from} is not a valid PostgreSQL URL: ${maskUrl(url)}`, 'use postgresql://user@host:5432/dbname');
  }
  const warnings: string[] = [];
  const password = u.password ? decodeURIComponent(u.password) : env.PGPASSWORD || undefined;
  if (u.password) {
    registerSecret(password);
    warnings.push(`${from} holds a password: it is masked in output, but put it in ~/.pgpass (or PGPASSFILE) instead`);
  }
  const q = u.searchParams;
  const host = q.get('host') ?? (u.hostname && u.hostname !== '_socket_' ? decodeURIComponent(u.hostname) : undefined);
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || q.get('dbname') || 'postgres';
  const raw = opts.databases;
  let databases: string[] | 'all';
  const list = (Array.isArray(raw) ? raw : String(raw ?? '').split(',')).map((s) => String(s).trim()).filter(Boolean);
  if (list.length === 1 && list[0].toLowerCase() === 'all') databases = 'all';
  else databases = list.length ? list : [database];
  const passFile = env.PGPASSFILE ?? path.join(env.HOME ?? os.homedir(), '.pgpass');
  try {
    const mode = fs.statSync(passFile).mode;
    // libpq ignores such a file without a word: the dump would then fail on a missing password
    if (mode & 0o077) warnings.push(`${passFile} is readable by group or others: libpq ignores it; chmod 0600 ${passFile}`);
  } catch {
    // no password file: fine when the server trusts us or PGPASSWORD is set
  }
  return {
    display: maskUrl(url),
    host,
    port: q.get('port') ?? (u.port || undefined),
    user: u.username ? decodeURIComponent(u.username) : (q.get('user') ?? undefined),
    database,
    password,
    databases,
    binDir: opts.binDir || undefined,
    container: opts.container || undefined,
    warnings,
  };
}

/** The libpq environment for a client tool connecting to `database` (the password only through the environment). */
export function libpqEnv(s: PostgresSettings, database = s.database, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, PGDATABASE: database, PGCONNECT_TIMEOUT: base.PGCONNECT_TIMEOUT ?? '10', PGAPPNAME: 'vertex-backup' };
  for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGSERVICE'] as const) delete env[k];
  if (s.host) env.PGHOST = s.host;
  if (s.port) env.PGPORT = s.port;
  if (s.user) env.PGUSER = s.user;
  if (s.password) env.PGPASSWORD = s.password;
  return env;
}
