/**
 * An SFTP server in this process (the `ssh2` package's Server), so the sftp:// remote is tested on every
 * machine, with or without OpenSSH. It serves a real directory on disk: the client's "/" is `dataDir`,
 * its login directory is /home/<user>. Key and password logins, a host key of its own (the tests hand the
 * client a known_hosts line for it), and `stop()` cuts every connection at once, mid-transfer if need be.
 *
 * Like most servers that are not OpenSSH it advertises no extensions: no posix-rename@openssh.com (the
 * client falls back to remove + rename) and no statvfs@openssh.com (no free-space figure).
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, SFTPWrapper } from 'ssh2';
import { freePort, sshKeys, tempDir } from './servers.js';

const { Server, utils } = ssh2;
const { STATUS_CODE, flagsToString } = utils.sftp;

export interface SftpTestServer {
  port: number;
  dataDir: string;
  user: string;
  /** set when the server takes passwords */
  password?: string;
  userKey: string; // private key file for `user`
  wrongKey: string; // a key the server does not know
  knownHosts: string; // a known_hosts file naming this server
  hostKeyLine: string;
  /** a public key line of the same type that is not the host's (for the "changed host key" case) */
  otherKeyLine: string;
  /** an absolute directory (as the client sees it) the tests may use as the remote root */
  root: string;
  /** whether the server answers statvfs@openssh.com (free space) */
  statvfs: boolean;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

type Attrs = { mode: number; uid: number; gid: number; size: number; atime: number; mtime: number };

function toAttrs(st: fs.Stats): Attrs {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, atime: Math.floor(st.atimeMs / 1000), mtime: Math.floor(st.mtimeMs / 1000) };
}

function statusOf(err: unknown): number {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return STATUS_CODE.NO_SUCH_FILE;
    case 'EACCES':
    case 'EPERM':
      return STATUS_CODE.PERMISSION_DENIED;
    default:
      return STATUS_CODE.FAILURE;
  }
}

