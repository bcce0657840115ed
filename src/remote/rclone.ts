import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { BackupError } from '../errors.js';
import { maskUrl } from '../secrets.js';
import {
  SchemeRemote,
  type RemoteEntry,
  RemoteError,
  type RemoteSpec,
  type SpaceInfo,
  type ObjectOptions,
  joinRemote,
  registerScheme,
  tempName,
} from './remote.js';

/**
 * rclone:remote:path — hands every transfer to an installed rclone, so any of its 70 backends works
 * (configured in rclone.conf, RCLONE_CONFIG_* variables, or an on-the-fly `:backend,opt=…:` string,
 * whose parameters reach rclone through its environment, never its argv).
 * Options: binary (or RCLONE_BINARY), config (an rclone.conf path), flags (extra arguments).
 */

interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

// rclone's documented exit codes
const EXIT_DIR_NOT_FOUND = 3;
const EXIT_FILE_NOT_FOUND = 4;
const EXIT_TEMPORARY = 5;

class RcloneRemote extends SchemeRemote {
  override readonly reportsProgress = false;
  constructor(
    url: string,
    private readonly binary: string,
    private readonly target: string,
    private readonly baseArgs: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {
    super('rclone', url);
  }

  private t(rel: string): string {
    const r = joinRemote('', rel);
    if (r === '') return this.target;
    return this.target.endsWith(':') || this.target.endsWith('/') ? `${this.target}${r}` : `${this.target}/${r}`;
  }

  private run(args: string[], signal?: AbortSignal): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, [...this.baseArgs, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'], signal });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d) => {
        if (stderr.length < 64 * 1024) stderr += d;
      });
      child.on('error', (err) => reject(missingBinary(err, this.binary)));
      child.on('close', (code) => resolve({ stdout, stderr, code: code ?? 1 }));
    });
  }

  private async ok(args: string[], rel: string, signal?: AbortSignal): Promise<string> {
    const r = await this.run(args, signal);
    if (r.code !== 0) throw this.fail(r, rel, args[0] ?? 'rclone');
    return r.stdout;
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const tmp = tempName(relPath);
    await this.ok(['copyto', localFile, this.t(tmp)], relPath, options.signal);
    try {
      await this.ok(['moveto', this.t(tmp), this.t(relPath)], relPath, options.signal);
    } catch (err) {
      await this.run(['deletefile', this.t(tmp)]).catch(() => {});
      throw err;
    }
    options.onProgress?.((await stat(localFile)).size);
  }

  async read(relPath: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const child = spawn(this.binary, [...this.baseArgs, 'cat', this.t(relPath)], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      signal: options.signal,
    });
    // the reader ends only once rclone exited 0: a failing `rclone cat` must never look like a short file
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    child.stdout.pipe(out, { end: false });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    child.on('error', (err) => out.destroy(missingBinary(err, this.binary) as Error));
    child.on('close', (code) => {
      if (code === 0) out.end();
      else if (code === EXIT_DIR_NOT_FOUND || code === EXIT_FILE_NOT_FOUND || notFound(stderr)) {
        out.destroy(new RemoteError('missing', `${relPath} on ${this.url}: not found`));
      } else out.destroy(this.fail({ stdout: '', stderr, code: code ?? 1 }, relPath, 'cat'));
    });
    out.on('close', () => {
      if (child.exitCode === null) child.kill();
    });
    return out;
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const r = await this.run(['lsjson', '-R', '--files-only', this.t(prefix)]);
    if (r.code === EXIT_DIR_NOT_FOUND || (r.code !== 0 && notFound(r.stderr))) return [];
    if (r.code !== 0) throw this.fail(r, prefix || '/', 'lsjson');
    const base = joinRemote('', prefix);
    const items = JSON.parse(r.stdout || '[]') as { Path: string; Size: number; IsDir?: boolean }[];
    return items
      .filter((i) => !i.IsDir)
      .map((i) => ({ path: base ? `${base}/${i.Path}` : i.Path, size: i.Size }))
      .sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    const r = await this.run(['lsjson', '--stat', this.t(relPath)]);
    if (r.code === EXIT_DIR_NOT_FOUND || r.code === EXIT_FILE_NOT_FOUND || (r.code !== 0 && notFound(r.stderr))) return null;
    if (r.code !== 0) throw this.fail(r, relPath, 'lsjson');
    const item = JSON.parse(r.stdout) as { Size: number; IsDir?: boolean };
    return item.IsDir ? null : { path: relPath, size: item.Size };
  }

  async delete(relPath: string): Promise<void> {
    const r = await this.run(['deletefile', this.t(relPath)]);
    if (r.code === 0 || r.code === EXIT_DIR_NOT_FOUND || r.code === EXIT_FILE_NOT_FOUND || notFound(r.stderr)) return;
    throw this.fail(r, relPath, 'deletefile');
  }

  async space(): Promise<SpaceInfo> {
    const r = await this.run(['about', '--json', this.target]);
    if (r.code !== 0) return {}; // many backends cannot report usage
    const a = JSON.parse(r.stdout) as { total?: number; used?: number; free?: number };
    return { total: a.total, used: a.used, free: a.free };
  }

  private fail(r: RunResult, rel: string, op: string): RemoteError {
    const lastLines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => /ERROR|Failed|error/i.test(l))
      .slice(-2)
      .join(' / ')
      .slice(0, 400);
    const detail = lastLines || r.stderr.trim().slice(-400) || `exit code ${r.code}`;
    const what = `rclone ${op} ${rel} on ${this.url}`;
    if (/\b(401|403)\b|unauthori[sz]ed|forbidden|permission denied|authenticat|invalid_grant|token/i.test(r.stderr)) {
      return new RemoteError('auth', `${what}: the backend refused the credentials: ${detail}`, {
        hint: 'check the rclone remote configuration (rclone config)',
      });
    }
    if (r.code === EXIT_DIR_NOT_FOUND || r.code === EXIT_FILE_NOT_FOUND) return new RemoteError('missing', `${what}: not found`);
    if (r.code === EXIT_TEMPORARY || /connection refused|connection reset|timeout|EOF|no such host|broken pipe|\b5\d\d\b/i.test(r.stderr)) {
      return new RemoteError('transient', `${what} failed: ${detail}`);
    }
    return new RemoteError('fatal', `${what} failed: ${detail}`);
  }
}

