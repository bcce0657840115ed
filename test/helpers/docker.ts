/**
 * A real Docker engine for the volume tests: Debian's dockerd, as root, on a private socket, data root
 * and exec root in a short temp directory (a unix socket path must stay under 108 bytes), vfs storage,
 * no iptables, no bridge; an image `tiny:latest` made with `docker import` from busybox-static (no
 * registry is reachable). Stopped by its pid at the end of each test file.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { needs } from './optional.js';

export const dockerNeed = () => (process.getuid?.() === 0 ? needs('dockerd', 'docker.io') : needs('/nonexistent/dockerd-as-root', 'docker.io (run as root)'));

/** The daemon's own CLI (Debian's), not whatever `docker` comes first on PATH. */
const DOCKER_CLI = fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export interface Dockerd {
  dir: string;
  host: string;
  /** tcp://127.0.0.1:PORT when asked for (a "remote" daemon for the helper-container read) */
  tcpHost?: string;
  docker(args: string[], opts?: { allowFail?: boolean }): string;
  stop(): Promise<void>;
}

export async function startDockerd(opts: { tcpPort?: number } = {}): Promise<Dockerd> {
  const dir = fs.mkdtempSync('/tmp/vbd-');
  const sock = path.join(dir, 's');
  const host = `unix://${sock}`;
  const tcpHost = opts.tcpPort ? `tcp://127.0.0.1:${opts.tcpPort}` : undefined;
  const log = fs.openSync(path.join(dir, 'log'), 'w');
  const child: ChildProcess = spawn(
    'dockerd',
    ['-H', host, ...(tcpHost ? ['-H', tcpHost, '--tls=false'] : []), '--data-root', path.join(dir, 'd'), '--exec-root', path.join(dir, 'x'), '--pidfile', path.join(dir, 'pid'), '--storage-driver', 'vfs', '--iptables=false', '--bridge=none'],
    { stdio: ['ignore', log, log] },
  );
  const docker = (args: string[], opts: { allowFail?: boolean } = {}) => {
    const r = spawnSync(DOCKER_CLI, args, { env: { ...process.env, DOCKER_HOST: host }, encoding: 'utf8' });
    if (r.status !== 0 && !opts.allowFail) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  for (let i = 0; ; i++) {
    if (fs.existsSync(sock) && spawnSync(DOCKER_CLI, ['version'], { env: { ...process.env, DOCKER_HOST: host } }).status === 0) break;
    if (i > 200 || child.exitCode !== null) throw new Error(`dockerd did not start: ${fs.readFileSync(path.join(dir, 'log'), 'utf8').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const root = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const c of ['sh', 'sleep', 'echo', 'cat', 'dd', 'date', 'head', 'ls', 'test', 'true']) fs.symlinkSync('busybox', path.join(root, 'bin', c));
  spawnSync('tar', ['-C', root, '-cf', path.join(dir, 'img.tar'), '.']);
  docker(['import', path.join(dir, 'img.tar'), 'tiny:latest']);
  const stop = async () => {
    // containers first, so the daemon stops quickly; then the daemon by its pid
    const ids = docker(['ps', '-aq'], { allowFail: true }).split('\n').filter(Boolean);
    if (ids.length) docker(['rm', '-f', ...ids], { allowFail: true });
    child.kill('SIGTERM');
    for (let i = 0; i < 100 && child.exitCode === null && child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 100));
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    spawnSync('umount', ['-R', path.join(dir, 'x')], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { dir, host, tcpHost, docker, stop };
}
