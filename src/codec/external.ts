import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { BackupError } from '../errors.js';
import type { Codec } from './codec.js';

/** What a compressor has taken in and what of it is compressed (the 'codec-progress' event). */
export interface CodecProgress {
  /** input bytes handed to the program */
  fed: number;
  /** input bytes it has compressed */
  consumed: number;
}

/** A program that reports how much input it has compressed when sent a signal (xz: SIGUSR1). */
interface ProgressProbe {
  signal: NodeJS.Signals;
  /** the input bytes compressed, from one line of what the program printed on stderr; undefined: not such a line */
  parse(line: string): number | undefined;
}

/** How often a probed program is asked how far it is. */
const PROBE_MS = 1000;
/**
 * The program is asked only once it has taken in more than a pipe buffer: it has then been reading,
 * so its signal handler is installed (the default action of SIGUSR1 is to end the process).
 */
const PROBE_AFTER_BYTES = 1 << 20;

/**
 * xz, bzip2 and zstd run as child processes: their native multi-threaded encoders beat anything in
 * JS, and the output is exactly what `tar -xJf` & co. expect.
 */
export function processFilter(command: string, args: string[], probe?: ProgressProbe): Duplex {
  // its own process group: Ctrl-C on a terminal signals the whole foreground group, and an xz that died
  // of it first would turn an orderly "interrupted by SIGINT" (exit 130) into a raw EPIPE. We stop it
  // ourselves when the stream closes, and it exits on EOF if we are killed.
  // C locale: the figures a probe parses have no thousands separators
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: probe ? { ...process.env, LC_ALL: 'C' } : process.env });
  // stdin is a pipe socket: bytesWritten counts what was handed to it, its own small buffer included
  const fed = () => (child.stdin as unknown as Socket).bytesWritten ?? 0;
  let stderr = '';
  let partial = '';
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (!probe) {
      if (stderr.length < 4096) stderr += d;
      return;
    }
    // progress lines (ended by \r or \n) are read here and kept out of the error text
    const lines = (partial + d).split(/[\r\n]/);
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const consumed = probe.parse(line);
      if (consumed !== undefined) duplex.emit('codec-progress', { fed: fed(), consumed } satisfies CodecProgress);
      else if (line.trim() && stderr.length < 4096) stderr += `${line}\n`;
    }
  });
  // the compressor may hold far more input than it has compressed (xz -T0 fills a block per thread,
  // 24 MiB each at -6): asked, it says how far it is, so progress can count that backlog as work to do
  const timer = probe
    ? setInterval(() => {
        if (child.exitCode === null && child.signalCode === null && fed() > PROBE_AFTER_BYTES) child.kill(probe.signal);
      }, PROBE_MS).unref()
    : undefined;
  child.on('exit', () => clearInterval(timer));
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    if (code !== 0) {
      const why = (stderr + partial).trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit code ${code}`);
      duplex.destroy(new BackupError('FAILED', `${command} failed: ${why}`));
    }
  };
  child.on('exit', onExit);
  child.on('error', (err) => duplex.destroy(new BackupError('FAILED', `cannot run ${command}: ${err.message}`)));
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}

const found = new Map<string, boolean>();

export async function hasBinary(command: string): Promise<boolean> {
  const cached = found.get(command);
  if (cached !== undefined) return cached;
  const ok = await new Promise<boolean>((resolve) => {
    const c = spawn(command, ['--version'], { stdio: 'ignore' });
    c.on('error', () => resolve(false));
    c.on('exit', () => resolve(true));
  });
  found.set(command, ok);
  return ok;
}

export async function requireBinary(command: string, codec: string, debianPackage: string): Promise<void> {
  if (!(await hasBinary(command))) {
    throw new BackupError('USAGE', `compression '${codec}' needs the '${command}' program, which is not installed`, {
      hint: `install it (apt-get install ${debianPackage}) or choose --compression gzip`,
    });
  }
}

/** A codec that is a program on the PATH, reading stdin and writing stdout (`-d` to decompress). */
export function programCodec(c: {
  name: string;
  extension: string;
  sizeFactor: number;
  debianPackage: string;
  defaultLevel: number;
  compressArgs?: string[];
  progress?: ProgressProbe;
}): Codec {
  return {
    name: c.name,
    extension: c.extension,
    sizeFactor: c.sizeFactor,
    checkAvailable: () => requireBinary(c.name, c.name, c.debianPackage),
    compressor: ({ level }) => processFilter(c.name, [...(c.compressArgs ?? []), `-${level ?? c.defaultLevel}`, '-c', '-q'], c.progress),
    decompressor: () => processFilter(c.name, ['-d', '-c', '-q']),
  };
}
