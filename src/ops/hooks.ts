import { spawn } from 'node:child_process';
import { BackupError, usageError } from '../errors.js';
import { parseDuration } from '../schedule/duration.js';
import { redact } from '../secrets.js';

/**
 * Commands the operator runs around a backup or a restore (`hooks` in the config file,
 * `BACKUP_HOOK_*` in the environment): stop a service, dump something into the storage directory,
 * ping a monitor. A failing `before` hook means no backup; `after` hooks always run; `onError` runs
 * when the backup failed. Each hook runs with a timeout, in a process group of its own that is killed
 * whole when the timeout passes, and its output is kept (the last lines, secrets masked) for the log
 * and the notifications.
 */
export const HOOK_EVENTS = ['before', 'after', 'onError', 'beforeRestore', 'afterRestore'] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

/** a shell string (`sh -c`) or an argv array (no shell) */
export type HookCommand = string | string[];

export interface Hook {
  event: HookEvent;
  command: HookCommand;
  timeoutMs: number;
}

export type Hooks = Record<HookEvent, Hook[]>;

export interface HookRun {
  event: HookEvent;
  /** the command as the operator wrote it, secrets masked */
  command: string;
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  /** the last lines of its stdout and stderr together, secrets masked */
  output: string[];
  error?: string;
}

export const DEFAULT_HOOK_TIMEOUT_MS = 5 * 60_000;
/** after SIGTERM to the group, this long before SIGKILL */
const KILL_GRACE_MS = 2000;
const KEEP_LINES = 20;
const KEEP_BYTES = 16 * 1024;

const ENV_NAMES: Partial<Record<HookEvent, string>> = {
  before: 'BACKUP_HOOK_BEFORE',
  after: 'BACKUP_HOOK_AFTER',
  onError: 'BACKUP_HOOK_ON_ERROR',
  beforeRestore: 'BACKUP_HOOK_BEFORE_RESTORE',
  afterRestore: 'BACKUP_HOOK_AFTER_RESTORE',
};

export const showCommand = (c: HookCommand): string =>
  redact(typeof c === 'string' ? c : c.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' '));

const isArgv = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');

/**
 * One event's value: a string (shell), an array of strings (one argv), `{ "command": …, "timeout": "30s" }`,
 * or a list of those (an array holding at least one array or object).
 */
function parseEntry(event: HookEvent, value: unknown, where: string, defaultTimeout: number): Hook[] {
  const one = (v: unknown, at: string): Hook => {
    if (typeof v === 'string' && v.trim()) return { event, command: v, timeoutMs: defaultTimeout };
    if (isArgv(v)) return { event, command: v, timeoutMs: defaultTimeout };
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const unknown = Object.keys(o).filter((k) => k !== 'command' && k !== 'timeout');
      if (unknown.length) throw usageError(`${at}: unknown key '${unknown[0]}'`, 'a hook object has "command" and optionally "timeout" (like "30s")');
      if (!(typeof o.command === 'string' && o.command.trim()) && !isArgv(o.command))
        throw usageError(`${at}.command must be a shell string or an array of strings`);
      const timeoutMs = o.timeout === undefined ? defaultTimeout : parseDuration(String(o.timeout), `${at}.timeout`, 's');
      return { event, command: o.command as HookCommand, timeoutMs };
    }
    throw usageError(`${at} must be a shell string, an argv array of strings, or { "command", "timeout" }`, 'see docs/hooks.md');
  };
  if (value === undefined || value === null) return [];
  if (Array.isArray(value) && !isArgv(value)) return value.map((v, i) => one(v, `${where}[${i}]`));
  return [one(value, where)];
}

