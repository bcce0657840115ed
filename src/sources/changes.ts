import { createHash } from 'node:crypto';
import { type BigIntStats, createReadStream } from 'node:fs';
import { comparePaths, type EntryType, groupOf, ManifestCursor, type ManifestRecord, type ManifestWriter } from '../archive/manifest.js';
import { fsPath } from './bytenames.js';

/**
 * Change detection for an incremental storage backup: a merge of the directory walk with the previous
 * backup's manifest, one directory group at a time (the walk and the manifest share their order), so
 * memory holds one directory's records, never the tree. A path is unchanged when its type, size,
 * mtime, ctime, inode, mode and owner all match the previous record (restic's and Borg's rule): its
 * content is not read, its record (hash, archive id) is carried over.
 */

export interface PreviousGroup {
  /** the directory's own previous record */
  self?: ManifestRecord;
  /** previous records of the files and symlinks it held, by archive path */
  entries: Map<string, ManifestRecord>;
}

export interface PlanStats {
  /** entries carried over from the previous manifest without reading them */
  unchanged: number;
  /** entries put in this backup's archive */
  packed: number;
  /** bytes of file content per backup id that this manifest references */
  referenced: Map<string, number>;
  /** regular files the manifest lists */
  files: number;
}

export const typeOf = (st: { isDirectory(): boolean; isSymbolicLink(): boolean }): EntryType => (st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f');

/** The manifest record of an entry just put in the archive `archiveId`. */
export function recordFor(path: string, st: BigIntStats, archiveId: string, extra: { size?: number; sha256?: string; linkname?: string } = {}): ManifestRecord {
  const t = typeOf(st);
  const r: ManifestRecord = {
    path,
    t,
    s: t === 'f' ? (extra.size ?? Number(st.size)) : 0,
    m: Number(st.mode) & 0o7777,
    u: Number(st.uid),
    g: Number(st.gid),
    mt: st.mtimeNs.toString(),
    ct: st.ctimeNs.toString(),
    i: st.ino.toString(),
    a: archiveId,
  };
  if (extra.sha256) r.h = extra.sha256;
  if (extra.linkname !== undefined) r.l = extra.linkname;
  return r;
}

/** Whether the path's metadata still matches its previous record (nothing of it read). */
export function sameAsRecord(r: ManifestRecord, st: BigIntStats): boolean {
  return (
    r.t === typeOf(st) &&
    (r.t !== 'f' || BigInt(r.s) === st.size) &&
    r.mt === st.mtimeNs.toString() &&
    r.ct === st.ctimeNs.toString() &&
    r.i === st.ino.toString() &&
    r.m === (Number(st.mode) & 0o7777) &&
    r.u === Number(st.uid) &&
    r.g === Number(st.gid)
  );
}

async function sha256Of(abs: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(fsPath(abs) as string, { highWaterMark: 1 << 18 })) hash.update(chunk as Buffer);
  } catch {
    return undefined;
  }
  return hash.digest('hex');
}

export class ChangePlan {
  readonly stats: PlanStats = { unchanged: 0, packed: 0, referenced: new Map(), files: 0 };
  private readonly prev?: ManifestCursor;

  constructor(
    readonly archiveId: string,
    private readonly writer: ManifestWriter,
    previous?: AsyncGenerator<ManifestRecord>,
    /** hash every file, even one whose metadata is unchanged (`--reread`) */
    private readonly reread = false,
  ) {
    if (previous) this.prev = new ManifestCursor(previous);
  }

  /** The previous records of directory `dir` (archive path); groups of directories no longer walked are passed over. */
  async openGroup(dir: string): Promise<PreviousGroup> {
    const group: PreviousGroup = { entries: new Map() };
    if (!this.prev) return group;
    for (let r = await this.prev.peek(); r; r = await this.prev.peek()) {
      const c = comparePaths(groupOf(r), dir);
      if (c > 0) break;
      await this.prev.take();
      if (c < 0) continue;
      if (r.t === 'd') group.self = r;
      else group.entries.set(r.path, r);
    }
    return group;
  }

  /** Whether `prev` still describes the path: metadata equal (and with `--reread`, the content hash too). */
  async unchanged(prev: ManifestRecord | undefined, st: BigIntStats | undefined, abs: string): Promise<boolean> {
    if (!prev || !st || !sameAsRecord(prev, st)) return false;
    if (this.reread && prev.t === 'f') return (await sha256Of(abs)) === prev.h;
    return true;
  }

  async writeGroup(records: ManifestRecord[]): Promise<void> {
    for (const r of records) {
      if (r.t === 'f') this.stats.files++;
      if (r.a === this.archiveId) this.stats.packed++;
      else this.stats.unchanged++;
      this.stats.referenced.set(r.a, (this.stats.referenced.get(r.a) ?? 0) + (r.t === 'f' ? r.s : 0));
      await this.writer.write(r);
    }
  }

  async close(): Promise<void> {
    await this.prev?.close();
  }
}
