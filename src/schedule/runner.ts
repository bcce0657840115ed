import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { JobSpec } from './config.js';

export interface JobOutcome {
  /** null when the child was killed by a signal or never started */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** set when the child could not be started at all */
  error?: string;
}

export interface RunningJob {
  pid?: number;
  done: Promise<JobOutcome>;
  kill(signal: NodeJS.Signals): void;
}

export type JobRunner = (job: JobSpec) => RunningJob;

export interface CliRunnerOptions {
  /** argv prefix that starts the CLI: [process.execPath, '/path/bin/vertex-backup.js'] */
  command: string[];
  /** options every job gets: --backup-dir, --db-path, --storage-path, --config, --env-file */
  globalArgs?: string[];
  env?: NodeJS.ProcessEnv;
  stdio?: 'inherit' | 'ignore';
}

/** bin/vertex-backup.js of this installation: dist/schedule/runner.js → ../../bin. */
export function ownBinPath(): string {
  return fileURLToPath(new URL('../../bin/vertex-backup.js', import.meta.url));
}

/**
 * How to start the CLI: VERTEX_BACKUP_BIN (an executable, for wrappers and tests) or this very
 * installation's bin script under the running node.
 */
export function defaultCliCommand(env: NodeJS.ProcessEnv = process.env): string[] {
  const bin = env.VERTEX_BACKUP_BIN?.trim();
  return bin ? [bin] : [process.execPath, ownBinPath()];
}

/**
 * Each job is a child process running the CLI: the scheduler's memory stays flat whatever a backup
 * does, and the child takes the backup-directory lock like any other run, so a job can never overlap
 * a run started by hand or by a timer.
 */
export function cliRunner(opts: CliRunnerOptions): JobRunner {
  return (job) => {
    const started = Date.now();
    const [file, ...prefix] = opts.command;
    const child = spawn(file, [...prefix, ...job.args, ...(opts.globalArgs ?? [])], {
      env: opts.env ?? process.env,
      stdio: ['ignore', opts.stdio ?? 'inherit', opts.stdio ?? 'inherit'],
    });
    const done = new Promise<JobOutcome>((resolve) => {
      let spawnError: string | undefined;
      child.once('error', (err) => {
        spawnError = `cannot start ${file}: ${err.message}`;
        // 'close' does not always follow a failed spawn
        if (child.pid === undefined) resolve({ exitCode: null, signal: null, durationMs: Date.now() - started, error: spawnError });
      });
      child.once('close', (code, signal) => {
        resolve({ exitCode: code, signal, durationMs: Date.now() - started, error: spawnError });
      });
    });
    return {
      pid: child.pid,
      done,
      kill(signal) {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
    };
  };
}
