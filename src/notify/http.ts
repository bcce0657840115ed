import pRetry, { AbortError } from 'p-retry';
import { redact } from '../secrets.js';
import { oneLine } from './message.js';

export interface SendOptions {
  timeoutMs: number;
  retries: number;
  retryDelayMs: number;
}

export interface HttpRequest {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Extra acceptance test on a 2xx answer (Telegram answers 200 with {"ok":false} in some cases). */
  accept?: (status: number, body: string) => string | undefined;
}

/** Bounded by the length of a status answer: a hostile or broken server must not make us buffer megabytes. */
const MAX_BODY = 64 * 1024;
/** Telegram's 429 names how long to wait; we honour it only up to this, a notifier must not hang a run. */
const MAX_RETRY_AFTER_MS = 30_000;

class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/**
 * One HTTP request with a per-attempt timeout and retries on network errors, timeouts, 429 and 5xx.
 * Resolves with the number of attempts; rejects with an Error whose message is redacted and one line.
 */
export async function sendWithRetry(req: HttpRequest, opts: SendOptions): Promise<{ attempts: number }> {
  let attempts = 0;
  try {
    await pRetry(
      async () => {
        attempts++;
        await attempt(req, opts.timeoutMs);
      },
      {
        retries: opts.retries,
        minTimeout: opts.retryDelayMs,
        factor: 2,
        randomize: false,
        onFailedAttempt: async (err) => {
          const wait = (err as unknown as RetryableError).retryAfterMs;
          if (wait && err.retriesLeft > 0) await sleep(Math.min(wait, MAX_RETRY_AFTER_MS));
        },
      },
    );
    return { attempts };
  } catch (err) {
    const e = new Error(redact(oneLine(errorText(err))));
    (e as Error & { attempts: number }).attempts = attempts;
    throw e;
  }
}

async function attempt(req: HttpRequest, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'follow',
    });
  } catch (err) {
    const e = err as Error;
    if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
      throw new RetryableError(`no answer within ${timeoutMs} ms`);
    }
    // an unparsable URL will not get better by retrying
    if (e instanceof TypeError && !/fetch failed/i.test(e.message)) throw new AbortError(errorText(e));
    throw new RetryableError(errorText(e));
  }
  const body = await readBounded(res, timeoutMs);
  if (res.status === 429 || res.status >= 500) {
    throw new RetryableError(`HTTP ${res.status}${detail(body)}`, retryAfter(res, body));
  }
  if (res.status < 200 || res.status >= 300) {
    throw new AbortError(`HTTP ${res.status}${detail(body)}`);
  }
  const refused = req.accept?.(res.status, body);
  if (refused) throw new AbortError(refused);
}

async function readBounded(res: Response, timeoutMs: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const timer = setTimeout(() => void reader.cancel().catch(() => {}), timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || !value) break;
      chunks.push(value);
      size += value.length;
      if (size >= MAX_BODY) {
        await reader.cancel().catch(() => {});
        break;
      }
    }
  } catch {
    // a body cut short still leaves us the status code, which is what counts
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, MAX_BODY);
}

function retryAfter(res: Response, body: string): number | undefined {
  const header = Number(res.headers.get('retry-after'));
  if (Number.isFinite(header) && header > 0) return header * 1000;
  try {
    const s = (JSON.parse(body) as { parameters?: { retry_after?: number } }).parameters?.retry_after;
    return typeof s === 'number' && s > 0 ? s * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The server's own words, when it gave any: Telegram's "description", else the start of the body. */
function detail(body: string): string {
  if (!body) return '';
  try {
    const j = JSON.parse(body) as { description?: unknown; error?: unknown; message?: unknown };
    const d = j.description ?? j.error ?? j.message;
    if (typeof d === 'string' && d) return `: ${oneLine(d, 200)}`;
  } catch {
    // not JSON
  }
  return `: ${oneLine(body, 120)}`;
}

function errorText(err: unknown): string {
  const e = err as Error & { cause?: { message?: string; code?: string } };
  const base = e?.message ?? String(err);
  const cause = e?.cause?.message ?? e?.cause?.code;
  return cause && !base.includes(cause) ? `${base}: ${cause}` : base;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
