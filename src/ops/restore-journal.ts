import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { acquireLock, type Lock } from '../catalog/lock.js';
import type { Config } from '../config.js';
import { BackupError } from '../errors.js';
import { exists, fsyncDir, writeFileAtomic } from '../fsutil.js';
import { faultPoint } from './fault-point.js';

/**
 * The journal of a restore in progress, kept in the backup directory (every command knows it, whatever
 * the live paths or --target were), so that the next command completes or rolls back a restore that was
 * killed, and says which.
 *
 * Phases: `staging` (the tree is unpacked, the database copied aside: nothing live changed yet),
 * `database` (the live database is being replaced), `storage` / `storage-new` (the database is done and
 * the storage swap has begun). A restore killed before `storage` is rolled back (wholly old); one killed
 * after is completed (wholly new): from then on the staged tree is complete and validated. Phase
 * `source`: a database restored through its source kind (PostgreSQL), which completes or rolls back its
 * own steps (SourceKind.recover).
 */
export interface RestoreJournal {
  id: string;
  pid: number;
  started_at: string;
  phase: 'staging' | 'database' | 'storage' | 'storage-new' | 'source';
  /** phase `source`: a database of a source kind (PostgreSQL) being restored; its kind heals it from `state` */
  source?: { kind: string; state: Record<string, unknown> };
  database?: {
    live: string;
    /** the copy of the previous live database; absent when there was none */
    savedAs?: string;
    /** where the copy aside is written before it gets its final name */
    asideTemp?: string;
  };
  storage?: StorageSwap;
  /** the plaintext copy of an encrypted database backup: removed by healing whatever the phase */
  decrypted?: string;
}

/**
 * How the staged tree replaces the live one. `rename`: two renames beside the live directory (the old
 * one becomes `previous`). `contents`: the live directory is a mount point, which cannot be renamed, so
 * its entries move one by one into `previous` (a directory inside it) and the staged entries move in.
 */
export interface StorageSwap {
  dest: string;
  mode: 'rename' | 'contents';
  /** the directory the archive was unpacked into (removed at the end) */
  staging: string;
  /** the new tree inside `staging` (or `staging` itself); set once staging is complete */
  newTree?: string;
  /** where the current tree is kept; absent when there was none */
  previous?: string;
}

export const JOURNAL_FILE = '.restore-in-progress.json';
/** downloads of a killed `restore --from`, a journal killed while it was written */
const isLeftover = (name: string) => name.startsWith('.remote-restore-') || name.startsWith(`.tmp-${JOURNAL_FILE}-`);
const journalPath = (backupDir: string) => path.join(backupDir, JOURNAL_FILE);

export async function writeJournal(backupDir: string, j: RestoreJournal): Promise<void> {
  await writeFileAtomic(journalPath(backupDir), JSON.stringify(j));
}

export async function removeJournal(backupDir: string): Promise<void> {
  await fsp.rm(journalPath(backupDir), { force: true });
  await fsyncDir(backupDir);
}

async function readJournal(backupDir: string): Promise<RestoreJournal | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(journalPath(backupDir), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const j = JSON.parse(text) as RestoreJournal;
    return typeof j?.id === 'string' && typeof j.phase === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}

/** Names inside a mount point that a contents swap leaves where they are. */
export const isRestoreEntry = (name: string) => name.startsWith('.pre-restore-') || name.startsWith('.vertex-restore-');

/**
 * True when `dir` is a mount point: another device than its parent, or a mount listed by the kernel
 * (a bind mount of the same filesystem keeps the device number but still cannot be renamed).
 */
export async function isMountPoint(dir: string): Promise<boolean> {
  const real = await fsp.realpath(dir);
  const parent = path.dirname(real);
  if (parent === real) return true;
  const [a, b] = await Promise.all([fsp.stat(real), fsp.stat(parent)]);
  if (a.dev !== b.dev) return true;
  try {
    const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
    for (const line of info.split('\n')) {
      const field = line.split(' ')[4];
      if (field && field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === real) return true;
    }
  } catch {
    // no /proc: the device check above is all there is
  }
  return false;
}

/** Moves every entry of `from` (but those `keep` names) into `to`; entries already moved are not there any more. */
async function moveEntries(from: string, to: string, keep: (name: string) => boolean, point?: string): Promise<void> {
  let n = 0;
  for (const name of await fsp.readdir(from)) {
    if (keep(name)) continue;
    await fsp.rename(path.join(from, name), path.join(to, name));
    if (point && ++n === 1) faultPoint(point);
  }
}

