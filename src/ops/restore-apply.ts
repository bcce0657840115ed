import * as fsp from 'node:fs/promises';
import { BackupError, toBackupError } from '../errors.js';
import { removeSqliteSidecars, restoreDatabaseInto } from '../sources/sqlite.js';
import { faultPoint } from './fault-point.js';
import { refuseForeignLink, refuseMovedStorage } from './live-links.js';
import { completeSwap, type RestoreJournal, removeJournal, undoSwap, writeJournal } from './restore-journal.js';
import type { StagedDatabase, StagedStorage } from './restore-stage.js';

// the phases of a restore that change live data, once everything is staged: the database, then the
// storage swap; each says in its error what it left changed and what not

/** The same error with what the run did (or did not do) to the live data added to its message. */
export function withState(err: unknown, state: string, context: string): BackupError {
  const e = toBackupError(err, context);
  return new BackupError(e.code, `${e.message}; ${state}`, { hint: e.hint, remedy: e.remedy, cause: e.cause ?? err });
}

export interface AppliedDatabase {
  backupId: string;
  to: string;
  savedCurrentAs?: string;
  integrity: string;
}

/** The database: SQLite replaces it in one transaction, so a failure leaves the previous one. */
export async function applyDatabase(
  backupId: string,
  db: StagedDatabase,
  dbTo: string,
  savedCurrentAs: string | undefined,
  staged: StagedStorage | undefined,
  journal: RestoreJournal,
  stateDir: string,
): Promise<AppliedDatabase> {
  journal.phase = 'database';
  journal.database = { live: dbTo, savedAs: savedCurrentAs };
  await writeJournal(stateDir, journal);
  faultPoint('database');
  try {
    // again at write time: a link planted during the verification (minutes, for a big backup) would
    // have the database written through it
    await refuseForeignLink(dbTo, 'database');
    const { integrity } = await restoreDatabaseInto(db.file, dbTo);
    faultPoint('database-done');
    if (integrity !== 'ok') {
      if (savedCurrentAs) await restoreDatabaseInto(savedCurrentAs, dbTo);
      else {
        await fsp.rm(dbTo, { force: true });
        removeSqliteSidecars(dbTo);
      }
      throw new BackupError('FAILED', `the restored database failed integrity_check (${integrity.slice(0, 200)}) and was put back`);
    }
    // a live database keeps its owner and mode (the application may run as another user)
    if (!db.existed) await fsp.chmod(dbTo, 0o600).catch(() => {});
    return { backupId, to: dbTo, savedCurrentAs, integrity };
  } catch (err) {
    if (staged) await fsp.rm(staged.swap.staging, { recursive: true, force: true });
    await removeJournal(stateDir);
    const kept = savedCurrentAs ? ` (a copy of it is at ${savedCurrentAs})` : '';
    throw withState(err, `the live database ${dbTo} was not changed${kept}${staged ? `, nor the storage at ${staged.swap.dest}` : ''}`, 'database restore');
  }
}

/** The storage swap; from here a killed run is completed by the next command (restore-journal.ts heals it). */
export async function swapStorage(
  staged: StagedStorage,
  stTo: string,
  database: AppliedDatabase | undefined,
  journal: RestoreJournal,
  stateDir: string,
): Promise<void> {
  journal.phase = 'storage';
  await writeJournal(stateDir, journal);
  faultPoint('storage');
  try {
    await refuseForeignLink(stTo, 'storage');
    await refuseMovedStorage(stTo, staged.swap.dest);
    await completeSwap(staged.swap, async (p) => {
      journal.phase = p;
      await writeJournal(stateDir, journal);
    });
  } catch (err) {
    await undoSwap(staged.swap).catch(() => {});
    await removeJournal(stateDir);
    const db = database
      ? `the database at ${database.to} WAS restored from backup ${database.backupId}${database.savedCurrentAs ? ` (the previous one is at ${database.savedCurrentAs})` : ''}, `
      : '';
    throw withState(err, `${db}the storage at ${staged.swap.dest} was not changed`, 'storage swap');
  }
}
