import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.js';
import { exclusiveWriteStream, ensureDir, fsyncDir, fsyncFile, tempNameBeside } from '../fsutil.js';

/**
 * One interface for every place a backup can be copied to. Paths are always relative to the remote's
 * root (the URL path or prefix), '/'-separated, and mirror the local backup directory layout.
 * Everything streams: no implementation reads a whole file into memory.
 */
export interface RemoteEntry {
  path: string; // relative to the remote root
  size: number;
  checksum?: string; // sha256 hex, when the protocol stores one next to the object
}

/** One object's put or get (offsite/transfer.ts's TransferOptions are a whole backup's). */
export interface ObjectOptions {
  signal?: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  /** sha256 of the local file, stored as object metadata where the protocol allows (S3). */
  checksum?: string;
}

export interface SpaceInfo {
  used?: number;
  free?: number;
  total?: number;
}

export interface Remote {
  readonly scheme: string;
  /** The URL with any secret masked: safe to print. */
  readonly url: string;
  /** Whether put() calls onProgress while it runs (rclone reports only at the end). */
  readonly reportsProgress: boolean;
  /** Upload; the object appears at `relPath` only once complete (temp name + rename, or atomic multipart). */
  put(relPath: string, localFile: string, options?: ObjectOptions): Promise<void>;
  /** Download to `localFile` (written under a temporary name, renamed when complete). */
  get(relPath: string, localFile: string, options?: ObjectOptions): Promise<void>;
  read(relPath: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  /** Every object under `prefix` ('' for all), recursively; temp objects of unfinished uploads included. */
  list(prefix?: string): Promise<RemoteEntry[]>;
  stat(relPath: string): Promise<RemoteEntry | null>;
  /** Deleting an object that is not there is not an error. */
  delete(relPath: string): Promise<void>;
  space(): Promise<SpaceInfo>;
  close(): Promise<void>;
  /**
   * For `init` only, where the operator asks for a new location: a scheme whose root is a local path
   * (file://) creates it when its parent exists, and says whether it landed on the root filesystem
   * (the sign of a disk that is not mounted). Others need nothing created.
   */
  createRoot?(): Promise<{ created: boolean; path: string; onRootFilesystem: boolean }>;
}

/**
 * What every scheme shares: its name and printable URL, and a download to a file that is its read
 * streamed to disk. A scheme implements the calls that talk to its server.
 */
export abstract class SchemeRemote implements Remote {
  /** rclone reports only at the end of a transfer */
  readonly reportsProgress: boolean = true;
  constructor(
    readonly scheme: string,
    readonly url: string,
  ) {}