/** The new tree's root directory takes the place of the mount point's: mode, owner, times. */
async function copyRootMeta(from: string, to: string): Promise<void> {
  const st = await fsp.stat(from);
  if (process.getuid?.() === 0) await fsp.chown(to, st.uid, st.gid).catch(() => {});
  await fsp.chmod(to, st.mode & 0o7777);
  await fsp.utimes(to, st.atime, st.mtime);
}

/**
 * Carries a swap forward from wherever it stands: every step checks what is already done, so the same
 * function finishes a swap that was killed half-way. `onPhase` records the switch from moving the old
 * entries out to moving the new ones in (a contents swap).
 */
export async function completeSwap(
  s: StorageSwap,
  onPhase?: (p: 'storage-new') => Promise<void>,
  startAt: 'storage' | 'storage-new' = 'storage',
): Promise<void> {
  const newTree = s.newTree ?? s.staging;
  if (s.mode === 'rename') {
    if (await exists(newTree)) {
      if (s.previous && (await exists(s.dest)) && !(await exists(s.previous))) {
        await fsp.rename(s.dest, s.previous);
        faultPoint('swap-between-renames');
      }
      await fsp.rename(newTree, s.dest);
    }
    if (newTree !== s.staging) await fsp.rm(s.staging, { recursive: true, force: true });
    await fsyncDir(path.dirname(s.dest));
    return;
  }
  if (startAt === 'storage') {
    if (s.previous) {
      await fsp.mkdir(s.previous, { recursive: true, mode: 0o700 });
      await moveEntries(s.dest, s.previous, isRestoreEntry, 'swap-moving-old');
    }
    await fsyncDir(s.dest);
    await onPhase?.('storage-new');
  }
  if (await exists(newTree)) {
    await moveEntries(newTree, s.dest, () => false, 'swap-moving-new');
    if (newTree !== s.staging) await copyRootMeta(newTree, s.dest);
  }
  await fsp.rm(s.staging, { recursive: true, force: true });
  await fsyncDir(s.dest);
}

/**
 * Undoes a swap that failed in this process (the next step could not be done): the new entries go back
 * into the staging tree, the old ones back where they were. Best effort: the caller reports the state.
 */
export async function undoSwap(s: StorageSwap): Promise<void> {
  const newTree = s.newTree ?? s.staging;
  if (s.mode === 'rename') {
    if (s.previous && !(await exists(s.dest)) && (await exists(s.previous))) await fsp.rename(s.previous, s.dest);
  } else if (s.previous && (await exists(s.previous))) {
    // entries of the live directory that are not in `previous` came from the new tree
    const old = new Set(await fsp.readdir(s.previous));
    if (await exists(newTree)) {
      for (const name of await fsp.readdir(s.dest)) {
        if (isRestoreEntry(name) || old.has(name)) continue;
        await fsp.rename(path.join(s.dest, name), path.join(newTree, name)).catch(() => {});
      }
    }
    await moveEntries(s.previous, s.dest, () => false);
    await fsp.rmdir(s.previous).catch(() => {});
  }
  await fsp.rm(s.staging, { recursive: true, force: true });
}

/**
 * The paths a journal may name: this run's configured live database and storage directory (and, for
 * `restore --target DIR`, their places inside DIR). Anything else in a journal was not written by a
 * restore of this configuration.
 */
