import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ensureDir, FILE_MODE } from '../fsutil.js';
import { redactValue } from '../redact.js';

export const LOG_FILE = 'backup.log';

export interface LogRecord {
  time: string;
  command: string;
  result: 'ok' | 'error' | 'warning';
  duration_ms: number;
  [key: string]: unknown;
}

/** One JSON line per operation, secrets redacted; a log that cannot be written never fails the run. */
export async function appendLog(backupDir: string, record: LogRecord): Promise<void> {
  try {
    await ensureDir(backupDir);
    await fsp.appendFile(path.join(backupDir, LOG_FILE), `${JSON.stringify(redactValue(record))}\n`, { mode: FILE_MODE });
  } catch {
    /* the result matters more than its log line */
  }
}
