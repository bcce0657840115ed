import type { Config } from '../config.js';
import { BackupError } from '../errors.js';
import { PostgresKind, postgresSources } from './postgres.js';
import { parsePostgresUrl } from '../postgres-settings.js';
import type { Source, SourceKind } from './source.js';

/**
 * The source kinds by name: how a stored component of each kind is verified, drilled and restored. A new
 * kind (Docker volumes) adds one entry here; nothing else branches on the kind.
 */
const KINDS: Record<string, (cfg: Config) => SourceKind | undefined> = {
  postgres: (cfg) => (cfg.postgres ? new PostgresKind(cfg.postgres) : undefined),
};

/** Reading a stored component (verify) needs only the kind's tools, not a configured server. */
const READERS: Record<string, () => SourceKind> = {
  postgres: () => new PostgresKind(parsePostgresUrl('postgresql:///postgres', { databases: [] })),
};

export function sourceKind(cfg: Config | undefined, kind: string, readOnly = false): SourceKind {
  const k = (cfg && KINDS[kind]?.(cfg)) ?? (readOnly ? READERS[kind]?.() : undefined);
  if (!k) {
    throw new BackupError('USAGE', `the backup holds ${kind} components, and no ${kind} source is configured`, {
      hint: kind === 'postgres' ? 'set DATABASE_URL=postgresql://user@host:port/db to the server to restore into' : undefined,
    });
  }
  return k;
}

/**
 * The database sources of a configuration that go through the Source shape, or undefined when the
 * database is the SQLite file of the original layout (`db_backup_<id>.db`, its sidecar unchanged).
 */
export function databaseSources(cfg: Config): { sources: () => Promise<Source[]>; check: () => Promise<unknown> } | undefined {
  if (!cfg.postgres) return undefined;
  const pg = postgresSources(cfg.postgres);
  return { sources: pg.sources, check: pg.sources };
}
