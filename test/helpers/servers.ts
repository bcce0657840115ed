/**
 * Real servers for the remote tests, all on 127.0.0.1 and free ports: s3rver and webdav-server in
 * process, sshd and rclone as child processes. Every `stop()` cuts open connections at once, so a test
 * can stop a server in the middle of a transfer; `restart()` brings it back on the same port and data.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import S3rver from 's3rver';
import webdavServer from 'webdav-server';
import ssh2 from 'ssh2';

const { v2: webdav } = webdavServer as unknown as { v2: typeof import('webdav-server').v2 };

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `vb-${prefix}-`));
}

export interface TestServer {
  port: number;
  /** where the server keeps its data on disk */
  dataDir: string;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

function killConnections(server: http.Server | undefined | null): void {
  server?.closeAllConnections?.();
}

// ---- S3 ---------------------------------------------------------------------------------------------

export interface S3Server extends TestServer {
  endpoint: string;
  bucket: string;
}

export async function startS3(bucket = 'backups'): Promise<S3Server> {
  const dataDir = tempDir('s3rver');
  const port = await freePort();
  let server: S3rver | undefined;
  const start = async () => {
    server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dataDir, configureBuckets: [{ name: bucket, configs: [] }] });
    await server.run();
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    killConnections((s as unknown as { httpServer: http.Server }).httpServer);
    await s.close().catch(() => {});
  };
  await start();
  return { port, dataDir, endpoint: `http://127.0.0.1:${port}`, bucket, stop, restart: start };
}

// ---- WebDAV -----------------------------------------------------------------------------------------

export interface WebdavServer extends TestServer {
  url: string; // webdav://127.0.0.1:port
}

/** Basic auth with `user`/`pass`, or, with `oauthToken`, only `Authorization: OAuth <token>` (Yandex.Disk style). */
export async function startWebdav(auth: { user: string; pass: string } | { oauthToken: string }): Promise<WebdavServer> {
  const dataDir = tempDir('webdav');
  const port = await freePort();
  const users = new webdav.SimpleUserManager();
  const user = users.addUser('user' in auth ? auth.user : 'oauth', 'user' in auth ? auth.pass : 'x', false);
  const privileges = new webdav.SimplePathPrivilegeManager();
  privileges.setRights(user, '/', ['all']);
  const httpAuthentication =
    'user' in auth
      ? new webdav.HTTPBasicAuthentication(users, 'test')
      : {
          askForAuthentication: () => ({ 'WWW-Authenticate': 'OAuth realm="test"' }),
          getUser: (ctx: { headers: { find(name: string): string | undefined } }, cb: (e: Error | null, u?: unknown) => void) => {
            if (ctx.headers.find('Authorization') === `OAuth ${auth.oauthToken}`) cb(null, user);
            else users.getDefaultUser((u: unknown) => cb(webdav.Errors.BadAuthentication, u));
          },
        };
  let server: InstanceType<typeof webdav.WebDAVServer> | undefined;
  const start = async () => {
    const s = new webdav.WebDAVServer({
      port,
      hostname: '127.0.0.1',
      requireAuthentification: true,
      httpAuthentication: httpAuthentication as never,
      privilegeManager: privileges,
    });
    await new Promise<void>((resolve, reject) => s.setFileSystem('/', new webdav.PhysicalFileSystem(dataDir), (ok) => (ok ? resolve() : reject(new Error('setFileSystem failed')))));
    await new Promise<void>((resolve) => s.start(() => resolve()));
    server = s;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    const httpServer = (s as unknown as { server: http.Server }).server;
    killConnections(httpServer);
    await new Promise<void>((resolve) => s.stop(() => resolve()));
  };
  await start();
  return { port, dataDir, url: `webdav://127.0.0.1:${port}`, stop, restart: start };
}

// ---- child processes --------------------------------------------------------------------------------

