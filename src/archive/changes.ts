import { createHash } from 'node:crypto';
import { type BigIntStats, createReadStream } from 'node:fs';
import {
  comparePaths,
  deletionOf,
  type EntryType,
  groupOf,
  ManifestCursor,
  type ManifestFile,
  type ManifestRecord,
  type ManifestWriter,
  readView,
} from './manifest.js';
import { fsPath } from './bytenames.js';

/**
 * Change detection for an incremental storage backup: a merge of the directory walk with the previous
 * backup's manifest, one directory group at a time (the walk and the manifest share their order), so
 * memory holds one directory's records, never the tree. A path is unchanged when its type, size,
 * mtime, ctime, inode, mode and owner all match the previous record (restic's and Borg's rule): its
 * content is not read, its record (hash, archive id) is carried over.
 *
 * The manifest written is the change against the previous view (see readView in archive/manifest.ts):
 * only records that differ from the previous ones, and a deletion record for each path gone. With no
 * previous view (level 0) that is every record.
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

/**
 * Files from this size up whose content the chain already holds (a renamed or copied video) are
 * referenced, not stored again. Smaller ones cost little to store, and leaving them out keeps the
 * index small: it holds at most MAX_INDEXED files of the previous tree, so memory stays bounded.
 */
export const DEDUPE_MIN = 1024 * 1024;
const MAX_INDEXED = 50_000;

export class ChangePlan {
  readonly stats: PlanStats = { unchanged: 0, packed: 0, referenced: new Map(), files: 0 };
  private readonly prev?: ManifestCursor;

  constructor(
    readonly archiveId: string,
    private readonly writer: ManifestWriter,
    previous?: AsyncGenerator<ManifestRecord>,
    /** hash every file, even one whose metadata is unchanged (`--reread`) */
    private readonly reread = false,
    /** the previous tree's manifests: where content already stored is looked up */
    private readonly previousChain?: ManifestFile[],
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
      if (c < 0) {
        // a directory no longer walked (removed, excluded, now a file): everything in it is gone
        await this.writer.write(deletionOf(r));
        continue;
      }
      if (r.t === 'd') group.self = r;
      else group.entries.set(r.path, r);
    }
    return group;
  }

  private index?: Map<string, ManifestRecord>;
  private sizes?: Set<number>;

  /** The large files of the previous tree by size and SHA-256: built on the first large new or changed file. */
  private async lookup(): Promise<{ index: Map<string, ManifestRecord>; sizes: Set<number> }> {
    if (!this.index || !this.sizes) {
      const index = new Map<string, ManifestRecord>();
      const sizes = new Set<number>();
      for await (const r of readView(this.previousChain ?? [])) {
        if (r.t !== 'f' || r.s < DEDUPE_MIN || !r.h || index.size >= MAX_INDEXED) continue;
        const key = `${r.s}:${r.h}`;
        if (!index.has(key)) index.set(key, r);
        sizes.add(r.s);
      }
      this.index = index;
      this.sizes = sizes;
    }
    return { index: this.index, sizes: this.sizes };
  }

  /**
   * The record of a new or changed large file whose content the previous tree already holds (same size
   * and SHA-256): it points at the archive and path holding that content, nothing is stored again. Only
   * a new file (or one whose size changed) whose size matches one of the previous tree's is read for
   * its hash.
   */
  async reference(archivePath: string, abs: string, st: BigIntStats, before?: ManifestRecord): Promise<ManifestRecord | undefined> {
    if (!this.previousChain?.length || !st.isFile() || st.size < BigInt(DEDUPE_MIN)) return undefined;
    // a file rewritten in place at its size is an edit, not a copy: not read twice
    if (before?.t === 'f' && BigInt(before.s) === st.size) return undefined;
    const { index, sizes } = await this.lookup();
    if (!sizes.has(Number(st.size))) return undefined;
    const h = await sha256Of(abs);
    const src = h && index.get(`${st.size}:${h}`);
    if (!src) return undefined;
    const r = recordFor(archivePath, st, src.a, { size: src.s, sha256: h });
    r.o = src.o ?? src.path;
    // by hand: the content is at src.path once the chain up to the previous backup is unpacked
    this.writer.copy(src.path, archivePath);
    return r;
  }

  /** Whether `prev` still describes the path: metadata equal (and with `--reread`, the content hash too). */
  async unchanged(prev: ManifestRecord | undefined, st: BigIntStats | undefined, abs: string): Promise<boolean> {
    if (!prev || !st || !sameAsRecord(prev, st)) return false;
    if (this.reread && prev.t === 'f') return (await sha256Of(abs)) === prev.h;
    return true;
  }

  /**
   * The records of one directory group as the tree holds them now (the directory first, then its
   * entries by path); what the manifest gets is what differs from `group`, the previous ones.
   */
  async writeGroup(group: PreviousGroup, records: ManifestRecord[]): Promise<void> {
    const changes: ManifestRecord[] = [];
    const still = new Set<string>();
    let self: ManifestRecord | undefined;
    for (const r of records) {
      if (r.t === 'f') this.stats.files++;
      if (r.a === this.archiveId) this.stats.packed++;
      else this.stats.unchanged++;
      this.stats.referenced.set(r.a, (this.stats.referenced.get(r.a) ?? 0) + (r.t === 'f' ? r.s : 0));
      if (r.t === 'd') self = r;
      else still.add(r.path);
      // carried-over records are the previous objects themselves
      if (r !== group.self && r !== group.entries.get(r.path)) changes.push(r);
    }
    if (group.self && !self) changes.unshift(deletionOf(group.self));
    for (const [p, r] of group.entries) if (!still.has(p)) changes.push(deletionOf(r));
    changes.sort((a, b) => (a.t === 'd' ? -1 : b.t === 'd' ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (const r of changes) await this.writer.write(r);
  }

  /** The previous records after the last group walked are gone: their deletions close the manifest. */
  async finish(): Promise<void> {
    if (!this.prev) return;
    for (let r = await this.prev.take(); r; r = await this.prev.take()) await this.writer.write(deletionOf(r));
  }

  async close(): Promise<void> {
    await this.prev?.close();
  }
}
