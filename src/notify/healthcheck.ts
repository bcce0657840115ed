import { sendWithRetry, type SendOptions } from './http.js';

/** 'success', 'fail', 'start', or an exit code (0 is a success, 1–255 a failure: healthchecks.io's `/{code}`). */
export type PingKind = 'start' | 'success' | 'fail' | number;

/** What healthchecks.io keeps of a ping's body; a longer body is cut there by the service anyway. */
export const MAX_PING_BODY = 100_000;

/**
 * healthchecks.io ping URLs: the base URL signals success, `/start` that a run began, `/fail` a
 * failure, `/{exit code}` a run's exit status. `rid` (a UUID per run) lets the service pair a run's
 * start with its end, so runs that overlap are timed correctly.
 */
export function pingUrl(base: string, kind: PingKind, rid?: string): string {
  const u = new URL(base);
  if (kind !== 'success') u.pathname = `${u.pathname.replace(/\/+$/, '')}/${kind}`;
  if (rid) u.searchParams.set('rid', rid);
  return u.toString();
}

/**
 * The body of a ping: `head` (our message) and the last lines of the run's log below it, cut to the
 * first 100 kB the service keeps, oldest log lines dropped first so the end of the run is what shows.
 */
export function pingBody(head: string, log?: string): string {
  const bytes = (s: string) => Buffer.byteLength(s);
  const top = head.slice(0, MAX_PING_BODY);
  if (!log) return top;
  const sep = "\n\n--- the run's output (last lines) ---\n";
  let room = MAX_PING_BODY - bytes(top) - bytes(sep);
  if (room <= 0) return top;
  const lines = log.split('\n');
  const kept: string[] = [];
  for (let i = lines.length - 1; i >= 0; i--) {
    const n = bytes(lines[i]) + 1;
    if (n > room) break;
    kept.unshift(lines[i]);
    room -= n;
  }
  return kept.length ? top + sep + kept.join('\n') : top;
}

export async function sendPing(base: string, kind: PingKind, body: string, opts: SendOptions, rid?: string): Promise<{ attempts: number }> {
  let url: string;
  try {
    url = pingUrl(base, kind, rid);
  } catch {
    throw new Error('HEALTHCHECK_URL is not a valid URL');
  }
  return sendWithRetry({ url, method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: pingBody(body) }, opts);
}

/**
 * An Uptime Kuma push monitor: GET its push URL with `status=up|down`, `msg` (one line) and `ping`
 * (the run's duration in ms); whatever query the URL had is kept.
 */
export function kumaUrl(base: string, up: boolean, msg: string, pingMs?: number): string {
  const u = new URL(base);
  u.searchParams.set('status', up ? 'up' : 'down');
  u.searchParams.set('msg', msg.slice(0, 250));
  if (pingMs !== undefined && pingMs >= 0) u.searchParams.set('ping', String(Math.round(pingMs)));
  else u.searchParams.delete('ping');
  return u.toString();
}

export async function sendKuma(base: string, up: boolean, msg: string, pingMs: number | undefined, opts: SendOptions): Promise<{ attempts: number }> {
  let url: string;
  try {
    url = kumaUrl(base, up, msg, pingMs);
  } catch {
    throw new Error('UPTIME_KUMA_URL is not a valid URL');
  }
  return sendWithRetry({ url, method: 'GET' }, opts);
}
