import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { BackupError, usageError } from '../errors.js';
import { KnownHosts } from './known-hosts.js';
import {
  SchemeRemote,
  type RemoteEntry,
  RemoteError,
  type RemoteSpec,
  type SpaceInfo,
  type ObjectOptions,
  errorMessage,
  intoPlace,
  isTransientNetworkError,
  joinRemote,
  registerScheme,
} from './remote.js';

/**
 * rsync:user@host:/path (rsync's own notation) or rsync://user@host:port/path — the system `rsync` over
 * OpenSSH, key authentication only (private_key, or the agent / ~/.ssh defaults). The host key is checked
 * against known_hosts the way the SFTP remote checks it (known-hosts.ts: unknown refused unless
 * accept_unknown_host, a changed key always refused), and ssh itself then runs with
 * StrictHostKeyChecking=yes against the same file. No shell anywhere: rsync gets an argv array, names
 * travel inside the rsync protocol (--secluded-args, -s), never on the remote command line.
 *
 * Uploads keep an interrupted file in `.rsync-partial/` beside the target (`--partial-dir`), so the next
 * put resumes it by delta; the final name appears only once complete (rsync's temp file + rename).
 * `checksum: true` adds `--checksum`. A listing is one `rsync --list-only -r` call, kept for the life of
 * the opened remote (put and delete update it), and the first sidecar read fetches every `*.json` in one
 * call: an unchanged sync costs two rsync runs whatever the number of backups.
 *
 * Options: private_key, known_hosts, accept_unknown_host, port, rsync_path (the remote rsync),
 * checksum, timeout_s (I/O timeout, default 60), flags (extra rsync arguments), binary (local rsync).
 */

const PARTIAL_DIR = '.rsync-partial';
// rsync's receiver writes `.<name>.XXXXXX` and renames it; one killed outright leaves it behind
const RSYNC_TEMP = /^\..+\.[A-Za-z0-9]{6}$/;

interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

interface RsyncSetup {
  binary: string;
  host: string; // user@host, as rsync and ssh take it
  shownHost: string;
  root: string;
  baseArgs: string[];
  checksum: boolean;
  env: NodeJS.ProcessEnv;
  ssh: string;
  controlPath: string;
}

