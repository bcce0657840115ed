/**
 * Tests that need a program the product only uses when the user has it (rclone, shellcheck, pigz, zstd,
 * xz, bzip2, OpenSSH's sshd, systemd-analyze). Without CI (a developer's machine with only Node and npm)
 * such a test is skipped, and its title says which program and which Debian package would run it; the
 * skip reporter (test/helpers/skip-reporter.ts) lists every skip at the end of the run. Under CI=true a
 * missing program fails the test instead: CI installs everything, so a skip there would hide a gap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type TestFunction, describe, it } from 'vitest';

/** The marker the skip reporter looks for in test and suite names. */
export const SKIP_MARK = '[skipped: needs ';

export function ciMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(env.CI ?? '');
}

/** An absolute path that exists, or a name found as an executable file on PATH. */
export function findProgram(program: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const isExe = (p: string) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (program.includes('/')) return isExe(program) ? program : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExe(path.join(dir, program))) return path.join(dir, program);
  }
  return undefined;
}

type Body = () => void;
type TestBody = TestFunction;

export interface Need {
  program: string;
  debianPackage: string;
  available: boolean;
  /** why a test would be skipped: `rclone (Debian package rclone)` */
  reason: string;
  describe(name: string, body: Body): void;
  it(name: string, body: TestBody, timeout?: number): void;
  /**
   * Inside a running test that needs the program only for some of its rows (`it.for`): skips it with
   * the reason as its note (CI unset), or fails it (CI=true), when the program is missing.
   */
  require(ctx: { skip: (note?: string) => void }): void;
}

export class MissingProgramError extends Error {}

/**
 * `needs('rclone', 'rclone').describe('rclone: remote', () => …)`: runs when `program` is on PATH (or,
 * given as an absolute path, exists); otherwise skips (CI unset) or fails (CI=true).
 */
export function needs(program: string, debianPackage: string, env: NodeJS.ProcessEnv = process.env): Need {
  const available = findProgram(program, env) !== undefined;
  const reason = `${path.basename(program)} (Debian package ${debianPackage})`;
  const base = { program, debianPackage, available, reason };
  if (available) return { ...base, describe: (n, b) => describe(n, b), it: (n, b, t) => it(n, b, t), require: () => {} };
  const title = (n: string) => `${n} ${SKIP_MARK}${reason}]`;
  if (!ciMode(env)) {
    // the note reads as the skip reporter words a skip by title
    return { ...base, describe: (n, b) => describe.skip(title(n), b), it: (n, b, t) => it.skip(title(n), b, t), require: (ctx) => ctx.skip(`${reason} is not installed`) };
  }
  const missing = () => {
    throw new MissingProgramError(`${program} is not installed, and CI=true runs every test: apt-get install ${debianPackage}`);
  };
  return {
    ...base,
    require: missing,
    // the suite's own tests and hooks are not registered: one failing test stands for them
    describe: (n) => describe(n, () => it(`needs ${program}`, missing)),
    it: (n, _b, t) => it(n, missing, t),
  };
}
