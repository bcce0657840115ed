import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createFresh, fsyncDir } from '../fsutil.js';

export interface WrittenPart {
  file: string; // final file name (no directory)
  size: number;
  checksum: string;
}

export interface WrittenArtifact {
  /** the file name when not split; the name the parts share (`x.tar.gz`) when split */
  name: string;
  size: number;
  checksum: string;
  /** set only when the artifact was split into more than one part */
  parts?: WrittenPart[];
  files: string[]; // absolute paths of the committed files
}

const SYNC_EVERY = 32 * 1024 * 1024;

const partName = (name: string, n: number) => `${name}.part${String(n).padStart(3, '0')}`;

/**
 * Writes a stream into `dir/name`, or into `name.part001`, `.part002`… of at most `splitSize` bytes as
 * the bytes arrive (never after the fact, so no second copy of a large archive is ever on disk).
 * Everything is written under `.tmp` names; `commit()` fsyncs and renames, `abort()` removes.
 */
export class PartWriter extends Writable {
  private readonly whole = createHash('sha256');
  // per-part hashes only when splitting: unsplit, the whole-artifact hash is the part's (hashing twice
  // cost a third of the CPU of an uncompressed backup)
  private current?: { fh: fsp.FileHandle; hash?: Hash; size: number; tmp: string; unsynced: number; syncing?: Promise<void> };
  private readonly done: { tmp: string; size: number; checksum: string }[] = [];
  private total = 0;
  private readonly temps: string[] = [];

