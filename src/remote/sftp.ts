import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type { SFTPWrapper, Stats } from 'ssh2';
import { usageError } from '../errors.js';
import { KnownHosts } from './known-hosts.js';
import {
  SchemeRemote,
  type RemoteEntry,
  RemoteError,
  type RemoteSpec,
  type SpaceInfo,
  type ObjectOptions,
  errorMessage,
  isTransientNetworkError,
  joinRemote,
  registerScheme,
  tempName,
} from './remote.js';
import { type SftpSession, connectSftp } from './sftp-connect.js';

/**
 * sftp://user@host:port/path — the path is relative to the login directory; sftp://user@host//abs for an
 * absolute one. Authentication: private_key (a file; passphrase), password (option, URL or SFTP_PASSWORD),
 * or the ssh agent. The host key must be in known_hosts (option known_hosts, default ~/.ssh/known_hosts);
 * an unknown host is refused unless accept_unknown_host is set, which records it (trust on first use).
 * A changed host key is always refused.
 */

const call = <T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void) =>
  new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

interface StatVfs {
  f_bsize: number | bigint;
  f_frsize: number | bigint;
  f_blocks: number | bigint;
  f_bfree: number | bigint;
  f_bavail: number | bigint;
}

const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

class SftpRemote extends SchemeRemote {
  private readonly madeDirs = new Set<string>();
  private session: SftpSession | null;
  private sequential = false;
  constructor(
    url: string,
    first: SftpSession,
    private readonly reconnect: () => Promise<SftpSession>,
    private readonly root: string,
  ) {
    super('sftp', url);
    this.session = first;
  }

  /** The live session; after a dropped connection the next call logs in again (retries need that). */
  private async raw(): Promise<SFTPWrapper> {
    if (!this.session) this.session = await this.reconnect();
    return this.session.sftp;
  }

