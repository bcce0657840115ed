import type { BackupError, Remedy } from '../errors.js';

/**
 * The library's remedies (src/errors.ts) in command-line words: the flags live here, not in the
 * library, which is also used by serve and by programs that have no flags.
 */
const REMEDIES: Record<Remedy, (subject?: string) => string> = {
  identity: () => 'pass the identity file with --identity FILE (or AGE_IDENTITY_FILE; a passphrase with AGE_PASSPHRASE_FILE)',
  'no-verify': () => 'restore another backup, or pass --no-verify to restore it anyway',
  only: (half) => `--only ${half} picks one half of a full backup`,
  'target-space': () => 'free some space, or restore elsewhere with --target DIR',
  'target-not-over': () => 'move that file away or use --target DIR',
  'target-include': () => 'restore it whole with --target DIR',
  'storage-path': () => 'set --storage-path or STORAGE_PATH to the media directory',
  'storage-path-or-target': () => 'set --storage-path to the media directory, or use --target DIR',
  'db-path': () => 'set --db-path, DATABASE_PATH or DATABASE_URL to the application database',
  'backup-dir': () => 'set --backup-dir or BACKUP_DIR to where the backups are',
  'backup-dir-set': () => 'set --backup-dir or BACKUP_DIR to a directory (it is created when missing)',
  'backup-dir-writable': () => 'set --backup-dir or BACKUP_DIR to a writable directory',
  'backup-dir-outside': () => 'set --backup-dir or BACKUP_DIR to a directory outside the storage directory',
  wait: () => 'wait for it to finish, or pass --wait SECONDS',
  'rotate-space': () => 'free space at the backup directory or lower the retention (rotate --max-backups N)',
  'remove-old': () => 'free some space or remove old backups (vertex-backup rotate --max-backups N)',
  'remote-policy': () => 'give --max-backups N (N >= 1) or --keep-daily/weekly/monthly',
  'allow-empty': () => 'mount it and run again; to back up an empty directory on purpose, add --allow-empty',
  compression: () => 'this is a bug or the system is out of memory; retry, or use --compression zstd',
  'remote-list': () => 'see what it holds with: list --remote NAME',
  'remote-older': () => 'try an older backup: list --remote NAME',
  'remotes-config': () => 'pass --remotes-config FILE or set REMOTES_CONFIG',
  'database-name': () => 'name it with --database NAME',
  'target-db-new': () => 'name a database that does not exist (--target-db NEW_NAME), or drop it first if it is a leftover',
  'foreign-link-database': (p) => `check who replaced ${p}; set the real path with --db-path, or use --target DIR`,
  'foreign-link-storage': (p) => `check who replaced ${p}; set the real path with --storage-path, or use --target DIR`,
};

/** The hint a person at the command line gets: the remedy in flag words, else the library's own hint. */
export function cliHint(error: Pick<BackupError, 'hint' | 'remedy'>): string | undefined {
  return error.remedy ? REMEDIES[error.remedy.kind](error.remedy.subject) : error.hint;
}
