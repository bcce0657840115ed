import { sendWithRetry, type SendOptions } from './http.js';

export type PingKind = 'start' | 'success' | 'fail';

/**
 * healthchecks.io-style ping URLs: the base URL signals success, `/start` and `/fail` the other
 * events. The body (our message) shows up in the check's log; it is capped well under the 100 kB the
 * service accepts.
 */
export function pingUrl(base: string, kind: PingKind): string {
  const u = new URL(base);
  if (kind !== 'success') u.pathname = `${u.pathname.replace(/\/+$/, '')}/${kind}`;
  return u.toString();
}

export async function sendPing(base: string, kind: PingKind, body: string, opts: SendOptions): Promise<{ attempts: number }> {
  let url: string;
  try {
    url = pingUrl(base, kind);
  } catch {
    throw new Error('HEALTHCHECK_URL is not a valid URL');
  }
  return sendWithRetry(
    { url, method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: body.slice(0, 10_000) },
    opts,
  );
}