/** Kills a child we started and every process it forked (sshd forks one per connection). */
function killTree(pid: number): void {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  const all: number[] = [];
  const walk = (p: number) => {
    all.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  for (const p of all) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
}

function spawnServer(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { child: ChildProcess; log: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  return { child, log: () => log };
}

// ---- ssh keys (sshd and the in-process SFTP server) -------------------------------------------------

export interface SshKeys {
  hostKey: string; // private key files, OpenSSH format, with `.pub` beside each
  userKey: string;
  wrongKey: string; // a key the server does not know
  knownHosts: string; // a known_hosts file naming the host key at 127.0.0.1:port
  hostKeyLine: string;
  /** a public key line of the host key's type that is not the host's */
  otherKeyLine: string;
}

/** Host, user and stranger ed25519 keys in `dir`, made by the ssh2 package (no ssh-keygen needed). */
export function sshKeys(dir: string, port: number): SshKeys {
  const { utils } = ssh2;
  const make = (name: string) => {
    let k = utils.generateKeyPairSync('ed25519');
    // ssh2 1.17 drops a leading zero byte of the public key (about 1 key in 300): such a key is unusable
    while (utils.parseKey(k.public) instanceof Error || utils.parseKey(k.private) instanceof Error) k = utils.generateKeyPairSync('ed25519');
    fs.writeFileSync(path.join(dir, name), k.private, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, `${name}.pub`), k.public);
    return k.public.trim().split(/\s+/).slice(0, 2).join(' ');
  };
  const hostPub = make('host_ed25519');
  make('user_ed25519');
  const hostKeyLine = `[127.0.0.1]:${port} ${hostPub}`;
  fs.writeFileSync(path.join(dir, 'known_hosts'), `${hostKeyLine}\n`, { mode: 0o600 });
  return {
    hostKey: path.join(dir, 'host_ed25519'),
    userKey: path.join(dir, 'user_ed25519'),
    wrongKey: path.join(dir, 'wrong_ed25519'),
    knownHosts: path.join(dir, 'known_hosts'),
    hostKeyLine,
    otherKeyLine: make('wrong_ed25519'),
  };
}

// ---- sshd -------------------------------------------------------------------------------------------

export interface SshServer extends TestServer {
  user: string;
  userKey: string; // private key file for `user`
  wrongKey: string; // a key the server does not know
  knownHosts: string; // a known_hosts file naming this server
  hostKeyLine: string;
  /** a public key line of the host key's type that is not the host's */
  otherKeyLine: string;
  /** an absolute directory the tests may use as the remote root */
  root: string;
  statvfs: boolean;
}

export async function startSshd(): Promise<SshServer> {
  const dir = tempDir('sshd');
  const port = await freePort();
  const keys = sshKeys(dir, port);
  fs.copyFileSync(`${keys.userKey}.pub`, path.join(dir, 'authorized_keys'));
  const root = path.join(dir, 'data');
  fs.mkdirSync(root);
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${keys.hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin yes',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  try {
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // root's sshd wants its privilege separation directory
  } catch {
    // not root: sshd runs unprivileged and does not need it
  }
  let proc: ReturnType<typeof spawnServer> | undefined;
  const start = async () => {
    proc = spawnServer('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config')]);
    try {
      await waitForPort(port);
    } catch (err) {
      throw new Error(`sshd did not start: ${proc.log()} ${(err as Error).message}`);
    }
  };
  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (!p?.child.pid) return;
    killTree(p.child.pid);
    await waitExit(p.child);
  };
  await start();
  return {
    port,
    dataDir: root,
    root,
    user: os.userInfo().username,
    ...keys,
    statvfs: true,
    stop,
    restart: start,
  };
}

// ---- rclone serve -----------------------------------------------------------------------------------

export interface RcloneServer extends TestServer {
  user: string;
  pass: string;
}

/** `rclone serve sftp|webdav` of a local directory with a user and password. */
export async function startRcloneServe(kind: 'sftp' | 'webdav', user = 'backup', pass = 'rclone-secret-pw'): Promise<RcloneServer> {
  const dataDir = tempDir(`rclone-${kind}`);
  const cache = tempDir('rclone-cache');
  const port = await freePort();
  let proc: ReturnType<typeof spawnServer> | undefined;
  const start = async () => {
    proc = spawnServer('rclone', ['serve', kind, dataDir, '--addr', `127.0.0.1:${port}`, '--user', user, '--pass', pass], {
      ...process.env,
      XDG_CACHE_HOME: cache,
      RCLONE_CONFIG: path.join(cache, 'rclone.conf'),
    });
    try {
      await waitForPort(port, 20_000);
    } catch (err) {
      throw new Error(`rclone serve ${kind} did not start: ${proc.log()} ${(err as Error).message}`);
    }
  };
  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (!p?.child.pid) return;
    killTree(p.child.pid);
    await waitExit(p.child);
  };
  await start();
  return { port, dataDir, user, pass, stop, restart: start };
}

export function rcloneObscure(pass: string): string {
  return execFileSync('rclone', ['obscure', pass], { encoding: 'utf8' }).trim();
}
