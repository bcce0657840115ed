import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { getCodecOrUndefined } from '../codec/registry.js';
import { activeHolder } from './lock.js';
import { dateOfId, parseName, typeDir } from './names.js';
import { BACKUP_TYPES, type BackupType, type Sidecar, SIDECAR_FORMAT } from './sidecar.js';

/** 'in-progress': no metadata yet, and the run that holds the lock started before its id */
export type BackupStatus = 'ok' | 'partial' | 'incomplete' | 'in-progress' | 'damaged';

export interface BackupEntry {
  type: BackupType;
  id: string;
  status: BackupStatus;
  /** why it is not ok */
  reason?: string;
  createdAt: Date;
  /** artifact bytes (a full backup: its components' bytes) */
  size: number;
  fileCount?: number;
  sidecarPath?: string;
  sidecar?: Sidecar;
  /** every file on disk that belongs to this backup, sidecar and leftovers included */
  files: string[];
}

/** Parses and checks the fields a sidecar must have; returns the reason it is unusable, if any. */
export function validateSidecar(data: unknown, type: BackupType, id: string): string | undefined {
  if (!data || typeof data !== 'object') return 'metadata is not a JSON object';
  const s = data as Partial<Sidecar>;
  if (s.format !== SIDECAR_FORMAT) return `unknown metadata format ${JSON.stringify(s.format)}`;
  if (s.type !== type) return `metadata type '${s.type}' does not match its directory '${type}'`;
  if (s.id !== id) return `metadata id '${s.id}' does not match its file name`;
  if (type === 'full') {
    if (s.status !== 'ok' && s.status !== 'partial') return 'metadata has no valid status';
    return undefined;
  }
  if (typeof s.backup_path !== 'string' || typeof s.checksum !== 'string' || typeof s.file_size !== 'number') {
    return 'metadata lacks backup_path, checksum or file_size';
  }
  // one backup written by a newer tool (or edited) is damaged for us; it must not stop the others
  if (s.compression !== undefined && (typeof s.compression !== 'string' || !getCodecOrUndefined(s.compression))) {
    return `unknown compression ${JSON.stringify(s.compression)}`;
  }
  if (s.parts !== undefined && (!Array.isArray(s.parts) || s.parts.some((p) => typeof p?.file !== 'string' || typeof p?.size !== 'number' || typeof p?.checksum !== 'string'))) {
    return 'metadata has malformed parts';
  }
  // every part lies beside its sidecar: a name with a directory part could lead anywhere (backup_path is
  // only ever used by its base name, which seed sidecars with absolute paths rely on)
  const outside = (s.parts ?? []).map((p) => p.file).find((f) => !isPlainFileName(f));
  if (outside !== undefined) return `metadata names ${JSON.stringify(outside)}, which is not a file in its own directory`;
  return undefined;
}

function isPlainFileName(f: string): boolean {
  return f !== '' && f !== '.' && f !== '..' && !f.includes('/') && !f.includes('\\') && !f.includes('\0');
}

/** The data files a sidecar names, relative to its directory. */
export function artifactFiles(s: Sidecar): { file: string; size: number; checksum: string }[] {
  if (s.parts?.length) return s.parts;
  if (!s.backup_path) return [];
  return [{ file: path.basename(s.backup_path), size: s.file_size ?? 0, checksum: s.checksum ?? '' }];
}

export async function readSidecar(file: string, type: BackupType, id: string): Promise<{ sidecar?: Sidecar; error?: string }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return { error: `cannot read metadata: ${(err as NodeJS.ErrnoException).code}` };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { error: 'metadata is not valid JSON' };
  }
  const error = validateSidecar(data, type, id);
  return error ? { error } : { sidecar: data as Sidecar };
}

