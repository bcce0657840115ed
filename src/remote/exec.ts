import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { BackupError, usageError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { registerSecret } from '../secrets.js';
import { SchemeRemote, type RemoteEntry, RemoteError, type RemoteSpec, type SpaceInfo, type ObjectOptions, joinRemote, registerScheme } from './remote.js';

/**
 * exec:ROOT — the operator's own commands do the copying (the seed's "custom replication"):
 *   { "url": "exec:/srv/copy", "put": ["cp", "{src}", "{remote_path}"], "list": ["my-list", "{root}"],
 *     "get": ["cat", "{remote_path}"], "delete": ["rm", "-f", "{remote_path}"], "timeout_s": 600,
 *     "env": { "AWS_SECRET_ACCESS_KEY": "…" } }
 * Each command is an argv array, run without a shell; `{src}` (the local file), `{name}` (the path under
 * the remote root, e.g. database/db_backup_….db), `{remote_path}` (ROOT/name) and `{root}` are replaced
 * inside each argument. `list` prints `SIZE PATH` lines (PATH under ROOT or absolute below it) or a JSON
 * array of {Path, Size} (`rclone lsjson -R`); `get` writes the object to stdout.
 *
 * A put counts only when the command exits 0 AND the listing then shows the object with its size. Without
 * `list` the remote is put-only: what was handed over is recorded in a small state file (so a sync does
 * not send it again), and verify / restore --from say that this remote cannot be read back. Every command
 * runs in its own process group, killed whole when its timeout passes. Values of `env` are secrets: never
 * printed.
 */

interface Commands {
  put: string[];
  list?: string[];
  get?: string[];
  delete?: string[];
}

interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
  timedOut: boolean;
}

function argv(v: unknown, key: string, name: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((a) => typeof a === 'string')) {
    throw usageError(
      `remote "${name}": "${key}" must be a command as an array of strings`,
      `e.g. "${key}": ["cp", "{src}", "{remote_path}"] (no shell string)`,
    );
  }
  return v as string[];
}

class ExecRemote extends SchemeRemote {
  override readonly reportsProgress = false;
  private listing: Map<string, number> | undefined;
  /** put-only: the sidecars handed over, so a sync can tell the remote holds this very backup */
  private readonly sentSidecars = new Map<string, string>();

  constructor(
    url: string,
    private readonly name: string,
    private readonly root: string,
    private readonly cmds: Commands,
    private readonly env: NodeJS.ProcessEnv,
    private readonly timeoutMs: number,
    private readonly stateFile: string,
  ) {
    super('exec', url);
  }

  private fill(args: string[], vars: Record<string, string>): string[] {
    return args.map((a) => a.replace(/\{(src|name|remote_path|root)\}/g, (m, k: string) => vars[k] ?? m));
  }

  private vars(rel: string, src = ''): Record<string, string> {
    const name = joinRemote('', rel);
    return { src, name, remote_path: joinRemote(this.root, name), root: this.root };
  }