/** rclone's error lines for a missing object (its NOTICE about a missing config file does not count). */
function notFound(stderr: string): boolean {
  return stderr.split('\n').some((l) => /ERROR|Failed/.test(l) && /(object|file|directory) not found|not found/i.test(l) && !/Config file/.test(l));
}

function missingBinary(err: unknown, binary: string): unknown {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
    return new BackupError('USAGE', `rclone is not installed: "${binary}" was not found`, {
      hint: 'install rclone (apt-get install rclone, or https://rclone.org/install/) or set "binary" for this remote',
    });
  }
  return err;
}

function flagList(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'string' && v.trim()) return v.trim().split(/\s+/);
  return [];
}

/** The name under which an on-the-fly backend is defined for rclone through the environment. */
const ENV_REMOTE = 'vertexbackupremote';

/**
 * Splits `[:]remote[,name=value…]:path` (an rclone connection string) into the remote, its parameters
 * (unquoted as rclone reads them) and the rest; undefined when the target has no parameters.
 */
export function parseConnectionString(target: string): { onTheFly: boolean; remote: string; params: [string, string][]; rest: string } | undefined {
  const onTheFly = target.startsWith(':');
  let i = onTheFly ? 1 : 0;
  const nameEnd = target.slice(i).search(/[,:]/);
  if (nameEnd === -1 || target[i + nameEnd] !== ',') return undefined;
  const remote = target.slice(i, i + nameEnd);
  i += nameEnd;
  const params: [string, string][] = [];
  while (target[i] === ',') {
    const eq = target.slice(i + 1).search(/[=,:]/);
    if (eq === -1) return undefined;
    const name = target.slice(i + 1, i + 1 + eq);
    i += 1 + eq;
    if (target[i] !== '=') {
      params.push([name, 'true']); // a bare parameter is a boolean flag
      continue;
    }
    i++;
    let value = '';
    const q = target[i];
    if (q === '"' || q === "'") {
      for (i++; i < target.length; i++) {
        if (target[i] !== q) value += target[i];
        else if (target[i + 1] === q) value += target[i++];
        else break;
      }
      if (target[i] !== q) return undefined;
      i++;
    } else {
      const end = target.slice(i).search(/[,:]/);
      if (end === -1) return undefined;
      value = target.slice(i, i + end);
      i += end;
    }
    params.push([name, value]);
  }
  if (target[i] !== ':') return undefined;
  return { onTheFly, remote, params, rest: target.slice(i + 1) };
}

const envName = (s: string) => s.toUpperCase().replace(/-/g, '_');

/**
 * The parameters of a connection string leave rclone's argv (which every user of the machine reads in
 * `ps` and /proc) for its environment: an on-the-fly backend becomes a remote defined by RCLONE_CONFIG_*
 * variables, a named remote's parameters override its config through the same variables.
 */
function paramsToEnv(target: string, env: NodeJS.ProcessEnv): { target: string; env: NodeJS.ProcessEnv } {
  const cs = parseConnectionString(target);
  if (!cs || !/^[A-Za-z0-9_-]+$/.test(cs.remote) || cs.params.some(([n]) => !/^[A-Za-z0-9_-]+$/.test(n))) return { target, env };
  const name = cs.onTheFly ? ENV_REMOTE : cs.remote;
  const prefix = `RCLONE_CONFIG_${envName(name)}_`;
  const out: NodeJS.ProcessEnv = { ...env };
  if (cs.onTheFly) out[`${prefix}TYPE`] = cs.remote;
  for (const [n, value] of cs.params) out[prefix + envName(n)] = value;
  return { target: `${name}:${cs.rest}`, env: out };
}

registerScheme('rclone', async (spec: RemoteSpec) => {
  const given = spec.url.replace(/^rclone:(\/\/)?/i, '');
  if (!given) throw new BackupError('USAGE', `rclone URL needs a target: ${spec.url}`, { hint: 'use rclone:remote:path' });
  const { target, env } = paramsToEnv(given, spec.env);
  const binary = String(spec.options.binary ?? spec.env.RCLONE_BINARY ?? 'rclone');
  // rclone retries on its own for minutes; keep it short here and let sync's backoff decide
  const baseArgs = [
    '--retries',
    '1',
    '--low-level-retries',
    '2',
    '--contimeout',
    '10s',
    '--timeout',
    '60s',
    ...(spec.options.config ? ['--config', String(spec.options.config)] : []),
    ...flagList(spec.options.flags),
  ];
  // secret parameters of a connection string are masked wherever the URL is shown
  const remote = new RcloneRemote(maskUrl(spec.url), binary, target, baseArgs, env);
  // fail at open, not mid-sync, when rclone is missing
  await new Promise<void>((resolve, reject) => {
    const child = spawn(binary, ['version'], { stdio: 'ignore', env: spec.env });
    child.on('error', (err) => reject(missingBinary(err, binary)));
    child.on('close', () => resolve());
  });
  return remote;
});