async function readDirSafe(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Everything in the backup directory, newest first. Cheap: it reads sidecars and stats files, it never
 * hashes (that is `verify`'s job), so it stays fast with thousands of backups.
 */
export async function listBackups(backupDir: string, options: { type?: BackupType } = {}): Promise<BackupEntry[]> {
  const types = options.type ? [options.type] : BACKUP_TYPES;
  const all: BackupEntry[] = [];
  const byKey = new Map<string, BackupEntry>();
  const active = activeHolder(backupDir);
  // ids are the run's start second: the active run's files have ids from its start on
  const activeSince = active ? Math.floor(Date.parse(active.started_at) / 1000) * 1000 : Number.POSITIVE_INFINITY;
  for (const type of types) {
    const dir = typeDir(backupDir, type);
    const groups = new Map<string, { files: Map<string, string>; sidecar?: string }>();
    for (const name of await readDirSafe(dir)) {
      const p = parseName(name);
      if (!p || p.type !== type) continue;
      let g = groups.get(p.id);
      if (!g) groups.set(p.id, (g = { files: new Map() }));
      g.files.set(name, path.join(dir, name));
      if (!p.temp && p.rest === '.json') g.sidecar = path.join(dir, name);
    }
    const entries = await Promise.all(
      [...groups].map(async ([id, g]): Promise<BackupEntry> => {
        const entry: BackupEntry = { type, id, status: 'incomplete', createdAt: dateOfId(id), size: 0, files: [...g.files.values()] };
        if (!g.sidecar) {
          if (active && !(dateOfId(id).getTime() < activeSince)) {
            entry.status = 'in-progress';
            entry.reason = `being written by the running '${active.command}' (pid ${active.pid})`;
          } else entry.reason = 'no metadata (interrupted run)';
          return entry;
        }
        entry.sidecarPath = g.sidecar;
        const { sidecar, error } = await readSidecar(g.sidecar, type, id);
        if (!sidecar) {
          entry.status = 'damaged';
          entry.reason = error;
          return entry;
        }
        entry.sidecar = sidecar;
        entry.createdAt = new Date(sidecar.created_at);
        if (Number.isNaN(entry.createdAt.getTime())) entry.createdAt = dateOfId(id);
        entry.fileCount = sidecar.file_count;
        if (type === 'full') {
          entry.status = sidecar.status === 'partial' ? 'partial' : 'ok';
          return entry;
        }
        for (const part of artifactFiles(sidecar)) {
          const st = await fsp.stat(path.join(dir, part.file)).catch(() => undefined);
          if (!st) {
            entry.status = 'damaged';
            entry.reason = `missing ${part.file}`;
            return entry;
          }
          if (st.size !== part.size) {
            entry.status = 'damaged';
            entry.reason = `${part.file} is ${st.size} bytes, metadata says ${part.size}`;
            return entry;
          }
        }
        entry.size = sidecar.file_size ?? 0;
        entry.status = 'ok';
        return entry;
      }),
    );
    for (const e of entries) {
      all.push(e);
      byKey.set(`${e.type}:${e.id}`, e);
    }
  }
  // a full backup is as good as its components; with a type filter they are looked up, each type once
  const lookup = componentLookup(backupDir);
  for (const e of all) {
    if (e.type !== 'full' || !e.sidecar) continue;
    let size = 0;
    for (const t of ['database', 'storage'] as const) {
      const cid = e.sidecar[t];
      if (!cid) continue;
      const comp = byKey.get(`${t}:${cid}`) ?? (options.type ? await lookup(t, cid) : undefined);
      if (!comp || comp.status !== 'ok') {
        e.status = 'damaged';
        e.reason = comp ? `${t} component ${cid} is ${comp.status}${comp.reason ? `: ${comp.reason}` : ''}` : `${t} component ${cid} is missing`;
      } else size += comp.size;
    }
    e.size = size;
  }
  const typeRank: Record<BackupType, number> = { full: 0, database: 1, storage: 2 };
  // ids are run start times: one run's full, database and storage backups stay together, full first
  return all.sort((a, b) => b.id.localeCompare(a.id, 'en', { numeric: true }) || typeRank[a.type] - typeRank[b.type]);
}

/** Finds backups by type and id, listing each type's directory at most once (not once per full backup). */
export function componentLookup(backupDir: string): (type: 'database' | 'storage', id: string) => Promise<BackupEntry | undefined> {
  const listings = new Map<BackupType, Promise<Map<string, BackupEntry>>>();
  return async (type, id) => {
    let listing = listings.get(type);
    if (!listing) {
      listing = listBackups(backupDir, { type }).then((l) => new Map(l.map((e) => [e.id, e])));
      listings.set(type, listing);
    }
    return (await listing).get(id);
  };
}

/** Resolves what the user typed: an id, `latest`, or a path to a sidecar or artifact. */
export async function findBackup(backupDir: string, ref: string, type?: BackupType): Promise<BackupEntry | undefined> {
  const entries = await listBackups(backupDir, { type });
  if (ref === 'latest') {
    // a full backup is the natural recovery point; fall back to the newest of any type
    return entries.find((e) => e.type === 'full' && e.status === 'ok') ?? entries.find((e) => e.status === 'ok');
  }
  const parsed = parseName(path.basename(ref));
  if (parsed) return entries.find((e) => e.id === parsed.id && e.type === parsed.type);
  const matches = entries.filter((e) => e.id === ref);
  // the same id exists for every type of a full run: the full backup stands for all of them
  return matches.find((e) => e.type === 'full') ?? matches[0];
}