/** The hooks of the config file's `hooks` section and the `BACKUP_HOOK_*` variables (the environment wins per event). */
export function resolveHooks(file: Record<string, unknown>, env: Record<string, string | undefined>, where = 'config key'): Hooks {
  const section = file.hooks;
  if (section !== undefined && (typeof section !== 'object' || section === null || Array.isArray(section)))
    throw usageError(`${where} 'hooks' must be an object with before, after, onError, beforeRestore, afterRestore, timeout`);
  const s = (section ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(s)) {
    if (k !== 'timeout' && !(HOOK_EVENTS as readonly string[]).includes(k))
      throw usageError(`${where} 'hooks.${k}' is not a hook event`, `known: ${HOOK_EVENTS.join(', ')}, timeout`);
  }
  const timeoutRaw = env.BACKUP_HOOK_TIMEOUT ?? (s.timeout === undefined ? undefined : String(s.timeout));
  const timeout =
    timeoutRaw === undefined ? DEFAULT_HOOK_TIMEOUT_MS : parseDuration(timeoutRaw, env.BACKUP_HOOK_TIMEOUT ? 'BACKUP_HOOK_TIMEOUT' : 'hooks.timeout', 's');
  const hooks = {} as Hooks;
  for (const event of HOOK_EVENTS) {
    const fromEnv = env[ENV_NAMES[event]!];
    hooks[event] = fromEnv?.trim() ? [{ event, command: fromEnv, timeoutMs: timeout }] : parseEntry(event, s[event], `hooks.${event}`, timeout);
  }
  return hooks;
}

/** Keeps the tail of a stream in bounded memory: whatever a hook prints, we hold at most KEEP_BYTES. */
class Tail {
  private text = '';
  push(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('utf8')).slice(-KEEP_BYTES);
  }
  lines(): string[] {
    return this.text
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '')
      .slice(-KEEP_LINES)
      .map((l) => redact(l));
  }
}

/** Runs one hook; never throws (the caller decides what a failure means). */
export function runHook(hook: Hook, env: Record<string, string | undefined>, signal?: AbortSignal): Promise<HookRun> {
  const started = Date.now();
  const shown = showCommand(hook.command);
  return new Promise((resolve) => {
    const [file, args] = typeof hook.command === 'string' ? ['/bin/sh', ['-c', hook.command]] : [hook.command[0], hook.command.slice(1)];
    const tail = new Tail();
    let timedOut = false;
    let settled = false;
    // a group of its own (detached): the timeout kills the hook and everything it started
    const child = spawn(file, args, { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        /* already gone */
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, hook.timeoutMs);
    const onAbort = () => stop();
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (c: Buffer) => tail.push(c));
    child.stderr.on('data', (c: Buffer) => tail.push(c));
    const finish = (exitCode: number | null, sig: string | null, error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      // whatever it left running in its group goes with it (a daemon it forgot to detach)
      if (timedOut) killGroup('SIGKILL');
      else if (killTimer) clearTimeout(killTimer);
      const ok = !error && !timedOut && exitCode === 0;
      resolve({
        event: hook.event,
        command: shown,
        ok,
        exitCode,
        signal: sig,
        timedOut,
        durationMs: Date.now() - started,
        output: tail.lines(),
        error: error ? redact(error) : timedOut ? `killed after its timeout of ${Math.round(hook.timeoutMs / 100) / 10} s` : undefined,
      });
    };
    child.on('error', (err) => finish(null, null, `cannot run ${file}: ${err.message}`));
    child.on('exit', (code, sig) => {
      // a grandchild may hold the pipes open: give the output a moment, not forever
      const t = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, sig);
      }, 500);
      child.on('close', () => {
        clearTimeout(t);
        finish(code, sig);
      });
    });
  });
}

/** What a hook sees about the run, as VERTEX_BACKUP_* variables. */
export interface HookContext {
  /** create, restore */
  operation: string;
  type?: string;
  id?: string;
  backupDir: string;
  /** files of the backup (after), or the paths restored */
  paths?: string[];
  /** ok, partial, failed (after, onError, afterRestore) */
  result?: string;
  exitCode?: number;
  error?: string;
}

export function hookEnv(base: Record<string, string | undefined>, event: HookEvent, ctx: HookContext): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...base };
  const set = (k: string, v: string | number | undefined) => {
    if (v !== undefined) env[`VERTEX_BACKUP_${k}`] = String(v);
  };
  set('HOOK', event);
  set('OPERATION', ctx.operation);
  set('TYPE', ctx.type);
  set('ID', ctx.id);
  set('BACKUP_DIR', ctx.backupDir);
  set('PATHS', ctx.paths?.join('\n'));
  set('RESULT', ctx.result);
  set('EXIT_CODE', ctx.exitCode);
  set('ERROR', ctx.error === undefined ? undefined : redact(ctx.error));
  return env;
}

