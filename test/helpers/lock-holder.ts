/**
 * A real process that holds the backup directory's lock through the built lock module, the way a
 * running create does, until it is killed or told to release it (a line on its stdin).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from './cli.js';

const SCRIPT = `
const { acquireLock } = await import(${JSON.stringify(path.join(REPO, 'dist/catalog/lock.js'))});
const lock = await acquireLock(process.argv[1], process.argv[2]);
process.stdout.write('locked\\n');
process.stdin.once('data', () => { lock.release(); process.stdout.write('released\\n'); process.exit(0); });
`;

export interface LockHolderProcess {
  child: ChildProcess;
  pid: number;
  /** releases the lock the ordinary way and waits for the process to end */
  release(): Promise<void>;
}

export async function holdLock(backupDir: string, command = 'create --type full'): Promise<LockHolderProcess> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, backupDir, command], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('locked')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`lock holder exited with ${code} before taking the lock`)));
  });
  return {
    child,
    pid: child.pid!,
    release: () =>
      new Promise<void>((resolve) => {
        child.on('exit', () => resolve());
        child.stdin!.write('go\n');
      }),
  };
}
