/**
 * Runs the built binary the way a user (or cron) does: a separate node process, a chosen working
 * directory, a clean environment, no TTY. Nothing here imports the product's code.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO, 'bin', 'vertex-backup.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  cwd: string;
  /** added to the clean base environment; `undefined` values remove a variable */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** run as this user (uid = gid), as root only: see binaryUnreachableBy */
  uid?: number;
}

/** A minimal environment: no CI, NO_COLOR, INVOCATION_ID or BACKUP_* leaking in from the test runner. */
export function baseEnv(cwd: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: cwd,
    LANG: 'C.UTF-8',
    TERM: 'xterm-256color',
    TZ: 'UTC',
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function start(args: string[], opts: RunOptions): { child: ChildProcess; done: Promise<RunResult> } {
  const t0 = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: baseEnv(opts.cwd, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid }),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const done = new Promise<RunResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vertex-backup ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
  return { child, done };
}

/**
 * Why a process of user `uid` cannot run the built binary, or undefined when it can. A checkout under a
 * mode-0700 directory (`mktemp -d`) is out of every other user's reach; tests that run the binary as
 * another user skip by this reason instead of failing on MODULE_NOT_FOUND.
 */
export function binaryUnreachableBy(uid: number): string | undefined {
  const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(BIN)}, require('fs').constants.R_OK)`], { uid, gid: uid });
  return probe.status === 0 ? undefined : `uid ${uid} cannot read ${BIN} (the checkout lies under a directory other users cannot enter)`;
}

/** Runs `vertex-backup ARGS` to the end. */
export function run(args: string[], opts: RunOptions): Promise<RunResult> {
  return start(args, opts).done;
}

/**
 * Runs the binary under a pseudo-terminal of 100x24 (python3's pty module): stdout and stderr are a TTY.
 * Returns what the terminal received.
 */
export function runTty(args: string[], opts: RunOptions): { code: number | null; output: string } {
  const py = `
import os, pty, sys, fcntl, termios, struct
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    os.execvp(sys.argv[1], sys.argv[1:])
out = b''
while True:
    try:
        d = os.read(fd, 65536)
    except OSError:
        break
    if not d:
        break
    out += d
_, st = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(st))
`;
  const r = spawnSync('python3', ['-c', py, process.execPath, BIN, ...args], {
    cwd: opts.cwd,
    env: baseEnv(opts.cwd, opts.env),
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 16 << 20,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { code: r.status, output: (r.stdout ?? '') + (r.stderr ?? '') };
}

/** Runs a third-party tool; throws with its stderr when it fails unless `allowFail`. */
export function sh(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, env: opts.env ?? process.env, maxBuffer: 256 << 20 });
  const out = { code: r.status, stdout: r.stdout?.toString('utf8') ?? '', stderr: r.stderr?.toString('utf8') ?? '' };
  if (!opts.allowFail && r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${out.stderr}${r.error ? ` (${r.error.message})` : ''}`);
  }
  return out;
}

/** Parses stdout as exactly one JSON document (JSON.parse rejects anything before or after it). */
export function parseJsonStdout<T = unknown>(r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (err) {
    throw new Error(`stdout is not one JSON document (${(err as Error).message}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

export const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/;

/** Lines of stderr that are not empty. */
export function stderrLines(r: RunResult): string[] {
  return r.stderr.split('\n').filter((l) => l.trim() !== '');
}

export function describeRun(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

export function readJson<T = Record<string, unknown>>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