/** One SFTP session over `dataDir`: every request of the protocol the client library can send. */
function serveSftp(sftp: SFTPWrapper, dataDir: string, home: string): void {
  const handles = new Map<number, { fd?: number; dir?: string; listed?: boolean }>();
  let nextHandle = 1;
  // path.posix.resolve drops every '..': a client path can never leave dataDir
  const virt = (p: string) => path.posix.resolve(home, p || '.');
  const real = (p: string) => path.join(dataDir, virt(p));
  const newHandle = (h: { fd?: number; dir?: string }) => {
    const id = nextHandle++;
    handles.set(id, h);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return b;
  };
  const handleOf = (b: Buffer) => (b.length === 4 ? handles.get(b.readUInt32BE(0)) : undefined);
  const idOf = (b: Buffer) => b.readUInt32BE(0);
  const fail = (reqid: number, err: unknown) => sftp.status(reqid, statusOf(err), (err as Error).message);
  const ok = (reqid: number) => sftp.status(reqid, STATUS_CODE.OK);
  const setAttrs = (target: string | number, attrs: Partial<Attrs>) => {
    const isFd = typeof target === 'number';
    if (attrs.mode !== undefined) isFd ? fs.fchmodSync(target, attrs.mode & 0o7777) : fs.chmodSync(target, attrs.mode & 0o7777);
    if (attrs.size !== undefined) isFd ? fs.ftruncateSync(target, attrs.size) : fs.truncateSync(target, attrs.size);
    if (attrs.atime !== undefined && attrs.mtime !== undefined) {
      isFd ? fs.futimesSync(target, attrs.atime, attrs.mtime) : fs.utimesSync(target, attrs.atime, attrs.mtime);
    }
  };

  sftp.on('REALPATH', (reqid, p) => {
    const v = virt(p);
    sftp.name(reqid, [{ filename: v, longname: v, attrs: {} as Attrs }]);
  });
  sftp.on('OPEN', (reqid, filename, flags, attrs) => {
    const mode = attrs?.mode !== undefined ? attrs.mode & 0o7777 : 0o644;
    fs.open(real(filename), flagsToString(flags) ?? 'r', mode, (err, fd) => (err ? fail(reqid, err) : sftp.handle(reqid, newHandle({ fd }))));
  });
  sftp.on('READ', (reqid, handle, offset, length) => {
    const h = handleOf(handle);
    if (h?.fd === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    const buf = Buffer.allocUnsafe(length);
    fs.read(h.fd, buf, 0, length, offset, (err, n) => {
      if (err) return fail(reqid, err);
      if (n === 0) return sftp.status(reqid, STATUS_CODE.EOF);
      sftp.data(reqid, buf.subarray(0, n));
    });
  });
  sftp.on('WRITE', (reqid, handle, offset, data) => {
    const h = handleOf(handle);
    if (h?.fd === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    fs.write(h.fd, data, 0, data.length, offset, (err) => (err ? fail(reqid, err) : ok(reqid)));
  });
  sftp.on('CLOSE', (reqid, handle) => {
    const h = handleOf(handle);
    if (!h) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    handles.delete(idOf(handle));
    if (h.fd === undefined) return ok(reqid);
    fs.close(h.fd, (err) => (err ? fail(reqid, err) : ok(reqid)));
  });
  sftp.on('FSTAT', (reqid, handle) => {
    const h = handleOf(handle);
    if (h?.fd === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    fs.fstat(h.fd, (err, st) => (err ? fail(reqid, err) : sftp.attrs(reqid, toAttrs(st))));
  });
  sftp.on('FSETSTAT', (reqid, handle, attrs) => {
    const h = handleOf(handle);
    if (h?.fd === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    try {
      setAttrs(h.fd, attrs);
      ok(reqid);
    } catch (err) {
      fail(reqid, err);
    }
  });
  sftp.on('SETSTAT', (reqid, p, attrs) => {
    try {
      setAttrs(real(p), attrs);
      ok(reqid);
    } catch (err) {
      fail(reqid, err);
    }
  });
  sftp.on('STAT', (reqid, p) => fs.stat(real(p), (err, st) => (err ? fail(reqid, err) : sftp.attrs(reqid, toAttrs(st)))));
  sftp.on('LSTAT', (reqid, p) => fs.lstat(real(p), (err, st) => (err ? fail(reqid, err) : sftp.attrs(reqid, toAttrs(st)))));
  sftp.on('OPENDIR', (reqid, p) => {
    const dir = real(p);
    fs.stat(dir, (err, st) => {
      if (err) return fail(reqid, err);
      if (!st.isDirectory()) return sftp.status(reqid, STATUS_CODE.FAILURE, 'not a directory');
      sftp.handle(reqid, newHandle({ dir }));
    });
  });
  sftp.on('READDIR', (reqid, handle) => {
    const h = handleOf(handle);
    if (h?.dir === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
    if (h.listed) return sftp.status(reqid, STATUS_CODE.EOF);
    h.listed = true;
    const dir = h.dir;
    fs.readdir(dir, (err, names) => {
      if (err) return fail(reqid, err);
      const entries = [];
      for (const name of names) {
        try {
          const attrs = toAttrs(fs.lstatSync(path.join(dir, name)));
          entries.push({ filename: name, longname: name, attrs });
        } catch {
          // removed while listed
        }
      }
      if (entries.length === 0) return sftp.status(reqid, STATUS_CODE.EOF);
      sftp.name(reqid, entries);
    });
  });
  sftp.on('MKDIR', (reqid, p, attrs) => {
    fs.mkdir(real(p), { mode: attrs?.mode !== undefined ? attrs.mode & 0o7777 : 0o755 }, (err) => (err ? fail(reqid, err) : ok(reqid)));
  });
  sftp.on('RMDIR', (reqid, p) => fs.rmdir(real(p), (err) => (err ? fail(reqid, err) : ok(reqid))));
  sftp.on('REMOVE', (reqid, p) => fs.unlink(real(p), (err) => (err ? fail(reqid, err) : ok(reqid))));
  sftp.on('RENAME', (reqid, from, to) => {
    // SFTP v3 rename does not replace an existing target (as OpenSSH's plain rename)
    if (fs.existsSync(real(to))) return sftp.status(reqid, STATUS_CODE.FAILURE, 'target exists');
    fs.rename(real(from), real(to), (err) => (err ? fail(reqid, err) : ok(reqid)));
  });
  sftp.on('close', () => {
    for (const h of handles.values()) if (h.fd !== undefined) fs.close(h.fd, () => {});
    handles.clear();
  });
}

export async function startSftpServer(opts: { user?: string; password?: string } = {}): Promise<SftpTestServer> {
  const user = opts.user ?? 'backup';
  const password = opts.password ?? 'sftp-secret-pw';
  const dir = tempDir('sftp-inproc');
  const dataDir = path.join(dir, 'data');
  const home = `/home/${user}`;
  fs.mkdirSync(path.join(dataDir, home), { recursive: true });
  fs.mkdirSync(path.join(dataDir, 'srv'));
  const port = await freePort();
  const keys = sshKeys(dir, port);
  const hostKey = fs.readFileSync(keys.hostKey);
  const allowed = utils.parseKey(fs.readFileSync(`${keys.userKey}.pub`));
  if (allowed instanceof Error) throw allowed;

  const authenticate = (ctx: AuthContext) => {
    if (ctx.username !== user) return ctx.reject();
    if (ctx.method === 'password') return ctx.password === password ? ctx.accept() : ctx.reject();
    if (ctx.method === 'publickey') {
      const sameKey = ctx.key.algo === allowed.type && ctx.key.data.equals(allowed.getPublicSSH());
      // without a signature the client only asks whether the key would do
      if (!sameKey || (ctx.signature && allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true)) return ctx.reject();
      return ctx.accept();
    }
    return ctx.reject(['password', 'publickey']);
  };

  let server: InstanceType<typeof Server> | undefined;
  const sockets = new Set<net.Socket>();
  const start = async () => {
    const s = new Server({ hostKeys: [hostKey] }, (client: Connection) => {
      client.on('error', () => {}); // a connection cut by stop()
      client.on('authentication', authenticate);
      client.on('ready', () => {
        client.on('session', (accept) => {
          const session = accept();
          session.on('sftp', (acceptSftp) => serveSftp(acceptSftp(), dataDir, home));
        });
      });
    });
    (s as unknown as { _srv: net.Server })._srv.on('connection', (sock: net.Socket) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    server = s;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    for (const sock of sockets) sock.destroy();
    sockets.clear();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await start();
  return {
    port,
    dataDir,
    user,
    password,
    ...keys,
    root: '/srv',
    statvfs: false,
    stop,
    restart: start,
  };
}