export interface LivePaths {
  dbPath: string;
  storagePath: string;
  target?: string;
  /** the configuration: a journal of phase `source` is healed by its kind, which needs the server it names */
  config?: Config;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `runTag()` of restore.ts: pid and 6 hex digits */
const TAG = '\\d+-[0-9a-f]{6}';

/**
 * Why the journal cannot be trusted, or undefined when every path in it is one a restore of this
 * configuration writes: the live paths themselves and the staging and aside names derived from them.
 * A journal is planted by anyone who can write the backup directory (a NAS, a mounted disk); acting on
 * its paths as root would delete, move or overwrite whatever it names.
 */
/**
 * A plaintext copy of an encrypted backup never outlives its run, even when the rest of the journal is
 * refused (a --target restore healed by a command without --target): it is removed by its own name only,
 * a regular file of the name a restore gives it, never a link.
 */
async function removeDecryptedCopy(j: RestoreJournal): Promise<void> {
  const p = (j as { decrypted?: unknown }).decrypted;
  if (typeof p !== 'string' || !path.isAbsolute(p) || !new RegExp(`^\\.[^/]+\\.restore-${TAG}\\.decrypted\\.tmp$`).test(path.basename(p))) return;
  const st = await fsp.lstat(p).catch(() => undefined);
  if (st?.isFile()) await fsp.rm(p, { force: true });
}

export function journalProblem(j: RestoreJournal, live: LivePaths | undefined): string | undefined {
  if (!live) return 'no live paths to compare it with';
  if (!/^[\w.-]{1,200}$/.test(j.id) || j.id === '.' || j.id === '..') return `id ${JSON.stringify(String(j.id).slice(0, 80))} is not a backup id`;
  if (!['staging', 'database', 'storage', 'storage-new', 'source'].includes(j.phase)) return `unknown phase ${JSON.stringify(String(j.phase).slice(0, 40))}`;
  const id = escapeRe(j.id);
  const roots = (p: string) => {
    const out = [path.resolve(p)];
    if (live.target) out.push(path.join(path.resolve(live.target), path.basename(p)));
    return out;
  };
  const matches = (value: unknown, re: RegExp) => typeof value === 'string' && re.test(value);
  const db = j.database;
  if (db !== undefined) {
    if (typeof db !== 'object' || db === null || typeof db.live !== 'string' || !roots(live.dbPath).includes(db.live))
      return `database path ${JSON.stringify(String(db?.live).slice(0, 200))} is not the configured database`;
    const dir = path.dirname(db.live);
    const base = escapeRe(path.basename(db.live));
    if (db.savedAs !== undefined && !matches(db.savedAs, new RegExp(`^${escapeRe(db.live)}\\.pre-restore-${id}(-\\d+)?$`)))
      return `database copy ${JSON.stringify(String(db.savedAs).slice(0, 200))} is not a name a restore gives it`;
    if (db.asideTemp !== undefined && !matches(db.asideTemp, new RegExp(`^${escapeRe(dir)}/\\.${base}\\.pre-restore-${TAG}\\.tmp$`)))
      return `temporary copy ${JSON.stringify(String(db.asideTemp).slice(0, 200))} is not a name a restore gives it`;
  }
  const st = j.storage;
  if (st !== undefined) {
    if (typeof st !== 'object' || st === null || typeof st.dest !== 'string') return 'the storage swap names no directory';
    const dests = roots(live.storagePath).flatMap((p) => {
      try {
        return [p, fs.realpathSync(p)];
      } catch {
        return [p];
      }
    });
    if (!dests.includes(st.dest)) return `storage path ${JSON.stringify(st.dest.slice(0, 200))} is not the configured storage directory`;
    const dest = escapeRe(st.dest);
    const staging =
      st.mode === 'rename'
        ? new RegExp(`^${escapeRe(path.dirname(st.dest))}/\\.${escapeRe(path.basename(st.dest))}\\.restore-${id}-${TAG}\\.tmp$`)
        : st.mode === 'contents'
          ? new RegExp(`^${dest}/\\.vertex-restore-${id}-${TAG}\\.tmp$`)
          : undefined;
    if (!staging) return `unknown swap mode ${JSON.stringify(String(st.mode).slice(0, 40))}`;
    if (!matches(st.staging, staging)) return `staging directory ${JSON.stringify(String(st.staging).slice(0, 200))} is not a name a restore gives it`;
    if (
      st.newTree !== undefined &&
      !(st.newTree === st.staging || (typeof st.newTree === 'string' && path.dirname(st.newTree) === st.staging && !/^\.\.?$/.test(path.basename(st.newTree))))
    )
      return `new tree ${JSON.stringify(String(st.newTree).slice(0, 200))} is not inside the staging directory`;
    const previous = st.mode === 'rename' ? new RegExp(`^${dest}\\.pre-restore-${id}(-\\d+)?$`) : new RegExp(`^${dest}/\\.pre-restore-${id}(-\\d+)?$`);
    if (st.previous !== undefined && !matches(st.previous, previous))
      return `kept tree ${JSON.stringify(String(st.previous).slice(0, 200))} is not a name a restore gives it`;
  }
  return undefined;
}

/**
 * Completes or rolls back a restore that was killed (its journal is in the backup directory) and removes
 * the downloads of a killed `restore --from`. Call it holding the backup-directory lock. Returns what it
 * did, for the command to say, or undefined when there was nothing to heal. A journal naming other paths
 * than `live` ones (see journalProblem) is not acted on: it is moved aside and the message says so.
 */
export async function healInterruptedRestore(backupDir: string, live?: LivePaths): Promise<string | undefined> {
  for (const n of await fsp.readdir(backupDir).catch(() => [] as string[])) {
    if (isLeftover(n)) await fsp.rm(path.join(backupDir, n), { recursive: true, force: true });
  }
  const j = await readJournal(backupDir);
  if (!j) {
    await fsp.rm(journalPath(backupDir), { force: true });
    return undefined;
  }
  await removeDecryptedCopy(j);
  const problem = journalProblem(j, live);
  if (problem) {
    const aside = path.join(backupDir, `.restore-in-progress.refused-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await fsp.rename(journalPath(backupDir), aside);
    await fsyncDir(backupDir);
    return `ignored the journal of an interrupted restore in ${backupDir} and changed nothing: its ${problem} (it was not written by a restore of this configuration, or for another --target); moved it to ${aside} — if a restore of yours was interrupted, finish it by hand`;
  }
  let message: string;
  if (j.phase === 'source') {
    const src = j.source;
    if (typeof src?.kind !== 'string' || typeof src.state !== 'object' || src.state === null)
      message = `cleared the journal of an interrupted restore of ${j.id}: it named no source`;
    else {
      // loaded here: the cheap check every command makes must not load the source kinds
      const { sourceKind } = await import('../sources/kinds.js');
      message = await sourceKind(live?.config, src.kind).recover(src.state, j.id);
    }
    await removeJournal(backupDir);
    return message;
  }
  const db = j.database;
  const st = j.storage;
  if (j.phase === 'staging' || j.phase === 'database') {
    if (db?.asideTemp) await fsp.rm(db.asideTemp, { force: true });
    if (st) await fsp.rm(st.staging, { recursive: true, force: true });
    if (j.phase === 'database' && db) {
      // loaded here: the cheap check every command makes must not load SQLite
      const { removeSqliteSidecars, restoreDatabaseInto } = await import('../sources/sqlite.js');
      if (db.savedAs) await restoreDatabaseInto(db.savedAs, db.live);
      else {
        await fsp.rm(db.live, { force: true });
        removeSqliteSidecars(db.live);
      }
      message = `rolled back the restore of ${j.id} that was interrupted while it replaced the database: ${db.live} ${db.savedAs ? `holds the previous database again (from ${db.savedAs})` : 'was removed (there was none before)'}${st ? `, ${st.dest} was not changed` : ''}`;
    } else {
      message = `removed what an interrupted restore of ${j.id} had staged; nothing live had been changed`;
    }
  } else if (st) {
    await completeSwap(st, undefined, j.phase);
    message = `completed the restore of ${j.id} that was interrupted while it swapped the storage: ${st.dest} holds the backup's tree${st.previous ? ` (the previous one is kept as ${st.previous})` : ''}${db ? `, and ${db.live} holds the backup's database` : ''}`;
  } else {
    message = `cleared the journal of an interrupted restore of ${j.id}`;
  }
  await removeJournal(backupDir);
  return message;
}

/**
 * The backup-directory lock for a command that changes the backup directory or the live paths, after
 * which an interrupted restore is healed. `healed` says what was done, if anything.
 */
export async function lockAndHeal(
  backupDir: string,
  command: string,
  options: { waitMs?: number; signal?: AbortSignal; live?: LivePaths } = {},
): Promise<{ lock: Lock; healed?: string }> {
  const lock = await acquireLock(backupDir, command, options);
  try {
    return { lock, healed: await healInterruptedRestore(backupDir, options.live) };
  } catch (err) {
    lock.release();
    throw new BackupError('FAILED', `an interrupted restore could not be completed or rolled back: ${(err as Error).message}`, {
      hint: `see ${journalPath(backupDir)}; fix the cause and run the command again`,
      cause: err,
    });
  }
}

/** Cheap check every command makes first: is there an interrupted restore to heal? */
export function hasInterruptedRestore(backupDir: string): boolean {
  try {
    return fs.readdirSync(backupDir).some((n) => n === JOURNAL_FILE || isLeftover(n));
  } catch {
    return false;
  }
}

/**
 * For commands that do not otherwise lock (or check their inputs before locking): heals an interrupted
 * restore when there is one. A run holding the lock (the restore itself, still going) is left alone.
 */
export async function healIfInterrupted(backupDir: string, command: string, live?: LivePaths): Promise<string | undefined> {
  if (!hasInterruptedRestore(backupDir)) return undefined;
  let held: { lock: Lock; healed?: string };
  try {
    held = await lockAndHeal(backupDir, `${command} (healing an interrupted restore)`, { live });
  } catch (err) {
    if (err instanceof BackupError && (err.code === 'LOCKED' || err.code === 'USAGE')) return undefined;
    throw err;
  }
  held.lock.release();
  return held.healed;
}