/**
 * Runs one event's hooks in order. `stopOnFailure` (before hooks): the first failure ends the list and
 * is thrown, with its exit code and last lines, so the backup does not start.
 */
export async function runHooks(
  hooks: Hook[],
  env: Record<string, string | undefined>,
  opts: { stopOnFailure?: boolean; signal?: AbortSignal; onRun?: (run: HookRun) => void } = {},
): Promise<HookRun[]> {
  const runs: HookRun[] = [];
  for (const hook of hooks) {
    const run = await runHook(hook, env, opts.signal);
    runs.push(run);
    opts.onRun?.(run);
    if (!run.ok && opts.stopOnFailure) throw hookFailure(run);
  }
  return runs;
}

export function describeRun(run: HookRun): string {
  const how = run.timedOut ? (run.error ?? 'timed out') : run.error ? run.error : run.signal ? `killed by ${run.signal}` : `exit code ${run.exitCode}`;
  return `${run.event} hook \`${run.command}\` ${run.ok ? 'ok' : `failed (${how})`} in ${(run.durationMs / 1000).toFixed(1)} s`;
}

export function hookFailure(run: HookRun): BackupError {
  const last = run.output.slice(-5);
  const what = run.event.startsWith('before') ? (run.event === 'before' ? 'no backup was made' : 'nothing was restored') : '';
  return new BackupError('FAILED', `${describeRun(run)}${what ? `: ${what}` : ''}${last.length ? `; last output: ${last.join(' | ')}` : ''}`, {
    hint: run.timedOut ? 'raise its "timeout" in the hooks section or BACKUP_HOOK_TIMEOUT, or find why it hangs' : 'run the hook by hand to see why it fails',
  });
}

/** For backup.log: a compact record of each run. */
export const hookLog = (runs: HookRun[]) =>
  runs.length
    ? runs.map((r) => ({
        event: r.event,
        command: r.command,
        ok: r.ok,
        exit_code: r.exitCode,
        timed_out: r.timedOut || undefined,
        duration_ms: r.durationMs,
        output: r.output.length ? r.output : undefined,
      }))
    : undefined;

/**
 * A backup between its hooks: `before` (a failure means `fn` never runs), then `fn`, then `after`
 * whatever happened (so a service the before hook stopped is started again, even on SIGTERM), then
 * `onError` when the before hook or `fn` failed. Throws what failed first; an `after` hook's failure
 * is returned, since the backup itself is made.
 */
export async function runAround<T>(
  p: {
    hooks: Pick<Hooks, 'before' | 'after' | 'onError'>;
    env: Record<string, string | undefined>;
    ctx: HookContext;
    signal?: AbortSignal;
    onRun?: (run: HookRun) => void;
    /** what the after hooks learn from the result (id, paths, result) */
    describe: (value: T) => Partial<HookContext>;
  },
  fn: () => Promise<T>,
): Promise<{ value: T; runs: HookRun[]; failedAfter: HookRun[] }> {
  const runs: HookRun[] = [];
  const onRun = (r: HookRun) => {
    runs.push(r);
    p.onRun?.(r);
  };
  let value: T | undefined;
  let failure: unknown;
  try {
    await runHooks(p.hooks.before, hookEnv(p.env, 'before', p.ctx), { stopOnFailure: true, signal: p.signal, onRun });
    value = await fn();
  } catch (err) {
    failure = err;
  }
  const after: HookContext =
    failure === undefined
      ? { ...p.ctx, result: 'ok', exitCode: 0, ...p.describe(value as T) }
      : {
          ...p.ctx,
          result: 'failed',
          exitCode: failure instanceof BackupError ? failure.exitCode : 1,
          error: (failure as Error)?.message ?? String(failure),
        };
  // no signal: an interrupted backup still runs its after hooks (they restart what before stopped)
  const afterRuns = await runHooks(p.hooks.after, hookEnv(p.env, 'after', after), { onRun });
  if (failure !== undefined || after.result !== 'ok') await runHooks(p.hooks.onError, hookEnv(p.env, 'onError', after), { onRun });
  if (failure !== undefined) throw failure;
  return { value: value as T, runs, failedAfter: afterRuns.filter((r) => !r.ok) };
}
