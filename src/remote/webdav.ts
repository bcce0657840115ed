import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type { FileStat, WebDAVClient } from 'webdav';
import { usageError } from '../errors.js';
import { remoteAgents, remoteTimeoutMs } from './http-agent.js';
import {
  type Remote,
  SchemeRemote,
  type RemoteEntry,
  RemoteError,
  type SpaceInfo,
  type ObjectOptions,
  errorMessage,
  isTransientNetworkError,
  joinRemote,
  missingAs,
  registerScheme,
  tempName,
} from './remote.js';

/**
 * webdav://host/path (http) and webdavs://host/path (https): Nextcloud, ownCloud, Apache mod_dav with
 * basic auth (URL userinfo or username/password), Yandex.Disk with `Authorization: OAuth <token>`
 * (token option, or YANDEX_DISK_TOKEN for webdav.yandex.ru). Uploads go to a temp name, then MOVE.
 */
class WebdavRemote extends SchemeRemote {
  private readonly madeDirs = new Set<string>();
  constructor(
    url: string,
    private readonly client: WebDAVClient,
    private readonly root: string, // the URL path, without leading or trailing '/'
    private readonly agents: ReturnType<typeof remoteAgents>,
  ) {
    super(url.startsWith('webdavs') ? 'webdavs' : 'webdav', url);
  }

  private p(rel: string): string {
    return `/${joinRemote(this.root, rel)}`;
  }