  abstract put(relPath: string, localFile: string, options?: ObjectOptions): Promise<void>;
  abstract read(relPath: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  abstract list(prefix?: string): Promise<RemoteEntry[]>;
  abstract stat(relPath: string): Promise<RemoteEntry | null>;
  abstract delete(relPath: string): Promise<void>;
  abstract space(): Promise<SpaceInfo>;

  async get(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    await downloadTo(await this.read(relPath, options), localFile, options);
  }

  async close(): Promise<void> {}
}

/** What a scheme factory gets: the URL and the options of the named remote (secrets included). */
export interface RemoteSpec {
  name?: string;
  url: string;
  options: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
}

export type RemoteFactory = (spec: RemoteSpec) => Promise<Remote>;

const factories = new Map<string, RemoteFactory>();

/** Each scheme file calls this once at import: adding a backend never touches another file's code. */
export function registerScheme(scheme: string, factory: RemoteFactory): void {
  factories.set(scheme, factory);
}

export function schemeFactory(scheme: string): RemoteFactory | undefined {
  return factories.get(scheme);
}

export function registeredSchemes(): string[] {
  return [...factories.keys()].sort();
}

/**
 * Why a remote call failed, so sync can tell "retry later" from "your password is wrong".
 * `transient`: network drop, timeout, 5xx; `auth`: credentials or host key refused; `missing`: no such
 * object; `fatal`: anything else (a retry would fail the same way).
 */
export type RemoteErrorKind = 'transient' | 'auth' | 'missing' | 'fatal';

export class RemoteError extends BackupError {
  readonly kind: RemoteErrorKind;
  constructor(kind: RemoteErrorKind, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(kind === 'auth' ? 'USAGE' : 'FAILED', message, options);
    this.name = 'RemoteError';
    this.kind = kind;
  }
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** A call whose "not found" is an answer, not an error: stat gives null, delete has nothing to do. */
export async function missingAs<T, M>(call: () => Promise<T>, wrap: (err: unknown) => unknown, missing: M): Promise<T | M> {
  try {
    return await call();
  } catch (err) {
    const e = wrap(err);
    if (e instanceof RemoteError && e.kind === 'missing') return missing;
    throw e;
  }
}

/** Network-level failures are transient whatever the protocol. */
export function isTransientNetworkError(err: unknown): boolean {
  // biome-ignore lint/suspicious/noExplicitAny: walks error causes of any shape (Node, undici, ssh2, AWS SDK), probing optional fields
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
    if (typeof e.errno === 'string' && TRANSIENT_CODES.has(e.errno)) return true;
    const msg = String(e.message ?? '');
    if (
      /socket hang up|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|premature close|Timed out|Connection lost|No response from server|other side closed|terminated/i.test(
        msg,
      )
    )
      return true;
  }
  return false;
}

export function errorMessage(err: unknown): string {
  const e = err as { message?: unknown };
  return typeof e?.message === 'string' ? e.message : String(err);
}

/** Joins the remote root and a relative path with single '/' separators; refuses '..' escapes. */
export function joinRemote(root: string, rel: string): string {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new RemoteError('fatal', `remote path escapes the remote root: ${rel}`);
  const base = root.replace(/\/+$/, '');
  const lead = base === '' && root.startsWith('/') ? '/' : '';
  if (parts.length === 0) return base === '' ? lead : base;
  return base === '' ? lead + parts.join('/') : `${base}/${parts.join('/')}`;
}

/** A name beside the final one that a reader never mistakes for a finished object. */
export function tempName(relPath: string): string {
  const dir = path.posix.dirname(relPath);
  const base = `.partial-${path.posix.basename(relPath)}-${process.pid}-${Date.now().toString(36)}`;
  return dir === '.' ? base : `${dir}/${base}`;
}

export function isTempName(relPath: string): boolean {
  return path.posix.basename(relPath).startsWith('.partial-');
}

/** How old a temp object is, from the time its name carries; undefined when the name has none. */
export function tempAgeMs(relPath: string, now = Date.now()): number | undefined {
  const m = /-([0-9a-z]+)$/.exec(path.posix.basename(relPath));
  if (!isTempName(relPath) || !m?.[1]) return undefined;
  const t = Number.parseInt(m[1], 36);
  return Number.isFinite(t) ? now - t : undefined;
}

/**
 * Shared download path (and the file scheme's upload): stream into a temp file beside the target,
 * fsync, rename.
 */
export async function downloadTo(source: Readable, localFile: string, options: ObjectOptions = {}, tmp = tempNameBeside(localFile)): Promise<void> {
  await intoPlace(
    localFile,
    (t) => {
      // attached only now: a 'data' listener starts the flow, and bytes that flow before the pipe are lost
      let done = 0;
      if (options.onProgress) {
        source.on('data', (chunk: Buffer) => {
          done += chunk.length;
          options.onProgress?.(done);
        });
      }
      return pipeline(source, exclusiveWriteStream(t), { signal: options.signal });
    },
    tmp,
  );
}

/**
 * Every download's last steps, whoever writes the bytes (a stream here, the rsync process there): `write`
 * fills a temp file beside the target, which is fsynced and renamed into place; removed on any failure.
 */
export async function intoPlace(localFile: string, write: (tmp: string) => Promise<unknown>, tmp = tempNameBeside(localFile)): Promise<void> {
  const dir = path.dirname(localFile);
  await ensureDir(dir);
  try {
    await write(tmp);
    await fsyncFile(tmp);
    await fsp.rename(tmp, localFile);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Reads a small object (a sidecar) into memory, refusing anything over `limit` bytes. */
export async function readSmall(remote: Remote, relPath: string, limit = 4 << 20): Promise<Buffer> {
  const stream = await remote.read(relPath);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new RemoteError('fatal', `${relPath} on ${remote.url} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
