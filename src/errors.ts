/**
 * Every failure the core reports is a BackupError: the CLI maps `code` to the documented exit code and
 * prints `message` (one line) plus `hint`; stacks are shown only with --verbose.
 */
export type ErrorCode =
  | 'FAILED' // 1: the operation failed
  | 'USAGE' // 2: bad usage or configuration
  | 'DAMAGED' // 3: verification found a damaged or incomplete backup
  | 'LOCKED' // 4: another run holds the lock
  | 'NO_SPACE'; // 5: not enough disk space

export const EXIT_CODES: Record<ErrorCode, number> = {
  FAILED: 1,
  USAGE: 2,
  DAMAGED: 3,
  LOCKED: 4,
  NO_SPACE: 5,
};

/**
 * Not an error: the backup was made, but some paths of the storage directory could not be read and are
 * not in it (restic's "snapshot made, some files unreadable"). 3 is taken by "damaged" here.
 */
export const EXIT_SKIPPED = 6;

/**
 * What would fix an error, named for every caller. The library is used without a command line (serve,
 * a program importing it): its `hint` says what to change in its own words; src/cli/remedies.ts words
 * the same remedy with the command-line flags. `subject` fills the one blank some remedies have (a path).
 */
export type Remedy =
  | 'identity'
  | 'no-verify'
  | 'only'
  | 'target-space'
  | 'target-not-over'
  | 'target-include'
  | 'storage-path'
  | 'storage-path-or-target'
  | 'db-path'
  | 'backup-dir'
  | 'backup-dir-set'
  | 'backup-dir-writable'
  | 'backup-dir-outside'
  | 'wait'
  | 'rotate-space'
  | 'remove-old'
  | 'remote-policy'
  | 'allow-empty'
  | 'compression'
  | 'remote-list'
  | 'remote-older'
  | 'remotes-config'
  | 'database-name'
  | 'target-db-new'
  | 'foreign-link-database'
  | 'foreign-link-storage';

export class BackupError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  /** the same advice for the command line (src/cli/remedies.ts) */
  readonly remedy?: { kind: Remedy; subject?: string };
  /** a mistyped argument (unknown id, bad flag value): exit 2 like a configuration error, but not a failed run */
  readonly argument: boolean;
  constructor(
    code: ErrorCode,
    message: string,
    options: { hint?: string; cause?: unknown; argument?: boolean; remedy?: Remedy | { kind: Remedy; subject?: string } } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BackupError';
    this.code = code;
    this.hint = options.hint;
    this.remedy = typeof options.remedy === 'string' ? { kind: options.remedy } : options.remedy;
    this.argument = options.argument ?? false;
  }
  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export const usageError = (message: string, hint?: string, remedy?: Remedy) => new BackupError('USAGE', message, { hint, remedy });
/** Bad input on the command line itself: monitoring must not count it as a failed backup or verify. */
export const argumentError = (message: string, hint?: string) => new BackupError('USAGE', message, { hint, argument: true });

/** Turns any thrown value into a BackupError, keeping ENOSPC recognisable as exit 5. */
export function toBackupError(err: unknown, context?: string): BackupError {
  if (err instanceof BackupError) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  const prefix = context ? `${context}: ` : '';
  if (e?.code === 'ENOSPC') {
    return new BackupError('NO_SPACE', `${prefix}no space left on device`, {
      cause: err,
      hint: 'free space at the backup directory or keep fewer backups (rotate)',
      remedy: 'rotate-space',
    });
  }
  return new BackupError('FAILED', prefix + msg, { cause: err });
}