  /** Runs one command in its own process group; the whole group is killed when the timeout passes. */
  private run(op: string, args: string[], options: { signal?: AbortSignal; stdout?: PassThrough } = {}): Promise<RunResult> {
    const [cmd, ...rest] = args;
    return new Promise((resolve, reject) => {
      const child = spawn(cmd!, rest, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      const killGroup = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
      }, this.timeoutMs);
      const onAbort = () => killGroup();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.stdout) child.stdout.pipe(options.stdout, { end: false });
      else child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < 16 * 1024) stderr += d;
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(usageError(`remote "${this.name}": the ${op} command "${cmd}" was not found`, 'give its absolute path or install it'));
        } else reject(err);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve({ stdout, stderr, code, timedOut });
      });
    });
  }

  private fail(op: string, rel: string, r: RunResult): RemoteError {
    const what = `exec remote "${this.name}": the ${op} command for ${rel || '/'}`;
    if (r.timedOut) {
      return new RemoteError('transient', `${what} did not finish within ${this.timeoutMs / 1000} s and was killed`, {
        hint: 'raise "timeout_s" for this remote, or find out why the command hangs',
      });
    }
    const tail = r.stderr.trim().split('\n').slice(-2).join(' / ').slice(0, 400);
    return new RemoteError('fatal', `${what} failed (exit code ${r.code ?? 'signal'})${tail ? `: ${tail}` : ''}`);
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const size = (await fsp.stat(localFile)).size;
    const src = path.resolve(localFile);
    const r = await this.run('put', this.fill(this.cmds.put, this.vars(relPath, src)), { signal: options.signal });
    if (r.code !== 0) throw this.fail('put', relPath, r);
    const rel = joinRemote('', relPath);
    if (this.cmds.list) {
      // exit 0 proves nothing on its own: the object must be there with its size
      this.listing = undefined;
      const got = (await this.loadListing()).get(rel);
      if (got !== size) {
        throw new RemoteError(
          'fatal',
          `exec remote "${this.name}": the put command for ${relPath} exited 0 but the listing shows ${got === undefined ? 'no such object' : `${got} bytes, not ${size}`}`,
          { hint: 'check that the put command really writes to the place the list command looks at' },
        );
      }
    } else {
      const state = await this.loadListing();
      state.set(rel, size);
      if (rel.endsWith('.json') && size <= 64 * 1024) this.sentSidecars.set(rel, await fsp.readFile(localFile, 'utf8'));
      await this.saveState(state);
    }
    options.onProgress?.(size);
  }

  async read(relPath: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    if (!this.cmds.get) {
      await this.loadListing();
      const sent = this.sentSidecars.get(joinRemote('', relPath));
      if (sent !== undefined) return Readable.from([Buffer.from(sent)]);
      throw new RemoteError('fatal', `exec remote "${this.name}" is put-only (no "get" command): it cannot read ${relPath} back`, {
        hint: 'give the remote a "get" command to verify or restore from it, or verify the copy with the tool that reads that storage',
      });
    }
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    // the reader ends only once the command exited 0: a failing get must never look like a short file
    this.run('get', this.fill(this.cmds.get, this.vars(relPath)), { signal: options.signal, stdout: out }).then(
      (r) => (r.code === 0 ? out.end() : out.destroy(this.fail('get', relPath, r))),
      (err: unknown) => out.destroy(err as Error),
    );
    return out;
  }

  private async loadListing(): Promise<Map<string, number>> {
    if (this.listing) return this.listing;
    const map = new Map<string, number>();
    if (!this.cmds.list) {
      const text = await fsp.readFile(this.stateFile, 'utf8').catch(() => '{}');
      const state = JSON.parse(text) as { objects?: Record<string, number>; sidecars?: Record<string, string> };
      for (const [p, s] of Object.entries(state.objects ?? {})) map.set(p, s);
      for (const [p, s] of Object.entries(state.sidecars ?? {})) this.sentSidecars.set(p, s);
    } else {
      const r = await this.run('list', this.fill(this.cmds.list, this.vars('')));
      if (r.code !== 0) throw this.fail('list', '', r);
      for (const e of this.parseListing(r.stdout)) map.set(e.path, e.size);
    }
    this.listing = map;
    return map;
  }

  private parseListing(out: string): RemoteEntry[] {
    const rel = (p: string) => {
      const root = this.root.replace(/\/+$/, '');
      return root && p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p.replace(/^\.\//, '');
    };
    const text = out.trim();
    if (text.startsWith('[')) {
      const items = JSON.parse(text) as { Path?: string; path?: string; Size?: number; size?: number; IsDir?: boolean }[];
      return items.filter((i) => !i.IsDir).map((i) => ({ path: rel(String(i.Path ?? i.path)), size: Number(i.Size ?? i.size) }));
    }
    const entries: RemoteEntry[] = [];
    for (const line of text.split('\n')) {
      const m = /^\s*(\d+)\s+(.+)$/.exec(line);
      if (m) entries.push({ path: rel(m[2]!), size: Number(m[1]) });
    }
    return entries;
  }

  private async saveState(state: Map<string, number>): Promise<void> {
    await fsp.mkdir(path.dirname(this.stateFile), { recursive: true, mode: 0o700 });
    for (const p of this.sentSidecars.keys()) if (!state.has(p)) this.sentSidecars.delete(p);
    const doc = { objects: Object.fromEntries(state), sidecars: Object.fromEntries(this.sentSidecars) };
    await writeFileAtomic(this.stateFile, `${JSON.stringify(doc)}\n`);
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const base = joinRemote('', prefix);
    return [...(await this.loadListing())]
      .filter(([p]) => base === '' || p === base || p.startsWith(`${base}/`))
      .map(([p, size]) => ({ path: p, size }))
      .sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    const size = (await this.loadListing()).get(joinRemote('', relPath));
    return size === undefined ? null : { path: relPath, size };
  }

  async delete(relPath: string): Promise<void> {
    if (!this.cmds.delete) {
      throw new RemoteError('fatal', `exec remote "${this.name}" has no "delete" command: it cannot remove ${relPath}`, {
        hint: 'give the remote a "delete" command, or rotate that storage with its own tools',
      });
    }
    const r = await this.run('delete', this.fill(this.cmds.delete, this.vars(relPath)));
    if (r.code !== 0) throw this.fail('delete', relPath, r);
    const rel = joinRemote('', relPath);
    this.listing?.delete(rel);
    if (!this.cmds.list && this.listing) await this.saveState(this.listing);
  }

  async space(): Promise<SpaceInfo> {
    return {};
  }
}

registerScheme('exec', async (spec: RemoteSpec) => {
  const name = spec.name ?? 'exec';
  const root = spec.url.replace(/^exec:(\/\/)?/i, '');
  const o = spec.options;
  const put = argv(o.put, 'put', name);
  if (!put) throw usageError(`remote "${name}": an exec remote needs a "put" command`, 'e.g. "put": ["cp", "{src}", "{remote_path}"]');
  const cmds: Commands = { put, list: argv(o.list, 'list', name), get: argv(o.get, 'get', name), delete: argv(o.delete, 'delete', name) };
  const extra: Record<string, string> = {};
  if (o.env !== undefined) {
    if (!o.env || typeof o.env !== 'object' || Array.isArray(o.env)) throw usageError(`remote "${name}": "env" must be an object of NAME → value`);
    for (const [k, v] of Object.entries(o.env)) {
      extra[k] = String(v);
      registerSecret(String(v)); // whatever its name: the command's environment is never printed
    }
  }
  const timeoutMs = Number(o.timeout_s ?? 600) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw usageError(`remote "${name}": "timeout_s" must be a positive number of seconds`);
  const stateDir = spec.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state');
  const stateFile = String(o.state_file ?? path.join(stateDir, 'vertex-backup', `exec-${name.replace(/[^\w.-]/g, '_')}.json`));
  if (!root) throw new BackupError('USAGE', `exec URL needs a root: ${spec.url}`, { hint: 'use exec:/path/or/prefix (it fills {root} and {remote_path})' });
  return new ExecRemote(spec.url, name, root, cmds, { ...spec.env, ...extra }, timeoutMs, stateFile);
});
