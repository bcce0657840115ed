import { randomUUID } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { BackupError } from '../errors.js';
import { withoutBom, writeFileAtomic } from '../fsutil.js';
import { TOOL } from '../version.js';

/**
 * `<backup-dir>/.vertex-backup-dir` says "this is the backup directory that `init` set up". With its id
 * in the configuration (BACKUP_DIR_ID), a directory without it is an unmounted disk or a wrong path, and
 * refused: otherwise a run would create a fresh empty directory on the root filesystem, back up into
 * it, and rotation would count those as the backups (restic and Borg refuse an uninitialised
 * repository the same way).
 */
export const DIR_MARKER = '.vertex-backup-dir';
export const MARKER_FORMAT = 1;

export interface DirMarker {
  format: number;
  kind: 'backup-dir' | 'remote';
  id: string;
  created_at: string;
  tool: { name: string; version: string };
}

export function newMarker(kind: DirMarker['kind']): DirMarker {
  return { format: MARKER_FORMAT, kind, id: randomUUID(), created_at: new Date().toISOString(), tool: TOOL };
}

/** The marker's fields, or a one-line reason it is not one we can read. */
export function parseMarker(text: string, where: string): DirMarker {
  let raw: unknown;
  try {
    raw = JSON.parse(withoutBom(text));
  } catch (err) {
    throw new BackupError('USAGE', `${where} is not valid JSON: ${(err as Error).message}`);
  }
  const m = raw as Partial<DirMarker> | null;
  if (!m || typeof m !== 'object' || typeof m.id !== 'string' || typeof m.format !== 'number') {
    throw new BackupError('USAGE', `${where} is not a vertex-backup marker (no "format" and "id")`);
  }
  if (m.format > MARKER_FORMAT) {
    throw new BackupError('USAGE', `${where} has format ${m.format}; this vertex-backup reads format ${MARKER_FORMAT}`, {
      hint: 'upgrade vertex-backup',
    });
  }
  return m as DirMarker;
}

export async function readDirMarker(dir: string): Promise<DirMarker | undefined> {
  const file = path.join(dir, DIR_MARKER);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new BackupError('USAGE', `cannot read ${file}: ${(err as Error).message}`);
  }
  return parseMarker(text, file);
}

/**
 * Marks `dir` (created when `create` is set; its parent must exist, so a path under a disk that is not
 * mounted is not made on the root filesystem). An existing marker is kept: its id is what the
 * configuration already names.
 */
export async function markBackupDir(dir: string, options: { create: boolean }): Promise<{ marker: DirMarker; created: boolean; existed: boolean }> {
  const existing = await readDirMarker(dir);
  if (existing) return { marker: existing, created: false, existed: true };
  let created = false;
  const st = await fsp.stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) {
    if (!options.create) throw new BackupError('USAGE', `backup directory ${dir} does not exist`, { hint: 'run init without --adopt to create it' });
    try {
      await fsp.mkdir(dir, { mode: 0o700 });
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BackupError('USAGE', `cannot create the backup directory ${dir}: ${path.dirname(dir)} does not exist`, {
          hint: `if it is a disk, mount it first; otherwise create the parent: mkdir -p ${path.dirname(dir)}`,
        });
      }
      throw err;
    }
  } else if (!st.isDirectory()) {
    throw new BackupError('USAGE', `backup directory ${dir} is not a directory`);
  }
  const marker = newMarker('backup-dir');
  await writeFileAtomic(path.join(dir, DIR_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
  return { marker, created, existed: false };
}

/** What a local backup directory holds that says it has been used: any backup or the run log. */
async function holdsBackups(dir: string): Promise<boolean> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  return names.some((n) => n === 'database' || n === 'storage' || n === 'full' || n === 'backup.log');
}

/**
 * Before a command uses the backup directory. `expectedId` (BACKUP_DIR_ID, written by `init`) makes the
 * marker required: missing is an error naming the likely cause, never a new directory. Without it, a
 * directory that holds backups but no marker keeps working; the returned warning says how to mark it.
 */
export async function checkBackupDir(dir: string, expectedId: string | undefined): Promise<{ warning?: string }> {
  const marker = await readDirMarker(dir);
  if (expectedId) {
    if (!marker) {
      const exists = await fsp.stat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      );
      throw new BackupError(
        'USAGE',
        exists
          ? `backup directory ${dir} has no ${DIR_MARKER} (BACKUP_DIR_ID ${expectedId}): is its disk mounted? An unmounted disk leaves an empty directory in its place`
          : `backup directory ${dir} does not exist (BACKUP_DIR_ID ${expectedId}): is its disk mounted, or is the path wrong?`,
        {
          hint: `mount the disk (mount, findmnt ${dir}) and run again; nothing was written. A new directory on purpose: vertex-backup init --adopt, then set BACKUP_DIR_ID to its id`,
        },
      );
    }
    if (marker.id !== expectedId) {
      throw new BackupError(
        'USAGE',
        `backup directory ${dir} is marked ${marker.id}, but BACKUP_DIR_ID is ${expectedId}: another disk, or another set-up's directory`,
        {
          hint: 'mount the right disk, or set BACKUP_DIR_ID to the id in its .vertex-backup-dir',
        },
      );
    }
    return {};
  }
  if (!marker && (await holdsBackups(dir))) {
    return {
      warning: `backup directory ${dir} is not marked: run 'vertex-backup init --adopt' once, so that an unmounted disk is an error rather than a new empty directory`,
    };
  }
  return {};
}