/** A word of rsync's `-e` command line: rsync splits it on spaces and honours quotes (a doubled quote is one). */
function rshWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`;
}

/** A remote source path: rsync expands wildcards in it even with -s; a backslash makes them literal. */
function literalSource(p: string): string {
  return p.replace(/[\\*?[]/g, '\\$&');
}

/** A filter rule that matches exactly `name` (rsync treats a pattern with no wildcard literally). */
function literalPattern(name: string): string {
  return /[*?[]/.test(name) ? name.replace(/[\\*?[]/g, '\\$&') : name;
}

/** `--list-only` escapes unprintable bytes (newlines, non-UTF-8) as \#ooo. */
function unescapeListed(name: string): string {
  if (!name.includes('\\#')) return name;
  const bytes: number[] = [];
  const raw = Buffer.from(name, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && raw[i + 1] === 0x23 && /^[0-7]{3}$/.test(raw.subarray(i + 2, i + 5).toString('latin1'))) {
      bytes.push(Number.parseInt(raw.subarray(i + 2, i + 5).toString('latin1'), 8));
      i += 4;
    } else bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

const LIST_LINE = /^([-dlpscb])[-rwxsStT]{9}[.+]?\s+(\d+)\s+\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d (.*)$/;

class RsyncRemote extends SchemeRemote {
  private listing: Map<string, number> | undefined;
  private sidecarCache: Promise<string> | undefined;
  private scratch: string | undefined;

  constructor(
    url: string,
    private readonly s: RsyncSetup,
  ) {
    super('rsync', url);
  }

  private remoteArg(rel: string, source = false): string {
    const p = joinRemote(this.s.root, rel) || '.';
    return `${this.s.host}:${source ? literalSource(p) : p}`;
  }

  private run(args: string[], options: { signal?: AbortSignal; onStdout?: (chunk: string) => void } = {}): Promise<RunResult> {
    // an escaped wildcard in a source path fetches the right file, but the receiver's check compares the
    // escaped request with the plain name it got: the check is lifted only for such a path
    const escaped = args.some((a) => a.startsWith(`${this.s.host}:`) && /\\[\\*?[]/.test(a));
    return new Promise((resolve, reject) => {
      const child = spawn(this.s.binary, [...this.s.baseArgs, ...(escaped ? ['--trust-sender'] : []), ...args], {
        env: this.s.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        signal: options.signal,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (options.onStdout) options.onStdout(d);
        else stdout += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < 64 * 1024) stderr += d;
      });
      child.on('error', (err) => reject(missingBinary(err, this.s.binary)));
      child.on('close', (code) => resolve({ stdout, stderr, code: code ?? 1 }));
    });
  }

  private async tmp(): Promise<string> {
    this.scratch ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'vertex-rsync-'));
    return this.scratch;
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const size = (await fsp.stat(localFile)).size;
    let last = 0;
    const r = await this.run(
      [
        '--partial-dir',
        PARTIAL_DIR,
        '--mkpath',
        '--info=progress2',
        // a put always replaces: the quick check (size + mtime to the second) would keep a same-size
        // object written in the same second; --checksum compares contents instead
        ...(this.s.checksum ? ['--checksum'] : ['--ignore-times']),
        '--',
        path.resolve(localFile),
        this.remoteArg(relPath),
      ],
      {
        signal: options.signal,
        // progress2 lines: "     1048576  25%  ..." separated by \r
        onStdout: (chunk) => {
          for (const m of chunk.matchAll(/(\d+)\s+\d+%/g)) {
            const n = Number(m[1]);
            if (n <= last || n > size) continue;
            last = n;
            options.onProgress?.(n);
          }
        },
      },
    );
    if (r.code !== 0) throw this.fail(r, relPath, 'upload');
    if (last < size) options.onProgress?.(size);
    this.listing?.set(joinRemote('', relPath), size);
    await this.forgetSidecar(relPath);
  }

  /** Fetches one object into `dest` (rsync writes a temp name and renames it when complete). */
  private async fetch(relPath: string, dest: string, signal?: AbortSignal): Promise<void> {
    const r = await this.run(['--', this.remoteArg(relPath, true), dest], { signal });
    if (r.code !== 0) throw this.fail(r, relPath, 'download');
    const st = await fsp.stat(dest);
    if (!st.isFile()) throw new RemoteError('missing', `${relPath} on ${this.url}: not a file`);
  }

  override async get(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    await intoPlace(localFile, (tmp) => this.fetch(relPath, tmp, options.signal));
    options.onProgress?.((await fsp.stat(localFile)).size);
  }

  async read(relPath: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const rel = joinRemote('', relPath);
    if (rel.endsWith('.json')) {
      const cached = path.join(await this.sidecars(), ...rel.split('/'));
      const fh = await fsp.open(cached, 'r').catch(() => undefined);
      if (fh) return fh.createReadStream();
    }
    // a private copy streamed from disk and removed once read: rsync cannot write to a pipe
    const dir = await fsp.mkdtemp(path.join(await this.tmp(), 'read-'));
    const file = path.join(dir, 'object');
    try {
      await this.fetch(relPath, file, options.signal);
    } catch (err) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw err;
    }
    const stream = createReadStream(file, { highWaterMark: 1 << 20 });
    stream.on('close', () => void fsp.rm(dir, { recursive: true, force: true }));
    return stream;
  }

  /** Every sidecar of the remote in one rsync run, into a private directory, the first time one is read. */
  private sidecars(): Promise<string> {
    this.sidecarCache ??= (async () => {
      const dir = path.join(await this.tmp(), 'sidecars');
      await fsp.mkdir(dir, { recursive: true });
      const r = await this.run([
        '-r',
        '-m',
        '--exclude',
        `${PARTIAL_DIR}/`,
        '--include',
        '*/',
        '--include',
        '*.json',
        '--exclude',
        '*',
        '--',
        `${this.remoteArg('', true)}/`,
        `${dir}/`,
      ]);
      // nothing there yet, or an error: reads fall back to one fetch each, which reports it
      if (r.code !== 0 && !isNoSuchFile(r.stderr)) this.sidecarCache = undefined;
      return dir;
    })();
    return this.sidecarCache;
  }

  private async forgetSidecar(relPath: string): Promise<void> {
    if (!this.sidecarCache || !relPath.endsWith('.json')) return;
    await fsp.rm(path.join(await this.sidecarCache, ...joinRemote('', relPath).split('/')), { force: true });
  }

  private async loadListing(): Promise<Map<string, number>> {
    if (this.listing) return this.listing;
    const r = await this.run(['--list-only', '-r', '--', `${this.remoteArg('', true)}/`]);
    const map = new Map<string, number>();
    if (r.code !== 0) {
      if (isNoSuchFile(r.stderr)) {
        this.listing = map;
        return map;
      }
      throw this.fail(r, '/', 'list');
    }
    for (const line of r.stdout.split('\n')) {
      const m = LIST_LINE.exec(line);
      if (m?.[1] !== '-') continue;
      const rel = unescapeListed(m[3]!);
      const parts = rel.split('/');
      if (parts.includes(PARTIAL_DIR) || RSYNC_TEMP.test(parts.at(-1)!)) continue;
      map.set(rel, Number(m[2]));
    }
    this.listing = map;
    return map;
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const base = joinRemote('', prefix);
    const out: RemoteEntry[] = [];
    for (const [p, size] of await this.loadListing()) {
      if (base === '' || p === base || p.startsWith(`${base}/`)) out.push({ path: p, size });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    const size = (await this.loadListing()).get(joinRemote('', relPath));
    return size === undefined ? null : { path: relPath, size };
  }

  /** rsync deletes on the receiving side only what a filter lets it see: an empty directory, one name included. */
  async delete(relPath: string): Promise<void> {
    const rel = joinRemote('', relPath);
    const dir = path.posix.dirname(rel);
    const empty = path.join(await this.tmp(), 'empty');
    await fsp.mkdir(empty, { recursive: true });
    const r = await this.run([
      '-d',
      '--delete',
      '--include',
      `/${literalPattern(path.posix.basename(rel))}`,
      '--exclude',
      '*',
      '--',
      `${empty}/`,
      `${this.remoteArg(dir === '.' ? '' : dir)}/`,
    ]);
    if (r.code !== 0 && !isNoSuchFile(r.stderr)) throw this.fail(r, relPath, 'delete');
    this.listing?.delete(rel);
    await this.forgetSidecar(relPath);
  }

  async space(): Promise<SpaceInfo> {
    return {}; // rsync has no way to ask (no shell on the remote, by design)
  }

  override async close(): Promise<void> {
    // the shared SSH connection ends with the remote (it would end by itself after ControlPersist idle)
    await new Promise<void>((resolve) => {
      const child = spawn(this.s.ssh, ['-o', `ControlPath=${this.s.controlPath}`, '-O', 'exit', 'vertex-backup-mux'], { stdio: 'ignore', env: this.s.env });
      child.on('error', () => resolve());
      child.on('close', () => resolve());
    });
    await fsp.rm(path.dirname(this.s.controlPath), { recursive: true, force: true });
    if (this.scratch) await fsp.rm(this.scratch, { recursive: true, force: true });
    this.scratch = undefined;
    this.sidecarCache = undefined;
  }

  private fail(r: RunResult, rel: string, op: string): RemoteError {
    const lines = r.stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !/^rsync error: |^rsync: \[(sender|receiver|generator)\] |connection unexpectedly closed/.test(l));
    const detail = (lines.slice(-2).join(' / ') || r.stderr.trim().split('\n').at(-1) || `exit code ${r.code}`).slice(0, 400);
    const what = `rsync ${op} of ${rel} on ${this.url}`;
    const e = r.stderr;
    if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(e)) {
      return new RemoteError('auth', `${what}: ssh refused the host key of ${this.s.shownHost}`, {
        hint: 'if the server was reinstalled, remove its old line from known_hosts (ssh-keygen -R); otherwise this may be an attack',
      });
    }
    if (/Permission denied \((publickey|password|keyboard)/i.test(e)) {
      return new RemoteError('auth', `${what}: the SSH server ${this.s.shownHost} refused the login`, {
        hint: 'check private_key in the remotes config and the authorized_keys of the remote user',
      });
    }
    if (r.code === 127 || /(rsync|\S+): (command )?not found|No such file or directory[^\n]*\n[^\n]*connection unexpectedly closed \(0 bytes/i.test(e)) {
      if (!/change_dir|link_stat|mkdir|rsync: \[/i.test(e) || /not found/.test(e)) {
        return new RemoteError('fatal', `${what}: rsync is not installed on ${this.s.shownHost} (${detail})`, {
          hint: 'install rsync on the remote host (apt-get install rsync), or set "rsync_path" to where it is',
        });
      }
    }
    if (/Permission denied \(13\)|Operation not permitted \(1\)|Read-only file system \(30\)/.test(e)) {
      return new RemoteError('auth', `${what}: permission denied on the remote path: ${detail}`, {
        hint: `let the remote user write to ${this.s.root}, or point the remote at a directory it owns`,
      });
    }
    if (isNoSuchFile(e)) return new RemoteError('missing', `${what}: not found`);
    if (
      r.code === 255 ||
      r.code === 12 ||
      r.code === 30 ||
      r.code === 35 ||
      /Connection (refused|reset|timed out|closed)|timed out|Broken pipe|Network is unreachable|No route to host/i.test(e)
    ) {
      return new RemoteError('transient', `${what} failed: ${detail}`);
    }
    return new RemoteError('fatal', `${what} failed: ${detail}`);
  }
}

function isNoSuchFile(stderr: string): boolean {
  return /(link_stat|change_dir)[^\n]*failed: No such file or directory \(2\)/.test(stderr);
}

function missingBinary(err: unknown, binary: string): unknown {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
    return new BackupError('USAGE', `rsync is not installed: "${binary}" was not found`, {
      hint: 'install rsync (apt-get install rsync) or set "binary" for this remote',
    });
  }
  return err;
}

function truthy(v: unknown): boolean {
  return v === true || (typeof v === 'string' && /^(1|true|yes)$/i.test(v));
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p;
}

/** rsync://user@host:port/path or rsync:user@host:/path → user, host, port, path. */
export function parseRsyncUrl(url: string): { user?: string; host: string; port?: number; path: string } {
  const long = /^rsync:\/\/(?:([^@/]+)@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?(\/.*)?$/i.exec(url);
  if (long) {
    return {
      user: long[1] ? decodeURIComponent(long[1]) : undefined,
      host: long[2]!.replace(/^\[|\]$/g, ''),
      port: long[3] ? Number(long[3]) : undefined,
      path: decodeURIComponent(long[4] ?? '/') || '/',
    };
  }
  const short = /^rsync:(?:([^@/:]+)@)?([^:/]+):(.*)$/i.exec(url);
  if (short) return { user: short[1], host: short[2]!, path: short[3] || '.' };
  throw usageError(`not an rsync remote URL: ${url}`, 'use rsync:user@host:/path or rsync://user@host:port/path');
}

/** Connects once with the SSH protocol only to see the host key, and judges it like the SFTP remote does. */
async function checkHostKey(host: string, port: number, user: string, knownHosts: KnownHosts, timeoutMs: number): Promise<void> {
  const { Client } = (await import('ssh2')).default;
  const ssh = new Client();
  ssh.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      ssh.once('handshake', () => resolve());
      ssh.once('ready', () => resolve());
      ssh.once('error', reject);
      ssh.once('close', () => reject(new Error('the connection closed during the handshake')));
      ssh.connect({ host, port, username: user, hostVerifier: knownHosts.verify, readyTimeout: timeoutMs, authHandler: () => false });
    });
  } catch (err) {
    if (knownHosts.refusal)
      throw new RemoteError('auth', knownHosts.refusal.message.replace('unknown SFTP host', 'unknown SSH host'), { hint: knownHosts.refusal.hint });
    const kind = isTransientNetworkError(err) ? 'transient' : 'fatal';
    throw new RemoteError(kind, `cannot connect to the SSH server ${host}:${port}: ${errorMessage(err)}`, { cause: err });
  } finally {
    ssh.end();
  }
  await knownHosts.recordLearned();
}

registerScheme('rsync', async (spec: RemoteSpec) => {
  const u = parseRsyncUrl(spec.url);
  const o = spec.options;
  const port = Number(o.port ?? u.port ?? 22);
  const user = u.user ?? (o.username as string | undefined) ?? os.userInfo().username;
  const knownHostsFile = path.resolve(expandHome(String(o.known_hosts ?? spec.env.SSH_KNOWN_HOSTS ?? path.join(os.homedir(), '.ssh', 'known_hosts'))));
  const keyFile = (o.private_key as string | undefined) ?? spec.env.SSH_PRIVATE_KEY;
  const timeoutS = Number(o.timeout_s ?? 60);
  const binary = String(o.binary ?? spec.env.RSYNC_BINARY ?? 'rsync');
  if (keyFile) {
    await fsp.access(path.resolve(expandHome(keyFile))).catch((err: unknown) => {
      throw usageError(`cannot read the SSH private key ${keyFile}: ${errorMessage(err)}`);
    });
  }
  const hostForSsh = u.host.includes(':') ? `[${u.host}]` : u.host;
  // fail at open, not mid-sync, when rsync is missing here
  await new Promise<void>((resolve, reject) => {
    const child = spawn(binary, ['--version'], { stdio: 'ignore', env: spec.env });
    child.on('error', (err) => reject(missingBinary(err, binary)));
    child.on('close', () => resolve());
  });
  // the host key first: a refused host leaves nothing behind
  const knownHosts = await KnownHosts.load(knownHostsFile, u.host, port, truthy(o.accept_unknown_host ?? spec.env.SSH_ACCEPT_UNKNOWN_HOST));
  await checkHostKey(u.host, port, user, knownHosts, Math.min(timeoutS, 30) * 1000);
  // one SSH connection shared by every rsync run of this remote (a login per call costs ~0.3 s)
  const controlPath = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'vb-ssh-')), 'mux');
  const sshBinary = String(o.ssh ?? 'ssh');
  const ssh = [
    sshBinary,
    '-o',
    'ControlMaster=auto',
    '-o',
    `ControlPath=${controlPath}`,
    '-o',
    'ControlPersist=30',
    '-p',
    String(port),
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsFile}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    `ConnectTimeout=${Math.min(timeoutS, 30)}`,
    '-o',
    'LogLevel=ERROR',
    ...(keyFile ? ['-i', path.resolve(expandHome(keyFile)), '-o', 'IdentitiesOnly=yes'] : []),
  ];
  const flags = Array.isArray(o.flags) ? o.flags.map(String) : typeof o.flags === 'string' && o.flags.trim() ? o.flags.trim().split(/\s+/) : [];
  const baseArgs = [
    '-s', // --secluded-args: names travel in the protocol, not through the remote shell
    '--no-h',
    '-e',
    ssh.map(rshWord).join(' '),
    `--timeout=${timeoutS}`,
    ...(o.rsync_path ? ['--rsync-path', String(o.rsync_path)] : []),
    ...flags,
  ];
  const shownHost = `${user}@${hostForSsh}${port === 22 ? '' : `:${port}`}`;
  return new RsyncRemote(spec.url, {
    binary,
    host: `${user}@${hostForSsh}`,
    shownHost,
    root: u.path,
    baseArgs,
    checksum: truthy(o.checksum),
    env: spec.env,
    ssh: sshBinary,
    controlPath,
  });
});
