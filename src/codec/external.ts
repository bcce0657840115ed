import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { BackupError } from '../errors.js';
import type { Codec } from './codec.js';

/**
 * xz, bzip2 and zstd run as child processes: their native multi-threaded encoders beat anything in
 * JS, and the output is exactly what `tar -xJf` & co. expect.
 */
export function processFilter(command: string, args: string[]): Duplex {
  // its own process group: Ctrl-C on a terminal signals the whole foreground group, and an xz that died
  // of it first would turn an orderly "interrupted by SIGINT" (exit 130) into a raw EPIPE. We stop it
  // ourselves when the stream closes, and it exits on EOF if we are killed.
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    if (code !== 0) {
      const why = stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit code ${code}`);
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
}): Codec {
  return {
    name: c.name,
    extension: c.extension,
    sizeFactor: c.sizeFactor,
    checkAvailable: () => requireBinary(c.name, c.name, c.debianPackage),
    compressor: ({ level }) => processFilter(c.name, [...(c.compressArgs ?? []), `-${level ?? c.defaultLevel}`, '-c', '-q']),
    decompressor: () => processFilter(c.name, ['-d', '-c', '-q']),
  };
}