  /** Creates a collection, its missing parents first; a 409 on MKCOL means a parent is missing. */
  private async mkdirs(absDir: string): Promise<void> {
    if (absDir === '' || absDir === '.' || this.madeDirs.has(absDir)) return;
    try {
      await this.client.createDirectory(`/${absDir}`);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 409) {
        await this.mkdirs(path.posix.dirname(absDir));
        await this.client.createDirectory(`/${absDir}`).catch((e: { status?: number }) => {
          if (e.status !== 405) throw e;
        });
      } else if (status !== 405 && status !== 301) throw err; // 405: it already exists
    }
    this.madeDirs.add(absDir);
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const tmp = tempName(relPath);
    try {
      await this.mkdirs(path.posix.dirname(joinRemote(this.root, relPath)));
      const { size } = await fsp.stat(localFile);
      const source = createReadStream(localFile, { highWaterMark: 1 << 20 });
      let done = 0;
      source.on('data', (c) => {
        done += c.length;
        options.onProgress?.(done);
      });
      await this.client.putFileContents(this.p(tmp), source, {
        overwrite: true,
        headers: { 'Content-Length': String(size) },
        signal: options.signal,
      });
      await this.client.moveFile(this.p(tmp), this.p(relPath), { overwrite: true });
    } catch (err) {
      const wrapped = this.wrap(err, relPath);
      // the server may hold a half-written temp object; it never carries the final name, so best effort
      if (!(wrapped instanceof RemoteError && wrapped.kind === 'transient')) {
        await this.client.deleteFile(this.p(tmp)).catch(() => {});
      }
      throw wrapped;
    }
  }

  async read(relPath: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    try {
      const res = await this.client.customRequest(this.p(relPath), { method: 'GET', signal: options.signal });
      const body = (res as unknown as { body: unknown }).body;
      if (body instanceof Readable) return body;
      return Readable.fromWeb(body as import('node:stream/web').ReadableStream);
    } catch (err) {
      throw this.wrap(err, relPath);
    }
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const out: RemoteEntry[] = [];
    const walk = async (rel: string) => {
      let items: FileStat[];
      try {
        items = (await this.client.getDirectoryContents(this.p(rel))) as FileStat[];
      } catch (err) {
        const e = this.wrap(err, rel || '/');
        if (e instanceof RemoteError && e.kind === 'missing') return;
        throw e;
      }
      for (const it of items) {
        const child = rel === '' ? it.basename : `${rel}/${it.basename}`;
        if (it.type === 'directory') await walk(child);
        else out.push({ path: child, size: it.size });
      }
    };
    await walk(joinRemote('', prefix));
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    return missingAs(
      async () => {
        const st = (await this.client.stat(this.p(relPath))) as FileStat;
        return st.type === 'file' ? { path: relPath, size: st.size } : null;
      },
      (err) => this.wrap(err, relPath),
      null,
    );
  }

  async delete(relPath: string): Promise<void> {
    await missingAs(
      () => this.client.deleteFile(this.p(relPath)),
      (err) => this.wrap(err, relPath),
      undefined,
    );
  }

  async space(): Promise<SpaceInfo> {
    try {
      const q = (await this.client.getQuota()) as { used: number; available: number | string } | null;
      if (!q) return {};
      const free = typeof q.available === 'number' && q.available >= 0 ? q.available : undefined;
      return { used: q.used, free, total: free !== undefined ? q.used + free : undefined };
    } catch (err) {
      throw this.wrap(err, '/');
    }
  }

  override async close(): Promise<void> {
    this.agents.httpAgent.destroy();
    this.agents.httpsAgent.destroy();
  }

  private wrap(err: unknown, rel: string): unknown {
    if (err instanceof RemoteError || (err as Error)?.name === 'AbortError') return err;
    const status = (err as { status?: number }).status ?? (err as { response?: { status?: number } }).response?.status;
    const what = `${rel} on ${this.url}`;
    if (status === 401 || status === 403) {
      return new RemoteError('auth', `the WebDAV server refused the credentials (HTTP ${status}) for ${what}`, {
        cause: err,
        hint: 'check username/password or the OAuth token (YANDEX_DISK_TOKEN for Yandex.Disk)',
      });
    }
    if (status === 404) return new RemoteError('missing', `${what}: not found`, { cause: err });
    if (status === 507) {
      return new RemoteError('fatal', `the WebDAV server is out of space (HTTP 507) writing ${what}`, { cause: err });
    }
    if ((status !== undefined && (status >= 500 || status === 408 || status === 429)) || isTransientNetworkError(err)) {
      return new RemoteError('transient', `WebDAV error for ${what}: ${errorMessage(err)}`, { cause: err });
    }
    return new RemoteError('fatal', `WebDAV error for ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

registerScheme('webdav', openWebdav);
registerScheme('webdavs', openWebdav);

async function openWebdav(spec: import('./remote.js').RemoteSpec): Promise<Remote> {
  const u = new URL(spec.url);
  if (!u.hostname) throw usageError(`WebDAV URL needs a host: ${spec.url}`);
  const secure = u.protocol === 'webdavs:';
  const username = decodeURIComponent(u.username) || (spec.options.username as string | undefined) || spec.env.WEBDAV_USERNAME;
  const password = decodeURIComponent(u.password) || (spec.options.password as string | undefined) || spec.env.WEBDAV_PASSWORD;
  const yandex = /(^|\.)webdav\.yandex\.(ru|com)$/i.test(u.hostname);
  const token =
    (spec.options.token as string | undefined) ?? (spec.options.oauth_token as string | undefined) ?? (yandex ? spec.env.YANDEX_DISK_TOKEN : undefined);
  const base = `${secure ? 'https' : 'http'}://${u.host}`;
  const root = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
  const { createClient, AuthType } = await import('webdav');
  const timeoutMs = remoteTimeoutMs(spec.options.timeout_seconds);
  if (timeoutMs === undefined) throw usageError(`remote "${spec.name ?? spec.url}": timeout_seconds must be a positive number of seconds`);
  // agents of our own: pooled sockets of another remote (or of a server that restarted) are never
  // reused; every call is bounded by timeout_seconds of silence and never leaves this server's origin
  const agents = remoteAgents(base, timeoutMs);
  let client: WebDAVClient;
  if (token) {
    const authScheme = String(spec.options.auth_scheme ?? 'OAuth');
    client = createClient(base, { ...agents, authType: AuthType.None, headers: { Authorization: `${authScheme} ${token}` } });
  } else if (username) {
    client = createClient(base, { ...agents, authType: AuthType.Password, username, password: password ?? '' });
  } else if (yandex) {
    throw usageError(`remote "${spec.name ?? spec.url}": Yandex.Disk needs an OAuth token`, 'set YANDEX_DISK_TOKEN or "token" in the remotes config');
  } else {
    client = createClient(base, agents);
  }
  const shown = `${u.protocol}//${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.host}${u.pathname}`;
  return new WebdavRemote(shown, client, root, agents);
}
