import * as path from 'node:path';
import { judgeChains } from './chain.js';
import { judgeDeltaChains } from './page-chain.js';
import { compareIds, dateOfId, parseName, TYPE_DIR } from './names.js';
import { type BackupType, type Sidecar, artifactFiles } from './sidecar.js';

/**
 * The catalog: how backup sets are judged, written once for every store. A store (the local backup
 * directory, a remote) lists its files as `{dir, name, size}` and reads the sidecars asked for; the
 * verdicts — ok, partial, incomplete, damaged, in-progress; the size of a full backup as the sum of
 * its components; which backup `latest` means — come from here and nowhere else.
 */

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
  /** where the store keeps the sidecar: an absolute path locally, a relative path on a remote */
  sidecarPath?: string;
  sidecar?: Sidecar;
  /** every file of the store that belongs to this backup, sidecar and leftovers included (store paths) */
  files: string[];
}

/** One file as a store lists it: `dir` is the type directory (`database`, `storage`, `full`). */
export interface StoredFile {
  dir: string;
  name: string;
  size: number;
  /** how the store names it (local: absolute path; remote: `dir/name`) */
  ref: string;
}

export interface SidecarRead {
  sidecar?: Sidecar;
  error?: string;
}

/** What a store answers: its files, the sidecars asked for, and which run is writing right now. */
export interface CatalogSource {
  files: StoredFile[];
  readSidecar: (file: StoredFile, type: BackupType, id: string) => Promise<SidecarRead>;
  /** the run holding the lock (local only): files without metadata from its start on are in progress */
  active?: { since: number; describe: string };
  /** why a backup without metadata is incomplete, as the store would put it */
  interrupted?: string;
}

interface Group {
  type: BackupType;
  id: string;
  files: StoredFile[];
  sidecar?: StoredFile;
}

function groupFiles(files: StoredFile[]): Group[] {
  const groups = new Map<string, Group>();
  for (const f of files) {
    const p = parseName(f.name);
    if (!p || TYPE_DIR[p.type] !== f.dir) continue;
    const key = `${p.type}:${p.id}`;
    let g = groups.get(key);
    if (!g) {
      g = { type: p.type, id: p.id, files: [] };
      groups.set(key, g);
    }
    g.files.push(f);
    if (!p.temp && p.rest === '.json') g.sidecar = f;
  }
  return [...groups.values()];
}

/** Judges one backup (a full backup's components are judged afterwards, in `judgeComponents`). */
function judgeOne(g: Group, read: SidecarRead | undefined, source: CatalogSource): BackupEntry {
  const entry: BackupEntry = { type: g.type, id: g.id, status: 'incomplete', createdAt: dateOfId(g.id), size: 0, files: g.files.map((f) => f.ref) };
  if (!g.sidecar || !read) {
    const active = source.active;
    if (active && !(dateOfId(g.id).getTime() < active.since)) {
      entry.status = 'in-progress';
      entry.reason = `being written by ${active.describe}`;
    } else entry.reason = source.interrupted ?? 'no metadata (interrupted run)';
    return entry;
  }
  entry.sidecarPath = g.sidecar.ref;
  const { sidecar, error } = read;
  if (!sidecar) {
    entry.status = 'damaged';
    entry.reason = error;
    return entry;
  }
  entry.sidecar = sidecar;
  const created = new Date(sidecar.created_at ?? Number.NaN);
  if (!Number.isNaN(created.getTime())) entry.createdAt = created;
  // an incremental storage backup stands for the whole tree its manifest lists, not its archive alone
  entry.fileCount = sidecar.tree_files ?? sidecar.file_count;
  if (g.type === 'full') {
    entry.status = sidecar.status === 'partial' ? 'partial' : 'ok';
    return entry;
  }
  const sizes = new Map(g.files.map((f) => [f.name, f.size]));
  // an incremental storage backup's manifest is as much a part of it as its archive
  const manifest = sidecar.manifest ? [{ file: sidecar.manifest.file, size: sidecar.manifest.size }] : [];
  for (const part of [...artifactFiles(sidecar), ...manifest]) {
    const size = sizes.get(part.file);
    if (size === undefined) {
      entry.status = 'damaged';
      entry.reason = `missing ${part.file}`;
      return entry;
    }
    if (size !== part.size) {
      entry.status = 'damaged';
      entry.reason = `${part.file} is ${size} bytes, metadata says ${part.size}`;
      return entry;
    }
  }
  entry.size = sidecar.file_size ?? 0;
  entry.status = 'ok';
  return entry;
}

/** A full backup is as good as its components; its size is theirs. */
function judgeComponents(entries: BackupEntry[]): void {
  const byKey = new Map(entries.map((e) => [`${e.type}:${e.id}`, e]));
  for (const e of entries) {
    if (e.type !== 'full' || !e.sidecar) continue;
    let size = 0;
    for (const t of ['database', 'storage'] as const) {
      const cid = e.sidecar[t];
      if (!cid) continue;
      const comp = byKey.get(`${t}:${cid}`);
      if (comp?.status !== 'ok') {
        e.status = 'damaged';
        e.reason = comp ? `${t} component ${cid} is ${comp.status}${comp.reason ? `: ${comp.reason}` : ''}` : `${t} component ${cid} is missing`;
      } else size += comp.size;
    }
    e.size = size;
  }
}

const SIDECAR_READS = 16;

const TYPE_RANK: Record<BackupType, number> = { full: 0, database: 1, storage: 2 };

/** Newest first; ids are run start times, so one run's full, database and storage backups stay together, full first. */
export function newestFirst(a: BackupEntry, b: BackupEntry): number {
  return compareIds(b.id, a.id) || TYPE_RANK[a.type] - TYPE_RANK[b.type];
}

/**
 * Every backup a store holds, judged, newest first. Every type is judged (a full backup needs its
 * components); `type` only filters what is returned.
 */
export async function judgeBackups(source: CatalogSource, type?: BackupType): Promise<BackupEntry[]> {
  const groups = groupFiles(source.files);
  const reads: (SidecarRead | undefined)[] = new Array(groups.length);
  // a few sidecars at a time: a remote may start a process or a request for each
  let next = 0;
  const reader = async () => {
    for (let i = next++; i < groups.length; i = next++) {
      const g = groups[i]!;
      if (g.sidecar) reads[i] = await source.readSidecar(g.sidecar, g.type, g.id);
    }
  };
  await Promise.all(Array.from({ length: SIDECAR_READS }, reader));
  const entries = groups.map((g, i) => judgeOne(g, reads[i], source));
  // an incremental storage backup is as good as the archives of its chain (catalog/chain.ts)
  judgeChains(entries);
  // a database delta is as good as every link below it (catalog/page-chain.ts)
  judgeDeltaChains(entries);
  judgeComponents(entries);
  return entries.filter((e) => !type || e.type === type).sort(newestFirst);
}

/**
 * Resolves what the user typed against a catalog: an id, `latest`, or a file name or path of a sidecar
 * or artifact. `latest` is the newest good full backup, else the newest good backup of any type: never
 * a damaged, partial or unfinished one.
 */
export function resolveRef(entries: BackupEntry[], ref: string): BackupEntry | undefined {
  if (ref === 'latest') return entries.find((e) => e.type === 'full' && e.status === 'ok') ?? entries.find((e) => e.status === 'ok');
  const parsed = parseName(path.basename(ref));
  if (parsed) return entries.find((e) => e.id === parsed.id && e.type === parsed.type);
  const matches = entries.filter((e) => e.id === ref);
  // the same id exists for every type of a full run: the full backup stands for all of them
  return matches.find((e) => e.type === 'full') ?? matches[0];
}
