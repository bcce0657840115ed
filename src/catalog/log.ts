import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { FILE_MODE } from '../fsutil.js';
import { redactValue } from '../secrets.js';

export const LOG_FILE = 'backup.log';
const APPEND_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;

export interface LogRecord {
  time: string;
  command: string;
  result: 'ok' | 'error' | 'warning';
  duration_ms: number;
  [key: string]: unknown;
}

/**
 * One JSON line per operation, secrets redacted; a log that cannot be written never fails the run, and
 * logging never creates the backup directory (a mistyped --backup-dir must not leave one behind).
 */
export async function appendLog(backupDir: string, record: LogRecord): Promise<void> {
  try {
    // O_NOFOLLOW: a backup.log planted on the backup disk as a link must not have root append to its target
    await fsp.appendFile(path.join(backupDir, LOG_FILE), `${JSON.stringify(redactValue(record))}\n`, { mode: FILE_MODE, flag: APPEND_FLAGS });
  } catch {
    /* the result matters more than its log line */
  }
}