  /** An SFTP request whose connection dies never calls back: race every request against the close. */
  private call<T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    const op = call(fn);
    return this.session ? Promise.race([op, this.session.closed]) : op;
  }

  private drop(): void {
    const s = this.session;
    this.session = null;
    s?.ssh.end();
  }

  private p(rel: string): string {
    return joinRemote(this.root, rel) || '/';
  }

  private async mkdirs(relDir: string): Promise<void> {
    if (relDir === '.' || relDir === '') return;
    let cur = '';
    for (const seg of relDir.split('/')) {
      cur = cur ? `${cur}/${seg}` : seg;
      if (this.madeDirs.has(cur)) continue;
      const sftp = await this.raw();
      try {
        await this.call<void>((cb) => sftp.mkdir(this.p(cur), (e) => cb(e, undefined)));
      } catch (err) {
        const st = await this.statRaw(cur);
        if (!st?.isDirectory()) throw this.wrap(err, cur);
      }
      this.madeDirs.add(cur);
    }
  }

  private async ensureRoot(): Promise<void> {
    if (this.madeDirs.has('')) return;
    const sftp = await this.raw();
    const parts = this.root.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (dir === '' || dir === '.') continue;
      await this.call<void>((cb) => sftp.mkdir(dir, (e) => cb(e, undefined))).catch(() => {});
    }
    this.madeDirs.add('');
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const tmp = tempName(relPath);
    const onAbort = () => this.drop();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.ensureRoot();
      const sftp = await this.raw();
      await this.mkdirs(path.posix.dirname(joinRemote('', relPath)));
      const upload = (concurrency: number) =>
        this.call<void>((cb) =>
          sftp.fastPut(localFile, this.p(tmp), { mode: 0o600, concurrency, step: (done: number) => options.onProgress?.(done) }, (e) => cb(e, undefined)),
        );
      try {
        await upload(this.sequential ? 1 : 64);
      } catch (err) {
        // servers that stream to a backend (rclone serve sftp) refuse out-of-order writes
        if (this.sequential || !/Illegal seek|not supported|non-sequential/i.test(errorMessage(err))) throw err;
        this.sequential = true;
        await upload(1);
      }
      await this.rename(this.p(tmp), this.p(relPath));
    } catch (err) {
      const wrapped = this.wrap(err, relPath);
      if (!(wrapped instanceof RemoteError && wrapped.kind === 'transient') && this.session) {
        const sftp = this.session.sftp;
        await this.call<void>((cb) => sftp.unlink(this.p(tmp), (e) => cb(e, undefined))).catch(() => {});
      }
      throw wrapped;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** posix-rename replaces the target atomically; plain SFTP rename refuses an existing target. */
  private async rename(from: string, to: string): Promise<void> {
    const sftp = await this.raw();
    try {
      await this.call<void>((cb) => sftp.ext_openssh_rename(from, to, (e) => cb(e, undefined)));
      return;
    } catch (err) {
      if (!/not supported|does not support|Unsupported|unknown extension|not available/i.test(errorMessage(err))) throw err;
    }
    await this.call<void>((cb) => sftp.unlink(to, (e) => cb(e, undefined))).catch(() => {});
    await this.call<void>((cb) => sftp.rename(from, to, (e) => cb(e, undefined)));
  }

  private async statRaw(rel: string) {
    const sftp = await this.raw();
    try {
      return await this.call<Stats>((cb) => sftp.stat(this.p(rel), cb));
    } catch (err) {
      if ((err as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return null;
      throw this.wrap(err, rel);
    }
  }

  async read(relPath: string): Promise<Readable> {
    const st = await this.statRaw(relPath);
    if (!st?.isFile()) throw new RemoteError('missing', `${relPath} on ${this.url}: not found`);
    const sftp = await this.raw();
    const handle = await this.call<Buffer>((cb) => sftp.open(this.p(relPath), 'r', cb));
    return this.parallelReader(sftp, handle, st.size, relPath);
  }

  /**
   * ssh2's read stream keeps one request in flight, which caps a download at one round trip per
   * chunk; this keeps READ_DEPTH requests outstanding and emits the chunks in order.
   */
  private parallelReader(sftp: SFTPWrapper, handle: Buffer, size: number, relPath: string): Readable {
    // one request per chunk: a chunk over the server's read limit (OpenSSH: 255 KiB) is split by ssh2
    // into two requests, the second sent only when the first returns
    // ssh2 learns the limit from the server's limits@openssh.com reply and keeps it in a private field
    const maxRead = (sftp as unknown as { _maxReadLen?: number })._maxReadLen;
    const CHUNK = typeof maxRead === 'number' && maxRead > 0 ? maxRead : 32 * 1024;
    // deep enough to keep loopback and long links busy (measured: 8 -> 64 in flight, 3.5 s -> 1.2 s for
    // 256 MB over loopback); at most READ_DEPTH chunks (16 MiB) are buffered
    const READ_DEPTH = 64;
    let next = 0;
    const inflight: Promise<Buffer>[] = [];
    let closed = false;
    const closeHandle = async () => {
      if (closed) return;
      closed = true;
      await this.call<void>((cb) => sftp.close(handle, (e) => cb(e, undefined))).catch(() => {});
    };
    const readAt = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const n = await this.call<number>((cb) => sftp.read(handle, buf, got, len - got, pos + got, (e, bytes) => cb(e, bytes)));
        if (n === 0) throw new RemoteError('fatal', `${relPath} on ${this.url} ended at ${pos + got} bytes, ${size} expected (changed while read?)`);
        got += n;
      }
      return buf;
    };
    const fill = () => {
      while (inflight.length < READ_DEPTH && next < size) {
        const len = Math.min(CHUNK, size - next);
        const p = readAt(next, len);
        p.catch(() => {}); // awaited in order below; a failure must not count as unhandled meanwhile
        inflight.push(p);
        next += len;
      }
    };
    const wrapErr = (err: unknown) => this.wrap(err, relPath) as Error;
    return new Readable({
      highWaterMark: 1 << 20,
      read() {
        fill();
        const p = inflight.shift();
        if (!p) {
          void closeHandle().then(() => this.push(null));
          return;
        }
        p.then(
          (buf) => {
            fill();
            this.push(buf);
          },
          (err) => this.destroy(wrapErr(err)),
        );
      },
      destroy: (err, cb) => {
        void closeHandle().then(() => cb(err));
      },
    });
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const out: RemoteEntry[] = [];
    const walk = async (rel: string) => {
      let items;
      const sftp = await this.raw();
      try {
        items = await this.call<{ filename: string; attrs: Stats }[]>((cb) => sftp.readdir(this.p(rel), cb));
      } catch (err) {
        if ((err as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return;
        throw this.wrap(err, rel || '/');
      }
      for (const it of items) {
        if (it.filename === '.' || it.filename === '..') continue;
        const child = rel === '' ? it.filename : `${rel}/${it.filename}`;
        if (it.attrs.isDirectory()) await walk(child);
        else if (it.attrs.isFile()) out.push({ path: child, size: it.attrs.size });
      }
    };
    await walk(joinRemote('', prefix));
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    const st = await this.statRaw(relPath);
    return st?.isFile() ? { path: relPath, size: st.size } : null;
  }

  async delete(relPath: string): Promise<void> {
    const sftp = await this.raw();
    try {
      await this.call<void>((cb) => sftp.unlink(this.p(relPath), (e) => cb(e, undefined)));
    } catch (err) {
      if ((err as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return;
      throw this.wrap(err, relPath);
    }
  }

  async space(): Promise<SpaceInfo> {
    await this.ensureRoot();
    const sftp = await this.raw();
    try {
      const s = await this.call<StatVfs>((cb) => sftp.ext_openssh_statvfs(this.p(''), cb));
      const unit = Number(s.f_frsize) || Number(s.f_bsize);
      const blocks = Number(s.f_blocks);
      return { free: Number(s.f_bavail) * unit, total: blocks * unit, used: (blocks - Number(s.f_bfree)) * unit };
    } catch {
      return {}; // the server lacks the statvfs@openssh.com extension
    }
  }

  override async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    s?.ssh.end();
  }

  private wrap(err: unknown, rel: string): unknown {
    if (err instanceof RemoteError) return err;
    const code = (err as { code?: unknown }).code;
    const what = `${rel} on ${this.url}`;
    if (code === SFTP_NO_SUCH_FILE) return new RemoteError('missing', `${what}: not found`, { cause: err });
    if (code === SFTP_PERMISSION_DENIED) return new RemoteError('fatal', `${what}: permission denied by the SFTP server`, { cause: err });
    if (isTransientNetworkError(err) || /No SFTP|not connected|closed|\bended\b|No response/i.test(errorMessage(err))) {
      this.drop();
      return new RemoteError('transient', `SFTP connection lost during ${what}: ${errorMessage(err)}`, { cause: err });
    }
    return new RemoteError('fatal', `SFTP error for ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p;
}

function truthy(v: unknown): boolean {
  return v === true || (typeof v === 'string' && /^(1|true|yes)$/i.test(v));
}

registerScheme('sftp', async (spec: RemoteSpec) => {
  const u = new URL(spec.url);
  if (!u.hostname) throw usageError(`SFTP URL needs a host: ${spec.url}`, 'use sftp://user@host:port/path');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port ? Number(u.port) : 22;
  const username = decodeURIComponent(u.username) || (spec.options.username as string | undefined) || os.userInfo().username;
  const password = decodeURIComponent(u.password) || (spec.options.password as string | undefined) || spec.env.SFTP_PASSWORD;
  const keyFile = (spec.options.private_key as string | undefined) ?? spec.env.SFTP_PRIVATE_KEY;
  const knownHostsFile = expandHome(String(spec.options.known_hosts ?? spec.env.SFTP_KNOWN_HOSTS ?? path.join(os.homedir(), '.ssh', 'known_hosts')));
  const acceptUnknown = truthy(spec.options.accept_unknown_host ?? spec.env.SFTP_ACCEPT_UNKNOWN_HOST);
  // '/path' is relative to the login directory; '//path' is absolute (the convention restic uses)
  const rawPath = decodeURIComponent(u.pathname);
  const absolute = rawPath.startsWith('//');
  const rel = rawPath.replace(/^\/+|\/+$/g, '');

  let privateKey: Buffer | undefined;
  if (keyFile) {
    try {
      privateKey = await fsp.readFile(expandHome(keyFile));
    } catch (err) {
      throw usageError(`cannot read the SFTP private key ${keyFile}: ${(err as Error).message}`);
    }
  }
  const knownHosts = await KnownHosts.load(knownHostsFile, host, port, acceptUnknown);
  const connect = () =>
    connectSftp(
      {
        host,
        port,
        username,
        password: password || undefined,
        privateKey,
        passphrase: spec.options.passphrase as string | undefined,
        agent: !privateKey && !password ? spec.env.SSH_AUTH_SOCK : undefined,
        readyTimeoutMs: Number(spec.options.timeout_ms ?? 20000),
      },
      knownHosts,
    );
  const first = await connect();
  let root = rel;
  if (!absolute) {
    const home = await call<string>((cb) => first.sftp.realpath('.', cb)).catch((err: unknown) => {
      first.ssh.end();
      throw new RemoteError('fatal', `SFTP server ${host}:${port}: cannot resolve the login directory: ${errorMessage(err)}`, { cause: err });
    });
    root = rel ? `${home.replace(/\/+$/, '')}/${rel}` : home;
  } else {
    root = `/${rel}`;
  }
  const shown = `sftp://${username}@${u.host}${u.pathname}`;
  return new SftpRemote(shown, first, connect, root);
});
