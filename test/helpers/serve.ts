/**
 * Starts the built binary's `serve --port 0` the way an operator does and waits for the address it
 * prints; `stop` sends SIGTERM and waits for the exit.
 */
import type { ChildProcess } from 'node:child_process';
import { type RunResult, run, start } from './cli.js';

export interface Served {
  url: string;
  child: ChildProcess;
  stderr(): string;
  stop(): Promise<RunResult>;
}

export async function serve(cwd: string, args: string[], serveArgs: string[] = [], env: Record<string, string | undefined> = {}): Promise<Served> {
  const s = start([...args, 'serve', '--port', '0', ...serveArgs], { cwd, env, timeoutMs: 120_000 });
  let err = '';
  s.child.stderr!.on('data', (d: Buffer | string) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 15_000);
    const look = () => {
      const m = /listening on ((?:https?:\/\/|unix:)\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    s.child.stderr!.on('data', look);
    s.child.on('exit', () => reject(new Error(`serve exited: ${err}`)));
  });
  return {
    url,
    child: s.child,
    stderr: () => err,
    stop: async () => {
      s.child.kill('SIGTERM');
      return s.done;
    },
  };
}

/** `token create --scope S` through the binary; returns the token. */
export async function makeToken(cwd: string, config: string, scope: string, extra: string[] = []): Promise<string> {
  const r = await run(['--config', config, 'token', 'create', '--scope', scope, '--json', ...extra], { cwd });
  if (r.code !== 0) throw new Error(`token create failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { token: string }).token;
}

/** Polls GET /jobs/ID until the job is no longer running. */
export async function waitJob(url: string, id: string, headers: Record<string, string>): Promise<Record<string, unknown>> {
  for (let i = 0; i < 600; i++) {
    const job = (await (await fetch(`${url}/jobs/${id}`, { headers })).json()) as Record<string, unknown>;
    if (job.state !== 'running') return job;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} did not finish`);
}