  constructor(
    private readonly dir: string,
    private readonly name: string,
    private readonly splitSize?: number,
    private readonly onBytes?: (total: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  private async openPart(): Promise<void> {
    const n = this.done.length + 1;
    const tmp = path.join(this.dir, `${this.splitSize ? partName(this.name, n) : this.name}.tmp`);
    this.temps.push(tmp);
    const fh = await createFresh(tmp);
    this.current = { fh, hash: this.splitSize ? createHash('sha256') : undefined, size: 0, tmp, unsynced: 0 };
  }

  private async closePart(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    await c.syncing;
    await c.fh.sync();
    await c.fh.close();
    this.done.push({ tmp: c.tmp, size: c.size, checksum: c.hash?.digest('hex') ?? '' });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeChunk(chunk).then(() => cb(), cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeChunk(Buffer.concat(chunks.map((c) => c.chunk))).then(() => cb(), cb);
  }

  private async writeChunk(chunk: Buffer): Promise<void> {
    let buf = chunk;
    while (buf.length > 0) {
      if (!this.current) await this.openPart();
      const c = this.current!;
      const room = this.splitSize ? this.splitSize - c.size : buf.length;
      const piece = room >= buf.length ? buf : buf.subarray(0, room);
      // hash on this thread while the write runs on the pool
      const written = c.fh.write(piece, 0, piece.length);
      this.whole.update(piece);
      c.hash?.update(piece);
      let off = (await written).bytesWritten;
      while (off < piece.length) off += (await c.fh.write(piece, off, piece.length - off)).bytesWritten;
      c.size += piece.length;
      c.unsynced += piece.length;
      // flush in the background as we go, so the fsync at the end does not stall on the whole archive
      if (c.unsynced >= SYNC_EVERY && !c.syncing) {
        c.unsynced = 0;
        // an error here resurfaces at the final fsync, which is awaited
        c.syncing = c.fh
          .datasync()
          .catch(() => {})
          .finally(() => {
            c.syncing = undefined;
          });
      }
      this.total += piece.length;
      buf = buf.subarray(piece.length);
      if (this.splitSize && c.size >= this.splitSize) await this.closePart();
    }
    this.onBytes?.(this.total);
  }

  override _final(cb: (err?: Error | null) => void): void {
    (async () => {
      if (!this.current && this.done.length === 0) await this.openPart(); // an empty artifact is still a file
      await this.closePart();
    })().then(() => cb(), cb);
  }

  /** Renames the finished temp files to their final names. Call after the stream finished. */
  async commit(): Promise<WrittenArtifact> {
    const checksum = this.whole.digest('hex');
    if (this.done.length === 1) this.done[0].checksum = checksum;
    const single = this.done.length === 1;
    const parts: WrittenPart[] = [];
    for (const [i, d] of this.done.entries()) {
      const file = single ? this.name : partName(this.name, i + 1);
      await fsp.rename(d.tmp, path.join(this.dir, file));
      parts.push({ file, size: d.size, checksum: d.checksum });
    }
    await fsyncDir(this.dir);
    return {
      name: this.name,
      size: this.total,
      checksum,
      parts: single ? undefined : parts,
      files: parts.map((p) => path.join(this.dir, p.file)),
    };
  }

  /** Removes every temp file this writer created (on error, abort or a full disk). */
  async abort(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    await c?.fh.close().catch(() => {});
    await Promise.all(this.temps.map((t) => fsp.rm(t, { force: true })));
  }
}

/** The parts concatenated, in order: what restore reads (verify has checked them, or --no-verify said not to). */
export function readParts(files: string[]): Readable {
  async function* gen() {
    for (const file of files) yield* createReadStream(file, { highWaterMark: 1 << 20 });
  }
  return Readable.from(gen(), { objectMode: false, highWaterMark: 1 << 20 });
}

/** What a sidecar says of one stored file: a part, an unsplit artifact, a file manifest. */
export interface PartRef {
  /** the name problems are reported under */
  file: string;
  size: number;
  checksum?: string;
}

/** The one comparison of a stored file with its sidecar entry, local or remote. */
export function partProblem(file: string, got: { size: number; checksum: string }, want: { size: number; checksum?: string }): string | undefined {
  if (got.size !== want.size) return `${file} is ${got.size} bytes, metadata says ${want.size}`;
  if (want.checksum && got.checksum !== want.checksum) return `${file}: checksum mismatch`;
  return undefined;
}

export interface PartChecks {
  /** bytes read so far, over all parts */
  onBytes?: (total: number) => void;
  /** a part whose size or sha256 is not what its sidecar says, reported as that part ends */
  onProblem?: (problem: string) => void;
}

export interface HashedParts {
  /** the parts in order, as one stream */
  stream: Readable;
  /** sha256 and size of all that was read: the whole artifact once the stream has ended */
  whole: () => { checksum: string; size: number };
}

/** Opens a part of an artifact in the local directory `dir`. */
export const localPart =
  (dir: string) =>
  (part: PartRef): Readable =>
    createReadStream(path.join(dir, part.file), { highWaterMark: 1 << 20 });

/**
 * The one hashing path of stored artifacts, local files and remote objects alike (verify, the download
 * for a restore, a remote verify): the parts read in order as one stream, each compared with its sidecar
 * entry as it ends, the whole hashed on the way. One part is hashed once: its checksum is the whole's.
 */
export function hashParts<P extends PartRef>(parts: readonly P[], open: (part: P) => Readable | Promise<Readable>, checks: PartChecks = {}): HashedParts {
  const whole = createHash('sha256');
  let total = 0;
  let result: { checksum: string; size: number } | undefined;
  const digest = () => {
    result ??= { checksum: whole.digest('hex'), size: total };
    return result;
  };
  async function* gen() {
    for (const part of parts) {
      const own = parts.length > 1 ? createHash('sha256') : undefined;
      let size = 0;
      for await (const chunk of await open(part)) {
        const c = chunk as Buffer;
        whole.update(c);
        own?.update(c);
        size += c.length;
        total += c.length;
        checks.onBytes?.(total);
        yield c;
      }
      const problem = partProblem(part.file, { size, checksum: own ? own.digest('hex') : digest().checksum }, part);
      if (problem) checks.onProblem?.(problem);
    }
    digest();
  }
  return { stream: Readable.from(gen(), { objectMode: false, highWaterMark: 1 << 20 }), whole: digest };
}

/** Reads parts to the end for their checks alone; returns the whole's sha256 and size. */
export async function checkParts<P extends PartRef>(
  parts: readonly P[],
  open: (part: P) => Readable | Promise<Readable>,
  checks: PartChecks = {},
  signal?: AbortSignal,
): Promise<{ checksum: string; size: number }> {
  const h = hashParts(parts, open, checks);
  await pipeline(h.stream, discard(), { signal });
  return h.whole();
}

/** A sink for bytes that are read only to be checked. */
export function discard(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}
